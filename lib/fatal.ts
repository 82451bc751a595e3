/**
 * The fatal path, best effort under a deadline: the Go package's RecordErrorAndPanic, without the
 * panic (what the process does next is the caller's to decide).
 */
import type { PhaseField, Vocabulary } from './conditions.js';
import { errorOf } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { MAX_CONDITION_MESSAGE_BYTES, sanitizeMessage } from './messages.js';
import type { BuildClient } from './runner.js';
import { writeStatus } from './status-write.js';
import { mark, Reasons, rulesFor } from './task-rules.js';
import type { Build, BuildPhase, BuildRef } from './types.js';

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
    const build = await writeStatus(
      client,
      ref,
      (draft) => {
        const status = (draft.status ??= {});
        const type = options.type ?? status.conditions?.find((c) => c.status === vocabulary.inProgress)?.type;
        if (type) mark(type, vocabulary.error, at, rules, { reason: Reasons.Failed, message })(draft);
        status[rules.phaseField] = vocabulary.errored as BuildPhase;
      },
      { base, signal, uid: options.uid },
      rules,
      log,
    );
    await client.recordEvent(build, { type: 'Warning', reason: Reasons.Failed, message }, { signal });
    return { recorded: true };
  } catch (err) {
    const why = errorOf(err);
    log.debug(`could not record the failure on Build ${ref.namespace}/${ref.name}: ${why.message}`);
    return { recorded: false, error: why };
  }
}
