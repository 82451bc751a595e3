/**
 * Faults in the request path, as spot-run and the library meet them: conflicts with a concurrent
 * writer, throttling and server errors, resets and hangs, writes without a precondition, token
 * rotation, the Build replaced under the run, request bodies over our cap and over the server's.
 * Each run checks the stored Build, the events, the exit code and the request log (and,
 * centrally, that no token leaked). Run by reliability-faults.test.ts and `npm run reliability`.
 */
import { strict as assert } from 'node:assert';
import type { SpotClient } from '../lib/client.js';
import { isSpotError, RequestTooLargeError } from '../lib/errors.js';
import { buildRef } from '../lib/names.js';
import { runTasks, type Task } from '../lib/runner.js';
import { DEFAULT_MAX_REQUEST_BYTES } from '../lib/transport.js';
import type { Build } from '../lib/types.js';
import type { ApiServer, FaultAction, RequestLogEntry } from '../scripts/apiserver/server.js';
import {
  checkRetryPolicy,
  cleanTrace,
  expectBuild,
  expectDone,
  expectEvents,
  IMAGE,
  loggedCalls,
  problemLines,
  quickSteps,
  retryableStatus,
  runWithHeldStep,
  scriptFaults,
  STARTED_COMPLETED,
  STEP_TYPES,
  successConditions,
  trace,
  unfaulted,
} from './support/scenario-checks.js';
import { CLI_MAX_RETRIES, FAST_POLICY, mulberry32, operatorBuild, type Scenario, type TestServer } from './support/scenario-harness.js';

function statusPathOf(namespace: string, name = 'b1'): string {
  return `/apis/spot.release.com/v1alpha1/namespaces/${namespace}/builds/${name}/status`;
}

/** Requests of one namespace (builds and events). */
function inNamespace(server: TestServer, namespace: string): RequestLogEntry[] {
  return server.api.requests.filter((e) => e.path.includes(`/namespaces/${namespace}/`));
}

/** In-process tasks: quick, the last one reports an image. */
function inProcessTasks(count: number): Task[] {
  return STEP_TYPES.slice(0, count).map((type, i) => ({
    type,
    run: async () => (i === count - 1 ? { status: { image: { url: IMAGE } } } : undefined),
  }));
}

const baseline: Scenario = {
  id: 'baseline',
  suite: 'reliability',
  title: 'no faults: 1 GET + N+1 writes + 2 events, through the bundle and through tsx',
  timeoutMs: 60_000,
  async run(ctx) {
    for (const tsx of [false, true]) {
      await ctx.run(tsx ? 'tsx entry' : 'bundle entry', async (r) => {
        const server = await r.server();
        const res = await r.cli(server, ['--log-level', 'debug', ...quickSteps(3, IMAGE)], { tsx });
        assert.equal(res.code, 0, res.stderr);
        expectDone(server);
        assert.deepEqual(trace(server.api.requests), cleanTrace(3));
      });
    }
  },
};

