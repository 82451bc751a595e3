/**
 * Kubernetes name validation (apimachinery `validation.IsDNS1123Label` / `IsDNS1123Subdomain`).
 * Every namespace and name is checked here before it becomes part of a URL path, so `..`, `/`,
 * `%2F` and friends can never reach the API server as path segments.
 */
import { InvalidNameError } from './errors.js';
import type { BuildRef } from './types.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const MAX_LABEL_LENGTH = 63;
export const MAX_SUBDOMAIN_LENGTH = 253;

/** Why `value` is not a DNS-1123 label, or undefined when it is one. */
export function labelProblem(value: string): string | undefined {
  if (value === '') return 'must not be empty';
  if (value.length > MAX_LABEL_LENGTH) return `must be no more than ${MAX_LABEL_LENGTH} characters (got ${value.length})`;
  if (!DNS1123_LABEL.test(value)) {
    return "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Why `value` is not a DNS-1123 subdomain, or undefined when it is one. */
export function subdomainProblem(value: string): string | undefined {
  if (value === '') return 'must not be empty';
  if (value.length > MAX_SUBDOMAIN_LENGTH) {
    return `must be no more than ${MAX_SUBDOMAIN_LENGTH} characters (got ${value.length})`;
  }
  if (!DNS1123_SUBDOMAIN.test(value)) {
    return "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/**
 * Characters that must not reach a terminal or a log line raw: controls (a newline forges a line),
 * format characters (a bidi override disguises one), line and paragraph separators, surrogates
 * and private-use characters.
 */
export const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}]/u;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'gu');

/**
 * Short, printable, one-line form of untrusted input for an error message: quoted, every
 * unprintable character escaped, cut to `max` characters (never the whole 300 of a hostile value).
 */
export function shown(value: string, max = 64): string {
  const chars = [...value];
  const cut = chars.length > max ? `${chars.slice(0, max - 3).join('')}...` : value;
  return JSON.stringify(cut).replace(UNPRINTABLE_ALL, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

export function validateNamespace(namespace: string, what = 'namespace'): string {
  const problem = labelProblem(namespace);
  if (problem) throw new InvalidNameError(`invalid ${what} ${shown(namespace)}: ${problem}`);
  return namespace;
}

export function validateName(name: string, what = 'name'): string {
  const problem = subdomainProblem(name);
  if (problem) throw new InvalidNameError(`invalid ${what} ${shown(name)}: ${problem}`);
  return name;
}

/** A validated reference from its two parts. */
export function buildRef(namespace: string, name: string): BuildRef {
  return Object.freeze({
    namespace: validateNamespace(namespace, 'Build namespace'),
    name: validateName(name, 'Build name'),
  });
}

/**
 * Parses `namespace/name` (the `BUILD_REFERENCE` format). Exactly one `/`; both parts must be valid
 * names, which also rules out `..`, percent-encoding and empty parts.
 */
export function parseBuildReference(reference: string): BuildRef {
  const parts = reference.split('/');
  if (parts.length !== 2) {
    throw new InvalidNameError(
      `invalid Build reference ${shown(reference)}: expected "namespace/name" with exactly one "/"`,
    );
  }
  return buildRef(parts[0]!, parts[1]!);
}

/**
 * A reference from `BUILD_REFERENCE` already split on `/`, as the Go package's `GetBuild` takes it:
 * exactly 2 parts (namespace, name), each a valid name. The wrong count is refused with the Go
 * builder's wording, naming the value.
 */
export function buildRefFromParts(parts: readonly string[]): BuildRef {
  if (parts.length !== 2) {
    throw new InvalidNameError(`BUILD_REFERENCE is expected to have 2 components, had ${parts.length}: ${shown(parts.join('/'))}`);
  }
  return buildRef(parts[0]!, parts[1]!);
}

/** `namespace/name`, the inverse of `parseBuildReference`. */
export function formatBuildReference(ref: BuildRef): string {
  return `${ref.namespace}/${ref.name}`;
}
