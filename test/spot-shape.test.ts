/**
 * Issue 11 end to end: the real `spot-run` (the bundle `npm run build` ships) in in-cluster mode
 * against the local API server loaded with the published Spot CRD (deploy/spot-crd.yaml: phase in
 * status.stage, no conditions, unknown status fields pruned), in the operator's layout: the pod's
 * namespace is spot-system (the service-account folder's namespace file, or POD_NAMESPACE), the
 * Build lives in a workspace namespace, as the operator left it (stage Running, status.pod set).
 * Each test has its own workspace namespace and asserts the exit code, the exact requests, the
 * stored status and the events. The conditions-shaped path is e2e.test.ts's, unchanged.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Build } from '../lib/types.js';
import { bundleSpotRun, runCli, type CliResult } from './support/cli.js';
import { BUILD_POD_RULES, CRD_FILES, DEPLOY_ROLE_RULES, startApiServer, type ApiServer, type StoredEvent } from '../scripts/apiserver/server.js';

const DIGEST = 'sha256:11c8d96f1ece6ebe0983ec43843f9174dd9bc3b94fe33ded894f5d9dbb6b0f78';
const IMAGE = 'registry.example.com/team/app:1.0.0';
const CONDITIONS_LINE = "INFO  this Build's CRD does not store conditions: progress is reported in events";
const SPEC = {
  repo_url: 'https://github.com/example/app.git',
  image: { name: 'app', tag: '1.0.0', registry: { url: 'registry.example.com/team/app' }, repository_context: { dockerfile: 'Dockerfile', path: '.' } },
};

let scratch: string;
let server: ApiServer;
let bundle: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-shape-'));
  bundle = await bundleSpotRun();
  // The service-account folder's namespace file says spot-system: the pod's namespace, not the Build's.
  server = await startApiServer({ crd: 'spot', namespace: 'spot-system' });
});
after(async () => {
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const POD = (ns: string) => ({ name: `${ns}-x7k2p`, namespace: 'spot-system' });

/** Creates `NS/sample-build` as the operator leaves it once the pod is started, and runs spot-run on it. */
async function runSpot(target: ApiServer, ns: string, steps: Array<[type: string, command: string]>, options: { env?: Record<string, string>; args?: string[] } = {}): Promise<CliResult> {
  target.createBuild({ namespace: ns, name: 'sample-build', spec: SPEC, status: { stage: 'Running', pod: POD(ns) } });
  const args = ['--grace', '2', ...(options.args ?? []), ...steps.flatMap(([type, command]) => ['--step', `${type}=${command}`])];
  return runCli(args, {
    entry: bundle,
    timeoutMs: 30_000,
    env: { ...target.env(), BUILD_REFERENCE: `${ns}/sample-build`, POD_NAME: `${ns}-x7k2p`, ...options.env },
  });
}

/** `METHOD what STATUS` for every request about namespace `ns`, in order. */
function requestsOf(target: ApiServer, ns: string): string[] {
  return target.requests
    .filter((r) => r.path.includes(`/namespaces/${ns}/`))
    .map((r) => `${r.method} ${r.path.endsWith('/status') ? 'status' : r.path.includes('/events') ? 'events' : 'build'} ${r.status}`);
}

const stored = (target: ApiServer, ns: string): Build => target.getBuild(ns, 'sample-build')!;

/** The events of `ns` as `type reason: message`, each checked to be about the Build, in its namespace. */
function eventsOf(target: ApiServer, ns: string, kind = 'Build', apiVersion = 'spot.release.com/v1alpha1'): string[] {
  const build = stored(target, ns);
  const events = target.events(ns) as StoredEvent[];
  for (const e of events) {
    assert.equal(e.metadata.namespace, ns);
    assert.deepEqual({ ...e.involvedObject, resourceVersion: undefined }, { apiVersion, kind, name: 'sample-build', namespace: ns, uid: build.metadata.uid, resourceVersion: undefined });
    assert.equal(e.reportingInstance, `${ns}-x7k2p`);
  }
  return events.map((e) => `${e.type} ${e.reason}: ${e.message}`);
}

const pushStep = (url = IMAGE): [string, string] => ['Pushing Image', `echo pushed; echo ${url} > "$SPOT_RESULTS_DIR/image-url"; echo ${DIGEST} > "$SPOT_RESULTS_DIR/image-digest"`];
const countOf = (text: string, line: string) => text.split('\n').filter((l) => l.endsWith(line)).length;

