/**
 * Integration-test harness: a real Verdict on an ephemeral loopback port with its own data
 * directory, the real engines (a managed clamd when Debian's clamd is installed), and helpers
 * to call the X-Ray API as a client would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import pino from 'pino';
import tar from 'tar-stream';
import zlib from 'node:zlib';
import { createVerdict, type Verdict } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import type { ConfigInput } from '../src/config/schema.ts';
import crypto from 'node:crypto';
import { Redis } from 'ioredis';
import { createScratchDatabase, REDIS_URL } from './services.ts';
import { startS3, type RunningS3 } from './s3rver.ts';


export interface Running {
  verdict: Verdict;
  url: string;
  token: string;
  dataDir: string;
  /** Environment for a `verdict` CLI process working on this instance's data. */
  cliEnv: Record<string, string>;
  api(method: string, p: string, init?: { body?: RequestInit['body']; headers?: Record<string, string>; token?: string | null; json?: unknown }): Promise<Response>;
  submitFile(data: Buffer, name: string, fields?: Record<string, string>, token?: string): Promise<number>;
  waitForScan(id: number, token?: string, timeoutMs?: number): Promise<Record<string, any>>;
  close(): Promise<void>;
}

/** `VERDICT_TEST_SCALE=1` runs the integration tests on PostgreSQL, BullMQ/Redis and S3. */
export const SCALE_MODE = process.env.VERDICT_TEST_SCALE === '1';

export async function startVerdict(overrides: ConfigInput = {}): Promise<Running> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-it-'));
  const scale = SCALE_MODE ? await scaleBackends(overrides) : undefined;
  const config = loadConfig(
    { port: 0, host: '127.0.0.1', dataDir, egressAllow: ['127.0.0.0/8', '::1/128'], workers: 2, callbackRetryBaseMs: 200, maxRequestsPerMinute: 0, logLevel: 'silent', ...overrides, ...scale?.config },
    {},
  );
  const verdict = await createVerdict(config, { log: pino({ level: process.env.TEST_LOG ?? 'silent' }) });
  const url = await verdict.listen();
  const token = verdict.firstToken!;
  const api: Running['api'] = async (method, p, init = {}) => {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    const tok = init.token === undefined ? token : init.token;
    if (tok) headers.authorization = `Token ${tok}`;
    let body = init.body;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers['content-type'] = 'application/json';
    }
    return fetch(url + p, { method, headers, body });
  };
  const submitFile: Running['submitFile'] = async (data, name, fields = {}, tok) => {
    const form = new FormData();
    form.set('name', name);
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    form.set('data', new Blob([data]), name);
    const res = await api('POST', '/api/v1/files/', { body: form, token: tok });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`submit answered ${res.status}: ${text}`);
    return JSON.parse(text).scan_id;
  };
  const waitForScan: Running['waitForScan'] = async (id, tok, timeoutMs = 30_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const res = await api('GET', `/api/v1/scans/list/${id}/`, { token: tok });
      const body = (await res.json()) as Record<string, any>;
      if (res.status !== 200) throw new Error(`detail answered ${res.status}: ${JSON.stringify(body)}`);
      if (body.status === 'CMP' || body.status === 'ERR') return body;
      if (Date.now() > until) throw new Error(`scan ${id} not finished after ${timeoutMs} ms (status ${body.status})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return {
    verdict,
    url,
    token,
    dataDir,
    cliEnv: {
      VERDICT_DATA_DIR: dataDir,
      ...(config.databaseUrl ? { VERDICT_DATABASE_URL: config.databaseUrl } : {}),
      ...(config.redisUrl ? { VERDICT_REDIS_URL: config.redisUrl, VERDICT_REDIS_PREFIX: config.redisPrefix, VERDICT_QUEUE: config.queue } : {}),
    },
    api,
    submitFile,
    waitForScan,
    async close() {
      await verdict.close(2000);
      await scale?.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let sharedS3: Promise<RunningS3> | undefined;

/** A scratch PostgreSQL database, a Redis key prefix and an S3 prefix of their own for one instance. */
async function scaleBackends(overrides: ConfigInput): Promise<{ config: ConfigInput; drop(): Promise<void> }> {
  const db = await createScratchDatabase();
  sharedS3 ??= startS3(['verdict-samples'], { unref: true });
  const s3 = await sharedS3;
  const id = crypto.randomBytes(5).toString('hex');
  const prefix = `vt-${id}`;
  return {
    config: {
      databaseUrl: db.url,
      databasePoolSize: 4,
      queue: 'bullmq',
      redisUrl: REDIS_URL,
      redisPrefix: prefix,
      storages: { ...(overrides.storages ?? {}), 'scale-samples': s3.storage('verdict-samples', `${id}/`) },
      blobStorage: overrides.blobStorage ?? 'scale-samples',
    },
    async drop() {
      await db.drop();
      const redis = new Redis(REDIS_URL);
      try {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
          cursor = next;
          if (keys.length) await redis.del(...keys);
        } while (cursor !== '0');
      } finally {
        redis.disconnect();
      }
    },
  };
}

export { makeZip } from '../src/scanners/testing.ts';

/** A TCP port free on loopback right now (for servers a test starts as separate processes). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function makeTarGz(entries: Record<string, Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, data] of Object.entries(entries)) pack.entry({ name, size: data.length }, data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return zlib.gzipSync(Buffer.concat(chunks));
}

/** A loopback HTTP server for callbacks and downloads; records what it receives. */
export async function startSink(handler?: (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void) {
  const received: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  const waiters: (() => void)[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    waiters.splice(0).forEach((w) => w());
    if (handler) handler(req, body, res);
    else res.end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async waitFor(n: number, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > until) throw new Error(`expected ${n} requests, got ${received.length}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
      return received;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
