/**
 * Issue 16 (and 12) probes on the step paths, each reproducing an attack that worked before the
 * fix (they fail on main at 2635481; the two marked "guard" passed there too and keep it so): a
 * secret left in pieces by the stderr tail's byte bound or by the 64 KiB flush of live output, a
 * secret printed in its JSON-escaped form, and a hostile results folder (a link to the token, a
 * named pipe, a device, an oversized file, a secret as a value, the folder itself swapped for a
 * link). Only the public step API is used, so the probes run on any version.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../lib/log.js';
import { collectingStepOptions, taskFailure } from './support/steps.js';
import { registerMaskedValue, registerSecret } from '../lib/secrets.js';
import { runStep, TailBuffer, type StepOptions, type StepSpec } from '../lib/steps.js';

/** A service-account-token-sized secret (a JWT is ~900 characters), unique to this file. */
// A token of a real one's shape and length (three base64url parts), assembled from obvious fakes
// at run time so no real-looking JWT sits in the source.
const b64 = (text: string) => Buffer.from(text).toString('base64url');
const TOKEN = `${b64('{"alg":"RS256"}')}.${b64('fake-steps-security-claims.'.repeat(20))}.${b64('fake-signature-of-the-token'.repeat(8))}`;
registerSecret(TOKEN);

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-steps-security-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const io = () => collectingStepOptions(scratch);

const run = (spec: StepSpec, options: StepOptions = io()) => runStep(spec, new AbortController().signal, silentLogger, options);

const failure = taskFailure;

/** Fails naming the first 16-character piece of `secret` found in `text`. */
function assertNoPiece(text: string, secret: string, where: string): void {
  for (let i = 0; i + 16 <= secret.length; i += 4) {
    const piece = secret.slice(i, i + 16);
    assert.ok(!text.includes(piece), `${where}: a piece of the secret survived (offset ${i}: ${JSON.stringify(piece)})`);
  }
}

/** A shell word that prints `text` with printf, no newline added. */
const printf = (text: string) => `printf '%s' '${text}'`;

describe('the stderr tail: a secret is redacted whole before the byte bound cuts it', () => {
  test('a token followed by 1,500 bytes and no newline, as TailBuffer keeps it', () => {
    const tail = new TailBuffer(20, 2048);
    tail.push(`auth: ${TOKEN}${'x'.repeat(1500)}`);
    const text = tail.text();
    assertNoPiece(text, TOKEN, 'tail');
    assert.ok(Buffer.byteLength(text) <= 2048 + 3, `${Buffer.byteLength(text)} bytes`);
    assert.ok(text.endsWith('x'.repeat(100)), 'the end of the line is kept');
  });

  test('the same through a failing step: no piece of the token in the failure message', async () => {
    const err = await failure(run({ type: 'Push', command: `${printf(`denied: ${TOKEN}${'x'.repeat(1500)}`)} >&2; exit 3` }));
    assert.equal(err.reason, 'StepFailed');
    assertNoPiece(err.message, TOKEN, 'condition message');
    assert.match(err.message, /^exit code 3; last stderr lines:\n/);
  });

  test('guard: the token split across two writes of the step, then 3,000 bytes: still whole when redacted', async () => {
    const half = TOKEN.length >> 1;
    const err = await failure(
      run({ type: 'Push', command: `${printf(`denied: ${TOKEN.slice(0, half)}`)} >&2; sleep 0.1; ${printf(`${TOKEN.slice(half)}${'y'.repeat(3000)}`)} >&2; exit 1` }),
    );
    assertNoPiece(err.message, TOKEN, 'condition message');
  });
});

describe('live output: a secret straddling the 64 KiB flush of a line is not printed in halves', () => {
  test('a line with no newline, the flush falling inside the token between two reads', async () => {
    const o = io();
    // 64 KiB - 100 bytes, then half the token; the rest a moment later, so the line is over the
    // bound while only half the token has arrived.
    const half = TOKEN.length >> 1;
    await run({ type: 'Log', command: `${printf(`${'a'.repeat(64 * 1024 - 100)}${TOKEN.slice(0, half)}`)}; sleep 0.2; ${printf(`${TOKEN.slice(half)} end`)}` }, o);
    const out = o.out.join('');
    assertNoPiece(out, TOKEN, 'stdout');
    assert.ok(out.includes('[REDACTED]'), 'the token is shown as [REDACTED]');
    // Every printed line is at most 64 KiB plus its prefix.
    for (const line of out.split('\n')) assert.ok(Buffer.byteLength(line) <= 64 * 1024 + '[Log] '.length, `a line of ${Buffer.byteLength(line)} bytes`);
  });

  test('the same on stderr, the 64 KiB cut falling inside the token whatever the reads', async () => {
    const o = io();
    const fill = (n: number, c: string) => `head -c ${n} /dev/zero | tr '\\0' ${c}`;
    await run({ type: 'Log', command: `{ ${fill(64 * 1024 - 20, 'b')}; ${printf(TOKEN)}; ${fill(70_000, 'c')}; } >&2` }, o);
    const err = o.err.join('');
    assertNoPiece(err, TOKEN, 'stderr');
    assert.equal(err.split('[REDACTED]').length, 2, 'the token is shown as [REDACTED] once');
  });

  test('a custom line format (JSON, as spot-run --log-format json): redacted before it is serialised', async () => {
    // A secret with a quote and a backslash: JSON.stringify escapes both, so redacting the
    // serialised line would miss it.
    const quoted = 'pa"ss\\word-0123456789';
    registerSecret(quoted);
    const o = io();
    await run(
      { type: 'Log', command: `printf '%s\\n' 'login with pa"ss\\word-0123456789 ok'` },
      { ...o, formatLine: (step, stream, line) => JSON.stringify({ step, stream, msg: line }) },
    );
    const out = o.out.join('');
    assert.ok(!out.includes(quoted) && !out.includes(JSON.stringify(quoted).slice(1, -1)), `the secret is printed: ${out}`);
    assert.deepEqual(JSON.parse(out), { step: 'Log', stream: 'stdout', msg: 'login with [REDACTED] ok' });
  });
});

