/**
 * Calls on the Build resource and its status subresource. Paths are built only from a `BuildRef`
 * (validated names), never from raw strings.
 */
import { BuildReplacedError, isConflict, ResponseError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { buildRef } from './names.js';
import {
  copyJson,
  createMergePatch,
  jsonPatchWithResourceVersion,
  withResourceVersion,
  type JsonPatchOperation,
} from './patches.js';
import { apiVersionOf, DEFAULT_RESOURCE, validateResource, type BuildResource } from './resource.js';
import type { Transport } from './transport.js';
import type { Build, BuildRef } from './types.js';

export const MERGE_PATCH = 'application/merge-patch+json';
export const JSON_PATCH = 'application/json-patch+json';

export interface CallOptions {
  signal?: AbortSignal | undefined;
  /**
   * Epoch ms by which the whole call must be over, its retries, waits and (for an update) conflict
   * re-reads included. Default: the transport's deadline (`--api-deadline`) from the call's start.
   */
  deadlineAt?: number | undefined;
  /** The custom resource the Build is (default `builds.v1alpha1.spot.release.com`, kind `Build`). */
  resource?: BuildResource | undefined;
}

export type PatchOptions = CallOptions &
  (
    | { type: 'merge'; resourceVersion?: string }
    | { type: 'json'; resourceVersion?: string }
  );

export interface UpdateOptions extends CallOptions {
  /** The freshest Build the caller already holds; saves the first GET. */
  base?: Build | undefined;
  /** Attempts in all, conflicts included (default 5). */
  maxAttempts?: number;
  logger?: Logger;
  /**
   * The uid the Build must have: client-go's `Preconditions{UID}`. Default: the uid of `base`, or
   * of the first read. A Build with another uid under the same name (deleted and created again)
   * is a `BuildReplacedError`, and nothing is written to it.
   */
  uid?: string | undefined;
}

/** `/apis/spot.release.com/v1alpha1/namespaces/NS/builds/NAME[/status]`, or the path of another resource's object. */
export function buildPath(ref: BuildRef, subresource?: 'status', resource: BuildResource = DEFAULT_RESOURCE): string {
  const checked = buildRef(ref.namespace, ref.name);
  const { group, version, plural } = validateResource(resource);
  const base = `/apis/${group}/${version}/namespaces/${checked.namespace}/${plural}/${checked.name}`;
  return subresource ? `${base}/${subresource}` : base;
}

/** Why `value` is not a usable answer for Build `ref`, or undefined when it is one. */
function buildProblem(value: unknown, ref: BuildRef, resource: BuildResource): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'the answer is not a JSON object';
  const obj = value as Partial<Build>;
  const kindOk = resource.kind === undefined ? typeof obj.kind === 'string' && obj.kind !== '' : obj.kind === resource.kind;
  if (obj.apiVersion !== apiVersionOf(resource) || !kindOk) {
    const expected = resource.kind ?? `${apiVersionOf(resource)} object`;
    return `the answer is not a ${expected} (apiVersion ${JSON.stringify(obj.apiVersion)}, kind ${JSON.stringify(obj.kind)})`;
  }
  const { metadata, status } = obj;
  if (typeof metadata !== 'object' || metadata === null) return 'the Build in the answer has no metadata';
  if (metadata.name !== ref.name || metadata.namespace !== ref.namespace) {
    return `the answer is Build ${metadata.namespace}/${metadata.name}, not ${ref.namespace}/${ref.name}`;
  }
  if (typeof metadata.resourceVersion !== 'string') return 'the Build in the answer has no metadata.resourceVersion';
  if (status === undefined) return undefined;
  if (typeof status !== 'object' || status === null) return 'the Build in the answer has a status that is not an object';
  if (status.conditions !== undefined && !Array.isArray(status.conditions)) return 'the Build in the answer has status.conditions that is not a list';
  return undefined;
}

/**
 * Checks that an answer is the Build we asked for (of `resource`, the default one when not given);
 * anything else is a `ResponseError`, never a silent `as Build`.
 */
export function asBuild(value: unknown, ref: BuildRef, target: { method: string; path: string }, resource: BuildResource = DEFAULT_RESOURCE): Build {
  const problem = buildProblem(value, ref, resource);
  if (problem) throw new ResponseError(problem, target, 200);
  return value as Build;
}

export async function getBuild(transport: Transport, ref: BuildRef, options: CallOptions = {}): Promise<Build> {
  const resource = options.resource ?? DEFAULT_RESOURCE;
  const path = buildPath(ref, undefined, resource);
  const answer = await transport.request({ method: 'GET', path, signal: options.signal, deadlineAt: options.deadlineAt });
  return asBuild(answer, ref, { method: 'GET', path }, resource);
}

/**
 * PUT of the status subresource. Custom resources refuse unconditional updates, so the Build must
 * carry the `metadata.resourceVersion` it was read at; a stale one gets 409 Conflict. Its
 * `metadata.uid` goes along too: the API server takes a uid in a PUT body as a precondition
 * (409 `Precondition failed: UID in precondition`), so a PUT never lands on a re-created Build.
 */
