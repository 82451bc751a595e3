import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  backoffMs,
  DEFAULT_RETRY_POLICY,
  isTlsFailure,
  parseRetryAfter,
  retryDelay,
  wasSent,
  type AttemptFailure,
  type RetryPolicy,
} from '../lib/retry.js';

const policy: RetryPolicy = { maxRetries: 3, baseDelayMs: 100, maxDelayMs: 1_000, maxRetryAfterMs: 5_000, deadlineMs: 60_000, minAttemptMs: 100 };
/** retry 0, random 0.5: a step of 100 ms, half fixed, half jitter. */
const BACKOFF = 75;

const status = (statusCode: number, retryAfterSeconds?: number): AttemptFailure => ({ kind: 'status', statusCode, retryAfterSeconds });
const network = (code: string | undefined): AttemptFailure => ({ kind: 'network', code, sent: wasSent(code) });

describe('retryDelay, rule by rule (lib/retry.ts header)', () => {
  const table: Array<[rule: string, failure: AttemptFailure, idempotent: boolean, expected: number | undefined]> = [
    // 429: the server did not process the request, so any method; Retry-After when given (capped), else the backoff.
    ['429, Retry-After 2, unsafe write: the server\'s wait', status(429, 2), false, 2_000],
    ['429, Retry-After 2, GET', status(429, 2), true, 2_000],
    ['429, Retry-After 60: capped', status(429, 60), false, 5_000],
    ['429, Retry-After 0: at once', status(429, 0), false, 0],
    ['429 without Retry-After: the backoff', status(429), false, BACKOFF],
    // 5xx: retried when safe to repeat; otherwise only when the server asked with Retry-After.
    ['500, GET: the backoff', status(500), true, BACKOFF],
    ['503, GET, Retry-After 1: the server\'s wait', status(503, 1), true, 1_000],
    ['504, GET, Retry-After 600: capped', status(504, 600), true, 5_000],
    ['500, unsafe write: never', status(500), false, undefined],
    ['502, unsafe write: never', status(502), false, undefined],
    ['503, unsafe write, Retry-After 1: the server asked', status(503, 1), false, 1_000],
    // No connection made: nothing was sent, any method.
    ['ECONNREFUSED, unsafe write', network('ECONNREFUSED'), false, BACKOFF],
    ['connect timeout, unsafe write', network('UND_ERR_CONNECT_TIMEOUT'), false, BACKOFF],
    ['DNS failure, unsafe write', network('ENOTFOUND'), false, BACKOFF],
    ['DNS try again, unsafe write', network('EAI_AGAIN'), false, BACKOFF],
    ['host unreachable, unsafe write', network('EHOSTUNREACH'), false, BACKOFF],
    // Connection lost after sending: only what is safe to repeat.
    ['ECONNRESET, GET', network('ECONNRESET'), true, BACKOFF],
    ['ECONNRESET, unsafe write', network('ECONNRESET'), false, undefined],
    ['socket closed, unsafe write', network('UND_ERR_SOCKET'), false, undefined],
    ['no code at all, unsafe write: assume sent', network(undefined), false, undefined],
    ['no code at all, GET', network(undefined), true, BACKOFF],
    ['timeout, GET', { kind: 'timeout' }, true, BACKOFF],
    ['timeout, unsafe write', { kind: 'timeout' }, false, undefined],
    // TLS failures and every other 4xx: never.
    ['self-signed certificate, GET', network('DEPTH_ZERO_SELF_SIGNED_CERT'), true, undefined],
    ['unknown issuer, GET', network('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), true, undefined],
    ['wrong host name, GET', network('ERR_TLS_CERT_ALTNAME_INVALID'), true, undefined],
    ['expired certificate, GET', network('CERT_HAS_EXPIRED'), true, undefined],
    ['400, GET', status(400), true, undefined],
    ['401, GET', status(401), true, undefined],
    ['403, GET', status(403), true, undefined],
    ['404, GET', status(404), true, undefined],
    ['409, GET (conflicts are the caller\'s loop)', status(409), true, undefined],
    ['413, GET', status(413), true, undefined],
    ['415, GET', status(415), true, undefined],
    ['422, GET', status(422), true, undefined],
    ['400 with Retry-After: still never', status(400, 1), true, undefined],
  ];
  for (const [rule, failure, idempotent, expected] of table) {
    test(rule, () => assert.equal(retryDelay(policy, 0, failure, idempotent, 0.5), expected));
  }

  test('no retry once maxRetries are used, whatever the failure', () => {
    assert.equal(retryDelay(policy, 2, status(429, 1), true, 0.5), 1_000);
    assert.equal(retryDelay(policy, 3, status(429, 1), true, 0.5), undefined);
    assert.equal(retryDelay(policy, 3, network('ECONNREFUSED'), true, 0.5), undefined);
    assert.equal(retryDelay({ ...policy, maxRetries: 0 }, 0, status(503, 1), true, 0.5), undefined);
  });
});

describe('backoffMs', () => {
  test('doubles from baseDelayMs up to maxDelayMs, with equal jitter', () => {
    const steps = [0, 1, 2, 3, 4, 10].map((retry) => [backoffMs(policy, retry, 0), backoffMs(policy, retry, 0.999999)]);
    assert.deepEqual(steps, [
      [50, 100],
      [100, 200],
      [200, 400],
      [400, 800],
      [500, 1_000],
      [500, 1_000],
    ]);
  });

  test('the default policy starts at a quarter second and stays within its deadline', () => {
    assert.equal(backoffMs(DEFAULT_RETRY_POLICY, 0, 1), 250);
    let total = 0;
    for (let retry = 0; retry < DEFAULT_RETRY_POLICY.maxRetries; retry++) total += backoffMs(DEFAULT_RETRY_POLICY, retry, 1);
    assert.ok(total < DEFAULT_RETRY_POLICY.deadlineMs, `${total} ms of backoff`);
    assert.ok(Object.isFrozen(DEFAULT_RETRY_POLICY), 'the default policy is frozen');
  });
});

describe('wasSent and isTlsFailure', () => {
  test('only failures before connecting count as not sent', () => {
    for (const code of ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']) {
      assert.equal(wasSent(code), false, code);
    }
    for (const code of ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT', undefined]) {
      assert.equal(wasSent(code), true, String(code));
    }
  });

  test('certificate and TLS codes', () => {
    for (const code of ['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_WRONG_VERSION_NUMBER']) {
      assert.equal(isTlsFailure(code), true, code);
    }
    for (const code of ['ECONNRESET', 'ECONNREFUSED', undefined]) assert.equal(isTlsFailure(code), false, String(code));
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-06-01T10:00:00Z');
  test('delta-seconds', () => {
    assert.equal(parseRetryAfter('1', now), 1);
    assert.equal(parseRetryAfter(' 32 ', now), 32);
    assert.equal(parseRetryAfter(['5', '9'], now), 5);
  });
  test('an HTTP date, relative to now, never negative', () => {
    assert.equal(parseRetryAfter('Sun, 01 Jun 2025 10:00:05 GMT', now), 5);
    assert.equal(parseRetryAfter('Sun, 01 Jun 2025 09:00:00 GMT', now), 0);
  });
  test('the three HTTP-date forms (IMF-fixdate, RFC 850, asctime)', () => {
    assert.equal(parseRetryAfter('Sun, 01 Jun 2025 10:00:07 GMT', now), 7);
    assert.equal(parseRetryAfter('Sunday, 01-Jun-25 10:00:07 GMT', now), 7);
    assert.equal(parseRetryAfter('Sun Jun  1 10:00:07 2025', now), 7);
  });
  test('absent or unparsable: undefined (the backoff applies)', () => {
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('', now), undefined);
  });
  test('neither seconds nor a date: undefined, not "now" (V8 reads "1.5" and "-1" as dates in 2001)', () => {
    for (const value of ['1.5', '-1', '0.5', ' 12 s', 'abc 1', '+5']) {
      assert.equal(parseRetryAfter(value, now), undefined, JSON.stringify(value));
    }
  });
});
