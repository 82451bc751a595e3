/**
 * `npm run fixtures:record`: the fixtures a real server can produce, recorded from one. Each
 * scenario below drives the library the way its unit test does (same calls, same inputs, same
 * clock) against a real kube-apiserver, with the harness acting as the operator where the story
 * needs one (a write between our read and our write, a deleted event, a revoked token). What the
 * library sent and what the server answered is normalized (recording.ts) and written to
 * test/fixtures/<name>.json; the unit tests then replay real answers. Comments of the committed
 * fixture are kept when the exchanges still line up.
 *
 * test/cluster/fixtures.test.ts records again and fails when the committed files no longer
 * match what the real server answers.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
// The public API only (lib/index.ts), so moves inside lib/ do not touch the recorder.
import { applyCondition, clientFromConfig, createClient, createTransport, FileTokenSource, monitorCondition, reportFatalError, runTasks, stepTask, TaskFailure, type Build, type BuildRef, type BuildStatus, type ClientOptions, type SpotClient, type Task } from '../../lib/index.js';
import { FIXTURES_DIR, validateExchanges, type Exchange } from '../support/fixtures.js';
import { pinnedVersions } from './build.js';
import { startCluster, type Cluster, type ServiceAccountFolder } from './harness.js';
import { normalize, RecordingDispatcher, type NormalizeOptions, type RawExchange } from './recording.js';
import { buildIdentity, buildPath, createBuild, readBuild, withoutEvents, type StoredBuild } from './support.js';

const NS = 'ns';
const ref: BuildRef = { namespace: NS, name: 'b1' };
/** The unit tests' event clock and pod name (test/events.test.ts). */
const T0 = Date.parse('2025-06-01T10:00:00Z');
const POD = 'b1-build-7x9k2';
/** The Build of test/fixtures/get-build.json. */
const SPEC = { image: { name: 'team/app', tag: '3f2c1a9', registry: { url: 'registry.example.com' } } };
const RUNNING: BuildStatus = { phase: 'Running', conditions: [{ type: 'Building Image', status: 'In Progress', lastTransitionTime: '2025-06-01T10:00:05Z' }] };

export const SOURCE = `recorded: kube-apiserver ${pinnedVersions().kubernetes}`;

interface Context {
  cluster: Cluster;
  /** b1's own service account in `ns`, with deploy/build-role.template.yaml's Role rendered for b1. */
  sa: ServiceAccountFolder;
  recorder: RecordingDispatcher;
  /** A client in in-cluster mode whose every request is recorded. */
  client(options?: Pick<ClientOptions, 'events' | 'serviceAccountDir' | 'resource'>): Promise<SpotClient>;
  /** A fresh `ns/b1` (the previous one deleted) with `status`; the first one is remembered for normalizing. */
  seed(status?: BuildStatus): Promise<StoredBuild>;
  /** Makes `build` the scenario's Build for normalizing (when it did not come from `seed`). */
  remember(build: StoredBuild): void;
  /** The Build as the library would read it, without recording a request. */
  read(): Promise<Build>;
  /** The operator (the harness) replaces the status. */
  operatorWrites(status: BuildStatus): Promise<void>;
  /** Name the real token gets in the fixture (default `test-token`). */
  tokenName: string;
  /** Other real tokens the scenario minted, and their names in the fixture. */
  tokenNames: Map<string, string>;
  /** The service-account folder the client reads (default `sa`). */
  folder: ServiceAccountFolder;
  /** The builder's identity of the operator's layout, for `layout: 'spot'` scenarios. */
  spot: ServiceAccountFolder | undefined;
  /** How this scenario's fixture names what the server chose (uids, versions) and the run's clock. */
  norm: Pick<NormalizeOptions, 'buildName' | 'canonicalBuildUid' | 'uids' | 'firstBuildResourceVersion' | 'pinnedVersions' | 'runStartedMs'>;
}

interface Scenario {
  name: string;
  /** `spot`: recorded last, with the published Spot CRD in place of deploy/crd.yaml's, in the operator's layout. */
  layout?: 'spot';
  run(ctx: Context): Promise<void>;
}

/** The reply statuses of the committed fixture's GETs after the first: what the operator wrote meanwhile. */
function operatorStatuses(fixture: string): BuildStatus[] {
  const exchanges = JSON.parse(readFileSync(join(FIXTURES_DIR, `${fixture}.json`), 'utf8')) as Exchange[];
  return exchanges.filter((e) => e.request.method === 'GET').slice(1).map((e) => (e.reply!.body as Build).status!);
}