describe('the published Spot CRD, operator layout', () => {
  test('3 steps: exit 0, stage Done, image url + digest, status.pod intact, 2 writes (<= N+1), each step in events', async () => {
    const ns = 'ws-success';
    const result = await runSpot(server, ns, [['Fetching Source', 'echo cloned'], ['Building Image', 'echo built'], pushStep()]);
    assert.equal(result.code, 0, result.stderr);
    const requests = requestsOf(server, ns);
    assert.deepEqual(requests, [
      'GET build 200',
      'PATCH status 200',
      ...Array(6).fill('POST events 201'),
      'PATCH status 200',
      'POST events 201',
      'POST events 201',
    ]);
    process.stdout.write(`# measured: spot-run with 3 steps on the published Spot CRD sent ${requests.length} requests (${requests.filter((r) => r.startsWith('PATCH')).length} status writes)\n`);
    assert.deepEqual(stored(server, ns).status, { stage: 'Done', pod: POD(ns), image: { url: IMAGE, digest: DIGEST } });
    const events = eventsOf(server, ns);
    assert.deepEqual(
      events.map((e) => e.replace(/ in \d+\.\ds$/, ' in Ns')),
      [
        'Normal Started: Build started: 3 tasks (Fetching Source, Building Image, Pushing Image)',
        'Normal TaskStarted: [1/3] Fetching Source started',
        'Normal TaskSucceeded: [1/3] Fetching Source succeeded in Ns',
        'Normal TaskStarted: [2/3] Building Image started',
        'Normal TaskSucceeded: [2/3] Building Image succeeded in Ns',
        'Normal TaskStarted: [3/3] Pushing Image started',
        'Normal TaskSucceeded: [3/3] Pushing Image succeeded in Ns',
        'Normal Completed: Build completed: 3 tasks in Ns',
      ],
    );
    assert.deepEqual(server.events('spot-system'), [], 'nothing in the pod\'s namespace');
    assert.equal(countOf(result.stderr, CONDITIONS_LINE), 1, result.stderr);
    assert.match(result.stderr, /INFO  build done in /);
  });

  test('a failing step: exit 1, stage Errored, a Warning event with the exit code and stderr', async () => {
    const ns = 'ws-failure';
    const result = await runSpot(server, ns, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo "npm ERR! missing script: build" >&2; exit 3'],
      pushStep(),
    ]);
    assert.equal(result.code, 1, result.stderr);
    assert.deepEqual(requestsOf(server, ns), ['GET build 200', 'PATCH status 200', ...Array(4).fill('POST events 201'), 'PATCH status 200', 'POST events 201']);
    assert.deepEqual(stored(server, ns).status, { stage: 'Errored', pod: POD(ns) });
    const events = eventsOf(server, ns);
    assert.equal(events.length, 5);
    assert.match(events.at(-1)!, /^Warning StepFailed: Building Image failed after \d+\.\ds: exit code 3; last stderr lines:\nnpm ERR! missing script: build$/);
  });

  test('pruned fields: image.metadata dropped and not sent again, each said once at info; progress in events', async () => {
    const ns = 'ws-pruned';
    const result = await runSpot(server, ns, [
      ['Building Image', `echo built; echo ${IMAGE} > "$SPOT_RESULTS_DIR/image-url"; echo '{"builder":"buildkit"}' > "$SPOT_RESULTS_DIR/image-metadata"`],
      ['Pushing Image', `echo pushed; echo ${IMAGE}@${DIGEST} > "$SPOT_RESULTS_DIR/image-url"`],
    ]);
    assert.equal(result.code, 0, result.stderr);
    // 3 writes for 2 steps: the image changed in the middle one. Without the pruning noticed, the
    // last write would carry the metadata (and every write the conditions) again.
    assert.deepEqual(requestsOf(server, ns), ['GET build 200', 'PATCH status 200', 'POST events 201', 'POST events 201', 'PATCH status 200', 'POST events 201', 'POST events 201', 'PATCH status 200', 'POST events 201', 'POST events 201']);
    const last = server.requests.filter((r) => r.path.includes(`/namespaces/${ns}/`) && r.method === 'PATCH').at(-1)!;
    const bare = JSON.stringify({ status: { stage: 'Done', image: { url: `${IMAGE}@${DIGEST}`, digest: DIGEST } }, metadata: { resourceVersion: '999999' } });
    assert.ok(last.bytes <= bare.length, `the last write (${last.bytes} bytes) carries no more than stage and image (${bare.length}): no conditions, no metadata`);
    assert.deepEqual(stored(server, ns).status, { stage: 'Done', pod: POD(ns), image: { url: `${IMAGE}@${DIGEST}`, digest: DIGEST } });
    assert.equal(countOf(result.stderr, CONDITIONS_LINE), 1, result.stderr);
    assert.equal(countOf(result.stderr, "INFO  this Build's CRD does not store status.image.metadata: left out of later writes"), 1, result.stderr);
    assert.equal(eventsOf(server, ns).filter((e) => / Task(Started|Succeeded): /.test(e)).length, 4, 'each step\'s start and end');
  });

  test('--phase-field phase on this CRD: the lost phase is a warning that names the fix (the Build stays Running)', async () => {
    const ns = 'ws-wrong-field';
    const result = await runSpot(server, ns, [['Building Image', 'echo built']], { args: ['--phase-field', 'phase'] });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /WARN  this Build's CRD does not store status\.phase: the build's phase is lost; use the phase field stage \(phaseField: 'stage', spot-run --phase-field stage\)/);
    assert.equal(stored(server, ns).status?.stage, 'Running');
  });
});

