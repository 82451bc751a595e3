/**
 * Bad input: exactly one clear line on stderr, the documented exit code, no stack trace, no
 * request where none should be sent, an untouched Build. The cases are in bad-input.scenarios.ts.
 */
import { BAD_INPUT_SCENARIOS } from './bad-input.scenarios.js';
import { describeScenarios } from './support/scenario-harness.js';

describeScenarios('bad input', BAD_INPUT_SCENARIOS, { concurrency: 4 });
