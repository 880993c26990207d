/**
 * Runs one scan job: loads the scan, checks its sample out of the blob store, lets the engine
 * scan it, and stores the tree with its callback in one transaction. An unavailable engine
 * means "try again later"; on the last attempt it becomes evidence (a partial result, never
 * a confident clean).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { Engine, ScanAbortedError } from '../engine/engine.ts';
import type { ObjectReport } from '../engine/report.ts';
import type { Job } from '../queue/queue.ts';
import type { JobOutcome } from '../queue/worker-pool.ts';
import { EngineUnavailableError } from '../scanners/types.ts';
import type { BlobStore } from '../store/blobs.ts';
import type { ScanRow } from '../store/schema.ts';
import type { Store } from '../store/store.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { CallbackRequest, ScanOptions } from './scan-service.ts';

/** Builds a callback body in a dialect's format from the finished scan. */
export type CallbackFormatter = (scan: ScanRow, report: ObjectReport, params: unknown) => unknown;

export interface RunnerDeps {
  config: Config;
  store: Store;
  blobs: BlobStore;
  engine: Engine;
  log: Logger;
  metrics?: Metrics;
  formatters: Record<string, CallbackFormatter>;
  /** Called once a scan's result (or final error) is stored and durable; `withCallback` when a callback waits in the outbox. */
  onFinished?: (scanId: number, withCallback: boolean) => void;
  /** Applies the organization's allow/block lists to the finished report (ListsService). */
  lists?: { applyToReport(scan: ScanRow, report: ObjectReport): Promise<ObjectReport> };
}

export class ScanRunner {
  constructor(private readonly deps: RunnerDeps) {}

  async run(job: Job, signal: AbortSignal): Promise<JobOutcome> {
    const { store, blobs, engine, config, metrics } = this.deps;
    const scan = await store.getScan(job.scanId);
    if (!scan || scan.status === 'done') return { kind: 'done' }; // deleted, or finished by an earlier attempt
    const log = this.deps.log.child({ scanId: scan.id, reqId: scan.request_id ?? undefined, attempt: job.attempt });
    await store.updateScan(scan.id, { status: 'scanning', started_at: scan.started_at ?? Date.now(), attempts: job.attempt });
    const options = JSON.parse(scan.options) as ScanOptions;
    const finalAttempt = job.attempt >= config.jobMaxAttempts;
    const req = {
      options: { passwords: [...(options.passwords ?? []), ...config.archivePasswords], userAgent: options.userAgent, userLocation: options.userLocation, classify: options.classify === true },
      signal,
      finalAttempt,
      log,
    };
    let report: ObjectReport;
    try {
      if (scan.kind === 'url') {
        report = await engine.scanUrl(scan.url!, req);
      } else {
        const blob = await blobs.checkout(scan.blob_sha256!);
        try {
          report = await engine.scanFile(
            { file: blob.path, name: scan.name, digests: { md5: scan.md5!, sha1: scan.sha1!, sha256: scan.sha256!, sha512: scan.sha512!, size: scan.size ?? 0 } },
            req,
          );
        } finally {
          await blob.release();
        }
      }
    } catch (e) {
      if (e instanceof ScanAbortedError || signal.aborted) {
        await store.updateScan(scan.id, { status: 'queued' });
        log.info('scan handed back (shutdown)');
        return { kind: 'release' };
      }
      const unavailable = e instanceof EngineUnavailableError;
      const message = (e as Error)?.message ?? String(e);
      if (!finalAttempt) {
        const delayMs = Math.min(300_000, 1000 * 2 ** (job.attempt - 1));
        log.warn({ err: message, delayMs }, unavailable ? 'engine unavailable; scan will be retried' : 'scan failed; it will be retried');
        metrics?.jobRetries.inc({ reason: unavailable ? 'engine_unavailable' : 'error' });
        await store.updateScan(scan.id, { status: 'queued', error: message });
        return { kind: 'retry', delayMs, error: message };
      }
      log.error({ err: e }, 'scan failed on its last attempt');
      await store.updateScan(scan.id, { status: 'error', error: message, finished_at: Date.now() });
      await store.durable();
      this.deps.onFinished?.(scan.id, false);
      return { kind: 'done' };
    }

    // allow/block lists decide on top of the engine's verdict (root outcome only)
    if (this.deps.lists) report = await this.deps.lists.applyToReport(scan, report);

    const cb = scan.callback ? (JSON.parse(scan.callback) as CallbackRequest) : undefined;
    let callback;
    if (cb) {
      const formatter = this.deps.formatters[cb.format];
      const finished = { ...scan, verdict: report.outcome.verdict, status: 'done' as const, finished_at: report.finishedAt };
      callback = { spec: cb, orgId: scan.org_id, body: formatter ? formatter(finished, report, cb.params) : { scan_id: scan.id, verdict: report.outcome.verdict, params: cb.params } };
    }
    if (!(await store.saveTree(scan.id, report, callback))) {
      log.warn('scan was already finished by another worker; this result is dropped');
      return { kind: 'done' };
    }
    await store.durable(); // a callback or a waiting client sees only a result that is kept
    metrics?.scansTotal.inc({ channel: scan.channel, verdict: report.outcome.verdict });
    metrics?.scanDuration.observe({ kind: scan.kind }, (report.finishedAt - scan.created_at) / 1000);
    log.info({ verdict: report.outcome.verdict, score: report.outcome.score, partial: report.outcome.partial, ms: report.finishedAt - report.startedAt }, 'scan finished');
    this.deps.onFinished?.(scan.id, !!callback);
    return { kind: 'done' };
  }
}
