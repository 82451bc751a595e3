/**
 * Recording what the library sends and what the real server answers, and turning it into
 * fixtures (test/support/fixtures.ts's format) that stay the same from one recording to the next.
 *
 * `RecordingDispatcher` is an undici dispatcher the library's client is given: it forwards every
 * request to a real Agent (trusting the cluster's CA) and keeps a copy of the request and of the
 * answer; a hook may act before a request is forwarded (the operator writing between our read
 * and our write). `normalize` then replaces what differs between two recordings (uids,
 * resourceVersions, timestamps the server sets, the bearer token, event names with a clock in
 * them) by the fixtures' fixed values or placeholders.
 */
import { Dispatcher } from 'undici';
import type { Exchange, FixtureReply, FixtureRequest } from '../support/fixtures.js';

export interface RawExchange {
  request: { method: string; path: string; headers: Record<string, string>; body: string | undefined };
  reply?: { status: number; headers: Record<string, string>; body: string };
  error?: string;
}

type Hook = (request: RawExchange['request'], index: number) => Promise<void>;

function lowerHeaders(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) out[String(headers[i]).toLowerCase()] = String(headers[i + 1]);
  } else if (headers && typeof headers === 'object') {
    for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

/** Wraps an old-style undici handler (what `request()` uses), copying the answer as it passes. */
export class RecordingDispatcher extends Dispatcher {
  readonly exchanges: RawExchange[] = [];
  before: Hook | undefined;

  constructor(private readonly inner: Dispatcher) {
    super();
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const body = options.body === undefined || options.body === null ? undefined : typeof options.body === 'string' ? options.body : Buffer.from(options.body as Uint8Array).toString('utf8');
    const exchange: RawExchange = { request: { method: options.method, path: options.path, headers: lowerHeaders(options.headers), body } };
    const index = this.exchanges.push(exchange) - 1;
    const h = handler as Required<Pick<Dispatcher.DispatchHandler, 'onConnect' | 'onHeaders' | 'onData' | 'onComplete' | 'onError'>> & Dispatcher.DispatchHandler;
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: Record<string, string> = {};
    const wrapped: Dispatcher.DispatchHandler = {
      // RequestHandler.onConnect takes a context as well as the abort function.
      onConnect: ((...args: unknown[]) => (h.onConnect as (...a: unknown[]) => void).apply(h, args)) as Dispatcher.DispatchHandler['onConnect'],
      onHeaders: (statusCode, rawHeaders, resume, statusText) => {
        status = statusCode;
        headers = lowerHeaders(rawHeaders);
        return h.onHeaders(statusCode, rawHeaders, resume, statusText);
      },
      onData: (chunk) => {
        chunks.push(Buffer.from(chunk));
        return h.onData(chunk);
      },
      onComplete: (trailers) => {
        exchange.reply = { status, headers, body: Buffer.concat(chunks).toString('utf8') };
        return h.onComplete(trailers);
      },
      onError: (err) => {
        exchange.error = (err as { code?: string }).code ?? err.message;
        return h.onError(err);
      },
    };
    if (!this.before) return this.inner.dispatch(options, wrapped);
    this.before(exchange.request, index).then(
      () => this.inner.dispatch(options, wrapped),
      (err: Error) => h.onError(err),
    );
    return true;
  }

  override async close(): Promise<void> {
    await this.inner.close();
  }

  override async destroy(): Promise<void> {
    await this.inner.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Normalizing

/** The fixtures' fixed values (test/fixtures/get-build.json and friends). */
export const CANONICAL = {
  buildUid: '0b5e2d7c-1f3a-4c8e-9d6b-2a7f1e3c5d90',
  eventUid: (n: number) => `e1f2a3b4-0000-4000-8000-${String(n).padStart(12, '0')}`,
  firstBuildResourceVersion: 1001,
  firstEventResourceVersion: 5001,
  /** What the server stamps (creationTimestamp, managedFields[].time). */
  serverTime: '2025-06-01T10:00:00Z',
  eventName: /^b1\.[0-9a-f]{16,}$/,
  eventNamePattern: '<re:^b1\\.[0-9a-f]{16,}$>',
} as const;

export interface NormalizeOptions {
  /** Real bearer tokens → their names in the fixture (e.g. `test-token`). Unknown tokens stay as they are. */
  tokens: Map<string, string>;
  /** The real uid of the Build, replaced by CANONICAL.buildUid. */
  buildUid: string;
  /** Build resourceVersions already known, in order (the seeded Build's first): they map to 1001, 1002, ... */
  buildVersions?: string[];
}

/** Headers of a request that fixtures check. */
const REQUEST_HEADERS = ['authorization', 'content-type', 'accept'];
/** Headers of an answer that matter to a client (the rest are per-request ids and dates). */
export const REPLY_HEADERS = ['content-type', 'retry-after', 'warning'];

class Normalizer {
  readonly #buildRv = new Map<string, string>();
  readonly #eventRv = new Map<string, string>();
  readonly #eventUid = new Map<string, string>();
  readonly #eventNames = new Map<string, string>();

  constructor(private readonly o: NormalizeOptions) {
    for (const rv of o.buildVersions ?? []) this.buildRv(rv);
  }

  buildRv(rv: string): string {
    if (!this.#buildRv.has(rv)) this.#buildRv.set(rv, String(CANONICAL.firstBuildResourceVersion + this.#buildRv.size));
    return this.#buildRv.get(rv)!;
  }

  eventRv(rv: string): string {
    if (!this.#eventRv.has(rv)) this.#eventRv.set(rv, String(CANONICAL.firstEventResourceVersion + this.#eventRv.size));
    return this.#eventRv.get(rv)!;
  }

  eventUid(uid: string): string {
    if (!this.#eventUid.has(uid)) this.#eventUid.set(uid, CANONICAL.eventUid(this.#eventUid.size + 1));
    return this.#eventUid.get(uid)!;
  }

  /** Event names carry the recording clock; in answers they become b1.<n-th name>. */
  eventName(name: string): string {
    if (!this.#eventNames.has(name)) this.#eventNames.set(name, `b1.${(0x1844cf1ee0a9c000n + BigInt(this.#eventNames.size)).toString(16)}`);
    return this.#eventNames.get(name)!;
  }

  /** An object (Build, Event, Status, list) as the server sent it, with volatile values fixed. */
  object(value: unknown, from: 'request' | 'reply', path: string): unknown {
    if (Array.isArray(value)) {
      // A JSON patch: the precondition op carries a Build resourceVersion.
      return value.map((op: Record<string, unknown>) =>
        op && typeof op === 'object' && op.path === '/metadata/resourceVersion' && typeof op.value === 'string' ? { ...op, value: this.buildRv(op.value) } : this.object(op, from, path),
      );
    }
    if (!value || typeof value !== 'object') return value;
    const obj = structuredClone(value) as Record<string, unknown>;
    const isEvent = obj.kind === 'Event' || (obj.kind === undefined && path.includes('/events'));
    const meta = obj.metadata as Record<string, unknown> | undefined;
    if (meta && typeof meta === 'object') {
      if (typeof meta.resourceVersion === 'string') meta.resourceVersion = isEvent ? this.eventRv(meta.resourceVersion) : this.buildRv(meta.resourceVersion);
      if (typeof meta.uid === 'string') meta.uid = isEvent ? this.eventUid(meta.uid) : meta.uid === this.o.buildUid ? CANONICAL.buildUid : meta.uid;
      if (typeof meta.creationTimestamp === 'string') meta.creationTimestamp = CANONICAL.serverTime;
      // In answers, event names were already replaced in the text (they appear in messages too).
      if (isEvent && from === 'request' && typeof meta.name === 'string' && CANONICAL.eventName.test(meta.name)) meta.name = CANONICAL.eventNamePattern;
      if (Array.isArray(meta.managedFields)) {
        const entries = meta.managedFields as Array<Record<string, unknown>>;
        for (const entry of entries) if (typeof entry.time === 'string') entry.time = CANONICAL.serverTime;
        // The server orders entries by time, which has second precision: entries of the same second
        // come in any order. Sorted here by what they say, so two recordings compare equal.
        const key = (e: Record<string, unknown>) => [e.manager, e.operation, e.subresource ?? '', JSON.stringify(e.fieldsV1)].join('\0');
        entries.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      }
    }
    const involved = obj.involvedObject as Record<string, unknown> | undefined;
    if (involved && typeof involved === 'object') {
      if (involved.uid === this.o.buildUid) involved.uid = CANONICAL.buildUid;
      if (typeof involved.resourceVersion === 'string') involved.resourceVersion = this.buildRv(involved.resourceVersion);
    }
    return obj;
  }

  path(path: string): string {
    // A fold PATCHes the first event by its (clock-derived) name.
    return path.replace(/(\/events\/)b1\.[0-9a-f]{16,}$/, '$1<any>');
  }

  authorization(value: string): string {
    const token = value.replace(/^Bearer /, '');
    return `Bearer ${this.o.tokens.get(token) ?? token}`;
  }
}

function parseBody(text: string | undefined, contentType: string | undefined): unknown {
  if (text === undefined || text === '') return undefined;
  if (/json/i.test(contentType ?? '')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** Exchanges in the fixture format, every volatile value fixed (see NormalizeOptions). */
export function normalize(raw: readonly RawExchange[], options: NormalizeOptions): Exchange[] {
  const n = new Normalizer(options);
  return raw.map((x) => {
    const headers: Record<string, string | null> = {};
    for (const name of REQUEST_HEADERS) headers[name] = x.request.headers[name] ?? null;
    if (headers.authorization) headers.authorization = n.authorization(headers.authorization);
    const request: FixtureRequest = { method: x.request.method, path: n.path(x.request.path), headers };
    const body = parseBody(x.request.body, x.request.headers['content-type']);
    if (body !== undefined) request.body = n.object(body, 'request', x.request.path);
    if (!x.reply) return { request, error: x.error ?? 'unknown' };
    const reply: FixtureReply = { status: x.reply.status };
    const replyHeaders: Record<string, string> = {};
    for (const name of REPLY_HEADERS) if (x.reply.headers[name] !== undefined) replyHeaders[name] = x.reply.headers[name]!;
    reply.headers = replyHeaders;
    // Event names (a clock in them) also appear in Status messages and details: replace them everywhere.
    const replyText = x.reply.body.replace(/b1\.[0-9a-f]{16,}/g, (name) => n.eventName(name));
    const replyBody = parseBody(replyText, x.reply.headers['content-type']);
    if (replyBody !== undefined) reply.body = n.object(replyBody, 'reply', x.request.path);
    return { request, reply };
  });
}