const conflictStorm: Scenario = {
  id: 'conflict-storm',
  suite: 'reliability',
  title: 'a concurrent writer changes the status before each of our writes (100 runs, 4 tasks, in-process)',
  timeoutMs: 120_000,
  async run(ctx) {
    const server = await ctx.sharedServer();
    await ctx.runMany(100, 10, (i) => `run ${i}`, async (r, i) => {
      r.attach(server);
      const namespace = `storm-${i}`;
      server.createBuild(operatorBuild('b1', namespace));
      const statusPath = statusPathOf(namespace);
      // What each side last wrote, checked by the writer before each of its writes and at the end.
      let writes = 0;
      let writerLost = 0;
      let oursLost = 0;
      const rank: Record<string, number> = { '': 0, 'In Progress': 1, Success: 2, Error: 2 };
      let seen = new Map<string, number>();
      server.api.inject({
        method: 'PATCH',
        path: statusPath,
        times: Infinity,
        // Every logical write of ours is two PATCHes: the first meets this write (409), the retry lands.
        when: ({ n }) => n % 2 === 1,
        concurrentWrite: (status) => {
          if (writes > 0 && status.pod?.name !== `builder-${writes}`) writerLost += 1;
          if (writes > 0 && !status.conditions?.some((c) => c.type === 'Pod Scheduled' && c.status === 'Success')) writerLost += 1;
          const now = new Map((status.conditions ?? []).map((c) => [c.type, rank[c.status] ?? 0]));
          for (const [type, r0] of seen) if ((now.get(type) ?? -1) < r0) oursLost += 1;
          seen = now;
          writes += 1;
          status.pod = { namespace, name: `builder-${writes}` };
          if (!status.conditions?.some((c) => c.type === 'Pod Scheduled')) {
            (status.conditions ??= []).push({ type: 'Pod Scheduled', status: 'Success', reason: 'Scheduled', lastTransitionTime: '2026-01-01T00:00:00Z' });
          }
        },
      });
      const client = await r.client(server);
      const outcome = await runTasks(client, buildRef(namespace, 'b1'), inProcessTasks(4));
      assert.equal(outcome.exitCode, 0);
      const stored = server.api.getBuild(namespace, 'b1');
      const final = stored?.status ?? {};
      if (final.pod?.name !== `builder-${writes}`) writerLost += 1;
      if (!final.conditions?.some((c) => c.type === 'Pod Scheduled' && c.status === 'Success')) writerLost += 1;
      const mine = (final.conditions ?? []).filter((c) => STEP_TYPES.includes(c.type));
      oursLost += 4 - mine.filter((c) => c.status === 'Success' && c.reason === 'Succeeded').length;
      if (final.image?.url !== IMAGE) oursLost += 1;
      const lost = writerLost + oursLost;
      assert.equal(lost, 0, `lost updates: ours ${oursLost}, the writer's ${writerLost}`);
      assert.equal(writes, 5, 'the writer wrote before each of our 5 writes');
      expectBuild(
        stored,
        {
          phase: 'Done',
          conditions: [['Pod Scheduled', 'Success', 'Scheduled'], ...successConditions(4)],
          image: { url: IMAGE },
          pod: { namespace, name: 'builder-5' },
        },
        'b1',
        namespace,
      );
      expectEvents(server, STARTED_COMPLETED, 'b1', namespace);
      // Each of the 5 writes: PATCH 409, GET, PATCH 200.
      const conflicted = ['PATCH status 409', 'GET build 200', 'PATCH status 200'];
      assert.deepEqual(trace(inNamespace(server, namespace)), [
        'GET build 200',
        ...conflicted,
        'POST events 201',
        ...conflicted,
        ...conflicted,
        ...conflicted,
        ...conflicted,
        'POST events 201',
      ]);
      return { updatesLost: lost, retries: checkRetryPolicy(server, inNamespace(server, namespace), { maxRetries: 0, deadlineMs: FAST_POLICY.deadlineMs }) };
    });
  },
};

/** Retryable faults: the answer forms of kube-apiserver's throttling and server errors. */
const THROTTLE_FAULTS: Record<string, FaultAction> = {
  '429-text': { status: 429, form: 'text', retryAfterSeconds: 1 },
  '429-json-retry-after': { status: 429, form: 'json', retryAfterSeconds: 1 },
  '429-json': { status: 429, form: 'json' },
  '500': { status: 500 },
  '503-retry-after': { status: 503, retryAfterSeconds: 1 },
  '503': { status: 503 },
};
const THROTTLE_KINDS = Object.keys(THROTTLE_FAULTS);

/** A random third of the requests get one of the faults above. */
function randomThrottling(server: TestServer, path: RegExp, random: () => number): void {
  scriptFaults(server, path, THROTTLE_FAULTS, () => (random() < 1 / 3 ? THROTTLE_KINDS[Math.floor(random() * THROTTLE_KINDS.length)] : undefined));
}

