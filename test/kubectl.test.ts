/**
 * The installed kubectl against the local API server, through the kubeconfig the server writes:
 * what a platform engineer types first (get, get -o yaml, describe, get events, get -w). kubectl
 * finds its way by itself (discovery, Table output, field selectors, watch), so these tests
 * fail when the server answers anything kubectl does not accept. Skipped when kubectl is missing.
 */
import * as assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { parse as parseYaml } from 'yaml';

import type { Build } from '../lib/types.js';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';

const run = promisify(execFile);
const kubectlMissing = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).error !== undefined;
const skip = kubectlMissing ? 'kubectl is not installed' : false;

interface Cluster {
  server: ApiServer;
  /** kubectl's discovery cache, per test run, so ~/.kube/cache is left alone. */
  cacheDir: string;
}

function useCluster(crd: 'conditions' | 'spot'): Cluster {
  const cluster = {} as Cluster;
  before(async () => {
    cluster.server = await startApiServer({ crd });
    cluster.cacheDir = await mkdtemp(join(tmpdir(), 'kubectl-cache-'));
  });
  after(async () => {
    await cluster.server.stop();
    await rm(cluster.cacheDir, { recursive: true, force: true });
  });
  return cluster;
}

async function kubectl(cluster: Cluster, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('kubectl', [...args, '--cache-dir', cluster.cacheDir], {
    env: { ...process.env, KUBECONFIG: cluster.server.kubeconfigPath },
    timeout: 20_000,
  });
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An Event about `build`, posted as spot-runtime posts them (service-account token, core/v1). */
async function postEvent(server: ApiServer, build: Build, name: string, reason: string, message: string): Promise<void> {
  const agent = new Agent({ connect: { ca: server.caPem } });
  try {
    const { namespace } = build.metadata;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const response = await request(`${server.url}/api/v1/namespaces/${namespace}/events`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        metadata: { name, namespace },
        involvedObject: { apiVersion: build.apiVersion, kind: build.kind, name: build.metadata.name, namespace, uid: build.metadata.uid },
        reason,
        message,
        type: 'Normal',
        source: { component: 'spot-runtime', host: 'sample-build-pod' },
        reportingComponent: 'spot-runtime',
        reportingInstance: 'sample-build-pod',
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      }),
    });
    assert.equal(response.statusCode, 201, await response.body.text());
  } finally {
    await agent.destroy();
  }
}

/** Splits kubectl's table output into rows of cells (columns are separated by two or more spaces). */
const rows = (stdout: string) => stdout.trim().split('\n').map((line) => line.trim().split(/\s{2,}/));

