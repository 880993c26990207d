/**
 * The KATA listener: its own HTTPS server that asks every client for a certificate and
 * refuses, in the TLS handshake, any certificate not signed by the configured CA. It serves
 * only the KATA dialect. Enabled when `kata.tlsCert`, `kata.tlsKey` and `kata.clientCa` are set.
 *
 * @example
 * const kata = await createKataServer({ config, log, service, sensors, accepting: () => true });
 * const url = await kata?.listen();   // https://127.0.0.1:8443
 */
import { answerAfterDurable } from '../durable.ts';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { ScanService } from '../../service/scan-service.ts';
import type { SensorService } from '../../service/sensor-service.ts';
import { kataPlugin } from './plugin.ts';

export interface KataServerOptions {
  config: Config;
  log: Logger;
  service: ScanService;
  sensors: SensorService;
  metrics?: Metrics;
  /** false while shutting down: requests get 503. */
  accepting: () => boolean;
}

export interface KataServer {
  /** Listens; resolves with the base URL (`https://host:port`). */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/** undefined when the KATA listener is not configured; throws when it is half configured. */
export async function createKataServer(o: KataServerOptions): Promise<KataServer | undefined> {
  const k = o.config.kata;
  const given = [k.tlsCert, k.tlsKey, k.clientCa].filter((v) => v !== undefined && v !== '');
  if (given.length === 0) return undefined;
  if (given.length < 3) throw new Error('the KATA listener needs kata.tlsCert, kata.tlsKey and kata.clientCa together');
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new Error(`kata.${what}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  const app = Fastify({
    loggerInstance: o.log as unknown as FastifyBaseLogger,
    https: {
      cert: read(k.tlsCert!, 'tlsCert'),
      key: read(k.tlsKey!, 'tlsKey'),
      ca: read(k.clientCa!, 'clientCa'),
      requestCert: true,
      rejectUnauthorized: true,
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
  });
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (!o.accepting()) return reply.code(503).header('connection', 'close').type('text/plain').send('shutting down');
  });
  answerAfterDurable(app, () => o.service.durable());
  if (o.metrics) {
    const m = o.metrics;
    app.addHook('onResponse', async (req, reply) => {
      m.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    });
  }
  await app.register(kataPlugin, { service: o.service, sensors: o.sensors });
  return {
    async listen() {
      const host = k.host ?? o.config.host;
      await app.listen({ host, port: k.port });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : k.port;
      return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    },
    close: () => app.close(),
  };
}
