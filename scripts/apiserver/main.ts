/**
 * `npm run apiserver`: the local Kubernetes API stand-in (scripts/apiserver/server.ts) by hand, to
 * point a real spot-run and kubectl at without a cluster. The environment to export goes to stdout
 * (so `npm run -s apiserver > env.sh` captures just that); the banner and one line per request go
 * to stderr. SIGINT, SIGTERM or SIGHUP, or the parent (npm) going away, stop the server and remove
 * its temp dir (token, CA, kubeconfig), then exit 0.
 */
import { parseArgs } from 'node:util';

import { sampleBuild } from './samples.js';
import { CRD_FILES, loadCrd, startApiServer, type ApiServer, type FaultRule, type RequestLogEntry } from './server.js';

const USAGE = `Usage: npm run apiserver -- [options]

Starts a local stand-in for the Kubernetes API (HTTPS with a throwaway CA), seeds the sample
Build of deploy/ and prints the environment spot-run and kubectl need. Ctrl-C stops it and
removes its temp folder (token, CA, kubeconfig).

Options:
  --crd NAME|PATH  the Build CRD to serve: conditions (deploy/crd.yaml, the default), spot
                   (deploy/spot-crd.yaml: status.stage, no conditions, unknown fields pruned),
                   or the path of a CRD manifest
  --port N         port to listen on (default: a random free port)
  --host ADDR      127.0.0.1 (default) or ::1
  --latency MS     delay every request by MS milliseconds
  --fail-rate R    answer a fraction R (0 to 1) of requests with a random 429, 500 or 503,
                   each with Retry-After: 1
  --seed N         seed for --fail-rate, to repeat a run's failures (default: random)
  --help           show this text
`;

const HOSTS = ['127.0.0.1', '::1'] as const;
type Host = (typeof HOSTS)[number];

interface Flags {
  crd: string;
  port: number;
  host: Host;
  latency: number;
  failRate: number;
  seed: number;
}

class UsageError extends Error {}

function integerFlag(name: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value > max) throw new UsageError(`--${name} must be an integer from 0 to ${max}, got ${JSON.stringify(text)}`);
  return value;
}

function rateFlag(text: string | undefined): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value <= 1)) throw new UsageError(`--fail-rate must be a number from 0 to 1, got ${JSON.stringify(text)}`);
  return value;
}

function hostFlag(text: string | undefined): Host {
  if (text === undefined) return '127.0.0.1';
  const host = HOSTS.find((h) => h === text);
  // The certificate only covers the loopback addresses (and localhost).
  if (!host) throw new UsageError(`--host must be 127.0.0.1 or ::1, got ${JSON.stringify(text)}`);
  return host;
}

