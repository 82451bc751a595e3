/**
 * The output pipeline (lib/output.ts) without processes: the streaming redactor, the line framer,
 * and relayOutput end to end on seeded random streams cut at random places, compared with what the
 * plain rule says (every line of the redacted text, prefixed); backpressure from a slow sink.
 */
import { strict as assert } from 'node:assert';
import { Readable, Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { fromBytes, LineFramer, lineByLineFormat, MAX_LINE_BYTES, prefixFormat, relayOutput, StreamRedactor, toBytes } from '../lib/output.js';
import { redact, registerSecret } from '../lib/secrets.js';
import { mulberry32 as random } from './support/scenario-harness.js';

const SECRETS = ['tok-0123456789abcdef', 'tok-0123456789abcdef-and-more', 'пароль-секрет-42'];
for (const s of SECRETS) registerSecret(s);

/** Text with newlines, multi-byte characters, secrets and blank lines; no line near 64 KiB. */
function sampleText(rand: () => number, lines: number): string {
  const words = ['build', 'ok', 'ошибка', '失败', '🚫', 'x'.repeat(200), '', ' ', ...SECRETS, 'tok-0123'];
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const n = Math.floor(rand() * 6);
    out.push(Array.from({ length: n }, () => words[Math.floor(rand() * words.length)]).join(' '));
  }
  return `${out.join('\n')}${rand() < 0.5 ? '\n' : ''}`;
}

/** `bytes` (a Buffer) in pieces cut at random places, some a single byte, some inside a character. */
function cutAtRandom(bytes: Buffer, rand: () => number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const size = rand() < 0.2 ? 1 : 1 + Math.floor(rand() * 3000);
    pieces.push(bytes.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

/** Runs relayOutput over `pieces` with a callback sink; resolves to what it printed. */
function relayAll(pieces: Buffer[], format = prefixFormat('[T] ')): Promise<string> {
  const printed: string[] = [];
  const source = Readable.from(pieces, { objectMode: false });
  const relay = relayOutput(source, format, (text) => printed.push(text));
  return new Promise((resolve, reject) => {
    source.on('error', reject);
    source.on('end', () => {
      relay.end();
      resolve(printed.join(''));
    });
  });
}

/** The rule: every line of the redacted text (a final unterminated one too), prefixed and ended. */
function expected(text: string, prefix = '[T] '): string {
  const clean = redact(text);
  const lines = clean.endsWith('\n') ? clean.slice(0, -1).split('\n') : clean.split('\n');
  return clean === '' ? '' : lines.map((l) => `${prefix}${l}\n`).join('');
}

describe('StreamRedactor', () => {
  test('a secret split at any place between two pieces is replaced whole', () => {
    for (const secret of SECRETS) {
      const text = toBytes(`before ${secret} after\n`);
      for (let cut = 1; cut < text.length; cut++) {
        const r = new StreamRedactor();
        const out = r.push(text.slice(0, cut)) + r.push(text.slice(cut)) + r.end();
        assert.equal(fromBytes(out), 'before [REDACTED] after\n', `cut at ${cut} of ${JSON.stringify(secret)}`);
      }
    }
  });

  test('a secret that contains another is replaced whole, whatever the cut', () => {
    const text = toBytes(`x ${SECRETS[1]} y`);
    for (let cut = 1; cut < text.length; cut++) {
      const r = new StreamRedactor();
      assert.equal(fromBytes(r.push(text.slice(0, cut)) + r.push(text.slice(cut)) + r.end()), 'x [REDACTED] y', `cut at ${cut}`);
    }
  });

  test('only a possible start of a secret is held back: a finished line passes at once', () => {
    const r = new StreamRedactor();
    assert.equal(r.push(toBytes('ready\n')), toBytes('ready\n'));
    assert.equal(r.push(toBytes('token: tok-01')), toBytes('token: '), 'the start of a secret waits');
    assert.equal(r.push(toBytes('x\n')), toBytes('tok-01x\n'), 'and goes once it is not one');
    assert.equal(r.end(), '');
  });
});

describe('LineFramer', () => {
  test('a line with no newline comes out in pieces of at most 64 KiB, none splitting a character', () => {
    const framer = new LineFramer();
    // 'é' is two bytes: a cut at an odd byte would split one.
    const text = toBytes(`a${'é'.repeat(100_000)}`);
    const pieces: string[] = [];
    for (let at = 0; at < text.length; at += 65_536) {
      const lines = framer.push(text.slice(at, at + 65_536));
      if (lines) pieces.push(...`${lines.first}${lines.rest}`.split('\n').filter((l, i, all) => i < all.length - 1 || l !== ''));
    }
    const last = framer.end();
    if (last) pieces.push(last.first);
    assert.ok(pieces.length >= 3, `${pieces.length} pieces`);
    for (const piece of pieces) {
      assert.ok(piece.length <= MAX_LINE_BYTES, `a piece of ${piece.length} bytes`);
      assert.ok(!fromBytes(piece).includes('\uFFFD'), 'a character was split');
    }
    assert.equal(pieces.join(''), text);
  });
});

describe('relayOutput', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    test(`seed ${seed}: random text cut at random places prints as the rule says`, async () => {
      const rand = random(seed);
      const text = sampleText(rand, 400);
      assert.equal(await relayAll(cutAtRandom(Buffer.from(text), rand)), expected(text));
    });
  }

  test('a per-line format gets whole decoded lines, redacted before it formats them', async () => {
    const text = `one ${SECRETS[2]}\nдва\n\nthree`;
    const out = await relayAll(cutAtRandom(Buffer.from(text), random(9)), lineByLineFormat((line) => JSON.stringify(line)));
    assert.equal(out, '"one [REDACTED]"\n"два"\n""\n"three"\n');
  });

  test('a sink that is slow holds the source back: at most one read is ever waiting', async () => {
    const chunk = Buffer.from(`${'z'.repeat(79)}\n`.repeat(800));
    let produced = 0;
    const source = new Readable({
      read() {
        produced++;
        this.push(produced <= 200 ? chunk : null);
      },
    });
    let received = 0;
    let most = 0;
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(data: Buffer, _encoding, done) {
        received += data.length;
        most = Math.max(most, sink.writableLength);
        setTimeout(done, 1);
      },
    });
    const relay = relayOutput(source, prefixFormat('[T] '), sink);
    await new Promise<void>((resolve) => source.on('end', resolve));
    relay.end();
    await new Promise<void>((resolve) => sink.end(resolve));
    assert.equal(received, 200 * (chunk.length + 800 * 4), 'everything arrived, each line prefixed');
    assert.ok(most <= 2 * (chunk.length + 800 * 4), `${most} bytes were waiting in the sink at once`);
  });
});
