/**
 * The scenario harness behind the reliability, bad-input and security tests and `npm run
 * reliability` (test/reliability.ts). The scenarios themselves live beside their test files
 * (test/reliability-faults.scenarios.ts, test/reliability-process.scenarios.ts,
 * test/bad-input.scenarios.ts, test/security.scenarios.ts); what they share to check a run is in
 * scenario-checks.ts.
 *
 * A scenario is a set of runs. Each run gets its own scope (`Run`): the local API servers it
 * starts, the `spot-run` children it spawns, the in-process clients it makes. When a run ends, the
 * scope checks centrally that no token it knows of (the initial one, every rotated one, any other
 * registered) appears in anything the run produced: the child's stdout and stderr (text and JSON
 * logs) and termination message, in-process logs and error messages, and every condition and event message stored on the
 * servers it used. So every scenario is covered, not only the ones about security.
 *
 * Randomness is seeded everywhere (mulberry32). `spot-run` runs as a real child process; by default
 * from a bundle of the current sources made once per process with esbuild, the way the image ships
 * it (the tsx entry takes ~3 s to start, the bundle ~0.3 s). `SPOT_RUN_ENTRY=tsx` runs every child
 * through tsx instead, `SPOT_RUN_ENTRY=dist/spot-run.mjs` a built file; the `baseline` scenario
 * always runs one child through tsx as well.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { createClient, type ClientOptions, type SpotClient } from '../../lib/client.js';
import { createLogger } from '../../lib/log.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from '../../lib/retry.js';
import type { TerminationSummary } from '../../lib/termination.js';
import type { Build } from '../../lib/types.js';
import {
  startApiServer,
  type ApiServer,
  type ApiServerOptions,
  type NewBuild,
  type RequestLogEntry,
} from '../../scripts/apiserver/server.js';
import { bundleSpotRun, readTermination, runCli, withDefaultFlag, type CliResult } from './cli.js';

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
  /**
   * The termination message, read from a file of the run's own (`--termination-log` unless the
   * args give one) and scanned for leaks like the output; undefined when none was written.
   */
  terminationText: string | undefined;
  termination: TerminationSummary | undefined;
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
  minAttemptMs: 100,
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
    const terminationLog = join(await this.tempDir(), 'termination-log');
    const result = await runCli(withDefaultFlag(args, '--termination-log', terminationLog), {
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
    const termination = await readTermination(terminationLog);
    if (termination.terminationText !== undefined) this.collect('termination message', termination.terminationText);
    return { ...result, ...termination, stdoutTail: tails.stdout, stderrTail: tails.stderr, ...(peak !== undefined ? { peakRssKiB: peak } : {}) };
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

/** The node:test suite for `scenarios`: one test each, failing with the scenario's failures. */
export function describeScenarios(title: string, scenarios: readonly Scenario[], options: { concurrency: number }): void {
  describe(title, { concurrency: options.concurrency }, () => {
    for (const scenario of scenarios) {
      test(`${scenario.id}: ${scenario.title}`, { timeout: scenario.timeoutMs, ...(scenario.todo ? { todo: scenario.todo } : {}) }, async () => {
        assertPassed(await runScenario(scenario));
      });
    }
  });
}
