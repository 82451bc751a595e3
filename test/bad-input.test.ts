/**
 * Issue 5, bad input: each case gets exactly one clear line on stderr naming the cause (and the
 * fix where there is one), the documented exit code, no stack trace, no request where none should
 * be sent, and an untouched Build. The cases live in test/support/scenarios.ts (BAD_INPUT_CASES).
 */
import { describe, test } from 'node:test';
import { assertPassed, runScenario, scenariosOf } from './support/scenarios.js';

describe('bad input', { concurrency: 4 }, () => {
  for (const scenario of scenariosOf('bad-input')) {
    test(`${scenario.id}: ${scenario.title}`, { timeout: scenario.timeoutMs, ...(scenario.todo ? { todo: scenario.todo } : {}) }, async () => {
      assertPassed(await runScenario(scenario));
    });
  }
});
