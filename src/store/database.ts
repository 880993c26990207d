/**
 * Opens the metadata database and brings its schema up to date. SQLite (better-sqlite3) is the
 * embedded default; the PostgreSQL dialect plugs in here for the scale mode.
 */
import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Database } from './schema.ts';
import { migrate } from './migrations.ts';

export interface OpenDatabase {
  db: Kysely<Database>;
  dialect: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

export interface SqliteOptions {
  file: string;
  /** FULL (default) makes every commit survive a power loss, NORMAL only a process crash. */
  synchronous?: 'FULL' | 'NORMAL';
}

export async function openSqlite(opts: SqliteOptions): Promise<OpenDatabase> {
  fs.mkdirSync(path.dirname(opts.file), { recursive: true });
  const sqlite = new SQLite(opts.file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  await migrate(db as Kysely<unknown>, 'sqlite');
  return {
    db,
    dialect: 'sqlite',
    close: () => db.destroy(),
  };
}
