/**
 * Failure semantics (issue 12): the outcome goes to the right object, within bounds, and tells
 * the truth. Fixture tests where the sequence of requests is the story; the real `spot-run` bundle
 * against the local API server (its replaceBuild and hang faults) for the rest. Signals and the
 * termination message have their own files (stop-signals, termination-message). What is also a
 * scenario of `npm run reliability` is defined there only: the replaced Build, the 1 MiB cap and
 * the server's 413 (reliability-faults.scenarios.ts); the unreachable API server and --timeout
 * (reliability-process.scenarios.ts); masking and escape sequences (security.scenarios.ts).
 */
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createClient, type SpotClient } from '../lib/client.js';
import { BuildReplacedError, isApiError, TaskFailure } from '../lib/errors.js';
import { MAX_CONDITION_MESSAGE_BYTES, MAX_EVENT_MESSAGE_BYTES } from '../lib/messages.js';
import { buildRef } from '../lib/names.js';
import { runTasks } from '../lib/runner.js';
import type { Build, BuildCondition } from '../lib/types.js';
import { CommandFailure } from '../scripts/spot-run/exit-codes.js';
import { parseOptions, planRun, type Options } from '../scripts/spot-run/options.js';
import { rejection, withFixture } from './support/fixtures.js';
import { statusPath, useSpotRunE2e } from './support/spot-run-e2e.js';

const suite = useSpotRunE2e('spot-failure-');
let client: SpotClient;

before(async () => {
  await suite.ready;
  client = await createClient({ env: { ...suite.server.env() }, retry: { baseDelayMs: 1, maxDelayMs: 5, maxRetryAfterMs: 20 } });
});
after(async () => {
  await client?.close();
});

/** A Build in its own namespace for an in-process run. */
function newBuild(namespace: string, status?: Build['status']): ReturnType<typeof buildRef> {
  suite.server.createBuild({ namespace, name: 'b1', spec: { image: { name: 'team/app', tag: '1.0.0' } }, ...(status ? { status } : {}) });
  return buildRef(namespace, 'b1');
}