const throttleInProcess: Scenario = {
  id: 'throttle-5xx-inprocess',
  suite: 'reliability',
  title: '429 (text, JSON, with and without Retry-After), 500, 503 on a random third of requests (6 seeds x 5 runs, in-process)',
  timeoutMs: 120_000,
  async run(ctx) {
    const server = await ctx.sharedServer();
    const seeds = [11, 23, 37, 41, 53, 67];
    await ctx.runMany(seeds.length * 5, 6, (i) => `seed ${seeds[Math.floor(i / 5)]} run ${i % 5}`, async (r, i) => {
      r.attach(server);
      const seed = seeds[Math.floor(i / 5)]! * 1000 + (i % 5);
      const namespace = `throttle-${i}`;
      server.createBuild(operatorBuild('b1', namespace));
      randomThrottling(server, new RegExp(`/namespaces/${namespace}/`), mulberry32(seed));
      const client = await r.client(server, { random: mulberry32(seed + 1) });
      const started = Date.now();
      const outcome = await runTasks(client, buildRef(namespace, 'b1'), inProcessTasks(4));
      const elapsed = Date.now() - started;
      assert.equal(outcome.exitCode, 0);
      expectBuild(server.api.getBuild(namespace, 'b1'), { phase: 'Done', conditions: successConditions(4), image: { url: IMAGE } }, 'b1', namespace);
      expectEvents(server, STARTED_COMPLETED, 'b1', namespace);
      const log = inNamespace(server, namespace);
      // Every injected fault cost exactly one more attempt, and nothing else did.
      assert.deepEqual(trace(unfaulted(log)), cleanTrace(4), 'the requests that got through are those of a clean run');
      assert.ok(log.every((e) => e.fault === undefined || retryableStatus(e.status)), 'only retryable faults were injected');
      const retries = checkRetryPolicy(server, log, { maxRetries: FAST_POLICY.maxRetries, deadlineMs: FAST_POLICY.deadlineMs });
      assert.ok(elapsed < 8 * FAST_POLICY.deadlineMs, `run took ${elapsed} ms (8 calls, each within the deadline)`);
      return { retries };
    });
  },
};

const retryLimits: Scenario = {
  id: 'retry-limits',
  suite: 'reliability',
  title: 'persistent faults: retries stop at the policy\'s limit and deadline; unconditional writes are retried only when the server asks',
  timeoutMs: 60_000,
  async run(ctx) {
    const ref = buildRef('default', 'b1');
    const BUILD = '/apis/spot.release.com/v1alpha1/namespaces/default/builds/b1';
    const cases: Array<{ label: string; fault: FaultAction; call: (c: SpotClient) => Promise<unknown>; attempts: number; status: number }> = [
      { label: '503 on every GET', fault: { status: 503 }, call: (c) => c.getBuild(ref), attempts: 1 + FAST_POLICY.maxRetries, status: 503 },
      {
        label: '429 on every unconditional PATCH (any method: the server did not process it)',
        fault: { status: 429, form: 'json', retryAfterSeconds: 1 },
        call: (c) => c.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }),
        attempts: 1 + FAST_POLICY.maxRetries,
        status: 429,
      },
      {
        label: '500 with Retry-After on every unconditional PATCH (the server asked)',
        fault: { status: 500, retryAfterSeconds: 1 },
        call: (c) => c.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }),
        attempts: 1 + FAST_POLICY.maxRetries,
        status: 500,
      },
      {
        label: '500 without Retry-After on an unconditional PATCH: not retried',
        fault: { status: 500 },
        call: (c) => c.patchBuildStatus(ref, { status: { phase: 'Running' } }, { type: 'merge' }),
        attempts: 1,
        status: 500,
      },
    ];
    for (const k of cases) {
      await ctx.run(k.label, async (r) => {
        const server = await r.server();
        server.api.inject({ ...k.fault, times: Infinity } as Parameters<ApiServer['inject']>[0]);
        const client = await r.client(server);
        const err = await k.call(client).then(
          () => assert.fail('expected the call to fail'),
          (e: unknown) => e,
        );
        r.collect('error', String(err));
        assert.ok(isSpotError(err) && (err as { statusCode?: number }).statusCode === k.status, `got ${String(err)}`);
        assert.equal(server.api.requests.length, k.attempts, 'attempts');
        assert.ok(server.api.requests.every((e) => e.path.startsWith(BUILD)));
        return { retries: k.attempts - 1 };
      });
    }
    await ctx.run('503 with Retry-After 1 s under a 2.5 s deadline: stops before the deadline', async (r) => {
      const server = await r.server();
      server.api.inject({ status: 503, retryAfterSeconds: 1, times: Infinity });
      const client = await r.client(server, { retry: { ...FAST_POLICY, maxRetryAfterMs: 30_000, deadlineMs: 2_500 } });
      const started = Date.now();
      const err = await client.getBuild(ref).then(
        () => assert.fail('expected the call to fail'),
        (e: unknown) => e,
      );
      const elapsed = Date.now() - started;
      r.collect('error', String(err));
      assert.ok(isSpotError(err) && (err as { statusCode?: number }).statusCode === 503, String(err));
      // 0 s, 1 s, 2 s; a fourth attempt at 3 s would be past the deadline, so it is not made (on a
      // loaded machine slow answers may leave room for only two).
      const attempts = server.api.requests.length;
      assert.ok(attempts === 3 || attempts === 2, `${attempts} attempts`);
      assert.ok(elapsed >= 950 * (attempts - 1) && elapsed < 2_500 + 250, `gave up after ${elapsed} ms (deadline 2.5 s)`);
      const log = server.api.requests;
      for (let i = 1; i < log.length; i++) {
        const gap = server.at(log[i]!) - server.at(log[i - 1]!);
        assert.ok(gap >= 950, `waited ${gap} ms between attempts, Retry-After asked for 1 s`);
      }
      return { retries: attempts - 1 };
    });
  },
};

