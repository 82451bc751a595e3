/**
 * Carries out a plan: configuration, client, the steps as runner tasks, and what the end of the
 * run means for the exit code. Resolves to the exit code, having told every ending that is not a
 * plain success in one line on stderr, and every ending in the termination message.
 */
import { stat } from 'node:fs/promises';
import type { CallOptions, UpdateOptions } from '../../lib/builds.js';
import { clientFromConfig, type SpotClient } from '../../lib/client.js';
import { loadConfig } from '../../lib/config.js';
import { isBuildReplaced, isSpotError } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { buildRef } from '../../lib/names.js';
import { isTlsFailure } from '../../lib/retry.js';
import { FileTokenSource } from '../../lib/token.js';
import type { BuildRef } from '../../lib/types.js';
import { preferSmallYoungGeneration } from '../../lib/output.js';
import { handleStopSignals, reportFatalError, runTasks, type BuildClient, type RunProgress } from '../../lib/runner.js';
import { redact, registerMaskedValue } from '../../lib/secrets.js';
import { stepTask, type StepOptions } from '../../lib/steps.js';
import { summarizeForcedExit, summarizeOutcome } from '../../lib/termination.js';
import { preferLowMemoryWasm } from '../../lib/undici.js';
import { VERSION } from '../../lib/version.js';
import { endWithFailure, writeTermination } from './ending.js';
import { classifyReportFailure, CommandFailure, ExitCodes, outcomeExitCode } from './exit-codes.js';
import type { NameOnlyRef, Plan, StepUser } from './options.js';

/** The fatal path's budget: within the grace period, and never more than 10 s. */
const MAX_FATAL_REPORT_MS = 10_000;
/** Less than this left of the failed call's --api-deadline: the fatal path is not tried. */
const MIN_FATAL_REPORT_MS = 200;

export async function run(plan: Plan): Promise<number> {
  // Before anything can print: the values are masked from the first line on.
  for (const value of plan.maskValues) registerMaskedValue(value);
  // This process sends a few dozen requests: the baseline compiler parses them just as well, and
  // spares the build pod ~35 MiB and the wait for background compilation at exit.
  preferLowMemoryWasm();
  // Steps' output streams through this process: a young generation that stays small keeps that
  // from raising its peak memory (lib/output.ts).
  preferSmallYoungGeneration();
  const log = createLogger({ format: plan.format, level: plan.level });
  const progress: RunProgress = { build: undefined, task: undefined };
  // Installed first, so a signal at any point (reading the configuration included) is answered.
  const controller = new AbortController();
  const dispose = handleStopSignals(controller, {
    graceMs: plan.graceMs,
    log,
    exit: (code) => {
      // A second signal, or the grace period over: the message still says the run was interrupted, and in which task.
      writeTermination(plan.output, summarizeForcedExit(code, progress.task));
      process.exit(code);
    },
  });
  try {
    return await carryOut(plan, log, controller.signal, progress);
  } catch (err) {
    return endWithFailure(err, plan.output, { task: progress.task });
  } finally {
    dispose();
  }
}

async function carryOut(plan: Plan, log: Logger, signal: AbortSignal, progress: RunProgress): Promise<number> {
  if (plan.connection.server === undefined && !(process.env.KUBERNETES_SERVICE_HOST && process.env.KUBERNETES_SERVICE_PORT)) {
    throw new CommandFailure(
      ExitCodes.Usage,
      'not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; outside a cluster pass --server URL (with --token-file FILE and --ca-file FILE as needed)',
    );
  }
  let config;
  try {
    config = await loadConfig({ ...plan.connection, logger: log });
  } catch (err) {
    if (isSpotError(err)) throw new CommandFailure(ExitCodes.Usage, err.message);
    throw err;
  }
  const ref = resolveRef(plan.ref, config.namespace);
  if (plan.stepUser && config.tokenSource instanceof FileTokenSource) await checkTokenHidden(config.tokenSource.path, plan.stepUser);
  const client = clientFromConfig(config, {
    logger: log,
    timeoutMs: plan.timeoutMs,
    retry: { deadlineMs: plan.deadlineMs },
    ...(plan.phaseField ? { phaseField: plan.phaseField } : {}),
    ...(plan.resource ? { resource: plan.resource } : {}),
  });
  const calls = boundedCalls(client, plan.deadlineMs);
  log.info(`spot-run ${VERSION}: Build ${ref.namespace}/${ref.name}, ${plan.steps.length} step${plan.steps.length === 1 ? '' : 's'}`, {
    server: config.server,
  });

  try {
    const options = stepOptions(plan);
    const outcome = await runTasks(calls, ref, plan.steps.map((s) => stepTask(s, options)), {
      log,
      signal,
      graceMs: plan.graceMs,
      onProgress: (p) => Object.assign(progress, p),
    });
    if (outcome.outcome === 'interrupted') log.warn(`interrupted by ${outcome.signal}: build Errored${outcome.reported ? '' : ' (not reported)'}`);
    const exitCode = outcomeExitCode(outcome);
    writeTermination(plan.output, { ...summarizeOutcome(outcome), exitCode });
    return exitCode;
  } catch (err) {
    return await reportFailed(err, client, calls, ref, plan, log, progress);
  } finally {
    await client.close().catch(() => {});
  }
}

