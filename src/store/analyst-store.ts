/**
 * Data access for analyst actions: the verdict-change audit trail, investigation requests (and
 * the outbox rows announcing them), quarantine state, and the organization settings they read.
 * Kysely only, so it runs on SQLite and PostgreSQL alike. Decisions live in the services.
 */
import type { Kysely, Transaction } from 'kysely';
import type {
  Database,
  InvestigationRequestRow,
  OrgRow,
  QuarantineItemRow,
  ScanRow,
  ScanUpdate,
  VerdictChangeRow,
} from './schema.ts';
import type { Insertable } from 'kysely';

export type Db = Kysely<Database> | Transaction<Database>;

export interface ActorRow {
  tokenId: number | null;
  userId: number | null;
  orgId: number;
  /** As shown to users: `Name <email>` for a user's token, `token <name>` for an organization token. */
  label: string;
}

export interface InvestigationWithDelivery extends InvestigationRequestRow {
  webhook_state: string | null;
  webhook_attempts: number | null;
  webhook_delivered_at: number | null;
  webhook_last_error: string | null;
}

export class AnalystStore {
  constructor(readonly db: Kysely<Database>) {}

  transaction<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(fn);
  }

  /** Who a token stands for, for audit entries. */
  async actor(tokenId: number, orgId: number): Promise<ActorRow> {
    const t = await this.db.selectFrom('api_tokens').select(['id', 'name', 'user_id', 'prefix']).where('id', '=', tokenId).executeTakeFirst();
    if (t?.user_id !== null && t?.user_id !== undefined) {
      const u = await this.db.selectFrom('users').select(['id', 'name', 'email']).where('id', '=', t.user_id).executeTakeFirst();
      if (u) return { tokenId, userId: u.id, orgId, label: `${u.name} <${u.email}>` };
    }
    return { tokenId, userId: null, orgId, label: t ? `token ${t.name} (${t.prefix}…)` : `token #${tokenId}` };
  }

  async scan(id: number, db: Db = this.db): Promise<ScanRow | undefined> {
    return db.selectFrom('scans').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async updateScan(id: number, patch: ScanUpdate, db: Db = this.db): Promise<void> {
    await db.updateTable('scans').set(patch).where('id', '=', id).execute();
  }

  // Verdict changes -------------------------------------------------------------------------

  async verdictChanges(scanId: number, db: Db = this.db): Promise<VerdictChangeRow[]> {
    return db.selectFrom('verdict_changes').selectAll().where('scan_id', '=', scanId).orderBy('id').execute();
  }

  async firstVerdictChange(scanId: number, db: Db = this.db): Promise<VerdictChangeRow | undefined> {
    return db.selectFrom('verdict_changes').selectAll().where('scan_id', '=', scanId).orderBy('id').limit(1).executeTakeFirst();
  }

  async insertVerdictChange(row: Insertable<Database['verdict_changes']>, db: Db = this.db): Promise<VerdictChangeRow> {
    return db.insertInto('verdict_changes').values(row).returningAll().executeTakeFirstOrThrow();
  }

  // Investigations --------------------------------------------------------------------------

  async investigations(scanId: number): Promise<InvestigationWithDelivery[]> {
    return this.db
      .selectFrom('investigation_requests as i')
      .leftJoin('callbacks as c', 'c.id', 'i.callback_id')
      .selectAll('i')
      .select(['c.state as webhook_state', 'c.attempts as webhook_attempts', 'c.delivered_at as webhook_delivered_at', 'c.last_error as webhook_last_error'])
      .where('i.scan_id', '=', scanId)
      .orderBy('i.id')
      .execute();
  }

  async insertInvestigation(row: Insertable<Database['investigation_requests']>, db: Db = this.db): Promise<InvestigationRequestRow> {
    return db.insertInto('investigation_requests').values(row).returningAll().executeTakeFirstOrThrow();
  }

  /** Puts a POST in the callbacks outbox; the deliverer sends it at least once, with retries. */
  async enqueueOutbox(row: { scanId: number; orgId: number; url: string; headers: Record<string, string>; body: unknown }, db: Db = this.db): Promise<number> {
    const now = Date.now();
    const r = await db
      .insertInto('callbacks')
      .values({
        scan_id: row.scanId,
        org_id: row.orgId,
        url: row.url,
        headers: JSON.stringify(row.headers),
        body: JSON.stringify(row.body),
        state: 'pending',
        attempts: 0,
        next_attempt_at: now,
        created_at: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return r.id;
  }

  // Organizations ---------------------------------------------------------------------------

  async org(id: number, db: Db = this.db): Promise<OrgRow | undefined> {
    return db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** The organization, then its parent, up to the top (bounded against cycles). */
  async orgAndAncestors(id: number, db: Db = this.db): Promise<OrgRow[]> {
    const out: OrgRow[] = [];
    let next: number | null = id;
    while (next !== null && out.length < 64) {
      const o = await this.org(next, db);
      if (!o || out.some((x) => x.id === o.id)) break;
      out.push(o);
      next = o.parent_id;
    }
    return out;
  }

  /** Read-modify-write of an organization's settings JSON, keeping the keys others own. */
  async updateOrgSettings(id: number, change: (settings: Record<string, unknown>) => void): Promise<Record<string, unknown> | undefined> {
    return this.transaction(async (trx) => {
      const o = await this.org(id, trx);
      if (!o) return undefined;
      const settings = parseSettings(o.settings);
      change(settings);
      await trx.updateTable('organizations').set({ settings: JSON.stringify(settings) }).where('id', '=', id).execute();
      return settings;
    });
  }

  // Quarantine ------------------------------------------------------------------------------

  async quarantineItem(scanId: number, db: Db = this.db): Promise<QuarantineItemRow | undefined> {
    return db.selectFrom('quarantine_items').selectAll().where('scan_id', '=', scanId).executeTakeFirst();
  }

  async insertQuarantine(row: Insertable<Database['quarantine_items']>, db: Db = this.db): Promise<void> {
    await db.insertInto('quarantine_items').values(row).execute();
  }

  /**
   * Takes a quarantined item for release (state `releasing`), so that two concurrent releases
   * never both deliver the message. A claim older than `staleBefore` (a crashed release) can be
   * taken again. Returns false when the item was not claimable.
   */
  async claimRelease(scanId: number, now: number, staleBefore: number): Promise<boolean> {
    const r = await this.db
      .updateTable('quarantine_items')
      .set((eb) => ({ state: 'releasing', claimed_at: now, release_attempts: eb('release_attempts', '+', 1) }))
      .where('scan_id', '=', scanId)
      .where((eb) => eb.or([eb('state', '=', 'quarantined'), eb.and([eb('state', '=', 'releasing'), eb('claimed_at', '<', staleBefore)])]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Gives a claimed item back to `quarantined` (the releaser did not deliver). */
  async unclaimRelease(scanId: number, detail: string): Promise<void> {
    await this.db
      .updateTable('quarantine_items')
      .set({ state: 'quarantined', claimed_at: null, release_detail: detail.slice(0, 2000) })
      .where('scan_id', '=', scanId)
      .where('state', '=', 'releasing')
      .execute();
  }

  async markReleased(scanId: number, r: { at: number; by: string; tokenId: number | null; markedClean: boolean; detail: string }, db: Db = this.db): Promise<void> {
    await db
      .updateTable('quarantine_items')
      .set({ state: 'released', released_at: r.at, released_by: r.by, released_by_token_id: r.tokenId, marked_clean: r.markedClean ? 1 : 0, release_detail: r.detail.slice(0, 2000), claimed_at: null })
      .where('scan_id', '=', scanId)
      .execute();
  }
}

/** An organization's settings JSON as an object, whatever is stored (bad JSON reads as {}). */
export function parseSettings(text: string | null | undefined): Record<string, unknown> {
  if (!text) return {};
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
