/**
 * Quarantine: the state of a held message (quarantined → releasing → released) and its
 * release. Delivering the released message is the email gateway's job; the release calls it
 * through one interface, `EmailReleaser`, and changes state only when the releaser delivered.
 * Until a gateway is installed, `noEmailGateway` refuses every release (409).
 *
 * ```ts
 * const q = new QuarantineService({ analyst, log });
 * await q.quarantine(scanId, { reason: 'MAL verdict', by: 'email gateway' }); // the gateway holds the message
 * q.setReleaser(gateway);                                                   // the gateway delivers on release
 * await q.release(principal, scanId, { markAsClean: true });               // → released, verdict CLN (audited)
 * ```
 */
import client from 'prom-client';
import type { Logger } from 'pino';
import type { QuarantineItemRow, ScanRow } from '../store/schema.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Principal } from './scan-service.ts';
import { rootOnly, type AnalystService, type VerdictChangeResult } from './analyst-service.ts';
import { requirePermission } from './permissions.ts';
import { invalid, notFound, VerdictError } from './errors.ts';

export interface ReleaseContext {
  /** Who released it, as recorded in the audit trail. */
  releasedBy: string;
  /** Whether the scan will be marked clean once delivered. */
  markAsClean: boolean;
  item: QuarantineItemRow;
}

/** Delivers a released message to its recipients. Implemented by the email gateway. */
export interface EmailReleaser {
  /**
   * Delivers the held message of `scan`. `delivered: false` (with the reason in `detail`)
   * leaves it quarantined; a throw counts as the gateway being unavailable.
   */
  release(scan: ScanRow, ctx: ReleaseContext): Promise<{ delivered: boolean; detail: string }>;
}

/** The releaser used until an email gateway is configured: refuses, saying why. */
export const noEmailGateway: EmailReleaser = {
  async release() {
    return { delivered: false, detail: 'no email gateway is configured: the message cannot be delivered, so it stays in quarantine' };
  },
};

export interface ReleaseResult {
  scanId: number;
  releasedAt: number;
  releasedBy: string;
  markedAsClean: boolean;
  /** The verdict after the release. */
  verdict: string | null;
  /** The verdict change the release made (when marking clean changed the verdict). */
  verdictChange?: VerdictChangeResult;
  /** What the releaser said. */
  detail: string;
}

/** A release whose claim is older than this (a crashed process) may be tried again. */
const STALE_CLAIM_MS = 5 * 60_000;

export interface QuarantineDeps {
  analyst: AnalystService;
  log: Logger;
  metrics?: Metrics;
  releaser?: EmailReleaser;
}

export class QuarantineService {
  private releaser: EmailReleaser;
  private readonly releases?: client.Counter<'outcome'>;

  constructor(private readonly deps: QuarantineDeps) {
    this.releaser = deps.releaser ?? noEmailGateway;
    const registry = deps.metrics?.registry;
    if (registry) {
      this.releases = new client.Counter({
        name: 'verdict_quarantine_releases_total',
        help: 'Quarantine release requests by outcome (released, refused by the releaser, unavailable, invalid)',
        labelNames: ['outcome'],
        registers: [registry],
      });
    }
  }

  /** Installs the email gateway's releaser (the composition root does; tests install their own). */
  setReleaser(releaser: EmailReleaser): void {
    this.releaser = releaser;
  }

  private get data() {
    return this.deps.analyst.data;
  }

  /**
   * Puts a finished root scan into quarantine (the email gateway calls this when it holds a
   * message). Idempotent while quarantined; a released scan cannot be quarantined again (409).
   */
  async quarantine(scanId: number, opts: { reason?: string; by?: string } = {}): Promise<QuarantineItemRow> {
    const scan = await this.data.scan(scanId);
    if (!scan) throw notFound(`scan ${scanId}`);
    rootOnly(scan, 'quarantine and release');
    if (scan.status !== 'done') throw new VerdictError('conflict', `scan ${scanId} is not complete (status ${scan.status}); only scanned messages are quarantined`, 409);
    const existing = await this.data.quarantineItem(scanId);
    if (existing) {
      if (existing.state === 'released') throw new VerdictError('conflict', `scan ${scanId} was already released from quarantine`, 409);
      return existing;
    }
    await this.data.transaction(async (trx) => {
      await this.data.insertQuarantine(
        { scan_id: scanId, org_id: scan.org_id, state: 'quarantined', reason: opts.reason ?? null, quarantined_by: opts.by ?? 'System', quarantined_at: Date.now() },
        trx,
      );
      await this.data.updateScan(scanId, { verbose_action: 'quarantine' }, trx);
    });
    this.deps.log.info({ scanId, reason: opts.reason }, 'scan quarantined');
    return (await this.data.quarantineItem(scanId))!;
  }

