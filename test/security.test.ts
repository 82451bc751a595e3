/**
 * Issue 5, security: the token never leaves the process (every scenario's run is scanned for it
 * centrally, in test/support/scenarios.ts; these add the cases built to provoke a leak), names are
 * validated before they reach a URL, the server is always verified against the mounted CA.
 */
import { describe, test } from 'node:test';
import { assertPassed, runScenario, scenariosOf } from './support/scenarios.js';

describe('security', { concurrency: 3 }, () => {
  for (const scenario of scenariosOf('security')) {
    test(`${scenario.id}: ${scenario.title}`, { timeout: scenario.timeoutMs, ...(scenario.todo ? { todo: scenario.todo } : {}) }, async () => {
      assertPassed(await runScenario(scenario));
    });
  }
});
