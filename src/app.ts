/**
 * The composition root: config → store → queue → engines and scanners → service → workers,
 * callbacks and the HTTP faces. Nothing else wires parts together.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import type { Config } from './config/schema.ts';
import { openSqlite, type OpenDatabase } from './store/database.ts';
import { Store } from './store/store.ts';
import { LocalBlobStore } from './store/blobs.ts';
import { DbQueue } from './queue/db-queue.ts';
import { WorkerPool } from './queue/worker-pool.ts';
import { Engine } from './engine/engine.ts';
import { initScanners, type ScannerStatus } from './scanners/index.ts';
import { ScanService } from './service/scan-service.ts';
import { ScanRunner } from './service/scan-runner.ts';
import { CallbackDeliverer } from './callbacks/outbox.ts';
import { Metrics } from './ops/metrics.ts';
import { resolveClamd } from './engines/clamd-manager.ts';
import { xrayPlugin, xrayCallbackFormat } from './api/xray/plugin.ts';

export interface VerdictOptions {
  log?: Logger;
  /** Run scan workers in this process (default: when config.workers > 0). */
  workers?: boolean;
}

export interface Verdict {
  config: Config;
  http: FastifyInstance;
  service: ScanService;
  store: Store;
  metrics: Metrics;
  log: Logger;
  /** The administrator token created on this first start (undefined otherwise). */
  firstToken?: string;
  engines(): Record<string, ScannerStatus>;
  health(): Promise<{ hap: 'on' | 'off'; static: 'on' | 'off'; status: 'on' | 'off'; engines: Record<string, unknown> }>;
  /** Listens; resolves with the base URL. */
  listen(): Promise<string>;
  /** Graceful stop: stop accepting, finish or hand back scans, flush callbacks, stop clamd. */
  close(graceMs?: number): Promise<void>;
}

export async function createVerdict(config: Config, opts: VerdictOptions = {}): Promise<Verdict> {
  const log = opts.log ?? pino({ level: config.logLevel });
  fs.mkdirSync(config.dataDir, { recursive: true });
  const tmpRoot = path.join(config.dataDir, 'tmp');
  fs.mkdirSync(tmpRoot, { recursive: true });

  let database: OpenDatabase | undefined;
  let clamd: Awaited<ReturnType<typeof resolveClamd>> | undefined;
  try {
    database = await openSqlite({ file: path.join(config.dataDir, 'verdict.db') });
    const store = new Store(database.db);
    const blobs = new LocalBlobStore(path.join(config.dataDir, 'blobs'));
    const queue = new DbQueue(database.db);
    const metrics = new Metrics();

    clamd = await resolveClamd(config, log);
    if (config.clamdRequired && !clamd.endpoint) throw new Error(`clamd is required but unavailable: ${clamd.status().detail}`);
    const scanners = await initScanners({ config, log, clamd: clamd.endpoint });
    const engine = new Engine(scanners.active, {
      limits: config.limits,
      policy: { scoreSuspicious: config.scoreSuspicious, scoreMalicious: config.scoreMalicious },
      log,
      tmpRoot,
      onRun: (run) => {
        metrics.engineLatency.observe({ engine: run.scanner }, run.ms / 1000);
        if (run.status !== 'ok') metrics.engineFailures.inc({ engine: run.scanner, status: run.status });
      },
    });
    const service = new ScanService({ config, store, blobs, queue, log, metrics });
    const { token: firstToken } = await service.bootstrap();
    const deliverer = new CallbackDeliverer({ config, store, log, metrics });
    const runner = new ScanRunner({ config, store, blobs, engine, log, metrics, formatters: xrayCallbackFormat, onFinished: () => deliverer.notify() });
    const runWorkers = opts.workers ?? config.workers > 0;
    const pool = new WorkerPool({ queue, concurrency: runWorkers ? Math.max(1, config.workers) : 0, leaseMs: config.jobLeaseMs, log, process: (job, signal) => runner.run(job, signal) });

    // Nothing accepted is lost: a scan whose job vanished (crash between the two writes) gets one again.
    for (const s of await store.unfinishedRootScans()) {
      if (!(await queue.has(s.id))) {
        log.warn({ scanId: s.id }, 're-queueing an accepted scan that had no job');
        await queue.enqueue(s.id);
      }
    }

    const engines = (): Record<string, ScannerStatus> => {
      const out: Record<string, ScannerStatus> = { ...scanners.status };
      const c = clamd!.status();
      if (out.clamav) out.clamav = { ...out.clamav, state: c.state === 'on' && out.clamav.state === 'on' ? 'on' : 'off', detail: c.detail, version: c.version };
      else out.clamav = { state: 'off', detail: c.detail };
      return out;
    };

    let accepting = true;
    const health = async () => {
      let dbOk = true;
      try {
        await store.ping();
      } catch {
        dbOk = false;
      }
      const e = engines();
      const on = (b: boolean) => (b ? 'on' : 'off') as 'on' | 'off';
      const stat = Object.entries(e).filter(([n]) => n !== 'clamav');
      return {
        hap: on(e.clamav?.state === 'on'),
        static: on(stat.some(([, s]) => s.state === 'on')),
        status: on(dbOk && accepting),
        database: on(dbOk),
        workers: runWorkers ? config.workers : 0,
        engines: e,
      };
    };

    const http = Fastify({
      loggerInstance: log as unknown as FastifyBaseLogger,
      routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
      bodyLimit: Math.min(Math.ceil(config.limits.maxFileSize * 1.4) + 1024 * 1024, 256 * 1024 * 1024),
      requestIdHeader: 'x-request-id',
      genReqId: () => crypto.randomUUID(),
    });
    http.addHook('onRequest', async (req, reply) => {
      reply.header('x-request-id', req.id);
      if (!accepting) return reply.code(503).header('connection', 'close').send({ detail: 'shutting down' });
    });
    http.addHook('onResponse', async (req, reply) => {
      metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    });
    http.get('/metrics', async (_req, reply) => {
      const q = await queue.stats();
      metrics.queueWaiting.set(q.waiting);
      metrics.queueActive.set(q.active);
      metrics.queueOldest.set(q.oldestWaitingMs / 1000);
      return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
    });
    http.get('/healthz', async () => ({ status: 'ok' }));
    http.get('/readyz', async (_req, reply) => {
      const h = await health();
      const ready = h.status === 'on' && (!config.clamdRequired || h.hap === 'on');
      return reply.code(ready ? 200 : 503).send({ ready, ...h });
    });
    await http.register(xrayPlugin, { service, health, publicUrl: config.publicUrl });

    let closed = false;
    return {
      config,
      http,
      service,
      store,
      metrics,
      log,
      firstToken,
      engines,
      health,
      async listen() {
        await http.listen({ host: config.host, port: config.port });
        pool.start();
        deliverer.start();
        const addr = http.server.address();
        const port = typeof addr === 'object' && addr ? addr.port : config.port;
        const host = config.host.includes(':') ? `[${config.host}]` : config.host;
        return `http://${host}:${port}`;
      },
      async close(graceMs = 10_000) {
        if (closed) return;
        closed = true;
        accepting = false;
        await http.close();
        await pool.close(graceMs);
        await deliverer.close();
        await queue.close();
        await clamd?.stop();
        await database?.close();
      },
    };
  } catch (e) {
    await clamd?.stop().catch(() => {});
    await database?.close().catch(() => {});
    throw e;
  }
}
