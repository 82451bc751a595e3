/**
 * The one message sanitizer (lib/messages.ts) that conditions and events share, and the
 * termination message built on it (lib/termination.ts): pure functions, checked on the inputs
 * steps really produce (colours, cursor movement, progress bars, hyperlinks, broken UTF-8) and at
 * the byte limits Kubernetes sets.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MAX_CONDITION_MESSAGE_BYTES, MAX_EVENT_MESSAGE_BYTES, cleanMessage, sanitizeMessage, stripControls } from '../lib/messages.js';
import type { RunOutcome } from '../lib/runner.js';
import { registerMaskedValue } from '../lib/secrets.js';
import {
  formatTerminationMessage,
  summarizeError,
  summarizeForcedExit,
  summarizeOutcome,
  TERMINATION_MESSAGE_MAX_BYTES,
  writeTerminationMessage,
  type TerminationSummary,
} from '../lib/termination.js';
import type { Build } from '../lib/types.js';

const ESC = '\x1b';
/** Anything a terminal would act on, or that is not text: C0 but tab and newline, DEL, C1, lone surrogates. */
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when `text` encodes to UTF-8 and back unchanged (no lone surrogate, nothing replaced). */
function isWellFormed(text: string): boolean {
  return Buffer.from(text, 'utf8').toString('utf8') === text && !text.includes('\uFFFD');
}

describe('stripControls', () => {
  const cases: Array<[name: string, input: string, expected: string]> = [
    ['SGR colours', `${ESC}[1;31merror:${ESC}[0m make failed`, 'error: make failed'],
    ['256-colour and truecolour SGR', `${ESC}[38;5;196mred${ESC}[38;2;255;0;0m!${ESC}[m`, 'red!'],
    ['cursor movement and erase (CSI with intermediates and private parameters)', `a${ESC}[2K${ESC}[1A${ESC}[?25lb${ESC}[?25h`, 'ab'],
    ['8-bit CSI (U+009B)', `\u009b31mred\u009b0m`, 'red'],
    ['OSC title ended by BEL', `${ESC}]0;my title\x07after`, 'after'],
    ['OSC 8 hyperlink ended by ST', `${ESC}]8;;https://example.com${ESC}\\link${ESC}]8;;${ESC}\\`, 'link'],
    ['an OSC never terminated eats only its own line', `${ESC}]0;title without end\nnext line`, '\nnext line'],
    ['DCS and APC strings', `${ESC}Pq#0;2;0;0;0${ESC}\\x${ESC}_apc${ESC}\\y`, 'xy'],
    ['charset selection and other two-byte escapes', `${ESC}(Bplain${ESC}7${ESC}8${ESC}c`, 'plain'],
    ['a progress bar redrawn with CR keeps what a terminal shows last', 'Downloading 10%\rDownloading 55%\rDownloading 100%\ndone', 'Downloading 100%\ndone'],
    ['CRLF line ends', 'one\r\ntwo\r\n', 'one\ntwo\n'],
    ['C0 controls (NUL, BEL, BS, VT, FF) and DEL go; tab and newline stay', 'a\x00b\x07c\x08d\x0be\x0cf\x7fg\th\ni', 'abcdefg\th\ni'],
    ['C1 controls go', 'x\u0085y\u008dz', 'xyz'],
    ['a lone escape goes', `tail${ESC}`, 'tail'],
    ['lone surrogates become U+FFFD; pairs stay', 'a\ud800b\udc00c😀', 'a\uFFFDb\uFFFDc😀'],
    ['plain text is untouched, unicode included', 'Prüfung: 构建 ✓ [ok] 100%', 'Prüfung: 构建 ✓ [ok] 100%'],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => {
      const out = stripControls(input);
      assert.equal(out, expected);
      assert.doesNotMatch(out, UNSAFE);
    });
  }
});

describe('cleanMessage and sanitizeMessage', () => {
  test('colours and trailing blanks go, lines stay', () => {
    assert.equal(cleanMessage(`exit code 2; last stderr lines:\n${ESC}[31mE: not found${ESC}[0m   \n\n`, 1024), 'exit code 2; last stderr lines:\nE: not found');
  });

  test('at the limits: a condition ≤ 32 KiB, an event ≤ 1 KiB, valid UTF-8, the first line and the end kept', () => {
    for (const char of ['a', 'é', '构', '😀']) {
      const lines = Array.from({ length: 5_000 }, (_, i) => `${char.repeat(7)} line ${i}`);
      const text = `first line\n${lines.join('\n')}\nthe cause`;
      for (const limit of [MAX_CONDITION_MESSAGE_BYTES, MAX_EVENT_MESSAGE_BYTES]) {
        const out = cleanMessage(text, limit);
        const bytes = Buffer.byteLength(out);
        assert.ok(bytes <= limit, `${char} ${limit}: ${bytes} bytes`);
        assert.ok(bytes > limit - 64, `${char} ${limit}: cut too short (${bytes})`);
        assert.ok(isWellFormed(out), `${char} ${limit}: not well-formed`);
        assert.ok(out.startsWith('first line\n...\n'), out.slice(0, 40));
        assert.ok(out.endsWith('\nthe cause'), out.slice(-40));
      }
    }
  });

  test('a secret is redacted even when a colour code splits it; cleanMessage alone leaves redaction to its caller', () => {
    const secret = 'mask-me-4f1e9a';
    registerMaskedValue(secret);
    const coloured = `token ${ESC}[1mmask-me-${ESC}[0m4f1e9a here`;
    assert.equal(sanitizeMessage(coloured, 1024), 'token [REDACTED] here');
    assert.equal(sanitizeMessage(`plain ${secret}`, 1024), 'plain [REDACTED]');
    assert.equal(cleanMessage(`plain ${secret}`, 1024), `plain ${secret}`);
  });
});