describe('writes land on the run\'s Build', () => {
  test('fixture: a re-read after a 409 finds another uid: BuildReplacedError, the task never runs, nothing is written to the new Build', async () => {
    await withFixture('run-build-replaced', async (c, { requests }) => {
      let ran = false;
      const err = await rejection(() => runTasks(c, buildRef('ns', 'b1'), [{ type: 'Building Image', run: async () => void (ran = true) }]));
      assert.ok(err instanceof BuildReplacedError, `${err.name}: ${err.message}`);
      assert.equal(err.message, 'Build ns/b1 was replaced (uid 7d1c9e42-3b5a-4f0e-8c21-6a9e0f4b2d17 → e4f0a6b1-9c2d-4e7f-a3b8-5d1c0f9e2a64)');
      assert.deepEqual([err.expectedUid, err.foundUid], ['7d1c9e42-3b5a-4f0e-8c21-6a9e0f4b2d17', 'e4f0a6b1-9c2d-4e7f-a3b8-5d1c0f9e2a64']);
      assert.equal(ran, false);
      // The fixture holds three exchanges and fails on a fourth: no write, no event went to the new object.
      assert.deepEqual(requests.map((r) => r.method), ['GET', 'PATCH', 'GET']);
    });
  });

  test('updateBuildStatus with a uid the base does not have: refused before any request', async () => {
    await withFixture([], async (c) => {
      const base = { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b1', namespace: 'ns', uid: 'new-uid', resourceVersion: '9' } } as Build;
      const err = await rejection(() => c.updateBuildStatus(buildRef('ns', 'b1'), (b) => void (b.status = { phase: 'Running' }), { base, uid: 'old-uid' }));
      assert.ok(err instanceof BuildReplacedError, err.message);
      assert.equal(err.message, 'Build ns/b1 was replaced (uid old-uid → new-uid)');
    });
  });

  test('a PUT carries metadata.uid, which the API server takes as a precondition: a stale uid gets 409 and the new Build is untouched (as before)', async () => {
    const ref = newBuild('fs-put-uid');
    const read = await client.getBuild(ref);
    suite.server.replaceBuild(ref.namespace, ref.name);
    // The same resourceVersion as the new object, so only the uid can tell them apart.
    const stale: Build = { ...read, metadata: { ...read.metadata, resourceVersion: suite.server.getBuild(ref.namespace, ref.name)!.metadata.resourceVersion! }, status: { phase: 'Running' } };
    const err = await rejection(() => client.replaceBuildStatus(stale));
    assert.ok(isApiError(err) && err.statusCode === 409, err.message);
    assert.match(err.message, /Precondition failed: UID in precondition: /);
    assert.equal(suite.server.getBuild(ref.namespace, ref.name)!.status, undefined);
  });
});

describe('bounded inputs', () => {
  test('a failure message of 100 KiB: the condition keeps at most 32 KiB and the event 1 KiB, both valid UTF-8, the end kept', async () => {
    const ref = newBuild('fs-long-message');
    const long = `${'构建失败 '.repeat(10_000)}\nthe cause`;
    const outcome = await runTasks(client, ref, [{ type: 'Building Image', run: async () => Promise.reject(new TaskFailure('StepFailed', long)) }]);
    assert.equal(outcome.outcome, 'failed');
    const message = suite.server.getBuild(ref.namespace, ref.name)!.status!.conditions![0]!.message!;
    const bytes = Buffer.byteLength(message);
    assert.ok(bytes <= MAX_CONDITION_MESSAGE_BYTES && bytes > MAX_CONDITION_MESSAGE_BYTES - 64, `${bytes} bytes`);
    assert.ok(!message.includes('\uFFFD') && message.endsWith('\nthe cause'), message.slice(-40));
    const event = suite.server.events(ref.namespace).find((e) => e.type === 'Warning')!;
    assert.ok(Buffer.byteLength(event.message!) <= MAX_EVENT_MESSAGE_BYTES, `${Buffer.byteLength(event.message!)} bytes`);
    assert.ok(event.message!.endsWith('\nthe cause'));
  });
});

describe('exit codes tell the truth', () => {
  test('conditions the run does not own (the operator\'s Error, a previous attempt\'s step In Progress) neither hold nor flip the phase: exit 0 with phase Done, theirs untouched', async () => {
    const ns = 'fs-foreign';
    const foreign: BuildCondition[] = [
      { type: 'Pod Deployment', status: 'Error', reason: 'OperatorSaysSo', message: 'not ours', lastTransitionTime: '2025-06-01T10:00:00Z' },
      { type: 'Scanning Image', status: 'In Progress', lastTransitionTime: '2025-06-01T10:00:00Z' },
    ];
    const result = await suite.e2e.run(ns, { status: { conditions: foreign }, steps: [['Fetching Source', 'true'], ['Building Image', 'true']] });
    assert.equal(result.code, 0, result.stderr);
    const status = suite.e2e.stored(ns)!.status!;
    assert.equal(status.phase, 'Done', 'exit 0 means the run wrote phase Done');
    assert.deepEqual(status.conditions!.slice(0, 2), foreign, 'left as they are');
    assert.deepEqual(suite.e2e.conditions(ns).slice(2), [
      ['Fetching Source', 'Success', 'Succeeded'],
      ['Building Image', 'Success', 'Succeeded'],
    ]);
    assert.deepEqual([result.termination?.outcome, result.termination?.phase, result.termination?.reported], ['done', 'Done', true]);
  });

  test('a previous attempt\'s Error on a step of this plan starts over: the first write is phase Running, not Errored', async () => {
    const ref = newBuild('fs-previous-attempt', {
      phase: 'Errored',
      conditions: [
        { type: 'Fetching Source', status: 'Success', reason: 'Succeeded', lastTransitionTime: '2025-06-01T10:00:00Z' },
        { type: 'Building Image', status: 'Error', reason: 'StepFailed', message: 'exit code 2 (last attempt)', lastTransitionTime: '2025-06-01T10:01:00Z' },
      ],
    });
    const seen: Array<string | undefined> = [];
    const outcome = await runTasks(client, ref, [
      { type: 'Fetching Source', run: async ({ build }) => void seen.push(build.status?.phase, JSON.stringify(build.status?.conditions?.[1])) },
      { type: 'Building Image', run: async () => {} },
    ]);
    assert.equal(outcome.outcome, 'done');
    assert.equal(seen[0], 'Running', 'the Build as first written');
    const reset = JSON.parse(seen[1]!) as BuildCondition;
    assert.deepEqual([reset.type, reset.status, reset.reason, reset.message], ['Building Image', '', undefined, undefined]);
    assert.equal(suite.server.getBuild(ref.namespace, ref.name)!.status?.phase, 'Done');
  });

  test('--api-deadline bounds a call and the failure report after it together: a hung API server costs the deadline once', async () => {
    const ns = 'fs-api-deadline';
    // After step 1, every status write and every read hangs.
    const writes = suite.server.inject({ method: 'PATCH', path: statusPath(ns), when: ({ n }) => n >= 2, times: Infinity, hang: true });
    const reads = suite.server.inject({ method: 'GET', path: /\/namespaces\/fs-api-deadline\/builds\/b1$/, when: ({ n }) => n >= 2, times: Infinity, hang: true });
    let result;
    try {
      result = await suite.e2e.run(ns, { args: ['--api-deadline', '2', '--grace', '10', '--log-format', 'json'], steps: [['Fetching Source', 'true'], ['Building Image', 'true']] });
    } finally {
      writes.remove();
      reads.remove();
      await suite.server.suspend();
      await suite.server.resume();
    }
    assert.equal(result.code, 3, result.stderr);
    const lines = result.stderr.trim().split('\n').map((l) => JSON.parse(l) as { time: string; level: string; msg: string });
    const succeeded = lines.find((l) => l.msg.startsWith('[1/2] Fetching Source succeeded'))!;
    const fatal = lines.at(-1)!;
    assert.equal(fatal.level, 'error');
    assert.match(fatal.msg, /^cannot report Build fs-api-deadline\/b1 to the API server/);
    const spent = Date.parse(fatal.time) - Date.parse(succeeded.time);
    // The write hangs until the 2 s deadline; the fatal path gets what is left of it, not another grace period.
    assert.ok(spent >= 1_900 && spent < 2_800, `${spent} ms from the hung write to the end; --api-deadline is 2 s`);
    assert.equal(lines.filter((l) => l.level === 'error').length, 1, result.stderr);
  });

  test('--log-format json: every stderr line after the flags is one JSON object, fatal errors included', async () => {
    const usage = await suite.e2e.run('fs-json-usage', { create: false, args: ['--log-format', 'json'], env: { BUILD_REFERENCE: '' } });
    const failed = await suite.e2e.run('fs-json-failed', { args: ['--log-format', 'json'], steps: [['Building Image', 'echo "to stderr" >&2; exit 4']] });
    suite.server.setPermissions(suite.server.token, [{ verbs: ['get'], resources: ['builds'] }]);
    let refused;
    try {
      refused = await suite.e2e.run('fs-json-refused', { args: ['--log-format', 'json'], steps: [['Building Image', 'true']] });
    } finally {
      suite.server.setPermissions(suite.server.token, [
        { verbs: ['get', 'list', 'create'], resources: ['builds'] },
        { verbs: ['get', 'update', 'patch'], resources: ['builds/status'] },
        { verbs: ['create', 'patch', 'get', 'list'], resources: ['events'] },
      ]);
    }
    for (const [name, result, code] of [['usage error', usage, 2], ['step failed', failed, 1], ['report refused', refused, 3]] as const) {
      assert.equal(result.code, code, `${name}: ${result.stderr}`);
      const lines = result.stderr.trim().split('\n');
      for (const line of lines) {
        let entry: { level?: unknown; msg?: unknown };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          assert.fail(`${name}: not a JSON line: ${line}`);
        }
        assert.ok(typeof entry.msg === 'string' && typeof entry.level === 'string', `${name}: ${line}`);
      }
      assert.equal(result.termination?.exitCode, code, name);
    }
    const last = JSON.parse(usage.stderr.trim()) as { level: string; msg: string; exitCode: number };
    assert.deepEqual([last.level, last.exitCode], ['error', 2]);
    assert.match(last.msg, /^no Build given: pass --build NAMESPACE\/NAME or set BUILD_REFERENCE/);
  });
});

