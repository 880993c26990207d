/**
 * X-Ray search area: scan search (`GET /api/v1/scans/list/`), the incidents feed
 * (`GET /api/v1/scans/incidents/`, polled by Cortex XSOAR) and the SIEM export
 * (`GET /api/get_siem_logs/`, read by a Splunk add-on). Wire ↔ SearchService only.
 *
 * Multiple values: `p[]=a,b` (split on commas) and repeated `p[]=a&p[]=b` or `p=a&p=b`; a
 * plain `p=a,b` is one value (so free text may hold commas). OR within a parameter, AND across.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import type { XrayOptions } from './plugin.ts';
import type { DescendantField, PageData, SearchQuery } from '../../service/search-service.ts';
import { invalid } from '../../service/errors.ts';
import { isVerdictCode, VERDICT_CODES, type VerdictCode } from '../../verdict/codes.ts';
import { baseUrl } from './params.ts';
import { incidentRecord, mapPage, searchResult, siemEvent } from './search-mappers.ts';

type Query = Record<string, string | string[] | undefined>;
type ListRequest = FastifyRequest<{ Querystring: Query }>;

const SEARCH_PAGE = 100;
const INCIDENTS_PAGE = 20;
const SIEM_PAGE = 100;
const MAX_VALUES = 100;

/** `search_descendants.<name>` → the service's field. */
const DESCENDANT_PARAMS: Record<string, DescendantField> = {
  subject: 'subject',
  original_message_id: 'messageId',
  sender_domain: 'senderDomain',
  source_ip: 'senderIp',
  reply_to: 'replyTo',
  source: 'returnPath',
  receiver_domain: 'receiverDomain',
  original_file_path: 'originalFilePath',
  envelope_to: 'envelopeTo',
  original_file_name: 'fileName',
  original_type: 'fileType',
  sample_sha256: 'sha256',
  mime_type: 'mimeType',
  path: 'url',
  domain: 'domain',
  url_title: 'urlTitle',
  url_description: 'urlDescription',
};

/** The `verbose_action` values of the specification. */
const ACTIONS = ['indelivery', 'delivered', 'quarantine', 'scanned', 'delivery_error'];

const SEARCH_PARAMS = new Set([
  'start', 'end', 'organization_id', 'channel', 'belongs_to_vip', 'verbose_verdict', 'handle_status', 'verbose_action', 'sample_from',
  'receiver_address', 'sample.to_users.un_region', 'sample.to_users.country', 'max_group_size', 'evidence.data.brand', 'is_highlighted',
  '_cursor', 'page_size',
  ...Object.keys(DESCENDANT_PARAMS).map((k) => `search_descendants.${k}`),
]);

/**
 * Query parameters by name without `[]`, each a list of values: `p[]` values are split on
 * commas, repeats are collected, empty values dropped.
 */
export function multiValues(query: Query): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [key, raw] of Object.entries(query ?? {})) {
    if (raw === undefined) continue;
    const bracket = key.endsWith('[]');
    const name = bracket ? key.slice(0, -2) : key;
    const list = out.get(name) ?? [];
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      for (const part of bracket ? v.split(',') : [v]) {
        const t = part.trim();
        if (t !== '') list.push(t);
      }
    }
    if (list.length > MAX_VALUES) throw invalid(name, `at most ${MAX_VALUES} values`);
    out.set(name, list);
  }
  return out;
}

function checkKnown(params: Map<string, string[]>, allowed: Set<string>): void {
  for (const k of params.keys()) if (!allowed.has(k)) throw invalid(k, 'unknown parameter');
}

function one(params: Map<string, string[]>, name: string): string | undefined {
  const v = params.get(name);
  if (!v || v.length === 0) return undefined;
  if (v.length > 1) throw invalid(name, 'give one value');
  return v[0];
}

function bool(params: Map<string, string[]>, name: string): boolean | undefined {
  const v = one(params, name);
  if (v === undefined) return undefined;
  if (/^(true|1)$/i.test(v)) return true;
  if (/^(false|0)$/i.test(v)) return false;
  throw invalid(name, `expected true or false, not "${v.slice(0, 50)}"`);
}

function epochSeconds(params: Map<string, string[]>, name: string): number | undefined {
  const v = one(params, name);
  if (v === undefined) return undefined;
  if (!/^\d{10}$/.test(v)) throw invalid(name, 'expected a 10-digit epoch timestamp (seconds)');
  return Number(v) * 1000;
}

function integer(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v) || Number(v) < min || Number(v) > max) throw invalid(name, `expected an integer from ${min} to ${max}`);
  return Number(v);
}

function verdicts(params: Map<string, string[]>): VerdictCode[] | undefined {
  const v = params.get('verbose_verdict');
  if (!v?.length) return undefined;
  return v.map((x) => {
    const code = x.toUpperCase();
    if (!isVerdictCode(code)) throw invalid('verbose_verdict', `"${x.slice(0, 50)}" is not a verdict code: use ${VERDICT_CODES.join(', ')}`);
    return code;
  });
}

