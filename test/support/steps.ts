/** What the step tests share: a step's output collected instead of printed, and its failure. */
import { strict as assert } from 'node:assert';
import { TaskFailure } from '../../lib/errors.js';
import type { StepOptions } from '../../lib/steps.js';

/** Options that collect a step's output in `out` and `err`, with results folders under `resultsParent`. */
export function collectingStepOptions(resultsParent: string): StepOptions & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), resultsParent, killGraceMs: 200 };
}

/** The `TaskFailure` a step's promise rejects with; fails the test if it resolves or rejects otherwise. */
export async function taskFailure(promise: Promise<unknown>): Promise<TaskFailure> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TaskFailure, `expected a TaskFailure, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the step to fail');
}
