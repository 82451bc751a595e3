/**
 * Steps: a shell command or an argv as a runner task, for `spot-run` and for any build program
 * that runs tools. Each step is a child process in its own process group, its output streamed live
 * with a prefix and redacted (output.ts), the tail of its stderr kept (bounded) for the failure
 * message, a per-step timeout, and a results folder through which it hands back what it produced
 * (results.ts).
 */
import { spawn } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortedError, TaskFailure } from './errors.js';
import type { Logger } from './log.js';
import { lineByLineFormat, prefixFormat, relayOutput, TailBuffer, type LineFormat } from './output.js';
import { folderIdentity, readResults } from './results.js';
import { containsSecret } from './secrets.js';
import type { Task, TaskResult } from './runner.js';

export interface StepSpec {
  /** Condition type, e.g. `Building Image`. */
  type: string;
  /** Run with `sh -c`. Exactly one of `command` and `argv`. */
  command?: string;
  /** Run directly, no shell. */
  argv?: string[];
  timeoutSeconds?: number;
  /** Added to the inherited environment. */
  env?: Record<string, string>;
}

export interface StepOptions {
  /** How one line of a step's output is shown (default `[TYPE] line`; `spot-run --log-format json` makes it a JSON object). */
  formatLine?: (type: string, stream: 'stdout' | 'stderr', line: string) => string;
  /** Where formatted output goes (default: this process's stdout and stderr). */
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  /** Time between TERM and KILL when a step is stopped (default 5 s). */
  killGraceMs?: number;
  /** How much of the stderr tail goes into a failure message. */
  tailLines?: number;
  tailBytes?: number;
  /** Parent folder of the results folders (default the OS temp folder). */
  resultsParent?: string;
  /**
   * The whole build's deadline (`spot-run --timeout`): when `signal` fires, the running step is
   * stopped as on its own timeout (reason `Timeout`), and a step that has not started yet fails so.
   */
  deadline?: { signal: AbortSignal; seconds: number };
  /**
   * Run the step as this user (spot-run's `--step-user`), so it cannot read what only this
   * process's user may: the service-account token. Needs root or CAP_SETUID/CAP_SETGID; the
   * results folder is handed to that user.
   */
  user?: { uid: number; gid: number };
}

export { TailBuffer } from './output.js';

export { imageDigest, RESULT_FILES } from './results.js';

/** `[TYPE] line`, how a step's output shows in text logs. */
export function prefixLine(type: string, _stream: 'stdout' | 'stderr', line: string): string {
  return `[${type}] ${line}`;
}

/** The step's environment: ours plus its own, minus anything that carries a secret we hold. */
function stepEnv(spec: StepSpec, resultsDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !containsSecret(v)) env[k] = v;
  return { ...env, ...spec.env, SPOT_RESULTS_DIR: resultsDir, SPOT_STEP: spec.type };
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Process groups of the steps running now. A forced exit (a second signal, the grace period
 * running out) skips every pending timer, the KILL included: the 'exit' hook kills what is left,
 * so no step outlives the runtime.
 */
const runningGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  runningGroups.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const group of runningGroups) killGroup(group, 'SIGKILL');
  });
}

/** Runs one step to completion; resolves with its results, rejects with a `TaskFailure` or `AbortedError`. */
export async function runStep(spec: StepSpec, signal: AbortSignal, log: Logger, options: StepOptions = {}): Promise<TaskResult> {
  const resultsDir = await mkdtemp(join(options.resultsParent ?? tmpdir(), 'spot-results-'));
  try {
    if (options.user) await chown(resultsDir, options.user.uid, options.user.gid);
    const identity = await folderIdentity(resultsDir);
    await execute(spec, resultsDir, signal, log, options);
    const status = await readResults(resultsDir, spec.type, identity);
    return status ? { status } : {};
  } finally {
    await rm(resultsDir, { recursive: true, force: true });
  }
}

function execute(spec: StepSpec, resultsDir: string, signal: AbortSignal, log: Logger, options: StepOptions): Promise<void> {
  const [file, args] = spec.argv ? [spec.argv[0]!, spec.argv.slice(1)] : ['sh', ['-c', spec.command ?? '']];
  const killGraceMs = options.killGraceMs ?? 5_000;
  const format = (stream: 'stdout' | 'stderr'): LineFormat => {
    const custom = options.formatLine;
    return custom === undefined || custom === prefixLine
      ? prefixFormat(prefixLine(spec.type, stream, ''))
      : lineByLineFormat((line) => custom(spec.type, stream, line));
  };
  const tail = new TailBuffer(options.tailLines ?? 20, options.tailBytes ?? 2048);

  return new Promise<void>((resolve, reject) => {
    signal.throwIfAborted();
    const deadline = options.deadline;
    if (deadline?.signal.aborted) {
      reject(new TaskFailure('Timeout', `the build's timeout of ${deadline.seconds}s passed before the step started`));
      return;
    }
    // detached: its own process group, so a stop reaches the step's children too.
    const child = spawn(file, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: stepEnv(spec, resultsDir), ...options.user });
    trackGroup(child.pid);
    // Our stdout and stderr are pipes to the container runtime: when the step writes faster than
    // they are read, relayOutput pauses the step's stream until ours drains, so its output never
    // piles up in our memory.
    const out = relayOutput(child.stdout, format('stdout'), options.stdout ?? process.stdout);
    const err = relayOutput(child.stderr, format('stderr'), options.stderr ?? process.stderr, tail);

    let stopped: { reason: 'Timeout' | 'Aborted'; at: number } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: 'Timeout' | 'Aborted') => {
      if (stopped) return;
      stopped = { reason, at: Date.now() };
      log.debug(`stopping step: ${reason === 'Timeout' ? 'timed out' : 'interrupted'}`, { pid: child.pid });
      killGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), killGraceMs);
    };
    const timeout =
      spec.timeoutSeconds !== undefined ? setTimeout(() => stop('Timeout'), spec.timeoutSeconds * 1000) : undefined;
    const onAbort = () => stop('Aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    let buildTimeout = false;
    const onDeadline = () => {
      if (!stopped) buildTimeout = true;
      stop('Timeout');
    };
    deadline?.signal.addEventListener('abort', onDeadline, { once: true });

    const finish = () => {
      if (child.pid !== undefined) runningGroups.delete(child.pid);
      clearTimeout(timeout);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      deadline?.signal.removeEventListener('abort', onDeadline);
      out.end();
      err.end();
    };
    // The leader exited: anything it left running in its group goes too, so the pipes close and
    // no stray process outlives its step.
    child.on('exit', () => killGroup(child.pid, 'SIGKILL'));
    child.on('error', (e: NodeJS.ErrnoException) => {
      finish();
      reject(new TaskFailure('StepFailed', `cannot start ${JSON.stringify(file)}: ${e.code ?? e.message}`, { cause: e }));
    });
    child.on('close', (code, sig) => {
      finish();
      const failure = stepFailure({
        code,
        signal: sig,
        stopped: stopped?.reason,
        tail: tail.text(),
        timeoutSeconds: buildTimeout ? deadline!.seconds : spec.timeoutSeconds,
        buildTimeout,
      });
      if (failure) reject(failure);
      else resolve();
    });
  });
}