function parseFlags(args: string[]): Flags | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        crd: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        latency: { type: 'string' },
        'fail-rate': { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  if (values.crd === '') throw new UsageError(`--crd must be ${Object.keys(CRD_FILES).join(', ')} or a path, got ""`);
  return {
    crd: values.crd ?? 'conditions',
    port: integerFlag('port', values.port, 0, 65535),
    host: hostFlag(values.host),
    latency: integerFlag('latency', values.latency, 0, 600_000),
    failRate: rateFlag(values['fail-rate']),
    seed: integerFlag('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 2 ** 32 - 1),
  };
}

/** mulberry32: a small seeded generator, so `--seed` repeats the same failures. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * One draw per request picks the failure, if any. Rules are tried in order and a request stops
 * at the first one that fires, so the first rule draws and the other two read its choice.
 */
function randomFailures(rate: number, seed: number): FaultRule[] {
  const random = seededRandom(seed);
  let chosen: 429 | 500 | 503 | undefined;
  const draw = () => {
    const r = random();
    chosen = r < rate ? ([429, 500, 503] as const)[Math.floor((r / rate) * 3)] : undefined;
    return chosen === 429;
  };
  return [
    { when: draw, times: Infinity, status: 429, form: 'text', retryAfterSeconds: 1 },
    { when: () => chosen === 500, times: Infinity, status: 500, retryAfterSeconds: 1 },
    { when: () => chosen === 503, times: Infinity, status: 503, retryAfterSeconds: 1 },
  ];
}

function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

function logLine(entry: RequestLogEntry): void {
  const query = entry.query ? `?${entry.query}` : '';
  const fault = entry.fault ? ` (${entry.fault})` : '';
  process.stderr.write(`${entry.method} ${entry.path}${query} ${entry.status || '-'}${fault}\n`);
}

/** Starts the server with the sample Build seeded; returns it and the Build's reference. */
async function start(flags: Flags): Promise<{ server: ApiServer; reference: string }> {
  // Read the CRD first: a bad --crd is a usage error, before anything is written to /tmp.
  let sample;
  try {
    sample = await sampleBuild(await loadCrd(flags.crd));
  } catch (error) {
    throw new UsageError(`--crd ${flags.crd}: ${(error as Error).message}`);
  }
  const server = await startApiServer({ host: flags.host, port: flags.port, onRequest: logLine, crd: flags.crd, namespace: sample.podNamespace });
  server.createBuild(sample.build);
  if (flags.latency > 0) server.inject({ latency: flags.latency, times: Infinity });
  if (flags.failRate > 0) for (const rule of randomFailures(flags.failRate, flags.seed)) server.inject(rule);
  return { server, reference: `${sample.build.namespace}/${sample.build.name}` };
}

function announce(server: ApiServer, reference: string, flags: Flags): void {
  const env = { ...server.env(), BUILD_REFERENCE: reference, KUBECONFIG: server.kubeconfigPath };
  for (const [name, value] of Object.entries(env)) process.stdout.write(`export ${name}=${shellQuote(value)}\n`);
  const extras = [
    `CRD ${flags.crd}`,
    flags.latency > 0 && `latency ${flags.latency} ms`,
    flags.failRate > 0 && `fail rate ${flags.failRate} (seed ${flags.seed})`,
  ].filter(Boolean);
  process.stderr.write(`# local API server on ${server.url}, ${extras.join(', ')}; Build ${reference}; Ctrl-C to stop\n`);
}

/**
 * Stops on SIGINT, SIGTERM or SIGHUP, and when the parent goes away (npm killed outright leaves
 * this process to init): in every case the temp dir with the token and CA is removed. A signal
 * that arrives while the server is starting stops it as soon as it has started.
 */
function stopOnSignals(): { started(server: ApiServer): void } {
  let server: ApiServer | undefined;
  let stopping = false;
  const parent = process.ppid;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(orphanCheck);
    process.stderr.write(`# stopping (${why})\n`);
    if (!server) return; // started() finishes the job
    server.stop().then(
      () => (process.exitCode = 0),
      (error: unknown) => {
        process.stderr.write(`apiserver: stop failed: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = 1;
      },
    );
  };
  // `on`, not `once`: tsx's preflight exits the process at once when a signal finds no listener left,
  // which would cut the asynchronous stop (and its removal of the credentials) short.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  // Unreferenced: the server keeps the process alive, not this check.
  const orphanCheck = setInterval(() => process.ppid !== parent && stop('parent process gone'), 500).unref();
  return {
    started(started) {
      server = started;
      if (stopping) {
        stopping = false;
        stop('signal during start');
      }
    },
  };
}

async function main(): Promise<void> {
  let flags: Flags | 'help';
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (error) {
    return usageError(error);
  }
  if (flags === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const lifecycle = stopOnSignals();
  const { server, reference } = await start(flags);
  announce(server, reference, flags);
  lifecycle.started(server);
}

function usageError(error: unknown): void {
  if (!(error instanceof UsageError)) throw error;
  process.stderr.write(`apiserver: ${error.message} (see --help)\n`);
  process.exitCode = 2;
}

main().catch((error: unknown) => {
  if (error instanceof UsageError) return usageError(error);
  process.stderr.write(`apiserver: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
