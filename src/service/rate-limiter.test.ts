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
