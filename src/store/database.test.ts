import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { openSqlite } from './database.ts';
import { Store } from './store.ts';

function tmp(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-db-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('group commit: many writers waiting for durability share a few WAL flushes, and every write is there after reopening', async (t) => {
  const file = path.join(tmp(t), 'v.db');
  const opened = await openSqlite({ file });
  const store = new Store(opened.db, opened);
  const before = opened.flushes();
  await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      await store.createOrg(`org-${i}`);
      await store.durable();
    }),
  );
  const used = opened.flushes() - before;
  assert.ok(used >= 1, 'durable() flushed the WAL');
  assert.ok(used < 100, `200 waiters shared flushes (used ${used})`);
  await opened.close();
  const again = await openSqlite({ file });
  assert.equal(await new Store(again.db).countOrgs(), 200);
  await again.close();
});

test('FULL mode: durable() has nothing left to flush', async (t) => {
  const opened = await openSqlite({ file: path.join(tmp(t), 'v.db'), synchronous: 'FULL' });
  await new Store(opened.db, opened).createOrg('a');
  await opened.durable();
  assert.equal(opened.flushes(), 0);
  await opened.close();
});

test('the prepared-statement cache gives right answers past its size, with repeated and distinct queries', async (t) => {
  const opened = await openSqlite({ file: path.join(tmp(t), 'v.db'), statementCache: 4 });
  const store = new Store(opened.db, opened);
  for (let i = 0; i < 20; i++) await store.createOrg(`o${i}`);
  for (let round = 0; round < 3; round++) {
    for (let n = 1; n <= 10; n++) {
      // a different SQL text per n (the IN list grows), each seen several times
      const ids = Array.from({ length: n }, (_, k) => k + 1);
      const rows = await opened.db.selectFrom('organizations').select('id').where('id', 'in', ids).execute();
      assert.equal(rows.length, n);
    }
  }
  const r = await sql<{ n: number }>`select count(*) as n from organizations`.execute(opened.db);
  assert.equal(Number(r.rows[0].n), 20);
  await opened.close();
});
