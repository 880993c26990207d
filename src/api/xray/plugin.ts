/**
 * The Perception Point X-Ray dialect (`/api/v1/...`, `/api/scans/<id>`, `/v1/health_check`).
 * It only maps: wire fields in, ScanService calls, wire shapes out; errors rendered in the
 * Django REST Framework style X-Ray clients expect (`{"detail": ...}`, 400 naming the field).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import formbody from '@fastify/formbody';
import { Readable } from 'node:stream';
import type { Principal, ScanService, CallbackRequest, SubmitFile } from '../../service/scan-service.ts';
import { invalid, VerdictError } from '../../service/errors.ts';
import type { StoredBlob } from '../../store/blobs.ts';
import { callbackBody, completedJob, scanDetail, scanReport } from './mappers.ts';
import { parseHttpUrl } from '../../service/scan-service.ts';
import { baseUrl, checkFields, epochParam, intParam, jsonField, scanIdParam, str } from './params.ts';
import { orgRoutes } from './org-routes.ts';
import type { OrgService } from '../../service/org-service.ts';
import type { UserService } from '../../service/users.ts';
import { multipartDoc, registerOpenApi } from './openapi.ts';
import { FOUNDATION, filesMultipartFields, urlsMultipartFields } from './schemas.ts';
import { listsRoutes } from './lists-routes.ts';
import type { ListsService } from '../../service/lists-service.ts';
import { analystDetail, analystRoutes } from './analyst-routes.ts';
import type { AnalystService } from '../../service/analyst-service.ts';
import type { QuarantineService } from '../../service/quarantine.ts';
import { kataSensorRoutes } from './kata-sensor-routes.ts';
import type { SensorService } from '../../service/sensor-service.ts';
import { searchRoutes } from './search-routes.ts';
import type { SearchService } from '../../service/search-service.ts';

/**
 * What the X-Ray routes need. Route files of other areas (search, lists, organizations...)
 * live beside this one as `<area>-routes.ts`, each exporting `async (api, opts: XrayOptions)`,
 * registered inside the authenticated scope below; services they need are added here.
 */
