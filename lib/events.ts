/**
 * core/v1 Events about a Build, shaped as client-go's recorder makes them so `kubectl describe
 * build` and `kubectl get events` show them. No `eventTime`: on core/v1 it would make `action`
 * and microsecond precision mandatory. A repeat of the same event on the same Build within ten
 * minutes is folded into the first one (count, lastTimestamp, message), as client-go's correlator.
 *
 * Messages are cleaned (escape sequences and control characters but newline and tab removed,
 * valid UTF-8, at most 1024 bytes: messages.ts); the recorder sends what it is given otherwise, so
 * redaction is its caller's (the runner sends only messages it has sanitized).
 *
 * Events are a side channel: recording one never throws; the outcome says what happened.
 */
import { isAlreadyExists, isNotFound } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { validateName, validateNamespace } from './names.js';
import type { Transport } from './transport.js';
import type { Build, CoreEvent, EventType } from './types.js';
import { formatTime } from './conditions.js';
import { cleanMessage, fitMessage, MAX_EVENT_MESSAGE_BYTES, truncateUtf8 } from './messages.js';

export interface EventInput {
  type: EventType;
  /** Short CamelCase cause, e.g. `Started`, `Completed`, `StepFailed`. */
  reason: string;
  message: string;
}

export type EventOutcome =
  | { ok: true; action: 'created' | 'folded'; name: string; count: number }
  | { ok: false; error: Error };

export interface EventRecorderOptions {
  /** `source.component` and `reportingComponent` (default `spot-runtime`). */
  component?: string;
  /** `reportingInstance`: the pod (default env `POD_NAME`, then `HOSTNAME`). */
  instance?: string;
  logger?: Logger;
  now?: () => Date;
  /** Fold window (default 10 minutes, client-go's). */
  foldWindowMs?: number;
}

/** Byte limit of an event message (events.k8s.io `note`); Go measures strings in bytes. */
export const MAX_MESSAGE_BYTES = MAX_EVENT_MESSAGE_BYTES;
const MAX_REASON_LENGTH = 128;
const MAX_CACHE_ENTRIES = 4096;
const FOLD_WINDOW_MS = 10 * 60_000;

// The message rules live in messages.ts (conditions share them); these stay importable from here.
export { fitMessage, truncateUtf8 };

let lastNanos = 0n;
/** `<build>.<hex nanoseconds>` like client-go, strictly increasing within the process. */
export function eventName(buildName: string, now: Date): string {
  let nanos = BigInt(now.getTime()) * 1_000_000n;
  if (nanos <= lastNanos) nanos = lastNanos + 1n;
  lastNanos = nanos;
  const suffix = `.${nanos.toString(16)}`;
  return `${buildName.slice(0, 253 - suffix.length).replace(/[.-]+$/, '')}${suffix}`;
}

/**
 * The Event about `build`, in the Build's namespace (an Event's namespace must be its involved
 * object's, whatever namespace the pod runs in); `involvedObject` names the Build as it was read,
 * so a client given another resource reports that resource's apiVersion and kind.
 */
export function makeEvent(build: Build, input: EventInput, init: { name: string; component: string; instance: string; now: Date }): CoreEvent {
  const { metadata } = build;
  const at = formatTime(init.now);
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: init.name, namespace: metadata.namespace },
    involvedObject: {
      apiVersion: build.apiVersion,
      kind: build.kind,
      name: metadata.name,
      namespace: metadata.namespace,
      ...(metadata.uid ? { uid: metadata.uid } : {}),
      ...(metadata.resourceVersion ? { resourceVersion: metadata.resourceVersion } : {}),
    },
    reason: input.reason,
    message: cleanMessage(input.message, MAX_MESSAGE_BYTES),
    type: input.type,
    source: { component: init.component },
    reportingComponent: init.component,
    reportingInstance: init.instance,
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  };
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  firstSeen: number;
}

export class EventRecorder {
  readonly #transport: Transport;
  readonly #component: string;
  readonly #instance: string;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #window: number;
  readonly #seen = new Map<string, Seen>();

  constructor(transport: Transport, options: EventRecorderOptions = {}) {
    this.#transport = transport;
    this.#component = options.component ?? 'spot-runtime';
    this.#instance = (options.instance ?? process.env.POD_NAME ?? process.env.HOSTNAME ?? 'unknown').slice(0, 128);
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? (() => new Date());
    this.#window = options.foldWindowMs ?? FOLD_WINDOW_MS;
  }

  /** Records `input` about `build`; never throws. */
  async record(build: Build, input: EventInput, options: { signal?: AbortSignal | undefined } = {}): Promise<EventOutcome> {
    try {
      if (input.type !== 'Normal' && input.type !== 'Warning') {
        throw new TypeError(`event type must be Normal or Warning, got ${JSON.stringify(input.type)}`);
      }
      if (!input.reason || input.reason.length > MAX_REASON_LENGTH) {
        throw new TypeError(`event reason must be 1 to ${MAX_REASON_LENGTH} characters`);
      }
      const namespace = validateNamespace(build.metadata.namespace, 'Build namespace');
      validateName(build.metadata.name, 'Build name');
      const now = this.#now();
      const key = [namespace, build.metadata.name, build.metadata.uid ?? '', input.type, input.reason, input.message].join('\u0000');
      const seen = this.#seen.get(key);
      if (seen && now.getTime() - seen.firstSeen < this.#window) {
        const folded = await this.#fold(seen, input, now, options.signal);
        if (folded) return folded;
      }
      const event = makeEvent(build, input, {
        name: eventName(build.metadata.name, now),
        component: this.#component,
        instance: this.#instance,
        now,
      });
      try {
        await this.#transport.request({
          method: 'POST',
          path: `/api/v1/namespaces/${namespace}/events`,
          body: event,
          // Safe to repeat: the name is fixed, so a repeat can only meet 409 AlreadyExists.
          idempotent: true,
          signal: options.signal,
        });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      this.#remember(key, { name: event.metadata.name, namespace, count: 1, firstSeen: now.getTime() });
      return { ok: true, action: 'created', name: event.metadata.name, count: 1 };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.#logger.warn('could not record event', { reason: input.reason, error });
      return { ok: false, error };
    }
  }

  /** Bumps the count of an earlier event; undefined when it is gone (then a new one is created). */
  async #fold(seen: Seen, input: EventInput, now: Date, signal: AbortSignal | undefined): Promise<EventOutcome | undefined> {
    const count = seen.count + 1;
    try {
      await this.#transport.request({
        method: 'PATCH',
        path: `/api/v1/namespaces/${seen.namespace}/events/${seen.name}`,
        body: { count, lastTimestamp: formatTime(now), message: cleanMessage(input.message, MAX_MESSAGE_BYTES) },
        contentType: 'application/merge-patch+json',
        // Setting the count to a number is the same however often it is done.
        idempotent: true,
        signal,
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    seen.count = count;
    return { ok: true, action: 'folded', name: seen.name, count };
  }

  #remember(key: string, seen: Seen): void {
    this.#seen.delete(key);
    this.#seen.set(key, seen);
    if (this.#seen.size > MAX_CACHE_ENTRIES) this.#seen.delete(this.#seen.keys().next().value as string);
  }
}
