/**
 * 0004: what analysts do to scans. The verdict-change audit trail (who, when, old → new,
 * comment, kind), investigation requests (with the outbox row that announced them), and the
 * quarantine state of a scan (quarantined → releasing → released).
 */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function analystActions(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('verdict_changes')
        .addColumn('id', idType, id)
        .addColumn('scan_id', big, (c) => c.notNull())
        /** The scan's organization (for tenant filters), not the actor's. */
        .addColumn('org_id', big, (c) => c.notNull())
        .addColumn('actor_org_id', big, (c) => c.notNull())
        .addColumn('actor_token_id', big)
        .addColumn('actor_user_id', big)
        .addColumn('actor', 'text', (c) => c.notNull())
        /** `analyst` (handle_scan) or `quarantine_release` (marked clean when released). */
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('old_verdict', 'text')
        .addColumn('new_verdict', 'text', (c) => c.notNull())
        /** The verdict the engines gave, before any analyst change. */
        .addColumn('engine_verdict', 'text')
        .addColumn('comment', 'text')
        .addColumn('is_fp', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('is_fn', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('verdict_changes_scan').on('verdict_changes').columns(['scan_id', 'id']).execute();
      await db.schema.createIndex('verdict_changes_org_created').on('verdict_changes').columns(['org_id', 'created_at']).execute();

      await db.schema
        .createTable('investigation_requests')
        .addColumn('id', idType, id)
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('org_id', big, (c) => c.notNull())
        .addColumn('actor_org_id', big, (c) => c.notNull())
        .addColumn('actor_token_id', big)
        .addColumn('actor_user_id', big)
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('option', 'text', (c) => c.notNull())
        .addColumn('comment', 'text')
        /** The callbacks-outbox row that announces it to the organization's webhook, if any. */
        .addColumn('callback_id', big)
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('investigation_requests_scan').on('investigation_requests').columns(['scan_id', 'id']).execute();
      await db.schema.createIndex('investigation_requests_org_created').on('investigation_requests').columns(['org_id', 'created_at']).execute();

      await db.schema
        .createTable('quarantine_items')
        .addColumn('scan_id', big, (c) => c.primaryKey())
        .addColumn('org_id', big, (c) => c.notNull())
        /** `quarantined`, `releasing` (a release is calling the email releaser) or `released`. */
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('quarantined_by', 'text', (c) => c.notNull())
        .addColumn('quarantined_at', big, (c) => c.notNull())
        .addColumn('claimed_at', big)
        .addColumn('released_at', big)
        .addColumn('released_by', 'text')
        .addColumn('released_by_token_id', big)
        .addColumn('marked_clean', 'integer', (c) => c.notNull().defaultTo(0))
        /** What the releaser said (delivery detail, or why the last attempt was refused). */
        .addColumn('release_detail', 'text')
        .addColumn('release_attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('quarantine_items_org_state').on('quarantine_items').columns(['org_id', 'state']).execute();
    },
  };
}