/** How a step's process ended, as `stepFailure` needs it. */
export interface StepExit {
  /** Exit code, or null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why we stopped it, if we did. */
  stopped: 'Timeout' | 'Aborted' | undefined;
  /** The kept stderr tail (`TailBuffer.text()`, already redacted). */
  tail: string;
  timeoutSeconds: number | undefined;
  /** The build's deadline stopped it, not the step's own timeout (`timeoutSeconds` is then the build's). */
  buildTimeout?: boolean;
}

/**
 * Why a finished step failed, or undefined when it succeeded: a `TaskFailure` (its reason goes
 * into the condition, its message, with the stderr tail, into the condition and a Warning event),
 * or an `AbortedError` when it was stopped by an interruption.
 */
export function stepFailure(exit: StepExit): TaskFailure | AbortedError | undefined {
  if (exit.stopped === 'Aborted') return new AbortedError('step interrupted', undefined);
  const lastLines = exit.tail ? `; last stderr lines:\n${exit.tail}` : '';
  if (exit.stopped === 'Timeout') {
    const summary = exit.buildTimeout ? `the build's timeout of ${exit.timeoutSeconds}s passed and the step was stopped` : `timed out after ${exit.timeoutSeconds}s and was stopped`;
    return new TaskFailure('Timeout', `${summary}${lastLines}`, { summary });
  }
  if (exit.code === 0) return undefined;
  const how = exit.code !== null ? `exit code ${exit.code}` : `killed by ${exit.signal}`;
  return new TaskFailure('StepFailed', `${how}${lastLines}`, { summary: how });
}

/** A step as a runner task. */
export function stepTask(spec: StepSpec, options: StepOptions = {}): Task {
  return { type: spec.type, run: ({ signal, log }) => runStep(spec, signal, log, options) };
}

/**
 * Checks a list of steps read from JSON (`spot-run --tasks FILE`'s format); returns the steps or
 * throws a TypeError naming the bad entry. `source` says where the list came from, for the message.
 */
export function parseSteps(value: unknown, source: string): StepSpec[] {
  if (!Array.isArray(value)) throw new TypeError(`${source} must hold a JSON list of steps`);
  return value.map((entry, i) => {
    const where = `${source} step ${i + 1}`;
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new TypeError(`${where} is not an object`);
    const { type, command, argv, timeoutSeconds, env, ...rest } = entry as Record<string, unknown>;
    const unknown = Object.keys(rest);
    if (unknown.length) throw new TypeError(`${where} has unknown field ${JSON.stringify(unknown[0])}`);
    if (typeof type !== 'string' || type.trim() === '') throw new TypeError(`${where} needs a "type" (the condition type)`);
    if ((command === undefined) === (argv === undefined)) throw new TypeError(`${where} (${type}) needs exactly one of "command" or "argv"`);
    if (command !== undefined && (typeof command !== 'string' || command.trim() === '')) {
      throw new TypeError(`${where} (${type}): "command" must be a non-empty string`);
    }
    if (argv !== undefined && (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))) {
      throw new TypeError(`${where} (${type}): "argv" must be a non-empty list of strings`);
    }
    if (timeoutSeconds !== undefined && !(typeof timeoutSeconds === 'number' && timeoutSeconds > 0 && Number.isFinite(timeoutSeconds))) {
      throw new TypeError(`${where} (${type}): "timeoutSeconds" must be a positive number`);
    }
    if (env !== undefined && (!env || typeof env !== 'object' || Array.isArray(env) || !Object.values(env).every((v) => typeof v === 'string'))) {
      throw new TypeError(`${where} (${type}): "env" must be an object of strings`);
    }
    const spec: StepSpec = { type: type.trim() };
    if (command !== undefined) spec.command = command as string;
    if (argv !== undefined) spec.argv = argv as string[];
    if (timeoutSeconds !== undefined) spec.timeoutSeconds = timeoutSeconds as number;
    if (env !== undefined) spec.env = env as Record<string, string>;
    return spec;
  });
}
