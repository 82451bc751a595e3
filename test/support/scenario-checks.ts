/**
 * What the scenarios share to drive and check a run: the request log as a trace, the retry policy
 * read back from it, the stored Build and its events field by field, spot-run's stderr, scripted
 * faults, and the quick steps most runs use.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import type { ApiServer, FaultAction, RequestLogEntry } from '../../scripts/apiserver/server.js';
import type { Build, BuildPhase, BuildStatus, ConditionStatus } from '../../lib/types.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { operatorBuild, type CliRun, type Run, type TestServer } from './scenario-harness.js';
const BUILD_PATH = /^\/apis\/spot\.release\.com\/v1alpha1\/namespaces\/[^/]+\/builds\/[^/]+$/;

/** `METHOD kind status`, kind being build, status or events: a request log that reads like a trace. */
export function trace(entries: readonly RequestLogEntry[]): string[] {
  return entries.map((e) => {
    const kind = BUILD_PATH.test(e.path) ? 'build' : e.path.endsWith('/status') ? 'status' : e.path.includes('/events') ? 'events' : e.path;
    return `${e.method} ${kind} ${e.status}`;
  });
}

/** The requests of a clean run of `steps` steps: 1 GET, steps+1 status writes, 2 events. */
export function cleanTrace(steps: number): string[] {
  return [
    'GET build 200',
    'PATCH status 200',
    'POST events 201',
    ...Array.from({ length: steps }, () => 'PATCH status 200'),
    'POST events 201',
  ];
}

/** A failed attempt that a retry may follow. */
export function retryableStatus(status: number): boolean {
  return status === 0 || status === 429 || status >= 500;
}

/** One logical request: its attempts in the log (consecutive, same method and path, each after a retryable failure or one 401). */
export interface LoggedCall {
  method: string;
  path: string;
  attempts: RequestLogEntry[];
}

export function loggedCalls(entries: readonly RequestLogEntry[]): LoggedCall[] {
  const calls: LoggedCall[] = [];
  for (const entry of entries) {
    const last = calls.at(-1);
    const previous = last?.attempts.at(-1);
    const reauth = previous?.status === 401 && !last!.attempts.slice(0, -1).some((a) => a.status === 401);
    if (last && previous && last.method === entry.method && last.path === entry.path && (retryableStatus(previous.status) || reauth)) {
      last.attempts.push(entry);
    } else {
      calls.push({ method: entry.method, path: entry.path, attempts: [entry] });
    }
  }
  return calls;
}

/**
 * Checks the log against the retry policy: no logical request made more than 1 + maxRetries
 * attempts (plus one re-authentication), each retry followed a failure the policy retries, and no
 * call ran past the deadline. Every request spot-run makes is safe to repeat (GET, status writes
 * with a resourceVersion precondition, events under a fixed name), so resets and 5xx count too.
 * Returns the most retries one call needed.
 */
export function checkRetryPolicy(server: TestServer, entries: readonly RequestLogEntry[], options: { maxRetries: number; deadlineMs: number }): number {
  let most = 0;
  for (const call of loggedCalls(entries)) {
    const reauths = call.attempts.filter((a) => a.status === 401).length;
    const retries = call.attempts.length - 1 - (reauths > 0 && call.attempts.length > 1 ? 1 : 0);
    assert.ok(retries <= options.maxRetries, `${call.method} ${call.path} was retried ${retries} times (policy: ${options.maxRetries})`);
    const span = server.at(call.attempts.at(-1)!) - server.at(call.attempts[0]!);
    assert.ok(span <= options.deadlineMs + 500, `${call.method} ${call.path} kept retrying for ${span} ms (deadline ${options.deadlineMs} ms)`);
    most = Math.max(most, retries);
  }
  return most;
}

/** The attempts that the server answered normally (no injected fault). */
export function unfaulted(entries: readonly RequestLogEntry[]): RequestLogEntry[] {
  return entries.filter((e) => e.fault === undefined);
}

export type ExpectedCondition = [type: string, status: ConditionStatus, reason?: string, message?: RegExp];

