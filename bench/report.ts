/**
 * Turns the measurements into what `npm run bench` prints and writes to BENCHMARKS.md: the targets
 * with hit or miss, and one markdown table (figures as rows, contenders as columns; each cell the
 * median of the rounds with min–max, then ratios to the node:https floor and to client-node).
 */
import { STEPS } from './jobs/common.js';
import { CONTENDERS, type ContenderId, type JobSample } from './job-runs.js';
import { CLIENT_NODE_VERSION, type Footprint, type Footprints } from './footprint.js';
import { summarize, type Summary } from './stats.js';
import { MEMORY_CASES, THROUGHPUT_CASES, type OutputResults, type OutputSample } from './step-output.js';
import { WARMUP_WRITES, type LoopId, type LoopSample } from './write-latency.js';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
  /** 1-minute load average before and after the timed phases: other work on the machine shows here. */
  loadBefore: number;
  loadAfter: number;
}

export interface Results {
  machine: Machine;
  date: string;
  /** The commit measured, and any uncommitted lib/ changes. */
  source: string;
  command: string;
  rounds: number;
  writes: number;
  outputRounds: number;
  /** Absent when the run measured only step output (`--only output`). */
  jobs: Map<ContenderId, JobSample[]> | undefined;
  loops: Map<LoopId, LoopSample[]> | undefined;
  /** Absent when the run measured only the status flow (`--only status`). */
  output: OutputResults | undefined;
  footprints: Footprints | undefined;
  seconds: number;
}

export interface Target {
  name: string;
  hit: boolean;
  detail: string;
}

const MB = 1_000_000;

type JobFigure = 'coldStartMs' | 'importedMs' | 'wallMs' | 'peakRssMiB' | 'requests' | 'bodyBytes';

function jobSummary(results: Results, id: ContenderId, figure: JobFigure): Summary {
  return summarize(results.jobs!.get(id)!.map((sample) => sample[figure]));
}

function loopSummary(results: Results, id: LoopId, figure: 'p50' | 'p99' | 'cpuMicros'): Summary {
  return summarize(results.loops!.get(id)!.map((sample) => sample[figure]));
}

function fixed(value: number, digits: number): string {
  return value.toFixed(digits);
}

function spread(s: Summary, digits: number): string {
  return s.min === s.max ? fixed(s.median, digits) : `${fixed(s.median, digits)} (${fixed(s.min, digits)}–${fixed(s.max, digits)})`;
}

function times(value: number): string {
  return `${value.toFixed(2)}×`;
}

/** The requests the runner should send for an N-step build: 1 GET + N+1 status writes, plus the one event. */
export const EXPECTED_REQUESTS = STEPS.length + 2 + 1;

export function targets(results: Results): Target[] {
  return [...(results.jobs && results.loops ? statusTargets(results) : []), ...(results.output ? outputTargets(results.output) : [])];
}

