/**
 * A bound on the bytes of claim-checked objects held in memory at once: `acquire(n)` waits until
 * `n` bytes fit under the budget (an object larger than the whole budget waits until it is alone),
 * in arrival order, and resolves with the release function.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  async acquire(bytes: number): Promise<() => void> {
    const take = Math.min(bytes, this.limit);
    if (this.waiting.length > 0 || this.used + take > this.limit) {
      await new Promise<void>((grant) => this.waiting.push({ bytes: take, grant }));
    } else {
      this.used += take;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= take;
      this.drain();
    };
  }

  private drain(): void {
    for (let next = this.waiting[0]; next && this.used + next.bytes <= this.limit; next = this.waiting[0]) {
      this.waiting.shift();
      this.used += next.bytes;
      next.grant();
    }
  }
}