const succeeded = (build: Build) =>
  applyCondition(build.status!, { type: 'Building Image', status: 'Success', reason: 'Succeeded', message: 'image pushed' }, new Date('2025-06-01T10:05:00Z'));

const eventClock = (clock: { now: number }) => ({ instance: POD, now: () => new Date(clock.now) });
const STARTED = { type: 'Normal', reason: 'Started', message: 'building team/app:3f2c1a9' } as const;
const FAILED = { type: 'Warning', reason: 'StepFailed', message: 'step "push" exited with code 1' } as const;

/** Runs before each PATCH of the status, in order; later PATCHes go through untouched. */
function beforePatches(ctx: Context, actions: Array<() => Promise<void>>): void {
  let n = 0;
  ctx.recorder.before = async (request) => {
    if (request.method === 'PATCH' && request.path.endsWith('/status') && n < actions.length) await actions[n++]!();
  };
}

// ---------------------------------------------------------------------------------------------
// The runner's flows (test/runner-fixtures.test.ts, test/failure-semantics.test.ts): the library
// runs the tests' own tasks against the real server. The fixtures keep the tests' names for what
// the server chose: the Build's uid, its resourceVersions from 2001 (3001 for the fatal path,
// 4001 for monitorCondition), events about instance b1-build-pod.

const RUN_UID = '7d1c9e42-3b5a-4f0e-8c21-6a9e0f4b2d17';
const RUN_EVENTS = { events: { instance: 'b1-build-pod' } } as const;
const THREE = ['Fetching Source', 'Building Image', 'Pushing Image'];
const STDERR = 'npm ERR! missing script: build\nnpm ERR! A complete log of this run can be found in /tmp/npm.log';

/** A run from an operator-created Build (no status unless given), its times and versions normalized. */
async function runScenario(ctx: Context, firstVersion: number, status?: BuildStatus): Promise<void> {
  ctx.norm.canonicalBuildUid = RUN_UID;
  ctx.norm.firstBuildResourceVersion = firstVersion;
  ctx.norm.runStartedMs = Date.now();
  await ctx.seed(status);
}

