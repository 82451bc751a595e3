/**
 * Runs a build's tasks one after another, each wrapped in a status condition, with events, a
 * fatal path and signal handling. Transitions that happen at the same instant share one status
 * write, so N tasks cost 1 GET + N+1 status writes when nothing conflicts.
 */
import type { BuildClient } from './client.js';
import { applyCondition, DEFAULT_VOCABULARY, getCondition, setCondition, type Vocabulary } from './conditions.js';
import { AbortedError, TaskFailure } from './errors.js';
import { redact, silentLogger, type Logger } from './log.js';
import type { Build, BuildRef, BuildStatus, ConditionStatus } from './types.js';

export interface TaskContext {
  /** The Build as last written (read-only: report through the task's result). */
  build: Readonly<Build>;
  /** Fires on SIGTERM/SIGINT or when the caller aborts; the task should stop promptly. */
  signal: AbortSignal;
  log: Logger;
}

export interface TaskResult {
  /** Top-level status fields to set in the write that marks the task done, e.g. `{ image: { url } }`. */
  status?: Partial<BuildStatus>;
  /** Message for the `Success` condition. */
  message?: string;
}

export interface Task {
  /** Condition type, unique within the run, e.g. `Building Image`. */
  type: string;
  run(context: TaskContext): Promise<TaskResult | void>;
}

/** Reasons this runner writes into conditions and events. */
export const Reasons = Object.freeze({
  Started: 'Started',
  Succeeded: 'Succeeded',
  Completed: 'Completed',
  Failed: 'Failed',
  Terminated: 'Terminated',
});

export type StopSignal = 'SIGTERM' | 'SIGINT';

/** Exit codes of `spot-run`, and what `RunOutcome.exitCode` carries. */
export const ExitCodes = Object.freeze({
  Done: 0,
  Failed: 1,
  Usage: 2,
  ReportFailed: 3,
  SIGINT: 130,
  SIGTERM: 143,
});

export type RunOutcome =
  | { outcome: 'done'; build: Build; exitCode: 0 }
  | { outcome: 'failed'; build: Build; exitCode: 1; type: string; error: Error }
  | { outcome: 'interrupted'; build: Build; exitCode: 130 | 143; type: string | undefined; signal: StopSignal };

export interface RunOptions {
  log?: Logger;
  /** Aborting it interrupts the run; `signal.reason` may be a `StopSignal`. */
  signal?: AbortSignal;
  /** Install SIGTERM/SIGINT handlers for the run's duration (what a pod's entrypoint wants). */
  handleSignals?: boolean;
  /** How long the interrupted run may take to report before the process exits anyway (default 10 s). */
  graceMs?: number;
  /** Record Normal/Warning events (default true). */
  events?: boolean;
  vocabulary?: Vocabulary;
  now?: () => Date;
  /** Called when the grace period runs out (default `process.exit`). */
  exit?: (code: number) => void;
}

export const DEFAULT_GRACE_MS = 10_000;

type Mutation = (build: Build) => void;

function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** A status mutation that marks `type` and keeps the phase derived; repeatable, as conflict retries need. */
function mark(
  type: string,
  status: string,
  now: Date,
  vocabulary: Vocabulary,
  extra: { reason?: string | undefined; message?: string | undefined; result?: Partial<BuildStatus> | undefined } = {},
): Mutation {
  return (build) => {
    const target = (build.status ??= {});
    if (extra.result) Object.assign(target, structuredClone(extra.result));
    applyCondition(
      target,
      { ...getCondition(target, type, vocabulary), status: status as ConditionStatus, reason: extra.reason, message: extra.message },
      now,
      vocabulary,
    );
  };
}

function both(...mutations: Mutation[]): Mutation {
  return (build) => mutations.forEach((m) => m(build));
}

type Attempt =
  | { ok: true; result: TaskResult }
  | { ok: false; error: Error; reason: string; interrupted: boolean };

async function attemptTask(task: Task, build: Build, signal: AbortSignal, log: Logger): Promise<Attempt> {
  try {
    signal.throwIfAborted();
    const result = (await task.run({ build, signal, log })) ?? {};
    // A task that ignored its signal still counts as interrupted: its result arrived too late to trust.
    if (signal.aborted) throw new AbortedError('interrupted', undefined);
    return { ok: true, result };
  } catch (err) {
    const error = errorOf(err);
    if (signal.aborted) return { ok: false, error, reason: Reasons.Terminated, interrupted: true };
    return { ok: false, error, reason: err instanceof TaskFailure ? err.reason : Reasons.Failed, interrupted: false };
  }
}

function stopSignalOf(signal: AbortSignal): StopSignal {
  return signal.reason === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
}

/**
 * Installs SIGTERM/SIGINT handlers that abort `controller` with the signal's name, and force
 * `exit` with 130/143 when the run has not wound up within `graceMs` (or on a second signal).
 * Returns a function that removes them.
 */
