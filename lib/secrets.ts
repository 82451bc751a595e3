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
/** The same again as their UTF-8 bytes, one latin1 character per byte (see secretBytes). */
let longestFirstBytes: string[] = [];

/** Registers a value that must never be printed. Short values are ignored (they would mask noise). */
export function registerSecret(value: string): void {
  if (value.length < 8 || secrets.has(value)) return;
  secrets.add(value);
  if (secrets.size > MAX_SECRETS) secrets.delete(secrets.values().next().value as string);
  // Longest first: a secret that contains a shorter one must not be left half shown.
  longestFirst = [...secrets].sort((a, b) => b.length - a.length);
  longestFirstBytes = longestFirst.map((v) => Buffer.from(v, 'utf8').toString('latin1')).sort((a, b) => b.length - a.length);
}

/**
 * The secrets as byte strings (each character one byte of the secret's UTF-8), longest first: what
 * redacts step output as it streams by (output.ts), which never decodes it.
 */
export function secretBytes(): readonly string[] {
  return longestFirstBytes;
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
