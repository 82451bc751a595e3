/**
 * Runs a build's tasks one after another, each wrapped in a status condition, with events, a
 * fatal path and signal handling. Transitions that happen at the same instant share one status
 * write, so N tasks cost 1 GET + N+1 status writes when nothing conflicts.
 */
import type { CallOptions, UpdateOptions } from './builds.js';
import { applyCondition, DEFAULT_VOCABULARY, getCondition, phaseFieldOf, setCondition, validateConditionType, type PhaseField, type Vocabulary } from './conditions.js';
import { AbortedError, TaskFailure } from './errors.js';
import type { EventInput, EventOutcome } from './events.js';
import { silentLogger, type Logger } from './log.js';
import { redact } from './secrets.js';
import type { Build, BuildPhase, BuildRef, BuildStatus, ConditionStatus } from './types.js';

/** What the runner needs of a client: `SpotClient` is one; tests hand in a fake or a fixture-backed one. */
export interface BuildClient {
  /** The phase field the client was given; undefined (or absent): told from the Build as read. */
  readonly phaseField?: PhaseField | undefined;
  getBuild(ref: BuildRef, options?: CallOptions): Promise<Build>;
  updateBuildStatus(ref: BuildRef, mutate: (build: Build) => void, options?: UpdateOptions): Promise<Build>;
  recordEvent(build: Build, event: EventInput, options?: CallOptions): Promise<EventOutcome>;
}

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
  /** A task's start and success as events: only when the Build's CRD does not store conditions. */
  TaskStarted: 'TaskStarted',
  TaskSucceeded: 'TaskSucceeded',
  Succeeded: 'Succeeded',
  Completed: 'Completed',
  Failed: 'Failed',
  Terminated: 'Terminated',
});

export type StopSignal = 'SIGTERM' | 'SIGINT';

/** A process stopped by a signal exits 128 + the signal's number, as a shell reports it. */
const SIGNAL_EXIT_CODES = Object.freeze({ SIGINT: 130, SIGTERM: 143 } as const);

/**
 * How a run ended. `exitCode` is what a process that ran these tasks should exit with: 0 done,
 * 1 a task failed, 130/143 interrupted by SIGINT/SIGTERM.
 */
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
  /** Where the phase is written; default: the client's `phaseField`, else told from the Build as read (`phaseFieldOf`). */
  phaseField?: PhaseField;
  now?: () => Date;
  /** Called when the grace period runs out (default `process.exit`). */
  exit?: (code: number) => void;
}

export const DEFAULT_GRACE_MS = 10_000;

type Mutation = (build: Build) => void;

/** How statuses are spelled for one Build: the vocabulary and the field the phase goes in. */
interface Rules {
  vocabulary: Vocabulary;
  phaseField: PhaseField;
}

/** The rules for a Build as read: the phase field given (option, then client), else the Build's own. */
function rulesFor(build: Build | undefined, client: BuildClient, options: { vocabulary?: Vocabulary | undefined; phaseField?: PhaseField | undefined }): Rules {
  return {
    vocabulary: options.vocabulary ?? DEFAULT_VOCABULARY,
    phaseField: options.phaseField ?? client.phaseField ?? phaseFieldOf(build?.status),
  };
}

