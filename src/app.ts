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
import { openDatabase, type OpenDatabase } from './store/database.ts';
import { Store } from './store/store.ts';
import { LocalBlobStore, type BlobStore } from './store/blobs.ts';
import { DbQueue } from './queue/db-queue.ts';
import type { JobQueue } from './queue/queue.ts';
import type { Redis } from 'ioredis';
import { MemoryRateLimiter, RedisRateLimiter, type RateLimiter } from './service/rate-limiter.ts';
import { WorkerPool } from './queue/worker-pool.ts';
import { Engine } from './engine/engine.ts';
import { initScanners, type ScannerStatus } from './scanners/index.ts';
import { ScanService } from './service/scan-service.ts';
import { ScanRunner } from './service/scan-runner.ts';
import { CallbackDeliverer } from './callbacks/outbox.ts';
import { Metrics } from './ops/metrics.ts';
import { resolveClamd } from './engines/clamd-manager.ts';
import { xrayPlugin, xrayCallbackFormat } from './api/xray/plugin.ts';
import { cssPlugin } from './api/css/plugin.ts';
import { CssService } from './service/css-service.ts';
import { Storages } from './store/storages.ts';
import { EgressGuard } from './net/egress-guard.ts';
import { OrgService } from './service/org-service.ts';
import { UserService } from './service/users.ts';
import { RedisUploadCounter, SensorService } from './service/sensor-service.ts';
import { createKataServer } from './api/kata/server.ts';
import { answerAfterDurable } from './api/durable.ts';
import { ListsService } from './service/lists-service.ts';
import { AnalystService } from './service/analyst-service.ts';
import { QuarantineService } from './service/quarantine.ts';
import { SearchService } from './service/search-service.ts';
import { closeSharedBrowsers } from './net/browser.ts';
import { EmailGateway } from './gateway/gateway.ts';

export interface VerdictOptions {
  log?: Logger;
  /** Run scan workers in this process (default: when config.workers > 0). */
  workers?: boolean;
  /**
   * Serve the API dialects (default). A `verdict worker` process sets false: it scans and
   * delivers callbacks, and its HTTP port answers health, readiness and metrics only.
   */
  api?: boolean;
}

export interface Verdict {
  config: Config;
  http: FastifyInstance;
  service: ScanService;
  /** Allow/block lists (entries, and the per-organization list policy). */
  lists: ListsService;
  /** Verdict changes, investigations, organization investigation webhooks. */
  analyst: AnalystService;
  /** Quarantine state and release (install the email gateway's releaser with setReleaser). */
  quarantine: QuarantineService;
  /** KATA sensors and integration requests. */
  sensors: SensorService;
  /** Base URL of the KATA listener (https, client certificates) once listening, when configured. */
  readonly kataUrl?: string;
  /** Port of the SMTP gateway once listening, when `smtp.enabled`. */
  readonly smtpPort?: number;
  store: Store;
  /** Where samples are kept (the data directory, or S3 in the scale mode). */
  blobs: BlobStore;
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
  fs.mkdirSync(tmpRoot, { recursive: true, mode: 0o700 });
  fs.chmodSync(tmpRoot, 0o700); // scans extract samples under it

