/**
 * Runs the real `spot-run` command as a child process, the way a pod would, and collects what it
 * did: exit code or signal, stdout, stderr, wall time, and (optionally) its peak RSS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TerminationSummary } from '../../lib/termination.js';
import { spotRunBundleOptions } from '../../scripts/bundle-options.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SPOT_RUN_TS = fileURLToPath(new URL('../../scripts/spot-run.ts', import.meta.url));

export interface CliResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

export interface CliOptions {
  /** Added to a minimal environment (PATH, HOME); the parent's variables are NOT inherited, so a test sees only what it sets. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Stop the child (TERM, then KILL) after this many ms and fail the run (default 60 s). */
  timeoutMs?: number;
  /** Called once the child is spawned, e.g. to send it a signal later. */
  onSpawn?: (child: ChildProcess) => void;
  /** Called for each stdout/stderr chunk (e.g. to wait for a step to start). */
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
  /** Cap on collected output per stream (the rest is counted, not kept); default 4 MiB. */
  maxOutput?: number;
  /** Run another entry point (e.g. the built `dist/spot-run.mjs`) with plain node instead of tsx. */
  entry?: string;
  /** Node's own arguments that start the command instead of an entry file, e.g. a startup snapshot's `['--snapshot-blob', blob, '--']`. */
  launch?: string[];
}

/** `spot-run ARGS` through tsx (or `node entry ARGS`), resolved when it exits. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const nodeArgs = options.launch ? [...options.launch, ...args] : options.entry ? [options.entry, ...args] : ['--import', 'tsx', SPOT_RUN_TS, ...args];
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
  for (const [k, v] of Object.entries(options.env ?? {})) if (v !== undefined) env[k] = v;
  const max = options.maxOutput ?? 4 * 1024 * 1024;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      if (stdout.length < max) stdout += c.slice(0, max - stdout.length);
      options.onOutput?.(c, 'stdout');
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      if (stderr.length < max) stderr += c.slice(0, max - stderr.length);
      options.onOutput?.(c, 'stderr');
    });
    const timer = setTimeout(() => {
      // TERM first, so spot-run stops its steps (their own process groups, which a KILL of
      // spot-run alone would leave running); KILL if it does not go.
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
      reject(new Error(`spot-run ${args.join(' ')} did not exit within ${options.timeoutMs ?? 60_000} ms\nstderr:\n${stderr.slice(-2000)}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    options.onSpawn?.(child);
  });
}

let bundled: Promise<string> | undefined;

/**
 * scripts/spot-run.ts from the current sources as one ESM file (as `npm run build` makes
 * dist/spot-run.mjs, unminified), built once per test process into a temp dir removed at exit.
 * Children start from it in a fraction of the time tsx needs.
 */
export function bundleSpotRun(): Promise<string> {
  bundled ??= (async () => {
    const { build } = await import('esbuild');
    const dir = mkdtempSync(join(tmpdir(), 'spot-run-bundle-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const outfile = join(dir, 'spot-run.mjs');
    await build(spotRunBundleOptions(ROOT, SPOT_RUN_TS, outfile));
    return outfile;
  })();
  return bundled;
}

/** `args` with `flag value` in front, unless `args` gives `flag` itself (a flag given twice is a usage error). */
export function withDefaultFlag(args: readonly string[], flag: string, value: string): string[] {
  return args.some((a) => a === flag || a.startsWith(`${flag}=`)) ? [...args] : [flag, value, ...args];
}

/** The termination message spot-run wrote to `path`: its text and the summary, or undefined for both when none was written. */
export async function readTermination(path: string): Promise<{ terminationText: string | undefined; termination: TerminationSummary | undefined }> {
  const terminationText = await readFile(path, 'utf8').catch(() => undefined);
  return { terminationText, termination: terminationText === undefined ? undefined : (JSON.parse(terminationText) as TerminationSummary) };
}
