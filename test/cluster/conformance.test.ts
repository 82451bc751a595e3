/**
 * Conformance against a real kube-apiserver (built from source, test/cluster/build.ts), with
 * deploy/crd.yaml (phase and conditions) and each Build's identity as the operator makes it
 * (deploy/build-role.template.yaml rendered for the Build; deploy/operator-layout.yaml in case 6):
 * `spot-run` in in-cluster mode, as
 * the single-file bundle and through tsx, and the library in-process. Every case reads back what
 * the real server stored with the harness's admin identity, and what the service account's
 * requests got from the API server's audit log; some also check `kubectl describe build` and
 * `kubectl get events`. Each case has its own namespace.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { createClient, runTasks, type Task } from '../../lib/index.js';
import { startCluster, type Cluster, type KubeObject, type ServiceAccountFolder } from './harness.js';
import {
  assertOneErrorLine,
  assertOurEvents,
  buildIdentity,
  buildPath,
  clusterTest,
  conditionRows,
  createBuild,
  eventsIn,
  finalAuditEvent,
  IMAGE,
  outputWatch,
  readBuild,
  requestLines,
  requestsOf,
  serviceAccountUser,
  spotRun,
  withoutEvents,
  type BuildIdentityOptions,
  type Entry,
  type StoredBuild,
} from './support.js';

let cluster: Cluster;
let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-conformance-'));
  cluster = await startCluster({ deploy: ['deploy/crd.yaml'] });
});
after(async () => {
  await cluster?.stop();
  await rm(scratch, { recursive: true, force: true });
});

/** `ns/b1` created as the operator does, then its own identity (deploy/build-role.template.yaml rendered for it). */
async function buildWithIdentity(ns: string, options: BuildIdentityOptions = {}): Promise<{ sa: ServiceAccountFolder; build: StoredBuild; objects: KubeObject[] }> {
  await cluster.ensureNamespace(ns);
  const build = await createBuild(cluster, ns, 'b1');
  return { build, ...(await buildIdentity(cluster, build, options)) };
}

/** A step that announces itself and waits until the test creates `<name>.go` in the scratch folder. */
function waitingStep(name: string): string {
  const go = join(scratch, `${name}.go`);
  return `echo "${name} waiting"; while [ ! -e '${go}' ]; do sleep 0.05; done; echo "${name} resumed"`;
}
const release = (name: string) => writeFile(join(scratch, `${name}.go`), '');

const THREE_STEPS: Array<[string, string]> = [
  ['Fetching Source', 'echo cloned'],
  ['Building Image', 'echo built'],
  ['Pushing Image', `echo pushed; printf '%s' '${IMAGE}' > "$SPOT_RESULTS_DIR/image-url"`],
];
const HAPPY_REQUESTS = ['get builds 200', 'patch builds/status 200', 'create events 201', 'patch builds/status 200', 'patch builds/status 200', 'patch builds/status 200', 'create events 201'];

