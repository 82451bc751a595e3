/**
 * Floor: spot-runtime's exact requests (1 GET, STEPS.length + 1 merge patches with the
 * resourceVersion precondition, 1 event POST) with raw undici and nothing else: no retries, no
 * validation, no token re-reads.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { buildPath, buildReference, eventBody, MERGE_PATCH, requestHeaders, runnerStatusPatch, STEPS, timestamp, type Condition } from './common.js';
import { mark } from './report.js';

mark('imported'); // every static import above has been loaded and evaluated

type Build = { metadata: { name: string; namespace: string; uid?: string; resourceVersion: string } };

const dir = process.env.SPOT_SERVICEACCOUNT_DIR!;
const token = readFileSync(join(dir, 'token'), 'utf8').trim();
const origin = `https://${process.env.KUBERNETES_SERVICE_HOST}:${process.env.KUBERNETES_SERVICE_PORT}`;
const dispatcher = new Agent({ connect: { ca: readFileSync(join(dir, 'ca.crt'), 'utf8') } });

async function send(method: string, path: string, body?: unknown, contentType?: string): Promise<Build> {
  const res = await request(origin + path, {
    dispatcher,
    method: method as 'GET',
    headers: requestHeaders(token, body === undefined ? undefined : (contentType ?? 'application/json')),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as Build;
}

const ref = buildReference();
let build = await send('GET', buildPath(ref));
const conditions: Condition[] = [];
for (let i = 0; i <= STEPS.length; i++) {
  const status = runnerStatusPatch(i, conditions, timestamp());
  build = await send('PATCH', buildPath(ref, true), { status, metadata: { resourceVersion: build.metadata.resourceVersion } }, MERGE_PATCH);
  mark('firstWrite');
}
await send('POST', `/api/v1/namespaces/${ref.namespace}/events`, eventBody(build));
await dispatcher.close();
mark('done');
