/**
 * Field and label selectors of list and watch requests (apimachinery pkg/fields and pkg/labels),
 * as far as clients send them: `kubectl describe` asks for events with
 * `involvedObject.name=…,involvedObject.namespace=…,involvedObject.kind=…,involvedObject.uid=…`,
 * `kubectl get NAME -w` for `metadata.name=…`, `-l` for labels. No I/O.
 */
import { badRequest } from './status.js';

/** One `key=value` / `key!=value` term of a field selector. */
interface FieldTerm {
  field: string;
  value: string;
  equal: boolean;
}

/** Splits on `separator` where it is not escaped by a backslash. */
function splitUnescaped(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\' && i + 1 < text.length) {
      current += c + (text[i + 1] as string);
      i += 1;
    } else if (c === separator) {
      parts.push(current);
      current = '';
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** fields.UnescapeValue: only `\\`, `\,` and `\=` are escapes. */
function unescape(value: string, selector: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => {
    if (c !== '\\' && c !== ',' && c !== '=') throw badRequest(`invalid field selector: ${selector}: invalid escape sequence`);
    return c;
  });
}

function parseFieldTerm(term: string, selector: string): FieldTerm {
  for (const operator of ['!=', '==', '=']) {
    const at = term.indexOf(operator);
    if (at > 0) {
      return { field: term.slice(0, at), value: unescape(term.slice(at + operator.length), selector), equal: operator !== '!=' };
    }
  }
  throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
}

/**
 * A field selector as a predicate over the fields a resource lets clients select on.
 * An unsupported field is a 400, as the real server answers (ConvertFieldLabel).
 */
export function fieldSelector(selector: string, supported: ReadonlySet<string>): (fields: Readonly<Record<string, string>>) => boolean {
  const terms = selector.trim() ? splitUnescaped(selector, ',').map((t) => parseFieldTerm(t.trim(), selector)) : [];
  for (const term of terms) if (!supported.has(term.field)) throw badRequest(`field label not supported: ${term.field}`);
  return (fields) => terms.every((t) => (fields[t.field] ?? '') === t.value === t.equal);
}

// ---------------------------------------------------------------------------------------------
// Labels

type LabelRequirement =
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: 'in' | 'notin'; values: readonly string[] };

/** Commas inside `in (a,b)` do not separate requirements. */
function splitRequirements(selector: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const c of selector) {
    if (c === '(') depth += 1;
    if (c === ')') depth -= 1;
    if (c === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
    } else current += c;
  }
  parts.push(current.trim());
  return parts;
}

/** IsValidLabelValue: empty, or up to 63 alphanumerics, '-', '_', '.' starting and ending alphanumeric. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function parseRequirement(text: string, selector: string): LabelRequirement {
  const invalid = () => badRequest(`unable to parse requirement: found '${text}', in selector '${selector}'`);
  let requirement: LabelRequirement;
  const set = /^(\S+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(text);
  const equality = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(text);
  if (set) {
    requirement = { key: set[1] ?? '', op: set[2] as 'in' | 'notin', values: (set[3] ?? '').split(',').map((v) => v.trim()) };
  } else if (equality) {
    // `a=b` is `a in (b)`, `a!=b` is `a notin (b)`.
    requirement = { key: equality[1] ?? '', op: equality[2] === '!=' ? 'notin' : 'in', values: [equality[3] ?? ''] };
  } else if (text.startsWith('!')) {
    requirement = { key: text.slice(1).trim(), op: '!exists' };
  } else {
    requirement = { key: text, op: 'exists' };
  }
  if (!LABEL_KEY.test(requirement.key)) throw invalid();
  if ('values' in requirement && !requirement.values.every((v) => v.length <= 63 && LABEL_VALUE.test(v))) throw invalid();
  return requirement;
}

function satisfies(labels: Readonly<Record<string, string>>, requirement: LabelRequirement): boolean {
  const has = Object.hasOwn(labels, requirement.key);
  switch (requirement.op) {
    case 'exists':
      return has;
    case '!exists':
      return !has;
    case 'in':
      return has && requirement.values.includes(labels[requirement.key] ?? '');
    case 'notin':
      return !has || !requirement.values.includes(labels[requirement.key] ?? '');
  }
}

/** A label selector (equality and set-based forms) as a predicate over an object's labels. */
export function labelSelector(selector: string): (labels: Readonly<Record<string, string>>) => boolean {
  const requirements = selector.trim() ? splitRequirements(selector).map((r) => parseRequirement(r, selector)) : [];
  return (labels) => requirements.every((r) => satisfies(labels, r));
}
