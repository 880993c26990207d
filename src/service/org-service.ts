/**
 * Organizations: a tree. A token of an organization acts on it and on its descendants; a child
 * never sees its parent or its siblings. An inactive organization switches off its whole subtree
 * (ScanService.authenticate refuses their tokens); its ancestors still read and manage it, so a
 * parent can switch a child back on.
 *
 * Settings live in `organizations.settings` (JSON). ORG_SETTINGS is the one table of them: their
 * defaults (the X-Ray specification's), their wire schema (the API validates and documents it
 * from there) and who may change them. Other services read them with `settings(orgId)`.
 *
 * @example
 *   const orgs = new OrgService(store);
 *   const { id } = await orgs.create(principal, { name: 'acme-eu', active: true, seats: 50 });
 *   const s = await orgs.settings(id); // s.send_malicious_emails === true
 */
import type { Store } from '../store/store.ts';
import type { OrgRow } from '../store/schema.ts';
import type { Principal } from './scan-service.ts';
import { requirePermission } from './permissions.ts';
import { forbidden, invalid, notFound } from './errors.ts';

export const ORG_ORIGINS = ['office365', 'gmail', 'onedrivebiz', 'sharepoint', 'gdrive', 'dropbox', 'salesforce', 's3', 'teams'] as const;

const EMAIL = /^[^\s@,;]+@[^\s@,;]+\.[^\s@,;]+$/;

interface SettingSpec<T> {
  default: T;
  /** JSON schema of the wire value (used by the API to validate and document). */
  schema: Record<string, unknown>;
  /** Only an ancestor (or the root organization itself) may change it: commercial terms. */
  ancestorOnly?: boolean;
  /** Semantic check beyond the schema; returns an error message or undefined. */
  check?: (v: T) => string | undefined;
}

const flag = (def: boolean, description: string): SettingSpec<boolean> => ({ default: def, schema: { type: 'boolean', default: def, description } });

/** Every organization setting: default, wire schema, rules. Add one entry to add a setting. */
export const ORG_SETTINGS = {
  origins: {
    default: [] as string[],
    schema: { type: 'array', items: { type: 'string', enum: [...ORG_ORIGINS] }, uniqueItems: true, default: [], description: 'Services monitored for the organization' },
  } satisfies SettingSpec<string[]>,
  email_report_recipients: {
    default: null as string | null,
    schema: { type: ['string', 'null'], maxLength: 2000, default: null, description: 'Email address(es) that receive reports; several separated by commas' },
    check: (v: string | null) =>
      v === null || v.trim() === '' || v.split(/[,;]/).every((a) => EMAIL.test(a.trim())) ? undefined : 'expected email addresses separated by commas',
  } satisfies SettingSpec<string | null>,
  send_malicious_emails: flag(true, 'Blocking mode for malicious emails'),
  send_spam_emails: flag(true, 'Blocking mode for spam emails'),
  send_blocked_emails: flag(true, 'Blocking mode for blocked emails'),
  email_weekly_report: flag(true, 'Send weekly reports'),
  email_monthly_report: flag(true, 'Send monthly reports'),
  email_domains_report: flag(false, 'Send domain reports'),
  email_end_user_on_malicious_alert: flag(false, 'Send an email to the end user when a malicious email was blocked'),
  client_alert_malicious_to_admin_email: flag(false, 'Send an alert to the administrator when a malicious email was detected'),
  throttle_per_minute: {
    default: null as number | null,
    schema: { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000, default: null, description: 'API calls per token per minute before 429 (null: the service default `maxRequestsPerMinute`; 0: no limit)' },
    ancestorOnly: true,
  } satisfies SettingSpec<number | null>,
  investigation_webhook_url: {
    default: null as string | null,
    schema: { type: ['string', 'null'], maxLength: 2048, default: null, description: 'URL that investigation requests are announced to (POST, JSON)' },
    check: (v: string | null) => {
      if (v === null || v === '') return undefined;
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : 'only http and https URLs';
      } catch {
        return 'not a valid URL';
      }
    },
  } satisfies SettingSpec<string | null>,
  allow_list_overrides_signatures: flag(false, 'An allow-list hit also clears a scan that a signature engine (ClamAV, YARA) found malicious'),
} as const;

export type OrgSettingName = keyof typeof ORG_SETTINGS;
export type OrgSettings = { -readonly [K in OrgSettingName]: (typeof ORG_SETTINGS)[K]['default'] };

export const ORG_SETTING_NAMES = Object.keys(ORG_SETTINGS) as OrgSettingName[];

export interface Organization {
  id: number;
  name: string;
  parentId: number | null;
  parentName: string | null;
  active: boolean;
  seats: number;
  createdAt: number;
  settings: OrgSettings;
}

export interface NewOrganization extends Partial<OrgSettings> {
  name: string;
  active: boolean;
  seats: number;
  /** Parent organization (default: the caller's own). */
  parentId?: number;
}

export type OrganizationPatch = Partial<OrgSettings> & { name?: string; active?: boolean; seats?: number };

const NAME = /^[\w .@-]{1,100}$/;

export class OrgService {
  constructor(private readonly store: Store) {}

