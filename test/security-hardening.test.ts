/**
 * Issue 16's probes, each reproduced: a token echoed by the server survives in no error field, a
 * JSON log line cannot carry a secret in its escaped form, unusable tokens and hosts are refused
 * at load (exit 2, never retried), an answer nested 2,000 deep is refused instead of overflowing
 * the stack, a --tasks parse error quotes nothing, condition types cannot forge log lines, a CA
 * file holding a private key is refused, and steps can run as another user (--step-user).
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../lib/config.js';
import { ApiError, ConfigError, InvalidNameError, ResponseError, isSpotError } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { createMergePatch, jsonEqual } from '../lib/patches.js';
import { reportFatalError, runTasks, type BuildClient } from '../lib/runner.js';
import { registerSecret } from '../lib/secrets.js';
import { stepTask } from '../lib/steps.js';
import { StaticTokenSource, type TokenSource } from '../lib/token.js';
import { createTransport } from '../lib/transport.js';
import { buildRef } from '../lib/names.js';
import type { Build, BuildRef } from '../lib/types.js';
import { sharedServerCertificates } from '../scripts/apiserver/certs.js';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';
import { classifyReportFailure, CommandFailure, ExitCodes } from '../scripts/spot-run/exit-codes.js';
import { findJsonSyntaxFault } from '../scripts/spot-run/json-syntax.js';
import { parseStepFlag, planRun, type Options } from '../scripts/spot-run/options.js';
import { bundleSpotRun, runCli, type CliOptions, type CliResult } from './support/cli.js';
import { rejection, TEST_NAMESPACE, withFixture, type Exchange } from './support/fixtures.js';

/** A long fake token, as a real one is: the probes need more than 160 characters of it. */
const LONG_TOKEN = `fake-token-${'0123456789abcdef'.repeat(16)}`;
const BUILD_PATH = `/apis/spot.release.com/v1alpha1/namespaces/${TEST_NAMESPACE}/builds/b1`;
const REF = buildRef(TEST_NAMESPACE, 'b1');

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-sec-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Fails when `text` holds any 12-character piece of `secret` (a cut token is still a leak). */
function assertNoPieceOf(secret: string, text: string, what: string): void {
  for (let i = 0; i + 12 <= secret.length; i += 6) {
    assert.ok(!text.includes(secret.slice(i, i + 12)), `${what} holds a piece of the secret (at ${i}): ${text.slice(0, 400)}`);
  }
}

/** A BuildClient that keeps one Build in memory and records what it was asked. */
function memoryClient(ref: BuildRef, status: Build['status'] = {}): BuildClient & { calls: string[]; events: string[]; build: Build } {
  const state = {
    calls: [] as string[],
    events: [] as string[],
    build: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: ref.name, namespace: ref.namespace, resourceVersion: '1' }, status } as Build,
    async getBuild() {
      state.calls.push('get');
      return structuredClone(state.build);
    },
    async updateBuildStatus(_ref: BuildRef, mutate: (b: Build) => void) {
      state.calls.push('update');
      const draft = structuredClone(state.build);
      mutate(draft);
      state.build = draft;
      return structuredClone(draft);
    },
    async recordEvent(_build: Build, event: { message: string }) {
      state.calls.push('event');
      state.events.push(event.message);
      return { ok: true as const, action: 'created' as const, name: 'e' };
    },
  };
  return state as unknown as BuildClient & { calls: string[]; events: string[]; build: Build };
}

/** The ApiError of a GET of the Build answered with `reply`, by a client holding LONG_TOKEN. */
async function errorOfAnswer(reply: Exchange['reply']): Promise<ApiError> {
  let caught: Error | undefined;
  await withFixture(
    [{ request: { method: 'GET', path: BUILD_PATH }, reply }],
    async (client) => {
      caught = await rejection(() => client.getBuild(REF));
    },
    { config: { tokenSource: new StaticTokenSource(LONG_TOKEN) } },
  );
  assert.ok(caught instanceof ApiError, String(caught));
  return caught;
}

