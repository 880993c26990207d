/**
 * SearchService: scan search (filters over a scan and its descendants, newest first, cursor
 * paging), the incidents feed (non-clean scans after a scan-id cursor, oldest first) and the
 * SIEM export (scans finished after a time, in finishing order). Dialect-neutral: adapters map
 * their wire parameters onto `SearchQuery` and the rows back onto their shapes.
 *
 * Portable SQL (SQLite and PostgreSQL): case-insensitive matching is `lower(col)` on both sides
 * (with `lower(col)` expression indexes, migration 0006); substring matching is `LIKE` with an
 * explicit escape character; JSON attributes and evidence data are read with the dialect's JSON
 * operator (`json_extract` / `->>`), chosen once here.
 *
 * @example
 *   const page = await search.search(principal, { verdicts: ['MAL'], descendants: { sha256: [h] }, limit: 50 });
 *   page.rows; page.hasMore; page.trees.get(page.rows[0].id)?.descendants;
 */
import { sql, PostgresAdapter, type Expression, type ExpressionBuilder, type Kysely, type SelectQueryBuilder, type SqlBool } from 'kysely';
import type { Database, EvidenceRow, OrgRow, ScanRow } from '../store/schema.ts';
import type { Store } from '../store/store.ts';
import type { VerdictCode } from '../verdict/codes.ts';
import { invalid } from './errors.ts';
import { requirePermission } from './permissions.ts';
import type { Principal } from './scan-service.ts';

/** How a text filter compares: equal ignoring case, contained ignoring case, or in a comma-separated list. */
type Match = 'exact' | 'contains' | 'member';

/** Filters that match when the scan OR any scan below it matches (X-Ray's `search_descendants.*`). */
export const DESCENDANT_FIELDS = {
  subject: { column: 'subject', match: 'contains' },
  messageId: { column: 'message_id', match: 'exact' },
  senderDomain: { column: 'sender_domain', match: 'exact' },
  senderIp: { column: 'sender_ip', match: 'exact' },
  replyTo: { column: 'reply_to', match: 'exact' },
  returnPath: { column: 'return_path', match: 'exact' },
  receiverDomain: { column: 'receiver_domain', match: 'exact' },
  originalFilePath: { column: 'original_file_path', match: 'contains' },
  envelopeTo: { column: 'envelope_to', match: 'exact' },
  /** Name of a file object (URL objects are not files). */
  fileName: { column: 'name', match: 'contains' },
  fileType: { column: 'file_type', match: 'exact' },
  /** Lower-case hex; stored lower-case, so compared without lower() to use the plain index. */
  sha256: { column: 'sha256', match: 'exact' },
  mimeType: { column: 'mime', match: 'exact' },
  /** The URL of a URL object. */
  url: { column: 'url', match: 'contains' },
  domain: { column: 'domain', match: 'exact' },
  urlTitle: { column: 'url_title', match: 'contains' },
  /** `description` in the object's attributes JSON. */
  urlDescription: { column: 'attributes', match: 'contains', jsonKey: 'description' },
} as const satisfies Record<string, { column: keyof ScanRow & string; match: Match; jsonKey?: string }>;
export type DescendantField = keyof typeof DESCENDANT_FIELDS;

export interface SearchQuery {
  /** Creation time bounds, epoch ms, inclusive. */
  createdFrom?: number;
  createdTo?: number;
  /** Narrow to these organizations (each must be visible to the principal). */
  orgIds?: number[];
  channels?: string[];
  vip?: boolean;
  verdicts?: VerdictCode[];
  handleStatuses?: string[];
  actions?: string[];
  senders?: string[];
  /** Recipient addresses (members of the scan's comma-separated recipient list). */
  receivers?: string[];
  regions?: string[];
  countries?: string[];
  /** Campaign size at least this. */
  minGroupSize?: number;
  highlighted?: boolean;
  /** `brand` in the data of any evidence of the tree (contains, ignoring case). */
  brands?: string[];
  descendants?: Partial<Record<DescendantField, string[]>>;
  /** Continue below this scan id (the last id of the previous page). */
  beforeId?: number;
  limit: number;
}

/** A root scan's tree, loaded once per page for the mappers. */
export interface TreeData {
  descendants: ScanRow[];
  evidence: EvidenceRow[];
}

export interface PageData {
  rows: ScanRow[];
  /** Number of matches, exact up to `countExact === false`, then the configured limit. */
  count: number;
  countExact: boolean;
  hasMore: boolean;
  trees: Map<number, TreeData>;
  orgs: Map<number, OrgRow>;
}

