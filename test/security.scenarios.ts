/**
 * Security: the token never leaves the process (every scenario's run is scanned for it centrally,
 * by the harness; these add the cases built to provoke a leak, and check the scan itself), names
 * are validated before they reach a URL, the server is always verified against the mounted CA,
 * masked environment values stay out of everything the run writes, and what a step prints cannot
 * put terminal escapes into the messages people read with kubectl. Run by security.test.ts and `npm run reliability`.
 */
import { strict as assert } from 'node:assert';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../lib/log.js';
import { buildRef } from '../lib/names.js';
import { runTasks } from '../lib/runner.js';
import { expectBuild, expectEvents, problemLines, STARTED_COMPLETED, STEP } from './support/scenario-checks.js';
import { HELP, OPTIONS } from '../scripts/spot-run/options.js';
import { ROOT } from './support/cli.js';
import { runScenario, type Run, type Scenario, type TestServer } from './support/scenario-harness.js';
const tokenInServerAnswers: Scenario = {
  id: 'security/server-echoes-token',
  suite: 'security',
  title: 'a server (or proxy) that echoes the token in its error answer: redacted everywhere',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const form of ['status', 'html'] as const) {
      await ctx.run(form, async (r) => {
        const server = await r.server();
        const token = server.api.token;
        const message = `token ${token} is not allowed here`;
        server.api.inject(
          form === 'status'
            ? { status: 403, body: JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Forbidden', code: 403 }) }
            : { status: 403, body: `<html><body>${message}</body></html>`, contentType: 'text/html' },
        );
        const res = await r.cli(server, ['--log-format', 'json', '--log-level', 'debug', ...STEP]);
        assert.equal(res.code, 3, res.stderr);
        assert.match(res.stderr, /\[REDACTED\]/, 'the token was there, and was redacted');
      });
    }
  },
};

const tokenInStepOutput: Scenario = {
  id: 'security/step-prints-token',
  suite: 'security',
  title: 'a failing step prints the token to stderr: not in the condition, the event, or spot-run\'s output',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const format of ['text', 'json']) {
      await ctx.run(format, async (r) => {
        const server = await r.server();
        const step = `Building Image=echo "curl -H 'Authorization: Bearer $(cat "$SPOT_SERVICEACCOUNT_DIR/token")'" >&2; echo "token: $(cat "$SPOT_SERVICEACCOUNT_DIR/token")"; exit 7`;
        const res = await r.cli(server, ['--log-format', format, '--log-level', 'debug', '--step', step]);
        assert.equal(res.code, 1, res.stderr);
        assert.match(res.stderr, /Bearer \[REDACTED\]/);
        assert.match(res.stdout, /token: \[REDACTED\]/);
        expectBuild(server.api.getBuild('default', 'b1'), {
          phase: 'Errored',
          conditions: [['Building Image', 'Error', 'StepFailed', /exit code 7; last stderr lines:\ncurl -H 'Authorization: Bearer \[REDACTED\]'$/]],
        });
        expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'StepFailed', /Bearer \[REDACTED\]/]]);
      });
    }
  },
};

const stepEnvironment: Scenario = {
  id: 'security/step-env',
  suite: 'security',
  title: 'steps inherit the environment, but never the token\'s value (a step that dumps env)',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('env dump', async (r) => {
      const server = await r.server();
      const dir = await r.tempDir();
      const dump = join(dir, 'env.txt');
      const res = await r.cli(server, ['--step', `Building Image=env > "${dump}"`], {
        // A variable that carries the token (a careless pod spec) must not reach the step.
        env: { INHERITED_SETTING: 'kept-for-the-step', CARELESS_TOKEN: server.api.token, CARELESS_HEADER: `Bearer ${server.api.token}` },
      });
      assert.equal(res.code, 0, res.stderr);
      const env = await readFile(dump, 'utf8');
      r.collect('step environment', env);
      assert.match(env, /^INHERITED_SETTING=kept-for-the-step$/m, 'the environment is inherited');
      assert.match(env, /^SPOT_RESULTS_DIR=/m);
      assert.match(env, /^KUBERNETES_SERVICE_HOST=/m);
      assert.doesNotMatch(env, /^CARELESS_(TOKEN|HEADER)=/m, 'variables carrying the token are dropped');
      assert.ok(!env.includes(server.api.token), 'the token is not in the step\'s environment');
    });
  },
};

