/**
 * Signals are answered at once (issue 12): real SIGTERM/SIGINT to the `spot-run` bundle against the
 * local API server, at each place a run can wait (the first GET's retries, a Retry-After wait, a
 * report the server never answers, a step that ignores SIGTERM), and in-process for a conflict
 * re-read. What is measured is the time from the signal to the exit, and what the termination
 * message says.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { createClient, type SpotClient } from '../lib/client.js';
import { buildRef } from '../lib/names.js';
import { runTasks } from '../lib/runner.js';
import { buildPath, outputWatch, statusPath, until, useSpotRunE2e, type SpotRunE2e } from './support/spot-run-e2e.js';

const suite = useSpotRunE2e('spot-signals-');

/** Runs `ns` and sends `signal` once `ready` resolves; resolves with the result and the ms from the signal to the exit. */
async function signalled(
  ns: string,
  options: Parameters<SpotRunE2e['run']>[1] & { ready: (child: ChildProcess) => Promise<void>; signal: NodeJS.Signals; second?: Promise<void> },
): Promise<{ result: Awaited<ReturnType<SpotRunE2e['run']>>; afterSignalMs: number }> {
  let signalledAt = 0;
  let sent: Promise<void> | undefined;
  const result = await suite.e2e.run(ns, {
    ...options,
    onSpawn: (child) => {
      sent = options.ready(child).then(async () => {
        signalledAt = Date.now();
        child.kill(options.signal);
        if (options.second) {
          await options.second;
          child.kill(options.signal);
        }
      });
    },
  });
  await sent;
  assert.ok(signalledAt > 0, 'the signal was sent');
  return { result, afterSignalMs: Date.now() - signalledAt };
}

describe('spot-run answers a signal at once', { timeout: 60_000 }, () => {
  test('SIGTERM while the first GET is being retried (the API server is down): exit 143 within a second, nothing to report', async () => {
    const ns = 'sig-first-get';
    suite.server.createBuild({ namespace: ns, name: 'b1' });
    await suite.server.suspend();
    const watch = outputWatch(`Build ${ns}/b1, 1 step`);
    let outcome;
    try {
      outcome = await signalled(ns, {
        create: false,
        steps: [['Building Image', 'true']],
        onOutput: watch.onOutput,
        // The GET is refused and retried with backoff for --api-deadline (60 s by default).
        ready: async () => {
          await watch.seen;
          await new Promise((r) => setTimeout(r, 300));
        },
        signal: 'SIGTERM',
      });
    } finally {
      await suite.server.resume();
    }
    const { result, afterSignalMs } = outcome;
    assert.equal(result.signal, null, 'exited by itself, not killed by the signal');
    assert.equal(result.code, 143, result.stderr);
    assert.ok(afterSignalMs < 1_000, `exited ${afterSignalMs} ms after SIGTERM`);
    assert.deepEqual(result.termination, {
      outcome: 'interrupted',
      exitCode: 143,
      phase: 'Errored',
      reason: 'Terminated',
      message: 'Build interrupted by SIGTERM before it was read',
      reported: false,
    });
    process.stdout.write(`# SIGTERM during the first GET's retries: exited ${afterSignalMs} ms after the signal\n`);
  });

  test('SIGINT during a Retry-After: 30 wait on a status write: the wait is cut, the interruption reported, exit 130 long before the grace period', async () => {
    const ns = 'sig-retry-after';
    // Step 1's Success (with step 2's In Progress) is answered 503 Retry-After: 30, once.
    const fault = suite.server.inject({ method: 'PATCH', path: statusPath(ns), when: ({ n }) => n === 2, status: 503, retryAfterSeconds: 30 });
    const { result, afterSignalMs } = await signalled(ns, {
      args: ['--grace', '10'],
      steps: [['Fetching Source', 'true'], ['Building Image', 'echo never-runs']],
      ready: () => until(() => fault.hits === 1, 'the 503'),
      signal: 'SIGINT',
    });
    assert.equal(result.code, 130, result.stderr);
    assert.ok(afterSignalMs < 2_000, `exited ${afterSignalMs} ms after SIGINT (grace 10 s, Retry-After 30 s)`);
    assert.ok(!result.stdout.includes('never-runs'));
    assert.deepEqual(suite.e2e.conditions(ns), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Error', 'Terminated'],
    ]);
    assert.equal(suite.e2e.stored(ns)!.status!.phase, 'Errored');
    assert.deepEqual(
      suite.e2e.events(ns).map((e) => [e.type, e.reason, e.message]),
      [
        ['Normal', 'Started', 'Build started: 2 tasks (Fetching Source, Building Image)'],
        ['Warning', 'Terminated', 'Build interrupted by SIGINT before Building Image started'],
      ],
    );
    assert.deepEqual(result.termination, {
      outcome: 'interrupted',
      exitCode: 130,
      phase: 'Errored',
      reason: 'Terminated',
      message: 'Build interrupted by SIGINT before Building Image started',
      reported: true,
    });
    process.stdout.write(`# SIGINT during a 30 s Retry-After wait: exited ${afterSignalMs} ms after the signal\n`);
  });

  test('SIGTERM during a step, and the API server never answers the report: it runs under the grace period and no longer', async () => {
    const ns = 'sig-report-hangs';
    const watch = outputWatch('[Building Image] started');
    const hang = suite.server.inject({ method: 'PATCH', path: statusPath(ns), when: ({ n }) => n >= 2, times: Infinity, hang: true });
    let outcome;
    try {
      outcome = await signalled(ns, {
        args: ['--grace', '2'],
        steps: [['Building Image', 'echo started; sleep 30']],
        onOutput: watch.onOutput,
        ready: () => watch.seen,
        signal: 'SIGTERM',
      });
    } finally {
      hang.remove();
      await suite.server.suspend();
      await suite.server.resume();
    }
    const { result, afterSignalMs } = outcome;
    assert.equal(result.code, 143, result.stderr);
    assert.ok(afterSignalMs < 2_000 + 1_000, `exited ${afterSignalMs} ms after SIGTERM; the grace period is 2 s`);
    assert.doesNotMatch(result.stderr, /could not finish reporting within the grace period/, 'the report gave up by itself, the exit was not forced');
    assert.match(result.stderr, /could not report that Building Image was interrupted within the grace period/);
    assert.deepEqual(result.termination, {
      outcome: 'interrupted',
      exitCode: 143,
      phase: 'Errored',
      task: 'Building Image',
      reason: 'Terminated',
      message: result.termination?.message,
      reported: false,
    });
    assert.match(result.termination!.message, /^Building Image was interrupted by SIGTERM after \d+\.\ds$/);
  });

  test('a second signal exits at once, and the termination message still says interrupted, in which task', async () => {
    const ns = 'sig-second';
    const started = outputWatch('[Building Image] ignoring TERM');
    const received = outputWatch('SIGTERM received');
    let secondAt = 0;
    const { result } = await signalled(ns, {
      // A long grace period and a step that ignores SIGTERM: only the second signal can end this soon.
      args: ['--grace', '20'],
      steps: [['Building Image', `trap '' TERM; echo ignoring TERM; while true; do sleep 0.05; done`]],
      onOutput: (text, stream) => {
        started.onOutput(text, stream);
        received.onOutput(text, stream);
      },
      ready: () => started.seen,
      signal: 'SIGTERM',
      second: received.seen.then(() => void (secondAt = Date.now())),
    });
    const afterSecond = Date.now() - secondAt;
    assert.equal(result.code, 143, result.stderr);
    assert.ok(afterSecond < 1_000, `exited ${afterSecond} ms after the second SIGTERM`);
    assert.match(result.stderr, /second SIGTERM: exiting now/);
    assert.deepEqual(result.termination, {
      outcome: 'interrupted',
      exitCode: 143,
      phase: 'Errored',
      task: 'Building Image',
      reason: 'Terminated',
      message: 'Building Image was interrupted by SIGTERM; exited before the report was finished',
      reported: false,
    });
  });
});

