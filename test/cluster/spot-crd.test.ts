/**
 * Case 7: the published Spot CRD (deploy/spot-crd.yaml: status.stage, no conditions, unknown
 * fields pruned) on a real kube-apiserver of its own (both CRDs are named
 * builds.spot.release.com), in the operator's layout (deploy/operator-layout.yaml: the service
 * account spot-builder in spot-system, the Build in workspace-a, as deploy/spot-sample-build.yaml).
 * The run must end with the stage the operator waits for and the image it copies, whatever the
 * server pruned on the way.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster, type ServiceAccountFolder } from './harness.js';
import { assertOurEvents, buildPath, byUser, clusterTest, eventsIn, IMAGE, readBuild, requestLines, serviceAccountUser, spotRun, type StoredBuild } from './support.js';

let cluster: Cluster;
const WORKSPACE = 'workspace-a';
let sa: ServiceAccountFolder;
/** What a push step reports (image-url, image-digest) and the operator copies into the Workspace. */
const URL = 'registry.example.com/team/app:1.4.2';
const DIGEST = `sha256:${'9b2f0c4e'.repeat(8)}`;

before(async () => {
  cluster = await startCluster({ deploy: ['deploy/spot-crd.yaml'] });
  await cluster.applyDeploy(['deploy/operator-layout.yaml']);
  sa = await cluster.serviceAccountFolder('spot-system', 'spot-builder');
});
after(async () => {
  await cluster?.stop();
});


/** deploy/spot-sample-build.yaml under another name, and the operator's first status write (pod started, stage Running); `null`: none yet. */
async function operatorStartedBuild(name: string, stage: 'Running' | null = 'Running'): Promise<StoredBuild> {
  const [created] = await cluster.applyDeploy(['deploy/spot-sample-build.yaml'], {
    namespaces: { 'workspace-a': WORKSPACE },
    transform: (o) => ({ ...o, metadata: { ...o.metadata, name } }),
  });
  assert.ok(created, 'the sample Build was applied');
  const build = await readBuild(cluster, WORKSPACE, name);
  if (stage === null) return build;
  return cluster.http.expect<StoredBuild>({
    method: 'PUT',
    path: `${buildPath(WORKSPACE, name)}/status`,
    body: { ...build, status: { stage, pod: { name: `${name}-x7k2q`, namespace: 'spot-system' } } },
  });
}

/** The builder's requests about Build `name` and its events (named `<name>.<hex>`), as `VERB resource CODE` lines. */
async function requestsAbout(name: string, count: number): Promise<string[]> {
  const match = (e: Parameters<ReturnType<typeof byUser>>[0]) => byUser(serviceAccountUser(sa.namespace, sa.serviceAccount))(e) && (e.objectRef?.name ?? '').startsWith(name);
  return requestLines(await cluster.audit((all) => requestLines(all, match).length >= count), match);
}

