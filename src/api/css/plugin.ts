/**
 * The Cloud Storage Security dialect (`/api/Token`, `/api/Scan...`, `/api/Classify...`,
 * `/health`). It only maps: wire fields in, CssService / ScanService calls, wire shapes out;
 * errors rendered as RFC 7807 problem documents (`application/problem+json`).
 *
 * Bodies: `/api/Token` takes JSON (a form-encoded body is read too, as some clients send the
 * credentials that way); `/api/Scan` and `/api/Classify` take a multipart form (any file field
 * name, plus an optional `Upload-To` field) or the raw file as the body with a `File-Name`
 * header. Raw bodies are streamed, never buffered.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import formbody from '@fastify/formbody';
import type { Readable } from 'node:stream';
import type { Principal, ScanService } from '../../service/scan-service.ts';
import type { CssService, ScanOutcome, SyncSubmit, UploadTarget } from '../../service/css-service.ts';
import type { ScanOptions } from '../../service/scan-service.ts';
import type { StoredBlob } from '../../store/blobs.ts';
import { invalid, tooLarge, VerdictError, type ErrorCode } from '../../service/errors.ts';
import { outcomeBody, pendingBody } from './mappers.ts';

export interface CssOptions {
  css: CssService;
  service: ScanService;
  health: () => Promise<{ status: 'on' | 'off'; hap: 'on' | 'off'; static: 'on' | 'off'; engines: Record<string, unknown> }>;
}

/** Error code → HTTP status in this dialect (a bad or expired token is 401, as CSS clients expect). */
const STATUS: Record<ErrorCode, number> = {
  invalid: 400,
  upstream: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function problem(reply: FastifyReply, status: number, detail: string, code: string, extra: Record<string, unknown> = {}) {
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ type: `urn:verdict:problem:${code}`, title: TITLES[status] ?? 'Error', status, detail, ...extra });
}

declare module 'fastify' {
  interface FastifyRequest {
    cssPrincipal?: Principal;
  }
}

const UPLOAD_FIELDS = ['Upload-To', 'uploadTo', 'upload_to', 'UploadTo'];

export async function cssPlugin(app: FastifyInstance, opts: CssOptions): Promise<void> {
  const { css, service } = opts;
  const maxFileSize = service.config.limits.maxFileSize;

  await app.register(formbody, { bodyLimit: 1024 * 1024 });
  await app.register(multipart, { limits: { fileSize: maxFileSize, files: 1, fields: 20, fieldSize: 64 * 1024, parts: 30 } });
  // JSON as usual, but read credentials a client sent form-encoded under a JSON content type
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 1024 * 1024 }, (_req, body, done) => {
    const text = String(body).trim();
    if (text === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      if (/^[\w.%+-]+=[^&]*(&[\w.%+-]+=[^&]*)*$/.test(text)) return done(null, Object.fromEntries(new URLSearchParams(text)));
      done(invalid('body', 'the body is not valid JSON'), undefined);
    }
  });
  // anything else (application/octet-stream, no content type...) is a raw file body: streamed
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof VerdictError) {
      const status = STATUS[err.code] ?? err.status;
      if (status === 413) reply.header('connection', 'close');
      if (status === 401) reply.header('www-authenticate', `Bearer error="invalid_token", error_description="${err.message.replace(/"/g, "'")}"`);
      if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
      return problem(reply, status, err.message, err.code, err.field ? { field: err.field } : {});
    }
    if (err.code === 'FST_REQ_FILE_TOO_LARGE' || err.statusCode === 413) {
      reply.header('connection', 'close');
      return problem(reply, 413, `the file is larger than the maximum of ${maxFileSize} bytes`, 'too_large');
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return problem(reply, err.statusCode, err.message, err.code ?? 'invalid');
    req.log.error({ err }, 'request failed');
    return problem(reply, 500, 'internal error', 'internal');
  });

  app.get('/health', async (_req, reply) => {
    const h = await opts.health();
    return reply.code(h.status === 'on' ? 200 : 503).send({ ...h, service: h.status, status: h.status === 'on' ? 'Healthy' : 'Unhealthy', antivirus: h.hap === 'on' || h.static === 'on' ? 'on' : 'off' });
  });

  app.post('/api/Token', async (req) => {
    const body = objectBody(req.body);
    const t = await css.issueToken(body.username ?? body.userName ?? body.Username, body.password ?? body.Password);
    return { accessToken: t.accessToken, tokenType: 'Bearer', expiresIn: t.expiresIn, access_token: t.accessToken, token_type: 'Bearer', expires_in: t.expiresIn, issued_at: t.issuedAt };
  });

  app.register(async (api) => {
    api.addHook('onRequest', async (req) => {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      req.cssPrincipal = await css.authenticate(m?.[1]);
      await service.throttle(req.cssPrincipal);
    });

    for (const classify of [false, true]) {
      const base = classify ? '/api/Classify' : '/api/Scan';
      const jobStatus = `${base}/JobStatus`;

      api.post(base, async (req, reply) => {
        const p = req.cssPrincipal!;
        const row = await submitUploadRequest(req, css, service, p, { classify, requestId: req.id });
        return answer(reply, await css.waitForOutcome(p, row.id, waitMs(req, css.config.cssWaitMs)), classify, jobStatus);
      });

      api.post(`${base}/Existing`, async (req, reply) => {
        const p = req.cssPrincipal!;
        const body = objectBody(req.body);
        const row = await css.submitExisting(
          p,
          { storage: text(body.storage), bucket: text(body.container) ?? text(body.bucket), key: text(body.objectPath) ?? text(body.key) },
          { classify, requestId: req.id, uploadTo: uploadTarget(css, body) },
        );
        return answer(reply, await css.waitForOutcome(p, row.id, waitMs(req, css.config.cssWaitMs)), classify, jobStatus);
      });

      api.post(`${base}/URL`, async (req, reply) => {
        const p = req.cssPrincipal!;
        const body = objectBody(req.body);
        const row = await css.submitUrl(p, body.url ?? body.Url ?? body.URL, { classify, requestId: req.id, uploadTo: uploadTarget(css, body) });
        return answer(reply, await css.waitForOutcome(p, row.id, waitMs(req, css.config.cssWaitMs)), classify, jobStatus);
      });

      api.get(jobStatus, async (req: FastifyRequest<{ Querystring: Record<string, string> }>, reply) => {
        const ref = req.query.referenceId ?? req.query.referenceID ?? req.query.id;
        if (!ref) throw invalid('referenceId', 'this query parameter is required');
        const outcome = await css.outcomeOf(req.cssPrincipal!, String(ref));
        const asked = outcome.state === 'finished' ? (JSON.parse(outcome.tree.root.options) as ScanOptions).classify === true : classify;
        return answer(reply, outcome, asked, jobStatus);
      });
    }
  });
}

