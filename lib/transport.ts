/**
 * The one request function. Every call goes to one undici dispatcher that is passed explicitly
 * (never the global dispatcher, never `fetch`), so a test's MockAgent is the whole network and a
 * real process trusts exactly the mounted CA. Every body is read to the end or destroyed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import {
  AbortedError,
  ApiError,
  ConfigError,
  isUnauthorized,
  NetworkError,
  RequestTooLargeError,
  ResponseError,
  TimeoutError,
  type RequestTarget,
} from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { redact } from './secrets.js';
import { DEFAULT_RETRY_POLICY, parseRetryAfter, retryDelay, wasSent, type AttemptFailure, type RetryPolicy } from './retry.js';
import type { TokenSource } from './token.js';
import type { Status } from './types.js';
import { Agent, request as send } from './undici.js';
import { VERSION } from './version.js';

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_BODY_LIMIT_BYTES = 10 * 1024 * 1024;
/**
 * Cap on a request body. kube-apiserver answers 413 at 3 MiB (--max-request-bytes) and etcd's
 * default value limit is 1.5 MiB; a status that large is a bug on our side long before that, and
 * every write of it would cost the API server and etcd.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024;
/** TCP keep-alive probe delay: below the ~350 s idle cut of cloud load balancers with room to spare, and below undici's 60 s. */
export const KEEPALIVE_INITIAL_DELAY_MS = 30_000;
/**
 * Cap on an answer's headers: Node's default, given explicitly because left unset undici reads it
 * from node:http, which the bundles then load for that one number (~4 ms of the command's start;
 * lazily, scripts/bundle-options.ts). An API server's answer has well under 1 KiB of headers.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH';

export interface TransportOptions {
  /** Origin of the API server. */
  server: string;
  /** PEM to trust; when set it is the *only* trust (the system roots are not added). */
  ca?: string | undefined;
  tokenSource?: TokenSource | undefined;
  /** Use this dispatcher instead of creating an Agent (tests hand in undici's MockAgent). Not closed by `close()`. */
  dispatcher?: Dispatcher;
  /** Per-attempt timeout (default 30 s). */
  timeoutMs?: number;
  /** Cap on a response body (default 10 MiB). */
  bodyLimitBytes?: number;
  /** Cap on a request body (default 1 MiB): a larger one is a `RequestTooLargeError`, nothing sent. */
  maxRequestBytes?: number;
  retry?: Partial<RetryPolicy>;
  logger?: Logger;
  /** Source of jitter in [0, 1); tests pass a seeded one. */
  random?: () => number;
}

export interface RequestOptions {
  method: HttpMethod;
  /** Absolute path, built only from validated names. */
  path: string;
  /** JSON-serialisable body. */
  body?: unknown;
  contentType?: string;
  /**
   * Safe to send twice: the default for GET. Writes set it when a repeat cannot do harm (a
   * resourceVersion precondition, an event POST under a fixed name).
   */
  idempotent?: boolean;
  signal?: AbortSignal | undefined;
  /** Overrides the transport's per-attempt timeout. */
  timeoutMs?: number;
  /** Overrides the policy's overall deadline. */
  deadlineMs?: number;
  /**
   * Epoch ms by which the call this request belongs to must be over (a status update's GET,
   * writes and conflict re-reads share one): the earlier of this and the deadline applies.
   */
  deadlineAt?: number | undefined;
}

export interface Transport {
  readonly server: string;
  /** The retry policy's budget of one call, retries and waits included. */
  readonly deadlineMs: number;
  /** Sends the request with the retry policy; resolves to the parsed JSON body (undefined when empty). */
  request(options: RequestOptions): Promise<unknown>;
  /** Releases the agent and its sockets. */
  close(): Promise<void>;
}

/** Characters of a body kept in an error message. */
const SNIPPET_CHARS = 160;
/** Characters of a body looked at for the snippet, after redaction (whitespace runs collapse). */
const SNIPPET_WINDOW_CHARS = 4096;
/** Answers nested deeper than this are refused: no object the runtime reads comes near it. */
export const MAX_ANSWER_DEPTH = 64;

/**
 * A short printable start of a body for an error message. The whole body is redacted before any
 * cut: a cut first would leave all but the end of an echoed token, which no longer matches.
 */
