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

// One round trip, atomic: a window starts with the first call and expires on its own; a
// refused call is not counted (same rule as the memory limiter).
const HIT_SCRIPT = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n, ttl} end
n = redis.call('INCR', KEYS[1])
if n == 1 or ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
return {1, n, ttl}
`;

/** The minimal Redis client surface the limiter needs (ioredis satisfies it). */
export interface RedisEval {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  quit?(): Promise<unknown>;
}

/**
 * Fixed windows counted in Redis, shared by every Verdict process of a deployment, so a client
 * spreading its calls over several API processes gets the same budget as against one.
 */
export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: RedisEval,
    private readonly prefix: string,
    private readonly windowMs = 60_000,
  ) {}

  async hit(key: string, limit: number): Promise<RateDecision> {
    const [ok, n, ttl] = (await this.redis.eval(HIT_SCRIPT, 1, `${this.prefix}:rate:${key}`, limit, this.windowMs)) as [number, number, number];
    const retryAfterSeconds = Math.max(1, Math.ceil(Math.max(0, ttl) / 1000));
    return ok === 1 ? { allowed: true, remaining: Math.max(0, limit - n), retryAfterSeconds } : { allowed: false, remaining: 0, retryAfterSeconds };
  }

  async close(): Promise<void> {
    await this.redis.quit?.();
  }
}
