/**
 * Issue 5, faults handled in the request path: conflicts, throttling and server errors, resets and
 * hangs, token rotation. The scenarios live in test/support/scenarios.ts (shared with
 * `npm run reliability`); each run there checks the stored Build, the events, the exit code, the
 * request log, and that no token leaked anywhere.
 */
import { describe, test } from 'node:test';
import { assertPassed, runScenario, scenariosOf } from './support/scenarios.js';

const IDS = ['baseline', 'conflict-storm', 'throttle-5xx-inprocess', 'retry-limits', 'throttle-5xx-cli', 'resets-cli', 'unconditional-write', 'token-rotation'];

describe('reliability: faults in the request path', { concurrency: 3 }, () => {
  for (const scenario of scenariosOf('reliability', IDS)) {
    test(`${scenario.id}: ${scenario.title}`, { timeout: scenario.timeoutMs, ...(scenario.todo ? { todo: scenario.todo } : {}) }, async () => {
      assertPassed(await runScenario(scenario));
    });
  }
});
