/**
 * The termination message of `spot-run` (issue 12): a usage error once the flags are parsed; what
 * --termination-log selects; the bound of 4096 bytes with a failure that says a lot; a file that
 * cannot be written. The message on the other exit paths (done, a step failed, the report refused,
 * interrupted, and the forced exit after a second signal) is checked by the scenarios of
 * `npm run reliability` (reliability-process.scenarios.ts); the pure builder in messages.test.ts.
 */
import { strict as assert } from 'node:assert';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { TERMINATION_MESSAGE_MAX_BYTES, type TerminationSummary } from '../lib/termination.js';
import { writeTermination } from '../scripts/spot-run/ending.js';
import { parseOptions, type Options } from '../scripts/spot-run/options.js';
import { runCli } from './support/cli.js';
import { useSpotRunE2e } from './support/spot-run-e2e.js';

const suite = useSpotRunE2e('spot-termination-');

describe('spot-run\'s termination message', { timeout: 60_000 }, () => {
  test('a usage error once the flags are parsed: outcome error, exit 2; an unknown flag: no message (nothing says where it goes)', async () => {
    const usage = await suite.e2e.run('tm-usage', { create: false, args: ['--grace', '0'], steps: [['A', 'true']] });
    assert.equal(usage.code, 2, usage.stderr);
    assert.deepEqual(usage.termination, {
      outcome: 'error',
      exitCode: 2,
      phase: 'Errored',
      message: '--grace must be a positive number of seconds, got "0" (see spot-run --help)',
      reported: false,
    });
    const file = join(suite.scratch, 'tm-unknown-flag');
    const unknown = await runCli(['--termination-log', file, '--bogus'], { entry: suite.e2e.bundle, timeoutMs: 30_000 });
    assert.equal(unknown.code, 2);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  test('a failure with a long stderr in many-byte characters: within 4096 bytes of valid UTF-8, the cause at the end kept', async () => {
    const script = `i=0; while [ $i -lt 40 ]; do printf '构建失败 %.0s' $(seq 1 40) >&2; echo " line $i" >&2; i=$((i+1)); done; echo "E: the real cause" >&2; exit 1`;
    const result = await suite.e2e.run('tm-long', { steps: [['Building Image', script]] });
    assert.equal(result.code, 1, result.stderr);
    const bytes = Buffer.byteLength(result.terminationText!);
    assert.ok(bytes <= TERMINATION_MESSAGE_MAX_BYTES, `${bytes} bytes`);
    assert.ok(!result.terminationText!.includes('\uFFFD'), 'no broken character');
    assert.match(result.termination!.message, /\nE: the real cause$/);
  });

  test('a termination-log that cannot be written: one warning line, the exit code unchanged', async () => {
    const result = await suite.e2e.run('tm-unwritable', { args: ['--termination-log', join(suite.scratch, 'no-such-dir', 'log')], steps: [['A', 'true']] });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.problems, [`spot-run: could not write the termination message to ${join(suite.scratch, 'no-such-dir', 'log')}: ENOENT`]);
  });
});

describe('--termination-log', () => {
  const optionsOf = (argv: string[]) => (parseOptions([...argv, '--step', 'A=true'], { BUILD_REFERENCE: 'default/b1' }) as { options: Options }).options;

  test('default: /dev/termination-log, only when it can be written; a path: always; \'\': none', () => {
    assert.deepEqual(optionsOf([]).output.terminationLog, { path: '/dev/termination-log', ifWritable: true });
    assert.deepEqual(optionsOf(['--termination-log', '/tmp/t.log']).output.terminationLog, { path: '/tmp/t.log', ifWritable: false });
    assert.equal(optionsOf(['--termination-log', '']).output.terminationLog, undefined);
  });

  test('the default file is written when it exists and is writable, and left alone (silently) when it does not exist', async () => {
    const summary: TerminationSummary = { outcome: 'done', exitCode: 0, phase: 'Done', message: 'm', reported: true };
    const existing = join(suite.scratch, 'kubelet-made');
    await writeFile(existing, '');
    writeTermination({ format: 'text', terminationLog: { path: existing, ifWritable: true } }, summary);
    assert.equal(await readFile(existing, 'utf8'), JSON.stringify(summary));
    const missing = join(suite.scratch, 'not-in-a-pod');
    writeTermination({ format: 'text', terminationLog: { path: missing, ifWritable: true } }, summary);
    await assert.rejects(stat(missing), { code: 'ENOENT' });
  });
});
