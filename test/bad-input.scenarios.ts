/**
 * Bad input: each case gets exactly one clear line on stderr naming the cause (and the fix where
 * there is one), the documented exit code, no stack trace, no request where none should be sent,
 * and an untouched Build. Run by bad-input.test.ts and `npm run reliability`.
 */
import { strict as assert } from 'node:assert';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, problemLines, STEP, trace } from './support/scenario-checks.js';
import type { Run, Scenario, TestServer } from './support/scenario-harness.js';

interface BadInputCase {
  id: string;
  title: string;
  /** Exit code: 2 for usage and configuration, 3 for answers the API server gave. */
  code: 2 | 3;
  /** The one line must match. */
  line: RegExp;
  /** The requests the server saw (none for exit 2). */
  requests?: string[];
  args?: string[];
  ref?: string | undefined;
  env?: (server: TestServer, run: Run) => Promise<Record<string, string>>;
  setup?: (server: TestServer, run: Run) => Promise<string[] | void>;
}

async function tasksFile(run: Run, content: string): Promise<string[]> {
  const file = join(await run.tempDir(), 'tasks.json');
  await writeFile(file, content);
  return ['--tasks', file];
}

const saEnv = (edit: (dir: string) => Promise<void>) => async (server: TestServer) => ({ SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy(edit) });

