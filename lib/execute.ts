/**
 * The run itself: the tasks in order, each attempted under the stop, and the branches that end it
 * (done, a task failed or was interrupted, a stop between tasks), each reported in one write.
 */
import { AbortedError, errorOf, TaskFailure } from './errors.js';
import type { Logger } from './log.js';
import { MAX_CONDITION_MESSAGE_BYTES, sanitizeMessage } from './messages.js';
import type { RunOutcome, Task, TaskResult } from './runner.js';
import type { Run } from './run-state.js';
import { SIGNAL_EXIT_CODES } from './signals.js';
import { combine, Reasons, startMutation, type Mutation } from './task-rules.js';
import type { Build } from './types.js';

/** `12.3s`, how progress lines and messages show a duration. */
function formatElapsed(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
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

export async function execute(run: Run, tasks: readonly Task[]): Promise<RunOutcome> {
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
  const { vocabulary } = run.rules;
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
  const { phaseField } = run.rules;
  const phase = build.status?.[phaseField];
  log.info(`build ${phase === vocabulary.done ? 'done' : `finished (${phaseField} ${JSON.stringify(phase)})`} in ${formatElapsed(Date.now() - started)}`);
  const message = `Build completed: ${summary()}`;
  await run.emit('Normal', Reasons.Completed, message);
  return { outcome: 'done', build, exitCode: 0, message, reported: true };
}
