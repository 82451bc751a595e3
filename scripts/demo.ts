/**
 * `npm start` (and `npm run demo:fail`): the whole runtime on one machine, no cluster. Starts the
 * local API server, creates a sample Build, runs `spot-run` in true in-cluster mode with three
 * steps, then prints the stored Build's status and its events.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startApiServer } from './apiserver/server.js';
import type { Build, CoreEvent } from '../lib/types.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { fail: { type: 'boolean' } } });
const fail = values.fail ?? false;

const steps: Array<[type: string, command: string]> = [
  ['Fetching Source', 'echo "cloning https://git.example.com/team/app.git"; sleep 0.3; echo "checked out 4f2a9c1"'],
  fail
    ? ['Building Image', 'echo "step 1/3: FROM node:20-slim"; sleep 0.3; echo "npm ERR! missing script: build" >&2; exit 1']
    : ['Building Image', 'echo "step 1/3: FROM node:20-slim"; sleep 0.3; echo "step 2/3: RUN npm ci"; sleep 0.3; echo "step 3/3: COPY . ."'],
  [
    'Pushing Image',
    'echo "pushing registry.example.com/team/app:1.4.2"; sleep 0.3; echo "registry.example.com/team/app:1.4.2@sha256:9b2f0c4e" > "$SPOT_RESULTS_DIR/image-url"',
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

async function main(): Promise<number> {
  const started = Date.now();
  const server = await startApiServer();
  try {
    server.createBuild({
      namespace: 'default',
      name: 'sample-build',
      spec: { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } },
    });
    console.log(`local API server on ${server.url}; Build default/sample-build created\n`);

    const args = ['--import', 'tsx', 'scripts/spot-run.ts', ...steps.flatMap(([t, c]) => ['--step', `${t}=${c}`])];
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, ...server.env(), BUILD_REFERENCE: 'default/sample-build', POD_NAME: 'sample-build-pod' },
    });
    const code: number = await new Promise((resolve) => child.on('close', (c, s) => resolve(c ?? (s === 'SIGINT' ? 130 : 143))));

    const build = server.getBuild('default', 'sample-build') as Build;
    const status = build.status ?? {};
    console.log(`\nspot-run exited with ${code}${code === 0 ? ' (all steps succeeded)' : code === 1 ? ' (a step failed)' : ''}`);
    console.log(`\nBuild default/sample-build  phase: ${status.phase || '(none)'}  image: ${status.image?.url ?? '(none)'}`);
    console.log(
      table([
        ['CONDITION', 'STATUS', 'REASON', 'LAST TRANSITION', 'MESSAGE'],
        ...(status.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? '', c.lastTransitionTime ?? '', oneLine(c.message)]),
      ]),
    );
    const events = server.events('default') as CoreEvent[];
    console.log(`\nEvents (${events.length})`);
    console.log(
      table([
        ['TYPE', 'REASON', 'COUNT', 'FROM', 'MESSAGE'],
        ...events.map((e) => [e.type, e.reason, String(e.count), `${e.reportingComponent}/${e.reportingInstance}`, oneLine(e.message)]),
      ]),
    );
    const writes = server.requests.filter((r) => r.path.endsWith('/status')).length;
    console.log(`\n${server.requests.length} requests to the API server (${writes} status writes) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const expected = fail ? 1 : 0;
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