export interface ExpectedBuild {
  phase: BuildPhase;
  conditions: ExpectedCondition[];
  image?: BuildStatus['image'];
  /** Default: the operator's pod reference of `operatorBuild`. */
  pod?: BuildStatus['pod'];
  /** Other status fields expected verbatim (the operator's own). */
  extra?: Record<string, unknown>;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

/** The stored Build, field by field: conditions (type, status, reason, message), phase, image, pod, spec, nothing else. */
export function expectBuild(build: Build | undefined, want: ExpectedBuild, name = 'b1', namespace = 'default'): void {
  assert.ok(build, `Build ${namespace}/${name} is gone`);
  const status = build.status ?? {};
  assert.deepEqual(
    (status.conditions ?? []).map((c) => [c.type, c.status, c.reason]),
    want.conditions.map(([type, s, reason]) => [type, s, reason]),
    'conditions (type, status, reason)',
  );
  for (const [i, [type, , , message]] of want.conditions.entries()) {
    const got = status.conditions![i]!;
    assert.match(got.lastTransitionTime ?? '', RFC3339, `condition ${type}: lastTransitionTime`);
    if (message) assert.match(got.message ?? '', message, `condition ${type}: message`);
    else assert.equal(got.message, undefined, `condition ${type}: no message expected, got ${JSON.stringify(got.message)}`);
  }
  assert.equal(status.phase, want.phase, 'status.phase');
  assert.deepEqual(status.image, want.image, 'status.image');
  assert.deepEqual(status.pod, 'pod' in want ? want.pod : { namespace, name: `${name}-pod` }, 'status.pod (the operator\'s)');
  const { phase: _p, conditions: _c, image: _i, pod: _pod, ...rest } = status;
  assert.deepEqual(rest, want.extra ?? {}, 'other status fields');
  assert.deepEqual(build.spec, operatorBuild(name, namespace).spec, 'spec (the operator\'s)');
}

export type ExpectedEvent = [type: 'Normal' | 'Warning', reason: string, message?: RegExp];

/** The events about one Build, oldest first: type, reason, message; each recorded once (count 1). */
export function expectEvents(server: TestServer, want: ExpectedEvent[], name = 'b1', namespace = 'default'): void {
  const events = server.api
    .events(namespace)
    .filter((e) => e.involvedObject?.name === name)
    .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
  assert.deepEqual(
    events.map((e) => [e.type, e.reason, e.count]),
    want.map(([type, reason]) => [type, reason, 1]),
    'events (type, reason, count)',
  );
  for (const [i, [, reason, message]] of want.entries()) {
    if (message) assert.match(events[i]!.message ?? '', message, `event ${reason}: message`);
    assert.ok(Buffer.byteLength(events[i]!.message ?? '') <= 1024, `event ${reason}: message over 1 KiB`);
  }
}

/** Lines of a text-format stderr that are not INFO or DEBUG log lines. */
export function problemLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|DEBUG) /.test(l));
}

/** One line of a step's output as spot-run shows it: `[TYPE] line` in text logs, `{"msg", "step"}` in JSON ones. */
function stepLine(line: string): { step: string; text: string } | undefined {
  const prefixed = /^\[([^\]]+)\] (.*)$/.exec(line);
  if (prefixed) return { step: prefixed[1]!, text: prefixed[2]! };
  if (!line.startsWith('{')) return undefined;
  try {
    const entry = JSON.parse(line) as { step?: unknown; msg?: unknown };
    return typeof entry.step === 'string' && typeof entry.msg === 'string' ? { step: entry.step, text: entry.msg } : undefined;
  } catch {
    return undefined;
  }
}

/** Watches the child's output for a line of step `step` that matches `marker`; `line` gives that line's text. */
export function waitForStepLine(step: string, marker: RegExp): { onOutput: (text: string) => void; line: Promise<string> } {
  let buffer = '';
  let resolve!: (line: string) => void;
  const line = new Promise<string>((r) => (resolve = r));
  let done = false;
  return {
    line,
    onOutput(text) {
      if (done) return;
      const lines = (buffer + text).split('\n');
      buffer = lines.pop()!.slice(-8192);
      for (const l of lines) {
        const parsed = stepLine(l);
        if (parsed && parsed.step === step && marker.test(parsed.text)) {
          done = true;
          resolve(parsed.text);
          return;
        }
      }
    },
  };
}

/** `line`, or a failure if the child exits first (so a missing marker fails the run instead of hanging it). */
export async function lineBeforeExit(line: Promise<string>, run: Promise<CliRun>, what: string): Promise<string> {
  const exited = run.then(
    (res) => {
      throw new Error(`spot-run exited (${res.code ?? res.signal}) before ${what}\nstdout:\n${res.stdout.slice(-2000)}\nstderr:\n${res.stderr.slice(-2000)}`);
    },
    (err: unknown) => {
      throw err;
    },
  );
  exited.catch(() => {}); // once the line won, the exit is the run's business
  return Promise.race([line, exited]);
}

