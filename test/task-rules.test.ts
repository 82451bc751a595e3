/**
 * The runner's pure status rules (lib/task-rules.ts), without a client or a network: which field
 * the phase goes in, which refusal means the CRD requires status.stage, and the mutations a run
 * writes (mark, combine, the first write).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { DEFAULT_VOCABULARY, type Vocabulary } from '../lib/conditions.js';
import { ApiError } from '../lib/errors.js';
import { MAX_CONDITION_MESSAGE_BYTES } from '../lib/messages.js';
import { combine, mark, requiresStage, rulesFor, startMutation, type Mutation, type Rules } from '../lib/task-rules.js';
import type { Build, BuildStatus } from '../lib/types.js';

const T1 = new Date('2025-06-01T10:00:00Z');
const T2 = new Date('2025-06-01T10:05:00Z');
const target = { method: 'PUT', path: '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b/status' };

function build(status?: BuildStatus): Build {
  return { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', metadata: { name: 'b', namespace: 'ns', uid: 'u1' }, ...(status ? { status } : {}) };
}

const rules = (phaseField: Rules['phaseField'] = 'phase', vocabulary: Vocabulary = DEFAULT_VOCABULARY): Rules => ({ vocabulary, phaseField, guessed: false });

function applied(mutation: Mutation, b: Build = build()): Build {
  mutation(b);
  return b;
}

describe('rulesFor', () => {
  test('the option wins over the client, the client over the Build', () => {
    const staged = build({ stage: 'Running' });
    assert.equal(rulesFor(staged, { phaseField: 'phase' }, { phaseField: 'stage' }).phaseField, 'stage', 'the option first');
    assert.equal(rulesFor(staged, { phaseField: 'phase' }, {}).phaseField, 'phase', 'then the client');
    assert.equal(rulesFor(staged, {}, {}).phaseField, 'stage', 'then the Build as read');
    assert.equal(rulesFor(build({ phase: 'Running' }), {}, {}).phaseField, 'phase', 'a Build with phase keeps it');
  });

  test('a guess only when nobody gave the field and the Build has neither phase nor stage', () => {
    assert.deepEqual(rulesFor(build(), {}, {}), { vocabulary: DEFAULT_VOCABULARY, phaseField: 'phase', guessed: true });
    assert.deepEqual(rulesFor(undefined, {}, {}), { vocabulary: DEFAULT_VOCABULARY, phaseField: 'phase', guessed: true });
    assert.equal(rulesFor(build(), { phaseField: 'phase' }, {}).guessed, false, 'the client gave it');
    assert.equal(rulesFor(build(), {}, { phaseField: 'stage' }).guessed, false, 'the option gave it');
    assert.equal(rulesFor(build({ stage: '' }), {}, {}).guessed, false, 'the Build has a stage');
    assert.equal(rulesFor(build({ phase: '' }), {}, {}).guessed, false, 'the Build has a phase');
  });

  test('the vocabulary given, else the default', () => {
    const vocabulary = { ...DEFAULT_VOCABULARY, done: 'Finished' };
    assert.equal(rulesFor(build(), {}, { vocabulary }).vocabulary, vocabulary);
    assert.equal(rulesFor(build(), {}, {}).vocabulary, DEFAULT_VOCABULARY);
  });
});

describe('requiresStage', () => {
  const invalid = (field: string, reason: string) =>
    new ApiError({
      target,
      statusCode: 422,
      status: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Invalid', code: 422, message: `${field}: Required value`, details: { causes: [{ field, reason }] } },
    });

  test('a 422 with a Required cause on status.stage', () => {
    assert.equal(requiresStage(invalid('status.stage', 'FieldValueRequired')), true);
  });

  test('any other refusal is not', () => {
    assert.equal(requiresStage(invalid('status.phase', 'FieldValueRequired')), false, 'another field');
    assert.equal(requiresStage(invalid('status.stage', 'FieldValueInvalid')), false, 'another cause');
    assert.equal(requiresStage(new ApiError({ target, statusCode: 422 })), false, 'no causes');
    assert.equal(requiresStage(new ApiError({ target, statusCode: 409 })), false, 'a conflict');
    assert.equal(requiresStage(new Error('status.stage: Required value')), false, 'not an API answer');
  });
});

describe('mark', () => {
  test('sets the condition and keeps the phase derived', () => {
    const b = applied(mark('Build', 'Success', T1, rules(), { reason: 'Succeeded', message: 'ok' }));
    assert.deepEqual(b.status, {
      conditions: [{ type: 'Build', status: 'Success', lastTransitionTime: '2025-06-01T10:00:00Z', reason: 'Succeeded', message: 'ok' }],
      phase: 'Done',
    });
  });

  test('the message is sanitized: control sequences stripped, cut to the condition limit', () => {
    const b = applied(mark('Build', 'Error', T1, rules(), { message: `\u001b[31mred\u001b[0m ${'x'.repeat(40_000)}` }));
    const message = b.status!.conditions![0]!.message!;
    assert.ok(message.startsWith('red x'), `escape codes left in ${JSON.stringify(message.slice(0, 20))}`);
    assert.ok(Buffer.byteLength(message) <= MAX_CONDITION_MESSAGE_BYTES, `message of ${Buffer.byteLength(message)} bytes not cut`);
  });

  test('a result goes into the status as a copy', () => {
    const result = { image: { url: 'registry/app:1' } };
    const b = applied(mark('Build', 'Success', T1, rules(), { result }));
    result.image.url = 'changed';
    assert.deepEqual(b.status!.image, { url: 'registry/app:1' });
  });

  test('the phase is derived over the owned conditions only', () => {
    const foreign = { type: 'Foreign', status: 'Error' as const, lastTransitionTime: '2025-06-01T09:00:00Z' };
    const owned = applied(mark('Build', 'Success', T1, rules(), {}, new Set(['Build'])), build({ conditions: [foreign] }));
    assert.equal(owned.status!.phase, 'Done');
    const all = applied(mark('Build', 'Success', T1, rules()), build({ conditions: [foreign] }));
    assert.equal(all.status!.phase, 'Errored', 'without owned, every condition counts');
  });

  test('repeatable, as conflict retries apply it again to a fresh read', () => {
    const m = mark('Build', 'In Progress', T1, rules());
    const once = applied(m);
    assert.deepEqual(applied(m, applied(m)), once);
  });

  test('the phase field is read from the rules when applied (writeStatus may move it to stage)', () => {
    const r = { ...rules(), guessed: true };
    const m = mark('Build', 'In Progress', T1, r);
    r.phaseField = 'stage';
    const b = applied(m);
    assert.equal(b.status!.stage, 'Running');
    assert.equal(b.status!.phase, undefined);
  });
});

describe('combine', () => {
  test('applies the mutations in order, as one', () => {
    const b = applied(combine(mark('A', 'Success', T1, rules()), mark('B', 'In Progress', T2, rules()), mark('A', 'Error', T2, rules())));
    assert.deepEqual(
      b.status!.conditions!.map((c) => [c.type, c.status]),
      [
        ['A', 'Error'],
        ['B', 'In Progress'],
      ],
    );
    assert.equal(b.status!.phase, 'Errored');
  });
});

describe('startMutation', () => {
  const tasks = [{ type: 'A' }, { type: 'B' }, { type: 'C' }];
  const owned = new Set(tasks.map((t) => t.type));

  test('the first task In Progress, the rest initialized, the phase Running', () => {
    const b = applied(startMutation(tasks, T1, rules(), owned));
    assert.deepEqual(
      b.status!.conditions!.map((c) => [c.type, c.status]),
      [
        ['A', 'In Progress'],
        ['B', ''],
        ['C', ''],
      ],
    );
    assert.equal(b.status!.phase, 'Running');
  });

  test("a previous attempt's Error in the plan starts over; conditions outside it are left alone", () => {
    const previous = build({
      phase: 'Errored',
      conditions: [
        { type: 'B', status: 'Error', lastTransitionTime: '2025-06-01T09:00:00Z', reason: 'Failed', message: 'exit 1' },
        { type: 'Foreign', status: 'Error', lastTransitionTime: '2025-06-01T09:00:00Z', reason: 'Other' },
      ],
    });
    const b = applied(startMutation(tasks, T1, rules(), owned), previous);
    const byType = new Map(b.status!.conditions!.map((c) => [c.type, c]));
    assert.equal(byType.get('B')!.status, '', 'the plan condition starts over');
    assert.equal(byType.get('B')!.reason, undefined, "the previous attempt's reason is gone");
    assert.equal(byType.get('B')!.message, undefined, "the previous attempt's message is gone");
    assert.deepEqual(byType.get('Foreign'), { type: 'Foreign', status: 'Error', lastTransitionTime: '2025-06-01T09:00:00Z', reason: 'Other' });
    assert.equal(b.status!.phase, 'Running', "a previous attempt's Error does not make this run Errored");
  });

  test('the phase goes to the field the rules name when applied', () => {
    const r = rules();
    const m = startMutation(tasks, T1, r, owned);
    r.phaseField = 'stage';
    const b = applied(m, build({ stage: '' }));
    assert.equal(b.status!.stage, 'Running');
    assert.equal(b.status!.phase, undefined);
  });
});
