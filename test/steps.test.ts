/**
 * Shell steps: the bounded stderr tail, the validation of --tasks files and --step flags, the
 * environment a step gets, and the results folder.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AbortedError, TaskFailure } from '../lib/errors.js';
import { silentLogger } from '../lib/log.js';
import { collectingStepOptions, taskFailure } from './support/steps.js';
import { registerSecret } from '../lib/secrets.js';
import { isLive, liveGroupMembersAfter } from './support/processes.js';
import { parseSteps, runStep, stepFailure, TailBuffer, type StepExit, type StepOptions, type StepSpec } from '../lib/steps.js';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'spot-steps-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const io = () => collectingStepOptions(scratch);

const run = (spec: StepSpec, options: StepOptions = io(), signal = new AbortController().signal) => runStep(spec, signal, silentLogger, options);

const failure = taskFailure;

describe('TailBuffer', () => {
  test('keeps only the last maxLines lines', () => {
    const tail = new TailBuffer(3, 1000);
    for (let i = 1; i <= 100; i++) tail.push(`line ${i}\n`);
    assert.equal(tail.text(), 'line 98\nline 99\nline 100');
  });

  test('joins lines split across chunks and keeps an unfinished last line', () => {
    const tail = new TailBuffer(5, 1000);
    tail.push('hel');
    tail.push('lo\nwor');
    tail.push('ld\nno newline yet');
    assert.equal(tail.text(), 'hello\nworld\nno newline yet');
  });

  test('blank lines do not use up the tail', () => {
    const tail = new TailBuffer(2, 1000);
    tail.push('error: one\n\n   \n');
    assert.equal(tail.text(), 'error: one');
  });

  test('a huge single line is cut to the byte bound from its end, marked with "..."', () => {
    const tail = new TailBuffer(20, 100);
    tail.push(`${'x'.repeat(10_000)}END\n`);
    const text = tail.text();
    assert.ok(text.startsWith('...'), text);
    assert.ok(text.endsWith('END'));
    assert.ok(Buffer.byteLength(text) <= 100 + 3, `${Buffer.byteLength(text)} bytes`);
  });

  test('a stream without newlines stays bounded while it is pushed', () => {
    const tail = new TailBuffer(20, 64);
    for (let i = 0; i < 10_000; i++) tail.push('abcdefgh');
    assert.ok(Buffer.byteLength(tail.text()) <= 64 + 3);
  });

  test('the byte bound holds for multi-byte text, cut on a character boundary', () => {
    const tail = new TailBuffer(20, 100);
    for (let i = 0; i < 30; i++) tail.push('ошибка сборки: 失败 🚫\n');
    const text = tail.text();
    assert.ok(Buffer.byteLength(text) <= 100 + 3, `${Buffer.byteLength(text)} bytes for a 100-byte bound`);
    assert.ok(!text.includes('\uFFFD'), 'no broken character');
    assert.ok(text.endsWith('失败 🚫'));
  });

  test('many lines of the byte bound: the total is bounded too', () => {
    const tail = new TailBuffer(20, 200);
    for (let i = 0; i < 50; i++) tail.push(`${String(i).padStart(2, '0')} ${'y'.repeat(60)}\n`);
    const text = tail.text();
    assert.ok(Buffer.byteLength(text) <= 200 + 3);
    assert.ok(text.endsWith(`49 ${'y'.repeat(60)}`));
  });
});

describe('parseSteps (--tasks files)', () => {
  const bad: Array<[value: unknown, message: string]> = [
    [{ type: 'A' }, 'tasks.json must hold a JSON list of steps'],
    ['x', 'tasks.json must hold a JSON list of steps'],
    [[null], 'tasks.json step 1 is not an object'],
    [[['A', 'true']], 'tasks.json step 1 is not an object'],
    [[{ type: 'A', command: 'true', timeout: 5 }], 'tasks.json step 1 has unknown field "timeout"'],
    [[{ command: 'true' }], 'tasks.json step 1 needs a "type" (the condition type)'],
    [[{ type: '  ', command: 'true' }], 'tasks.json step 1 needs a "type" (the condition type)'],
    [[{ type: 7, command: 'true' }], 'tasks.json step 1 needs a "type" (the condition type)'],
    [[{ type: 'A', command: 'true' }, { type: 'B' }], 'tasks.json step 2 (B) needs exactly one of "command" or "argv"'],
    [[{ type: 'A', command: 'true', argv: ['true'] }], 'tasks.json step 1 (A) needs exactly one of "command" or "argv"'],
    [[{ type: 'A', command: '' }], 'tasks.json step 1 (A): "command" must be a non-empty string'],
    [[{ type: 'A', command: ['true'] }], 'tasks.json step 1 (A): "command" must be a non-empty string'],
    [[{ type: 'A', argv: [] }], 'tasks.json step 1 (A): "argv" must be a non-empty list of strings'],
    [[{ type: 'A', argv: ['echo', 1] }], 'tasks.json step 1 (A): "argv" must be a non-empty list of strings'],
    [[{ type: 'A', argv: 'echo hi' }], 'tasks.json step 1 (A): "argv" must be a non-empty list of strings'],
    [[{ type: 'A', command: 'true', timeoutSeconds: 0 }], 'tasks.json step 1 (A): "timeoutSeconds" must be a positive number'],
    [[{ type: 'A', command: 'true', timeoutSeconds: -1 }], 'tasks.json step 1 (A): "timeoutSeconds" must be a positive number'],
    [[{ type: 'A', command: 'true', timeoutSeconds: '30' }], 'tasks.json step 1 (A): "timeoutSeconds" must be a positive number'],
    [[{ type: 'A', command: 'true', env: { N: 1 } }], 'tasks.json step 1 (A): "env" must be an object of strings'],
    [[{ type: 'A', command: 'true', env: ['N=1'] }], 'tasks.json step 1 (A): "env" must be an object of strings'],
    [[{ type: 'A', command: 'true', env: null }], 'tasks.json step 1 (A): "env" must be an object of strings'],
  ];
  for (const [value, message] of bad) {
    test(`refuses ${JSON.stringify(value)}`, () => {
      assert.throws(() => parseSteps(value, 'tasks.json'), (err: Error) => err instanceof TypeError && err.message === message);
    });
  }

  test('accepts every field and trims the type', () => {
    assert.deepEqual(
      parseSteps(
        [
          { type: ' Fetching Source ', command: 'git clone x' },
          { type: 'Building Image', argv: ['make', 'image'], timeoutSeconds: 0.5, env: { TARGET: 'prod' } },
        ],
        'tasks.json',
      ),
      [
        { type: 'Fetching Source', command: 'git clone x' },
        { type: 'Building Image', argv: ['make', 'image'], timeoutSeconds: 0.5, env: { TARGET: 'prod' } },
      ],
    );
    assert.deepEqual(parseSteps([], 'tasks.json'), []);
  });
});

describe('stepFailure: a finished step\'s outcome, without a process', () => {
  const exit = (over: Partial<StepExit>): StepExit => ({ code: 0, signal: null, stopped: undefined, tail: '', timeoutSeconds: undefined, ...over });

  test('exit code 0: success, whatever it printed on stderr', () => {
    assert.equal(stepFailure(exit({ tail: 'warning: shallow clone' })), undefined);
  });

  test('a non-zero exit code: StepFailed with the code and the stderr tail', () => {
    const err = stepFailure(exit({ code: 3, tail: 'npm ERR! missing script: build\nnpm ERR! A complete log' }));
    assert.ok(err instanceof TaskFailure, String(err));
    assert.equal(err.reason, 'StepFailed');
    assert.equal(err.message, 'exit code 3; last stderr lines:\nnpm ERR! missing script: build\nnpm ERR! A complete log');
  });

  test('no stderr: just the exit code', () => {
    assert.equal(stepFailure(exit({ code: 7 }))?.message, 'exit code 7');
  });

  test('killed by a signal it was not sent by us: StepFailed naming the signal', () => {
    const err = stepFailure(exit({ code: null, signal: 'SIGKILL' }));
    assert.ok(err instanceof TaskFailure, String(err));
    assert.equal(err.message, 'killed by SIGKILL');
  });

  test('stopped at its timeout: Timeout, whatever the exit code, with the tail', () => {
    for (const code of [0, 143, null]) {
      const err = stepFailure(exit({ code, signal: code === null ? 'SIGTERM' : null, stopped: 'Timeout', timeoutSeconds: 2, tail: 'still compiling' }));
      assert.ok(err instanceof TaskFailure, String(err));
      assert.equal(err.reason, 'Timeout');
      assert.equal(err.message, 'timed out after 2s and was stopped; last stderr lines:\nstill compiling');
    }
  });

  test('stopped by an interruption: AbortedError, even when it then exited 0', () => {
    for (const code of [0, 1, null]) assert.ok(stepFailure(exit({ code, stopped: 'Aborted' })) instanceof AbortedError);
  });
});

describe('the step\'s environment', () => {
  test('SPOT_RESULTS_DIR (a fresh folder, removed afterwards), SPOT_STEP, the step\'s own env and ours', async () => {
    const dump = join(scratch, 'env-dump');
    process.env.SPOT_TEST_INHERITED = 'from-the-runtime';
    try {
      await run({ type: 'Building Image', command: `env > '${dump}'; ls -A "$SPOT_RESULTS_DIR" | wc -l >> '${dump}'`, env: { TARGET: 'prod', SPOT_TEST_INHERITED: 'overridden' } });
    } finally {
      delete process.env.SPOT_TEST_INHERITED;
    }
    const text = await readFile(dump, 'utf8');
    const env = Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.equal(env.SPOT_STEP, 'Building Image');
    assert.equal(env.TARGET, 'prod');
    assert.equal(env.SPOT_TEST_INHERITED, 'overridden', 'the step\'s env wins over ours');
    assert.equal(env.PATH, process.env.PATH);
    const results = env.SPOT_RESULTS_DIR!;
    assert.ok(results.startsWith(join(scratch, 'spot-results-')), results);
    assert.equal(text.trim().split('\n').at(-1)!.trim(), '0', 'the results folder starts empty');
    assert.deepEqual(await readdir(scratch).then((n) => n.filter((x) => x.startsWith('spot-results-'))), [], 'and is removed afterwards');
  });

  test('a variable holding a registered secret is not passed to the step; others are', async () => {
    const secret = 'sk-test-0123456789abcdef';
    registerSecret(secret);
    process.env.SPOT_TEST_TOKENISH = `Bearer ${secret}`;
    process.env.SPOT_TEST_HARMLESS = 'harmless-value';
    const dump = join(scratch, 'env-secret');
    try {
      await run({ type: 'A', command: `env > '${dump}'` });
    } finally {
      delete process.env.SPOT_TEST_TOKENISH;
      delete process.env.SPOT_TEST_HARMLESS;
    }
    const text = await readFile(dump, 'utf8');
    assert.ok(!text.includes(secret), 'the secret reached the step');
    assert.ok(!text.includes('SPOT_TEST_TOKENISH'));
    assert.ok(text.includes('SPOT_TEST_HARMLESS=harmless-value'));
  });

  test('a secret the step prints on stderr does not reach the failure message (it goes to the Build)', async () => {
    const secret = 'sk-test-fedcba9876543210';
    registerSecret(secret);
    const err = await failure(run({ type: 'A', command: `echo "auth failed with token ${secret}" >&2; exit 4` }));
    assert.ok(!err.message.includes(secret), err.message);
    assert.match(err.message, /^exit code 4; last stderr lines:\nauth failed with token \[REDACTED\]$/);
  });
});

describe('how a step ends', () => {
  test('output is streamed line by line with the step\'s prefix', async () => {
    const o = io();
    await run({ type: 'Fetching Source', command: 'printf "a\\nb"; echo oops >&2' }, o);
    assert.deepEqual(o.out.join(''), '[Fetching Source] a\n[Fetching Source] b\n');
    assert.deepEqual(o.err.join(''), '[Fetching Source] oops\n');
  });

  test('argv runs without a shell', async () => {
    const o = io();
    await run({ type: 'A', argv: ['printf', '%s|%s\\n', '$HOME', 'a b'] }, o);
    assert.equal(o.out.join(''), '[A] $HOME|a b\n');
  });

  test('a command that cannot start: StepFailed naming it', async () => {
    const err = await failure(run({ type: 'A', argv: ['/nonexistent/spot-tool', '--x'] }));
    assert.equal(err.reason, 'StepFailed');
    assert.equal(err.message, 'cannot start "/nonexistent/spot-tool": ENOENT');
  });

  test('killed by a signal: the message says which', async () => {
    const err = await failure(run({ type: 'A', command: 'kill -KILL $$' }));
    assert.equal(err.reason, 'StepFailed');
    assert.equal(err.message, 'killed by SIGKILL');
  });

  test('the failure message carries at most tailLines lines and tailBytes bytes of stderr', async () => {
    const err = await failure(run({ type: 'A', command: 'i=0; while [ $i -lt 50 ]; do echo "stderr line $i" >&2; i=$((i+1)); done; exit 1' }, { ...io(), tailLines: 3 }));
    assert.equal(err.message, 'exit code 1; last stderr lines:\nstderr line 47\nstderr line 48\nstderr line 49');
    const big = await failure(run({ type: 'A', command: 'head -c 100000 /dev/zero | tr "\\0" "e" >&2; exit 1' }, { ...io(), tailBytes: 256 }));
    assert.ok(Buffer.byteLength(big.message) < 256 + 64, `${Buffer.byteLength(big.message)} bytes`);
  });

  test('no stderr: just the exit code', async () => {
    const err = await failure(run({ type: 'A', command: 'echo only stdout; exit 7' }));
    assert.equal(err.message, 'exit code 7');
  });

  test('aborted: an AbortedError, and the whole process group is gone', async () => {
    const pids = join(scratch, 'abort-pids');
    const controller = new AbortController();
    const o = io();
    const running = run(
      { type: 'A', command: `(trap '' TERM; sleep 30) & echo "$$ $!" > '${pids}'; echo ready; sleep 30` },
      { ...o, stdout: (t) => (t.includes('ready') ? controller.abort('SIGTERM') : undefined) },
      controller.signal,
    );
    await assert.rejects(running, (err: unknown) => err instanceof AbortedError);
    const [pgid, grandchild] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    assert.deepEqual(await liveGroupMembersAfter(pgid!), []);
    assert.equal(isLive(grandchild!), false);
  });

  test('a step that exits leaving background processes: they are killed with it, so they neither hold the run nor outlive it', async () => {
    const pids = join(scratch, 'leftover-pids');
    const started = Date.now();
    // One background process keeps the step's stdout open, one has let go of it.
    await run({ type: 'A', command: `sleep 30 & a=$!; sleep 30 >/dev/null 2>&1 & echo "$$ $a $!" > '${pids}'; exit 0` });
    const ms = Date.now() - started;
    assert.ok(ms < 5_000, `the step took ${ms} ms: it waited for its leftovers`);
    const [pgid, holding, detached] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    assert.deepEqual(await liveGroupMembersAfter(pgid!), []);
    assert.equal(isLive(holding!), false);
    assert.equal(isLive(detached!), false);
  });

  test('an already aborted signal: nothing is started', async () => {
    const marker = join(scratch, 'never');
    await assert.rejects(run({ type: 'A', command: `touch '${marker}'` }, io(), AbortSignal.abort('SIGTERM')));
    assert.throws(() => readFileSync(marker), { code: 'ENOENT' });
  });
});

describe('results', () => {
  test('image-url (trimmed) and image-metadata (a JSON object of strings) become status.image', async () => {
    const result = await run({
      type: 'Pushing Image',
      command: `printf '  registry.example.com/app:1 \\n' > "$SPOT_RESULTS_DIR/image-url"; echo '{"digest":"sha256:ab"}' > "$SPOT_RESULTS_DIR/image-metadata"`,
    });
    assert.deepEqual(result, { status: { image: { url: 'registry.example.com/app:1', metadata: { digest: 'sha256:ab' } } } });
  });

  test('no results, or empty result files: no status', async () => {
    assert.deepEqual(await run({ type: 'A', command: 'true' }), {});
    assert.deepEqual(await run({ type: 'A', command: ': > "$SPOT_RESULTS_DIR/image-url"; echo "  " > "$SPOT_RESULTS_DIR/image-metadata"' }), {});
  });

  for (const [what, content] of [
    ['not JSON', '{digest: sha256:ab'],
    ['a JSON list', '["sha256:ab"]'],
    ['an object with a non-string value', '{"digest":"sha256:ab","layers":3}'],
    ['JSON null', 'null'],
    ['a JSON string', '"sha256:ab"'],
  ] as const) {
    test(`image-metadata that is ${what}: InvalidResult, even though the step exited 0`, async () => {
      const err = await failure(run({ type: 'Pushing Image', command: `printf '%s' '${content}' > "$SPOT_RESULTS_DIR/image-metadata"` }));
      assert.equal(err.reason, 'InvalidResult');
      assert.equal(err.message, 'Pushing Image wrote image-metadata, which must be a JSON object of strings');
    });
  }
});


describe('the stderr tail and secrets', () => {
  test('a secret on a line that the byte bound cuts through is redacted before the cut', () => {
    const secret = 'test-token-cut-by-the-tail-bound-0123456789';
    registerSecret(secret);
    const tail = new TailBuffer(20, 64);
    // The token straddles the 64-byte bound measured from the end of the tail.
    tail.push(`${'a'.repeat(40)}${secret}${'b'.repeat(40)}\nlast line\n`);
    const text = tail.text();
    assert.ok(Buffer.byteLength(text) <= 64 + 3, text);
    // No 12-character piece of the secret may survive.
    for (let i = 0; i + 12 <= secret.length; i++) {
      const piece = secret.slice(i, i + 12);
      assert.ok(!text.includes(piece), `a piece of the secret survived: ${JSON.stringify(piece)} in ${JSON.stringify(text)}`);
    }
    assert.ok(text.endsWith('last line'), text);
  });
});
