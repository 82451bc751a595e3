/**
 * The text the runtime puts into a Build's conditions and its events (pure). Most of it comes from
 * steps: their stderr carries colours, cursor movement, progress bars redrawn with `\r`, and
 * whatever bytes a tool printed. The API server stores message text as given and kubectl prints it
 * raw, so an escape sequence in a condition would repaint the terminal of whoever reads the Build.
 *
 * The rule, one function for both: secrets redacted; ANSI escape sequences (CSI, OSC, DCS and the
 * other ECMA-48 forms, 7- and 8-bit) removed; a line redrawn with `\r` keeps what a terminal would
 * show last; every other C0 and C1 control character removed except newline and tab (Kubernetes
 * messages are free text, and a failure's last stderr lines read better as lines); lone UTF-16
 * surrogates replaced, so the JSON sent is valid UTF-8; then the message is fitted to its limit
 * (its first line and its end kept: a failure's cause is mostly at the end).
 */
import { redact } from './secrets.js';

/** metav1.Condition's message limit (`maxLength: 32768`); Go measures strings in bytes. */
export const MAX_CONDITION_MESSAGE_BYTES = 32 * 1024;
/** An event message's limit (events.k8s.io `note`). */
export const MAX_EVENT_MESSAGE_BYTES = 1024;

/**
 * CSI (`ESC [` or U+009B, parameters, intermediates, a final byte); the string-carrying sequences
 * OSC, DCS, SOS, PM, APC up to their terminator (BEL or ST), or to the end of the line when a tool
 * never sent one (a terminal would swallow the rest; we keep the next lines); and every other
 * two-or-more-byte escape (`ESC (`B, `ESC 7`, `ESC c` ...).
 */
const ESCAPE_SEQUENCE =
  /(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\n]*?(?:\x07|\x1b\\|\x9c|(?=\n)|$)|\x1b[ -/]*[0-~]/g;
/** C0 controls but tab and newline, DEL, and C1 controls. */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** What a terminal would leave on a line redrawn with `\r`: the last non-empty segment. */
function lastDrawn(line: string): string {
  if (!line.includes('\r')) return line;
  const segments = line.split('\r').filter((s) => s !== '');
  return segments.at(-1) ?? '';
}

/** `text` without escape sequences and control characters (newline and tab kept), as valid UTF-16. */
export function stripControls(text: string): string {
  return text
    .replace(ESCAPE_SEQUENCE, '')
    .replace(/\r+\n/g, '\n')
    .split('\n')
    .map(lastDrawn)
    .join('\n')
    .replace(CONTROL, '')
    .replace(LONE_SURROGATE, '\uFFFD');
}

/** Cuts `text` to at most `limit` UTF-8 bytes, on a character boundary, marking the cut. */
export function truncateUtf8(text: string, limit: number): string {
  if (Buffer.byteLength(text, 'utf8') <= limit) return text;
  const marker = '...';
  const bytes = Buffer.from(text, 'utf8').subarray(0, Math.max(0, limit - marker.length));
  // Drop a partial trailing character (a decoded U+FFFD) so the result stays valid UTF-8.
  return bytes.toString('utf8').replace(/\uFFFD+$/, '') + marker;
}

/**
 * Fits a message into `limit` bytes. A failure's cause is mostly at its end (a step's last stderr
 * lines), so a longer message keeps its first line (at most a quarter of the room) and as much of
 * its end as fits, from a line start when one is near, with `...` between.
 */
export function fitMessage(message: string, limit = MAX_EVENT_MESSAGE_BYTES): string {
  if (Buffer.byteLength(message, 'utf8') <= limit) return message;
  const firstLine = message.split('\n', 1)[0]!;
  const head = truncateUtf8(firstLine, Math.floor(limit / 4));
  const marker = '\n...\n';
  const bytes = Buffer.from(message, 'utf8');
  const room = Math.max(0, limit - Buffer.byteLength(head, 'utf8') - marker.length);
  // Decoding from the middle of a character gives U+FFFD: drop it.
  let tail = bytes
    .subarray(bytes.length - room)
    .toString('utf8')
    .replace(/^\uFFFD+/, '');
  // From a line start when one is near: a cut line reads worse, but a long line is worth keeping.
  const lineStart = tail.indexOf('\n');
  if (lineStart >= 0 && lineStart < tail.length - 1 && lineStart <= Math.max(160, room / 8)) tail = tail.slice(lineStart + 1);
  return `${head}${marker}${tail}`;
}

/**
 * A message without escape sequences or control characters (newline and tab kept), trailing
 * blanks trimmed, valid UTF-8, at most `maxBytes`. No redaction: see `sanitizeMessage`.
 */
export function cleanMessage(text: string, maxBytes: number): string {
  return fitMessage(stripControls(text).replace(/[ \t]+$/gm, '').replace(/\s+$/, ''), maxBytes);
}

/** A message ready for a condition or an event: `cleanMessage`, and every secret and masked value redacted. */
export function sanitizeMessage(text: string, maxBytes: number): string {
  // Redacted before and after: a secret split by a colour code is whole only once it is gone.
  return cleanMessage(redact(stripControls(redact(text))), maxBytes);
}
