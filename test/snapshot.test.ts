/**
 * The command started from a V8 startup snapshot, as an image runs it (README, "Start-up
 * snapshot"): dist/spot-run.cjs's recipe bundled from the current sources, made into a blob by this
 * node (`node --snapshot-blob B --build-snapshot spot-run.cjs`) in a folder that holds nothing
 * else, then `node --snapshot-blob B -- ARGS` against the local API server. What can differ from a
 * plain start is checked here: modules loaded when the blob was built and used in another process
 * (undici, child processes and their pipes, signals, timers), state that must not be carried over
 * from the build, and how the arguments reach the command.
 */
import { strict as assert } from 'node:assert';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { startApiServer, type ApiServer } from '../scripts/apiserver/server.js';
import { spotRunBundleOptions } from '../scripts/bundle-options.js';
import { ROOT, runCli, SPOT_RUN_TS, type CliOptions, type CliResult } from './support/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

describe('spot-run from a V8 startup snapshot', { timeout: 120_000 }, () => {
  let dir: string;
  let blob: string;
  let server: ApiServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spot-snapshot-'));
    const entry = join(dir, 'spot-run.cjs');
    // As `npm run build` makes dist/spot-run.cjs.
    await build({ ...spotRunBundleOptions(ROOT, SPOT_RUN_TS, entry, 'cjs'), minify: true, treeShaking: true });
    blob = join(dir, 'spot-run.blob');
    const made = spawnSync(process.execPath, ['--snapshot-blob', blob, '--build-snapshot', entry], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(made.status, 0, `node --build-snapshot failed:\n${made.stderr}`);
    // Building runs no command: nothing on stdout (spot-run would print usage or an error).
    assert.equal(made.stdout, '');
    server = await startApiServer();
  });

  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const fromSnapshot = (args: string[], options: CliOptions = {}): Promise<CliResult> =>
    runCli(args, { launch: ['--snapshot-blob', blob, '--'], cwd: dir, timeoutMs: 30_000, ...options });

  function runBuild(name: string, steps: string[], options: CliOptions = {}): Promise<CliResult> {
    server.createBuild({ name });
    return fromSnapshot(['--grace', '2', ...steps.flatMap((s) => ['--step', s])], {
      ...options,
      env: { ...server.env(), BUILD_REFERENCE: `${server.namespace}/${name}`, ...options.env },
    });
  }

  const conditions = (name: string) => server.getBuild(server.namespace, name)?.status?.conditions?.map((c) => [c.type, c.status]);

  test('--version and --help reach the command, not node (they follow "--")', async () => {
    const version = await fromSnapshot(['--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `spot-run ${pkg.version}\n`);
    const help = await fromSnapshot(['-h']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: spot-run/);
  });

  test('a run against the local API server: output relayed, results read, Done', async () => {
    const before = server.requests.length;
    const r = await runBuild('snap-ok', [
      'Compiling=echo compiled; echo to-stderr >&2',
      'Pushing Image=echo registry.example.com/app:1 > "$SPOT_RESULTS_DIR/image-url"',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[Compiling\] compiled/);
    assert.match(r.stderr, /\[Compiling\] to-stderr/);
    const stored = server.getBuild(server.namespace, 'snap-ok')!;
    assert.equal(stored.status?.phase, 'Done');
    assert.deepEqual(conditions('snap-ok'), [
      ['Compiling', 'Success'],
      ['Pushing Image', 'Success'],
    ]);
    assert.equal(stored.status?.image?.url, 'registry.example.com/app:1');
    // 1 GET + 3 status writes + 2 events.
    assert.equal(server.requests.length - before, 6);
  });

  test("the environment is the run's, not the build's", async () => {
    // A blob built where the environment points elsewhere: a value read while the blob was built
    // would send this run to 203.0.113.1 (TEST-NET-3) for another Build.
    const poisoned = join(dir, 'poisoned.blob');
    const made = spawnSync(process.execPath, ['--snapshot-blob', poisoned, '--build-snapshot', join(dir, 'spot-run.cjs')], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        KUBERNETES_SERVICE_HOST: '203.0.113.1',
        KUBERNETES_SERVICE_PORT: '6443',
        BUILD_REFERENCE: 'elsewhere/build-time',
      },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(made.status, 0, made.stderr);
    server.createBuild({ name: 'snap-env' });
    const r = await runCli(['--step', 'One=true'], {
      launch: ['--snapshot-blob', poisoned, '--'],
      cwd: dir,
      timeoutMs: 30_000,
      env: { ...server.env(), BUILD_REFERENCE: `${server.namespace}/snap-env` },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(conditions('snap-env'), [['One', 'Success']]);
  });

  test('a failing step: exit 1, the step Error, the build Errored', async () => {
    const r = await runBuild('snap-fail', ['Building Image=echo broken >&2; exit 3', 'Pushing Image=echo never']);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(conditions('snap-fail'), [
      ['Building Image', 'Error'],
      ['Pushing Image', ''],
    ]);
    assert.equal(server.getBuild(server.namespace, 'snap-fail')?.status?.phase, 'Errored');
    assert.match(r.stderr, /ERROR \[1\/2\] Building Image failed after \d+\.\ds reason=StepFailed /);
  });

  test('SIGTERM while a step runs: the step stopped, the build reported, exit 143', async () => {
    let child: ChildProcess | undefined;
    let signalled = false;
    const r = await runBuild('snap-term', ['Fetching Source=echo started; sleep 30', 'Building Image=echo never'], {
      onSpawn: (c) => (child = c),
      onOutput: (text) => {
        if (!signalled && text.includes('[Fetching Source] started')) {
          signalled = true;
          child!.kill('SIGTERM');
        }
      },
    });
    assert.ok(signalled, 'the step started and SIGTERM was sent');
    assert.equal(r.signal, null, `spot-run exited by itself, not killed by ${r.signal}`);
    assert.equal(r.code, 143, r.stderr);
    assert.deepEqual(conditions('snap-term'), [
      ['Fetching Source', 'Error'],
      ['Building Image', ''],
    ]);
    assert.equal(server.getBuild(server.namespace, 'snap-term')?.status?.phase, 'Errored');
  });

  test("the image's command lines: --liftoff-only at build and at run (Dockerfile, target snapshot)", async () => {
    const flagged = join(dir, 'liftoff.blob');
    const made = spawnSync(process.execPath, ['--liftoff-only', '--snapshot-blob', flagged, '--build-snapshot', join(dir, 'spot-run.cjs')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(made.status, 0, made.stderr);
    server.createBuild({ name: 'snap-liftoff' });
    const r = await runCli(['--step', 'One=echo one'], {
      launch: ['--liftoff-only', '--snapshot-blob', flagged, '--'],
      cwd: dir,
      timeoutMs: 30_000,
      env: { ...server.env(), BUILD_REFERENCE: `${server.namespace}/snap-liftoff` },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[One\] one/);
    assert.deepEqual(conditions('snap-liftoff'), [['One', 'Success']]);
  });

  test('no cluster configuration: exit 2 and one line naming the cause', async () => {
    const r = await fromSnapshot(['--step', 'A=true'], { env: { BUILD_REFERENCE: 'default/b' } });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^spot-run: .*KUBERNETES_SERVICE_HOST/);
  });
});
