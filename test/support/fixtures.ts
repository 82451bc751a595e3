/**
 * A nock-style harness: recorded exchanges with the API server, replayed through undici's
 * `MockAgent` handed to the client as its `dispatcher` (net connect disabled, so nothing can leave
 * the process). Fixtures are data, `test/fixtures/<story>.json`, one exchange per entry:
 *
 * ```json
 * [
 *   {
 *     "comment": "what this step of the story is (optional)",
 *     "request": {
 *       "method": "PATCH",
 *       "path": "/apis/spot.release.com/v1alpha1/namespaces/ns/builds/b1/status",
 *       "headers": { "content-type": "application/merge-patch+json", "authorization": "Bearer test-token" },
 *       "body": { "metadata": { "resourceVersion": "7" }, "status": { "phase": "Running" } }
 *     },
 *     "reply": { "status": 200, "headers": { "retry-after": "1" }, "body": { "kind": "Build", "...": "..." } },
 *     "error": "ECONNRESET",
 *     "delayMs": 50,
 *     "source": "recorded: kube-apiserver v1.36.3"  (or "hand-written: <why a real server cannot give it>")
 *   }
 * ]
 * ```
 *
 * Matching, per exchange and **in order** (the n-th request the client sends is checked against
 * the n-th exchange):
 * - `method` and `path` (with its query) exactly; a path segment written `<any>` matches any one segment.
 * - `headers`: only the ones listed (names are case-insensitive), each exactly; `null` means "must be absent".
 * - `body`: the request body parsed as JSON and compared deep-equal (object keys exactly, arrays in order).
 *   Leaving `body` out means the request must have none.
 * - Placeholders, anywhere in a body and in header values:
 *   - `"<any>"`: any value, but the key must be there;
 *   - `"<time>"`: an RFC 3339 timestamp (`2025-01-02T03:04:05Z`, fraction allowed);
 *   - `"<re:PATTERN>"`: a string matching the regular expression `PATTERN` (anchor it yourself).
 *
 * Replies: `reply.body` that is a JSON value is sent as JSON (`content-type: application/json` unless the
 * fixture lists another); a string is sent as-is (`text/plain; charset=utf-8` unless listed). `error` replaces
 * the reply with a network failure carrying that code (`ECONNRESET`, `ECONNREFUSED`, `UND_ERR_SOCKET`,
 * `UND_ERR_CONNECT_TIMEOUT`, or any other code). `delayMs` holds the reply back (the client's timeout or abort
 * still cuts it short); it does not apply to `error`.
 *
 * How: one catch-all interceptor (`intercept({ path: () => true, method: () => true })`, persisted) whose
 * reply callback takes the next expected exchange and checks the request against it. A network failure is
 * thrown from that callback, which undici turns into `handler.onError(err)`, exactly what
 * `replyWithError(err)` does (a per-exchange `replyWithError` interceptor could not see the request).
 *
 * What fails a test (all reported by `assertDone()`, which `withFixture` calls for you):
 * - a request that does not match its exchange: it is answered `418` with the differences, so the client
 *   fails fast and does not retry;
 * - an unexpected request (all exchanges used): answered `418` the same way;
 * - an exchange that never happened (unless the test called `fixture.dropUnused()`, for attempt counts
 *   that depend on timing).
 *
 * API: `loadFixture(name)`, `createFixture(name | exchanges)` (a MockAgent plus `requests`, `assertDone()`,
 * `close()`), and `withFixture(name | exchanges, async (client, { fixture, requests, config }) => ...)`,
 * which builds a client on the MockAgent (server TEST_SERVER, token `test-token`, namespace `ns`, the
 * FAST_RETRY policy, `random: () => 0.5`), runs the callback and checks the fixture was played to the end.
 *
 * Tokens in fixtures are `test-token` (an obvious fake), never JWT-shaped.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errors as undiciErrors, MockAgent } from 'undici';
import { clientFromConfig, type ClientOptions, type SpotClient } from '../../lib/client.js';
import type { ClusterConfig } from '../../lib/config.js';
import type { RetryPolicy } from '../../lib/retry.js';
import { StaticTokenSource } from '../../lib/token.js';

export const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

/** Where the fixture-backed client sends its requests. */
export const TEST_SERVER = 'https://kubernetes.test:6443';
/** The fake bearer token every fixture expects unless a test says otherwise. */
export const TEST_TOKEN = 'test-token';
export const TEST_NAMESPACE = 'ns';

