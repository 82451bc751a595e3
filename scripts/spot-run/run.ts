/**
 * Carries out a plan: configuration, client, the steps as runner tasks, and what the end of the
 * run means for the exit code. Resolves to the exit code; throws a `CommandFailure` for a failure
 * that gets one line on stderr, and anything else for a bug.
 */
import { clientFromConfig, type SpotClient } from '../../lib/client.js';
import { stat } from 'node:fs/promises';
import { loadConfig } from '../../lib/config.js';
import { isSpotError } from '../../lib/errors.js';
import { buildRef } from '../../lib/names.js';
import { isTlsFailure } from '../../lib/retry.js';
import { FileTokenSource } from '../../lib/token.js';
import type { BuildRef } from '../../lib/types.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { reportFatalError, runTasks } from '../../lib/runner.js';
import { redact } from '../../lib/secrets.js';
import { stepTask } from '../../lib/steps.js';
import { preferLowMemoryWasm } from '../../lib/undici.js';
import { VERSION } from '../../lib/version.js';
import { classifyReportFailure, CommandFailure, ExitCodes, outcomeExitCode } from './exit-codes.js';
import type { NameOnlyRef, Plan, StepUser } from './options.js';

/** The fatal path's budget: within the grace period, and never more than 10 s. */
const MAX_FATAL_REPORT_MS = 10_000;

export async function run(plan: Plan): Promise<number> {
  // This process sends a few dozen requests: the baseline compiler parses them just as well, and
  // spares the build pod ~35 MiB and the wait for background compilation at exit.
  preferLowMemoryWasm();
  const log = createLogger({ format: plan.format, level: plan.level });
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
  // In JSON mode a step's output lines are log objects too, so a log pipeline sees one format.
  // The line is redacted before it is serialised (JSON would escape a secret's quote or backslash).
  const formatLine =
    plan.format === 'json'
      ? (step: string, stream: 'stdout' | 'stderr', line: string) =>
          JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: redact(line), step, stream })
      : undefined;
  // A step that ignores SIGTERM gets SIGKILL after killGraceMs: that must land well inside the grace
  // period, or the run is force-exited before it can report the interruption.
  const tasks = plan.steps.map((s) =>
    stepTask(s, { killGraceMs: Math.min(5_000, plan.graceMs / 2), ...(formatLine ? { formatLine } : {}), ...(plan.stepUser ? { user: plan.stepUser } : {}) }),
  );
  log.info(`spot-run ${VERSION}: Build ${ref.namespace}/${ref.name}, ${tasks.length} step${tasks.length === 1 ? '' : 's'}`, {
    server: config.server,
  });

  try {
    const outcome = await runTasks(client, ref, tasks, { log, handleSignals: true, graceMs: plan.graceMs });
    if (outcome.outcome === 'failed') log.error(`step ${JSON.stringify(outcome.type)} failed: build Errored`);
    if (outcome.outcome === 'interrupted') log.warn(`interrupted by ${outcome.signal}: build Errored`);
    return outcomeExitCode(outcome);
  } catch (err) {
    return await reportFailed(err, client, ref, plan, log);
  } finally {
    await client.close().catch(() => {});
  }
}

/** The run could not be reported: say why, and when another answer is possible, try the fatal path once. */
async function reportFailed(err: unknown, client: SpotClient, ref: BuildRef, plan: Plan, log: Logger): Promise<number> {
  const kind = classifyReportFailure(err);
  if (kind === 'bug') throw err;
  const summary = `cannot report Build ${ref.namespace}/${ref.name} to the API server at ${client.server}: ${(err as Error).message}${tlsHint(err, plan)}`;
  if (kind === 'config') throw new CommandFailure(ExitCodes.Usage, summary);
  if (kind === 'final') throw new CommandFailure(ExitCodes.ReportFailed, summary);
  log.error(summary);
  await reportFatalError(client, ref, err, { log, deadlineMs: Math.min(plan.graceMs, MAX_FATAL_REPORT_MS) });
  return ExitCodes.ReportFailed;
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