describe('the operator layout with the RBAC of deploy/: permissions in the workspace namespace only', () => {
  test('POD_NAMESPACE spot-system, Build and events in workspace-a; nothing asked of spot-system', async () => {
    const ns = 'workspace-a';
    // A RoleBinding in workspace-a: the deploy Role's verbs there, nothing anywhere else.
    server.setPermissions(server.token, DEPLOY_ROLE_RULES.map((rule) => ({ ...rule, namespaces: [ns] })));
    let result: CliResult;
    try {
      result = await runSpot(server, ns, [['Fetching Source', 'echo cloned'], pushStep()], { env: { POD_NAMESPACE: 'spot-system' } });
    } finally {
      server.setPermissions(server.token, BUILD_POD_RULES);
    }
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(server.requests.filter((r) => r.path.includes('/namespaces/spot-system/')), [], 'no request to the pod\'s namespace');
    assert.ok(requestsOf(server, ns).every((r) => !r.endsWith(' 403')), requestsOf(server, ns).join('\n'));
    assert.equal(stored(server, ns).status?.stage, 'Done');
    assert.equal(eventsOf(server, ns).length, 6);
    assert.deepEqual(server.events('spot-system'), []);
  });
});

describe('--resource: another custom resource', () => {
  let other: ApiServer;
  before(async () => {
    // The published CRD under another group, version and kind (plural kept: the server's rules name `builds`).
    const manifest = (await readFile(CRD_FILES.spot, 'utf8'))
      .replace('name: builds.spot.release.com', 'name: builds.ci.example.com')
      .replace('group: spot.release.com', 'group: ci.example.com')
      .replace('kind: Build\n', 'kind: PipelineBuild\n')
      .replace('listKind: BuildList', 'listKind: PipelineBuildList')
      .replace('- name: v1alpha1', '- name: v1beta1');
    const file = join(scratch, 'pipelinebuild-crd.yaml');
    await writeFile(file, manifest);
    other = await startApiServer({ crd: file, namespace: 'spot-system' });
  });
  after(async () => {
    await other?.stop();
  });

  test('builds.v1beta1.ci.example.com: paths follow it, the kind comes from the answer, events name it', async () => {
    const ns = 'ws-other';
    const result = await runSpot(other, ns, [['Building Image', 'echo built'], pushStep()], { args: ['--resource', 'builds.v1beta1.ci.example.com'] });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(
      other.requests.filter((r) => !r.path.includes('/events')).every((r) => r.path.startsWith(`/apis/ci.example.com/v1beta1/namespaces/${ns}/builds/sample-build`)),
      other.requests.map((r) => r.path).join('\n'),
    );
    assert.equal(stored(other, ns).kind, 'PipelineBuild');
    assert.deepEqual(stored(other, ns).status, { stage: 'Done', pod: POD(ns), image: { url: IMAGE, digest: DIGEST } });
    assert.equal(eventsOf(other, ns, 'PipelineBuild', 'ci.example.com/v1beta1').length, 6);
  });

  test('without --resource the default path is a 404 there: exit 3, one line', async () => {
    const ns = 'ws-other-default';
    const result = await runSpot(other, ns, [['Building Image', 'echo built']]);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /^spot-run: cannot report Build ws-other-default\/sample-build to the API server at \S+: .*\(GET \/apis\/spot\.release\.com\/v1alpha1\/namespaces\/ws-other-default\/builds\/sample-build\)$/m);
  });
});
