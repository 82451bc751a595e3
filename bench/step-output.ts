/**
 * Step output through spot-run (issue 14, targets 1 and 2): the same step's output once drained
 * directly and once through `spot-run` (the single-file bundle, text format, prefixing on), with
 * the reader a separate process on the other end of a pipe, as a container runtime is.
 *
 * The step (bench/output-tools.pl write) stamps its start time in a file (`date +%s%N`); a run's
 * output time is from that stamp to the reader's end, so spot-run's own start-up and its API
 * requests are not counted against its output path. spot-run runs with bench/rusage.cjs preloaded,
 * which records its own CPU time and peak RSS (not the step's). The reader counts the bytes it got,
 * and every run is checked against the exact count it must see (each line with its `[Out] `
 * prefix), so a run cannot look fast by dropping output.
 *
 * Throughput cases: 300 MB of 80-byte lines on stdout, the same on stderr, and 300 MB with no
 * newline at all (spot-run cuts such a line every 64 KiB). Memory cases: 100 MB of lines on stdout
 * and on stderr, each with a fast reader and one that stalls for a second, against a trivial step.
 * Each round runs every case once, direct and spot-run side by side (interleaved).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiServer } from '../scripts/apiserver/server.js';
import { ROOT } from './paths.js';

const TOOLS = join(ROOT, 'bench', 'output-tools.pl');
const RUSAGE = join(ROOT, 'bench', 'rusage.cjs');
/** What spot-run puts before each line of a step of this type (scripts/spot-run's text format). */
const STEP_TYPE = 'Out';
const PREFIX_BYTES = Buffer.byteLength(`[${STEP_TYPE}] `);
const LINE_BYTES = 80;
/** spot-run flushes a line with no newline in pieces of this size, each prefixed and ended with one. */
const MAX_LINE = 64 * 1024;
const TIMEOUT_MS = 120_000;

export type Shape = 'lines' | 'long';
export type Stream = 'stdout' | 'stderr';

export interface OutputCase {
  id: string;
  label: string;
  shape: Shape;
  stream: Stream;
  bytes: number;
  /** The reader stops for a second after its first MiB. */
  stall: boolean;
}

export const THROUGHPUT_CASES: readonly OutputCase[] = [
  { id: 'lines', label: '300 MB of 80-byte lines, stdout', shape: 'lines', stream: 'stdout', bytes: 300e6, stall: false },
  { id: 'long', label: '300 MB without a newline, stdout', shape: 'long', stream: 'stdout', bytes: 300e6, stall: false },
  { id: 'stderr', label: '300 MB of 80-byte lines, stderr', shape: 'lines', stream: 'stderr', bytes: 300e6, stall: false },
];

export const MEMORY_CASES: readonly OutputCase[] = [
  { id: 'mem-out', label: '100 MB of lines, stdout, fast reader', shape: 'lines', stream: 'stdout', bytes: 100e6, stall: false },
  { id: 'mem-out-stall', label: '100 MB of lines, stdout, reader stalls 1 s', shape: 'lines', stream: 'stdout', bytes: 100e6, stall: true },
  { id: 'mem-err', label: '100 MB of lines, stderr, fast reader', shape: 'lines', stream: 'stderr', bytes: 100e6, stall: false },
  { id: 'mem-err-stall', label: '100 MB of lines, stderr, reader stalls 1 s', shape: 'lines', stream: 'stderr', bytes: 100e6, stall: true },
];

export interface OutputSample {
  /** Step start (its own stamp) → the reader has read everything, s. */
  seconds: number;
  /** spot-run's own CPU time, user + system, s (undefined for a direct run). */
  cpuSeconds?: number;
  /** spot-run's peak RSS, MiB (undefined for a direct run). */
  peakRssMiB?: number;
}

export interface TrivialSample {
  cpuSeconds: number;
  peakRssMiB: number;
}

export interface OutputResults {
  direct: Map<string, OutputSample[]>;
  /** The floor of any relay written in Node: the step's output through `process.stdin.pipe(process.stdout)`, no prefix. */
  nodePipe: Map<string, OutputSample[]>;
  spotRun: Map<string, OutputSample[]>;
  trivial: TrivialSample[];
}

