/**
 * AnalystService: what a SOC analyst does to a finished scan. Changes its verdict (kept in an
 * audit trail, with false-positive / false-negative marks), requests an investigation (stored,
 * flagged on the scan and announced to the organization's webhook through the callbacks
 * outbox), and reads all of that back for the scan detail. It never speaks a wire format.
 *
 * ```ts
 * const analyst = new AnalystService({ store, scans, log, metrics, onOutbox: () => deliverer.notify() });
 * await analyst.changeVerdict(principal, 42, { subVerdict: 'CLN', comment: 'vendor newsletter' });
 * await analyst.requestInvestigation(principal, 42, { option: 'clean', comment: 'please check' });
 * ```
 */
import client from 'prom-client';
import type { Logger } from 'pino';
import type { Transaction } from 'kysely';
import type { Store } from '../store/store.ts';
import type { Database, InvestigationRequestRow, QuarantineItemRow, ScanRow, VerdictChangeRow } from '../store/schema.ts';
import { AnalystStore, parseSettings, type ActorRow, type InvestigationWithDelivery } from '../store/analyst-store.ts';
import type { Metrics } from '../ops/metrics.ts';
import { isVerdictCode, VERDICT_CODES, type VerdictCode } from '../verdict/codes.ts';
import { analystMarks } from '../verdict/analyst-marks.ts';
import { parseHttpUrl, type Principal, type ScanService } from './scan-service.ts';
import { requirePermission } from './permissions.ts';
import { invalid, notFound, VerdictError } from './errors.ts';

/** Organization setting (in `organizations.settings`): where investigation requests are announced. */
export const INVESTIGATION_WEBHOOK_SETTING = 'investigation_webhook_url';
/** Organization setting: extra headers for that webhook (e.g. the receiver's API key). */
export const INVESTIGATION_WEBHOOK_HEADERS_SETTING = 'investigation_webhook_headers';

/** The options X-Ray's console offers when requesting an investigation (what the analyst thinks the verdict should be). */
export const INVESTIGATION_OPTIONS = ['malicious', 'spam', 'clean'] as const;

const MAX_COMMENT = 2000;
const MAX_OPTION = 200;

export type VerdictChangeKind = 'analyst' | 'quarantine_release';

export interface VerdictChangeResult {
  scanId: number;
  previous: string | null;
  verdict: VerdictCode;
  /** The verdict the engines gave, before any analyst change. */
  engineVerdict: string | null;
  isFp: boolean;
  isFn: boolean;
  changedAt: number;
  changedBy: string;
  change: VerdictChangeRow;
}

/** Everything analysts did to one scan, for its detail. */
export interface AnalystView {
  scan: ScanRow;
  changes: VerdictChangeRow[];
  investigations: InvestigationWithDelivery[];
  quarantine: QuarantineItemRow | undefined;
}

export interface AnalystDeps {
  store: Store;
  scans: ScanService;
  log: Logger;
  metrics?: Metrics;
  /** Wakes the callbacks deliverer after an outbox row was committed. */
  onOutbox?: () => void;
}

export class AnalystService {
  readonly data: AnalystStore;
  private readonly changes?: client.Counter<'from' | 'to' | 'kind' | 'mark'>;
  private readonly investigationsTotal?: client.Counter<'webhook'>;

  constructor(private readonly deps: AnalystDeps) {
    this.data = new AnalystStore(deps.store.db);
    const registry = deps.metrics?.registry;
    if (registry) {
      this.changes = new client.Counter({
        name: 'verdict_analyst_verdict_changes_total',
        help: 'Verdict changes by analysts and releases, by old and new verdict, kind, and the mark they left (fp, fn, none)',
        labelNames: ['from', 'to', 'kind', 'mark'],
        registers: [registry],
      });
      this.investigationsTotal = new client.Counter({
        name: 'verdict_investigation_requests_total',
        help: 'Investigation requests, by whether a webhook announced them',
        labelNames: ['webhook'],
        registers: [registry],
      });
    }
  }

  get scans(): ScanService {
    return this.deps.scans;
  }

  /** Who the principal is, as recorded in audit entries. */
  actorOf(principal: Principal): Promise<ActorRow> {
    return this.data.actor(principal.tokenId, principal.orgId);
  }

