/**
 * Runs a build's tasks one after another, each wrapped in a status condition, with events, a
 * fatal path and signal handling. Transitions that happen at the same instant share one status
 * write, so N tasks cost 1 GET + N+1 status writes when nothing conflicts.
 */
import type { CallOptions, UpdateOptions } from './builds.js';
import {
  applyCondition,
  DEFAULT_VOCABULARY,
  derivePhase,
  getCondition,
  phaseFieldOf,
  setCondition,
  validateConditionType,
  type PhaseField,
  type Vocabulary,
} from './conditions.js';
import { AbortedError, isAborted, TaskFailure } from './errors.js';
import type { EventInput, EventOutcome } from './events.js';
import { silentLogger, type Logger } from './log.js';
import { MAX_CONDITION_MESSAGE_BYTES, sanitizeMessage } from './messages.js';
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
 * 1 a task failed, 130/143 interrupted by SIGINT/SIGTERM. `reported` says whether the API server
 * took the status write that tells it (false only after a stop, when the grace period ran out or
 * the server refused; without a stop a refused report is thrown instead). `message` is what the
 * condition and the Warning event say (or would have said).
 */
export type RunOutcome =
  | { outcome: 'done'; build: Build; exitCode: 0; message: string; reported: true }
  | { outcome: 'failed'; build: Build; exitCode: 1; type: string; reason: string; message: string; error: Error; reported: boolean }
  | {
      outcome: 'interrupted';
      /** Undefined when the stop came before the Build was read. */
      build: Build | undefined;
      exitCode: 130 | 143;
      /** The task that was running, undefined when the stop came between tasks or before the first. */
      type: string | undefined;
      reason: string;
      signal: StopSignal;
      message: string;
      reported: boolean;
    };

/** Where a run is: what a forced exit (a second signal, the grace period over) needs to say. */
export interface RunProgress {
  /** The Build as last stored; undefined before the first read. */
  build: Build | undefined;
  /** The task running now, if any. */
  task: string | undefined;
}