describe('runTasks: a stop cuts a conflict re-read short', () => {
  let client: SpotClient;
  before(async () => {
    // A per-request timeout of 20 s: without the stop, the hung re-read would hold the run that long.
    client = await createClient({ env: { ...suite.server.env() }, timeoutMs: 20_000, retry: { baseDelayMs: 1, maxDelayMs: 5 } });
  });
  after(async () => {
    await client?.close();
    await suite.server.suspend();
    await suite.server.resume();
  });

  test('the first write conflicts, the re-read hangs, the stop comes: resolved at once, interrupted, nothing reported', async () => {
    const ns = 'sig-conflict-reread';
    suite.server.createBuild({ namespace: ns, name: 'b1' });
    const conflict = suite.server.inject({ method: 'PATCH', path: statusPath(ns), concurrentWrite: (status) => void (status.pod = { name: 'p', namespace: 'spot-system' }) });
    const hang = suite.server.inject({ method: 'GET', path: buildPath(ns), when: ({ n }) => n === 2, hang: true });
    const controller = new AbortController();
    let ran = false;
    const run = runTasks(client, buildRef(ns, 'b1'), [{ type: 'A', run: async () => void (ran = true) }], { signal: controller.signal, graceMs: 5_000 });
    await until(() => hang.hits === 1, 'the hung re-read');
    const stoppedAt = Date.now();
    controller.abort('SIGTERM');
    const outcome = await run;
    const took = Date.now() - stoppedAt;
    assert.ok(took < 500, `resolved ${took} ms after the stop`);
    assert.equal(conflict.hits, 1);
    assert.equal(ran, false);
    assert.ok(outcome.outcome === 'interrupted' && outcome.type === undefined && !outcome.reported, JSON.stringify({ ...outcome, build: undefined }));
    assert.equal(outcome.exitCode, 143);
  });
});