export interface SearchOptions {
  /** Matches counted exactly up to this many; beyond, `count` is this number (as Elasticsearch's 10,000). */
  countLimit: number;
  /** The incidents feed stops before an unfinished scan younger than this (so none is skipped). */
  incidentsHoldbackMs: number;
  /** The SIEM export lists scans that finished at least this long ago (their rows are surely written). */
  siemDelayMs: number;
}

type Eb = ExpressionBuilder<Database, 'scans'>;

export class SearchService {
  private readonly db: Kysely<Database>;
  private readonly postgres: boolean;

  constructor(
    private readonly store: Store,
    private readonly opts: SearchOptions,
  ) {
    this.db = store.db;
    this.postgres = store.db.getExecutor().adapter instanceof PostgresAdapter;
  }

  // Scan search ----------------------------------------------------------------------------

  async search(principal: Principal, q: SearchQuery): Promise<PageData> {
    requirePermission(principal, 'scan:read');
    const orgIds = this.visibleOrgs(principal, q.orgIds);
    const where = (eb: Eb) => eb.and(this.conditions(eb, orgIds, q));
    const base = this.db.selectFrom('scans').where(where);
    const page = await base
      .selectAll()
      .$if(q.beforeId !== undefined, (b) => b.where('id', '<', q.beforeId!))
      .orderBy('id', 'desc')
      .limit(q.limit + 1)
      .execute();
    const rows = page.slice(0, q.limit);
    const { count, exact } = await this.cappedCount(this.db.selectFrom('scans').where(where).select('id'));
    return { rows, count, countExact: exact, hasMore: page.length > q.limit, ...(await this.load(rows)) };
  }

  private visibleOrgs(principal: Principal, wanted?: number[]): number[] {
    if (!wanted || wanted.length === 0) return principal.orgIds;
    for (const id of wanted) if (!principal.orgIds.includes(id)) throw invalid('organization_id', `${id} is not an organization this token can see`);
    return wanted;
  }

  private conditions(eb: Eb, orgIds: number[], q: SearchQuery): Expression<SqlBool>[] {
    const c: Expression<SqlBool>[] = [eb('parent_id', 'is', null), tenant(eb, orgIds)];
    if (q.createdFrom !== undefined) c.push(eb('created_at', '>=', q.createdFrom));
    if (q.createdTo !== undefined) c.push(eb('created_at', '<=', q.createdTo));
    if (q.channels?.length) c.push(eb('channel', 'in', q.channels));
    if (q.verdicts?.length) c.push(eb('verdict', 'in', q.verdicts));
    if (q.vip !== undefined) c.push(eb('belongs_to_vip', '=', sql.lit(q.vip ? 1 : 0)));
    if (q.highlighted !== undefined) c.push(eb('highlighted', '=', sql.lit(q.highlighted ? 1 : 0)));
    if (q.minGroupSize !== undefined) c.push(eb('group_size', '>=', q.minGroupSize));
    if (q.handleStatuses?.length) c.push(this.text(eb, 'handle_status', 'exact', q.handleStatuses));
    if (q.actions?.length) c.push(this.text(eb, 'verbose_action', 'exact', q.actions));
    if (q.senders?.length) c.push(this.text(eb, 'sample_from', 'exact', q.senders));
    if (q.receivers?.length) c.push(this.text(eb, 'sample_to', 'member', q.receivers));
    if (q.regions?.length) c.push(this.text(eb, 'to_region', 'member', q.regions));
    if (q.countries?.length) c.push(this.text(eb, 'to_country', 'member', q.countries));
    for (let [key, values] of Object.entries(q.descendants ?? {}) as [DescendantField, string[]][]) {
      if (!values?.length) continue;
      const f = DESCENDANT_FIELDS[key];
      // Message-IDs are stored as written (`<id@host>`); clients search with or without the brackets
      if (key === 'messageId') values = [...new Set(values.flatMap((v) => { const bare = v.trim().replace(/^<(.*)>$/, '$1'); return [bare, `<${bare}>`]; }))];
      // the root itself or any scan below it: ids of roots whose tree has a matching node
      const sub = this.db
        .selectFrom('scans as d')
        .select(sql<number>`coalesce(d.root_id, d.id)`.as('rid'))
        .where(sql<SqlBool>`${sql.ref('d.org_id')} + 0 in (${sql.join(orgIds)})`) // the field's index drives
        .where((e) => {
          const parts: Expression<SqlBool>[] = [];
          if (key === 'fileName') parts.push(e('d.kind', '=', 'file'));
          if (key === 'url') parts.push(e('d.kind', '=', 'url'));
          parts.push(this.text(e as unknown as Eb, f.column, f.match, key === 'sha256' ? values.map((v) => v.toLowerCase()) : values, 'jsonKey' in f ? f.jsonKey : undefined, 'd', key === 'sha256'));
          return e.and(parts);
        });
      c.push(eb('id', 'in', sub));
    }
    if (q.brands?.length) {
      const sub = this.db
        .selectFrom('evidence')
        .select('evidence.root_id')
        .where('evidence.data', 'like', '%"brand"%')
        .where((e) => e.or(q.brands!.map((b) => sql<SqlBool>`lower(${this.jsonText('evidence.data', 'brand')}) like lower(${contains(b)}) escape '\\'`)));
      c.push(eb('id', 'in', sub));
    }
    return c;
  }

