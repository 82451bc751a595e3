/**
 * The local API server (scripts/apiserver/server.ts) against the kube-apiserver behaviour it stands
 * in for (shared/reference/kubernetes-api.md), through a real HTTPS client (undici), plus the pure
 * parts (merge/JSON patches, CRD reading, durations, selectors) and `npm run apiserver` under real
 * signals. One server per describe block keeps the file fast.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { Agent, request, type Dispatcher } from 'undici';

import type { Build, Status } from '../lib/types.js';
import {
  CRD_FILES,
  DEPLOY_ROLE_RULES,
  startApiServer,
  type ApiServer,
  type ApiServerOptions,
  type RequestLogEntry,
} from '../scripts/apiserver/server.js';
import { applyJsonPatch, applyMergePatch, JsonPatchError, type JsonValue } from '../scripts/apiserver/json-patch.js';
import { CrdError, parseCrd } from '../scripts/apiserver/schema.js';
import { fieldSelector, labelSelector } from '../scripts/apiserver/selectors.js';
import { humanDuration, shortHumanDuration } from '../scripts/apiserver/table.js';

// ---------------------------------------------------------------------------------------------
// Client helpers

interface Context {
  server: ApiServer;
  agent: Agent;
}

/** Starts one server (and a client trusting its CA) for the enclosing describe block. */
function useServer(options: ApiServerOptions = {}): Context {
  const context = {} as Context;
  before(async () => {
    context.server = await startApiServer(options);
    context.agent = new Agent({ connect: { ca: context.server.caPem } });
  });
  after(async () => {
    await context.agent.destroy();
    await context.server.stop();
  });
  return context;
}

interface CallOptions {
  /** Serialized as JSON. */
  body?: unknown;
  /** Sent as is (wins over body). */
  raw?: string | Buffer;
  contentType?: string;
  accept?: string;
  /** Default: the server's current token; null sends no Authorization header. */
  token?: string | null;
  headersTimeout?: number;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

async function call(context: Context, method: Dispatcher.HttpMethod, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? context.server.token : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  if (options.accept !== undefined) headers.accept = options.accept;
  const response = await request(`${context.server.url}${path}`, {
    method,
    headers,
    body,
    dispatcher: context.agent,
    ...(options.headersTimeout !== undefined && { headersTimeout: options.headersTimeout }),
  });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, json };
}

const buildPath = (namespace: string, name?: string, status = false) =>
  `/apis/spot.release.com/v1alpha1/namespaces/${namespace}/builds${name === undefined ? '' : `/${name}`}${status ? '/status' : ''}`;
const statusPath = (name: string, namespace = 'default') => buildPath(namespace, name, true);
const eventsPath = (namespace: string, name?: string) => `/api/v1/namespaces/${namespace}/events${name === undefined ? '' : `/${name}`}`;

const MERGE = 'application/merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';
const SMP = 'application/strategic-merge-patch+json';
const ADMIN_TOKEN = 'test-token-admin';
/** A regression that leaves a request hanging fails the suite instead of stalling the run. */
const SUITE_TIMEOUT_MS = 20_000;

const asStatus = (answer: Answer) => answer.json as Status;
const asBuild = (answer: Answer) => answer.json as Build;
const rv = (object: { metadata: { resourceVersion?: string } }) => Number(object.metadata.resourceVersion);

/** The exact bytes kube-apiserver writes for a Status (key order included). */
function assertStatusBody(answer: Answer, expected: Status): void {
  assert.equal(answer.status, expected.code);
  assert.equal(answer.headers['content-type'], 'application/json');
  assert.equal(answer.text, JSON.stringify(expected));
}

function buildBody(name: string, fields: Partial<Build> & { resourceVersion?: string } = {}): Build {
  const { resourceVersion, ...rest } = fields;
  return {
    apiVersion: 'spot.release.com/v1alpha1',
    kind: 'Build',
    metadata: { name, namespace: 'default', ...(resourceVersion !== undefined && { resourceVersion }) },
    ...rest,
  };
}

function eventBody(name: string | undefined, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: name === undefined ? {} : { name },
    involvedObject: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: 'b', namespace: 'default' },
    reason: 'Started',
    message: 'step started',
    type: 'Normal',
    source: { component: 'spot-runtime' },
    count: 1,
    ...extra,
  };
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

// ---------------------------------------------------------------------------------------------

describe('authentication and authorization', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();

  test('a missing, malformed or unknown token is 401 with the Unauthorized Status', async () => {
    context.server.createBuild({ name: 'auth-b1' });
    const expected: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 };
    for (const token of [null, 'test-token-unknown', '']) {
      assertStatusBody(await call(context, 'GET', buildPath('default', 'auth-b1'), { token }), expected);
    }
    const ok = await call(context, 'GET', buildPath('default', 'auth-b1'));
    assert.equal(ok.status, 200);
  });

  test('a request outside the rules is 403 naming user, verb, resource, API group and namespace', async () => {
    const token = 'test-token-reader';
    context.server.addIdentity(token, { user: 'system:serviceaccount:ci:reader', rules: [{ verbs: ['get'], resources: ['builds'] }] });
    context.server.createBuild({ name: 'auth-b2' });
    assert.equal((await call(context, 'GET', buildPath('default', 'auth-b2'), { token })).status, 200);

    const patched = await call(context, 'PATCH', statusPath('auth-b2'), { token, body: { status: {} }, contentType: MERGE });
    assertStatusBody(patched, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'builds.spot.release.com "auth-b2" is forbidden: User "system:serviceaccount:ci:reader" cannot patch resource "builds/status" in API group "spot.release.com" in the namespace "default"',
      reason: 'Forbidden', details: { name: 'auth-b2', group: 'spot.release.com', kind: 'builds' }, code: 403,
    });

    const event = await call(context, 'POST', eventsPath('default'), { token, body: eventBody('e1') });
    assertStatusBody(event, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'events is forbidden: User "system:serviceaccount:ci:reader" cannot create resource "events" in API group "" in the namespace "default"',
      reason: 'Forbidden', details: { kind: 'events' }, code: 403,
    });

    const listed = await call(context, 'GET', buildPath('default'), { token });
    assert.equal(asStatus(listed).message, 'builds.spot.release.com is forbidden: User "system:serviceaccount:ci:reader" cannot list resource "builds" in API group "spot.release.com" in the namespace "default"');
    assert.deepEqual(asStatus(listed).details, { group: 'spot.release.com', kind: 'builds' });
    assert.equal(context.server.events().length, 0, 'a refused create stores nothing');
  });

  test('setPermissions by user name narrows the rules to a namespace', async () => {
    const token = 'test-token-narrow';
    const user = 'system:serviceaccount:ci:narrow';
    context.server.addIdentity(token, { user });
    context.server.createBuild({ name: 'auth-b3' });
    assert.equal((await call(context, 'GET', buildPath('default', 'auth-b3'), { token })).status, 200, 'default rules allow get');
    context.server.setPermissions(user, [{ verbs: '*', resources: '*', namespaces: ['elsewhere'] }]);
    const refused = await call(context, 'GET', buildPath('default', 'auth-b3'), { token });
    assert.equal(refused.status, 403);
    assert.match(asStatus(refused).message ?? '', /cannot get resource "builds" in API group "spot.release.com" in the namespace "default"$/);
    assert.throws(() => context.server.setPermissions('nobody', []), /no identity/);
  });

  test('the default identity may do what a build pod and a seeding test need, but not write the main resource', async () => {
    const build = buildBody('auth-b7', { spec: { image: { name: 'team/app' } } });
    const allowed = [
      await call(context, 'POST', buildPath('default'), { body: build }),
      await call(context, 'GET', buildPath('default')),
      await call(context, 'GET', buildPath('default', 'auth-b7')),
      await call(context, 'GET', statusPath('auth-b7')),
      await call(context, 'PATCH', statusPath('auth-b7'), { body: { status: { phase: 'Running' } }, contentType: MERGE }),
      await call(context, 'POST', eventsPath('default'), { body: eventBody('auth-e7') }),
      await call(context, 'PATCH', eventsPath('default', 'auth-e7'), { body: { count: 2 }, contentType: MERGE }),
      await call(context, 'GET', eventsPath('default', 'auth-e7')),
      await call(context, 'GET', eventsPath('default')),
    ];
    assert.deepEqual(allowed.map((a) => a.status), [201, 200, 200, 200, 200, 201, 200, 200, 200]);
    const current = asBuild(await call(context, 'GET', buildPath('default', 'auth-b7')));
    const refused = [
      await call(context, 'PATCH', buildPath('default', 'auth-b7'), { body: { spec: {} }, contentType: MERGE }),
      await call(context, 'PUT', buildPath('default', 'auth-b7'), { body: current }),
    ];
    assert.deepEqual(refused.map((a) => asStatus(a).message?.match(/cannot (\w+) resource "builds"/)?.[1]), ['patch', 'update']);
  });

  test('DEPLOY_ROLE_RULES (deploy/rbac.yaml) allows what the runtime does and nothing else', async () => {
    const token = 'test-token-deployed';
    context.server.addIdentity(token, { user: 'system:serviceaccount:default:deployed', rules: DEPLOY_ROLE_RULES });
    context.server.createBuild({ name: 'auth-b5' });
    const allowed = [
      await call(context, 'GET', buildPath('default', 'auth-b5'), { token }),
      await call(context, 'PATCH', statusPath('auth-b5'), { token, body: { status: { phase: 'Running' } }, contentType: MERGE }),
      await call(context, 'POST', eventsPath('default'), { token, body: eventBody('auth-e5') }),
      await call(context, 'PATCH', eventsPath('default', 'auth-e5'), { token, body: { count: 2 }, contentType: MERGE }),
    ];
    assert.deepEqual(allowed.map((a) => a.status), [200, 200, 201, 200]);
    const refused = [
      await call(context, 'GET', buildPath('default'), { token }),
      await call(context, 'POST', buildPath('default'), { token, body: buildBody('auth-b6') }),
      await call(context, 'PATCH', buildPath('default', 'auth-b5'), { token, body: { spec: {} }, contentType: MERGE }),
      await call(context, 'GET', eventsPath('default', 'auth-e5'), { token }),
    ];
    assert.deepEqual(refused.map((a) => a.status), [403, 403, 403, 403]);
  });

  test('rotateToken writes a new token atomically and the old one is refused at once', async () => {
    context.server.createBuild({ name: 'auth-b4' });
    const old = context.server.token;
    const tokenFile = join(context.server.serviceAccountDir, 'token');
    assert.equal(await readFile(tokenFile, 'utf8'), old);
    const next = await context.server.rotateToken();
    assert.match(next, /^test-token-[0-9a-f]{32}$/);
    assert.notEqual(next, old);
    assert.equal(context.server.token, next);
    assert.equal(await readFile(tokenFile, 'utf8'), next);
    assert.deepEqual((await readdir(context.server.serviceAccountDir)).sort(), ['ca.crt', 'namespace', 'token'], 'no temp file left behind');
    assert.equal((await call(context, 'GET', buildPath('default', 'auth-b4'), { token: old })).status, 401);
    const fresh = await call(context, 'GET', buildPath('default', 'auth-b4'), { token: next });
    assert.equal(fresh.status, 200);
    assert.equal(context.server.requests.at(-1)?.identity, 'system:serviceaccount:default:spot-builder', 'the identity moves to the new token');
  });
});

// ---------------------------------------------------------------------------------------------

