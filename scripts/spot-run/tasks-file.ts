/**
 * spot-run's --tasks file: a JSON list of steps, or an object with the list and the build's
 * deadline. Read once, at planning; every fault is a usage error (exit 2) naming the file, and
 * none quotes it (its env may hold secrets).
 */
import { readFile } from 'node:fs/promises';
import { conditionTypeProblem } from '../../lib/conditions.js';
import { shown } from '../../lib/names.js';
import { parseSteps, type StepSpec } from '../../lib/steps.js';
import { usageError } from './exit-codes.js';
import { findJsonSyntaxFault } from './json-syntax.js';

/** What a --tasks file holds: its steps, and the build's deadline when it sets one. */
export interface TasksFile {
  steps: StepSpec[];
  timeoutSeconds: number | undefined;
}

/** A list of steps, or `{ "timeoutSeconds"?: N, "tasks": [...] }`. */
function parseTasksFile(json: unknown, file: string): TasksFile {
  const source = `--tasks file ${file}`;
  if (!json || typeof json !== 'object' || Array.isArray(json)) return { steps: parseSteps(json, source), timeoutSeconds: undefined };
  const { tasks, timeoutSeconds, ...rest } = json as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new TypeError(`${source} has unknown field ${shown(unknown[0]!)} (expected "tasks" and "timeoutSeconds")`);
  if (tasks === undefined) throw new TypeError(`${source} needs "tasks", the list of steps`);
  if (timeoutSeconds !== undefined && !(typeof timeoutSeconds === 'number' && timeoutSeconds > 0 && Number.isFinite(timeoutSeconds))) {
    throw new TypeError(`${source}: "timeoutSeconds" must be a positive number`);
  }
  return { steps: parseSteps(tasks, source), timeoutSeconds: timeoutSeconds as number | undefined };
}

/** The --tasks file: read, parsed and checked; every fault a usage error naming the file. */
export async function readTasksFile(file: string): Promise<TasksFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read --tasks file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Position and cause only: JSON.parse's message quotes the file, whose env may hold secrets.
    const fault = findJsonSyntaxFault(text);
    throw usageError(`--tasks file ${file} is not valid JSON${fault ? `: line ${fault.line}, column ${fault.column}: ${fault.cause}` : ''}`);
  }
  let parsed: TasksFile;
  try {
    parsed = parseTasksFile(json, file);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  parsed.steps.forEach((step, i) => {
    const problem = conditionTypeProblem(step.type);
    if (problem) throw usageError(`--tasks file ${file} step ${i + 1}: "type" ${problem}`);
  });
  return parsed;
}