  /**
   * One text filter, OR over its values. `exact` compares lower(col) (the 0006 expression
   * indexes); `contains` is a substring match; `member` matches one element of a comma-separated
   * list. `plain` compares the column as stored (for lower-case hex hashes, indexed as is).
   */
  private text(eb: Eb, column: string, match: Match, values: string[], jsonKey?: string, alias?: string, plain = false): Expression<SqlBool> {
    const name = alias ? `${alias}.${column}` : column;
    const ref = jsonKey ? this.jsonText(name, jsonKey) : sql.ref(name);
    const notNull = sql<SqlBool>`${sql.ref(name)} is not null`;
    let test: Expression<SqlBool>;
    if (match === 'exact' && plain) {
      test = sql<SqlBool>`${ref} in (${sql.join(values)})`;
    } else if (match === 'exact') {
      test = sql<SqlBool>`lower(${ref}) in (${sql.join(values.map((v) => sql`lower(${v})`))})`;
    } else if (match === 'contains') {
      test = eb.or(values.map((v) => sql<SqlBool>`lower(${ref}) like lower(${contains(v)}) escape '\\'`));
    } else {
      // ',a@x,b@y,' contains ',a@x,': spaces around the commas are ignored
      const list = sql`(',' || replace(lower(${ref}), ' ', '') || ',')`;
      test = eb.or(values.map((v) => sql<SqlBool>`${list} like lower(${'%,' + escapeLike(v.replace(/\s+/g, '')) + ',%'}) escape '\\'`));
    }
    return eb.and([notNull, test]);
  }

  /** The text of `key` in a JSON text column, in the dialect's words. */
  private jsonText(column: string, key: string) {
    if (!/^[a-z_]+$/.test(key)) throw new Error(`bad JSON key ${key}`);
    return this.postgres ? sql`(${sql.ref(column)}::jsonb ->> ${sql.lit(key)})` : sql`json_extract(${sql.ref(column)}, ${sql.lit('$.' + key)})`;
  }

  /** count(*) of a query, stopping at countLimit + 1 rows so a broad search stays cheap. */
  private async cappedCount(q: SelectQueryBuilder<Database, 'scans', { id: number }>): Promise<{ count: number; exact: boolean }> {
    const cap = this.opts.countLimit;
    const r = await this.db
      .selectFrom(q.limit(cap + 1).as('m'))
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    const n = Number(r.n);
    return n > cap ? { count: cap, exact: false } : { count: n, exact: true };
  }