/**
 * Sends `signal` to the child once `ready` resolves, and the same signal again once `second` does.
 * Give `onSpawn` to `Run.cli`; once the run is over, `afterSignalMs()` is the time from the first
 * signal to the end (failing if the child ended before the signal went).
 */
export function signalWhen(
  signal: NodeJS.Signals,
  ready: () => Promise<unknown>,
  second?: () => Promise<unknown>,
): { onSpawn: (child: ChildProcess) => void; afterSignalMs: () => number } {
  let sentAt: number | undefined;
  return {
    onSpawn(child) {
      void ready().then(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        sentAt = Date.now();
        child.kill(signal);
        if (!second) return;
        await second();
        child.kill(signal);
      });
    },
    afterSignalMs() {
      assert.ok(sentAt !== undefined, `spot-run ended before the ${signal} was sent`);
      return Date.now() - sentAt;
    },
  };
}

/**
 * Scripted faults: `decide` sees every request that matches `path` (with `n`, its number among
 * them, and `nth`, its number among those of its method) and names the action for it, if any.
 */
export function scriptFaults(
  server: TestServer,
  path: RegExp,
  actions: Record<string, FaultAction>,
  decide: (request: { method: string; path: string; n: number; nth: number }) => string | undefined,
): void {
  const names = Object.keys(actions);
  let chosen: string | undefined;
  const perMethod = new Map<string, number>();
  names.forEach((name, i) => {
    server.api.inject({
      ...actions[name]!,
      path,
      times: Infinity,
      when: (request) => {
        if (i === 0) {
          const nth = (perMethod.get(request.method) ?? 0) + 1;
          perMethod.set(request.method, nth);
          chosen = decide({ ...request, nth });
        }
        return chosen === name;
      },
    } as Parameters<ApiServer['inject']>[0]);
  });
}

/** Steps that finish at once, named like a real build's. */
export const STEP_TYPES = ['Fetching Source', 'Building Image', 'Pushing Image', 'Signing Image'];

/** `--step` flags for `count` quick steps; the last writes `lastImage` to the results folder. */
export function quickSteps(count: number, lastImage?: string): string[] {
  return STEP_TYPES.slice(0, count).flatMap((type, i) => [
    '--step',
    i === count - 1 && lastImage ? `${type}=echo ${lastImage} > "$SPOT_RESULTS_DIR/image-url"` : `${type}=true`,
  ]);
}

export const IMAGE = 'registry.example.com/team/app:1.4.2@sha256:9b2f0c4e';

/** The conditions of `count` quick steps that all succeeded. */
export function successConditions(count: number): ExpectedCondition[] {
  return STEP_TYPES.slice(0, count).map((t): ExpectedCondition => [t, 'Success', 'Succeeded']);
}

export const STARTED_COMPLETED: ExpectedEvent[] = [
  ['Normal', 'Started', /^Build started: /],
  ['Normal', 'Completed', /^Build completed: /],
];

/** A step that says it is ready, then waits until the test creates `$SPOT_TEST_GO`. */
function waitingStep(type: string, then = ''): string {
  return `${type}=echo ready; while [ ! -e "$SPOT_TEST_GO" ]; do sleep 0.05; done; ${then}`;
}

/**
 * spot-run with three steps, the middle one (`Building Image`) held: resolves once that step said
 * it is ready (so the test can break something mid-step), with `release()`, which lets the step
 * end (after running `then`), and `done`, the run's result.
 */
export async function runWithHeldStep(
  r: Run,
  server: TestServer,
  flags: string[],
  steps: { then?: string; last?: string } = {},
): Promise<{ release(): Promise<void>; done: Promise<CliRun> }> {
  const go = join(await r.tempDir(), 'go');
  const ready = waitForStepLine('Building Image', /^ready$/);
  const done = r.cli(
    server,
    [...flags, '--step', 'Fetching Source=true', '--step', waitingStep('Building Image', steps.then), '--step', `Pushing Image=${steps.last ?? 'true'}`],
    { env: { SPOT_TEST_GO: go }, onOutput: ready.onOutput },
  );
  await lineBeforeExit(ready.line, done, 'the step said it was ready');
  return { release: () => writeFile(go, ''), done };
}

/** The Build after `steps` quick steps all succeeded, the last reporting IMAGE, with its two Normal events. */
export function expectDone(server: TestServer, steps = 3): void {
  expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(steps), image: { url: IMAGE } });
  expectEvents(server, STARTED_COMPLETED);
}

/** One quick step, for runs about something else. */
export const STEP = ['--step', 'Building Image=true'];

export const MiB = 1024 * 1024;