export interface RunOptions {
  log?: Logger;
  /** Aborting it interrupts the run; `signal.reason` may be a `StopSignal`. */
  signal?: AbortSignal;
  /** Install SIGTERM/SIGINT handlers for the run's duration (what a pod's entrypoint wants). */
  handleSignals?: boolean;
  /**
   * How long the interrupted run may take to report (default 10 s), counted from the stop: the
   * report's requests are cut short before it ends. With `handleSignals`, the process exits
   * when it is over.
   */
  graceMs?: number;
  /** Record Normal/Warning events (default true). */
  events?: boolean;
  vocabulary?: Vocabulary;
  /** Where the phase is written; default: the client's `phaseField`, else told from the Build as read (`phaseFieldOf`). */
  phaseField?: PhaseField;
  now?: () => Date;
  /** Called when the grace period runs out (default `process.exit`). */
  exit?: (code: number) => void;
  /** Called whenever the stored Build or the running task changes. */
  onProgress?: (progress: RunProgress) => void;
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

/**
 * A status mutation that marks `type` and keeps the phase derived (over `owned` when given: the
 * run's own conditions); repeatable, as conflict retries need. Messages are sanitized here, the
 * one place a condition message is made.
 */
function mark(
  type: string,
  status: string,
  now: Date,
  rules: Rules,
  extra: { reason?: string | undefined; message?: string | undefined; result?: Partial<BuildStatus> | undefined } = {},
  owned?: ReadonlySet<string>,
): Mutation {
  const message = extra.message === undefined ? undefined : sanitizeMessage(extra.message, MAX_CONDITION_MESSAGE_BYTES);
  return (build) => {
    const target = (build.status ??= {});
    if (extra.result) Object.assign(target, structuredClone(extra.result));
    applyCondition(
      target,
      { ...getCondition(target, type, rules.vocabulary), status: status as ConditionStatus, reason: extra.reason, message },
      now,
      rules.vocabulary,
      rules.phaseField,
      owned,
    );
  };
}

/** One mutation that applies `mutations` in order: transitions of one instant share one write. */
function combine(...mutations: Mutation[]): Mutation {
  return (build) => mutations.forEach((m) => m(build));
}

/**
 * The first write: the first task In Progress, and every other task's condition initialized, so
 * the plan is visible from the start (`kubectl get build -o yaml`) at no extra request. The plan's
 * conditions are this run's: one a previous attempt left (an `Error` with its reason and message)
 * starts over as initialized. Conditions outside the plan are left as they are.
 */
function startMutation(tasks: readonly Task[], at: Date, rules: Rules, owned: ReadonlySet<string>): Mutation {
  const { vocabulary, phaseField } = rules;
  return combine(
    mark(tasks[0]!.type, vocabulary.inProgress, at, rules, {}, owned),
    ...tasks.slice(1).map((t): Mutation => (b) => void setCondition((b.status ??= {}), { type: t.type, status: vocabulary.initialized as ConditionStatus }, at)),
    // Derived again once the rest are reset: a previous attempt's Error must not make this run Errored.
    (b) => void (b.status![phaseField] = derivePhase(b.status!.conditions, vocabulary, owned)),
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

/**
 * What one run's steps share: the client, the Build it is tied to, and the signals of its calls.
 *
 * Every call that moves the run forward (the first GET and its retries, a `Retry-After` wait, a
 * conflict re-read, the writes that start a task) is cut short by a stop at once. The calls that
 * report the run's end run under the stop until it comes, then under what is left of the grace
 * period, less a small reserve for the caller to exit cleanly.
 */
class Run {
  build: Build | undefined;
  task: string | undefined;
  /** How this Build spells statuses and where its phase goes: known once it is read. */
  rules!: Rules;
  /**
   * When the Build's CRD does not store conditions (the first write's answer shows it), each
   * task's start and success are events too, owed until the write they describe is made.
   */
  taskEvents = false;
  #owed: Array<[reason: string, message: string]> = [];
  #uid: string | undefined;
  #stoppedAt: number | undefined;
  #reportSignal: AbortSignal | undefined;
  readonly owned: ReadonlySet<string>;

  constructor(
    readonly client: BuildClient,
    readonly ref: BuildRef,
    readonly log: Logger,
    private readonly ruleOptions: { vocabulary?: Vocabulary | undefined; phaseField?: PhaseField | undefined },
    readonly now: () => Date,
    readonly signal: AbortSignal,
    readonly events: boolean,
    readonly graceMs: number,
    tasks: readonly Task[],
    private readonly onProgress: ((progress: RunProgress) => void) | undefined,
  ) {
    this.owned = new Set(tasks.map((t) => t.type));
    if (signal.aborted) this.#stoppedAt = Date.now();
    else signal.addEventListener('abort', () => (this.#stoppedAt = Date.now()), { once: true });
  }

  get stopped(): boolean {
    return this.signal.aborted;
  }

  get stopName(): StopSignal {
    return stopSignalOf(this.signal);
  }

  /** The signal of a call that reports the run's end: the stop itself, then (once stopped) the rest of the grace period. */
  reportSignal(): AbortSignal {
    if (!this.signal.aborted) return this.signal;
    if (!this.#reportSignal) {
      const reserve = Math.min(500, this.graceMs / 10);
      this.#reportSignal = AbortSignal.timeout(Math.max(1, this.#stoppedAt! + this.graceMs - reserve - Date.now()));
    }
    return this.#reportSignal;
  }

  #progress(): void {
    this.onProgress?.({ build: this.build, task: this.task });
  }

  setTask(task: string | undefined): void {
    this.task = task;
    this.#progress();
  }

  get vocabulary(): Vocabulary {
    return this.rules.vocabulary;
  }

  async read(): Promise<Build> {
    this.build = await this.client.getBuild(this.ref, { signal: this.signal });
    // Every later write of the run is tied to this uid (client-go's Preconditions{UID}).
    this.#uid = this.build.metadata.uid;
    this.rules = rulesFor(this.build, this.client, this.ruleOptions);
    this.log.debug(`phase field: status.${this.rules.phaseField}`);
    this.#progress();
    return this.build;
  }

  /** A status write, cut short by the stop unless `signal` says otherwise; then the task events it owes. */
  async store(mutation: Mutation, signal: AbortSignal = this.signal): Promise<Build> {
    this.build = await this.client.updateBuildStatus(this.ref, mutation, { base: this.build, uid: this.#uid, signal });
    this.#progress();
    const owed = this.#owed;
    this.#owed = [];
    for (const [reason, message] of owed) await this.emit('Normal', reason, message);
    return this.build;
  }

  /** A task event for the next write, when the CRD does not store conditions. */
  owe(reason: string, message: string): void {
    if (this.taskEvents) this.#owed.push([reason, message]);
  }

  /**
   * `store` for a write that reports the run's end: when the stop cuts it short (a wait on a slow
   * server, say), it is sent again at once under the grace period instead of being given up.
   */
  async report(mutation: Mutation): Promise<Build> {
    const signal = this.reportSignal();
    try {
      return await this.store(mutation, signal);
    } catch (err) {
      if (signal !== this.signal || !this.signal.aborted || !isAborted(err)) throw err;
      return await this.store(mutation, this.reportSignal());
    }
  }

  /** An event; one that reports the run's end (the default) may use the grace period. */
  async emit(type: 'Normal' | 'Warning', reason: string, message: string, signal: AbortSignal = this.reportSignal()): Promise<void> {
    if (this.events && this.build) await this.client.recordEvent(this.build, { type, reason, message }, { signal });
  }

  mark(type: string, status: string, extra: Parameters<typeof mark>[4] = {}): Mutation {
    return mark(type, status, this.now(), this.rules, extra, this.owned);
  }
}

type Failed = Extract<Attempt, { ok: false }>;

/**
 * Sends a report that may follow a stop: `report` resolves to whether the API server took it.
 * Without a stop a refusal is thrown (the caller's exit 3); after one, the run ends anyway, so it is
 * logged and the outcome says `reported: false`.
 */
async function reportEnd(run: Run, what: string, report: () => Promise<unknown>): Promise<boolean> {
  try {
    await report();
    return true;
  } catch (err) {
    if (!run.stopped) throw err;
    run.log.error(`could not report ${what} within the grace period: ${errorOf(err).message}`);
    return false;
  }
}

/**
 * The failure branch: the task's condition becomes Error (reason from the failure, or
 * `Terminated`), a Warning event follows, and the run ends failed or interrupted.
 */
async function reportTaskFailure(run: Run, task: Task, failed: Failed, progress: string, elapsed: string): Promise<RunOutcome> {
  const { interrupted } = failed;
  const name = run.stopName;
  const message = sanitizeMessage(
    interrupted ? `${task.type} was interrupted by ${name} after ${elapsed}` : `${task.type} failed after ${elapsed}: ${failed.error.message}`,
    MAX_CONDITION_MESSAGE_BYTES,
  );
  run.log.error(`${progress} ${task.type} ${interrupted ? 'interrupted' : 'failed'} after ${elapsed}`, {
    reason: failed.reason,
    // The summary only: the whole message (a step's stderr tail, shown live already) goes into
    // the condition and the event.
    error: failed.error instanceof TaskFailure ? failed.error.summary : failed.error.message,
  });
  const reported = await reportEnd(run, `that ${task.type} ${interrupted ? 'was interrupted' : 'failed'}`, async () => {
    await run.report(run.mark(task.type, run.vocabulary.error, { reason: failed.reason, message }));
  });
  if (reported) await run.emit('Warning', failed.reason === Reasons.Failed ? 'TaskFailed' : failed.reason, message);
  const build = run.build!;
  if (interrupted) {
    return { outcome: 'interrupted', build, exitCode: SIGNAL_EXIT_CODES[name], type: task.type, reason: failed.reason, signal: name, message, reported };
  }
  return { outcome: 'failed', build, exitCode: 1, type: task.type, reason: failed.reason, message, error: failed.error, reported };
}

/**
 * Stopped between tasks: `finished` (the last task's Success, not stored yet) is recorded, and
 * `next`, which never starts, becomes Error with reason `Terminated`, so the phase says Errored as
 * the exit code does. Stopped before the first task started, there is nothing to report.
 */
async function reportStopBetween(run: Run, finished: Mutation | undefined, next: Task): Promise<RunOutcome> {
  const name = run.stopName;
  const base = { outcome: 'interrupted', exitCode: SIGNAL_EXIT_CODES[name], type: undefined, reason: Reasons.Terminated, signal: name } as const;
  const message = `Build interrupted by ${name} before ${next.type} started`;
  if (!finished) return { ...base, build: run.build, message, reported: false };
  const stopped = combine(finished, run.mark(next.type, run.vocabulary.error, { reason: Reasons.Terminated, message }));
  const reported = await reportEnd(run, 'the interruption', () => run.report(stopped));
  if (reported) await run.emit('Warning', Reasons.Terminated, message);
  return { ...base, build: run.build, message, reported };
}

async function execute(run: Run, tasks: readonly Task[]): Promise<RunOutcome> {
  const started = Date.now();
  const { log } = run;
  try {
    await run.read();
  } catch (err) {
    if (!run.stopped) throw err;
    const name = run.stopName;
    const message = `Build interrupted by ${name} before it was read`;
    return { outcome: 'interrupted', build: undefined, exitCode: SIGNAL_EXIT_CODES[name], type: undefined, reason: Reasons.Terminated, signal: name, message, reported: false };
  }
  const total = tasks.length;
  const summary = () => `${total} task${total === 1 ? '' : 's'} in ${formatElapsed(Date.now() - started)}`;
  if (total === 0) return { outcome: 'done', build: run.build!, exitCode: 0, message: `Build completed: ${summary()}`, reported: true };
  const { vocabulary, phaseField } = run.rules;
  let pending = startMutation(tasks, run.now(), run.rules, run.owned);
  /** The last task's Success while it is not stored yet. */
  let finished: Mutation | undefined;

  for (let i = 0; i < total; i++) {
    const task = tasks[i]!;
    const progress = `[${i + 1}/${total}]`;
    run.owe(Reasons.TaskStarted, `${progress} ${task.type} started`);
    try {
      await run.store(pending);
    } catch (err) {
      if (!run.stopped) throw err;
      return await reportStopBetween(run, finished, task);
    }
    finished = undefined;
    if (i === 0) {
      await run.emit('Normal', Reasons.Started, `Build started: ${total} task${total === 1 ? '' : 's'} (${tasks.map((t) => t.type).join(', ')})`, run.signal);
      // The first write carried every task's condition: an answer without them means the CRD drops them.
      if (!Array.isArray(run.build?.status?.conditions)) {
        run.taskEvents = run.events;
        log.info(`this Build's CRD does not store conditions: progress is reported in ${run.events ? 'events' : 'the log only (events are off)'}`);
        if (run.taskEvents) await run.emit('Normal', Reasons.TaskStarted, `${progress} ${task.type} started`, run.signal);
      }
    }

    const taskStarted = Date.now();
    log.info(`${progress} ${task.type}`);
    run.setTask(task.type);
    const attempt = await attemptTask(task, run.build!, run.signal, log.child({ task: task.type }));
    const elapsed = formatElapsed(Date.now() - taskStarted);
    if (!attempt.ok) return await reportTaskFailure(run, task, attempt, progress, elapsed);
    run.setTask(undefined);

    log.info(`${progress} ${task.type} succeeded in ${elapsed}`);
    run.owe(Reasons.TaskSucceeded, `${progress} ${task.type} succeeded in ${elapsed}`);
    finished = run.mark(task.type, vocabulary.success, { reason: Reasons.Succeeded, message: attempt.result.message, result: attempt.result.status });
    const next = tasks[i + 1];
    if (next && run.stopped) return await reportStopBetween(run, finished, next);
    pending = next ? combine(finished, run.mark(next.type, vocabulary.inProgress)) : finished;
  }

  // Every task succeeded: the last write marks the Build Done, under the grace period if a stop cut it.
  try {
    await run.report(pending);
  } catch (err) {
    if (!run.stopped) throw err;
    const name = run.stopName;
    log.error(`could not report the build's end within the grace period: ${errorOf(err).message}`);
    const message = `Build interrupted by ${name} while reporting that every task succeeded`;
    return { outcome: 'interrupted', build: run.build, exitCode: SIGNAL_EXIT_CODES[name], type: undefined, reason: Reasons.Terminated, signal: name, message, reported: false };
  }
  const build = run.build!;
  const phase = build.status?.[phaseField];
  log.info(`build ${phase === vocabulary.done ? 'done' : `finished (${phaseField} ${JSON.stringify(phase)})`} in ${formatElapsed(Date.now() - started)}`);
  const message = `Build completed: ${summary()}`;
  await run.emit('Normal', Reasons.Completed, message);
  return { outcome: 'done', build, exitCode: 0, message, reported: true };
}

/**
 * Runs `tasks` strictly in order and stops at the first failure. Writes: one GET, then one status
 * write per transition instant (task i's Success and task i+1's In Progress together; a task's
 * results in the write that marks it done). Events: Normal at start and completion, Warning for a
 * failure or an interruption; their failures never change the outcome.
 *
 * The phase is derived from the run's own conditions (the tasks' types) only: conditions it does
 * not own are left as they are and never change the outcome or the phase it writes.
 *
 * Every write is tied to the uid the Build had when it was read: a Build deleted and created again
 * under the same name stops the run with a `BuildReplacedError`. A stop (the signal) cuts every
 * wait short; with no task started yet the run ends at once, otherwise the report runs under the
 * grace period. Errors reporting to the API server without a stop (after the transport's retries)
 * are thrown: the build's state cannot be told.
 */
export async function runTasks(client: BuildClient, ref: BuildRef, tasks: readonly Task[], options: RunOptions = {}): Promise<RunOutcome> {
  const log = options.log ?? silentLogger;
  if (tasks.some((task) => !task.type)) throw new TypeError('every task needs a condition type');
  const duplicate = duplicateTaskType(tasks.map((task) => task.type));
  if (duplicate !== undefined) throw new TypeError(`duplicate condition type ${JSON.stringify(duplicate)}: each task needs its own`);
  // Before anything is sent: a type goes into the Build, the events and every log line.
  for (const task of tasks) validateConditionType(task.type, 'task type');

  const controller = new AbortController();
  const forward = () => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener('abort', forward, { once: true });
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const dispose = options.handleSignals ? handleStopSignals(controller, { graceMs, ...(options.exit ? { exit: options.exit } : {}), log }) : () => {};
  const run = new Run(
    client,
    ref,
    log,
    { vocabulary: options.vocabulary, phaseField: options.phaseField },
    options.now ?? (() => new Date()),
    controller.signal,
    options.events ?? true,
    graceMs,
    tasks,
    options.onProgress,
  );
  try {
    return await execute(run, tasks);
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
    build = await client.updateBuildStatus(ref, mark(type, vocabulary.error, now(), rules, { reason, message: error.message }), {
      base: build,
    });
    return { ok: false, error, build };
  }
  build = await client.updateBuildStatus(ref, mark(type, vocabulary.success, now(), rules, { reason: Reasons.Succeeded }), { base: build });
  return { ok: true, value, build };
}

export const DEFAULT_FATAL_DEADLINE_MS = 10_000;

/** Whether the fatal path got the failure onto the Build, and if not, why. */
export type FatalReport = { recorded: true } | { recorded: false; error: Error };

/**
 * The fatal path: marks the condition that is In Progress (or `type`) as Error and the phase
 * Errored, and records a Warning event. Best effort under a deadline: when the API server cannot
 * be reached it resolves anyway, saying why (logged at debug level: the caller tells the failure
 * in one line); it never hangs and never throws. What the process does next (exit, and with which
 * code) is the caller's to decide.
 */
export async function reportFatalError(
  client: BuildClient,
  ref: BuildRef,
  error: unknown,
  options: {
    type?: string;
    base?: Build;
    /** The uid of the Build the failure is about: a Build re-created under the same name is left alone. */
    uid?: string | undefined;
    deadlineMs?: number;
    /** Cuts the report short (a stop), besides the deadline. */
    signal?: AbortSignal;
    log?: Logger;
    vocabulary?: Vocabulary;
    phaseField?: PhaseField;
  } = {},
): Promise<FatalReport> {
  const log = options.log ?? silentLogger;
  const message = sanitizeMessage(errorOf(error).message, MAX_CONDITION_MESSAGE_BYTES);
  const deadline = AbortSignal.timeout(options.deadlineMs ?? DEFAULT_FATAL_DEADLINE_MS);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  log.debug(`fatal: ${message}`);
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
      { base, signal, uid: options.uid },
    );
    await client.recordEvent(build, { type: 'Warning', reason: Reasons.Failed, message }, { signal });
    return { recorded: true };
  } catch (err) {
    const why = errorOf(err);
    log.debug(`could not record the failure on Build ${ref.namespace}/${ref.name}: ${why.message}`);
    return { recorded: false, error: why };
  }
}