/** Step output kept out of the recorder's own output; results folders in a scratch folder. */
async function withSteps<T>(fn: (io: { stdout: (t: string) => void; stderr: (t: string) => void; resultsParent: string; killGraceMs: number }) => Promise<T>): Promise<T> {
  const scratch = mkdtempSync(join(tmpdir(), 'spot-record-'));
  try {
    return await fn({ stdout: () => {}, stderr: () => {}, resultsParent: scratch, killGraceMs: 200 });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const IN_PROGRESS_AT_STEP_2: BuildStatus = {
  phase: 'Running',
  conditions: [
    { type: 'Fetching Source', status: 'Success', lastTransitionTime: '2025-06-01T10:00:02Z', reason: 'Succeeded' },
    { type: 'Building Image', status: 'In Progress', lastTransitionTime: '2025-06-01T10:00:02Z' },
    { type: 'Pushing Image', status: '', lastTransitionTime: '2025-06-01T10:00:01Z' },
  ],
};

const RUN_SCENARIOS: Scenario[] = [
  {
    name: 'run-three-steps',
    async run(ctx) {
      await runScenario(ctx, 2001);
      await runTasks(await ctx.client(RUN_EVENTS), ref, THREE.map((type) => ({ type, run: async () => {} })));
    },
  },
  {
    name: 'run-step-fails',
    async run(ctx) {
      await runScenario(ctx, 2001);
      await runTasks(await ctx.client(RUN_EVENTS), ref, [
        { type: 'Fetching Source', run: async () => {} },
        { type: 'Building Image', run: async () => { throw new TaskFailure('StepFailed', `exit code 3; last stderr lines:\n${STDERR}`); } },
        { type: 'Pushing Image', run: async () => {} },
      ]);
    },
  },
  {
    name: 'run-image-result',
    async run(ctx) {
      await runScenario(ctx, 2001);
      const client = await ctx.client(RUN_EVENTS);
      await withSteps((io) => runTasks(client, ref, [
        stepTask({ type: 'Building Image', command: 'echo built' }, io),
        stepTask(
          {
            type: 'Pushing Image',
            command: `printf 'registry.example.com/team/app:3f2c1a9@sha256:9b2f0c4e\\n' > "$SPOT_RESULTS_DIR/image-url"; printf '{"digest":"sha256:9b2f0c4e","builder":"kaniko"}' > "$SPOT_RESULTS_DIR/image-metadata"`,
          },
          io,
        ),
      ]));
    },
  },
  {
    name: 'run-step-timeout',
    async run(ctx) {
      await runScenario(ctx, 2001);
      const client = await ctx.client(RUN_EVENTS);
      await withSteps((io) => runTasks(client, ref, [stepTask({ type: 'Building Image', timeoutSeconds: 0.5, command: 'echo compiling... >&2; sleep 30' }, io)]));
    },
  },
  {
    name: 'run-conflict',
    async run(ctx) {
      await runScenario(ctx, 2001);
      // Between our second and third write the operator (the harness) records the pod and its
      // own condition; the fixture numbers its write 2010, as the test's story does.
      beforePatches(ctx, [async () => {}, async () => {}, async () => {
        const current = await ctx.read();
        const conditions = [...(current.status?.conditions ?? []), { type: 'Pod Deployment', status: 'Success' as const, lastTransitionTime: '2025-06-01T10:00:02Z', reason: 'PodRunning', message: 'pod ns/b1-build-pod is running' }];
        await ctx.operatorWrites({ ...current.status, pod: { namespace: NS, name: 'b1-build-pod' }, conditions });
        ctx.norm.pinnedVersions!.set((await ctx.read()).metadata.resourceVersion!, 2010);
      }]);
      await runTasks(await ctx.client(RUN_EVENTS), ref, THREE.map((type) => ({ type, run: async () => {} })));
    },
  },
  {
    name: 'run-build-replaced',
    async run(ctx) {
      await runScenario(ctx, 2001);
      // Before the first write the Build is deleted and created again under the same name.
      beforePatches(ctx, [async () => {
        const again = await ctx.seed();
        ctx.norm.uids!.set(again.metadata.uid as string, 'e4f0a6b1-9c2d-4e7f-a3b8-5d1c0f9e2a64');
        ctx.norm.pinnedVersions!.set(again.metadata.resourceVersion as string, 2107);
      }]);
      await runTasks(await ctx.client(), ref, [{ type: 'Building Image', run: async () => {} }]).catch(() => {});
    },
  },
  {
    name: 'run-monitor-in-progress',
    async run(ctx) {
      await runScenario(ctx, 4001, RUNNING);
      await monitorCondition(await ctx.client(), ref, 'Building Image', async () => 'sha256:9b2f0c4e');
    },
  },
  {
    name: 'run-monitor-success',
    async run(ctx) {
      await runScenario(ctx, 4001);
      await monitorCondition(await ctx.client(), ref, 'Building Image', async () => 42);
    },
  },
  {
    name: 'run-monitor-error',
    async run(ctx) {
      await runScenario(ctx, 4001);
      await monitorCondition(await ctx.client(), ref, 'Building Image', async () => {
        throw new TaskFailure('StepFailed', 'exit code 2');
      });
    },
  },
  {
    name: 'run-fatal',
    async run(ctx) {
      await runScenario(ctx, 3001, IN_PROGRESS_AT_STEP_2);
      await reportFatalError(await ctx.client(RUN_EVENTS), ref, new Error('cannot push: registry.example.com unreachable'));
    },
  },
  {
    name: 'custom-resource',
    async run(ctx) {
      // Another group's resource with a status subresource (test/spot-shape-fixtures.test.ts's
      // client option), and a Role letting b1's identity use it.
      const { cluster } = ctx;
      await cluster.kubectlOk(['apply', '-f', '-'], JSON.stringify(PIPELINE_BUILDS_CRD));
      await cluster.kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', 'crd/pipelinebuilds.ci.example.com']);
      await cluster.kubectlOk(['apply', '-f', '-'], JSON.stringify(pipelineBuildsRole(ctx.sa.serviceAccount)));
      const path = `/apis/ci.example.com/v1beta1/namespaces/${NS}/pipelinebuilds`;
      await cluster.http.send({ method: 'DELETE', path: `${path}/b1` });
      const created = await waitFor('the pipelinebuilds route', async () => {
        const r = await cluster.http.send<StoredBuild>({ method: 'POST', path, body: { apiVersion: 'ci.example.com/v1beta1', kind: 'PipelineBuild', metadata: { name: 'b1', namespace: NS } } });
        return r.status === 201 ? r.body : undefined;
      });
      ctx.remember(created);
      ctx.norm.canonicalBuildUid = '0c5e8f3a-6d21-4b9e-a7f0-3e2d1c4b5a69';
      ctx.norm.firstBuildResourceVersion = 41;
      ctx.norm.runStartedMs = Date.now();
      const client = await ctx.client({ resource: { group: 'ci.example.com', version: 'v1beta1', plural: 'pipelinebuilds' }, events: { instance: 'b1-build-pod' } });
      const build = await client.getBuild(ref);
      const stored = await client.updateBuildStatus(ref, (b) => applyCondition(b.status!, { type: 'Testing', status: 'In Progress' }), { base: build });
      await client.recordEvent(stored, { type: 'Normal', reason: 'TestsStarted', message: 'running the tests' });
    },
  },
];

const PIPELINE_BUILDS_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'pipelinebuilds.ci.example.com' },
  spec: {
    group: 'ci.example.com',
    scope: 'Namespaced',
    names: { plural: 'pipelinebuilds', singular: 'pipelinebuild', kind: 'PipelineBuild' },
    versions: [{ name: 'v1beta1', served: true, storage: true, subresources: { status: {} }, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};

const pipelineBuildsRole = (serviceAccount: string) => ({
  apiVersion: 'v1',
  kind: 'List',
  items: [
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'pipelinebuilds', namespace: NS }, rules: [{ apiGroups: ['ci.example.com'], resources: ['pipelinebuilds', 'pipelinebuilds/status'], verbs: ['get', 'patch'] }] },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'pipelinebuilds', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pipelinebuilds' },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace: NS }],
    },
  ],
});

