/**
 * Carries out a plan: configuration, client, the steps as runner tasks, and what the end of the
 * run means for the exit code. Resolves to the exit code; throws a `CommandFailure` for a failure
 * that gets one line on stderr, and anything else for a bug.
 */
import { clientFromConfig, type SpotClient } from '../../lib/client.js';
import { loadConfig } from '../../lib/config.js';
import { isSpotError } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { preferSmallYoungGeneration } from '../../lib/output.js';
import { reportFatalError, runTasks } from '../../lib/runner.js';
import { stepTask } from '../../lib/steps.js';
import { preferLowMemoryWasm } from '../../lib/undici.js';
import { VERSION } from '../../lib/version.js';
import { classifyReportFailure, CommandFailure, ExitCodes, outcomeExitCode } from './exit-codes.js';
import type { Plan } from './options.js';

/** The fatal path's budget: within the grace period, and never more than 10 s. */
const MAX_FATAL_REPORT_MS = 10_000;

export async function run(plan: Plan): Promise<number> {
  // This process sends a few dozen requests: the baseline compiler parses them just as well, and
  // spares the build pod ~35 MiB and the wait for background compilation at exit.
  preferLowMemoryWasm();
  // Steps' output streams through this process: a young generation that stays small keeps that
  // from raising its peak memory (lib/output.ts).
  preferSmallYoungGeneration();
  const log = createLogger({ format: plan.format, level: plan.level });
  let config;
  try {
    config = await loadConfig({ ...plan.connection, logger: log });
  } catch (err) {
    if (isSpotError(err)) throw new CommandFailure(ExitCodes.Usage, err.message);
    throw err;
  }
  const client = clientFromConfig(config, { logger: log, timeoutMs: plan.timeoutMs, retry: { deadlineMs: plan.deadlineMs } });
  // In JSON mode a step's output lines are log objects too, so a log pipeline sees one format.
  const formatLine =
    plan.format === 'json'
      ? (step: string, stream: 'stdout' | 'stderr', line: string) =>
          JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: line, step, stream })
      : undefined;
  // A step that ignores SIGTERM gets SIGKILL after killGraceMs: that must land well inside the grace
  // period, or the run is force-exited before it can report the interruption.
  const tasks = plan.steps.map((s) => stepTask(s, { killGraceMs: Math.min(5_000, plan.graceMs / 2), ...(formatLine ? { formatLine } : {}) }));
  const { ref } = plan;
  log.info(`spot-run ${VERSION}: Build ${ref.namespace}/${ref.name}, ${tasks.length} step${tasks.length === 1 ? '' : 's'}`, {
    server: config.server,
  });

  try {
    const outcome = await runTasks(client, ref, tasks, { log, handleSignals: true, graceMs: plan.graceMs });
    if (outcome.outcome === 'failed') log.error(`step ${JSON.stringify(outcome.type)} failed: build Errored`);
    if (outcome.outcome === 'interrupted') log.warn(`interrupted by ${outcome.signal}: build Errored`);
    return outcomeExitCode(outcome);
  } catch (err) {
    return await reportFailed(err, client, plan, log);
  } finally {
    await client.close().catch(() => {});
  }
}

/** The run could not be reported: say why, and when another answer is possible, try the fatal path once. */
async function reportFailed(err: unknown, client: SpotClient, plan: Plan, log: Logger): Promise<number> {
  const kind = classifyReportFailure(err);
  if (kind === 'bug') throw err;
  const { ref } = plan;
  const summary = `cannot report Build ${ref.namespace}/${ref.name} to the API server at ${client.server}: ${(err as Error).message}`;
  if (kind === 'final') throw new CommandFailure(ExitCodes.ReportFailed, summary);
  log.error(summary);
  await reportFatalError(client, ref, err, { log, deadlineMs: Math.min(plan.graceMs, MAX_FATAL_REPORT_MS) });
  return ExitCodes.ReportFailed;
}