describe('1. success and failure', () => {
  for (const entry of ['bundle', 'tsx'] as Entry[]) {
    clusterTest(() => cluster, `three steps and an image result (${entry}): exit 0, phase Done, status.image stored, 1 GET + 4 merge patches + 2 events`, async () => {
      const ns = `success-${entry}`;
      const { sa, build: created } = await buildWithIdentity(ns);
      const result = await spotRun(sa, `${ns}/b1`, THREE_STEPS, { entry });
      assert.equal(result.code, 0, result.stderr);
      const build = await readBuild(cluster, ns, 'b1');
      assert.equal(build.metadata.uid, created.metadata.uid);
      assert.deepEqual(conditionRows(build), [
        ['Fetching Source', 'Success', 'Succeeded'],
        ['Building Image', 'Success', 'Succeeded'],
        ['Pushing Image', 'Success', 'Succeeded'],
      ]);
      for (const c of build.status!.conditions!) assert.match(c.lastTransitionTime!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(build.status!.phase, 'Done');
      assert.deepEqual(build.status!.image, { url: IMAGE });
      assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= HAPPY_REQUESTS.length), HAPPY_REQUESTS);
      const events = await eventsIn(cluster, ns);
      assertOurEvents(events, build, 'b1-pod');
      assert.deepEqual(events.map((e) => [e.type, e.reason, e.count]), [
        ['Normal', 'Started', 1],
        ['Normal', 'Completed', 1],
      ]);

      if (entry === 'bundle') {
        // What a person looks at: the printer columns, the conditions and the events, by kubectl of the server's version.
        const table = await cluster.kubectlOk(['get', 'builds', '-n', ns]);
        assert.match(table, /^NAME\s+PHASE\s+IMAGE\s+AGE\nb1\s+Done\s+registry\.example\.com\/team\/app:1\.4\.2@sha256:9b2f0c4e\s+\d+s\n$/, table);
        const describeOut = await cluster.kubectlOk(['describe', 'build', 'b1', '-n', ns]);
        assert.match(describeOut, /^Status:\n(?:.*\n)*?\s+Phase:\s+Done\n/m, describeOut);
        assert.match(describeOut, /Type:\s+Pushing Image\n/, describeOut);
        assert.match(describeOut, /Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message\n\s+----.*\n\s+Normal\s+Started\s+\S+\s+spot-runtime\s+Build started: 3 tasks \(Fetching Source, Building Image, Pushing Image\)\n\s+Normal\s+Completed\s+\S+\s+spot-runtime\s+Build completed: 3 tasks in \d+\.\ds\n/, describeOut);
        const kevents = await cluster.kubectlOk(['get', 'events', '-n', ns, '--sort-by=.metadata.creationTimestamp']);
        assert.match(kevents, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\n\S+\s+Normal\s+Started\s+build\/b1\s+Build started: 3 tasks.*\n\S+\s+Normal\s+Completed\s+build\/b1\s+Build completed: 3 tasks in .*\n$/, kevents);
      }
    });
  }

  clusterTest(() => cluster, 'the second step fails: exit 1, Errored, its condition and a Warning event carry the exit code and stderr, step 3 never runs', async () => {
    const ns = 'failure';
    const { sa } = await buildWithIdentity(ns);
    const result = await spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo "npm ERR! missing script: build" >&2; exit 3'],
      ['Pushing Image', `touch '${join(scratch, 'failure-step-3')}'`],
    ]);
    assert.equal(result.code, 1, result.stderr);
    const build = await readBuild(cluster, ns, 'b1');
    assert.deepEqual(conditionRows(build), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Error', 'StepFailed'],
      ['Pushing Image', '', null],
    ]);
    assert.equal(build.status!.phase, 'Errored');
    const message = build.status!.conditions![1]!.message!;
    assert.match(message, /^Building Image failed after \d+\.\ds: exit code 3; last stderr lines:\nnpm ERR! missing script: build$/);
    const events = await eventsIn(cluster, ns);
    assertOurEvents(events, build, 'b1-pod');
    assert.deepEqual(events.map((e) => [e.type, e.reason]), [
      ['Normal', 'Started'],
      ['Warning', 'StepFailed'],
    ]);
    assert.equal(events[1]!.message, message);
    const kevents = await cluster.kubectlOk(['get', 'events', '-n', ns, '--field-selector=type=Warning']);
    assert.match(kevents, /\s+Warning\s+StepFailed\s+build\/b1\s+Building Image failed after \d+\.\ds: exit code 3; last stderr lines:/, kevents);
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= 6), [
      'get builds 200',
      'patch builds/status 200',
      'create events 201',
      'patch builds/status 200',
      'patch builds/status 200',
      'create events 201',
    ]);
  });

  clusterTest(() => cluster, 'the library in-process (createClient in-cluster + runTasks): Done, results stored, the same requests', async () => {
    const ns = 'library';
    const { sa } = await buildWithIdentity(ns);
    const client = await createClient({ env: { ...sa.env, POD_NAME: 'library-pod' }, serviceAccountDir: sa.dir });
    const tasks: Task[] = [
      { type: 'Fetching Source', run: async () => {} },
      { type: 'Building Image', run: async () => {} },
      { type: 'Pushing Image', run: async () => ({ status: { image: { url: IMAGE } } }) },
    ];
    try {
      const outcome = await runTasks(client, { namespace: ns, name: 'b1' }, tasks);
      assert.equal(outcome.outcome, 'done');
      assert.equal(outcome.exitCode, 0);
      assert.equal(outcome.build.status?.phase, 'Done', 'the Build runTasks returns is the stored one');
    } finally {
      await client.close();
    }
    const build = await readBuild(cluster, ns, 'b1');
    assert.equal(build.status!.phase, 'Done');
    assert.deepEqual(build.status!.image, { url: IMAGE });
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= HAPPY_REQUESTS.length), HAPPY_REQUESTS);
  });
});

