/**
 * Schema migrations, written once with Kysely's schema builder so that SQLite and PostgreSQL
 * get the same schema. One file per migration under migrations/, listed here in order.
 * Append new migrations; never edit one that has shipped.
 */
import { Kysely, Migrator, type Migration, type MigrationProvider } from 'kysely';
import type { Dialect } from './migrations/types.ts';
import { initial } from './migrations/0001-initial.ts';
import { users } from './migrations/0002-users.ts';
import { scanFields } from './migrations/0003-scan-fields.ts';
import { analystActions } from './migrations/0004-analyst-actions.ts';
import { lists } from './migrations/0005-lists.ts';
import { searchIndexes } from './migrations/0006-search-indexes.ts';
import { kata } from './migrations/0007-kata.ts';
import { serviceKeys } from './migrations/0008-service-keys.ts';
import { emailDeliveries } from './migrations/0009-email-deliveries.ts';

const ALL: [string, (d: Dialect) => Migration][] = [
  ['0001_initial', initial],
  ['0002_users', users],
  ['0003_scan_fields', scanFields],
  ['0004_analyst_actions', analystActions],
  ['0005_lists', lists],
  ['0006_search_indexes', searchIndexes],
  ['0007_kata', kata],
  ['0008_service_keys', serviceKeys],
  ['0009_email_deliveries', emailDeliveries],
];

class StaticProvider implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return Object.fromEntries(ALL.map(([name, m]) => [name, m(this.dialect)]));
  }
}

export async function migrate(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticProvider(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${(error as Error)?.message ?? error}`);
  }
}
