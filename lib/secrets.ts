/**
 * The values this process must never print (tokens as they are read), and the one function that
 * takes them out of text. Process-wide on purpose: a token read by the config loader must be kept
 * out of a log line, an error message, a step's environment and a condition message alike,
 * whoever writes them.
 */

// Kept small: a rotated-away token is still a secret for a while, but a long-running process
// should not grow this without bound.
const secrets = new Set<string>();
const MAX_SECRETS = 16;
/** The same secrets, longest first (see redact). */
let longestFirst: string[] = [];

/** Registers a value that must never be printed. Short values are ignored (they would mask noise). */
export function registerSecret(value: string): void {
  if (value.length < 8 || secrets.has(value)) return;
  secrets.add(value);
  if (secrets.size > MAX_SECRETS) secrets.delete(secrets.values().next().value as string);
  // Longest first: a secret that contains a shorter one must not be left half shown.
  longestFirst = [...secrets].sort((a, b) => b.length - a.length);
}

/** True when `text` holds a registered secret. */
export function containsSecret(text: string): boolean {
  for (const secret of secrets) if (text.includes(secret)) return true;
  return false;
}

/** Replaces every registered secret in `text` with `[REDACTED]`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of longestFirst) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
  }
  return out;
}

/** How deep `redactValue` walks; deeper values are replaced, never walked (log fields are shallow). */
const MAX_REDACT_DEPTH = 16;

/**
 * A copy of `value` with every string in it (keys included) redacted, for text that is serialised
 * next (a JSON log line): serialising first would escape a secret's quote or backslash and it would
 * no longer match.
 */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_REDACT_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  // toJSON first (a Date, a URL), as JSON.stringify would.
  const plain = typeof (value as { toJSON?: unknown }).toJSON === 'function' ? (value as { toJSON(): unknown }).toJSON() : value;
  if (typeof plain !== 'object' || plain === null) return redactValue(plain, depth + 1);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(plain)) out[redact(k)] = redactValue(v, depth + 1);
  return out;
}
