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
  /**
   * Resolves once every transaction committed before the call survives a power loss. A no-op
   * where each commit is already durable (PostgreSQL, SQLite with synchronous=FULL).
   */
  durable(): Promise<void>;
  /** How many flushes `durable()` has issued (SQLite group commit; 0 elsewhere). */
  flushes(): number;
  close(): Promise<void>;
}

export interface SqliteOptions {
  file: string;
  /**
   * GROUP (default): commits are not flushed one by one; `durable()` flushes the write-ahead
   * log for everything committed so far, shared by all callers waiting at that moment (group
   * commit), off the event loop. FULL: every commit is flushed by SQLite itself, on the event
   * loop. NORMAL: only checkpoints are flushed (survives a process crash, not a power loss).
   */
  synchronous?: 'GROUP' | 'FULL' | 'NORMAL';
  /** Prepared statements kept for reuse (Kysely prepares each query anew otherwise). */
  statementCache?: number;
}

export async function openSqlite(opts: SqliteOptions): Promise<OpenDatabase> {
  fs.mkdirSync(path.dirname(opts.file), { recursive: true });
  const mode = opts.synchronous ?? 'GROUP';
  const sqlite = new SQLite(opts.file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma(`synchronous = ${mode === 'FULL' ? 'FULL' : 'NORMAL'}`);
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite, opts.statementCache ?? 256) }) });
  await migrate(db as Kysely<unknown>, 'sqlite');
  const flusher = mode === 'GROUP' ? new WalFlusher(`${opts.file}-wal`) : undefined;
  return {
    db,
    dialect: 'sqlite',
    durable: flusher ? () => flusher.flush() : async () => {},
    flushes: () => flusher?.count ?? 0,
    close: async () => {
      await flusher?.close();
      await db.destroy();
    },
  };
}

/**
 * Group commit for SQLite in WAL mode with synchronous=NORMAL. A commit appends its frames to
 * the `-wal` file; SQLite flushes that file only at checkpoints. `flush()` fdatasyncs the WAL
 * through our own descriptor (a flush applies to the file, whichever descriptor asks), in the
 * thread pool, so the event loop keeps serving. Callers arriving while a flush runs share the
 * next one: under load one flush makes many commits durable. Checkpoints flush the WAL before
 * copying it, so a WAL rewound after a checkpoint loses nothing either.
 */
class WalFlusher {
  count = 0;
  private fd: number | undefined;
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly walFile: string) {}

  flush(): Promise<void> {
    // a flush already running may have started before the caller's commit: queue one more
    if (!this.running) return (this.running = this.run());
    return (this.next ??= this.running.then(() => {
      this.next = undefined;
      return (this.running = this.run());
    }));
  }

  private async run(): Promise<void> {
    try {
      if (this.fd === undefined) {
        try {
          this.fd = await new Promise<number>((resolve, reject) => fs.open(this.walFile, 'r', (e, fd) => (e ? reject(e) : resolve(fd))));
        } catch (e) {
          // no WAL yet: nothing was committed since the database file was last synced
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
          throw e;
        }
        // the WAL's directory entry, once: a file that vanished with its directory entry
        // would take its synced frames with it
        const dir = fs.openSync(path.dirname(this.walFile), 'r');
        try {
          fs.fsyncSync(dir);
        } catch {
          // some file systems refuse fsync on directories
        } finally {
          fs.closeSync(dir);
        }
      }
      const fd = this.fd;
      this.count++;
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
    } finally {
      this.running = undefined;
    }
  }

  async close(): Promise<void> {
    await this.next?.catch(() => {});
    await this.running?.catch(() => {});
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * The better-sqlite3 handle Kysely's dialect drives, with prepared statements reused by SQL
 * text (least recently used dropped past `size`). Kysely runs one query at a time on the
 * connection, so a cached statement is never in use twice.
 */
function withStatementCache(sqlite: SQLite.Database, size: number): { prepare(sql: string): SQLite.Statement; close(): void } {
  const cache = new Map<string, SQLite.Statement>();
  return {
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (stmt) {
        cache.delete(sql);
      } else {
        stmt = sqlite.prepare(sql);
        if (cache.size >= size) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, stmt);
      return stmt;
    },
    close: () => {
      cache.clear();
      sqlite.close();
    },
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
  return { db, dialect: 'postgres', durable: async () => {}, flushes: () => 0, close: () => db.destroy() };
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
