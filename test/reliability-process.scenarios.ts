/**
 * Faults around the process: an API server outage (within and beyond the deadline) or one that
 * cannot be reached at all, signals (mid-step, during the first GET's retries, during a
 * Retry-After wait, while the report hangs, a second one), the termination message on each exit
 * path, the whole build's --timeout, a step that floods stderr while the log reader stalls. Run by
 * reliability-process.test.ts and `npm run reliability`.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TerminationSummary } from '../lib/termination.js';
import {
  checkRetryPolicy,
  cleanTrace,
  expectBuild,
  expectDone,
  expectEvents,
  IMAGE,
  lineBeforeExit,
  problemLines,
  quickSteps,
  runWithHeldStep,
  signalWhen,
  STARTED_COMPLETED,
  STEP,
  trace,
  waitForStepLine,
} from './support/scenario-checks.js';
import { outputWatch, statusPath, until } from './support/spot-run-e2e.js';
import { CLI_MAX_RETRIES, type CliRunOptions, type Scenario } from './support/scenario-harness.js';
import { isLive as alive, liveGroupMembersAfter } from './support/processes.js';

const STATUS_PATH = statusPath('default');

const outage: Scenario = {
  id: 'outage-10s',
  suite: 'reliability',
  title: 'the API server is down for 10 s mid-step; the step returns during the outage and its result is written after',
  timeoutMs: 90_000,
  async run(ctx) {
    await ctx.run('10 s outage', async (r) => {
      const server = await r.server();
      const run = await runWithHeldStep(r, server, ['--log-level', 'debug'], { then: `echo ${IMAGE} > "$SPOT_RESULTS_DIR/image-url"` });
      await server.api.suspend();
      const down = Date.now();
      await sleep(1_000);
      await run.release(); // the step returns while the server is down
      await sleep(10_000 - (Date.now() - down));
      await server.api.resume();
      const res = await run.done;
      assert.equal(res.code, 0, res.stderr);
      assert.ok(Date.now() - down >= 10_000);
      expectDone(server);
      // Refused connections never reach the server: the log is that of a clean run.
      assert.deepEqual(trace(server.api.requests), cleanTrace(3));
      const resumedWrite = server.api.requests[4]!;
      assert.ok(server.at(resumedWrite) >= down + 10_000, 'the step\'s result was written after the outage');
      assert.match(res.stderr, /retrying request.*ECONNREFUSED/, 'the retries are logged at debug level');
      return { retries: checkRetryPolicy(server, server.api.requests, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 60_000 }) };
    });
  },
};

const outageBeyondDeadline: Scenario = {
  id: 'outage-beyond-deadline',
  suite: 'reliability',
  title: 'an outage longer than --api-deadline 3: exit 3 naming the API server and the last error',
  timeoutMs: 60_000,
  async run(ctx) {
    await ctx.run('outage > deadline', async (r) => {
      const server = await r.server();
      const run = await runWithHeldStep(r, server, ['--api-deadline', '3']);
      await server.api.suspend();
      const released = Date.now();
      await run.release();
      const res = await run.done;
      const after = Date.now() - released;
      await server.api.resume();
      assert.equal(res.code, 3, res.stderr);
      const line = problemLines(res.stderr).find((l) => /cannot report Build default\/b1/.test(l));
      assert.ok(line, `no line names the failure:\n${res.stderr}`);
      assert.ok(line.includes(`the API server at ${server.api.url}`), `the line names the API server: ${line}`);
      assert.match(line, /ECONNREFUSED/, 'the line names the last error');
      assert.doesNotMatch(res.stderr, /^\s+at /m, 'no stack trace');
      // The deadline bounds the write (3 s) and the best-effort fatal report (3 s more at most).
      assert.ok(after < 12_000, `exited ${after} ms after the step ended`);
      // What could be written before the outage is there; nothing after it.
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Running',
        conditions: [['Fetching Source', 'Success', 'Succeeded'], ['Building Image', 'In Progress'], ['Pushing Image', '']],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!]);
      assert.deepEqual(trace(server.api.requests), cleanTrace(3).slice(0, 4));
      return { retries: 0 };
    });
  },
};

const sigterm: Scenario = {
  id: 'sigterm',
  suite: 'reliability',
  title: 'SIGTERM mid-step: Error/Terminated, a Warning event, exit 143 within the grace period, the step\'s process group gone',
  timeoutMs: 60_000,
  async run(ctx) {
    await ctx.run('SIGTERM', async (r) => {
      const server = await r.server();
      // The step's shell leaves a grandchild that ignores TERM: only the group kill gets it.
      const ready = waitForStepLine('Building Image', /^pids \d+ \d+$/);
      let child: ChildProcess | undefined;
      const run = r.cli(
        server,
        ['--grace', '8', '--log-format', 'json', '--step', 'Fetching Source=true', '--step', `Building Image=(trap '' TERM; exec sleep 300) & echo "pids $$ $!"; wait`, '--step', 'Pushing Image=true'],
        { onOutput: ready.onOutput, onSpawn: (c) => (child = c) },
      );
      const [, leader, grandchild] = /pids (\d+) (\d+)/.exec(await lineBeforeExit(ready.line, run, 'the step said its pids'))!.map(Number) as [number, number, number];
      assert.ok(alive(grandchild), 'the grandchild runs');
      const signalled = Date.now();
      child!.kill('SIGTERM');
      const res = await run;
      const took = Date.now() - signalled;
      assert.equal(res.code, 143, res.stderr);
      assert.ok(took < 8_000, `exited ${took} ms after SIGTERM (grace 8 s)`);
      assert.ok(!alive(leader), 'the step\'s shell is gone');
      assert.ok(!alive(grandchild), 'the step\'s grandchild (which ignores TERM) is gone');
      assert.deepEqual(await liveGroupMembersAfter(leader), [], 'the step\'s process group is gone');
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [
          ['Fetching Source', 'Success', 'Succeeded'],
          ['Building Image', 'Error', 'Terminated', /^Building Image was interrupted by SIGTERM after \d+\.\ds$/],
          ['Pushing Image', ''],
        ],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'Terminated', /interrupted by SIGTERM/]]);
      assert.deepEqual(trace(server.api.requests), [...cleanTrace(3).slice(0, 4), 'PATCH status 200', 'POST events 201']);
      return { retries: 0 };
    });
  },
};

/**
 * Stalls the reading of the child's stderr once, at its first chunk, for `ms` (a log collector
 * that falls behind). Calls `during` halfway and at the end of the stall.
 */
