/**
 * End to end: the real `spot-run` child process in in-cluster mode (service-account folder,
 * KUBERNETES_SERVICE_HOST/PORT from `server.env()`) against the local API server. Each test has its
 * own namespace, so it reads only its own requests, Build and events, and asserts all of them:
 * the exit code, the exact request sequence, every stored condition, the phase, status.image, the
 * operator's fields and the events.
 *
 * The command runs as the single-file bundle that `npm run build` ships (dist/spot-run.mjs), built
 * from the source at the start: through tsx every child would cost ~0.7 CPU-seconds more.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import type { Build, BuildCondition } from '../lib/types.js';
import { isLive, liveGroupMembersAfter } from './support/processes.js';
import { bundleSpotRun, runCli, type CliOptions, type CliResult } from './support/cli.js';
import { outputWatch } from './support/spot-run-e2e.js';
import { startApiServer, type ApiServer, type StoredEvent } from '../scripts/apiserver/server.js';

let scratch: string;
let server: ApiServer;
let bundle: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-e2e-'));
  bundle = await bundleSpotRun();
  server = await startApiServer();
});
after(async () => {
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});


const buildPath = (ns: string) => `/apis/spot.release.com/v1alpha1/namespaces/${ns}/builds/b1`;
const statusPath = (ns: string) => `${buildPath(ns)}/status`;

/** Creates `NS/b1` and runs spot-run on it in-cluster with `--grace 2`, `args` and these steps. */
async function runBuild(
  ns: string,
  steps: Array<[type: string, command: string]>,
  options: CliOptions & { args?: string[] } = {},
): Promise<CliResult> {
  server.createBuild({ namespace: ns, name: 'b1', spec: { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } } });
  const args = ['--grace', '2', ...(options.args ?? []), ...steps.flatMap(([type, command]) => ['--step', `${type}=${command}`])];
  return runCli(args, {
    entry: bundle,
    timeoutMs: 30_000,
    ...options,
    env: { ...server.env(), BUILD_REFERENCE: `${ns}/b1`, POD_NAME: `${ns}-pod`, ...options.env },
  });
}

/** `METHOD what STATUS` for every request about namespace `ns`, in order. */
function requestsOf(ns: string): string[] {
  return server.requests
    .filter((r) => r.path.includes(`/namespaces/${ns}/`))
    .map((r) => `${r.method} ${r.path === buildPath(ns) ? 'build' : r.path === statusPath(ns) ? 'status' : r.path.includes('/events') ? 'events' : r.path} ${r.status}`);
}

const stored = (ns: string): Build => server.getBuild(ns, 'b1')!;
const conditions = (ns: string) => stored(ns).status!.conditions!.map((c) => [c.type, c.status, c.reason ?? null]);

/** Every condition carries a second-precision RFC 3339 time of this run (or of the operator). */
function assertTimes(list: BuildCondition[]): void {
  for (const c of list) assert.match(c.lastTransitionTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, `${c.type}: ${c.lastTransitionTime}`);
}

/** The events of `ns`, oldest first, checked for what every event of ours carries. */
function eventsOf(ns: string): Array<[type: string, reason: string, message: string]> {
  const build = stored(ns);
  const events = server.events(ns) as StoredEvent[];
  for (const e of events) {
    assert.deepEqual(
      { ...e.involvedObject, resourceVersion: undefined },
      { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: 'b1', namespace: ns, uid: build.metadata.uid, resourceVersion: undefined },
    );
    assert.equal(e.reportingComponent, 'spot-runtime');
    assert.equal(e.reportingInstance, `${ns}-pod`);
    assert.deepEqual(e.source, { component: 'spot-runtime' });
    assert.equal(e.count, 1);
    assert.equal(e.firstTimestamp, e.lastTimestamp);
  }
  return events.map((e) => [e.type!, e.reason!, e.message!]);
}

