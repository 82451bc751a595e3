/**
 * Which processes are still alive, read from /proc. A zombie (dead, only not yet reaped by init,
 * which in a container can take seconds) does not count: signalling its group still succeeds.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** State and process group of `pid` from /proc/PID/stat, or undefined when it is gone. */
function stat(pid: number | string): { state: string; pgrp: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // exited meanwhile
  }
  // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
  const [state, , pgrp] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: state ?? '?', pgrp: Number(pgrp) };
}

const dead = (state: string) => state === 'Z' || state === 'X';

/** Live members of process group `pgid`. */
export function liveGroupMembers(pgid: number): number[] {
  const live: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(entry);
    if (s && s.pgrp === pgid && !dead(s.state)) live.push(Number(entry));
  }
  return live;
}

/** True while `pid` runs. */
export function isLive(pid: number): boolean {
  const s = stat(pid);
  return !!s && !dead(s.state);
}

/**
 * Live members of `pgid` once they have had `withinMs` to die. SIGKILL is delivered when the
 * kernel next schedules the process, so on a loaded machine a just-killed process can still show
 * as running for a moment; the bound keeps "killed" a real promise without racing that moment.
 */
export async function liveGroupMembersAfter(pgid: number, withinMs = 2_000): Promise<number[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    const live = liveGroupMembers(pgid);
    if (live.length === 0 || Date.now() >= until) return live;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