function statusTargets(results: Results): Target[] {
  const cold = (id: ContenderId) => jobSummary(results, id, 'coldStartMs').median;
  const rss = (id: ContenderId) => jobSummary(results, id, 'peakRssMiB').median;
  const list: Target[] = [];

  // Issue 14's start-up targets: the single file (as an image runs it: from its V8 startup
  // snapshot) within 1.2× of the floor, dist/ within 1.3×.
  const vsFloor = (id: ContenderId) => cold(id) / cold('https');
  list.push({
    name: 'start-up: the single file within 1.2× of the node:https floor',
    hit: vsFloor('snapshot') <= 1.2,
    detail:
      `from its V8 snapshot ${fixed(cold('snapshot'), 0)} ms vs ${fixed(cold('https'), 0)} ms = ${times(vsFloor('snapshot'))} ` +
      `(as a plain file, no snapshot: ${fixed(cold('bundle'), 0)} ms = ${times(vsFloor('bundle'))})`,
  });
  list.push({
    name: 'start-up: dist/ within 1.3× of the node:https floor',
    hit: vsFloor('spot') <= 1.3,
    detail: `${fixed(cold('spot'), 0)} ms vs ${fixed(cold('https'), 0)} ms = ${times(vsFloor('spot'))}`,
  });
  const cnOverSpot = cold('client-node') / cold('spot');
  list.push({
    name: 'cold start at least 4× faster than client-node',
    hit: cnOverSpot >= 4,
    detail: `client-node ${fixed(cold('client-node'), 0)} ms / spot-runtime ${fixed(cold('spot'), 0)} ms = ${times(cnOverSpot)} faster`,
  });
  const rssOver = rss('spot') - rss('https');
  list.push({
    name: 'peak RSS within the node:https floor + 8 MiB',
    hit: rssOver <= 8,
    detail: `${fixed(rss('spot'), 1)} MiB vs ${fixed(rss('https'), 1)} MiB = floor + ${fixed(rssOver, 1)} MiB (bundle + ${fixed(rss('bundle') - rss('https'), 1)} MiB)`,
  });
  list.push({
    name: 'peak RSS at most 0.5× client-node',
    hit: rss('spot') <= 0.5 * rss('client-node'),
    detail: `${fixed(rss('spot'), 1)} MiB vs ${fixed(rss('client-node'), 1)} MiB = ${times(rss('spot') / rss('client-node'))}`,
  });
  const requests = jobSummary(results, 'spot', 'requests');
  list.push({
    name: `N+2 requests for an N-step build, plus the event (N=${STEPS.length}: ${EXPECTED_REQUESTS})`,
    hit: requests.min === EXPECTED_REQUESTS && requests.max === EXPECTED_REQUESTS,
    detail: `${spread(requests, 0)} requests (${results.jobs!.get('spot')![0]!.shape}) in every run; client-node ${spread(jobSummary(results, 'client-node', 'requests'), 0)}`,
  });
  const p50 = (id: LoopId) => loopSummary(results, id, 'p50').median;
  const cpu = (id: LoopId) => loopSummary(results, id, 'cpuMicros').median;
  list.push({
    name: 'per-write p50 within 1.10× of raw undici',
    hit: p50('update') / p50('undici') <= 1.1,
    detail:
      `updateBuildStatus ${fixed(p50('update'), 3)} ms vs ${fixed(p50('undici'), 3)} ms = ${times(p50('update') / p50('undici'))} ` +
      `(patchBuildStatus ${fixed(p50('patch'), 3)} ms = ${times(p50('patch') / p50('undici'))}); ` +
      `client CPU per write ${fixed(cpu('update'), 0)} µs, ${fixed(cpu('patch'), 0)} µs and ${fixed(cpu('undici'), 0)} µs`,
  });
  const footprint = results.footprints?.spot;
  if (footprint) {
    list.push({
      name: 'production install under 3 MB with 1 dependency',
      hit: footprint.installedBytes < 3 * MB && footprint.packages === 2,
      detail: `${fixed(footprint.installedBytes / MB, 2)} MB, ${footprint.packages} packages (spot-runtime + ${footprint.packages - 1} dependency)`,
    });
  }
  return list;
}

/** Step-output figures of one case: medians over the rounds. */
function outputFigures(samples: readonly OutputSample[]) {
  const pick = (f: (s: OutputSample) => number | undefined) => summarize(samples.map((s) => f(s) ?? NaN));
  return { seconds: pick((s) => s.seconds), cpu: pick((s) => s.cpuSeconds), rss: pick((s) => s.peakRssMiB) };
}

/** spot-run's CPU for the output alone: its whole CPU less the trivial step's (start-up, requests). */
function outputCpuPer100MB(o: OutputResults, cpuSeconds: number, bytes: number): number {
  const base = o.trivial.length ? summarize(o.trivial.map((t) => t.cpuSeconds)).median : 0;
  return (cpuSeconds - base) / (bytes / 100e6);
}

const mbps = (bytes: number, seconds: number) => `${fixed(bytes / MB / seconds, 0)} MB/s`;

function outputTargets(o: OutputResults): Target[] {
  const list: Target[] = [];
  for (const c of THROUGHPUT_CASES) {
    if (!o.spotRun.get(c.id)?.length) continue;
    const direct = outputFigures(o.direct.get(c.id)!);
    const spot = outputFigures(o.spotRun.get(c.id)!);
    const ratio = spot.seconds.median / direct.seconds.median;
    list.push({
      name: `step output through spot-run within 2× of direct: ${c.label}`,
      hit: ratio <= 2,
      detail:
        `${fixed(spot.seconds.median, 2)} s (${mbps(c.bytes, spot.seconds.median)}) vs ${fixed(direct.seconds.median, 2)} s ` +
        `(${mbps(c.bytes, direct.seconds.median)}) = ${times(ratio)}; spot-run CPU ${fixed(outputCpuPer100MB(o, spot.cpu.median, c.bytes), 2)} s per 100 MB`,
    });
  }
  const memory = MEMORY_CASES.filter((c) => o.spotRun.get(c.id)?.length);
  if (memory.length && o.trivial.length) {
    const trivial = summarize(o.trivial.map((t) => t.peakRssMiB)).median;
    const worst = memory
      .map((c) => ({ c, rss: outputFigures(o.spotRun.get(c.id)!).rss.median }))
      .reduce((a, b) => (b.rss > a.rss ? b : a));
    list.push({
      name: 'peak RSS with 100 MB of step output within the trivial step + 16 MiB',
      hit: worst.rss - trivial <= 16,
      detail: `worst ${fixed(worst.rss, 1)} MiB (${worst.c.label}) vs ${fixed(trivial, 1)} MiB = trivial + ${fixed(worst.rss - trivial, 1)} MiB`,
    });
  }
  return list;
}