describe('redaction: a token the server echoes survives in no field of the error', () => {
  test('a text body echoing the token: redacted whole before the snippet is cut (message, bodySnippet, the Warning event)', async () => {
    const err = await errorOfAnswer({ status: 403, body: `forbidden: the webhook authenticator refused bearer ${LONG_TOKEN} for this request` });
    assertNoPieceOf(LONG_TOKEN, err.message, 'the message');
    assertNoPieceOf(LONG_TOKEN, err.bodySnippet ?? '', 'bodySnippet');
    assert.match(err.message, /forbidden: the webhook authenticator refused bearer \[REDACTED\]/);
    // The fatal path turns the error into a condition message and a Warning event.
    const fake = memoryClient(REF, { conditions: [{ type: 'Build', status: 'In Progress' }] });
    await reportFatalError(fake, REF, err);
    assert.equal(fake.events.length, 1);
    assertNoPieceOf(LONG_TOKEN, fake.events[0]!, 'the Warning event');
    assertNoPieceOf(LONG_TOKEN, JSON.stringify(fake.build.status), 'the condition');
  });

  test('a Status answer: reason, message and every details field are redacted', async () => {
    const err = await errorOfAnswer({
      status: 422,
      body: {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        reason: `Bad${LONG_TOKEN}`,
        message: `token ${LONG_TOKEN} refused`,
        code: 422,
        details: { name: LONG_TOKEN, kind: LONG_TOKEN, causes: [{ reason: LONG_TOKEN, field: LONG_TOKEN, message: LONG_TOKEN }] },
      },
    });
    assertNoPieceOf(LONG_TOKEN, err.message, 'the message');
    assertNoPieceOf(LONG_TOKEN, err.reason, 'reason');
    assertNoPieceOf(LONG_TOKEN, err.serverMessage, 'serverMessage');
    assertNoPieceOf(LONG_TOKEN, JSON.stringify(err.details), 'details');
    assert.equal(err.reason, 'Bad[REDACTED]');
    assert.equal(err.statusCode, 422);
  });
});

describe('redaction: JSON log lines are redacted before they are serialised', () => {
  // Characters JSON escapes: a quote and a backslash (a file or a header can hold both).
  const SECRET = 'pass"word\\with-escapes-0123456789';
  before(() => registerSecret(SECRET));
  const escaped = JSON.stringify(SECRET).slice(1, -1);

  for (const format of ['json', 'text'] as const) {
    test(`${format}: neither the secret nor its escaped form is printed, in the message or any field`, () => {
      const lines: string[] = [];
      const log = createLogger({ format, write: (l) => lines.push(l), now: () => new Date(0) });
      log.info(`connecting with ${SECRET}`, { header: `Bearer ${SECRET}`, nested: { list: [SECRET] }, error: new Error(`echo ${SECRET}`) });
      log.child({ bound: SECRET }).warn('child');
      assert.equal(lines.length, 2);
      for (const line of lines) {
        assert.ok(!line.includes(SECRET), `raw secret in: ${line}`);
        assert.ok(!line.includes(escaped), `escaped secret in: ${line}`);
        assertNoPieceOf(SECRET, line, 'the line');
      }
      assert.match(lines[0]!, /\[REDACTED\]/);
      if (format === 'json') {
        const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
        assert.equal(entry.msg, 'connecting with [REDACTED]');
        assert.deepEqual(entry.nested, { list: ['[REDACTED]'] });
      }
    });
  }
});