  // Verdict changes -------------------------------------------------------------------------

  /**
   * PUT handle_scan: sets the scan's verdict and sub-verdict to `subVerdict` (one of the six
   * codes, any case), keeps the change in the audit trail and sets the fp/fn marks. Root scans
   * only. 400 when the code is unknown or the same as now; 409 while the scan is not complete.
   */
  async changeVerdict(principal: Principal, scanId: number, input: { subVerdict?: string; comment?: string }): Promise<VerdictChangeResult> {
    requirePermission(principal, 'verdict:change');
    const scan = await this.deps.scans.getScan(principal, scanId);
    const code = parseSubVerdict(input.subVerdict);
    const comment = parseComment(input.comment);
    rootOnly(scan, 'verdict changes');
    const actor = await this.actorOf(principal);
    const result = await this.data.transaction((trx) => this.applyChange(trx, scanId, code, { actor, kind: 'analyst', comment }));
    this.noteChange(result, 'analyst');
    return result;
  }

  /**
   * Changes a verdict inside the caller's transaction (the quarantine release uses it too).
   * Reads the scan afresh so that two concurrent changes see each other.
   */
  async applyChange(
    trx: Transaction<Database>,
    scanId: number,
    code: VerdictCode,
    ctx: { actor: ActorRow; kind: VerdictChangeKind; comment: string | null },
  ): Promise<VerdictChangeResult> {
    const scan = await this.data.scan(scanId, trx);
    if (!scan) throw notFound(`scan ${scanId}`);
    if (scan.status !== 'done') throw new VerdictError('conflict', `scan ${scanId} is not complete (status ${scan.status}); its verdict can be changed once it has one`, 409);
    const current = scan.sub_verdict ?? scan.verdict;
    if (current === code) throw invalid('sub_verdict', `the current sub-verdict of scan ${scanId} is already ${code}`);
    const first = await this.data.firstVerdictChange(scanId, trx);
    const engineVerdict = first ? first.engine_verdict : current;
    const marks = analystMarks(isVerdictCode(engineVerdict) ? engineVerdict : null, code);
    const now = Date.now();
    const change = await this.data.insertVerdictChange(
      {
        scan_id: scanId,
        org_id: scan.org_id,
        actor_org_id: ctx.actor.orgId,
        actor_token_id: ctx.actor.tokenId,
        actor_user_id: ctx.actor.userId,
        actor: ctx.actor.label,
        kind: ctx.kind,
        old_verdict: current,
        new_verdict: code,
        engine_verdict: engineVerdict,
        comment: ctx.comment,
        is_fp: marks.isFp ? 1 : 0,
        is_fn: marks.isFn ? 1 : 0,
        created_at: now,
      },
      trx,
    );
    await this.data.updateScan(
      scanId,
      { verdict: code, sub_verdict: code, verdict_changed_at: now, verdict_changed_by: ctx.actor.label, is_fp: marks.isFp ? 1 : 0, is_fn: marks.isFn ? 1 : 0 },
      trx,
    );
    return { scanId, previous: current, verdict: code, engineVerdict, isFp: marks.isFp, isFn: marks.isFn, changedAt: now, changedBy: ctx.actor.label, change };
  }

  /** Metrics and log line of a committed change. */
  noteChange(r: VerdictChangeResult, kind: VerdictChangeKind): void {
    this.changes?.inc({ from: r.previous ?? 'none', to: r.verdict, kind, mark: r.isFp ? 'fp' : r.isFn ? 'fn' : 'none' });
    this.deps.log.info({ scanId: r.scanId, from: r.previous, to: r.verdict, kind, by: r.changedBy, isFp: r.isFp, isFn: r.isFn }, 'verdict changed');
  }

  // Investigations --------------------------------------------------------------------------

