import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { isForbidden } from '../lib/errors.js';
import { eventName, fitMessage, makeEvent, MAX_MESSAGE_BYTES, truncateUtf8 } from '../lib/events.js';
import { validateName } from '../lib/names.js';
import type { Build } from '../lib/types.js';
import { loadFixture, replyBody, withFixture, type Exchange, type WithFixtureOptions } from './support/fixtures.js';

const build = replyBody<Build>(loadFixture('get-build'), 0);
const EVENTS = '/api/v1/namespaces/ns/events';
const T0 = Date.parse('2025-06-01T10:00:00Z');

/** A client whose event clock reads `clock.now` (milliseconds), and the pod name of the fixtures. */
function eventOptions(clock: { now: number }): WithFixtureOptions {
  return { client: { events: { instance: 'b1-build-7x9k2', now: () => new Date(clock.now) } } };
}

describe('recording an event', () => {
  test('POSTs a core/v1 Event shaped as client-go makes it (exact body in the fixture)', async () => {
    const clock = { now: T0 };
    await withFixture('event-created', async (client, { requests }) => {
      const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Started', message: 'building team/app:3f2c1a9' });
      assert.equal(outcome.ok, true);
      assert.ok(outcome.ok, JSON.stringify(outcome));
      assert.equal(outcome.action, 'created');
      assert.equal(outcome.count, 1);
      const sent = requests[0]!.body as Record<string, unknown>;
      assert.equal((sent.metadata as { name: string }).name, outcome.name);
      assert.ok(!('eventTime' in sent), 'no eventTime on core/v1');
      assert.ok(!('action' in sent), 'no action on core/v1');
    }, eventOptions(clock));
  });

  test('the name is <build>.<hex nanoseconds>, increasing even within one millisecond', () => {
    const at = new Date('2100-01-01T00:00:00Z'); // later than every other event in this file
    const first = eventName('b1', at);
    const second = eventName('b1', at);
    assert.equal(first, `b1.${(BigInt(at.getTime()) * 1_000_000n).toString(16)}`);
    assert.ok(BigInt(`0x${second.slice(3)}`) > BigInt(`0x${first.slice(3)}`), `${second} after ${first}`);
  });

  test('a long Build name is cut, never the suffix: names stay unique, valid and at most 253 characters', () => {
    // Later than every other event name in this file, so the first suffix is exactly this instant.
    const at = new Date('2200-01-01T00:00:00Z');
    let nanos = BigInt(at.getTime()) * 1_000_000n;
    const suffixLength = `.${nanos.toString(16)}`.length;
    // The longest name; one whose cut lands on a "-"; one whose cut lands on a ".".
    const cut = 253 - suffixLength;
    const builds = ['b'.repeat(253), `${'c'.repeat(cut - 1)}-${'d'.repeat(20)}`, `${'e'.repeat(cut - 1)}.${'f'.repeat(20)}`];
    const names: string[] = [];
    for (const buildName of builds) {
      for (let i = 0; i < 2; i++, nanos++) {
        const name = eventName(buildName, at);
        names.push(name);
        assert.ok(name.length <= 253, `${name.length} characters`);
        assert.doesNotThrow(() => validateName(name), `${name} is not a valid object name`);
        const suffix = `.${nanos.toString(16)}`;
        assert.ok(name.endsWith(suffix), `${name} lost its suffix ${suffix}`);
        const prefix = name.slice(0, -suffix.length);
        assert.ok(prefix.length > 0 && buildName.startsWith(prefix), `${name} does not start with the Build's name`);
      }
    }
    // Equal names would make the second POST a 409 AlreadyExists, counted as created.
    assert.equal(new Set(names).size, names.length, `repeated event names: ${names.join(', ')}`);
  });

  test('a repeat within ten minutes is folded into a merge PATCH of count, lastTimestamp and message', async () => {
    const clock = { now: T0 };
    const failed = { type: 'Warning', reason: 'StepFailed', message: 'step "push" exited with code 1' } as const;
    await withFixture('event-folded', async (client, { requests }) => {
      const first = await client.recordEvent(build, failed);
      assert.ok(first.ok && first.action === 'created', JSON.stringify(first));

      clock.now = T0 + 60_000;
      const second = await client.recordEvent(build, failed);
      assert.deepEqual(second, { ok: true, action: 'folded', name: first.name, count: 2 });
      assert.equal(requests[1]!.path, `${EVENTS}/${first.name}`, 'the PATCH goes to the first event');

      clock.now = T0 + 9 * 60_000;
      const third = await client.recordEvent(build, failed);
      assert.deepEqual(third, { ok: true, action: 'folded', name: first.name, count: 3 });

      clock.now = T0 + 11 * 60_000;
      const fourth = await client.recordEvent(build, failed);
      assert.ok(fourth.ok && fourth.action === 'created' && fourth.name !== first.name, JSON.stringify(fourth));
    }, eventOptions(clock));
  });

  test('a different message is a different event, not a fold', async () => {
    const clock = { now: T0 };
    const [created] = loadFixture('event-created');
    const other = structuredClone(created!);
    (other.request.body as { message: string }).message = 'building team/app:ffffff0';
    await withFixture([created!, other], async (client) => {
      await client.recordEvent(build, { type: 'Normal', reason: 'Started', message: 'building team/app:3f2c1a9' });
      const again = await client.recordEvent(build, { type: 'Normal', reason: 'Started', message: 'building team/app:ffffff0' });
      assert.ok(again.ok && again.action === 'created', JSON.stringify(again));
    }, eventOptions(clock));
  });

  test('PATCH 404 (the first event is gone): POST a new one', async () => {
    const clock = { now: T0 };
    const failed = { type: 'Warning', reason: 'StepFailed', message: 'step "push" exited with code 1' } as const;
    await withFixture('event-fold-gone', async (client) => {
      const first = await client.recordEvent(build, failed);
      clock.now = T0 + 60_000;
      const second = await client.recordEvent(build, failed);
      assert.ok(first.ok && second.ok, JSON.stringify(first));
      assert.equal(second.action, 'created');
      assert.equal(second.count, 1);
      assert.notEqual(second.name, first.name);
    }, eventOptions(clock));
  });

  test('403 Forbidden is swallowed and reported as { ok: false }, not retried', async () => {
    const clock = { now: T0 };
    const warnings: string[] = [];
    const logger = {
      debug() {},
      info() {},
      warn: (m: string) => void warnings.push(m),
      error() {},
      child() {
        return logger;
      },
    };
    await withFixture('event-forbidden', async (client) => {
      const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Started', message: 'building team/app:3f2c1a9' });
      assert.equal(outcome.ok, false);
      assert.ok(!outcome.ok && isForbidden(outcome.error), String(!outcome.ok && outcome.error));
      assert.deepEqual(warnings, ['could not record event']);
    }, { client: { ...eventOptions(clock).client, logger } });
  });

  test('409 AlreadyExists (a repeated POST whose answer was lost) counts as created', async () => {
    const clock = { now: T0 };
    await withFixture('event-already-exists', async (client) => {
      const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Started', message: 'building team/app:3f2c1a9' });
      assert.ok(outcome.ok && outcome.action === 'created', JSON.stringify(outcome));
    }, eventOptions(clock));
  });

  test('a bad type, reason or Build is refused without a request, as { ok: false }', async () => {
    await withFixture([], async (client) => {
      const badType = await client.recordEvent(build, { type: 'Error' as never, reason: 'Started', message: 'x' });
      assert.ok(!badType.ok && /Normal or Warning/.test(badType.error.message), JSON.stringify(badType));
      const badReason = await client.recordEvent(build, { type: 'Normal', reason: '', message: 'x' });
      assert.ok(!badReason.ok && /reason/.test(badReason.error.message), JSON.stringify(badReason));
      const badBuild = structuredClone(build);
      badBuild.metadata.namespace = '../kube-system';
      const badName = await client.recordEvent(badBuild, { type: 'Normal', reason: 'Started', message: 'x' });
      assert.ok(!badName.ok && badName.error.name === 'InvalidNameError', JSON.stringify(badName));
    });
  });
});

