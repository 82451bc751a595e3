/** The fixture harness itself: a harness that cannot fail would make every fixture test worthless. */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { buildRef } from '../lib/names.js';
import {
  createFixture,
  differences,
  FIXTURES_DIR,
  loadFixture,
  rejection,
  TEST_SERVER,
  validateExchanges,
  withFixture,
  type Exchange,
} from './support/fixtures.js';
import { createTransport } from '../lib/transport.js';

const ref = buildRef('ns', 'b1');
const BUILDS = '/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1';
const get = (path = BUILDS): Exchange => ({ request: { method: 'GET', path }, reply: { status: 200, body: { ok: true } } });

/** The AssertionError withFixture ends with, when `fn` misbehaves against `exchanges`. */
async function harnessFailure(exchanges: Exchange[], fn: (t: ReturnType<typeof createTransport>) => Promise<unknown>): Promise<string> {
  const err = await rejection(() =>
    withFixture(exchanges, async (_client, { fixture }) => {
      const transport = createTransport({ server: TEST_SERVER, dispatcher: fixture.agent, retry: { maxRetries: 0 } });
      await fn(transport).catch(() => undefined);
    }),
  );
  assert.equal(err.name, 'AssertionError', `${err.name}: ${err.message}`);
  return err.message;
}

describe('placeholders and exact matching', () => {
  test('<any>, <time>, <re:...>', () => {
    assert.deepEqual(differences({ a: '<any>' }, { a: { deep: [1] } }), []);
    assert.deepEqual(differences({ a: '<any>' }, {}), ['/a: missing (expected "<any>")']);
    assert.deepEqual(differences('<time>', '2025-06-01T10:00:00Z'), []);
    assert.deepEqual(differences('<time>', '2025-06-01T10:00:00.123456+02:00'), []);
    assert.equal(differences('<time>', 'yesterday').length, 1);
    assert.deepEqual(differences('<re:^b1\\.[0-9a-f]+$>', 'b1.18a0f'), []);
    assert.equal(differences('<re:^b1\\.[0-9a-f]+$>', 'b2.18a0f').length, 1);
  });

  test('objects need the same keys, arrays the same items in the same order', () => {
    assert.deepEqual(differences({ a: 1, b: 2 }, { b: 2, a: 1 }), []);
    assert.deepEqual(differences({ a: 1 }, { a: 1, b: 2 }), ['/b: unexpected (got 2)']);
    assert.deepEqual(differences([1, 2], [2, 1]), ['/0: expected 1, got 2', '/1: expected 2, got 1']);
    assert.equal(differences([1], [1, 2]).length, 1);
    assert.deepEqual(differences({ a: '1' }, { a: 1 }), ['/a: expected "1", got 1']);
  });
});