  /** Creates a child of `input.parentId` (default: the caller's organization). */
  async create(principal: Principal, input: NewOrganization): Promise<Organization> {
    requirePermission(principal, 'org:manage');
    const parentId = input.parentId ?? principal.orgId;
    if (!principal.orgIds.includes(parentId)) throw invalid('parent_organization', 'not an organization this token can use');
    await this.checkName(input.name);
    checkSeats(input.seats);
    const settings = { ...defaults(), ...pickSettings(input) };
    checkSettings(settings);
    const row = await this.store.db
      .insertInto('organizations')
      .values({ name: input.name, parent_id: parentId, active: input.active ? 1 : 0, seats: input.seats, settings: JSON.stringify(settings), created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
    return this.toOrganization(row);
  }

  /** Organizations the principal can see (its own and its descendants), by id. */
  async list(principal: Principal, page: { offset: number; limit: number }): Promise<{ rows: Organization[]; count: number }> {
    requirePermission(principal, 'org:read');
    const rows = await this.store.db.selectFrom('organizations').selectAll().where('id', 'in', principal.orgIds).orderBy('id').offset(page.offset).limit(page.limit).execute();
    return { rows: await Promise.all(rows.map((r) => this.toOrganization(r))), count: principal.orgIds.length };
  }

  async get(principal: Principal, id: number): Promise<Organization> {
    requirePermission(principal, 'org:read');
    return this.toOrganization(await this.visibleRow(principal, id));
  }

  async update(principal: Principal, id: number, patch: OrganizationPatch): Promise<Organization> {
    requirePermission(principal, 'org:manage');
    const row = await this.visibleRow(principal, id);
    // commercial terms (active, seats, throttle) are set from above: by an ancestor's token, or
    // on the root organization by its own
    const fromAbove = row.id !== principal.orgId || row.parent_id === null;
    const restricted = [
      ...(['active', 'seats'] as const).filter((k) => patch[k] !== undefined),
      ...ORG_SETTING_NAMES.filter((k) => (ORG_SETTINGS[k] as SettingSpec<unknown>).ancestorOnly && patch[k] !== undefined),
    ];
    if (!fromAbove && restricted.length > 0) throw forbidden(`only a parent organization may change ${restricted.map((k) => (k === 'seats' ? 'number_of_seats' : k)).join(', ')}`);
    if (patch.active === false && row.id === principal.orgId) throw invalid('active', 'an organization cannot deactivate itself');
    if (patch.name !== undefined && patch.name !== row.name) await this.checkName(patch.name);
    if (patch.seats !== undefined) checkSeats(patch.seats);
    const settings = { ...this.parseSettings(row), ...pickSettings(patch) };
    checkSettings(settings);
    await this.store.db
      .updateTable('organizations')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.active !== undefined ? { active: patch.active ? 1 : 0 } : {}),
        ...(patch.seats !== undefined ? { seats: patch.seats } : {}),
        settings: JSON.stringify(settings),
      })
      .where('id', '=', id)
      .execute();
    return this.toOrganization((await this.store.getOrg(id))!);
  }

  /** The settings of an organization, defaults filled in (for the other services). */
  async settings(orgId: number): Promise<OrgSettings> {
    const row = await this.store.getOrg(orgId);
    if (!row) throw notFound(`organization ${orgId}`);
    return this.parseSettings(row);
  }

  /** Names of organizations by id (for listings of users, lists...). */
  async names(ids: number[]): Promise<Map<number, string>> {
    const uniq = [...new Set(ids)];
    if (uniq.length === 0) return new Map();
    const rows = await this.store.db.selectFrom('organizations').select(['id', 'name']).where('id', 'in', uniq).execute();
    return new Map(rows.map((r) => [r.id, r.name]));
  }

  private async visibleRow(principal: Principal, id: number): Promise<OrgRow> {
    const row = principal.orgIds.includes(id) ? await this.store.getOrg(id) : undefined;
    if (!row) throw notFound(`organization ${id}`);
    return row;
  }

  private async checkName(name: string): Promise<void> {
    if (typeof name !== 'string' || !NAME.test(name)) throw invalid('name', 'use 1-100 letters, digits, spaces, dots, @, _ or -');
    // DRF answers a unique-field clash with 400 naming the field; so do we
    if (await this.store.getOrgByName(name)) throw invalid('name', 'an organization with this name already exists');
  }

  private parseSettings(row: OrgRow): OrgSettings {
    let stored: Record<string, unknown> = {};
    try {
      const v = JSON.parse(row.settings) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) stored = v as Record<string, unknown>;
    } catch {
      // a damaged settings column reads as the defaults
    }
    return { ...defaults(), ...pickSettings(stored as Partial<OrgSettings>) };
  }

  private async toOrganization(row: OrgRow): Promise<Organization> {
    const parent = row.parent_id !== null ? await this.store.getOrg(row.parent_id) : undefined;
    return {
      id: row.id,
      name: row.name,
      parentId: row.parent_id,
      parentName: parent?.name ?? null,
      active: row.active === 1,
      seats: row.seats,
      createdAt: row.created_at,
      settings: this.parseSettings(row),
    };
  }
}

function defaults(): OrgSettings {
  return Object.fromEntries(ORG_SETTING_NAMES.map((k) => [k, structuredClone(ORG_SETTINGS[k].default)])) as OrgSettings;
}

function pickSettings(v: Partial<OrgSettings>): Partial<OrgSettings> {
  const out: Record<string, unknown> = {};
  for (const k of ORG_SETTING_NAMES) if (v[k] !== undefined) out[k] = v[k];
  return out as Partial<OrgSettings>;
}

function checkSettings(s: OrgSettings): void {
  for (const k of ORG_SETTING_NAMES) {
    const spec = ORG_SETTINGS[k] as SettingSpec<unknown>;
    const msg = spec.check?.(s[k]);
    if (msg) throw invalid(k, msg);
  }
  if (s.origins.some((o) => !(ORG_ORIGINS as readonly string[]).includes(o))) throw invalid('origins', `each one of ${ORG_ORIGINS.join(', ')}`);
}

function checkSeats(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 10_000_000) throw invalid('number_of_seats', 'expected a whole number from 0');
}