describe('tokens and hosts that cannot be used are configuration errors at load', () => {
  const writeToken = async (name: string, content: string) => {
    const path = join(scratch, name);
    await writeFile(path, content);
    return path;
  };

  const tokenCases: Array<[string, string, RegExp]> = [
    ['a CR/LF inside the token', 'abcdefghij\r\nX-Injected: 1', /holds a line break at character 11/],
    ['a token of 7 characters', 'short12', /is too short \(7 characters, at least 8\)/],
    ['a control character', 'abcdefgh\u0000ijkl', /holds a control character/],
  ];
  for (const [name, token, message] of tokenCases) {
    test(`${name}: ConfigError from loadConfig (file and given token alike), the token not in the message`, async () => {
      const path = await writeToken(`token-${name.length}`, token);
      for (const options of [{ tokenFile: path }, { token }]) {
        const err = await rejection(() => loadConfig({ server: 'https://127.0.0.1:9', ...options }));
        assert.ok(err instanceof ConfigError, `${name}: ${String(err)}`);
        assert.match(err.message, message);
        assert.ok(!err.message.includes(token.trim()), err.message);
      }
    });
  }

  test('a malformed KUBERNETES_SERVICE_HOST or port: ConfigError before any file is read', async () => {
    const { caPem } = await sharedServerCertificates();
    const dir = await mkdtemp(join(scratch, 'sa-'));
    await writeFile(join(dir, 'token'), LONG_TOKEN);
    await writeFile(join(dir, 'ca.crt'), caPem);
    for (const [host, port] of [['10.0.0.1 evil', '443'], ['10.0.0.1\r\nX: y', '443'], ['kubernetes/..', '443'], ['10.0.0.1', '0'], ['10.0.0.1', '70000']] as const) {
      const err = await rejection(() => loadConfig({ env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port }, serviceAccountDir: dir }));
      assert.ok(err instanceof ConfigError, `${JSON.stringify(host)}:${port}: ${String(err)}`);
      assert.match(err.message, /^KUBERNETES_SERVICE_(HOST|PORT) must be/);
    }
    // What it accepts: IPv4, IPv6 (bare or bracketed), a DNS name.
    for (const host of ['10.0.0.1', 'fd00::1', '[fd00::1]', 'kubernetes.default.svc']) {
      const config = await loadConfig({ env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: dir });
      assert.match(config.server, /^https:\/\/.+:443$/);
    }
  });

  test('a header undici refuses (a token source that skipped the checks): a ConfigError at once, nothing sent, never retried, exit 2', async () => {
    let requests = 0;
    const http: Server = createServer((_req, res) => {
      requests++;
      res.end('{}');
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const port = (http.address() as { port: number }).port;
    const tokenSource: TokenSource = { token: async () => 'abcdefghij\r\nX-Injected: 1', refresh: async () => false };
    const transport = createTransport({ server: `http://127.0.0.1:${port}`, tokenSource, retry: { baseDelayMs: 50, deadlineMs: 3_000 } });
    try {
      const started = Date.now();
      const err = await rejection(() => transport.request({ method: 'GET', path: '/x' }));
      assert.ok(err instanceof ConfigError, String(err));
      assert.ok(Date.now() - started < 1_000, `took ${Date.now() - started} ms: retried`);
      assert.equal(requests, 0);
      assert.equal(classifyReportFailure(err), 'config');
    } finally {
      await transport.close();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  test('a CA file that also holds a private key is refused, the key not shown', async () => {
    const { caPem, keyPem } = await sharedServerCertificates();
    const path = join(scratch, 'ca-with-key.pem');
    await writeFile(path, `${caPem}${keyPem}`);
    const err = await rejection(() => loadConfig({ server: 'https://127.0.0.1:9', token: LONG_TOKEN, caFile: path }));
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.path, path);
    assert.match(err.message, /holds a private key \("PRIVATE KEY"\): a CA bundle holds only public certificates/);
    const body = keyPem.split('\n')[1]!;
    assert.ok(!err.message.includes(body.slice(0, 20)), err.message);
    // The certificate alone is still fine.
    await writeFile(path, caPem);
    assert.equal((await loadConfig({ server: 'https://127.0.0.1:9', token: LONG_TOKEN, caFile: path })).ca, caPem);
  });
});

describe('hostile answers: nesting', () => {
  const nested = (levels: number): string => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

  test('a Build whose status is nested 2,000 deep (10 KB) is refused as a ResponseError, before any step runs', async () => {
    const body = `{"apiVersion":"spot.release.com/v1alpha1","kind":"Build","metadata":{"name":"b1","namespace":"${TEST_NAMESPACE}","resourceVersion":"7"},"status":{"x":${nested(2000)}}}`;
    assert.ok(body.length > 10_000);
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILD_PATH }, reply: { status: 200, headers: { 'content-type': 'application/json' }, body } },
    ];
    await withFixture(exchanges, async (client) => {
      let ran = false;
      const err = await rejection(() => runTasks(client, REF, [{ type: 'Build', run: async () => void (ran = true) }], { events: false }));
      assert.ok(err instanceof ResponseError, `${err.name}: ${err.message}`);
      assert.match(err.message, /^the answer is nested deeper than 64 levels; refusing it \(GET \/apis\//);
      assert.equal(ran, false);
      // spot-run: exit 3 at once, as any GET answered with something that is not a usable Build.
      assert.equal(classifyReportFailure(err), 'final');
    });
  });

  test('an answer nested exactly 64 deep is still read; strings with brackets do not count', async () => {
    const body = `{"apiVersion":"spot.release.com/v1alpha1","kind":"Build","metadata":{"name":"b1","namespace":"${TEST_NAMESPACE}","resourceVersion":"7","annotations":{"x":"[[[[{{{{\\"[[["}},"status":{"x":${nested(62)}}}`;
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILD_PATH }, reply: { status: 200, headers: { 'content-type': 'application/json' }, body } },
    ];
    await withFixture(exchanges, async (client) => {
      const build = await client.getBuild(REF);
      assert.equal(build.metadata.resourceVersion, '7');
    });
  });

  test('the merge-patch diff, the comparison and the status copy are bounded: a clear RangeError, not a stack overflow', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    let deep2: unknown = 2;
    for (let i = 0; i < 100_000; i++) deep2 = { a: deep2 };
    assert.throws(() => createMergePatch(deep, deep2), /^RangeError: a JSON value nested deeper than 256 levels/);
    assert.throws(() => jsonEqual([deep], [deep2]), /^RangeError: a JSON value nested deeper than 256 levels/);
    // A caller's deep `base` Build: the copy that the mutation gets is bounded too (no request is sent).
    await withFixture([], async (client) => {
      const base = { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: TEST_NAMESPACE, resourceVersion: '1' }, status: { x: deep } } as unknown as Build;
      const err = await rejection(() => client.updateBuildStatus(REF, () => {}, { base }));
      assert.match(String(err), /^RangeError: a JSON value nested deeper than 256 levels/);
    });
  });
});

