/**
 * The scale queue: BullMQ on Redis, behind the same `JobQueue` interface as the embedded one.
 * Workers pull jobs themselves (BullMQ's manual processing: `getNextJob` with a lock token,
 * `extendLock` while scanning, `moveToCompleted` / `moveToDelayed`), so the worker pool and the
 * scan runner are the same in both modes. A job whose lock expires (its worker died) is moved
 * back to waiting by BullMQ's stalled-job check, which every worker process runs, and another
 * worker takes it.
 *
 * Jobs are named after their scan (`scan-<id>`): enqueueing a scan that already has a job is a
 * no-op, and `has(scanId)` is one lookup.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Queue, QueueEvents, Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import type { Job, JobQueue, QueueStats } from './queue.ts';

interface ScanJobData {
  scanId: number;
  /** Times the job was handed back without counting an attempt (graceful shutdown). */
  released?: number;
  lastError?: string;
}

export interface BullMqQueueOptions {
  url: string;
  prefix: string;
  /** Lock (lease) duration of a claimed job; renewed by the worker pool while scanning. */
  leaseMs: number;
  /** How often workers look for jobs whose lock expired (default: min(leaseMs, 30 s)). */
  stalledIntervalMs?: number;
  queueName?: string;
}

const PENDING_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused']);

export class BullMqQueue implements JobQueue {
  private readonly name: string;
  private readonly connection: Redis;
  private readonly queue: Queue<ScanJobData>;
  private worker?: Worker<ScanJobData>;
  private workerConnection?: Redis;
  private events?: QueueEvents;
  private eventsConnection?: Redis;
  private readonly emitter = new EventEmitter();
  /** Jobs this process holds, with the lock token they were claimed under. */
  private readonly held = new Map<string, { job: BullJob<ScanJobData>; token: string }>();

  constructor(private readonly opts: BullMqQueueOptions) {
    this.name = opts.queueName ?? 'scans';
    // maxRetriesPerRequest null: during a Redis restart commands wait for the reconnection
    // instead of failing, so an accepted scan's enqueue completes once Redis is back.
    this.connection = new Redis(opts.url, { maxRetriesPerRequest: null, lazyConnect: false });
    this.connection.on('error', () => {}); // reconnection is automatic; errors surface on commands
    this.queue = new Queue<ScanJobData>(this.name, { connection: this.connection, prefix: opts.prefix });
    this.queue.on('error', () => {});
    this.emitter.setMaxListeners(1000);
  }

  private jobId(scanId: number): string {
    return `scan-${scanId}`;
  }

  async enqueue(scanId: number): Promise<void> {
    await this.queue.add('scan', { scanId }, { jobId: this.jobId(scanId), removeOnComplete: true, removeOnFail: true });
  }

  /** The worker side exists only in processes that claim jobs (API-only processes never open it). */
  private async ensureWorker(): Promise<Worker<ScanJobData>> {
    if (this.worker) return this.worker;
    this.workerConnection = new Redis(this.opts.url, { maxRetriesPerRequest: null });
    this.workerConnection.on('error', () => {});
    const worker = new Worker<ScanJobData>(this.name, null, {
      connection: this.workerConnection,
      prefix: this.opts.prefix,
      autorun: false,
      lockDuration: this.opts.leaseMs,
      stalledInterval: this.opts.stalledIntervalMs ?? Math.min(this.opts.leaseMs, 30_000),
      // A stalled job goes back to waiting however often it stalls: our own attempt count
      // (jobMaxAttempts in the scan runner) decides when to give up, with evidence.
      maxStalledCount: Number.MAX_SAFE_INTEGER,
    });
    worker.on('error', () => {});
    this.worker = worker;
    void worker.startStalledCheckTimer().catch(() => {});
    return worker;
  }

  async claim(workerId: string, _leaseMs: number): Promise<Job | undefined> {
    const worker = await this.ensureWorker();
    const token = `${workerId}:${crypto.randomUUID()}`;
    const bull = (await worker.getNextJob(token, { block: false })) as BullJob<ScanJobData> | undefined;
    if (!bull || !bull.id) return undefined;
    this.held.set(bull.id, { job: bull, token });
    const attempt = Math.max(1, (bull.attemptsStarted ?? 1) - (bull.data.released ?? 0));
    return { id: bull.id, scanId: bull.data.scanId, attempt };
  }

  private heldJob(job: Job): { job: BullJob<ScanJobData>; token: string } {
    const h = this.held.get(job.id);
    if (!h) throw new Error(`job ${job.id} is not held by this process`);
    return h;
  }

  async renew(job: Job, _workerId: string, leaseMs: number): Promise<boolean> {
    const h = this.held.get(job.id);
    if (!h) return false;
    try {
      return (await h.job.extendLock(h.token, leaseMs)) > 0;
    } catch {
      return false;
    }
  }

  async complete(job: Job): Promise<void> {
    const h = this.heldJob(job);
    try {
      await h.job.moveToCompleted(null, h.token, false);
    } finally {
      this.held.delete(job.id);
    }
  }

  async retry(job: Job, delayMs: number, error: string): Promise<void> {
    const h = this.heldJob(job);
    try {
      await h.job.updateData({ ...h.job.data, lastError: error.slice(0, 1000) });
      await h.job.moveToDelayed(Date.now() + delayMs, h.token);
    } finally {
      this.held.delete(job.id);
    }
  }

  async release(job: Job): Promise<void> {
    const h = this.heldJob(job);
    try {
      await h.job.updateData({ ...h.job.data, released: (h.job.data.released ?? 0) + 1 });
      await h.job.moveToDelayed(Date.now(), h.token);
    } finally {
      this.held.delete(job.id);
    }
  }

  async has(scanId: number): Promise<boolean> {
    const state = await this.queue.getJobState(this.jobId(scanId));
    return PENDING_STATES.has(state);
  }

  async stats(): Promise<QueueStats> {
    const c = await this.queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
    const waiting = (c.wait ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
    let oldestWaitingMs = 0;
    if ((c.wait ?? 0) > 0) {
      const [oldest] = await this.queue.getJobs(['wait'], 0, 0, true);
      if (oldest) oldestWaitingMs = Math.max(0, Date.now() - oldest.timestamp);
    }
    return { waiting, active: c.active ?? 0, oldestWaitingMs };
  }

  onAvailable(listener: () => void): () => void {
    if (!this.events) {
      // Redis streams carry BullMQ's events to every process: a job added by an API process
      // wakes the workers elsewhere at once (they also poll as a safety net).
      this.eventsConnection = new Redis(this.opts.url, { maxRetriesPerRequest: null });
      this.eventsConnection.on('error', () => {});
      this.events = new QueueEvents(this.name, { connection: this.eventsConnection, prefix: this.opts.prefix });
      this.events.on('error', () => {});
      this.events.on('waiting', () => this.emitter.emit('available'));
      this.events.on('stalled', () => this.emitter.emit('available'));
    }
    this.emitter.on('available', listener);
    return () => this.emitter.off('available', listener);
  }

  /** Removes every job of this queue (tests and `verdict` maintenance only). */
  async obliterate(): Promise<void> {
    await this.queue.obliterate({ force: true });
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
    await this.events?.close().catch(() => {});
    await this.worker?.close(true).catch(() => {});
    await this.queue.close().catch(() => {});
    this.workerConnection?.disconnect();
    this.eventsConnection?.disconnect();
    this.connection.disconnect();
  }
}
