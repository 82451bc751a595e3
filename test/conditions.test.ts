import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { applyCondition, DEFAULT_VOCABULARY, derivePhase, formatTime, getCondition, setCondition, type Vocabulary } from '../lib/conditions.js';
import type { BuildCondition, BuildStatus } from '../lib/types.js';

const T1 = new Date('2025-06-01T10:00:00.123Z');
const T2 = new Date('2025-06-01T10:05:00Z');

function status(): BuildStatus {
  return {
    phase: 'Running',
    conditions: [
      { type: 'Pod Deployment', status: 'Success', lastTransitionTime: '2025-06-01T09:59:00Z', reason: 'PodRunning' },
      { type: 'Building Image', status: 'In Progress', lastTransitionTime: '2025-06-01T09:59:30Z' },
    ],
  };
}

describe('formatTime', () => {
  test('RFC 3339 at second precision, as metav1.Time', () => {
    assert.equal(formatTime(T1), '2025-06-01T10:00:00Z');
  });
});

describe('getCondition', () => {
  test('returns a copy: changing it leaves the status alone', () => {
    const s = status();
    const c = getCondition(s, 'Building Image');
    assert.deepEqual(c, s.conditions![1]);
    assert.notEqual(c, s.conditions![1]);
    c.status = 'Error';
    assert.equal(s.conditions![1]!.status, 'In Progress');
  });

  test('a fresh initialized condition when there is none', () => {
    assert.deepEqual(getCondition(status(), 'Pushing Image'), { type: 'Pushing Image', status: '' });
    assert.deepEqual(getCondition(undefined, 'Pushing Image'), { type: 'Pushing Image', status: '' });
    assert.deepEqual(getCondition({}, 'Pushing Image'), { type: 'Pushing Image', status: '' });
  });

  test('the fresh condition uses the vocabulary\'s initialized value', () => {
    const vocabulary: Vocabulary = { ...DEFAULT_VOCABULARY, initialized: 'Pending' };
    assert.equal(getCondition(undefined, 'x', vocabulary).status, 'Pending');
  });
});

describe('setCondition', () => {
  test('replaces the condition of the same type in place', () => {
    const s = status();
    const returned = setCondition(s, { type: 'Building Image', status: 'Success', reason: 'Succeeded' }, T2);
    assert.equal(returned, s, 'changes and returns the same status');
    assert.equal(s.conditions!.length, 2);
    assert.deepEqual(s.conditions![1], { type: 'Building Image', status: 'Success', reason: 'Succeeded', lastTransitionTime: '2025-06-01T10:05:00Z' });
    assert.deepEqual(s.conditions![0], status().conditions![0], 'the other condition is untouched');
  });

  test('appends a condition of a new type, with the transition time', () => {
    const s = status();
    setCondition(s, { type: 'Pushing Image', status: 'In Progress' }, T2);
    assert.deepEqual(s.conditions!.map((c) => c.type), ['Pod Deployment', 'Building Image', 'Pushing Image']);
    assert.equal(s.conditions![2]!.lastTransitionTime, '2025-06-01T10:05:00Z');
  });

  test('creates the list when there is none', () => {
    const s: BuildStatus = {};
    setCondition(s, { type: 'Building Image', status: 'In Progress' }, T2);
    assert.equal(s.conditions!.length, 1);
  });

  test('lastTransitionTime moves only when the status value changes', () => {
    const s = status();
    setCondition(s, { type: 'Building Image', status: 'In Progress', message: 'step 2 of 5' }, T2);
    assert.deepEqual(s.conditions![1], {
      type: 'Building Image',
      status: 'In Progress',
      message: 'step 2 of 5',
      lastTransitionTime: '2025-06-01T09:59:30Z',
    });
    setCondition(s, { type: 'Building Image', status: 'Error', reason: 'StepFailed' }, T2);
    assert.equal(s.conditions![1]!.lastTransitionTime, '2025-06-01T10:05:00Z');
  });

  test('a time given by the caller is replaced by the real transition time', () => {
    const s = status();
    setCondition(s, { type: 'Building Image', status: 'In Progress', lastTransitionTime: '2030-01-01T00:00:00Z' }, T2);
    assert.equal(s.conditions![1]!.lastTransitionTime, '2025-06-01T09:59:30Z');
  });

  test('the same status without a previous time stays without one', () => {
    const s: BuildStatus = { conditions: [{ type: 'x', status: 'In Progress' }] };
    setCondition(s, { type: 'x', status: 'In Progress', lastTransitionTime: '2030-01-01T00:00:00Z' }, T2);
    assert.deepEqual(s.conditions![0], { type: 'x', status: 'In Progress' });
  });

  test('undefined reason and message are left out, not written as undefined', () => {
    const s: BuildStatus = {};
    const condition: BuildCondition = { type: 'x', status: 'Success', reason: undefined, message: undefined };
    setCondition(s, condition, T2);
    assert.deepEqual(Object.keys(s.conditions![0]!).sort(), ['lastTransitionTime', 'status', 'type']);
    assert.ok('reason' in condition, 'the caller\'s object is not changed');
  });
});

describe('derivePhase', () => {
  const c = (...statuses: BuildCondition['status'][]): BuildCondition[] => statuses.map((status, i) => ({ type: `c${i}`, status }));
  const table: Array<[string, BuildCondition[] | undefined, string]> = [
    ['no conditions at all: pending', undefined, ''],
    ['an empty list: pending', [], ''],
    ['any Error: Errored', c('Success', 'Error', 'In Progress'), 'Errored'],
    ['Error wins over all Success', c('Success', 'Success', 'Error'), 'Errored'],
    ['all Success: Done', c('Success', 'Success'), 'Done'],
    ['one Success: Done', c('Success'), 'Done'],
    ['Success and In Progress: Running', c('Success', 'In Progress'), 'Running'],
    ['Success and one not started: Running', c('Success', ''), 'Running'],
    ['conditions that have not started: Running', c('', ''), 'Running'],
  ];
  for (const [name, conditions, phase] of table) {
    test(name, () => assert.equal(derivePhase(conditions), phase));
  }

  test('follows the vocabulary', () => {
    const vocabulary: Vocabulary = { ...DEFAULT_VOCABULARY, success: 'True', error: 'False', done: 'Succeeded' };
    assert.equal(derivePhase([{ type: 'x', status: 'True' as never }], vocabulary), 'Succeeded');
    assert.equal(derivePhase([{ type: 'x', status: 'Error' }], vocabulary), 'Running');
  });
});

describe('applyCondition', () => {
  test('sets the condition and the phase derived from all of them', () => {
    const s = status();
    applyCondition(s, { type: 'Building Image', status: 'Success' }, T2);
    assert.equal(s.phase, 'Done');
    applyCondition(s, { type: 'Pushing Image', status: 'Error', reason: 'PushFailed' }, T2);
    assert.equal(s.phase, 'Errored');
  });
});