/** Polls `probe` (every 50 ms, up to 10 s) until it gives a value. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; ; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    if (i > 200) throw new Error(`${what}: not ready after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// The published Spot CRD (test/spot-shape-fixtures.test.ts): deploy/spot-crd.yaml in the
// operator's layout (deploy/operator-layout.yaml): the builder's identity in spot-system, the
// Build deploy/spot-sample-build.yaml in workspace-a, its pod started by the operator.

const WORKSPACE = 'workspace-a';
const SPOT_REF: BuildRef = { namespace: WORKSPACE, name: 'sample-build' };
const SPOT_POD = { name: 'sample-build-x7k2p', namespace: 'spot-system' };
const SPOT_DIGEST = 'sha256:11c8d96f1ece6ebe0983ec43843f9174dd9bc3b94fe33ded894f5d9dbb6b0f78';
const SPOT_IMAGE = 'registry.example.com/team/app:1.0.0';
const SPOT_SAMPLE_BUILD = readFileSync(fileURLToPath(new URL('../../deploy/spot-sample-build.yaml', import.meta.url)), 'utf8');

/** Replaces deploy/crd.yaml's CRD (same name) by the published one and applies the operator's layout. */
async function spotLayout(cluster: Cluster): Promise<ServiceAccountFolder> {
  await cluster.kubectlOk(['delete', 'crd', 'builds.spot.release.com', '--ignore-not-found', '--wait=true']);
  await cluster.applyDeploy(['deploy/spot-crd.yaml']);
  await cluster.ensureNamespace(WORKSPACE);
  await cluster.ensureNamespace('spot-system');
  await cluster.applyDeploy(['deploy/operator-layout.yaml']);
  return cluster.serviceAccountFolder('spot-system', 'spot-builder');
}