  /**
   * Request investigation: stores the request, flags the scan (`was_requested_for_investigation`)
   * and, when the scan's organization (or the nearest ancestor) has an investigation webhook,
   * queues a POST to it in the callbacks outbox, in the same transaction. Any scan of a tree
   * may be the subject; it must be finished (409 otherwise).
   */
  async requestInvestigation(principal: Principal, scanId: number, input: { option?: string; comment?: string }): Promise<InvestigationRequestRow> {
    requirePermission(principal, 'investigation:request');
    const scan = await this.deps.scans.getScan(principal, scanId);
    const option = (input.option ?? '').trim();
    if (!option) throw invalid('option', `this parameter is required (what the verdict should be, e.g. ${INVESTIGATION_OPTIONS.join(', ')})`);
    if (option.length > MAX_OPTION) throw invalid('option', `at most ${MAX_OPTION} characters`);
    const comment = parseComment(input.comment);
    if (scan.status !== 'done' && scan.status !== 'error') {
      throw new VerdictError('conflict', `scan ${scanId} is still being scanned (status ${scan.status}); request an investigation once it is complete`, 409);
    }
    const actor = await this.actorOf(principal);
    const webhook = await this.investigationWebhook(scan.org_id);
    const org = await this.data.org(scan.org_id);
    const row = await this.data.transaction(async (trx) => {
      const now = Date.now();
      let req = await this.data.insertInvestigation(
        {
          scan_id: scanId,
          org_id: scan.org_id,
          actor_org_id: actor.orgId,
          actor_token_id: actor.tokenId,
          actor_user_id: actor.userId,
          actor: actor.label,
          option,
          comment,
          callback_id: null,
          created_at: now,
        },
        trx,
      );
      await this.data.updateScan(scanId, { was_requested_for_investigation: 1 }, trx);
      if (webhook) {
        const body = investigationEvent(req, scan, org?.name ?? null);
        const callbackId = await this.data.enqueueOutbox(
          { scanId, orgId: scan.org_id, url: webhook.url, headers: { ...webhook.headers, 'X-Verdict-Event': 'investigation_requested' }, body },
          trx,
        );
        await trx.updateTable('investigation_requests').set({ callback_id: callbackId }).where('id', '=', req.id).execute();
        req = { ...req, callback_id: callbackId };
      }
      return req;
    });
    if (webhook) this.deps.onOutbox?.();
    this.investigationsTotal?.inc({ webhook: webhook ? 'yes' : 'no' });
    this.deps.log.info({ scanId, option, by: actor.label, webhook: webhook?.url, webhookOrgId: webhook?.orgId }, 'investigation requested');
    return row;
  }

  /**
   * The investigation webhook that applies to an organization: its own setting, else the
   * nearest ancestor's (a parent that manages its children's incidents receives theirs).
   * Settings are read defensively: a missing, non-string or unusable URL is skipped.
   */
  async investigationWebhook(orgId: number): Promise<{ orgId: number; url: string; headers: Record<string, string> } | undefined> {
    for (const o of await this.data.orgAndAncestors(orgId)) {
      const s = parseSettings(o.settings);
      const url = s[INVESTIGATION_WEBHOOK_SETTING];
      if (typeof url !== 'string' || url.trim() === '') continue;
      try {
        parseHttpUrl(url, INVESTIGATION_WEBHOOK_SETTING);
      } catch {
        this.deps.log.warn({ orgId: o.id }, 'ignoring an unusable investigation webhook URL in the organization settings');
        continue;
      }
      return { orgId: o.id, url: url.trim(), headers: headerSetting(s[INVESTIGATION_WEBHOOK_HEADERS_SETTING]) };
    }
    return undefined;
  }

  /**
   * Sets (or with `url` null/empty, removes) an organization's investigation webhook, for a
   * principal that may manage organizations and sees `orgId`.
   */
  async setInvestigationWebhook(principal: Principal, orgId: number, url: string | null, headers?: Record<string, string>): Promise<Record<string, unknown>> {
    requirePermission(principal, 'org:manage');
    if (!principal.orgIds.includes(orgId)) throw notFound(`organization ${orgId}`);
    return this.configureInvestigationWebhook(orgId, url, headers);
  }

