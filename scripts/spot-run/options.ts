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
import { MIN_MASKED_LENGTH } from '../../lib/secrets.js';
import { parseSteps, type StepSpec } from '../../lib/steps.js';
import { DEFAULT_TERMINATION_LOG } from '../../lib/termination.js';
import type { BuildRef } from '../../lib/types.js';
import { CommandFailure, usageError, type Output, type TerminationLogSetting } from './exit-codes.js';
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
  --tasks FILE           steps from a JSON file: [{"type", "command" | "argv", "timeoutSeconds"?, "env"?}],
                         or {"timeoutSeconds"?: N, "tasks": [...]} (its steps run before any --step)
  --timeout SECONDS      the whole build's deadline: the running step is stopped and fails with
                         reason Timeout (wins over the --tasks file's timeoutSeconds)
  --mask-env NAME        redact the value of env NAME (6 characters or more) from step output,
                         logs, condition and event messages (repeatable; also SPOT_MASK_ENV=A,B)
  --termination-log PATH where the JSON summary of the run goes at exit (default
                         /dev/termination-log when it is writable; '' for none)
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
  SPOT_MASK_ENV          comma-separated names of variables to mask, as --mask-env
  Steps get SPOT_RESULTS_DIR, a fresh folder: writing image-url, image-digest (sha256:...; else
  taken from an image-url ending @sha256:<64 hex>) and image-metadata (a JSON object of strings)
  there sets status.image in the same write that marks the step Success.

Exit codes:
  0    all steps succeeded and the Build's phase Done was written
  1    a step failed (phase Errored), or the build's --timeout passed
  2    usage or configuration error (nothing was sent)
  3    the API server would not take the report (unreachable after retries, 401/403, Build not
       found or replaced by another of the same name)
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
  timeout: { type: 'string' },
  'mask-env': { type: 'string', multiple: true },
  'termination-log': { type: 'string' },
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
  /** --timeout: the whole build's deadline, in seconds. */
  buildTimeoutSeconds: number | undefined;
  /** Values of the --mask-env / SPOT_MASK_ENV variables that are set (each 6 characters or more). */
  maskValues: string[];
  /** Where the log lines and the termination message go. */
  output: Output;
}

/** Options with the steps to run, all of them known. */
export interface Plan extends Omit<Options, 'tasksFile' | 'stepFlags'> {
  steps: StepSpec[];
}

export type Command = { action: 'help' } | { action: 'version' } | { action: 'run'; options: Options };

const LOG_LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

/** `--timeout 2.5` as 2.5; absent, undefined. */
function secondsFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw usageError(`${flag} must be a positive number of seconds, got ${shown(value)}`);
  return n;
}

/** `--grace 2.5` as 2500 ms; absent, the default. */
function durationFlag(value: string | undefined, flag: string, defaultSeconds: number): number {
  return (secondsFlag(value, flag) ?? defaultSeconds) * 1000;
}

