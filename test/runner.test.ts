/**
 * The runner in-process against the local API server (real HTTPS, real merge patches, stored
 * state): the request-count promise of the README, interruption, signal handling, and what
 * happens when events or the Build itself cannot be written.
 */
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { createClient, type SpotClient } from '../lib/client.js';
import { isNotFound } from '../lib/errors.js';
import { buildRef } from '../lib/names.js';
import { handleStopSignals, runTasks, type Task } from '../lib/runner.js';
import type { BuildRef } from '../lib/types.js';
import { BUILD_POD_RULES, startApiServer, type ApiServer } from '../scripts/apiserver/server.js';

let server: ApiServer;
let client: SpotClient;

before(async () => {
  server = await startApiServer();
  client = await createClient({
    env: { ...server.env() },
    retry: { baseDelayMs: 1, maxDelayMs: 5, maxRetryAfterMs: 20 },
    events: { instance: 'runner-test-pod' },
  });
});
after(async () => {
  await client?.close();
  await server?.stop();
});

/** A fresh Build in its own namespace, so each test reads only its own requests and events. */
function newBuild(namespace: string, name = 'b1'): BuildRef {
  server.createBuild({ namespace, name, spec: { image: { name: 'team/app', tag: '1.0.0' } } });
  return buildRef(namespace, name);
}

/** `METHOD kind` for each request about `ref` (its Build and its namespace's events). */
function requestsOf(ref: BuildRef): string[] {
  const build = `/apis/spot.release.com/v1alpha1/namespaces/${ref.namespace}/builds/${ref.name}`;
  const events = `/api/v1/namespaces/${ref.namespace}/events`;
  return server.requests
    .filter((r) => r.path === build || r.path === `${build}/status` || r.path.startsWith(events))
    .map((r) => `${r.method} ${r.path === build ? 'build' : r.path.endsWith('/status') ? 'status' : 'events'} ${r.status}`);
}

const noop = (type: string): Task => ({ type, run: async () => {} });

/** A task that resolves its `started` promise, then waits for its signal and rejects with its reason. */
function blockingTask(type: string): Task & { started: Promise<void> } {
  let resolveStarted!: () => void;
  const started = new Promise<void>((resolve) => (resolveStarted = resolve));
  return {
    type,
    started,
    run: ({ signal }) =>
      new Promise((_, reject) => {
        resolveStarted();
        signal.addEventListener('abort', () => reject(new Error(`stopped: ${String(signal.reason)}`)), { once: true });
      }),
  };
}

describe('request count', () => {
  for (let n = 1; n <= 5; n++) {
    test(`${n} task${n === 1 ? '' : 's'}: 1 GET + ${n + 1} status writes + 2 events, nothing else`, async () => {
      const ref = newBuild(`count-${n}`);
      const types = Array.from({ length: n }, (_, i) => `Step ${i + 1}`);
      const outcome = await runTasks(client, ref, types.map(noop));
      assert.equal(outcome.outcome, 'done');
      const expected = ['GET build 200', 'PATCH status 200', 'POST events 201', ...Array(n).fill('PATCH status 200'), 'POST events 201'];
      const got = requestsOf(ref);
      assert.deepEqual(got, expected);
      assert.equal(got.filter((r) => r.startsWith('GET')).length, 1);
      assert.equal(got.filter((r) => r.startsWith('PATCH')).length, n + 1);
      // What was stored: every condition Success, phase Done.
      const stored = server.getBuild(ref.namespace, ref.name)!;
      assert.equal(stored.status?.phase, 'Done');
      assert.deepEqual(
        stored.status?.conditions?.map((c) => [c.type, c.status, c.reason]),
        types.map((t) => [t, 'Success', 'Succeeded']),
      );
      assert.deepEqual(
        server.events(ref.namespace).map((e) => [e.type, e.reason]),
        [
          ['Normal', 'Started'],
          ['Normal', 'Completed'],
        ],
      );
      if (n === 4) process.stdout.write(`# measured: a 4-task run sent ${got.length} requests: ${got.join(', ')}\n`);
    });
  }

  test('no tasks: one GET, nothing written', async () => {
    const ref = newBuild('count-0');
    const outcome = await runTasks(client, ref, []);
    assert.equal(outcome.outcome, 'done');
    assert.deepEqual(requestsOf(ref), ['GET build 200']);
    assert.equal(server.getBuild(ref.namespace, ref.name)!.status, undefined);
  });

  test('tasks without a type, or with a duplicate one, are refused before any request', async () => {
    const ref = newBuild('count-dup');
    await assert.rejects(runTasks(client, ref, [noop('A'), noop('B'), noop('A')]), { name: 'TypeError', message: /duplicate condition type "A"/ });
    await assert.rejects(runTasks(client, ref, [noop('')]), { name: 'TypeError', message: /every task needs a condition type/ });
    assert.deepEqual(requestsOf(ref), []);
  });
});

