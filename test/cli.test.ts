/**
 * The real `spot-run` command as a child process: usage errors, --help, --version, JSON logs, and
 * the token staying out of everything it prints or reports.
 *
 * Most runs use the single-file bundle (what `npm run build` ships as dist/spot-run.mjs), built
 * from the source once at the start: through tsx's loader every child costs about 0.7 CPU-seconds
 * more, and this file starts two dozen of them. --help and --version go through tsx, the source
 * entry point itself.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ExitCodes } from '../scripts/spot-run/exit-codes.js';
import { OPTIONS } from '../scripts/spot-run/options.js';
import { bundleSpotRun, runCli, type CliOptions, type CliResult } from './support/cli.js';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';

let scratch: string;
let server: ApiServer;
let bundle: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-cli-test-'));
  bundle = await bundleSpotRun();
  server = await startApiServer();
});
after(async () => {
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});


/** `spot-run ARGS` from the bundle. */
const spotRun = (args: string[], options: CliOptions = {}) => runCli(args, { entry: bundle, ...options });

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Exit 2, nothing on stdout, exactly one line on stderr that starts `spot-run: ` and is no stack trace. */
function assertUsageError(result: CliResult, message: RegExp): void {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.equal(result.code, ExitCodes.Usage, context);
  assert.equal(result.stdout, '', context);
  const lines = result.stderr.split('\n');
  assert.equal(lines.length, 2, `exactly one line on stderr:\n${result.stderr}`);
  assert.equal(lines[1], '');
  const line = lines[0]!;
  assert.ok(line.startsWith('spot-run: '), line);
  assert.ok(!/\bat .+:\d+:\d+\)?$|internal error|Error:/.test(line), `looks like a stack trace or an internal error: ${line}`);
  assert.match(line, message);
}

describe('usage errors: exit 2, one line on stderr, nothing sent', { concurrency: 3 }, () => {
  const inCluster = () => ({ ...server.env(), BUILD_REFERENCE: 'default/usage-errors' });
  const cases: Array<{ name: string; args: string[]; env?: () => Record<string, string>; message: RegExp; files?: Record<string, string> }> = [
    { name: 'unknown flag', args: ['--bogus'], message: /^spot-run: Unknown option '--bogus'.* \(see spot-run --help\)$/ },
    { name: 'a positional argument', args: ['make', 'image'], message: /^spot-run: Unexpected argument 'make'.* \(see spot-run --help\)$/ },
    {
      name: 'no Build reference',
      args: ['--step', 'A=true'],
      env: () => ({ ...server.env() }),
      message: /^spot-run: no Build given: pass --build NAMESPACE\/NAME or set BUILD_REFERENCE \(see spot-run --help\)$/,
    },
    {
      name: 'a bad BUILD_REFERENCE',
      args: ['--step', 'A=true'],
      env: () => ({ ...server.env(), BUILD_REFERENCE: 'default/../secrets' }),
      message: /^spot-run: invalid Build reference "default\/\.\.\/secrets": expected "namespace\/name" with exactly one "\/" \(from BUILD_REFERENCE\) \(see spot-run --help\)$/,
    },
    {
      name: 'a bad --build',
      args: ['--build', 'default/Build_1', '--step', 'A=true'],
      message: /^spot-run: --build must be \[NAMESPACE\/\]NAME, got "default\/Build_1": invalid Build name "Build_1": must consist of lower case alphanumeric characters.* \(see spot-run --help\)$/,
    },
    {
      name: 'a bad --step',
      args: ['--step', 'make image'],
      env: inCluster,
      message: /^spot-run: --step must be "TYPE=COMMAND", e\.g\. "Building Image=make image", got "make image" \(see spot-run --help\)$/,
    },
    { name: 'no steps', args: [], env: inCluster, message: /^spot-run: no steps: pass --step "TYPE=COMMAND" or --tasks FILE \(see spot-run --help\)$/ },
    {
      name: 'a duplicate step type',
      args: ['--step', 'Building Image=make', '--step', 'Building Image=make push'],
      env: inCluster,
      message: /^spot-run: duplicate step type "Building Image": each step is its own condition and needs its own type \(see spot-run --help\)$/,
    },
    { name: 'a bad --log-format', args: ['--log-format', 'yaml', '--step', 'A=true'], env: inCluster, message: /^spot-run: --log-format must be text or json, got "yaml" \(see spot-run --help\)$/ },
    { name: 'a bad --log-level', args: ['--log-level', 'trace', '--step', 'A=true'], env: inCluster, message: /^spot-run: --log-level must be debug, info, warn or error, got "trace" \(see spot-run --help\)$/ },
    { name: 'a bad --grace', args: ['--grace', '0', '--step', 'A=true'], env: inCluster, message: /^spot-run: --grace must be a positive number of seconds, got "0" \(see spot-run --help\)$/ },
    {
      name: 'a --tasks file that is not JSON',
      args: ['--tasks', 'TASKS'],
      files: { TASKS: '- type: A\n  command: make\n' },
      env: inCluster,
      message: /^spot-run: --tasks file \S+ is not valid JSON: .* \(see spot-run --help\)$/,
    },
    {
      name: 'a --tasks step without a type',
      args: ['--tasks', 'TASKS'],
      files: { TASKS: '[{"type":"A","command":"true"},{"command":"make"}]' },
      env: inCluster,
      message: /^spot-run: --tasks file \S+ step 2 needs a "type" \(the condition type\) \(see spot-run --help\)$/,
    },
    {
      name: 'a --tasks step without a command',
      args: ['--tasks', 'TASKS'],
      files: { TASKS: '[{"type":"Building Image","timeoutSeconds":60}]' },
      env: inCluster,
      message: /^spot-run: --tasks file \S+ step 1 \(Building Image\) needs exactly one of "command" or "argv" \(see spot-run --help\)$/,
    },
    {
      name: 'a --tasks file that is missing',
      args: ['--tasks', '/nonexistent/tasks.json'],
      env: inCluster,
      message: /^spot-run: cannot read --tasks file \/nonexistent\/tasks\.json: ENOENT \(see spot-run --help\)$/,
    },
    {
      name: '--token-file without --server',
      args: ['--token-file', '/tmp/token', '--step', 'A=true'],
      env: inCluster,
      message: /^spot-run: --token-file and --ca-file go with --server \(in a pod the service-account folder is used\) \(see spot-run --help\)$/,
    },
    {
      name: 'not in a cluster and no --server (a configuration error)',
      args: ['--build', 'default/b1', '--step', 'A=true'],
      message: /^spot-run: not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; outside a cluster pass --server URL/,
    },
    {
      name: 'plain http to a remote --server',
      args: ['--build', 'default/b1', '--step', 'A=true', '--server', 'http://api.example.com:8080'],
      message: /^spot-run: refusing plain http to api\.example\.com:8080/,
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      let args = c.args;
      if (c.files) {
        const dir = await mkdtemp(join(scratch, 'usage-'));
        for (const [key, content] of Object.entries(c.files)) await writeFile(join(dir, key), content);
        args = args.map((a) => (c.files![a] !== undefined ? join(dir, a) : a));
      }
      const before = server.requests.length;
      assertUsageError(await spotRun(args, { env: c.env?.() ?? {}, timeoutMs: 30_000 }), c.message);
      // Nothing reached the API server (other tests of this file run at the same time, but none of them talk to it).
      assert.equal(server.requests.length, before);
    });
  }
});