/** Retries that take milliseconds, not seconds; a test that needs a longer wait says so. */
export const FAST_RETRY: Readonly<RetryPolicy> = Object.freeze({
  maxRetries: 4,
  baseDelayMs: 1,
  maxDelayMs: 4,
  maxRetryAfterMs: 20,
  deadlineMs: 5_000,
  minAttemptMs: 1,
});

export interface FixtureRequest {
  method: string;
  path: string;
  headers?: Record<string, string | null>;
  body?: unknown;
}

export interface FixtureReply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface Exchange {
  comment?: string;
  /**
   * Where the reply comes from: `recorded: kube-apiserver vX.Y.Z` (written by `npm run
   * fixtures:record` and checked against the real server by `npm run test:cluster`), or
   * `hand-written: <why>` for answers a real server cannot be made to give on demand (429, 5xx,
   * resets, timeouts), the reason said.
   */
  source?: string;
  request: FixtureRequest;
  reply?: FixtureReply;
  error?: string;
  delayMs?: number;
}

/** A request as the client sent it. */
export interface RecordedRequest {
  origin: string;
  method: string;
  path: string;
  /** Lower-cased names. */
  headers: Record<string, string>;
  /** Parsed JSON when the body is JSON, the raw string otherwise, undefined when there was none. */
  body: unknown;
  /** The body as sent. */
  rawBody: string | undefined;
  /** Milliseconds since the fixture was created. */
  at: number;
}

// ---------------------------------------------------------------------------------------------
// Loading

