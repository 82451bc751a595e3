/**
 * The exact request sequence of the runner, replayed from test/fixtures/run-*.json: every status
 * write (a merge patch with the resourceVersion precondition) and every event body is checked
 * field by field by the fixture harness; these tests add what a fixture cannot say (what ran,
 * when, what came back, how long it took).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { clientFromConfig } from '../lib/client.js';
import { AbortedError, TaskFailure } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { buildRef } from '../lib/names.js';
import { DEFAULT_RETRY_POLICY } from '../lib/retry.js';
import { monitorCondition, reportFatalError, runTasks, type Task } from '../lib/runner.js';
import { stepTask, type StepOptions } from '../lib/steps.js';
import { StaticTokenSource } from '../lib/token.js';
import type { Build, BuildCondition } from '../lib/types.js';
import { loadFixture, replyBody, withFixture, type Exchange, type RecordedRequest, type WithFixtureOptions } from './support/fixtures.js';
import { isLive, liveGroupMembersAfter } from './support/processes.js';

const ref = buildRef('ns', 'b1');
const BUILD = '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1';
const STATUS = `${BUILD}/status`;
const EVENTS = '/api/v1/namespaces/ns/events';
const OPTIONS: WithFixtureOptions = { client: { events: { instance: 'b1-build-pod' } } };
const THREE = ['Fetching Source', 'Building Image', 'Pushing Image'];

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-runner-fixtures-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Step output goes here, not to the test's own stdout. */
function quietSteps(): StepOptions & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), resultsParent: scratch, killGraceMs: 200 };
}

const lines = (requests: RecordedRequest[]) => requests.map((r) => `${r.method} ${r.path}`);

type WriteBody = { status: { conditions?: BuildCondition[]; phase?: string; [key: string]: unknown }; metadata: { resourceVersion: string } };
const writes = (requests: RecordedRequest[]) => requests.filter((r) => r.method === 'PATCH').map((r) => r.body as WriteBody);

/** The times the client wrote are real ones, from this run (the fixture's `<time>` only checks the format). */
function assertTimesWithin(requests: RecordedRequest[], startedMs: number, endedMs: number): void {
  const from = Math.floor(startedMs / 1000) * 1000;
  for (const body of writes(requests)) {
    for (const c of body.status.conditions ?? []) {
      const t = Date.parse(c.lastTransitionTime!);
      assert.ok(!c.lastTransitionTime!.includes('.'), `second precision: ${c.lastTransitionTime}`);
      // Times carried over from the fixture's replies are from 2025; new ones are from this run.
      if (t >= Date.parse('2026-01-01T00:00:00Z')) assert.ok(t >= from && t <= endedMs, `${c.type} at ${c.lastTransitionTime} is outside the run`);
    }
  }
}


