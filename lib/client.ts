/**
 * The client a build pod uses: configuration, one transport, and the Build and Event calls bound
 * to it. The runner asks for less (its `BuildClient`, declared in runner.ts), which this client
 * satisfies.
 */
import type { Dispatcher } from 'undici';
import * as builds from './builds.js';
import { PHASE_FIELDS, type PhaseField } from './conditions.js';
import { loadConfig, type ClusterConfig, type ConfigOptions } from './config.js';
import { EventRecorder, type EventInput, type EventOutcome, type EventRecorderOptions } from './events.js';
import { silentLogger, type Logger } from './log.js';
import { buildRefFromParts } from './names.js';
import type { JsonPatchOperation } from './patches.js';
import { StatusPruning } from './pruning.js';
import { DEFAULT_RESOURCE, validateResource, type BuildResource } from './resource.js';
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
  /**
   * The custom resource the Builds are (default `builds.v1alpha1.spot.release.com`, kind `Build`),
   * as the Go package's `NewClient(ctx, groupVersion)`. Without `kind`, any kind the server
   * answers with is taken (and named in events).
   */
  resource?: BuildResource;
  /**
   * Where the phase is written: `phase` or `stage` (the published Spot CRD). Default: told from
   * each Build as read (see `phaseFieldOf`).
   */
  phaseField?: PhaseField;
}

export interface SpotClient {
  /** The API server's origin. */
  readonly server: string;
  /** The pod's namespace; undefined in a cluster when it cannot be told (see `ClusterConfig.namespace`). */
  readonly namespace: string | undefined;
  /** The custom resource the Builds are. */
  readonly resource: Readonly<BuildResource>;
  /** The phase field given in the options; undefined: told from each Build. */
  readonly phaseField: PhaseField | undefined;
  /** Status fields this client has seen the server drop (e.g. `conditions`, `image.metadata`); later writes leave them out. */
  readonly prunedFields: readonly string[];
  /**
   * `GET` the Build. `ref` may also be `BUILD_REFERENCE` already split on `/` (the Go `GetBuild`'s
   * form): exactly 2 parts, else an `InvalidNameError` ("BUILD_REFERENCE is expected to have 2
   * components, had N: ...") before anything is sent.
   */
  getBuild(ref: BuildRef | readonly string[], options?: builds.CallOptions): Promise<Build>;
  /**
   * `updateBuildStatus` (builds.ts) that also leaves out what the server's schema drops: the first
   * write's answer shows it, later writes do not send it again, and `mutate` still sees those
   * fields as last written (so a phase derived from conditions counts every task's).
   */
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
  const resource = Object.freeze({ ...validateResource(options.resource ?? DEFAULT_RESOURCE) });
  if (options.phaseField !== undefined && !PHASE_FIELDS.includes(options.phaseField)) {
    throw new TypeError(`phaseField must be 'phase' or 'stage', got ${JSON.stringify(options.phaseField)}`);
  }
  const pruning = new StatusPruning(logger);
  return {
    server: config.server,
    namespace: config.namespace,
    resource,
    phaseField: options.phaseField,
    get prunedFields() {
      return pruning.dropped;
    },
    getBuild: (ref, o) => builds.getBuild(transport, Array.isArray(ref) ? buildRefFromParts(ref) : (ref as BuildRef), { resource, ...o }),
    replaceBuildStatus: (build, o) => builds.replaceBuildStatus(transport, build, { resource, ...o }),
    patchBuildStatus: (ref, patch, o) => builds.patchBuildStatus(transport, ref, patch, { resource, ...o }),
    updateBuildStatus: async (ref, mutate, o) => {
      const write = pruning.write(ref, mutate);
      const stored = await builds.updateBuildStatus(transport, ref, write.mutate, { logger, resource, ...o });
      write.settle(stored);
      return stored;
    },
    recordEvent: (build, event, o) => recorder.record(build, event, o),
    close: () => transport.close(),
  };
}