function stallReader(ms: number, during?: (phase: 'mid' | 'end') => Promise<void>): Pick<CliRunOptions, 'onSpawn' | 'onOutput'> & { stalled: Promise<void> } {
  let child: ChildProcess | undefined;
  let started = false;
  let done!: () => void;
  const stalled = new Promise<void>((r) => (done = r));
  return {
    stalled,
    onSpawn: (c) => (child = c),
    onOutput: (_text, stream) => {
      if (started || stream !== 'stderr' || !child?.stderr) return;
      started = true;
      const reader = child.stderr;
      reader.pause();
      void (async () => {
        await sleep(ms / 2);
        await during?.('mid');
        await sleep(ms / 2);
        await during?.('end');
        reader.resume();
        done();
      })();
    },
  };
}

const hugeStderr: Scenario = {
  id: 'stderr-100mb',
  suite: 'reliability',
  title: 'a step prints 100 MB to stderr and fails, while the log reader stalls: bounded memory, the last lines in the failure message',
  timeoutMs: 120_000,
  async run(ctx) {
    await ctx.run('100 MB, reader stalls 3 s', async (r) => {
      const server = await r.server();
      const step = `Building Image=head -c 100000000 /dev/zero | tr '\\0' 'x' | fold -w 100 >&2; echo "the real error" >&2; exit 1`;
      const stall = stallReader(3_000);
      const res = await r.cli(server, ['--step', 'Fetching Source=true', '--step', step], { ...stall, measureRss: true, maxOutput: 64 * 1024, timeoutMs: 110_000 });
      assert.equal(res.code, 1, res.stderrTail);
      assert.ok(res.peakRssKiB !== undefined, 'peak RSS measured');
      assert.ok(res.peakRssKiB < 200 * 1024, `peak RSS ${(res.peakRssKiB / 1024).toFixed(0)} MiB (bound 200 MiB)`);
      // fold ends without a newline, so the last line of x's runs on into the real error.
      assert.match(res.stderrTail, /\[Building Image\] x{100}the real error\n/);
      const expectedMessage = /^Building Image failed after [\d.]+s: exit code 1; last stderr lines:\n(x{100}\n){19}x{100}the real error$/;
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [['Fetching Source', 'Success', 'Succeeded'], ['Building Image', 'Error', 'StepFailed', expectedMessage]],
      });
      // The event holds 1 KiB: it keeps the first line and the end, where the real error is.
      expectEvents(server, [
        STARTED_COMPLETED[0]!,
        ['Warning', 'StepFailed', /^Building Image failed after [\d.]+s: exit code 1; last stderr lines:\n\.\.\.\n(x{100}\n)+x{100}the real error$/],
      ]);
      assert.deepEqual(trace(server.api.requests), [...cleanTrace(2).slice(0, 4), 'PATCH status 200', 'POST events 201']);
      return { retries: 0 };
    });
    await ctx.run('the step is held back while the reader stalls', async (r) => {
      const server = await r.server();
      const progress = join(await r.tempDir(), 'progress');
      // 20 x 1 MB, noting after each MB how far it got.
      const step = `Building Image=for i in $(seq 20); do head -c 1000000 /dev/zero | tr '\\0' 'x' | fold -w 100 >&2; echo $i > "$SPOT_TEST_PROGRESS"; done`;
      const seen: number[] = [];
      const read = async (): Promise<void> => {
        seen.push(Number((await readFile(progress, 'utf8').catch(() => '0')).trim() || 0));
      };
      const stall = stallReader(3_000, read);
      const res = await r.cli(server, ['--step', step], { ...stall, env: { SPOT_TEST_PROGRESS: progress }, maxOutput: 64 * 1024, timeoutMs: 110_000 });
      assert.equal(res.code, 0, res.stderrTail);
      const [mid, end] = seen as [number, number];
      // Pipes and stream buffers hold a few hundred KB at most: the step must not get further.
      assert.ok(end - mid <= 1, `while nobody read spot-run's stderr the step went on from ${mid} MB to ${end} MB`);
      assert.ok(end < 20, `the step finished (${end} MB) while the reader stalled: its output was buffered`);
      assert.equal((await readFile(progress, 'utf8')).trim(), '20');
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: [['Building Image', 'Success', 'Succeeded']] });
      return { retries: 0 };
    });
  },
};