const throttleCli: Scenario = {
  id: 'throttle-5xx-cli',
  suite: 'reliability',
  title: 'spot-run with 429/500/503 on a random third of requests, real Retry-After of 1 s (2 seeds)',
  timeoutMs: 90_000,
  async run(ctx) {
    // Seeds that inject 3-4 faults among them 429-text and a 5xx (see mulberry32); 7 requests otherwise.
    for (const seed of [7, 32]) {
      await ctx.run(`seed ${seed}`, async (r) => {
        const server = await r.server();
        randomThrottling(server, /./, mulberry32(seed));
        const res = await r.cli(server, ['--log-format', 'json', '--log-level', 'debug', '--api-deadline', '20', ...quickSteps(3, IMAGE)]);
        assert.equal(res.code, 0, res.stderr);
        expectDone(server);
        const log = server.api.requests;
        assert.ok(log.some((e) => e.fault), `seed ${seed} injected no fault`);
        assert.deepEqual(trace(unfaulted(log)), cleanTrace(3));
        // Retry-After is honoured: after a fault that carries it, the next attempt waits a second.
        for (const call of loggedCalls(log)) {
          call.attempts.slice(0, -1).forEach((a, i) => {
            const gap = server.at(call.attempts[i + 1]!) - server.at(a);
            // The log does not say which variant carried the header; the text form always does.
            if (a.fault === '429-text') assert.ok(gap >= 950, `429 with Retry-After: 1 was retried after ${gap} ms`);
          });
        }
        const retries = checkRetryPolicy(server, log, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 20_000 });
        // Each call kept within --api-deadline (checked above); the run within its calls' deadlines.
        assert.ok(res.ms < loggedCalls(log).length * 20_000, `took ${res.ms} ms`);
        return { retries };
      });
    }
  },
};

const resetsCli: Scenario = {
  id: 'resets-cli',
  suite: 'reliability',
  title: 'connection resets on a GET, on writes before the body, after the write is stored; an event POST whose answer is lost',
  timeoutMs: 60_000,
  async run(ctx) {
    await ctx.run('resets', async (r) => {
      const server = await r.server();
      scriptFaults(
        server,
        /./,
        { reset: { reset: true }, lost: { reset: 'after-write' } },
        ({ method, nth }) =>
          method === 'GET' && nth === 1 ? 'reset'
          : method === 'POST' && nth === 1 ? 'lost'
          : method === 'PATCH' && nth === 2 ? 'reset'
          : method === 'PATCH' && nth === 4 ? 'lost'
          : undefined,
      );
      const res = await r.cli(server, ['--log-level', 'debug', ...quickSteps(3, IMAGE)]);
      assert.equal(res.code, 0, res.stderr);
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
      // The lost POST answer did not make a second Started event.
      expectEvents(server, STARTED_COMPLETED);
      assert.deepEqual(trace(server.api.requests), [
        'GET build 0', // reset: retried
        'GET build 200',
        'PATCH status 200',
        'POST events 0', // stored, answer lost: retried under the same name
        'POST events 409', // AlreadyExists: it was created, done
        'PATCH status 0', // reset before the body: retried with the same resourceVersion
        'PATCH status 200',
        'PATCH status 0', // stored, answer lost: the retry meets the new resourceVersion
        'PATCH status 409',
        'GET build 200', // re-read: the change is already there, nothing left to write
        'PATCH status 200',
        'POST events 201',
      ]);
      return { retries: checkRetryPolicy(server, server.api.requests, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 60_000 }) };
    });
    await ctx.run('a hung write cut by --api-timeout 1', async (r) => {
      const server = await r.server();
      scriptFaults(server, /./, { hang: { hang: true } }, ({ method, nth }) => (method === 'PATCH' && nth === 2 ? 'hang' : undefined));
      const res = await r.cli(server, ['--api-timeout', '1', '--log-format', 'json', '--log-level', 'debug', ...quickSteps(3, IMAGE)]);
      assert.equal(res.code, 0, res.stderr);
      expectDone(server);
      const log = server.api.requests;
      assert.deepEqual(trace(log), [...cleanTrace(3).slice(0, 3), 'PATCH status 0', ...cleanTrace(3).slice(3)]);
      const hung = log[3]!;
      const gap = server.at(log[4]!) - server.at(hung);
      assert.ok(gap >= 950 && gap < 15_000, `the hung PATCH was given up after ${gap} ms (timeout 1 s)`);
      return { retries: checkRetryPolicy(server, log, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 60_000 }) };
    });
  },
};

