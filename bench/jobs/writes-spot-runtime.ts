/**
 * Per-write latency on a warm keep-alive connection: BENCH_WARMUP + BENCH_WRITES status writes in
 * a loop through spot-runtime, each timed alone. BENCH_CALL picks the call: `update`
 * (updateBuildStatus, what the runner uses: copy, mutate, diff, merge patch with the
 * resourceVersion precondition, answer checked) or `patch` (patchBuildStatus with a ready patch).
 * Every write changes one condition's message, so each one is a real write.
 */
import { createClient, parseBuildReference, setCondition, type Build } from '../../lib/index.js';
import { mark, report } from './report.js';

const warmup = Number(process.env.BENCH_WARMUP ?? 50);
const writes = Number(process.env.BENCH_WRITES ?? 1000);
const call = process.env.BENCH_CALL === 'patch' ? 'patch' : 'update';

const client = await createClient();
const ref = parseBuildReference(process.env.BUILD_REFERENCE ?? '');
const since = new Date();
let build: Build = await client.getBuild(ref);
const samples: number[] = [];
let cpuBefore = process.cpuUsage();
for (let i = 0; i < warmup + writes; i++) {
  const started = performance.now();
  const message = `layer ${i + 1} of ${warmup + writes}`;
  if (call === 'update') {
    build = await client.updateBuildStatus(ref, (draft) => void setCondition(draft.status!, { type: 'Building Image', status: 'In Progress', message }, since), {
      base: build,
    });
  } else {
    const condition = { type: 'Building Image', status: 'In Progress', message, lastTransitionTime: '2026-01-01T00:00:00Z' };
    build = await client.patchBuildStatus(ref, { status: { conditions: [condition] } }, { type: 'merge', resourceVersion: build.metadata.resourceVersion! });
  }
  if (i === warmup - 1) cpuBefore = process.cpuUsage();
  if (i >= warmup) samples.push(performance.now() - started);
}
const cpu = process.cpuUsage(cpuBefore);
await client.close();
mark('done');
report('samples', samples);
// This process's CPU time (user + system) per timed write: the client's own cost, whatever the server's.
report('cpuMicrosPerWrite', (cpu.user + cpu.system) / writes);
