/**
 * Bearer tokens. The kubelet rotates a bound service-account token once 80 % of its lifetime has
 * passed, and a lifetime can be as short as 10 minutes, so the file is re-read at most once a
 * minute, as client-go's cached file token source does (transport/token_source.go), keeping the
 * last good token when a re-read fails. After a 401 the transport asks for a forced re-read
 * (`refresh`).
 */
import { ConfigError } from './errors.js';
import { readRequiredFile } from './files.js';
import { silentLogger, type Logger } from './log.js';
import { registerSecret } from './secrets.js';

export interface TokenSource {
  /** The token to send now (cached; re-read when older than the period). */
  token(): Promise<string>;
  /** Re-reads now; resolves true when the token changed (a retry can then succeed). */
  refresh(): Promise<boolean>;
}

export const TOKEN_REREAD_PERIOD_MS = 60_000;

/**
 * Shortest token accepted. Redaction ignores shorter values (they would mask ordinary words), so a
 * shorter token could not be kept out of logs; a real service-account token is hundreds long.
 */
export const MIN_TOKEN_LENGTH = 8;

/**
 * Checks that `token` can be sent and kept secret: long enough to be redacted, and only visible
 * ASCII (a CR/LF or another control character would be refused by the HTTP client on every
 * attempt, after the request was built). `what` names where it came from; the token itself is
 * never part of the message.
 */
export function checkToken(token: string, what: string, path?: string): string {
  const bad = /[^\x21-\x7e]/.exec(token);
  if (bad) {
    const code = bad[0].codePointAt(0)!;
    const kind = code === 0x0d || code === 0x0a ? 'a line break' : code === 0x20 || code === 0x09 ? 'white space' : code < 0x20 || code === 0x7f ? 'a control character' : 'a non-ASCII character';
    throw new ConfigError(`${what} holds ${kind} at character ${bad.index + 1}; a bearer token is one line of visible ASCII`, path);
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(`${what} is too short (${token.length} characters, at least ${MIN_TOKEN_LENGTH}); a real token is much longer, and one this short could not be kept out of logs`, path);
  }
  return token;
}

/** Reads and trims a token file; a missing, empty or unusable file is a `ConfigError` naming the path. */
export async function readTokenFile(path: string, hint = ''): Promise<string> {
  const token = (await readRequiredFile(path, 'service-account token file', hint)).trim();
  // Registered even when refused below: it is a credential whatever its shape.
  registerSecret(token);
  return checkToken(token, `service-account token file ${path}`, path);
}

export class FileTokenSource implements TokenSource {
  #current: string;
  #readAt: number;
  #pending: Promise<boolean> | undefined;

  constructor(
    readonly path: string,
    initial: string,
    private readonly options: { periodMs?: number; now?: () => number; logger?: Logger } = {},
  ) {
    registerSecret(initial);
    checkToken(initial, `the token read from ${path}`, path);
    this.#current = initial;
    this.#readAt = this.#now();
  }

  /** Reads the file once and starts the source from it. */
  static async open(
    path: string,
    options: { periodMs?: number; now?: () => number; logger?: Logger; hint?: string } = {},
  ): Promise<FileTokenSource> {
    return new FileTokenSource(path, await readTokenFile(path, options.hint), options);
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }

  async token(): Promise<string> {
    if (this.#now() - this.#readAt >= (this.options.periodMs ?? TOKEN_REREAD_PERIOD_MS)) await this.refresh();
    return this.#current;
  }

  refresh(): Promise<boolean> {
    // Concurrent callers share one read.
    this.#pending ??= this.#reread().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #reread(): Promise<boolean> {
    this.#readAt = this.#now();
    try {
      const next = await readTokenFile(this.path);
      const changed = next !== this.#current;
      this.#current = next;
      if (changed) (this.options.logger ?? silentLogger).debug('service-account token re-read: changed', { path: this.path });
      return changed;
    } catch (err) {
      (this.options.logger ?? silentLogger).warn('unable to re-read the service-account token; keeping the last good one', {
        path: this.path,
        error: err,
      });
      return false;
    }
  }
}

/** A fixed token (out-of-cluster use); a 401 cannot be cured by re-reading it. */
export class StaticTokenSource implements TokenSource {
  constructor(private readonly value: string) {
    registerSecret(value);
    checkToken(value, 'the token given');
  }
  async token(): Promise<string> {
    return this.value;
  }
  async refresh(): Promise<boolean> {
    return false;
  }
}
