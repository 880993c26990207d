/**
 * Request budgets: how many calls a key (an API token) may make per window. One interface so
 * that the embedded mode counts in this process and the scale mode shares the counter between
 * processes (Redis) without the callers changing.
 *
 * @example
 *   const limiter = new MemoryRateLimiter();
 *   const d = await limiter.hit('token:7', 100);
 *   if (!d.allowed) reply.header('retry-after', d.retryAfterSeconds).code(429);
 */
export interface RateDecision {
  allowed: boolean;
  /** Calls left in the current window after this one (0 when refused). */
  remaining: number;
  /** Seconds until the window resets (at least 1). */
  retryAfterSeconds: number;
}

export interface RateLimiter {
  /** Counts one call of `key` against `limit` calls per window and says whether it may proceed. */
  hit(key: string, limit: number, now?: number): Promise<RateDecision>;
  close?(): Promise<void>;
}

/**
 * Fixed windows kept in this process's memory (the embedded mode runs one process). A refused
 * call is not counted, so a client that backs off gets its full budget in the next window.
 */
export class MemoryRateLimiter implements RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly windowMs = 60_000,
    /** Above this many keys, expired windows are swept. */
    private readonly sweepAbove = 10_000,
  ) {}

  async hit(key: string, limit: number, now = Date.now()): Promise<RateDecision> {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, count: 0 };
      this.windows.set(key, w);
      if (this.windows.size > this.sweepAbove) for (const [k, v] of this.windows) if (now - v.start >= this.windowMs) this.windows.delete(k);
    }
    const retryAfterSeconds = Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000));
    if (w.count >= limit) return { allowed: false, remaining: 0, retryAfterSeconds };
    w.count++;
    return { allowed: true, remaining: limit - w.count, retryAfterSeconds };
  }
}
