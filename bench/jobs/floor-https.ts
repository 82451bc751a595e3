/**
 * Floor: spot-runtime's exact requests (1 GET, STEPS.length + 1 merge patches with the
 * resourceVersion precondition, 1 event POST) with `node:https` and a keep-alive agent, nothing
 * else: no retries, no validation, no token re-reads.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { buildPath, buildReference, eventBody, MERGE_PATCH, requestHeaders, runnerStatusPatch, STEPS, timestamp, type Condition } from './common.js';
import { mark } from './report.js';

mark('imported'); // every static import above has been loaded and evaluated

type Build = { metadata: { name: string; namespace: string; uid?: string; resourceVersion: string } };

const dir = process.env.SPOT_SERVICEACCOUNT_DIR!;
const token = readFileSync(join(dir, 'token'), 'utf8').trim();
const agent = new Agent({ keepAlive: true, ca: readFileSync(join(dir, 'ca.crt'), 'utf8') });
const host = process.env.KUBERNETES_SERVICE_HOST!;
const port = Number(process.env.KUBERNETES_SERVICE_PORT);

function send(method: string, path: string, body?: unknown, contentType?: string): Promise<Build> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers = requestHeaders(token, payload === undefined ? undefined : (contentType ?? 'application/json'));
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  return new Promise((resolve, reject) => {
    const req = request({ agent, host, port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode! >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
        else resolve(JSON.parse(text) as Build);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
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
agent.destroy();
mark('done');
