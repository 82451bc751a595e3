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
  /** Events are named `<object>.<hex clock>`: the pattern a fixture's request holds for them. */
  eventNamePattern: (object: string) => `<re:^${object.replace(/[.]/g, '\\.')}\\.[0-9a-f]{16,}$>`,
} as const;

export interface NormalizeOptions {
  /** Real bearer tokens → their names in the fixture (e.g. `test-token`). Unknown tokens stay as they are. */
  tokens: Map<string, string>;
  /** The real uid of the Build, replaced by CANONICAL.buildUid. */
  buildUid: string;
  /** The Build's name, which its events' names start with (default `b1`). */
  buildName?: string;
  /** Build resourceVersions already known, in order (the seeded Build's first): they map to 1001, 1002, ... */
  buildVersions?: string[];
  /** The fixture's uid for `buildUid` (default CANONICAL.buildUid). */
  canonicalBuildUid?: string;
  /** Other real uids (a Build created again under the same name) and their fixture values. */
  uids?: Map<string, string>;
  /** Where the fixture's Build resourceVersions start (default CANONICAL.firstBuildResourceVersion). */
  firstBuildResourceVersion?: number;
  /** Real Build resourceVersions given a fixed number (the operator's write in a story); later ones count on from the highest. */
  pinnedVersions?: Map<string, number>;
  /**
   * When the recorded run started (ms since the epoch): timestamps from then on were made by the
   * run's clock (condition transitions, event times), and durations appear in messages. See RunClock.
   */
  runStartedMs?: number;
}

/** Headers of a request that fixtures check. */
const REQUEST_HEADERS = ['authorization', 'content-type', 'accept'];
/** Headers of an answer that matter to a client (the rest are per-request ids and dates). */
export const REPLY_HEADERS = ['content-type', 'retry-after', 'warning'];

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
/** An elapsed time the runner puts in a message ("3 tasks in 0.4s", "failed after 1.2s"); a configured one ("timed out after 0.5s") is not matched. */
const ELAPSED = /\b(in|failed after) \d+\.\ds\b/g;
/** Where a recorded run's own times start in the fixture (after the seeded ones). */
const RUN_TIME_BASE = Date.parse('2025-06-01T10:01:00Z');
/** Event times of a recorded run, in answers. */
const RUN_EVENT_TIME = '2025-06-01T10:01:30Z';

const escapeRe = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\n/g, '\\n');

/**
 * What a run's clock put in the exchanges, made the same from one recording to the next. In
 * requests, a time the run took now is `<time>`; a condition's time carried over unchanged from
 * the Build it last read (same type, same status, same time) is the fixed value that answer got,
 * so the fixture still says the runner sends back what it read. In answers, each write's new
 * condition times become one fixed time per write (10:01:01, 10:01:02, ...), event times
 * RUN_EVENT_TIME. Elapsed times in messages become a pattern in requests and 0.1s in answers.
 */
class RunClock {
  /** `type\0status\0real time` → the fixed time that transition has in answers. */
  readonly #transitions = new Map<string, string>();
  /** The conditions of the last Build answered, by type. */
  #last = new Map<string, { status: string; time: string }>();
  #writes = 0;

  constructor(private readonly since: number) {}

  #isRunTime(value: unknown): value is string {
    return typeof value === 'string' && TIME.test(value) && Date.parse(value) >= this.since - 1000;
  }

  request(body: unknown): unknown {
    let fresh = false;
    const fixedTime = () => {
      if (!fresh) {
        fresh = true;
        this.#writes++;
      }
      return new Date(RUN_TIME_BASE + this.#writes * 1000).toISOString().replace('.000Z', 'Z');
    };
    return this.#walk(body, (c) => {
      const key = `${c.type}\0${c.status}\0${c.lastTransitionTime}`;
      const last = this.#last.get(String(c.type));
      if (last && last.status === c.status && last.time === c.lastTransitionTime && this.#transitions.has(key)) return this.#transitions.get(key)!;
      if (!this.#transitions.has(key)) this.#transitions.set(key, fixedTime());
      return '<time>';
    }, () => '<time>', (message) => {
      let pattern = '';
      let at = 0;
      for (const m of message.matchAll(ELAPSED)) {
        pattern += `${escapeRe(message.slice(at, m.index))}${m[1]} \\d+\\.\\ds`;
        at = m.index + m[0].length;
      }
      return `<re:^${pattern}${escapeRe(message.slice(at))}$>`;
    });
  }

  reply(body: unknown): unknown {
    const out = this.#walk(body, (c) => {
      const key = `${c.type}\0${c.status}\0${c.lastTransitionTime}`;
      if (!this.#transitions.has(key)) this.#transitions.set(key, RUN_EVENT_TIME);
      return this.#transitions.get(key)!;
    }, () => RUN_EVENT_TIME, (message) => message.replace(ELAPSED, '$1 0.1s'));
    // Remembered as the server sent it: the runner's next request carries these real values.
    const status = (body as { kind?: string; status?: { conditions?: Array<Record<string, unknown>> } } | undefined);
    if (status && typeof status === 'object' && status.kind !== 'Event' && status.kind !== 'Status' && status.status) {
      this.#last = new Map((status.status.conditions ?? []).map((c) => [String(c.type), { status: String(c.status), time: String(c.lastTransitionTime) }]));
    }
    return out;
  }

  /** A copy of `value` with the run's times and elapsed times replaced. */
  #walk(
    value: unknown,
    condition: (c: Record<string, unknown>) => string,
    time: () => string,
    elapsed: (message: string) => string,
  ): unknown {
    const visit = (v: unknown, key: string, parent: Record<string, unknown> | undefined): unknown => {
      if (Array.isArray(v)) return v.map((x) => visit(x, '', undefined));
      if (v && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, visit(x, k, o)]));
      }
      if (key === 'lastTransitionTime' && parent && this.#isRunTime(v)) return condition(parent);
      if (this.#isRunTime(v)) return time();
      if (typeof v === 'string' && key === 'message' && v.search(ELAPSED) >= 0) return elapsed(v);
      return v;
    };
    return visit(value, '', undefined);
  }
}