describe('2. a concurrent writer', () => {
  clusterTest(() => cluster, 'the operator replaces the status (status.pod) between our writes: a real 409, re-read, re-applied; both survive', async () => {
    const ns = 'conflict';
    const { sa } = await buildWithIdentity(ns);
    const watch = outputWatch('conflict waiting');
    const run = spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', waitingStep('conflict')],
      ['Pushing Image', 'echo pushed'],
    ], { onOutput: watch.onOutput });
    await watch.seen;
    // As the Spot operator does: a full status update (PUT) from the object it read.
    const current = await readBuild(cluster, ns, 'b1');
    const pod = { namespace: 'spot-system', name: 'b1-x7k2q' };
    const updated = await cluster.http.expect<typeof current>({
      method: 'PUT',
      path: `${buildPath(ns, 'b1')}/status`,
      body: { ...current, status: { ...current.status, pod } },
    });
    assert.notEqual(updated.metadata.resourceVersion, current.metadata.resourceVersion);
    await release('conflict');
    const result = await run;
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, ns, 'b1');
    assert.deepEqual(build.status!.pod, pod, 'the operator\'s status.pod survives our writes');
    assert.deepEqual(conditionRows(build), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
      ['Pushing Image', 'Success', 'Succeeded'],
    ]);
    assert.equal(build.status!.phase, 'Done');
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= 9), [
      'get builds 200',
      'patch builds/status 200',
      'create events 201',
      'patch builds/status 200',
      'patch builds/status 409',
      'get builds 200',
      'patch builds/status 200',
      'patch builds/status 200',
      'create events 201',
    ]);
  });
});

