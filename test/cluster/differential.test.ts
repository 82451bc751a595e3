/**
 * The stand-in (scripts/apiserver, what `npm test` runs against) follows the real one: the same
 * script of requests goes to a real kube-apiserver (deploy/crd.yaml, deploy/build-role.template.yaml
 * rendered for b1) and to `startApiServer` (with buildRoleRules('b1')), as b1's service account, each step from
 * the same stored state; the answers are compared: status code, content type, and for a Status
 * its reason, code, message and details (causes included); for an object its shape (every key,
 * recursively) and its spec and status values (so pruning shows).
 *
 * A difference is either fixed in the stand-in or listed in KNOWN with why it stays; a KNOWN entry
 * that no longer shows fails too, so the list stays true.
 */
import { strict as assert } from 'node:assert';
import { after, before } from 'node:test';
import { buildRoleRules, startApiServer, type ApiServer } from '../../scripts/apiserver/server.js';
import { startCluster, type Cluster, type ServiceAccountFolder } from './harness.js';
import { KubeHttp, type KubeReply } from './kube.js';
import { buildIdentity, buildPath, clusterTest, createBuild } from './support.js';

const NS = 'diff';
const STATUS = `${buildPath(NS, 'b1')}/status`;
const EVENTS = `/api/v1/namespaces/${NS}/events`;
const SPEC = { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } }, source: { git: 'https://example.com/app.git' } };
const RUNNING = { phase: 'Running', conditions: [{ type: 'Building Image', status: 'In Progress', lastTransitionTime: '2025-06-01T10:00:05Z' }] };

/** Differences that stay, each with its reason. Keys are `step: what`. None at the moment. */
const KNOWN: Record<string, string> = {};

let cluster: Cluster;
let sa: ServiceAccountFolder;
let standIn: ApiServer;
let standInHttp: KubeHttp;

before(async () => {
  cluster = await startCluster({ deploy: ['deploy/crd.yaml'] });
  await cluster.ensureNamespace(NS);
  // b1's identity as the operator makes it. The steps below delete and create b1 again: its Role
  // names it, so it still applies (the owner reference's uid goes stale; no garbage collector runs here).
  ({ sa } = await buildIdentity(cluster, await createBuild(cluster, NS, 'b1')));
  standIn = await startApiServer({ namespace: NS, serviceAccount: sa.serviceAccount });
  // The same Role, bound in NS only (a Role is namespaced; the stand-in's rules are not unless told).
  standIn.setPermissions(standIn.token, buildRoleRules('b1').map((r) => ({ ...r, namespaces: [NS] })));
  // The stand-in's certificate is its own; the client certificate is not used (it has no such auth).
  standInHttp = new KubeHttp(standIn.url, { ca: standIn.caPem, cert: '', key: '' });
});
after(async () => {
  await standInHttp?.close();
  await standIn?.stop();
  await cluster?.stop();
});

interface Target {
  name: 'real' | 'stand-in';
  send(req: { method: string; path: string; body?: unknown; contentType?: string; token?: string | null }): Promise<KubeReply>;
  /** Deletes ns/b1 (if there) and creates it with SPEC and `status`; resolves to its resourceVersion. */
  seed(status?: unknown): Promise<string>;
  /** Deletes ns/b1 (if there). */
  remove(): Promise<void>;
}

