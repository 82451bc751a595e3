/**
 * The Build custom resource (`spot.release.com/v1alpha1`, plural `builds`, namespaced, with a
 * status subresource) as this runtime reads and writes it. Fields the runtime does not know are
 * kept as they come (`[key: string]: unknown`): the operator owns the resource and may add more.
 * Two shapes exist in the wild: the published Spot CRD (phase in `status.stage`, no conditions,
 * every unlisted status field pruned by the server) and the newer one (`status.phase` and
 * per-task conditions); both fit these types.
 */

export const BUILD_GROUP = 'spot.release.com';
export const BUILD_VERSION = 'v1alpha1';
export const BUILD_API_VERSION = `${BUILD_GROUP}/${BUILD_VERSION}`;
export const BUILD_KIND = 'Build';
export const BUILD_PLURAL = 'builds';

/** A validated `namespace/name` pair; only `parseBuildReference` and `buildRef` make one. */
export interface BuildRef {
  readonly namespace: string;
  readonly name: string;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface BuildImageSpec {
  /** Image name, e.g. `team/app`. */
  name?: string;
  tag?: string;
  /** Registry URL, e.g. `registry.example.com`. */
  registry?: { url?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface BuildSpec {
  image?: BuildImageSpec;
  [key: string]: unknown;
}

/** `""` is a condition that exists but has not started (the operator's "initialized"). */
export type ConditionStatus = '' | 'In Progress' | 'Success' | 'Error';
export type BuildPhase = '' | 'Running' | 'Done' | 'Errored';

export interface BuildCondition {
  /** What the condition tracks, e.g. `Building Image`; unique within a Build. */
  type: string;
  status: ConditionStatus;
  /** RFC 3339, second precision; moves only when `status` changes. */
  lastTransitionTime?: string;
  /** CamelCase, machine-readable, e.g. `Succeeded`, `Failed`, `Timeout`, `Terminated`. */
  reason?: string;
  /** Human-readable detail, e.g. a failed step's exit code and last stderr lines. */
  message?: string;
}

export interface BuildStatus {
  /** The phase in the newer CRD shape. */
  phase?: BuildPhase;
  /** The phase in the published Spot CRD (same values); the operator acts on it. */
  stage?: BuildPhase;
  conditions?: BuildCondition[];
  /** The build pod, written by the operator. */
  pod?: { namespace?: string; name?: string; [key: string]: unknown };
  /** What the build produced; the operator copies `url` and `digest` into the Workspace. */
  image?: { url?: string; digest?: string; metadata?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

export interface Build {
  /** `spot.release.com/v1alpha1` unless the client was given another resource. */
  apiVersion: string;
  /** `Build` unless the client was given another resource. */
  kind: string;
  metadata: ObjectMeta;
  spec?: BuildSpec;
  status?: BuildStatus;
}

/** `metav1.Status`, the body of every error answer from the API server. */
export interface Status {
  kind: 'Status';
  apiVersion: string;
  metadata?: Record<string, unknown>;
  status?: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code?: number;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  /** The plural resource (`builds`) for NotFound, Conflict and Forbidden; the Kind for schema errors. */
  kind?: string;
  uid?: string;
  causes?: Array<{ reason?: string; message?: string; field?: string }>;
  retryAfterSeconds?: number;
}

export type EventType = 'Normal' | 'Warning';

/** A core/v1 Event, as this runtime writes it (no `eventTime`: see events.ts). */
export interface CoreEvent {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { name: string; namespace: string; resourceVersion?: string; [key: string]: unknown };
  involvedObject: {
    apiVersion: string;
    kind: string;
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
  };
  reason: string;
  message: string;
  type: EventType;
  source: { component: string; host?: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}
