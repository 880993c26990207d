/**
 * Scale-mode throughput: one `verdict serve --no-workers` and 1, then 2, `verdict worker`
 * processes on PostgreSQL, BullMQ/Redis and S3 (s3rver) on loopback. The same SCANS small files
 * (1–16 KB, one in ten EICAR) are submitted up front, then the time until all are finished is
 * measured; the result is scans/s and the 2-worker/1-worker ratio, measured in the same run.
 * Built-in engines only (clamd off) unless CLAMD=1: this measures the pipeline, not ClamAV.
 *
 *   npm run bench:workers                 # 2,000 scans per round
 *   SCANS=500 NO_RECORD=1 npm run bench:workers
 */
import { spawn, execSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startS3 } from '../test/s3rver.ts';
import { POSTGRES_ADMIN_URL, REDIS_URL } from '../test/services.ts';
import { freePort, waitHttp } from './lib.ts';

const SCANS = Number(process.env.SCANS ?? 2000);
const CONCURRENCY = Number(process.env.WORKER_CONCURRENCY ?? os.availableParallelism());
const root = path.resolve(import.meta.dirname, '..');
const ADMIN = 'bench-admin-token-' + crypto.randomBytes(8).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


async function admin(q: string): Promise<void> {
  const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await c.connect();
  try {
    await c.query(q);
  } finally {
    await c.end();
  }
}

interface Round {
  workers: number;
  seconds: number;
  perSecond: number;
  submitPerSecond: number;
}

async function round(workers: number): Promise<Round> {
  const dbName = `verdict_bench_${crypto.randomBytes(4).toString('hex')}`;
  await admin(`create database ${dbName}`);
  const dbUrl = new URL(POSTGRES_ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const s3 = await startS3(['bench']);
  const prefix = `bench-${crypto.randomBytes(4).toString('hex')}`;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    VERDICT_DATABASE_URL: dbUrl.toString(),
    VERDICT_QUEUE: 'bullmq',
    VERDICT_REDIS_URL: REDIS_URL,
    VERDICT_REDIS_PREFIX: prefix,
    VERDICT_STORAGES: JSON.stringify({ samples: s3.storage('bench', `${prefix}/`) }),
    VERDICT_BLOB_STORAGE: 'samples',
    VERDICT_CLAMD: process.env.CLAMD === '1' ? 'auto' : 'off',
    VERDICT_RENDER: 'off',
    VERDICT_ADMIN_TOKEN: ADMIN,
    VERDICT_MAX_REQUESTS_PER_MINUTE: '0',
    VERDICT_EGRESS_ALLOW: '127.0.0.0/8', // the S3 server is on loopback
    VERDICT_LOG_LEVEL: 'warn',
  };
  const procs: ChildProcess[] = [];
  const dirs: string[] = [];
  const start = (args: string[]) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-'));
    dirs.push(dataDir);
    const p = spawn(process.execPath, ['bin/verdict.js', ...args], { cwd: root, env: { ...env, VERDICT_DATA_DIR: dataDir }, stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(p);
    return p;
  };
  try {
    const apiPort = await freePort();
    start(['serve', '--no-workers', '--port', String(apiPort)]);
    const base = `http://127.0.0.1:${apiPort}`;
    await waitHttp(`${base}/healthz`);
    // submit everything first: the workers then drain a full queue, which is what is measured
    const ids: number[] = [];
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < SCANS) {
          const i = next++;
          const bad = i % 10 === 0;
          const body = bad ? Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*') : crypto.randomBytes(1024 * (1 + (i % 16)));
          const form = new FormData();
          form.set('name', bad ? `e${i}.com` : `f${i}.bin`);
          form.set('data', new Blob([body]), `f${i}`);
          const res = await fetch(`${base}/api/v1/files/`, { method: 'POST', headers: { authorization: `Token ${ADMIN}` }, body: form });
          if (res.status !== 200) throw new Error(`submit: ${res.status} ${await res.text()}`);
          ids.push(((await res.json()) as { scan_id: number }).scan_id);
        }
      }),
    );
    const submitSeconds = (performance.now() - t0) / 1000;
    const workerPorts = [];
    for (let w = 0; w < workers; w++) workerPorts.push(await freePort());
    // workers are started and ready before the clock starts (engine start-up is not throughput)
    const c = new pg.Client({ connectionString: dbUrl.toString() });
    await c.connect();
    const started = performance.now();
    for (const port of workerPorts) start(['worker', '--port', String(port), '--concurrency', String(CONCURRENCY)]);
    for (const port of workerPorts) await waitHttp(`http://127.0.0.1:${port}/readyz`);
    const ready = performance.now();
    for (;;) {
      const r = await c.query("select count(*)::int as n from scans where parent_id is null and status = 'done'");
      if (r.rows[0].n >= SCANS) break;
      await sleep(50);
    }
    const seconds = (performance.now() - ready) / 1000;
    await c.end();
    void started;
    return { workers, seconds, perSecond: SCANS / seconds, submitPerSecond: SCANS / submitSeconds };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', r)))));
    await s3.close();
    await admin(`drop database if exists ${dbName} with (force)`);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }
}

const one = await round(1);
console.log(`1 worker : ${one.perSecond.toFixed(1)} scans/s (${one.seconds.toFixed(1)} s), submissions ${one.submitPerSecond.toFixed(0)}/s`);
const two = await round(2);
console.log(`2 workers: ${two.perSecond.toFixed(1)} scans/s (${two.seconds.toFixed(1)} s), submissions ${two.submitPerSecond.toFixed(0)}/s`);
const ratio = two.perSecond / one.perSecond;
console.log(`ratio 2/1: ${ratio.toFixed(2)}`);

if (!process.env.NO_RECORD) {
  const cpu = execSync("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 || true").toString().trim();
  const machine = `${os.availableParallelism()} CPUs (${cpu}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`;
  const section = [
    `## Scale mode: 1 vs 2 workers (${new Date().toISOString().slice(0, 10)})`,
    '',
    `Machine: ${machine}. PostgreSQL, Redis and s3rver on the same machine; ${SCANS} small files (1–16 KB random, 1 in 10 EICAR) queued first, then drained by \`verdict worker\` processes with concurrency ${CONCURRENCY} each; clamd ${process.env.CLAMD === '1' ? 'on' : 'off'}.`,
    '',
    '| workers | scans/s | seconds | submissions/s (API) |',
    '| --- | --- | --- | --- |',
    `| 1 | ${one.perSecond.toFixed(1)} | ${one.seconds.toFixed(1)} | ${one.submitPerSecond.toFixed(0)} |`,
    `| 2 | ${two.perSecond.toFixed(1)} | ${two.seconds.toFixed(1)} | ${two.submitPerSecond.toFixed(0)} |`,
    '',
    `Ratio 2 workers / 1 worker: **${ratio.toFixed(2)}**.`,
    '',
  ].join('\n');
  fs.appendFileSync(path.join(root, 'docs', 'benchmarks.md'), '\n' + section);
}
