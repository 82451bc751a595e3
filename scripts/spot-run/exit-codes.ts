/**
 * spot-run's exit codes and the one place a failure is mapped to one. The library reports how a
 * run ended; which number a pod's entrypoint exits with is the command's contract (--help, README).
 */
import { isBuildReplaced, isForbidden, isNotFound, isSpotError, isUnauthorized } from '../../lib/errors.js';
import { isTlsFailure } from '../../lib/retry.js';
import type { RunOutcome } from '../../lib/runner.js';
import type { Output } from './ending.js';

export type { Output, TerminationLogSetting } from './ending.js';

export const ExitCodes = Object.freeze({
  /** All steps succeeded and the run wrote phase Done. */
  Done: 0,
  /** A step failed or the build's --timeout passed (phase Errored); also an internal error. */
  Failed: 1,
  /** Usage or configuration error: nothing was sent. */
  Usage: 2,
  /** The API server would not take the report. */
  ReportFailed: 3,
  SIGINT: 130,
  SIGTERM: 143,
});

/** An expected failure: one line on stderr and a documented exit code, never a stack trace. */
export class CommandFailure extends Error {
  /** Where the line and the termination message go, once the flags that say so are parsed. */
  output: Output | undefined;
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** A bad flag, environment value or steps file: exit 2, with a pointer to --help. */
export function usageError(message: string): CommandFailure {
  return new CommandFailure(ExitCodes.Usage, `${message} (see spot-run --help)`);
}

/**
 * The exit code for a run that came to its end: 0 only for `done`, which the runner returns only
 * once the write of phase Done was taken. After a stop the code says how the run ended (130/143),
 * whether or not its report got through in the grace period: the termination message says that.
 */
export function outcomeExitCode(outcome: RunOutcome): number {
  switch (outcome.outcome) {
    case 'done':
      return ExitCodes.Done;
    case 'failed':
      return ExitCodes.Failed;
    case 'interrupted':
      return ExitCodes[outcome.signal];
  }
}

/**
 * What an error that stopped the report means, and so what the command does with it:
 *   `bug`         not one of the library's errors (a TypeError, say): an internal error, with its
 *                 stack, never passed off as the API server's refusal;
 *   `config`      exit 2 at once: the request could not even be formed (a token or server that
 *                 undici refuses); nothing was sent, and the fatal path would fail the same way;
 *   `final`       exit 3 at once: the Build is gone or replaced by another of the same name (which
 *                 must not be written), we may not write it, or asking again cannot give another
 *                 answer (a TLS failure is configuration, not weather; a GET answered with
 *                 something that is not a usable Build, which the fatal path would GET again);
 *   `recordable`  exit 3 after one bounded try to record the failure on the Build (a request body
 *                 over the cap is one: the fatal path's write is small).
 */
export type ReportFailureKind = 'bug' | 'config' | 'final' | 'recordable';

export function classifyReportFailure(err: unknown): ReportFailureKind {
  if (!isSpotError(err)) return 'bug';
  if (err.code === 'ERR_SPOT_CONFIG' || err.code === 'ERR_SPOT_INVALID_NAME') return 'config';
  if (isNotFound(err) || isForbidden(err) || isUnauthorized(err) || isBuildReplaced(err)) return 'final';
  const e = err as { code: string; causeCode?: string; target?: { method?: string } };
  if (e.code === 'ERR_SPOT_NETWORK' && isTlsFailure(e.causeCode)) return 'final';
  if (e.code === 'ERR_SPOT_RESPONSE' && e.target?.method === 'GET') return 'final';
  return 'recordable';
}
