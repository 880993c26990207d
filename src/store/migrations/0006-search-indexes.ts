/**
 * 0006: indexes for scan search, the incidents feed and the SIEM export. Written once for SQLite
 * and PostgreSQL: partial indexes (`where parent_id is null` for filters that apply to root
 * scans, `where <col> is not null` for columns only some scans fill) and `lower(col)`
 * expression indexes for the case-insensitive equality filters. The search service writes its
 * conditions in exactly these forms so both planners can use them.
 *
 * Not indexable by design: substring filters (subject, file name, folder, URL, page title,
 * URL description, brand) and membership in comma-separated recipient lists (receiver
 * address, region, country); they scan the tenant's rows.
 */
import { sql, type Kysely, type Migration, type SqlBool } from 'kysely';
import type { Dialect } from './types.ts';

/** Case-insensitive equality filters on any scan of a tree (search_descendants.*). */
const LOWER_ANY = ['message_id', 'sender_domain', 'sender_ip', 'reply_to', 'return_path', 'receiver_domain', 'envelope_to', 'domain', 'file_type', 'mime'];
/** Case-insensitive equality filters on root scans. */
const LOWER_ROOT = ['sample_from', 'handle_status', 'verbose_action'];

export function searchIndexes(_dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      const roots = sql<SqlBool>`parent_id is null`;
      const idx = (name: string) => db.schema.createIndex(name).on('scans');
      // 0001's index on parent_id also covered the (null) parent_id of every root scan, and
      // SQLite's planner, without statistics, took `parent_id is null` through it as if it
      // were selective: children are looked up by a non-null parent id only.
      await db.schema.dropIndex('scans_parent').execute();
      await idx('scans_parent').column('parent_id').where(sql<SqlBool>`parent_id is not null`).execute();
      // root listings, newest first, per organization; verdicts (search, incidents); flags
      await idx('scans_roots_org_id').columns(['org_id', 'id']).where(roots).execute();
      await idx('scans_roots_verdict_id').columns(['verdict', 'id']).where(roots).execute();
      await idx('scans_roots_org_verdict_id').columns(['org_id', 'verdict', 'id']).where(roots).execute();
      // channel walked newest first, the creation time read from the index (no sort, early stop)
      await idx('scans_roots_channel_id_created').columns(['channel', 'id', 'created_at']).where(roots).execute();
      await idx('scans_roots_created').columns(['created_at']).where(roots).execute();
      await idx('scans_roots_vip_id').columns(['belongs_to_vip', 'id']).where(roots).execute();
      await idx('scans_roots_highlighted_id').columns(['highlighted', 'id']).where(roots).execute();
      await idx('scans_roots_group_size').columns(['group_size']).where(roots).execute();
      await idx('scans_roots_finished_id').columns(['finished_at', 'id']).where(roots).execute();
      for (const col of LOWER_ROOT) {
        await idx(`scans_roots_lower_${col}`)
          .expression(sql`lower(${sql.ref(col)})`)
          .where(sql<SqlBool>`parent_id is null and ${sql.ref(col)} is not null`)
          .execute();
      }
      // any node of a tree
      await idx('scans_sha256').column('sha256').execute();
      for (const col of LOWER_ANY) {
        await idx(`scans_lower_${col}`)
          .expression(sql`lower(${sql.ref(col)})`)
          .where(sql<SqlBool>`${sql.ref(col)} is not null`)
          .execute();
      }
    },
  };
}
