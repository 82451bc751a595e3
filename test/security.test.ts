/**
 * Security: the token never leaves the process, names are validated before they reach a URL, the
 * server is always verified against the mounted CA, masked values and terminal escapes stay out
 * of what the run writes. The scenarios are in security.scenarios.ts.
 */
import { SECURITY_SCENARIOS } from './security.scenarios.js';
import { describeScenarios } from './support/scenario-harness.js';

describeScenarios('security', SECURITY_SCENARIOS, { concurrency: 3 });
