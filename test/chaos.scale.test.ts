/**
 * Scale mode under failure, with real processes: one `verdict serve --no-workers` and two
 * `verdict worker` processes on PostgreSQL, BullMQ/Redis and S3. One worker is SIGKILLed while
 * scans are in flight; every accepted scan must still finish exactly once with the right
 * verdict, and every callback must arrive. Then Redis itself is restarted empty: accepted scans
 * whose jobs it lost are queued again from the database and finish.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { createScratchDatabase, REDIS_URL } from './services.ts';
import { startS3, type RunningS3 } from './s3rver.ts';
import { freePort, startSink } from './harness.ts';
import { createVerdict } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { eicar } from '../src/scanners/testing.ts';

const root = path.resolve(import.meta.dirname, '..');
const ADMIN = 'chaos-admin-token-' + crypto.randomBytes(8).toString('hex');


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, cond: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

let db: { url: string; drop(): Promise<void> };
let s3: RunningS3;
const procs: ChildProcess[] = [];

before(async () => {
  db = await createScratchDatabase();
  s3 = await startS3(['chaos']);
});
after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await s3?.close();
  await db?.drop();
});

function scaleEnv(prefix: string, redisUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...(process.env as Record<string, string>),
    VERDICT_DATABASE_URL: db.url,
    VERDICT_DATABASE_POOL_SIZE: '4',
    VERDICT_QUEUE: 'bullmq',
    VERDICT_REDIS_URL: redisUrl,
    VERDICT_REDIS_PREFIX: prefix,
    VERDICT_STORAGES: JSON.stringify({ samples: s3.storage('chaos', `${prefix}/`) }),
    VERDICT_BLOB_STORAGE: 'samples',
    VERDICT_CLAMD: 'off',
    VERDICT_RENDER: 'off',
    VERDICT_ADMIN_TOKEN: ADMIN,
    VERDICT_MAX_REQUESTS_PER_MINUTE: '0',
    VERDICT_EGRESS_ALLOW: '127.0.0.0/8',
    VERDICT_JOB_LEASE_MS: '3000',
    VERDICT_CALLBACK_RETRY_BASE_MS: '200',
    // a delivery claimed by the killed worker is retried when its lease (3 × this) expires
    VERDICT_CALLBACK_TIMEOUT_MS: '2000',
    VERDICT_LOG_LEVEL: 'warn',
    ...extra,
  };
}

function startProcess(args: string[], env: Record<string, string>): ChildProcess {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-chaos-'));
  const p = spawn(process.execPath, ['bin/verdict.js', ...args], { cwd: root, env: { ...env, VERDICT_DATA_DIR: dataDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  p.on('exit', () => fs.rmSync(dataDir, { recursive: true, force: true }));
  (p as ChildProcess & { errText: () => string }).errText = () => err;
  procs.push(p);
  return p;
}

async function waitHttp(url: string, timeoutMs = 60_000): Promise<void> {
  await waitUntil(`${url} to answer`, async () => {
    try {
      return (await fetch(url)).status === 200;
    } catch {
      return false;
    }
  }, timeoutMs);
}

test('500 scans, two workers, one SIGKILLed mid-way: every scan finishes once, right verdicts, every callback arrives', { timeout: 240_000 }, async () => {
  const prefix = `chaos-${crypto.randomBytes(4).toString('hex')}`;
  const env = scaleEnv(prefix, REDIS_URL);
  const apiPort = await freePort();
  const [w1Port, w2Port] = [await freePort(), await freePort()];
  const api = startProcess(['serve', '--no-workers', '--port', String(apiPort)], env);
  await waitHttp(`http://127.0.0.1:${apiPort}/healthz`);
  const w1 = startProcess(['worker', '--port', String(w1Port), '--concurrency', '2'], env);
  const w2 = startProcess(['worker', '--port', String(w2Port), '--concurrency', '2'], env);
  await waitHttp(`http://127.0.0.1:${w1Port}/readyz`);
  await waitHttp(`http://127.0.0.1:${w2Port}/readyz`);
  // a worker answers health and readiness only: the API dialects live in the serve process
  assert.equal((await fetch(`http://127.0.0.1:${w1Port}/api/v1/scans/list/1/`)).status, 404);
  const ready = (await (await fetch(`http://127.0.0.1:${w1Port}/readyz`)).json()) as { ready: boolean; workers: number };
  assert.deepEqual([ready.ready, ready.workers], [true, 2]);

  const sink = await startSink();
  const base = `http://127.0.0.1:${apiPort}`;
  const expected = new Map<number, string>();
  const N = 500;
  let next = 0;
  let killedAt = -1;
  const submitOne = async (i: number) => {
    const bad = i % 10 === 0;
    const form = new FormData();
    form.set('name', bad ? `e${i}.com` : `n${i}.txt`);
    form.set('callback_url', `${sink.url}/cb`);
    form.set('data', new Blob([bad ? eicar() : Buffer.from(`ordinary note ${i} ${crypto.randomUUID()}`)]), `f${i}`);
    const res = await fetch(`${base}/api/v1/files/`, { method: 'POST', headers: { authorization: `Token ${ADMIN}` }, body: form }).catch((e: Error) => {
      const why = (e.cause as Error | undefined)?.message ?? e.message;
      throw new Error(`submission ${i} failed: ${why}; API exit code ${api.exitCode}; API stderr: ${(api as ChildProcess & { errText: () => string }).errText().slice(-1500)}`);
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    expected.set(JSON.parse(text).scan_id, bad ? 'MAL' : 'CLN');
  };
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < N) {
        const i = next++;
        await submitOne(i);
        if (killedAt < 0 && sink.received.length >= 150) {
          killedAt = sink.received.length;
          w1.kill('SIGKILL');
        }
      }
    }),
  );
  assert.equal(expected.size, N);
  if (killedAt < 0) {
    // the workers were slower than the submissions: kill now, with the backlog in flight
    await waitUntil('150 callbacks', () => sink.received.length >= 150, 120_000);
    killedAt = sink.received.length;
    w1.kill('SIGKILL');
  }
  assert.ok(killedAt < N, 'the worker was killed before the work was done');

  const ids = () => new Set(sink.received.map((r) => JSON.parse(r.body.toString()).scan_id as number));
  await waitUntil(`callbacks of all ${N} scans (so far ${ids().size}; survivor: ${(w2 as any).errText()})`, () => ids().size >= N, 180_000);

  // right verdicts
  for (const [id, verdict] of expected) {
    const res = await fetch(`${base}/api/v1/scans/list/${id}/`, { headers: { authorization: `Token ${ADMIN}` } });
    const body = (await res.json()) as { status: string; verdict: string };
    assert.equal(body.status, 'CMP', `scan ${id}`);
    assert.equal(body.verdict, verdict, `scan ${id}`);
  }
  // exactly once: one finished result and one callback row per scan in the database
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    const dup = await c.query('select scan_id, count(*) from callbacks group by scan_id having count(*) <> 1');
    assert.deepEqual(dup.rows, [], 'no scan finished twice');
    // at least once: a callback the killed worker sent but had not yet marked is sent again
    const delivered = async () => (await c.query("select count(*)::int as n from callbacks where state = 'delivered'")).rows[0].n as number;
    await waitUntil('every callback row marked delivered', async () => (await delivered()) >= N, 60_000).catch(() => {});
    assert.equal(await delivered(), N, 'every callback delivered');
    const done = await c.query("select count(*)::int as n from scans where parent_id is null and status = 'done'");
    assert.equal(done.rows[0].n, N);
  } finally {
    await c.end();
  }
  assert.equal(ids().size, N);
  assert.ok([...ids()].every((id) => expected.has(id)));

  // graceful stop hands back or finishes in-flight work and exits cleanly
  w2.kill('SIGTERM');
  api.kill('SIGTERM');
  const codes = await Promise.all([w2, api].map((p) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))))));
  assert.deepEqual(codes, [0, 0]);
  await sink.close();
});

test('Redis restarted empty: accepted scans whose jobs it lost are queued again from the database and finish', { timeout: 120_000 }, async () => {
  const port = await freePort();
  const startRedis = () => {
    const r = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    procs.push(r);
    return r;
  };
  let redis = startRedis();
  const redisUrl = `redis://127.0.0.1:${port}/0`;
  await sleep(300);
  const prefix = `chaos-r-${crypto.randomBytes(4).toString('hex')}`;
  const env = scaleEnv(prefix, redisUrl, { VERDICT_REQUEUE_SWEEP_MS: '1500' });
  const apiPort = await freePort();
  const api = startProcess(['serve', '--no-workers', '--port', String(apiPort)], env);
  const base = `http://127.0.0.1:${apiPort}`;
  await waitHttp(`${base}/healthz`);
  const submit = async (i: number) => {
    const form = new FormData();
    form.set('name', `r${i}.txt`);
    form.set('data', new Blob([Buffer.from(`accepted before the restart ${i} ${crypto.randomUUID()}`)]), `r${i}.txt`);
    const res = await fetch(`${base}/api/v1/files/`, { method: 'POST', headers: { authorization: `Token ${ADMIN}` }, body: form }).catch((e: Error) => {
      const why = (e.cause as Error | undefined)?.message ?? e.message;
      throw new Error(`submission ${i} failed: ${why}; API exit code ${api.exitCode}; API stderr: ${(api as ChildProcess & { errText: () => string }).errText().slice(-1500)}`);
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { scan_id: number }).scan_id;
  };
  // accepted while no worker runs: their jobs sit in Redis only
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) ids.push(await submit(i));
  redis.kill('SIGKILL');
  await new Promise((r) => redis.once('exit', r));
  redis = startRedis(); // empty: the jobs are gone
  await sleep(500);
  // a submission during and after the outage still works (the client reconnects)
  ids.push(await submit(10));
  const worker = startProcess(['worker', '--port', String(await freePort()), '--concurrency', '2'], env);
  const detail = async (id: number) => (await (await fetch(`${base}/api/v1/scans/list/${id}/`, { headers: { authorization: `Token ${ADMIN}` } })).json()) as { status: string; verdict: string };
  await waitUntil('all scans accepted before the restart to finish', async () => {
    for (const id of ids) if ((await detail(id)).status !== 'CMP') return false;
    return true;
  }, 60_000);
  for (const id of ids) assert.equal((await detail(id)).verdict, 'CLN');
  worker.kill('SIGTERM');
  api.kill('SIGTERM');
  redis.kill('SIGTERM');
});

// in-process check of the same wiring, so a failure names the component rather than a process
test('createVerdict in scale mode reports its database and queue in the readiness check', async () => {
  const prefix = `chaos-h-${crypto.randomBytes(4).toString('hex')}`;
  const scratch = await createScratchDatabase();
  const config = loadConfig({ port: 0, dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-chaos-h-')), databaseUrl: scratch.url, queue: 'bullmq', redisUrl: REDIS_URL, redisPrefix: prefix, clamd: 'off', render: 'off', logLevel: 'silent' } as never, {});
  const v = await createVerdict(config, { log: pino({ level: 'silent' }), workers: true, api: false });
  try {
    const url = await v.listen();
    const r = (await (await fetch(`${url}/readyz`)).json()) as { ready: boolean; database: string };
    assert.equal(r.ready, true);
    assert.equal(r.database, 'on');
  } finally {
    await v.close(1000);
    await scratch.drop();
  }
});
