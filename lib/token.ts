/**
 * Bearer tokens. The kubelet rotates a bound service-account token once 80 % of its lifetime has
 * passed, and a lifetime can be as short as 10 minutes, so the file is re-read at most once a
 * minute, as client-go's cached file token source does (transport/token_source.go), keeping the
 * last good token when a re-read fails. After a 401 the transport asks for a forced re-read
 * (`refresh`).
 */
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

/** Reads and trims a token file; a missing or empty file is a `ConfigError` naming the path. */
export async function readTokenFile(path: string, hint = ''): Promise<string> {
  const token = (await readRequiredFile(path, 'service-account token file', hint)).trim();
  registerSecret(token);
  return token;
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
  }
  async token(): Promise<string> {
    return this.value;
  }
  async refresh(): Promise<boolean> {
    return false;
  }
}