const sigtermFirstGet: Scenario = {
  id: 'sigterm-first-get',
  suite: 'reliability',
  title: 'SIGTERM while the first GET is retried (the API server is down): exit 143 within a second, nothing to report',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('SIGTERM during the retries', async (r) => {
      const server = await r.server();
      await server.api.suspend();
      const started = outputWatch('Build default/b1, 1 step');
      // The GET is refused and retried with backoff for --api-deadline (60 s by default).
      const signal = signalWhen('SIGTERM', () => started.seen.then(() => sleep(300)));
      const res = await r.cli(server, STEP, { onOutput: started.onOutput, onSpawn: signal.onSpawn });
      const took = signal.afterSignalMs();
      assert.equal(res.signal, null, 'exited by itself, not killed by the signal');
      assert.equal(res.code, 143, res.stderr);
      assert.ok(took < 1_000, `exited ${took} ms after SIGTERM`);
      assert.deepEqual(res.termination, {
        outcome: 'interrupted',
        exitCode: 143,
        phase: 'Errored',
        reason: 'Terminated',
        message: 'Build interrupted by SIGTERM before it was read',
        reported: false,
      });
      assert.deepEqual(server.api.requests, [], 'refused connections never reached the server');
    });
  },
};

const signalRetryAfter: Scenario = {
  id: 'signal-retry-after',
  suite: 'reliability',
  title: 'SIGTERM or SIGINT during a Retry-After: 30 wait on a status write: the wait is cut, the interruption reported, exit 143/130 at once',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const [name, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
      await ctx.run(name, async (r) => {
        const server = await r.server();
        // Step 1's Success (with step 2's In Progress) is answered 503 Retry-After: 30, once.
        const fault = server.api.inject({ method: 'PATCH', path: STATUS_PATH, when: ({ n }) => n === 2, status: 503, retryAfterSeconds: 30 });
        const signal = signalWhen(name, () => until(() => fault.hits === 1, 'the 503'));
        const res = await r.cli(server, ['--grace', '10', '--step', 'Fetching Source=true', '--step', 'Building Image=echo never-runs'], { onSpawn: signal.onSpawn });
        const took = signal.afterSignalMs();
        assert.equal(res.code, code, res.stderr);
        // The report (a status write and an event) follows the signal: within the grace period, in fact at once.
        assert.ok(took < 2_000, `exited ${took} ms after ${name} (grace 10 s, Retry-After 30 s)`);
        assert.ok(!res.stdout.includes('never-runs'), 'step 2 never ran');
        const message = `Build interrupted by ${name} before Building Image started`;
        expectBuild(server.api.getBuild('default', 'b1'), {
          phase: 'Errored',
          conditions: [['Fetching Source', 'Success', 'Succeeded'], ['Building Image', 'Error', 'Terminated', new RegExp(`^${message}$`)]],
        });
        expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'Terminated', new RegExp(`^${message}$`)]]);
        assert.deepEqual(res.termination, { outcome: 'interrupted', exitCode: code, phase: 'Errored', reason: 'Terminated', message, reported: true });
        assert.deepEqual(trace(server.api.requests), [...cleanTrace(2).slice(0, 3), 'PATCH status 503', 'PATCH status 200', 'POST events 201']);
        return { retries: 0 };
      });
    }
  },
};

