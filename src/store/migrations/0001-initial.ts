/** 0001: organizations, tokens, blobs, scans, evidence, jobs, callbacks. */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function initial(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('organizations')
        .addColumn('id', idType, id)
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('parent_id', big, (c) => c.references('organizations.id'))
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('seats', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('settings', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', idType, id)
        .addColumn('org_id', big, (c) => c.notNull().references('organizations.id'))
        .addColumn('user_id', big)
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('last_used_at', big)
        .addColumn('revoked_at', big)
        .execute();
      await db.schema
        .createTable('blobs')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('size', big, (c) => c.notNull())
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      let scans = db.schema
        .createTable('scans')
        .addColumn('id', idType, id)
        .addColumn('org_id', big, (c) => c.notNull().references('organizations.id'))
        .addColumn('parent_id', big)
        .addColumn('root_id', big)
        .addColumn('depth', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('channel', 'text', (c) => c.notNull())
        .addColumn('sub_origin', 'text')
        .addColumn('relation', 'text')
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text')
        .addColumn('sub_verdict', 'text')
        .addColumn('own_verdict', 'text')
        .addColumn('confidence', 'text')
        .addColumn('score', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('partial', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('is_fp', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('is_fn', 'integer', (c) => c.notNull().defaultTo(0));
      for (const t of ['created_at', 'started_at', 'self_finished_at', 'finished_at', 'verdict_changed_at', 'size']) {
        scans = scans.addColumn(t, big, (c) => (t === 'created_at' ? c.notNull() : c));
      }
      for (const t of ['md5', 'sha1', 'sha256', 'sha512', 'file_type', 'mime', 'blob_sha256', 'url', 'domain', 'final_url']) {
        scans = scans.addColumn(t, 'text');
      }
      await scans
        .addColumn('status_code', 'integer')
        .addColumn('url_title', 'text')
        .addColumn('options', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('callback', 'text')
        .addColumn('engines', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('layers', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('decisions', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('attributes', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('error', 'text')
        .addColumn('request_id', 'text')
        .addColumn('original_file_path', 'text')
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('scans_org_created').on('scans').columns(['org_id', 'created_at']).execute();
      await db.schema.createIndex('scans_parent').on('scans').column('parent_id').execute();
      await db.schema.createIndex('scans_root').on('scans').column('root_id').execute();
      await db.schema.createIndex('scans_finished').on('scans').columns(['finished_at', 'id']).execute();
      await db.schema.createIndex('scans_blob').on('scans').column('blob_sha256').execute();
      await db.schema.createIndex('scans_status').on('scans').column('status').execute();
      await db.schema
        .createTable('evidence')
        .addColumn('id', idType, id)
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('root_id', big, (c) => c.notNull())
        .addColumn('heuristic', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('scanner', 'text', (c) => c.notNull())
        .addColumn('layer', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('details', 'text')
        .addColumn('score', 'integer', (c) => c.notNull())
        .addColumn('verdict', 'text')
        .addColumn('attack', 'text')
        .addColumn('data', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('evidence_scan').on('evidence').column('scan_id').execute();
      await db.schema.createIndex('evidence_root').on('evidence').column('root_id').execute();
      await db.schema
        .createTable('jobs')
        .addColumn('id', idType, id)
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('run_at', big, (c) => c.notNull())
        .addColumn('locked_by', 'text')
        .addColumn('locked_until', big)
        .addColumn('last_error', 'text')
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('updated_at', big, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('jobs_claim').on('jobs').columns(['state', 'run_at']).execute();
      await db.schema.createIndex('jobs_scan').on('jobs').column('scan_id').execute();
      await db.schema
        .createTable('callbacks')
        .addColumn('id', idType, id)
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('org_id', big, (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('headers', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', big, (c) => c.notNull())
        .addColumn('lease_until', big)
        .addColumn('last_status', 'integer')
        .addColumn('last_error', 'text')
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('delivered_at', big)
        .execute();
      await db.schema.createIndex('callbacks_due').on('callbacks').columns(['state', 'next_attempt_at']).execute();
    },
  };
}
