/**
 * The client a build pod uses: configuration, one transport, and the Build and Event calls bound
 * to it. The runner asks for less (its `BuildClient`, declared in runner.ts), which this client
 * satisfies.
 */
import type { Dispatcher } from 'undici';
import * as builds from './builds.js';
import { loadConfig, type ClusterConfig, type ConfigOptions } from './config.js';
import { EventRecorder, type EventInput, type EventOutcome, type EventRecorderOptions } from './events.js';
import { silentLogger, type Logger } from './log.js';
import type { JsonPatchOperation } from './patches.js';
import type { RetryPolicy } from './retry.js';
import { createTransport, type Transport } from './transport.js';
import type { Build, BuildRef } from './types.js';

export interface ClientOptions extends ConfigOptions {
  /** Use this dispatcher (tests: undici's MockAgent). */
  dispatcher?: Dispatcher;
  /** Per-attempt timeout (default 30 s). */
  timeoutMs?: number;
  /** Response body cap (default 10 MiB). */
  bodyLimitBytes?: number;
  /** Request body cap (default 1 MiB): a larger body is a `RequestTooLargeError`, nothing sent. */
  maxRequestBytes?: number;
  retry?: Partial<RetryPolicy>;
  /** Jitter source in [0, 1); tests pass a seeded one. */
  random?: () => number;
  logger?: Logger;
  /** Event `reportingComponent` / `source.component` and `reportingInstance`. */
  events?: Omit<EventRecorderOptions, 'logger'>;
}

export interface SpotClient {
  /** The API server's origin. */
  readonly server: string;
  /** The pod's namespace; undefined in a cluster when it cannot be told (see `ClusterConfig.namespace`). */
  readonly namespace: string | undefined;
  getBuild(ref: BuildRef, options?: builds.CallOptions): Promise<Build>;
  updateBuildStatus(ref: BuildRef, mutate: (build: Build) => void, options?: builds.UpdateOptions): Promise<Build>;
  recordEvent(build: Build, event: EventInput, options?: builds.CallOptions): Promise<EventOutcome>;
  replaceBuildStatus(build: Build, options?: builds.CallOptions): Promise<Build>;
  patchBuildStatus(
    ref: BuildRef,
    patch: Record<string, unknown> | JsonPatchOperation[],
    options: builds.PatchOptions,
  ): Promise<Build>;
  /** Releases the agent and its sockets. */
  close(): Promise<void>;
}

/** Loads the configuration (in-cluster unless `server` is given) and returns a client. */
export async function createClient(options: ClientOptions = {}): Promise<SpotClient> {
  return clientFromConfig(await loadConfig(options), options);
}

/** A client for an already loaded configuration. */
export function clientFromConfig(config: ClusterConfig, options: Omit<ClientOptions, keyof ConfigOptions> & { logger?: Logger } = {}): SpotClient {
  const logger = options.logger ?? silentLogger;
  const transport: Transport = createTransport({
    server: config.server,
    ca: config.ca,
    tokenSource: config.tokenSource,
    ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.bodyLimitBytes !== undefined ? { bodyLimitBytes: options.bodyLimitBytes } : {}),
    ...(options.maxRequestBytes !== undefined ? { maxRequestBytes: options.maxRequestBytes } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
    ...(options.random ? { random: options.random } : {}),
    logger,
  });
  const recorder = new EventRecorder(transport, { ...options.events, logger });
  return {
    server: config.server,
    namespace: config.namespace,
    getBuild: (ref, o) => builds.getBuild(transport, ref, o),
    replaceBuildStatus: (build, o) => builds.replaceBuildStatus(transport, build, o),
    patchBuildStatus: (ref, patch, o) => builds.patchBuildStatus(transport, ref, patch, o),
    updateBuildStatus: (ref, mutate, o) => builds.updateBuildStatus(transport, ref, mutate, { logger, ...o }),
    recordEvent: (build, event, o) => recorder.record(build, event, o),
    close: () => transport.close(),
  };
}
