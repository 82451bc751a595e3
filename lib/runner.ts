/**
 * Runs a build's tasks one after another, each wrapped in a status condition, with events, a
 * fatal path and signal handling. Transitions that happen at the same instant share one status
 * write, so N tasks cost 1 GET + N+1 status writes when nothing conflicts.
 *
 * This module is the runner's front: runTasks and the public types. The parts live beside it:
 * task-rules (the pure status rules), status-write (the one status write), run-state (one run's
 * state and I/O), execute (the run and the branches that end it), signals (SIGTERM/SIGINT), and
 * the single-condition helpers monitor (monitorCondition) and fatal (reportFatalError).
 */
import type { CallOptions, UpdateOptions } from './builds.js';
import { validateConditionType, type PhaseField, type Vocabulary } from './conditions.js';
import type { EventInput, EventOutcome } from './events.js';
import { execute } from './execute.js';
import { silentLogger, type Logger } from './log.js';
import { Run } from './run-state.js';
import { DEFAULT_GRACE_MS, handleStopSignals, type StopSignal } from './signals.js';
import type { Build, BuildRef, BuildStatus } from './types.js';

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