const encodedNames: Scenario = {
  id: 'security/names',
  suite: 'security',
  title: 'names are validated before they reach a URL: encoded separators and dot segments never reach the server',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const ref of ['default/a%2Fb', 'default%2Fkube-system/b1', 'default/..', 'default/%2e%2e', 'default/b1%00', 'default/b1?watch=1', 'default/b1#x']) {
      await ctx.run(`BUILD_REFERENCE ${ref}`, async (r) => {
        const server = await r.server();
        const res = await r.cli(server, STEP, { ref });
        assert.equal(res.code, 2, res.stderr);
        assert.match(problemLines(res.stderr)[0] ?? '', /^spot-run: invalid Build (name|namespace) /);
        assert.deepEqual(server.api.requests, [], 'no request reached the server');
      });
    }
    await ctx.run('POD_NAMESPACE with an encoded slash', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, STEP, { env: { POD_NAMESPACE: 'default%2F..' } });
      assert.equal(res.code, 2, res.stderr);
      assert.match(problemLines(res.stderr)[0] ?? '', /^spot-run: invalid pod namespace "default%2F\.\."/);
      assert.deepEqual(server.api.requests, []);
    });
    await ctx.run('library calls with unvalidated names', async (r) => {
      const server = await r.server();
      const client = await r.client(server);
      const bad = [
        { namespace: 'default', name: 'a%2Fb' },
        { namespace: 'default', name: '../kube-system/secrets/x' },
        { namespace: 'default/../kube-system', name: 'b1' },
        { namespace: 'default', name: '..' },
      ];
      for (const ref of bad) {
        for (const call of [
          () => client.getBuild(ref),
          () => client.patchBuildStatus(ref, { status: {} }, { type: 'merge', resourceVersion: '1' }),
          () => client.updateBuildStatus(ref, () => {}),
        ]) {
          const err = await call().then(
            () => assert.fail(`${ref.namespace}/${ref.name} was accepted`),
            (e: unknown) => e,
          );
          r.collect('error', String(err));
          assert.equal((err as { code?: string }).code, 'ERR_SPOT_INVALID_NAME', String(err));
        }
        // An event about a Build whose metadata holds such a name is refused too (never throws).
        const outcome = await client.recordEvent({ apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { ...ref } }, { type: 'Normal', reason: 'Test', message: 'x' });
        assert.equal(outcome.ok, false);
      }
      assert.deepEqual(server.api.requests, [], 'no request reached the server');
    });
  },
};

/** Every TLS-related setting in lib/ and scripts/ (spot-run's own folder included), and the files read. */
async function tlsSettings(): Promise<{ scanned: string[]; found: Array<{ file: string; line: string }> }> {
  const scanned: string[] = [];
  const found: Array<{ file: string; line: string }> = [];
  for (const folder of ['lib', 'scripts']) {
    for (const name of await readdir(join(ROOT, folder), { recursive: true })) {
      const file = `${folder}/${name}`;
      // The local API server is the other end of the connection, and never ships.
      if (!name.endsWith('.ts') || file.startsWith('scripts/apiserver/')) continue;
      scanned.push(file);
      for (const line of (await readFile(join(ROOT, file), 'utf8')).split('\n')) {
        if (/rejectUnauthorized|NODE_TLS_REJECT_UNAUTHORIZED|checkServerIdentity|insecure/i.test(line)) found.push({ file, line: line.trim() });
      }
    }
  }
  return { scanned, found };
}