describe('message truncation', () => {
  test('a message over 1024 bytes is cut on a UTF-8 boundary and marked', () => {
    for (const char of ['a', 'é', '€', '🚀']) {
      const text = char.repeat(2000);
      const cut = truncateUtf8(text, MAX_MESSAGE_BYTES);
      const bytes = Buffer.byteLength(cut, 'utf8');
      assert.ok(bytes <= MAX_MESSAGE_BYTES, `${char}: ${bytes} bytes`);
      assert.ok(bytes > MAX_MESSAGE_BYTES - 3 - Buffer.byteLength(char), `${char}: cut too short (${bytes} bytes)`);
      assert.ok(cut.endsWith('...'), `${char}: no marker`);
      assert.ok(!cut.includes('\uFFFD'), `${char}: a broken character`);
      assert.ok(text.startsWith(cut.slice(0, -3)), `${char}: not a prefix`);
      assert.equal(Buffer.from(cut, 'utf8').toString('utf8'), cut);
    }
  });

  test('a message of exactly 1024 bytes is kept whole', () => {
    const text = `${'€'.repeat(341)}a`;
    assert.equal(Buffer.byteLength(text), 1024);
    assert.equal(truncateUtf8(text, MAX_MESSAGE_BYTES), text);
  });

  test('the POSTed event carries the cut message', async () => {
    const clock = { now: T0 };
    const [created] = loadFixture('event-created');
    const exchange: Exchange = structuredClone(created!);
    (exchange.request.body as { message: string }).message = '<any>';
    const message = `step failed: ${'€'.repeat(600)}`;
    await withFixture([exchange], async (client, { requests }) => {
      const outcome = await client.recordEvent(build, { type: 'Normal', reason: 'Started', message });
      assert.ok(outcome.ok, JSON.stringify(outcome));
      const sent = (requests[0]!.body as { message: string }).message;
      assert.equal(sent, fitMessage(message));
      // The head and the end of the message, the middle given up.
      assert.ok(Buffer.byteLength(sent) <= 1024 && sent.startsWith('step failed: €') && sent.endsWith('€€€'), sent.slice(-10));
      assert.ok(sent.includes('\n...\n'), 'marks the cut');
    }, eventOptions(clock));
  });
});