/** The sample Build, created again, with the operator's first status write (pod started, stage Running). */
async function spotRun(ctx: Context, tasks: (io: Parameters<Parameters<typeof withSteps>[0]>[0]) => Task[]): Promise<void> {
  const { cluster } = ctx;
  const path = buildPath(WORKSPACE, 'sample-build');
  await cluster.http.send({ method: 'DELETE', path });
  const stored = await waitFor('the published Spot CRD is served', async () => {
    // `kubectl create`, as the operator creates it: no last-applied-configuration annotation.
    const created = await cluster.kubectlOk(['create', '-f', '-'], SPOT_SAMPLE_BUILD).then(() => true, () => false);
    if (!created) return undefined;
    const build = await readBuild(cluster, WORKSPACE, 'sample-build');
    const r = await cluster.http.send<StoredBuild>({ method: 'PUT', path: `${path}/status`, body: { ...build, status: { stage: 'Running', pod: SPOT_POD, conditions: [] } } });
    // Still deploy/crd.yaml's schema if the conditions were kept (its phase is not required).
    return r.status === 200 && (r.body.status as { conditions?: unknown }).conditions === undefined ? r.body : undefined;
  });
  ctx.remember(stored);
  const spot = ctx.spot!;
  ctx.folder = spot;
  ctx.norm.buildName = 'sample-build';
  ctx.norm.canonicalBuildUid = '4b0d7c1e-9a2f-4e63-b8d5-2f61c0a9e7d3';
  ctx.norm.firstBuildResourceVersion = 3001;
  ctx.norm.runStartedMs = Date.now();
  const client = await ctx.client({ serviceAccountDir: spot.dir, events: { instance: SPOT_POD.name } });
  await withSteps((io) => runTasks(client, SPOT_REF, tasks(io)));
}

const SPOT_SCENARIOS: Scenario[] = [
  {
    name: 'run-spot-three-steps',
    layout: 'spot',
    run: (ctx) => spotRun(ctx, (io) => [
      stepTask({ type: THREE[0]!, command: 'echo cloned' }, io),
      stepTask({ type: THREE[1]!, command: 'echo built' }, io),
      stepTask({ type: THREE[2]!, command: `echo ${SPOT_IMAGE} > "$SPOT_RESULTS_DIR/image-url"; echo ${SPOT_DIGEST} > "$SPOT_RESULTS_DIR/image-digest"` }, io),
    ]),
  },
  {
    name: 'run-spot-step-fails',
    layout: 'spot',
    run: (ctx) => spotRun(ctx, (io) => [
      stepTask({ type: THREE[0]!, command: 'true' }, io),
      stepTask({ type: THREE[1]!, command: 'echo "npm ERR! missing script: build" >&2; exit 3' }, io),
      { type: THREE[2]!, run: async () => {} },
    ]),
  },
  {
    name: 'run-spot-pruned-fields',
    layout: 'spot',
    run: (ctx) => spotRun(ctx, () => [
      { type: 'Building Image', run: async () => ({ status: { image: { url: SPOT_IMAGE, metadata: { builder: 'buildkit' } } } }) },
      { type: 'Pushing Image', run: async () => ({ status: { image: { url: SPOT_IMAGE, digest: SPOT_DIGEST } } }) },
    ]),
  },
];

/** The token file re-read once a minute (test/token.test.ts's fake clock), with a second token the server issued. */
const TOKEN_PERIODIC_REREAD: Scenario = {
  name: 'token-periodic-reread',
  async run(ctx) {
    await ctx.seed(RUNNING);
    const clock = { now: 0 };
    const source = await FileTokenSource.open(join(ctx.sa.dir, 'token'), { now: () => clock.now });
    const client = clientFromConfig({ server: ctx.cluster.url, ca: undefined, tokenSource: source, namespace: NS }, { dispatcher: ctx.recorder, retry: { maxRetries: 0 } });
    try {
      await client.getBuild(ref);
      const rotated = await ctx.cluster.mintToken(NS, ctx.sa.serviceAccount);
      ctx.tokenNames.set(rotated, 'test-token-rotated');
      await ctx.sa.rotate(rotated);
      clock.now = 30_000;
      await client.getBuild(ref);
      clock.now = 60_000;
      await client.getBuild(ref);
    } finally {
      await client.close();
    }
  },
};