describe('a hostile results folder fails the step with InvalidResult', () => {
  test('image-url as a symbolic link to the token file: refused, the token nowhere', async () => {
    const tokenFile = join(scratch, 'token');
    await writeFile(tokenFile, TOKEN, { mode: 0o600 });
    const err = await failure(run({ type: 'Push', command: `ln -s '${tokenFile}' "$SPOT_RESULTS_DIR/image-url"` }));
    assert.equal(err.reason, 'InvalidResult');
    assert.equal(err.message, "Push's result file image-url is a symbolic link: result files must be regular files");
  });

  test('image-url as a link to /dev/zero: refused at once, nothing read', async () => {
    const before = process.memoryUsage().rss;
    const err = await failure(run({ type: 'Push', command: 'ln -s /dev/zero "$SPOT_RESULTS_DIR/image-url"' }));
    assert.equal(err.reason, 'InvalidResult');
    assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'memory grew by more than 64 MiB');
  });

  test('image-url as a named pipe: refused at once, the run does not hang', { timeout: 10_000 }, async () => {
    const started = Date.now();
    const err = await failure(run({ type: 'Push', command: 'mkfifo "$SPOT_RESULTS_DIR/image-url"' }));
    assert.equal(err.reason, 'InvalidResult');
    assert.equal(err.message, "Push's result file image-url is a named pipe: result files must be regular files");
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  });

  test('image-metadata as a folder: refused', async () => {
    const err = await failure(run({ type: 'Push', command: 'mkdir "$SPOT_RESULTS_DIR/image-metadata"' }));
    assert.equal(err.message, "Push's result file image-metadata is a folder: result files must be regular files");
  });

  test('a result file over 4 KiB: refused with its size, nothing of it in the message', async () => {
    const err = await failure(run({ type: 'Push', command: `head -c 5000 /dev/zero | tr '\\0' u > "$SPOT_RESULTS_DIR/image-url"` }));
    assert.equal(err.reason, 'InvalidResult');
    assert.equal(err.message, "Push's result file image-url holds 5000 bytes: at most 4096 are accepted");
  });

  test('guard: exactly 4096 bytes is accepted', async () => {
    const result = await run({ type: 'Push', command: `head -c 4096 /dev/zero | tr '\\0' u > "$SPOT_RESULTS_DIR/image-url"` });
    assert.equal(result.status?.image?.url, 'u'.repeat(4096));
  });

  test('a value holding a registered secret: refused, the secret not shown', async () => {
    const err = await failure(run({ type: 'Push', command: `printf 'registry.example.com/app:1?auth=%s' '${TOKEN}' > "$SPOT_RESULTS_DIR/image-url"` }));
    assert.equal(err.reason, 'InvalidResult');
    assert.equal(err.message, "Push's result file image-url holds a secret of this run (a credential or a masked value): it is not reported");
  });

  test('a value holding a masked value (--mask-env, a registry credential): refused too', async () => {
    registerMaskedValue('registry-auth-value-31337');
    const err = await failure(run({ type: 'Push', command: `echo 'registry.example.com/app:1#registry-auth-value-31337' > "$SPOT_RESULTS_DIR/image-url"` }));
    assert.equal(err.reason, 'InvalidResult');
    assert.ok(!err.message.includes('registry-auth-value-31337'), err.message);
  });

  test('the results folder swapped for a link to another folder: nothing in it is read', async () => {
    const elsewhere = await mkdtemp(join(scratch, 'elsewhere-'));
    await writeFile(join(elsewhere, 'image-url'), 'registry.example.com/forged:1');
    const err = await failure(run({ type: 'Push', command: `rm -rf "$SPOT_RESULTS_DIR" && ln -s '${elsewhere}' "$SPOT_RESULTS_DIR"` }));
    assert.equal(err.reason, 'InvalidResult');
    assert.equal(err.message, 'Push replaced its results folder ($SPOT_RESULTS_DIR): nothing in it is read');
    // The link is removed, the folder it pointed at is left alone.
    assert.equal(execFileSync('cat', [join(elsewhere, 'image-url')], { encoding: 'utf8' }), 'registry.example.com/forged:1');
  });
});