/** What every step shares; the whole build's deadline starts counting here. */
function stepOptions(plan: Plan): StepOptions {
  // In JSON mode a step's output lines are log objects too, so a log pipeline sees one format.
  // Each line is redacted before it is escaped: a masked value holding a quote would not match after.
  const formatLine =
    plan.format === 'json'
      ? (step: string, stream: 'stdout' | 'stderr', line: string) =>
          JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: redact(line), step, stream })
      : undefined;
  const seconds = plan.buildTimeoutSeconds;
  return {
    // A step that ignores SIGTERM gets SIGKILL after killGraceMs: that must land well inside the
    // grace period, or the run is force-exited before it can report the interruption.
    killGraceMs: Math.min(5_000, plan.graceMs / 2),
    ...(formatLine ? { formatLine } : {}),
    ...(plan.stepUser ? { user: plan.stepUser } : {}),
    ...(seconds !== undefined ? { deadline: { signal: AbortSignal.timeout(seconds * 1000), seconds } } : {}),
  };
}

/**
 * The client as the runner sees it, each call bounded by --api-deadline from its start (its GET,
 * writes, conflict re-reads and retries together), remembering when the last call had to end: the
 * failure report that may follow a failed call comes out of the same budget.
 */
function boundedCalls(client: SpotClient, deadlineMs: number): BuildClient & { remainingMs(): number } {
  let deadlineAt = Infinity;
  const bound = <T extends CallOptions>(options: T | undefined): T => {
    deadlineAt = Date.now() + deadlineMs;
    return { ...options, deadlineAt } as T;
  };
  return {
    phaseField: client.phaseField,
    getBuild: (ref, options) => client.getBuild(ref, bound(options)),
    updateBuildStatus: (ref, mutate, options?: UpdateOptions) => client.updateBuildStatus(ref, mutate, bound(options)),
    recordEvent: (build, event, options) => client.recordEvent(build, event, options),
    remainingMs: () => deadlineAt - Date.now(),
  };
}

/**
 * The run could not be reported: say why in one line, and when another answer is possible, try
 * the fatal path once within what is left of the failed call's budget.
 */
async function reportFailed(
  err: unknown,
  client: SpotClient,
  calls: { remainingMs(): number },
  ref: BuildRef,
  plan: Plan,
  log: Logger,
  progress: RunProgress,
): Promise<number> {
  const kind = classifyReportFailure(err);
  if (kind === 'bug') throw err;
  const cause = isBuildReplaced(err)
    ? `${err.message}; this run stops and writes nothing to the new Build`
    : `cannot report Build ${ref.namespace}/${ref.name} to the API server at ${client.server}: ${(err as Error).message}${tlsHint(err, plan)}`;
  const context = { task: progress.task };
  if (kind === 'config') return endWithFailure(new CommandFailure(ExitCodes.Usage, cause), plan.output, context);
  if (kind === 'final') return endWithFailure(new CommandFailure(ExitCodes.ReportFailed, cause), plan.output, context);
  const budget = Math.min(plan.graceMs, MAX_FATAL_REPORT_MS, calls.remainingMs());
  if (budget < MIN_FATAL_REPORT_MS) {
    return endWithFailure(new CommandFailure(ExitCodes.ReportFailed, `${cause}; not recorded on the Build (the --api-deadline was spent)`), plan.output, context);
  }
  const fatal = await reportFatalError(client, ref, err, { log, deadlineMs: budget, uid: progress.build?.metadata.uid });
  const line = fatal.recorded ? `${cause}; the failure is recorded on the Build` : `${cause}; recording the failure on the Build failed too: ${fatal.error.message}`;
  return endWithFailure(new CommandFailure(ExitCodes.ReportFailed, line), plan.output, { ...context, reported: fatal.recorded });
}

/** The Build with its namespace: `--build NAME` means the pod's namespace, as kubectl reads it. */
function resolveRef(ref: BuildRef | NameOnlyRef, podNamespace: string | undefined): BuildRef {
  if (ref.namespace !== undefined) return ref;
  if (podNamespace === undefined) {
    throw new CommandFailure(
      ExitCodes.Usage,
      `--build ${ref.name} names no namespace and the pod's is unknown (no POD_NAMESPACE, no namespace file in the service-account folder): pass --build NAMESPACE/${ref.name}`,
    );
  }
  return buildRef(podNamespace, ref.name);
}

/** Out of cluster, a certificate the system roots do not know is the usual TLS failure: say which flag fixes it. */
function tlsHint(err: unknown, plan: Plan): string {
  const e = err as { code?: string; causeCode?: string };
  if (plan.connection.server === undefined || e.code !== 'ERR_SPOT_NETWORK' || !isTlsFailure(e.causeCode)) return '';
  return plan.connection.caFile === undefined
    ? ` (if the server's certificate is signed by a private CA, pass that CA with --ca-file FILE)`
    : ` (check that --ca-file ${plan.connection.caFile} holds the CA that signed the server's certificate)`;
}

/**
 * With --step-user the token must be out of the steps' reach: a token file the step user can read
 * (the default 0644 mode of a service-account volume) would make the separation a pretence.
 */
async function checkTokenHidden(path: string, user: StepUser): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch {
    return; // Read a moment ago; a vanished file is the token source's problem, not this check's.
  }
  const bits = info.uid === user.uid ? 0o400 : info.gid === user.gid ? 0o040 : 0o004;
  if (info.mode & bits) {
    throw new CommandFailure(
      ExitCodes.Usage,
      `--step-user ${user.uid}:${user.gid} can read the token file ${path} (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}, owner ${info.uid}:${info.gid}): mount the token with defaultMode 0400 (see "Security model" in the README)`,
    );
  }
}
