import { strict as assert } from 'node:assert';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ApiError, ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { buildRef } from '../lib/names.js';
import { FileTokenSource, readTokenFile, StaticTokenSource, TOKEN_REREAD_PERIOD_MS } from '../lib/token.js';
import { rejection, withFixture } from './support/fixtures.js';

const ref = buildRef('ns', 'b1');
const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A token file holding `content`, in a fresh temporary folder. */
async function tokenFile(content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spot-token-'));
  dirs.push(dir);
  const path = join(dir, 'token');
  await writeFile(path, content);
  return path;
}

describe('readTokenFile', () => {
  test('trims the token (the kubelet writes no newline, people do)', async () => {
    assert.equal(await readTokenFile(await tokenFile('  test-token\n')), 'test-token');
  });

  test('a missing file is a ConfigError naming the path', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'spot-token-')), 'token');
    dirs.push(join(path, '..'));
    const err = await rejection(() => readTokenFile(path, ' (mount a token)'));
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.message, `service-account token file ${path} is missing (mount a token)`);
    assert.equal(err.path, path);
  });

  test('an empty or blank file is a ConfigError, not an empty bearer token', async () => {
    const path = await tokenFile(' \n');
    const err = await rejection(() => readTokenFile(path));
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.message, `service-account token file ${path} is empty`);
  });
});

describe('FileTokenSource', () => {
  test('re-reads the file only once the period has passed (fake clock)', async () => {
    const path = await tokenFile('test-token');
    const clock = { now: 1_000_000 };
    const source = await FileTokenSource.open(path, { now: () => clock.now });
    assert.equal(await source.token(), 'test-token');

    await writeFile(path, 'test-token-rotated\n');
    clock.now += TOKEN_REREAD_PERIOD_MS - 1;
    assert.equal(await source.token(), 'test-token', 'cached within the period');

    clock.now += 1;
    assert.equal(await source.token(), 'test-token-rotated', 're-read once the period is over');

    await writeFile(path, 'test-token-third');
    clock.now += 10;
    assert.equal(await source.token(), 'test-token-rotated', 'the period starts again at the re-read');
  });

  test('honours a custom period', async () => {
    const path = await tokenFile('test-token');
    const clock = { now: 0 };
    const source = await FileTokenSource.open(path, { now: () => clock.now, periodMs: 5_000 });
    await writeFile(path, 'test-token-rotated');
    clock.now = 5_000;
    assert.equal(await source.token(), 'test-token-rotated');
  });

  test('refresh() re-reads now and says whether the token changed', async () => {
    const path = await tokenFile('test-token');
    const source = await FileTokenSource.open(path, { now: () => 0 });
    assert.equal(await source.refresh(), false);
    await writeFile(path, 'test-token-rotated');
    assert.equal(await source.refresh(), true);
    assert.equal(await source.token(), 'test-token-rotated');
  });

  test('concurrent refreshes share one read', async () => {
    const source = await FileTokenSource.open(await tokenFile('test-token'), { now: () => 0 });
    const a = source.refresh();
    const b = source.refresh();
    assert.equal(a, b);
    await a;
    assert.notEqual(source.refresh(), a, 'a later refresh reads again');
  });

  test('a failed or empty re-read keeps the last good token and warns without printing it', async () => {
    const path = await tokenFile('test-token-last-good');
    const clock = { now: 0 };
    const lines: string[] = [];
    const logger = createLogger({ format: 'json', write: (l) => lines.push(l) });
    const source = await FileTokenSource.open(path, { now: () => clock.now, logger });

    await writeFile(path, '');
    clock.now += TOKEN_REREAD_PERIOD_MS;
    assert.equal(await source.token(), 'test-token-last-good');

    await unlink(path);
    clock.now += TOKEN_REREAD_PERIOD_MS;
    assert.equal(await source.token(), 'test-token-last-good');

    assert.equal(lines.length, 2);
    for (const line of lines) {
      const entry = JSON.parse(line) as { level: string; msg: string; path: string };
      assert.equal(entry.level, 'warn');
      assert.match(entry.msg, /keeping the last good one/);
      assert.equal(entry.path, path);
      assert.ok(!line.includes('test-token-last-good'), line);
    }
  });
});

describe('StaticTokenSource', () => {
  test('never changes, so refresh() is false', async () => {
    const source = new StaticTokenSource('test-token');
    assert.equal(await source.token(), 'test-token');
    assert.equal(await source.refresh(), false);
  });
});

describe('through the client', () => {
  test('401 with the real Status body: the file is re-read and the same request succeeds with the new token', async () => {
    const path = await tokenFile('test-token');
    const source = await FileTokenSource.open(path, { now: () => 0 });
    await writeFile(path, 'test-token-rotated\n'); // rotated by the kubelet; the cache has not noticed
    await withFixture('token-rotated-401', async (client) => {
      const build = await client.getBuild(ref);
      assert.equal(build.metadata.name, 'b1');
    }, { config: { tokenSource: source } });
  });

  test('401 and the file did not change: the 401 is final, no second request', async () => {
    const source = await FileTokenSource.open(await tokenFile('test-token'), { now: () => 0 });
    await withFixture('token-401-unchanged', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.statusCode, 401);
      assert.equal(err.reason, 'Unauthorized');
      assert.ok(!err.message.includes('test-token'), err.message);
    }, { config: { tokenSource: source } });
  });

  test('401 with a fixed token: no re-read possible, no second request', async () => {
    await withFixture('token-401-unchanged', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError && err.statusCode === 401, String(err));
    });
  });

  test('a second 401 with the new token is final: one re-read per call', async () => {
    const path = await tokenFile('test-token');
    const source = await FileTokenSource.open(path, { now: () => 0 });
    await writeFile(path, 'test-token-rotated');
    await withFixture('token-401-twice', async (client) => {
      const err = await rejection(() => client.getBuild(ref));
      assert.ok(err instanceof ApiError && err.statusCode === 401, String(err));
    }, { config: { tokenSource: source } });
  });

  test('the file is re-read before sending once a minute has passed (fake clock)', async () => {
    const path = await tokenFile('test-token');
    const clock = { now: 0 };
    const source = await FileTokenSource.open(path, { now: () => clock.now });
    await withFixture('token-periodic-reread', async (client) => {
      await client.getBuild(ref);
      await writeFile(path, 'test-token-rotated');
      clock.now = 30_000;
      await client.getBuild(ref);
      clock.now = 60_000;
      await client.getBuild(ref);
    }, { config: { tokenSource: source } });
  });
});