describe('3. least privilege', () => {
  clusterTest(() => cluster, 'the service account can do exactly what its Role (deploy/build-role.template.yaml, rendered for its Build) grants, and nothing else', async () => {
    const ns = 'privilege';
    const { sa, build, objects } = await buildWithIdentity(ns);
    const role = objects.find((o) => o.kind === 'Role')!;
    type Rule = { verbs: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[] };
    const review = await cluster.http.expect<{ status: { resourceRules: Rule[]; incomplete: boolean } }>({
      method: 'POST',
      path: '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
      token: sa.token,
      body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace: ns } },
    });
    assert.equal(review.status.incomplete, false);
    const shown = (r: Rule) => JSON.stringify({ apiGroups: r.apiGroups, resources: r.resources, resourceNames: r.resourceNames ?? [], verbs: [...r.verbs].sort() });
    // Every authenticated user may ask what it may do (system:basic-user); the rest is the Role.
    const granted = review.status.resourceRules
      .filter((r) => !(r.apiGroups ?? []).every((g) => g === 'authorization.k8s.io' || g === 'authentication.k8s.io'))
      .map(shown)
      .sort();
    assert.deepEqual(granted, (role.rules as Rule[]).map(shown).sort());
    assert.deepEqual((role.rules as Rule[]).filter((r) => r.resources?.some((x) => x.startsWith('builds'))).map((r) => r.resourceNames), [['b1'], ['b1']], 'the Build rules name this Build');

    // And the server says no to what a build pod must not do, another Build of the namespace included.
    const other = await createBuild(cluster, ns, 'b2');
    const attempts: Array<[string, string, unknown?]> = [
      ['PUT', buildPath(ns, 'b1'), { ...build, spec: { image: { name: 'evil' } } }],
      ['DELETE', buildPath(ns, 'b1')],
      ['GET', `/apis/spot.release.com/v1alpha1/namespaces/${ns}/builds`],
      ['POST', `/apis/spot.release.com/v1alpha1/namespaces/${ns}/builds`, { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b3' } }],
      ['GET', `/api/v1/namespaces/${ns}/secrets`],
      ['GET', `/api/v1/namespaces/${ns}/events`],
      ['GET', `/apis/spot.release.com/v1alpha1/namespaces/default/builds/b1`],
      ['GET', buildPath(ns, 'b2')],
      ['PUT', `${buildPath(ns, 'b2')}/status`, { ...other, status: { phase: 'Done' } }],
    ];
    for (const [method, path, body] of attempts) {
      const reply = await cluster.http.send({ method, path, token: sa.token, ...(body ? { body } : {}) });
      assert.equal(reply.status, 403, `${method} ${path} as the builder: ${reply.status} ${reply.text}`);
    }
  });

  clusterTest(() => cluster, 'a step holding the pod\'s token cannot write another Build: its merge patch of b2/status is 403, while the run writes its own Build', async () => {
    const ns = 'isolation';
    const { sa } = await buildWithIdentity(ns);
    const other = await createBuild(cluster, ns, 'b2', undefined, { phase: 'Running' });
    // What a hostile step would do with the files every pod has: the token and CA of its service account.
    const script = join(scratch, 'patch-other-build.mjs');
    await writeFile(script, `import { readFileSync } from 'node:fs';
import { request } from 'node:https';
const [dir, url] = process.argv.slice(2);
const req = request(url, {
  method: 'PATCH',
  ca: readFileSync(dir + '/ca.crt'),
  headers: { authorization: 'Bearer ' + readFileSync(dir + '/token', 'utf8'), 'content-type': 'application/merge-patch+json' },
}, (res) => {
  let body = '';
  res.on('data', (c) => (body += c));
  res.on('end', () => console.log('other Build: ' + res.statusCode + ' ' + JSON.parse(body).reason));
});
req.end(JSON.stringify({ status: { phase: 'Done', image: { url: 'evil.example.com/app:latest' } } }));
`);
    const target = `${cluster.url}${buildPath(ns, 'b2')}/status`;
    const result = await spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', `'${process.execPath}' '${script}' '${sa.dir}' '${target}'`],
      ['Building Image', 'echo built'],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout + result.stderr, /other Build: 403 Forbidden/);
    assert.equal((await readBuild(cluster, ns, 'b1')).status!.phase, 'Done', 'the run wrote its own Build');
    const after = await readBuild(cluster, ns, 'b2');
    assert.equal(after.metadata.resourceVersion, other.metadata.resourceVersion, 'the other Build was not written');
    assert.deepEqual(after.status, { phase: 'Running' });
    const refused = requestLines(await cluster.audit(), (e) => e.user?.username === serviceAccountUser(ns, sa.serviceAccount) && e.objectRef?.name === 'b2');
    assert.deepEqual(refused, ['patch builds/status 403']);
  });

  clusterTest(() => cluster, 'a Role without events: the run still ends Done; the event POSTs were refused (403) and nothing else', async () => {
    const ns = 'noevents';
    const { sa } = await buildWithIdentity(ns, { transform: withoutEvents });
    const result = await spotRun(sa, `${ns}/b1`, THREE_STEPS);
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, ns, 'b1');
    assert.equal(build.status!.phase, 'Done');
    assert.deepEqual(build.status!.image, { url: IMAGE });
    assert.deepEqual(await eventsIn(cluster, ns), []);
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= HAPPY_REQUESTS.length), HAPPY_REQUESTS.map((l) => l.replace('create events 201', 'create events 403')));
    assert.match(result.stderr, /could not record event/);
  });
});

