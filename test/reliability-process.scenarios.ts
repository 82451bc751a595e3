/**
 * Faults around the process: an API server outage (within and beyond the deadline), SIGTERM in the
 * middle of a step, a step that floods stderr while the log reader stalls. Run by
 * reliability-process.test.ts and `npm run reliability`.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  checkRetryPolicy,
  cleanTrace,
  expectBuild,
  expectDone,
  expectEvents,
  IMAGE,
  lineBeforeExit,
  problemLines,
  runWithHeldStep,
  STARTED_COMPLETED,
  trace,
  waitForStepLine,
} from './support/scenario-checks.js';
import { CLI_MAX_RETRIES, type CliRunOptions, type Scenario } from './support/scenario-harness.js';
import { isLive as alive, liveGroupMembersAfter } from './support/processes.js';

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

export const PROCESS_SCENARIOS: readonly Scenario[] = [outage, outageBeyondDeadline, sigterm, hugeStderr];