describe('kubectl against the local API server (deploy/crd.yaml)', { skip, timeout: 90_000 }, () => {
  const cluster = useCluster('conditions');
  let sample: Build;
  before(async () => {
    const { server } = cluster;
    sample = server.createBuild({ name: 'sample-build', spec: { image: { name: 'team/app', tag: '1.0.0' } }, status: { phase: 'Running' } });
    server.createBuild({ namespace: 'team-a', name: 'other-build' });
    await postEvent(server, sample, 'sample-build.1', 'Started', 'Build started: 2 tasks (Fetch, Build)');
    await postEvent(server, sample, 'sample-build.2', 'StepSucceeded', 'Fetch succeeded in 1.0s');
  });

  test('get builds -A: every namespace, with the CRD printer columns, and nothing on stderr', async () => {
    const { stdout, stderr } = await kubectl(cluster, 'get', 'builds', '-A');
    assert.equal(stderr, '', 'no discovery or printing warnings');
    const [header, ...table] = rows(stdout);
    assert.deepEqual(header, ['NAMESPACE', 'NAME', 'PHASE', 'IMAGE', 'AGE']);
    assert.equal(table.length, 2);
    assert.match(table[0]?.join('  ') ?? '', /^default  sample-build  Running  \d+s$/);
    // A cell the server leaves null (no phase, no image yet) prints blank.
    assert.match(table[1]?.join('  ') ?? '', /^team-a  other-build  \d+s$/);
    const short = await kubectl(cluster, 'get', 'bld', '-n', 'team-a', '-o', 'name');
    assert.equal(short.stdout, 'build.spot.release.com/other-build\n', 'the short name from discovery');
  });

  test('get build NAME -o yaml: the stored object', async () => {
    const { stdout } = await kubectl(cluster, 'get', 'build', 'sample-build', '-o', 'yaml');
    const shown = parseYaml(stdout) as Build;
    assert.deepEqual(shown, cluster.server.getBuild('default', 'sample-build'));
  });

  test("describe build: the object, then its events found by kubectl's involvedObject field selector", async () => {
    const { stdout } = await kubectl(cluster, 'describe', 'build', 'sample-build');
    assert.match(stdout, /^Name:\s+sample-build$/m);
    assert.match(stdout, /^Kind:\s+Build$/m);
    assert.match(stdout, /^\s+Phase:\s+Running$/m);
    const events = stdout.slice(stdout.indexOf('\nEvents:'));
    assert.match(events, /Normal\s+Started\s+\d+s\s+spot-runtime\s+Build started: 2 tasks \(Fetch, Build\)/);
    assert.match(events, /Normal\s+StepSucceeded\s+\d+s\s+spot-runtime\s+Fetch succeeded in 1\.0s/);
    const search = cluster.server.requests.find((r) => r.path === '/api/v1/namespaces/default/events' && r.query.includes('fieldSelector'));
    assert.ok(search, 'kubectl searched the events by field selector');
    assert.match(decodeURIComponent(search.query), new RegExp(`involvedObject\\.uid=${sample.metadata.uid ?? ''}`));
  });

  test("get events: the Event printer's columns", async () => {
    const { stdout } = await kubectl(cluster, 'get', 'events');
    const [header, ...table] = rows(stdout);
    assert.deepEqual(header, ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']);
    assert.deepEqual(table.map((r) => r.slice(1)), [
      ['Normal', 'Started', 'build/sample-build', 'Build started: 2 tasks (Fetch, Build)'],
      ['Normal', 'StepSucceeded', 'build/sample-build', 'Fetch succeeded in 1.0s'],
    ]);
  });

  test('get builds -w: a row per change, so the phase is seen to move', async () => {
    const { server } = cluster;
    server.createBuild({ name: 'watched-build' });
    const child = spawn('kubectl', ['get', 'builds', '-w', '--cache-dir', cluster.cacheDir], { env: { ...process.env, KUBECONFIG: server.kubeconfigPath } });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const phases = () => rows(stdout).filter((r) => r[0] === 'watched-build').map((r) => (r[1]?.match(/^\d+s$/) ? '' : r[1]));
    try {
      await waitFor(() => phases().length === 1, 'the first listing');
      server.setBuildStatus('default', 'watched-build', { phase: 'Running' });
      await waitFor(() => phases().length === 2, 'the Running row');
      server.setBuildStatus('default', 'watched-build', { phase: 'Done', image: { url: 'registry.example.com/team/app:1' } });
      await waitFor(() => phases().length === 3, 'the Done row');
      assert.deepEqual(phases(), ['', 'Running', 'Done']);
      assert.match(stdout, /watched-build\s+Done\s+registry\.example\.com\/team\/app:1\s+\d+s/);
    } finally {
      child.kill();
    }
  });
});

describe('kubectl against the local API server (deploy/spot-crd.yaml)', { skip, timeout: 60_000 }, () => {
  const cluster = useCluster('spot');

  test('get builds -A shows the Stage column the published CRD declares', async () => {
    cluster.server.createBuild({ namespace: 'workspace-a', name: 'sample-build', status: { stage: 'Running', pod: { name: 'p', namespace: 'spot-system' } } });
    const { stdout } = await kubectl(cluster, 'get', 'builds', '-A');
    assert.deepEqual(rows(stdout), [['NAMESPACE', 'NAME', 'STAGE'], ['workspace-a', 'sample-build', 'Running']]);
  });
});