async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (text.endsWith('\n')) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${path} was never written`);
}

describe('runTasks: three tasks that succeed', () => {
  const EXPECTED = [
    `GET ${BUILD}`,
    `PATCH ${STATUS}`,
    `POST ${EVENTS}`,
    `PATCH ${STATUS}`,
    `PATCH ${STATUS}`,
    `PATCH ${STATUS}`,
    `POST ${EVENTS}`,
  ];

  test('in-process tasks: 1 GET, 4 conditional merge patches, Started and Completed events, in that order', async () => {
    await withFixture(
      'run-three-steps',
      async (client, { requests }) => {
        const seenAtStart: Record<string, string[]> = {};
        const tasks: Task[] = THREE.map((type) => ({
          type,
          run: async ({ build }) => {
            seenAtStart[type] = lines(requests);
            // The task sees the Build as last written: its own condition In Progress.
            assert.equal(build.status?.conditions?.find((c) => c.type === type)?.status, 'In Progress');
          },
        }));
        const started = Date.now();
        const outcome = await runTasks(client, ref, tasks);
        assertTimesWithin(requests, started, Date.now());

        assert.equal(outcome.outcome, 'done');
        assert.equal(outcome.exitCode, 0);
        assert.equal(outcome.build.metadata.resourceVersion, '2005');
        assert.equal(outcome.build.status?.phase, 'Done');
        assert.deepEqual(lines(requests), EXPECTED);
        // Each task starts only once its In Progress write is stored (and the first after the Started event).
        assert.deepEqual(seenAtStart['Fetching Source'], EXPECTED.slice(0, 3));
        assert.deepEqual(seenAtStart['Building Image'], EXPECTED.slice(0, 4));
        assert.deepEqual(seenAtStart['Pushing Image'], EXPECTED.slice(0, 5));
        // Each write is conditional on the resourceVersion of the Build the previous one returned.
        assert.deepEqual(
          writes(requests).map((w) => w.metadata.resourceVersion),
          ['2001', '2002', '2003', '2004'],
        );
        assert.deepEqual(
          writes(requests).map((w) => w.status.phase),
          ['Running', undefined, undefined, 'Done'],
          'the phase is sent only when it changes',
        );
      },
      OPTIONS,
    );
  });

  test('shell steps (stepTask): the same requests, byte for byte', async () => {
    await withFixture(
      'run-three-steps',
      async (client, { requests }) => {
        const io = quietSteps();
        const tasks = THREE.map((type, i) => stepTask({ type, command: `echo "step ${i + 1} says hello"` }, io));
        const outcome = await runTasks(client, ref, tasks);
        assert.equal(outcome.outcome, 'done');
        assert.deepEqual(lines(requests), EXPECTED);
        assert.deepEqual(io.out, ['[Fetching Source] step 1 says hello\n', '[Building Image] step 2 says hello\n', '[Pushing Image] step 3 says hello\n']);
      },
      OPTIONS,
    );
  });
});

describe('runTasks: a failure in step 2', () => {
  const STDERR = 'npm ERR! missing script: build\nnpm ERR! A complete log of this run can be found in /tmp/npm.log';

  test('in-process: Error with the task\'s reason and message, phase Errored, Warning event; step 3 never runs', async () => {
    await withFixture(
      'run-step-fails',
      async (client, { requests }) => {
        let thirdRan = false;
        const outcome = await runTasks(client, ref, [
          { type: 'Fetching Source', run: async () => {} },
          {
            type: 'Building Image',
            run: async () => {
              throw new TaskFailure('StepFailed', `exit code 3; last stderr lines:\n${STDERR}`);
            },
          },
          {
            type: 'Pushing Image',
            run: async () => {
              thirdRan = true;
            },
          },
        ]);
        assert.equal(thirdRan, false);
        assert.equal(outcome.outcome, 'failed');
        assert.equal(outcome.exitCode, 1);
        assert.equal(outcome.outcome === 'failed' && outcome.type, 'Building Image');
        assert.equal(outcome.build.status?.phase, 'Errored');
        assert.equal(requests.at(-1)!.method, 'POST');
        assert.equal((requests.at(-1)!.body as { type: string }).type, 'Warning');
      },
      OPTIONS,
    );
  });

  test('shell steps: exit code 3 and the last stderr lines reach the condition and the event', async () => {
    const marker = join(scratch, 'step-3-ran');
    await withFixture(
      'run-step-fails',
      async (client, { requests }) => {
        const io = quietSteps();
        const outcome = await runTasks(client, ref, [
          stepTask({ type: 'Fetching Source', command: 'true' }, io),
          stepTask({ type: 'Building Image', command: `echo "starting build"; printf '%s\\n' ${STDERR.split('\n').map((l) => `'${l}'`).join(' ')} >&2; exit 3` }, io),
          stepTask({ type: 'Pushing Image', command: `touch '${marker}'` }, io),
        ]);
        assert.equal(outcome.outcome, 'failed');
        await assert.rejects(stat(marker), { code: 'ENOENT' }, 'step 3 must not run');
        const error = writes(requests)[2]!.status.conditions![1]!;
        assert.equal(error.reason, 'StepFailed');
        assert.match(error.message!, /exit code 3; last stderr lines:\nnpm ERR! missing script: build\n/);
        assert.deepEqual(io.out, ['[Building Image] starting build\n']);
      },
      OPTIONS,
    );
  });
});

describe('runTasks: a conflict in the middle of a run', () => {
  test('409 on write 3: re-read, re-applied; the operator\'s status.pod and "Pod Deployment" survive, and so does ours', async () => {
    await withFixture(
      'run-conflict',
      async (client, { requests }) => {
        const outcome = await runTasks(client, ref, THREE.map((type) => ({ type, run: async () => {} })));
        assert.equal(outcome.outcome, 'done');
        assert.deepEqual(lines(requests), [
          `GET ${BUILD}`,
          `PATCH ${STATUS}`,
          `POST ${EVENTS}`,
          `PATCH ${STATUS}`,
          `PATCH ${STATUS}`,
          `GET ${BUILD}`,
          `PATCH ${STATUS}`,
          `PATCH ${STATUS}`,
          `POST ${EVENTS}`,
        ]);
        const w = writes(requests);
        assert.deepEqual(
          w.map((x) => x.metadata.resourceVersion),
          ['2001', '2002', '2003', '2010', '2011'],
          'the re-applied write is conditional on the re-read version',
        );
        for (const body of w) assert.ok(!('pod' in body.status), 'status.pod is never sent, so never overwritten');
        for (const body of w.slice(3)) {
          assert.deepEqual(
            body.status.conditions!.map((c) => c.type),
            [...THREE, 'Pod Deployment'],
          );
        }
        const status = outcome.build.status!;
        assert.deepEqual(status.pod, { namespace: 'ns', name: 'b1-build-pod' });
        assert.deepEqual(
          status.conditions!.map((c) => [c.type, c.status, c.reason]),
          [
            ['Fetching Source', 'Success', 'Succeeded'],
            ['Building Image', 'Success', 'Succeeded'],
            ['Pushing Image', 'Success', 'Succeeded'],
            ['Pod Deployment', 'Success', 'PodRunning'],
          ],
        );
        assert.equal(status.phase, 'Done');
      },
      OPTIONS,
    );
  });
});

describe('runTasks: results', () => {
  test('a step writing $SPOT_RESULTS_DIR/image-url (and image-metadata): status.image in the write that marks it Success', async () => {
    await withFixture(
      'run-image-result',
      async (client, { requests }) => {
        const io = quietSteps();
        const outcome = await runTasks(client, ref, [
          stepTask({ type: 'Building Image', command: 'echo built' }, io),
          stepTask(
            {
              type: 'Pushing Image',
              command: `printf 'registry.example.com/team/app:3f2c1a9@sha256:9b2f0c4e\\n' > "$SPOT_RESULTS_DIR/image-url"; printf '{"digest":"sha256:9b2f0c4e","builder":"kaniko"}' > "$SPOT_RESULTS_DIR/image-metadata"`,
            },
            io,
          ),
        ]);
        assert.equal(outcome.outcome, 'done');
        const w = writes(requests);
        assert.equal(w.length, 3);
        assert.ok(!('image' in w[1]!.status), 'no image before the step that produced it is done');
        assert.deepEqual(w[2]!.status.image, {
          url: 'registry.example.com/team/app:3f2c1a9@sha256:9b2f0c4e',
          metadata: { digest: 'sha256:9b2f0c4e', builder: 'kaniko' },
        });
        assert.equal(w[2]!.status.conditions![1]!.status, 'Success');
        assert.equal(outcome.build.status?.image?.url, 'registry.example.com/team/app:3f2c1a9@sha256:9b2f0c4e');
        // The results folder is removed once read.
        assert.deepEqual((await readdir(scratch)).filter((n) => n.startsWith('spot-results-')), []);
      },
      OPTIONS,
    );
  });
});

describe('runTasks: a step over its timeout', { timeout: 15_000 }, () => {
  test('timeoutSeconds 0.5: Error with reason Timeout, and the whole process group is killed', async () => {
    const pids = join(scratch, 'timeout-pids');
    await withFixture(
      'run-step-timeout',
      async (client) => {
        const io = quietSteps();
        const started = Date.now();
        const outcome = await runTasks(client, ref, [
          stepTask(
            {
              type: 'Building Image',
              timeoutSeconds: 0.5,
              // A grandchild that ignores SIGTERM: only the group-wide SIGKILL gets it.
              command: `echo compiling... >&2; (trap '' TERM; sleep 30) & echo "$$ $!" > '${pids}'; sleep 30`,
            },
            io,
          ),
        ]);
        const ms = Date.now() - started;
        assert.equal(outcome.outcome, 'failed');
        assert.ok(ms < 5_000, `the step was stopped at its timeout, not after its 30 s (took ${ms} ms)`);
        const [pgid, grandchild] = (await waitForFile(pids)).trim().split(' ').map(Number);
        assert.ok(pgid && grandchild);
        assert.deepEqual(await liveGroupMembersAfter(pgid), [], `process group ${pgid} still has live members`);
        assert.equal(isLive(grandchild), false, `the TERM-ignoring grandchild ${grandchild} survived`);
      },
      OPTIONS,
    );
  });
});


describe('monitorCondition', { timeout: 15_000 }, () => {
  test('already In Progress: no In Progress write, straight to Success', async () => {
    await withFixture('run-monitor-in-progress', async (client, { requests }) => {
      let calls = 0;
      const result = await monitorCondition(client, ref, 'Building Image', async () => {
        calls++;
        assert.equal(requests.length, 1, 'only the GET before the task runs');
        return 'sha256:9b2f0c4e';
      });
      assert.equal(calls, 1);
      assert.ok(result.ok);
      assert.equal(result.value, 'sha256:9b2f0c4e');
      assert.equal(result.build.metadata.resourceVersion, '4002');
      assert.equal(result.build.status?.phase, 'Done');
    });
  });

  test('In Progress, then Success; the task sees its condition In Progress', async () => {
    await withFixture('run-monitor-success', async (client) => {
      const result = await monitorCondition(client, ref, 'Building Image', async ({ build }) => {
        assert.equal(build.status?.conditions?.[0]?.status, 'In Progress');
        return 42;
      });
      assert.ok(result.ok);
      assert.equal(result.value, 42);
      assert.equal(result.build.status?.conditions?.[0]?.status, 'Success');
    });
  });

  test('a TaskFailure: Error with its reason and message, returned, not thrown; never left In Progress', async () => {
    await withFixture('run-monitor-error', async (client) => {
      const result = await monitorCondition(client, ref, 'Building Image', async () => {
        throw new TaskFailure('StepFailed', 'exit code 2');
      });
      assert.equal(result.ok, false);
      assert.ok(!result.ok && result.error instanceof TaskFailure);
      assert.equal(result.build.status?.phase, 'Errored');
      assert.deepEqual(
        result.build.status?.conditions?.map((c) => c.status),
        ['Error'],
      );
    });
  });

  /** run-monitor-error with another reason and message in the last write. */
  function errorFixture(reason: string, message: string): Exchange[] {
    const exchanges = loadFixture('run-monitor-error');
    const last = exchanges[2]!;
    const sent = (last.request.body as WriteBody).status.conditions![0]!;
    sent.reason = reason;
    sent.message = message;
    const stored = (last.reply!.body as Build).status!.conditions![0]!;
    stored.reason = reason;
    stored.message = message;
    return exchanges;
  }

  test('any other error: reason Failed', async () => {
    await withFixture(errorFixture('Failed', 'boom'), async (client) => {
      const result = await monitorCondition(client, ref, 'Building Image', async () => {
        throw new Error('boom');
      });
      assert.equal(result.ok, false);
    });
  });

  test('stopped through its signal: reason Terminated', async () => {
    await withFixture(errorFixture('Terminated', 'stopped by SIGTERM'), async (client) => {
      const controller = new AbortController();
      const result = await monitorCondition(
        client,
        ref,
        'Building Image',
        ({ signal }) =>
          new Promise((_, reject) => {
            signal.addEventListener('abort', () => reject(new AbortedError('stopped by SIGTERM', undefined)));
            controller.abort('SIGTERM');
          }),
        { signal: controller.signal },
      );
      assert.equal(result.ok, false);
    });
  });

  test('with a base Build the GET is skipped', async () => {
    const exchanges = loadFixture('run-monitor-success');
    const base = replyBody<Build>(exchanges, 0);
    await withFixture(exchanges.slice(1), async (client, { requests }) => {
      const result = await monitorCondition(client, ref, 'Building Image', async () => 'ok', { base });
      assert.ok(result.ok);
      assert.equal(requests.filter((r) => r.method === 'GET').length, 0);
    });
  });
});

// A timeout, so a fatal path that ignores its deadline fails here instead of hanging the suite.
describe('reportFatalError', { timeout: 15_000 }, () => {
  const MESSAGE = 'cannot push: registry.example.com unreachable';

  test('reachable: the In Progress condition becomes Error, phase Errored, a Warning event', async () => {
    await withFixture(
      'run-fatal',
      async (client, { requests }) => {
        await reportFatalError(client, ref, new Error(MESSAGE));
        assert.deepEqual(lines(requests), [`GET ${BUILD}`, `PATCH ${STATUS}`, `POST ${EVENTS}`]);
      },
      OPTIONS,
    );
  });

  test('the API server never answers: resolves at its deadline, saying why (logged at debug level)', async () => {
    const [get] = loadFixture('run-fatal');
    const hanging: Exchange = { ...get!, delayMs: 60_000 };
    await withFixture([hanging], async (client) => {
      const logged: string[] = [];
      const deadlineMs = 300;
      const started = Date.now();
      const report = await reportFatalError(client, ref, new Error(MESSAGE), { deadlineMs, log: createLogger({ level: 'debug', write: (l) => logged.push(l) }) });
      const returnedAfter = Date.now() - started;
      assert.ok(returnedAfter >= deadlineMs - 20, `it waited for the answer until the deadline (returned after ${returnedAfter} ms)`);
      assert.ok(returnedAfter < deadlineMs + 1_000, `returned ${returnedAfter} ms after the call, deadline ${deadlineMs} ms`);
      assert.ok(!report.recorded && /aborted/.test(report.error.message), JSON.stringify(report));
      assert.ok(logged.some((l) => l.includes(`fatal: ${MESSAGE}`)), logged.join('\n'));
      assert.ok(logged.some((l) => l.includes('could not record the failure on Build ns/b1')), logged.join('\n'));
      process.stdout.write(`# reportFatalError, API server silent: returned after ${returnedAfter} ms (deadline ${deadlineMs} ms)\n`);
    });
  });

  test('connection refused, with the default (slow) retry policy: still returns within its deadline', async () => {
    const port = await closedPort();
    const client = clientFromConfig(
      { server: `https://127.0.0.1:${port}`, ca: undefined, tokenSource: new StaticTokenSource('test-token'), namespace: 'ns' },
      { retry: DEFAULT_RETRY_POLICY },
    );
    try {
      const deadlineMs = 600;
      const started = Date.now();
      await reportFatalError(client, ref, new Error(MESSAGE), { deadlineMs });
      const returnedAfter = Date.now() - started;
      // Measured: the default policy would keep retrying a refused connection for 60 s.
      assert.ok(returnedAfter < deadlineMs + 1_000, `returned ${returnedAfter} ms after the call, deadline ${deadlineMs} ms`);
      process.stdout.write(`# reportFatalError, connection refused: returned after ${returnedAfter} ms (deadline ${deadlineMs} ms)\n`);
    } finally {
      await client.close();
    }
  });
});

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
