/**
 * 0009: the email gateway's deliveries. One row per accepted message (and per quarantine
 * release): the SMTP envelope, where the message stands (waiting for its verdict, queued for
 * the next hop, delivered, held, given up) and the retry schedule, so nothing accepted is lost
 * across a restart.
 */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function emailDeliveries(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('email_deliveries')
        .addColumn('id', idType, id)
        // no foreign key: a deleted scan leaves a row the delivery loop closes as failed
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('org_id', big, (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('mail_from', 'text', (c) => c.notNull())
        /** JSON array of recipient addresses. */
        .addColumn('rcpt_to', 'text', (c) => c.notNull())
        .addColumn('client_ip', 'text')
        .addColumn('helo', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        /** Header lines prepended to the stored message when it is sent. */
        .addColumn('headers', 'text')
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', big, (c) => c.notNull())
        .addColumn('lease_until', big)
        .addColumn('last_error', 'text')
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('updated_at', big, (c) => c.notNull())
        .addColumn('delivered_at', big)
        .execute();
      await db.schema.createIndex('email_deliveries_due').on('email_deliveries').columns(['state', 'next_attempt_at']).execute();
      await db.schema.createIndex('email_deliveries_scan').on('email_deliveries').column('scan_id').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('email_deliveries').execute();
    },
  };
}
