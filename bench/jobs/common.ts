/**
 * What every benchmark job shares: the build it reports (four no-op steps, an image result, one
 * Normal event) and, for the floors, spot-runtime's requests rebuilt by hand. No imports and no
 * side effects: the library-free floors stay library-free, and scripts/bench.ts imports it too.
 */

export const STEPS = ['Fetching Source', 'Building Image', 'Pushing Image', 'Scanning Image'] as const;
export const IMAGE_URL = 'registry.example.com/team/app:1.4.2@sha256:9b2f0c4e';
export const EVENT = { type: 'Normal', reason: 'Completed', message: `Build completed: ${STEPS.length} tasks` } as const;
/** The event's `source.component` / `reportingComponent`, the same for every contender. */
export const COMPONENT = 'spot-runtime';

export const IN_PROGRESS = 'In Progress';
export const SUCCESS = 'Success';

/** `BUILD_REFERENCE` (`namespace/name`), as the pod's env gives it. */
export function buildReference(): { namespace: string; name: string } {
  const [namespace, name] = (process.env.BUILD_REFERENCE ?? '').split('/');
  if (!namespace || !name) throw new Error('BUILD_REFERENCE must be namespace/name');
  return { namespace, name };
}

/** RFC 3339 at second precision, as `metav1.Time` serialises (and as lib/conditions.ts writes). */
export function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------
// For the floors: spot-runtime's requests, rebuilt by hand.

export interface Condition {
  type: string;
  status: string;
  lastTransitionTime: string;
  reason?: string;
}

/**
 * The `status` part of write `i` (0..STEPS.length) of spot-runtime's runner: the first write lists
 * every step (the first In Progress); then step i-1's Success shares a write with step i's In
 * Progress; the last write carries the image and phase Done. Like the runner's merge patches it
 * sends only what changed (the conditions list is always whole: merge patch replaces arrays).
 * `conditions` is the caller's running list, changed in place.
 */
export function runnerStatusPatch(i: number, conditions: Condition[], time: string): Record<string, unknown> {
  // lib/conditions.ts setCondition: the time moves only when the status changes.
  const set = (type: string, status: string, reason?: string) => {
    const index = conditions.findIndex((c) => c.type === type);
    const previous = conditions[index];
    const lastTransitionTime = previous?.status === status ? previous.lastTransitionTime : time;
    const next: Condition = { type, status, lastTransitionTime, ...(reason ? { reason } : {}) };
    if (previous) conditions[index] = next;
    else conditions.push(next);
  };
  if (i === 0) {
    STEPS.forEach((type, k) => set(type, k === 0 ? IN_PROGRESS : ''));
    return { conditions, phase: 'Running' };
  }
  set(STEPS[i - 1]!, SUCCESS, 'Succeeded');
  if (i < STEPS.length) {
    set(STEPS[i]!, IN_PROGRESS);
    return { conditions };
  }
  return { image: { url: IMAGE_URL }, conditions, phase: 'Done' };
}

/** The core/v1 Event spot-runtime's recorder posts (lib/events.ts `makeEvent`), about `build`. */
export function eventBody(build: { metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string } }): Record<string, unknown> {
  const now = new Date();
  const { name, namespace, uid, resourceVersion } = build.metadata;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${name}.${(BigInt(now.getTime()) * 1_000_000n).toString(16)}`, namespace },
    involvedObject: { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name, namespace, uid, resourceVersion },
    reason: EVENT.reason,
    message: EVENT.message,
    type: EVENT.type,
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: process.env.POD_NAME ?? 'unknown',
    firstTimestamp: timestamp(now),
    lastTimestamp: timestamp(now),
    count: 1,
  };
}

/** Headers spot-runtime sends (lib/transport.ts), so the floors' requests weigh the same. */
export function requestHeaders(token: string, contentType?: string): Record<string, string> {
  const headers: Record<string, string> = {
    accept: 'application/json',
    'user-agent': `spot-runtime/0.1.0 (node ${process.version})`,
    authorization: `Bearer ${token}`,
  };
  if (contentType) headers['content-type'] = contentType;
  return headers;
}

export const MERGE_PATCH = 'application/merge-patch+json';

/** The Build's path, main resource or `/status`. */
export function buildPath(ref: { namespace: string; name: string }, status = false): string {
  return `/apis/spot.release.com/v1alpha1/namespaces/${ref.namespace}/builds/${ref.name}${status ? '/status' : ''}`;
}