const secondSignal: Scenario = {
  id: 'second-signal',
  suite: 'reliability',
  title: 'a second SIGTERM exits at once (grace 20 s, a step that ignores TERM); the termination message says interrupted, in which task',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('two SIGTERMs', async (r) => {
      const server = await r.server();
      const started = waitForStepLine('Building Image', /^ignoring TERM$/);
      const received = outputWatch('SIGTERM received');
      let secondAt = 0;
      const signal = signalWhen(
        'SIGTERM',
        () => started.line,
        () => received.seen.then(() => void (secondAt = Date.now())),
      );
      // A long grace period and a step that ignores SIGTERM: only the second signal can end this soon.
      const res = await r.cli(server, ['--grace', '20', '--step', `Building Image=trap '' TERM; echo ignoring TERM; while true; do sleep 0.05; done`], {
        onOutput: (text, stream) => {
          started.onOutput(text);
          received.onOutput(text, stream);
        },
        onSpawn: signal.onSpawn,
      });
      signal.afterSignalMs();
      const afterSecond = Date.now() - secondAt;
      assert.equal(res.code, 143, res.stderr);
      assert.ok(secondAt > 0 && afterSecond < 1_000, `exited ${afterSecond} ms after the second SIGTERM`);
      assert.match(res.stderr, /second SIGTERM: exiting now/);
      assert.deepEqual(res.termination, {
        outcome: 'interrupted',
        exitCode: 143,
        phase: 'Errored',
        task: 'Building Image',
        reason: 'Terminated',
        message: 'Building Image was interrupted by SIGTERM; exited before the report was finished',
        reported: false,
      });
    });
  },
};

const sigtermReportHangs: Scenario = {
  id: 'sigterm-report-grace',
  suite: 'reliability',
  title: 'SIGTERM during a step while the API server never answers the report: the report runs under the grace period and no longer',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('report hangs, grace 2 s', async (r) => {
      const server = await r.server();
      server.api.inject({ method: 'PATCH', path: STATUS_PATH, when: ({ n }) => n >= 2, times: Infinity, hang: true });
      const started = waitForStepLine('Building Image', /^started$/);
      const signal = signalWhen('SIGTERM', () => started.line);
      const res = await r.cli(server, ['--grace', '2', '--step', 'Building Image=echo started; sleep 30'], { onOutput: started.onOutput, onSpawn: signal.onSpawn });
      const took = signal.afterSignalMs();
      assert.equal(res.code, 143, res.stderr);
      assert.ok(took < 2_000 + 1_000, `exited ${took} ms after SIGTERM; the grace period is 2 s`);
      assert.doesNotMatch(res.stderr, /could not finish reporting within the grace period/, 'the report gave up by itself, the exit was not forced');
      assert.match(res.stderr, /could not report that Building Image was interrupted within the grace period/);
      const { message, ...rest } = res.termination ?? { message: '' };
      assert.deepEqual(rest, { outcome: 'interrupted', exitCode: 143, phase: 'Errored', task: 'Building Image', reason: 'Terminated', reported: false });
      assert.match(message, /^Building Image was interrupted by SIGTERM after \d+\.\ds$/);
    });
  },
};

/** The termination message without its message, which each run checks on its own. */
function withoutMessage(summary: TerminationSummary | undefined): Omit<TerminationSummary, 'message'> | undefined {
  if (!summary) return undefined;
  const { message: _message, ...rest } = summary;
  return rest;
}

