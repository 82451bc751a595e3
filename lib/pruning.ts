/**
 * Status fields the server's schema drops. A structural CRD schema without
 * `x-kubernetes-preserve-unknown-fields` (the published Spot CRD) makes the API server silently
 * prune every status field it does not list from each write, and answer 200: no conditions, no
 * `reason`/`message`, no `image.metadata`. What was pruned shows only by comparing what was sent
 * with what came back. The pure half finds and strips such fields; `StatusPruning` remembers them
 * for a client, so later writes leave them out (no re-sending, no write that changes nothing)
 * while mutations still see them as last written (the phase is derived from every task's
 * condition, stored or not).
 */
import type { Logger } from './log.js';
import type { Build, BuildRef, BuildStatus } from './types.js';

/** A status field as keys from the status down; `*` stands for every item of a list. */
export type FieldPath = readonly string[];

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `image.metadata`, `conditions[].reason`: how a path is shown in logs and documentation. */
export function formatFieldPath(path: FieldPath): string {
  return path.reduce((text, key) => (key === '*' ? `${text}[]` : text ? `${text}.${key}` : key), '');
}

/**
 * The fields of `sent` that `stored` lacks: what the server pruned from a write whose answer is
 * `stored`. Only a missing key counts (a value that differs is someone's write, not pruning), and
 * `null`s are deletions, which are meant to be missing. Lists are compared item by item, their
 * items' fields reported once under `*`.
 */
export function droppedFields(sent: unknown, stored: unknown): FieldPath[] {
  const found = new Map<string, FieldPath>();
  const walk = (a: unknown, b: unknown, at: string[]): void => {
    if (isObject(a) && isObject(b)) {
      for (const [key, value] of Object.entries(a)) {
        if (value === undefined || value === null) continue;
        const path = [...at, key];
        if (b[key] === undefined) found.set(path.join('\u0000'), path);
        else walk(value, b[key], path);
      }
    } else if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.min(a.length, b.length); i++) walk(a[i], b[i], [...at, '*']);
    }
  };
  walk(sent, stored, []);
  return [...found.values()];
}

/** Removes the fields at `paths` from `value`, in place. */
export function removeFields(value: unknown, paths: readonly FieldPath[]): void {
  const remove = (node: unknown, path: FieldPath): void => {
    const [key, ...rest] = path;
    if (key === undefined) return;
    if (key === '*') {
      if (Array.isArray(node)) for (const item of node) remove(item, rest);
      return;
    }
    if (!isObject(node)) return;
    if (rest.length === 0) delete node[key];
    else remove(node[key], rest);
  };
  for (const path of paths) remove(value, path);
}

/** The value at `path` (no `*` in it), or undefined. */
function valueAt(value: unknown, path: FieldPath): unknown {
  let node = value;
  for (const key of path) node = isObject(node) ? node[key] : undefined;
  return node;
}

/** Sets the value at `path` (no `*` in it), making the objects on the way. */
function setValueAt(value: JsonObject, path: FieldPath, leaf: unknown): void {
  let node = value;
  for (const key of path.slice(0, -1)) {
    if (!isObject(node[key])) node[key] = {};
    node = node[key] as JsonObject;
  }
  node[path[path.length - 1]!] = leaf;
}

/** How many Builds' dropped values a client keeps (a build pod writes one). */
const MAX_REMEMBERED_BUILDS = 1024;

/** A Build's own dropped values: the whole fields (not those under a list), as last written by us. */
interface Remembered {
  uid: string | undefined;
  values: Array<[FieldPath, unknown]>;
}

export interface PruningWrite {
  /** `mutate`, seeing the dropped fields as last written and leaving them out of what is sent. */
  mutate(build: Build): void;
  /** Learns from the write's answer (the stored Build); call once the write resolved. */
  settle(stored: Build): void;
}

/**
 * What the server's schema drops, learnt from each write's answer, for one client (one resource,
 * one schema). New dropped fields are said once: `info`, except the phase field (`warn`: the
 * operator cannot see the build's phase) and conditions (`debug`: the runner says where progress
 * goes instead).
 */
export class StatusPruning {
  readonly #dropped = new Map<string, FieldPath>();
  readonly #remembered = new Map<string, Remembered>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** The fields known to be dropped, e.g. `conditions`, `image.metadata`. */
  get dropped(): string[] {
    return [...this.#dropped.values()].map(formatFieldPath);
  }

  /** Wraps one status write's mutation of Build `ref`. */
  write(ref: BuildRef, mutate: (build: Build) => void): PruningWrite {
    const key = `${ref.namespace}/${ref.name}`;
    let sent: BuildStatus | undefined;
    return {
      mutate: (build) => {
        const status = (build.status ??= {});
        const remembered = this.#remembered.get(key);
        if (remembered && remembered.uid === build.metadata.uid) {
          for (const [path, value] of remembered.values) {
            if (valueAt(status, path) === undefined) setValueAt(status, path, structuredClone(value));
          }
        }
        mutate(build);
        // What the write would carry without pruning, for settle() to compare with the answer.
        sent = structuredClone(build.status ?? {});
        removeFields(build.status, [...this.#dropped.values()]);
      },
      settle: (stored) => {
        if (sent === undefined) return;
        const fresh = droppedFields(sent, stored.status ?? {}).filter((path) => !this.#dropped.has(path.join('\u0000')));
        for (const path of fresh) this.#dropped.set(path.join('\u0000'), path);
        if (fresh.length > 0) this.#announce(fresh);
        const whole = [...this.#dropped.values()].filter((path) => !path.includes('*'));
        // Most recently written last, so the oldest goes first when a long-lived client writes many Builds.
        this.#remembered.delete(key);
        if (this.#remembered.size >= MAX_REMEMBERED_BUILDS) this.#remembered.delete(this.#remembered.keys().next().value as string);
        this.#remembered.set(key, {
          uid: stored.metadata.uid,
          values: whole.flatMap((path): Array<[FieldPath, unknown]> => {
            const value = valueAt(sent, path);
            return value === undefined ? [] : [[path, structuredClone(value)]];
          }),
        });
      },
    };
  }

  #announce(paths: readonly FieldPath[]): void {
    for (const path of paths) {
      const field = formatFieldPath(path);
      if (path.length === 1 && (path[0] === 'phase' || path[0] === 'stage')) {
        const other = path[0] === 'phase' ? 'stage' : 'phase';
        this.#logger.warn(`this Build's CRD does not store status.${field}: the build's phase is lost; use the phase field ${other} (phaseField: '${other}', spot-run --phase-field ${other})`);
      } else if (path[0] === 'conditions') {
        this.#logger.debug(`this Build's CRD does not store status.${field}: left out of later writes`);
      } else {
        this.#logger.info(`this Build's CRD does not store status.${field}: left out of later writes`);
      }
    }
  }
}
