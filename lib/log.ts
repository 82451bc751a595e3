/**
 * A small structured logger: `text` for people, `json` (one object per line) for log pipelines.
 * Every line passes through the secret filter (secrets.ts), so a token can never reach a log even
 * if some caller puts one in a message by mistake.
 */
import { redact, redactValue } from './secrets.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Where finished lines go (without the newline); default: stderr. */
  write?: (line: string) => void;
  /** Clock for the `time` field; tests pass a fixed one. */
  now?: () => Date;
}

function fieldValue(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' ? { name: value.name, code, message: value.message } : value.message;
  }
  return value;
}

function textValue(value: unknown): string {
  const v = fieldValue(value);
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v && typeof v === 'object' && 'message' in v) return JSON.stringify((v as { message: string }).message);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(options: LoggerOptions = {}, bound: LogFields = {}): Logger {
  const format = options.format ?? 'text';
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? (() => new Date());

  const emit = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (LEVELS[level] < threshold) return;
    // Values are redacted before they are serialised: JSON escapes a secret's quote or backslash,
    // and the escaped form would slip past a filter run on the finished line.
    const all: [string, unknown][] = [];
    for (const [k, v] of Object.entries({ ...bound, ...fields })) if (v !== undefined) all.push([redact(k), redactValue(fieldValue(v))]);
    const msg = redact(message);
    let line: string;
    if (format === 'json') {
      const entry: LogFields = { time: now().toISOString(), level, msg };
      for (const [k, v] of all) entry[k] = v;
      line = JSON.stringify(entry);
    } else {
      const parts = all.map(([k, v]) => `${k}=${textValue(v)}`);
      line = `${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${parts.length ? ` ${parts.join(' ')}` : ''}`;
    }
    // And the finished line once more, for what serialisation did not escape.
    write(redact(line));
  };

  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(options, { ...bound, ...fields }),
  };
}

/** Drops everything; the default for library callers who did not ask for logs. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
