#!/usr/bin/env node
/**
 * spot-run: the build pod's entrypoint. Runs shell steps one after another, each wrapped in a
 * status condition of the Build, and reports to the API server. No TypeScript needed by its user.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { clientFromConfig } from '../lib/client.js';
import { loadConfig } from '../lib/config.js';
import { isForbidden, isNotFound, isSpotError, isUnauthorized } from '../lib/errors.js';
import { createLogger, redact, type LogFormat, type LogLevel } from '../lib/log.js';
import { parseBuildReference } from '../lib/names.js';
import { isTlsFailure } from '../lib/retry.js';
import { ExitCodes, recordErrorAndExit, runTasks } from '../lib/runner.js';
import { parseStepFlag, parseSteps, stepTask, type StepSpec } from '../lib/steps.js';
import type { BuildRef } from '../lib/types.js';
import { VERSION } from '../lib/version.js';
import { preferLowMemoryWasm } from '../lib/undici.js';

const HELP = `Usage: spot-run [options]

Runs a Build's steps one after another inside its build pod. Each step is a condition on the
Build (In Progress, then Success or Error); the phase (Running, Done, Errored) and events follow.

Options:
  --build NS/NAME        the Build to report on (default: env BUILD_REFERENCE)
  --step "TYPE=COMMAND"  a step; TYPE is the condition type, COMMAND runs with sh -c (repeatable)
  --tasks FILE           steps from a JSON file: [{"type", "command" | "argv", "timeoutSeconds"?, "env"?}]
                         (its steps run before any --step)
  --server URL           out-of-cluster: the API server (http only to a loopback host)
  --token-file FILE      out-of-cluster: a bearer token file (re-read when it changes)
  --ca-file FILE         out-of-cluster: CA bundle to trust instead of the system roots
  --log-format FORMAT    text (default) or json (one object per line)
  --log-level LEVEL      debug, info (default), warn or error
  --grace SECONDS        after SIGTERM/SIGINT, time to report before exiting anyway (default 10)
  --api-timeout SECONDS  per-request timeout (default 30)
  --api-deadline SECONDS budget for one API call including retries (default 60)
  --help                 show this help
  --version              print the version

Environment:
  BUILD_REFERENCE        namespace/name of the Build (when --build is not given)
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                         the API server (set by Kubernetes in every pod)
  SPOT_SERVICEACCOUNT_DIR
                         service-account folder (default /var/run/secrets/kubernetes.io/serviceaccount:
                         token, ca.crt, namespace)
  POD_NAMESPACE          overrides the namespace file
  POD_NAME, HOSTNAME     reported as the events' reportingInstance
  Steps get SPOT_RESULTS_DIR, a fresh folder: writing image-url (and image-metadata, a JSON object
  of strings) there sets status.image in the same write that marks the step Success.

Exit codes:
  0    all steps succeeded (phase Done)
  1    a step failed (phase Errored)
  2    usage or configuration error (nothing was sent)
  3    the API server would not take the report (unreachable after retries, 401/403, Build not found)
  130  interrupted by SIGINT
  143  interrupted by SIGTERM (pod deletion)
`;

/**
 * Failures that the fatal path's bounded retry cannot turn around: a TLS failure (configuration,
 * not weather) on any request, or a GET of the Build answered with something that is not a usable
 * Build (the fatal path starts with that same GET). Reported as one line, like 401/403/404.
 */
function cannotChange(err: unknown): boolean {
  const e = err as { code?: unknown; causeCode?: string; target?: { method?: string } };
  return (e.code === 'ERR_SPOT_NETWORK' && isTlsFailure(e.causeCode)) || (e.code === 'ERR_SPOT_RESPONSE' && e.target?.method === 'GET');
}

/** An expected failure: one line on stderr and a documented exit code, never a stack trace. */
class Exit extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

function usage(message: string): Exit {
  return new Exit(ExitCodes.Usage, `${message} (see spot-run --help)`);
}

function seconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw usage(`${flag} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

async function readSteps(file: string): Promise<StepSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw usage(`cannot read --tasks file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw usage(`--tasks file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return parseSteps(json, `--tasks file ${file}`);
  } catch (err) {
    throw usage((err as Error).message);
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        build: { type: 'string' },
        step: { type: 'string', multiple: true },
        tasks: { type: 'string' },
        server: { type: 'string' },
        'token-file': { type: 'string' },
        'ca-file': { type: 'string' },
        'log-format': { type: 'string' },
        'log-level': { type: 'string' },
        grace: { type: 'string' },
        'api-timeout': { type: 'string' },
        'api-deadline': { type: 'string' },
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw usage((err as Error).message.split('\n')[0]!);
  }
  const o = parsed.values;
  if (o.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (o.version) {
    process.stdout.write(`spot-run ${VERSION}\n`);
    return 0;
  }

  const format = (o['log-format'] ?? 'text') as LogFormat;
  if (format !== 'text' && format !== 'json') throw usage(`--log-format must be text or json, got ${JSON.stringify(format)}`);
  const level = (o['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw usage(`--log-level must be debug, info, warn or error`);
  const graceMs = seconds(o.grace, '--grace', 10) * 1000;
  const timeoutMs = seconds(o['api-timeout'], '--api-timeout', 30) * 1000;
  const deadlineMs = seconds(o['api-deadline'], '--api-deadline', 60) * 1000;
  if (o.server === undefined && (o['token-file'] !== undefined || o['ca-file'] !== undefined)) {
    throw usage('--token-file and --ca-file go with --server (in a pod the service-account folder is used)');
  }

  const reference = o.build ?? process.env.BUILD_REFERENCE;
  if (reference === undefined || reference === '') throw usage('no Build given: pass --build NAMESPACE/NAME or set BUILD_REFERENCE');
  let ref: BuildRef;
  try {
    ref = parseBuildReference(reference);
  } catch (err) {
    throw usage(`${(err as Error).message}${o.build === undefined ? ' (from BUILD_REFERENCE)' : ''}`);
  }

  const specs = [...(o.tasks !== undefined ? await readSteps(o.tasks) : [])];
  for (const flag of o.step ?? []) {
    try {
      specs.push(parseStepFlag(flag));
    } catch (err) {
      throw usage((err as Error).message);
    }
  }
  if (specs.length === 0) throw usage('no steps: pass --step "TYPE=COMMAND" or --tasks FILE');
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.type)) throw usage(`duplicate step type ${JSON.stringify(s.type)}: each step is its own condition and needs its own type`);
    seen.add(s.type);
  }

  // This process sends a few dozen requests: the baseline compiler parses them just as well, and
  // spares the build pod ~35 MiB and the wait for background compilation at exit.
  preferLowMemoryWasm();
  const log = createLogger({ format, level });
  let config;
  try {
    config = await loadConfig({
      ...(o.server !== undefined ? { server: o.server } : {}),
      ...(o['token-file'] !== undefined ? { tokenFile: o['token-file'] } : {}),
      ...(o['ca-file'] !== undefined ? { caFile: o['ca-file'] } : {}),
      logger: log,
    });
  } catch (err) {
    if (isSpotError(err)) throw new Exit(ExitCodes.Usage, err.message);
    throw err;
  }
  const client = clientFromConfig(config, { logger: log, timeoutMs, retry: { deadlineMs } });
  // In JSON mode a step's output lines are log objects too, so a log pipeline sees one format.
  const formatLine =
    format === 'json'
      ? (step: string, stream: 'stdout' | 'stderr', line: string) =>
          JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: line, step, stream })
      : undefined;
  // A step that ignores SIGTERM gets SIGKILL after killGraceMs: that must land well inside the grace
  // period, or the run is force-exited before it can report the interruption.
  const tasks = specs.map((s) => stepTask(s, { killGraceMs: Math.min(5_000, graceMs / 2), ...(formatLine ? { formatLine } : {}) }));
  log.info(`spot-run ${VERSION}: Build ${ref.namespace}/${ref.name}, ${tasks.length} step${tasks.length === 1 ? '' : 's'}`, {
    server: config.server,
  });

  try {
    const outcome = await runTasks(client, ref, tasks, { log, handleSignals: true, graceMs });
    if (outcome.outcome === 'failed') log.error(`step ${JSON.stringify(outcome.type)} failed: build Errored`);
    if (outcome.outcome === 'interrupted') log.warn(`interrupted by ${outcome.signal}: build Errored`);
    return outcome.exitCode;
  } catch (err) {
    const where = `the API server at ${config.server}`;
    const summary = `cannot report Build ${ref.namespace}/${ref.name} to ${where}: ${redact((err as Error).message)}`;
    // Nothing to record on: the Build is gone, we may not write it, or asking again cannot give
    // another answer (the server's certificate is not trusted; reading the Build gives something
    // that is not one). Otherwise try once more, bounded.
    if (!isSpotError(err) || isNotFound(err) || isForbidden(err) || isUnauthorized(err) || cannotChange(err)) {
      if (!isSpotError(err) && !(err instanceof TypeError)) throw err;
      throw new Exit(ExitCodes.ReportFailed, summary);
    }
    log.error(summary);
    await recordErrorAndExit(client, ref, err, { log, exitCode: ExitCodes.ReportFailed, deadlineMs: Math.min(graceMs, 10_000), exit: () => {} });
    return ExitCodes.ReportFailed;
  } finally {
    await client.close().catch(() => {});
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof Exit) {
      process.stderr.write(`spot-run: ${redact(err.message)}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    // Not an expected failure: a bug. Say so, with the stack, and fail like a failed step.
    process.stderr.write(`spot-run: internal error (please report it): ${redact(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`);
    process.exitCode = 1;
  },
);
