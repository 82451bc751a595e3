/**
 * Case 7: the published Spot CRD (deploy/spot-crd.yaml: status.stage, no conditions, unknown
 * fields pruned) on a real kube-apiserver of its own (both CRDs are named
 * builds.spot.release.com), in the operator's layout (service account in spot-system, the Build
 * in a workspace namespace, as deploy/spot-sample-build.yaml). The run must end with the stage the
 * operator waits for and the image it copies, whatever the server pruned on the way.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster, type ServiceAccountFolder } from './harness.js';
import { assertOurEvents, buildPath, clusterTest, eventsIn, finalAuditEvent, IMAGE, operatorLayout, readBuild, spotRun, type StoredBuild } from './support.js';

let cluster: Cluster;
const WORKSPACE = 'workspace-a';
let sa: ServiceAccountFolder;

before(async () => {
  cluster = await startCluster({ deploy: ['deploy/spot-crd.yaml'] });
  await cluster.applyDeploy(['deploy/rbac.yaml'], operatorLayout(WORKSPACE));
  sa = await cluster.serviceAccountFolder('spot-system', 'spot-builder');
});
after(async () => {
  await cluster?.stop();
});

const TODO = 'needs issue 11 (the runtime detects status.stage and writes it; --phase-field)';


/** deploy/spot-sample-build.yaml under another name, and the operator's first status write (pod started, stage Running). */
async function operatorStartedBuild(name: string, stage: 'Running' | undefined = 'Running'): Promise<StoredBuild> {
  const [created] = await cluster.applyDeploy(['deploy/spot-sample-build.yaml'], {
    namespaces: { 'workspace-a': WORKSPACE },
    transform: (o) => ({ ...o, metadata: { ...o.metadata, name } }),
  });
  assert.ok(created, 'the sample Build was applied');
  const build = await readBuild(cluster, WORKSPACE, name);
  if (stage === undefined) return build;
  return cluster.http.expect<StoredBuild>({
    method: 'PUT',
    path: `${buildPath(WORKSPACE, name)}/status`,
    body: { ...build, status: { stage, pod: { name: `${name}-x7k2q`, namespace: 'spot-system' } } },
  });
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

  clusterTest(() => cluster, 'success: the stage ends Done and the image is stored; conditions are pruned and progress lives in events', async () => {
    const started = await operatorStartedBuild('success');
    const result = await spotRun(sa, `${WORKSPACE}/success`, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo built'],
      ['Pushing Image', `printf '%s' '${IMAGE}' > "$SPOT_RESULTS_DIR/image-url"`],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, WORKSPACE, 'success');
    assert.deepEqual(build.status, { stage: 'Done', pod: started.status!.pod, image: { url: IMAGE } });
    const events = await eventsIn(cluster, WORKSPACE);
    const ours = events.filter((e) => e.involvedObject.name === 'success');
    assertOurEvents(ours, build, 'success-pod');
    assert.deepEqual(ours.map((e) => [e.type, e.reason]), [
      ['Normal', 'Started'],
      ['Normal', 'Completed'],
    ]);
    const table = await cluster.kubectlOk(['get', 'builds', 'success', '-n', WORKSPACE]);
    assert.match(table, /^NAME\s+STAGE\nsuccess\s+Done\n$/, table);
  }, { todo: TODO });

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
  }, { todo: TODO });

  clusterTest(() => cluster, 'a Build the operator has not started yet (no status): --phase-field stage writes the stage', async () => {
    await operatorStartedBuild('fresh', undefined);
    const result = await spotRun(sa, `${WORKSPACE}/fresh`, [['Building Image', 'echo built']], { args: ['--phase-field', 'stage'] });
    assert.equal(result.code, 0, result.stderr);
    const build = await readBuild(cluster, WORKSPACE, 'fresh');
    assert.equal(build.status!.stage, 'Done');
    const refused = (await cluster.audit()).filter((e) => finalAuditEvent(e) && e.objectRef?.name === 'fresh' && (e.responseStatus?.code ?? 0) >= 400);
    assert.deepEqual(refused.map((e) => `${e.verb} ${e.responseStatus?.code}`), [], 'no write about the Build was refused');
  }, { todo: TODO });
});
