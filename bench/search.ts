/**
 * Scan-search benchmark: loads SCANS (default 1,000,000) scans into a fresh SQLite file through
 * the real schema and migrations (batched inserts in transactions), then measures p50/p95
 * latency of typical searches, the incidents feed, the SIEM export and paging to the end,
 * calling SearchService directly. Prints a table and appends it, with the machine, to
 * docs/benchmarks.md.
 *
 *   node --import tsx bench/search.ts            # 1,000,000 scans
 *   SCANS=100000 NO_RECORD=1 node --import tsx bench/search.ts   # a quick look, not recorded
 *   SEARCH_DB=postgres npm run bench:search      # the same in a scratch PostgreSQL database
 *                                                # (VERDICT_TEST_POSTGRES_URL, as the tests)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execSync } from 'node:child_process';
import { sql } from 'kysely';
import { openPostgres, openSqlite, type OpenDatabase } from '../src/store/database.ts';
import { createScratchDatabase } from '../test/services.ts';
import { Store } from '../src/store/store.ts';
import type { NewEvidence, NewScan } from '../src/store/schema.ts';
import { SearchService, type SearchQuery } from '../src/service/search-service.ts';
import type { Principal } from '../src/service/scan-service.ts';

const TOTAL = Number(process.env.SCANS ?? 1_000_000);
const ROUNDS = Number(process.env.ROUNDS ?? 30);
const CHILD_SHARE = 0.15; // share of rows that are children (archive members, attachments)
const DAYS = 90;

// deterministic pseudo-random numbers, so runs are comparable
let seed = 42;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
const hex = (n: number) => crypto.randomBytes(n).toString('hex');

const VERDICTS: [string, number][] = [['CLN', 0.85], ['SPM', 0.06], ['LSP', 0.02], ['SUS', 0.03], ['MAL', 0.03], ['BLK', 0.01]];
const verdict = () => {
  let r = rnd();
  for (const [v, p] of VERDICTS) if ((r -= p) < 0) return v;
  return 'CLN';
};
const CHANNELS = ['api', 'email', 'email', 'email', 's3', 'analyze'];
const SENDER_DOMAINS = Array.from({ length: 500 }, (_, i) => `sender${i}.example`);
const SENDERS = Array.from({ length: 5000 }, (_, i) => `user${i}@${SENDER_DOMAINS[i % SENDER_DOMAINS.length]}`);
const TYPES: [string, string][] = [['pdf', 'application/pdf'], ['zip', 'application/zip'], ['docx', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'], ['text', 'text/plain'], ['exe', 'application/x-dosexec'], ['html', 'text/html']];

/** Every column a bench row sets, so multi-row inserts name the same columns (SQLite has no DEFAULT in VALUES). */
const BLANK = {
  relation: null, score: 0, started_at: null, self_finished_at: null, verdict_changed_at: null, blob_sha256: null,
  engines: '[]', layers: '[]', decisions: '[]', sample_from: null, sender_domain: null, subject: null, message_id: null,
  sample_to: null, receiver_domain: null, verbose_action: null,
};

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  // KEEP_DB=<file>: load once into that file and reuse it on later runs (for tuning)
  const keep = process.env.KEEP_DB;
  const dir = keep ? path.dirname(keep) : fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-search-'));
  const file = keep ?? path.join(dir, 'verdict.db');
  const postgres = process.env.SEARCH_DB === 'postgres';
  const reuse = !postgres && keep !== undefined && fs.existsSync(keep);
  const scratch = postgres ? await createScratchDatabase() : undefined;
  const opened: OpenDatabase = scratch ? await openPostgres({ url: scratch.url }) : await openSqlite({ file, synchronous: 'NORMAL' });
  const { db } = opened;
  const close = async () => {
    await opened.close();
    await scratch?.drop();
  };
  const store = new Store(db);
  const root = (await store.getOrgByName('bench-root')) ?? (await store.createOrg('bench-root'));
  const orgs = [root.id];
  for (let i = 0; i < 4; i++) orgs.push(((await store.getOrgByName(`bench-child-${i}`)) ?? (await store.createOrg(`bench-child-${i}`, root.id))).id);

  // --- load ---------------------------------------------------------------------------------
  // a large page cache while loading (random sha256 keys touch every index page); the
  // measurements below run with the application's default cache
  if (!postgres) await sql`pragma cache_size = -524288`.execute(db);
  const t0 = performance.now();
  const start = Date.now() - DAYS * 86_400_000;
  const step = (DAYS * 86_400_000) / TOTAL;
  const childShas: string[] = [];
  const usedSenders: string[] = [];
  let id = 0;
  let lastRoot = { id: 0, org: orgs[0], channel: 'api' };
  const BATCH = 400;
  const PER_TX = 25;
  let scans: NewScan[] = [];
  let evidence: NewEvidence[] = [];
  let pending: { scans: NewScan[]; evidence: NewEvidence[] }[] = [];
  const flush = async (force = false) => {
    if (scans.length >= BATCH || (force && scans.length > 0)) {
      pending.push({ scans, evidence });
      scans = [];
      evidence = [];
    }
    if (pending.length >= PER_TX || (force && pending.length > 0)) {
      const work = pending;
      pending = [];
      await db.transaction().execute(async (trx) => {
        for (const b of work) {
          await trx.insertInto('scans').values(b.scans).execute();
          if (b.evidence.length) await trx.insertInto('evidence').values(b.evidence).execute();
        }
      });
    }
  };
  if (reuse) {
    id = TOTAL;
    const some = await db.selectFrom('scans').select(['sha256', 'parent_id', 'sample_from']).where('id', '<=', 50_000).execute();
    for (const r of some) {
      if (r.parent_id !== null) childShas.push(r.sha256!);
      else if (r.sample_from) usedSenders.push(r.sample_from);
    }
  }
  while (id < TOTAL) {
    id++;
    const created = Math.floor(start + id * step);
    const isChild = id > 1 && rnd() < CHILD_SHARE;
    const [type, mime] = pick(TYPES);
    const sha = hex(32);
    const v = verdict();
    if (isChild) {
      if (childShas.length < 10_000 && rnd() < 0.1) childShas.push(sha);
      scans.push({
        ...BLANK, id, org_id: lastRoot.org, parent_id: lastRoot.id, root_id: lastRoot.id, depth: 1, kind: 'file', channel: lastRoot.channel, relation: 'attachment',
        name: `attachment-${id}.${type}`, status: 'done', verdict: v, sub_verdict: v, own_verdict: v, confidence: 'HIGH', created_at: created,
        finished_at: created + 500, sha256: sha, md5: hex(16), sha1: hex(20), size: 1000 + Math.floor(rnd() * 1e6), file_type: type, mime,
      } as NewScan);
    } else {
      const org = pick(orgs);
      const channel = pick(CHANNELS);
      const email = channel === 'email';
      const sender = email ? pick(SENDERS) : null;
      if (sender && usedSenders.length < 10_000 && rnd() < 0.05) usedSenders.push(sender);
      scans.push({
        ...BLANK, id, org_id: org, parent_id: null, root_id: null, depth: 0, kind: 'file', channel, name: email ? `message-${id}.eml` : `upload-${id}.${type}`,
        status: 'done', verdict: v, sub_verdict: v, own_verdict: v, confidence: 'HIGH', score: v === 'CLN' ? 0 : 500, created_at: created, started_at: created + 10,
        finished_at: created + 800, self_finished_at: created + 400, verdict_changed_at: created + 800, sha256: sha, md5: hex(16), sha1: hex(20),
        size: 1000 + Math.floor(rnd() * 1e6), file_type: email ? 'eml' : type, mime: email ? 'message/rfc822' : mime, blob_sha256: sha,
        engines: '[{"name":"yara","layer":"signatures","status":"ok","ms":3,"findings":0}]', layers: '["signatures","static"]', decisions: '[]',
        sample_from: sender, sender_domain: sender ? sender.split('@')[1] : null, subject: email ? `Subject ${id % 997}` : null,
        message_id: email ? `<${id}@mail.example>` : null, sample_to: email ? `rcpt${id % 300}@corp.example` : null, receiver_domain: email ? 'corp.example' : null,
        verbose_action: email ? (v === 'CLN' ? 'delivered' : 'quarantine') : null,
      } as NewScan);
      if (v !== 'CLN') {
        evidence.push({ scan_id: id, root_id: id, heuristic: 'YARA_MATCH', name: 'YARA rule', category: 'signatures', scanner: 'yara', layer: 'signatures', description: '', details: null, score: 500, verdict: v, attack: null, data: '{"rule":"bench"}', created_at: created + 400 });
      }
      lastRoot = { id, org, channel };
    }
    await flush();
    if (id % 100_000 === 0) process.stderr.write(`loaded ${id} scans (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
  }
  await flush(true);
  const loadS = (performance.now() - t0) / 1000;
  let dbBytes: number;
  if (postgres) {
    // what autovacuum does after a bulk load: statistics for the planner, and the visibility map
    // that lets index-only scans skip the table
    await sql`vacuum analyze`.execute(db);
    dbBytes = Number((await sql<{ n: string }>`select pg_database_size(current_database()) as n`.execute(db)).rows[0].n);
  } else dbBytes = fs.statSync(file).size + (fs.existsSync(file + '-wal') ? fs.statSync(file + '-wal').size : 0);

  // --- measure ------------------------------------------------------------------------------
  if (!postgres) await sql`pragma cache_size = -2000`.execute(db);
  const search = new SearchService(store, { countLimit: Number(process.env.COUNT_LIMIT ?? 1_000), incidentsHoldbackMs: 900_000, siemDelayMs: 0 });
  const all: Principal = { tokenId: 1, orgId: root.id, orgIds: orgs, role: 'Administrator' };
  const one: Principal = { tokenId: 2, orgId: orgs[1], orgIds: [orgs[1]], role: 'Administrator' };
  const now = Date.now();
  const rows: { name: string; p50: number; p95: number; note: string }[] = [];
  const measure = async (name: string, run: (i: number) => Promise<{ rows: unknown[]; count: number }>) => {
    const times: number[] = [];
    let note = '';
    await run(0); // warm the page cache and statement cache
    for (let i = 0; i < ROUNDS; i++) {
      const t = performance.now();
      const r = await run(i);
      times.push(performance.now() - t);
      if (i === 0) note = `${r.rows.length} rows, count ${r.count}`;
    }
    times.sort((a, b) => a - b);
    rows.push({ name, p50: percentile(times, 50), p95: percentile(times, 95), note });
  };
  const q = (extra: Partial<SearchQuery>): SearchQuery => ({ limit: 100, ...extra });
  await measure('no filter, first page (parent: 1M scans)', () => search.search(all, q({})));
  await measure('verdict MAL (parent)', () => search.search(all, q({ verdicts: ['MAL'] })));
  await measure('verdict BLK, rare (parent)', () => search.search(all, q({ verdicts: ['BLK'] })));
  await measure('verdict MAL (one child org)', () => search.search(one, q({ verdicts: ['MAL'] })));
  await measure('channel email + last 7 days (parent)', () => search.search(all, q({ channels: ['email'], createdFrom: now - 7 * 86_400_000, createdTo: now })));
  await measure('channel s3 + one day 30 days ago (parent)', () => search.search(all, q({ channels: ['s3'], createdFrom: now - 31 * 86_400_000, createdTo: now - 30 * 86_400_000 })));
  await measure('descendant sha256 (parent)', (i) => search.search(all, q({ descendants: { sha256: [childShas[i % childShas.length]] } })));
  await measure('sender address (parent)', (i) => search.search(all, q({ senders: [usedSenders[i % usedSenders.length]] })));
  await measure('descendant sender domain + verdict SPM (parent)', (i) => search.search(all, q({ descendants: { senderDomain: [usedSenders[i % usedSenders.length].split('@')[1]] }, verdicts: ['SPM'] })));
  await measure('incidents MAL/BLK/SPM from cursor 0', () => search.incidents(all, { verdicts: ['MAL', 'BLK', 'SPM'], afterId: 0, limit: 20 }));
  await measure('SIEM from 30 days ago', () => search.siem(all, { afterMs: now - 30 * 86_400_000, limit: 100 }));

  // paging to the end: every page of one filter
  const pageTimes: number[] = [];
  let pages = 0;
  let seen = 0;
  const tp = performance.now();
  let beforeId: number | undefined;
  for (;;) {
    const t = performance.now();
    const r = await search.search(one, q({ verdicts: ['MAL', 'BLK'], beforeId }));
    pageTimes.push(performance.now() - t);
    pages++;
    seen += r.rows.length;
    if (!r.hasMore) break;
    beforeId = r.rows[r.rows.length - 1].id;
  }
  const walkS = (performance.now() - tp) / 1000;
  pageTimes.sort((a, b) => a - b);
  rows.push({ name: 'paging to the end: MAL+BLK of one org, 100/page', p50: percentile(pageTimes, 50), p95: percentile(pageTimes, 95), note: `${pages} pages, ${seen} rows, ${walkS.toFixed(1)} s in all` });

  const incTimes: number[] = [];
  let afterId = 0;
  let incPages = 0;
  let incRows = 0;
  const ti = performance.now();
  for (;;) {
    const t = performance.now();
    const r = await search.incidents(all, { verdicts: ['MAL', 'BLK'], afterId, limit: 20 });
    incTimes.push(performance.now() - t);
    incPages++;
    incRows += r.rows.length;
    if (r.rows.length === 0 || incPages >= 2000) break;
    afterId = r.rows[r.rows.length - 1].id;
  }
  incTimes.sort((a, b) => a - b);
  rows.push({ name: 'incidents walk (MAL+BLK, 20/page, first 2000 pages)', p50: percentile(incTimes, 50), p95: percentile(incTimes, 95), note: `${incPages} pages, ${incRows} rows, ${((performance.now() - ti) / 1000).toFixed(1)} s in all` });

  const pgVersion = postgres ? (await sql<{ server_version: string }>`show server_version`.execute(db)).rows[0].server_version : '';
  await close();
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });

  // --- report -------------------------------------------------------------------------------
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.+)/) ?? [])[1] ?? os.cpus()[0]?.model ?? 'unknown';
  let nproc = String(os.availableParallelism());
  try {
    nproc = execSync('nproc').toString().trim();
  } catch {
    /* keep Node's count */
  }
  const machine = `${nproc} CPUs (${cpu.trim()}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`;
  const ok = (ms: number) => (ms < 100 ? '' : ' ⚠');
  const table = [
    '| query | p50 ms | p95 ms | note |',
    '| --- | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.name} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)}${ok(r.p95)} | ${r.note} |`),
  ].join('\n');
  const section = [
    `## Scan search, ${TOTAL.toLocaleString('en-US')} scans${postgres ? ', PostgreSQL' : ''} (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
    '',
    `Machine: ${machine}.${postgres ? ` PostgreSQL ${pgVersion} on the same machine (default configuration), through the application's pool.` : ''}`,
    `Loaded in ${loadS.toFixed(0)} s (${Math.round(TOTAL / loadS).toLocaleString('en-US')} rows/s, batches of ${BATCH} rows, ${PER_TX} per transaction); database ${(dbBytes / 1024 ** 2).toFixed(0)} MiB.`,
    `${Math.round(TOTAL * (1 - CHILD_SHARE)).toLocaleString('en-US')} root scans in 5 organizations (a parent and 4 children), ~15% children; ${ROUNDS} rounds per query after one warm-up; SearchService called directly; target p95 < 100 ms (⚠ marks a query above it).`,
    '',
    table,
    '',
  ].join('\n');
  console.log('\n' + section);
  if (process.env.NO_RECORD) return;
  const docs = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'docs', 'benchmarks.md');
  if (!fs.existsSync(docs)) fs.writeFileSync(docs, '# Benchmarks\n\nResults of the scripts in `bench/`, appended by each run with the machine they ran on.\n\n');
  fs.appendFileSync(docs, section + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
