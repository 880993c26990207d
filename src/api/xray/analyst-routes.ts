/**
 * X-Ray analyst endpoints: verdict change (`PUT /api/v1/scans/handle_scan/<id>/`), request
 * investigation (`GET /api/v1/scans/request-investigation/<id>/`) and quarantine release
 * (`GET /api/v1/quarantine/release/<id>/`), plus the analyst fields of the scan detail.
 * Wire ↔ service mapping only; the decisions are in AnalystService and QuarantineService.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { XrayOptions } from './plugin.ts';
import type { AnalystView, VerdictChangeResult } from '../../service/analyst-service.ts';
import { invalid, VerdictError } from '../../service/errors.ts';
import { isoTime } from './mappers.ts';
import { checkFields, scanIdParam, str } from './params.ts';
import { bodyDoc } from './openapi.ts';
import { open, responses } from './schemas.ts';

// Documentation of these routes (the handlers validate, with their own messages).
const scanIdDoc = { type: 'object', properties: { id: { type: 'string', description: 'The scan id (an integer)' } } };
const handleDoc = {
  summary: 'Change a scan\'s verdict (kept in the audit trail shown in the detail)',
  description: '400 when the sub-verdict is unchanged or not one of CLN, LSP, BLK, SUS, SPM, MAL. A change to CLN of a detected scan marks it a false positive; the reverse a false negative.',
  tags: ['analyst'],
  params: scanIdDoc,
  response: responses({ 200: open({ scan_id: { type: 'integer' }, previous_sub_verdict: { type: ['string', 'null'] }, verdict: { type: 'string' }, is_fp: { type: 'boolean' }, is_fn: { type: 'boolean' } }) }),
};
const handleBodyDoc = bodyDoc({ sub_verdict: { type: 'string', enum: ['CLN', 'LSP', 'BLK', 'SUS', 'SPM', 'MAL'] }, comment: { type: 'string' } }, ['sub_verdict']);
const investigationDoc = {
  summary: 'Request an investigation of a scan (announced to the organization\'s webhook)',
  tags: ['analyst'],
  params: scanIdDoc,
  querystring: { type: 'object', properties: { option: { description: 'What to investigate' }, comment: { description: 'Free text' } } },
  response: responses({ 200: { description: 'Blank body', type: 'null' } }),
};
const releaseDoc = {
  summary: 'Release a quarantined email (optionally marking it clean)',
  description: '400 for a bad scan id or a bad boolean; releasing twice is an error.',
  tags: ['analyst'],
  params: scanIdDoc,
  querystring: { type: 'object', properties: { should_mark_as_clean: { description: '`true` or `false` (default true)' } } },
  response: responses({ 200: open({ scan_id: { type: 'integer' }, released: { type: 'boolean' }, marked_as_clean: { type: 'boolean' }, verdict: { type: ['string', 'null'] } }) }),
};

type IdRequest = FastifyRequest<{ Params: { id: string }; Querystring: Record<string, unknown> }>;

const HANDLE_FIELDS = new Set(['sub_verdict', 'comment']);
const INVESTIGATION_PARAMS = new Set(['option', 'comment']);
const RELEASE_PARAMS = new Set(['should_mark_as_clean']);

export async function analystRoutes(api: FastifyInstance, opts: XrayOptions): Promise<void> {
  const { analyst, quarantine } = opts;
  if (!analyst || !quarantine) return;

  const handle = async (req: IdRequest) => {
    const id = scanIdParam(req.params.id);
    const fields = await bodyFields(req);
    checkFields(fields, HANDLE_FIELDS);
    const r = await analyst.changeVerdict(req.principal!, id, { subVerdict: text(fields.sub_verdict, 'sub_verdict'), comment: text(fields.comment, 'comment') });
    return verdictChangeBody(r);
  };
  api.put('/api/v1/scans/handle_scan/:id/', { schema: handleDoc, config: handleBodyDoc }, handle);
  // Some clients send the change as POST or PATCH; the meaning is the same.
  api.post('/api/v1/scans/handle_scan/:id/', { schema: handleDoc, config: handleBodyDoc }, handle);
  api.patch('/api/v1/scans/handle_scan/:id/', { schema: handleDoc, config: handleBodyDoc }, handle);

  api.get('/api/v1/scans/request-investigation/:id/', { schema: investigationDoc }, async (req: IdRequest, reply: FastifyReply) => {
    const id = scanIdParam(req.params.id);
    const q = req.query ?? {};
    checkFields(q, INVESTIGATION_PARAMS);
    await analyst.requestInvestigation(req.principal!, id, { option: single(q.option, 'option'), comment: single(q.comment, 'comment') });
    // The specification: "a blank 200 OK on success".
    return reply.code(200).send();
  });

  // XSOAR's Perception Point integration calls this without the trailing slash; the router
  // ignores trailing slashes, so both forms reach this route.
  api.get('/api/v1/quarantine/release/:id/', { schema: releaseDoc }, async (req: IdRequest) => {
    // The specification answers 400 for a bad scan id here (404 stays for unknown ids).
    if (!/^\d{1,15}$/.test(req.params.id)) throw invalid('scan_id', `"${req.params.id.slice(0, 50)}" is not a scan id`);
    const id = Number(req.params.id);
    const q = req.query ?? {};
    checkFields(q, RELEASE_PARAMS);
    const markAsClean = booleanParam(single(q.should_mark_as_clean, 'should_mark_as_clean'), 'should_mark_as_clean', true);
    const r = await quarantine.release(req.principal!, id, { markAsClean });
    return {
      scan_id: r.scanId,
      released: true,
      marked_as_clean: r.markedAsClean,
      verdict: r.verdict,
      sub_verdict: r.verdict,
      verbose_verdict: r.verdict,
      released_at: isoTime(r.releasedAt),
      released_by: r.releasedBy,
      verdict_changed: r.verdictChange !== undefined,
      detail: r.detail,
    };
  });
}

/** The 200 body of handle_scan: the new state. */
function verdictChangeBody(r: VerdictChangeResult): Record<string, unknown> {
  return {
    scan_id: r.scanId,
    previous_sub_verdict: r.previous,
    verdict: r.verdict,
    sub_verdict: r.verdict,
    verbose_verdict: r.verdict,
    original_verdict: r.engineVerdict,
    is_fp: r.isFp,
    is_fn: r.isFn,
    verdict_changed_at: isoTime(r.changedAt),
    verdict_changed_by: r.changedBy,
    comment: r.change.comment,
  };
}