describe('builds', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();
  before(() => context.server.addIdentity(ADMIN_TOKEN, { user: 'system:admin', rules: [{ verbs: '*', resources: '*' }] }));
  const admin = { token: ADMIN_TOKEN };

  test('POST creates with uid, creationTimestamp, generation 1 and drops status; a duplicate is 409 AlreadyExists', async () => {
    const created = await call(context, 'POST', buildPath('default'), {
      body: buildBody('create-b1', { spec: { image: { name: 'team/app' } }, status: { phase: 'Done' } }),
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers['content-type'], 'application/json');
    const build = asBuild(created);
    assert.match(build.metadata.uid ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(build.metadata.creationTimestamp ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(build.metadata.generation, 1);
    assert.match(build.metadata.resourceVersion ?? '', /^[1-9]\d*$/);
    assert.equal(build.status, undefined, 'create cannot set status on a resource with a status subresource');
    assert.deepEqual(context.server.getBuild('default', 'create-b1'), build);

    const duplicate = await call(context, 'POST', buildPath('default'), { body: buildBody('create-b1') });
    assertStatusBody(duplicate, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'builds.spot.release.com "create-b1" already exists',
      reason: 'AlreadyExists', details: { name: 'create-b1', group: 'spot.release.com', kind: 'builds' }, code: 409,
    });
  });

  test('POST with a resourceVersion is a reason-less 500, as etcd3 store.Create answers', async () => {
    const answer = await call(context, 'POST', buildPath('default'), { body: buildBody('create-b2', { resourceVersion: '5' }) });
    assertStatusBody(answer, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'resourceVersion should not be set on objects to be created', code: 500 });
    assert.equal(context.server.getBuild('default', 'create-b2'), undefined);
  });

  test('POST checks the name and the namespace', async () => {
    const invalidName = await call(context, 'POST', buildPath('default'), { body: buildBody('Bad_Name') });
    assert.equal(invalidName.status, 422);
    assert.equal(asStatus(invalidName).details?.causes?.[0]?.field, 'metadata.name');
    assert.match(asStatus(invalidName).message ?? '', /^Build\.spot\.release\.com "Bad_Name" is invalid: metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/);
    const otherNamespace = await call(context, 'POST', buildPath('default'), { body: { ...buildBody('create-b3'), metadata: { name: 'create-b3', namespace: 'other' } } });
    assertStatusBody(otherNamespace, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'the namespace of the provided object does not match the namespace sent on the request', reason: 'BadRequest', code: 400,
    });
  });

  test('resourceVersion is a global counter that every write moves by one', async () => {
    const first = context.server.createBuild({ name: 'rv-b1' });
    const put = await call(context, 'PUT', statusPath('rv-b1'), { body: buildBody('rv-b1', { resourceVersion: first.metadata.resourceVersion, status: { phase: 'Running' } }) });
    assert.equal(put.status, 200);
    assert.equal(rv(asBuild(put)), rv(first) + 1);
    const event = await call(context, 'POST', eventsPath('default'), { body: eventBody('rv-e1') });
    assert.equal(rv(event.json as Build), rv(first) + 2, 'events share the counter');
    const patched = await call(context, 'PATCH', statusPath('rv-b1'), { body: { status: { phase: 'Done' } }, contentType: MERGE });
    assert.equal(rv(asBuild(patched)), rv(first) + 3);
    const read = await call(context, 'GET', buildPath('default', 'rv-b1'));
    assert.equal(rv(asBuild(read)), rv(first) + 3, 'reads do not move it');
    const list = await call(context, 'GET', buildPath('default'));
    assert.equal((list.json as { metadata: { resourceVersion: string } }).metadata.resourceVersion, String(rv(first) + 3));
  });

  test('GET and PUT of a missing Build are 404 NotFound naming it', async () => {
    const expected: Status = {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'builds.spot.release.com "missing" not found',
      reason: 'NotFound', details: { name: 'missing', group: 'spot.release.com', kind: 'builds' }, code: 404,
    };
    assertStatusBody(await call(context, 'GET', buildPath('default', 'missing')), expected);
    assertStatusBody(await call(context, 'PUT', statusPath('missing'), { body: buildBody('missing', { resourceVersion: '1', status: {} }) }), expected);
  });

  test('a PUT with a stale resourceVersion is 409 Conflict', async () => {
    const build = context.server.createBuild({ name: 'conflict-b1' });
    context.server.setBuildStatus('default', 'conflict-b1', { phase: 'Running' });
    const answer = await call(context, 'PUT', statusPath('conflict-b1'), { body: buildBody('conflict-b1', { resourceVersion: build.metadata.resourceVersion, status: { phase: 'Done' } }) });
    assertStatusBody(answer, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'Operation cannot be fulfilled on builds.spot.release.com "conflict-b1": the object has been modified; please apply your changes to the latest version and try again',
      reason: 'Conflict', details: { name: 'conflict-b1', group: 'spot.release.com', kind: 'builds' }, code: 409,
    });
    assert.equal(context.server.getBuild('default', 'conflict-b1')?.status?.phase, 'Running');
  });

  test('a PUT without resourceVersion is 422: custom resources allow no unconditional update', async () => {
    context.server.createBuild({ name: 'norv-b1' });
    for (const path of [statusPath('norv-b1'), buildPath('default', 'norv-b1')]) {
      const answer = await call(context, 'PUT', path, { ...admin, body: buildBody('norv-b1', { status: { phase: 'Running' } }) });
      assertStatusBody(answer, {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
        message: 'builds.spot.release.com "norv-b1" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update',
        reason: 'Invalid',
        details: { name: 'norv-b1', group: 'spot.release.com', kind: 'builds', causes: [{ reason: 'FieldValueInvalid', message: 'Invalid value: 0x0: must be specified for an update', field: 'metadata.resourceVersion' }] },
        code: 422,
      });
    }
  });

  test('a patch without resourceVersion applies to the current object; with a stale one it is 409', async () => {
    const build = context.server.createBuild({ name: 'patch-b1', status: { phase: 'Running', conditions: [{ type: 'A', status: 'In Progress' }] } });
    context.server.setBuildStatus('default', 'patch-b1', { phase: 'Running', conditions: [{ type: 'A', status: 'Success' }], pod: { name: 'p' } });
    const merged = await call(context, 'PATCH', statusPath('patch-b1'), { body: { status: { phase: 'Done' } }, contentType: MERGE });
    assert.equal(merged.status, 200);
    assert.deepEqual(asBuild(merged).status, { phase: 'Done', conditions: [{ type: 'A', status: 'Success' }], pod: { name: 'p' } });

    const stale = await call(context, 'PATCH', statusPath('patch-b1'), {
      body: { metadata: { resourceVersion: build.metadata.resourceVersion }, status: { phase: 'Errored' } },
      contentType: MERGE,
    });
    assert.equal(stale.status, 409);
    assert.equal(asStatus(stale).reason, 'Conflict');
    const jsonStale = await call(context, 'PATCH', statusPath('patch-b1'), {
      raw: JSON.stringify([{ op: 'replace', path: '/metadata/resourceVersion', value: build.metadata.resourceVersion }, { op: 'replace', path: '/status/phase', value: 'Errored' }]),
      contentType: JSON_PATCH,
    });
    assert.equal(jsonStale.status, 409);
    assert.equal(context.server.getBuild('default', 'patch-b1')?.status?.phase, 'Done');

    const current = asBuild(merged).metadata.resourceVersion;
    const guarded = await call(context, 'PATCH', statusPath('patch-b1'), { body: { metadata: { resourceVersion: current }, status: { phase: 'Errored' } }, contentType: MERGE });
    assert.equal(guarded.status, 200, 'the current resourceVersion is a precondition that holds');
  });

  test('the status subresource persists only status: spec and labels in the body are ignored', async () => {
    const build = context.server.createBuild({ name: 'sub-b1', spec: { image: { name: 'team/app' } }, labels: { a: '1' } });
    const body = buildBody('sub-b1', { resourceVersion: build.metadata.resourceVersion, spec: { image: { name: 'evil/app' } }, status: { phase: 'Running' } });
    body.metadata.labels = { a: 'changed' };
    const answer = await call(context, 'PUT', statusPath('sub-b1'), { body });
    assert.equal(answer.status, 200);
    const stored = context.server.getBuild('default', 'sub-b1');
    assert.deepEqual(stored?.spec, { image: { name: 'team/app' } });
    assert.deepEqual(stored?.metadata.labels, { a: '1' });
    assert.deepEqual(stored?.status, { phase: 'Running' });
    assert.equal(stored?.metadata.generation, 1);
    assert.equal(stored?.metadata.uid, build.metadata.uid);

    const patched = await call(context, 'PATCH', statusPath('sub-b1'), { body: { spec: { image: { tag: 'x' } }, status: { phase: 'Done' } }, contentType: MERGE });
    assert.deepEqual(asBuild(patched).spec, { image: { name: 'team/app' } });
    assert.equal(asBuild(patched).status?.phase, 'Done');
  });

  test('a PUT to /status without a status key clears status', async () => {
    const build = context.server.createBuild({ name: 'clear-b1', status: { phase: 'Running' } });
    const answer = await call(context, 'PUT', statusPath('clear-b1'), { body: buildBody('clear-b1', { resourceVersion: build.metadata.resourceVersion }) });
    assert.equal(answer.status, 200);
    assert.equal(Object.hasOwn(asBuild(answer), 'status'), false);
    assert.equal(context.server.getBuild('default', 'clear-b1')?.status, undefined);
  });

  test('the main resource ignores status in PUT and PATCH', async () => {
    const build = context.server.createBuild({ name: 'main-b1', spec: { image: { tag: '1' } }, status: { phase: 'Running' } });
    const put = await call(context, 'PUT', buildPath('default', 'main-b1'), {
      ...admin,
      body: buildBody('main-b1', { resourceVersion: build.metadata.resourceVersion, spec: { image: { tag: '2' } }, status: { phase: 'Errored' } }),
    });
    assert.equal(put.status, 200);
    assert.deepEqual(asBuild(put).status, { phase: 'Running' });
    assert.deepEqual(asBuild(put).spec, { image: { tag: '2' } });
    const patched = await call(context, 'PATCH', buildPath('default', 'main-b1'), { ...admin, body: { status: null, spec: { image: { tag: '3' } } }, contentType: MERGE });
    assert.deepEqual(asBuild(patched).status, { phase: 'Running' });
    assert.equal(asBuild(patched).spec?.image?.tag, '3');
  });

  test('generation starts at 1 and moves only when the spec of the main resource changes', async () => {
    const build = context.server.createBuild({ name: 'gen-b1', spec: { image: { tag: '1' } } });
    const path = buildPath('default', 'gen-b1');
    const labelsOnly = await call(context, 'PATCH', path, { ...admin, body: { metadata: { labels: { x: 'y' } } }, contentType: MERGE });
    assert.equal(asBuild(labelsOnly).metadata.generation, 1, 'metadata changes do not count');
    const status = await call(context, 'PATCH', statusPath('gen-b1'), { body: { status: { phase: 'Running' } }, contentType: MERGE });
    assert.equal(asBuild(status).metadata.generation, 1, 'status writes do not count');
    const sameSpec = await call(context, 'PATCH', path, { ...admin, body: { spec: { image: { tag: '1' } } }, contentType: MERGE });
    assert.equal(asBuild(sameSpec).metadata.generation, 1, 'an unchanged spec does not count');
    const spec = await call(context, 'PATCH', path, { ...admin, body: { spec: { image: { tag: '2' } } }, contentType: MERGE });
    assert.equal(asBuild(spec).metadata.generation, 2);
    const forged = await call(context, 'PUT', path, { ...admin, body: { ...asBuild(spec), metadata: { ...asBuild(spec).metadata, generation: 40, uid: build.metadata.uid } } });
    assert.equal(asBuild(forged).metadata.generation, 2, 'the body cannot set generation');
  });

  test('JSON merge patch: null deletes a key, arrays are replaced whole', async () => {
    context.server.createBuild({
      name: 'merge-b1',
      status: { phase: 'Running', pod: { name: 'p', namespace: 'ns' }, conditions: [{ type: 'A', status: 'Success' }, { type: 'B', status: 'In Progress' }] },
    });
    const answer = await call(context, 'PATCH', statusPath('merge-b1'), {
      body: { status: { pod: { namespace: null }, conditions: [{ type: 'B', status: 'Error' }] } },
      contentType: MERGE,
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(asBuild(answer).status, { phase: 'Running', pod: { name: 'p' }, conditions: [{ type: 'B', status: 'Error' }] });
  });

  test('JSON patch applies add, replace, remove, test; a failed test or a missing path is 422', async () => {
    context.server.createBuild({ name: 'jp-b1', status: { phase: 'Running', conditions: [{ type: 'A', status: 'Success' }], pod: { name: 'p' } } });
    const ops = [
      { op: 'test', path: '/status/phase', value: 'Running' },
      { op: 'add', path: '/status/conditions/-', value: { type: 'B', status: 'In Progress' } },
      { op: 'replace', path: '/status/phase', value: 'Done' },
      { op: 'remove', path: '/status/pod' },
    ];
    const applied = await call(context, 'PATCH', statusPath('jp-b1'), { raw: JSON.stringify(ops), contentType: JSON_PATCH });
    assert.equal(applied.status, 200);
    assert.deepEqual(asBuild(applied).status, { phase: 'Done', conditions: [{ type: 'A', status: 'Success' }, { type: 'B', status: 'In Progress' }] });

    const rejected: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server rejected our request due to an error in our request', reason: 'Invalid', details: {}, code: 422 };
    const failedTest = [{ op: 'test', path: '/status/phase', value: 'Running' }, { op: 'replace', path: '/status/phase', value: 'Errored' }];
    assertStatusBody(await call(context, 'PATCH', statusPath('jp-b1'), { raw: JSON.stringify(failedTest), contentType: JSON_PATCH }), rejected);
    const missing = [{ op: 'replace', path: '/status/image/url', value: 'x' }];
    assertStatusBody(await call(context, 'PATCH', statusPath('jp-b1'), { raw: JSON.stringify(missing), contentType: JSON_PATCH }), rejected);
    assert.equal(context.server.getBuild('default', 'jp-b1')?.status?.phase, 'Done', 'a failed patch changes nothing');

    const notArray = await call(context, 'PATCH', statusPath('jp-b1'), { raw: '{"op":"add"}', contentType: JSON_PATCH });
    assert.equal(notArray.status, 400);
    assert.equal(asStatus(notArray).message, 'json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp');
  });

  test('strategic merge patch on a Build is 415; so is an unknown type; ;charset is stripped first', async () => {
    context.server.createBuild({ name: 'ct-b1' });
    const expected: Status = {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
      reason: 'UnsupportedMediaType', code: 415,
    };
    for (const contentType of [SMP, 'text/plain', 'application/json']) {
      assertStatusBody(await call(context, 'PATCH', statusPath('ct-b1'), { body: { status: { phase: 'Running' } }, contentType }), expected);
    }
    const withCharset = await call(context, 'PATCH', statusPath('ct-b1'), { body: { status: { phase: 'Running' } }, contentType: `${MERGE}; charset=utf-8` });
    assert.equal(withCharset.status, 200);
    assert.equal(asBuild(withCharset).status?.phase, 'Running');
    const putAsText = await call(context, 'PUT', statusPath('ct-b1'), { raw: '{}', contentType: 'text/plain' });
    assert.equal(putAsText.status, 415);
    assert.match(asStatus(putAsText).message ?? '', /accepted media types include: application\/json, application\/yaml$/);
  });

  test('apply patches need fieldManager; force is only for apply', async () => {
    context.server.createBuild({ name: 'apply-b1' });
    const apply = await call(context, 'PATCH', statusPath('apply-b1'), { raw: '{}', contentType: 'application/apply-patch+yaml' });
    assert.equal(apply.status, 422);
    assert.equal(asStatus(apply).message, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    const force = await call(context, 'PATCH', `${statusPath('apply-b1')}?force=true`, { body: {}, contentType: MERGE });
    assert.equal(force.status, 422);
    assert.equal(asStatus(force).message, 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch');
  });

  test('status is checked against the CRD schema: 422 Invalid with one cause per field', async () => {
    context.server.createBuild({ name: 'schema-b1' });
    const answer = await call(context, 'PATCH', statusPath('schema-b1'), {
      body: { status: { phase: 'X', conditions: [{ type: 'A', status: 'True' }, { status: '' }, { type: 'A', status: '' }] } },
      contentType: MERGE,
    });
    const supportedPhases = 'supported values: "", "Running", "Done", "Errored"';
    const supportedStatuses = 'supported values: "", "In Progress", "Success", "Error"';
    assertStatusBody(answer, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message:
        `Build.spot.release.com "schema-b1" is invalid: [status.phase: Unsupported value: "X": ${supportedPhases}, ` +
        `status.conditions[0].status: Unsupported value: "True": ${supportedStatuses}, status.conditions[1].type: Required value, ` +
        'status.conditions[2]: Duplicate value: map[string]interface {}{"type":"A"}]',
      reason: 'Invalid',
      details: {
        name: 'schema-b1', group: 'spot.release.com', kind: 'Build',
        causes: [
          { reason: 'FieldValueNotSupported', message: `Unsupported value: "X": ${supportedPhases}`, field: 'status.phase' },
          { reason: 'FieldValueNotSupported', message: `Unsupported value: "True": ${supportedStatuses}`, field: 'status.conditions[0].status' },
          { reason: 'FieldValueRequired', message: 'Required value', field: 'status.conditions[1].type' },
          { reason: 'FieldValueDuplicate', message: 'Duplicate value: map[string]interface {}{"type":"A"}', field: 'status.conditions[2]' },
        ],
      },
      code: 422,
    });
    const typed = await call(context, 'PATCH', statusPath('schema-b1'), { body: { status: { phase: 3 } }, contentType: MERGE });
    assert.equal(asStatus(typed).message, 'Build.spot.release.com "schema-b1" is invalid: status.phase: Invalid value: "integer": status.phase in body must be of type string: "integer"');
    const nullPhase = await call(context, 'PATCH', statusPath('schema-b1'), { body: { status: { phase: 'Running' } }, contentType: MERGE });
    const pruned = await call(context, 'PUT', statusPath('schema-b1'), { body: { ...asBuild(nullPhase), status: { phase: null, pod: { name: 'p' } } } });
    assert.equal(pruned.status, 200, 'a null in a declared field is pruned, not refused');
    assert.deepEqual(asBuild(pruned).status, { pod: { name: 'p' } });
    assert.equal(context.server.getBuild('default', 'schema-b1')?.status?.phase, undefined);
  });

  test('a body naming another object or namespace is 400 BadRequest', async () => {
    const build = context.server.createBuild({ name: 'name-b1' });
    const renamed = await call(context, 'PUT', statusPath('name-b1'), { body: buildBody('name-b2', { resourceVersion: build.metadata.resourceVersion, status: {} }) });
    assertStatusBody(renamed, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'the name of the object (name-b2) does not match the name on the URL (name-b1)', reason: 'BadRequest', code: 400,
    });
    const moved = await call(context, 'PUT', statusPath('name-b1'), { body: { ...buildBody('name-b1', { resourceVersion: build.metadata.resourceVersion }), metadata: { name: 'name-b1', namespace: 'other', resourceVersion: build.metadata.resourceVersion } } });
    assert.equal(moved.status, 400);
    assert.equal(asStatus(moved).message, 'the namespace of the object (other) does not match the namespace on the request (default)');
    const patchedName = await call(context, 'PATCH', statusPath('name-b1'), { body: { metadata: { name: 'name-b3' } }, contentType: MERGE });
    assert.equal(patchedName.status, 400);
    assert.equal(asStatus(patchedName).message, 'the name of the object (name-b3) does not match the name on the URL (name-b1)');
  });

  test('malformed JSON is 400 for PUT and for a merge patch', async () => {
    context.server.createBuild({ name: 'bad-b1' });
    const put = await call(context, 'PUT', statusPath('bad-b1'), { raw: '{"metadata":' });
    assert.equal(put.status, 400);
    assert.equal(asStatus(put).reason, 'BadRequest');
    assert.match(asStatus(put).message ?? '', /^the object provided is unrecognized \(must be of type Build\): couldn't get version\/kind; json parse error: .+ \(\{"metadata":\)$/);
    const merge = await call(context, 'PATCH', statusPath('bad-b1'), { raw: '{status', contentType: MERGE });
    assert.equal(merge.status, 400);
    assert.equal(asStatus(merge).message, 'Invalid JSON Patch');
    const noKind = await call(context, 'PUT', statusPath('bad-b1'), { raw: '{"metadata":{"name":"bad-b1"}}' });
    assert.equal(asStatus(noKind).message, `Object 'Kind' is missing in '{"metadata":{"name":"bad-b1"}}'`);
  });

  test('GET of the collection is a BuildList sorted by name', async () => {
    context.server.createBuild({ namespace: 'listing', name: 'b' });
    context.server.createBuild({ namespace: 'listing', name: 'a' });
    context.server.createBuild({ namespace: 'elsewhere', name: 'c' });
    const answer = await call(context, 'GET', buildPath('listing'));
    const list = answer.json as { apiVersion: string; kind: string; items: Build[] };
    assert.equal(list.apiVersion, 'spot.release.com/v1alpha1');
    assert.equal(list.kind, 'BuildList');
    assert.deepEqual(list.items.map((b) => [b.kind, b.metadata.name]), [['Build', 'a'], ['Build', 'b']]);
  });

  test('any other path or method is 404 "the server could not find the requested resource"', async () => {
    const expected: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server could not find the requested resource', reason: 'NotFound', code: 404 };
    context.server.createBuild({ name: 'route-b1' });
    for (const [method, path] of [
      ['GET', '/apis/spot.release.com/v1beta1/namespaces/default/builds/route-b1'],
      ['DELETE', buildPath('default', 'route-b1')],
      ['GET', `${buildPath('default', 'route-b1')}/scale`],
      ['PUT', eventsPath('default', 'x')],
      ['GET', '/api/v1/namespaces/default/pods'],
    ] as const) {
      assertStatusBody(await call(context, method, path), expected);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('events', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();

  test('POST stores an Event (201) with uid, resourceVersion and defaulted apiVersion/kind; GET and list return it', async () => {
    const created = await call(context, 'POST', eventsPath('default'), { body: eventBody('ev-1') });
    assert.equal(created.status, 201);
    const event = created.json as { apiVersion: string; kind: string; metadata: { uid: string; resourceVersion: string }; reason: string };
    assert.equal(event.apiVersion, 'v1');
    assert.equal(event.kind, 'Event');
    assert.equal(event.reason, 'Started');
    assert.match(event.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.match(event.metadata.resourceVersion, /^\d+$/);
    assert.deepEqual((await call(context, 'GET', eventsPath('default', 'ev-1'))).json, event);
    const list = (await call(context, 'GET', eventsPath('default'))).json as { kind: string; items: Array<Record<string, unknown>> };
    assert.equal(list.kind, 'EventList');
    assert.deepEqual(list.items.map((i) => [(i.metadata as { name: string }).name, i.kind]), [['ev-1', undefined]], 'built-in list items carry no kind');
    assert.deepEqual(context.server.events('default').map((e) => e.metadata.name), ['ev-1']);
    assert.deepEqual(context.server.events('other'), []);
  });

  test('a name or generateName is required (422); generateName gets a random suffix', async () => {
    const unnamed = await call(context, 'POST', eventsPath('default'), { body: eventBody(undefined) });
    assertStatusBody(unnamed, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'Event "" is invalid: metadata.name: Required value: name or generateName is required',
      reason: 'Invalid',
      details: { kind: 'Event', causes: [{ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' }] },
      code: 422,
    });
    const generated = await call(context, 'POST', eventsPath('default'), { body: { ...eventBody(undefined), metadata: { generateName: 'b.' } } });
    assert.equal(generated.status, 201);
    assert.match((generated.json as { metadata: { name: string } }).metadata.name, /^b\.[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  });

  test('a duplicate name is 409 AlreadyExists', async () => {
    assert.equal((await call(context, 'POST', eventsPath('default'), { body: eventBody('dup') })).status, 201);
    assertStatusBody(await call(context, 'POST', eventsPath('default'), { body: eventBody('dup') }), {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'events "dup" already exists',
      reason: 'AlreadyExists', details: { name: 'dup', kind: 'events' }, code: 409,
    });
  });

  test('the body namespace must match the URL (400) and involvedObject.namespace the event (422)', async () => {
    const moved = await call(context, 'POST', eventsPath('default'), { body: { ...eventBody('ns-1'), metadata: { name: 'ns-1', namespace: 'other' } } });
    assert.equal(moved.status, 400);
    assert.equal(asStatus(moved).message, 'the namespace of the provided object does not match the namespace sent on the request');
    const involved = await call(context, 'POST', eventsPath('other'), { body: eventBody('ns-2') });
    assertStatusBody(involved, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'Event "ns-2" is invalid: involvedObject.namespace: Invalid value: "default": does not match event.namespace',
      reason: 'Invalid',
      details: { name: 'ns-2', kind: 'Event', causes: [{ reason: 'FieldValueInvalid', message: 'Invalid value: "default": does not match event.namespace', field: 'involvedObject.namespace' }] },
      code: 422,
    });
    assert.deepEqual(context.server.events('other'), []);
  });

  test('with eventTime set, reportingComponent, reportingInstance and action are required; eventTime needs six fractional digits', async () => {
    const eventTime = '2026-01-02T03:04:05.123456Z';
    const incomplete = await call(context, 'POST', eventsPath('default'), { body: eventBody('et-1', { eventTime }) });
    assert.equal(incomplete.status, 422);
    const fields = asStatus(incomplete).details?.causes?.map((c) => `${c.field}: ${c.message}`);
    assert.deepEqual(fields?.filter((f) => f.endsWith('Required value')), ['reportingComponent: Required value', 'reportingInstance: Required value', 'action: Required value']);
    const complete = await call(context, 'POST', eventsPath('default'), {
      body: eventBody('et-2', { eventTime, reportingComponent: 'spot.release.com/runtime', reportingInstance: 'pod-1', action: 'Build' }),
    });
    assert.equal(complete.status, 201);
    const millis = await call(context, 'POST', eventsPath('default'), {
      body: eventBody('et-3', { eventTime: '2026-01-02T03:04:05.123Z', reportingComponent: 'c', reportingInstance: 'i', action: 'a' }),
    });
    assert.equal(millis.status, 400);
    assert.equal(asStatus(millis).message, 'Event in version "v1" cannot be handled as a Event: parsing time "2026-01-02T03:04:05.123Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".123Z" as ".000000"');
  });

  test('PATCH folds a repeat: merge and strategic merge patches both apply; JSON patch too; a missing event is 404', async () => {
    await call(context, 'POST', eventsPath('default'), { body: eventBody('fold-1') });
    const before = context.server.events('default').find((e) => e.metadata.name === 'fold-1');
    const merged = await call(context, 'PATCH', eventsPath('default', 'fold-1'), { body: { count: 2, lastTimestamp: '2026-01-02T03:04:05Z', message: 'again' }, contentType: MERGE });
    assert.equal(merged.status, 200);
    const strategic = await call(context, 'PATCH', eventsPath('default', 'fold-1'), { body: { count: 3 }, contentType: SMP });
    assert.equal(strategic.status, 200);
    const jsonPatched = await call(context, 'PATCH', eventsPath('default', 'fold-1'), { raw: JSON.stringify([{ op: 'replace', path: '/count', value: 4 }]), contentType: JSON_PATCH });
    const after = jsonPatched.json as { count: number; message: string; metadata: { resourceVersion: string; uid: string } };
    assert.equal(after.count, 4);
    assert.equal(after.message, 'again');
    assert.equal(Number(after.metadata.resourceVersion), Number(before?.metadata.resourceVersion) + 3);
    assert.equal(after.metadata.uid, before?.metadata.uid);

    assertStatusBody(await call(context, 'PATCH', eventsPath('default', 'gone'), { body: { count: 2 }, contentType: SMP }), {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'events "gone" not found', reason: 'NotFound', details: { name: 'gone', kind: 'events' }, code: 404,
    });
    const unknown = await call(context, 'PATCH', eventsPath('default', 'fold-1'), { body: {}, contentType: 'application/json' });
    assert.equal(asStatus(unknown).message, 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml');
  });
});

// ---------------------------------------------------------------------------------------------

describe('fault injection', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();
  const path = buildPath('default', 'fault-b1');
  before(() => context.server.createBuild({ name: 'fault-b1' }));

  function lastLog(): RequestLogEntry | undefined {
    return context.server.requests.at(-1);
  }

  test('latency delays the answer, then the request is handled normally', async () => {
    context.server.inject({ latency: 150, path });
    const started = performance.now();
    const answer = await call(context, 'GET', path);
    assert.ok(performance.now() - started >= 140, 'answered after the delay');
    assert.equal(answer.status, 200);
    assert.equal(lastLog()?.fault, 'latency');
    await call(context, 'GET', path);
    assert.equal(lastLog()?.fault, undefined, 'times defaults to 1');
  });

  test('429 text: the max-inflight answer, text/plain with Retry-After', async () => {
    context.server.inject({ status: 429, form: 'text', path });
    const answer = await call(context, 'GET', path);
    assert.equal(answer.status, 429);
    assert.equal(answer.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(answer.headers['retry-after'], '1');
    assert.equal(answer.text, 'Too many requests, please try again later.\n');
    assert.equal(lastLog()?.fault, '429-text');
    assert.equal(lastLog()?.status, 429);
  });

  test('429 json: a TooManyRequests Status with details.retryAfterSeconds and the header', async () => {
    context.server.inject({ status: 429, form: 'json', retryAfterSeconds: 3 });
    const answer = await call(context, 'GET', path);
    assert.equal(answer.headers['retry-after'], '3');
    assertStatusBody(answer, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Too many requests, please try again later.',
      reason: 'TooManyRequests', details: { retryAfterSeconds: 3 }, code: 429,
    });
  });

  test('500 and 503 answer InternalError and ServiceUnavailable Statuses; Retry-After only when asked', async () => {
    context.server.inject({ status: 500 });
    const internal = await call(context, 'GET', path);
    assert.equal(internal.status, 500);
    assert.equal(asStatus(internal).reason, 'InternalError');
    assert.equal(internal.headers['retry-after'], undefined);
    context.server.inject({ status: 503, retryAfterSeconds: 2 });
    const unavailable = await call(context, 'GET', path);
    assert.equal(unavailable.status, 503);
    assert.equal(asStatus(unavailable).reason, 'ServiceUnavailable');
    assert.deepEqual(asStatus(unavailable).details, { retryAfterSeconds: 2 });
    assert.equal(unavailable.headers['retry-after'], '2');
  });

  test('rules match by method and path (string or RegExp), in order, for `times` requests, filtered by `when`', async () => {
    context.server.clearFaults();
    const everyOther = context.server.inject({ method: 'get', path: /\/builds\/fault-b1$/, when: ({ n }) => n % 2 === 0, times: 2, status: 503 });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(context, 'GET', path)).status);
    assert.deepEqual(statuses, [200, 503, 200, 503, 200, 200]);
    assert.equal(everyOther.hits, 2);
    context.server.inject({ method: 'PATCH', status: 500, times: Infinity });
    assert.equal((await call(context, 'GET', path)).status, 200, 'another method does not match');
    assert.equal((await call(context, 'PATCH', statusPath('fault-b1'), { body: {}, contentType: MERGE })).status, 500);
    assert.equal((await call(context, 'PATCH', statusPath('fault-b1'), { body: {}, contentType: MERGE })).status, 500);
    context.server.clearFaults();
    assert.equal((await call(context, 'PATCH', statusPath('fault-b1'), { body: {}, contentType: MERGE })).status, 200);
    context.server.inject({ path, status: 500 });
    const first = context.server.inject({ path, latency: 1 });
    const second = context.server.inject({ path, status: 503 });
    assert.equal((await call(context, 'GET', path)).status, 500, 'the first terminal rule wins');
    assert.equal(lastLog()?.fault, '500');
    assert.equal((await call(context, 'GET', path)).status, 503, 'pass-through rules let later ones apply');
    assert.equal(lastLog()?.fault, 'latency+503');
    assert.deepEqual([first.hits, second.hits], [1, 1]);
  });

  test('reset closes the connection before reading the body; nothing is stored', async () => {
    context.server.inject({ reset: true, method: 'POST' });
    await assert.rejects(call(context, 'POST', eventsPath('default'), { body: eventBody('reset-1') }), (error) => {
      assert.ok(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'].includes(errorCode(error) ?? ''), `unexpected ${String(error)}`);
      return true;
    });
    assert.deepEqual(context.server.events(), []);
    const entry = lastLog();
    assert.deepEqual([entry?.method, entry?.status, entry?.fault], ['POST', 0, 'reset']);
    assert.equal((await call(context, 'GET', path)).status, 200, 'the next request gets a new connection');
  });

  test("reset 'after-write' stores the write and loses only the answer", async () => {
    context.server.inject({ reset: 'after-write', method: 'POST' });
    await assert.rejects(call(context, 'POST', eventsPath('default'), { body: eventBody('reset-2') }));
    assert.deepEqual(context.server.events().map((e) => e.metadata.name), ['reset-2']);
    assert.equal(lastLog()?.fault, 'reset-after-write');
  });

  test('hang never answers; suspend() releases the hung socket', async () => {
    context.server.inject({ hang: true, path });
    await assert.rejects(call(context, 'GET', path, { headersTimeout: 200 }), (error) => errorCode(error) === 'UND_ERR_HEADERS_TIMEOUT');
    assert.deepEqual([lastLog()?.status, lastLog()?.fault], [0, 'hang']);

    context.server.clearLog();
    context.server.inject({ hang: true, path });
    const outcome = call(context, 'GET', path).then(() => 'answered', () => 'released');
    await waitFor(() => context.server.requests.some((r) => r.fault === 'hang'));
    await context.server.suspend();
    assert.equal(await outcome, 'released');
    await context.server.resume();
    assert.equal((await call(context, 'GET', path)).status, 200);
  });

  test('concurrentWrite changes status between the client read and its write, so a PUT meets 409', async () => {
    context.server.createBuild({ name: 'race-b1', status: { phase: 'Running', conditions: [{ type: 'A', status: 'In Progress' }] } });
    const read = asBuild(await call(context, 'GET', buildPath('default', 'race-b1')));
    context.server.inject({
      method: 'PUT',
      path: statusPath('race-b1'),
      concurrentWrite: (status) => {
        status.pod = { name: 'operator-wrote-this' };
      },
    });
    const answer = await call(context, 'PUT', statusPath('race-b1'), { body: { ...read, status: { phase: 'Done' } } });
    assert.equal(answer.status, 409);
    const stored = context.server.getBuild('default', 'race-b1');
    assert.deepEqual(stored?.status, { phase: 'Running', conditions: [{ type: 'A', status: 'In Progress' }], pod: { name: 'operator-wrote-this' } });
    assert.equal(rv(stored as Build), rv(read) + 1);
    assert.equal(lastLog()?.fault, 'concurrentWrite');
  });

  test('html answers a text/html page with the chosen status', async () => {
    context.server.inject({ html: true, status: 502 });
    const answer = await call(context, 'GET', path);
    assert.equal(answer.status, 502);
    assert.equal(answer.headers['content-type'], 'text/html');
    assert.match(answer.text, /^<html>.*Bad Gateway/);
  });

  test('body answers raw bytes: JSON that is not a Build, or a very large body', async () => {
    context.server.inject({ body: '{"kind":"Pod"}' });
    const notBuild = await call(context, 'GET', path);
    assert.deepEqual([notBuild.status, notBuild.headers['content-type'], notBuild.text], [200, 'application/json', '{"kind":"Pod"}']);
    const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
    context.server.inject({ body: big, status: 200, contentType: 'application/octet-stream' });
    const answer = await call(context, 'GET', path);
    assert.equal(answer.headers['content-length'], String(big.length));
    assert.equal(answer.text.length, big.length);
  });
});

// ---------------------------------------------------------------------------------------------

describe('lifecycle, files and the request log', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer({ namespace: 'builds-ns' });

  test('env() and the service-account folder are what a pod would see', async () => {
    const { server } = context;
    assert.deepEqual(server.env(), { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(server.port), SPOT_SERVICEACCOUNT_DIR: server.serviceAccountDir });
    assert.equal(server.url, `https://127.0.0.1:${server.port}`);
    assert.ok(server.port > 0);
    assert.equal(await readFile(join(server.serviceAccountDir, 'token'), 'utf8'), server.token);
    assert.equal(await readFile(join(server.serviceAccountDir, 'namespace'), 'utf8'), 'builds-ns');
    assert.equal(await readFile(join(server.serviceAccountDir, 'ca.crt'), 'utf8'), server.caPem);
    assert.match(server.caPem, /^-----BEGIN CERTIFICATE-----\n/);
    server.createBuild({ name: 'who' });
    await call(context, 'GET', buildPath('builds-ns', 'who'));
    assert.equal(server.requests.at(-1)?.identity, 'system:serviceaccount:builds-ns:spot-builder');
  });

  test('a client trusting another CA refuses the server', async () => {
    const other = await context.server.otherCaPem();
    assert.notEqual(other, context.server.caPem);
    assert.equal(await context.server.otherCaPem(), other, 'made once');
    const agent = new Agent({ connect: { ca: other } });
    try {
      await assert.rejects(
        request(`${context.server.url}${buildPath('default', 'x')}`, { dispatcher: agent }),
        (error) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT/.test(errorCode(error) ?? ''),
      );
    } finally {
      await agent.destroy();
    }
  });

  test('suspend() is an outage (ECONNREFUSED); resume() listens on the same port again', async () => {
    const { server } = context;
    server.createBuild({ name: 'outage' });
    const port = server.port;
    assert.equal((await call(context, 'GET', buildPath('builds-ns', 'outage'))).status, 200);
    await server.suspend();
    await assert.rejects(call(context, 'GET', buildPath('builds-ns', 'outage')), (error) => errorCode(error) === 'ECONNREFUSED');
    await server.resume();
    assert.equal(server.port, port);
    assert.equal((await call(context, 'GET', buildPath('builds-ns', 'outage'))).status, 200);
  });

  test('the request log records method, path, query, content type, status, body size and identity', async () => {
    const { server } = context;
    server.createBuild({ name: 'logged' });
    server.clearLog();
    assert.equal(server.requests.length, 0);
    const body = JSON.stringify({ status: { phase: 'Running' } });
    await call(context, 'PATCH', `${statusPath('logged', 'builds-ns')}?fieldManager=spot`, { raw: body, contentType: MERGE });
    await call(context, 'GET', buildPath('builds-ns', 'logged'), { token: null });
    assert.deepEqual(server.requests, [
      { method: 'PATCH', path: statusPath('logged', 'builds-ns'), query: 'fieldManager=spot', contentType: MERGE, status: 200, bytes: Buffer.byteLength(body), identity: 'system:serviceaccount:builds-ns:spot-builder' },
      { method: 'GET', path: buildPath('builds-ns', 'logged'), query: '', contentType: undefined, status: 401, bytes: 0 },
    ]);
  });

  test('direct store access: createBuild validates, getBuild copies, setBuildStatus bumps resourceVersion', () => {
    const { server } = context;
    const created = server.createBuild({ name: 'direct', spec: { image: { name: 'team/app' } }, labels: { l: 'v' } });
    assert.equal(created.metadata.namespace, 'builds-ns', 'the namespace defaults to the service account one');
    assert.deepEqual(created.metadata.labels, { l: 'v' });
    assert.throws(() => server.createBuild({ name: 'direct' }), /already exists/);
    assert.throws(() => server.createBuild({ name: 'bad', status: { phase: 'Nope' as 'Done' } }), /status\.phase: Unsupported value: "Nope"/);
    const copy = server.getBuild('builds-ns', 'direct') as Build;
    copy.metadata.name = 'mutated';
    assert.equal(server.getBuild('builds-ns', 'direct')?.metadata.name, 'direct');
    const updated = server.setBuildStatus('builds-ns', 'direct', { phase: 'Running' });
    assert.equal(rv(updated), rv(created) + 1);
    assert.deepEqual(updated.status, { phase: 'Running' });
    assert.throws(() => server.setBuildStatus('builds-ns', 'nope', {}), /not found/);
    assert.equal(server.deleteBuild('builds-ns', 'direct'), true);
    assert.equal(server.getBuild('builds-ns', 'direct'), undefined);
  });
});

describe('server lifecycle options', { timeout: SUITE_TIMEOUT_MS }, () => {
  test('host ::1: env keeps the address unbracketed, the URL brackets it', async () => {
    const server = await startApiServer({ host: '::1' });
    const agent = new Agent({ connect: { ca: server.caPem } });
    try {
      assert.equal(server.env().KUBERNETES_SERVICE_HOST, '::1');
      assert.equal(server.url, `https://[::1]:${server.port}`);
      server.createBuild({ name: 'six' });
      const answer = await call({ server, agent }, 'GET', buildPath('default', 'six'));
      assert.equal(answer.status, 200);
    } finally {
      await agent.destroy();
      await server.stop();
    }
  });

  test('stop() removes its temp dir, but not with keepDir or a caller-given dir', async () => {
    const temporary = await startApiServer();
    assert.ok(existsSync(temporary.serviceAccountDir));
    await temporary.stop();
    assert.equal(existsSync(temporary.dir), false);

    const kept = await startApiServer({ keepDir: true });
    await kept.stop();
    assert.ok(existsSync(join(kept.serviceAccountDir, 'token')));
    await rm(kept.dir, { recursive: true, force: true });

    const given = await mkdtemp(join(tmpdir(), 'apiserver-test-'));
    const owned = await startApiServer({ dir: given });
    assert.equal(owned.dir, given);
    await owned.stop();
    assert.ok(existsSync(join(given, 'serviceaccount', 'token')));
    await rm(given, { recursive: true, force: true });
  });
});

// ---------------------------------------------------------------------------------------------

describe('applyMergePatch (RFC 7386)', () => {
  // RFC 7386 Appendix A, every row.
  const cases: Array<[JsonValue, JsonValue, JsonValue]> = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, expected] of cases) {
    test(`${JSON.stringify(target)} + ${JSON.stringify(patch)}`, () => {
      const before = JSON.stringify(target);
      assert.deepEqual(applyMergePatch(target, patch), expected);
      assert.equal(JSON.stringify(target), before, 'the target is not mutated');
    });
  }

  test('a __proto__ key is stored as data, not as a prototype', () => {
    const patched = applyMergePatch({}, JSON.parse('{"__proto__":{"polluted":true}}') as JsonValue) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(patched), Object.prototype);
    assert.deepEqual(Object.keys(patched), ['__proto__']);
  });
});

describe('applyJsonPatch (RFC 6902)', () => {
  // RFC 6902 Appendix A examples (A.1-A.16), plus RFC 6901 escapes.
  const ok: Array<[string, JsonValue, unknown[], JsonValue]> = [
    ['A.1 add an object member', { foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux' }], { baz: 'qux', foo: 'bar' }],
    ['A.2 add an array element', { foo: ['bar', 'baz'] }, [{ op: 'add', path: '/foo/1', value: 'qux' }], { foo: ['bar', 'qux', 'baz'] }],
    ['A.3 remove an object member', { baz: 'qux', foo: 'bar' }, [{ op: 'remove', path: '/baz' }], { foo: 'bar' }],
    ['A.4 remove an array element', { foo: ['bar', 'qux', 'baz'] }, [{ op: 'remove', path: '/foo/1' }], { foo: ['bar', 'baz'] }],
    ['A.5 replace a value', { baz: 'qux', foo: 'bar' }, [{ op: 'replace', path: '/baz', value: 'boo' }], { baz: 'boo', foo: 'bar' }],
    ['A.6 move a value', { foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } }, [{ op: 'move', from: '/foo/waldo', path: '/qux/thud' }], { foo: { bar: 'baz' }, qux: { corge: 'grault', thud: 'fred' } }],
    ['A.7 move an array element', { foo: ['all', 'grass', 'cows', 'eat'] }, [{ op: 'move', from: '/foo/1', path: '/foo/3' }], { foo: ['all', 'cows', 'eat', 'grass'] }],
    ['A.8 test a value', { baz: 'qux', foo: ['a', 2, 'c'] }, [{ op: 'test', path: '/baz', value: 'qux' }, { op: 'test', path: '/foo/1', value: 2 }], { baz: 'qux', foo: ['a', 2, 'c'] }],
    ['A.10 add a nested member object', { foo: 'bar' }, [{ op: 'add', path: '/child', value: { grandchild: {} } }], { foo: 'bar', child: { grandchild: {} } }],
    ['A.11 ignore unrecognized elements', { foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux', xyz: 123 }], { foo: 'bar', baz: 'qux' }],
    ['A.14 ~ escape ordering', { '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: 10 }], { '/': 9, '~1': 10 }],
    ['A.16 add an array value', { foo: ['bar'] }, [{ op: 'add', path: '/foo/-', value: ['abc', 'def'] }], { foo: ['bar', ['abc', 'def']] }],
    ['~1 escape', { 'a/b': 1 }, [{ op: 'replace', path: '/a~1b', value: 2 }], { 'a/b': 2 }],
    ['copy', { a: { b: [1] } }, [{ op: 'copy', from: '/a', path: '/c' }, { op: 'add', path: '/c/b/-', value: 2 }], { a: { b: [1] }, c: { b: [1, 2] } }],
    ['replace the whole document', { a: 1 }, [{ op: 'replace', path: '', value: [1] }], [1]],
    ['test null and deep equality regardless of key order', { a: null, b: { x: 1, y: [1, 2] } }, [{ op: 'test', path: '/a', value: null }, { op: 'test', path: '/b', value: { y: [1, 2], x: 1 } }], { a: null, b: { x: 1, y: [1, 2] } }],
  ];
  for (const [name, document, operations, expected] of ok) {
    test(name, () => {
      const before = JSON.stringify(document);
      assert.deepEqual(applyJsonPatch(document, operations), expected);
      assert.equal(JSON.stringify(document), before, 'the document is not mutated');
    });
  }

  const failing: Array<[string, JsonValue, unknown[]]> = [
    ['A.9 a failed test', { baz: 'qux' }, [{ op: 'test', path: '/baz', value: 'bar' }]],
    ['A.12 add to a nonexistent target', { foo: 'bar' }, [{ op: 'add', path: '/baz/bat', value: 'qux' }]],
    ['A.15 comparing strings and numbers', { '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: '10' }]],
    ['remove a missing member', { a: 1 }, [{ op: 'remove', path: '/b' }]],
    ['replace a missing member', { a: 1 }, [{ op: 'replace', path: '/b', value: 2 }]],
    ['an index with a leading zero', { a: [1, 2] }, [{ op: 'replace', path: '/a/01', value: 3 }]],
    ['an index past the end', { a: [1] }, [{ op: 'add', path: '/a/2', value: 3 }]],
    ['"-" outside add', { a: [1] }, [{ op: 'remove', path: '/a/-' }]],
    ['move into its own child', { a: { b: 1 } }, [{ op: 'move', from: '/a', path: '/a/b/c' }]],
    ['an unknown op', { a: 1 }, [{ op: 'merge', path: '/a', value: 2 }]],
    ['add without value', { a: 1 }, [{ op: 'add', path: '/b' }]],
    ['a pointer without a leading slash', { a: 1 }, [{ op: 'remove', path: 'a' }]],
    ['a bad ~ escape', { a: 1 }, [{ op: 'remove', path: '/~2' }]],
  ];
  for (const [name, document, operations] of failing) {
    test(`fails: ${name}`, () => {
      assert.throws(() => applyJsonPatch(document, operations), JsonPatchError);
    });
  }

  test('all or nothing: a failure after earlier operations leaves the input untouched', () => {
    const document: JsonValue = { a: 1 };
    assert.throws(() => applyJsonPatch(document, [{ op: 'replace', path: '/a', value: 2 }, { op: 'test', path: '/a', value: 1 }]), /test failed/);
    assert.deepEqual(document, { a: 1 });
  });
});

// =============================================================================================
// What kubectl needs: discovery, lists across namespaces, selectors, tables, watch

/** client-go's discovery Accept header (discovery_client.go acceptDiscoveryFormats). */
const DISCOVERY_ACCEPT =
  'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json';
/** kubectl get's Accept header. */
const TABLE_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';

interface TableBody {
  kind: string;
  apiVersion: string;
  metadata: { resourceVersion?: string };
  columnDefinitions: Array<{ name: string; type: string; format: string; priority: number }> | null;
  rows: Array<{ cells: unknown[]; object?: { kind: string; apiVersion?: string; metadata: Record<string, unknown>; status?: unknown } }>;
}

interface WatchFrame {
  type: string;
  object: { metadata: { name?: string; resourceVersion?: string }; status?: Record<string, unknown> } & Partial<TableBody>;
}

interface WatchStream {
  status: number;
  contentType: unknown;
  frames: WatchFrame[];
  ended(): boolean;
  close(): Promise<void>;
}

/** Opens a watch and collects its frames as they arrive. */
async function openWatch(context: Context, path: string, accept?: string): Promise<WatchStream> {
  const headers: Record<string, string> = { authorization: `Bearer ${context.server.token}` };
  if (accept) headers.accept = accept;
  const response = await request(`${context.server.url}${path}`, { method: 'GET', headers, dispatcher: context.agent });
  const frames: WatchFrame[] = [];
  let done = false;
  let buffer = '';
  response.body.setEncoding('utf8');
  response.body.on('data', (chunk: string) => {
    buffer += chunk;
    for (let at = buffer.indexOf('\n'); at >= 0; at = buffer.indexOf('\n')) {
      frames.push(JSON.parse(buffer.slice(0, at)) as WatchFrame);
      buffer = buffer.slice(at + 1);
    }
  });
  response.body.on('end', () => (done = true));
  response.body.on('error', () => (done = true));
  return {
    status: response.statusCode,
    contentType: response.headers['content-type'],
    frames,
    ended: () => done,
    close: async () => {
      response.body.destroy();
      await waitFor(() => done || response.body.destroyed);
    },
  };
}

const summary = (frames: readonly WatchFrame[]) => frames.map((f) => `${f.type} ${f.object.metadata.name} ${String(f.object.status?.phase ?? '')}`.trim());

describe('discovery', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();

  test("the legacy documents kubectl falls back to when the answer is plain application/json", async () => {
    const get = async (path: string) => {
      const answer = await call(context, 'GET', path, { accept: DISCOVERY_ACCEPT });
      assert.equal(answer.status, 200, path);
      // discovery_client.go: only a Content-Type naming APIGroupDiscoveryList is read as aggregated.
      assert.equal(answer.headers['content-type'], 'application/json', path);
      return answer.json as Record<string, unknown>;
    };
    const version = await get('/version');
    assert.deepEqual([version.major, version.minor], ['1', '32']);
    assert.deepEqual(await get('/api'), {
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${context.server.port}` }],
    });
    const groupVersion = { groupVersion: 'spot.release.com/v1alpha1', version: 'v1alpha1' };
    const group = { name: 'spot.release.com', versions: [groupVersion], preferredVersion: groupVersion };
    assert.deepEqual(await get('/apis'), { kind: 'APIGroupList', apiVersion: 'v1', groups: [group] });
    assert.deepEqual(await get('/apis/spot.release.com'), { kind: 'APIGroup', apiVersion: 'v1', ...group });
    assert.deepEqual(await get('/apis/spot.release.com/v1alpha1'), {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: 'spot.release.com/v1alpha1',
      resources: [
        { name: 'builds', singularName: 'build', namespaced: true, kind: 'Build', verbs: ['create', 'get', 'list', 'patch', 'update', 'watch'], shortNames: ['bld'], categories: ['spot'] },
        { name: 'builds/status', singularName: '', namespaced: true, kind: 'Build', verbs: ['get', 'patch', 'update'] },
      ],
    });
    assert.deepEqual(await get('/api/v1'), {
      kind: 'APIResourceList',
      groupVersion: 'v1',
      resources: [{ name: 'events', singularName: 'event', namespaced: true, kind: 'Event', verbs: ['create', 'get', 'list', 'patch', 'watch'], shortNames: ['ev'] }],
    });
  });

  test('unknown groups and versions are 404; discovery needs a token like everything else', async () => {
    for (const path of ['/apis/other.example.com', '/apis/spot.release.com/v9', '/apis/spot.release.com/v1alpha1/extra/x']) {
      assertStatusBody(await call(context, 'GET', path), ROUTE_NOT_FOUND_STATUS);
    }
    assert.equal((await call(context, 'GET', '/apis', { token: null })).status, 401);
  });
});

const ROUTE_NOT_FOUND_STATUS: Status = {
  kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server could not find the requested resource', reason: 'NotFound', code: 404,
};

describe('lists across namespaces, selectors and tables', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();
  const uids: Record<string, string> = {};
  before(async () => {
    const { server } = context;
    uids.web = server.createBuild({ name: 'web', labels: { app: 'web', tier: 'front' }, status: { phase: 'Running' } }).metadata.uid ?? '';
    uids.api = server.createBuild({ name: 'api', labels: { app: 'api' } }).metadata.uid ?? '';
    server.createBuild({ namespace: 'team-a', name: 'batch', labels: { app: 'batch', tier: 'back' } });
    for (const [name, build, reason] of [['web.1', 'web', 'Started'], ['web.2', 'web', 'Completed'], ['api.1', 'api', 'Started']] as const) {
      const involvedObject = { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: build, namespace: 'default', uid: uids[build] };
      const created = await call(context, 'POST', eventsPath('default'), {
        body: eventBody(name, { involvedObject, reason, source: { component: 'spot-runtime', host: 'pod-1' }, firstTimestamp: new Date(Date.now() - 150_000).toISOString(), lastTimestamp: new Date(Date.now() - 150_000).toISOString() }),
      });
      assert.equal(created.status, 201, created.text);
    }
  });

  test('GET without a namespace lists every namespace, sorted by namespace then name; POST there is 404', async () => {
    const builds = await call(context, 'GET', '/apis/spot.release.com/v1alpha1/builds');
    assert.equal(builds.status, 200);
    const list = builds.json as { kind: string; items: Build[] };
    assert.equal(list.kind, 'BuildList');
    assert.deepEqual(list.items.map((b) => `${b.metadata.namespace}/${b.metadata.name}`), ['default/api', 'default/web', 'team-a/batch']);
    const events = (await call(context, 'GET', '/api/v1/events')).json as { kind: string; items: Array<{ metadata: { name: string } }> };
    assert.deepEqual([events.kind, events.items.map((e) => e.metadata.name)], ['EventList', ['api.1', 'web.1', 'web.2']]);
    assertStatusBody(await call(context, 'POST', '/apis/spot.release.com/v1alpha1/builds', { body: buildBody('nowhere') }), ROUTE_NOT_FOUND_STATUS);
  });

  test("field selectors: kubectl describe's event search by involvedObject; an unsupported field is 400", async () => {
    const selector = `involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Build,involvedObject.uid=${uids.web}`;
    const names = async (path: string) => ((await call(context, 'GET', path)).json as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name);
    assert.deepEqual(await names(`${eventsPath('default')}?fieldSelector=${encodeURIComponent(selector)}&limit=500`), ['web.1', 'web.2']);
    assert.deepEqual(await names(`${eventsPath('default')}?fieldSelector=${encodeURIComponent('involvedObject.uid=other')}`), []);
    assert.deepEqual(await names(`/api/v1/events?fieldSelector=${encodeURIComponent('reason!=Started,source=spot-runtime')}`), ['web.2']);
    assert.deepEqual(await names(`/apis/spot.release.com/v1alpha1/builds?fieldSelector=metadata.namespace%3Dteam-a`), ['batch']);
    assertStatusBody(await call(context, 'GET', `${buildPath('default')}?fieldSelector=status.phase%3DDone`), {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'field label not supported: status.phase', reason: 'BadRequest', code: 400,
    });
  });

  test('label selectors: equality, inequality, set and existence requirements', async () => {
    const names = async (selector: string) =>
      ((await call(context, 'GET', `/apis/spot.release.com/v1alpha1/builds?labelSelector=${encodeURIComponent(selector)}`)).json as { items: Build[] }).items.map((b) => b.metadata.name);
    assert.deepEqual(await names('app=web'), ['web']);
    assert.deepEqual(await names('app!=web'), ['api', 'batch']);
    assert.deepEqual(await names('tier in (front,back)'), ['web', 'batch']);
    assert.deepEqual(await names('!tier'), ['api']);
    assert.deepEqual(await names('tier,app notin (batch)'), ['web']);
    assert.equal((await call(context, 'GET', `${buildPath('default')}?labelSelector=${encodeURIComponent('a b c')}`)).status, 400);
  });

  test("kubectl get's Table: Name then the CRD's printer columns, ages as short durations, PartialObjectMetadata rows", async () => {
    const answer = await call(context, 'GET', `${buildPath('default')}?limit=500`, { accept: TABLE_ACCEPT });
    assert.equal(answer.status, 200);
    const table = answer.json as TableBody;
    assert.deepEqual([table.kind, table.apiVersion], ['Table', 'meta.k8s.io/v1']);
    assert.deepEqual(table.columnDefinitions?.map((c) => [c.name, c.type, c.format, c.priority]), [
      ['Name', 'string', 'name', 0],
      ['Phase', 'string', '', 0],
      ['Image', 'string', '', 0],
      ['Age', 'date', '', 0],
    ]);
    assert.equal(table.rows.length, 2);
    const [api, web] = table.rows;
    assert.deepEqual(web?.cells.slice(0, 3), ['web', 'Running', null], 'a missing value is null (kubectl shows <none>)');
    assert.deepEqual(api?.cells.slice(0, 3), ['api', null, null]);
    assert.match(String(web?.cells[3]), /^\d+s$/);
    assert.equal(web?.object?.kind, 'PartialObjectMetadata');
    assert.equal(web?.object?.apiVersion, 'meta.k8s.io/v1');
    assert.deepEqual([web?.object?.metadata.namespace, web?.object?.metadata.uid], ['default', uids.web]);
    assert.equal(web?.object?.status, undefined, 'metadata only');
    const list = (await call(context, 'GET', buildPath('default'))).json as { metadata: { resourceVersion: string } };
    assert.equal(table.metadata.resourceVersion, list.metadata.resourceVersion);

    const full = (await call(context, 'GET', `${buildPath('default')}?includeObject=Object`, { accept: TABLE_ACCEPT })).json as TableBody;
    assert.deepEqual(full.rows[1]?.object?.status, { phase: 'Running' });
    const bare = (await call(context, 'GET', `${buildPath('default')}?includeObject=None`, { accept: TABLE_ACCEPT })).json as TableBody;
    assert.equal(bare.rows[0]?.object, undefined);
    const one = (await call(context, 'GET', buildPath('default', 'web'), { accept: 'application/json;as=Table;v=v1beta1;g=meta.k8s.io' })).json as TableBody;
    assert.deepEqual([one.apiVersion, one.rows.length, one.metadata.resourceVersion], ['meta.k8s.io/v1beta1', 1, context.server.getBuild('default', 'web')?.metadata.resourceVersion]);
    const yamlOnly = await call(context, 'GET', buildPath('default'), { accept: 'application/yaml' });
    assert.deepEqual([yamlOnly.status, asStatus(yamlOnly).reason], [406, 'NotAcceptable']);
  });

  test("kubectl get events' Table: the Event printer's ten columns, priority 1 for the wide ones", async () => {
    const table = (await call(context, 'GET', eventsPath('default'), { accept: TABLE_ACCEPT })).json as TableBody;
    assert.deepEqual(table.columnDefinitions?.map((c) => `${c.name}:${c.priority}`), [
      'Last Seen:0', 'Type:0', 'Reason:0', 'Object:0', 'Subobject:1', 'Source:1', 'Message:0', 'First Seen:1', 'Count:1', 'Name:1',
    ]);
    assert.deepEqual(table.rows[1]?.cells, ['2m30s', 'Normal', 'Started', 'build/web', '', 'spot-runtime, pod-1', 'step started', '2m30s', 1, 'web.1']);
  });

  test('an identity bound to namespaces is refused a list at the cluster scope, naming it', async () => {
    context.server.addIdentity('test-token-team-a', { user: 'alice', rules: [{ verbs: ['list'], resources: ['builds'], namespaces: ['team-a'] }] });
    assert.equal((await call(context, 'GET', buildPath('team-a'), { token: 'test-token-team-a' })).status, 200);
    assertStatusBody(await call(context, 'GET', '/apis/spot.release.com/v1alpha1/builds', { token: 'test-token-team-a' }), {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'builds.spot.release.com is forbidden: User "alice" cannot list resource "builds" in API group "spot.release.com" at the cluster scope',
      reason: 'Forbidden', details: { group: 'spot.release.com', kind: 'builds' }, code: 403,
    });
  });
});

describe('watch', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();
  const streams: WatchStream[] = [];
  const watch = async (path: string, accept?: string) => {
    const stream = await openWatch(context, path, accept);
    streams.push(stream);
    return stream;
  };
  after(async () => Promise.all(streams.map((s) => s.close())));

  test('without a resourceVersion: the current objects as ADDED, then every change as it happens, resourceVersions rising', async () => {
    const { server } = context;
    server.createBuild({ namespace: 'watch-1', name: 'w1' });
    const stream = await watch('/apis/spot.release.com/v1alpha1/namespaces/watch-1/builds?watch=1');
    assert.deepEqual([stream.status, stream.contentType], [200, 'application/json']);
    await waitFor(() => stream.frames.length === 1);
    server.setBuildStatus('watch-1', 'w1', { phase: 'Running' });
    server.setBuildStatus('watch-1', 'w1', { phase: 'Done' });
    server.createBuild({ namespace: 'watch-1', name: 'w2' });
    server.createBuild({ namespace: 'elsewhere', name: 'w1' });
    server.deleteBuild('watch-1', 'w1');
    await waitFor(() => stream.frames.length === 5);
    assert.deepEqual(summary(stream.frames), ['ADDED w1', 'MODIFIED w1 Running', 'MODIFIED w1 Done', 'ADDED w2', 'DELETED w1 Done']);
    const versions = stream.frames.map((f) => Number(f.object.metadata.resourceVersion));
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b), 'resourceVersions only rise');
    assert.equal(new Set(versions).size, 5, 'the deletion has a resourceVersion of its own');
  });

  test("from a list's resourceVersion: only later changes; a field selector follows one Build; a label change that unselects is DELETED", async () => {
    const { server } = context;
    server.createBuild({ namespace: 'watch-2', name: 'a', labels: { shown: 'yes' } });
    server.createBuild({ namespace: 'watch-2', name: 'b' });
    const list = (await call(context, 'GET', buildPath('watch-2'))).json as { metadata: { resourceVersion: string } };
    server.setBuildStatus('watch-2', 'b', { phase: 'Running' });
    server.setBuildStatus('watch-2', 'a', { phase: 'Running' });
    const byName = await watch(`${buildPath('watch-2')}?resourceVersion=${list.metadata.resourceVersion}&watch=true&fieldSelector=metadata.name%3Da`);
    const byLabel = await watch(`${buildPath('watch-2')}?watch=true&labelSelector=shown%3Dyes`);
    await waitFor(() => byName.frames.length === 1 && byLabel.frames.length === 1);
    assert.deepEqual(summary(byName.frames), ['MODIFIED a Running']);
    assert.deepEqual(summary(byLabel.frames), ['ADDED a Running']);
    const a = server.getBuild('watch-2', 'a');
    const relabel = await call(context, 'PATCH', buildPath('watch-2', 'a'), { token: context.server.token, body: { metadata: { labels: { shown: null } } }, contentType: MERGE });
    assert.equal(relabel.status, 403, 'the default identity may not patch the main resource');
    context.server.addIdentity(ADMIN_TOKEN, { user: 'system:admin', rules: [{ verbs: '*', resources: '*' }] });
    const patched = await call(context, 'PATCH', buildPath('watch-2', 'a'), { token: ADMIN_TOKEN, body: { metadata: { labels: { shown: null } } }, contentType: MERGE });
    assert.equal(patched.status, 200, patched.text);
    await waitFor(() => byLabel.frames.length === 2 && byName.frames.length === 2);
    assert.deepEqual(summary(byLabel.frames), ['ADDED a Running', 'DELETED a Running']);
    assert.deepEqual(summary(byName.frames), ['MODIFIED a Running', 'MODIFIED a Running']);
    assert.ok(Number(byName.frames[1]?.object.metadata.resourceVersion) > Number(a?.metadata.resourceVersion), 'the label change is a new resourceVersion');
  });

  test('a Table watch (kubectl get -w): one row per event, column definitions in the first only', async () => {
    const { server } = context;
    server.createBuild({ namespace: 'watch-3', name: 't1' });
    const stream = await watch(`${buildPath('watch-3')}?watch=true`, TABLE_ACCEPT);
    server.setBuildStatus('watch-3', 't1', { phase: 'Errored' });
    await waitFor(() => stream.frames.length === 2);
    const [first, second] = stream.frames;
    assert.deepEqual(first?.object.columnDefinitions?.map((c) => c.name), ['Name', 'Phase', 'Image', 'Age']);
    assert.equal(second?.object.columnDefinitions, null, 'Go writes the omitted definitions as null');
    assert.deepEqual([second?.type, second?.object.kind, second?.object.rows?.[0]?.cells.slice(0, 2)], ['MODIFIED', 'Table', ['t1', 'Errored']]);
    assert.equal(second?.object.metadata.resourceVersion, server.getBuild('watch-3', 't1')?.metadata.resourceVersion);
  });

  test('a resourceVersion older than the kept history is 410 Expired; timeoutSeconds ends a stream', async () => {
    const { server } = context;
    server.createBuild({ namespace: 'watch-4', name: 'busy' });
    for (let i = 0; i < 1001; i++) server.setBuildStatus('watch-4', 'busy', { phase: i % 2 ? 'Running' : 'Done' });
    const answer = await call(context, 'GET', `${buildPath('watch-4')}?watch=1&resourceVersion=1`);
    assert.equal(answer.status, 410);
    assert.equal(asStatus(answer).reason, 'Expired');
    assert.match(asStatus(answer).message ?? '', /^too old resource version: 1 \(\d+\)$/);
    const started = performance.now();
    const timed = await watch(`${buildPath('watch-4')}?watch=1&timeoutSeconds=1`);
    await waitFor(() => timed.ended(), 3_000);
    assert.ok(performance.now() - started >= 900, 'open for about the asked second');
    assert.deepEqual(summary(timed.frames), ['ADDED busy Done']);
  });

  test('sendInitialEvents ends the initial ADDED events with a BOOKMARK marking their end', async () => {
    context.server.createBuild({ namespace: 'watch-5', name: 'i1' });
    const stream = await watch(`${buildPath('watch-5')}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan`);
    await waitFor(() => stream.frames.length === 2);
    assert.deepEqual(stream.frames.map((f) => f.type), ['ADDED', 'BOOKMARK']);
    assert.deepEqual((stream.frames[1]?.object.metadata as { annotations?: unknown }).annotations, { 'k8s.io/initial-events-end': 'true' });
  });
});

// =============================================================================================
// The CRD from deploy/: structural pruning and validation

describe('deploy/spot-crd.yaml: the published shape, pruned and validated by its schema', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer({ crd: 'spot' });
  const operatorStatus = { stage: 'Running' as const, pod: { name: 'sample-build-x7k2p', namespace: 'spot-system' } };
  before(() => context.server.addIdentity(ADMIN_TOKEN, { user: 'system:admin', rules: [{ verbs: '*', resources: '*' }] }));

  test('unknown status fields are dropped at every level, answered 200, with one Warning header per field', async () => {
    context.server.createBuild({ name: 's1', status: operatorStatus });
    const answer = await call(context, 'PATCH', statusPath('s1'), {
      contentType: MERGE,
      body: {
        status: {
          phase: 'Done',
          stage: 'Done',
          conditions: [{ type: 'Build', status: 'Success' }],
          image: { url: 'registry.example.com/app:1', digest: 'sha256:abc', metadata: { size: '1' } },
          pod: { name: 'sample-build-x7k2p', namespace: 'spot-system', node: 'n1' },
        },
      },
    });
    assert.equal(answer.status, 200, answer.text);
    const expected = { stage: 'Done', pod: operatorStatus.pod, image: { url: 'registry.example.com/app:1', digest: 'sha256:abc' } };
    assert.deepEqual(asBuild(answer).status, expected);
    assert.deepEqual(context.server.getBuild('default', 's1')?.status, expected);
    // Go's map order makes the real server's order vary; the set is what counts.
    assert.deepEqual([answer.headers.warning].flat().sort(), [
      '299 - "unknown field \\"status.conditions\\""',
      '299 - "unknown field \\"status.image.metadata\\""',
      '299 - "unknown field \\"status.phase\\""',
      '299 - "unknown field \\"status.pod.node\\""',
    ]);
  });

  test('an enum violation is 422 Invalid with a FieldValueNotSupported cause, as the real server writes it', async () => {
    const current = context.server.createBuild({ name: 's2', status: operatorStatus });
    const answer = await call(context, 'PUT', statusPath('s2'), {
      body: { ...current, status: { ...operatorStatus, stage: 'Bogus' } },
    });
    assertStatusBody(answer, {
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'Build.spot.release.com "s2" is invalid: status.stage: Unsupported value: "Bogus": supported values: "Running", "Done", "Errored"',
      reason: 'Invalid',
      details: {
        name: 's2', group: 'spot.release.com', kind: 'Build',
        causes: [{ reason: 'FieldValueNotSupported', message: 'Unsupported value: "Bogus": supported values: "Running", "Done", "Errored"', field: 'status.stage' }],
      },
      code: 422,
    });
  });

  test('required fields: status.stage, and both names of status.pod; several causes are bracketed', async () => {
    const current = context.server.createBuild({ name: 's3', status: operatorStatus });
    const noStage = await call(context, 'PUT', statusPath('s3'), { body: { ...current, status: { pod: operatorStatus.pod, phase: 'Done' } } });
    assert.equal(noStage.status, 422);
    assert.equal(asStatus(noStage).message, 'Build.spot.release.com "s3" is invalid: status.stage: Required value');
    assert.deepEqual(asStatus(noStage).details?.causes, [{ reason: 'FieldValueRequired', message: 'Required value', field: 'status.stage' }]);
    const halfPod = await call(context, 'PATCH', statusPath('s3'), { contentType: MERGE, body: { status: { stage: 'Nope', pod: { name: null } } } });
    assert.equal(
      asStatus(halfPod).message,
      'Build.spot.release.com "s3" is invalid: [status.stage: Unsupported value: "Nope": supported values: "Running", "Done", "Errored", status.pod.name: Required value]',
    );
    assert.deepEqual(context.server.getBuild('default', 's3')?.status, operatorStatus, 'nothing stored');
  });

  test('create, update and patch of the main resource prune the spec and the root the same way', async () => {
    const created = await call(context, 'POST', buildPath('default'), {
      token: ADMIN_TOKEN,
      body: { ...buildBody('s4'), extra: 1, metadata: { name: 's4', namespace: 'default', color: 'red' }, spec: { repo_url: 'https://git.example.com/a.git', image: { name: 'a', size: 2 }, bogus: true } },
    });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(asBuild(created).spec, { repo_url: 'https://git.example.com/a.git', image: { name: 'a' } });
    assert.equal((asBuild(created) as unknown as Record<string, unknown>).extra, undefined);
    assert.equal(asBuild(created).metadata.color, undefined, 'ObjectMeta keeps only its own fields');
    assert.deepEqual([created.headers.warning].flat().sort(), [
      '299 - "unknown field \\"extra\\""',
      '299 - "unknown field \\"metadata.color\\""',
      '299 - "unknown field \\"spec.bogus\\""',
      '299 - "unknown field \\"spec.image.size\\""',
    ]);
    const put = await call(context, 'PUT', buildPath('default', 's4'), { token: ADMIN_TOKEN, body: { ...asBuild(created), spec: { image: { tag: '1', registry: { url: 'r', insecure: true } } } } });
    assert.deepEqual(asBuild(put).spec, { image: { tag: '1', registry: { url: 'r' } } });
    const patched = await call(context, 'PATCH', buildPath('default', 's4'), { token: ADMIN_TOKEN, contentType: MERGE, body: { spec: { image: { repository_context: { dockerfile: 'D', path: '.', extra: 'x' } } } } });
    assert.deepEqual(asBuild(patched).spec?.image?.repository_context, { dockerfile: 'D', path: '.' });
    assert.equal(asBuild(patched).metadata.generation, 3, 'generation moved for each spec change');
  });

  test('fieldValidation=Strict refuses unknown fields with a 400; Ignore drops them without a warning', async () => {
    context.server.createBuild({ name: 's5', status: operatorStatus });
    const strict = await call(context, 'PATCH', `${statusPath('s5')}?fieldValidation=Strict`, { contentType: MERGE, body: { status: { phase: 'Done' } } });
    assert.deepEqual([strict.status, asStatus(strict).reason], [400, 'BadRequest']);
    assert.equal(asStatus(strict).message, 'Build in version "v1alpha1" cannot be handled as a Build: strict decoding error: unknown field "status.phase"');
    const ignore = await call(context, 'PATCH', `${statusPath('s5')}?fieldValidation=Ignore`, { contentType: MERGE, body: { status: { phase: 'Done' } } });
    assert.deepEqual([ignore.status, ignore.headers.warning], [200, undefined]);
  });

  test('the Table has the columns this CRD declares: Name and Stage, and no Age', async () => {
    const table = (await call(context, 'GET', buildPath('default'), { accept: TABLE_ACCEPT })).json as TableBody;
    assert.deepEqual(table.columnDefinitions?.map((c) => c.name), ['Name', 'Stage']);
    assert.deepEqual(table.rows.find((r) => r.cells[0] === 's1')?.cells, ['s1', 'Done']);
  });
});

describe('deploy/crd.yaml: x-kubernetes-preserve-unknown-fields keeps what it marks, and only that', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();

  test('unknown fields of status are kept, unknown fields of a condition are dropped with a warning', async () => {
    context.server.createBuild({ name: 'c1' });
    const answer = await call(context, 'PATCH', statusPath('c1'), {
      contentType: MERGE,
      body: { status: { phase: 'Running', attempt: 2, conditions: [{ type: 'Build', status: 'In Progress', observedGeneration: 1 }] } },
    });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(asBuild(answer).status, { phase: 'Running', attempt: 2, conditions: [{ type: 'Build', status: 'In Progress' }] });
    assert.deepEqual(answer.headers.warning, '299 - "unknown field \\"status.conditions[0].observedGeneration\\""');
  });
});

// =============================================================================================
// Faults for issue 12's failure semantics

describe('faults: a Build replaced mid-run, a body over the size limit', { timeout: SUITE_TIMEOUT_MS }, () => {
  const context = useServer();

  test('replaceBuild: the Build is re-created under a new uid, so a PUT carrying the old uid is 409 and a plain patch lands on the new object', async () => {
    const { server } = context;
    const old = server.createBuild({ name: 'r1', spec: { image: { name: 'team/app' } }, labels: { a: 'b' }, status: { phase: 'Running' } });
    const stream = await openWatch(context, `${buildPath('default')}?watch=1&resourceVersion=${old.metadata.resourceVersion}`);
    try {
      server.inject({ replaceBuild: true, path: statusPath('r1'), method: 'PUT' });
      const put = await call(context, 'PUT', statusPath('r1'), { body: { ...old, status: { phase: 'Done' } } });
      const replaced = server.getBuild('default', 'r1');
      assert.notEqual(replaced?.metadata.uid, old.metadata.uid);
      assert.deepEqual([replaced?.metadata.generation, replaced?.spec, replaced?.metadata.labels, replaced?.status], [1, old.spec, old.metadata.labels, undefined]);
      assertStatusBody(put, {
        kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
        message: `Operation cannot be fulfilled on builds.spot.release.com "r1": Precondition failed: UID in precondition: ${old.metadata.uid}, UID in object meta: ${replaced?.metadata.uid}`,
        reason: 'Conflict', details: { name: 'r1', group: 'spot.release.com', kind: 'builds' }, code: 409,
      });
      assert.equal(context.server.requests.at(-1)?.fault, 'replaceBuild');

      server.inject({ replaceBuild: true, status: { phase: 'Running' }, path: statusPath('r1') });
      const patch = await call(context, 'PATCH', statusPath('r1'), { contentType: MERGE, body: { status: { phase: 'Done' } } });
      assert.equal(patch.status, 200, 'a patch without preconditions writes to whatever Build has the name now');
      assert.notEqual(asBuild(patch).metadata.uid, replaced?.metadata.uid);
      await waitFor(() => stream.frames.length === 5);
      assert.deepEqual(summary(stream.frames), ['DELETED r1 Running', 'ADDED r1', 'DELETED r1', 'ADDED r1 Running', 'MODIFIED r1 Done']);
    } finally {
      await stream.close();
    }
  });

  test('maxRequestBytes: a body over the lowered limit is 413 RequestEntityTooLarge; the 3 MiB default stands otherwise', async () => {
    const { server } = context;
    server.createBuild({ name: 'big' });
    const body = { status: { phase: 'Running', conditions: [{ type: 'Build', status: 'In Progress', message: 'x'.repeat(200) }] } };
    server.inject({ maxRequestBytes: 100, path: statusPath('big') });
    const refused = await call(context, 'PATCH', statusPath('big'), { contentType: MERGE, body });
    assertStatusBody(refused, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Request entity too large: limit is 100', reason: 'RequestEntityTooLarge', code: 413 });
    assert.deepEqual([server.requests.at(-1)?.fault, server.getBuild('default', 'big')?.status], ['maxRequestBytes', undefined]);
    assert.equal((await call(context, 'PATCH', statusPath('big'), { contentType: MERGE, body })).status, 200, 'times defaults to 1');
    const huge = { status: { phase: 'Running', conditions: [{ type: 'Build', status: 'In Progress', message: 'x'.repeat(3 * 1024 * 1024) }] } };
    const overDefault = await call(context, 'PATCH', statusPath('big'), { contentType: MERGE, body: huge });
    assert.deepEqual([overDefault.status, asStatus(overDefault).message], [413, 'Request entity too large: limit is 3145728']);
  });
});

// =============================================================================================
// Pure parts: CRD reading, durations, selectors

describe('parseCrd', () => {
  const crdOf = (versionFields: string, specFields = 'scope: Namespaced') => `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.com}
spec:
  group: example.com
  ${specFields}
  names: {plural: things, kind: Thing}
  versions:
    - name: v1
      served: true
      storage: true
${versionFields}`;
  const schema = (body: string) => `      schema:\n        openAPIV3Schema:\n${body}`;

  test('reads both CRDs of deploy/: names, columns, status subresource, schema', async () => {
    const conditions = parseCrd(await readFile(CRD_FILES.conditions, 'utf8'), 'crd.yaml');
    assert.deepEqual([conditions.group, conditions.version, conditions.kind, conditions.listKind, conditions.shortNames, conditions.statusSubresource], [
      'spot.release.com', 'v1alpha1', 'Build', 'BuildList', ['bld'], true,
    ]);
    assert.deepEqual(conditions.columns.map((c) => `${c.name}=${c.jsonPath}`), ['Phase=.status.phase', 'Image=.status.image.url', 'Age=.metadata.creationTimestamp']);
    assert.equal(conditions.schema.properties?.status?.preserveUnknownFields, true);
    const spot = parseCrd(await readFile(CRD_FILES.spot, 'utf8'), 'spot-crd.yaml');
    assert.deepEqual(spot.columns.map((c) => c.name), ['Stage']);
    assert.deepEqual([spot.schema.properties?.status?.required, spot.schema.properties?.status?.properties?.stage?.enum], [['stage'], ['Running', 'Done', 'Errored']]);
    assert.equal(spot.schema.properties?.status?.preserveUnknownFields, undefined);
  });

  test('a version without printer columns shows its Age, as the real server defaults them', () => {
    const crd = parseCrd(crdOf(schema('          type: object')), 'x.yaml');
    assert.deepEqual(crd.columns.map((c) => [c.name, c.type, c.jsonPath]), [['Age', 'date', '.metadata.creationTimestamp']]);
    assert.deepEqual([crd.singular, crd.listKind, crd.statusSubresource], ['thing', 'ThingList', false]);
  });

  test('what the local server cannot serve faithfully is refused, naming the file and the field', () => {
    const refusals: Array<[string, RegExp]> = [
      [crdOf(schema('          type: object'), 'scope: Cluster'), /^x\.yaml: spec\.scope must be Namespaced/],
      [crdOf(`${schema('          type: object')}\n    - name: v2\n      served: true`), /^x\.yaml: exactly one served version is supported, found 2$/],
      [crdOf(schema('          type: object\n          properties:\n            spec: {type: object, default: {}}')), /^x\.yaml: openAPIV3Schema\.properties\.spec\.default is not implemented/],
      [crdOf(`      additionalPrinterColumns:\n        - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}\n${schema('          type: object')}`), /is not a simple JSONPath/],
      ['kind: [', /^x\.yaml: not YAML/],
      ['kind: Pod', /^x\.yaml: not an apiextensions\.k8s\.io\/v1 CustomResourceDefinition$/],
    ];
    for (const [manifest, expected] of refusals) assert.throws(() => parseCrd(manifest, 'x.yaml'), (e: unknown) => e instanceof CrdError && expected.test(e.message));
  });
});

describe('durations and selectors', () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;

  test('humanDuration (built-in printers) and shortHumanDuration (CRD date columns) round as apimachinery does', () => {
    const human: Array<[number, string]> = [
      [-3 * s, '<invalid>'], [-1.5 * s, '0s'], [0, '0s'], [119 * s, '119s'], [2 * m, '2m'], [150 * s, '2m30s'], [10 * m + 30 * s, '10m'],
      [3 * h, '3h'], [3 * h + 30 * m, '3h30m'], [8 * h + 30 * m, '8h'], [47 * h, '47h'], [49 * h, '2d1h'], [8 * d, '8d'], [800 * d, '2y70d'], [9 * 365 * d, '9y'],
    ];
    for (const [ms, text] of human) assert.equal(humanDuration(ms), text, `humanDuration(${ms})`);
    const short: Array<[number, string]> = [[59 * s, '59s'], [60 * s, '1m'], [59 * m, '59m'], [60 * m, '1h'], [25 * h, '1d'], [400 * d, '1y']];
    for (const [ms, text] of short) assert.equal(shortHumanDuration(ms), text, `shortHumanDuration(${ms})`);
  });

  test('field selectors: =, ==, !=, backslash escapes; an unknown field or a term without operator is refused', () => {
    const supported = new Set(['a', 'b']);
    const select = (selector: string) => fieldSelector(selector, supported);
    assert.equal(select('a=x\\,y,b!=z')({ a: 'x,y', b: 'w' }), true);
    assert.equal(select('a==x')({ a: 'y' }), false);
    assert.equal(select('')({}), true);
    assert.throws(() => select('c=1'), /field label not supported: c/);
    assert.throws(() => select('a'), /can't understand 'a'/);
  });

  test('label selectors: a missing label matches != and notin, not = or in', () => {
    assert.equal(labelSelector('app!=web')({}), true);
    assert.equal(labelSelector('app notin (web)')({}), true);
    assert.equal(labelSelector('app=web')({}), false);
    assert.equal(labelSelector('app in (web, api),!debug')({ app: 'api' }), true);
    assert.throws(() => labelSelector('app=web=x'), /unable to parse requirement/);
  });
});

// =============================================================================================
// `npm run apiserver` under real signals

describe('npm run apiserver', { timeout: 60_000 }, () => {
  const root = new URL('..', import.meta.url).pathname;

  interface Running {
    child: ReturnType<typeof spawn>;
    exports: Record<string, string>;
    stderr(): string;
    exited: Promise<number | null>;
  }

  /** Starts `npm run -s apiserver -- ARGS` and waits for its exports (KUBECONFIG is the last). */
  async function start(args: string[], detached = false): Promise<Running> {
    const child = spawn('npm', ['run', '-s', 'apiserver', '--', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => stdout.includes('export KUBECONFIG=') || child.exitCode !== null, 30_000);
    const exports = Object.fromEntries([...stdout.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']));
    return { child, exports, stderr: () => stderr, exited };
  }

  /** The server's temp dir: the folder holding the kubeconfig. */
  const dirOf = (running: Running) => join(running.exports.KUBECONFIG ?? '', '..');

  test('SIGTERM to the npm process stops the server and removes its temp dir, token, CA and kubeconfig', async () => {
    const running = await start([]);
    const dir = dirOf(running);
    assert.equal(running.exports.BUILD_REFERENCE, 'default/sample-build');
    assert.equal(running.exports.SPOT_SERVICEACCOUNT_DIR, join(dir, 'serviceaccount'));
    const kubeconfig = await readFile(running.exports.KUBECONFIG ?? '', 'utf8');
    assert.match(kubeconfig, new RegExp(`server: https://127\\.0\\.0\\.1:${running.exports.KUBERNETES_SERVICE_PORT}\\n`));
    assert.match(kubeconfig, /certificate-authority-data: \S+\n/);
    assert.match(kubeconfig, /token: test-token-admin-[0-9a-f]{32}\n/);
    assert.deepEqual((await readdir(join(dir, 'serviceaccount'))).sort(), ['ca.crt', 'namespace', 'token']);
    running.child.kill('SIGTERM'); // npm's pid: npm forwards the signal to the script, which is node itself (exec)
    await running.exited;
    await waitFor(() => !existsSync(dir), 5_000);
    assert.match(running.stderr(), /# stopping \(SIGTERM\)/);
  });

  test('Ctrl-C (SIGINT to the whole process group) with --crd spot: the Spot sample, then a clean stop', async () => {
    const running = await start(['--crd', 'spot'], true);
    const dir = dirOf(running);
    assert.deepEqual([running.exports.BUILD_REFERENCE, existsSync(dir)], ['workspace-a/sample-build', true]);
    assert.equal((await readFile(join(dir, 'serviceaccount', 'namespace'), 'utf8')), 'spot-system', 'the builder pod runs in spot-system');
    process.kill(-(running.child.pid ?? 0), 'SIGINT');
    // npm received the SIGINT too: depending on which of the two handles it first, npm exits 0
    // (its script did) or dies of the signal (null). The contract is the server's clean stop.
    const code = await running.exited;
    assert.ok(code === 0 || code === null, `npm exited ${code}`);
    await waitFor(() => !existsSync(dir), 5_000);
    assert.match(running.stderr(), /# stopping \(SIGINT\)/, 'the server saw the Ctrl-C and stopped');
  });

  test('npm killed outright (SIGKILL): the orphaned server notices and still removes its temp dir', async () => {
    const running = await start([]);
    const dir = dirOf(running);
    running.child.kill('SIGKILL');
    await waitFor(() => !existsSync(dir), 5_000);
  });

  test('a --crd that is neither a name nor a readable CRD is a usage error (exit 2), one line, nothing started', async () => {
    const running = await start(['--crd', 'nope']);
    assert.equal(await running.exited, 2);
    assert.deepEqual(running.exports, {});
    assert.match(running.stderr(), /^apiserver: --crd nope: ENOENT: no such file or directory, open 'nope' \(see --help\)\n$/);
  });
});