function texts(params: Map<string, string[]>, name: string, check?: (v: string) => string | undefined): string[] | undefined {
  const v = params.get(name);
  if (!v?.length) return undefined;
  for (const x of v) {
    if (x.length > 1000) throw invalid(name, 'values are at most 1000 characters');
    const problem = check?.(x);
    if (problem) throw invalid(name, problem);
  }
  return v;
}

const CHECKS: Partial<Record<DescendantField, (v: string) => string | undefined>> = {
  sha256: (v) => (/^[0-9a-f]{64}$/i.test(v) ? undefined : `"${v.slice(0, 80)}" is not a sha256 (64 hex digits)`),
  senderIp: (v) => (ipaddr.isValid(v) ? undefined : `"${v.slice(0, 80)}" is not an IP address`),
};

/** The wire parameters of a scan search as a SearchQuery (400 naming the bad parameter). */
export function searchQuery(query: Query): SearchQuery {
  const p = multiValues(query);
  checkKnown(p, SEARCH_PARAMS);
  const q: SearchQuery = { limit: integer(one(p, 'page_size'), 'page_size', 1, 1000) ?? SEARCH_PAGE };
  q.createdFrom = epochSeconds(p, 'start');
  const end = epochSeconds(p, 'end');
  // inclusive: the whole second named by `end`
  if (end !== undefined) q.createdTo = end + 999;
  if (q.createdFrom !== undefined && q.createdTo !== undefined && q.createdFrom > q.createdTo) throw invalid('end', 'is before start');
  q.orgIds = p.get('organization_id')?.map((v) => integer(v, 'organization_id', 1, Number.MAX_SAFE_INTEGER)!);
  q.channels = texts(p, 'channel', (v) => (/^[a-z0-9_.-]{1,40}$/i.test(v) ? undefined : `"${v.slice(0, 50)}" is not a channel name`))?.map((v) => v.toLowerCase());
  q.vip = bool(p, 'belongs_to_vip');
  q.highlighted = bool(p, 'is_highlighted');
  q.verdicts = verdicts(p);
  q.handleStatuses = texts(p, 'handle_status');
  q.actions = texts(p, 'verbose_action', (v) => (ACTIONS.includes(v.toLowerCase()) ? undefined : `"${v.slice(0, 50)}" is not one of ${ACTIONS.join(', ')}`));
  q.senders = texts(p, 'sample_from');
  q.receivers = texts(p, 'receiver_address');
  q.regions = texts(p, 'sample.to_users.un_region');
  q.countries = texts(p, 'sample.to_users.country');
  q.minGroupSize = integer(one(p, 'max_group_size'), 'max_group_size', 0, 1_000_000_000);
  q.brands = texts(p, 'evidence.data.brand');
  q.descendants = {};
  for (const [wire, field] of Object.entries(DESCENDANT_PARAMS)) {
    const v = texts(p, `search_descendants.${wire}`, CHECKS[field]);
    if (v) q.descendants[field] = v;
  }
  q.beforeId = integer(one(p, '_cursor'), '_cursor', 1, Number.MAX_SAFE_INTEGER);
  return q;
}

/** The request's own URL with `_cursor` set: the full URL of the next page. */
function nextUrl(req: FastifyRequest, publicUrl: string | undefined, cursor: string): string {
  const u = new URL(req.url, baseUrl(req, publicUrl));
  u.searchParams.set('_cursor', cursor);
  return u.href;
}

const describedQuery = (props: Record<string, string>) => ({
  type: 'object',
  // values are validated by the handler (multi-value syntaxes); these entries document them
  properties: Object.fromEntries(Object.entries(props).map(([k, d]) => [k, { description: d }])),
});

const SEARCH_DOC: Record<string, string> = {
  start: 'Created at or after (10-digit epoch seconds)',
  end: 'Created at or before (10-digit epoch seconds, the whole second included)',
  organization_id: 'Only these organizations (each visible to the token)',
  channel: 'Channel (origin): api, email, s3, ...',
  belongs_to_vip: 'true or false',
  verbose_verdict: `Verdict: ${VERDICT_CODES.join(', ')}`,
  handle_status: 'Incident-response handling status',
  verbose_action: ACTIONS.join(', '),
  sample_from: 'Sender address (exact, any case)',
  receiver_address: 'A recipient address (exact, any case)',
  'sample.to_users.un_region': 'A recipient region',
  'sample.to_users.country': 'A recipient country',
  max_group_size: 'Minimum campaign size',
  'evidence.data.brand': 'Brand named by a finding (contains, any case)',
  is_highlighted: 'true or false',
  ...Object.fromEntries(Object.keys(DESCENDANT_PARAMS).map((k) => [`search_descendants.${k}`, `Matches the scan or any object inside it (${k})`])),
  _cursor: 'From a previous page\'s `next`',
  page_size: `Results per page (1 to 1000, default ${SEARCH_PAGE})`,
};

