/**
 * Opens the metadata database and brings its schema up to date. SQLite (better-sqlite3) is the
 * embedded default; PostgreSQL (node-postgres pool) is the scale mode's. Both get the same
 * schema from the same migrations, and the same `Store` runs over either.
 */
import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
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

export interface PostgresOptions {
  /** `postgres://user@host:port/database` */
  url: string;
  /** Connections in this process's pool. */
  poolSize?: number;
  /** How long to keep retrying the first connection (the database may still be starting). */
  connectTimeoutMs?: number;
}

// Our columns are epoch milliseconds, sizes and ids: 64-bit integers that fit a JS number
// exactly (< 2^53). node-postgres returns int8 (and count(*)) as strings by default; parse them
// per pool rather than changing the global type table.
const INT8_OID = 20;
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as pg.CustomTypesConfig;

export async function openPostgres(opts: PostgresOptions): Promise<OpenDatabase> {
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types, connectionTimeoutMillis: 10_000 });
  // An idle client that loses its server (PostgreSQL restart) emits 'error'; the pool drops it
  // and the next query opens a new connection. Without a listener the process would exit.
  pool.on('error', () => {});
  const until = Date.now() + (opts.connectTimeoutMs ?? 30_000);
  for (;;) {
    try {
      const c = await pool.connect();
      c.release();
      break;
    } catch (e) {
      if (Date.now() > until) {
        await pool.end().catch(() => {});
        throw new Error(`PostgreSQL at ${redactUrl(opts.url)} is unreachable: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    // Kysely's migrator takes a PostgreSQL advisory lock: processes starting together migrate once.
    await migrate(db as Kysely<unknown>, 'postgres');
  } catch (e) {
    await db.destroy();
    throw e;
  }
  return { db, dialect: 'postgres', close: () => db.destroy() };
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** The configured metadata database: PostgreSQL when `databaseUrl` is set, else SQLite in the data directory. */
export function openDatabase(config: { databaseUrl?: string; databasePoolSize: number; dataDir: string }): Promise<OpenDatabase> {
  return config.databaseUrl
    ? openPostgres({ url: config.databaseUrl, poolSize: config.databasePoolSize })
    : openSqlite({ file: path.join(config.dataDir, 'verdict.db') });
}
