/**
 * X-Ray allow/block lists: `GET|POST /api/v1/<blacklist|whitelist>/<email|ip|url|hash|domain>/`
 * and `GET|PUT|PATCH|DELETE /api/v1/<list_type>/<target>/<id>/`. Wire ↔ ListsService only.
 * Paging is DRF's page-number style: `?page=&page_size=` → `{count, next, previous, results}`;
 * `?owner_organization=<id>` narrows a listing to one organization.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { XrayOptions } from './plugin.ts';
import type { ListEntryRow } from '../../store/schema.ts';
import { LIST_TARGETS, LIST_TYPES, type ListTarget, type ListType } from '../../verdict/lists.ts';
import { VALUE_FIELD } from '../../service/list-values.ts';
import type { ListEntryInput } from '../../service/lists-service.ts';
import { invalid, notFound } from '../../service/errors.ts';
import { isoTime } from './mappers.ts';
import { baseUrl, checkFields, intParam } from './params.ts';
import { open, page, responses, type JsonSchema } from './schemas.ts';

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

const VALUE_DOC: Record<ListTarget, string> = {
  email: 'Sender email address (`address`), matched against the sender of email scans',
  ip: 'Sender IP address (`ip`): IPv4, IPv6 or a CIDR range of either, matched against the sender IP of email scans',
  url: 'URL prefix (`prefix`): an http(s) URL or `host[/path]`, scheme ignored; matches URLs of the same host and port whose path starts with it (`exact`: the whole URL)',
  hash: 'File sha256 (`sha256`), matched against the submitted file and every object inside it',
  domain: 'Domain (`domain`), matching the host and all its subdomains in submitted URLs, redirects and links',
};

const targetParam: JsonSchema = { type: 'string', description: `List target: ${LIST_TARGETS.join(', ')}` };
const listParams: JsonSchema = { type: 'object', required: ['target'], properties: { target: targetParam } };
const entryParams: JsonSchema = {
  type: 'object',
  required: ['target', 'id'],
  properties: { target: targetParam, id: { type: 'string', description: 'Entry id (an integer)' } },
};

const listQuery: JsonSchema = {
  type: 'object',
  properties: {
    page: { type: 'string', description: 'Page number, from 1' },
    page_size: { type: 'string', description: `Entries per page (1 to ${MAX_PAGE_SIZE}, default ${DEFAULT_PAGE_SIZE})` },
    owner_organization: { type: 'string', description: 'Only the entries of this organization (one the token can see)' },
  },
};

const entryBody: JsonSchema = {
  type: 'object',
  description: 'Give the value under the target\'s own field: address (email), ip, prefix (url), sha256 (hash), domain',
  properties: {
    address: { type: 'string', description: VALUE_DOC.email },
    ip: { type: 'string', description: VALUE_DOC.ip },
    prefix: { type: 'string', description: VALUE_DOC.url },
    exact: { type: ['boolean', 'string'], description: 'URL entries: match the whole URL rather than a prefix (default false)' },
    sha256: { type: 'string', description: VALUE_DOC.hash },
    domain: { type: 'string', description: VALUE_DOC.domain },
    comment: { type: ['string', 'null'], description: 'Free text' },
    owner_organization: { type: ['integer', 'string'], description: 'Organization the entry belongs to and applies to (with its descendants); default the token\'s own' },
  },
};

const entrySchema: JsonSchema = open({
  id: { type: 'integer' },
  comment: { type: 'string' },
  created_by: { type: 'string', description: '"name <email>" of the user, or the organization token\'s label' },
  last_updated_by: { type: 'string' },
  owner_organization: { type: 'integer' },
  address: { type: 'string' },
  ip: { type: 'string' },
  prefix: { type: 'string' },
  exact: { type: 'boolean' },
  sha256: { type: 'string' },
  domain: { type: 'string' },
  created_at: { type: 'string', description: 'Naive UTC ISO 8601' },
  updated_at: { type: 'string', description: 'Naive UTC ISO 8601' },
});

type ListReq = FastifyRequest<{ Params: { target: string }; Querystring: Record<string, unknown>; Body: unknown }>;
type EntryReq = FastifyRequest<{ Params: { target: string; id: string }; Body: unknown }>;

export async function listsRoutes(api: FastifyInstance, opts: XrayOptions): Promise<void> {
  const { lists } = opts;
  if (!lists) return;

  for (const listType of LIST_TYPES) {
    const base = `/api/v1/${listType}/:target/`;
    const tag = 'lists';
    const what = listType === 'blacklist' ? 'block list' : 'allow list';

    api.get(
      base,
      { schema: { summary: `Entries of a ${what}`, tags: [tag], params: listParams, querystring: listQuery, response: responses({ 200: page(entrySchema) }, [400, 403, 404, 429]) } },
      async (req: ListReq) => {
        const target = targetOf(req.params.target, listType);
        const q = req.query ?? {};
        checkFields(q, new Set(['page', 'page_size', 'owner_organization']));
        const pageNo = q.page === undefined ? 1 : intParam(String(q.page), 'page', 1, 1_000_000);
        const size = q.page_size === undefined ? DEFAULT_PAGE_SIZE : intParam(String(q.page_size), 'page_size', 1, MAX_PAGE_SIZE);
        const owner = q.owner_organization === undefined ? undefined : intParam(String(q.owner_organization), 'owner_organization', 1, Number.MAX_SAFE_INTEGER);
        const { rows, count } = await lists.list(req.principal!, listType, target, { offset: (pageNo - 1) * size, limit: size, ownerOrgId: owner });
        const at = (p: number) => {
          const u = new URL(req.url, baseUrl(req, opts.publicUrl));
          u.searchParams.set('page', String(p));
          return u.href;
        };
        return {
          count,
          next: pageNo * size < count ? at(pageNo + 1) : null,
          previous: pageNo > 1 ? at(Math.min(pageNo - 1, Math.max(1, Math.ceil(count / size)))) : null,
          results: rows.map(entryWire),
        };
      },
    );

    api.post(
      base,
      { schema: { summary: `Add an entry to a ${what}`, tags: [tag], params: listParams, body: entryBody, response: responses({ 201: entrySchema }, [400, 403, 404, 429]) } },
      async (req: ListReq, reply: FastifyReply) => {
        const target = targetOf(req.params.target, listType);
        const row = await lists.create(req.principal!, listType, target, inputOf(req.body, target, true));
        return reply.code(201).send(entryWire(row));
      },
    );

    const entry = `${base}:id/`;
    api.get(
      entry,
      { schema: { summary: `One entry of a ${what}`, tags: [tag], params: entryParams, response: responses({ 200: entrySchema }) } },
      async (req: EntryReq) => {
        const target = targetOf(req.params.target, listType);
        return entryWire(await lists.get(req.principal!, listType, target, idOf(req.params.id, listType, target)));
      },
    );

    const update = async (req: EntryReq) => {
      const target = targetOf(req.params.target, listType);
      const id = idOf(req.params.id, listType, target);
      return entryWire(await lists.update(req.principal!, listType, target, id, inputOf(req.body, target, false)));
    };
    const updateDoc = 'Fields left out keep their values (PUT and PATCH behave alike)';
    api.put(entry, { schema: { summary: `Change an entry of a ${what}`, description: updateDoc, tags: [tag], params: entryParams, body: entryBody, response: responses({ 200: entrySchema }) } }, update);
    api.patch(entry, { schema: { summary: `Change an entry of a ${what}`, description: updateDoc, tags: [tag], params: entryParams, body: entryBody, response: responses({ 200: entrySchema }) } }, update);

    api.delete(
      entry,
      { schema: { summary: `Delete an entry of a ${what}`, tags: [tag], params: entryParams, response: responses({ 204: { type: 'null', description: 'Deleted' } }) } },
      async (req: EntryReq, reply: FastifyReply) => {
        const target = targetOf(req.params.target, listType);
        await lists.delete(req.principal!, listType, target, idOf(req.params.id, listType, target));
        return reply.code(204).send();
      },
    );
  }
}

function targetOf(raw: string, listType: ListType): ListTarget {
  if (!(LIST_TARGETS as readonly string[]).includes(raw)) throw notFound(`list ${listType}/${raw}`);
  return raw as ListTarget;
}

function idOf(raw: string, listType: ListType, target: ListTarget): number {
  if (!/^\d{1,15}$/.test(raw)) throw notFound(`${listType}/${target} entry ${raw}`);
  return Number(raw);
}

function inputOf(body: unknown, target: ListTarget, creating: boolean): ListEntryInput {
  if (body === undefined || body === null) body = {};
  if (typeof body !== 'object' || Array.isArray(body)) throw invalid('body', 'expected a JSON object or form fields');
  const b = body as Record<string, unknown>;
  const field = VALUE_FIELD[target];
  checkFields(b, new Set([field, 'comment', 'owner_organization', 'exact', 'id', 'created_by', 'last_updated_by', 'created_at', 'updated_at']));
  if (creating && b[field] === undefined) throw invalid(field, 'this field is required');
  // read-only fields (id, created_by...) sent back by clients that PUT a fetched entry are ignored
  return { value: b[field], comment: b.comment, exact: b.exact, ownerOrgId: b.owner_organization };
}

export function entryWire(row: ListEntryRow): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: row.id,
    comment: row.comment,
    created_by: row.created_by,
    last_updated_by: row.updated_by,
    owner_organization: row.org_id,
    [VALUE_FIELD[row.target]]: row.value,
  };
  if (row.target === 'url') out.exact = row.exact === 1;
  out.created_at = isoTime(row.created_at);
  out.updated_at = isoTime(row.updated_at);
  return out;
}
