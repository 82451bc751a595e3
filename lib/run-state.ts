/**
 * One run's state and its I/O: the Build as last stored, the task running, the rules it is spelled
 * by, the uid every write is tied to, the owed task events, and the signals its calls run under.
 */
import type { PhaseField, Vocabulary } from './conditions.js';
import { isAborted } from './errors.js';
import type { Logger } from './log.js';
import type { BuildClient, RunProgress, Task } from './runner.js';
import { stopSignalOf, type StopSignal } from './signals.js';
import { writeStatus } from './status-write.js';
import { mark, rulesFor, type MarkExtra, type Mutation, type Rules } from './task-rules.js';
import type { Build, BuildRef } from './types.js';

/**
 * What one run's steps share: the client, the Build it is tied to, and the signals of its calls.
 *
 * Every call that moves the run forward (the first GET and its retries, a `Retry-After` wait, a
 * conflict re-read, the writes that start a task) is cut short by a stop at once. The calls that
 * report the run's end run under the stop until it comes, then under what is left of the grace
 * period, less a small reserve for the caller to exit cleanly.
 */
export class Run {
  build: Build | undefined;
  task: string | undefined;
  /** How this Build spells statuses and where its phase goes: known once it is read. */
  rules!: Rules;
  /**
   * When the Build's CRD does not store conditions (the first write's answer shows it), each
   * task's start and success are events too, owed until the write they describe is made.
   */
  taskEvents = false;
  #owed: Array<[reason: string, message: string]> = [];
  #uid: string | undefined;
  #stoppedAt: number | undefined;
  #reportSignal: AbortSignal | undefined;
  readonly owned: ReadonlySet<string>;

  constructor(
    readonly client: BuildClient,
    readonly ref: BuildRef,
    readonly log: Logger,
    private readonly ruleOptions: { vocabulary?: Vocabulary | undefined; phaseField?: PhaseField | undefined },
    readonly now: () => Date,
    readonly signal: AbortSignal,
    readonly events: boolean,
    readonly graceMs: number,
    tasks: readonly Task[],
    private readonly onProgress: ((progress: RunProgress) => void) | undefined,
  ) {
    this.owned = new Set(tasks.map((t) => t.type));
    if (signal.aborted) this.#stoppedAt = Date.now();
    else signal.addEventListener('abort', () => (this.#stoppedAt = Date.now()), { once: true });
  }

  get stopped(): boolean {
    return this.signal.aborted;
  }

  get stopName(): StopSignal {
    return stopSignalOf(this.signal);
  }

  /** The signal of a call that reports the run's end: the stop itself, then (once stopped) the rest of the grace period. */
  reportSignal(): AbortSignal {
    if (!this.signal.aborted) return this.signal;
    if (!this.#reportSignal) {
      // What the caller needs after the report gives up (stop the step's process group, write
      // the termination message, exit): a quarter of the grace period, at most 1 s. A tenth
      // (200 ms of a 2 s grace) was outrun by a loaded machine, and the exit was forced instead.
      const reserve = Math.min(1_000, this.graceMs / 4);
      this.#reportSignal = AbortSignal.timeout(Math.max(1, this.#stoppedAt! + this.graceMs - reserve - Date.now()));
    }
    return this.#reportSignal;
  }

  #progress(): void {
    this.onProgress?.({ build: this.build, task: this.task });
  }

  setTask(task: string | undefined): void {
    this.task = task;
    this.#progress();
  }

  get vocabulary(): Vocabulary {
    return this.rules.vocabulary;
  }

  async read(): Promise<Build> {
    this.build = await this.client.getBuild(this.ref, { signal: this.signal });
    // Every later write of the run is tied to this uid (client-go's Preconditions{UID}).
    this.#uid = this.build.metadata.uid;
    this.rules = rulesFor(this.build, this.client, this.ruleOptions);
    this.log.debug(`phase field: status.${this.rules.phaseField}${this.rules.guessed ? ' (a guess: the Build has neither phase nor stage)' : ''}`);
    this.#progress();
    return this.build;
  }

  /** A status write, cut short by the stop unless `signal` says otherwise; then the task events it owes. */
  async store(mutation: Mutation, signal: AbortSignal = this.signal): Promise<Build> {
    this.build = await writeStatus(this.client, this.ref, mutation, { base: this.build, uid: this.#uid, signal }, this.rules, this.log);
    this.#progress();
    const owed = this.#owed;
    this.#owed = [];
    for (const [reason, message] of owed) await this.emit('Normal', reason, message);
    return this.build;
  }

  /** A task event for the next write, when the CRD does not store conditions. */
  owe(reason: string, message: string): void {
    if (this.taskEvents) this.#owed.push([reason, message]);
  }

  /**
   * `store` for a write that reports the run's end: when the stop cuts it short (a wait on a slow
   * server, say), it is sent again at once under the grace period instead of being given up.
   */
  async report(mutation: Mutation): Promise<Build> {
    const signal = this.reportSignal();
    try {
      return await this.store(mutation, signal);
    } catch (err) {
      if (signal !== this.signal || !this.signal.aborted || !isAborted(err)) throw err;
      return await this.store(mutation, this.reportSignal());
    }
  }

  /** An event; one that reports the run's end (the default) may use the grace period. */
  async emit(type: 'Normal' | 'Warning', reason: string, message: string, signal: AbortSignal = this.reportSignal()): Promise<void> {
    if (this.events && this.build) await this.client.recordEvent(this.build, { type, reason, message }, { signal });
  }

  mark(type: string, status: string, extra: MarkExtra = {}): Mutation {
    return mark(type, status, this.now(), this.rules, extra, this.owned);
  }
}