/** Options of a run whose steps all come from the --tasks file `file`. */
function tasksOnly(file: string): Options {
  return {
    ref: buildRef('default', 'b1'), tasksFile: file, stepFlags: [], connection: {}, phaseField: undefined, resource: undefined,
    format: 'text', level: 'info', graceMs: 1, timeoutMs: 1, deadlineMs: 1, stepUser: undefined,
    buildTimeoutSeconds: undefined, maskValues: [], output: { format: 'text', terminationLog: undefined },
  };
}

describe('--tasks parse errors say where and why, never what', () => {
  const SECRET_VALUE = 'hunter2-very-secret-value';
  const broken: Array<[string, string, number, number, RegExp]> = [
    ['an unquoted value', `[{"type": "A", "command": "true",\n  "env": {"TOKEN": ${SECRET_VALUE}}}]`, 2, 20, /expected a value/],
    ['a trailing comma', `[{"type": "A", "command": "true", "env": {"TOKEN": "${SECRET_VALUE}"},}]`, 1, 81, /expected a quoted key after ","/],
    ['text after the list', `[{"type": "A", "command": "true", "env": {"TOKEN": "${SECRET_VALUE}"}}] ${SECRET_VALUE}`, 1, 83, /unexpected text after the JSON value/],
    ['a raw line break in a string', `[{"type": "A", "command": "true", "env": {"TOKEN": "${SECRET_VALUE}\n"}}]`, 1, 78, /control character/],
    ['an unterminated string', `[{"type": "A", "env": {"TOKEN": "${SECRET_VALUE}`, 1, 59, /unexpected end of the file|never ends/],
  ];
  for (const [name, text, line, column, cause] of broken) {
    test(`${name}: line ${line}, column ${column}, and no content`, async () => {
      assert.throws(() => JSON.parse(text), 'the probe must be invalid JSON');
      const file = join(scratch, `tasks-${name.replace(/\W/g, '-')}.json`);
      await writeFile(file, text);
      const err = await rejection(() => planRun(tasksOnly(file)));
      assert.ok(err instanceof CommandFailure && err.exitCode === ExitCodes.Usage, String(err));
      assert.ok(!err.message.includes('hunter2'), err.message);
      assert.ok(err.message.startsWith(`--tasks file ${file} is not valid JSON: line ${line}, column ${column}: `), err.message);
      assert.match(err.message, cause);
    });
  }

  test('the locator agrees with JSON.parse on valid and invalid texts (seeded mutations)', () => {
    let seed = 16;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const valid = '{"a": [1, -2.5e3, true, false, null, "x\\"y\\u00e9"], "b": {"c": {}}, "d": []}';
    assert.equal(findJsonSyntaxFault(valid), undefined);
    const alphabet = '{}[]:,"\\ 0-.eatrufnl\n';
    let invalid = 0;
    for (let n = 0; n < 400; n++) {
      const at = Math.floor(random() * valid.length);
      const text = valid.slice(0, at) + alphabet[Math.floor(random() * alphabet.length)] + valid.slice(at + (random() < 0.5 ? 1 : 0));
      let ok = true;
      try {
        JSON.parse(text);
      } catch {
        ok = false;
      }
      assert.equal(findJsonSyntaxFault(text) === undefined, ok, `disagrees with JSON.parse on ${JSON.stringify(text)}`);
      if (!ok) invalid++;
    }
    assert.ok(invalid > 100, `only ${invalid} invalid mutations`);
    // 100,000 levels: no stack overflow.
    assert.ok(findJsonSyntaxFault('['.repeat(100_000)));
  });
});