describe('--timeout: a whole-build deadline', () => {
  test('a --tasks file as {"timeoutSeconds", "tasks"} sets it too; --timeout wins over it', async () => {
    const file = join(suite.scratch, 'tasks-with-timeout.json');
    await writeFile(file, JSON.stringify({ timeoutSeconds: 1, tasks: [{ type: 'Building Image', command: 'sleep 30' }] }));
    const fromFile = await suite.e2e.run('fs-timeout-file', { args: ['--tasks', file] });
    assert.equal(fromFile.code, 1, fromFile.stderr);
    assert.deepEqual(suite.e2e.conditions('fs-timeout-file'), [['Building Image', 'Error', 'Timeout']]);
    assert.match(suite.e2e.stored('fs-timeout-file')!.status!.conditions![0]!.message!, /the build's timeout of 1s passed/);
    const flagWins = await suite.e2e.run('fs-timeout-flag', { args: ['--tasks', file, '--timeout', '2'] });
    assert.equal(flagWins.code, 1, flagWins.stderr);
    assert.match(suite.e2e.stored('fs-timeout-flag')!.status!.conditions![0]!.message!, /the build's timeout of 2s passed/);
  });
});

describe('masked environment values', () => {
  test('a value under 6 characters is refused: exit 2, one line naming the variable and not the value', async () => {
    for (const [args, env, source] of [
      [['--mask-env', 'SHORT'], { SHORT: 'abc12' }, '--mask-env'],
      [[], { SHORT: 'abc12', SPOT_MASK_ENV: 'SHORT' }, 'SPOT_MASK_ENV'],
    ] as const) {
      const result = await suite.e2e.run('fs-mask-short', { create: false, args: [...args], env, steps: [['A', 'true']] });
      assert.equal(result.code, 2, result.stderr);
      assert.deepEqual(result.problems, [
        `spot-run: ${source} names SHORT, whose value is shorter than 6 characters: too short to mask without hiding ordinary text; give it a longer value or stop masking it (see spot-run --help)`,
      ]);
      assert.ok(!result.stderr.includes('abc12'));
      assert.deepEqual([result.termination?.outcome, result.termination?.exitCode], ['error', 2]);
    }
  });
});

describe('the new flags, parsed (pure)', () => {
  const ENV = { BUILD_REFERENCE: 'default/b1' };
  const usage = (argv: string[], env: Record<string, string | undefined> = ENV) => {
    try {
      parseOptions([...argv, '--step', 'A=true'], env);
    } catch (err) {
      assert.ok(err instanceof CommandFailure && err.exitCode === 2, String(err));
      return err.message;
    }
    assert.fail('no usage error');
  };

  test('--timeout must be a positive number of seconds; --mask-env and SPOT_MASK_ENV name variables; unset ones are skipped', () => {
    assert.match(usage(['--timeout', '0']), /^--timeout must be a positive number of seconds, got "0"/);
    assert.match(usage(['--mask-env', 'NOT-A-NAME']), /^--mask-env names "NOT-A-NAME", which is not an environment variable name/);
    assert.match(usage([], { ...ENV, SPOT_MASK_ENV: 'A,1B' }), /^SPOT_MASK_ENV names "1B", which is not an environment variable name/);
    const command = parseOptions(['--mask-env', 'SET', '--mask-env', 'UNSET', '--timeout', '90', '--step', 'A=true'], { ...ENV, SET: 'long-enough', SPOT_MASK_ENV: ' ,OTHER' , OTHER: 'another-one' });
    assert.equal(command.action, 'run');
    const { options } = command as { options: Options };
    assert.deepEqual(options.maskValues, ['long-enough', 'another-one']);
    assert.equal(options.buildTimeoutSeconds, 90);
  });

  test('a --tasks file object: "tasks" needed, "timeoutSeconds" positive, nothing else', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ timeoutSeconds: 5 }, /needs "tasks", the list of steps/],
      [{ tasks: [], timeoutSeconds: -1 }, /"timeoutSeconds" must be a positive number/],
      [{ tasks: [], timeout: 5 }, /has unknown field "timeout" \(expected "tasks" and "timeoutSeconds"\)/],
      [{ tasks: {} }, /must hold a JSON list of steps/],
    ];
    for (const [json, message] of cases) {
      const file = join(suite.scratch, 'tasks-bad.json');
      await writeFile(file, JSON.stringify(json));
      const options = (parseOptions(['--tasks', file], ENV) as { options: Options }).options;
      const err = await rejection(() => planRun(options));
      assert.ok(err instanceof CommandFailure && err.exitCode === 2, err.message);
      assert.match(err.message, message);
    }
    const file = join(suite.scratch, 'tasks-good.json');
    await writeFile(file, JSON.stringify({ timeoutSeconds: 600, tasks: [{ type: 'A', command: 'true' }] }));
    const plan = await planRun((parseOptions(['--tasks', file], ENV) as { options: Options }).options);
    assert.deepEqual([plan.steps, plan.buildTimeoutSeconds], [[{ type: 'A', command: 'true' }], 600]);
  });
});
