/**
 * In-process notice that the writer committed new or replaced rows: wakes the watch streams of
 * this process at once (streams of other replicas find the rows by polling). Carries no data:
 * the store stays the source of truth.
 */
export class StoredSignal {
  private readonly listeners = new Set<() => void>();

  notify(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch {
        // The rows are durable; a failing listener must not make the caller store them again.
      }
    }
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
