/** Reading the files configuration comes from: every problem is a `ConfigError` naming the file. */
import { readFile } from 'node:fs/promises';
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
    raw = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && optional) return undefined;
    const why = code === 'ENOENT' ? 'is missing' : `cannot be read (${code ?? 'unknown error'})`;
    throw new ConfigError(`${what} ${path} ${why}${hint}`, path, { cause: err });
  }
  if (raw.trim() === '') throw new ConfigError(`${what} ${path} is empty${hint}`, path);
  return raw;
}