const unconditionalWrites: Scenario = {
  id: 'unconditional-write',
  suite: 'reliability',
  title: 'a write without a precondition is never blindly repeated (reset, lost answer, hang); with one it is',
  timeoutMs: 30_000,
  async run(ctx) {
    const ref = buildRef('default', 'b1');
    const patch = { status: { image: { url: IMAGE } } };
    const cases: Array<{ label: string; fault: FaultAction; stored: boolean; code: string }> = [
      { label: 'reset before the body', fault: { reset: true }, stored: false, code: 'ERR_SPOT_NETWORK' },
      { label: 'stored, answer lost', fault: { reset: 'after-write' }, stored: true, code: 'ERR_SPOT_NETWORK' },
      { label: 'hung, cut by the timeout', fault: { hang: true }, stored: false, code: 'ERR_SPOT_TIMEOUT' },
    ];
    for (const k of cases) {
      await ctx.run(k.label, async (r) => {
        const server = await r.server();
        server.api.inject({ ...k.fault, method: 'PATCH' } as Parameters<ApiServer['inject']>[0]);
        const client = await r.client(server, 'hang' in k.fault ? { timeoutMs: 1_000 } : {});
        const err = await client.patchBuildStatus(ref, patch, { type: 'merge' }).then(
          () => assert.fail('an unconditional write must not be retried after its connection broke'),
          (e: unknown) => e,
        );
        r.collect('error', String(err));
        assert.equal((err as { code?: string }).code, k.code, String(err));
        assert.deepEqual(trace(server.api.requests), ['PATCH status 0'], 'exactly one request');
        assert.deepEqual(server.api.getBuild('default', 'b1')?.status?.image, k.stored ? patch.status.image : undefined);
        return { retries: 0 };
      });
    }
    await ctx.run('the same reset with a resourceVersion precondition is retried', async (r) => {
      const server = await r.server();
      server.api.inject({ reset: true, method: 'PATCH' });
      const client = await r.client(server);
      const rv = server.api.getBuild('default', 'b1')!.metadata.resourceVersion!;
      const build = await client.patchBuildStatus(ref, patch, { type: 'merge', resourceVersion: rv });
      assert.deepEqual(build.status?.image, patch.status.image);
      assert.deepEqual(trace(server.api.requests), ['PATCH status 0', 'PATCH status 200']);
      return { retries: 1 };
    });
  },
};

const tokenRotation: Scenario = {
  id: 'token-rotation',
  suite: 'reliability',
  title: 'the token file is replaced mid-run and the old token refused: one 401, one re-read, the run goes on',
  timeoutMs: 60_000,
  async run(ctx) {
    await ctx.run('rotation', async (r) => {
      const server = await r.server();
      const run = await runWithHeldStep(r, server, ['--log-format', 'json', '--log-level', 'debug'], { last: `echo ${IMAGE} > "$SPOT_RESULTS_DIR/image-url"` });
      const old = server.api.token;
      const fresh = await server.rotateToken();
      assert.notEqual(fresh, old);
      await run.release();
      const res = await run.done;
      assert.equal(res.code, 0, res.stderr);
      expectDone(server);
      const log = server.api.requests;
      const expected = cleanTrace(3);
      expected.splice(4, 0, 'PATCH status 401'); // the first request after the rotation
      assert.deepEqual(trace(log), expected);
      assert.equal(log[4]!.identity, undefined, 'the old token was refused');
      assert.ok(log.slice(5).every((e) => e.identity === log[0]!.identity), 'then the new token was accepted');
      return { retries: checkRetryPolicy(server, log, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 60_000 }) };
    });
  },
};