export function handleStopSignals(
  controller: AbortController,
  options: { graceMs?: number; exit?: (code: number) => void; log?: Logger } = {},
): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? silentLogger;
  let timer: NodeJS.Timeout | undefined;
  const on = (name: StopSignal) => () => {
    const code = ExitCodes[name];
    if (controller.signal.aborted) {
      log.warn(`second ${name}: exiting now`);
      exit(code);
      return;
    }
    log.warn(`${name} received: stopping the running task and reporting it`, { graceMs: options.graceMs ?? DEFAULT_GRACE_MS });
    timer = setTimeout(() => {
      log.error(`could not finish reporting within the grace period; exiting ${code}`);
      exit(code);
    }, options.graceMs ?? DEFAULT_GRACE_MS);
    controller.abort(name);
  };
  const onTerm = on('SIGTERM');
  const onInt = on('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    if (timer) clearTimeout(timer);
  };
}

/**
 * Runs `tasks` strictly in order and stops at the first failure. Writes: one GET, then one status
 * write per transition instant (task i's Success and task i+1's In Progress together; a task's
 * results in the write that marks it done). Events: Normal at start and completion, Warning for a
 * failure or an interruption; their failures never change the outcome. Errors reporting to the API
 * server (after the transport's retries) are thrown: the build's state cannot be told.
 */
export async function runTasks(client: BuildClient, ref: BuildRef, tasks: readonly Task[], options: RunOptions = {}): Promise<RunOutcome> {
  const log = options.log ?? silentLogger;
  const vocabulary = options.vocabulary ?? DEFAULT_VOCABULARY;
  const now = options.now ?? (() => new Date());
  const events = options.events ?? true;
  const types = new Set<string>();
  for (const task of tasks) {
    if (!task.type) throw new TypeError('every task needs a condition type');
    if (types.has(task.type)) throw new TypeError(`duplicate condition type ${JSON.stringify(task.type)}: each task needs its own`);
    types.add(task.type);
  }

  const controller = new AbortController();
  const forward = () => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener('abort', forward, { once: true });
  const dispose = options.handleSignals
    ? handleStopSignals(controller, { ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}), ...(options.exit ? { exit: options.exit } : {}), log })
    : () => {};
  const signal = controller.signal;
  const emit = async (build: Build, type: 'Normal' | 'Warning', reason: string, message: string) => {
    if (events) await client.recordEvent(build, { type, reason, message });
  };

  try {
    const started = Date.now();
    let build = await client.getBuild(ref);
    if (tasks.length === 0) return { outcome: 'done', build, exitCode: 0 };
    // The first write also lists every task's condition as initialized, so the plan is visible
    // from the start (`kubectl get build -o yaml`), at no extra request.
    const at = now();
    let pending: Mutation = both(
      mark(tasks[0]!.type, vocabulary.inProgress, at, vocabulary),
      ...tasks.slice(1).map((t): Mutation => (b) => {
        const status = (b.status ??= {});
        if (!status.conditions?.some((c) => c.type === t.type)) setCondition(status, { type: t.type, status: vocabulary.initialized as ConditionStatus }, at);
      }),
    );
    const total = tasks.length;

    for (let i = 0; i < total; i++) {
      const task = tasks[i]!;
      build = await client.updateBuildStatus(ref, pending, { base: build });
      if (i === 0) await emit(build, 'Normal', Reasons.Started, `Build started: ${total} task${total === 1 ? '' : 's'} (${tasks.map((t) => t.type).join(', ')})`);

      const taskStarted = Date.now();
      log.info(`[${i + 1}/${total}] ${task.type}`);
      const attempt = await attemptTask(task, build, signal, log.child({ task: task.type }));
      const elapsed = seconds(Date.now() - taskStarted);

      if (!attempt.ok) {
        const interrupted = attempt.interrupted;
        const message = interrupted
          ? `${task.type} was interrupted by ${stopSignalOf(signal)} after ${elapsed}`
          : `${task.type} failed after ${elapsed}: ${redact(attempt.error.message)}`;
        log.error(`[${i + 1}/${total}] ${task.type} ${interrupted ? 'interrupted' : 'failed'} after ${elapsed}`, {
          reason: attempt.reason,
          error: attempt.error.message,
        });
        build = await client.updateBuildStatus(ref, mark(task.type, vocabulary.error, now(), vocabulary, { reason: attempt.reason, message }), {
          base: build,
        });
        await emit(build, 'Warning', attempt.reason === Reasons.Failed ? 'TaskFailed' : attempt.reason, message);
        if (interrupted) {
          const name = stopSignalOf(signal);
          return { outcome: 'interrupted', build, exitCode: ExitCodes[name] as 130 | 143, type: task.type, signal: name };
        }
        return { outcome: 'failed', build, exitCode: 1, type: task.type, error: attempt.error };
      }

      log.info(`[${i + 1}/${total}] ${task.type} succeeded in ${elapsed}`);
      const done = mark(task.type, vocabulary.success, now(), vocabulary, {
        reason: Reasons.Succeeded,
        message: attempt.result.message,
        result: attempt.result.status,
      });
      const next = tasks[i + 1];
      if (next && signal.aborted) {
        // Stopped between tasks: record this task's success; the next one never starts.
        build = await client.updateBuildStatus(ref, done, { base: build });
        const name = stopSignalOf(signal);
        await emit(build, 'Warning', Reasons.Terminated, `Build interrupted by ${name} before ${next.type} started`);
        return { outcome: 'interrupted', build, exitCode: ExitCodes[name] as 130 | 143, type: undefined, signal: name };
      }
      pending = next ? both(done, mark(next.type, vocabulary.inProgress, now(), vocabulary)) : done;
    }

    build = await client.updateBuildStatus(ref, pending, { base: build });
    log.info(`build ${build.status?.phase === vocabulary.done ? 'done' : `finished (phase ${JSON.stringify(build.status?.phase)})`} in ${seconds(Date.now() - started)}`);
    await emit(build, 'Normal', Reasons.Completed, `Build completed: ${total} task${total === 1 ? '' : 's'} in ${seconds(Date.now() - started)}`);
    return { outcome: 'done', build, exitCode: 0 };
  } finally {
    options.signal?.removeEventListener('abort', forward);
    dispose();
  }
}

