/**
 * Reliability, bad-input and security scenarios for spot-runtime, shared by the tests
 * (test/reliability-*.test.ts, test/bad-input.test.ts, test/security.test.ts) and the summary
 * script (`npm run reliability`, scripts/reliability.ts).
 *
 * A scenario is a set of runs. Each run gets its own scope (`Run`): the local API servers it
 * starts, the `spot-run` children it spawns, the in-process clients it makes. When a run ends, the
 * scope checks centrally that no token it knows of (the initial one, every rotated one, any other
 * registered) appears in anything the run produced: the child's stdout and stderr (text and JSON
 * logs), in-process logs and error messages, and every condition and event message stored on the
 * servers it used. So every scenario is covered, not only the ones about security.
 *
 * Randomness is seeded everywhere (mulberry32). `spot-run` runs as a real child process; by default
 * from a bundle of the current sources made once per process with esbuild, the way the image ships
 * it (the tsx entry takes ~3 s to start, the bundle ~0.3 s). `SPOT_RUN_ENTRY=tsx` runs every child
 * through tsx instead, `SPOT_RUN_ENTRY=dist/spot-run.mjs` a built file; the `baseline` scenario
 * always runs one child through tsx as well.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { createClient, type ClientOptions, type SpotClient } from '../../lib/client.js';
import { isSpotError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { buildRef } from '../../lib/names.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from '../../lib/retry.js';
import { runTasks, type Task } from '../../lib/runner.js';
import type { Build, BuildPhase, BuildStatus, ConditionStatus } from '../../lib/types.js';
import {
  startApiServer,
  type ApiServer,
  type ApiServerOptions,
  type FaultAction,
  type NewBuild,
  type RequestLogEntry,
} from '../../scripts/apiserver/server.js';
import { bundleSpotRun, ROOT, runCli, type CliResult } from './cli.js';
import { isLive as alive, liveGroupMembersAfter } from './processes.js';

// =============================================================================================
// Seeded randomness

/** mulberry32: a tiny seeded PRNG with a full 2^32 period; returns numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// =============================================================================================
// The spot-run entry

/**
 * `dist`-style bundle of scripts/spot-run.ts built from the current sources into a temp dir
 * (removed when the process exits), or undefined to run through tsx (`SPOT_RUN_ENTRY=tsx`).
 */
export function spotRunEntry(): Promise<string | undefined> {
  const chosen = process.env.SPOT_RUN_ENTRY;
  if (chosen === 'tsx') return Promise.resolve(undefined);
  // A built file, e.g. dist/spot-run.mjs: the scenarios then check what ships.
  if (chosen) return Promise.resolve(chosen);
  return bundleSpotRun();
}

// =============================================================================================
// Scenario model

export type Suite = 'reliability' | 'bad-input' | 'security';

export interface Scenario {
  id: string;
  suite: Suite;
  title: string;
  /** Mark the test `todo` with this reason (and count it as failed in the summary). */
  todo?: string;
  /** Upper bound on the scenario's wall time, for the test's timeout. */
  timeoutMs: number;
  run(ctx: ScenarioContext): Promise<void>;
}

export interface RunMetrics {
  /** Updates lost on either side (ours or a concurrent writer's). */
  updatesLost?: number;
  /** The most retries one logical request needed. */
  retries?: number;
}

export interface ScenarioReport {
  id: string;
  title: string;
  suite: Suite;
  runs: number;
  passed: number;
  updatesLost: number;
  maxRetries: number;
  ms: number;
  /** One line per failed run, plus central check failures. */
  failures: string[];
  /** The first error, for a test to rethrow as is. */
  firstError: unknown;
}

export interface ScenarioContext {
  /** One run: its own scope, checked for token leaks and torn down when `fn` ends. */
  run(label: string, fn: (run: Run) => Promise<RunMetrics | void>): Promise<void>;
  /** `count` runs, at most `concurrency` at a time. */
  runMany(count: number, concurrency: number, label: (i: number) => string, fn: (run: Run, i: number) => Promise<RunMetrics | void>): Promise<void>;
  /** A server shared by several runs (each run that uses it calls `run.attach`). Stopped at the end. */
  sharedServer(options?: ApiServerOptions): Promise<TestServer>;
}

/** A local API server plus what the harness tracks about it. */
export interface TestServer {
  readonly api: ApiServer;
  /** Every token this server has handed out (the initial one and each rotation). */
  readonly tokens: Set<string>;
  /** When the server logged `entry` (ms since epoch). */
  at(entry: RequestLogEntry): number;
  /** Creates a Build through the store and remembers it for the leak scan. */
  createBuild(build: NewBuild): Build;
  /** Rotates the token and remembers the new one. */
  rotateToken(): Promise<string>;
  /** A copy of the service-account folder, changed by `edit`; removed with the run. */
  serviceAccountCopy(edit: (dir: string) => Promise<void>): Promise<string>;
}

export interface CliRunOptions {
  /** BUILD_REFERENCE (default `default/b1`); undefined leaves it unset. */
  ref?: string | undefined;
  env?: Record<string, string | undefined>;
  onSpawn?: (child: ChildProcess) => void;
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
  /** Kept per stream from the start (default 4 MiB); a rolling tail of 64 KiB is kept besides. */
  maxOutput?: number;
  timeoutMs?: number;
  /** Poll /proc/<pid>/status for VmHWM while the child runs. */
  measureRss?: boolean;
  /** Run through tsx even when a bundle is in use. */
  tsx?: boolean;
}

export interface CliRun extends CliResult {
  /** The last 64 KiB of each stream, whatever `maxOutput` kept. */
  stdoutTail: string;
  stderrTail: string;
  /** Peak RSS in KiB (VmHWM), when measured. */
  peakRssKiB?: number;
}