/** The step-output tables: throughput (direct vs spot-run) and memory (spot-run vs a trivial step). */
export function outputTables(o: OutputResults): string {
  const lines = [
    '| Step output | drained directly: s (MB/s) | through a bare Node pipe: s (MB/s) | through spot-run: s (MB/s) | × direct | spot-run CPU, s [per 100 MB, less start-up] | spot-run peak RSS, MiB |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const c of THROUGHPUT_CASES) {
    if (!o.spotRun.get(c.id)?.length) continue;
    const direct = outputFigures(o.direct.get(c.id)!);
    const spot = outputFigures(o.spotRun.get(c.id)!);
    const pipe = outputFigures(o.nodePipe.get(c.id)!);
    lines.push(
      `| ${c.label} | ${spread(direct.seconds, 2)} (${mbps(c.bytes, direct.seconds.median)}) | ${spread(pipe.seconds, 2)} (${mbps(c.bytes, pipe.seconds.median)}) | ${spread(spot.seconds, 2)} (${mbps(c.bytes, spot.seconds.median)}) | ` +
        `${times(spot.seconds.median / direct.seconds.median)} | ${spread(spot.cpu, 2)} [${fixed(outputCpuPer100MB(o, spot.cpu.median, c.bytes), 2)}] | ${spread(spot.rss, 1)} |`,
    );
  }
  const memory = MEMORY_CASES.filter((c) => o.spotRun.get(c.id)?.length);
  if (memory.length && o.trivial.length) {
    const trivialRss = summarize(o.trivial.map((t) => t.peakRssMiB));
    lines.push(
      '',
      '| Memory under step output (spot-run) | peak RSS, MiB | − trivial step, MiB | spot-run CPU, s | step start → reader done, s |',
      '|---|---|---|---|---|',
      `| trivial step (\`true\`) | ${spread(trivialRss, 1)} | – | ${spread(summarize(o.trivial.map((t) => t.cpuSeconds)), 2)} | – |`,
    );
    for (const c of memory) {
      const spot = outputFigures(o.spotRun.get(c.id)!);
      lines.push(`| ${c.label} | ${spread(spot.rss, 1)} | +${fixed(spot.rss.median - trivialRss.median, 1)} | ${spread(spot.cpu, 2)} | ${spread(spot.seconds, 2)} |`);
    }
  }
  return lines.join('\n');
}

/** How the step-output figures are taken, for BENCHMARKS.md. */
function outputMethod(results: Results): string {
  return (
    `- **Step output**: ${results.outputRounds} rounds, each running every case drained directly, through a bare Node relay (\`node -e 'process.stdin.pipe(process.stdout)'\`: no prefix, no redaction, the floor of any relay written in Node) and through \`spot-run\` (dist/spot-run.mjs, text format, \`[Out] \` prefix), side by side. ` +
    'The step is `perl bench/output-tools.pl write`, which prints as a program does (one print per 80-byte line through an 8 KiB stdio buffer, or 1 MB prints of a line with no newline); the reader is another process (`output-tools.pl drain`) on the other end of a pipe, and its byte count must equal the exact expected one (every line with its prefix) or the run fails. ' +
    "Time runs from the step's own start stamp (`date +%s%N`) to the reader's end, so spot-run's start-up and API requests are not counted. " +
    "spot-run's CPU and peak RSS are its own `process.resourceUsage()` at exit (bench/rusage.cjs, preloaded), not its step's; CPU per 100 MB subtracts the trivial step's CPU (start-up and requests). " +
    'Memory cases: 100 MB of lines on stdout or stderr, to a fast reader or one that stops reading for a second after its first MiB.'
  );
}

