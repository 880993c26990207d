/**
 * The embedded queue: jobs are rows of the metadata database, claimed under a lease with a
 * conditional update, so a job survives a crash and an expired lease lets another worker
 * take it over.
 */
import { EventEmitter } from 'node:events';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { Job, JobQueue, QueueStats } from './queue.ts';

export class DbQueue implements JobQueue {
  private readonly events = new EventEmitter();

  constructor(private readonly db: Kysely<Database>) {
    this.events.setMaxListeners(1000);
  }

  async enqueue(scanId: number): Promise<void> {
    const now = Date.now();
    await this.db.insertInto('jobs').values({ scan_id: scanId, state: 'waiting', attempts: 0, run_at: now, created_at: now, updated_at: now }).execute();
    this.events.emit('available');
  }

  async claim(workerId: string, leaseMs: number): Promise<Job | undefined> {
    const now = Date.now();
    for (let tries = 0; tries < 5; tries++) {
      const next = await this.db
        .selectFrom('jobs')
        .select(['id', 'attempts', 'state', 'locked_until'])
        .where((eb) =>
          eb.or([
            eb.and([eb('state', '=', 'waiting'), eb('run_at', '<=', now)]),
            eb.and([eb('state', '=', 'active'), eb('locked_until', '<', now)]),
          ]),
        )
        .orderBy('run_at')
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      if (!next) return undefined;
      const taken = await this.db
        .updateTable('jobs')
        .set({ state: 'active', locked_by: workerId, locked_until: now + leaseMs, attempts: next.attempts + 1, updated_at: now })
        .where('id', '=', next.id)
        .where('state', '=', next.state)
        .where('attempts', '=', next.attempts)
        .returning(['id', 'scan_id', 'attempts'])
        .executeTakeFirst();
      if (taken) return { id: String(taken.id), scanId: taken.scan_id, attempt: taken.attempts };
    }
    return undefined;
  }

  async renew(job: Job, workerId: string, leaseMs: number): Promise<boolean> {
    const r = await this.db
      .updateTable('jobs')
      .set({ locked_until: Date.now() + leaseMs, updated_at: Date.now() })
      .where('id', '=', Number(job.id))
      .where('state', '=', 'active')
      .where('locked_by', '=', workerId)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async complete(job: Job): Promise<void> {
    await this.db.deleteFrom('jobs').where('id', '=', Number(job.id)).execute();
  }

  async retry(job: Job, delayMs: number, error: string): Promise<void> {
    const now = Date.now();
    await this.db
      .updateTable('jobs')
      .set({ state: 'waiting', run_at: now + delayMs, locked_by: null, locked_until: null, last_error: error.slice(0, 1000), updated_at: now })
      .where('id', '=', Number(job.id))
      .execute();
    setTimeout(() => this.events.emit('available'), delayMs + 5).unref();
  }

  async release(job: Job): Promise<void> {
    await this.db
      .updateTable('jobs')
      .set((eb) => ({ state: 'waiting', run_at: Date.now(), locked_by: null, locked_until: null, attempts: eb('attempts', '-', 1), updated_at: Date.now() }))
      .where('id', '=', Number(job.id))
      .execute();
    this.events.emit('available');
  }

  async has(scanId: number): Promise<boolean> {
    const r = await this.db.selectFrom('jobs').select('id').where('scan_id', '=', scanId).limit(1).executeTakeFirst();
    return r !== undefined;
  }

  async stats(): Promise<QueueStats> {
    const rows = await this.db
      .selectFrom('jobs')
      .select((eb) => ['state', eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
      .groupBy('state')
      .execute();
    const waiting = rows.find((r) => r.state === 'waiting');
    const active = rows.find((r) => r.state === 'active');
    return {
      waiting: Number(waiting?.n ?? 0),
      active: Number(active?.n ?? 0),
      oldestWaitingMs: waiting?.oldest ? Date.now() - Number(waiting.oldest) : 0,
    };
  }

  onAvailable(listener: () => void): () => void {
    this.events.on('available', listener);
    return () => this.events.off('available', listener);
  }

  async close(): Promise<void> {
    this.events.removeAllListeners();
  }
}