const terminationMessage: Scenario = {
  id: 'termination-message',
  suite: 'reliability',
  title: 'the termination message on each exit path: done, a step failed, the report refused (error), interrupted',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('done', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, quickSteps(2));
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(withoutMessage(res.termination), { outcome: 'done', exitCode: 0, phase: 'Done', reported: true });
      assert.match(res.termination!.message, /^Build completed: 2 tasks in \d+\.\ds$/);
      assert.equal(res.terminationText, JSON.stringify(res.termination), 'one line of JSON');
    });
    await ctx.run('a step failed', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, ['--step', 'Fetching Source=true', '--step', 'Building Image=echo "E: no space left" >&2; exit 2']);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(withoutMessage(res.termination), { outcome: 'failed', exitCode: 1, phase: 'Errored', task: 'Building Image', reason: 'StepFailed', reported: true });
      assert.equal(res.termination!.message, server.api.getBuild('default', 'b1')!.status!.conditions![1]!.message, 'the condition\'s message');
      assert.match(res.termination!.message, /exit code 2; last stderr lines:\nE: no space left$/);
    });
    await ctx.run('the API server refuses the report (403)', async (r) => {
      const server = await r.server();
      server.api.setPermissions(server.api.token, [{ verbs: ['get'], resources: ['builds'] }]);
      const res = await r.cli(server, STEP);
      assert.equal(res.code, 3, res.stderr);
      assert.deepEqual(withoutMessage(res.termination), { outcome: 'error', exitCode: 3, phase: 'Errored', reported: false });
      assert.match(res.termination!.message, /^cannot report Build default\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: 403 Forbidden: /);
    });
    await ctx.run('interrupted during a step, the interruption reported', async (r) => {
      const server = await r.server();
      const started = waitForStepLine('Building Image', /^started$/);
      const signal = signalWhen('SIGTERM', () => started.line);
      const res = await r.cli(server, ['--step', 'Building Image=echo started; sleep 30'], { onOutput: started.onOutput, onSpawn: signal.onSpawn });
      signal.afterSignalMs();
      assert.equal(res.code, 143, res.stderr);
      assert.deepEqual(withoutMessage(res.termination), { outcome: 'interrupted', exitCode: 143, phase: 'Errored', task: 'Building Image', reason: 'Terminated', reported: true });
      assert.match(res.termination!.message, /^Building Image was interrupted by SIGTERM after \d+\.\ds$/);
    });
  },
};

const buildTimeout: Scenario = {
  id: 'build-timeout',
  suite: 'reliability',
  title: '--timeout 1 (the whole build\'s deadline) passes during a step: the step is stopped, Error/Timeout, phase Errored, exit 1',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('--timeout 1', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, ['--timeout', '1', '--step', 'Fetching Source=true', '--step', 'Building Image=sleep 30', '--step', 'Pushing Image=echo never-runs']);
      assert.equal(res.code, 1, res.stderr);
      assert.ok(res.ms < 5_000, `took ${res.ms} ms: the build's 1 s, not the step's 30 s`);
      assert.ok(!res.stdout.includes('never-runs'), 'step 3 never ran');
      const message = /^Building Image failed after \d+\.\ds: the build's timeout of 1s passed and the step was stopped$/;
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [['Fetching Source', 'Success', 'Succeeded'], ['Building Image', 'Error', 'Timeout', message], ['Pushing Image', '']],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'Timeout', message]]);
      assert.deepEqual([res.termination?.outcome, res.termination?.task, res.termination?.reason], ['failed', 'Building Image', 'Timeout']);
    });
  },
};

const apiUnreachable: Scenario = {
  id: 'api-unreachable',
  suite: 'reliability',
  title: 'an unreachable API server with --api-deadline 1: exit 3, one line on stderr, within the deadline',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('connection refused', async (r) => {
      const server = await r.server();
      await server.api.suspend();
      const res = await r.cli(server, ['--api-deadline', '1', ...STEP]);
      const exitedAt = Date.now();
      assert.equal(res.code, 3, res.stderr);
      const lines = problemLines(res.stderr);
      assert.equal(lines.length, 1, `one line:\n${res.stderr}`);
      assert.match(
        lines[0]!,
        /^spot-run: cannot report Build default\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: cannot reach the API server at .*ECONNREFUSED.* \(GET \/apis\/spot\.release\.com\/v1alpha1\/namespaces\/default\/builds\/b1\); /,
      );
      // The deadline bounds the GET and the failure report together: timed from spot-run's first
      // log line, so the time node takes to start (seconds on a loaded machine) does not count.
      const startedAt = Date.parse(/^(\S+) INFO /.exec(res.stderr)?.[1] ?? '');
      assert.ok(exitedAt - startedAt < 1_000 + 500, `exited ${exitedAt - startedAt} ms after its first log line (--api-deadline 1)`);
      assert.deepEqual([res.termination?.outcome, res.termination?.exitCode, res.termination?.reported], ['error', 3, false]);
    });
  },
};

export const PROCESS_SCENARIOS: readonly Scenario[] = [
  outage,
  outageBeyondDeadline,
  sigterm,
  hugeStderr,
  sigtermFirstGet,
  signalRetryAfter,
  secondSignal,
  sigtermReportHangs,
  terminationMessage,
  buildTimeout,
  apiUnreachable,
];