  /**
   * The same without a permission check, for callers that have checked already (e.g. creating
   * a child organization, which the caller's principal does not list yet). Validates the URL
   * (http or https; 400 naming `investigation_webhook_url`) and keeps the other settings.
   */
  async configureInvestigationWebhook(orgId: number, url: string | null, headers?: Record<string, string>): Promise<Record<string, unknown>> {
    const clean = url === null || url.trim() === '' ? null : validateInvestigationWebhookUrl(url);
    const hdrs = headers === undefined ? undefined : validateWebhookHeaders(headers);
    const settings = await this.data.updateOrgSettings(orgId, (s) => {
      if (clean === null) {
        delete s[INVESTIGATION_WEBHOOK_SETTING];
        delete s[INVESTIGATION_WEBHOOK_HEADERS_SETTING];
      } else {
        s[INVESTIGATION_WEBHOOK_SETTING] = clean;
        if (hdrs !== undefined) s[INVESTIGATION_WEBHOOK_HEADERS_SETTING] = hdrs;
      }
    });
    if (!settings) throw notFound(`organization ${orgId}`);
    return settings;
  }

  // Reading ---------------------------------------------------------------------------------

  /** The audit trail, investigation requests and quarantine state of a scan (already authorised). */
  async view(scan: ScanRow): Promise<AnalystView> {
    const [changes, investigations, quarantine] = await Promise.all([this.data.verdictChanges(scan.id), this.data.investigations(scan.id), this.data.quarantineItem(scan.id)]);
    return { scan, changes, investigations, quarantine };
  }
}

/** Checks an investigation webhook URL (http/https); returns it trimmed. Throws 400 naming the setting. */
export function validateInvestigationWebhookUrl(url: string): string {
  return parseHttpUrl(url, INVESTIGATION_WEBHOOK_SETTING).href;
}

function validateWebhookHeaders(h: Record<string, string>): Record<string, string> {
  if (!h || typeof h !== 'object' || Array.isArray(h)) throw invalid(INVESTIGATION_WEBHOOK_HEADERS_SETTING, 'expected an object of header names and values');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) throw invalid(INVESTIGATION_WEBHOOK_HEADERS_SETTING, `not a valid header name: ${k}`);
    if (typeof v !== 'string') throw invalid(INVESTIGATION_WEBHOOK_HEADERS_SETTING, `the value of ${k} must be a string`);
    out[k] = v;
  }
  return out;
}

function headerSetting(v: unknown): Record<string, string> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) if (typeof val === 'string' && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) out[k] = val;
  return out;
}

function parseSubVerdict(v: string | undefined): VerdictCode {
  if (v === undefined || v.trim() === '') throw invalid('sub_verdict', `this field is required: one of ${VERDICT_CODES.join(', ')}`);
  const code = v.trim().toUpperCase();
  if (!isVerdictCode(code)) throw invalid('sub_verdict', `"${v.slice(0, 50)}" is not a verdict code: use one of ${VERDICT_CODES.join(', ')}`);
  return code;
}

function parseComment(v: string | undefined): string | null {
  if (v === undefined) return null;
  const c = v.trim();
  if (c.length > MAX_COMMENT) throw invalid('comment', `at most ${MAX_COMMENT} characters`);
  return c === '' ? null : c;
}

/** Refuses a child scan: analyst actions on a tree apply to its root (400 naming the root). */
export function rootOnly(scan: ScanRow, what: string): void {
  if (scan.parent_id !== null) {
    throw invalid('scan_id', `${what} apply to a whole submission: scan ${scan.id} is part of scan ${scan.root_id ?? scan.parent_id}; use that id`);
  }
}

/** The JSON body announcing an investigation request (our own, dialect-neutral format). */
function investigationEvent(req: InvestigationRequestRow, scan: ScanRow, orgName: string | null): Record<string, unknown> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    event: 'investigation_requested',
    investigation_id: req.id,
    scan_id: scan.id,
    root_scan_id: scan.root_id ?? scan.id,
    organization_id: scan.org_id,
    organization_name: orgName,
    option: req.option,
    comment: req.comment,
    requested_by: req.actor,
    requested_at: iso(req.created_at),
    scan: {
      name: scan.name,
      type: scan.kind,
      sha256: scan.sha256,
      url: scan.url,
      status: scan.status,
      verdict: scan.verdict,
      sub_verdict: scan.sub_verdict,
      is_fp: scan.is_fp === 1,
      is_fn: scan.is_fn === 1,
      created_at: iso(scan.created_at),
      finished_at: iso(scan.finished_at),
    },
  };
}
