/**
 * A pool of in-process workers taking jobs from a queue: `concurrency` loops, each claiming a
 * job under a lease (renewed while it runs), handing it to `process`, and completing,
 * retrying or releasing it by the outcome. Woken by the queue's notifications, with a slow
 * poll as a safety net (another process may enqueue, or a lease may expire).
 */
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Job, JobQueue } from './queue.ts';

export type JobOutcome = { kind: 'done' } | { kind: 'retry'; delayMs: number; error: string } | { kind: 'release' };

export interface WorkerPoolOptions {
  queue: JobQueue;
  concurrency: number;
  leaseMs: number;
  log: Logger;
  process: (job: Job, signal: AbortSignal) => Promise<JobOutcome>;
  pollMs?: number;
}

export class WorkerPool {
  readonly id = `w-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  private running = false;
  private readonly loops: Promise<void>[] = [];
  private readonly stop = new AbortController();
  private wake: (() => void)[] = [];
  private unsubscribe?: () => void;
  private active = 0;

  constructor(private readonly opts: WorkerPoolOptions) {}

  get busy(): number {
    return this.active;
  }

  start(): void {
    if (this.running || this.opts.concurrency <= 0) return;
    this.running = true;
    this.unsubscribe = this.opts.queue.onAvailable(() => this.notify());
    for (let i = 0; i < this.opts.concurrency; i++) this.loops.push(this.loop(i));
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake.push(done);
    });
  }

  private async loop(n: number): Promise<void> {
    const { queue, leaseMs, log } = this.opts;
    const workerId = `${this.id}-${n}`;
    while (this.running) {
      let job: Job | undefined;
      try {
        job = await queue.claim(workerId, leaseMs);
      } catch (e) {
        log.error({ err: e }, 'claiming a job failed; retrying');
        await this.sleep(1000);
        continue;
      }
      if (!job) {
        await this.sleep(this.opts.pollMs ?? 1000);
        continue;
      }
      this.active++;
      const renew = setInterval(() => {
        queue.renew(job!, workerId, leaseMs).catch((e) => log.warn({ err: e, job: job!.id }, 'lease renewal failed'));
      }, Math.max(500, leaseMs / 3));
      try {
        const outcome = await this.opts.process(job, this.stop.signal);
        if (outcome.kind === 'done') await queue.complete(job);
        else if (outcome.kind === 'retry') await queue.retry(job, outcome.delayMs, outcome.error);
        else await queue.release(job);
      } catch (e) {
        log.error({ err: e, scanId: job.scanId }, 'job processing crashed; it will be retried');
        await queue.retry(job, 5000, (e as Error).message).catch(() => {});
      } finally {
        clearInterval(renew);
        this.active--;
      }
    }
  }

  /** Stops taking jobs; in-flight scans get `graceMs` to finish, then are aborted and handed back. */
  async close(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    this.notify();
    const all = Promise.all(this.loops);
    const timer = setTimeout(() => this.stop.abort(new Error('shutting down')), graceMs);
    await all;
    clearTimeout(timer);
  }
}