/** The bytes the reader must count: the step's own, plus a prefix and newline per piece spot-run prints. */
export function expectedBytes(c: OutputCase, throughSpotRun: boolean): number {
  if (!throughSpotRun) return c.bytes;
  if (c.shape === 'lines') return c.bytes + (c.bytes / LINE_BYTES) * PREFIX_BYTES;
  const pieces = Math.ceil(c.bytes / MAX_LINE);
  return c.bytes + pieces * (PREFIX_BYTES + 1);
}

/**
 * Whether the reader got all the output and nothing else. Through spot-run, its own log lines share
 * stderr with the step's (a few hundred bytes); a line with no newline is printed in pieces of at
 * most MAX_LINE bytes, each with a prefix and a newline (how they are cut is spot-run's business:
 * the check is that the bytes added are whole prefix-and-newline pairs, a reasonable number of them).
 */
function countIsRight(c: OutputCase, throughSpotRun: boolean, got: number): boolean {
  const slack = throughSpotRun && c.stream === 'stderr' ? 4096 : 0;
  if (throughSpotRun && c.shape === 'long') {
    const added = got - c.bytes;
    return added >= (c.bytes / 1e6) * (PREFIX_BYTES + 1) && (slack > 0 || added % (PREFIX_BYTES + 1) === 0) && added <= c.bytes / 1000 + slack;
  }
  const want = expectedBytes(c, throughSpotRun);
  return got >= want && got <= want + slack;
}

function stepCommand(c: OutputCase, stampFile: string): string {
  return `date +%s%N > '${stampFile}' && exec perl '${TOOLS}' write ${c.shape} ${c.stream} ${c.bytes}`;
}

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exited(child: ReturnType<typeof spawn>): Promise<Finished> {
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
}

/** Collects a child's pipe as text (the reader's count, spot-run's log lines). */
function collect(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    // Only the end matters, for error messages; a bounded string whatever is written.
    text = (text + chunk).slice(-4000);
  });
  return () => text;
}

/**
 * One run: the reader first, then the writer (the step, or spot-run running it) with the reader's
 * stdin as its stdout or stderr, and this process's copy of that pipe closed so the reader sees the
 * end when the writer is done.
 */
