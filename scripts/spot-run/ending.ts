/**
 * How spot-run tells how it ended, besides its exit code: the one stderr line of a failure (text,
 * or a JSON object with --log-format json) and the termination message (lib/termination.ts) in the
 * file --termination-log names, written on every exit path once the flags are parsed.
 */
import { accessSync, constants } from 'node:fs';
import { createLogger, type LogFormat } from '../../lib/log.js';
import { redact } from '../../lib/secrets.js';
import { summarizeError, writeTerminationMessage, type TerminationSummary } from '../../lib/termination.js';
import { CommandFailure, ExitCodes } from './exit-codes.js';

/** Where the termination message goes. `ifWritable`: the default file, used only when it can be written (the kubelet creates it). */
export interface TerminationLogSetting {
  path: string;
  ifWritable: boolean;
}

/** Where the command's output goes, known once its flags are parsed. */
export interface Output {
  format: LogFormat;
  /** Undefined: no termination message (`--termination-log ''`). */
  terminationLog: TerminationLogSetting | undefined;
}

/** One line on stderr, in the command's format: `spot-run: MESSAGE`, or a JSON log object. */
export function writeLine(format: LogFormat, level: 'warn' | 'error', message: string, fields: Record<string, unknown> = {}): void {
  if (format === 'json') createLogger({ format: 'json' })[level](message, fields);
  else process.stderr.write(`${redact(`spot-run: ${message}`)}\n`);
}

/** Writes the termination message when one is wanted; a write that fails costs one warning line, never the exit code. */
export function writeTermination(output: Output | undefined, summary: TerminationSummary): void {
  const setting = output?.terminationLog;
  if (!setting) return;
  if (setting.ifWritable) {
    try {
      accessSync(setting.path, constants.W_OK);
    } catch {
      return; // not in a pod (or a pod without one): nothing to write to
    }
  }
  try {
    writeTerminationMessage(setting.path, summary);
  } catch (err) {
    writeLine(output.format, 'warn', `could not write the termination message to ${setting.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Tells a failure that ends the command (a usage error, a refused report, a bug) and returns its
 * exit code: its line on stderr and, when the output is known, the termination message.
 */
export function endWithFailure(err: unknown, output: Output | undefined, context: { task?: string | undefined; reported?: boolean } = {}): number {
  const format = output?.format ?? 'text';
  if (err instanceof CommandFailure) {
    writeLine(format, 'error', err.message, format === 'json' ? { exitCode: err.exitCode } : {});
    writeTermination(output, summarizeError(err, { exitCode: err.exitCode, task: context.task, reported: context.reported ?? false }));
    return err.exitCode;
  }
  // Not an expected failure: a bug. Say so, with the stack, and fail like a failed step.
  const message = `internal error (please report it): ${err instanceof Error ? err.message : String(err)}`;
  const stack = err instanceof Error ? err.stack : undefined;
  if (format === 'json') writeLine(format, 'error', message, { exitCode: ExitCodes.Failed, stack });
  else process.stderr.write(`${redact(`spot-run: internal error (please report it): ${stack ?? message}`)}\n`);
  writeTermination(output, summarizeError(new Error(message), { exitCode: ExitCodes.Failed, task: context.task, reported: context.reported ?? false }));
  return ExitCodes.Failed;
}