export interface Run {
  readonly label: string;
  /** A new local API server for this run; `build` (default `default/b1`, with operator fields) is created unless false. */
  server(options?: ApiServerOptions & { build?: NewBuild | false }): Promise<TestServer>;
  /** Includes a shared server in this run's leak scan. */
  attach(server: TestServer): void;
  /** `spot-run ARGS` against `server` as a child process (in-cluster mode: env and service-account folder). */
  cli(server: TestServer, args: string[], options?: CliRunOptions): Promise<CliRun>;
  /** An in-process client for `server` whose log lines are collected; fast retry policy unless overridden. */
  client(server: TestServer, options?: Partial<ClientOptions>): Promise<SpotClient>;
  /** Adds text that the run produced (an error message, a log line) to the leak scan. */
  collect(where: string, text: string): void;
  /** Registers another secret for the leak scan. */
  secret(value: string): void;
  /** A temp dir removed with the run. */
  tempDir(): Promise<string>;
}

/**
 * A retry policy that keeps in-process runs fast: short backoff, Retry-After capped at 20 ms. The
 * deadline stays generous: on a loaded machine one request can take seconds.
 */
export const FAST_POLICY: RetryPolicy = {
  maxRetries: 8,
  baseDelayMs: 5,
  maxDelayMs: 40,
  maxRetryAfterMs: 20,
  deadlineMs: 30_000,
};

/** The retry limit spot-run runs with (it changes only the deadline), for checking the log. */
export const CLI_MAX_RETRIES = DEFAULT_RETRY_POLICY.maxRetries;

// =============================================================================================
// Harness

class LeakError extends Error {}

async function startTestServer(cleanup: Array<() => Promise<void>>, options: ApiServerOptions = {}): Promise<TestServer> {
  const times = new WeakMap<RequestLogEntry, number>();
  const onRequest = options.onRequest;
  const api = await startApiServer({
    ...options,
    onRequest: (entry) => {
      times.set(entry, Date.now());
      onRequest?.(entry);
    },
  });
  cleanup.push(() => api.stop());
  const tokens = new Set([api.token]);
  const builds: Array<[string, string]> = [];
  const server: TestServer & { builds: Array<[string, string]> } = {
    api,
    tokens,
    builds,
    at: (entry) => times.get(entry) ?? NaN,
    createBuild(build) {
      const created = api.createBuild(build);
      builds.push([created.metadata.namespace, created.metadata.name]);
      return created;
    },
    async rotateToken() {
      const token = await api.rotateToken();
      tokens.add(token);
      return token;
    },
    async serviceAccountCopy(edit) {
      const dir = await mkdtemp(join(api.dir, 'sa-copy-'));
      await cp(api.serviceAccountDir, dir, { recursive: true });
      await edit(dir);
      return dir;
    },
  };
  return server;
}

/** The Build every CLI scenario starts from: the operator's spec and pod reference already set. */
export function operatorBuild(name = 'b1', namespace = 'default'): NewBuild {
  return {
    namespace,
    name,
    spec: { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } },
    status: { pod: { namespace, name: `${name}-pod` } },
  };
}

class RunScope implements Run {
  readonly texts: Array<[string, string]> = [];
  readonly secrets = new Set<string>();
  readonly servers: Array<TestServer & { builds?: Array<[string, string]> }> = [];
  readonly cleanup: Array<() => Promise<void>> = [];
  /** Chunks of streamed output checked as they came (for outputs too large to keep). */
  readonly streamedLeaks: string[] = [];

  constructor(readonly label: string) {}

  async server(options: ApiServerOptions & { build?: NewBuild | false } = {}): Promise<TestServer> {
    const { build, ...rest } = options;
    const server = await startTestServer(this.cleanup, rest);
    this.servers.push(server);
    if (build !== false) server.createBuild(build ?? operatorBuild());
    return server;
  }

  attach(server: TestServer): void {
    if (!this.servers.includes(server)) this.servers.push(server);
  }

  collect(where: string, text: string): void {
    this.texts.push([where, text]);
  }

