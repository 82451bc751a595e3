/**
 * The runner's status rules, pure (no client, no clock): how statuses are spelled for one Build,
 * the mutations that mark a task's condition and keep the phase derived, and the first write of a
 * run. A mutation is repeatable, as conflict retries need; transitions of one instant are combined
 * into one write.
 */
import {
  applyCondition,
  DEFAULT_VOCABULARY,
  derivePhase,
  getCondition,
  phaseFieldOf,
  setCondition,
  type PhaseField,
  type Vocabulary,
} from './conditions.js';
import { isInvalid } from './errors.js';
import { MAX_CONDITION_MESSAGE_BYTES, sanitizeMessage } from './messages.js';
import type { Build, BuildStatus, ConditionStatus } from './types.js';

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

export type Mutation = (build: Build) => void;

/** How statuses are spelled for one Build: the vocabulary and the field the phase goes in. */
export interface Rules {
  vocabulary: Vocabulary;
  phaseField: PhaseField;
  /** Nobody gave the phase field and the Build had neither phase nor stage: `phaseField` is a guess (see writeStatus). */
  guessed: boolean;
}

/** The rules for a Build as read: the phase field given (option, then client), else the Build's own. */
export function rulesFor(
  build: Build | undefined,
  client: { readonly phaseField?: PhaseField | undefined },
  options: { vocabulary?: Vocabulary | undefined; phaseField?: PhaseField | undefined },
): Rules {
  const given = options.phaseField ?? client.phaseField;
  return {
    vocabulary: options.vocabulary ?? DEFAULT_VOCABULARY,
    phaseField: given ?? phaseFieldOf(build?.status),
    guessed: given === undefined && build?.status?.phase === undefined && build?.status?.stage === undefined,
  };
}

/** The answer of a CRD whose schema requires status.stage to a status without it (422, a Required cause). */
export const requiresStage = (err: unknown): boolean =>
  isInvalid(err) && (err.details?.causes ?? []).some((c) => c.field === 'status.stage' && c.reason === 'FieldValueRequired');

/** What a mark may add besides the status: the condition's reason and message, and top-level status fields. */
export interface MarkExtra {
  reason?: string | undefined;
  message?: string | undefined;
  result?: Partial<BuildStatus> | undefined;
}

/**
 * A status mutation that marks `type` and keeps the phase derived (over `owned` when given: the
 * run's own conditions); repeatable, as conflict retries need. Messages are sanitized here, the
 * one place a condition message is made.
 */
export function mark(type: string, status: string, now: Date, rules: Rules, extra: MarkExtra = {}, owned?: ReadonlySet<string>): Mutation {
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
export function combine(...mutations: Mutation[]): Mutation {
  return (build) => mutations.forEach((m) => m(build));
}

/**
 * The first write: the first task In Progress, and every other task's condition initialized, so
 * the plan is visible from the start (`kubectl get build -o yaml`) at no extra request. The plan's
 * conditions are this run's: one a previous attempt left (an `Error` with its reason and message)
 * starts over as initialized. Conditions outside the plan are left as they are.
 */
export function startMutation(tasks: ReadonlyArray<{ readonly type: string }>, at: Date, rules: Rules, owned: ReadonlySet<string>): Mutation {
  const { vocabulary } = rules;
  return combine(
    mark(tasks[0]!.type, vocabulary.inProgress, at, rules, {}, owned),
    ...tasks.slice(1).map((t): Mutation => (b) => void setCondition((b.status ??= {}), { type: t.type, status: vocabulary.initialized as ConditionStatus }, at)),
    // Derived again once the rest are reset: a previous attempt's Error must not make this run Errored.
    // rules.phaseField is read when applied: writeStatus may move it.
    (b) => void (b.status![rules.phaseField] = derivePhase(b.status!.conditions, vocabulary, owned)),
  );
}