describe('4. token rotation', () => {
  clusterTest(() => cluster, 'the kubelet swaps in a new token and the old one is revoked (its Secret deleted): one real 401, the file is re-read, the run goes on', async () => {
    const ns = 'rotation';
    await cluster.ensureNamespace(ns);
    for (const name of ['token-owner-1', 'token-owner-2']) {
      await cluster.http.expect({ method: 'POST', path: `/api/v1/namespaces/${ns}/secrets`, body: { apiVersion: 'v1', kind: 'Secret', metadata: { name } } });
    }
    const { sa } = await buildWithIdentity(ns, { boundSecret: 'token-owner-1' });
    const oldToken = sa.token;
    const watch = outputWatch('rotation waiting');
    const run = spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', waitingStep('rotation')],
      ['Building Image', 'echo built'],
    ], { onOutput: watch.onOutput });
    await watch.seen;
    await sa.rotate(await cluster.mintToken(ns, sa.serviceAccount, { boundSecret: 'token-owner-2' }));
    await cluster.http.expect({ method: 'DELETE', path: `/api/v1/namespaces/${ns}/secrets/token-owner-1` });
    // kube-apiserver caches a token's authentication for 10 s: wait until the old token is refused.
    const deleted = Date.now();
    for (;;) {
      const r = await cluster.http.send({ method: 'GET', path: buildPath(ns, 'b1'), token: oldToken });
      if (r.status === 401) break;
      assert.ok(Date.now() - deleted < 20_000, `the old token is still accepted 20 s after its Secret was deleted: ${r.status}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const before401 = (await cluster.audit()).length;
    await release('rotation');
    const result = await run;
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, ns, 'b1');
    assert.equal(build.status!.phase, 'Done');
    assert.deepEqual(conditionRows(build), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
    ]);
    // After the swap: exactly one request was refused (the old token), then the same write went through.
    const after = (await cluster.audit()).slice(before401).filter((e) => finalAuditEvent(e) && e.requestURI.includes(`/namespaces/${ns}/`));
    const lines = after.map((e) => `${e.verb} ${e.requestURI.replace(/\?.*$/, '').replace(`/namespaces/${ns}/`, '/…/')} ${e.responseStatus?.code} ${e.user?.username ?? '(unauthenticated)'}`);
    assert.deepEqual(lines.slice(0, 2), [
      `patch /apis/spot.release.com/v1alpha1/…/builds/b1/status 401 (unauthenticated)`,
      `patch /apis/spot.release.com/v1alpha1/…/builds/b1/status 200 ${serviceAccountUser(ns, sa.serviceAccount)}`,
    ], lines.join('\n'));
    assert.equal(lines.filter((l) => / 401 /.test(l)).length, 1, lines.join('\n'));
  });
});

describe('5. interruptions', () => {
  clusterTest(() => cluster, 'SIGTERM during a step: exit 143, the step Error/Terminated, phase Errored, a Warning event', async () => {
    const ns = 'sigterm';
    const { sa } = await buildWithIdentity(ns);
    const watch = outputWatch('sigterm waiting');
    let child: import('node:child_process').ChildProcess | undefined;
    const run = spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', waitingStep('sigterm')],
      ['Pushing Image', 'echo pushed'],
    ], { onOutput: watch.onOutput, onSpawn: (c) => (child = c) });
    await watch.seen;
    child!.kill('SIGTERM');
    const result = await run;
    await release('sigterm');
    assert.equal(result.code, 143, result.stderr);
    const build = await readBuild(cluster, ns, 'b1');
    assert.deepEqual(conditionRows(build), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Error', 'Terminated'],
      ['Pushing Image', '', null],
    ]);
    assert.equal(build.status!.phase, 'Errored');
    const events = await eventsIn(cluster, ns);
    assertOurEvents(events, build, 'b1-pod');
    assert.deepEqual(events.map((e) => [e.type, e.reason]), [
      ['Normal', 'Started'],
      ['Warning', 'Terminated'],
    ]);
  });

  clusterTest(() => cluster, 'the Build is deleted during a step: the next write gets a real 404, exit 3 with one clear line', async () => {
    const ns = 'deleted';
    const { sa } = await buildWithIdentity(ns);
    const watch = outputWatch('deleted waiting');
    const run = spotRun(sa, `${ns}/b1`, [
      ['Fetching Source', waitingStep('deleted')],
      ['Building Image', 'echo built'],
    ], { onOutput: watch.onOutput });
    await watch.seen;
    await cluster.http.expect({ method: 'DELETE', path: buildPath(ns, 'b1') });
    await release('deleted');
    const result = await run;
    assert.equal(result.code, 3, result.stderr);
    assertOneErrorLine(result.stderr, new RegExp(`^spot-run: cannot report Build ${ns}/b1 to the API server at https://127\\.0\\.0\\.1:\\d+: .*not found`));
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.includes('patch builds/status 404')), [
      'get builds 200',
      'patch builds/status 200',
      'create events 201',
      'patch builds/status 404',
    ]);
  });
});