describe('condition types are validated: printable, no control characters, at most 316 characters', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['a newline that would forge a log line', 'Building\n2026-01-01T00:00:00.000Z INFO  forged', /must be printable: it holds U\+000A at character 9/],
    ['a carriage return', 'Build\rX', /U\+000D/],
    ['a bidi override', 'Build\u202eX', /U\+202E/],
    ['a line separator', 'Build\u2028X', /U\+2028/],
    ['317 characters', 'x'.repeat(317), /must be no more than 316 characters \(got 317\)/],
  ];
  for (const [name, type, problem] of bad) {
    test(`${name}: --step, --tasks and runTasks refuse it`, async () => {
      // --step: a usage error naming the flag, the type shown escaped.
      try {
        parseStepFlag(`${type}=true`);
        assert.fail('parseStepFlag accepted it');
      } catch (err) {
        assert.ok(err instanceof CommandFailure && err.exitCode === ExitCodes.Usage, String(err));
        assert.match(err.message, problem);
        assert.ok(!/[\n\r\u2028\u202e]/.test(err.message), `the message carries the raw type: ${JSON.stringify(err.message)}`);
      }
      // --tasks
      const file = join(scratch, `tasks-type-${type.length}-${type.charCodeAt(5)}.json`);
      await writeFile(file, JSON.stringify([{ type, command: 'true' }]));
      const err = await rejection(() => planRun(tasksOnly(file)));
      assert.ok(err instanceof CommandFailure && err.exitCode === ExitCodes.Usage, String(err));
      assert.match(err.message, problem);
      // The library: a typed error before anything is sent.
      const fake = memoryClient(REF);
      const libErr = await rejection(() => runTasks(fake, REF, [{ type, run: async () => {} }], { events: false }));
      assert.ok(libErr instanceof InvalidNameError && isSpotError(libErr), String(libErr));
      assert.match(libErr.message, problem);
      assert.deepEqual(fake.calls, []);
    });
  }

  test('what Spot uses is accepted: spaces, 316 characters, non-ASCII letters', async () => {
    for (const type of ['Building Image', 'y'.repeat(316), 'Überprüfung 😀']) {
      assert.equal(parseStepFlag(`${type}=true`).type, type);
      const fake = memoryClient(REF);
      const outcome = await runTasks(fake, REF, [{ type, run: async () => {} }], { events: false });
      assert.equal(outcome.outcome, 'done');
    }
  });
});

describe('a failed step', () => {
  test("its log line does not repeat the stderr tail it already showed live; the condition and the event carry it", async () => {
    const out: string[] = [];
    const logs: string[] = [];
    const fake = memoryClient(REF);
    const outcome = await runTasks(
      fake,
      REF,
      [stepTask({ type: 'Build', command: 'echo "first-stderr-line" >&2; echo "second-stderr-line" >&2; exit 3' }, { stdout: (t) => out.push(t), stderr: (t) => out.push(t) })],
      { log: createLogger({ write: (l) => logs.push(l) }) },
    );
    assert.equal(outcome.outcome, 'failed');
    const all = out.join('') + logs.join('\n');
    assert.equal(all.split('first-stderr-line').length - 1, 1, `shown more than once:\n${all}`);
    const failedLine = logs.find((l) => l.includes('Build failed after'));
    assert.ok(failedLine, logs.join('\n'));
    assert.match(failedLine, /reason=StepFailed error="exit code 3"$/);
    assert.match(JSON.stringify(fake.build.status), /first-stderr-line\\nsecond-stderr-line/);
    assert.match(fake.events.at(-1)!, /exit code 3; last stderr lines:\nfirst-stderr-line\nsecond-stderr-line/);
  });
});

