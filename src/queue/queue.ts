/**
 * The job queue interface. A job carries a scan id only; everything else travels through the
 * store and the blob store, so a worker anywhere can take it. Two implementations: the
 * embedded one keeps jobs in the metadata database; the scale one is BullMQ on Redis.
 */
export interface Job {
  id: string;
  scanId: number;
  /** 1 for the first attempt. */
  attempt: number;
}

export interface QueueStats {
  waiting: number;
  active: number;
  /** Age in ms of the oldest waiting job (0 when none). */
  oldestWaitingMs: number;
}

export interface JobQueue {
  enqueue(scanId: number): Promise<void>;
  /** Takes the next due job under a lease of `leaseMs`, or undefined when none is due. */
  claim(workerId: string, leaseMs: number): Promise<Job | undefined>;
  /** Extends the lease; false when the job was lost to another worker. */
  renew(job: Job, workerId: string, leaseMs: number): Promise<boolean>;
  complete(job: Job): Promise<void>;
  /** Puts the job back to run again after `delayMs`. */
  retry(job: Job, delayMs: number, error: string): Promise<void>;
  /** Hands a job back at once without counting an attempt (graceful shutdown). */
  release(job: Job): Promise<void>;
  /** True when a waiting or active job exists for the scan. */
  has(scanId: number): Promise<boolean>;
  stats(): Promise<QueueStats>;
  /** Subscribes to "a job may be available" wake-ups; returns the unsubscribe function. */
  onAvailable(listener: () => void): () => void;
  close(): Promise<void>;
}