function snippet(buf: Buffer): string {
  const text = redact(buf.toString('utf8'))
    .slice(0, SNIPPET_WINDOW_CHARS)
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS - 3)}...` : text;
}

/**
 * How deep `body`'s JSON nests (objects and arrays), counted on the bytes before parsing, stopping
 * as soon as it passes `limit`: a hostile answer nested thousands deep would otherwise overflow
 * the stack of whatever walks it next (a diff, a copy).
 */
export function jsonDepthExceeds(body: Buffer, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

function isJson(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return !!value && /^application\/([a-z0-9.+-]*\+)?json\b/i.test(value.trim());
}

function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** Which retry rule a failed attempt falls under, or undefined for failures never retried. */
function classify(err: unknown): AttemptFailure | undefined {
  if (err instanceof ApiError) return { kind: 'status', statusCode: err.statusCode, retryAfterSeconds: err.retryAfterSeconds };
  if (err instanceof NetworkError) return { kind: 'network', code: err.causeCode, sent: wasSent(err.causeCode) };
  if (err instanceof TimeoutError) return { kind: 'timeout' };
  return undefined;
}

/** The transport's own agent: trusts exactly `ca` (or the system roots), keeps connections alive. */
function createAgent(ca: string | undefined): Dispatcher {
  return new Agent({
    // rejectUnauthorized is spelled out: left unset, NODE_TLS_REJECT_UNAUTHORIZED=0 in the
    // environment would silently turn verification off.
    connect: { ca, rejectUnauthorized: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_INITIAL_DELAY_MS },
    maxHeaderSize: MAX_HEADER_BYTES,
  });
}

/** The whole body, within `limit` bytes; over it, the body is destroyed and a `ResponseError` thrown. */
async function readBody(res: Dispatcher.ResponseData, target: RequestTarget, limit: number): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (declared > limit) {
    res.body.destroy();
    throw new ResponseError(`response body of ${declared} bytes exceeds the ${limit}-byte limit`, target, res.statusCode);
  }
  // A declared length within the cap: read it in one go (the common case; cheaper than iterating).
  if (Number.isFinite(declared) && res.headers['content-length'] !== undefined) {
    return Buffer.from(await res.body.arrayBuffer());
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      throw new ResponseError(`response body exceeds the ${limit}-byte limit`, target, res.statusCode);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** Codes of requests undici refuses to form. */
const UNSENDABLE_CODES = new Set(['UND_ERR_INVALID_ARG', 'ERR_INVALID_URL', 'ERR_INVALID_ARG_VALUE', 'ERR_INVALID_CHAR']);

/** Why an attempt got no usable answer: the caller's abort, our timeout, or the network (the `ResponseError`s of `readBody` pass through). */
function attemptFailure(err: unknown, target: RequestTarget, origin: string, signal: AbortSignal | undefined, timedOut: boolean, ms: number): Error {
  if (err instanceof ResponseError) return err;
  if (signal?.aborted) return new AbortedError('request aborted', target, { cause: err });
  if (timedOut) return new TimeoutError(`no answer within ${ms} ms`, target, { cause: err });
  const code = causeCode(err);
  const message = err instanceof Error ? err.message : String(err);
  // undici refused to form the request (a header with CR/LF, an origin that is not a URL): nothing
  // was sent and sending again cannot help. It is configuration, not the network.
  if (code !== undefined && UNSENDABLE_CODES.has(code)) {
    return new ConfigError(`cannot send a request to ${origin}: ${redact(message)} [${code}] (${target.method} ${target.path})`, undefined, { cause: err });
  }
  return new NetworkError(`cannot reach the API server at ${origin}: ${redact(message)}${code && !message.includes(code) ? ` [${code}]` : ''}`, target, code, {
    cause: err,
  });
}

/**
 * An answer read to the end, decoded: a 2xx's JSON body (undefined when empty), else thrown as an
 * `ApiError` built from its `metav1.Status` (or a snippet of whatever it was). A 2xx that is not
 * JSON is a `ResponseError`.
 */
function decodeAnswer(res: Dispatcher.ResponseData, body: Buffer, target: RequestTarget): unknown {
  const { statusCode } = res;
  const json = isJson(res.headers['content-type']);
  if (statusCode >= 200 && statusCode < 300) {
    if (body.length === 0) return undefined;
    if (!json) {
      throw new ResponseError(
        `expected a JSON answer, got ${String(res.headers['content-type'] ?? 'no content type')}: ${JSON.stringify(snippet(body))}`,
        target,
        statusCode,
      );
    }
    if (jsonDepthExceeds(body, MAX_ANSWER_DEPTH)) {
      throw new ResponseError(`the answer is nested deeper than ${MAX_ANSWER_DEPTH} levels; refusing it`, target, statusCode);
    }
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new ResponseError(`malformed JSON in the answer: ${JSON.stringify(snippet(body))}`, target, statusCode, { cause: err });
    }
  }

  let status: Status | undefined;
  if (json && !jsonDepthExceeds(body, MAX_ANSWER_DEPTH)) {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as Partial<Status>;
      if (parsed && parsed.kind === 'Status') status = parsed as Status;
    } catch {
      // falls through to the snippet
    }
  }
  throw new ApiError({
    target,
    statusCode,
    status,
    bodySnippet: status || body.length === 0 ? undefined : snippet(body),
    retryAfterSeconds: parseRetryAfter(res.headers['retry-after'], Date.now()),
  });
}

export function createTransport(options: TransportOptions): Transport {
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const logger = options.logger ?? silentLogger;
  const random = options.random ?? Math.random;
  const origin = options.server;
  const userAgent = `spot-runtime/${VERSION} (node ${process.version})`;
  const ownDispatcher = options.dispatcher === undefined;
  const dispatcher: Dispatcher = options.dispatcher ?? createAgent(options.ca);

  async function attempt(req: RequestOptions, payload: string | undefined, ms: number): Promise<unknown> {
    const target = { method: req.method, path: req.path };
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': userAgent };
    if (payload !== undefined) headers['content-type'] = req.contentType ?? 'application/json';
    if (options.tokenSource) headers.authorization = `Bearer ${await options.tokenSource.token()}`;

    // One controller per attempt, fired by the timeout or the caller's signal; the timer is
    // cleared as soon as the body is in (cheaper than AbortSignal.timeout + AbortSignal.any on
    // the per-write path).
    const controller = new AbortController();
    const timedOut = { value: false };
    const timer = setTimeout(() => {
      timedOut.value = true;
      controller.abort();
    }, ms);
    const forward = () => controller.abort(req.signal?.reason);
    if (req.signal?.aborted) forward();
    req.signal?.addEventListener('abort', forward, { once: true });
    let res: Dispatcher.ResponseData;
    let body: Buffer;
    try {
      res = await send(dispatcher, { origin, path: req.path, method: req.method, headers, body: payload, signal: controller.signal });
      body = await readBody(res, target, bodyLimit);
    } catch (err) {
      throw attemptFailure(err, target, origin, req.signal, timedOut.value, ms);
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', forward);
    }
    return decodeAnswer(res, body, target);
  }

  async function request(req: RequestOptions): Promise<unknown> {
    const started = Date.now();
    const target = { method: req.method, path: req.path };
    const deadlineAt = Math.min(started + (req.deadlineMs ?? policy.deadlineMs), req.deadlineAt ?? Infinity);
    const idempotent = req.idempotent ?? req.method === 'GET';
    const payload = req.body === undefined ? undefined : JSON.stringify(req.body);
    if (payload !== undefined) {
      const bytes = Buffer.byteLength(payload, 'utf8');
      if (bytes > maxRequestBytes) throw new RequestTooLargeError(bytes, maxRequestBytes, target);
    }
    let reauthenticated = false;
    for (let retry = 0; ; ) {
      if (req.signal?.aborted) throw new AbortedError('request aborted', target);
      const remaining = deadlineAt - Date.now();
      // The call's deadline was spent before this request (by the GET or the writes before it).
      if (remaining <= 0) throw new TimeoutError('no time left within the call\'s deadline', target);
      try {
        return await attempt(req, payload, Math.max(1, Math.min(req.timeoutMs ?? timeoutMs, remaining)));
      } catch (err) {
        // A 401 after the kubelet rotated the token: re-read it now and try once more.
        if (isUnauthorized(err) && !reauthenticated && options.tokenSource) {
          reauthenticated = true;
          if (await options.tokenSource.refresh()) {
            logger.debug('401 Unauthorized: token file changed, retrying with the new token', { method: req.method, path: req.path });
            continue;
          }
        }
        const failure = classify(err);
        const delay = failure && retryDelay(policy, retry, failure, idempotent, random());
        if (delay === undefined || Date.now() + delay + policy.minAttemptMs > deadlineAt) throw err;
        retry++;
        logger.debug('retrying request', {
          method: req.method,
          path: req.path,
          retry,
          delayMs: delay,
          error: (err as Error).message,
        });
        try {
          await sleep(delay, undefined, { signal: req.signal });
        } catch {
          throw new AbortedError('request aborted while waiting to retry', { method: req.method, path: req.path }, { cause: err });
        }
      }
    }
  }

  return {
    server: origin,
    deadlineMs: policy.deadlineMs,
    request,
    async close() {
      if (ownDispatcher) await dispatcher.close();
    },
  };
}
