/**
 * Per-write latency floor: the same status writes as writes-spot-runtime.ts (a merge patch of one
 * condition with the resourceVersion precondition, the answer parsed for the next version) with
 * raw undici on a keep-alive Agent.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { buildPath, buildReference, MERGE_PATCH, requestHeaders, timestamp } from './common.js';
import { mark, report } from './report.js';

const warmup = Number(process.env.BENCH_WARMUP ?? 50);
const writes = Number(process.env.BENCH_WRITES ?? 1000);

const dir = process.env.SPOT_SERVICEACCOUNT_DIR!;
const token = readFileSync(join(dir, 'token'), 'utf8').trim();
const origin = `https://${process.env.KUBERNETES_SERVICE_HOST}:${process.env.KUBERNETES_SERVICE_PORT}`;
const dispatcher = new Agent({ connect: { ca: readFileSync(join(dir, 'ca.crt'), 'utf8') } });
const ref = buildReference();

async function send(method: 'GET' | 'PATCH', path: string, body?: unknown): Promise<{ metadata: { resourceVersion: string } }> {
  const res = await request(origin + path, {
    dispatcher,
    method,
    headers: requestHeaders(token, body === undefined ? undefined : MERGE_PATCH),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as { metadata: { resourceVersion: string } };
}

const since = timestamp();
let build = await send('GET', buildPath(ref));
const samples: number[] = [];
let cpuBefore = process.cpuUsage();
for (let i = 0; i < warmup + writes; i++) {
  const started = performance.now();
  const condition = { type: 'Building Image', status: 'In Progress', message: `layer ${i + 1} of ${warmup + writes}`, lastTransitionTime: since };
  build = await send('PATCH', buildPath(ref, true), { status: { conditions: [condition] }, metadata: { resourceVersion: build.metadata.resourceVersion } });
  if (i === warmup - 1) cpuBefore = process.cpuUsage();
  if (i >= warmup) samples.push(performance.now() - started);
}
const cpu = process.cpuUsage(cpuBefore);
await dispatcher.close();
mark('done');
report('samples', samples);
// This process's CPU time (user + system) per timed write: the client's own cost, whatever the server's.
report('cpuMicrosPerWrite', (cpu.user + cpu.system) / writes);
