import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScanEvents } from './scan-events.ts';

test('a waiter wakes as soon as its scan finishes, not at its timeout', async () => {
  const ev = new ScanEvents();
  const t0 = Date.now();
  const w = ev.next(7, 10_000);
  setTimeout(() => ev.finished(7), 20);
  await w.wait;
  assert.ok(Date.now() - t0 < 5_000);
});

test('a finish of another scan does not wake the waiter; its timeout does', async () => {
  const ev = new ScanEvents();
  let woke = false;
  const w = ev.next(1, 60);
  void w.wait.then(() => (woke = true));
  ev.finished(2);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(woke, false);
  await w.wait;
  assert.equal(woke, true);
});

test('several waiters on one scan all wake; cancelled waiters leave nothing behind', async () => {
  const ev = new ScanEvents();
  const a = ev.next(3, 10_000);
  const b = ev.next(3, 10_000);
  const c = ev.next(4, 10_000);
  c.cancel();
  await c.wait;
  ev.finished(3);
  await Promise.all([a.wait, b.wait]);
  assert.equal((ev as unknown as { waiting: Map<number, unknown> }).waiting.size, 0);
});