class Normalizer {
  readonly #buildRv = new Map<string, string>();
  readonly #eventRv = new Map<string, string>();
  readonly #eventUid = new Map<string, string>();
  readonly #eventNames = new Map<string, string>();

  readonly #nextBuildRv: { n: number };
  readonly clock: RunClock | undefined;

  constructor(private readonly o: NormalizeOptions) {
    this.#nextBuildRv = { n: o.firstBuildResourceVersion ?? CANONICAL.firstBuildResourceVersion };
    this.clock = o.runStartedMs === undefined ? undefined : new RunClock(o.runStartedMs);
    for (const rv of o.buildVersions ?? []) this.buildRv(rv);
  }

  buildRv(rv: string): string {
    if (!this.#buildRv.has(rv)) {
      const pinned = this.o.pinnedVersions?.get(rv);
      const n = pinned ?? this.#nextBuildRv.n;
      this.#nextBuildRv.n = Math.max(this.#nextBuildRv.n, n + 1);
      this.#buildRv.set(rv, String(n));
    }
    return this.#buildRv.get(rv)!;
  }

  buildUid(uid: string): string {
    if (uid === this.o.buildUid) return this.o.canonicalBuildUid ?? CANONICAL.buildUid;
    return this.o.uids?.get(uid) ?? uid;
  }

  eventRv(rv: string): string {
    if (!this.#eventRv.has(rv)) this.#eventRv.set(rv, String(CANONICAL.firstEventResourceVersion + this.#eventRv.size));
    return this.#eventRv.get(rv)!;
  }

  eventUid(uid: string): string {
    if (!this.#eventUid.has(uid)) this.#eventUid.set(uid, CANONICAL.eventUid(this.#eventUid.size + 1));
    return this.#eventUid.get(uid)!;
  }

  get #object(): string {
    return this.o.buildName ?? 'b1';
  }

  /** Names the recording clock is in: `<object>.<hex>`, anywhere in a text. */
  get eventNames(): RegExp {
    return new RegExp(`${this.#object.replace(/[.]/g, '\\.')}\\.[0-9a-f]{16,}`, 'g');
  }

  /** Event names carry the recording clock; in answers they become <object>.<n-th name>. */
  eventName(name: string): string {
    if (!this.#eventNames.has(name)) this.#eventNames.set(name, `${this.#object}.${(0x1844cf1ee0a9c000n + BigInt(this.#eventNames.size)).toString(16)}`);
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
      if (typeof meta.uid === 'string') meta.uid = isEvent ? this.eventUid(meta.uid) : this.buildUid(meta.uid);
      if (typeof meta.creationTimestamp === 'string') meta.creationTimestamp = CANONICAL.serverTime;
      // In answers, event names were already replaced in the text (they appear in messages too).
      if (isEvent && from === 'request' && typeof meta.name === 'string' && new RegExp(`^${this.eventNames.source}$`).test(meta.name)) meta.name = CANONICAL.eventNamePattern(this.#object);
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
      if (typeof involved.uid === 'string') involved.uid = this.buildUid(involved.uid);
      if (typeof involved.resourceVersion === 'string') involved.resourceVersion = this.buildRv(involved.resourceVersion);
    }
    return obj;
  }

  path(path: string): string {
    // A fold PATCHes the first event by its (clock-derived) name.
    return path.replace(new RegExp(`(/events/)${this.eventNames.source}$`), '$1<any>');
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
    if (body !== undefined) request.body = n.object(n.clock ? n.clock.request(body) : body, 'request', x.request.path);
    if (!x.reply) return { request, error: x.error ?? 'unknown' };
    const reply: FixtureReply = { status: x.reply.status };
    const replyHeaders: Record<string, string> = {};
    for (const name of REPLY_HEADERS) if (x.reply.headers[name] !== undefined) replyHeaders[name] = x.reply.headers[name]!;
    reply.headers = replyHeaders;
    // Event names (a clock in them) also appear in Status messages and details: replace them everywhere.
    const replyText = x.reply.body.replace(n.eventNames, (name) => n.eventName(name));
    const replyBody = parseBody(replyText, x.reply.headers['content-type']);
    if (replyBody !== undefined) reply.body = n.object(n.clock ? n.clock.reply(replyBody) : replyBody, 'reply', x.request.path);
    return { request, reply };
  });
}