export async function replaceBuildStatus(transport: Transport, build: Build, options: CallOptions = {}): Promise<Build> {
  const ref = buildRef(build.metadata.namespace, build.metadata.name);
  if (!build.metadata.resourceVersion) {
    throw new TypeError(
      `replaceBuildStatus needs metadata.resourceVersion on Build ${ref.namespace}/${ref.name}: custom resources refuse unconditional updates`,
    );
  }
  const resource = options.resource ?? DEFAULT_RESOURCE;
  const path = buildPath(ref, 'status', resource);
  // apiVersion and kind as read: with a resource given without its kind, the answer said which.
  const body = {
    apiVersion: build.apiVersion ?? apiVersionOf(resource),
    kind: build.kind ?? resource.kind,
    metadata: build.metadata,
    status: build.status ?? {},
  };
  const answer = await transport.request({ method: 'PUT', path, body, idempotent: true, signal: options.signal, deadlineAt: options.deadlineAt });
  return asBuild(answer, ref, { method: 'PUT', path }, resource);
}

/**
 * PATCH of the status subresource, as a merge patch or a JSON patch (strategic merge patch does not
 * exist for custom resources). With `resourceVersion` the patch is conditional (409 when stale) and
 * therefore safe to repeat after a lost connection; without it, it applies to whatever is stored.
 */
export async function patchBuildStatus(
  transport: Transport,
  ref: BuildRef,
  patch: Record<string, unknown> | JsonPatchOperation[],
  options: PatchOptions,
): Promise<Build> {
  const resource = options.resource ?? DEFAULT_RESOURCE;
  const path = buildPath(ref, 'status', resource);
  const rv = options.resourceVersion;
  let body: unknown;
  if (options.type === 'json') {
    if (!Array.isArray(patch)) throw new TypeError('a JSON patch is a list of operations');
    body = rv ? jsonPatchWithResourceVersion(patch, rv) : patch;
  } else {
    if (Array.isArray(patch)) throw new TypeError('a merge patch is an object');
    body = rv ? withResourceVersion(patch, rv) : patch;
  }
  const answer = await transport.request({
    method: 'PATCH',
    path,
    body,
    contentType: options.type === 'json' ? JSON_PATCH : MERGE_PATCH,
    idempotent: !!rv,
    signal: options.signal,
    deadlineAt: options.deadlineAt,
  });
  return asBuild(answer, ref, { method: 'PATCH', path }, resource);
}

export const DEFAULT_UPDATE_ATTEMPTS = 5;

/**
 * Conflict-safe read-modify-write of the status. `mutate` changes a copy of the freshest Build
 * (the `base` when given, else a GET); only what it changed is sent, as a merge patch with the
 * resourceVersion precondition. On 409 the Build is read again and `mutate` applied again, so
 * another writer's fields (the operator's pod reference and conditions) are kept, and so is ours.
 * `mutate` must therefore be repeatable: derive the change from the Build it is given. It gets a
 * copy of the status to change; `spec` is shared and must be left alone.
 *
 * Every write is tied to one Build, as client-go's `Preconditions{UID}`: a Build read with
 * another uid (it was deleted and created again under the same name) stops the call with a
 * `BuildReplacedError` before anything is written to it. The merge patch itself carries no uid:
 * on `/status` the API server copies the stored object's metadata over the patched one
 * (`statusStrategy.PrepareForUpdate`) and a PATCH has no uid precondition, so a uid there would be
 * dropped unseen. The resourceVersion precondition is what the server checks, and it is enough:
 * resourceVersions come from one etcd counter, so a re-created Build never has the old one.
 *
 * The GET, the writes and the re-reads share one deadline (`options.deadlineAt`).
 * Resolves to the stored Build; writes nothing when `mutate` changed nothing.
 */
export async function updateBuildStatus(
  transport: Transport,
  ref: BuildRef,
  mutate: (build: Build) => void,
  options: UpdateOptions = {},
): Promise<Build> {
  const logger = options.logger ?? silentLogger;
  const maxAttempts = options.maxAttempts ?? DEFAULT_UPDATE_ATTEMPTS;
  const call: CallOptions = { signal: options.signal, deadlineAt: options.deadlineAt ?? Date.now() + transport.deadlineMs, resource: options.resource };
  let current = options.base ?? (await getBuild(transport, ref, call));
  const uid = options.uid ?? current.metadata.uid;
  for (let attempt = 1; ; attempt++) {
    if (uid !== undefined && current.metadata.uid !== uid) throw new BuildReplacedError(ref, uid, current.metadata.uid);
    // Only the status is copied (it is all that is written); spec is shared and read-only.
    const draft: Build = { ...current, metadata: { ...current.metadata }, status: copyJson(current.status ?? {}) };
    mutate(draft);
    const diff = createMergePatch(current.status ?? {}, draft.status ?? {});
    if (diff === undefined) return current;
    try {
      return await patchBuildStatus(transport, ref, { status: diff }, {
        type: 'merge',
        resourceVersion: current.metadata.resourceVersion!,
        ...call,
      });
    } catch (err) {
      if (!isConflict(err) || attempt >= maxAttempts) throw err;
      logger.debug('status write conflicted; re-reading and re-applying', { build: `${ref.namespace}/${ref.name}`, attempt });
      current = await getBuild(transport, ref, call);
    }
  }
}
