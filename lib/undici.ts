/**
 * The two pieces of undici this runtime uses: the `Agent` and the `request` API. Loaded from
 * their own modules instead of undici's index, which also loads fetch, WebSocket, EventSource,
 * the cache and mock layers and costs a build pod about 100 ms and 7 MiB at every start
 * (BENCHMARKS.md). undici publishes no `exports` map, so these paths are reachable; package.json
 * pins undici exactly because they are not a promise of undici's, and test/undici.test.ts checks
 * they are the same objects the public index exports.
 */
import { setFlagsFromString } from 'node:v8';
import type { Agent as AgentType, Dispatcher } from 'undici';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import apiRequest from 'undici/lib/api/api-request.js';

export const Agent: typeof AgentType = AgentClass;

/** `dispatcher.request(options)`, without relying on undici's index having decorated the prototype. */
export function request(dispatcher: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(dispatcher, options);
}

/**
 * Makes V8 compile WebAssembly with its baseline compiler only (`--liftoff-only`). undici parses
 * HTTP/1.1 with llhttp compiled to WebAssembly, and V8 otherwise re-compiles it in the background
 * with its optimising compiler: for a process that sends a dozen requests that costs about 35 MiB
 * of peak memory and a quarter of a second before it can exit, and gains nothing (BENCHMARKS.md).
 * The flag is process-wide, so the library never sets it by itself: `spot-run` calls this at
 * start, and a build program that owns its process may too. Call it before the first request.
 */
export function preferLowMemoryWasm(): void {
  setFlagsFromString('--liftoff-only');
}