function realTarget(): Target {
  return {
    name: 'real',
    send: ({ token, ...req }) => cluster.http.send({ ...req, ...(token === null ? { anonymous: true } : { token: token ?? sa.token }) }),
    async seed(status) {
      await this.remove();
      const b = await createBuild(cluster, NS, 'b1', SPEC, status);
      return b.metadata.resourceVersion as string;
    },
    async remove() {
      await cluster.http.send({ method: 'DELETE', path: buildPath(NS, 'b1') });
      for (let i = 0; (await cluster.http.send({ method: 'GET', path: buildPath(NS, 'b1') })).status !== 404; i++) {
        if (i > 100) throw new Error('b1 is not going away');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

function standInTarget(): Target {
  return {
    name: 'stand-in',
    send: ({ token, ...req }) => standInHttp.send({ ...req, ...(token === null ? { anonymous: true } : { token: token ?? standIn.token }) }),
    async remove() {
      standIn.deleteBuild(NS, 'b1');
    },
    async seed(status) {
      standIn.deleteBuild(NS, 'b1');
      const b = standIn.createBuild({ namespace: NS, name: 'b1', spec: structuredClone(SPEC) as never, ...(status ? { status: structuredClone(status) as never } : {}) });
      return b.metadata.resourceVersion!;
    },
  };
}

interface Step {
  name: string;
  /** Seed b1 first (with this status; `true` for none; `null`: b1 deleted). */
  seed?: unknown;
  method: string;
  path: string;
  /** `$RV` is replaced by the seeded resourceVersion, `$STALE` by an older one. */
  body?: unknown;
  contentType?: string;
  /** null: no Authorization header; a string: that bearer token; default: the service account's. */
  token?: string | null;
}

const MERGE = 'application/merge-patch+json';
const JSONPATCH = 'application/json-patch+json';
const event = (name: string | undefined, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Event',
  metadata: { ...(name ? { name } : {}), namespace: NS },
  involvedObject: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: 'b1', namespace: NS },
  reason: 'Started',
  message: 'Build started',
  type: 'Normal',
  source: { component: 'spot-runtime' },
  reportingComponent: 'spot-runtime',
  reportingInstance: 'b1-pod',
  firstTimestamp: '2025-06-01T10:00:00Z',
  lastTimestamp: '2025-06-01T10:00:00Z',
  count: 1,
  ...extra,
});
const condition = (extra: Record<string, unknown>) => ({ type: 'Building Image', status: 'Success', lastTransitionTime: '2025-06-01T10:05:00Z', ...extra });

const SCRIPT: Step[] = [
  // Reads and who may do what
  { name: 'GET the Build', seed: RUNNING, method: 'GET', path: buildPath(NS, 'b1') },
  { name: 'GET a missing Build (its Role names b1 only)', method: 'GET', path: buildPath(NS, 'missing') },
  { name: 'merge patch of another Build\'s status (its Role names b1 only)', method: 'PATCH', path: `${buildPath(NS, 'b2')}/status`, contentType: 'application/merge-patch+json', body: { status: { phase: 'Done' } } },
  { name: 'GET in a group nobody serves', method: 'GET', path: `/apis/nothing.example.com/v1/namespaces/${NS}/things/x` },
  { name: 'GET a version of the group nobody serves', method: 'GET', path: '/apis/spot.release.com/v9' },
  { name: 'GET a core version nobody serves', method: 'GET', path: '/api/v9' },
  { name: 'GET discovery without a token', method: 'GET', path: '/apis', token: null },
  { name: 'GET a Build in another namespace (no Role there)', method: 'GET', path: buildPath('default', 'b1') },
  { name: 'LIST Builds (not granted)', method: 'GET', path: `/apis/spot.release.com/v1alpha1/namespaces/${NS}/builds` },
  { name: 'GET with a token the server never issued', method: 'GET', path: buildPath(NS, 'b1'), token: 'not-a-token' },
  { name: 'GET without a token', method: 'GET', path: buildPath(NS, 'b1'), token: null },
  { name: 'GET with an empty bearer token', method: 'GET', path: buildPath(NS, 'b1'), token: '' },
  { name: 'PUT the main resource (not granted)', seed: RUNNING, method: 'PUT', path: buildPath(NS, 'b1'), body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS, resourceVersion: '$RV' }, spec: {} } },
  { name: 'PATCH the main resource (not granted)', method: 'PATCH', path: buildPath(NS, 'b1'), body: { spec: { image: { tag: 'x' } } }, contentType: MERGE },
  { name: 'DELETE the Build (not granted)', method: 'DELETE', path: buildPath(NS, 'b1') },
  { name: 'GET events (not granted)', method: 'GET', path: EVENTS },

  // PUT /status
  { name: 'PUT /status without a resourceVersion', seed: RUNNING, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS }, status: { phase: 'Done' } } },
  { name: 'PUT /status with a stale resourceVersion', seed: RUNNING, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS, resourceVersion: '$STALE' }, status: { phase: 'Done' } } },
  { name: 'PUT /status: spec and labels in the body are ignored, status replaced', seed: RUNNING, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS, resourceVersion: '$RV', labels: { a: 'b' } }, spec: { image: { name: 'other' } }, status: { phase: 'Done', conditions: [condition({ reason: 'Succeeded' })] } } },
  { name: 'PUT /status without a status key deletes the status', seed: RUNNING, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS, resourceVersion: '$RV' } } },
  { name: 'PUT /status with another name in the body', seed: RUNNING, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b2', namespace: NS, resourceVersion: '$RV' }, status: {} } },
  { name: 'PUT /status of a deleted Build', seed: null, method: 'PUT', path: STATUS, body: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: NS, resourceVersion: '1' }, status: {} } },

  // PATCH /status: merge
  { name: 'merge patch with the resourceVersion precondition', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { metadata: { resourceVersion: '$RV' }, status: { phase: 'Done', conditions: [condition({ reason: 'Succeeded' })], image: { url: 'registry.example.com/team/app:1.4.2' } } } },
  { name: 'merge patch with a stale resourceVersion', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { metadata: { resourceVersion: '$STALE' }, status: { phase: 'Done' } } },
  { name: 'merge patch that changes nothing (no new resourceVersion)', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { phase: 'Running' } } },
  { name: 'merge patch of a deleted Build', seed: null, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { phase: 'Done' } } },
  { name: 'GET a deleted Build', seed: null, method: 'GET', path: buildPath(NS, 'b1') },
  { name: 'merge patch: phase not in the enum', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { phase: 'Finished' } } },
  { name: 'merge patch: phase of the wrong type', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { phase: 5 } } },
  { name: 'merge patch: a condition without its required type', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { conditions: [{ status: 'Success' }] } } },
  { name: 'merge patch: a condition status not in the enum', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { conditions: [condition({ status: 'Done' })] } } },
  { name: 'merge patch: two conditions of one type (a map list)', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { conditions: [condition({}), condition({ status: 'Error' })] } } },
  { name: 'merge patch: a bad lastTransitionTime', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { conditions: [condition({ lastTransitionTime: 'yesterday' })] } } },
  { name: 'merge patch: unknown fields (kept under status, pruned in a condition)', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { operatorNote: 'kept', conditions: [condition({ extra: 'pruned' })], image: { url: 'u', metadata: { digest: 'sha256:1' } } } } },
  { name: 'merge patch: null deletes a key', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { phase: null } } },
  { name: 'merge patch that renames the Build', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: { metadata: { name: 'b2' } } },
  { name: 'merge patch that is not JSON', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: MERGE, body: '{"status": ' },

  // PATCH /status: JSON patch and the content types
  { name: 'JSON patch with the precondition replace', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: JSONPATCH, body: [{ op: 'replace', path: '/metadata/resourceVersion', value: '$RV' }, { op: 'replace', path: '/status/phase', value: 'Done' }] },
  { name: 'JSON patch with a stale precondition', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: JSONPATCH, body: [{ op: 'replace', path: '/metadata/resourceVersion', value: '$STALE' }, { op: 'replace', path: '/status/phase', value: 'Done' }] },
  { name: 'JSON patch: a failed test op', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: JSONPATCH, body: [{ op: 'test', path: '/status/phase', value: 'Done' }] },
  { name: 'JSON patch: replace of a missing path', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: JSONPATCH, body: [{ op: 'replace', path: '/status/image/url', value: 'x' }] },
  { name: 'JSON patch that is an object', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: JSONPATCH, body: { status: {} } },
  { name: 'strategic merge patch on a custom resource', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: 'application/strategic-merge-patch+json', body: { status: { phase: 'Done' } } },
  { name: 'PATCH as application/json', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: 'application/json', body: { status: { phase: 'Done' } } },
  { name: 'merge patch with ;charset=utf-8', seed: RUNNING, method: 'PATCH', path: STATUS, contentType: `${MERGE}; charset=utf-8`, body: { status: { phase: 'Done' } } },

  // Events
  { name: 'POST an event', seed: RUNNING, method: 'POST', path: EVENTS, body: event('b1.1') },
  { name: 'POST the same event again', method: 'POST', path: EVENTS, body: event('b1.1') },
  { name: 'PATCH an event (fold: count, lastTimestamp, message)', method: 'PATCH', path: `${EVENTS}/b1.1`, contentType: MERGE, body: { count: 2, lastTimestamp: '2025-06-01T10:01:00Z', message: 'Build started again' } },
  { name: 'PATCH a missing event', method: 'PATCH', path: `${EVENTS}/b1.missing`, contentType: MERGE, body: { count: 2 } },
  { name: 'POST an event without a name', method: 'POST', path: EVENTS, body: event(undefined) },
  { name: 'POST an event about an object in another namespace', method: 'POST', path: EVENTS, body: event('b1.2', { involvedObject: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: 'b1', namespace: 'other' } }) },
  { name: 'POST an event with a millisecond eventTime', method: 'POST', path: EVENTS, body: event('b1.3', { eventTime: '2025-06-01T10:00:00.000Z' }) },
  { name: 'POST an event with eventTime but no action', method: 'POST', path: EVENTS, body: event('b1.4', { eventTime: '2025-06-01T10:00:00.000000Z' }) },
  { name: 'POST an event of an unknown type', method: 'POST', path: EVENTS, body: event('b1.5', { type: 'Error' }) },
  { name: 'POST an event in another namespace (not granted)', method: 'POST', path: '/api/v1/namespaces/default/events', body: { ...event('b1.6'), metadata: { name: 'b1.6', namespace: 'default' } } },
];

