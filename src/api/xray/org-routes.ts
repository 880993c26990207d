/**
 * X-Ray organizations and users: `POST|GET /api/organizations/`, `GET|PATCH
 * /api/organizations/<id>/`, `GET /api/v1/users/`, `POST /api/v1/users/invite_user/`,
 * `GET|PATCH /api/v1/users/<id>/`. Wire ↔ OrgService/UserService only; the schemas below
 * validate the requests and document them in the OpenAPI document.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { XrayOptions } from './plugin.ts';
import { ORG_SETTINGS, ORG_SETTING_NAMES, type Organization, type OrgSettings } from '../../service/org-service.ts';
import { ROLES, type Role } from '../../service/permissions.ts';
import type { UserRow } from '../../store/schema.ts';
import { isoTime } from './mappers.ts';
import { baseUrl } from './params.ts';
import { idParams, open, page, pageQuery, responses, type JsonSchema } from './schemas.ts';

const settingProps: Record<string, JsonSchema> = Object.fromEntries(ORG_SETTING_NAMES.map((k) => [k, ORG_SETTINGS[k].schema]));
// a default in a request schema would be filled in by the validator: on PATCH that would reset
// every omitted setting, so request schemas carry none (the service applies the defaults)
const settingPropsNoDefaults: Record<string, JsonSchema> = Object.fromEntries(
  Object.entries(settingProps).map(([k, s]) => {
    const { default: d, ...rest } = s;
    return [k, { ...rest, description: `${String(rest.description ?? '')} (default ${JSON.stringify(d)})` }];
  }),
);

const orgFields: Record<string, JsonSchema> = {
  name: { type: 'string', minLength: 1, maxLength: 100, description: 'Name of the organization (unique)' },
  active: { type: 'boolean', description: 'Whether the organization is active; an inactive one refuses the tokens of its whole subtree' },
  number_of_seats: { type: 'integer', minimum: 0, description: 'Number of email addresses in the organization' },
};

const orgCreateBody: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'active', 'number_of_seats'],
  properties: {
    ...orgFields,
    parent_organization: { type: 'integer', description: 'Parent organization id (default: the caller\'s organization); must be visible to the token' },
    ...settingPropsNoDefaults,
  },
};

const orgPatchBody: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { ...orgFields, ...settingPropsNoDefaults },
};

const orgSchema: JsonSchema = open({
  id: { type: 'integer' },
  ...orgFields,
  parent_organization: { type: ['integer', 'null'] },
  parent_organization_name: { type: ['string', 'null'] },
  created_at: { type: 'string', description: 'Naive UTC ISO 8601' },
  ...settingProps,
});

const userSchema: JsonSchema = open({
  id: { type: 'integer' },
  name: { type: 'string' },
  email: { type: 'string' },
  role: { type: 'string', enum: [...ROLES] },
  organization: { type: 'integer' },
  organization_name: { type: ['string', 'null'] },
  active: { type: 'boolean' },
  created_at: { type: 'string' },
  disabled_at: { type: ['string', 'null'] },
});

const inviteBody: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['email'],
  properties: {
    email: { type: 'string', minLength: 3, maxLength: 320, description: 'The user\'s email (unique)' },
    name: { type: 'string', minLength: 1, maxLength: 200, description: 'Full name (default: the email)' },
    role: { type: 'string', enum: [...ROLES], description: 'Role (default Viewer)' },
    organization: { type: 'integer', description: 'Organization id (default: the caller\'s); must be visible to the token' },
    password: { type: 'string', minLength: 10, maxLength: 1000, description: 'Password for sign-in (CSS token endpoint, console); optional' },
  },
};

const userPatchBody: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    role: { type: 'string', enum: [...ROLES] },
    active: { type: 'boolean', description: 'false disables the user: its tokens are refused from the next request' },
  },
};

type PageQ = { page: number; page_size: number };

export async function orgRoutes(api: FastifyInstance, opts: XrayOptions): Promise<void> {
  const { orgs, users } = opts;
  if (!orgs || !users) return;
  const orgNames = (ids: number[]) => orgs.names(ids);

  /** `next`/`previous` as full URLs of this request with another `page`. */
  const links = (req: FastifyRequest, q: PageQ, count: number) => {
    const at = (p: number) => {
      const u = new URL(req.url, baseUrl(req, opts.publicUrl));
      u.searchParams.set('page', String(p));
      return u.href;
    };
    return { next: q.page * q.page_size < count ? at(q.page + 1) : null, previous: q.page > 1 ? at(q.page - 1) : null };
  };

  // Organizations ----------------------------------------------------------------------------

  api.post(
    '/api/organizations/',
    {
      schema: {
        summary: 'Add an organization (a child of the caller\'s)',
        tags: ['organizations'],
        body: orgCreateBody,
        response: responses({ 201: open({ id: { type: 'integer', description: 'The new organization\'s id' } }) }, [400, 403, 429]),
      },
    },
    async (req: FastifyRequest<{ Body: Record<string, unknown> }>, reply) => {
      const b = req.body;
      const org = await orgs.create(req.principal!, {
        ...settingsOf(b),
        name: b.name as string,
        active: b.active as boolean,
        seats: b.number_of_seats as number,
        parentId: b.parent_organization as number | undefined,
      });
      return reply.code(201).send({ id: org.id });
    },
  );

  api.get(
    '/api/organizations/',
    { schema: { summary: 'Organizations visible to the token (its own and its descendants)', tags: ['organizations'], querystring: pageQuery, response: responses({ 200: page(orgSchema) }, [400, 403, 429]) } },
    async (req: FastifyRequest<{ Querystring: PageQ }>) => {
      const q = req.query;
      const { rows, count } = await orgs.list(req.principal!, { offset: (q.page - 1) * q.page_size, limit: q.page_size });
      return { count, ...links(req, q, count), results: rows.map(orgWire) };
    },
  );

  api.get(
    '/api/organizations/:id/',
    { schema: { summary: 'One organization and its settings', tags: ['organizations'], params: idParams('organization'), response: responses({ 200: orgSchema }) } },
    async (req: FastifyRequest<{ Params: { id: string } }>) => orgWire(await orgs.get(req.principal!, Number(req.params.id))),
  );

  api.patch(
    '/api/organizations/:id/',
    {
      schema: {
        summary: 'Change an organization\'s name, state, seats or settings',
        description: '`active`, `number_of_seats` and `throttle_per_minute` are set by an ancestor organization\'s token (or on the root organization by its own). An organization cannot deactivate itself.',
        tags: ['organizations'],
        params: idParams('organization'),
        body: orgPatchBody,
        response: responses({ 200: orgSchema }),
      },
    },
    async (req: FastifyRequest<{ Params: { id: string }; Body: Record<string, unknown> }>) => {
      const b = req.body;
      const org = await orgs.update(req.principal!, Number(req.params.id), {
        ...settingsOf(b),
        name: b.name as string | undefined,
        active: b.active as boolean | undefined,
        seats: b.number_of_seats as number | undefined,
      });
      return orgWire(org);
    },
  );

  // Users --------------------------------------------------------------------------------------

  api.get(
    '/api/v1/users/',
    { schema: { summary: 'Users of the organizations visible to the token (administrators)', tags: ['users'], querystring: pageQuery, response: responses({ 200: page(userSchema) }, [400, 403, 429]) } },
    async (req: FastifyRequest<{ Querystring: PageQ }>) => {
      const q = req.query;
      const { rows, count } = await users.listVisible(req.principal!, { offset: (q.page - 1) * q.page_size, limit: q.page_size });
      const names = await orgNames(rows.map((r) => r.org_id));
      return { count, ...links(req, q, count), results: rows.map((u) => userWire(u, names)) };
    },
  );

  api.post(
    '/api/v1/users/invite_user/',
    {
      schema: {
        summary: 'Create a user and return its API token (shown once)',
        description: 'Administrators only. The token acts with the user\'s current role and stops working as soon as the user is disabled.',
        tags: ['users'],
        body: inviteBody,
        response: responses({ 201: open({ ...(userSchema.properties as Record<string, JsonSchema>), token: { type: 'string', description: 'The user\'s API token; only its hash is stored' } }) }, [400, 403, 429]),
      },
    },
    async (req: FastifyRequest<{ Body: { email: string; name?: string; role?: Role; organization?: number; password?: string } }>, reply) => {
      const b = req.body;
      const { user, token } = await users.invite(req.principal!, { email: b.email, name: b.name ?? b.email, role: b.role ?? 'Viewer', orgId: b.organization, password: b.password });
      return reply.code(201).send({ ...userWire(user, await orgNames([user.org_id])), token });
    },
  );

  api.get(
    '/api/v1/users/:id/',
    { schema: { summary: 'One user', tags: ['users'], params: idParams('user'), response: responses({ 200: userSchema }) } },
    async (req: FastifyRequest<{ Params: { id: string } }>) => {
      const user = await users.getVisible(req.principal!, Number(req.params.id));
      return userWire(user, await orgNames([user.org_id]));
    },
  );

  api.patch(
    '/api/v1/users/:id/',
    { schema: { summary: 'Disable or enable a user, or change its name or role', tags: ['users'], params: idParams('user'), body: userPatchBody, response: responses({ 200: userSchema }) } },
    async (req: FastifyRequest<{ Params: { id: string }; Body: { name?: string; role?: Role; active?: boolean } }>) => {
      const user = await users.update(req.principal!, Number(req.params.id), req.body);
      return userWire(user, await orgNames([user.org_id]));
    },
  );
}

function settingsOf(b: Record<string, unknown>): Partial<OrgSettings> {
  const out: Record<string, unknown> = {};
  for (const k of ORG_SETTING_NAMES) if (b[k] !== undefined) out[k] = b[k];
  return out as Partial<OrgSettings>;
}

function orgWire(o: Organization): Record<string, unknown> {
  return {
    id: o.id,
    name: o.name,
    active: o.active,
    number_of_seats: o.seats,
    parent_organization: o.parentId,
    parent_organization_name: o.parentName,
    created_at: isoTime(o.createdAt),
    ...o.settings,
  };
}

function userWire(u: UserRow, orgNames: Map<number, string>): Record<string, unknown> {
  return {
    id: u.id,
    name: u.name,
    email: u.email,
    role: u.role,
    organization: u.org_id,
    organization_name: orgNames.get(u.org_id) ?? null,
    active: u.active === 1,
    created_at: isoTime(u.created_at),
    disabled_at: isoTime(u.disabled_at),
  };
}
