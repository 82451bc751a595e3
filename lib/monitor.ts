/**
 * One task in one condition, outside runTasks: the Go package's MonitorCondition.
 */
import { validateConditionType, type PhaseField, type Vocabulary } from './conditions.js';
import { errorOf, TaskFailure } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import type { BuildClient, TaskContext } from './runner.js';
import { writeStatus } from './status-write.js';
import { mark, Reasons, rulesFor } from './task-rules.js';
import type { Build, BuildRef } from './types.js';

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
  let build = await writeStatus(client, ref, mark(type, vocabulary.inProgress, now(), rules), { base }, rules, log);
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