describe('fitMessage', () => {
  test('keeps a message that fits as it is', () => {
    assert.equal(fitMessage('exit code 1'), 'exit code 1');
  });

  test('keeps the first line and the end, where a failure says its cause', () => {
    const lines = ['Building Image failed: exit code 2; last stderr lines:', ...Array.from({ length: 40 }, (_, i) => `line ${i} ${'x'.repeat(60)}`), 'error: the real cause'];
    const fitted = fitMessage(lines.join('\n'));
    assert.ok(Buffer.byteLength(fitted) <= MAX_MESSAGE_BYTES, `${Buffer.byteLength(fitted)} bytes`);
    assert.ok(fitted.startsWith(`${lines[0]}\n...\nline `), fitted.slice(0, 80));
    assert.ok(fitted.endsWith('\nerror: the real cause'), fitted.slice(-40));
  });

  test('never splits a character', () => {
    for (const char of ['é', '€', '🚀']) {
      const fitted = fitMessage(`${char.repeat(300)}\n${char.repeat(700)}`);
      assert.ok(Buffer.byteLength(fitted) <= MAX_MESSAGE_BYTES, char);
      assert.ok(!fitted.includes('\uFFFD'), `${char}: a broken character`);
    }
  });
});

describe('makeEvent', () => {
  test('leaves uid and resourceVersion out of involvedObject when the Build has none', () => {
    const bare = structuredClone(build);
    delete bare.metadata.uid;
    delete bare.metadata.resourceVersion;
    const event = makeEvent(bare, { type: 'Normal', reason: 'Started', message: 'm' }, {
      name: 'b1.1',
      component: 'spot-runtime',
      instance: 'pod',
      now: new Date(T0),
    });
    assert.deepEqual(event.involvedObject, { apiVersion: 'spot.release.com/v1alpha1', kind: 'Build', name: 'b1', namespace: 'ns' });
    assert.equal(event.metadata.namespace, event.involvedObject.namespace);
    assert.equal(event.firstTimestamp, '2025-06-01T10:00:00Z');
  });
});