const tlsVerification: Scenario = {
  id: 'security/tls',
  suite: 'security',
  title: 'the server is always verified against the mounted CA; nothing turns it off, not even NODE_TLS_REJECT_UNAUTHORIZED=0',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('source has no switch that disables verification', async () => {
      const { scanned, found } = await tlsSettings();
      for (const file of ['lib/transport.ts', 'scripts/spot-run.ts', 'scripts/spot-run/run.ts']) assert.ok(scanned.includes(file), `${file} is scanned`);
      for (const { file, line } of found) {
        const harmless =
          /rejectUnauthorized:\s*true\b/.test(line) || // forces verification on
          /^(\/\/|\*|\/\*)/.test(line) || // a comment
          /refusing plain http|unencrypted/.test(line); // the http refusal's wording
        assert.ok(harmless, `${file}: ${line}`);
      }
      for (const text of [HELP, Object.keys(OPTIONS).join(' ')]) {
        assert.doesNotMatch(text, /--insecure|insecure|skip-tls|tls-verify|no-verify/i, 'spot-run has no option to skip verification');
      }
    });
    await ctx.run('--insecure-skip-tls-verify is not an option', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, ['--insecure-skip-tls-verify', ...STEP]);
      assert.equal(res.code, 2);
      assert.match(problemLines(res.stderr)[0] ?? '', /Unknown option '--insecure-skip-tls-verify'/);
      assert.deepEqual(server.api.requests, []);
    });
    for (const env of [{}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }]) {
      await ctx.run(`wrong CA${'NODE_TLS_REJECT_UNAUTHORIZED' in env ? ' with NODE_TLS_REJECT_UNAUTHORIZED=0' : ''}`, async (r) => {
        const server = await r.server();
        const dir = await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem()));
        const res = await r.cli(server, ['--log-format', 'json', ...STEP], { env: { ...env, SPOT_SERVICEACCOUNT_DIR: dir } });
        assert.equal(res.code, 3, res.stderr);
        assert.match(res.stderr, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|CERT/);
        assert.deepEqual(server.api.requests, [], 'no request got past the handshake');
        assert.equal(server.api.getBuild('default', 'b1')?.status?.conditions, undefined, 'nothing was written');
      });
    }
    await ctx.run('in-process: the library verifies too, whatever the environment says', async (r) => {
      const server = await r.server();
      const dir = await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem()));
      const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
      const warn = process.emitWarning;
      process.emitWarning = () => {}; // Node warns once about the variable; not this test's business
      try {
        const client = await r.client(server, { serviceAccountDir: dir });
        const err = await client.getBuild(buildRef('default', 'b1')).then(
          () => assert.fail('a server the CA did not sign was accepted'),
          (e: unknown) => e,
        );
        r.collect('error', String(err));
        assert.equal((err as { code?: string }).code, 'ERR_SPOT_NETWORK', String(err));
        assert.match(String((err as { causeCode?: string }).causeCode), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT/);
      } finally {
        if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
        else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
        process.emitWarning = warn;
      }
      assert.deepEqual(server.api.requests, []);
    });
  },
};

const taskErrorWithToken: Scenario = {
  id: 'security/task-error-token',
  suite: 'security',
  title: 'a library task fails with an error that carries the token: not in the condition, the event, or the log',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('task error', async (r) => {
      const server = await r.server();
      const client = await r.client(server);
      const token = server.api.token;
      const outcome = await runTasks(client, buildRef('default', 'b1'), [
        {
          type: 'Pushing Image',
          run: async () => {
            // e.g. an HTTP client that puts the request's headers into its error
            throw new Error(`registry said 401 to GET /v2/ with headers {"authorization":"Bearer ${token}"}`);
          },
        },
      ], { log: createLogger({ format: 'text', level: 'debug', write: (line) => r.collect('runner log', line) }) });
      assert.equal(outcome.exitCode, 1);
      r.collect('outcome error', outcome.outcome === 'failed' ? outcome.error.message.replace(token, '<the task\'s own error, returned to its caller>') : '');
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [['Pushing Image', 'Error', 'Failed', /^Pushing Image failed after [\d.]+s: registry said 401 .*Bearer \[REDACTED\]/]],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'TaskFailed', /Bearer \[REDACTED\]/]]);
    });
  },
};

const leakScanSelfTest: Scenario = {
  id: 'security/leak-scan',
  suite: 'security',
  title: 'the central leak scan itself finds a token planted in output, a condition message or an event',
  timeoutMs: 30_000,
  async run(ctx) {
    const plants: Record<string, (r: Run, server: TestServer) => Promise<void>> = {
      'collected output': async (r, server) => r.collect('planted', `Authorization: Bearer ${server.api.token}`),
      'a rotated token in output': async (r, server) => r.collect('planted', `old token ${await server.rotateToken()}`),
      'a condition message': async (_r, server) =>
        void server.api.setBuildStatus('default', 'b1', { conditions: [{ type: 'X', status: 'Error', message: `token=${server.api.token}` }] }),
      'an event message': async (r, server) => {
        const client = await r.client(server);
        const build = server.api.getBuild('default', 'b1')!;
        // recordEvent is the library's raw API: it sends what it is given.
        const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Planted', message: `token=${server.api.token}` });
        assert.ok(outcome.ok);
      },
      'streamed child output': async (r, server) => {
        // A step's output is redacted by spot-run; a secret the child does not know of is not.
        const secret = 'planted-secret-the-child-does-not-know';
        r.secret(secret);
        await r.cli(server, ['--step', `Building Image=echo ${secret}`]);
      },
    };
    for (const [where, plant] of Object.entries(plants)) {
      await ctx.run(where, async () => {
        const inner = await runScenario({
          id: 'planted',
          suite: 'security',
          title: where,
          timeoutMs: 20_000,
          run: (innerCtx) => innerCtx.run('plant', async (r) => plant(r, await r.server())),
        });
        assert.equal(inner.passed, 0, `the scan missed a token in ${where}`);
        assert.match(inner.failures.join('\n'), /token leaked/);
      });
    }
  },
};