  secret(value: string): void {
    this.secrets.add(value);
  }

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'spot-scenario-'));
    this.cleanup.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  knownSecrets(): string[] {
    return [...this.secrets, ...this.servers.flatMap((s) => [...s.tokens])];
  }

  async cli(server: TestServer, args: string[], options: CliRunOptions = {}): Promise<CliRun> {
    this.attach(server);
    const entry = options.tsx ? undefined : await spotRunEntry();
    const env: Record<string, string | undefined> = {
      ...server.api.env(),
      POD_NAME: 'b1-pod',
      ...('ref' in options ? { BUILD_REFERENCE: options.ref } : { BUILD_REFERENCE: 'default/b1' }),
      ...options.env,
    };
    const TAIL = 64 * 1024;
    const tails = { stdout: '', stderr: '' };
    // Token scan of every chunk as it streams by, with an overlap so a token split across two
    // chunks is still seen; this covers output too large for `maxOutput` to keep.
    const carry = { stdout: '', stderr: '' };
    let peak: number | undefined;
    let poll: NodeJS.Timeout | undefined;
    const result = await runCli(args, {
      ...(entry ? { entry } : {}),
      env,
      timeoutMs: options.timeoutMs ?? 60_000,
      maxOutput: options.maxOutput ?? 4 * 1024 * 1024,
      onOutput: (text, stream) => {
        tails[stream] = (tails[stream] + text).slice(-TAIL);
        const window = carry[stream] + text;
        for (const secret of this.knownSecrets()) {
          if (window.includes(secret)) this.streamedLeaks.push(`child ${stream}: ${window.slice(Math.max(0, window.indexOf(secret) - 80), window.indexOf(secret) + secret.length + 20)}`);
        }
        carry[stream] = window.slice(-256);
        options.onOutput?.(text, stream);
      },
      onSpawn: (child) => {
        // A run that fails half-way must not leave its spot-run behind.
        this.cleanup.push(async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        });
        if (options.measureRss && child.pid !== undefined) {
          const path = `/proc/${child.pid}/status`;
          const read = () => {
            try {
              const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(path, 'utf8'));
              if (m) peak = Math.max(peak ?? 0, Number(m[1]));
            } catch {
              // gone
            }
          };
          read();
          poll = setInterval(read, 20);
        }
        options.onSpawn?.(child);
      },
    }).finally(() => clearInterval(poll));
    this.collect(`spot-run ${args.join(' ')} stdout`, result.stdout);
    this.collect(`spot-run ${args.join(' ')} stderr`, result.stderr);
    this.collect('spot-run stdout tail', tails.stdout);
    this.collect('spot-run stderr tail', tails.stderr);
    return { ...result, stdoutTail: tails.stdout, stderrTail: tails.stderr, ...(peak !== undefined ? { peakRssKiB: peak } : {}) };
  }

  async client(server: TestServer, options: Partial<ClientOptions> = {}): Promise<SpotClient> {
    this.attach(server);
    const logger = createLogger({ format: 'json', level: 'debug', write: (line) => this.collect('in-process log', line) });
    const client = await createClient({
      serviceAccountDir: server.api.serviceAccountDir,
      env: { ...server.api.env() },
      logger,
      retry: FAST_POLICY,
      timeoutMs: 15_000,
      events: { instance: 'in-process' },
      ...options,
    });
    this.cleanup.push(() => client.close());
    return client;
  }

  /** Every place a token must not be: what the run collected, and what its servers store. */
  scanForLeaks(): string[] {
    const secrets = this.knownSecrets();
    const places: Array<[string, string]> = [...this.texts];
    for (const server of this.servers) {
      for (const event of server.api.events()) places.push([`event ${event.metadata.name} (${String(event.reason)})`, JSON.stringify(event)]);
      for (const [ns, name] of server.builds ?? []) {
        const build = server.api.getBuild(ns, name);
        if (build) places.push([`Build ${ns}/${name} status`, JSON.stringify(build.status ?? {})]);
      }
    }
    const leaks = [...this.streamedLeaks];
    for (const [where, text] of places) {
      for (const secret of secrets) {
        const i = text.indexOf(secret);
        if (i >= 0) leaks.push(`${where}: ...${text.slice(Math.max(0, i - 80), i + secret.length + 20)}...`);
      }
    }
    return leaks;
  }

  async close(): Promise<void> {
    for (const fn of this.cleanup.reverse()) await fn().catch(() => {});
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n').slice(0, 12).join('\n');
  return String(err);
}

/** Runs a scenario and reports; never throws (failures are in the report). */
export async function runScenario(scenario: Scenario): Promise<ScenarioReport> {
  const report: ScenarioReport = {
    id: scenario.id,
    title: scenario.title,
    suite: scenario.suite,
    runs: 0,
    passed: 0,
    updatesLost: 0,
    maxRetries: 0,
    ms: 0,
    failures: [],
    firstError: undefined,
  };
  const shared: Array<() => Promise<void>> = [];
  const fail = (label: string, err: unknown) => {
    report.failures.push(`${label}: ${describeError(err)}`);
    report.firstError ??= err;
  };
  const ctx: ScenarioContext = {
    async run(label, fn) {
      report.runs += 1;
      const scope = new RunScope(label);
      try {
        const metrics = (await fn(scope)) ?? {};
        report.updatesLost += metrics.updatesLost ?? 0;
        report.maxRetries = Math.max(report.maxRetries, metrics.retries ?? 0);
        const leaks = scope.scanForLeaks();
        if (leaks.length > 0) throw new LeakError(`token leaked (${leaks.length} place(s)):\n${leaks.slice(0, 5).join('\n')}`);
        report.passed += 1;
      } catch (err) {
        // Even a failed run must not leak: report the leak too.
        if (!(err instanceof LeakError)) {
          const leaks = scope.scanForLeaks();
          if (leaks.length > 0) fail(`${label} (leak)`, new LeakError(`token leaked:\n${leaks.slice(0, 5).join('\n')}`));
        }
        fail(label, err);
      } finally {
        await scope.close();
      }
    },
    async runMany(count, concurrency, label, fn) {
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          await ctx.run(label(i), (r) => fn(r, i));
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    },
    sharedServer: (options) => startTestServer(shared, options),
  };
  const started = Date.now();
  try {
    await scenario.run(ctx);
  } catch (err) {
    fail(`${scenario.id} (setup)`, err);
  } finally {
    for (const fn of shared.reverse()) await fn().catch(() => {});
  }
  report.ms = Date.now() - started;
  return report;
}

/** For tests: throws the first failure (with all failure lines) unless every run passed. */
export function assertPassed(report: ScenarioReport): void {
  if (report.failures.length === 0 && report.passed === report.runs && report.runs > 0) return;
  const summary = `${report.id}: ${report.passed}/${report.runs} runs passed\n${report.failures.join('\n---\n')}`;
  if (report.firstError instanceof Error) {
    report.firstError.message = `${summary}\n=== first failure ===\n${report.firstError.message}`;
    throw report.firstError;
  }
  throw new Error(summary);
}