async function runOnce(
  c: OutputCase,
  how: { spotRun: false; nodePipe?: boolean } | { spotRun: true; bundle: string; env: Record<string, string> },
  scratch: string,
  n: number,
): Promise<OutputSample> {
  const stampFile = join(scratch, `stamp-${n}`);
  const usageFile = join(scratch, `usage-${n}.json`);
  const reader = spawn('perl', [TOOLS, 'drain', c.stall ? '1' : '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const counted = collect(reader.stdout);
  const readerDone = exited(reader).then((r) => ({ ...r, at: Date.now() }));
  const sink = reader.stdin!;
  const stdio: ['ignore', 'pipe' | typeof sink, 'pipe' | typeof sink] = ['ignore', 'pipe', 'pipe'];
  stdio[c.stream === 'stdout' ? 1 : 2] = sink;
  const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
  const command = stepCommand(c, stampFile);
  const writer = how.spotRun
    ? spawn(process.execPath, ['--require', RUSAGE, how.bundle, '--step', `${STEP_TYPE}=${command}`], {
        stdio,
        env: { ...baseEnv, ...how.env, BENCH_RUSAGE_FILE: usageFile },
      })
    : how.nodePipe
      ? spawn('sh', ['-c', `${command.replace(/ && exec /, ' && ')} ${c.stream === 'stderr' ? '2>&1 >/dev/null' : ''} | '${process.execPath}' -e 'process.stdin.pipe(process.${c.stream})'`], { stdio, env: baseEnv })
      : spawn('sh', ['-c', command], { stdio, env: baseEnv });
  sink.destroy();
  const writerText = [collect(writer.stdout), collect(writer.stderr)];
  const timer = setTimeout(() => {
    writer.kill('SIGKILL');
    reader.kill('SIGKILL');
  }, TIMEOUT_MS);
  try {
    const [w, r] = await Promise.all([exited(writer), readerDone]);
    const what = `${how.spotRun ? 'spot-run' : how.nodePipe ? 'node pipe' : 'direct'} ${c.label}`;
    if (w.code !== 0 || r.code !== 0) {
      throw new Error(`${what}: writer exited ${w.code ?? w.signal}, reader ${r.code ?? r.signal}\n${writerText.map((t) => t()).join('\n')}`);
    }
    const got = Number(counted().trim());
    if (!countIsRight(c, how.spotRun, got)) throw new Error(`${what}: the reader got ${got} bytes, ${expectedBytes(c, how.spotRun)} expected`);
    const startedNs = BigInt(readFileSync(stampFile, 'utf8').trim());
    const seconds = (r.at - Number(startedNs / 1_000_000n)) / 1000;
    if (!how.spotRun) return { seconds };
    const usage = JSON.parse(readFileSync(usageFile, 'utf8')) as { userMicros: number; systemMicros: number; maxRssKiB: number };
    return { seconds, cpuSeconds: (usage.userMicros + usage.systemMicros) / 1e6, peakRssMiB: usage.maxRssKiB / 1024 };
  } finally {
    clearTimeout(timer);
  }
}

/** spot-run with a step that prints nothing: the baseline for CPU and memory. */
async function runTrivial(bundle: string, env: Record<string, string>, scratch: string, n: number): Promise<TrivialSample> {
  const usageFile = join(scratch, `usage-${n}.json`);
  const child = spawn(process.execPath, ['--require', RUSAGE, bundle, '--step', `${STEP_TYPE}=true`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env, BENCH_RUSAGE_FILE: usageFile },
  });
  const stderr = collect(child.stderr);
  collect(child.stdout);
  const r = await exited(child);
  if (r.code !== 0) throw new Error(`spot-run with a trivial step exited ${r.code ?? r.signal}\n${stderr()}`);
  const usage = JSON.parse(readFileSync(usageFile, 'utf8')) as { userMicros: number; systemMicros: number; maxRssKiB: number };
  return { cpuSeconds: (usage.userMicros + usage.systemMicros) / 1e6, peakRssMiB: usage.maxRssKiB / 1024 };
}

/**
 * `rounds` rounds (no warm-up: each run is seconds long, and the first pays nothing the others do
 * not). `bundle` is the spot-run bundle to measure; each spot-run run gets a fresh Build.
 */
export async function runOutputRounds(
  server: ApiServer,
  bundle: string,
  rounds: number,
  onRound: (round: number) => void,
  cases: { throughput: boolean; memory: boolean } = { throughput: true, memory: true },
): Promise<OutputResults> {
  const scratch = mkdtempSync(join(tmpdir(), 'spot-bench-output-'));
  const results: OutputResults = { direct: new Map(), nodePipe: new Map(), spotRun: new Map(), trivial: [] };
  const all = [...(cases.throughput ? THROUGHPUT_CASES : []), ...(cases.memory ? MEMORY_CASES : [])];
  for (const c of all) {
    results.direct.set(c.id, []);
    results.nodePipe.set(c.id, []);
    results.spotRun.set(c.id, []);
  }
  let n = 0;
  const spotRunEnv = () => {
    const name = `output-${++n}`;
    server.createBuild({ name });
    return { ...server.env(), BUILD_REFERENCE: `${server.namespace}/${name}` } as Record<string, string>;
  };
  try {
    for (let round = 1; round <= rounds; round++) {
      if (cases.memory) results.trivial.push(await runTrivial(bundle, spotRunEnv(), scratch, ++n));
      for (const c of all) {
        // Memory cases are about spot-run alone; their direct run would measure only perl.
        if (THROUGHPUT_CASES.includes(c)) {
          results.direct.get(c.id)!.push(await runOnce(c, { spotRun: false }, scratch, ++n));
          results.nodePipe.get(c.id)!.push(await runOnce(c, { spotRun: false, nodePipe: true }, scratch, ++n));
        }
        results.spotRun.get(c.id)!.push(await runOnce(c, { spotRun: true, bundle, env: spotRunEnv() }, scratch, ++n));
      }
      onRound(round);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return results;
}