export function formatTargets(list: readonly Target[]): string {
  return list.map((t) => `- **${t.hit ? 'HIT' : 'MISS'}** ${t.name}: ${t.detail}`).join('\n');
}

/** One markdown table row per figure; `cell` renders a contender's cell or undefined for "–". */
function row(figure: string, cell: (id: ContenderId) => string | undefined): string {
  return `| ${figure} | ${CONTENDERS.map((c) => cell(c.id) ?? '–').join(' | ')} |`;
}

export function table(results: Results): string {
  const withRatios = (figure: JobFigure, digits: number) => (id: ContenderId) => {
    const s = jobSummary(results, id, figure);
    const floor = jobSummary(results, 'https', figure).median;
    const clientNode = jobSummary(results, 'client-node', figure).median;
    return `${spread(s, digits)} [${times(s.median / floor)}, ${times(s.median / clientNode)}]`;
  };
  const loopCell = (figure: 'p50' | 'p99' | 'cpuMicros', digits = 3) => (id: ContenderId) => {
    const loop: LoopId | undefined = id === 'spot' ? 'update' : id === 'undici' ? 'undici' : undefined;
    if (!loop) return undefined;
    const s = loopSummary(results, loop, figure);
    return loop === 'undici' ? spread(s, digits) : `${spread(s, digits)} [${times(s.median / loopSummary(results, 'undici', figure).median)} raw undici]`;
  };
  const lines = [
    `| Figure | ${CONTENDERS.map((c) => c.label).join(' | ')} |`,
    `|---|${CONTENDERS.map(() => '---').join('|')}|`,
    row('Cold start: process start → 1st status write acknowledged, ms', withRatios('coldStartMs', 0)),
    row("… of which loading the job's imports, ms", withRatios('importedMs', 0)),
    row('Whole job wall time: spawn → exit, ms', withRatios('wallMs', 0)),
    row('Peak RSS, MiB', withRatios('peakRssMiB', 1)),
    row('Requests sent', withRatios('requests', 0)),
    row('Request body bytes', withRatios('bodyBytes', 0)),
    row(`Per-write latency p50, ms (${results.writes} writes, warm keep-alive)`, loopCell('p50')),
    row(`Per-write latency p99, ms (${results.writes} writes, warm keep-alive)`, loopCell('p99')),
    row("Client's own CPU time per write, µs", loopCell('cpuMicros', 0)),
  ];
  const f = results.footprints;
  if (f) {
    const megabytes = (n: number) => `${fixed(n / MB, 2)} MB`;
    const footprintCell = (value: (fp: Footprint) => number, format: (n: number) => string) => (id: ContenderId) =>
      id === 'spot'
        ? `${format(value(f.spot))} [${times(value(f.spot) / value(f.clientNode))} client-node]`
        : id === 'client-node'
          ? format(value(f.clientNode))
          : undefined;
    const installed = footprintCell((fp) => fp.installedBytes, megabytes);
    lines.push(
      row('`npm pack` size', footprintCell((fp) => fp.packBytes, megabytes)),
      row('Production install (`npm install --omit=dev`)', (id) =>
        id === 'bundle' ? `${megabytes(f.bundleBytes)} (dist/spot-run.mjs: one file, nothing to install)` : installed(id),
      ),
      row('Packages installed', footprintCell((fp) => fp.packages, String)),
    );
  }
  return lines.join('\n');
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node} (${m.platform}); load average ${m.loadBefore.toFixed(2)} before, ${m.loadAfter.toFixed(2)} after`;
}

function legend(results: Results): string {
  return [
    `Each cell: median of ${results.rounds} interleaved runs (min–max), then [× node:https floor, × client-node]; per-write cells: [× raw undici]; footprint cells: [× client-node].`,
    `Contenders run the same job: in-cluster config, GET the Build, ${STEPS.length} steps (In Progress then Success, phase derived, image in the last write), one Normal event, exit.`,
  ].join('\n');
}

export function markdown(results: Results): string {
  const f = results.footprints;
  return [
    '# Benchmarks',
    '',
    `Written by \`${results.command}\` (scripts/bench.ts) on ${results.date}, in ${results.seconds.toFixed(0)} s; code measured: ${results.source}.`,
    '',
    `Machine: ${machineLine(results.machine)}.`,
    '',
    ...(results.jobs ? [legend(results), '', table(results), ''] : []),
    ...(results.output ? ['## Step output', '', outputTables(results.output), ''] : []),
    '## Targets',
    '',
    formatTargets(targets(results)),
    '',
    '## How the figures are taken',
    '',
    `- **Runs.** One warm-up round (discarded), then ${results.rounds} rounds; each round runs every contender once, in the table's order, each on a fresh Build. After every run the local API server's stored Build is checked (phase Done, the image, every condition Success, exactly one event, no failed request).`,
    '- **Cold start** is read on the child\'s own clock: `performance.now()` (ms since its process started) when the first status write was acknowledged. For spot-runtime that is when the runner starts the first task, which it does only after the write marking it In Progress returned; for the others, when the first write\'s promise resolved. The "imports" row is the same clock once the job\'s static imports were loaded.',
    '- **V8 snapshot** contender: the same job bundled as CommonJS with dist/spot-run.cjs\'s recipe, made into a startup snapshot (`node --snapshot-blob B --build-snapshot job.cjs`) by the Node that runs the bench, and run as `node --snapshot-blob B`. Its imports were loaded when the blob was built; its "imports" mark is when the process reaches the job (its clock starts at process start, as for the others).',
    '- **Whole job wall time** is the parent\'s clock, from `spawn()` to the child\'s exit: it includes starting the process and everything Node does before exiting.',
    '- **Peak RSS** is `process.resourceUsage().maxRSS`, read in the child\'s `exit` handler. For a process that ends by itself this equals `/usr/bin/time`\'s maximum resident size (checked); no job calls `process.exit()`, which would read it before V8\'s background work is done.',
    '- **Requests and bytes** come from the local API server\'s request log; bytes are request bodies as the server read them (headers not counted).',
    `- **Per-write latency**: one process per loop and round, ${WARMUP_WRITES} untimed writes, then ${results.writes} timed ones, each a merge patch of one condition with the resourceVersion precondition; p50/p99 per run, median over the ${results.rounds} rounds. spot-runtime's figure is \`updateBuildStatus\` (what the runner uses); \`patchBuildStatus\` is measured too and shown under Targets.`,
    '- **Footprint**: `npm pack` of this repository and of the client-node release, then `npm install --omit=dev <tarball>` into an empty project; installed size is the apparent size of every file under its node_modules, packages are the lockfile\'s node_modules entries.',
    `- **client-node ${CLIENT_NODE_VERSION}** is the newest release that runs on Node 20. ${f ? `Checked here: ${f.clientNode2}.` : ''} Its job uses its own in-cluster loader, \`loadFromCluster(pathPrefix)\`: the prefix is the seam client-node's own tests use, and the bench points it at a folder whose \`var/run/secrets/kubernetes.io/serviceaccount\` is a symlink to the local API server's service-account folder, so the loader reads the same files, paths and env it reads in a pod. It writes as its users do: a merge patch of the whole status (\`setHeaderOptions('Content-Type', PatchStrategy.MergePatch)\`) when a step starts and when it ends, so ${STEPS.length * 2} writes; 1.x builds a new \`https.Agent\` per request (no keep-alive), so every request opens a TLS connection.`,
    '- **Floors** send spot-runtime\'s exact requests (same bodies, headers and resourceVersion preconditions) with no library: raw undici (`new Agent({ connect: { ca } })` + `request`) and `node:https` (keep-alive Agent); no retries, no validation.',
    ...(results.output ? [outputMethod(results)] : []),
    '',
  ].join('\n');
}

/** One line per target, HIT or MISS first so a glance down the left edge is the verdict. */
export function verdictLines(list: readonly Target[]): string[] {
  return list.map((t) => `${t.hit ? 'HIT ' : 'MISS'} ${t.name}: ${t.detail}`);
}

/** What the terminal shows; it ends with the verdict, the part a person reads first. */
export function consoleReport(results: Results): string {
  const list = targets(results);
  return [
    `Machine: ${machineLine(results.machine)}`,
    `Date: ${results.date}; command: ${results.command}; ${results.seconds.toFixed(0)} s; code measured: ${results.source}`,
    '',
    ...(results.jobs ? [legend(results), '', table(results), ''] : []),
    ...(results.output ? [outputTables(results.output), ''] : []),
    `Verdict: ${list.filter((t) => t.hit).length} of ${list.length} targets hit`,
    ...verdictLines(list),
  ].join('\n');
}