// =============================================================================================
// Assertion helpers

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
function retryableStatus(status: number): boolean {
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
async function before(line: Promise<string>, run: Promise<CliRun>, what: string): Promise<string> {
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
const STEP_TYPES = ['Fetching Source', 'Building Image', 'Pushing Image', 'Signing Image'];

function quickSteps(count: number, lastImage?: string): string[] {
  return STEP_TYPES.slice(0, count).flatMap((type, i) => [
    '--step',
    i === count - 1 && lastImage ? `${type}=echo ${lastImage} > "$SPOT_RESULTS_DIR/image-url"` : `${type}=true`,
  ]);
}

const IMAGE = 'registry.example.com/team/app:1.4.2@sha256:9b2f0c4e';

function successConditions(count: number): ExpectedCondition[] {
  return STEP_TYPES.slice(0, count).map((t): ExpectedCondition => [t, 'Success', 'Succeeded']);
}

const STARTED_COMPLETED: ExpectedEvent[] = [
  ['Normal', 'Started', /^Build started: /],
  ['Normal', 'Completed', /^Build completed: /],
];

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

// =============================================================================================
// Reliability scenarios

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
        expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
        expectEvents(server, STARTED_COMPLETED);
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
        expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
        expectEvents(server, STARTED_COMPLETED);
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
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
      expectEvents(server, STARTED_COMPLETED);
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

/** A step that says it is ready, then waits until the test creates `$SPOT_TEST_GO`. */
function waitingStep(type: string, then = ''): string {
  return `${type}=echo ready; while [ ! -e "$SPOT_TEST_GO" ]; do sleep 0.05; done; ${then}`;
}

const tokenRotation: Scenario = {
  id: 'token-rotation',
  suite: 'reliability',
  title: 'the token file is replaced mid-run and the old token refused: one 401, one re-read, the run goes on',
  timeoutMs: 60_000,
  async run(ctx) {
    await ctx.run('rotation', async (r) => {
      const server = await r.server();
      const dir = await r.tempDir();
      const go = join(dir, 'go');
      const ready = waitForStepLine('Building Image', /^ready$/);
      const run = r.cli(
        server,
        ['--log-format', 'json', '--log-level', 'debug', '--step', 'Fetching Source=true', '--step', waitingStep('Building Image'), '--step', `Pushing Image=echo ${IMAGE} > "$SPOT_RESULTS_DIR/image-url"`],
        { env: { SPOT_TEST_GO: go }, onOutput: ready.onOutput },
      );
      await before(ready.line, run, 'the step said it was ready');
      const old = server.api.token;
      const fresh = await server.rotateToken();
      assert.notEqual(fresh, old);
      await writeFile(go, '');
      const res = await run;
      assert.equal(res.code, 0, res.stderr);
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
      expectEvents(server, STARTED_COMPLETED);
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

const outage: Scenario = {
  id: 'outage-10s',
  suite: 'reliability',
  title: 'the API server is down for 10 s mid-step; the step returns during the outage and its result is written after',
  timeoutMs: 90_000,
  async run(ctx) {
    await ctx.run('10 s outage', async (r) => {
      const server = await r.server();
      const dir = await r.tempDir();
      const go = join(dir, 'go');
      const ready = waitForStepLine('Building Image', /^ready$/);
      const run = r.cli(
        server,
        ['--log-level', 'debug', '--step', 'Fetching Source=true', '--step', waitingStep('Building Image', `echo ${IMAGE} > "$SPOT_RESULTS_DIR/image-url"`), '--step', 'Pushing Image=true'],
        { env: { SPOT_TEST_GO: go }, onOutput: ready.onOutput },
      );
      await before(ready.line, run, 'the step said it was ready');
      await server.api.suspend();
      const down = Date.now();
      await sleep(1_000);
      await writeFile(go, ''); // the step returns while the server is down
      await sleep(10_000 - (Date.now() - down));
      await server.api.resume();
      const res = await run;
      assert.equal(res.code, 0, res.stderr);
      assert.ok(Date.now() - down >= 10_000);
      expectBuild(server.api.getBuild('default', 'b1'), { phase: 'Done', conditions: successConditions(3), image: { url: IMAGE } });
      expectEvents(server, STARTED_COMPLETED);
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
      const dir = await r.tempDir();
      const go = join(dir, 'go');
      const ready = waitForStepLine('Building Image', /^ready$/);
      const run = r.cli(server, ['--api-deadline', '3', '--step', 'Fetching Source=true', '--step', waitingStep('Building Image'), '--step', 'Pushing Image=true'], {
        env: { SPOT_TEST_GO: go },
        onOutput: ready.onOutput,
      });
      await before(ready.line, run, 'the step said it was ready');
      await server.api.suspend();
      const released = Date.now();
      await writeFile(go, '');
      const res = await run;
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
      const [, leader, grandchild] = /pids (\d+) (\d+)/.exec(await before(ready.line, run, 'the step said its pids'))!.map(Number) as [number, number, number];
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

const MiB = 1024 * 1024;

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

// =============================================================================================
// Bad input

interface BadInputCase {
  id: string;
  title: string;
  /** Exit code: 2 for usage and configuration, 3 for answers the API server gave. */
  code: 2 | 3;
  /** The one line must match. */
  line: RegExp;
  /** The requests the server saw (none for exit 2). */
  requests?: string[];
  args?: string[];
  ref?: string | undefined;
  env?: (server: TestServer, run: Run) => Promise<Record<string, string>>;
  setup?: (server: TestServer, run: Run) => Promise<string[] | void>;
}

const STEP = ['--step', 'Building Image=true'];

async function tasksFile(run: Run, content: string): Promise<string[]> {
  const file = join(await run.tempDir(), 'tasks.json');
  await writeFile(file, content);
  return ['--tasks', file];
}

const saEnv = (edit: (dir: string) => Promise<void>) => async (server: TestServer) => ({ SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy(edit) });

export const BAD_INPUT_CASES: BadInputCase[] = [
  { id: 'ref-empty', title: 'BUILD_REFERENCE empty', code: 2, ref: '', line: /^spot-run: no Build given: pass --build NAMESPACE\/NAME or set BUILD_REFERENCE/ },
  { id: 'ref-one-part', title: 'BUILD_REFERENCE with one part', code: 2, ref: 'b1', line: /^spot-run: invalid Build reference "b1": expected "namespace\/name" with exactly one "\/" \(from BUILD_REFERENCE\)/ },
  { id: 'ref-three-parts', title: 'BUILD_REFERENCE with three parts', code: 2, ref: 'default/b1/x', line: /^spot-run: invalid Build reference "default\/b1\/x": expected "namespace\/name"/ },
  { id: 'ref-dotdot', title: 'BUILD_REFERENCE ../x', code: 2, ref: '../x', line: /^spot-run: invalid Build namespace "\.\.": must consist of lower case/ },
  { id: 'ref-upper', title: 'BUILD_REFERENCE in upper case', code: 2, ref: 'Default/B1', line: /^spot-run: invalid Build namespace "Default": must consist of lower case/ },
  { id: 'ref-300', title: 'BUILD_REFERENCE of 300 characters', code: 2, ref: `default/${'a'.repeat(292)}`, line: /^spot-run: invalid Build name "a{61}\.\.\.": must be no more than 253 characters \(got 292\)/ },
  { id: 'no-token', title: 'token file missing', code: 2, env: saEnv((d) => rm(join(d, 'token'))), line: /^spot-run: service-account token file \S+\/token is missing \(folder from SPOT_SERVICEACCOUNT_DIR\)$/ },
  { id: 'no-ca', title: 'CA file missing', code: 2, env: saEnv((d) => rm(join(d, 'ca.crt'))), line: /^spot-run: CA file \S+\/ca\.crt is missing/ },
  { id: 'bad-namespace', title: 'namespace file that holds no namespace name', code: 2, env: saEnv((d) => writeFile(join(d, 'namespace'), 'Default\n')), line: /^spot-run: invalid pod namespace "Default": must consist of lower case/ },
  { id: 'empty-token', title: 'token file empty', code: 2, env: saEnv((d) => writeFile(join(d, 'token'), ' \n')), line: /^spot-run: service-account token file \S+\/token is empty/ },
  { id: 'ca-not-pem', title: 'CA file that is not PEM', code: 2, env: saEnv((d) => writeFile(join(d, 'ca.crt'), 'not a certificate\n')), line: /^spot-run: CA file \S+\/ca\.crt holds no PEM certificate/ },
  {
    id: 'wrong-ca',
    title: 'server certificate not signed by the mounted CA',
    code: 3,
    env: async (server) => ({ SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem())) }),
    line: /cannot report Build default\/b1 to the API server at https:\/\/127\.0\.0\.1:\d+: .*\[UNABLE_TO_VERIFY_LEAF_SIGNATURE\]/,
    requests: [],
  },
  { id: 'http-remote', title: '--server with plain http to a non-loopback host', code: 2, args: ['--server', 'http://10.1.2.3:8080', ...STEP], line: /^spot-run: refusing plain http to 10\.1\.2\.3:8080: .*use https/ },
  { id: 'tasks-not-json', title: '--tasks file that is not JSON', code: 2, setup: (_s, r) => tasksFile(r, '[{"type": "A",'), line: /^spot-run: --tasks file \S+ is not valid JSON: / },
  { id: 'tasks-no-type', title: '--tasks step without a type', code: 2, setup: (_s, r) => tasksFile(r, '[{"command": "true"}]'), line: /^spot-run: --tasks file \S+ step 1 needs a "type" \(the condition type\)/ },
  { id: 'tasks-no-command', title: '--tasks step without a command', code: 2, setup: (_s, r) => tasksFile(r, '[{"type": "Building Image"}]'), line: /^spot-run: --tasks file \S+ step 1 \(Building Image\) needs exactly one of "command" or "argv"/ },
  { id: 'duplicate-types', title: 'two steps with the same condition type', code: 2, args: ['--step', 'Building Image=true', '--step', 'Building Image=false'], line: /^spot-run: duplicate step type "Building Image": each step is its own condition and needs its own type/ },
  { id: 'not-found', title: 'the Build does not exist (404)', code: 3, ref: 'default/nope', line: /^spot-run: cannot report Build default\/nope to the API server at https:\/\/\S+: 404 NotFound: builds\.spot\.release\.com "nope" not found \(GET /, requests: ['GET build 404'] },
  {
    id: 'forbidden',
    title: 'RBAC forbids the status write (403)',
    code: 3,
    setup: async (server) => server.api.setPermissions(server.api.token, [{ verbs: ['get'], resources: ['builds', 'builds/status'] }, { verbs: '*', resources: ['events'] }]),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: 403 Forbidden: .*cannot patch resource "builds\/status"/,
    requests: ['GET build 200', 'PATCH status 403'],
  },
  {
    id: 'unauthorized',
    title: 'a token the server does not know (401)',
    code: 3,
    env: async (server, run) => {
      const bogus = 'test-token-not-known-to-the-server-0000';
      run.secret(bogus);
      return { SPOT_SERVICEACCOUNT_DIR: await server.serviceAccountCopy((d) => writeFile(join(d, 'token'), bogus)) };
    },
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: 401 Unauthorized: Unauthorized \(GET /,
    requests: ['GET build 401'],
  },
  {
    id: 'html',
    title: 'an answer in HTML instead of JSON',
    code: 3,
    setup: async (server) => void server.api.inject({ html: true, times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: expected a JSON answer, got text\/html: "<html>/,
    requests: ['GET build 200'],
  },
  {
    id: 'huge-answer',
    title: 'an answer of 50 MiB',
    code: 3,
    setup: async (server) => void server.api.inject({ body: Buffer.alloc(50 * MiB, 0x20), times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: response body of 52428800 bytes exceeds the 10485760-byte limit/,
    requests: ['GET build 200'],
  },
  {
    id: 'not-a-build',
    title: 'a JSON answer that is not a Build',
    code: 3,
    setup: async (server) => void server.api.inject({ body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b1', namespace: 'default' } }), times: Infinity }),
    line: /^spot-run: cannot report Build default\/b1 to the API server at \S+: the answer is not a Build \(apiVersion "v1", kind "ConfigMap"\)/,
    requests: ['GET build 200'],
  },
];

/** Runs one bad-input case and checks its one line, exit code, requests and the untouched Build. */
async function badInputRun(r: Run, k: BadInputCase): Promise<void> {
  const server = await r.server();
  const before = server.api.getBuild('default', 'b1');
  const extraArgs = (await k.setup?.(server, r)) ?? [];
  const env = (await k.env?.(server, r)) ?? {};
  const res = await r.cli(server, [...(k.args ?? STEP), ...extraArgs], { ...('ref' in k ? { ref: k.ref } : {}), env });
  assert.equal(res.code, k.code, `exit code\n${res.stderr}`);
  const lines = problemLines(res.stderr);
  assert.equal(lines.length, 1, `exactly one line naming the cause, got:\n${res.stderr}`);
  assert.match(lines[0]!, k.line);
  assert.doesNotMatch(res.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(res.stderr, /internal error/);
  assert.equal(res.stdout, '', 'nothing on stdout');
  assert.deepEqual(trace(server.api.requests), k.requests ?? [], 'requests');
  // Refused before anything was written: the Build is as the operator left it.
  assert.deepEqual(server.api.getBuild('default', 'b1'), before, 'the Build is untouched');
  assert.deepEqual(server.api.events(), [], 'no events');
}

const badInput: Scenario[] = BAD_INPUT_CASES.map((k) => ({
  id: `bad-input/${k.id}`,
  suite: 'bad-input',
  title: k.title,
  timeoutMs: 30_000,
  run: (ctx) => ctx.run(k.id, (r) => badInputRun(r, k)),
}));

// =============================================================================================
// Security

const tokenInServerAnswers: Scenario = {
  id: 'security/server-echoes-token',
  suite: 'security',
  title: 'a server (or proxy) that echoes the token in its error answer: redacted everywhere',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const form of ['status', 'html'] as const) {
      await ctx.run(form, async (r) => {
        const server = await r.server();
        const token = server.api.token;
        const message = `token ${token} is not allowed here`;
        server.api.inject(
          form === 'status'
            ? { status: 403, body: JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Forbidden', code: 403 }) }
            : { status: 403, body: `<html><body>${message}</body></html>`, contentType: 'text/html' },
        );
        const res = await r.cli(server, ['--log-format', 'json', '--log-level', 'debug', ...STEP]);
        assert.equal(res.code, 3, res.stderr);
        assert.match(res.stderr, /\[REDACTED\]/, 'the token was there, and was redacted');
      });
    }
  },
};

const tokenInStepOutput: Scenario = {
  id: 'security/step-prints-token',
  suite: 'security',
  title: 'a failing step prints the token to stderr: not in the condition, the event, or spot-run\'s output',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const format of ['text', 'json']) {
      await ctx.run(format, async (r) => {
        const server = await r.server();
        const step = `Building Image=echo "curl -H 'Authorization: Bearer $(cat "$SPOT_SERVICEACCOUNT_DIR/token")'" >&2; echo "token: $(cat "$SPOT_SERVICEACCOUNT_DIR/token")"; exit 7`;
        const res = await r.cli(server, ['--log-format', format, '--log-level', 'debug', '--step', step]);
        assert.equal(res.code, 1, res.stderr);
        assert.match(res.stderr, /Bearer \[REDACTED\]/);
        assert.match(res.stdout, /token: \[REDACTED\]/);
        expectBuild(server.api.getBuild('default', 'b1'), {
          phase: 'Errored',
          conditions: [['Building Image', 'Error', 'StepFailed', /exit code 7; last stderr lines:\ncurl -H 'Authorization: Bearer \[REDACTED\]'$/]],
        });
        expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'StepFailed', /Bearer \[REDACTED\]/]]);
      });
    }
  },
};

const stepEnvironment: Scenario = {
  id: 'security/step-env',
  suite: 'security',
  title: 'steps inherit the environment, but never the token\'s value (a step that dumps env)',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('env dump', async (r) => {
      const server = await r.server();
      const dir = await r.tempDir();
      const dump = join(dir, 'env.txt');
      const res = await r.cli(server, ['--step', `Building Image=env > "${dump}"`], {
        // A variable that carries the token (a careless pod spec) must not reach the step.
        env: { INHERITED_SETTING: 'kept-for-the-step', CARELESS_TOKEN: server.api.token, CARELESS_HEADER: `Bearer ${server.api.token}` },
      });
      assert.equal(res.code, 0, res.stderr);
      const env = await readFile(dump, 'utf8');
      r.collect('step environment', env);
      assert.match(env, /^INHERITED_SETTING=kept-for-the-step$/m, 'the environment is inherited');
      assert.match(env, /^SPOT_RESULTS_DIR=/m);
      assert.match(env, /^KUBERNETES_SERVICE_HOST=/m);
      assert.doesNotMatch(env, /^CARELESS_(TOKEN|HEADER)=/m, 'variables carrying the token are dropped');
      assert.ok(!env.includes(server.api.token), 'the token is not in the step\'s environment');
    });
  },
};

const encodedNames: Scenario = {
  id: 'security/names',
  suite: 'security',
  title: 'names are validated before they reach a URL: encoded separators and dot segments never reach the server',
  timeoutMs: 30_000,
  async run(ctx) {
    for (const ref of ['default/a%2Fb', 'default%2Fkube-system/b1', 'default/..', 'default/%2e%2e', 'default/b1%00', 'default/b1?watch=1', 'default/b1#x']) {
      await ctx.run(`BUILD_REFERENCE ${ref}`, async (r) => {
        const server = await r.server();
        const res = await r.cli(server, STEP, { ref });
        assert.equal(res.code, 2, res.stderr);
        assert.match(problemLines(res.stderr)[0] ?? '', /^spot-run: invalid Build (name|namespace) /);
        assert.deepEqual(server.api.requests, [], 'no request reached the server');
      });
    }
    await ctx.run('POD_NAMESPACE with an encoded slash', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, STEP, { env: { POD_NAMESPACE: 'default%2F..' } });
      assert.equal(res.code, 2, res.stderr);
      assert.match(problemLines(res.stderr)[0] ?? '', /^spot-run: invalid pod namespace "default%2F\.\."/);
      assert.deepEqual(server.api.requests, []);
    });
    await ctx.run('library calls with unvalidated names', async (r) => {
      const server = await r.server();
      const client = await r.client(server);
      const bad = [
        { namespace: 'default', name: 'a%2Fb' },
        { namespace: 'default', name: '../kube-system/secrets/x' },
        { namespace: 'default/../kube-system', name: 'b1' },
        { namespace: 'default', name: '..' },
      ];
      for (const ref of bad) {
        for (const call of [
          () => client.getBuild(ref),
          () => client.patchBuildStatus(ref, { status: {} }, { type: 'merge', resourceVersion: '1' }),
          () => client.updateBuildStatus(ref, () => {}),
        ]) {
          const err = await call().then(
            () => assert.fail(`${ref.namespace}/${ref.name} was accepted`),
            (e: unknown) => e,
          );
          r.collect('error', String(err));
          assert.equal((err as { code?: string }).code, 'ERR_SPOT_INVALID_NAME', String(err));
        }
        // An event about a Build whose metadata holds such a name is refused too (never throws).
        const outcome = await client.recordEvent({ apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { ...ref } }, { type: 'Normal', reason: 'Test', message: 'x' });
        assert.equal(outcome.ok, false);
      }
      assert.deepEqual(server.api.requests, [], 'no request reached the server');
    });
  },
};

/** Every TLS-related setting in lib/ and scripts/. */
async function tlsSettings(): Promise<Array<{ file: string; line: string }>> {
  const found: Array<{ file: string; line: string }> = [];
  for (const folder of ['lib', 'scripts']) {
    for (const name of await readdir(join(ROOT, folder))) {
      if (!name.endsWith('.ts')) continue;
      const file = `${folder}/${name}`;
      for (const line of (await readFile(join(ROOT, file), 'utf8')).split('\n')) {
        if (/rejectUnauthorized|NODE_TLS_REJECT_UNAUTHORIZED|checkServerIdentity|insecure/i.test(line)) found.push({ file, line: line.trim() });
      }
    }
  }
  return found;
}

const tlsVerification: Scenario = {
  id: 'security/tls',
  suite: 'security',
  title: 'the server is always verified against the mounted CA; nothing turns it off, not even NODE_TLS_REJECT_UNAUTHORIZED=0',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('source has no switch that disables verification', async () => {
      for (const { file, line } of await tlsSettings()) {
        const harmless =
          /rejectUnauthorized:\s*true\b/.test(line) || // forces verification on
          /^(\/\/|\*|\/\*)/.test(line) || // a comment
          /refusing plain http|unencrypted/.test(line); // the http refusal's wording
        assert.ok(harmless, `${file}: ${line}`);
      }
      const help = await readFile(join(ROOT, 'scripts', 'spot-run.ts'), 'utf8');
      assert.doesNotMatch(help, /--insecure|skip-tls|tls-verify|no-verify/i, 'spot-run has no option to skip verification');
    });
    await ctx.run('--insecure-skip-tls-verify is not an option', async (r) => {
      const server = await r.server();
      const res = await r.cli(server, ['--insecure-skip-tls-verify', ...STEP]);
      assert.equal(res.code, 2);
      assert.match(problemLines(res.stderr)[0] ?? '', /Unknown option '--insecure-skip-tls-verify'/);
      assert.deepEqual(server.api.requests, []);
    });
    for (const env of [{}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }]) {
      await ctx.run(`wrong CA${'NODE_TLS_REJECT_UNAUTHORIZED' in env ? ' with NODE_TLS_REJECT_UNAUTHORIZED=0' : ''}`, async (r) => {
        const server = await r.server();
        const dir = await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem()));
        const res = await r.cli(server, ['--log-format', 'json', ...STEP], { env: { ...env, SPOT_SERVICEACCOUNT_DIR: dir } });
        assert.equal(res.code, 3, res.stderr);
        assert.match(res.stderr, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|CERT/);
        assert.deepEqual(server.api.requests, [], 'no request got past the handshake');
        assert.equal(server.api.getBuild('default', 'b1')?.status?.conditions, undefined, 'nothing was written');
      });
    }
    await ctx.run('in-process: the library verifies too, whatever the environment says', async (r) => {
      const server = await r.server();
      const dir = await server.serviceAccountCopy(async (d) => writeFile(join(d, 'ca.crt'), await server.api.otherCaPem()));
      const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
      const warn = process.emitWarning;
      process.emitWarning = () => {}; // Node warns once about the variable; not this test's business
      try {
        const client = await r.client(server, { serviceAccountDir: dir });
        const err = await client.getBuild(buildRef('default', 'b1')).then(
          () => assert.fail('a server the CA did not sign was accepted'),
          (e: unknown) => e,
        );
        r.collect('error', String(err));
        assert.equal((err as { code?: string }).code, 'ERR_SPOT_NETWORK', String(err));
        assert.match(String((err as { causeCode?: string }).causeCode), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT/);
      } finally {
        if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
        else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
        process.emitWarning = warn;
      }
      assert.deepEqual(server.api.requests, []);
    });
  },
};

const taskErrorWithToken: Scenario = {
  id: 'security/task-error-token',
  suite: 'security',
  title: 'a library task fails with an error that carries the token: not in the condition, the event, or the log',
  timeoutMs: 30_000,
  async run(ctx) {
    await ctx.run('task error', async (r) => {
      const server = await r.server();
      const client = await r.client(server);
      const token = server.api.token;
      const outcome = await runTasks(client, buildRef('default', 'b1'), [
        {
          type: 'Pushing Image',
          run: async () => {
            // e.g. an HTTP client that puts the request's headers into its error
            throw new Error(`registry said 401 to GET /v2/ with headers {"authorization":"Bearer ${token}"}`);
          },
        },
      ], { log: createLogger({ format: 'text', level: 'debug', write: (line) => r.collect('runner log', line) }) });
      assert.equal(outcome.exitCode, 1);
      r.collect('outcome error', outcome.outcome === 'failed' ? outcome.error.message.replace(token, '<the task\'s own error, returned to its caller>') : '');
      expectBuild(server.api.getBuild('default', 'b1'), {
        phase: 'Errored',
        conditions: [['Pushing Image', 'Error', 'Failed', /^Pushing Image failed after [\d.]+s: registry said 401 .*Bearer \[REDACTED\]/]],
      });
      expectEvents(server, [STARTED_COMPLETED[0]!, ['Warning', 'TaskFailed', /Bearer \[REDACTED\]/]]);
    });
  },
};

const leakScanSelfTest: Scenario = {
  id: 'security/leak-scan',
  suite: 'security',
  title: 'the central leak scan itself finds a token planted in output, a condition message or an event',
  timeoutMs: 30_000,
  async run(ctx) {
    const plants: Record<string, (r: Run, server: TestServer) => Promise<void>> = {
      'collected output': async (r, server) => r.collect('planted', `Authorization: Bearer ${server.api.token}`),
      'a rotated token in output': async (r, server) => r.collect('planted', `old token ${await server.rotateToken()}`),
      'a condition message': async (_r, server) =>
        void server.api.setBuildStatus('default', 'b1', { conditions: [{ type: 'X', status: 'Error', message: `token=${server.api.token}` }] }),
      'an event message': async (r, server) => {
        const client = await r.client(server);
        const build = server.api.getBuild('default', 'b1')!;
        // recordEvent is the library's raw API: it sends what it is given.
        const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Planted', message: `token=${server.api.token}` });
        assert.ok(outcome.ok);
      },
      'streamed child output': async (r, server) => {
        // A step's output is redacted by spot-run; a secret the child does not know of is not.
        const secret = 'planted-secret-the-child-does-not-know';
        r.secret(secret);
        await r.cli(server, ['--step', `Building Image=echo ${secret}`]);
      },
    };
    for (const [where, plant] of Object.entries(plants)) {
      await ctx.run(where, async () => {
        const inner = await runScenario({
          id: 'planted',
          suite: 'security',
          title: where,
          timeoutMs: 20_000,
          run: (innerCtx) => innerCtx.run('plant', async (r) => plant(r, await r.server())),
        });
        assert.equal(inner.passed, 0, `the scan missed a token in ${where}`);
        assert.match(inner.failures.join('\n'), /token leaked/);
      });
    }
  },
};

// =============================================================================================
// The catalogue

export const SCENARIOS: readonly Scenario[] = [
  baseline,
  conflictStorm,
  throttleInProcess,
  retryLimits,
  throttleCli,
  resetsCli,
  unconditionalWrites,
  tokenRotation,
  outage,
  outageBeyondDeadline,
  sigterm,
  hugeStderr,
  ...badInput,
  tokenInServerAnswers,
  tokenInStepOutput,
  stepEnvironment,
  encodedNames,
  tlsVerification,
  taskErrorWithToken,
  leakScanSelfTest,
];

export function scenariosOf(suite: Suite, ids?: readonly string[]): Scenario[] {
  return SCENARIOS.filter((s) => s.suite === suite && (!ids || ids.includes(s.id)));
}

/** Runs scenarios at most `concurrency` at a time, reporting each as it ends. */
export async function runScenarios(
  scenarios: readonly Scenario[],
  concurrency: number,
  onReport?: (report: ScenarioReport) => void,
): Promise<ScenarioReport[]> {
  const reports: ScenarioReport[] = new Array(scenarios.length);
  let next = 0;
  const worker = async () => {
    while (next < scenarios.length) {
      const i = next++;
      const scenario = scenarios[i]!;
      const report = scenario.todo
        ? { id: scenario.id, title: scenario.title, suite: scenario.suite, runs: 0, passed: 0, updatesLost: 0, maxRetries: 0, ms: 0, failures: [`todo: ${scenario.todo}`], firstError: undefined }
        : await runScenario(scenario);
      reports[i] = report;
      onReport?.(report);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, scenarios.length) }, worker));
  return reports;
}
