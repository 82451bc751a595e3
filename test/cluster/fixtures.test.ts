/**
 * The committed fixtures against the real server: every scenario of record.ts is recorded again
 * and must give exactly the committed exchanges (after normalizing): the same requests from the
 * library, and from the server the same status codes, the headers that matter and the same
 * bodies (Status reason, code, message and details; object shapes and values). A fixture whose
 * reply the real server no longer gives fails here; `npm run fixtures:record` rewrites it.
 * Every exchange marked recorded must come from a scenario, and every other one must say it is
 * hand-written and why a real server cannot give it.
 */
import { strict as assert } from 'node:assert';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { clusterTest } from './support.js';
import { FIXTURES_DIR, loadFixture, type Exchange } from '../support/fixtures.js';
import { startCluster, type Cluster } from './harness.js';
import { recordFixtures, SCENARIOS, SOURCE, type Recorded } from './record.js';

let cluster: Cluster;
let recorded: Recorded[];

before(async () => {
  cluster = await startCluster({ deploy: ['deploy/crd.yaml'] });
  recorded = await recordFixtures(cluster);
});
after(async () => {
  await cluster?.stop();
});

/** Where `got` differs from `want`, one line per difference, with a JSON-pointer-ish path. */
function exactDifferences(want: unknown, got: unknown, at = ''): string[] {
  const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 200));
  if (typeof want !== typeof got || Array.isArray(want) !== Array.isArray(got) || (want === null) !== (got === null)) {
    return [`${at || '/'}: committed ${show(want)}, the server now gives ${show(got)}`];
  }
  if (want && typeof want === 'object') {
    const a = want as Record<string, unknown>;
    const b = got as Record<string, unknown>;
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) => exactDifferences(a[k], b[k], `${at}/${k}`));
  }
  return Object.is(want, got) ? [] : [`${at || '/'}: committed ${show(want)}, the server now gives ${show(got)}`];
}

/** What the comparison covers: the exchange without its comment. */
const essence = (e: Exchange) => ({ request: e.request, reply: e.reply, error: e.error, source: e.source });

clusterTest(() => cluster, 'every recorded fixture still matches what the real server answers', async () => {
  const problems: string[] = [];
  for (const r of recorded) {
    const committed = loadFixture(r.name);
    const got = r.exchanges.map(essence);
    const want = committed.map(essence);
    if (got.length !== want.length) {
      problems.push(`${r.name}: ${want.length} exchanges committed, ${got.length} recorded now (${r.exchanges.map((e) => `${e.request.method} ${e.reply?.status}`).join(', ')})`);
      continue;
    }
    for (let i = 0; i < got.length; i++) {
      // Both sides are normalized the same way (placeholders included): they must be equal, value for value.
      const diff = exactDifferences(want[i], got[i]);
      if (diff.length > 0) problems.push(`${r.name} #${i + 1} (${got[i]!.request.method} ${got[i]!.reply?.status}):\n    ${diff.join('\n    ')}`);
    }
  }
  assert.deepEqual(problems, [], `committed fixtures differ from the real server (run \`npm run fixtures:record\` and review the diff):\n${problems.join('\n')}`);
});

test('each fixture is either recorded by a scenario or marked hand-written with its reason, exchange by exchange', () => {
  const names = new Set([...SCENARIOS.map((s) => s.name), 'get-build-crd-missing']);
  const problems: string[] = [];
  for (const file of readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.json'))) {
    const name = file.replace(/\.json$/, '');
    loadFixture(name).forEach((e, i) => {
      if (names.has(name) && e.source !== SOURCE) problems.push(`${name} #${i + 1}: recorded by a scenario, but its source is ${JSON.stringify(e.source)}`);
      if (!names.has(name) && !/^hand-written: ./.test(e.source ?? '')) {
        problems.push(`${name} #${i + 1}: no scenario records it, so it must say "source": "hand-written: <why a real server cannot give it>" (it says ${JSON.stringify(e.source)})`);
      }
    });
  }
  assert.deepEqual(problems, []);
  assert.equal(recorded.length, names.size, 'every scenario was recorded');
});