describe('--help and --version', { concurrency: 2 }, () => {
  test('--help lists every option the command accepts and every exit code, on stdout, exit 0', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    assert.equal(result.stderr, '');
    const help = result.stdout;
    assert.match(help, /^Usage: spot-run \[options\]\n/);
    // The options the parser accepts, so a new flag without help fails here.
    const options = Object.keys(OPTIONS);
    assert.ok(options.length >= 13, `found only ${options.join(', ')}`);
    for (const option of options) assert.match(help, new RegExp(`^  --${option}\\b`, 'm'), `--${option} is not in --help`);
    const exitSection = help.slice(help.indexOf('Exit codes:'));
    assert.ok(exitSection.length > 20, 'an "Exit codes:" section');
    for (const [name, code] of Object.entries(ExitCodes)) {
      assert.match(exitSection, new RegExp(`^  ${code}\\s+\\S`, 'm'), `exit code ${code} (${name}) is not in --help`);
    }
    assert.match(help, /BUILD_REFERENCE/);
    assert.match(help, /SPOT_RESULTS_DIR/);
  });

  test('--version prints the package.json version (the source and the bundle alike)', async () => {
    for (const result of await Promise.all([runCli(['--version']), spotRun(['--version'])])) {
      assert.equal(result.code, 0);
      assert.equal(result.stdout, `spot-run ${PACKAGE_VERSION}\n`);
      assert.equal(result.stderr, '');
    }
  });
});

