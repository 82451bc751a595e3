/**
 * `npm run reliability`: runs every reliability, bad-input and security scenario (the same
 * definitions the tests use, from test/*.scenarios.ts) and prints one row per scenario:
 * runs, runs passed, updates lost, the most retries one request needed, wall time. The last line is
 * `N passed, M failed`; the exit code is non-zero when any scenario failed.
 *
 *   npm run reliability                       everything
 *   npm run reliability -- conflict-storm sigterm   only scenarios whose id contains one of the words
 *   npm run reliability -- --concurrency 2    scenarios at a time (default 4)
 */
import { parseArgs } from 'node:util';
import { BAD_INPUT_SCENARIOS } from './bad-input.scenarios.js';
import { FAULT_SCENARIOS } from './reliability-faults.scenarios.js';
import { PROCESS_SCENARIOS } from './reliability-process.scenarios.js';
import { SECURITY_SCENARIOS } from './security.scenarios.js';
import { runScenarios, spotRunEntry, type Scenario, type ScenarioReport } from './support/scenario-harness.js';

/** Every scenario, in the table's order. */
const SCENARIOS: readonly Scenario[] = [...FAULT_SCENARIOS, ...PROCESS_SCENARIOS, ...BAD_INPUT_SCENARIOS, ...SECURITY_SCENARIOS];

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function table(reports: readonly ScenarioReport[]): string {
  const header = ['scenario', 'runs', 'passed', 'updates lost', 'max retries', 'wall time'];
  const rows = reports.map((r) => [r.id, String(r.runs), String(r.passed), String(r.updatesLost), String(r.maxRetries), formatSeconds(r.ms)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { concurrency: { type: 'string', default: '4' } },
  });
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`--concurrency must be a positive integer, got ${values.concurrency}`);
  const selected = positionals.length ? SCENARIOS.filter((s) => positionals.some((p) => s.id.includes(p))) : SCENARIOS;
  if (selected.length === 0) throw new Error(`no scenario matches ${positionals.join(', ')}`);

  const started = Date.now();
  await spotRunEntry(); // build the spot-run bundle once, before the clock of any scenario starts
  process.stderr.write(`running ${selected.length} scenarios, ${concurrency} at a time\n`);
  const reports = await runScenarios(selected, concurrency, (r) => {
    const ok = r.failures.length === 0 && r.passed === r.runs && r.runs > 0;
    process.stderr.write(`  ${ok ? 'ok  ' : 'FAIL'} ${r.id} (${formatSeconds(r.ms)})\n`);
  });

  const failed = reports.filter((r) => !(r.failures.length === 0 && r.passed === r.runs && r.runs > 0));
  console.log(table(reports));
  for (const r of failed) {
    console.log(`\n${r.id}: ${r.title}`);
    for (const f of r.failures) console.log(`  ${f.split('\n').join('\n  ')}`);
  }
  console.log(`\nwall time ${formatSeconds(Date.now() - started)}`);
  console.log(`${reports.length - failed.length} passed, ${failed.length} failed`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`reliability: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 2;
  },
);