export const SCENARIOS: Scenario[] = [
  {
    name: 'get-build',
    async run(ctx) {
      await ctx.seed(RUNNING);
      await (await ctx.client()).getBuild(ref);
    },
  },
  {
    name: 'get-build-not-found',
    async run(ctx) {
      await ctx.cluster.http.send({ method: 'DELETE', path: buildPath(NS, 'b1') });
      await (await ctx.client()).getBuild(ref).catch(() => {});
    },
  },
  {
    name: 'replace-build-status',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      build.status = { phase: 'Done', conditions: [{ type: 'Building Image', status: 'Success', lastTransitionTime: '2025-06-01T10:05:00Z', reason: 'Succeeded' }] };
      await (await ctx.client()).replaceBuildStatus(build);
    },
  },
  {
    name: 'replace-build-status-conflict',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      await ctx.operatorWrites({ ...RUNNING, pod: { namespace: NS, name: POD } });
      build.status = { phase: 'Done', conditions: [{ type: 'Building Image', status: 'Success', lastTransitionTime: '2025-06-01T10:05:00Z', reason: 'Succeeded' }] };
      await (await ctx.client()).replaceBuildStatus(build).catch(() => {});
    },
  },
  {
    name: 'patch-build-status-merge',
    async run(ctx) {
      const seeded = await ctx.seed(RUNNING);
      const status = { ...RUNNING, conditions: [...RUNNING.conditions!, { type: 'Pushing Image', status: 'In Progress', lastTransitionTime: '2025-06-01T10:03:00Z' }] };
      await (await ctx.client()).patchBuildStatus(ref, { status }, { type: 'merge', resourceVersion: seeded.metadata.resourceVersion as string });
    },
  },
  {
    name: 'patch-build-status-merge-unconditional',
    async run(ctx) {
      await ctx.seed(RUNNING);
      await (await ctx.client()).patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' });
    },
  },
  {
    name: 'patch-build-status-json',
    async run(ctx) {
      const seeded = await ctx.seed(RUNNING);
      await (await ctx.client()).patchBuildStatus(ref, [{ op: 'replace', path: '/status/phase', value: 'Done' }], { type: 'json', resourceVersion: seeded.metadata.resourceVersion as string });
    },
  },
  {
    name: 'patch-build-status-invalid',
    async run(ctx) {
      const seeded = await ctx.seed(RUNNING);
      await (await ctx.client())
        .patchBuildStatus(ref, { status: { phase: 'Finished' } } as never, { type: 'merge', resourceVersion: seeded.metadata.resourceVersion as string })
        .catch(() => {});
    },
  },
  {
    name: 'patch-build-status-strategic',
    async run(ctx) {
      // No call of the library sends this content type; the transport is public API and the
      // answer is what a client that does (client-node's KubernetesObjectApi.patch) gets.
      await ctx.seed(RUNNING);
      const source = await FileTokenSource.open(join(ctx.folder.dir, 'token'));
      const transport = createTransport({ server: ctx.cluster.url, tokenSource: source, dispatcher: ctx.recorder, retry: { maxRetries: 0 } });
      await transport
        .request({ method: 'PATCH', path: `${buildPath(NS, 'b1')}/status`, body: { status: { phase: 'Done' } }, contentType: 'application/strategic-merge-patch+json' })
        .catch(() => {});
    },
  },
  {
    name: 'update-build-status-conflicts',
    async run(ctx) {
      await ctx.seed(RUNNING);
      beforePatches(ctx, operatorStatuses('update-build-status-conflicts').map((s) => () => ctx.operatorWrites(s)));
      await (await ctx.client()).updateBuildStatus(ref, succeeded);
    },
  },
  {
    name: 'update-build-status-conflict-exhausted',
    async run(ctx) {
      await ctx.seed(RUNNING);
      // The operator keeps touching the Build (an annotation on the main resource): the status
      // stays as it was, but every write moves the resourceVersion, so each of our patches is stale.
      beforePatches(ctx, [1, 2].map((n) => () => ctx.cluster.http.expect({
        method: 'PATCH',
        path: buildPath(NS, 'b1'),
        contentType: 'application/merge-patch+json',
        body: { metadata: { annotations: { 'spot.release.com/reconciled': String(n) } } },
      }).then(() => {})));
      await (await ctx.client()).updateBuildStatus(ref, succeeded, { maxAttempts: 2 }).catch(() => {});
    },
  },
  {
    name: 'update-build-status-no-change',
    async run(ctx) {
      await ctx.seed(RUNNING);
      await (await ctx.client()).updateBuildStatus(ref, (b) => {
        b.status!.phase = 'Running';
      });
    },
  },
  {
    name: 'event-created',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      await (await ctx.client({ events: eventClock({ now: T0 }) })).recordEvent(build, STARTED);
    },
  },
  {
    name: 'event-already-exists',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      // The POST whose answer was lost: the event is already there under the same name.
      ctx.recorder.before = async (request) => {
        const event = JSON.parse(request.body!) as { metadata: { name: string } };
        await ctx.cluster.http.expect({ method: 'POST', path: `/api/v1/namespaces/${NS}/events`, body: event });
      };
      await (await ctx.client({ events: eventClock({ now: T0 }) })).recordEvent(build, STARTED);
    },
  },
  {
    name: 'event-folded',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      const clock = { now: T0 };
      const client = await ctx.client({ events: eventClock(clock) });
      for (const at of [0, 60_000, 9 * 60_000, 11 * 60_000]) {
        clock.now = T0 + at;
        await client.recordEvent(build, FAILED);
      }
    },
  },
  {
    name: 'event-fold-gone',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      const clock = { now: T0 };
      const client = await ctx.client({ events: eventClock(clock) });
      const first = await client.recordEvent(build, FAILED);
      if (!first.ok) throw first.error;
      await ctx.cluster.http.expect({ method: 'DELETE', path: `/api/v1/namespaces/${NS}/events/${first.name}` });
      clock.now = T0 + 60_000;
      await client.recordEvent(build, FAILED);
    },
  },
  {
    name: 'event-forbidden',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const build = await ctx.read();
      const folder = await ctx.cluster.serviceAccountFolder(NS, 'no-events');
      ctx.folder = folder;
      await (await ctx.client({ events: eventClock({ now: T0 }), serviceAccountDir: folder.dir })).recordEvent(build, STARTED);
    },
  },
  {
    name: 'token-401-unchanged',
    async run(ctx) {
      await ctx.seed(RUNNING);
      await ctx.sa.rotate('test-token'); // not a token the server issued
      await (await ctx.client()).getBuild(ref).catch(() => {});
    },
  },
  {
    name: 'token-401-twice',
    async run(ctx) {
      await ctx.seed(RUNNING);
      await ctx.sa.rotate('test-token');
      const client = await ctx.client();
      await ctx.sa.rotate('test-token-rotated'); // rotated, but to a token that is refused as well
      await client.getBuild(ref).catch(() => {});
    },
  },
  {
    name: 'token-rotated-401',
    async run(ctx) {
      await ctx.seed(RUNNING);
      const valid = ctx.sa.token;
      await ctx.sa.rotate('test-token');
      const client = await ctx.client();
      await ctx.sa.rotate(valid); // the kubelet's rotation; the client's cache has not noticed
      ctx.tokenName = 'test-token-rotated';
      await client.getBuild(ref);
    },
  },
  TOKEN_PERIODIC_REREAD,
  ...RUN_SCENARIOS,
  ...SPOT_SCENARIOS,
];

