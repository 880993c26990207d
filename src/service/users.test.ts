import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { openSqlite } from '../store/database.ts';
import { Store } from '../store/store.ts';
import { LocalBlobStore } from '../store/blobs.ts';
import { DbQueue } from '../queue/db-queue.ts';
import { loadConfig } from '../config/load.ts';
import { ScanService } from './scan-service.ts';
import { UserService } from './users.ts';

async function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-users-'));
  const db = await openSqlite({ file: path.join(dir, 'v.db') });
  const store = new Store(db.db);
  const config = loadConfig({ dataDir: dir }, {});
  const scans = new ScanService({ config, store, blobs: new LocalBlobStore(path.join(dir, 'blobs')), queue: new DbQueue(db.db), log: pino({ level: 'silent' }) });
  const { org } = await scans.bootstrap();
  return { users: new UserService(store), scans, org, close: async () => { await db.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

test('a user signs in with email or name and password; a wrong password or a disabled user does not', async () => {
  const s = await setup();
  try {
    const u = await s.users.createUser({ orgId: s.org.id, name: 'Ada', email: 'Ada@Example.org', role: 'Analyst', password: 'correct horse battery' });
    assert.equal((await s.users.verifyCredentials('ada@example.org', 'correct horse battery'))?.principal.role, 'Analyst');
    assert.equal((await s.users.verifyCredentials('Ada', 'correct horse battery'))?.user.id, u.id);
    assert.equal(await s.users.verifyCredentials('ada@example.org', 'wrong password!!'), undefined);
    assert.equal(await s.users.verifyCredentials('nobody@example.org', 'correct horse battery'), undefined);
    await s.users.setActive(u.id, false);
    assert.equal(await s.users.verifyCredentials('ada@example.org', 'correct horse battery'), undefined);
  } finally {
    await s.close();
  }
});

test('a user token carries the user role and stops working when the user is disabled', async () => {
  const s = await setup();
  try {
    const u = await s.users.createUser({ orgId: s.org.id, name: 'Bob', email: 'bob@example.org', role: 'Viewer' });
    const token = await s.users.createUserToken(u.id);
    assert.equal((await s.scans.authenticate(token)).role, 'Viewer');
    await s.users.setActive(u.id, false);
    await assert.rejects(s.scans.authenticate(token), /disabled/);
  } finally {
    await s.close();
  }
});

test('bad user fields are refused by name; emails are unique', async () => {
  const s = await setup();
  try {
    await assert.rejects(s.users.createUser({ orgId: s.org.id, name: 'X', email: 'not-an-email', role: 'Admin' }), /email/);
    await assert.rejects(s.users.createUser({ orgId: s.org.id, name: 'X', email: 'x@example.org', role: 'Boss' as never }), /role/);
    await s.users.createUser({ orgId: s.org.id, name: 'X', email: 'x@example.org', role: 'Admin' });
    await assert.rejects(s.users.createUser({ orgId: s.org.id, name: 'Y', email: 'X@example.org', role: 'Admin' }), /already exists/);
  } finally {
    await s.close();
  }
});
