/**
 * `npm run bench`: spot-runtime against @kubernetes/client-node and two library-free floors, all
 * doing the same job against the local API server (scripts/apiserver/server.ts) over TLS, in
 * in-cluster mode. Prints a markdown table and ends with one verdict line per target (HIT or MISS,
 * with the figures).
 *
 *   --rounds N      interleaved rounds per figure (default 10, after one warm-up round)
 *   --writes N      timed writes per latency loop (default 1000)
 *   --no-footprint  skip `npm pack` and the scratch installs (they need the npm registry or cache)
 *   --output-rounds N  interleaved rounds of the step-output cases (default 5; each round ~20 s)
 *   --only PART     measure one part: `status` (jobs, per-write, footprint) or `output` (step
 *                   output throughput and memory); for iterating on one, never recorded
 *   --write         record the run in BENCHMARKS.md (only with the defaults above, so the file
 *                   always holds comparable figures); without it a run leaves the tree as it was
 *
 * The jobs are in bench/jobs/, and how each figure is taken is written out in BENCHMARKS.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureFootprints } from '../bench/footprint.js';
import { CONTENDERS, runJobRounds } from '../bench/job-runs.js';
import { ROOT } from '../bench/paths.js';
import { consoleReport, markdown, type Results } from '../bench/report.js';
import { createWorkspace, removeWorkspace } from '../bench/workspace.js';
import { MEMORY_CASES, runOutputRounds, THROUGHPUT_CASES } from '../bench/step-output.js';
import { runWriteRounds, WRITE_LOOPS } from '../bench/write-latency.js';
import { startApiServer } from './apiserver/server.js';

const DEFAULT_ROUNDS = 10;
const DEFAULT_WRITES = 1000;
const DEFAULT_OUTPUT_ROUNDS = 5;
const PARTS = ['status', 'output'] as const;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: String(DEFAULT_ROUNDS) },
    writes: { type: 'string', default: String(DEFAULT_WRITES) },
    'no-footprint': { type: 'boolean', default: false },
    'output-rounds': { type: 'string', default: String(DEFAULT_OUTPUT_ROUNDS) },
    only: { type: 'string' },
    write: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const writes = Number(values.writes);
const outputRounds = Number(values['output-rounds']);
if ([rounds, writes, outputRounds].some((n) => !Number.isInteger(n) || n < 1)) {
  console.error('bench: --rounds, --writes and --output-rounds take positive integers');
  process.exit(2);
}
const only = values.only as (typeof PARTS)[number] | undefined;
if (only !== undefined && !PARTS.includes(only)) {
  console.error(`bench: --only takes ${PARTS.join(' or ')}`);
  process.exit(2);
}
const fullRun =
  rounds >= DEFAULT_ROUNDS && writes >= DEFAULT_WRITES && outputRounds >= DEFAULT_OUTPUT_ROUNDS && !values['no-footprint'] && only === undefined;
// Refused before minutes of measuring, not after.
if (values.write && !fullRun) {
  console.error(
    `bench: --write records only a full run (--rounds >= ${DEFAULT_ROUNDS}, --writes >= ${DEFAULT_WRITES}, ` +
      `--output-rounds >= ${DEFAULT_OUTPUT_ROUNDS}, footprint on, no --only): drop --write to try settings, or the other flags to record`,
  );
  process.exit(2);
}
const measures = (part: (typeof PARTS)[number]) => only === undefined || only === part;

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const log = (line: string) => console.log(`[${elapsed().padStart(5)}] ${line}`);

/** Why dist/ must be (re)built before measuring it, or undefined when it is current. */
function staleDist(): string | undefined {
  const index = join(ROOT, 'dist', 'lib', 'index.js');
  if (!existsSync(index) || !existsSync(join(ROOT, 'dist', 'spot-run.mjs'))) return 'dist/ is missing';
  const builtAt = statSync(index).mtimeMs;
  const changed = readdirSync(join(ROOT, 'lib')).find((file) => statSync(join(ROOT, 'lib', file)).mtimeMs > builtAt);
  return changed ? `lib/${changed} changed after the last build` : undefined;
}

/** Which code is measured: the commit, and lib/ files that differ from it in the working tree. */
function sourceLine(): string {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return 'not a git checkout';
  const dirty = git('status', '--porcelain', '--', 'lib', 'package.json')
    .stdout.split('\n')
    .filter(Boolean)
    .map((line) => line.slice(3));
  return `commit ${head.stdout.trim()}${dirty.length ? `, with uncommitted changes to ${dirty.join(', ')}` : ''}`;
}

function ensureBuilt(): void {
  const reason = staleDist();
  if (!reason) return;
  log(`${reason}: npm run build`);
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`npm run build exited ${build.status ?? build.signal}`);
}

async function main(): Promise<void> {
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const source = sourceLine();
  ensureBuilt();
  log('snapshot of package.json, dist/, lib/ and the jobs in a temp folder; compiling the jobs there');
  const workspace = await createWorkspace();
  let jobs: Results['jobs'];
  let loops: Results['loops'];
  let output: Results['output'];
  let footprints: Results['footprints'];
  const loadBefore = loadavg()[0]!;
  let loadAfter: number;
  try {
    const server = await startApiServer();
    try {
      if (measures('status')) {
        log(`status-flow job: ${CONTENDERS.length} contenders, 1 warm-up round + ${rounds} rounds`);
        jobs = await runJobRounds(workspace, server, rounds, (round) => log(round === 0 ? '  warm-up round done' : `  round ${round}/${rounds}`));
        log(`per-write latency: ${WRITE_LOOPS.length} loops × ${rounds} rounds × ${writes} writes`);
        loops = await runWriteRounds(workspace, server, rounds, writes, (round) => log(`  round ${round}/${rounds}`));
      }
      if (measures('output')) {
        log(`step output: ${THROUGHPUT_CASES.length} throughput and ${MEMORY_CASES.length} memory cases × ${outputRounds} rounds, direct and through spot-run`);
        output = await runOutputRounds(server, join(workspace, 'dist', 'spot-run.mjs'), outputRounds, (round) => log(`  round ${round}/${outputRounds}`));
      }
    } finally {
      await server.stop();
    }
    loadAfter = loadavg()[0]!;
    if (measures('status') && !values['no-footprint']) {
      log('footprint: npm pack and production installs in scratch folders');
      footprints = await measureFootprints(workspace);
    }
  } finally {
    removeWorkspace(workspace);
  }

  const args = process.argv.slice(2);
  const results: Results = {
    machine: {
      cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
      cores: availableParallelism(),
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      loadBefore,
      loadAfter,
    },
    date,
    source,
    command: ['npm run bench', ...(args.length ? ['--', ...args] : [])].join(' '),
    rounds,
    writes,
    outputRounds,
    jobs,
    loops,
    output,
    footprints,
    seconds: (performance.now() - started) / 1000,
  };
  if (values.write) {
    writeFileSync(join(ROOT, 'BENCHMARKS.md'), markdown(results));
    log('wrote BENCHMARKS.md');
  } else {
    log(`BENCHMARKS.md left alone${fullRun ? ': npm run bench -- --write records a run' : ''}`);
  }
  console.log(`\n${consoleReport(results)}`);
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
});