  /** Descendants, evidence and organizations of a page of root scans, three queries in all. */
  private async load(rows: ScanRow[]): Promise<{ trees: Map<number, TreeData>; orgs: Map<number, OrgRow> }> {
    const trees = new Map<number, TreeData>();
    for (const r of rows) trees.set(r.id, { descendants: [], evidence: [] });
    const ids = rows.map((r) => r.id);
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const desc = await this.db.selectFrom('scans').selectAll().where('root_id', 'in', chunk).orderBy('id').execute();
      for (const d of desc) trees.get(d.root_id!)?.descendants.push(d);
      const ev = await this.db.selectFrom('evidence').selectAll().where('root_id', 'in', chunk).orderBy('id').execute();
      for (const e of ev) trees.get(e.root_id)?.evidence.push(e);
    }
    const orgs = new Map<number, OrgRow>();
    let want = [...new Set(rows.map((r) => r.org_id))];
    while (want.length > 0) {
      const got = await this.db.selectFrom('organizations').selectAll().where('id', 'in', want).execute();
      for (const o of got) orgs.set(o.id, o);
      want = [...new Set(got.map((o) => o.parent_id).filter((p): p is number => p !== null && !orgs.has(p)))];
    }
    return { trees, orgs };
  }

  // Incidents feed --------------------------------------------------------------------------

  /**
   * Detected root scans with an id above `afterId`, oldest first. Without `verdicts`, every
   * verdict but CLN. The page ends before the oldest unfinished scan of the principal's
   * organizations younger than `incidentsHoldbackMs`, so a client that moves its cursor to the
   * last id it saw never skips a scan that was still being examined.
   */
  async incidents(principal: Principal, q: { verdicts?: VerdictCode[]; afterId: number; limit: number }, now = Date.now()): Promise<PageData> {
    requirePermission(principal, 'scan:read');
    const pending = await this.db
      .selectFrom('scans')
      .select((eb) => eb.fn.min('id').as('id'))
      .where('parent_id', 'is', null)
      .where(sql<SqlBool>`${sql.ref('org_id')} + 0 in (${sql.join(principal.orgIds)})`) // the status index drives
      .where('status', 'in', ['queued', 'scanning'])
      .where('id', '>', q.afterId)
      .where('created_at', '>', now - this.opts.incidentsHoldbackMs)
      .executeTakeFirst();
    const holdAt = pending?.id === null || pending?.id === undefined ? undefined : Number(pending.id);
    const where = (eb: Eb) => {
      const c: Expression<SqlBool>[] = [eb('parent_id', 'is', null), tenant(eb, principal.orgIds), eb('id', '>', q.afterId)];
      // walked in id order from the cursor: the verdict is checked per row (detections are
      // common enough that a page fills quickly), not through an index that would need a sort
      c.push(q.verdicts?.length ? sql<SqlBool>`coalesce(verdict, '') in (${sql.join(q.verdicts)})` : sql<SqlBool>`coalesce(verdict, 'CLN') <> 'CLN'`);
      // a verdict is set only when a scan completes; `status` is not compared with = / in so
      // that its (unselective for done) index is not chosen
      c.push(eb('status', 'not in', ['queued', 'scanning', 'error']));
      if (holdAt !== undefined) c.push(eb('id', '<', holdAt));
      return eb.and(c);
    };
    const page = await this.db.selectFrom('scans').selectAll().where(where).orderBy('id').limit(q.limit + 1).execute();
    const rows = page.slice(0, q.limit);
    // a feed is read page by page: `count` is this page's (0 ends a reader's loop)
    return { rows, count: rows.length, countExact: true, hasMore: page.length > q.limit, ...(await this.load(rows)) };
  }

  // SIEM export -----------------------------------------------------------------------------

  /**
   * Root scans that finished (complete or failed) after `afterMs`, in finishing order, at
   * least `siemDelayMs` ago. `after` continues behind the last (finished_at, id) of a page.
   */
  async siem(principal: Principal, q: { afterMs?: number; after?: { finishedAt: number; id: number }; limit: number }, now = Date.now()): Promise<PageData> {
    requirePermission(principal, 'scan:read');
    const where = (eb: Eb) => {
      const c: Expression<SqlBool>[] = [eb('parent_id', 'is', null), tenant(eb, principal.orgIds), eb('status', 'not in', ['queued', 'scanning'])];
      c.push(eb('finished_at', 'is not', null), eb('finished_at', '<=', now - this.opts.siemDelayMs));
      if (q.after) {
        const a = q.after;
        c.push(eb.or([eb('finished_at', '>', a.finishedAt), eb.and([eb('finished_at', '=', a.finishedAt), eb('id', '>', a.id)])]));
      } else if (q.afterMs !== undefined) {
        c.push(eb('finished_at', '>', q.afterMs));
      }
      return eb.and(c);
    };
    const page = await this.db.selectFrom('scans').selectAll().where(where).orderBy('finished_at').orderBy('id').limit(q.limit + 1).execute();
    const rows = page.slice(0, q.limit);
    return { rows, count: rows.length, countExact: true, hasMore: page.length > q.limit, ...(await this.load(rows)) };
  }
}

/**
 * The tenant condition. One organization: `org_id = ?` (its indexes lead with org_id). Several
 * (a parent's token): `org_id + 0 in (…)`, which no index serves, so the planner walks the
 * scans in the order asked for (or by a selective filter's index) instead of gathering and
 * sorting every scan of the organizations.
 */
function tenant(eb: Eb, orgIds: number[]): Expression<SqlBool> {
  if (orgIds.length === 1) return eb('org_id', '=', orgIds[0]);
  return sql<SqlBool>`${sql.ref('org_id')} + 0 in (${sql.join(orgIds)})`;
}

function escapeLike(v: string): string {
  return v.replace(/[\\%_]/g, (c) => '\\' + c);
}

function contains(v: string): string {
  return '%' + escapeLike(v) + '%';
}
