/**
 * Runs one benchmark job as a child process and reads its exit report (bench/jobs/common.ts).
 * Wall time is measured here, from spawn() to the child's exit.
 */
import { spawn } from 'node:child_process';

export interface JobReport {
  /** ms since the child's process start (its `performance.now()`). */
  marks: Record<string, number>;
  maxRssKiB: number;
  samples?: number[];
  cpuMicrosPerWrite?: number;
}

export interface ChildRun {
  report: JobReport;
  /** ms from spawn() to exit, measured by the parent. */
  wallMs: number;
}

const TIMEOUT_MS = 60_000;

/**
 * `node ...args` in `cwd` with only PATH, HOME and `env`: nothing of the parent's environment
 * (NODE_OPTIONS, npm_*) leaks in.
 */
export function runChild(cwd: string, args: readonly string[], env: Record<string, string>): Promise<ChildRun> {
  const fullEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env };
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, { cwd, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    let wallMs = 0;
    child.on('error', reject);
    child.on('exit', () => (wallMs = performance.now() - started));
    // 'close' comes after 'exit', once the pipes are drained.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) {
        reject(new Error(`node ${args.join(' ')} exited ${code ?? signal}\n${stderr.slice(-3000)}${stdout.slice(-1000)}`));
        return;
      }
      resolve({ report: JSON.parse(line) as JobReport, wallMs });
    });
  });
}