describe('what fails a test', () => {
  test('a request that differs from its exchange: every difference is shown, and the client sees a 418', async () => {
    const exchanges: Exchange[] = [
      { request: { method: 'PATCH', path: BUILDS, headers: { 'content-type': 'application/merge-patch+json' }, body: { status: { phase: 'Done' } } }, reply: { status: 200, body: {} } },
    ];
    let seen: Error | undefined;
    const message = await harnessFailure(exchanges, async (t) => {
      seen = await rejection(() => t.request({ method: 'PATCH', path: BUILDS, body: { status: { phase: 'Running' } } }));
    });
    assert.match(message, /request #1 does not match exchange #1 PATCH/);
    assert.match(message, /header content-type: expected "application\/merge-patch\+json", got "application\/json"/);
    assert.match(message, /body\/status\/phase: expected "Done", got "Running"/);
    assert.equal((seen as { statusCode?: number }).statusCode, 418);
  });

  test('requests out of order fail', async () => {
    const message = await harnessFailure([get('/a'), get('/b')], async (t) => {
      await t.request({ method: 'GET', path: '/b' }).catch(() => undefined);
      await t.request({ method: 'GET', path: '/a' }).catch(() => undefined);
    });
    assert.match(message, /path: expected \/a, got \/b/);
    assert.match(message, /path: expected \/b, got \/a/);
  });

  test('an unexpected request fails and is shown', async () => {
    const message = await harnessFailure([get()], async (t) => {
      await t.request({ method: 'GET', path: BUILDS });
      await t.request({ method: 'POST', path: '/api/v1/namespaces/ns/events', body: { kind: 'Event' } });
    });
    assert.match(message, /unexpected request #2 \(all 1 exchanges used\):\s+POST \/api\/v1\/namespaces\/ns\/events/);
    assert.match(message, /body: \{"kind":"Event"\}/);
  });

  test('an exchange that never happened fails', async () => {
    const message = await harnessFailure([{ ...get(), comment: 'the read' }, get('/never')], async (t) => {
      await t.request({ method: 'GET', path: BUILDS });
    });
    assert.match(message, /exchange #2 GET \/never never happened/);
  });

  test('a header listed as null must be absent; a body left out must be absent', async () => {
    const exchanges: Exchange[] = [
      { request: { method: 'GET', path: BUILDS, headers: { authorization: null } }, reply: { status: 200, body: {} } },
      { request: { method: 'POST', path: BUILDS }, reply: { status: 200, body: {} } },
    ];
    const err = await rejection(() =>
      withFixture(exchanges, async (client, { fixture }) => {
        await client.getBuild(ref).catch(() => undefined);
        const t = createTransport({ server: TEST_SERVER, dispatcher: fixture.agent });
        await t.request({ method: 'POST', path: BUILDS, body: { x: 1 } }).catch(() => undefined);
      }),
    );
    assert.match(err.message, /header authorization: expected none, got "Bearer test-token"/);
    assert.match(err.message, /body: expected none, got \{"x":1\}/);
  });

  test('a mismatch is reported even when the test body threw because of it', async () => {
    const err = await rejection(() =>
      withFixture([get('/other')], async (client) => {
        await client.getBuild(ref);
      }),
    );
    assert.equal(err.name, 'AssertionError');
    assert.match(err.message, /path: expected \/other, got \/apis/);
    assert.equal((err.cause as Error).name, 'ApiError');
  });

  test('dropUnused: the rest is no longer expected, and a later request is unexpected', async () => {
    const f = createFixture([get('/a'), get('/b')]);
    const t = createTransport({ server: TEST_SERVER, dispatcher: f.agent });
    await t.request({ method: 'GET', path: '/a' });
    f.dropUnused();
    f.assertDone();
    await t.request({ method: 'GET', path: '/b' }).catch(() => undefined);
    await f.close();
    assert.throws(() => f.assertDone(), /unexpected request #2 \(all 1 exchanges used\):\s+GET \/b/);
  });

  test('a request to another server fails', async () => {
    const f = createFixture([get()]);
    const t = createTransport({ server: 'https://elsewhere.test', dispatcher: f.agent });
    await t.request({ method: 'GET', path: BUILDS }).catch(() => undefined);
    await f.close();
    assert.throws(() => f.assertDone(), /origin: expected https:\/\/kubernetes\.test:6443, got https:\/\/elsewhere\.test/);
  });
});

describe('fixture files', () => {
  const files = readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.json'));

  test('every file loads and is well formed', () => {
    assert.ok(files.length > 10, `only ${files.length} fixture files`);
    for (const file of files) assert.ok(loadFixture(file.replace(/\.json$/, '')).length > 0, file);
  });

  test('tokens are obvious fakes, never JWT-shaped', () => {
    for (const file of files) {
      const text = readFileSync(join(FIXTURES_DIR, file), 'utf8');
      assert.doesNotMatch(text, /eyJ[\w-]+\.[\w-]+/, `${file} holds something JWT-shaped`);
      for (const [, token] of text.matchAll(/"Bearer ([^"]*)"/g)) assert.match(token!, /^test-token(-[a-z]+)?$/, file);
    }
  });

  test('typos in a fixture are errors, not silent passes', () => {
    assert.throws(() => validateExchanges([{ request: { method: 'GET', path: '/' }, replay: { status: 200 } }]), /unknown key "replay"/);
    assert.throws(() => validateExchanges([{ request: { method: 'GET', path: '/', header: {} }, reply: { status: 200 } }]), /unknown request key "header"/);
    assert.throws(() => validateExchanges([{ request: { method: 'GET', path: '/' } }]), /exactly one of "reply" and "error"/);
    assert.throws(() => validateExchanges([{ request: { method: 'GET', path: '/' }, reply: { status: 200 }, error: 'ECONNRESET' }]), /exactly one/);
    assert.throws(() => validateExchanges([{ request: { method: 'get', path: '/' }, reply: { status: 200 } }]), /upper-case/);
    assert.throws(() => loadFixture('no-such-story'), /fixture no-such-story: cannot read/);
  });
});