/** The CRD is gone: the route itself answers 404. Recorded last, on its own (it deletes the CRD). */
const CRD_MISSING: Scenario = {
  name: 'get-build-crd-missing',
  async run(ctx) {
    await ctx.cluster.kubectlOk(['delete', 'crd', 'builds.spot.release.com', '--wait=true']);
    for (let i = 0; ; i++) {
      const r = await ctx.cluster.http.send({ method: 'GET', path: buildPath(NS, 'b1') });
      if (r.status === 404 && (r.body as { details?: unknown }).details === undefined) break;
      if (i > 200) throw new Error(`the builds route is still served after the CRD was deleted: ${r.status}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await (await ctx.client()).getBuild(ref).catch(() => {});
  },
};

export interface Recorded {
  name: string;
  exchanges: Exchange[];
}

/** Records every scenario (or those named) on `cluster`, which must have deploy/crd.yaml applied. */
export async function recordFixtures(cluster: Cluster, only?: string[]): Promise<Recorded[]> {
  // b1's identity as the operator makes it (the scenarios delete and create b1 again: the Role
  // names it, so it still applies), and a second one whose Role has no events (for the 403).
  await cluster.ensureNamespace(NS);
  const first = await createBuild(cluster, NS, 'b1', SPEC);
  const { sa: { serviceAccount } } = await buildIdentity(cluster, first);
  await buildIdentity(cluster, first, {
    serviceAccount: 'no-events',
    transform: (o) => {
      const renamed = { ...withoutEvents(o), metadata: { ...o.metadata, name: 'no-events' } };
      return o.kind === 'RoleBinding' ? { ...renamed, roleRef: { ...(o.roleRef as object), name: 'no-events' } } : renamed;
    },
  });
  const out: Recorded[] = [];
  // The Spot CRD takes the place of deploy/crd.yaml's (the same name): those scenarios come last.
  const ordered = [...SCENARIOS.filter((s) => !s.layout), CRD_MISSING, ...SCENARIOS.filter((s) => s.layout === 'spot')];
  let spot: ServiceAccountFolder | undefined;
  for (const scenario of ordered.filter((s) => !only || only.includes(s.name))) {
    if (scenario.layout === 'spot') spot ??= await spotLayout(cluster);
    const sa = await cluster.serviceAccountFolder(NS, serviceAccount);
    // The token the server issued (a scenario may write other ones into the folder).
    const issued = sa.token;
    let seeded: StoredBuild | undefined;
    const clients: SpotClient[] = [];
    const recorder = new RecordingDispatcher(new Agent({ connect: { ca: cluster.caPem, rejectUnauthorized: true } }));
    const ctx: Context = {
      cluster,
      sa,
      recorder,
      tokenName: 'test-token',
      tokenNames: new Map(),
      folder: sa,
      spot,
      norm: { uids: new Map(), pinnedVersions: new Map() },
      async client(options = {}) {
        const client = await createClient({
          env: { ...(options.serviceAccountDir ? { ...sa.env, SPOT_SERVICEACCOUNT_DIR: options.serviceAccountDir } : sa.env) },
          dispatcher: recorder,
          retry: { maxRetries: 0 },
          ...options,
        });
        clients.push(client);
        return client;
      },
      async seed(status) {
        await cluster.http.send({ method: 'DELETE', path: buildPath(NS, 'b1') });
        // The first Build of the scenario is the one the fixture names (a scenario may create it again).
        const created = await createBuild(cluster, NS, 'b1', SPEC, status);
        seeded ??= created;
        return created;
      },
      remember(build) {
        seeded ??= build;
      },
      read: () => readBuild(cluster, NS, 'b1') as unknown as Promise<Build>,
      async operatorWrites(status) {
        const current = await readBuild(cluster, NS, 'b1');
        await cluster.http.expect({ method: 'PUT', path: `${buildPath(NS, 'b1')}/status`, body: { ...current, status } });
      },
    };
    try {
      await scenario.run(ctx);
    } finally {
      for (const c of clients) await c.close();
      await recorder.close();
    }
    const tokens = new Map<string, string>([...ctx.tokenNames, [issued, ctx.tokenName]]);
    if (ctx.folder !== sa) tokens.set(ctx.folder.token, 'test-token');
    const exchanges = normalize(recorder.exchanges as RawExchange[], {
      ...ctx.norm,
      tokens,
      buildUid: seeded?.metadata.uid ?? '',
      buildVersions: seeded ? [seeded.metadata.resourceVersion as string] : [],
    });
    out.push({ name: scenario.name, exchanges: exchanges.map((e) => ({ ...e, source: SOURCE }) as Exchange) });
  }
  return out;
}

/** The committed fixture with `recorded`'s exchanges, keeping its comments where the exchanges line up. */
export function merged(recorded: Recorded): Exchange[] {
  let committed: Exchange[] = [];
  try {
    committed = JSON.parse(readFileSync(join(FIXTURES_DIR, `${recorded.name}.json`), 'utf8')) as Exchange[];
  } catch {
    // a new fixture
  }
  return recorded.exchanges.map((e, i) => {
    const old = committed[i];
    const comment = old && old.request.method === e.request.method ? old.comment : undefined;
    return { ...(comment ? { comment } : {}), ...e };
  });
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const cluster = await startCluster({ deploy: ['deploy/crd.yaml'], log: (l) => console.log(l) });
  try {
    const recorded = await recordFixtures(cluster, only.length > 0 ? only : undefined);
    for (const r of recorded) {
      const exchanges = validateExchanges(merged(r), r.name);
      writeFileSync(join(FIXTURES_DIR, `${r.name}.json`), `${JSON.stringify(exchanges, null, 2)}\n`);
      console.log(`test/fixtures/${r.name}.json: ${exchanges.map((e) => `${e.request.method} ${e.reply?.status ?? e.error}`).join(', ')}`);
    }
  } finally {
    await cluster.stop();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: Error) => {
    console.error(`fixtures:record: ${err.message}`);
    process.exitCode = 1;
  });
}
