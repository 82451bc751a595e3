/**
 * spot-run's command line: the flags, --help, and turning argv and the environment into a plan.
 * `parseOptions` is pure (no file, no network), so every flag-worded error can be tested without
 * a process; `planRun` adds the one read it needs, the --tasks file. Each check happens once, and
 * all of them before anything is sent.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { PHASE_FIELDS, type PhaseField } from '../../lib/conditions.js';
import type { ConfigOptions } from '../../lib/config.js';
import type { LogFormat, LogLevel } from '../../lib/log.js';
import { parseBuildReference } from '../../lib/names.js';
import { parseResource, type BuildResource } from '../../lib/resource.js';
import { duplicateTaskType } from '../../lib/runner.js';
import { parseSteps, type StepSpec } from '../../lib/steps.js';
import type { BuildRef } from '../../lib/types.js';
import { usageError } from './exit-codes.js';

export const HELP = `Usage: spot-run [options]

Runs a Build's steps one after another inside its build pod. Each step is a condition on the
Build (In Progress, then Success or Error); the phase (Running, Done, Errored) and events follow.
On the published Spot CRD the phase is status.stage and, conditions not being stored, each step's
start and end are events.

Options:
  --build NS/NAME        the Build to report on (default: env BUILD_REFERENCE)
  --step "TYPE=COMMAND"  a step; TYPE is the condition type, COMMAND runs with sh -c (repeatable)
  --tasks FILE           steps from a JSON file: [{"type", "command" | "argv", "timeoutSeconds"?, "env"?}]
                         (its steps run before any --step)
  --server URL           out-of-cluster: the API server (http only to a loopback host)
  --token-file FILE      out-of-cluster: a bearer token file (re-read when it changes)
  --ca-file FILE         out-of-cluster: CA bundle to trust instead of the system roots
  --phase-field FIELD    phase or stage: where the phase is written (default: stage when the Build
                         has status.stage and no status.phase, as the published Spot CRD; else phase)
  --resource PLURAL.VERSION.GROUP
                         the Builds' custom resource (default builds.v1alpha1.spot.release.com);
                         the kind is taken from the server's answer
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
  Steps get SPOT_RESULTS_DIR, a fresh folder: writing image-url, image-digest (sha256:...; else
  taken from an image-url ending @sha256:<64 hex>) and image-metadata (a JSON object of strings)
  there sets status.image in the same write that marks the step Success.

Exit codes:
  0    all steps succeeded (phase Done)
  1    a step failed (phase Errored)
  2    usage or configuration error (nothing was sent)
  3    the API server would not take the report (unreachable after retries, 401/403, Build not found)
  130  interrupted by SIGINT
  143  interrupted by SIGTERM (pod deletion)
`;

/** Every flag spot-run accepts (--help lists each; a test checks it). */
export const OPTIONS = {
  build: { type: 'string' },
  step: { type: 'string', multiple: true },
  tasks: { type: 'string' },
  server: { type: 'string' },
  'token-file': { type: 'string' },
  'ca-file': { type: 'string' },
  'phase-field': { type: 'string' },
  resource: { type: 'string' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
  grace: { type: 'string' },
  'api-timeout': { type: 'string' },
  'api-deadline': { type: 'string' },
  help: { type: 'boolean' },
  version: { type: 'boolean' },
} as const;

/** What the command line asks for, checked; the --tasks file is not read yet. */
export interface Options {
  ref: BuildRef;
  /** The --tasks file, whose steps run before the --step ones. */
  tasksFile: string | undefined;
  /** The --step flags, in order. */
  stepFlags: StepSpec[];
  /** Where the API server is and how to authenticate: the in-cluster folder unless --server is given. */
  connection: Pick<ConfigOptions, 'server' | 'tokenFile' | 'caFile'>;
  /** --phase-field; undefined: told from the Build as read. */
  phaseField: PhaseField | undefined;
  /** --resource; undefined: the default Build resource. */
  resource: BuildResource | undefined;
  format: LogFormat;
  level: LogLevel;
  graceMs: number;
  timeoutMs: number;
  deadlineMs: number;
}

/** Options with the steps to run, all of them known. */
export interface Plan extends Omit<Options, 'tasksFile' | 'stepFlags'> {
  steps: StepSpec[];
}

export type Command = { action: 'help' } | { action: 'version' } | { action: 'run'; options: Options };

const LOG_LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

/** `--grace 2.5` as 2500 ms; absent, the default. */
function durationFlag(value: string | undefined, flag: string, defaultSeconds: number): number {
  if (value === undefined) return defaultSeconds * 1000;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw usageError(`${flag} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return n * 1000;
}

/** `--step "TYPE=COMMAND"` as a step. */
export function parseStepFlag(flag: string): StepSpec {
  const at = flag.indexOf('=');
  const type = at > 0 ? flag.slice(0, at).trim() : '';
  const command = at > 0 ? flag.slice(at + 1) : '';
  if (!type || !command.trim()) throw usageError(`--step ${JSON.stringify(flag)} must look like "TYPE=COMMAND", e.g. "Building Image=make image"`);
  return { type, command };
}

/** Reads argv and the environment; throws a usage error (exit 2) naming the bad flag or variable. */
export function parseOptions(argv: readonly string[], env: Record<string, string | undefined>): Command {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: OPTIONS }));
  } catch (err) {
    throw usageError((err as Error).message.split('\n')[0]!);
  }
  if (values.help) return { action: 'help' };
  if (values.version) return { action: 'version' };

  const format = (values['log-format'] ?? 'text') as LogFormat;
  if (format !== 'text' && format !== 'json') throw usageError(`--log-format must be text or json, got ${JSON.stringify(format)}`);
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw usageError('--log-level must be debug, info, warn or error');
  const graceMs = durationFlag(values.grace, '--grace', 10);
  const timeoutMs = durationFlag(values['api-timeout'], '--api-timeout', 30);
  const deadlineMs = durationFlag(values['api-deadline'], '--api-deadline', 60);
  if (values.server === undefined && (values['token-file'] !== undefined || values['ca-file'] !== undefined)) {
    throw usageError('--token-file and --ca-file go with --server (in a pod the service-account folder is used)');
  }

  const phaseField = values['phase-field'] as PhaseField | undefined;
  if (phaseField !== undefined && !PHASE_FIELDS.includes(phaseField)) {
    throw usageError(`--phase-field must be phase or stage, got ${JSON.stringify(phaseField)}`);
  }
  let resource: BuildResource | undefined;
  if (values.resource !== undefined) {
    try {
      resource = parseResource(values.resource);
    } catch (err) {
      throw usageError(`--resource: ${(err as Error).message}`);
    }
  }

  const reference = values.build ?? env.BUILD_REFERENCE;
  if (reference === undefined || reference === '') throw usageError('no Build given: pass --build NAMESPACE/NAME or set BUILD_REFERENCE');
  let ref: BuildRef;
  try {
    ref = parseBuildReference(reference);
  } catch (err) {
    throw usageError(`${(err as Error).message}${values.build === undefined ? ' (from BUILD_REFERENCE)' : ''}`);
  }

  const connection: Options['connection'] = {
    ...(values.server !== undefined ? { server: values.server } : {}),
    ...(values['token-file'] !== undefined ? { tokenFile: values['token-file'] } : {}),
    ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
  };
  const stepFlags = (values.step ?? []).map(parseStepFlag);
  return { action: 'run', options: { ref, tasksFile: values.tasks, stepFlags, connection, phaseField, resource, format, level, graceMs, timeoutMs, deadlineMs } };
}

async function readTasksFile(file: string): Promise<StepSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read --tasks file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw usageError(`--tasks file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return parseSteps(json, `--tasks file ${file}`);
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

/** The steps to run: the --tasks file's, then the --step flags'; at least one, each type once. */
export async function planRun(options: Options): Promise<Plan> {
  const { tasksFile, stepFlags, ...rest } = options;
  const steps = [...(tasksFile !== undefined ? await readTasksFile(tasksFile) : []), ...stepFlags];
  if (steps.length === 0) throw usageError('no steps: pass --step "TYPE=COMMAND" or --tasks FILE');
  const duplicate = duplicateTaskType(steps.map((s) => s.type));
  if (duplicate !== undefined) throw usageError(`duplicate step type ${JSON.stringify(duplicate)}: each step is its own condition and needs its own type`);
  return { ...rest, steps };
}