/** Milliseconds between the first log lines matching `from` and `to`, by spot-run's own clock. */
function logGap(stderr: string, from: RegExp, to: RegExp): number {
  const at = (re: RegExp) => {
    const line = stderr.split('\n').find((l) => re.test(l));
    assert.ok(line, `no log line matching ${re}:\n${stderr}`);
    return Date.parse(line.slice(0, line.indexOf(' ')));
  };
  return at(to) - at(from);
}

/**
 * Exited by itself, with `code`, after reporting the interruption within the 2 s grace period.
 * The report is timed by spot-run's own log clock: on a loaded machine the process can take a
 * second or more just to be scheduled and torn down, which says nothing about the grace period.
 * The wall-clock bound from the signal to the exit still catches a process that lingers.
 */
function assertExitedWithinGrace(result: CliResult, signal: 'SIGTERM' | 'SIGINT', code: number, signalledAt: number, exitedAt: number): void {
  assert.ok(signalledAt > 0, 'the step started and the signal was sent');
  assert.equal(result.signal, null, `spot-run exited by itself, not killed by ${result.signal}`);
  assert.equal(result.code, code, result.stderr);
  assert.doesNotMatch(result.stderr, /could not finish reporting within the grace period/, 'forced out by the grace timer');
  const reported = logGap(result.stderr, new RegExp(`WARN  ${signal} received`), new RegExp(`interrupted by ${signal}: build Errored`));
  assert.ok(reported < 2_000, `reported ${reported} ms after ${signal}; the grace period is 2 s\n${result.stderr}`);
  assert.ok(exitedAt - signalledAt < 6_000, `exited ${exitedAt - signalledAt} ms after ${signal}\n${result.stderr}`);
}

