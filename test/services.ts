/**
 * The shared services the scale-mode tests use: PostgreSQL and Redis on loopback (this
 * machine runs them; `.ci/run` starts them on a bare one), and a local S3-compatible server.
 * A missing service fails the test with a message naming it: nothing is skipped.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import { openPostgres, type OpenDatabase } from '../src/store/database.ts';

export const POSTGRES_ADMIN_URL = process.env.VERDICT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.VERDICT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  try {
    await c.connect();
  } catch (e) {
    throw new Error(`PostgreSQL is needed at ${POSTGRES_ADMIN_URL} (set VERDICT_TEST_POSTGRES_URL): ${(e as Error).message}`);
  }
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

/** A new empty database for one test; `drop()` removes it. */
export async function createScratchDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `verdict_t_${crypto.randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`create database ${name}`));
  return {
    url: withDatabase(POSTGRES_ADMIN_URL, name),
    drop: () => admin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  };
}

/** A migrated, open database on a scratch PostgreSQL database. */
export async function scratchPostgres(): Promise<{ db: OpenDatabase; url: string; drop(): Promise<void> }> {
  const scratch = await createScratchDatabase();
  const db = await openPostgres({ url: scratch.url, poolSize: 5 });
  return {
    db,
    url: scratch.url,
    async drop() {
      await db.close();
      await scratch.drop();
    },
  };
}
