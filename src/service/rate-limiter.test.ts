import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryRateLimiter } from './rate-limiter.ts';

test('allows `limit` calls per window, refuses the next with the seconds left, then resets', async () => {
  const l = new MemoryRateLimiter(60_000);
  const t0 = 1_000_000;
  for (let i = 0; i < 3; i++) assert.equal((await l.hit('a', 3, t0 + i)).allowed, true);
  const refused = await l.hit('a', 3, t0 + 15_000);
  assert.equal(refused.allowed, false);
  assert.equal(refused.retryAfterSeconds, 45);
  // another key has its own budget
  assert.equal((await l.hit('b', 3, t0 + 15_000)).allowed, true);
  // the next window starts afresh
  const next = await l.hit('a', 3, t0 + 60_000);
  assert.deepEqual(next, { allowed: true, remaining: 2, retryAfterSeconds: 60 });
});

test('a lowered limit applies at once to a window already under way', async () => {
  const l = new MemoryRateLimiter();
  for (let i = 0; i < 5; i++) await l.hit('k', 100, 0);
  assert.equal((await l.hit('k', 5, 1)).allowed, false);
});

test('the Redis limiter shares one budget between processes and resets with its window', async () => {
  const { Redis } = await import('ioredis');
  const { RedisRateLimiter } = await import('./rate-limiter.ts');
  const { REDIS_URL } = await import('../../test/services.ts');
  const a = new Redis(REDIS_URL);
  const b = new Redis(REDIS_URL);
  const prefix = `vt-rl-${process.pid}-${Date.now()}`;
  try {
    // two limiters = two API processes on the same Redis
    const one = new RedisRateLimiter(a, prefix, 1500);
    const two = new RedisRateLimiter(b, prefix, 1500);
    assert.equal((await one.hit('tok', 3)).allowed, true);
    assert.equal((await two.hit('tok', 3)).allowed, true);
    const third = await one.hit('tok', 3);
    assert.deepEqual({ allowed: third.allowed, remaining: third.remaining }, { allowed: true, remaining: 0 });
    const refused = await two.hit('tok', 3);
    assert.equal(refused.allowed, false);
    assert.ok(refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 2, `retry after ${refused.retryAfterSeconds}`);
    assert.equal((await two.hit('other', 3)).allowed, true, 'another key has its own budget');
    await new Promise((r) => setTimeout(r, 1600));
    assert.equal((await one.hit('tok', 3)).allowed, true, 'a new window after expiry');
  } finally {
    a.disconnect();
    b.disconnect();
  }
});