const buildReplaced: Scenario = {
  id: 'build-replaced',
  suite: 'reliability',
  title: 'the Build is deleted and created again between two writes: exit 3, one line, nothing written to the new Build, no update lost on the old',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('replaced before the second write', async (r) => {
      const server = await r.server();
      // What the re-creator puts on the new Build (the operator's pod of a new attempt): the run must leave it as it is.
      const theirs: Build['status'] = { pod: { namespace: 'default', name: 'b1-pod-2' } };
      let old: Build | undefined;
      // The second status write (step 1 Success, step 2 In Progress) meets a re-created Build.
      const fault = server.api.inject({
        method: 'PATCH',
        path: statusPathOf('default'),
        replaceBuild: true,
        status: theirs,
        when: ({ n }) => n === 2 && Boolean((old = server.api.getBuild('default', 'b1'))),
      });
      const res = await r.cli(server, ['--step', 'Fetching Source=true', '--step', 'Building Image=echo never-runs']);
      assert.equal(fault.hits, 1, 'the fault fired');
      assert.equal(res.code, 3, res.stderr);
      const lines = problemLines(res.stderr);
      assert.equal(lines.length, 1, `one line:\n${res.stderr}`);
      const line = /^spot-run: Build default\/b1 was replaced \(uid ([0-9a-f-]{36}) → ([0-9a-f-]{36})\); this run stops and writes nothing to the new Build$/.exec(lines[0]!);
      assert.ok(line, lines[0]);
      const [, oldUid, newUid] = line;
      const replaced = server.api.getBuild('default', 'b1')!;
      assert.deepEqual([old?.metadata.uid, replaced.metadata.uid], [oldUid, newUid], 'the line names the two uids');
      assert.ok(!res.stdout.includes('never-runs'), 'step 2 never ran');
      assert.deepEqual(trace(server.api.requests), ['GET build 200', 'PATCH status 200', 'POST events 201', 'PATCH status 409', 'GET build 200']);
      assert.ok(server.api.events('default').every((e) => e.involvedObject?.uid === oldUid), 'no event about the new Build');
      assert.deepEqual([res.termination?.outcome, res.termination?.exitCode, res.termination?.reported], ['error', 3, false]);
      // Lost: the old Build missing our write that was acknowledged before the replacement; the new
      // one not as its creator left it; any write acknowledged after the replacement (it went to the new one).
      let lost = 0;
      const oldConditions = (old?.status?.conditions ?? []).map((c) => [c.type, c.status]);
      if (JSON.stringify(oldConditions) !== JSON.stringify([['Fetching Source', 'In Progress'], ['Building Image', '']])) lost += 1;
      if (JSON.stringify(replaced.status) !== JSON.stringify(theirs)) lost += 1;
      lost += server.api.requests.slice(3).filter((e) => e.method !== 'GET' && e.status < 300).length;
      assert.equal(lost, 0, `updates lost: old ${JSON.stringify(old?.status)}, new ${JSON.stringify(replaced.status)}`);
      return { updatesLost: lost, retries: 0 };
    });
  },
};