/** Values that differ between any two servers (or runs) by nature. */
function comparable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(comparable);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (['uid', 'resourceVersion', 'creationTimestamp'].includes(k) && typeof v === 'string') out[k] = `<${k}>`;
    else out[k] = comparable(v);
  }
  return out;
}

function shape(value: unknown, at = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => shape(v, `${at}/${i}`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => [`${at}/${k}`, ...shape(v, `${at}/${k}`)]);
  return [];
}

/** The same value with object keys sorted, so that key order alone is not a difference of values. */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (!value || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted((value as Record<string, unknown>)[k])]));
}

/** Keys in the order they came, recursively: kube-apiserver writes a custom resource's maps sorted. */
function keyOrder(value: unknown, at = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => keyOrder(v, `${at}/${i}`));
  if (!value || typeof value !== 'object') return [];
  const keys = Object.keys(value).filter((k) => k !== 'managedFields');
  return [`${at || '/'}: ${keys.join(',')}`, ...keys.flatMap((k) => keyOrder((value as Record<string, unknown>)[k], `${at}/${k}`))];
}

/** How the two answers differ, as `what: real … / stand-in …` lines. */
function compare(real: KubeReply, standin: KubeReply, before: Array<string | undefined>): string[] {
  const out: string[] = [];
  const show = (v: unknown) => JSON.stringify(v) ?? 'nothing';
  if (real.status !== standin.status) out.push(`status code: real ${real.status} / stand-in ${standin.status}`);
  const ct = (r: KubeReply) => (r.headers['content-type'] ?? '').split(';')[0];
  if (ct(real) !== ct(standin)) out.push(`content-type: real ${show(real.headers['content-type'])} / stand-in ${show(standin.headers['content-type'])}`);
  const a = real.body as Record<string, unknown>;
  const b = standin.body as Record<string, unknown>;
  if (typeof a !== 'object' || typeof b !== 'object' || !a || !b) {
    if (real.text !== standin.text) out.push(`body: real ${show(real.text)} / stand-in ${show(standin.text)}`);
    return out;
  }
  if (a.kind === 'Status' || b.kind === 'Status') {
    for (const key of ['kind', 'apiVersion', 'status', 'reason', 'code', 'message', 'details', 'metadata']) {
      if (show(a[key]) !== show(b[key])) out.push(`Status ${key}: real ${show(a[key])} / stand-in ${show(b[key])}`);
    }
    return out;
  }
  const realShape = new Set(shape(a).filter((p) => !p.startsWith('/metadata/managedFields')));
  const standinShape = new Set(shape(b));
  const onlyReal = [...realShape].filter((p) => !standinShape.has(p));
  const onlyStandin = [...standinShape].filter((p) => !realShape.has(p));
  if (onlyReal.length) out.push(`keys only the real server has: ${onlyReal.join(', ')}`);
  if (onlyStandin.length) out.push(`keys only the stand-in has: ${onlyStandin.join(', ')}`);
  for (const key of ['spec', 'status']) {
    if (show(sorted(comparable(a[key]))) !== show(sorted(comparable(b[key])))) out.push(`${key}: real ${show(a[key])} / stand-in ${show(b[key])}`);
  }
  const realOrder = keyOrder(a).filter((l) => !l.startsWith('/metadata'));
  const standinOrder = keyOrder(b).filter((l) => !l.startsWith('/metadata'));
  const firstDiff = realOrder.find((l, i) => l !== standinOrder[i]);
  if (firstDiff) out.push(`key order: real ${firstDiff} / stand-in ${standinOrder[realOrder.indexOf(firstDiff)] ?? 'nothing'}`);
  // A write that changes nothing leaves the resourceVersion alone.
  const moved = (body: Record<string, unknown>, rv: string | undefined) => rv !== undefined && (body.metadata as { resourceVersion?: string } | undefined)?.resourceVersion !== rv;
  if (before[0] !== undefined && moved(a, before[0]) !== moved(b, before[1])) out.push(`resourceVersion moved: real ${moved(a, before[0])} / stand-in ${moved(b, before[1])}`);
  return out;
}