export interface XrayOptions {
  service: ScanService;
  health: () => Promise<{ hap: 'on' | 'off'; static: 'on' | 'off'; status: 'on' | 'off'; engines: Record<string, unknown> }>;
  publicUrl?: string;
  /** Organizations and users (org-routes.ts). */
  orgs?: OrgService;
  users?: UserService;
  /** Allow/block lists (lists-routes.ts). */
  lists?: ListsService;
  /** Verdict changes, investigations, and the analyst fields of the detail (analyst-routes.ts). */
  analyst?: AnalystService;
  /** Quarantine release (analyst-routes.ts). */
  quarantine?: QuarantineService;
  /** KATA sensors and integration requests (kata-sensor-routes.ts). */
  sensors?: SensorService;
  /** Scan search, incidents feed, SIEM export (search-routes.ts). */
  search?: SearchService;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export const xrayCallbackFormat = { xray: callbackBody };

const PAGE_SIZE = 100;

/** Route plugins of the other X-Ray areas: one import and one entry each. */
const AREA_ROUTES: ((api: FastifyInstance, opts: XrayOptions) => Promise<void>)[] = [
  orgRoutes,
  listsRoutes,
  analystRoutes,
  kataSensorRoutes,
  searchRoutes,
];

/** Fields X-Ray clients send that we accept (anything else is refused by name). */
const FILE_FIELDS = new Set(['name', 'data', 'path', 'download_link', 'storage', 'file_password', 'callback_url', 'callback_params', 'callback_headers', 'original_file_path', 'sub_origin', 'organization_id']);
const URL_FIELDS = new Set(['path', 'url', 'user_agent_string', 'user_location', 'callback_url', 'callback_params', 'callback_headers', 'sub_origin', 'organization_id']);

export async function xrayPlugin(app: FastifyInstance, opts: XrayOptions): Promise<void> {
  const { service } = opts;
  const maxFileSize = service.config.limits.maxFileSize;
  await app.register(formbody, { bodyLimit: base64Limit(maxFileSize) });
  await app.register(multipart, {
    limits: { fileSize: maxFileSize, files: 1, fields: 50, fieldSize: base64Limit(maxFileSize), parts: 60 },
  });
  // The OpenAPI document collects the routes registered after this line, with their schemas.
  await registerOpenApi(app);
  // Response schemas document; they must not filter or coerce what the mappers return.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, req, reply) => {
    if (err instanceof VerdictError) {
      if (err.status === 413) reply.header('connection', 'close');
      if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
      const body: Record<string, unknown> = { detail: err.message, code: err.code };
      if (err.field) body[err.field] = [err.message];
      return reply.code(err.status).send(body);
    }
    if (Array.isArray(err.validation)) return sendValidationError(err as Error & { validation: AjvError[]; validationContext?: string }, reply);
    if (err.code === 'FST_REQ_FILE_TOO_LARGE' || err.statusCode === 413) {
      reply.header('connection', 'close');
      return reply.code(413).send({ detail: `the request is larger than the maximum of ${maxFileSize} bytes`, code: 'too_large' });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ detail: err.message, code: err.code ?? 'invalid' });
    }
    req.log.error({ err }, 'request failed');
    return reply.code(500).send({ detail: 'internal error', code: 'internal' });
  });

  const authenticate = async (req: FastifyRequest) => {
    const header = req.headers.authorization;
    const m = header ? /^(?:Token|Bearer)\s+(\S+)\s*$/i.exec(header) : null;
    req.principal = await service.authenticate(m?.[1]);
    await service.throttle(req.principal);
  };

  app.get('/v1/health_check', { schema: FOUNDATION.health }, async () => opts.health());

  app.register(async (api) => {
    api.addHook('onRequest', authenticate);

    api.post('/api/v1/files/', { schema: FOUNDATION.files, config: multipartDoc(filesMultipartFields) }, async (req, reply) => {
      const row = req.isMultipart() ? await submitMultipart(req, service) : await submitBody(req, service);
      const cb = row.callback ? (JSON.parse(row.callback) as CallbackRequest) : undefined;
      return reply.send(cb && cb.params !== undefined && cb.params !== null ? { scan_id: row.id, callback_params: cb.params } : { scan_id: row.id });
    });

    api.post('/api/v1/urls/', { schema: FOUNDATION.urls, config: multipartDoc(urlsMultipartFields) }, async (req, reply) => {
      const fields = await bodyFields(req);
      checkFields(fields, URL_FIELDS);
      const url = str(fields.path) ?? str(fields.url);
      if (!url) throw invalid('path', 'this field is required (the URL to scan)');
      const row = await service.submitUrl({
        principal: req.principal!,
        channel: 'api',
        url,
        userAgent: str(fields.user_agent_string),
        userLocation: str(fields.user_location),
        subOrigin: str(fields.sub_origin),
        callback: callbackOf(fields),
        requestId: req.id,
        orgId: orgIdOf(fields),
      });
      const cb = row.callback ? (JSON.parse(row.callback) as CallbackRequest) : undefined;
      return reply.send(cb && cb.params !== undefined && cb.params !== null ? { scan_id: row.id, callback_params: cb.params } : { scan_id: row.id });
    });

    const detail = async (req: FastifyRequest<{ Params: { id: string } }>) => {
      const tree = await service.getTree(req.principal!, scanIdParam(req.params.id));
      const body = scanDetail(tree, await service.getSiblings(tree.root));
      return opts.analyst ? { ...body, ...analystDetail(await opts.analyst.view(tree.root)) } : body;
    };
    api.get('/api/v1/scans/list/:id/', { schema: FOUNDATION.detail }, detail);
    api.get('/api/scans/:id', { schema: FOUNDATION.detail }, detail);
    api.get('/api/v1/scans/:id/', { schema: FOUNDATION.detail }, detail);

    api.get('/api/v1/scans/report/:id', { schema: FOUNDATION.report }, async (req: FastifyRequest<{ Params: { id: string }; Querystring: Record<string, unknown> }>) => {
      const tree = await service.getTree(req.principal!, scanIdParam(req.params.id));
      return scanReport(tree, req.query ?? {});
    });

    api.get('/api/v1/scans/completed-jobs/', { schema: FOUNDATION.completedJobs }, async (req: FastifyRequest<{ Querystring: Record<string, string | string[]> }>) => {
      const q = req.query;
      for (const k of Object.keys(q)) if (!['from', 'to', '_cursor', 'page_size'].includes(k)) throw invalid(k, 'unknown parameter');
      const from = epochParam(q.from, 'from');
      const to = epochParam(q.to, 'to');
      const limit = q.page_size === undefined ? PAGE_SIZE : intParam(String(q.page_size), 'page_size', 1, 1000);
      let after: { finishedAt: number; id: number } | undefined;
      if (q._cursor !== undefined) {
        const m = /^(\d+)_(\d+)$/.exec(String(q._cursor));
        if (!m) throw invalid('_cursor', 'not a cursor given by a previous page');
        after = { finishedAt: Number(m[1]), id: Number(m[2]) };
      }
      const { rows, count } = await service.listCompleted(req.principal!, { from, to, after, limit: limit + 1 });
      const page = rows.slice(0, limit);
      let next: string | null = null;
      if (rows.length > limit) {
        const last = page[page.length - 1];
        const u = new URL(req.url, baseUrl(req, opts.publicUrl));
        u.searchParams.set('_cursor', `${last.finished_at}_${last.id}`);
        next = u.href;
      }
      return { count, page_result_count: page.length, next, results: page.map(completedJob) };
    });

    // Route files of the other X-Ray areas (registered inside the authenticated scope).
    for (const routes of AREA_ROUTES) await api.register(routes, opts);

    const del = async (req: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
      await service.deleteScan(req.principal!, scanIdParam(req.params.id));
      return reply.code(204).send();
    };
    api.put('/api/v1/scans/delete_scan/:id/', { schema: FOUNDATION.deleteScan }, del);
    api.post('/api/v1/scans/delete_scan/:id/', { schema: FOUNDATION.deleteScan }, del);
  });
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/**
 * A request that failed its route schema, in the DRF style: `{"<field>": [msg], "detail": msg}`.
 * A malformed path parameter names nothing that exists: 404, as an unknown id.
 */
