/**
 * Signals are answered at once (issue 12), in-process: a stop cuts a conflict re-read short. The
 * real signals to the `spot-run` child (during the first GET's retries, a Retry-After wait, a step
 * while the report hangs, a second signal) are scenarios of `npm run reliability`, defined once in
 * reliability-process.scenarios.ts.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { createClient, type SpotClient } from '../lib/client.js';
import { buildRef } from '../lib/names.js';
import { runTasks } from '../lib/runner.js';
import { buildPath, statusPath, until, useSpotRunE2e } from './support/spot-run-e2e.js';

const suite = useSpotRunE2e('spot-signals-');

describe('runTasks: a stop cuts a conflict re-read short', () => {
  let client: SpotClient;
  before(async () => {
    // A per-request timeout of 20 s: without the stop, the hung re-read would hold the run that long.
    client = await createClient({ env: { ...suite.server.env() }, timeoutMs: 20_000, retry: { baseDelayMs: 1, maxDelayMs: 5 } });
  });
  after(async () => {
    await client?.close();
    await suite.server.suspend();
    await suite.server.resume();
  });

  test('the first write conflicts, the re-read hangs, the stop comes: resolved at once, interrupted, nothing reported', async () => {
    const ns = 'sig-conflict-reread';
    suite.server.createBuild({ namespace: ns, name: 'b1' });
    const conflict = suite.server.inject({ method: 'PATCH', path: statusPath(ns), concurrentWrite: (status) => void (status.pod = { name: 'p', namespace: 'spot-system' }) });
    const hang = suite.server.inject({ method: 'GET', path: buildPath(ns), when: ({ n }) => n === 2, hang: true });
    const controller = new AbortController();
    let ran = false;
    const run = runTasks(client, buildRef(ns, 'b1'), [{ type: 'A', run: async () => void (ran = true) }], { signal: controller.signal, graceMs: 5_000 });
    await until(() => hang.hits === 1, 'the hung re-read');
    const stoppedAt = Date.now();
    controller.abort('SIGTERM');
    const outcome = await run;
    const took = Date.now() - stoppedAt;
    assert.ok(took < 500, `resolved ${took} ms after the stop`);
    assert.equal(conflict.hits, 1);
    assert.equal(ran, false);
    assert.ok(outcome.outcome === 'interrupted' && outcome.type === undefined && !outcome.reported, JSON.stringify({ ...outcome, build: undefined }));
    assert.equal(outcome.exitCode, 143);
  });
});
