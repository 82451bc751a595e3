/**
 * `npm start` (and `npm run demo:fail`): the whole runtime on one machine, no cluster. Starts the
 * local API server with a Build CRD from deploy/ (`--crd conditions`, the default, or `--crd spot`
 * for the published Spot shape), seeds the sample Build of that shape, runs `spot-run` in true
 * in-cluster mode with three steps, then prints the stored Build's printer columns, its
 * conditions and its events. Ctrl-C (or SIGTERM) stops spot-run and the server and removes the
 * server's temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { sampleBuild } from './apiserver/samples.js';
import { evaluatePath, parseJsonPath } from './apiserver/schema.js';
import { loadCrd, startApiServer, type ApiServer } from './apiserver/server.js';
import type { Build, CoreEvent } from '../lib/types.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** What the demo's push step reports as the image's digest (the operator copies url and digest). */
const DIGEST = 'sha256:11c8d96f1ece6ebe0983ec43843f9174dd9bc3b94fe33ded894f5d9dbb6b0f78';

const steps = (fail: boolean): Array<[type: string, command: string]> => [
  ['Fetching Source', 'echo "cloning https://git.example.com/team/app.git"; sleep 0.3; echo "checked out 4f2a9c1"'],
  fail
    ? ['Building Image', 'echo "step 1/3: FROM node:20-slim"; sleep 0.3; echo "npm ERR! missing script: build" >&2; exit 1']
    : ['Building Image', 'echo "step 1/3: FROM node:20-slim"; sleep 0.3; echo "step 2/3: RUN npm ci"; sleep 0.3; echo "step 3/3: COPY . ."'],
  [
    'Pushing Image',
    `echo "pushing registry.example.com/team/app:1.4.2"; sleep 0.3; echo "registry.example.com/team/app:1.4.2" > "$SPOT_RESULTS_DIR/image-url"; echo "${DIGEST}" > "$SPOT_RESULTS_DIR/image-digest"`,
  ],
];

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

function oneLine(text: string | undefined, max = 70): string {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** The CRD's printer columns (what `kubectl get builds` shows), Age left out, as `NAME: value`. */
function printerColumns(server: ApiServer, build: Build): string {
  return server.crd.columns
    .filter((c) => c.type !== 'date')
    .map((c) => {
      const value = evaluatePath(build, parseJsonPath(c.jsonPath, c.name));
      return `${c.name.toUpperCase()}: ${value === undefined || value === null || value === '' ? '(none)' : String(value)}`;
    })
    .join('  ');
}

function report(server: ApiServer, reference: { namespace: string; name: string }, code: number): void {
  const build = server.getBuild(reference.namespace, reference.name) as Build;
  const conditions = build.status?.conditions ?? [];
  console.log(`\nspot-run exited with ${code}${code === 0 ? ' (all steps succeeded)' : code === 1 ? ' (a step failed)' : ''}`);
  console.log(`\nBuild ${reference.namespace}/${reference.name}  ${printerColumns(server, build)}`);
  const image = build.status?.image;
  if (image) console.log(`status.image: url ${image.url ?? '(none)'}  digest ${image.digest ?? '(none)'}`);
  if (conditions.length === 0) {
    console.log('(no conditions stored: this CRD does not keep them, progress is in the events)');
  } else {
    console.log(
      table([
        ['CONDITION', 'STATUS', 'REASON', 'LAST TRANSITION', 'MESSAGE'],
        ...conditions.map((c) => [c.type, c.status, c.reason ?? '', c.lastTransitionTime ?? '', oneLine(c.message)]),
      ]),
    );
  }
  const events = server.events(reference.namespace) as CoreEvent[];
  console.log(`\nEvents (${events.length})`);
  console.log(
    table([
      ['TYPE', 'REASON', 'COUNT', 'FROM', 'MESSAGE'],
      ...events.map((e) => [e.type, e.reason, String(e.count), `${e.reportingComponent}/${e.reportingInstance}`, oneLine(e.message)]),
    ]),
  );
}

/** A signal stops spot-run (which reports the interruption), then the demo cleans up. */
function forwardSignals(child: ChildProcess): () => void {
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return () => handlers.forEach(([signal, handler]) => process.off(signal, handler));
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { fail: { type: 'boolean' }, crd: { type: 'string' } } });
  const fail = values.fail ?? false;
  const crd = values.crd ?? 'conditions';
  const started = Date.now();
  const { build, podNamespace } = await sampleBuild(await loadCrd(crd));
  // Until the server is up, a signal just ends the process: nothing is on disk yet.
  const server = await startApiServer({ crd, namespace: podNamespace });
  try {
    server.createBuild(build);
    const reference = { namespace: build.namespace, name: build.name };
    console.log(`local API server on ${server.url} (CRD ${crd}); Build ${reference.namespace}/${reference.name} created\n`);

    const args = ['--import', 'tsx', 'scripts/spot-run.ts', ...steps(fail).flatMap(([t, c]) => ['--step', `${t}=${c}`])];
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, ...server.env(), BUILD_REFERENCE: `${reference.namespace}/${reference.name}`, POD_NAME: `${reference.name}-pod` },
    });
    const stopForwarding = forwardSignals(child);
    const code: number = await new Promise((resolve) => child.on('close', (c, s) => resolve(c ?? (s === 'SIGINT' ? 130 : 143))));
    stopForwarding();

    report(server, reference, code);
    const writes = server.requests.filter((r) => r.path.endsWith('/status')).length;
    console.log(`\n${server.requests.length} requests to the API server (${writes} status writes) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const expected = fail ? 1 : 0;
    if (code === 130 || code === 143) return code;
    if (code !== expected) {
      console.error(`demo: expected spot-run to exit ${expected}, it exited ${code}`);
      return 1;
    }
    return 0;
  } finally {
    await server.stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`demo: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
