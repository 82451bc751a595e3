/**
 * Reading the files configuration comes from: every problem is a `ConfigError` naming the file.
 *
 * Read synchronously: a few small files at start (and the token at most once a minute). Through
 * fs/promises each open, stat, read and close would be a trip through libuv's thread pool, which
 * the pod's start would wait on (BENCHMARKS.md, start-up).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.js';

/**
 * The content of `path`, which must exist and not be blank. `what` names the file in the error
 * ("CA file", "service-account token file"); `hint` says how to fix it.
 */
export async function readRequiredFile(path: string, what: string, hint = ''): Promise<string> {
  return (await readConfigFile(path, what, hint, false))!;
}

/** As `readRequiredFile`, but a file that does not exist is undefined instead of an error. */
export function readOptionalFile(path: string, what: string, hint = ''): Promise<string | undefined> {
  return readConfigFile(path, what, hint, true);
}

async function readConfigFile(path: string, what: string, hint: string, optional: boolean): Promise<string | undefined> {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && optional) return undefined;
    const why = code === 'ENOENT' ? 'is missing' : `cannot be read (${code ?? 'unknown error'})`;
    throw new ConfigError(`${what} ${path} ${why}${hint}`, path, { cause: err });
  }
  if (raw.trim() === '') throw new ConfigError(`${what} ${path} is empty${hint}`, path);
  return raw;
}
