/**
 * Per-write latency on a warm keep-alive connection: each loop is one child process that writes a
 * Build's status BENCH_WARMUP + BENCH_WRITES times and times each measured write alone. Loops are
 * interleaved over rounds like the jobs; a round's p50 and p99 come from its own samples.
 */
import type { ApiServer } from '../scripts/apiserver/server.js';
import { runChild } from './child.js';
import { percentile } from './stats.js';
import { JOBS_DIR } from './workspace.js';

export type LoopId = 'update' | 'patch' | 'undici';

export interface WriteLoop {
  id: LoopId;
  label: string;
  args: string[];
  env: Record<string, string>;
}

export const WRITE_LOOPS: readonly WriteLoop[] = [
  { id: 'update', label: 'spot-runtime updateBuildStatus', args: [`${JOBS_DIR}/writes-spot-runtime.js`], env: { BENCH_CALL: 'update' } },
  { id: 'patch', label: 'spot-runtime patchBuildStatus', args: [`${JOBS_DIR}/writes-spot-runtime.js`], env: { BENCH_CALL: 'patch' } },
  { id: 'undici', label: 'raw undici', args: [`${JOBS_DIR}/writes-undici.js`], env: {} },
];

export interface LoopSample {
  p50: number;
  p99: number;
  /** The loop process's own CPU time (user + system) per timed write, µs. */
  cpuMicros: number;
}

export const WARMUP_WRITES = 50;

export async function runWriteRounds(
  workspace: string,
  server: ApiServer,
  rounds: number,
  writes: number,
  onRound: (round: number) => void,
): Promise<Map<LoopId, LoopSample[]>> {
  const samples = new Map<LoopId, LoopSample[]>(WRITE_LOOPS.map((l) => [l.id, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const loop of WRITE_LOOPS) {
      const name = `writes-${loop.id}-${round}`;
      server.createBuild({ name });
      server.clearLog();
      const { report } = await runChild(workspace, loop.args, {
        ...server.env(),
        ...loop.env,
        BUILD_REFERENCE: `${server.namespace}/${name}`,
        BENCH_WARMUP: String(WARMUP_WRITES),
        BENCH_WRITES: String(writes),
      });
      const times = report.samples ?? [];
      const failed = server.requests.filter((r) => r.status !== 200);
      if (times.length !== writes || failed.length > 0) {
        throw new Error(`${loop.label}: ${times.length} timed writes of ${writes}, ${failed.length} failed requests`);
      }
      samples.get(loop.id)!.push({ p50: percentile(times, 50), p99: percentile(times, 99), cpuMicros: report.cpuMicrosPerWrite ?? NaN });
    }
    onRound(round);
  }
  return samples;
}
