/**
 * The server processes of a cluster (etcd, kube-apiserver): each in its own process group, its
 * output in a log file, stopped with SIGTERM then SIGKILL. Whatever is still running when this
 * process exits, however it exits, is killed from an exit hook; and the Go mains tie themselves
 * to this process (internal/lifeline), so even a SIGKILL of the test runner leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  /** stdout and stderr of the process. */
  readonly logPath: string;
  /** Resolves when it has exited, with its code or signal. */
  readonly exited: Promise<string>;
  /** True once it has exited. */
  readonly done: boolean;
  /** SIGTERM to its group; SIGKILL after `graceMs`. Resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** The last lines of its log, for an error message. */
  tail(lines?: number): string;
}

const running = new Set<ChildProcess>();
let hooked = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // Synchronous: 'exit' handlers cannot wait. SIGKILL, since there is no time for a graceful stop.
  process.on('exit', () => {
    for (const child of running) killGroup(child, 'SIGKILL');
  });
}

export function logTail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function startServer(name: string, command: string, args: string[], logPath: string, env: Record<string, string> = {}): ServerProcess {
  hookExit();
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env, SPOT_CLUSTER_PARENT_PID: String(process.pid) },
    });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`cannot start ${name} (${command})`);
  running.add(child);
  let done = false;
  const exited = new Promise<string>((resolve) => {
    const finish = (how: string) => {
      done = true;
      running.delete(child);
      // Children it started (none expected) go with the group.
      killGroup(child, 'SIGKILL');
      resolve(how);
    };
    child.on('exit', (code, signal) => finish(signal ? `signal ${signal}` : `exit code ${code}`));
    child.on('error', (err) => finish(`error ${err.message}`));
  });
  return {
    name,
    pid: child.pid,
    logPath,
    exited,
    get done() {
      return done;
    },
    async stop(graceMs = 10_000) {
      if (done) return;
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    tail: (lines = 30) => logTail(logPath, lines),
  };
}