/** The analyst fields of the scan detail (merged into `scanDetail`'s output). */
export function analystDetail(v: AnalystView): Record<string, unknown> {
  const { scan, changes, investigations, quarantine } = v;
  const fpChange = scan.is_fp === 1 ? [...changes].reverse().find((c) => c.is_fp === 1) : undefined;
  const out: Record<string, unknown> = {
    verdict_changed_by: scan.verdict_changed_by ?? 'System',
    original_verdict: changes.length > 0 ? changes[0].engine_verdict : scan.status === 'done' ? scan.verdict : null,
    marked_as_fp_by: fpChange?.actor ?? null,
    verdict_changes: changes.map((c) => ({
      id: c.id,
      kind: c.kind,
      old_verdict: c.old_verdict,
      new_verdict: c.new_verdict,
      comment: c.comment,
      changed_by: c.actor,
      changed_by_organization_id: c.actor_org_id,
      changed_at: isoTime(c.created_at),
      is_fp: c.is_fp === 1,
      is_fn: c.is_fn === 1,
    })),
    was_requested_for_investigation: scan.was_requested_for_investigation === 1,
    investigation_requests: investigations.map((i) => ({
      id: i.id,
      option: i.option,
      comment: i.comment,
      requested_by: i.actor,
      requested_by_organization_id: i.actor_org_id,
      requested_at: isoTime(i.created_at),
      webhook: i.callback_id === null ? null : { state: i.webhook_state, attempts: i.webhook_attempts, delivered_at: isoTime(i.webhook_delivered_at), last_error: i.webhook_last_error },
    })),
    quarantine: quarantine
      ? {
          state: quarantine.state,
          reason: quarantine.reason,
          quarantined_by: quarantine.quarantined_by,
          quarantined_at: isoTime(quarantine.quarantined_at),
          released_by: quarantine.released_by,
          released_at: isoTime(quarantine.released_at),
          marked_as_clean: quarantine.state === 'released' ? quarantine.marked_clean === 1 : null,
          detail: quarantine.release_detail,
        }
      : null,
  };
  if (scan.verbose_action) out.verbose_action = scan.verbose_action;
  return out;
}

/** `true`/`false` (any case) or `1`/`0`; absent → `dflt`; anything else is a 400 naming the field. */
export function booleanParam(v: string | undefined, field: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  const s = v.trim().toLowerCase();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  throw invalid(field, `expected true or false, not "${v.slice(0, 50)}"`);
}

/** One query value (a repeated parameter is refused rather than guessed). */
function single(v: unknown, field: string): string | undefined {
  if (Array.isArray(v)) throw invalid(field, 'give this parameter once');
  return str(v);
}

function text(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(field, 'expected a string');
  return v;
}

/** JSON, form-encoded or multipart fields of the request body. */
async function bodyFields(req: FastifyRequest): Promise<Record<string, unknown>> {
  if (req.isMultipart()) {
    const fields: Record<string, unknown> = {};
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        part.file.resume();
        throw invalid(part.fieldname, 'a file is not expected here');
      }
      fields[part.fieldname] = part.value;
    }
    return fields;
  }
  const body = req.body;
  if (body === undefined || body === null || body === '') return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new VerdictError('invalid', 'expected a JSON object or form fields', 400, 'body');
  return body as Record<string, unknown>;
}
