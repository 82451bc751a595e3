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
import { conditionTypeProblem } from '../../lib/conditions.js';
import { parseBuildReference, shown, validateName } from '../../lib/names.js';
import { parseResource, type BuildResource } from '../../lib/resource.js';
import { duplicateTaskType } from '../../lib/runner.js';
import { parseSteps, type StepSpec } from '../../lib/steps.js';
import type { BuildRef } from '../../lib/types.js';
import { CommandFailure, usageError } from './exit-codes.js';
import { findJsonSyntaxFault } from './json-syntax.js';

export const HELP = `Usage: spot-run [options]

Runs a Build's steps one after another inside its build pod. Each step is a condition on the
Build (In Progress, then Success or Error); the phase (Running, Done, Errored) and events follow.
On the published Spot CRD the phase is status.stage and, conditions not being stored, each step's
start and end are events.

Options:
  --build [NS/]NAME      the Build to report on (default: env BUILD_REFERENCE); without NS, the
                         pod's namespace (POD_NAMESPACE, else the service-account namespace file)
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
  --step-user UID[:GID]  run steps as this user (GID defaults to UID), so they cannot read the
                         pod's token; needs root or CAP_SETUID, CAP_SETGID and CAP_CHOWN, and
                         the token mounted unreadable by that user (defaultMode 0400)
  --help, -h             show this help
  --version, -v          print the version

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
  'step-user': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

/** What the command line asks for, checked; the --tasks file is not read yet. */
/** A Build named without a namespace (`--build NAME`): the pod's namespace, known once the configuration is loaded. */
export interface NameOnlyRef {
  namespace: undefined;
  name: string;
}

/** The user steps run as (`--step-user`). */
export interface StepUser {
  uid: number;
  gid: number;
}

export interface Options {
  ref: BuildRef | NameOnlyRef;
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
  stepUser: StepUser | undefined;
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
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw usageError(`${flag} must be a positive number of seconds, got ${shown(value)}`);
  return n * 1000;
}

/** `--step "TYPE=COMMAND"` as a step. */
export function parseStepFlag(flag: string): StepSpec {
  const at = flag.indexOf('=');
  const type = at > 0 ? flag.slice(0, at).trim() : '';
  const command = at > 0 ? flag.slice(at + 1) : '';
  if (!type || !command.trim()) throw usageError(`--step must be "TYPE=COMMAND", e.g. "Building Image=make image", got ${shown(flag)}`);
  const problem = conditionTypeProblem(type);
  if (problem) throw usageError(`--step TYPE ${problem}, got ${shown(type)}`);
  return { type, command };
}

/** `--step-user UID[:GID]`: numbers, not root, not spot-run's own user (that would keep nothing from the steps). */
export function parseStepUser(value: string, ownUid: number | undefined): StepUser {
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(value);
  const uid = m ? Number(m[1]) : NaN;
  const gid = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || uid > 0xfffffffe || gid > 0xfffffffe) throw usageError(`--step-user must be UID or UID:GID (numbers), got ${shown(value)}`);
  if (uid === 0 || gid === 0) throw usageError(`--step-user must not be root (0): steps would keep every privilege, got ${shown(value)}`);
  if (uid === ownUid) throw usageError(`--step-user must differ from spot-run's own user (${ownUid}), or steps could still read its token, got ${shown(value)}`);
  return { uid, gid };
}

/** Flag spellings parseArgs knows, to tell a flag from a value that starts with a dash. */
const FLAG_SPELLINGS = new Set(
  Object.entries(OPTIONS).flatMap(([name, o]) => [`--${name}`, ...('short' in o ? [`-${o.short}`] : [])]),
);
const STRING_FLAGS = new Set(Object.entries(OPTIONS).flatMap(([name, o]) => (o.type === 'string' ? [`--${name}`] : [])));

/**
 * `--grace -1` as `--grace=-1`: parseArgs calls a value that starts with a dash "ambiguous", where
 * the flag's own check says what is wrong with it. A following flag stays a flag.
 */
function joinDashValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (STRING_FLAGS.has(arg) && next !== undefined && next.startsWith('-') && next !== '--' && !FLAG_SPELLINGS.has(next.split('=')[0]!)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** parseArgs' refusals in the command's words (a flag without its value, a flag given twice). */
function argvError(err: unknown, argv: readonly string[]): CommandFailure {
  const e = err as Error & { code?: string };
  const flag = /Option '(?:-\w, )?(--[\w-]+)/.exec(e.message)?.[1];
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag && STRING_FLAGS.has(flag)) {
    const next = argv[argv.indexOf(flag) + 1];
    return usageError(`${flag} must be followed by a value, got ${next === undefined ? 'nothing' : `the flag ${shown(next)}`}`);
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) return usageError(`${flag} takes no value`);
  return usageError(e.message.split('\n')[0]!);
}