const BAD_INPUT_CASES: BadInputCase[] = [
  { id: 'ref-empty', title: 'BUILD_REFERENCE empty', code: 2, ref: '', line: /^spot-run: no Build given: pass --build NAMESPACE\/NAME or set BUILD_REFERENCE/ },
  { id: 'ref-one-part', title: 'BUILD_REFERENCE with one part', code: 2, ref: 'b1', line: /^spot-run: invalid Build reference "b1": expected "namespace\/name" with exactly one "\/" \(from BUILD_REFERENCE\)/ },
  { id: 'ref-three-parts', title: 'BUILD_REFERENCE with three parts', code: 2, ref: 'default/b1/x', line: /^spot-run: invalid Build reference "default\/b1\/x": expected "namespace\/name"/ },
  { id: 'ref-dotdot', title: 'BUILD_REFERENCE ../x', code: 2, ref: '../x', line: /^spot-run: invalid Build namespace "\.\.": must consist of lower case/ },
  { id: 'ref-upper', title: 'BUILD_REFERENCE in upper case', code: 2, ref: 'Default/B1', line: /^spot-run: invalid Build namespace "Default": must consist of lower case/ },
  { id: 'ref-300', title: 'BUILD_REFERENCE of 300 characters', code: 2, ref: `default/${'a'.repeat(292)}`, line: /^spot-run: invalid Build name "a{61}\.\.\.": must be no more than 253 characters \(got 292\)/ },
  { id: 'no-token', title: 'token file missing', code: 2, env: saEnv((d) => rm(join(d, 'token'))), line: /^spot-run: service-account token file \S+\/token is missing \(folder from SPOT_SERVICEACCOUNT_DIR\)$/ },
  { id: 'no-ca', title: 'CA file missing', code: 2, env: saEnv((d) => rm(join(d, 'ca.crt'))), line: /^spot-run: CA file \S+\/ca\.crt is missing/ },
  { id: 'bad-namespace', title: 'namespace file that holds no namespace name', code: 2, env: saEnv((d) => writeFile(join(d, 'namespace'), 'Default\n')), line: /^spot-run: invalid pod namespace "Default": must consist of lower case/ },
  { id: 'empty-token', title: 'token file empty', code: 2, env: saEnv((d) => writeFile(join(d, 'token'), ' \n')), line: /^spot-run: service-account token file \S+\/token is empty/ },
  { id: 'ca-not-pem', title: 'CA file that is not PEM', code: 2, env: saEnv((d) => writeFile(join(d, 'ca.crt'), 'not a certificate\n')), line: /^spot-run: CA file \S+\/ca\.crt holds no PEM certificate/ },
  {
    id: 'wrong-ca',
    title: 'server certificate not signed by the mounted CA',
    code: 3,
    env: async (server) => ({ SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem())) }),
    line: /cannot report Build default\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: .*\[UNABLE_TO_VERIFY_LEAF_SIGNATURE\]/,
    requests: [],
  },
  { id: 'http-remote', title: '--server with plain http to a non-loopback host', code: 2, args: ['--server', 'http://10.1.2.3:8080', ...STEP], line: /^spot-run: refusing plain http to 10\.1\.2\.3:8080: .*use https/ },
  { id: 'tasks-not-json', title: '--tasks file that is not JSON', code: 2, setup: (_s, r) => tasksFile(r, '[{"type": "A",'), line: /^spot-run: --tasks file \S+ is not valid JSON: / },
  { id: 'tasks-no-type', title: '--tasks step without a type', code: 2, setup: (_s, r) => tasksFile(r, '[{"command": "true"}]'), line: /^spot-run: --tasks file \S+ step 1 needs a "type" \(the condition type\)/ },
  { id: 'tasks-no-command', title: '--tasks step without a command', code: 2, setup: (_s, r) => tasksFile(r, '[{"type": "Building Image"}]'), line: /^spot-run: --tasks file \S+ step 1 \(Building Image\) needs exactly one of "command" or "argv"/ },
  { id: 'duplicate-types', title: 'two steps with the same condition type', code: 2, args: ['--step', 'Building Image=true', '--step', 'Building Image=false'], line: /^spot-run: duplicate step type "Building Image": each step is its own condition and needs its own type/ },
  { id: 'not-found', title: 'the Build does not exist (404)', code: 3, ref: 'default/nope', line: /^spot-run: cannot report Build default\/nope to the API server at https:\/\/\S+: 404 NotFound: builds\.spot\.release\.com "nope" not found \(GET /, requests: ['GET build 404'] },
  {
    id: 'forbidden',
    title: 'RBAC forbids the status write (403)',
    code: 3,
    setup: async (server) => server.api.setPermissions(server.api.token, [{ verbs: ['get'], resources: ['builds', 'builds/status'] }, { verbs: '*', resources: ['events'] }]),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: 403 Forbidden: .*cannot patch resource "builds\/status"/,
    requests: ['GET build 200', 'PATCH status 403'],
  },
  {
    id: 'unauthorized',
    title: 'a token the server does not know (401)',
    code: 3,
    env: async (server, run) => {
      const bogus = 'test-token-not-known-to-the-server-0000';
      run.secret(bogus);
      return { SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy((d) => writeFile(join(d, 'token'), bogus)) };
    },
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: 401 Unauthorized: Unauthorized \(GET /,
    requests: ['GET build 401'],
  },
  {
    id: 'html',
    title: 'an answer in HTML instead of JSON',
    code: 3,
    setup: async (server) => void server.api.inject({ html: true, times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: expected a JSON answer, got text\/html: "<html>/,
    requests: ['GET build 200'],
  },
  {
    id: 'huge-answer',
    title: 'an answer of 50 MiB',
    code: 3,
    setup: async (server) => void server.api.inject({ body: Buffer.alloc(50 * MiB, 0x20), times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: response body of 52428800 bytes exceeds the 10485760-byte limit/,
    requests: ['GET build 200'],
  },
  {
    id: 'not-a-build',
    title: 'a JSON answer that is not a Build',
    code: 3,
    setup: async (server) => void server.api.inject({ body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b1', namespace: 'default' } }), times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: the answer is not a Build \(apiVersion "v1", kind "ConfigMap"\)/,
    requests: ['GET build 200'],
  },
];

/** Runs one bad-input case and checks its one line, exit code, requests and the untouched Build. */
async function badInputRun(r: Run, k: BadInputCase): Promise<void> {
  const server = await r.server();
  const before = server.api.getBuild('default', 'b1');
  const extraArgs = (await k.setup?.(server, r)) ?? [];
  const env = (await k.env?.(server, r)) ?? {};
  const res = await r.cli(server, [...(k.args ?? STEP), ...extraArgs], { ...('ref' in k ? { ref: k.ref } : {}), env });
  assert.equal(res.code, k.code, `exit code\n${res.stderr}`);
  const lines = problemLines(res.stderr);
  assert.equal(lines.length, 1, `exactly one line naming the cause, got:\n${res.stderr}`);
  assert.match(lines[0]!, k.line);
  assert.doesNotMatch(res.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(res.stderr, /internal error/);
  assert.equal(res.stdout, '', 'nothing on stdout');
  assert.deepEqual(trace(server.api.requests), k.requests ?? [], 'requests');
  // Refused before anything was written: the Build is as the operator left it.
  assert.deepEqual(server.api.getBuild('default', 'b1'), before, 'the Build is untouched');
  assert.deepEqual(server.api.events(), [], 'no events');
}

export const BAD_INPUT_SCENARIOS: readonly Scenario[] = BAD_INPUT_CASES.map((k) => ({
  id: `bad-input/${k.id}`,
  suite: 'bad-input',
  title: k.title,
  timeoutMs: 30_000,
  run: (ctx) => ctx.run(k.id, (r) => badInputRun(r, k)),
}));
