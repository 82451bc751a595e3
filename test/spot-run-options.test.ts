/**
 * spot-run's command line and exit codes, without a process: parseOptions (pure), planRun (reads
 * the --tasks file), and how an ending maps to an exit code. The child-process view of the same
 * flags is in cli.test.ts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiError, NetworkError, ResponseError, TimeoutError } from '../lib/errors.js';
import type { RunOutcome } from '../lib/runner.js';
import type { Build } from '../lib/types.js';
import { classifyReportFailure, CommandFailure, ExitCodes, outcomeExitCode } from '../scripts/spot-run/exit-codes.js';
import { parseOptions, parseStepFlag, planRun, type Options } from '../scripts/spot-run/options.js';
import { ENV, options, usage } from './support/options.js';

describe('parseOptions', () => {
  test('--help and --version win over everything else, even a missing Build', () => {
    assert.deepEqual(parseOptions(['--step', 'A=true', '--help'], {}), { action: 'help' });
    assert.deepEqual(parseOptions(['--version', '--grace', '0'], {}), { action: 'version' });
  });

  test('defaults: text logs at info, 10 s grace, 30 s per request, 60 s per call, in-cluster', () => {
    const o = options(['--step', 'A=true']);
    assert.deepEqual(o.ref, { namespace: 'default', name: 'b1' });
    assert.deepEqual(o.stepFlags, [{ type: 'A', command: 'true' }]);
    assert.equal(o.tasksFile, undefined);
    assert.deepEqual(o.connection, {});
    assert.deepEqual([o.format, o.level, o.graceMs, o.timeoutMs, o.deadlineMs], ['text', 'info', 10_000, 30_000, 60_000]);
  });

  test('every flag, read once: seconds become milliseconds, --build wins over BUILD_REFERENCE', () => {
    const o = options([
      '--build', 'team/b2', '--step', 'A=make', '--step', 'B=make push', '--tasks', 'tasks.json', '--server', 'https://k8s.example.com:6443',
      '--token-file', 'token', '--ca-file', 'ca.crt', '--log-format', 'json', '--log-level', 'debug', '--grace', '2.5', '--api-timeout', '1',
      '--api-deadline', '4',
    ]);
    assert.deepEqual(o.ref, { namespace: 'team', name: 'b2' });
    assert.deepEqual(o.stepFlags.map((s) => s.type), ['A', 'B']);
    assert.equal(o.tasksFile, 'tasks.json');
    assert.deepEqual(o.connection, { server: 'https://k8s.example.com:6443', tokenFile: 'token', caFile: 'ca.crt' });
    assert.deepEqual([o.format, o.level, o.graceMs, o.timeoutMs, o.deadlineMs], ['json', 'debug', 2_500, 1_000, 4_000]);
  });

  const refusals: Array<[string, string[], Record<string, string | undefined>, RegExp]> = [
    ['an unknown flag', ['--bogus'], ENV, /^Unknown option '--bogus'/],
    ['a positional argument', ['make'], ENV, /^Unexpected argument 'make'/],
    ['a bad --log-format', ['--log-format', 'yaml'], ENV, /^--log-format must be text or json, got "yaml"$/],
    ['a bad --log-level', ['--log-level', 'trace'], ENV, /^--log-level must be debug, info, warn or error, got "trace"$/],
    ['--grace 0', ['--grace', '0'], ENV, /^--grace must be a positive number of seconds, got "0"$/],
    ['--api-timeout that is not a number', ['--api-timeout', 'soon'], ENV, /^--api-timeout must be a positive number of seconds, got "soon"$/],
    ['--api-deadline Infinity', ['--api-deadline', 'Infinity'], ENV, /^--api-deadline must be a positive number of seconds, got "Infinity"$/],
    ['--ca-file without --server', ['--ca-file', 'ca.crt'], ENV, /^--token-file and --ca-file go with --server/],
    ['no Build', ['--step', 'A=true'], {}, /^no Build given: pass --build NAMESPACE\/NAME or set BUILD_REFERENCE$/],
    ['an empty BUILD_REFERENCE', ['--step', 'A=true'], { BUILD_REFERENCE: '' }, /^no Build given/],
    ['a bad BUILD_REFERENCE, said to come from there', ['--step', 'A=true'], { BUILD_REFERENCE: 'b1' }, /^invalid Build reference "b1": .* \(from BUILD_REFERENCE\)$/],
    ['a bad --build', ['--build', 'default/B1', '--step', 'A=true'], {}, /^--build must be \[NAMESPACE\/\]NAME, got "default\/B1": invalid Build name "B1": must consist of lower case[^(]*$/],
    ['a bad --step', ['--step', 'make image'], ENV, /^--step must be "TYPE=COMMAND", .*, got "make image"$/],
  ];
  for (const [name, argv, env, message] of refusals) {
    test(`refuses ${name}`, () => assert.match(usage(() => parseOptions(argv, env)), message));
  }
});

describe('parseStepFlag (--step)', () => {
  for (const flag of ['make image', '=make image', 'Building Image=', 'Building Image=   ', ' =x', '']) {
    test(`refuses ${JSON.stringify(flag)}`, () => {
      assert.equal(usage(() => parseStepFlag(flag)), `--step must be "TYPE=COMMAND", e.g. "Building Image=make image", got ${JSON.stringify(flag)}`);
    });
  }

  test('splits at the first "=" and trims the type only', () => {
    assert.deepEqual(parseStepFlag(' Building Image =make IMAGE=app:1 '), { type: 'Building Image', command: 'make IMAGE=app:1 ' });
  });
});

describe('planRun', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spot-run-options-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function tasks(content: string): Promise<string> {
    const file = join(dir, `tasks-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, content);
    return file;
  }

  async function usageOf(promise: Promise<unknown>): Promise<string> {
    const err = await promise.then(
      () => assert.fail('no usage error'),
      (e: unknown) => e,
    );
    return usage(() => {
      throw err;
    });
  }

  test('the --tasks file\'s steps run first, then the --step ones', async () => {
    const file = await tasks('[{"type": "Fetching Source", "argv": ["git", "clone"]}]');
    const plan = await planRun(options(['--tasks', file, '--step', 'Building Image=make']));
    assert.deepEqual(plan.steps, [
      { type: 'Fetching Source', argv: ['git', 'clone'] },
      { type: 'Building Image', command: 'make' },
    ]);
    assert.equal('tasksFile' in plan, false);
  });

  test('no steps at all, or an empty --tasks list: a usage error', async () => {
    assert.match(await usageOf(planRun(options([]))), /^no steps: pass --step "TYPE=COMMAND" or --tasks FILE$/);
    assert.match(await usageOf(planRun(options(['--tasks', await tasks('[]')]))), /^no steps/);
  });

  test('one condition type twice, within the flags or across the file and a flag: a usage error', async () => {
    const message = /^duplicate step type "Building Image": each step is its own condition and needs its own type$/;
    assert.match(await usageOf(planRun(options(['--step', 'Building Image=make', '--step', 'Building Image=make push']))), message);
    const file = await tasks('[{"type": "Building Image", "command": "make"}]');
    assert.match(await usageOf(planRun(options(['--tasks', file, '--step', 'Building Image=make push']))), message);
  });

  test('a --tasks file that is missing, not JSON, or holds a bad step: a usage error naming it', async () => {
    assert.match(await usageOf(planRun(options(['--tasks', join(dir, 'nope.json')]))), /^cannot read --tasks file \S+nope\.json: ENOENT$/);
    assert.match(await usageOf(planRun(options(['--tasks', await tasks('[{"type":')]))), /^--tasks file \S+ is not valid JSON: /);
    assert.match(await usageOf(planRun(options(['--tasks', await tasks('[{"type": "A"}]')]))), /^--tasks file \S+ step 1 \(A\) needs exactly one of "command" or "argv"$/);
  });
});

describe('exit codes', () => {
  const build = { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: 'default' } } as Build;

  test('a run\'s ending: 0 done, 1 a step failed, 130/143 interrupted', () => {
    const outcomes: Array<[RunOutcome, number]> = [
      [{ outcome: 'done', build, exitCode: 0, message: 'm', reported: true }, 0],
      [{ outcome: 'failed', build, exitCode: 1, type: 'A', reason: 'StepFailed', message: 'm', error: new Error('x'), reported: true }, 1],
      [{ outcome: 'interrupted', build, exitCode: 130, type: 'A', reason: 'Terminated', signal: 'SIGINT', message: 'm', reported: true }, 130],
      [{ outcome: 'interrupted', build, exitCode: 143, type: undefined, reason: 'Terminated', signal: 'SIGTERM', message: 'm', reported: false }, 143],
    ];
    for (const [outcome, code] of outcomes) assert.equal(outcomeExitCode(outcome), code, outcome.outcome);
  });

  const target = { method: 'GET', path: '/apis/spot.release.com/v1alpha1/namespaces/default/builds/b1' };
  const patch = { method: 'PATCH', path: `${target.path}/status` };
  const cases: Array<[string, unknown, ReturnType<typeof classifyReportFailure>]> = [
    ['a TypeError (a bug, never exit 3)', new TypeError("Cannot read properties of null (reading 'type')"), 'bug'],
    ['a plain Error', new Error('boom'), 'bug'],
    ['404 NotFound', new ApiError({ target, statusCode: 404 }), 'final'],
    ['403 Forbidden', new ApiError({ target: patch, statusCode: 403 }), 'final'],
    ['401 Unauthorized', new ApiError({ target, statusCode: 401 }), 'final'],
    ['an untrusted certificate', new NetworkError('cannot reach', target, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'final'],
    ['a GET answered with something that is not a Build', new ResponseError('the answer is not a Build', target, 200), 'final'],
    ['a write answered with something that is not a Build', new ResponseError('the answer is not a Build', patch, 200), 'recordable'],
    ['503 after the retries', new ApiError({ target: patch, statusCode: 503 }), 'recordable'],
    ['connection refused after the retries', new NetworkError('cannot reach', target, 'ECONNREFUSED'), 'recordable'],
    ['a timeout', new TimeoutError('no answer within 30000 ms', patch), 'recordable'],
  ];
  for (const [name, err, kind] of cases) {
    test(`a reporting error: ${name} is ${kind}`, () => assert.equal(classifyReportFailure(err), kind));
  }
});
