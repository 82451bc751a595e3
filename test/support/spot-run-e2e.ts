/**
 * The real `spot-run` (the bundle an image ships) against the local API server, for the failure
 * semantics tests: each run gets its own namespace and termination-log file, and comes back with
 * what a person could check afterwards (exit code, stderr lines, the termination message, the
 * stored Build and its events, the requests the server saw).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { TerminationSummary } from '../../lib/termination.js';
import type { Build, BuildStatus } from '../../lib/types.js';
import { startApiServer, type ApiServer, type RequestLogEntry, type StoredEvent } from '../../scripts/apiserver/server.js';
import { bundleSpotRun, readTermination, runCli, withDefaultFlag, type CliOptions, type CliResult } from './cli.js';

export interface E2eResult extends CliResult {
  /** The termination message as written, undefined when no file was written. */
  terminationText: string | undefined;
  termination: TerminationSummary | undefined;
  /** stderr lines that are not INFO/DEBUG log lines (text format): what a failure printed. */
  problems: string[];
}

export interface E2eOptions extends CliOptions {
  /** `--step TYPE=COMMAND` flags, in order. */
  steps?: Array<[type: string, command: string]>;
  /** Extra flags, before the steps. */
  args?: string[];
  /** Create the Build first (default true), with this status. */
  create?: boolean;
  status?: BuildStatus;
}

export const buildPath = (ns: string) => `/apis/spot.release.com/v1alpha1/namespaces/${ns}/builds/b1`;
export const statusPath = (ns: string) => `${buildPath(ns)}/status`;

/** Lines of a text-format stderr that are not INFO or DEBUG log lines. */
export function problemLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO|DEBUG) /.test(l));
}

export class SpotRunE2e {
  constructor(
    readonly server: ApiServer,
    readonly bundle: string,
    readonly scratch: string,
  ) {}

  /** Runs spot-run in-cluster on `NS/b1` with `--grace 2` and a termination-log file of its own (unless `args` set them), `args` and `steps`. */
  async run(ns: string, options: E2eOptions = {}): Promise<E2eResult> {
    if (options.create ?? true) {
      this.server.createBuild({
        namespace: ns,
        name: 'b1',
        spec: { image: { name: 'team/app', tag: '1.4.2', registry: { url: 'registry.example.com' } } },
        ...(options.status ? { status: options.status } : {}),
      });
    }
    const terminationLog = join(this.scratch, `${ns}.termination-log`);
    // Defaults unless the test gives its own.
    const given = withDefaultFlag(withDefaultFlag(options.args ?? [], '--termination-log', terminationLog), '--grace', '2');
    const args = [...given, ...(options.steps ?? []).flatMap(([type, command]) => ['--step', `${type}=${command}`])];
    const result = await runCli(args, {
      entry: this.bundle,
      timeoutMs: 30_000,
      ...options,
      env: { ...this.server.env(), BUILD_REFERENCE: `${ns}/b1`, POD_NAME: `${ns}-pod`, ...options.env },
    });
    return { ...result, ...(await readTermination(terminationLog)), problems: problemLines(result.stderr) };
  }

  stored(ns: string): Build | undefined {
    return this.server.getBuild(ns, 'b1');
  }

  conditions(ns: string): Array<[type: string, status: string, reason: string | null]> {
    return (this.stored(ns)?.status?.conditions ?? []).map((c) => [c.type, c.status, c.reason ?? null]);
  }

  events(ns: string): StoredEvent[] {
    return this.server.events(ns);
  }

  /** The requests about namespace `ns`, in order. */
  requests(ns: string): RequestLogEntry[] {
    return this.server.requests.filter((r) => r.path.includes(`/namespaces/${ns}/`));
  }

  /** `METHOD build|status|events STATUS` for each request about `ns`. */
  trace(ns: string): string[] {
    return this.requests(ns).map(
      (r) => `${r.method} ${r.path === buildPath(ns) ? 'build' : r.path === statusPath(ns) ? 'status' : r.path.includes('/events') ? 'events' : r.path} ${r.status}`,
    );
  }
}

/**
 * Registers the test file's before/after hooks: a scratch folder (`prefix`), a local API server and
 * the spot-run bundle. The returned object's fields are there once `ready` has resolved (another
 * top-level `before` hook of the file must await it: node:test does not run them one by one).
 */
export function useSpotRunE2e(prefix: string): { readonly e2e: SpotRunE2e; readonly server: ApiServer; readonly scratch: string; readonly ready: Promise<void> } {
  let e2e: SpotRunE2e | undefined;
  let resolve!: () => void;
  const ready = new Promise<void>((r) => (resolve = r));
  before(async () => {
    const scratch = await mkdtemp(join(tmpdir(), prefix));
    e2e = new SpotRunE2e(await startApiServer(), await bundleSpotRun(), scratch);
    resolve();
  });
  after(async () => {
    await e2e?.server.stop();
    if (e2e) await rm(e2e.scratch, { recursive: true, force: true });
  });
  const started = () => e2e ?? assert.fail('the before hook has not run');
  return {
    get e2e() {
      return started();
    },
    get server() {
      return started().server;
    },
    get scratch() {
      return started().scratch;
    },
    ready,
  };
}

/** Resolves once `marker` has appeared in the child's output. */
export function outputWatch(marker: string): { onOutput: NonNullable<CliOptions['onOutput']>; seen: Promise<void> } {
  let buffer = '';
  let resolve!: () => void;
  const seen = new Promise<void>((r) => (resolve = r));
  return {
    seen,
    onOutput: (text) => {
      buffer += text;
      if (buffer.includes(marker)) resolve();
      if (buffer.length > 65_536) buffer = buffer.slice(-1024);
    },
  };
}

/** Polls until `check` holds (every 10 ms, at most `withinMs`). */
export async function until(check: () => boolean, what: string, withinMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > withinMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
