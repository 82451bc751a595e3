/**
 * Condition and phase rules (pure). The vocabulary (status values and phase names) lives in one
 * object so a CRD that spells them differently can pass its own; the field the phase is kept in
 * (`phase`, or `stage` in the published Spot CRD) is a `PhaseField`.
 */
import { InvalidNameError } from './errors.js';
import { shown, UNPRINTABLE } from './names.js';
import type { BuildCondition, BuildPhase, BuildStatus, ConditionStatus } from './types.js';

export const ConditionStatuses = Object.freeze({
  Initialized: '',
  InProgress: 'In Progress',
  Success: 'Success',
  Error: 'Error',
} as const satisfies Record<string, ConditionStatus>);

export const Phases = Object.freeze({
  Pending: '',
  Running: 'Running',
  Done: 'Done',
  Errored: 'Errored',
} as const satisfies Record<string, BuildPhase>);

export interface Vocabulary {
  initialized: string;
  inProgress: string;
  success: string;
  error: string;
  pending: string;
  running: string;
  done: string;
  errored: string;
}

export const DEFAULT_VOCABULARY: Readonly<Vocabulary> = Object.freeze({
  initialized: ConditionStatuses.Initialized,
  inProgress: ConditionStatuses.InProgress,
  success: ConditionStatuses.Success,
  error: ConditionStatuses.Error,
  pending: Phases.Pending,
  running: Phases.Running,
  done: Phases.Done,
  errored: Phases.Errored,
});

/**
 * Where a Build keeps its phase: `phase` in the newer CRD shape, `stage` in the published Spot CRD
 * (whose schema drops a `phase`, so writing the wrong one leaves the operator waiting forever).
 */
export type PhaseField = 'phase' | 'stage';
export const PHASE_FIELDS: readonly PhaseField[] = Object.freeze(['phase', 'stage'] as const);

/**
 * The field `status` keeps its phase in: `stage` when it has a `stage` and no `phase`, else
 * `phase`. A Build with no status at all gets `phase`: the Spot operator writes `stage: Running`
 * before the build pod starts, so a Build of the published shape arrives with its `stage` set;
 * anything else needs the field given explicitly.
 */
export function phaseFieldOf(status: BuildStatus | undefined): PhaseField {
  return status?.stage !== undefined && status.phase === undefined ? 'stage' : 'phase';
}

/** RFC 3339 at second precision, as `metav1.Time` serialises. */
export function formatTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A copy of the condition of `type`, or a fresh initialized one when there is none. */
export function getCondition(
  status: BuildStatus | undefined,
  type: string,
  vocabulary: Vocabulary = DEFAULT_VOCABULARY,
): BuildCondition {
  const found = status?.conditions?.find((c) => c.type === type);
  return found ? { ...found } : { type, status: vocabulary.initialized as ConditionStatus };
}

/**
 * Puts `condition` into `status.conditions` (replacing the one of the same type, else appending)
 * and returns `status`, which it changes in place. `lastTransitionTime` moves only when the status
 * value changes: a repeat of the same status keeps the time of the real transition.
 */
export function setCondition(status: BuildStatus, condition: BuildCondition, now: Date = new Date()): BuildStatus {
  const conditions = (status.conditions ??= []);
  const index = conditions.findIndex((c) => c.type === condition.type);
  const previous = index >= 0 ? conditions[index] : undefined;
  const next: BuildCondition = { ...condition };
  if (previous && previous.status === condition.status) {
    if (previous.lastTransitionTime !== undefined) next.lastTransitionTime = previous.lastTransitionTime;
    else delete next.lastTransitionTime;
  } else {
    next.lastTransitionTime = formatTime(now);
  }
  for (const key of ['reason', 'message'] as const) if (next[key] === undefined) delete next[key];
  if (index >= 0) conditions[index] = next;
  else conditions.push(next);
  return status;
}

/**
 * Any `Error` gives `Errored`; all `Success` gives `Done`; otherwise `Running`. No conditions at
 * all means nothing has started: the pending phase (`""`).
 *
 * `types`, when given, are the conditions that count: a run's own (its plan). Conditions it does
 * not own (the operator's, a previous attempt's step that is not in this plan) are then left out,
 * so they can neither hold a finished run at Running nor mark a successful one Errored.
 */
export function derivePhase(
  conditions: readonly BuildCondition[] | undefined,
  vocabulary: Vocabulary = DEFAULT_VOCABULARY,
  types?: ReadonlySet<string>,
): BuildPhase {
  if (types && conditions) conditions = conditions.filter((c) => types.has(c.type));
  if (!conditions || conditions.length === 0) return vocabulary.pending as BuildPhase;
  if (conditions.some((c) => c.status === vocabulary.error)) return vocabulary.errored as BuildPhase;
  if (conditions.every((c) => c.status === vocabulary.success)) return vocabulary.done as BuildPhase;
  return vocabulary.running as BuildPhase;
}

/**
 * `setCondition`, then the phase derived from the result (over `types` only, when given: see
 * derivePhase), kept in `field` (default `phase`).
 */
export function applyCondition(
  status: BuildStatus,
  condition: BuildCondition,
  now: Date = new Date(),
  vocabulary: Vocabulary = DEFAULT_VOCABULARY,
  field: PhaseField = 'phase',
  types?: ReadonlySet<string>,
): BuildStatus {
  setCondition(status, condition, now);
  status[field] = derivePhase(status.conditions, vocabulary, types);
  return status;
}

/** `metav1.Condition`'s limit on a condition type. */
export const MAX_CONDITION_TYPE_LENGTH = 316;

/**
 * Why `type` cannot be a condition type, or undefined when it can: it goes into the Build, the
 * events and every log line, so it must be printable (see `UNPRINTABLE`: a newline would forge a
 * log line, a bidi override disguise one).
 */
export function conditionTypeProblem(type: unknown): string | undefined {
  if (typeof type !== 'string' || type.trim() === '') return 'must not be empty';
  const length = [...type].length;
  if (length > MAX_CONDITION_TYPE_LENGTH) return `must be no more than ${MAX_CONDITION_TYPE_LENGTH} characters (got ${length})`;
  const bad = UNPRINTABLE.exec(type);
  if (bad) return `must be printable: it holds U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at character ${[...type.slice(0, bad.index)].length + 1}`;
  return undefined;
}

/** Returns `type` when it can be a condition type, else throws `InvalidNameError` saying why. */
export function validateConditionType(type: string, what = 'condition type'): string {
  const problem = conditionTypeProblem(type);
  if (problem) throw new InvalidNameError(`invalid ${what} ${typeof type === 'string' ? shown(type) : String(type)}: ${problem}`);
  return type;
}