  /** The quarantine state of a scan, if it was ever quarantined. */
  item(scanId: number): Promise<QuarantineItemRow | undefined> {
    return this.data.quarantineItem(scanId);
  }

  /**
   * Releases a quarantined scan: claims it (so two releases never deliver twice), asks the
   * releaser to deliver, and only when it did marks it released and — with `markAsClean`, the
   * default in X-Ray — changes the verdict to CLN through the audited verdict change.
   * 400 when the scan is not quarantined or was released already; 409 when the releaser did
   * not deliver (the scan stays quarantined); 503 when the releaser failed.
   */
  async release(principal: Principal, scanId: number, opts: { markAsClean: boolean }): Promise<ReleaseResult> {
    requirePermission(principal, 'quarantine:release');
    const scan = await this.deps.analyst.scans.getScan(principal, scanId);
    rootOnly(scan, 'quarantine and release');
    const actor = await this.deps.analyst.actorOf(principal);
    const now = Date.now();
    if (!(await this.data.claimRelease(scanId, now, now - STALE_CLAIM_MS))) {
      this.releases?.inc({ outcome: 'invalid' });
      const item = await this.data.quarantineItem(scanId);
      if (!item) throw invalid('scan_id', `scan ${scanId} is not in quarantine: there is nothing to release`);
      if (item.state === 'released') {
        throw invalid('scan_id', `scan ${scanId} was already released from quarantine at ${new Date(item.released_at ?? 0).toISOString()} by ${item.released_by}`);
      }
      throw new VerdictError('conflict', `a release of scan ${scanId} is in progress`, 409);
    }
    const item = (await this.data.quarantineItem(scanId))!;
    let outcome: { delivered: boolean; detail: string };
    try {
      outcome = await this.releaser.release(scan, { releasedBy: actor.label, markAsClean: opts.markAsClean, item });
    } catch (e) {
      const msg = `the email releaser failed: ${(e as Error).message}`;
      await this.data.unclaimRelease(scanId, msg);
      this.releases?.inc({ outcome: 'unavailable' });
      this.deps.log.error({ scanId, err: e }, 'quarantine release failed');
      throw new VerdictError('unavailable', `${msg}; scan ${scanId} stays in quarantine`, 503);
    }
    if (!outcome.delivered) {
      await this.data.unclaimRelease(scanId, outcome.detail);
      this.releases?.inc({ outcome: 'refused' });
      this.deps.log.warn({ scanId, detail: outcome.detail }, 'quarantine release refused by the email releaser');
      throw new VerdictError('conflict', `scan ${scanId} was not released: ${outcome.detail}`, 409);
    }
    // Delivered: record it. From here on the message is out, so the state must follow.
    const releasedAt = Date.now();
    const verdictChange = await this.data.transaction(async (trx) => {
      await this.data.markReleased(scanId, { at: releasedAt, by: actor.label, tokenId: actor.tokenId, markedClean: opts.markAsClean, detail: outcome.detail }, trx);
      await this.data.updateScan(scanId, { verbose_action: 'delivered' }, trx);
      const fresh = await this.data.scan(scanId, trx);
      if (!opts.markAsClean || (fresh?.sub_verdict ?? fresh?.verdict) === 'CLN') return undefined;
      return this.deps.analyst.applyChange(trx, scanId, 'CLN', { actor, kind: 'quarantine_release', comment: 'released from quarantine and marked as clean' });
    });
    if (verdictChange) this.deps.analyst.noteChange(verdictChange, 'quarantine_release');
    this.releases?.inc({ outcome: 'released' });
    this.deps.log.info({ scanId, by: actor.label, markAsClean: opts.markAsClean, detail: outcome.detail }, 'released from quarantine');
    const after = await this.data.scan(scanId);
    return {
      scanId,
      releasedAt,
      releasedBy: actor.label,
      markedAsClean: opts.markAsClean,
      verdict: after?.sub_verdict ?? after?.verdict ?? null,
      verdictChange,
      detail: outcome.detail,
    };
  }
}
