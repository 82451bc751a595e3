/**
 * Patch building (pure). Status writes are JSON merge patches (RFC 7386) that carry only what
 * changed plus `metadata.resourceVersion` as an optimistic-lock precondition: smaller than a PUT
 * of the whole object, and just as safe, since a stale resourceVersion gets 409 Conflict.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Deepest value the diff, the comparison and the copy walk. Answers nested deeper than 64 levels
 * are refused by the transport, so only a value built in memory gets here; past the bound it is a
 * `RangeError` saying so, not a stack overflow somewhere inside.
 */
export const MAX_JSON_DEPTH = 256;

function checkDepth(depth: number): void {
  if (depth > MAX_JSON_DEPTH) throw new RangeError(`a JSON value nested deeper than ${MAX_JSON_DEPTH} levels: refusing to walk it`);
}

/** Structural equality of JSON values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  return equalAt(a, b, 0);
}

function equalAt(a: unknown, b: unknown, depth: number): boolean {
  if (a === b) return true;
  checkDepth(depth);
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => equalAt(v, b[i], depth + 1));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => equalAt(a[k], b[k], depth + 1));
  }
  return false;
}

/** A deep copy of a JSON value (what `structuredClone` gives for one), bounded in depth. */
export function copyJson<T>(value: T): T {
  return copyAt(value, 0) as T;
}

function copyAt(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  checkDepth(depth);
  if (Array.isArray(value)) return value.map((v) => copyAt(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = copyAt(v, depth + 1);
  return out;
}

/**
 * The RFC 7386 merge patch that turns `before` into `after`, or undefined when they are equal.
 * Arrays are replaced whole (merge patch cannot address elements), removed keys become `null`.
 */
export function createMergePatch(before: unknown, after: unknown): unknown {
  return diffAt(before, after, 0);
}

function diffAt(before: unknown, after: unknown, depth: number): unknown {
  if (isObject(before) && isObject(after)) {
    checkDepth(depth);
    // One walk: equal subtrees give nothing, so there is no separate equality pass per level.
    const patch: Record<string, unknown> = {};
    for (const key of Object.keys(after)) {
      if (after[key] === undefined) continue;
      const sub = diffAt(before[key], after[key], depth + 1);
      if (sub !== undefined) patch[key] = sub;
    }
    for (const key of Object.keys(before)) {
      if (before[key] !== undefined && after[key] === undefined) patch[key] = null;
    }
    return Object.keys(patch).length > 0 ? patch : undefined;
  }
  if (equalAt(before, after, depth)) return undefined;
  return after === undefined ? null : after;
}

/** Adds a resourceVersion precondition to a merge patch. */
export function withResourceVersion(patch: Record<string, unknown>, resourceVersion: string): Record<string, unknown> {
  const metadata = isObject(patch.metadata) ? patch.metadata : {};
  return { ...patch, metadata: { ...metadata, resourceVersion } };
}

/**
 * Adds a resourceVersion precondition to a JSON patch. A `replace` (not a `test`) of the version:
 * the server then compares it with storage and answers 409 Conflict when stale, where a failed
 * `test` would answer 422 and look like a bad request.
 */
export function jsonPatchWithResourceVersion(ops: JsonPatchOperation[], resourceVersion: string): JsonPatchOperation[] {
  return [{ op: 'replace', path: '/metadata/resourceVersion', value: resourceVersion }, ...ops];
}
