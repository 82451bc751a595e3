/**
 * One error tree for the whole library. Every class carries a literal `name` and a stable `code`
 * so callers (and the `spot-run` command) can match without `instanceof`, which breaks across
 * duplicated copies of a package. Messages that come from a request end with `(METHOD /path)`.
 */
import { redact } from './secrets.js';
import type { BuildRef, Status, StatusDetails } from './types.js';

export type SpotErrorCode =
  | 'ERR_SPOT_CONFIG'
  | 'ERR_SPOT_INVALID_NAME'
  | 'ERR_SPOT_API'
  | 'ERR_SPOT_RESPONSE'
  | 'ERR_SPOT_NETWORK'
  | 'ERR_SPOT_TIMEOUT'
  | 'ERR_SPOT_ABORTED'
  | 'ERR_SPOT_TASK'
  | 'ERR_SPOT_REPLACED'
  | 'ERR_SPOT_TOO_LARGE';

export abstract class SpotError extends Error {
  abstract override readonly name: string;
  abstract readonly code: SpotErrorCode;
}

/**
 * Configuration is missing or unusable: nothing was sent. `path` is the file at fault when the
 * problem is a file (the token, the CA bundle); undefined when it is a setting (an environment
 * variable, the server URL, the token given).
 */
export class ConfigError extends SpotError {
  override readonly name = 'ConfigError' as const;
  readonly code = 'ERR_SPOT_CONFIG' as const;
  constructor(
    message: string,
    readonly path?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A namespace or name that is not a valid Kubernetes name: refused before it reaches a URL. */
export class InvalidNameError extends SpotError {
  override readonly name = 'InvalidNameError' as const;
  readonly code = 'ERR_SPOT_INVALID_NAME' as const;
}

/** Where a request went; appended to every request error's message. */
export interface RequestTarget {
  method: string;
  path: string;
}

function at(target: RequestTarget): string {
  return `(${target.method} ${target.path})`;
}

/** Canned messages for answers without a `metav1.Status` body, as client-go's NewGenericServerResponse. */
const GENERIC_REASONS: Record<number, [reason: string, message: string]> = {
  400: ['BadRequest', 'the server rejected our request for an unknown reason'],
  401: ['Unauthorized', 'the server has asked for the client to provide credentials'],
  403: ['Forbidden', 'the server does not allow access to the requested resource'],
  404: ['NotFound', 'the server could not find the requested resource'],
  405: ['MethodNotAllowed', 'the server does not allow this method on the requested resource'],
  409: ['Conflict', 'the server reported a conflict'],
  410: ['Expired', 'the server has asked for the client to restart'],
  413: ['RequestEntityTooLarge', 'the server has rejected the request because it is too large'],
  415: ['UnsupportedMediaType', 'the server does not support the media type of the request'],
  422: ['Invalid', 'the server rejected our request due to an error in our request'],
  429: ['TooManyRequests', 'the server has received too many requests and has asked us to try again later'],
  500: ['InternalError', 'an error on the server has prevented the request from succeeding'],
  502: ['InternalError', 'the server reported a bad gateway'],
  503: ['ServiceUnavailable', 'the server is currently unable to handle the request'],
  504: ['Timeout', 'the server was unable to return a response in the time allotted'],
};

/** Bounds on the server's text kept in an `ApiError` (a hostile server can send megabytes). */
const MAX_REASON_CHARS = 128;
const MAX_SERVER_MESSAGE_CHARS = 4096;
const MAX_DETAIL_CHARS = 1024;
const MAX_CAUSES = 64;

/**
 * A string field of the server's answer as it may be kept and shown: redacted whole, then cut
 * (a cut first would leave all but the end of an echoed token, which no longer matches). Anything
 * that is not a string is dropped.
 */
function serverText(value: unknown, max: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  const clean = redact(value);
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

/** `details` with every string redacted and bounded, and only the fields `StatusDetails` has. */
function cleanDetails(details: unknown): StatusDetails | undefined {
  if (typeof details !== 'object' || details === null) return undefined;
  const d = details as Record<string, unknown>;
  const out: StatusDetails = {};
  for (const key of ['name', 'group', 'kind', 'uid'] as const) {
    const text = serverText(d[key], MAX_DETAIL_CHARS);
    if (text !== undefined) out[key] = text;
  }
  if (Array.isArray(d.causes)) {
    out.causes = d.causes.slice(0, MAX_CAUSES).map((c: unknown) => {
      const cause: NonNullable<StatusDetails['causes']>[number] = {};
      if (typeof c !== 'object' || c === null) return cause;
      for (const key of ['reason', 'message', 'field'] as const) {
        const text = serverText((c as Record<string, unknown>)[key], MAX_DETAIL_CHARS);
        if (text !== undefined) cause[key] = text;
      }
      return cause;
    });
  }
  if (typeof d.retryAfterSeconds === 'number' && Number.isFinite(d.retryAfterSeconds)) out.retryAfterSeconds = d.retryAfterSeconds;
  return out;
}

/** A non-2xx answer. Built from the `metav1.Status` body when there is one, else from the code. */
export class ApiError extends SpotError {
  override readonly name = 'ApiError' as const;
  readonly code = 'ERR_SPOT_API' as const;
  /** HTTP status code. */
  readonly statusCode: number;
  /** `metav1.Status` reason (`NotFound`, `Conflict`, ...) or the generic one for the code. */
  readonly reason: string;
  readonly details: StatusDetails | undefined;
  /** The server's message, without the request suffix. */
  readonly serverMessage: string;
  /** Seconds the server asked us to wait (`Retry-After` header first, then `details.retryAfterSeconds`). */
  readonly retryAfterSeconds: number | undefined;
  /** A short, sanitised start of a body that was not a `metav1.Status`. */
  readonly bodySnippet: string | undefined;
  readonly method: string;
  readonly path: string;

  constructor(init: {
    target: RequestTarget;
    statusCode: number;
    status?: Status | undefined;
    bodySnippet?: string | undefined;
    retryAfterSeconds?: number | undefined;
  }) {
    const { target, statusCode, status } = init;
    const generic = GENERIC_REASONS[statusCode] ?? [
      statusCode >= 500 ? 'InternalError' : 'Unknown',
      `the server responded with status ${statusCode}`,
    ];
    // Every field of the server's answer is untrusted text: a proxy or webhook authenticator may
    // echo the request's token into any of them. Each is redacted whole before it is cut.
    const reason = serverText(status?.reason, MAX_REASON_CHARS) || generic[0];
    const serverMessage = serverText(status?.message, MAX_SERVER_MESSAGE_CHARS) || generic[1];
    const bodySnippet = init.bodySnippet === undefined ? undefined : redact(init.bodySnippet);
    const snippet = bodySnippet ? `: ${JSON.stringify(bodySnippet)}` : '';
    super(`${statusCode} ${reason}: ${serverMessage}${snippet} ${at(target)}`);
    this.statusCode = statusCode;
    this.reason = reason;
    this.details = status?.details === undefined ? undefined : cleanDetails(status.details);
    this.serverMessage = serverMessage;
    this.retryAfterSeconds = init.retryAfterSeconds ?? this.details?.retryAfterSeconds;
    this.bodySnippet = bodySnippet;
    this.method = target.method;
    this.path = target.path;
  }
}

/** A 2xx answer whose body cannot be used: not JSON, not the expected kind, or over the size cap. */
export class ResponseError extends SpotError {
  override readonly name = 'ResponseError' as const;
  readonly code = 'ERR_SPOT_RESPONSE' as const;
  constructor(
    message: string,
    readonly target: RequestTarget,
    readonly statusCode: number,
    options?: ErrorOptions,
  ) {
    super(`${message} ${at(target)}`, options);
  }
}

/**
 * The request did not get an answer: connection refused or reset, TLS failure, DNS. `causeCode` is
 * undici's or Node's stable code (`ECONNREFUSED`, `UND_ERR_SOCKET`, `DEPTH_ZERO_SELF_SIGNED_CERT`...).
 */
export class NetworkError extends SpotError {
  override readonly name = 'NetworkError' as const;
  readonly code = 'ERR_SPOT_NETWORK' as const;
  constructor(
    message: string,
    readonly target: RequestTarget,
    readonly causeCode: string | undefined,
    options?: ErrorOptions,
  ) {
    super(`${message} ${at(target)}`, options);
  }
}

/** A single attempt ran over its timeout, or the whole call (with retries) over its deadline. */
export class TimeoutError extends SpotError {
  override readonly name = 'TimeoutError' as const;
  readonly code = 'ERR_SPOT_TIMEOUT' as const;
  constructor(
    message: string,
    readonly target: RequestTarget,
    options?: ErrorOptions,
  ) {
    super(`${message} ${at(target)}`, options);
  }
}

/** The caller's `AbortSignal` fired. */
export class AbortedError extends SpotError {
  override readonly name = 'AbortedError' as const;
  readonly code = 'ERR_SPOT_ABORTED' as const;
  constructor(
    message: string,
    readonly target: RequestTarget | undefined,
    options?: ErrorOptions,
  ) {
    super(target ? `${message} ${at(target)}` : message, options);
  }
}

/**
 * The Build was deleted and created again under the same name while a run was reporting on it
 * (client-go's `Preconditions{UID}` failing): another object, which this run must not write.
 */
export class BuildReplacedError extends SpotError {
  override readonly name = 'BuildReplacedError' as const;
  readonly code = 'ERR_SPOT_REPLACED' as const;
  constructor(
    readonly ref: BuildRef,
    /** The uid of the Build the run started with. */
    readonly expectedUid: string,
    /** The uid found under the same name now. */
    readonly foundUid: string | undefined,
  ) {
    super(`Build ${ref.namespace}/${ref.name} was replaced (uid ${expectedUid} → ${foundUid || 'none'})`);
  }
}

/** A request body over the transport's limit: refused before anything is sent. */
export class RequestTooLargeError extends SpotError {
  override readonly name = 'RequestTooLargeError' as const;
  readonly code = 'ERR_SPOT_TOO_LARGE' as const;
  constructor(
    readonly bytes: number,
    readonly limit: number,
    readonly target: RequestTarget,
  ) {
    super(`request body of ${bytes} bytes is over the ${limit}-byte limit, not sent ${at(target)}`);
  }
}

/**
 * A task failed in a way it can describe: `reason` goes into the condition (CamelCase, e.g.
 * `StepFailed`, `Timeout`), the message into the condition and the Warning event, and `summary`
 * (default: the message's first line) into the log line, which should not repeat what the task
 * already printed (a step's stderr tail).
 */
export class TaskFailure extends SpotError {
  override readonly name = 'TaskFailure' as const;
  readonly code = 'ERR_SPOT_TASK' as const;
  readonly summary: string;
  constructor(
    readonly reason: string,
    message: string,
    options?: ErrorOptions & { summary?: string },
  ) {
    super(message, options);
    this.summary = options?.summary ?? message.split('\n', 1)[0]!;
  }
}

function apiReason(err: unknown): string | undefined {
  return isSpotError(err) && err.code === 'ERR_SPOT_API' ? (err as ApiError).reason : undefined;
}
function apiStatus(err: unknown): number | undefined {
  return isSpotError(err) && err.code === 'ERR_SPOT_API' ? (err as ApiError).statusCode : undefined;
}

export function isSpotError(err: unknown): err is SpotError {
  return (
    err instanceof Error &&
    typeof (err as Error & { code?: unknown }).code === 'string' &&
    String((err as Error & { code?: unknown }).code).startsWith('ERR_SPOT_')
  );
}
export function isApiError(err: unknown): err is ApiError {
  return apiStatus(err) !== undefined;
}
/*
 * Type guards: in the true branch `err` is an `ApiError` with that status code, so `err.message`
 * and `err.reason` compile under strict TypeScript. The code in the guarded type keeps the false
 * branch an `ApiError` too (a plain `err is ApiError` would narrow it to `never`).
 */
export const isNotFound = (err: unknown): err is ApiError & { readonly statusCode: 404 } => apiStatus(err) === 404;
export const isConflict = (err: unknown): err is ApiError & { readonly statusCode: 409 } =>
  apiStatus(err) === 409 && apiReason(err) !== 'AlreadyExists';
export const isAlreadyExists = (err: unknown): err is ApiError & { readonly reason: 'AlreadyExists' } => apiReason(err) === 'AlreadyExists';
export const isUnauthorized = (err: unknown): err is ApiError & { readonly statusCode: 401 } => apiStatus(err) === 401;
export const isForbidden = (err: unknown): err is ApiError & { readonly statusCode: 403 } => apiStatus(err) === 403;
export const isTooManyRequests = (err: unknown): err is ApiError & { readonly statusCode: 429 } => apiStatus(err) === 429;
export const isInvalid = (err: unknown): err is ApiError & { readonly statusCode: 422 } => apiStatus(err) === 422;
export const isBuildReplaced = (err: unknown): err is BuildReplacedError => isSpotError(err) && err.code === 'ERR_SPOT_REPLACED';
export const isAborted = (err: unknown): err is AbortedError => isSpotError(err) && err.code === 'ERR_SPOT_ABORTED';
