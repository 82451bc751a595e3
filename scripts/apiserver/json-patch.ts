/**
 * JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902) as pure functions over parsed JSON.
 * The local API server applies them to stored objects; tests use them directly as well.
 * Neither function mutates its inputs.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** Any failure to apply a JSON Patch: a malformed operation, a missing path, a failed `test`. */
export class JsonPatchError extends Error {
  override readonly name = 'JsonPatchError';
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function deepCopy<T>(value: T): T {
  return structuredClone(value);
}

/** Structural equality of JSON values; key order does not matter, array order does. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  }
  if (isJsonObject(a) && isJsonObject(b)) {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length &&
      keys.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]))
    );
  }
  return false;
}

/**
 * Sets an own property even when the key is `__proto__`: JSON.parse makes such keys own
 * properties, and plain assignment would change the object's prototype instead.
 */
function setKey(target: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------
// RFC 7386

/** RFC 7386: objects merge recursively, `null` deletes a key, everything else (arrays too) replaces. */
export function applyMergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  return mergeInto(target === undefined ? undefined : deepCopy(target), deepCopy(patch));
}

/** Works in place on values the caller already copied. */
function mergeInto(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isJsonObject(patch)) return patch;
  const result: JsonObject = isJsonObject(target) ? target : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else setKey(result, key, mergeInto(Object.hasOwn(result, key) ? result[key] : undefined, value));
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// RFC 6902

export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: JsonValue }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

/** RFC 6902: applies every operation in order, all or nothing. */
export function applyJsonPatch(document: JsonValue, operations: readonly unknown[]): JsonValue {
  let doc = deepCopy(document);
  operations.forEach((raw, index) => {
    doc = applyOperation(doc, parseOperation(raw, index));
  });
  return doc;
}

function parseOperation(raw: unknown, index: number): JsonPatchOperation {
  if (!isJsonObject(raw)) throw new JsonPatchError(`operation ${index} is not an object`);
  const { op, path, from } = raw;
  if (typeof path !== 'string') throw new JsonPatchError(`operation ${index} has no string "path"`);
  switch (op) {
    case 'add':
    case 'replace':
    case 'test':
      // `value` may be null, so look for the key rather than the value.
      if (!Object.hasOwn(raw, 'value')) throw new JsonPatchError(`operation ${index} (${op}) has no "value"`);
      return { op, path, value: raw.value as JsonValue };
    case 'remove':
      return { op, path };
    case 'move':
    case 'copy':
      if (typeof from !== 'string') throw new JsonPatchError(`operation ${index} (${op}) has no string "from"`);
      return { op, from, path };
    default:
      throw new JsonPatchError(`operation ${index} has an unknown "op": ${JSON.stringify(op ?? null)}`);
  }
}

function applyOperation(doc: JsonValue, operation: JsonPatchOperation): JsonValue {
  const path = parsePointer(operation.path);
  switch (operation.op) {
    case 'add':
      return addValue(doc, path, deepCopy(operation.value));
    case 'remove':
      return removeValue(doc, path);
    case 'replace':
      return replaceValue(doc, path, deepCopy(operation.value));
    case 'test':
      if (!deepEqual(getValue(doc, path), operation.value)) {
        throw new JsonPatchError(`test failed: the value at "${operation.path}" is not the expected value`);
      }
      return doc;
    case 'copy':
      return addValue(doc, path, deepCopy(getValue(doc, parsePointer(operation.from))));
    case 'move': {
      if (operation.path.startsWith(`${operation.from}/`)) {
        throw new JsonPatchError(`cannot move "${operation.from}" into its own child "${operation.path}"`);
      }
      const from = parsePointer(operation.from);
      const value = getValue(doc, from);
      return addValue(removeValue(doc, from), path, value);
    }
  }
}

/** RFC 6901: `""` is the whole document; `~1` is `/` and `~0` is `~`, decoded in that order. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new JsonPatchError(`invalid JSON pointer "${pointer}": must start with "/"`);
  if (/~(?![01])/.test(pointer)) throw new JsonPatchError(`invalid JSON pointer "${pointer}": bad "~" escape`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function pointerOf(tokens: readonly string[]): string {
  return tokens.map((t) => `/${t.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** An array index: digits without leading zeros, at most `max`. */
function arrayIndex(token: string, max: number, tokens: readonly string[]): number {
  if (!/^(0|[1-9][0-9]*)$/.test(token)) {
    throw new JsonPatchError(`"${pointerOf(tokens)}": "${token}" is not a valid array index`);
  }
  const index = Number(token);
  if (index > max) throw new JsonPatchError(`"${pointerOf(tokens)}": array index ${index} is out of bounds`);
  return index;
}

function getValue(doc: JsonValue, tokens: readonly string[]): JsonValue {
  let current = doc;
  tokens.forEach((token, i) => {
    const seen = tokens.slice(0, i + 1);
    if (Array.isArray(current)) {
      current = current[arrayIndex(token, current.length - 1, seen)] as JsonValue;
    } else if (isJsonObject(current) && Object.hasOwn(current, token)) {
      current = current[token] as JsonValue;
    } else {
      throw new JsonPatchError(`"${pointerOf(seen)}" does not exist`);
    }
  });
  return current;
}

/** The container that holds the last token of `tokens`; it must exist. */
function parentOf(doc: JsonValue, tokens: readonly string[]): JsonObject | JsonValue[] {
  const parent = getValue(doc, tokens.slice(0, -1));
  if (Array.isArray(parent) || isJsonObject(parent)) return parent;
  throw new JsonPatchError(`"${pointerOf(tokens.slice(0, -1))}" is not an object or an array`);
}

function addValue(doc: JsonValue, tokens: readonly string[], value: JsonValue): JsonValue {
  const last = tokens.at(-1);
  if (last === undefined) return value;
  const parent = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    const index = last === '-' ? parent.length : arrayIndex(last, parent.length, tokens);
    parent.splice(index, 0, value);
  } else {
    setKey(parent, last, value);
  }
  return doc;
}

function replaceValue(doc: JsonValue, tokens: readonly string[], value: JsonValue): JsonValue {
  const last = tokens.at(-1);
  if (last === undefined) return value;
  const parent = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    parent[arrayIndex(last, parent.length - 1, tokens)] = value;
  } else if (Object.hasOwn(parent, last)) {
    setKey(parent, last, value); // keeps the key where it was
  } else {
    throw new JsonPatchError(`"${pointerOf(tokens)}" does not exist`);
  }
  return doc;
}

function removeValue(doc: JsonValue, tokens: readonly string[]): JsonValue {
  const last = tokens.at(-1);
  if (last === undefined) throw new JsonPatchError('cannot remove the whole document');
  const parent = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    parent.splice(arrayIndex(last, parent.length - 1, tokens), 1);
  } else if (Object.hasOwn(parent, last)) {
    delete parent[last];
  } else {
    throw new JsonPatchError(`"${pointerOf(tokens)}" does not exist`);
  }
  return doc;
}