function fail(where: string, problem: string): never {
  throw new Error(`fixture ${where}: ${problem}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the shape of a list of exchanges; a typo in a fixture is an error here, not a silent pass. */
export function validateExchanges(value: unknown, where = 'inline'): Exchange[] {
  if (!Array.isArray(value)) fail(where, 'must be an array of exchanges');
  value.forEach((entry, i) => {
    const at = `${where}[${i}]`;
    if (!isObject(entry)) fail(at, 'must be an object');
    for (const key of Object.keys(entry)) {
      if (!['comment', 'source', 'request', 'reply', 'error', 'delayMs'].includes(key)) fail(at, `unknown key ${JSON.stringify(key)}`);
    }
    if (entry.source !== undefined && (typeof entry.source !== 'string' || !/^(hand-written: .+|recorded: .+)$/.test(entry.source))) {
      fail(at, '"source" must be "hand-written: <why a real server cannot give it>" or "recorded: <server and version>"');
    }
    const { request, reply, error, delayMs } = entry;
    if (!isObject(request)) fail(at, '"request" must be an object');
    for (const key of Object.keys(request)) {
      if (!['method', 'path', 'headers', 'body'].includes(key)) fail(at, `unknown request key ${JSON.stringify(key)}`);
    }
    if (typeof request.method !== 'string' || !/^[A-Z]+$/.test(request.method)) fail(at, 'request.method must be an upper-case HTTP method');
    if (typeof request.path !== 'string' || !request.path.startsWith('/')) fail(at, 'request.path must start with "/"');
    if (request.headers !== undefined) {
      if (!isObject(request.headers)) fail(at, 'request.headers must be an object');
      for (const [name, v] of Object.entries(request.headers)) {
        if (v !== null && typeof v !== 'string') fail(at, `request header ${name} must be a string or null`);
      }
    }
    if ((reply === undefined) === (error === undefined)) fail(at, 'needs exactly one of "reply" and "error"');
    if (reply !== undefined) {
      if (!isObject(reply)) fail(at, '"reply" must be an object');
      for (const key of Object.keys(reply)) {
        if (!['status', 'headers', 'body'].includes(key)) fail(at, `unknown reply key ${JSON.stringify(key)}`);
      }
      if (typeof reply.status !== 'number' || reply.status < 100 || reply.status > 599) fail(at, 'reply.status must be an HTTP status code');
      if (reply.headers !== undefined && !isObject(reply.headers)) fail(at, 'reply.headers must be an object');
    }
    if (error !== undefined && (typeof error !== 'string' || error === '')) fail(at, '"error" must be an error code such as "ECONNRESET"');
    if (delayMs !== undefined && (typeof delayMs !== 'number' || delayMs < 0)) fail(at, '"delayMs" must be a number of milliseconds');
    if (delayMs !== undefined && error !== undefined) fail(at, '"delayMs" applies to replies only');
  });
  return value as Exchange[];
}

/** Reads and checks `test/fixtures/<name>.json`. */
export function loadFixture(name: string): Exchange[] {
  const file = join(FIXTURES_DIR, `${name}.json`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`fixture ${name}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return validateExchanges(parsed, name);
}

/** The reply body of exchange `index` of a fixture, as a fresh copy (for `base` Builds and the like). */
export function replyBody<T = unknown>(exchanges: Exchange[], index: number): T {
  const body = exchanges[index]?.reply?.body;
  if (body === undefined) throw new Error(`exchange ${index} has no reply body`);
  return structuredClone(body) as T;
}

// ---------------------------------------------------------------------------------------------
// Matching

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/**
 * Differences between what a fixture expects and what was sent, one line each with a JSON-pointer-ish
 * location; empty when they match. Exported so the placeholders themselves can be tested.
 */
export function differences(expected: unknown, actual: unknown, at = ''): string[] {
  const where = at || '(root)';
  if (typeof expected === 'string' && expected.startsWith('<') && expected.endsWith('>')) {
    if (expected === '<any>') return actual === undefined ? [`${where}: expected a value, got nothing`] : [];
    if (expected === '<time>') {
      return typeof actual === 'string' && TIME.test(actual) ? [] : [`${where}: expected an RFC 3339 time, got ${show(actual)}`];
    }
    if (expected.startsWith('<re:')) {
      const re = new RegExp(expected.slice(4, -1));
      return typeof actual === 'string' && re.test(actual) ? [] : [`${where}: expected a string matching /${re.source}/, got ${show(actual)}`];
    }
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${where}: expected an array, got ${show(actual)}`];
    const out: string[] = [];
    if (expected.length !== actual.length) out.push(`${where}: expected ${expected.length} items, got ${actual.length}: ${show(actual)}`);
    for (let i = 0; i < Math.min(expected.length, actual.length); i++) out.push(...differences(expected[i], actual[i], `${at}/${i}`));
    return out;
  }
  if (isObject(expected)) {
    if (!isObject(actual)) return [`${where}: expected an object, got ${show(actual)}`];
    const out: string[] = [];
    for (const key of Object.keys(expected)) {
      if (!(key in actual)) out.push(`${at}/${key}: missing (expected ${show(expected[key])})`);
      else out.push(...differences(expected[key], actual[key], `${at}/${key}`));
    }
    for (const key of Object.keys(actual)) {
      if (!(key in expected)) out.push(`${at}/${key}: unexpected (got ${show(actual[key])})`);
    }
    return out;
  }
  return Object.is(expected, actual) ? [] : [`${where}: expected ${show(expected)}, got ${show(actual)}`];
}

function pathMatches(expected: string, actual: string): boolean {
  if (!expected.includes('<any>')) return expected === actual;
  const pattern = expected
    .split('<any>')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/?]+');
  return new RegExp(`^${pattern}$`).test(actual);
}

/** Why `request` does not match `expected`; empty when it does. */
export function requestDifferences(expected: FixtureRequest, request: RecordedRequest): string[] {
  const out: string[] = [];
  if (expected.method !== request.method) out.push(`method: expected ${expected.method}, got ${request.method}`);
  if (!pathMatches(expected.path, request.path)) out.push(`path: expected ${expected.path}, got ${request.path}`);
  for (const [name, value] of Object.entries(expected.headers ?? {})) {
    const got = request.headers[name.toLowerCase()];
    if (value === null) {
      if (got !== undefined) out.push(`header ${name}: expected none, got ${show(got)}`);
    } else if (got === undefined) out.push(`header ${name}: missing (expected ${show(value)})`);
    else out.push(...differences(value, got, `header ${name}`));
  }
  if (expected.body === undefined) {
    if (request.rawBody !== undefined && request.rawBody !== '') out.push(`body: expected none, got ${show(request.body)}`);
  } else {
    out.push(...differences(expected.body, request.body, 'body').map((d) => (d.startsWith('body') ? d : `body${d}`)));
  }
  return out;
}

function describe(request: RecordedRequest): string {
  const body = request.rawBody === undefined ? '' : `\n      body: ${show(request.body)}`;
  const headers = ['authorization', 'content-type', 'accept']
    .filter((h) => request.headers[h] !== undefined)
    .map((h) => `${h}: ${request.headers[h]}`)
    .join(', ');
  return `${request.method} ${request.path}${headers ? `\n      headers: ${headers}` : ''}${body}`;
}

function describeExchange(exchange: Exchange, index: number): string {
  return `#${index + 1} ${exchange.request.method} ${exchange.request.path}${exchange.comment ? ` (${exchange.comment})` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Replaying

function headersOf(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i]).toLowerCase()] = String(raw[i + 1]);
  } else if (typeof (raw as Headers).forEach === 'function' && typeof (raw as Headers).get === 'function') {
    (raw as Headers).forEach((value, name) => {
      out[name.toLowerCase()] = value;
    });
  } else {
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    }
  }
  return out;
}