// Each run has its own namespace, Build and faults: they can share the server and run side by side.
describe('runs', { concurrency: 3 }, () => {
  test('success, 4 steps: exit 0, 1 GET + 5 writes + 2 events, every condition Success, phase Done, status.image', async () => {
    const ns = 'e2e-success';
    const result = await runBuild(ns, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo built'],
      ['Running Tests', 'echo tested'],
      ['Pushing Image', 'echo pushed; echo "registry.example.com/team/app:1.4.2@sha256:9b2f0c4e" > "$SPOT_RESULTS_DIR/image-url"'],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const requests = requestsOf(ns);
    assert.deepEqual(requests, [
      'GET build 200',
      'PATCH status 200',
      'POST events 201',
      'PATCH status 200',
      'PATCH status 200',
      'PATCH status 200',
      'PATCH status 200',
      'POST events 201',
    ]);
    process.stdout.write(`# measured: spot-run with 4 steps sent ${requests.length} requests (${requests.join(', ')})\n`);
    for (const r of server.requests.filter((x) => x.path === statusPath(ns))) assert.equal(r.contentType, 'application/merge-patch+json');
    assert.deepEqual(conditions(ns), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
      ['Running Tests', 'Success', 'Succeeded'],
      ['Pushing Image', 'Success', 'Succeeded'],
    ]);
    const status = stored(ns).status!;
    assertTimes(status.conditions!);
    assert.equal(status.phase, 'Done');
    assert.deepEqual(status.image, { url: 'registry.example.com/team/app:1.4.2@sha256:9b2f0c4e' });
    assert.equal(status.pod, undefined);
    const events = eventsOf(ns);
    assert.deepEqual(events.map(([type, reason]) => [type, reason]), [
      ['Normal', 'Started'],
      ['Normal', 'Completed'],
    ]);
    assert.equal(events[0]![2], 'Build started: 4 tasks (Fetching Source, Building Image, Running Tests, Pushing Image)');
    assert.match(events[1]![2], /^Build completed: 4 tasks in \d+\.\ds$/);
    assert.equal(result.stdout, '[Fetching Source] cloned\n[Building Image] built\n[Running Tests] tested\n[Pushing Image] pushed\n');
  });

  test('failure in step 2: exit 1, Error/StepFailed with the exit code and stderr, step 3 never runs, Warning event', async () => {
    const ns = 'e2e-failure';
    const marker = join(scratch, 'e2e-failure-step-3');
    const result = await runBuild(ns, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo "step 1/3: FROM node:20-slim"; echo "npm ERR! missing script: build" >&2; exit 3'],
      ['Pushing Image', `touch '${marker}'`],
    ]);
    assert.equal(result.code, 1, result.stderr);
    await assert.rejects(stat(marker), { code: 'ENOENT' });
    assert.deepEqual(requestsOf(ns), ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 200', 'PATCH status 200', 'POST events 201']);
    assert.deepEqual(conditions(ns), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Error', 'StepFailed'],
      ['Pushing Image', '', null],
    ]);
    const status = stored(ns).status!;
    assertTimes(status.conditions!);
    assert.equal(status.phase, 'Errored');
    assert.equal(status.image, undefined);
    const message = status.conditions![1]!.message!;
    assert.match(message, /^Building Image failed after \d+\.\ds: exit code 3; last stderr lines:\nnpm ERR! missing script: build$/);
    assert.deepEqual(eventsOf(ns), [
      ['Normal', 'Started', 'Build started: 3 tasks (Fetching Source, Building Image, Pushing Image)'],
      ['Warning', 'StepFailed', message],
    ]);
    // The failure is one ERROR line (the step's own stderr lines aside).
    const errors = result.stderr.split('\n').filter((l) => / ERROR /.test(l));
    assert.equal(errors.length, 1, result.stderr);
    assert.match(errors[0]!, /ERROR \[2\/3\] Building Image failed after \d+\.\ds reason=StepFailed /);
  });

  test('a concurrent writer (the operator) between our read and write: 409, re-read, re-applied; its status.pod and condition survive, and ours', async () => {
    const ns = 'e2e-conflict';
    const pod = { namespace: ns, name: 'b1-build-7x9k2' };
    const operatorCondition: BuildCondition = { type: 'Pod Deployment', status: 'Success', lastTransitionTime: '2025-06-01T10:00:02Z', reason: 'PodRunning', message: 'pod is running' };
    const fault = server.inject({
      method: 'PATCH',
      path: statusPath(ns),
      when: ({ n }) => n === 2,
      concurrentWrite: (status) => {
        status.pod = { ...pod };
        status.conditions = [...(status.conditions ?? []), { ...operatorCondition }];
      },
    });
    const result = await runBuild(ns, [
      ['Fetching Source', 'echo cloned'],
      ['Building Image', 'echo built'],
      ['Pushing Image', 'echo pushed'],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(fault.hits, 1);
    assert.deepEqual(requestsOf(ns), [
      'GET build 200',
      'PATCH status 200',
      'POST events 201',
      'PATCH status 409',
      'GET build 200',
      'PATCH status 200',
      'PATCH status 200',
      'PATCH status 200',
      'POST events 201',
    ]);
    const status = stored(ns).status!;
    assert.deepEqual(status.pod, pod);
    assert.deepEqual(conditions(ns), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
      ['Pushing Image', 'Success', 'Succeeded'],
      ['Pod Deployment', 'Success', 'PodRunning'],
    ]);
    assert.deepEqual(status.conditions![3], operatorCondition, 'the operator\'s condition is kept exactly');
    assertTimes(status.conditions!);
    assert.equal(status.phase, 'Done');
    assert.deepEqual(eventsOf(ns).map(([type, reason]) => `${type} ${reason}`), ['Normal Started', 'Normal Completed']);
  });
});