const bodyOverCap: Scenario = {
  id: 'body-over-1mib',
  suite: 'reliability',
  title: 'a status write over 1 MiB is refused before it is sent (typed error naming the size and the path); the server\'s 413 is never reached',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('over the cap, then within it', async (r) => {
      const server = await r.server();
      // Set to refuse bodies over our cap with 413, as kube-apiserver does at 3 MiB.
      const fault = server.api.inject({ path: statusPathOf('default'), maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES, times: Infinity });
      const client = await r.client(server);
      const ref = buildRef('default', 'b1');
      const big = 'x'.repeat(DEFAULT_MAX_REQUEST_BYTES);
      const err = await client.updateBuildStatus(ref, (b) => void (b.status = { phase: 'Running', note: big } as Build['status'])).then(
        () => assert.fail('a body over 1 MiB was sent'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof RequestTooLargeError, String(err));
      r.collect('error', err.message);
      assert.match(err.message, /^request body of \d+ bytes is over the 1048576-byte limit, not sent \(PATCH \/apis\/spot\.release\.com\/v1alpha1\/namespaces\/default\/builds\/b1\/status\)$/);
      assert.ok(err.bytes > DEFAULT_MAX_REQUEST_BYTES && err.bytes < DEFAULT_MAX_REQUEST_BYTES + 200, `${err.bytes} bytes`);
      assert.deepEqual(trace(server.api.requests), ['GET build 200'], 'the GET went out, the write did not');
      // A body within the cap goes through.
      await client.updateBuildStatus(ref, (b) => void (b.status = { ...b.status, phase: 'Running' }));
      assert.equal(server.api.getBuild('default', 'b1')!.status?.phase, 'Running');
      assert.deepEqual(trace(server.api.requests), ['GET build 200', 'GET build 200', 'PATCH status 200']);
      assert.equal(fault.hits, 1, 'only the write within the cap reached the server');
      return { retries: 0 };
    });
  },
};

const server413: Scenario = {
  id: 'server-413',
  suite: 'reliability',
  title: 'the API server answers 413 to a write under our cap (its --max-request-bytes is lower): not retried, exit 3, one line, the refusal recorded in a write that fits',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('413 on the failure report', async (r) => {
      // 1 KiB: the progress writes (~260 bytes) fit, the report of a step that failed with a screenful of stderr (~2 KiB) does not.
      const server = await r.server();
      const fault = server.api.inject({ method: 'PATCH', path: statusPathOf('default'), maxRequestBytes: 1024, times: Infinity });
      const step = `Building Image=for i in $(seq 20); do printf '%0100d\\n' $i >&2; done; exit 1`;
      const res = await r.cli(server, ['--step', 'Fetching Source=true', '--step', step]);
      assert.equal(res.code, 3, res.stderr);
      // The step's failure is logged as it happens; the report's failure is the one line after it.
      const lines = problemLines(res.stderr).filter((l) => !l.startsWith('[Building Image] '));
      assert.equal(lines.length, 2, `the step's failure and one line:\n${res.stderr.slice(-3000)}`);
      assert.match(lines[0]!, / ERROR \[2\/2\] Building Image failed after /);
      assert.match(lines[1]!, /^spot-run: cannot report Build default\/b1 to the API server at \S+: 413 RequestEntityTooLarge: .*\(PATCH \/apis\/spot\.release\.com\/v1alpha1\/namespaces\/default\/builds\/b1\/status\)/);
      assert.doesNotMatch(res.stderr, /^\s+at /m, 'no stack trace');
      const log = server.api.requests;
      // Not retried: the fatal path re-reads and records the refusal itself, in a write that fits.
      assert.deepEqual(trace(log), [...cleanTrace(2).slice(0, 4), 'PATCH status 413', 'GET build 200', 'PATCH status 200', 'POST events 201']);
      assert.equal(fault.hits, 4, 'every status write went through the limit');
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [
          ['Fetching Source', 'Success', 'Succeeded'],
          ['Building Image', 'Error', 'Failed', /^413 RequestEntityTooLarge: Request entity too large: limit is 1024 \(PATCH \S+\/status\)$/],
        ],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'Failed', /^413 RequestEntityTooLarge: /]]);
      assert.deepEqual(
        [res.termination?.outcome, res.termination?.exitCode, res.termination?.task, res.termination?.reported],
        ['error', 3, 'Building Image', true],
        JSON.stringify(res.termination),
      );
      return { retries: checkRetryPolicy(server, log, { maxRetries: CLI_MAX_RETRIES, deadlineMs: 60_000 }) };
    });
  },
};

export const FAULT_SCENARIOS: readonly Scenario[] = [
  baseline,
  conflictStorm,
  throttleInProcess,
  retryLimits,
  throttleCli,
  resetsCli,
  unconditionalWrites,
  tokenRotation,
  buildReplaced,
  bodyOverCap,
  server413,
];
