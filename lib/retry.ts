/**
 * The one retry policy of the library (pure: no I/O, no clock). The transport asks it, after each
 * failed attempt, whether and when to try again.
 *
 * Rules, after the API conventions and client-go's rest client:
 * - 429: the server did not process the request, so any method is retried, after `Retry-After`
 *   when given (capped), else after the backoff.
 * - 5xx: retried when the request is safe to repeat; for other requests only when the server
 *   asked for it with `Retry-After` (client-go retries every verb then).
 * - no connection made (refused, connect timeout, DNS): nothing was sent, any method is retried.
 * - connection lost or timed out after sending: only requests that are safe to repeat (GET, a write
 *   with a resourceVersion precondition, an event POST under a fixed name).
 * - TLS failures and every other 4xx: never (retrying cannot fix them).
 */

export interface RetryPolicy {
  /** Retries after the first attempt. */
  maxRetries: number;
  /** First backoff step; doubles each retry. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Cap on a server's `Retry-After`. */
  maxRetryAfterMs: number;
  /** Overall budget of one call, retries and waits included. */
  deadlineMs: number;
  /**
   * A retry is made only when at least this much of the deadline is left after its wait: an
   * attempt squeezed into the deadline's last milliseconds can only time out, and its TimeoutError
   * would replace the answer that says what went wrong (a 503, a 429).
   */
  minAttemptMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxRetries: 8,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 30_000,
  deadlineMs: 60_000,
  minAttemptMs: 100,
});

export type AttemptFailure =
  | { kind: 'status'; statusCode: number; retryAfterSeconds: number | undefined }
  /** `sent`: false when the connection was never made, so the server cannot have seen the request. */
  | { kind: 'network'; code: string | undefined; sent: boolean }
  | { kind: 'timeout' };

/** Codes of failures that happen before a request leaves: safe to retry for any method. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
]);

export function wasSent(code: string | undefined): boolean {
  return !(code && NOT_SENT_CODES.has(code));
}

/** TLS and certificate problems: configuration, not weather. */
export function isTlsFailure(code: string | undefined): boolean {
  return !!code && /CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME/.test(code);
}

/** Exponential backoff with equal jitter: half fixed, half random, so retries of many pods spread out. */
export function backoffMs(policy: RetryPolicy, retry: number, random: number): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.round(step / 2 + (step / 2) * random);
}

/**
 * Milliseconds to wait before retry number `retry` (0 for the first retry), or undefined when the
 * failure must not be retried. The caller still checks the delay against its deadline.
 */
export function retryDelay(
  policy: RetryPolicy,
  retry: number,
  failure: AttemptFailure,
  idempotent: boolean,
  random: number,
): number | undefined {
  if (retry >= policy.maxRetries) return undefined;
  const backoff = backoffMs(policy, retry, random);
  switch (failure.kind) {
    case 'status': {
      const { statusCode, retryAfterSeconds } = failure;
      const retryAfter =
        retryAfterSeconds !== undefined ? Math.min(retryAfterSeconds * 1000, policy.maxRetryAfterMs) : undefined;
      if (statusCode === 429) return retryAfter ?? backoff;
      if (statusCode >= 500) {
        if (retryAfter !== undefined) return retryAfter;
        return idempotent ? backoff : undefined;
      }
      return undefined;
    }
    case 'network':
      if (isTlsFailure(failure.code)) return undefined;
      return idempotent || !failure.sent ? backoff : undefined;
    case 'timeout':
      return idempotent ? backoff : undefined;
  }
}

/**
 * `Retry-After` in seconds: delta-seconds, or an HTTP date (relative to `nowMs`). Undefined when
 * absent or unparsable (then the backoff applies).
 */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  // An HTTP-date starts with the day name (IMF-fixdate, RFC 850, asctime). V8's lenient Date.parse
  // finds dates in other things too ("1.5", "-1" are days in 2001), which would mean "retry now".
  if (!/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)/.test(trimmed)) return undefined;
  // asctime carries no zone; HTTP dates are always GMT, not local time.
  const date = Date.parse(/GMT$/.test(trimmed) ? trimmed : `${trimmed} GMT`);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - nowMs) / 1000));
}