clusterTest(() => cluster, 'the same requests, the same answers: real kube-apiserver and the stand-in', async () => {
  const targets = [realTarget(), standInTarget()];
  const found: string[] = [];
  let rvs: Array<{ rv: string; stale: string }> = [];
  for (const step of SCRIPT) {
    const replies: KubeReply[] = [];
    if (step.seed === null) {
      rvs = [];
      for (const t of targets) await t.remove();
    } else if (step.seed !== undefined) {
      rvs = [];
      for (const t of targets) {
        const stale = await t.seed(step.seed === true ? undefined : step.seed);
        // One more write makes the first resourceVersion stale.
        const moved = await t.send({ method: 'PATCH', path: STATUS, contentType: MERGE, body: { status: { operatorNote: 'seeded' } } });
        assert.equal(moved.status, 200, `${t.name}: seeding: ${moved.text}`);
        rvs.push({ rv: (moved.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion, stale });
      }
    }
    for (const [i, t] of targets.entries()) {
      let body = step.body;
      if (body !== undefined && typeof body !== 'string') body = JSON.parse(JSON.stringify(body).replaceAll('"$RV"', JSON.stringify(rvs[i]?.rv ?? '1')).replaceAll('"$STALE"', JSON.stringify(rvs[i]?.stale ?? '1')));
      replies.push(await t.send({ method: step.method, path: step.path, ...(body !== undefined ? { body } : {}), ...(step.contentType ? { contentType: step.contentType } : {}), ...(step.token !== undefined ? { token: step.token } : {}) }));
    }
    const before = step.method === 'GET' || step.path !== STATUS ? [undefined, undefined] : rvs.map((r) => r.rv);
    for (const line of compare(replies[0]!, replies[1]!, before)) found.push(`${step.name}: ${line}`);
  }
  for (const line of found) process.stdout.write(`# difference: ${line}\n`);
  const unexplained = found.filter((line) => !Object.keys(KNOWN).some((k) => line.startsWith(k)));
  const gone = Object.keys(KNOWN).filter((k) => !found.some((line) => line.startsWith(k)));
  assert.deepEqual(unexplained, [], `the stand-in answers differently from kube-apiserver:\n${unexplained.join('\n')}`);
  assert.deepEqual(gone, [], 'KNOWN lists differences that no longer show: remove them');
}, { timeout: 120_000 });
