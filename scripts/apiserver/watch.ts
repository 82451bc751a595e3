/**
 * Watch: every stored change as an ADDED/MODIFIED/DELETED event at its resourceVersion, kept in a
 * bounded history so a watch can resume from a list's resourceVersion (the watch cache's role in
 * kube-apiserver), and handed to live watchers as it happens. No I/O: the HTTP side streams.
 */
export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Change<T> {
  type: ChangeType;
  /** The store revision this change made. */
  revision: number;
  /** The object after the change (for DELETED, as it was, under the deletion's resourceVersion). */
  object: T;
}

/** kube-apiserver's watch cache keeps at least 100 events per resource; this keeps more. */
const HISTORY = 1000;

export class ChangeLog<T> {
  private readonly history: Change<T>[] = [];
  private readonly listeners = new Set<(change: Change<T>) => void>();
  private floor = 0;

  record(change: Change<T>): void {
    this.history.push(change);
    if (this.history.length > HISTORY) this.floor = this.history.shift()?.revision ?? this.floor;
    for (const listener of this.listeners) listener(change);
  }

  /** The changes after `revision`, or undefined when they are no longer all kept (410 Expired). */
  since(revision: number): Change<T>[] | undefined {
    if (revision < this.floor) return undefined;
    return this.history.filter((c) => c.revision > revision);
  }

  /** Calls `listener` for every change from now on; returns the unsubscribe function. */
  subscribe(listener: (change: Change<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The oldest revision a watch may still start after. */
  get oldest(): number {
    return this.floor;
  }
}
