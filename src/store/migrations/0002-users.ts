/** 0002: users (people and service accounts of an organization); tokens may belong to one. */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function users(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('users')
        .addColumn('id', idType, id)
        .addColumn('org_id', big, (c) => c.notNull().references('organizations.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', (c) => c.notNull())
        /** scrypt hash `scrypt$N$r$p$salt$hash` (base64), or null for token-only accounts. */
        .addColumn('password_hash', 'text')
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('disabled_at', big)
        .execute();
      await db.schema.createIndex('users_org').on('users').column('org_id').execute();
      await db.schema.createIndex('api_tokens_user').on('api_tokens').column('user_id').execute();
    },
  };
}
