/**
 * Faults handled in the request path: conflicts, throttling and server errors, resets and hangs,
 * unconditional writes, token rotation, a replaced Build, bodies too large for us or the server. The scenarios are in reliability-faults.scenarios.ts.
 */
import { describeScenarios } from './support/scenario-harness.js';
import { FAULT_SCENARIOS } from './reliability-faults.scenarios.js';

describeScenarios('reliability: faults in the request path', FAULT_SCENARIOS, { concurrency: 3 });