/** Reads argv and the environment; throws a usage error (exit 2) naming the bad flag or variable. */
export function parseOptions(argv: readonly string[], env: Record<string, string | undefined>): Command {
  const args = joinDashValues(argv);
  let parsed;
  try {
    parsed = parseArgs({ args, strict: true, allowPositionals: false, options: OPTIONS, tokens: true });
  } catch (err) {
    throw argvError(err, args);
  }
  const { values, tokens } = parsed;
  if (values.help) return { action: 'help' };
  if (values.version) return { action: 'version' };
  // A flag given twice is a mistake (which one was meant?), not "the last one wins".
  const seen = new Map<string, string | undefined>();
  for (const t of tokens) {
    if (t.kind !== 'option' || (OPTIONS[t.name as keyof typeof OPTIONS] as { multiple?: boolean }).multiple) continue;
    if (seen.has(t.name)) {
      const [a, b] = [seen.get(t.name), t.value];
      throw usageError(`--${t.name} must be given once, got ${a === undefined ? 'it' : shown(a)} and ${b === undefined ? 'it again' : shown(b)}`);
    }
    seen.set(t.name, t.value);
  }

  const format = (values['log-format'] ?? 'text') as LogFormat;
  if (format !== 'text' && format !== 'json') throw usageError(`--log-format must be text or json, got ${shown(format)}`);
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw usageError(`--log-level must be debug, info, warn or error, got ${shown(level)}`);
  const graceMs = durationFlag(values.grace, '--grace', 10);
  const timeoutMs = durationFlag(values['api-timeout'], '--api-timeout', 30);
  const deadlineMs = durationFlag(values['api-deadline'], '--api-deadline', 60);
  if (values.server === undefined && (values['token-file'] !== undefined || values['ca-file'] !== undefined)) {
    throw usageError('--token-file and --ca-file go with --server (in a pod the service-account folder is used)');
  }
  const stepUser = values['step-user'] === undefined ? undefined : parseStepUser(values['step-user'], process.getuid?.());

  const phaseField = values['phase-field'] as PhaseField | undefined;
  if (phaseField !== undefined && !PHASE_FIELDS.includes(phaseField)) {
    throw usageError(`--phase-field must be phase or stage, got ${shown(phaseField)}`);
  }
  let resource: BuildResource | undefined;
  if (values.resource !== undefined) {
    try {
      resource = parseResource(values.resource);
    } catch (err) {
      throw usageError(`--resource: ${(err as Error).message}`);
    }
  }

  const ref = buildFlag(values.build, env.BUILD_REFERENCE);
  const connection: Options['connection'] = {
    ...(values.server !== undefined ? { server: values.server } : {}),
    ...(values['token-file'] !== undefined ? { tokenFile: values['token-file'] } : {}),
    ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
  };
  const stepFlags = (values.step ?? []).map(parseStepFlag);
  return {
    action: 'run',
    options: { ref, tasksFile: values.tasks, stepFlags, connection, phaseField, resource, format, level, graceMs, timeoutMs, deadlineMs, stepUser },
  };
}

/**
 * The Build: `--build [NS/]NAME` (a NAME alone means the pod's namespace, as kubectl reads it), else
 * `BUILD_REFERENCE`, which the operator always sets as `namespace/name`.
 */
function buildFlag(flag: string | undefined, fromEnv: string | undefined): BuildRef | NameOnlyRef {
  if (flag !== undefined) {
    try {
      return flag.includes('/') ? parseBuildReference(flag) : { namespace: undefined, name: validateName(flag, 'Build name') };
    } catch (err) {
      throw usageError(`--build must be [NAMESPACE/]NAME, got ${shown(flag)}: ${(err as Error).message}`);
    }
  }
  if (fromEnv === undefined || fromEnv === '') throw usageError('no Build given: pass --build NAMESPACE/NAME or set BUILD_REFERENCE');
  try {
    return parseBuildReference(fromEnv);
  } catch (err) {
    throw usageError(`${(err as Error).message} (from BUILD_REFERENCE)`);
  }
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
  } catch {
    // Position and cause only: JSON.parse's message quotes the file, whose env may hold secrets.
    const fault = findJsonSyntaxFault(text);
    throw usageError(`--tasks file ${file} is not valid JSON${fault ? `: line ${fault.line}, column ${fault.column}: ${fault.cause}` : ''}`);
  }
  let steps: StepSpec[];
  try {
    steps = parseSteps(json, `--tasks file ${file}`);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  steps.forEach((step, i) => {
    const problem = conditionTypeProblem(step.type);
    if (problem) throw usageError(`--tasks file ${file} step ${i + 1}: "type" ${problem}`);
  });
  return steps;
}

/**
 * Whether this process can start a step as another user: CAP_CHOWN (0, the results folder),
 * CAP_SETGID (6) and CAP_SETUID (7) in its effective set, read from /proc (Linux; root with
 * dropped capabilities has none of them). Undefined when it cannot be told.
 */
async function canSwitchUser(): Promise<boolean | undefined> {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(await readFile('/proc/self/status', 'utf8'))?.[1];
    return hex === undefined ? undefined : (BigInt(`0x${hex}`) & 0xc1n) === 0xc1n;
  } catch {
    return undefined;
  }
}

/** The steps to run: the --tasks file's, then the --step flags'; at least one, each type once. */
export async function planRun(options: Options): Promise<Plan> {
  const { tasksFile, stepFlags, ...rest } = options;
  const steps = [...(tasksFile !== undefined ? await readTasksFile(tasksFile) : []), ...stepFlags];
  if (steps.length === 0) throw usageError('no steps: pass --step "TYPE=COMMAND" or --tasks FILE');
  const duplicate = duplicateTaskType(steps.map((s) => s.type));
  if (duplicate !== undefined) throw usageError(`duplicate step type ${JSON.stringify(duplicate)}: each step is its own condition and needs its own type`);
  if (options.stepUser && (await canSwitchUser()) === false) {
    throw usageError(`--step-user needs spot-run to run as root or with CAP_SETUID, CAP_SETGID and CAP_CHOWN (it runs as user ${process.getuid?.()} without them)`);
  }
  return { ...rest, steps };
}