function bodyText(raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string') return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw).toString('utf8');
  throw new Error(`fixture harness: cannot read a request body of type ${typeof raw} (the transport sends strings)`);
}

/** A network failure as undici or Node report it, with `code` set. */
export function networkError(code: string): Error {
  switch (code) {
    case 'UND_ERR_SOCKET':
      return new undiciErrors.SocketError('other side closed');
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new undiciErrors.ConnectTimeoutError('Connect Timeout Error');
    case 'ECONNREFUSED':
      return Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code, errno: -111, syscall: 'connect' });
    case 'ECONNRESET':
      return Object.assign(new Error('read ECONNRESET'), { code, errno: -104, syscall: 'read' });
    default:
      return Object.assign(new Error(`fixture network error ${code}`), { code });
  }
}

export interface Fixture {
  /** Hand this to the client (or a transport) as its `dispatcher`. */
  readonly agent: MockAgent;
  readonly exchanges: readonly Exchange[];
  /** Every request received, in order, matched or not. */
  readonly requests: RecordedRequest[];
  /** Mismatches and unexpected requests so far. */
  readonly failures: string[];
  /** How many exchanges have been used. */
  readonly used: number;
  /** Throws an AssertionError unless every exchange happened, in order, and matched, and nothing else was sent. */
  assertDone(): void;
  /**
   * Stops expecting the exchanges not used yet (a later request still fails as unexpected). Only for
   * tests whose number of attempts depends on timing, such as a deadline cutting retries short.
   */
  dropUnused(): void;
  close(): Promise<void>;
}

