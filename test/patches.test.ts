import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { createMergePatch, jsonEqual, jsonPatchWithResourceVersion, withResourceVersion } from '../lib/patches.js';

/** RFC 7386 MergePatch, straight from the RFC's pseudo-code, to check that patches do what they claim. */
function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

describe('createMergePatch', () => {
  const cases: Array<[string, unknown, unknown, unknown]> = [
    ['equal objects: no patch', { a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 }, undefined],
    ['a changed value', { phase: 'Running' }, { phase: 'Done' }, { phase: 'Done' }],
    ['an added key', { a: 1 }, { a: 1, b: 2 }, { b: 2 }],
    ['a removed key becomes null', { a: 1, b: 2 }, { a: 1 }, { b: null }],
    ['a key set to undefined counts as removed', { a: 1, b: 2 }, { a: 1, b: undefined }, { b: null }],
    ['an undefined key before is no key', { a: 1, b: undefined }, { a: 1 }, undefined],
    ['nested objects: only the changed leaf', { status: { pod: { name: 'p' }, phase: 'Running' } }, { status: { pod: { name: 'p' }, phase: 'Done' } }, { status: { phase: 'Done' } }],
    [
      'arrays are replaced whole',
      { conditions: [{ type: 'a', status: '' }, { type: 'b', status: '' }] },
      { conditions: [{ type: 'a', status: 'Success' }, { type: 'b', status: '' }] },
      { conditions: [{ type: 'a', status: 'Success' }, { type: 'b', status: '' }] },
    ],
    ['an object replacing a scalar', { image: 'x' }, { image: { url: 'x' } }, { image: { url: 'x' } }],
    ['a scalar replacing an object', { image: { url: 'x' } }, { image: 'x' }, { image: 'x' }],
    ['a null in the target cannot be told from a removal (RFC 7386)', { a: 1 }, { a: null }, { a: null }],
    ['not objects at the top: the new value', 1, 2, 2],
  ];
  for (const [name, before, after, expected] of cases) {
    test(name, () => {
      const patch = createMergePatch(before, after);
      assert.deepEqual(patch, expected);
      if (patch !== undefined && !name.startsWith('a null in the target')) {
        assert.ok(jsonEqual(applyMergePatch(before, patch), JSON.parse(JSON.stringify(after))), 'applying the patch gives the target');
      }
    });
  }

  test('leaves its inputs alone', () => {
    const before = { status: { phase: 'Running', conditions: [{ type: 'a' }] } };
    const after = { status: { phase: 'Done', conditions: [{ type: 'a' }, { type: 'b' }] } };
    const copies = structuredClone([before, after]);
    createMergePatch(before, after);
    assert.deepEqual([before, after], copies);
  });
});

describe('jsonEqual', () => {
  test('ignores key order and undefined values; array order matters', () => {
    assert.equal(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }), true);
    assert.equal(jsonEqual({ a: 1, b: undefined }, { a: 1 }), true);
    assert.equal(jsonEqual([1, 2], [2, 1]), false);
    assert.equal(jsonEqual({ a: 1 }, { a: '1' }), false);
    assert.equal(jsonEqual({ a: null }, {}), false);
    assert.equal(jsonEqual([], {}), false);
  });
});

describe('resourceVersion preconditions', () => {
  test('withResourceVersion adds metadata.resourceVersion, keeping other metadata and the input', () => {
    const patch = { status: { phase: 'Done' }, metadata: { labels: { a: 'b' } } };
    assert.deepEqual(withResourceVersion(patch, '42'), { status: { phase: 'Done' }, metadata: { labels: { a: 'b' }, resourceVersion: '42' } });
    assert.deepEqual(patch.metadata, { labels: { a: 'b' } });
    assert.deepEqual(withResourceVersion({ status: {} }, '7'), { status: {}, metadata: { resourceVersion: '7' } });
  });

  test('jsonPatchWithResourceVersion puts a replace (not a test) of the version first', () => {
    const ops = [{ op: 'replace' as const, path: '/status/phase', value: 'Done' }];
    assert.deepEqual(jsonPatchWithResourceVersion(ops, '42'), [
      { op: 'replace', path: '/metadata/resourceVersion', value: '42' },
      { op: 'replace', path: '/status/phase', value: 'Done' },
    ]);
    assert.equal(ops.length, 1);
  });
});
