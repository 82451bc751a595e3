/**
 * Issue 5, faults around the process: an API server outage (within and beyond the deadline),
 * SIGTERM in the middle of a step, a step that floods stderr. The scenarios live in
 * test/support/scenarios.ts (shared with `npm run reliability`). They mostly wait, so they run
 * side by side; the 10 s outage is the long pole.
 */
import { describe, test } from 'node:test';
import { assertPassed, runScenario, scenariosOf } from './support/scenarios.js';

const IDS = ['outage-10s', 'outage-beyond-deadline', 'sigterm', 'stderr-100mb'];

describe('reliability: outages, signals, floods', { concurrency: 4 }, () => {
  for (const scenario of scenariosOf('reliability', IDS)) {
    test(`${scenario.id}: ${scenario.title}`, { timeout: scenario.timeoutMs, ...(scenario.todo ? { todo: scenario.todo } : {}) }, async () => {
      assertPassed(await runScenario(scenario));
    });
  }
});