  let database: OpenDatabase | undefined;
  let clamd: Awaited<ReturnType<typeof resolveClamd>> | undefined;
  let storages: Storages | undefined;
  let queue: JobQueue | undefined;
  let limiter: RateLimiter | undefined;
  // one connection for the counters shared between processes (throttling, sensor uploads)
  let sharedRedis: Redis | undefined;
  const serveApi = opts.api ?? true;
  try {
    database = await openDatabase(config);
    const store = new Store(database.db, database);
    const localBlobs = new LocalBlobStore(path.join(config.dataDir, 'blobs'));
    // named storages: `local` (the directory store above) and the S3 storages of the configuration
    storages = new Storages(localBlobs, config.storages, { guard: new EgressGuard({ allow: config.egressAllow, deny: config.egressDeny }), tmpDir: tmpRoot });
    // where samples are kept: the local directory (embedded) or a named S3 storage (scale)
    const blobs: BlobStore = config.blobStorage === 'local' ? localBlobs : storages.s3(config.blobStorage)!;
    if (!blobs) throw new Error(`blobStorage: no storage named ${config.blobStorage} (configured: local, ${storages.names().join(', ')})`);
    if (config.queue === 'bullmq' && !config.redisUrl) throw new Error('queue: bullmq needs redisUrl (or REDIS_URL)');
    // BullMQ and ioredis load only in scale mode (~15 MB an embedded server does without)
    queue =
      config.queue === 'bullmq'
        ? new (await import('./queue/bullmq-queue.ts')).BullMqQueue({ url: config.redisUrl!, prefix: config.redisPrefix, leaseMs: config.jobLeaseMs })
        : new DbQueue(database.db);
    // throttling counters live where every API process sees them: Redis when there is one
    const jobs = queue;
    sharedRedis = config.redisUrl ? await redisClient(config.redisUrl) : undefined;
    limiter = sharedRedis ? new RedisRateLimiter(sharedRedis, config.redisPrefix) : new MemoryRateLimiter();
    const metrics = new Metrics();

    clamd = await resolveClamd(config, log);
    if (config.clamdRequired && !clamd.endpoint) throw new Error(`clamd is required but unavailable: ${clamd.status().detail}`);
    const scanners = await initScanners({ config, log, clamd: clamd.endpoint });
    const engine = new Engine(scanners.active, {
      limits: config.limits,
      policy: { scoreSuspicious: config.scoreSuspicious, scoreMalicious: config.scoreMalicious, scoreLikelySpam: config.scoreLikelySpam, scoreSpam: config.scoreSpam },
      log,
      tmpRoot,
      onRun: (run) => {
        metrics.engineLatency.observe({ engine: run.scanner }, run.ms / 1000);
        if (run.status !== 'ok') metrics.engineFailures.inc({ engine: run.scanner, status: run.status });
      },
    });
    const service = new ScanService({ config, store, blobs, queue, log, metrics, storages, rateLimiter: limiter });
    const orgs = new OrgService(store);
    const users = new UserService(store);
    const { token: firstToken } = await service.bootstrap();
    const deliverer = new CallbackDeliverer({ config, store, log, metrics });
    const analyst = new AnalystService({ store, scans: service, log, metrics, onOutbox: () => deliverer.notify() });
    const quarantine = new QuarantineService({ analyst, log, metrics });
    const lists = new ListsService({ store });
    const sensors = new SensorService({ config, store, scans: service, log, uploads: config.redisUrl ? new RedisUploadCounter(sharedRedis!, config.redisPrefix) : undefined });
    const runner = new ScanRunner({ config, store, blobs, engine, log, metrics, formatters: xrayCallbackFormat, onFinished: (id, withCallback) => {
        service.events.finished(id);
        if (withCallback) deliverer.notify();
      }, lists });
    const runWorkers = opts.workers ?? config.workers > 0;
    const pool = new WorkerPool({ queue, concurrency: runWorkers ? Math.max(1, config.workers) : 0, leaseMs: config.jobLeaseMs, log, process: (job, signal) => runner.run(job, signal) });

    // Nothing accepted is lost: a scan whose job vanished (a crash between the two writes, or a
    // Redis that lost its data) gets one again: at start, then periodically in worker processes.
    const requeue = async (scanIds: number[]) => {
      for (const id of scanIds) {
        if (!(await jobs.has(id))) {
          log.warn({ scanId: id }, 're-queueing an accepted scan that had no job');
          await jobs.enqueue(id);
        }
      }
    };
    await requeue((await store.unfinishedRootScans()).map((s) => s.id));
    let sweep: NodeJS.Timeout | undefined;
    if (runWorkers && config.requeueSweepMs > 0) {
      sweep = setInterval(() => {
        store
          .staleUnfinishedRootScans(Date.now() - config.requeueSweepMs, 1000)
          .then(requeue)
          .catch((e) => log.warn({ err: e }, 're-queue sweep failed; next time'));
      }, config.requeueSweepMs);
      sweep.unref();
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
      // route schemas refuse unknown fields by name (DRF style) instead of dropping them silently
      ajv: { customOptions: { removeAdditional: false, allowUnionTypes: true } },
      bodyLimit: Math.min(Math.ceil(config.limits.maxFileSize * 1.4) + 1024 * 1024, 256 * 1024 * 1024),
      requestIdHeader: 'x-request-id',
      genReqId: () => crypto.randomUUID(),
    });
    http.addHook('onRequest', async (req, reply) => {
      reply.header('x-request-id', req.id);
      if (!accepting) return reply.code(503).header('connection', 'close').send({ detail: 'shutting down' });
    });
    answerAfterDurable(http, () => store.durable());
    http.addHook('onResponse', async (req, reply) => {
      metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    });
    http.get('/metrics', async (_req, reply) => {
      const q = await jobs.stats();
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
    const search = new SearchService(store, { countLimit: config.searchCountLimit, incidentsHoldbackMs: config.incidentsHoldbackMs, siemDelayMs: config.siemDelayMs });
    if (serveApi) await http.register(xrayPlugin, { service, health, publicUrl: config.publicUrl, analyst, quarantine, lists, sensors, orgs, users, search });
    const css = await CssService.create({ config, service, store, blobs, storages, users, log });
    if (serveApi) await http.register(cssPlugin, { css, service, health });
    const kata = serveApi ? await createKataServer({ config, log, service, sensors, metrics, accepting: () => accepting }) : undefined;
    let kataUrl: string | undefined;
    // the SMTP gateway: its listener and delivery loop run with the API; its releaser delivers quarantine releases
    const gateway = serveApi && config.smtp.enabled ? new EmailGateway({ config, store, blobs, service, quarantine, orgs, lists, log }) : undefined;
    if (gateway) quarantine.setReleaser(gateway.releaser);
    let smtpPort: number | undefined;

    let closed = false;
    return {
      config,
      http,
      service,
      lists,
      analyst,
      quarantine,
      sensors,
      get smtpPort() {
        return smtpPort;
      },
      get kataUrl() {
        return kataUrl;
      },
      store,
      blobs,
      metrics,
      log,
      firstToken,
      engines,
      health,
      async listen() {
        await http.listen({ host: config.host, port: config.port });
        if (kata) kataUrl = await kata.listen();
        if (gateway) smtpPort = await gateway.listen();
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
        clearInterval(sweep);
        await http.close();
        await kata?.close();
        await gateway?.close();
        await pool.close(graceMs);
        await deliverer.close();
        await queue!.close();
        sharedRedis?.disconnect();
        storages?.close();
        await clamd?.stop();
        await closeSharedBrowsers();
        await database?.close();
      },
    };
  } catch (e) {
    await queue?.close().catch(() => {});
    sharedRedis?.disconnect();
    storages?.close();
    await clamd?.stop().catch(() => {});
    await database?.close().catch(() => {});
    throw e;
  }
}

async function redisClient(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  // commands wait through a Redis restart instead of failing the request
  const r = new Redis(url, { maxRetriesPerRequest: null });
  r.on('error', () => {});
  return r;
}