describe('termination message', () => {
  const build = { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: 'default' } } as Build;

  test('summaries of each ending: outcome, exit code, phase, task and reason, message, reported', () => {
    const cases: Array<[RunOutcome, TerminationSummary]> = [
      [
        { outcome: 'done', build, exitCode: 0, message: 'Build completed: 2 tasks in 1.0s', reported: true },
        { outcome: 'done', exitCode: 0, phase: 'Done', message: 'Build completed: 2 tasks in 1.0s', reported: true },
      ],
      [
        { outcome: 'failed', build, exitCode: 1, type: 'Building Image', reason: 'StepFailed', message: 'Building Image failed after 1.0s: exit code 2', error: new Error('x'), reported: true },
        { outcome: 'failed', exitCode: 1, phase: 'Errored', task: 'Building Image', reason: 'StepFailed', message: 'Building Image failed after 1.0s: exit code 2', reported: true },
      ],
      [
        { outcome: 'interrupted', build: undefined, exitCode: 143, type: undefined, reason: 'Terminated', signal: 'SIGTERM', message: 'Build interrupted by SIGTERM before it was read', reported: false },
        { outcome: 'interrupted', exitCode: 143, phase: 'Errored', reason: 'Terminated', message: 'Build interrupted by SIGTERM before it was read', reported: false },
      ],
    ];
    for (const [outcome, summary] of cases) assert.deepEqual(summarizeOutcome(outcome), summary);
    assert.deepEqual(summarizeError(new Error('cannot report'), { exitCode: 3, task: 'A' }), {
      outcome: 'error',
      exitCode: 3,
      phase: 'Errored',
      task: 'A',
      message: 'cannot report',
      reported: false,
    });
    assert.deepEqual(summarizeForcedExit(130, 'Building Image'), {
      outcome: 'interrupted',
      exitCode: 130,
      phase: 'Errored',
      task: 'Building Image',
      reason: 'Terminated',
      message: 'Building Image was interrupted by SIGINT; exited before the report was finished',
      reported: false,
    });
  });

  test('at most 4096 bytes of valid UTF-8 JSON, whatever the message: escapes, controls, multi-byte characters', () => {
    for (const char of ['a', '"', '\\', '\n', 'é', '构', '😀', `${ESC}[31m`]) {
      const message = `first line\n${char.repeat(6_000)}\nthe end`;
      const text = formatTerminationMessage({ outcome: 'failed', exitCode: 1, phase: 'Errored', task: 'Build', reason: 'StepFailed', message, reported: true });
      const bytes = Buffer.byteLength(text);
      assert.ok(bytes <= TERMINATION_MESSAGE_MAX_BYTES, `${JSON.stringify(char)}: ${bytes} bytes`);
      // Escape sequences vanish, so that message is short; every other one is cut close to the limit.
      if (char.startsWith(ESC)) assert.equal((JSON.parse(text) as TerminationSummary).message, 'first line\n\nthe end');
      else assert.ok(bytes > TERMINATION_MESSAGE_MAX_BYTES - 64, `${JSON.stringify(char)}: cut too short (${bytes})`);
      assert.ok(isWellFormed(text), `${JSON.stringify(char)}: not well-formed`);
      const parsed = JSON.parse(text) as TerminationSummary;
      assert.deepEqual(Object.keys(parsed), ['outcome', 'exitCode', 'phase', 'task', 'reason', 'message', 'reported']);
      assert.ok(parsed.message.endsWith('the end'), `${JSON.stringify(char)}: the end kept`);
      assert.doesNotMatch(parsed.message, UNSAFE);
      assert.ok(!parsed.message.includes(ESC), 'no escape sequence');
    }
  });

  test('a short summary is written as it is, on one line; writeTerminationMessage replaces the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spot-termination-'));
    try {
      const path = join(dir, 'termination-log');
      const summary: TerminationSummary = { outcome: 'done', exitCode: 0, phase: 'Done', message: 'Build completed: 1 task in 0.1s', reported: true };
      writeTerminationMessage(path, { ...summary, outcome: 'error', exitCode: 3, message: 'an earlier, longer message that must not survive', reported: false });
      writeTerminationMessage(path, summary);
      assert.equal(await readFile(path, 'utf8'), JSON.stringify(summary));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