export async function searchRoutes(api: FastifyInstance, opts: XrayOptions): Promise<void> {
  const search = opts.search;
  if (!search) return;

  const listPage = (req: FastifyRequest, page: PageData, results: unknown[], cursor: string | undefined) => ({
    count: page.count,
    page_result_count: results.length,
    next: cursor === undefined ? null : nextUrl(req, opts.publicUrl, cursor),
    has_more: page.hasMore,
    results,
  });

  api.get(
    '/api/v1/scans/list/',
    {
      schema: {
        summary: 'Scan search',
        description:
          'Root scans matching every given parameter (OR between the values of one parameter: `p[]=a,b` or `p[]=a&p[]=b`), newest first. ' +
          '`search_descendants.*` match a scan when it or any object inside it matches. `count` is exact up to the configured `searchCountLimit`. ' +
          '`next` continues after the last result (present whenever results were returned); `has_more` says whether more exist now.',
        tags: ['scans'],
        querystring: describedQuery(SEARCH_DOC),
      },
    },
    async (req: ListRequest) => {
      const q = searchQuery(req.query);
      const page = await search.search(req.principal!, q);
      const results = mapPage(page, searchResult);
      const last = page.rows[page.rows.length - 1];
      return { ...listPage(req, page, results, last ? String(last.id) : undefined), aggregations: null };
    },
  );

  api.get(
    '/api/v1/scans/incidents/',
    {
      schema: {
        summary: 'Incidents feed (Cortex XSOAR)',
        description:
          `Detected scans (every verdict but CLN unless \`verbose_verdict[]\` says which) with an id above \`_cursor\`, oldest first, ${INCIDENTS_PAGE} per page. ` +
          'Each record has `Scan Id` and `Attachment` beside the scan-search fields. `next` is set whenever results were returned; an empty page ends the walk.',
        tags: ['scans'],
        querystring: describedQuery({ verbose_verdict: `Verdicts to include (repeat \`verbose_verdict[]\`)`, _cursor: 'The last `Scan Id` seen (0 at first)' }),
      },
    },
    async (req: ListRequest) => {
      const p = multiValues(req.query);
      checkKnown(p, new Set(['verbose_verdict', '_cursor']));
      const afterId = integer(one(p, '_cursor'), '_cursor', 0, Number.MAX_SAFE_INTEGER) ?? 0;
      const page = await search.incidents(req.principal!, { verdicts: verdicts(p), afterId, limit: INCIDENTS_PAGE });
      const results = mapPage(page, incidentRecord);
      const last = page.rows[page.rows.length - 1];
      return listPage(req, page, results, last ? String(last.id) : undefined);
    },
  );

  api.get(
    '/api/get_siem_logs/',
    {
      schema: {
        summary: 'SIEM export',
        description:
          'Scans that finished (complete or failed) after `start`, in finishing order, each with `timestamp` (epoch seconds of the finish). ' +
          'Follow `next` until it is null; keep the largest `timestamp` as the next `start`.',
        tags: ['scans'],
        querystring: describedQuery({ start: 'Epoch seconds (fractions allowed; 0 for everything)', _cursor: 'From a previous page\'s `next`', page_size: `1 to 1000, default ${SIEM_PAGE}` }),
      },
    },
    async (req: ListRequest) => {
      const p = multiValues(req.query);
      checkKnown(p, new Set(['start', '_cursor', 'page_size']));
      // A client may send `start` again beside the one inside `next`: the cursor decides then.
      const starts = (p.get('start') ?? []).map((v) => {
        if (!/^\d{1,10}(\.\d{1,9})?$/.test(v)) throw invalid('start', 'expected epoch seconds (e.g. 1700000000 or 1700000000.123)');
        return Math.round(Number(v) * 1000);
      });
      let after: { finishedAt: number; id: number } | undefined;
      const cursor = one(p, '_cursor');
      if (cursor !== undefined) {
        const m = /^(\d{1,15})_(\d{1,15})$/.exec(cursor);
        if (!m) throw invalid('_cursor', 'not a cursor given by a previous page');
        after = { finishedAt: Number(m[1]), id: Number(m[2]) };
      }
      const limit = integer(one(p, 'page_size'), 'page_size', 1, 1000) ?? SIEM_PAGE;
      const page = await search.siem(req.principal!, { afterMs: starts.length ? Math.max(...starts) : undefined, after, limit });
      const results = mapPage(page, siemEvent);
      const last = page.rows[page.rows.length - 1];
      return listPage(req, page, results, page.hasMore && last ? `${last.finished_at}_${last.id}` : undefined);
    },
  );
}
