/**
 * The Kaspersky KATA scanner dialect (`/kata/scanner/v1/sensors/<sensorId>/...`). It only
 * maps: the sensor is identified by its sensorId and TLS client certificate, the multipart
 * upload is streamed into the blob store, and Verdict's scans are shown in KATA's states by
 * the one table below. Errors are KATA status codes with a plain-text reason.
 *
 * Serve it on a TLS listener that asks for client certificates (see `./server.ts`): without
 * a client certificate every request is 401.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import type { ScanService } from '../../service/scan-service.ts';
import type { Sensor, SensorScan, SensorService, SensorSubmission } from '../../service/sensor-service.ts';
import { invalid, tooLarge, VerdictError, type ErrorCode } from '../../service/errors.ts';
import type { StoredBlob } from '../../store/blobs.ts';
import type { VerdictCode } from '../../verdict/codes.ts';

export interface KataOptions {
  service: ScanService;
  sensors: SensorService;
}

export const KATA_STATES = ['processing', 'detect', 'not detected', 'timeout', 'error'] as const;
export type KataState = (typeof KATA_STATES)[number];

/**
 * Verdict's scan status and verdict → KATA state: the one mapping table of this dialect.
 * Spam verdicts are not threats for KATA: `not detected` (the `verdict` field still says
 * LSP/SPM). A scan still queued or scanning after `kata.resultTimeoutMs` shows `timeout`.
 */
export const KATA_STATE_OF: Record<'queued' | 'scanning' | 'error' | VerdictCode, KataState> = {
  queued: 'processing',
  scanning: 'processing',
  error: 'error',
  MAL: 'detect',
  SUS: 'detect',
  BLK: 'detect',
  CLN: 'not detected',
  LSP: 'not detected',
  SPM: 'not detected',
};

export function kataState(s: Pick<SensorScan, 'status' | 'verdict' | 'createdAt'>, now: number, timeoutMs: number): KataState {
  if (s.status === 'done') return KATA_STATE_OF[s.verdict as VerdictCode] ?? 'error';
  const state = KATA_STATE_OF[s.status];
  return state === 'processing' && now - s.createdAt > timeoutMs ? 'timeout' : state;
}

/** Core error codes → KATA status codes (401 where X-Ray says 403 for a bad identity). */
const STATUS_OF: Record<ErrorCode, number> = {
  not_found: 404,
  invalid: 400,
  too_large: 413,
  unauthenticated: 401,
  forbidden: 403,
  rate_limited: 429,
  conflict: 409,
  unavailable: 503,
  upstream: 502,
};

type SensorParams = { Params: { sensorId: string }; Querystring: Record<string, unknown> };

