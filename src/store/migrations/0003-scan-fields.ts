/**
 * 0003: scan columns for search, analyst work and the email channel: email envelope and
 * header fields, recipients' region and country, handling status, action, VIP, highlight,
 * investigation flag, who changed the verdict, campaign size.
 */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export const SCAN_TEXT_FIELDS = [
  'sample_from', // sender address
  'sample_to', // recipient addresses, comma-separated
  'subject',
  'message_id',
  'sender_ip',
  'sender_domain',
  'reply_to',
  'return_path',
  'receiver_domain',
  'envelope_to',
  'to_region',
  'to_country',
  'handle_status',
  'verbose_action',
  'verdict_changed_by',
] as const;

export function scanFields(dialect: Dialect): Migration {
  const { big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      for (const col of SCAN_TEXT_FIELDS) await db.schema.alterTable('scans').addColumn(col, 'text').execute();
      for (const col of ['belongs_to_vip', 'highlighted', 'was_requested_for_investigation', 'group_size']) {
        await db.schema.alterTable('scans').addColumn(col, 'integer', (c) => c.notNull().defaultTo(0)).execute();
      }
      void big;
    },
  };
}