/** --termination-log: a path; absent, the kubelet's default file if it is writable then; '' for none. */
function terminationLogSetting(value: string | undefined): TerminationLogSetting | undefined {
  if (value === undefined) return { path: DEFAULT_TERMINATION_LOG, ifWritable: true };
  return value === '' ? undefined : { path: value, ifWritable: false };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The values to mask: of each variable named by --mask-env and SPOT_MASK_ENV that is set. A short
 * value would mask ordinary text everywhere (and say little about the secret), so it is refused.
 */
function maskValues(flags: readonly string[], env: Record<string, string | undefined>): string[] {
  const named: Array<[name: string, source: string]> = [
    ...flags.map((name): [string, string] => [name, '--mask-env']),
    ...(env.SPOT_MASK_ENV ?? '')
      .split(',')
      .map((n) => n.trim())
      .filter((n) => n !== '')
      .map((name): [string, string] => [name, 'SPOT_MASK_ENV']),
  ];
  const values: string[] = [];
  for (const [name, source] of named) {
    if (!ENV_NAME.test(name)) throw usageError(`${source} names ${shown(name)}, which is not an environment variable name`);
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (value.length < MIN_MASKED_LENGTH) {
      throw usageError(
        `${source} names ${name}, whose value is shorter than ${MIN_MASKED_LENGTH} characters: too short to mask without hiding ordinary text; give it a longer value or stop masking it`,
      );
    }
    values.push(value);
  }
  return values;
}

/** Runs `parse`; a usage error it throws learns where the command's output goes, known from here on. */
function withOutput<T>(output: Output, parse: () => T): T {
  try {
    const result = parse();
    if (result instanceof Promise) return result.catch((err: unknown) => Promise.reject(attachOutput(err, output))) as T;
    return result;
  } catch (err) {
    throw attachOutput(err, output);
  }
}

function attachOutput(err: unknown, output: Output): unknown {
  if (err instanceof CommandFailure) err.output ??= output;
  return err;
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

  // From here on every failure is reported in the requested format and to the termination log.
  const output: Output = { format: 'text', terminationLog: terminationLogSetting(values['termination-log']) };
  return withOutput(output, () => parseRunOptions(values, env, output));
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; tokens: true }>>['values'];

function parseRunOptions(values: Values, env: Record<string, string | undefined>, output: Output): Command {
  const format = (values['log-format'] ?? 'text') as LogFormat;
  if (format !== 'text' && format !== 'json') throw usageError(`--log-format must be text or json, got ${shown(format)}`);
  output.format = format;
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw usageError(`--log-level must be debug, info, warn or error, got ${shown(level)}`);
  const graceMs = durationFlag(values.grace, '--grace', 10);
  const timeoutMs = durationFlag(values['api-timeout'], '--api-timeout', 30);
  const deadlineMs = durationFlag(values['api-deadline'], '--api-deadline', 60);
  const buildTimeoutSeconds = secondsFlag(values.timeout, '--timeout');
  const masked = maskValues(values['mask-env'] ?? [], env);
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
    options: {
      ref,
      tasksFile: values.tasks,
      stepFlags,
      connection,
      phaseField,
      resource,
      format,
      level,
      graceMs,
      timeoutMs,
      deadlineMs,
      stepUser,
      buildTimeoutSeconds,
      maskValues: masked,
      output,
    },
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

/** What a --tasks file holds: its steps, and the build's deadline when it sets one. */
interface TasksFile {
  steps: StepSpec[];
  timeoutSeconds: number | undefined;
}

/** A list of steps, or `{ "timeoutSeconds"?: N, "tasks": [...] }`. */
function parseTasksFile(json: unknown, file: string): TasksFile {
  const source = `--tasks file ${file}`;
  if (!json || typeof json !== 'object' || Array.isArray(json)) return { steps: parseSteps(json, source), timeoutSeconds: undefined };
  const { tasks, timeoutSeconds, ...rest } = json as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new TypeError(`${source} has unknown field ${shown(unknown[0]!)} (expected "tasks" and "timeoutSeconds")`);
  if (tasks === undefined) throw new TypeError(`${source} needs "tasks", the list of steps`);
  if (timeoutSeconds !== undefined && !(typeof timeoutSeconds === 'number' && timeoutSeconds > 0 && Number.isFinite(timeoutSeconds))) {
    throw new TypeError(`${source}: "timeoutSeconds" must be a positive number`);
  }
  return { steps: parseSteps(tasks, source), timeoutSeconds: timeoutSeconds as number | undefined };
}

async function readTasksFile(file: string): Promise<TasksFile> {
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
  let parsed: TasksFile;
  try {
    parsed = parseTasksFile(json, file);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  parsed.steps.forEach((step, i) => {
    const problem = conditionTypeProblem(step.type);
    if (problem) throw usageError(`--tasks file ${file} step ${i + 1}: "type" ${problem}`);
  });
  return parsed;
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

/** The steps to run: the --tasks file's, then the --step flags'; at least one, each type once; the build's deadline. */
export function planRun(options: Options): Promise<Plan> {
  return withOutput(options.output, async () => {
    const { tasksFile, stepFlags, ...rest } = options;
    const file = tasksFile !== undefined ? await readTasksFile(tasksFile) : undefined;
    const steps = [...(file?.steps ?? []), ...stepFlags];
    if (steps.length === 0) throw usageError('no steps: pass --step "TYPE=COMMAND" or --tasks FILE');
    const duplicate = duplicateTaskType(steps.map((s) => s.type));
    if (duplicate !== undefined) throw usageError(`duplicate step type ${JSON.stringify(duplicate)}: each step is its own condition and needs its own type`);
    if (options.stepUser && (await canSwitchUser()) === false) {
      throw usageError(`--step-user needs spot-run to run as root or with CAP_SETUID, CAP_SETGID and CAP_CHOWN (it runs as user ${process.getuid?.()} without them)`);
    }
    // The command line wins over the file.
    return { ...rest, steps, buildTimeoutSeconds: rest.buildTimeoutSeconds ?? file?.timeoutSeconds };
  });
}