// Alone: a rotated token would give any run in flight its own 401.
describe('token rotation', () => {
  test('the token is rotated while a step runs: one 401, the file is re-read, the run goes on', async () => {
    const ns = 'e2e-rotation';
    const go = join(scratch, 'e2e-rotation-go');
    const watch = outputWatch('[Fetching Source] waiting');
    let rotated: Promise<void> | undefined;
    const old = server.token;
    const result = await runBuild(
      ns,
      [
        ['Fetching Source', `echo waiting; while [ ! -e '${go}' ]; do sleep 0.02; done; echo going`],
        ['Building Image', 'echo built'],
      ],
      {
        onOutput: (text, stream) => {
          watch.onOutput(text, stream);
          rotated ??= watch.seen.then(async () => {
            await server.rotateToken();
            await writeFile(go, '');
          });
        },
      },
    );
    await rotated;
    assert.equal(result.code, 0, result.stderr);
    assert.notEqual(server.token, old);
    const requests = requestsOf(ns);
    assert.deepEqual(requests, [
      'GET build 200',
      'PATCH status 200',
      'POST events 201',
      'PATCH status 401',
      'PATCH status 200',
      'PATCH status 200',
      'POST events 201',
    ]);
    assert.equal(requests.filter((r) => r.endsWith(' 401')).length, 1, 'exactly one 401');
    assert.deepEqual(conditions(ns), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
    ]);
    assert.equal(stored(ns).status!.phase, 'Done');
    assert.deepEqual(eventsOf(ns).map(([type, reason]) => `${type} ${reason}`), ['Normal Started', 'Normal Completed']);
    assert.ok(!result.stderr.includes(old) && !result.stderr.includes(server.token));
  });
});

// Alone: an outage cuts every run in flight.
describe('outage', () => {
  test('the API server goes away during a step: exit 3 within --api-deadline plus the fatal path\'s bound, saying why', async () => {
    const ns = 'e2e-outage';
    const go = join(scratch, 'e2e-outage-go');
    const watch = outputWatch('[Fetching Source] waiting');
    let suspendedAt = 0;
    let outage: Promise<void> | undefined;
    try {
      const result = await runBuild(
        ns,
        [
          ['Fetching Source', `echo waiting; while [ ! -e '${go}' ]; do sleep 0.02; done`],
          ['Building Image', 'echo never'],
        ],
        {
          args: ['--api-deadline', '1'],
          onOutput: (text, stream) => {
            watch.onOutput(text, stream);
            outage ??= watch.seen.then(async () => {
              await server.suspend();
              suspendedAt = Date.now();
              await writeFile(go, '');
            });
          },
        },
      );
      await outage;
      const after = Date.now() - suspendedAt;
      assert.equal(result.code, 3, result.stderr);
      // --api-deadline 1 bounds the write and the failure report together: the write spent it all.
      assert.ok(after < 1_000 + 3_000, `exited ${after} ms into the outage`);
      const problems = result.stderr.split('\n').filter((l) => l.trim() !== '' && !/^\S+ (INFO|DEBUG) /.test(l));
      assert.equal(problems.length, 1, `one line for the failure:\n${result.stderr}`);
      assert.match(
        problems[0]!,
        /^spot-run: cannot report Build e2e-outage\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: cannot reach the API server.*; (not recorded on the Build \(the --api-deadline was spent\)|recording the failure on the Build failed too: .*)$/,
      );
      assert.ok(!result.stdout.includes('never'), 'no step runs once the report failed');
      // What the API server had before the outage: step 1 In Progress (nothing more could be stored).
      assert.deepEqual(conditions(ns), [
        ['Fetching Source', 'In Progress', null],
        ['Building Image', '', null],
      ]);
    } finally {
      await server.resume();
    }
  });
});