describe('the published Spot CRD on the real server', () => {
  clusterTest(() => cluster, 'what the schema lacks is pruned silently (200), an unknown stage is 422', async () => {
    const build = await operatorStartedBuild('pruning');
    const reply = await cluster.http.send({
      method: 'PATCH',
      path: `${buildPath(WORKSPACE, 'pruning')}/status`,
      contentType: 'application/merge-patch+json',
      body: { status: { phase: 'Done', conditions: [{ type: 'Building Image', status: 'Success' }], image: { url: IMAGE, metadata: { a: 'b' } } } },
    });
    assert.equal(reply.status, 200, reply.text);
    const stored = await readBuild(cluster, WORKSPACE, 'pruning');
    assert.deepEqual(stored.status, { stage: 'Running', pod: build.status!.pod, image: { url: IMAGE } });
    const invalid = await cluster.http.send({
      method: 'PATCH',
      path: `${buildPath(WORKSPACE, 'pruning')}/status`,
      contentType: 'application/merge-patch+json',
      body: { status: { stage: 'Finished' } },
    });
    assert.equal(invalid.status, 422, invalid.text);
    assert.match((invalid.body as { message: string }).message, /status\.stage: Unsupported value: "Finished": supported values: "Running", "Done", "Errored"/);
  });

  clusterTest(() => cluster, 'success: the stage ends Done and the image url and digest are stored; conditions are pruned and progress lives in events', async () => {
    const started = await operatorStartedBuild('success');
    const result = await spotRun(sa, `${WORKSPACE}/success`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo built'],
      ['Pushing Image', `printf '%s' '${URL}' > "$SPOT_RESULTS_DIR/image-url"; printf '%s' '${DIGEST}' > "$SPOT_RESULTS_DIR/image-digest"`],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, WORKSPACE, 'success');
    assert.deepEqual(build.status, { stage: 'Done', pod: started.status!.pod, image: { url: URL, digest: DIGEST } });
    const events = await eventsIn(cluster, WORKSPACE);
    const ours = events.filter((e) => e.involvedObject.name === 'success');
    assertOurEvents(ours, build, 'success-pod');
    assert.deepEqual(ours.map((e) => [e.type, e.reason]), [
      ['Normal', 'Started'],
      ...['Fetching Source', 'Building Image', 'Pushing Image'].flatMap(() => [['Normal', 'TaskStarted'], ['Normal', 'TaskSucceeded']]),
      ['Normal', 'Completed'],
    ]);
    // The conditions are sent once (and pruned), then only what the CRD keeps: 2 writes for 3 steps.
    assert.deepEqual(await requestsAbout('success', 11), [
      'get builds 200',
      'patch builds/status 200',
      ...Array(6).fill('create events 201'),
      'patch builds/status 200',
      'create events 201',
      'create events 201',
    ]);
    const table = await cluster.kubectlOk(['get', 'builds', 'success', '-n', WORKSPACE]);
    assert.match(table, /^NAME\s+STAGE\nsuccess\s+Done\n$/, table);
  });

  clusterTest(() => cluster, 'failure: the stage ends Errored, exit 1, a Warning event with the exit code', async () => {
    await operatorStartedBuild('failure');
    const result = await spotRun(sa, `${WORKSPACE}/failure`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'exit 4'],
    ]);
    assert.equal(result.code, 1, result.stderr);
    const build = await readBuild(cluster, WORKSPACE, 'failure');
    assert.equal(build.status!.stage, 'Errored');
    assert.equal(build.status!.conditions, undefined, 'pruned by the server');
    const warning = (await eventsIn(cluster, WORKSPACE)).find((e) => e.involvedObject.name === 'failure' && e.type === 'Warning');
    assert.ok(warning, 'a Warning event');
    assert.match(warning.message, /exit code 4/);
  });

  clusterTest(() => cluster, 'a Build the operator has not started yet (no status), no --phase-field: the real 422 (stage required) moves the phase to stage; Done', async () => {
    assert.equal((await operatorStartedBuild('unstarted', null)).status, undefined, 'no status yet');
    const result = await spotRun(sa, `${WORKSPACE}/unstarted`, [['Building Image', 'echo built']]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /this Build's CRD requires status\.stage: the phase is written there/);
    const build = await readBuild(cluster, WORKSPACE, 'unstarted');
    assert.deepEqual(build.status, { stage: 'Done' });
    assert.deepEqual((await requestsAbout('unstarted', 4)).filter((l) => / 4\d\d$/.test(l)), ['patch builds/status 422'], 'the guess was refused once');
  });

  clusterTest(() => cluster, 'a Build the operator has not started yet (no status): --phase-field stage writes the stage', async () => {
    assert.equal((await operatorStartedBuild('fresh', null)).status, undefined, 'no status yet');
    const result = await spotRun(sa, `${WORKSPACE}/fresh`, [['Building Image', 'echo built']], { args: ['--phase-field', 'stage'] });
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, WORKSPACE, 'fresh');
    assert.equal(build.status!.stage, 'Done');
    const refused = (await requestsAbout('fresh', 3)).filter((l) => !/ 20\d$/.test(l));
    assert.deepEqual(refused, [], 'no request of the builder was refused');
  });
});