function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** `12.3s`, how progress lines and messages show a duration. */
function formatElapsed(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** A status mutation that marks `type` and keeps the phase derived; repeatable, as conflict retries need. */
function mark(
  type: string,
  status: string,
  now: Date,
  rules: Rules,
  extra: { reason?: string | undefined; message?: string | undefined; result?: Partial<BuildStatus> | undefined } = {},
): Mutation {
  return (build) => {
    const target = (build.status ??= {});
    if (extra.result) Object.assign(target, structuredClone(extra.result));
    applyCondition(
      target,
      { ...getCondition(target, type, rules.vocabulary), status: status as ConditionStatus, reason: extra.reason, message: extra.message },
      now,
      rules.vocabulary,
      rules.phaseField,
    );
  };
}

/** One mutation that applies `mutations` in order: transitions of one instant share one write. */
function combine(...mutations: Mutation[]): Mutation {
  return (build) => mutations.forEach((m) => m(build));
}

/**
 * The first write: the first task In Progress, and every other task's condition listed as
 * initialized, so the plan is visible from the start (`kubectl get build -o yaml`) at no extra
 * request. A condition the Build already has is left as it is.
 */
function startMutation(tasks: readonly Task[], at: Date, rules: Rules): Mutation {
  return combine(
    mark(tasks[0]!.type, rules.vocabulary.inProgress, at, rules),
    ...tasks.slice(1).map((t): Mutation => (b) => {
      const status = (b.status ??= {});
      if (!status.conditions?.some((c) => c.type === t.type)) setCondition(status, { type: t.type, status: rules.vocabulary.initialized as ConditionStatus }, at);
    }),
  );
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
    const code = SIGNAL_EXIT_CODES[name];
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

/** The first condition type that occurs twice in `types`, or undefined: each task is its own condition. */
export function duplicateTaskType(types: Iterable<string>): string | undefined {
  const seen = new Set<string>();
  for (const type of types) {
    if (seen.has(type)) return type;
    seen.add(type);
  }
  return undefined;
}

/** What one run's steps share. */
interface RunContext {
  client: BuildClient;
  ref: BuildRef;
  log: Logger;
  rules: Rules;
  now: () => Date;
  signal: AbortSignal;
  emit(build: Build, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

type Failed = Extract<Attempt, { ok: false }>;

/**
 * The failure branch: the task's condition becomes Error (reason from the failure, or
 * `Terminated`), a Warning event follows, and the run ends failed or interrupted.
 */
async function reportTaskFailure(run: RunContext, build: Build, task: Task, failed: Failed, progress: string, elapsed: string): Promise<RunOutcome> {
  const { interrupted } = failed;
  const name = stopSignalOf(run.signal);
  const message = interrupted
    ? `${task.type} was interrupted by ${name} after ${elapsed}`
    : `${task.type} failed after ${elapsed}: ${redact(failed.error.message)}`;
  run.log.error(`${progress} ${task.type} ${interrupted ? 'interrupted' : 'failed'} after ${elapsed}`, {
    reason: failed.reason,
    // The summary only: the whole message (a step's stderr tail, shown live already) goes into
    // the condition and the event.
    error: failed.error instanceof TaskFailure ? failed.error.summary : failed.error.message,
  });
  const stored = await run.client.updateBuildStatus(run.ref, mark(task.type, run.rules.vocabulary.error, run.now(), run.rules, { reason: failed.reason, message }), {
    base: build,
  });
  await run.emit(stored, 'Warning', failed.reason === Reasons.Failed ? 'TaskFailed' : failed.reason, message);
  if (interrupted) return { outcome: 'interrupted', build: stored, exitCode: SIGNAL_EXIT_CODES[name], type: task.type, signal: name };
  return { outcome: 'failed', build: stored, exitCode: 1, type: task.type, error: failed.error };
}

/**
 * Runs `tasks` strictly in order and stops at the first failure. Writes: one GET, then one status
 * write per transition instant (task i's Success and task i+1's In Progress together; a task's
 * results in the write that marks it done), so at most N+1 writes for N tasks; a write that would
 * change nothing the CRD stores is not sent. Events: Normal at start and completion, Warning for a
 * failure or an interruption; when the Build's CRD does not store conditions (the first write's
 * answer shows it), also a Normal event at each task's start and success, so progress stays
 * visible in `kubectl describe build`. Event failures never change the outcome. Errors reporting
 * to the API server (after the transport's retries) are thrown: the build's state cannot be told.
 */
export async function runTasks(client: BuildClient, ref: BuildRef, tasks: readonly Task[], options: RunOptions = {}): Promise<RunOutcome> {
  const log = options.log ?? silentLogger;
  const now = options.now ?? (() => new Date());
  const events = options.events ?? true;
  if (tasks.some((task) => !task.type)) throw new TypeError('every task needs a condition type');
  const duplicate = duplicateTaskType(tasks.map((task) => task.type));
  if (duplicate !== undefined) throw new TypeError(`duplicate condition type ${JSON.stringify(duplicate)}: each task needs its own`);
  // Before anything is sent: a type goes into the Build, the events and every log line.
  for (const task of tasks) validateConditionType(task.type, 'task type');

  const controller = new AbortController();
  const forward = () => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener('abort', forward, { once: true });
  const dispose = options.handleSignals
    ? handleStopSignals(controller, { ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}), ...(options.exit ? { exit: options.exit } : {}), log })
    : () => {};
  const signal = controller.signal;

  try {
    const started = Date.now();
    let build = await client.getBuild(ref);
    if (tasks.length === 0) return { outcome: 'done', build, exitCode: 0 };
    const rules = rulesFor(build, client, options);
    const { vocabulary, phaseField } = rules;
    const run: RunContext = {
      client,
      ref,
      log,
      rules,
      now,
      signal,
      emit: async (b, type, reason, message) => {
        if (events) await client.recordEvent(b, { type, reason, message });
      },
    };
    log.debug(`phase field: status.${phaseField}`);
    let pending = startMutation(tasks, now(), rules);
    // Task events owed once the write they describe has been made (only when conditions are not stored).
    let owed: Array<[reason: string, message: string]> = [];
    let taskEvents = false;
    const total = tasks.length;
    const write = async (mutation: Mutation): Promise<void> => {
      build = await client.updateBuildStatus(ref, mutation, { base: build });
      for (const [reason, message] of owed) await run.emit(build, 'Normal', reason, message);
      owed = [];
    };

    for (let i = 0; i < total; i++) {
      const task = tasks[i]!;
      const progress = `[${i + 1}/${total}]`;
      if (taskEvents) owed.push([Reasons.TaskStarted, `${progress} ${task.type} started`]);
      await write(pending);
      if (i === 0) {
        await run.emit(build, 'Normal', Reasons.Started, `Build started: ${total} task${total === 1 ? '' : 's'} (${tasks.map((t) => t.type).join(', ')})`);
        // The first write carried every task's condition: an answer without them means the CRD drops them.
        if (!Array.isArray(build.status?.conditions)) {
          taskEvents = events;
          log.info(`this Build's CRD does not store conditions: progress is reported in ${events ? 'events' : 'the log only (events are off)'}`);
          if (taskEvents) await run.emit(build, 'Normal', Reasons.TaskStarted, `${progress} ${task.type} started`);
        }
      }

      const taskStarted = Date.now();
      log.info(`${progress} ${task.type}`);
      const attempt = await attemptTask(task, build, signal, log.child({ task: task.type }));
      const elapsed = formatElapsed(Date.now() - taskStarted);
      if (!attempt.ok) return await reportTaskFailure(run, build, task, attempt, progress, elapsed);

      log.info(`${progress} ${task.type} succeeded in ${elapsed}`);
      if (taskEvents) owed.push([Reasons.TaskSucceeded, `${progress} ${task.type} succeeded in ${elapsed}`]);
      const done = mark(task.type, vocabulary.success, now(), rules, {
        reason: Reasons.Succeeded,
        message: attempt.result.message,
        result: attempt.result.status,
      });
      const next = tasks[i + 1];
      if (next && signal.aborted) {
        // Stopped between tasks: record this task's success; the next one never starts.
        await write(done);
        const name = stopSignalOf(signal);
        await run.emit(build, 'Warning', Reasons.Terminated, `Build interrupted by ${name} before ${next.type} started`);
        return { outcome: 'interrupted', build, exitCode: SIGNAL_EXIT_CODES[name], type: undefined, signal: name };
      }
      pending = next ? combine(done, mark(next.type, vocabulary.inProgress, now(), rules)) : done;
    }

    await write(pending);
    const phase = build.status?.[phaseField];
    log.info(`build ${phase === vocabulary.done ? 'done' : `finished (${phaseField} ${JSON.stringify(phase)})`} in ${formatElapsed(Date.now() - started)}`);
    await run.emit(build, 'Normal', Reasons.Completed, `Build completed: ${total} task${total === 1 ? '' : 's'} in ${formatElapsed(Date.now() - started)}`);
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
  options: { base?: Build; signal?: AbortSignal; log?: Logger; vocabulary?: Vocabulary; phaseField?: PhaseField; now?: () => Date } = {},
): Promise<ConditionOutcome<T>> {
  const now = options.now ?? (() => new Date());
  const log = options.log ?? silentLogger;
  const signal = options.signal ?? new AbortController().signal;
  validateConditionType(type);
  const base = options.base ?? (await client.getBuild(ref));
  const rules = rulesFor(base, client, options);
  const { vocabulary } = rules;
  let build = await client.updateBuildStatus(ref, mark(type, vocabulary.inProgress, now(), rules), { base });
  let value: T;
  try {
    signal.throwIfAborted();
    value = await task({ build, signal, log: log.child({ task: type }) });
  } catch (err) {
    const error = errorOf(err);
    const reason = signal.aborted ? Reasons.Terminated : err instanceof TaskFailure ? err.reason : Reasons.Failed;
    build = await client.updateBuildStatus(ref, mark(type, vocabulary.error, now(), rules, { reason, message: redact(error.message) }), {
      base: build,
    });
    return { ok: false, error, build };
  }
  build = await client.updateBuildStatus(ref, mark(type, vocabulary.success, now(), rules, { reason: Reasons.Succeeded }), { base: build });
  return { ok: true, value, build };
}

export const DEFAULT_FATAL_DEADLINE_MS = 10_000;

/**
 * The fatal path: marks the condition that is In Progress (or `type`) as Error and the phase
 * Errored, and records a Warning event. Best effort under a deadline: when the API server cannot
 * be reached it logs why and resolves anyway; it never hangs and never throws. What the process
 * does next (exit, and with which code) is the caller's to decide.
 */
export async function reportFatalError(
  client: BuildClient,
  ref: BuildRef,
  error: unknown,
  options: {
    type?: string;
    base?: Build;
    deadlineMs?: number;
    log?: Logger;
    vocabulary?: Vocabulary;
    phaseField?: PhaseField;
  } = {},
): Promise<void> {
  const log = options.log ?? silentLogger;
  const message = redact(errorOf(error).message);
  const signal = AbortSignal.timeout(options.deadlineMs ?? DEFAULT_FATAL_DEADLINE_MS);
  log.error(`fatal: ${message}`);
  try {
    const at = new Date();
    const base = options.base ?? (await client.getBuild(ref, { signal }));
    const rules = rulesFor(base, client, options);
    const { vocabulary } = rules;
    const build = await client.updateBuildStatus(
      ref,
      (draft) => {
        const status = (draft.status ??= {});
        const type = options.type ?? status.conditions?.find((c) => c.status === vocabulary.inProgress)?.type;
        if (type) mark(type, vocabulary.error, at, rules, { reason: Reasons.Failed, message })(draft);
        status[rules.phaseField] = vocabulary.errored as BuildPhase;
      },
      { base, signal },
    );
    await client.recordEvent(build, { type: 'Warning', reason: Reasons.Failed, message }, { signal });
  } catch (err) {
    log.error(`could not record the failure on Build ${ref.namespace}/${ref.name}: ${errorOf(err).message}`);
  }
}
