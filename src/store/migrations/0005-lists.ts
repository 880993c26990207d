/**
 * 0005: allow/block list entries, all lists and targets in one table. `norm` is the value in its
 * comparable form, `match_key` what a scan's subjects are looked up by (sha256, address, host,
 * domain, IP; `*cidr` for IP ranges, which are matched in code).
 */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function lists(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('list_entries')
        .addColumn('id', idType, id)
        .addColumn('org_id', big, (c) => c.notNull().references('organizations.id'))
        .addColumn('list_type', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('norm', 'text', (c) => c.notNull())
        .addColumn('match_key', 'text', (c) => c.notNull())
        .addColumn('exact', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('comment', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .addColumn('created_by_token_id', big)
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('updated_at', big, (c) => c.notNull())
        .execute();
      // matching a scan: by target and key, within the organizations that apply
      await db.schema.createIndex('list_entries_match').on('list_entries').columns(['target', 'match_key', 'org_id']).execute();
      // listing one list of some organizations, in id order
      await db.schema.createIndex('list_entries_list').on('list_entries').columns(['list_type', 'target', 'org_id', 'id']).execute();
      // one entry per value in a list of an organization
      await db.schema
        .createIndex('list_entries_unique')
        .on('list_entries')
        .columns(['org_id', 'list_type', 'target', 'norm', 'exact'])
        .unique()
        .execute();
    },
  };
}
