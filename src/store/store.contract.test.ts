/**
 * One contract, two databases: the same `Store` over SQLite (embedded) and PostgreSQL (scale),
 * each case run against both through a factory. What the rest of Verdict relies on — numbers
 * come back as numbers, a scan finishes once even when two workers race, callbacks are claimed
 * by one process, orphaned samples are reported, shared keys are generated once — must hold in
 * both dialects.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { openSqlite, type OpenDatabase } from './database.ts';
import { Store } from './store.ts';
import type { NewScan } from './schema.ts';
import type { ObjectReport } from '../engine/report.ts';
import { scratchPostgres } from '../../test/services.ts';

const factories: Record<string, () => Promise<{ db: OpenDatabase; close(): Promise<void> }>> = {
  SQLite: async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-store-'));
    const db = await openSqlite({ file: path.join(dir, 'v.db'), synchronous: 'NORMAL' });
    return {
      db,
      close: async () => {
        await db.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  PostgreSQL: async () => {
    const pg = await scratchPostgres();
    return { db: pg.db, close: () => pg.drop() };
  },
};

const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

function report(name: string, verdict: string, children: ObjectReport[] = [], attributes: Record<string, unknown> = {}): ObjectReport {
  const now = Date.now();
  return {
    info: { kind: 'file', name, size: 10, fileType: 'text', mime: 'text/plain', md5: 'm', sha1: 's1', sha256: sha(name), sha512: 's5', depth: 0 },
    evidence: verdict === 'MAL' ? [{ heuristic: 'TEST_ARTEFACT', scanner: 'yara', layer: 'signatures', details: 'EICAR' }] : [],
    attributes,
    engines: [{ scanner: 'yara', version: '1', layer: 'signatures', status: 'ok', ms: 1, findings: verdict === 'MAL' ? 1 : 0 }],
    outcome: { verdict: verdict as 'CLN', ownVerdict: verdict as 'CLN', score: verdict === 'MAL' ? 1000 : 0, spamScore: 0, partial: false, confidence: 'HIGH', decisions: [] },
    children,
    startedAt: now,
    selfFinishedAt: now,
    finishedAt: now,
  };
}

for (const [name, make] of Object.entries(factories)) {
  describe(`store contract: ${name}`, async () => {
    const opened = await make();
    const store = new Store(opened.db.db);
    after(() => opened.close());
    const org = await store.createOrg(`org-${crypto.randomBytes(3).toString('hex')}`);
    const newScan = (over: Partial<NewScan> = {}): NewScan => ({ org_id: org.id, parent_id: null, root_id: null, depth: 0, kind: 'file', channel: 'api', sub_origin: null, relation: null, name: 'a.txt', status: 'queued', verdict: null, sub_verdict: null, own_verdict: null, confidence: null, created_at: Date.now(), started_at: null, self_finished_at: null, finished_at: null, verdict_changed_at: null, size: 10, md5: null, sha1: null, sha256: null, sha512: null, file_type: null, mime: null, blob_sha256: null, url: null, domain: null, final_url: null, status_code: null, url_title: null, callback: null, error: null, request_id: null, original_file_path: null, ...over }) as NewScan;

    test('rows come back with numbers as numbers, ids growing', async () => {
      const a = await store.insertScan(newScan({ created_at: 1_700_000_000_123 }));
      const b = await store.insertScan(newScan());
      assert.equal(typeof a.id, 'number');
      assert.ok(b.id > a.id);
      const got = (await store.getScan(a.id))!;
      assert.equal(got.created_at, 1_700_000_000_123, 'epoch milliseconds survive as a number');
      assert.equal(got.org_id, org.id);
      assert.equal(typeof got.org_id, 'number');
    });

    test('a finished tree is written once with its children, evidence, email fields and callback', async () => {
      const root = await store.insertScan(newScan({ name: 'mail.eml', channel: 'email' }));
      const email = { from: 'alice@sender.test', to: ['bob@example.test', 'carol@example.test'], subject: 'Invoice', messageId: '<m1@sender.test>', senderDomain: 'sender.test', sourceIp: '198.51.100.7', replyTo: null, returnPath: 'bounce@sender.test', receiverDomain: 'example.test' };
      const tree = report('mail.eml', 'MAL', [{ ...report('eicar.com', 'MAL'), relation: 'attachment' }], { email });
      const cb = { spec: { url: 'http://127.0.0.1:1/cb', headers: {}, params: null }, body: { ok: 1 }, orgId: org.id };
      assert.equal(await store.saveTree(root.id, tree, cb), true);
      const saved = (await store.getScan(root.id))!;
      assert.equal(saved.status, 'done');
      assert.equal(saved.verdict, 'MAL');
      assert.deepEqual([saved.sample_from, saved.sample_to, saved.subject, saved.sender_ip, saved.receiver_domain], ['alice@sender.test', 'bob@example.test,carol@example.test', 'Invoice', '198.51.100.7', 'example.test']);
      const kids = await store.getDescendants(root.id);
      assert.deepEqual(kids.map((k) => [k.name, k.relation, k.verdict]), [['eicar.com', 'attachment', 'MAL']]);
      const ev = await store.getEvidence([root.id, kids[0].id]);
      assert.equal(ev.length, 2);
      // a second result for the same scan (a worker that lost its lease) is refused
      assert.equal(await store.saveTree(root.id, report('mail.eml', 'CLN'), cb), false);
      assert.equal((await store.getScan(root.id))!.verdict, 'MAL');
      assert.equal((await store.getDescendants(root.id)).length, 1);
      assert.equal((await store.getCallbacks(root.id)).length, 1);
    });

    test('two workers racing to finish the same scan: exactly one wins', async () => {
      for (let i = 0; i < 5; i++) {
        const s = await store.insertScan(newScan({ status: 'scanning' }));
        const cb = { spec: { url: 'http://127.0.0.1:1/cb', headers: {}, params: null }, body: {}, orgId: org.id };
        const results = await Promise.all([store.saveTree(s.id, report('x', 'CLN'), cb), store.saveTree(s.id, report('x', 'CLN'), cb)]);
        assert.deepEqual(results.sort(), [false, true]);
        assert.equal((await store.getCallbacks(s.id)).length, 1);
      }
    });

    test('concurrent callback claims never hand the same delivery to two processes', async () => {
      const cb = { spec: { url: 'http://127.0.0.1:1/cb', headers: {}, params: null }, body: {}, orgId: org.id };
      for (let i = 0; i < 20; i++) {
        const s = await store.insertScan(newScan({ status: 'scanning' }));
        await store.saveTree(s.id, report(`c${i}`, 'CLN'), cb);
      }
      const now = Date.now() + 1000;
      const [a, b, c] = await Promise.all([store.claimCallbacks(now, 60_000, 100), store.claimCallbacks(now, 60_000, 100), store.claimCallbacks(now, 60_000, 100)]);
      const ids = [...a, ...b, ...c].map((r) => r.id);
      assert.equal(new Set(ids).size, ids.length, 'no delivery claimed twice');
      assert.ok(ids.length >= 20);
      assert.deepEqual(await store.claimCallbacks(now, 60_000, 100), [], 'leased deliveries are not claimable again');
    });

    test('deleting a scan reports the samples nothing else references', async () => {
      const shared = sha('shared' + name);
      const own = sha('own' + name);
      const a = await store.insertScan(newScan({ blob_sha256: shared }), { sha256: shared, size: 1 });
      await store.insertScan(newScan({ blob_sha256: shared }), { sha256: shared, size: 1 });
      const c = await store.insertScan(newScan({ blob_sha256: own }), { sha256: own, size: 1 });
      assert.deepEqual(await store.deleteScanTree(a.id), [], 'still referenced by another scan');
      assert.deepEqual(await store.deleteScanTree(c.id), [own]);
      assert.equal(await store.getScan(c.id), undefined);
    });

    test('a shared key is generated once, whoever asks first', async () => {
      const keyName = `k-${crypto.randomBytes(3).toString('hex')}`;
      const values = await Promise.all(Array.from({ length: 5 }, (_, i) => store.serviceKey(keyName, () => `value-${i}`)));
      assert.equal(new Set(values).size, 1);
      assert.equal(await store.serviceKey(keyName, () => 'later'), values[0]);
    });

    test('unfinished scans older than a moment are found for re-queueing, finished ones are not', async () => {
      const old = await store.insertScan(newScan({ created_at: Date.now() - 600_000 }));
      const fresh = await store.insertScan(newScan());
      const done = await store.insertScan(newScan({ created_at: Date.now() - 600_000, status: 'done' }));
      const stale = await store.staleUnfinishedRootScans(Date.now() - 60_000, 1000);
      assert.ok(stale.includes(old.id));
      assert.ok(!stale.includes(fresh.id));
      assert.ok(!stale.includes(done.id));
    });
  });
}
