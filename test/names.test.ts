import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { InvalidNameError } from '../lib/errors.js';
import { buildRef, formatBuildReference, parseBuildReference, validateName, validateNamespace } from '../lib/names.js';

const SHAPE = 'expected "namespace/name" with exactly one "/"';
const SUBDOMAIN = "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL = "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

describe('parseBuildReference', () => {
  const refused: Array<[input: string, message: string]> = [
    ['', `invalid Build reference "": ${SHAPE}`],
    ['b1', `invalid Build reference "b1": ${SHAPE}`],
    ['ns/b1/status', `invalid Build reference "ns/b1/status": ${SHAPE}`],
    ['ns%2Fb1', `invalid Build reference "ns%2Fb1": ${SHAPE}`],
    ['../x', `invalid Build namespace "..": ${LABEL}`],
    ['ns/..', `invalid Build name "..": ${SUBDOMAIN}`],
    ['ns/%2F', `invalid Build name "%2F": ${SUBDOMAIN}`],
    ['ns/b%2e1', `invalid Build name "b%2e1": ${SUBDOMAIN}`],
    ['NS/b1', `invalid Build namespace "NS": ${LABEL}`],
    ['ns/Build1', `invalid Build name "Build1": ${SUBDOMAIN}`],
    ['/b1', 'invalid Build namespace "": must not be empty'],
    ['ns/', 'invalid Build name "": must not be empty'],
    [' ns/b1', `invalid Build namespace " ns": ${LABEL}`],
    ['ns/b1\n', `invalid Build name "b1\\n": ${SUBDOMAIN}`],
    ['ns/-b1', `invalid Build name "-b1": ${SUBDOMAIN}`],
    ['team.a/b1', `invalid Build namespace "team.a": ${LABEL}`],
    [`${'n'.repeat(64)}/b1`, `invalid Build namespace "${'n'.repeat(64)}": must be no more than 63 characters (got 64)`],
    [`ns/${'a'.repeat(300)}`, `invalid Build name "${'a'.repeat(61)}...": must be no more than 253 characters (got 300)`],
  ];
  for (const [input, message] of refused) {
    test(`refuses ${JSON.stringify(input.length > 40 ? `${input.slice(0, 37)}...` : input)}`, () => {
      assert.throws(
        () => parseBuildReference(input),
        (err: unknown) => {
          assert.ok(err instanceof InvalidNameError, String(err));
          assert.equal(err.code, 'ERR_SPOT_INVALID_NAME');
          assert.equal(err.name, 'InvalidNameError');
          assert.equal(err.message, message);
          assert.ok(err.message.length < 300, 'untrusted input is shortened in the message');
          return true;
        },
      );
    });
  }

  for (const input of ['ns/b1', 'team-a/build.v1.2', 'a/b', `${'n'.repeat(63)}/b1`, `ns/${'a'.repeat(253)}`, '0/9']) {
    test(`accepts ${JSON.stringify(input.length > 40 ? `${input.slice(0, 37)}...` : input)}`, () => {
      const ref = parseBuildReference(input);
      assert.equal(formatBuildReference(ref), input);
      assert.ok(Object.isFrozen(ref), 'a BuildRef is frozen');
    });
  }
});

describe('validateName and validateNamespace', () => {
  test('name the thing checked in the message', () => {
    assert.throws(() => validateName('UPPER', 'event name'), /^InvalidNameError: invalid event name "UPPER"/);
    assert.throws(() => validateNamespace('a.b'), /^InvalidNameError: invalid namespace "a\.b"/);
  });

  test('return the value when it is valid', () => {
    assert.equal(validateName('b1.x-y'), 'b1.x-y');
    assert.equal(validateNamespace('kube-system'), 'kube-system');
    assert.deepEqual(buildRef('ns', 'b1'), { namespace: 'ns', name: 'b1' });
  });
});
