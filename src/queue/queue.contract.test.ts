/**
 * One contract, two queues: the embedded queue (a table of SQLite, and of PostgreSQL) and
 * BullMQ on the Redis of this machine. Each case runs against every implementation through a
 * factory, so a behaviour the worker pool relies on cannot differ between the modes.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { openSqlite } from '../store/database.ts';
import { DbQueue } from './db-queue.ts';
import { BullMqQueue } from './bullmq-queue.ts';
import type { JobQueue } from './queue.ts';
import { scratchPostgres, REDIS_URL } from '../../test/services.ts';

interface Made {
  queue: JobQueue;
  /** A second handle on the same queue, as another process would open it. */
  other(): Promise<JobQueue>;
  close(): Promise<void>;
}

const LEASE = 600;

const factories: Record<string, () => Promise<Made>> = {
  'embedded (SQLite)': async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-queue-'));
    const db = await openSqlite({ file: path.join(dir, 'q.db'), synchronous: 'NORMAL' });
    return {
      queue: new DbQueue(db.db),
      other: async () => new DbQueue(db.db),
      close: async () => {
        await db.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  'embedded (PostgreSQL)': async () => {
    const pg = await scratchPostgres();
    return {
      queue: new DbQueue(pg.db.db),
      other: async () => new DbQueue(pg.db.db),
      close: () => pg.drop(),
    };
  },
  'BullMQ (Redis)': async () => {
    const prefix = `vt-${crypto.randomBytes(4).toString('hex')}`;
    const opts = { url: REDIS_URL, prefix, leaseMs: LEASE, stalledIntervalMs: 150 };
    const queue = new BullMqQueue(opts);
    const others: BullMqQueue[] = [];
    return {
      queue,
      other: async () => {
        const q = new BullMqQueue(opts);
        others.push(q);
        return q;
      },
      close: async () => {
        await queue.obliterate().catch(() => {});
        for (const q of others) await q.close();
        await queue.close();
      },
    };
  },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function claimWithin(q: JobQueue, worker: string, ms: number, lease = LEASE) {
  const until = Date.now() + ms;
  for (;;) {
    const j = await q.claim(worker, lease);
    if (j || Date.now() > until) return j;
    await sleep(50);
  }
}

for (const [name, make] of Object.entries(factories)) {
  describe(`job queue contract: ${name}`, () => {
    const opened: Made[] = [];
    const open = async () => {
      const m = await make();
      opened.push(m);
      return m;
    };
    after(async () => {
      for (const m of opened) await m.close();
    });

    test('a job is claimed once, carries its scan id, and is gone when completed', async () => {
      const { queue } = await open();
      assert.equal(await queue.has(41), false);
      await queue.enqueue(41);
      assert.equal(await queue.has(41), true);
      const job = await claimWithin(queue, 'w1', 2000);
      assert.ok(job, 'the job is claimable');
      assert.equal(job.scanId, 41);
      assert.equal(job.attempt, 1);
      assert.equal(await queue.claim('w2', LEASE), undefined, 'a held job is not handed out twice');
      assert.equal(await queue.has(41), true, 'an active job still counts');
      await queue.complete(job);
      assert.equal(await queue.has(41), false);
      assert.equal(await queue.claim('w1', LEASE), undefined);
    });

    test('jobs come out in submission order and concurrent claimers never share one', async () => {
      const { queue, other } = await open();
      const second = await other();
      for (let i = 1; i <= 40; i++) await queue.enqueue(1000 + i);
      const first = await claimWithin(queue, 'w0', 2000);
      assert.equal(first?.scanId, 1001, 'the oldest job first');
      await queue.complete(first!);
      const seen: number[] = [];
      await Promise.all(
        [queue, second, queue, second].map(async (q, i) => {
          for (;;) {
            const j = await q.claim(`w${i}`, 5000);
            if (!j) break;
            seen.push(j.scanId);
            await q.complete(j);
          }
        }),
      );
      assert.equal(seen.length, 39, `every job once: ${seen.length}`);
      assert.equal(new Set(seen).size, 39, 'no job claimed twice');
    });

    test('a retried job waits out its delay and comes back as the next attempt', async () => {
      const { queue } = await open();
      await queue.enqueue(7);
      const job = (await claimWithin(queue, 'w1', 2000))!;
      await queue.retry(job, 700, 'clamd is down');
      assert.equal(await queue.has(7), true, 'a delayed job still counts as pending');
      assert.equal(await queue.claim('w1', LEASE), undefined, 'not before its delay');
      const again = await claimWithin(queue, 'w1', 5000);
      assert.ok(again, 'claimable after the delay');
      assert.equal(again.scanId, 7);
      assert.equal(again.attempt, 2);
      await queue.complete(again);
    });

    test('a released job is claimable at once without counting an attempt', async () => {
      const { queue } = await open();
      await queue.enqueue(8);
      const job = (await claimWithin(queue, 'w1', 2000))!;
      await queue.release(job);
      const again = await claimWithin(queue, 'w2', 2000);
      assert.ok(again);
      assert.equal(again.attempt, 1, 'shutting down is not a failed attempt');
      await queue.complete(again);
    });

    test('a job whose lease expires (its worker died) goes to another worker as the next attempt', async () => {
      const { queue, other } = await open();
      const survivor = await other();
      await queue.enqueue(9);
      const job = await claimWithin(queue, 'dying', 2000);
      assert.ok(job);
      // the holder never renews nor completes: it was killed
      const taken = await claimWithin(survivor, 'survivor', 10_000);
      assert.ok(taken, 'another worker takes the job over after the lease');
      assert.equal(taken.scanId, 9);
      assert.equal(taken.attempt, 2);
      await survivor.complete(taken);
      assert.equal(await survivor.has(9), false);
    });

    test('renewing the lease keeps the job from being taken over', async () => {
      const { queue, other } = await open();
      const rival = await other();
      await queue.enqueue(10);
      const job = (await claimWithin(queue, 'holder', 2000))!;
      const until = Date.now() + LEASE * 4;
      while (Date.now() < until) {
        assert.equal(await queue.renew(job, 'holder', LEASE), true);
        assert.equal(await rival.claim('rival', LEASE), undefined, 'a renewed job stays with its holder');
        await sleep(LEASE / 4);
      }
      await queue.complete(job);
    });

    test('stats count waiting and active jobs', async () => {
      const { queue } = await open();
      for (const id of [21, 22, 23]) await queue.enqueue(id);
      await sleep(20);
      const job = (await claimWithin(queue, 'w1', 2000))!;
      const s = await queue.stats();
      assert.equal(s.waiting, 2);
      assert.equal(s.active, 1);
      assert.ok(s.oldestWaitingMs >= 0);
      await queue.complete(job);
    });

    test('an enqueue wakes the listeners of the queue', async () => {
      const { queue, other } = await open();
      const listener = await other();
      let woken = 0;
      const off = listener.onAvailable(() => woken++);
      await sleep(1000); // event subscriptions are asynchronous for Redis streams
      if (listener === queue) assert.fail('factory must give a distinct handle');
      await queue.enqueue(31);
      const until = Date.now() + 10_000;
      while (woken === 0 && Date.now() < until) await sleep(20);
      off();
      // the embedded queue wakes the same process only; its other processes poll
      if (name.startsWith('BullMQ')) assert.ok(woken > 0, 'another process is woken through Redis');
      const j = (await claimWithin(queue, 'w', 2000))!;
      await queue.complete(j);
    });
  });
}