describe('6. the Spot operator\'s layout', () => {
  /** Runs THREE_STEPS on `workspace/b1` as `sa` (in spot-system): Done, image stored, status and events in the workspace only. */
  async function runInWorkspace(sa: ServiceAccountFolder, workspace: string, created: StoredBuild): Promise<void> {
    const result = await spotRun(sa, `${workspace}/b1`, THREE_STEPS);
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, workspace, 'b1');
    assert.equal(build.metadata.uid, created.metadata.uid);
    assert.equal(build.status!.phase, 'Done');
    assert.deepEqual(build.status!.image, { url: IMAGE });
    const events = await eventsIn(cluster, workspace);
    assertOurEvents(events, build, 'b1-pod');
    assert.deepEqual(events.map((e) => e.reason), ['Started', 'Completed']);
    assert.deepEqual((await eventsIn(cluster, 'spot-system')).filter((e) => e.involvedObject.name === 'b1'), [], 'nothing is written in the pod\'s own namespace');
    assert.deepEqual(await requestsOf(cluster, sa, (l) => l.length >= HAPPY_REQUESTS.length), HAPPY_REQUESTS);
  }

  clusterTest(() => cluster, 'deploy/operator-layout.yaml: spot-builder in spot-system, the ClusterRole bound in workspace-a: status and events go to the Build\'s namespace', async () => {
    const workspace = 'workspace-a';
    await cluster.applyDeploy(['deploy/operator-layout.yaml']);
    const sa = await cluster.serviceAccountFolder('spot-system', 'spot-builder');
    await runInWorkspace(sa, workspace, await createBuild(cluster, workspace, 'b1'));
    // The cost the file documents: any Build of a bound workspace, none elsewhere.
    const other = await createBuild(cluster, workspace, 'b2');
    const write = (ns: string) => cluster.http.send({ method: 'PATCH', path: `${buildPath(ns, 'b2')}/status`, token: sa.token, contentType: 'application/merge-patch+json', body: { status: { phase: 'Running' } } });
    assert.equal((await write(workspace)).status, 200, 'another Build in the bound workspace is writable (the layout\'s documented cost)');
    await cluster.ensureNamespace('workspace-unbound');
    await createBuild(cluster, 'workspace-unbound', 'b2');
    assert.equal((await write('workspace-unbound')).status, 403, 'a workspace without the RoleBinding is out of reach');
    assert.ok(other.metadata.uid, 'b2 was created');
  });

  clusterTest(() => cluster, 'deploy/build-role.template.yaml with the pod in spot-system: the Build\'s own ServiceAccount there, its Role in the workspace', async () => {
    const workspace = 'workspace-b';
    await cluster.ensureNamespace(workspace);
    const created = await createBuild(cluster, workspace, 'b1');
    const { sa, objects } = await buildIdentity(cluster, created, { serviceAccountNamespace: 'spot-system' });
    assert.deepEqual(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`), [
      'ServiceAccount spot-system/spot-build-b1',
      `Role ${workspace}/spot-build-b1`,
      `RoleBinding ${workspace}/spot-build-b1`,
    ]);
    await runInWorkspace(sa, workspace, created);
    await createBuild(cluster, workspace, 'b2');
    const reply = await cluster.http.send({ method: 'PATCH', path: `${buildPath(workspace, 'b2')}/status`, token: sa.token, contentType: 'application/merge-patch+json', body: { status: { phase: 'Done' } } });
    assert.equal(reply.status, 403, `another Build of the workspace: ${reply.status} ${reply.text}`);
  });
});