const isRoot = process.getuid?.() === 0;

describe('--step-user: steps run as another user, out of reach of the token', { skip: isRoot ? false : 'needs root to switch users' }, () => {
  const NOBODY = 65534;

  test('stepTask with `user`: the step runs as that user and group, cannot read a 0400 file of ours, and can still write its results', async () => {
    const secretFile = join(scratch, 'token-0400');
    await writeFile(secretFile, LONG_TOKEN, { mode: 0o400 });
    const out: string[] = [];
    const fake = memoryClient(REF);
    const outcome = await runTasks(
      fake,
      REF,
      [
        stepTask(
          {
            type: 'Build',
            command: `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; cat ${secretFile} 2>/dev/null && echo READ-IT; echo registry.example.com/app:1 > "$SPOT_RESULTS_DIR/image-url"`,
          },
          { user: { uid: NOBODY, gid: NOBODY }, stdout: (t) => out.push(t), stderr: (t) => out.push(t) },
        ),
      ],
      { events: false },
    );
    const text = out.join('');
    assert.equal(outcome.outcome, 'done', text);
    assert.match(text, new RegExp(`uid=${NOBODY} gid=${NOBODY} groups=${NOBODY}\\n`));
    assert.ok(!text.includes('READ-IT') && !text.includes(LONG_TOKEN.slice(0, 20)), text);
    assert.equal(fake.build.status?.image?.url, 'registry.example.com/app:1');
  });

  describe('spot-run --step-user against the local API server', () => {
    let server: ApiServer;
    let bundle: string;
    before(async () => {
      [server, bundle] = await Promise.all([startApiServer(), bundleSpotRun()]);
    });
    after(async () => {
      await server?.stop();
    });
    const spotRun = (args: string[], options: CliOptions = {}): Promise<CliResult> => runCli(args, { entry: bundle, timeoutMs: 30_000, ...options });

    test('without CAP_SETUID, CAP_SETGID and CAP_CHOWN (root with them dropped): exit 2 before anything is sent', { skip: existsSync('/usr/bin/setpriv') ? false : 'needs setpriv' }, async () => {
      server.createBuild({ name: 'no-caps' });
      const before = server.requests.length;
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(
          '/usr/bin/setpriv',
          ['--bounding-set=-setuid,-setgid,-chown', process.execPath, bundle, '--step-user', String(NOBODY), '--step', 'Build=id -u'],
          { env: { PATH: process.env.PATH, ...server.env(), BUILD_REFERENCE: 'default/no-caps' }, timeout: 30_000 },
          (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
        );
      });
      assert.equal(result.code, ExitCodes.Usage, result.stderr);
      assert.match(result.stderr, /^spot-run: --step-user needs spot-run to run as root or with CAP_SETUID, CAP_SETGID and CAP_CHOWN \(it runs as user 0 without them\)/);
      assert.equal(server.requests.length, before, 'nothing was sent');
    });

    test('a token file the step user could read is refused (exit 2); mounted 0400, the steps run as that user', async () => {
      const tokenPath = join(server.serviceAccountDir, 'token');
      await chmod(tokenPath, 0o644);
      server.createBuild({ name: 'step-user' });
      const env = { ...server.env(), BUILD_REFERENCE: 'default/step-user' };
      const refused = await spotRun(['--step-user', String(NOBODY), '--step', 'Build=id -u'], { env });
      assert.equal(refused.code, ExitCodes.Usage, refused.stderr);
      assert.match(refused.stderr, /^spot-run: --step-user 65534:65534 can read the token file \S+ \(mode 0644, owner 0:0\): mount the token with defaultMode 0400/);

      await chmod(tokenPath, 0o400);
      assert.equal((await stat(tokenPath)).mode & 0o777, 0o400);
      const ran = await spotRun(['--step-user', `${NOBODY}:${NOBODY}`, '--step', `Build=echo "as $(id -u)"; cat ${tokenPath} || echo "cannot read the token"`], { env });
      assert.equal(ran.code, 0, ran.stderr);
      assert.match(ran.stdout, /\[Build\] as 65534\n/);
      assert.match(ran.stdout + ran.stderr, /cannot read the token/);
      assert.ok(!(ran.stdout + ran.stderr).includes(await readFile(tokenPath, 'utf8')));
    });
  });
});