describe('the API server asks us to wait', { concurrency: 3 }, () => {
  const STEPS: Array<[string, string]> = [
    ['Building Image', 'echo built'],
    ['Pushing Image', 'echo pushed'],
  ];
  const NORMAL = ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 200', 'PATCH status 200', 'POST events 201'];

  /** [method, delayMs] of each retry spot-run logged (at --log-level debug). */
  function retries(stderr: string): Array<[string, number]> {
    return [...stderr.matchAll(/DEBUG retrying request method=(\w+) .*?delayMs=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]);
  }

  function assertDone(ns: string): void {
    assert.deepEqual(conditions(ns), [
      ['Building Image', 'Success', 'Succeeded'],
      ['Pushing Image', 'Success', 'Succeeded'],
    ]);
    assertTimes(stored(ns).status!.conditions!);
    assert.equal(stored(ns).status!.phase, 'Done');
    assert.equal(stored(ns).status!.image, undefined);
    assert.deepEqual(eventsOf(ns).map(([type, reason]) => `${type} ${reason}`), ['Normal Started', 'Normal Completed']);
  }

  test('429 as text/plain with Retry-After: 1 (max-inflight, priority and fairness) on the GET: waited, retried once', async () => {
    const ns = 'e2e-429-text';
    const fault = server.inject({ method: 'GET', path: buildPath(ns), status: 429, form: 'text' });
    const result = await runBuild(ns, STEPS, { args: ['--log-level', 'debug'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(fault.hits, 1);
    assert.deepEqual(requestsOf(ns), ['GET build 429', ...NORMAL]);
    assert.deepEqual(retries(result.stderr), [['GET', 1000]], 'Retry-After: 1 honoured');
    assert.match(result.stderr, /error="429 TooManyRequests: the server has received too many requests and has asked us to try again later: \\"Too many requests, please try again later\.\\"/);
    assertDone(ns);
  });

  test('429 as a TooManyRequests Status without Retry-After on a status write: retried after a backoff', async () => {
    const ns = 'e2e-429-json';
    const fault = server.inject({ method: 'PATCH', path: statusPath(ns), when: ({ n }) => n === 2, status: 429, form: 'json' });
    const result = await runBuild(ns, STEPS, { args: ['--log-level', 'debug'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(fault.hits, 1);
    const waits = retries(result.stderr);
    assert.equal(waits.length, 1);
    assert.equal(waits[0]![0], 'PATCH');
    assert.ok(waits[0]![1] >= 125 && waits[0]![1] <= 250, `the first backoff step (250 ms, equal jitter), got ${waits[0]![1]} ms`);
    assert.deepEqual(requestsOf(ns), ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 429', 'PATCH status 200', 'PATCH status 200', 'POST events 201']);
    assertDone(ns);
  });

  test('503 with Retry-After: 1 on the last status write: waited, retried once', async () => {
    const ns = 'e2e-503';
    const fault = server.inject({ method: 'PATCH', path: statusPath(ns), when: ({ n }) => n === 3, status: 503, retryAfterSeconds: 1 });
    const result = await runBuild(ns, STEPS, { args: ['--log-level', 'debug'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(fault.hits, 1);
    assert.deepEqual(requestsOf(ns), ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 200', 'PATCH status 503', 'PATCH status 200', 'POST events 201']);
    assert.deepEqual(retries(result.stderr), [['PATCH', 1000]], 'Retry-After: 1 honoured');
    assertDone(ns);
  });
});

describe('signals', () => {
  for (const [signal, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    test(`${signal} while a step runs: exit ${code} within the grace period, Error/Terminated, Warning event, the step's process group gone`, async () => {
      const ns = `e2e-${signal.toLowerCase()}`;
      const pids = join(scratch, `${ns}-pids`);
      const watch = outputWatch('[Fetching Source] started');
      let child: ChildProcess | undefined;
      let signalledAt = 0;
      const result = await runBuild(
        ns,
        [
          // The step and a grandchild in its process group, both far from done.
          ['Fetching Source', `sleep 30 & echo "$$ $!" > '${pids}'; echo started; wait`],
          ['Building Image', 'echo never'],
        ],
        {
          onSpawn: (c) => (child = c),
          onOutput: (text, stream) => {
            watch.onOutput(text, stream);
            void watch.seen.then(() => {
              if (signalledAt) return;
              signalledAt = Date.now();
              child!.kill(signal);
            });
          },
        },
      );
      assertExitedWithinGrace(result, signal, code, signalledAt, Date.now());
      assert.deepEqual(requestsOf(ns), ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 200', 'POST events 201']);
      assert.deepEqual(conditions(ns), [
        ['Fetching Source', 'Error', 'Terminated'],
        ['Building Image', '', null],
      ]);
      const status = stored(ns).status!;
      assertTimes(status.conditions!);
      assert.equal(status.phase, 'Errored');
      const message = status.conditions![0]!.message!;
      assert.match(message, new RegExp(`^Fetching Source was interrupted by ${signal} after \\d+\\.\\ds$`));
      assert.deepEqual(eventsOf(ns), [
        ['Normal', 'Started', 'Build started: 2 tasks (Fetching Source, Building Image)'],
        ['Warning', 'Terminated', message],
      ]);
      assert.ok(!result.stdout.includes('never'));
      const [pgid, grandchild] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
      assert.deepEqual(await liveGroupMembersAfter(pgid!), [], `the step's process group ${pgid} is still running`);
      assert.equal(isLive(grandchild!), false);
    });
  }

  test('SIGTERM while a step ignores SIGTERM: still reported and exited within the grace period, the group killed', async () => {
    const ns = 'e2e-stubborn';
    const pids = join(scratch, `${ns}-pids`);
    const watch = outputWatch('[Building Image] started');
    let child: ChildProcess | undefined;
    let signalledAt = 0;
    const result = await runBuild(
      ns,
      [['Building Image', `trap '' TERM; sleep 30 & echo "$$ $!" > '${pids}'; echo started; wait`]],
      {
        onSpawn: (c) => (child = c),
        onOutput: (text, stream) => {
          watch.onOutput(text, stream);
          void watch.seen.then(() => {
            if (signalledAt) return;
            signalledAt = Date.now();
            child!.kill('SIGTERM');
          });
        },
      },
    );
    assertExitedWithinGrace(result, 'SIGTERM', 143, signalledAt, Date.now());
    assert.deepEqual(conditions(ns), [['Building Image', 'Error', 'Terminated']], 'the interruption was reported before the grace period ran out');
    assert.equal(stored(ns).status!.phase, 'Errored');
    const [pgid, grandchild] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    assert.deepEqual(await liveGroupMembersAfter(pgid!), [], `the step's process group ${pgid} outlived spot-run`);
    assert.equal(isLive(grandchild!), false);
  });

  test('a second SIGINT exits at once (130), and even a step that ignores SIGTERM does not outlive spot-run', async () => {
    const ns = 'e2e-double-sigint';
    const pids = join(scratch, `${ns}-pids`);
    const watch = outputWatch('[Building Image] started');
    let child: ChildProcess | undefined;
    let signalled = false;
    const result = await runBuild(ns, [['Building Image', `trap '' TERM; sleep 30 & echo "$$ $!" > '${pids}'; echo started; wait`]], {
      onSpawn: (c) => (child = c),
      onOutput: (text, stream) => {
        watch.onOutput(text, stream);
        void watch.seen.then(() => {
          if (signalled) return;
          signalled = true;
          child!.kill('SIGINT');
          // The second one once the first has been taken in (spot-run logs it).
          void outputWatchOn(child!, 'SIGINT received').then(() => child!.kill('SIGINT'));
        });
      },
    });
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /second SIGINT: exiting now/);
    const [pgid, grandchild] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    assert.deepEqual(await liveGroupMembersAfter(pgid!), [], `the step's process group ${pgid} outlived spot-run`);
    assert.equal(isLive(grandchild!), false);
  });
});

/** Resolves when `marker` appears on the child's stderr from now on (or has appeared in what is still buffered). */
function outputWatchOn(child: ChildProcess, marker: string): Promise<void> {
  return new Promise((resolve) => {
    let buffer = '';
    const listener = (chunk: Buffer | string) => {
      buffer += chunk.toString();
      if (buffer.includes(marker)) {
        child.stderr?.off('data', listener);
        resolve();
      }
    };
    child.stderr?.on('data', listener);
  });
}

