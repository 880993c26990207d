/**
 * The metadata store: organizations, tokens, scans and their evidence, the callbacks outbox.
 * Written once with Kysely so the same code runs on SQLite (embedded) and PostgreSQL (scale).
 */
import { PostgresAdapter, sql, type Kysely, type Transaction } from 'kysely';
import type { ObjectReport } from '../engine/report.ts';
import { walk } from '../engine/report.ts';
import { heuristics } from '../verdict/heuristics.ts';
import type { CallbackRow, Database, EvidenceRow, NewScan, OrgRow, ScanRow, ScanUpdate, TokenRow, UserRow } from './schema.ts';

export interface CallbackSpec {
  url: string;
  headers: Record<string, string>;
  params: unknown;
}

export interface CompletedQuery {
  orgIds: number[];
  from?: number;
  to?: number;
  /** Continue after this (finished_at, id) position. */
  after?: { finishedAt: number; id: number };
  limit: number;
}

type Db = Kysely<Database> | Transaction<Database>;

export class Store {
  private readonly postgres: boolean;

  constructor(
    readonly db: Kysely<Database>,
    private readonly opts: { durable?: () => Promise<void> } = {},
  ) {
    this.postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  /**
   * Resolves once everything committed so far survives a power loss (the database's group
   * commit). Called before an id or a result is handed out.
   */
  durable(): Promise<void> {
    return this.opts.durable?.() ?? Promise.resolve();
  }

  // Organizations -------------------------------------------------------------------------

  async createOrg(name: string, parentId: number | null = null, settings: Record<string, unknown> = {}): Promise<OrgRow> {
    return this.db
      .insertInto('organizations')
      .values({ name, parent_id: parentId, active: 1, seats: 0, settings: JSON.stringify(settings), created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async getOrg(id: number): Promise<OrgRow | undefined> {
    return this.db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getOrgByName(name: string): Promise<OrgRow | undefined> {
    return this.db.selectFrom('organizations').selectAll().where('name', '=', name).executeTakeFirst();
  }

  async countOrgs(): Promise<number> {
    const r = await this.db.selectFrom('organizations').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The organization and all its descendants. */
  async orgSubtree(id: number): Promise<number[]> {
    const all = await this.db.selectFrom('organizations').select(['id', 'parent_id']).execute();
    const out = [id];
    for (let i = 0; i < out.length; i++) {
      for (const o of all) if (o.parent_id === out[i] && !out.includes(o.id)) out.push(o.id);
    }
    return out;
  }

  // Tokens --------------------------------------------------------------------------------

  async createToken(t: { orgId: number; name: string; role: string; hash: string; prefix: string; userId?: number }): Promise<TokenRow> {
    return this.db
      .insertInto('api_tokens')
      .values({ org_id: t.orgId, name: t.name, role: t.role, token_hash: t.hash, prefix: t.prefix, user_id: t.userId ?? null, created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async findToken(hash: string): Promise<TokenRow | undefined> {
    return this.db.selectFrom('api_tokens').selectAll().where('token_hash', '=', hash).where('revoked_at', 'is', null).executeTakeFirst();
  }

  async getUser(id: number): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async touchToken(id: number, at = Date.now()): Promise<void> {
    await this.db.updateTable('api_tokens').set({ last_used_at: at }).where('id', '=', id).execute();
  }

  async countTokens(): Promise<number> {
    const r = await this.db.selectFrom('api_tokens').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  // Blobs ---------------------------------------------------------------------------------

  async recordBlob(sha256: string, size: number, trx: Db = this.db): Promise<void> {
    await trx
      .insertInto('blobs')
      .values({ sha256, size, created_at: Date.now() })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .execute();
  }

  async blobReferenced(sha256: string): Promise<boolean> {
    const r = await this.db.selectFrom('scans').select('id').where('blob_sha256', '=', sha256).limit(1).executeTakeFirst();
    return r !== undefined;
  }

  async deleteBlobRecord(sha256: string): Promise<void> {
    await this.db.deleteFrom('blobs').where('sha256', '=', sha256).execute();
  }

  // Scans ---------------------------------------------------------------------------------

  /** Inserts a submitted scan (and records its blob) in one transaction. */
  async insertScan(scan: NewScan, blob?: { sha256: string; size: number }): Promise<ScanRow> {
    return this.db.transaction().execute(async (trx) => {
      if (blob) await this.recordBlob(blob.sha256, blob.size, trx);
      return trx.insertInto('scans').values(scan).returningAll().executeTakeFirstOrThrow();
    });
  }

  async getScan(id: number): Promise<ScanRow | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    return this.db.selectFrom('scans').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async updateScan(id: number, patch: ScanUpdate): Promise<void> {
    await this.db.updateTable('scans').set(patch).where('id', '=', id).execute();
  }

  /** Every scan below a root, in id order. */
  async getDescendants(rootId: number): Promise<ScanRow[]> {
    return this.db.selectFrom('scans').selectAll().where('root_id', '=', rootId).orderBy('id').execute();
  }

  async getEvidence(scanIds: number[]): Promise<EvidenceRow[]> {
    if (scanIds.length === 0) return [];
    const out: EvidenceRow[] = [];
    for (let i = 0; i < scanIds.length; i += 500) {
      out.push(...(await this.db.selectFrom('evidence').selectAll().where('scan_id', 'in', scanIds.slice(i, i + 500)).orderBy('id').execute()));
    }
    return out;
  }

  /** Scans that were accepted but not finished (for recovery after a restart). */
  async unfinishedRootScans(): Promise<ScanRow[]> {
    return this.db.selectFrom('scans').selectAll().where('status', 'in', ['queued', 'scanning']).where('parent_id', 'is', null).orderBy('id').execute();
  }

  /**
   * A key generated once per deployment and shared by all its processes: the first process to
   * ask stores `generate()`'s value; everyone, then and later, gets the stored one.
   */
  async serviceKey(name: string, generate: () => string): Promise<string> {
    await this.db
      .insertInto('service_keys')
      .values({ name, value: generate(), created_at: Date.now() })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db.selectFrom('service_keys').select('value').where('name', '=', name).executeTakeFirstOrThrow();
    return row.value;
  }

  /** Unfinished root scans accepted before `before` (epoch ms), oldest first, at most `limit`. */
  async staleUnfinishedRootScans(before: number, limit: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('scans')
      .select('id')
      .where('status', 'in', ['queued', 'scanning'])
      .where('parent_id', 'is', null)
      .where('created_at', '<', before)
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Stores a finished scan tree in one transaction: the root's result, one row per contained
   * object, their evidence, and the callback to deliver. A retried job replaces what an earlier
   * unfinished attempt wrote. Returns false
   * (and writes nothing) when the scan was already finished: a worker that lost its lease while
   * still scanning must not finish a scan a second time. On PostgreSQL the root row is locked so
   * two such workers cannot both pass the check.
   */
  async saveTree(rootId: number, report: ObjectReport, callback?: { spec: CallbackSpec; body: unknown; orgId: number }): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      let q = trx.selectFrom('scans').selectAll().where('id', '=', rootId);
      if (this.postgres) q = q.forUpdate();
      const root = await q.executeTakeFirstOrThrow();
      if (root.status === 'done') return false;
      const old = await trx.selectFrom('scans').select('id').where('root_id', '=', rootId).execute();
      const oldIds = old.map((o) => o.id);
      if (oldIds.length > 0) {
        await trx.deleteFrom('evidence').where('scan_id', 'in', oldIds).execute();
        await trx.deleteFrom('scans').where('id', 'in', oldIds).execute();
      }
      await trx.deleteFrom('evidence').where('scan_id', '=', rootId).execute();

      const now = Date.now();
      const writeNode = async (node: ObjectReport, scanId: number) => {
        for (const e of node.evidence) {
          const h = heuristics[e.heuristic];
          await trx
            .insertInto('evidence')
            .values({
              scan_id: scanId,
              root_id: rootId,
              heuristic: e.heuristic,
              name: h.name,
              category: h.category,
              scanner: e.scanner,
              layer: e.layer,
              description: h.description,
              details: e.details ?? null,
              score: e.score ?? h.score,
              verdict: h.verdict ?? null,
              attack: h.attack ?? null,
              data: JSON.stringify(e.data ?? {}),
              created_at: now,
            })
            .execute();
        }
        for (const child of node.children) {
          const row = await trx
            .insertInto('scans')
            .values({
              ...objectColumns(child),
              org_id: root.org_id,
              parent_id: scanId,
              root_id: rootId,
              depth: child.info.depth,
              kind: child.info.kind,
              channel: root.channel,
              relation: child.relation ?? null,
              name: child.info.name,
              status: 'done',
              created_at: child.startedAt,
              options: '{}',
            } as NewScan)
            .returning('id')
            .executeTakeFirstOrThrow();
          await writeNode(child, row.id);
        }
      };
      await trx
        .updateTable('scans')
        .set({ ...objectColumns(report), status: 'done', error: null, name: root.name })
        .where('id', '=', rootId)
        .execute();
      await writeNode(report, rootId);
      if (callback) {
        await trx.deleteFrom('callbacks').where('scan_id', '=', rootId).where('state', '=', 'pending').execute();
        await trx
          .insertInto('callbacks')
          .values({
            scan_id: rootId,
            org_id: callback.orgId,
            url: callback.spec.url,
            headers: JSON.stringify(callback.spec.headers),
            body: JSON.stringify(callback.body),
            state: 'pending',
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
          })
          .execute();
      }
      return true;
    });
  }

  /** Deletes a scan with everything below it. Returns the blob hashes that lost a reference. */
  async deleteScanTree(id: number): Promise<string[]> {
    return this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('scans')
        .select(['id', 'blob_sha256'])
        .where((eb) => eb.or([eb('id', '=', id), eb('root_id', '=', id)]))
        .execute();
      const ids = rows.map((r) => r.id);
      if (ids.length === 0) return [];
      await trx.deleteFrom('evidence').where('scan_id', 'in', ids).execute();
      await trx.deleteFrom('jobs').where('scan_id', '=', id).execute();
      await trx.deleteFrom('callbacks').where('scan_id', '=', id).where('state', '=', 'pending').execute();
      await trx.deleteFrom('scans').where('id', 'in', ids).execute();
      const blobs = [...new Set(rows.map((r) => r.blob_sha256).filter((b): b is string => !!b))];
      const orphaned: string[] = [];
      for (const b of blobs) {
        const still = await trx.selectFrom('scans').select('id').where('blob_sha256', '=', b).limit(1).executeTakeFirst();
        if (!still) {
          await trx.deleteFrom('blobs').where('sha256', '=', b).execute();
          orphaned.push(b);
        }
      }
      return orphaned;
    });
  }

  /** Finished root scans, ordered by finish time then id, for the completed-jobs listing. */
  async listCompleted(q: CompletedQuery): Promise<{ rows: ScanRow[]; count: number }> {
    let base = this.db
      .selectFrom('scans')
      .where('org_id', 'in', q.orgIds)
      .where('parent_id', 'is', null)
      .where('status', '=', 'done');
    if (q.from !== undefined) base = base.where('finished_at', '>=', q.from);
    if (q.to !== undefined) base = base.where('finished_at', '<=', q.to);
    const countRow = await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    let page = base.selectAll();
    if (q.after) {
      const a = q.after;
      page = page.where((eb) => eb.or([eb('finished_at', '>', a.finishedAt), eb.and([eb('finished_at', '=', a.finishedAt), eb('id', '>', a.id)])]));
    }
    const rows = await page.orderBy('finished_at').orderBy('id').limit(q.limit).execute();
    return { rows, count: Number(countRow.n) };
  }

  // Callbacks outbox -----------------------------------------------------------------------

  /** Takes up to `limit` due callbacks under a lease, so only one deliverer sends each attempt. */
  async claimCallbacks(now: number, leaseMs: number, limit: number): Promise<CallbackRow[]> {
    return this.db.transaction().execute(async (trx) => {
      const due = await trx
        .selectFrom('callbacks')
        .select('id')
        .where('state', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .orderBy('next_attempt_at')
        .limit(limit)
        .execute();
      if (due.length === 0) return [];
      return trx
        .updateTable('callbacks')
        .set({ lease_until: now + leaseMs })
        .where('id', 'in', due.map((d) => d.id))
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .returningAll()
        .execute();
    });
  }

  async callbackDelivered(id: number, status: number): Promise<void> {
    await this.db
      .updateTable('callbacks')
      .set((eb) => ({ state: 'delivered', delivered_at: Date.now(), last_status: status, lease_until: null, attempts: eb('attempts', '+', 1), last_error: null }))
      .where('id', '=', id)
      .execute();
  }

  async callbackFailed(id: number, r: { status?: number; error: string; nextAttemptAt?: number }): Promise<void> {
    await this.db
      .updateTable('callbacks')
      .set((eb) => ({
        state: r.nextAttemptAt === undefined ? 'failed' : 'pending',
        next_attempt_at: r.nextAttemptAt ?? Date.now(),
        last_status: r.status ?? null,
        last_error: r.error.slice(0, 1000),
        lease_until: null,
        attempts: eb('attempts', '+', 1),
      }))
      .where('id', '=', id)
      .execute();
  }

  async getCallbacks(scanId: number): Promise<CallbackRow[]> {
    return this.db.selectFrom('callbacks').selectAll().where('scan_id', '=', scanId).orderBy('id').execute();
  }

  async pendingCallbacks(): Promise<number> {
    const r = await this.db.selectFrom('callbacks').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'pending').executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }
}

/** The columns of a scan row that describe the examined object and its outcome. */
function objectColumns(node: ObjectReport): ScanUpdate {
  const a = node.attributes;
  const engines = node.engines.map((e) => ({ name: e.scanner, version: e.version, layer: e.layer, status: e.status, ms: Math.round(e.ms), findings: e.findings, error: e.error }));
  const layers = [...new Set(node.engines.filter((e) => e.status !== 'skipped').map((e) => e.layer))];
  const isUrl = node.info.kind === 'url';
  let domain: string | null = null;
  if (isUrl) {
    try {
      domain = new URL(node.info.url!).hostname;
    } catch {
      domain = null;
    }
  }
  return {
    verdict: node.outcome.verdict,
    sub_verdict: node.outcome.verdict,
    own_verdict: node.outcome.ownVerdict,
    confidence: node.outcome.confidence,
    score: node.outcome.score,
    partial: node.outcome.partial ? 1 : 0,
    started_at: node.startedAt,
    self_finished_at: node.selfFinishedAt,
    finished_at: node.finishedAt,
    verdict_changed_at: node.finishedAt,
    size: isUrl ? null : node.info.size,
    md5: node.info.md5,
    sha1: node.info.sha1,
    sha256: node.info.sha256,
    sha512: node.info.sha512,
    file_type: node.info.fileType,
    mime: node.info.mime,
    url: node.info.url ?? null,
    domain: (a.domain as string | undefined) ?? domain,
    final_url: (a.finalUrl as string | undefined) ?? null,
    status_code: (a.statusCode as number | undefined) ?? null,
    url_title: (a.title as string | undefined) ?? null,
    engines: JSON.stringify(engines),
    layers: JSON.stringify(layers),
    decisions: JSON.stringify(node.outcome.decisions),
    attributes: JSON.stringify(a),
    ...emailColumns(a.email as EmailFields | undefined),
  };
}

/** The part of the email scanner's `attributes.email` that the search columns hold. */
interface EmailFields {
  from?: string | null;
  to?: string[];
  subject?: string | null;
  messageId?: string | null;
  senderDomain?: string | null;
  sourceIp?: string | null;
  replyTo?: string | null;
  returnPath?: string | null;
  receiverDomain?: string | null;
}

/** X-Ray's email fields (sender, recipients, subject, message id, sender IP...) for search. */
function emailColumns(e: EmailFields | undefined): ScanUpdate {
  if (!e || typeof e !== 'object') return {};
  const text = (v: unknown, max = 1000) => (typeof v === 'string' && v !== '' ? v.slice(0, max) : null);
  return {
    sample_from: text(e.from),
    sample_to: Array.isArray(e.to) && e.to.length ? e.to.join(',').slice(0, 4000) : null,
    subject: text(e.subject),
    message_id: text(e.messageId),
    sender_domain: text(e.senderDomain),
    sender_ip: text(e.sourceIp, 64),
    reply_to: text(e.replyTo),
    return_path: text(e.returnPath),
    receiver_domain: text(e.receiverDomain),
  };
}

export { walk };
