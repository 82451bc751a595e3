/**
 * The termination message: how a run ended, as at most 4096 bytes of JSON in the file the kubelet
 * reads when the container stops (`terminationMessagePath`, default `/dev/termination-log`). It
 * reaches the pod's status whatever happened to the status writes (an unreachable API server, a
 * refused report, a forced exit), so the operator or a person can still tell the outcome:
 *
 *   kubectl get pod NAME -o jsonpath='{.status.containerStatuses[0].state.terminated.message}'
 *
 * Building it is pure (`summarizeOutcome`, `summarizeError`, `formatTerminationMessage`); writing
 * it (`writeTerminationMessage`) is one synchronous write, so it can be the last thing a process
 * does, even from a signal handler that exits next.
 */
import { writeFileSync } from 'node:fs';
import { DEFAULT_VOCABULARY, type Vocabulary } from './conditions.js';
import { fitMessage, sanitizeMessage } from './messages.js';
import { Reasons, type RunOutcome } from './runner.js';

/** The kubelet reads at most this much of the file (and of all containers' messages together, 12 KiB). */
export const TERMINATION_MESSAGE_MAX_BYTES = 4096;
/** Kubernetes' default `terminationMessagePath`. */
export const DEFAULT_TERMINATION_LOG = '/dev/termination-log';

export interface TerminationSummary {
  /** `error`: the run could not be carried out or reported (a usage error, the API server refusing, a bug). */
  outcome: 'done' | 'failed' | 'interrupted' | 'error';
  exitCode: number;
  /** The phase this outcome means for the Build: `Done`, else `Errored` (whether or not it was written: see `reported`). */
  phase: string;
  /** The task that failed or was interrupted (or was running when the run could not go on). */
  task?: string;
  /** The failed or interrupted task's condition reason (`StepFailed`, `Timeout`, `Terminated`...). */
  reason?: string;
  /** One sentence or a few lines: the condition's message, or the error. */
  message: string;
  /** Whether the API server took the status write that tells this outcome. */
  reported: boolean;
}

/** The summary of a run that `runTasks` saw to its end. */
export function summarizeOutcome(outcome: RunOutcome, vocabulary: Vocabulary = DEFAULT_VOCABULARY): TerminationSummary {
  switch (outcome.outcome) {
    case 'done':
      return { outcome: 'done', exitCode: outcome.exitCode, phase: vocabulary.done, message: outcome.message, reported: outcome.reported };
    case 'failed':
    case 'interrupted':
      return {
        outcome: outcome.outcome,
        exitCode: outcome.exitCode,
        phase: vocabulary.errored,
        ...(outcome.type !== undefined ? { task: outcome.type } : {}),
        reason: outcome.reason,
        message: outcome.message,
        reported: outcome.reported,
      };
  }
}

/**
 * The summary of a run that is made to exit before it could finish reporting its interruption (a
 * second signal, or the grace period over): interrupted, not reported, with the task that was
 * running (see `RunOptions.onProgress`).
 */
export function summarizeForcedExit(exitCode: number, task: string | undefined, vocabulary: Vocabulary = DEFAULT_VOCABULARY): TerminationSummary {
  const name = exitCode === 130 ? 'SIGINT' : 'SIGTERM';
  return {
    outcome: 'interrupted',
    exitCode,
    phase: vocabulary.errored,
    ...(task !== undefined ? { task } : {}),
    reason: Reasons.Terminated,
    message: `${task !== undefined ? `${task} was interrupted by ${name}` : `interrupted by ${name}`}; exited before the report was finished`,
    reported: false,
  };
}

/** The summary of a run that ended in an error: `exitCode` is the caller's (spot-run: 1, 2 or 3). */
export function summarizeError(
  error: unknown,
  init: { exitCode: number; task?: string | undefined; reported?: boolean; vocabulary?: Vocabulary },
): TerminationSummary {
  const message = error instanceof Error ? error.message : String(error);
  return {
    outcome: 'error',
    exitCode: init.exitCode,
    phase: (init.vocabulary ?? DEFAULT_VOCABULARY).errored,
    ...(init.task !== undefined ? { task: init.task } : {}),
    message,
    reported: init.reported ?? false,
  };
}

/**
 * The summary as one line of JSON within `maxBytes` (UTF-8): the message is redacted, stripped of
 * escape sequences and control characters, and cut (its first line and its end kept) to fit.
 */
export function formatTerminationMessage(summary: TerminationSummary, maxBytes = TERMINATION_MESSAGE_MAX_BYTES): string {
  const bounded = (text: string | undefined, limit: number) => (text === undefined ? undefined : sanitizeMessage(text, limit));
  const fields = { ...summary, task: bounded(summary.task, 512), reason: bounded(summary.reason, 128), message: '' };
  const json = (message: string) => JSON.stringify({ ...fields, message });
  const room = maxBytes - Buffer.byteLength(json(''), 'utf8');
  // JSON never takes fewer bytes than the text, so this cut loses nothing that could fit.
  const clean = sanitizeMessage(summary.message, room);
  const fits = (limit: number) => Buffer.byteLength(json(fitMessage(clean, limit)), 'utf8') <= maxBytes;
  if (fits(room)) return json(clean);
  // JSON escapes (a quote or a newline takes two bytes) pushed it over: the largest cut that fits.
  let [lo, hi] = [0, room];
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return json(fitMessage(clean, lo));
}

/** Writes the summary to `path` (one synchronous write; throws what the write throws). */
export function writeTerminationMessage(path: string, summary: TerminationSummary): void {
  writeFileSync(path, formatTerminationMessage(summary));
}