function answer(reply: FastifyReply, outcome: ScanOutcome, classify: boolean, jobStatus: string) {
  if (outcome.state === 'pending') {
    return reply.code(202).header('location', `${jobStatus}?referenceId=${outcome.scan.id}`).send(pendingBody(outcome.scan, jobStatus));
  }
  return reply.send(outcomeBody(outcome, classify));
}

/** The configured wait, shortened by RFC 7240 `Prefer: wait=N` (seconds) when the client asks. */
function waitMs(req: FastifyRequest, configured: number): number {
  const m = /(?:^|[,;\s])wait=(\d+)/i.exec(String(req.headers.prefer ?? ''));
  return m ? Math.min(configured, Number(m[1]) * 1000) : configured;
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body === 'object' && typeof (body as Readable).pipe === 'function') {
    (body as Readable).resume();
    throw new VerdictError('invalid', 'expected a JSON body (content-type application/json)', 415);
  }
  if (typeof body !== 'object' || Array.isArray(body)) throw invalid('body', 'expected a JSON object');
  return body as Record<string, unknown>;
}

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v.trim() || undefined;
  if (typeof v === 'number') return String(v);
  return undefined;
}

function uploadTarget(css: CssService, fields: Record<string, unknown>, header?: string): UploadTarget | undefined {
  const spec = header ?? UPLOAD_FIELDS.map((f) => text(fields[f])).find(Boolean);
  return spec ? css.parseUploadTarget(spec) : undefined;
}

/** A multipart form (the file streamed to the blob store as it arrives) or a raw file body. */
async function submitUploadRequest(req: FastifyRequest, css: CssService, service: ScanService, principal: Principal, base: SyncSubmit) {
  const header = typeof req.headers['upload-to'] === 'string' ? req.headers['upload-to'] : undefined;
  if (req.isMultipart()) {
    const fields: Record<string, unknown> = {};
    let stored: StoredBlob | undefined;
    let name: string | undefined;
    try {
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          if (stored) {
            part.file.resume();
            throw invalid(part.fieldname, 'only one file per request');
          }
          stored = await service.storeBlob(part.file);
          if (part.file.truncated) throw tooLarge(service.config.limits.maxFileSize);
          name = part.filename || part.fieldname;
        } else {
          fields[part.fieldname] = part.value;
        }
      }
      if (!stored) throw invalid('file', 'the form has no file part');
      const uploadTo = uploadTarget(css, fields, header);
      return await css.acceptStored(principal, stored, text(fields.fileName) ?? text(fields['File-Name']) ?? name ?? 'upload', { ...base, uploadTo });
    } catch (e) {
      if (stored) await service.discardBlob(stored.digests.sha256).catch(() => {});
      throw e;
    }
  }
  const body = req.body as Readable | undefined;
  if (!body || typeof body.pipe !== 'function') throw invalid('file', 'send the file as a multipart form or as the raw body with a File-Name header');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > service.config.limits.maxFileSize) throw tooLarge(service.config.limits.maxFileSize);
  const uploadTo = uploadTarget(css, {}, header);
  const rawName = req.headers['file-name'];
  const name = typeof rawName === 'string' && rawName.trim() ? decodeName(rawName.trim()) : 'upload';
  return css.submitUpload(principal, body, name, { ...base, uploadTo });
}

function decodeName(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}