describe('interruption', { timeout: 15_000 }, () => {
  test('aborted with reason SIGINT during task 2: Error/Terminated, phase Errored, Warning event, exit code 130, task 3 never starts', async () => {
    const ref = newBuild('interrupt-int');
    const controller = new AbortController();
    const second = blockingTask('Building Image');
    let thirdRan = false;
    const run = runTasks(
      client,
      ref,
      [noop('Fetching Source'), second, { type: 'Pushing Image', run: async () => void (thirdRan = true) }],
      { signal: controller.signal },
    );
    await second.started;
    controller.abort('SIGINT');
    const outcome = await run;
    assert.equal(outcome.outcome, 'interrupted');
    assert.equal(outcome.exitCode, 130);
    assert.ok(outcome.outcome === 'interrupted' && outcome.signal === 'SIGINT' && outcome.type === 'Building Image');
    assert.equal(thirdRan, false);
    const stored = server.getBuild(ref.namespace, ref.name)!;
    assert.equal(stored.status?.phase, 'Errored');
    const [fetching, building, pushing] = stored.status!.conditions!;
    assert.equal(fetching!.status, 'Success');
    assert.equal(building!.status, 'Error');
    assert.equal(building!.reason, 'Terminated');
    assert.match(building!.message!, /^Building Image was interrupted by SIGINT after \d+\.\ds$/);
    assert.equal(pushing!.status, '', 'never started: still initialized');
    assert.deepEqual(
      server.events(ref.namespace).map((e) => [e.type, e.reason, e.message]),
      [
        ['Normal', 'Started', 'Build started: 3 tasks (Fetching Source, Building Image, Pushing Image)'],
        ['Warning', 'Terminated', building!.message],
      ],
    );
  });

  test('aborted with any other reason counts as SIGTERM: exit code 143', async () => {
    const ref = newBuild('interrupt-other');
    const controller = new AbortController();
    const task = blockingTask('Building Image');
    const run = runTasks(client, ref, [task], { signal: controller.signal });
    await task.started;
    controller.abort();
    const outcome = await run;
    assert.equal(outcome.exitCode, 143);
  });

  test('a task that ignores its signal and finishes anyway still counts as interrupted', async () => {
    const ref = newBuild('interrupt-ignored');
    const controller = new AbortController();
    const outcome = await runTasks(
      client,
      ref,
      [
        {
          type: 'Building Image',
          run: async () => {
            controller.abort('SIGTERM');
            await new Promise((r) => setTimeout(r, 5));
            return { status: { image: { url: 'registry.example.com/too-late:1' } } };
          },
        },
        noop('Pushing Image'),
      ],
      { signal: controller.signal },
    );
    assert.equal(outcome.outcome, 'interrupted');
    const stored = server.getBuild(ref.namespace, ref.name)!;
    assert.equal(stored.status?.image, undefined, 'a result that arrived after the stop is not trusted');
    assert.deepEqual(
      stored.status?.conditions?.map((c) => [c.status, c.reason]),
      [
        ['Error', 'Terminated'],
        ['', undefined],
      ],
    );
  });

  test('already aborted: nothing has started, so nothing is sent and nothing reported', async () => {
    const ref = newBuild('interrupt-early');
    let ran = false;
    const outcome = await runTasks(client, ref, [{ type: 'A', run: async () => void (ran = true) }], { signal: AbortSignal.abort('SIGTERM') });
    assert.equal(ran, false);
    assert.equal(outcome.exitCode, 143);
    assert.ok(outcome.outcome === 'interrupted' && outcome.type === undefined && !outcome.reported && outcome.build === undefined, JSON.stringify(outcome));
    assert.deepEqual(requestsOf(ref), []);
    assert.equal(server.getBuild(ref.namespace, ref.name)!.status, undefined);
  });
});