const maskedEnv: Scenario = {
  id: 'security/masked-env',
  suite: 'security',
  title: 'values named by --mask-env and SPOT_MASK_ENV, printed by a failing step: never in its output, the condition, the event or the termination message',
  timeoutMs: 30_000,
  async run(ctx) {
    // A docker config (quotes, escaped in JSON logs) and its base64 credentials, as the operator passes REGISTRY_AUTH.
    const credentials = 'c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=';
    const auth = `{"auths":{"registry.example.com":{"auth":"${credentials}"}}}`;
    const other = 'other-secret-42';
    for (const format of ['text', 'json']) {
      await ctx.run(format, async (r) => {
        // The central scan looks for them wherever it looks for the token.
        for (const value of [auth, credentials, other]) r.secret(value);
        const server = await r.server();
        const handed = join(await r.tempDir(), 'auth');
        const step = `Pushing Image=printf '%s' "$REGISTRY_AUTH" > '${handed}'; echo "auth: $REGISTRY_AUTH"; echo "other: $OTHER_SECRET" >&2; exit 3`;
        const res = await r.cli(server, ['--mask-env', 'REGISTRY_AUTH', '--log-format', format, '--step', step], {
          env: { REGISTRY_AUTH: auth, OTHER_SECRET: other, SPOT_MASK_ENV: 'OTHER_SECRET, UNSET_ONE' },
        });
        assert.equal(res.code, 1, res.stderr);
        assert.equal(await readFile(handed, 'utf8'), auth, 'the step got the value itself');
        assert.match(res.stdout, /auth: \[REDACTED\]/, 'the line is there, the value is not');
        expectBuild(server.api.getBuild('default', 'b1'), {
          phase: 'Errored',
          conditions: [['Pushing Image', 'Error', 'StepFailed', /exit code 3; last stderr lines:\nother: \[REDACTED\]$/]],
        });
        expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'StepFailed', /other: \[REDACTED\]$/]]);
        assert.match(res.termination?.message ?? '', /other: \[REDACTED\]$/);
      });
    }
  },
};

const ESC = '\x1b';
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

const stepEscapes: Scenario = {
  id: 'security/step-escapes',
  suite: 'security',
  title: 'colours, cursor movement, terminal titles and control characters in a failing step\'s stderr stay out of the condition, the event and the termination message',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('ANSI and C0/C1 controls', async (r) => {
      const server = await r.server();
      // What `kubectl describe` would otherwise hand to a reader's terminal: an escape can retitle
      // it, move the cursor over earlier lines, or hide text.
      const script = `printf '\\033[1;31merror:\\033[0m cannot build\\r\\n\\033]0;title\\007\\033[2Kstill\\001here\\233 \\n'; printf 'progress 10%%\\rprogress 100%%\\n' >&2; printf '\\033[31mE: the cause\\033[0m\\n' >&2; exit 2`;
      const res = await r.cli(server, ['--step', `Building Image=${script}`]);
      assert.equal(res.code, 1, res.stderr);
      const message = /^Building Image failed after [\d.]+s: exit code 2; last stderr lines:\nprogress 100%\nE: the cause$/;
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Errored', conditions: [['Building Image', 'Error', 'StepFailed', message]] });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'StepFailed', message]]);
      const condition = server.api.getBuild('default', 'b1')!.status!.conditions![0]!.message!;
      const warning = server.api.events().find((e) => e.type === 'Warning')!.message!;
      for (const [where, text] of [['condition', condition], ['event', warning], ['termination message', res.termination?.message ?? '']] as const) {
        assert.ok(!text.includes(ESC), `${where}: an escape sequence: ${JSON.stringify(text)}`);
        assert.doesNotMatch(text, CONTROL, `${where}: a control character: ${JSON.stringify(text)}`);
      }
      assert.equal(res.termination?.message, condition);
    });
  },
};

export const SECURITY_SCENARIOS: readonly Scenario[] = [
  tokenInServerAnswers,
  tokenInStepOutput,
  stepEnvironment,
  encodedNames,
  tlsVerification,
  taskErrorWithToken,
  leakScanSelfTest,
  maskedEnv,
  stepEscapes,
];
