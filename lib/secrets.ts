/**
 * The values this process must never print, and the one function that takes them out of text.
 * Process-wide on purpose: a token read by the config loader must be kept out of a log line, an
 * error message, a step's environment and a condition message alike, whoever writes them.
 *
 * Two kinds:
 * - secrets (`registerSecret`): the runtime's own credentials (the service-account token, as read
 *   and as rotated). Never printed, and a variable holding one is withheld from steps.
 * - masked values (`registerMaskedValue`): values the pod hands its steps on purpose (registry
 *   credentials in `REGISTRY_AUTH`). Steps keep them; nothing the runtime writes may show them.
 */

/** Shorter values would mask ordinary words in every line; `spot-run --mask-env` refuses them. */
export const MIN_MASKED_LENGTH = 6;

// Kept small: a rotated-away token is still a secret for a while, but a long-running process
// should not grow this without bound.
const secrets = new Set<string>();
const MAX_SECRETS = 16;
/** Masked values are named once at start, so they are kept for the life of the process. */
const masked = new Set<string>();
/** Both kinds, longest first (see redact). */
let longestFirst: string[] = [];
/** The same again as their UTF-8 bytes, one latin1 character per byte (see secretBytes). */
let longestFirstBytes: string[] = [];

function reorder(): void {
  // Longest first: a secret that contains a shorter one must not be left half shown.
  longestFirst = [...new Set([...secrets, ...masked])].sort((a, b) => b.length - a.length);
  longestFirstBytes = longestFirst.map((v) => Buffer.from(v, 'utf8').toString('latin1')).sort((a, b) => b.length - a.length);
}

/**
 * The secrets and masked values as byte strings (each character one byte of the value's UTF-8),
 * longest first: what redacts step output as it streams by (output.ts), which never decodes it.
 */
export function secretBytes(): readonly string[] {
  return longestFirstBytes;
}

/** Registers a credential of this process: never printed, never passed to a step. Short values are ignored (they would mask noise). */
export function registerSecret(value: string): void {
  if (value.length < 8 || secrets.has(value)) return;
  secrets.add(value);
  if (secrets.size > MAX_SECRETS) secrets.delete(secrets.values().next().value as string);
  reorder();
}

/**
 * Registers a value that steps may hold but nothing this process writes may show (live step
 * output, logs, condition and event messages, the termination message). A multi-line value is
 * masked whole and line by line, since its lines may be shown apart (the last lines of a tail). Throws a RangeError
 * for a value under MIN_MASKED_LENGTH characters.
 */
export function registerMaskedValue(value: string): void {
  if (value.length < MIN_MASKED_LENGTH) throw new RangeError(`a masked value needs at least ${MIN_MASKED_LENGTH} characters`);
  masked.add(value);
  for (const line of value.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed.length >= MIN_MASKED_LENGTH) masked.add(trimmed);
  }
  reorder();
}

/** True when `text` holds a registered secret (a credential of this process; masked values do not count). */
export function containsSecret(text: string): boolean {
  for (const secret of secrets) if (text.includes(secret)) return true;
  return false;
}

/** Replaces every registered secret and masked value in `text` with `[REDACTED]`. */
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