export async function kataPlugin(app: FastifyInstance, opts: KataOptions): Promise<void> {
  const { service, sensors } = opts;
  const maxFileSize = service.config.limits.maxFileSize;
  await app.register(multipart, { limits: { fileSize: maxFileSize, files: 1, fields: 20, fieldSize: 4096, parts: 25 } });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    let status: number;
    let message = err.message;
    if (err instanceof VerdictError) {
      status = STATUS_OF[err.code] ?? err.status;
      if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
    } else if (err.code === 'FST_REQ_FILE_TOO_LARGE' || err.statusCode === 413) {
      status = 413;
      message = tooLarge(maxFileSize).message;
    } else if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode;
    } else {
      req.log.error({ err }, 'KATA request failed');
      status = 500;
      message = 'internal error, repeat the request later';
    }
    // a refused upload is not read to its end: do not keep the connection
    if (req.method === 'POST') reply.header('connection', 'close');
    return reply.code(status).type('text/plain; charset=utf-8').send(message);
  });

  const sensorOf = (req: FastifyRequest<SensorParams>, instanceId?: string): Promise<Sensor> => {
    const socket = req.raw.socket as Partial<TLSSocket>;
    const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    return sensors.authenticate({
      sensorId: req.params.sensorId,
      fingerprint: cert?.fingerprint256,
      subject: cert?.subject ? Object.entries(cert.subject).map(([k, v]) => `${k}=${v}`).join(', ') : undefined,
      address: req.ip,
      instanceId,
    });
  };

  const base = '/kata/scanner/v1/sensors/:sensorId';

  app.post(`${base}/scans`, async (req: FastifyRequest<SensorParams>, reply: FastifyReply) => {
    const queryInstance = text(req.query.sensorInstanceId, 'sensorInstanceId');
    const sensor = await sensorOf(req, queryInstance);
    const release = await sensors.beginUpload(sensor);
    const sub: SensorSubmission = { instanceId: queryInstance, requestId: req.id };
    let stored: StoredBlob | undefined;
    try {
      if (!req.isMultipart()) throw invalid('content', 'send multipart/form-data with the object in the part named content');
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          if (part.fieldname !== 'content' || stored) {
            part.file.resume();
            throw invalid(part.fieldname, part.fieldname === 'content' ? 'one object per request' : 'unknown file field (send the object as content)');
          }
          stored = await service.storeBlob(part.file);
          if (part.file.truncated) throw tooLarge(maxFileSize);
          sub.name = part.filename || undefined;
          continue;
        }
        const value = String(part.value);
        // fields sent before the object are checked before it is read
        if (part.fieldname === 'scanId') {
          sub.clientScanId = value;
          await sensors.checkSubmission(sensor, { clientScanId: value });
        } else if (part.fieldname === 'objectType') {
          sub.objectType = value;
          await sensors.checkSubmission(sensor, { objectType: value });
        } else if (part.fieldname === 'sensorInstanceId') {
          if (sub.instanceId !== undefined && sub.instanceId !== value) throw invalid('sensorInstanceId', 'the query and the form give different values');
          sub.instanceId = value;
        }
        // other fields are ignored, as KATA clients may send more than the documented ones
      }
      if (!stored) throw invalid('content', 'required: the object to scan');
      const blob = stored;
      stored = undefined; // submit discards it itself when it refuses
      await sensors.submit(sensor, sub, blob);
    } catch (e) {
      if (stored) await service.discardBlob(stored.digests.sha256).catch(() => {});
      throw e;
    } finally {
      release();
    }
    return reply.type('text/plain; charset=utf-8').send('OK');
  });

  app.get(`${base}/scans/state`, async (req: FastifyRequest<SensorParams>, reply: FastifyReply) => {
    const instanceId = text(req.query.sensorInstanceId, 'sensorInstanceId');
    const sensor = await sensorOf(req, instanceId);
    const wanted = statesParam(req.query.state);
    const now = Date.now();
    const timeoutMs = service.config.kata.resultTimeoutMs;
    const items = [];
    for (const s of await sensors.listScans(sensor, instanceId)) {
      const state = kataState(s, now, timeoutMs);
      if (!wanted || wanted.has(state)) items.push(stateItem(s, state));
    }
    if (items.length === 0) return reply.code(204).send();
    return reply.send(items);
  });

  app.get(`${base}/scans/filters`, async (req: FastifyRequest<SensorParams>) => {
    await sensorOf(req, text(req.query.sensorInstanceId, 'sensorInstanceId'));
    return sensors.limits();
  });

  app.delete(`${base}/scans/:scanId`, async (req: FastifyRequest<{ Params: { sensorId: string; scanId: string }; Querystring: Record<string, unknown> }>, reply: FastifyReply) => {
    const sensor = await sensorOf(req, text(req.query.sensorInstanceId, 'sensorInstanceId'));
    await sensors.deleteScan(sensor, req.params.scanId);
    return reply.type('text/plain; charset=utf-8').send('OK');
  });

  app.delete(`${base}/scans`, async (req: FastifyRequest<SensorParams>, reply: FastifyReply) => {
    const instanceId = text(req.query.sensorInstanceId, 'sensorInstanceId');
    const sensor = await sensorOf(req, instanceId);
    await sensors.deleteAll(sensor, instanceId);
    return reply.type('text/plain; charset=utf-8').send('OK');
  });
}

/** One entry of the state listing: KATA's `{scanId, state: [...]}` plus detection details. */
function stateItem(s: SensorScan, state: KataState): Record<string, unknown> {
  return {
    scanId: s.clientScanId,
    state: [state],
    sensorInstanceId: s.instanceId,
    verdict: s.verdict,
    confidence: s.confidence,
    partial: s.partial,
    score: s.score,
    threats: [...new Set(s.findings.map((f) => f.name))],
    engines: [...new Set(s.findings.map((f) => f.engine))],
    detections: s.findings,
    verdictScanId: s.scanId,
    submittedAt: new Date(s.createdAt).toISOString(),
    finishedAt: s.finishedAt === null ? null : new Date(s.finishedAt).toISOString(),
  };
}

/** `state=processing,detect` (also repeated, any case, spaces around commas); undefined = all. */
function statesParam(raw: unknown): Set<KataState> | undefined {
  if (raw === undefined || raw === '') return undefined;
  const values = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => String(v).split(','));
  const out = new Set<KataState>();
  for (const v of values) {
    const s = v.trim().toLowerCase().replace(/\s+/g, ' ');
    if (s === '') continue;
    if (!(KATA_STATES as readonly string[]).includes(s)) throw invalid('state', `unknown state ${v.trim()} (use ${KATA_STATES.join(', ')})`);
    out.add(s as KataState);
  }
  return out.size ? out : undefined;
}

function text(v: unknown, field: string): string | undefined {
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw invalid(field, 'give it once');
  return v;
}