function sendValidationError(err: { validation: AjvError[]; validationContext?: string }, reply: FastifyReply) {
  const e = err.validation[0];
  const where = err.validationContext ?? 'body';
  if (where === 'params') return reply.code(404).send({ detail: 'not found', code: 'not_found' });
  let field: string;
  let message: string;
  if (e.keyword === 'required') {
    field = String(e.params.missingProperty);
    message = 'this field is required';
  } else if (e.keyword === 'additionalProperties') {
    field = String(e.params.additionalProperty);
    message = where === 'querystring' ? 'unknown parameter' : 'unknown field';
  } else {
    field = e.instancePath.split('/').filter(Boolean)[0] ?? where;
    message = e.message ?? 'invalid';
    if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) message = `expected one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  const text = `${field}: ${message}`;
  return reply.code(400).send({ [field]: [text], detail: text, code: 'invalid' });
}

function base64Limit(maxFileSize: number): number {
  // base64 in JSON/form bodies is buffered: allow what encodes maxFileSize, capped at 256 MiB
  return Math.min(Math.ceil(maxFileSize * 1.4) + 1024 * 1024, 256 * 1024 * 1024);
}

function orgIdOf(fields: Record<string, unknown>): number | undefined {
  const v = str(fields.organization_id);
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw invalid('organization_id', 'expected an integer');
  return Number(v);
}

/** A JSON value given as JSON or as a JSON string (both are seen from real clients). */

function callbackOf(fields: Record<string, unknown>): CallbackRequest | undefined {
  const url = str(fields.callback_url);
  const params = jsonField(fields.callback_params, 'callback_params');
  const headersRaw = jsonField(fields.callback_headers, 'callback_headers');
  if (!url) {
    if (headersRaw !== undefined) throw invalid('callback_headers', 'given without callback_url');
    return params === undefined ? undefined : { url: '', headers: {}, params, format: 'none' };
  }
  parseHttpUrl(url, 'callback_url');
  const headers: Record<string, string> = {};
  if (headersRaw !== undefined) {
    if (typeof headersRaw !== 'object' || Array.isArray(headersRaw)) throw invalid('callback_headers', 'expected a JSON object of header names and values');
    for (const [k, v] of Object.entries(headersRaw as Record<string, unknown>)) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) throw invalid('callback_headers', `not a valid header name: ${k}`);
      if (typeof v !== 'string' && typeof v !== 'number') throw invalid('callback_headers', `the value of ${k} must be a string`);
      headers[k] = String(v);
    }
  }
  return { url, headers, params: params ?? null, format: 'xray' };
}

async function bodyFields(req: FastifyRequest): Promise<Record<string, unknown>> {
  if (req.isMultipart()) {
    const fields: Record<string, unknown> = {};
    try {
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          part.file.resume();
          throw invalid(part.fieldname, 'a file is not expected here');
        }
        fields[part.fieldname] = part.value;
      }
    } catch (e) {
      throw multipartError(e);
    }
    return fields;
  }
  const body = req.body;
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw invalid('body', 'expected a JSON object or form fields');
  return body as Record<string, unknown>;
}

function fileRequest(req: FastifyRequest, fields: Record<string, unknown>, name: string | undefined): SubmitFile {
  return {
    principal: req.principal!,
    channel: 'api',
    name: name ?? '',
    password: str(fields.file_password) || undefined,
    callback: callbackOf(fields),
    subOrigin: str(fields.sub_origin),
    originalFilePath: str(fields.original_file_path),
    requestId: req.id,
    orgId: orgIdOf(fields),
  };
}

/** multipart/form-data: the file part is streamed to the blob store as it arrives. */
async function submitMultipart(req: FastifyRequest, service: ScanService) {
  const fields: Record<string, unknown> = {};
  let stored: StoredBlob | undefined;
  let fileName: string | undefined;
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'data') {
          part.file.resume();
          throw invalid(part.fieldname, 'unknown file field (send the file as `data`)');
        }
        if (stored) throw invalid('data', 'only one file per request');
        stored = await service.storeBlob(part.file);
        if (part.file.truncated) throw new VerdictError('too_large', `object is larger than the maximum of ${service.config.limits.maxFileSize} bytes`, 413);
        fileName = part.filename || undefined;
      } else {
        fields[part.fieldname] = part.value;
      }
    }
    checkFields(fields, FILE_FIELDS);
    if (!stored) {
      // multipart without a file part: the same fields as a JSON body
      return await submitFromFields(req, service, fields);
    }
    const r = fileRequest(req, fields, str(fields.name) || fileName);
    return await service.acceptStoredBlob(r, stored);
  } catch (e) {
    if (stored) await service.discardBlob(stored.digests.sha256).catch(() => {});
    throw multipartError(e);
  }
}

async function submitBody(req: FastifyRequest, service: ScanService) {
  const fields = await bodyFields(req);
  checkFields(fields, FILE_FIELDS);
  return submitFromFields(req, service, fields);
}

/** `data` as base64, or `download_link`, or `path` of a stored sample: exactly one. */
async function submitFromFields(req: FastifyRequest, service: ScanService, fields: Record<string, unknown>) {
  const sources = (['data', 'download_link', 'path'] as const).filter((k) => str(fields[k]));
  if (sources.length === 0) throw invalid('data', 'one of data, path or download_link is required');
  if (sources.length > 1) throw invalid(sources[1], `give only one of data, path or download_link (got ${sources.join(', ')})`);
  const name = str(fields.name) || (fields.download_link ? nameFromLink(str(fields.download_link)!) : undefined);
  const r = fileRequest(req, fields, name);
  if (!r.name) throw invalid('name', 'this field is required');
  if (sources[0] === 'data') {
    const text = str(fields.data)!.replace(/^data:[^,]*;base64,/, '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw invalid('data', 'expected base64 file content (or send the file as a multipart part named data)');
    return service.submitFile(r, Readable.from([Buffer.from(text, 'base64')]));
  }
  if (sources[0] === 'download_link') return service.submitDownload(r, str(fields.download_link)!);
  return service.submitStoredPath(r, str(fields.path)!, str(fields.storage) || undefined);
}

/**
 * Errors while reading a multipart body: the client's malformed body or exceeded part limits
 * are its fault (400; too large stays 413); system errors (disk full...) stay server errors.
 */
function multipartError(e: unknown): unknown {
  if (e instanceof VerdictError) return e;
  const err = e as { code?: string; message?: string; syscall?: string };
  if (err.code === 'FST_REQ_FILE_TOO_LARGE') return e;
  if (err.code === 'FST_FILES_LIMIT') return invalid('data', 'only one file per request');
  if (err.code === 'FST_FIELDS_LIMIT' || err.code === 'FST_PARTS_LIMIT') return invalid('body', 'too many form fields');
  if (err.syscall || (typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code))) return e;
  // only the parser's own complaints are the client's fault; a failing blob store is ours
  const parserFault = (typeof err.code === 'string' && err.code.startsWith('FST_')) || /unexpected end of (form|multipart)|malformed|boundary|part terminated|multipart/i.test(err.message ?? '');
  return parserFault ? invalid('body', `malformed multipart body: ${err.message ?? String(e)}`) : e;
}

function nameFromLink(link: string): string | undefined {
  try {
    const last = new URL(link).pathname.split('/').filter(Boolean).pop();
    return last ? decodeURIComponent(last) : new URL(link).hostname;
  } catch {
    return undefined;
  }
}
