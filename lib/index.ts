/** spot-runtime's public API: everything not exported here is internal and may change. */
export { createClient, clientFromConfig, type ClientOptions, type SpotClient } from './client.js';
export { loadConfig, serverUrl, DEFAULT_SERVICEACCOUNT_DIR, type ConfigOptions, type ClusterConfig } from './config.js';
export { FileTokenSource, StaticTokenSource, TOKEN_REREAD_PERIOD_MS, type TokenSource } from './token.js';
export { createTransport, DEFAULT_MAX_REQUEST_BYTES, type Transport, type TransportOptions, type RequestOptions, type HttpMethod } from './transport.js';
export { DEFAULT_RETRY_POLICY, retryDelay, parseRetryAfter, type RetryPolicy, type AttemptFailure } from './retry.js';
export {
  getBuild,
  replaceBuildStatus,
  patchBuildStatus,
  updateBuildStatus,
  buildPath,
  MERGE_PATCH,
  JSON_PATCH,
  type CallOptions,
  type PatchOptions,
  type UpdateOptions,
} from './builds.js';
export { EventRecorder, makeEvent, eventName, MAX_MESSAGE_BYTES, type EventInput, type EventOutcome, type EventRecorderOptions } from './events.js';
export { sanitizeMessage, cleanMessage, stripControls, fitMessage, truncateUtf8, MAX_CONDITION_MESSAGE_BYTES, MAX_EVENT_MESSAGE_BYTES } from './messages.js';
export {
  summarizeOutcome,
  summarizeError,
  summarizeForcedExit,
  formatTerminationMessage,
  writeTerminationMessage,
  TERMINATION_MESSAGE_MAX_BYTES,
  DEFAULT_TERMINATION_LOG,
  type TerminationSummary,
} from './termination.js';
export {
  getCondition,
  setCondition,
  derivePhase,
  applyCondition,
  phaseFieldOf,
  PHASE_FIELDS,
  type PhaseField,
  formatTime,
  validateConditionType,
  MAX_CONDITION_TYPE_LENGTH,
  ConditionStatuses,
  Phases,
  DEFAULT_VOCABULARY,
  type Vocabulary,
} from './conditions.js';
export { createMergePatch, jsonEqual, type JsonPatchOperation } from './patches.js';
export {
  runTasks,
  monitorCondition,
  reportFatalError,
  handleStopSignals,
  Reasons,
  DEFAULT_GRACE_MS,
  DEFAULT_FATAL_DEADLINE_MS,
  type FatalReport,
  type RunProgress,
  type Task,
  type TaskContext,
  type TaskResult,
  type RunOptions,
  type RunOutcome,
  type ConditionOutcome,
  type StopSignal,
  type BuildClient,
} from './runner.js';
export { stepTask, runStep, parseSteps, type StepSpec, type StepOptions } from './steps.js';
export { imageDigest, imageFromResults, MAX_RESULT_BYTES, RESULT_FILES, type ResultFiles } from './results.js';
export { parseBuildReference, buildRefFromParts, formatBuildReference, buildRef, validateName, validateNamespace } from './names.js';
export { DEFAULT_RESOURCE, parseResource, formatResource, apiVersionOf, validateResource, type BuildResource } from './resource.js';
export {
  SpotError,
  ConfigError,
  InvalidNameError,
  ApiError,
  ResponseError,
  NetworkError,
  TimeoutError,
  AbortedError,
  TaskFailure,
  BuildReplacedError,
  RequestTooLargeError,
  isSpotError,
  isApiError,
  isNotFound,
  isConflict,
  isAlreadyExists,
  isUnauthorized,
  isForbidden,
  isTooManyRequests,
  isInvalid,
  isBuildReplaced,
  isAborted,
  type SpotErrorCode,
  type RequestTarget,
} from './errors.js';
export { createLogger, silentLogger, type Logger, type LogLevel, type LogFormat, type LogFields } from './log.js';
export { redact, registerMaskedValue, MIN_MASKED_LENGTH } from './secrets.js';
export { VERSION } from './version.js';
export { preferLowMemoryWasm } from './undici.js';
export { preferSmallYoungGeneration } from './output.js';
export * from './types.js';