describe('against the local API server', () => {
  test('--log-format json: every log line is one JSON object with time, level and msg', async () => {
    server.createBuild({ namespace: 'cli-json', name: 'b1' });
    const result = await spotRun(
      ['--log-format', 'json', '--log-level', 'debug', '--step', 'Fetching Source=echo fetched; echo "warning: shallow clone" >&2', '--step', 'Building Image=echo built'],
      { env: { ...server.env(), BUILD_REFERENCE: 'cli-json/b1', POD_NAME: 'cli-pod' } },
    );
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.split('\n');
    assert.equal(lines.pop(), '', 'ends with a newline');
    assert.ok(lines.length >= 4, result.stderr);
    for (const line of lines) {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        assert.fail(`not JSON: ${line}`);
      }
      assert.ok(entry && typeof entry === 'object' && !Array.isArray(entry), line);
      assert.equal(typeof entry.time, 'string', line);
      assert.equal(new Date(entry.time as string).toISOString(), entry.time, `time is ISO 8601: ${line}`);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(entry.level as string), line);
      assert.equal(typeof entry.msg, 'string', line);
    }
    const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.ok(messages.includes('[1/2] Fetching Source'), messages.join('\n'));
    assert.ok(messages.some((m) => m.startsWith('build done in ')), messages.join('\n'));
    // A step's stderr lines are JSON log objects on stderr too, naming the step and the stream.
    const stepLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.step !== undefined);
    assert.deepEqual(
      stepLines.map((e) => [e.step, e.stream, e.msg]),
      [['Fetching Source', 'stderr', 'warning: shallow clone']],
    );
    // Step stdout stays on stdout, each line a JSON object as well.
    const out = result.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      out.map((e) => [e.step, e.stream, e.msg, e.level]),
      [
        ['Fetching Source', 'stdout', 'fetched', 'info'],
        ['Building Image', 'stdout', 'built', 'info'],
      ],
    );
  });

  test('the token never appears in any output, nor in the Build or its events, even when a step prints it', async () => {
    server.createBuild({ namespace: 'cli-token', name: 'b1' });
    const token = server.token;
    const result = await spotRun(
      [
        '--log-level',
        'debug',
        '--step',
        'Fetching Source=cat "$SPOT_SERVICEACCOUNT_DIR/token"; echo',
        '--step',
        'Building Image=echo "401 with $(cat "$SPOT_SERVICEACCOUNT_DIR/token")" >&2; exit 1',
      ],
      { env: { ...server.env(), BUILD_REFERENCE: 'cli-token/b1' } },
    );
    assert.equal(result.code, ExitCodes.Failed, result.stderr);
    assert.ok(result.stdout.includes('[Fetching Source] [REDACTED]'), result.stdout);
    assert.ok(result.stderr.includes('[Building Image] 401 with [REDACTED]'), result.stderr);
    const build = server.getBuild('cli-token', 'b1')!;
    const message = build.status!.conditions![1]!.message!;
    assert.match(message, /401 with \[REDACTED\]$/);
    for (const [where, text] of [
      ['stdout', result.stdout],
      ['stderr', result.stderr],
      ['the stored Build', JSON.stringify(build)],
      ['the events', JSON.stringify(server.events('cli-token'))],
    ] as const) {
      assert.ok(!text.includes(token), `the token appears in ${where}`);
    }
  });

  test('a service-account folder without a namespace file: the run goes on (only a Build named without one would need it)', async () => {
    server.createBuild({ namespace: 'cli-no-ns', name: 'b1' });
    const dir = join(scratch, 'sa-without-namespace');
    await cp(server.serviceAccountDir, dir, { recursive: true });
    await rm(join(dir, 'namespace'));
    const result = await spotRun(['--step', 'A=true'], { env: { ...server.env(), SPOT_SERVICEACCOUNT_DIR: dir, BUILD_REFERENCE: 'cli-no-ns/b1' } });
    assert.equal(result.code, ExitCodes.Done, result.stderr);
    assert.equal(server.getBuild('cli-no-ns', 'b1')!.status?.phase, 'Done');
  });

  test('a token the API server refuses (--server, --token-file, --ca-file): exit 3, one line naming the 401, no token', async () => {
    server.createBuild({ namespace: 'cli-401', name: 'b1' });
    const tokenFile = join(scratch, 'wrong-token');
    const wrong = 'wrong-token-6f1d2c3b4a5e6f708192';
    await writeFile(tokenFile, `${wrong}\n`);
    const result = await spotRun(
      ['--server', server.url, '--token-file', tokenFile, '--ca-file', join(server.serviceAccountDir, 'ca.crt'), '--build', 'cli-401/b1', '--step', 'A=true'],
      { env: {} },
    );
    assert.equal(result.code, ExitCodes.ReportFailed, result.stderr);
    assert.ok(!result.stdout.includes(wrong) && !result.stderr.includes(wrong), 'the token was printed');
    const lines = result.stderr.trimEnd().split('\n');
    assert.match(lines.at(-1)!, /^spot-run: cannot report Build cli-401\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: 401 Unauthorized: Unauthorized \(GET \/apis\/spot\.release\.com\/v1alpha1\/namespaces\/cli-401\/builds\/b1\)$/);
    assert.equal(server.getBuild('cli-401', 'b1')!.status, undefined, 'nothing was written');
  });
});