export type ConditionOutcome<T> =
  | { ok: true; value: T; build: Build }
  | { ok: false; error: Error; build: Build };

/**
 * Wraps one task in the condition `type`: In Progress (no write when it already is), then Success
 * or Error with the error's message, phase kept derived. Reporting errors are thrown; the task's
 * own error is returned, never thrown, so the condition is never left In Progress by it.
 */
export async function monitorCondition<T>(
  client: BuildClient,
  ref: BuildRef,
  type: string,
  task: (context: TaskContext) => Promise<T>,
  options: { base?: Build; signal?: AbortSignal; log?: Logger; vocabulary?: Vocabulary; now?: () => Date } = {},
): Promise<ConditionOutcome<T>> {
  const vocabulary = options.vocabulary ?? DEFAULT_VOCABULARY;
  const now = options.now ?? (() => new Date());
  const log = options.log ?? silentLogger;
  const signal = options.signal ?? new AbortController().signal;
  let build = await client.updateBuildStatus(ref, mark(type, vocabulary.inProgress, now(), vocabulary), {
    base: options.base ?? (await client.getBuild(ref)),
  });
  let value: T;
  try {
    signal.throwIfAborted();
    value = await task({ build, signal, log: log.child({ task: type }) });
  } catch (err) {
    const error = errorOf(err);
    const reason = signal.aborted ? Reasons.Terminated : err instanceof TaskFailure ? err.reason : Reasons.Failed;
    build = await client.updateBuildStatus(ref, mark(type, vocabulary.error, now(), vocabulary, { reason, message: redact(error.message) }), {
      base: build,
    });
    return { ok: false, error, build };
  }
  build = await client.updateBuildStatus(ref, mark(type, vocabulary.success, now(), vocabulary, { reason: Reasons.Succeeded }), { base: build });
  return { ok: true, value, build };
}

export const DEFAULT_FATAL_DEADLINE_MS = 10_000;

/**
 * The fatal path: marks the condition that is In Progress (or `type`) as Error and the phase
 * Errored, records a Warning event, then exits with `exitCode`. Best effort under a deadline: when
 * the API server cannot be reached it logs why and exits anyway; it never hangs. Resolves only
 * when `exit` returns (a test's stand-in).
 */
export async function recordErrorAndExit(
  client: BuildClient,
  ref: BuildRef,
  error: unknown,
  options: {
    type?: string;
    base?: Build;
    deadlineMs?: number;
    exitCode?: number;
    log?: Logger;
    vocabulary?: Vocabulary;
    exit?: (code: number) => never | void;
  } = {},
): Promise<void> {
  const log = options.log ?? silentLogger;
  const vocabulary = options.vocabulary ?? DEFAULT_VOCABULARY;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const exitCode = options.exitCode ?? 1;
  const message = redact(errorOf(error).message);
  const signal = AbortSignal.timeout(options.deadlineMs ?? DEFAULT_FATAL_DEADLINE_MS);
  log.error(`fatal: ${message}`);
  try {
    const at = new Date();
    const base = options.base ?? (await client.getBuild(ref, { signal }));
    const build = await client.updateBuildStatus(
      ref,
      (draft) => {
        const status = (draft.status ??= {});
        const type = options.type ?? status.conditions?.find((c) => c.status === vocabulary.inProgress)?.type;
        if (type) mark(type, vocabulary.error, at, vocabulary, { reason: Reasons.Failed, message })(draft);
        status.phase = vocabulary.errored as BuildStatus['phase'];
      },
      { base, signal },
    );
    await client.recordEvent(build, { type: 'Warning', reason: Reasons.Failed, message }, { signal });
  } catch (err) {
    log.error(`could not record the failure on Build ${ref.namespace}/${ref.name}: ${errorOf(err).message}`);
  }
  // With the default `exit` this never returns; a test's stand-in returns here.
  exit(exitCode);
}
