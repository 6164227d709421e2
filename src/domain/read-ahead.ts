/**
 * Reads batches from an async source ahead of their consumer, up to `highWater` items queued, so
 * that batches arriving while the consumer is busy (e.g. committing a transaction) are already
 * waiting when it comes back: the consumer then takes all of them at once (group commit).
 *
 * An error of the source is held back until every batch received before it has been taken, so the
 * consumer sees the same order of events as a plain `for await` over the source.
 */
export class ReadAhead<T> {
  private readonly queue: T[][] = [];
  private queued = 0;
  private ended = false;
  private failed = false;
  private error: unknown;
  private stopped = false;
  /** wakes the consumer waiting in take() */
  private wakeConsumer: (() => void) | undefined;
  /** wakes the pump waiting for room below highWater */
  private wakePump: (() => void) | undefined;
  private readonly iterator: AsyncIterator<T[]>;

  constructor(
    source: AsyncIterable<T[]>,
    private readonly highWater: number,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
    void this.pump();
  }

  /**
   * Waits for at least one batch, then takes every queued batch while their items fit in `max`
   * (always at least one batch, however large) and returns their items in order. Undefined once the
   * source has ended and everything was taken; throws the source's error at its place in the order.
   * While waiting, an aborted `signal` throws its reason (queued batches stay untaken).
   */
  async take(max: number, signal?: AbortSignal): Promise<T[] | undefined> {
    while (this.queue.length === 0 && !this.ended) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        if (!signal) return void (this.wakeConsumer = resolve);
        const onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
        this.wakeConsumer = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
      });
    }
    if (this.queue.length === 0) {
      if (this.failed) throw this.error;
      return undefined;
    }
    let items = this.queue.shift()!;
    let n = items.length;
    if (this.queue.length > 0 && n + this.queue[0].length <= max) {
      items = items.slice();
      while (this.queue.length > 0 && n + this.queue[0].length <= max) {
        const next = this.queue.shift()!;
        for (const x of next) items.push(x);
        n += next.length;
      }
    }
    this.queued -= n;
    this.wake("pump");
    return items;
  }

  /** Stops reading (the consumer is done or failed); a read in progress is abandoned. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.wake("pump");
    // not awaited: a source's return() may wait for the read it is blocked in
    void Promise.resolve()
      .then(() => this.iterator.return?.())
      .catch(() => undefined);
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        while (this.queued >= this.highWater && !this.stopped) await new Promise<void>((resolve) => (this.wakePump = resolve));
        if (this.stopped) return;
        const r = await this.iterator.next();
        if (r.done || this.stopped) return;
        this.queue.push(r.value);
        this.queued += r.value.length;
        this.wake("consumer");
      }
    } catch (err) {
      this.failed = true;
      this.error = err;
    } finally {
      this.ended = true;
      this.wake("consumer");
    }
  }

  private wake(who: "consumer" | "pump"): void {
    const fn = who === "consumer" ? this.wakeConsumer : this.wakePump;
    if (who === "consumer") this.wakeConsumer = undefined;
    else this.wakePump = undefined;
    fn?.();
  }
}