describe('signal handling (handleSignals / handleStopSignals)', { timeout: 15_000 }, () => {
  test('a real SIGTERM during a task: interrupted, 143, handlers removed afterwards, exit never forced', async () => {
    const ref = newBuild('signal-term');
    const listeners = process.listenerCount('SIGTERM');
    const intListeners = process.listenerCount('SIGINT');
    const task = blockingTask('Building Image');
    const exits: number[] = [];
    const run = runTasks(client, ref, [task], { handleSignals: true, graceMs: 5_000, exit: (code) => void exits.push(code) });
    await task.started;
    assert.equal(process.listenerCount('SIGTERM'), listeners + 1);
    process.kill(process.pid, 'SIGTERM');
    const outcome = await run;
    assert.equal(outcome.exitCode, 143);
    assert.equal(process.listenerCount('SIGTERM'), listeners, 'handler removed');
    assert.equal(process.listenerCount('SIGINT'), intListeners);
    assert.deepEqual(exits, [], 'the run wound up in time: no forced exit (and the grace timer is cleared)');
    assert.equal(server.getBuild(ref.namespace, ref.name)!.status?.conditions?.[0]?.reason, 'Terminated');
  });

  test('the grace period runs out: exit is forced with 143', async () => {
    const controller = new AbortController();
    const exits: number[] = [];
    let exited!: () => void;
    const forced = new Promise<void>((resolve) => (exited = resolve));
    const dispose = handleStopSignals(controller, {
      graceMs: 50,
      exit: (code) => {
        exits.push(code);
        exited();
      },
    });
    try {
      const started = Date.now();
      process.kill(process.pid, 'SIGTERM');
      await once(controller.signal, 'abort');
      assert.equal(controller.signal.reason, 'SIGTERM');
      await forced;
      assert.deepEqual(exits, [143]);
      assert.ok(Date.now() - started >= 45, 'not before the grace period');
    } finally {
      dispose();
    }
  });

  test('a second signal exits at once with its own code', async () => {
    const controller = new AbortController();
    const exits: number[] = [];
    let exited!: () => void;
    const forced = new Promise<void>((resolve) => (exited = resolve));
    const dispose = handleStopSignals(controller, {
      graceMs: 60_000,
      exit: (code) => {
        exits.push(code);
        exited();
      },
    });
    try {
      process.kill(process.pid, 'SIGTERM');
      await once(controller.signal, 'abort');
      process.kill(process.pid, 'SIGINT');
      await forced;
      assert.deepEqual(exits, [130]);
    } finally {
      dispose();
    }
  });
});

describe('when the API server does not take everything', () => {
  test('events refused (403): the run and its outcome are unchanged', async () => {
    const ref = newBuild('no-events');
    const token = server.token;
    server.setPermissions(token, [
      { verbs: ['get'], resources: ['builds'] },
      { verbs: ['get', 'update', 'patch'], resources: ['builds/status'] },
    ]);
    try {
      const outcome = await runTasks(client, ref, [noop('A'), noop('B')]);
      assert.equal(outcome.outcome, 'done');
      assert.deepEqual(requestsOf(ref), [
        'GET build 200',
        'PATCH status 200',
        'POST events 403',
        'PATCH status 200',
        'PATCH status 200',
        'POST events 403',
      ]);
      assert.equal(server.getBuild(ref.namespace, ref.name)!.status?.phase, 'Done');
    } finally {
      server.setPermissions(token, BUILD_POD_RULES);
    }
  });

  test('the Build does not exist: runTasks rejects with NotFound and runs nothing', async () => {
    const ref = buildRef('missing', 'nope');
    let ran = false;
    await assert.rejects(
      runTasks(client, ref, [{ type: 'A', run: async () => void (ran = true) }]),
      (err: unknown) => isNotFound(err),
    );
    assert.equal(ran, false);
  });

  test('a task that throws a non-Error: its text becomes the message', async () => {
    const ref = newBuild('throws-string');
    const outcome = await runTasks(client, ref, [
      {
        type: 'A',
        run: async () => {
          throw 'plain string';
        },
      },
    ]);
    assert.equal(outcome.outcome, 'failed');
    const condition = server.getBuild(ref.namespace, ref.name)!.status!.conditions![0]!;
    assert.equal(condition.reason, 'Failed');
    assert.match(condition.message!, /^A failed after \d+\.\ds: plain string$/);
    assert.deepEqual(
      server.events(ref.namespace).map((e) => e.reason),
      ['Started', 'TaskFailed'],
      'reason Failed is reported as TaskFailed in the event',
    );
  });
});
