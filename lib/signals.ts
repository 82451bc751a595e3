/**
 * SIGTERM/SIGINT for a run: which stop it was, the exit code a shell would report for it, and the
 * process handlers that turn a signal into an abort and force the exit when the grace period ends.
 */
import { silentLogger, type Logger } from './log.js';

export type StopSignal = 'SIGTERM' | 'SIGINT';

/** A process stopped by a signal exits 128 + the signal's number, as a shell reports it. */
export const SIGNAL_EXIT_CODES = Object.freeze({ SIGINT: 130, SIGTERM: 143 } as const);

export const DEFAULT_GRACE_MS = 10_000;

/** The stop an aborted signal stands for: SIGINT when its reason says so; any other abort counts as SIGTERM. */
export function stopSignalOf(signal: AbortSignal): StopSignal {
  return signal.reason === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
}

/**
 * Installs SIGTERM/SIGINT handlers that abort `controller` with the signal's name, and force
 * `exit` with 130/143 when the run has not wound up within `graceMs` (or on a second signal).
 * Returns a function that removes them.
 */
export function handleStopSignals(
  controller: AbortController,
  options: { graceMs?: number; exit?: (code: number) => void; log?: Logger } = {},
): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? silentLogger;
  let timer: NodeJS.Timeout | undefined;
  const on = (name: StopSignal) => () => {
    const code = SIGNAL_EXIT_CODES[name];
    if (controller.signal.aborted) {
      log.warn(`second ${name}: exiting now`);
      exit(code);
      return;
    }
    log.warn(`${name} received: stopping the running task and reporting it`, { graceMs: options.graceMs ?? DEFAULT_GRACE_MS });
    timer = setTimeout(() => {
      log.error(`could not finish reporting within the grace period; exiting ${code}`);
      exit(code);
    }, options.graceMs ?? DEFAULT_GRACE_MS);
    controller.abort(name);
  };
  const onTerm = on('SIGTERM');
  const onInt = on('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    if (timer) clearTimeout(timer);
  };
}
