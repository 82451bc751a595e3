/**
 * lib/undici.ts loads undici's Agent and request API from their own modules (not the index) to
 * keep start-up small. Those paths are not a promise of undici's: this proves they still are the
 * very objects undici's public index exports, so an undici upgrade that moves them fails here.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as undici from 'undici';
import { Agent, request } from '../lib/undici.js';

test('the Agent is the one undici exports', () => {
  assert.equal(Agent, undici.Agent, 'lib/undici.ts Agent is undici.Agent');
});

test('request is the method undici puts on every dispatcher', () => {
  const agent = new undici.MockAgent();
  assert.equal(typeof request, 'function', 'request is a function');
  assert.equal((agent as unknown as { request: unknown }).request, (undici.Dispatcher.prototype as unknown as { request: unknown }).request);
  return agent.close();
});

test('request sends through the dispatcher it is given', async () => {
  const agent = new undici.MockAgent();
  agent.disableNetConnect();
  agent.get('https://api.test').intercept({ path: '/x', method: 'GET' }).reply(200, '{"ok":true}', { headers: { 'content-type': 'application/json' } });
  const res = await request(agent, { origin: 'https://api.test', path: '/x', method: 'GET' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(await res.body.json(), { ok: true });
  await agent.close();
});

test('undici is pinned to an exact version (the module paths are not a public API)', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  assert.match(pkg.dependencies.undici ?? '', /^\d+\.\d+\.\d+$/, 'dependencies.undici is an exact version');
});
