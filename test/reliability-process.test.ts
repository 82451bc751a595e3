/**
 * Faults around the process: an API server outage (within and beyond the deadline, or
 * unreachable), signals, the termination message, --timeout, a step that floods stderr. The
 * scenarios are in reliability-process.scenarios.ts. They mostly wait, so they run side by side; the 10 s outage is
 * the long pole.
 */
import { describeScenarios } from './support/scenario-harness.js';
import { PROCESS_SCENARIOS } from './reliability-process.scenarios.js';

describeScenarios('reliability: outages, signals, floods', PROCESS_SCENARIOS, { concurrency: 4 });