/** A MockAgent that replays `fixture` (a name under test/fixtures or the exchanges themselves). */
export function createFixture(fixture: string | Exchange[], options: { origin?: string } = {}): Fixture {
  const exchanges = typeof fixture === 'string' ? loadFixture(fixture) : validateExchanges(fixture);
  const label = typeof fixture === 'string' ? fixture : 'inline fixture';
  const origin = options.origin ?? TEST_SERVER;
  const agent = new MockAgent();
  agent.disableNetConnect();
  const requests: RecordedRequest[] = [];
  const failures: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const started = Date.now();
  let next = 0;
  let expected = exchanges.length;

  const refuse = (message: string) => ({
    statusCode: 418,
    data: `fixture harness (${label}): ${message}`,
    responseOptions: { headers: { 'content-type': 'text/plain; charset=utf-8' } },
  });

  agent
    .get(() => true)
    .intercept({ path: () => true, method: () => true })
    .reply((opts) => {
      const rawBody = bodyText(opts.body);
      const headers = headersOf(opts.headers);
      let body: unknown = rawBody;
      if (rawBody !== undefined && /json/i.test(headers['content-type'] ?? '')) {
        try {
          body = JSON.parse(rawBody);
        } catch {
          // compared as the raw string
        }
      }
      const request: RecordedRequest = {
        origin: String(opts.origin ?? ''),
        method: opts.method,
        path: opts.path,
        headers,
        body,
        rawBody,
        at: Date.now() - started,
      };
      requests.push(request);

      const index = next;
      const exchange = index < expected ? exchanges[index] : undefined;
      if (!exchange) {
        const message = `unexpected request #${requests.length} (all ${expected} exchanges used):\n      ${describe(request)}`;
        failures.push(message);
        return refuse(message);
      }
      next++;
      const problems = requestDifferences(exchange.request, request);
      if (request.origin.replace(/\/$/, '') !== origin) problems.unshift(`origin: expected ${origin}, got ${request.origin}`);
      if (problems.length > 0) {
        const message = `request #${requests.length} does not match exchange ${describeExchange(exchange, index)}:\n      ${problems.join('\n      ')}\n    request was: ${describe(request)}`;
        failures.push(message);
        return refuse(message);
      }
      if (exchange.error !== undefined) throw networkError(exchange.error);

      const reply = exchange.reply!;
      const replyHeaders: Record<string, string> = { ...reply.headers };
      const hasContentType = Object.keys(replyHeaders).some((h) => h.toLowerCase() === 'content-type');
      let data: string;
      if (reply.body === undefined) data = '';
      else if (typeof reply.body === 'string') {
        data = reply.body;
        if (!hasContentType) replyHeaders['content-type'] = 'text/plain; charset=utf-8';
      } else {
        data = JSON.stringify(reply.body);
        if (!hasContentType) replyHeaders['content-type'] = 'application/json';
      }
      const delay = exchange.delayMs ?? 0;
      return {
        statusCode: reply.status,
        // A function is called when the reply is sent; a promise from it holds the reply back.
        // MockAgent drops the reply when the request was aborted meanwhile.
        data: (delay > 0
          ? () =>
              new Promise<string>((resolve) => {
                const timer = setTimeout(() => {
                  timers.delete(timer);
                  resolve(data);
                }, delay);
                timers.add(timer);
              })
          : data) as unknown as string,
        responseOptions: { headers: replyHeaders },
      };
    })
    .persist();

  return {
    agent,
    exchanges,
    requests,
    failures,
    get used() {
      return next;
    },
    assertDone() {
      const problems = [...failures];
      for (let i = next; i < expected; i++) problems.push(`exchange ${describeExchange(exchanges[i]!, i)} never happened`);
      if (problems.length > 0) {
        assert.fail(`fixture ${label}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
      }
    },
    dropUnused() {
      expected = next;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await agent.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The usual way in

export interface FixtureContext {
  fixture: Fixture;
  /** Shorthand for `fixture.requests`. */
  requests: RecordedRequest[];
  config: ClusterConfig;
}

export type FixtureClientOptions = Omit<ClientOptions, 'server' | 'token' | 'tokenFile' | 'caFile' | 'serviceAccountDir' | 'namespace' | 'env' | 'dispatcher'>;

export interface WithFixtureOptions {
  /** Overrides of the configuration (default: TEST_SERVER, `test-token`, namespace `ns`). */
  config?: Partial<ClusterConfig>;
  /** Client options; `retry` is merged over FAST_RETRY and `random` defaults to `() => 0.5`. */
  client?: FixtureClientOptions;
}

/** The configuration of a fixture-backed client: no file or environment is read. */
export function fixtureConfig(overrides: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    server: TEST_SERVER,
    ca: undefined,
    tokenSource: new StaticTokenSource(TEST_TOKEN),
    namespace: TEST_NAMESPACE,
    ...overrides,
  };
}

/**
 * Runs `fn` with a client whose whole network is the fixture, then checks the fixture was played
 * to the end. When `fn` throws and the fixture saw a mismatch, the mismatch is reported (it is
 * the cause); otherwise `fn`'s error is.
 */
export async function withFixture(
  fixture: string | Exchange[],
  fn: (client: SpotClient, ctx: FixtureContext) => Promise<void>,
  options: WithFixtureOptions = {},
): Promise<void> {
  const f = createFixture(fixture, { origin: options.config?.server ?? TEST_SERVER });
  const config = fixtureConfig(options.config);
  const client = clientFromConfig(config, {
    random: () => 0.5,
    ...options.client,
    retry: { ...FAST_RETRY, ...options.client?.retry },
    dispatcher: f.agent,
  });
  let failed = false;
  try {
    await fn(client, { fixture: f, requests: f.requests, config });
  } catch (err) {
    failed = true;
    if (f.failures.length > 0) {
      try {
        f.assertDone();
      } catch (mismatch) {
        (mismatch as Error).cause = err;
        throw mismatch;
      }
    }
    throw err;
  } finally {
    await client.close();
    await f.close();
  }
  if (!failed) f.assertDone();
}

/** Runs `fn` and returns what it threw (failing when it did not throw). */
export async function rejection(fn: () => Promise<unknown>): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection, but the call resolved');
}
