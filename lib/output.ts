/**
 * A step's output on its way out: redacted as a stream, framed into lines with the step's prefix,
 * over-long lines cut into pieces, the destination's backpressure passed back to the step, and the
 * last lines of stderr kept for the failure message.
 *
 * Everything here works on byte strings: a chunk read from the step becomes a latin1 string, one
 * character per byte, and is written back the same way. V8's native string search and replace
 * then do the scanning (newlines, secrets) and rewriting of a whole chunk in one call each, without
 * decoding UTF-8 and without an allocation per line; the bytes that come out are exactly the ones
 * the step wrote, plus the prefixes. Text is decoded only where it must be a string: a custom line
 * format, a callback sink, and the tail's text.
 */
import type { Readable, Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { secretBytes } from './secrets.js';

/** Longer lines are printed in pieces of at most this many bytes (a line is never buffered whole). */
export const MAX_LINE_BYTES = 64 * 1024;

const REDACTED = '[REDACTED]';
const NEWLINE = 10;

/**
 * A copy of `text` that does not share its memory. V8 makes a longer substring a view of its
 * parent: a few bytes kept from a 64 KiB chunk would keep the whole chunk alive, past the young
 * generation's collections, and a young generation that sees data survive grows (RSS).
 */
function detached(text: string): string {
  return text.length < 16 ? text : Buffer.from(text, 'latin1').toString('latin1');
}

/** UTF-8 bytes as a byte string, and back. */
export const toBytes = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');
export const fromBytes = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8');

/** Every registered secret in `bytes` (a byte string) replaced, longest first as `redact` does. */
function redactBytes(bytes: string, secrets: readonly string[]): string {
  let out = bytes;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/**
 * Redacts a stream that arrives in pieces. A secret can be split across two reads, so the end of a
 * piece that could be the start of a secret (at most longest secret − 1 bytes) is held back until
 * the next piece, and so is a secret that starts before that point and ends after it: what is
 * returned never holds a secret or the start of one whose end is still to come. Only such an end is
 * held: output that merely ends is passed on at once, so a step that prints and then waits is seen.
 * With no secret registered it returns its input untouched.
 */
export class StreamRedactor {
  #carry = '';

  push(bytes: string): string {
    const secrets = secretBytes();
    if (secrets.length === 0 && this.#carry === '') return bytes;
    const text = this.#carry + bytes;
    const cut = safeCut(text, secretStart(text, secrets), secrets);
    this.#carry = detached(text.slice(cut));
    return cut === 0 ? '' : redactBytes(text.slice(0, cut), secrets);
  }

  /** Whatever is held back, redacted: the stream has ended. */
  end(): string {
    const rest = redactBytes(this.#carry, secretBytes());
    this.#carry = '';
    return rest;
  }
}

/** Where the longest end of `text` that is the beginning of a secret starts (`text.length` if none). */
function secretStart(text: string, secrets: readonly string[]): number {
  let start = text.length;
  for (const secret of secrets) {
    const first = secret[0]!;
    for (let at = text.indexOf(first, Math.max(0, text.length - secret.length + 1)); at !== -1 && at < start; at = text.indexOf(first, at + 1)) {
      if (text.startsWith(secret.slice(0, text.length - at), at)) {
        start = at;
        break;
      }
    }
  }
  return start;
}

/** Moves `cut` back to the start of any secret that straddles it, until none does. */
function safeCut(text: string, cut: number, secrets: readonly string[]): number {
  for (let moved = true; moved; ) {
    moved = false;
    for (const secret of secrets) {
      // Only an occurrence starting within secret.length − 1 before the cut can straddle it.
      for (let at = text.indexOf(secret, Math.max(0, cut - secret.length + 1)); at !== -1 && at < cut; at = text.indexOf(secret, at + 1)) {
        if (at + secret.length > cut) {
          cut = at;
          moved = true;
          break;
        }
      }
    }
  }
  return cut;
}

/**
 * Complete lines, as byte strings: `first` (no newline), then `rest`, which is empty or holds the
 * newline that ends `first` and the lines after it, each ended by its newline. Two parts because
 * `first` usually continues a line begun in an earlier read while `rest` is a view of the latest
 * read: formatting them apart spares copying the read to join them.
 */
export interface Lines {
  first: string;
  rest: string;
}

/** How complete lines are printed. */
export interface LineFormat {
  /** The text to write, in parts written in order, every line ended by a newline. */
  format(lines: Lines): string[];
  /** How that text is to be encoded: `latin1` when it is still a byte string. */
  encoding: 'latin1' | 'utf8';
}

/**
 * `PREFIXline` for every line, by one native replace per read: the fast path. The replace also
 * puts a prefix after the last newline, for a line not begun yet; it is left out by taking a view
 * of the result, which is written as it is (a joined string would be copied whole before writing).
 */
export function prefixFormat(prefix: string): LineFormat {
  const head = toBytes(prefix);
  const glue = `\n${head}`;
  return {
    format: ({ first, rest }) => {
      if (rest === '') return [`${head}${first}\n`];
      const lines = rest.replaceAll('\n', glue);
      return [`${head}${first}`, lines.slice(0, lines.length - head.length)];
    },
    encoding: 'latin1',
  };
}

/** Any per-line format (e.g. a JSON object per line): each line decoded from UTF-8 and formatted. */
export function lineByLineFormat(formatLine: (line: string) => string): LineFormat {
  return {
    format: ({ first, rest }) => {
      let out = '';
      // Decoded whole: a block always ends on a character's end, and one decode beats one per line.
      const lines = fromBytes(`${first}${rest}`);
      for (const line of (lines.endsWith('\n') ? lines.slice(0, -1) : lines).split('\n')) out += `${formatLine(line)}\n`;
      return [out];
    },
    encoding: 'utf8',
  };
}

/** 0b10xxxxxx: a byte inside a UTF-8 character, where a cut would split it. */
const isContinuation = (byte: number) => (byte & 0xc0) === 0x80;

/** The end of a piece cut at `at` moved back (at most 3 bytes) so that no UTF-8 character is split. */
function characterBoundary(bytes: string, from: number, at: number): number {
  let cut = at;
  while (cut > from + 1 && cut > at - 3 && isContinuation(bytes.charCodeAt(cut))) cut--;
  return cut;
}

/**
 * Splits a byte stream into lines and hands them on in blocks: every complete line, and every
 * `maxLine` bytes of a line that has not ended yet. The unfinished line is all it keeps.
 */
export class LineFramer {
  #pending = '';
  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  /** The complete lines (and pieces of over-long ones) now known; undefined when none. */
  push(bytes: string): Lines | undefined {
    // Searched in `bytes` alone: searching the unfinished line joined to it would copy both.
    const pending = this.#pending;
    const last = bytes.lastIndexOf('\n');
    if (last === -1) {
      if (pending.length + bytes.length <= this.maxLine) {
        this.#pending = pending + bytes;
        return undefined;
      }
      return this.#pieces(pending, bytes);
    }
    // The common case: no line in the block can be over the bound, so the block goes as it is.
    const first = bytes.indexOf('\n');
    if (pending.length + first <= this.maxLine && last - first <= this.maxLine && bytes.length - last - 1 <= this.maxLine) {
      this.#pending = detached(bytes.slice(last + 1));
      return { first: pending + bytes.slice(0, first), rest: bytes.slice(first, last + 1) };
    }
    return this.#cutLines(pending + bytes);
  }

  /** The unfinished line, if any: the stream has ended. */
  end(): Lines | undefined {
    const last = this.#pending;
    this.#pending = '';
    return last === '' ? undefined : { first: last, rest: '' };
  }

  /** A line that goes on past the bound in `bytes`, which has no newline: pieces of `maxLine` bytes. */
  #pieces(pending: string, bytes: string): Lines {
    const pieces: string[] = [];
    let head = pending;
    let rest = bytes;
    const byteAt = (i: number) => (i < head.length ? head.charCodeAt(i) : rest.charCodeAt(i - head.length));
    while (head.length + rest.length > this.maxLine) {
      // Back to a character's start (at most 3 bytes), across the join of the two if need be.
      let cut = this.maxLine;
      while (cut > this.maxLine - 3 && isContinuation(byteAt(cut))) cut--;
      if (cut <= head.length) {
        pieces.push(head.slice(0, cut));
        head = head.slice(cut);
      } else {
        pieces.push(head + rest.slice(0, cut - head.length));
        rest = rest.slice(cut - head.length);
        head = '';
      }
    }
    this.#pending = head + rest;
    return asLines(pieces);
  }

  /** Line by line, over-long ones cut into pieces: only for blocks that hold such a line. */
  #cutLines(text: string): Lines | undefined {
    const lines: string[] = [];
    let from = 0;
    for (;;) {
      const newline = text.indexOf('\n', from);
      const end = newline === -1 ? text.length : newline;
      if (end - from > this.maxLine) {
        const cut = characterBoundary(text, from, from + this.maxLine);
        lines.push(text.slice(from, cut));
        from = cut;
        continue;
      }
      if (newline === -1) break;
      lines.push(text.slice(from, newline));
      from = newline + 1;
    }
    this.#pending = text.slice(from);
    return lines.length ? asLines(lines) : undefined;
  }
}

function asLines(lines: readonly string[]): Lines {
  return { first: lines[0]!, rest: lines.length > 1 ? `\n${lines.slice(1).join('\n')}\n` : '' };
}

/**
 * The last lines of a stream, bounded in lines and bytes whatever the stream's size. It goes into
 * the Build's condition and a Warning event, so it is kept redacted: `push` redacts the stream as
 * it comes (a secret is replaced whole before any bound can cut it), `pushRedacted` takes a stream
 * that already was. Only the last `4 × maxBytes` bytes are kept: the text is at most `maxBytes`,
 * and only blank lines (dropped) could push the lines it shows out of that window.
 */
export class TailBuffer {
  #window = '';
  /** Bytes were dropped before the window, and not at a line's end: its first line is cut. */
  #cutFirst = false;
  readonly #redactor = new StreamRedactor();
  readonly #keep: number;

  constructor(
    private readonly maxLines = 20,
    private readonly maxBytes = 2048,
  ) {
    this.#keep = 4 * maxBytes;
  }

  /** Text as a step wrote it (a string; redacted here). */
  push(text: string): void {
    this.pushRedacted(this.#redactor.push(toBytes(text)));
  }

  /** A byte string that has passed a `StreamRedactor` already. */
  pushRedacted(bytes: string): void {
    if (bytes === '') return;
    const keep = this.#keep;
    if (bytes.length >= keep) {
      const start = bytes.length - keep;
      const before = start > 0 ? bytes.charCodeAt(start - 1) : this.#window.charCodeAt(this.#window.length - 1);
      if (start > 0 || this.#window !== '') this.#cutFirst = before !== NEWLINE;
      this.#window = detached(bytes.slice(start));
      return;
    }
    const room = keep - bytes.length;
    if (this.#window.length > room) {
      const start = this.#window.length - room;
      this.#cutFirst = this.#window.charCodeAt(start - 1) !== NEWLINE;
      this.#window = this.#window.slice(start);
    }
    this.#window += bytes;
  }

  /** The kept tail, trimmed to the byte bound from the end. */
  text(): string {
    this.pushRedacted(this.#redactor.end());
    const lines = this.#window.split('\n').map(fromBytes);
    // A line cut at the window's start may begin inside a character: drop what is left of it.
    if (this.#cutFirst) lines[0] = `...${lines[0]!.replace(/^\uFFFD+/, '')}`;
    const kept = lines
      .filter((l) => l.trim() !== '' && l !== '...')
      .slice(-this.maxLines)
      .map((l) => (Buffer.byteLength(l) > this.maxBytes ? `...${lastBytes(l, this.maxBytes)}` : l));
    const out = kept.join('\n');
    return Buffer.byteLength(out) > this.maxBytes ? `...${lastBytes(out, this.maxBytes)}` : out;
  }
}

/** The end of `text` within `limit` UTF-8 bytes, starting on a character boundary. */
function lastBytes(text: string, limit: number): string {
  const bytes = Buffer.from(text, 'utf8');
  // A cut inside a character decodes to U+FFFD at the start: drop it.
  return bytes.subarray(Math.max(0, bytes.length - limit)).toString('utf8').replace(/^\uFFFD+/, '');
}

/** Where a stream's formatted output goes: a writable stream (backpressure) or a callback (none). */
export type OutputSink = Writable | ((text: string) => void);

/**
 * One pipeline per stream: `source` (a step's stdout or stderr) → redaction → lines → `format` →
 * `sink`, with `tail` (if given) fed the redacted bytes. When the sink cannot take a write at once
 * (the pipe to the container runtime is full), the source is paused until that write is done: the
 * step is held back by the pipe instead of its output piling up here, and no more than one read's
 * worth of output is ever waiting. Returns `end`, to call once the source has closed: it flushes
 * what was held back.
 */
export function relayOutput(source: Readable, format: LineFormat, sink: OutputSink, tail?: TailBuffer): { end(): void } {
  const redactor = new StreamRedactor();
  const framer = new LineFramer();
  let paused = false;
  const written = () => {
    if (!paused) return;
    paused = false;
    source.resume();
  };
  const write = (lines: Lines) => {
    const parts = format.format(lines);
    if (typeof sink === 'function') {
      const text = parts.join('');
      sink(format.encoding === 'latin1' ? fromBytes(text) : text);
      return;
    }
    // Written apart, not joined: joining would copy the read's worth of text once more.
    for (let i = 0; i < parts.length; i++) sink.write(parts[i]!, format.encoding, i === parts.length - 1 ? written : undefined);
    // A write the pipe took at once leaves nothing pending; one it did not is waited for.
    if (sink.writableLength > 0 && !paused) {
      paused = true;
      source.pause();
    }
  };
  const emit = (bytes: string) => {
    tail?.pushRedacted(bytes);
    const lines = framer.push(bytes);
    if (lines !== undefined) write(lines);
  };
  source.on('data', (chunk: Buffer) => emit(redactor.push(chunk.toString('latin1'))));
  return {
    end() {
      const rest = redactor.end();
      if (rest) emit(rest);
      const last = framer.end();
      if (last !== undefined) write(last);
    },
  };
}

/**
 * Keeps V8's young generation at its initial size (`--semi-space-growth-factor=1`). Streaming a
 * step's output allocates a string or two per 64 KiB read, all short-lived; but some are always
 * alive when a collection comes, and V8 grows the young generation, up to 16 MiB per semi-space,
 * for a working set that never needs it: 100 MB of output otherwise raises peak RSS by about
 * 15 MiB (BENCHMARKS.md), for some 10–20% less CPU time on that output. Process-wide, so the
 * library never sets it by itself: `spot-run` calls it at start, and a build program that owns
 * its process and runs steps may too.
 */
export function preferSmallYoungGeneration(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
}
