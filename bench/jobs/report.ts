/**
 * How a job hands its figures to scripts/bench.ts: it prints nothing but one JSON line, at exit,
 * `{ marks, maxRssKiB, ...extra }`. `marks` are `performance.now()` readings, i.e. milliseconds
 * since this process started. Importing this module installs the exit hook.
 *
 * A job must end by itself (never `process.exit()`): Node then waits for V8's background work,
 * such as compiling undici's llhttp WebAssembly, before `exit`, so maxRSS read there is the peak.
 */
import { writeSync } from 'node:fs';

const marks: Record<string, number> = {};
const extra: Record<string, unknown> = {};

/** Records the first time `name` happens, in ms since process start. */
export function mark(name: string): void {
  marks[name] ??= performance.now();
}

/** Adds a field to the exit report (e.g. latency samples). */
export function report(key: string, value: unknown): void {
  extra[key] = value;
}

process.on('exit', () => {
  marks.exit = performance.now();
  // maxRSS is read as late as possible; writeSync so the line is out before the process is gone.
  writeSync(1, `${JSON.stringify({ marks, maxRssKiB: process.resourceUsage().maxRSS, ...extra })}\n`);
});
