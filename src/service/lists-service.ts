/**
 * Allow/block lists: entries per organization (email, ip, url, hash, domain; blacklist and
 * whitelist), managed by tokens holding `list:read` / `list:write`, and applied to every scan
 * when it finishes (the scan runner calls `applyToReport` between the engine and the store).
 *
 * Tenancy: a token reads and writes the entries of its organization and its descendants; an
 * entry applies to the scans of its owner organization and of all organizations below it
 * (a parent's block list protects its children). A child never sees its parent's entries
 * through the API, though they apply to its scans.
 *
 * @example
 * const lists = new ListsService({ store });
 * const e = await lists.create(principal, 'blacklist', 'hash', { sha256: 'ab…', comment: 'seen in campaign' });
 * report = await lists.applyToReport(scanRow, report); // root verdict BLK, decision naming entry e.id
 */
import type { Store } from '../store/store.ts';
import type { ListEntryRow, ScanRow } from '../store/schema.ts';
import type { ObjectReport } from '../engine/report.ts';
import { walk } from '../engine/report.ts';
import { applyListPolicy, type ListMatch, type ListPolicy, type ListTarget, type ListType } from '../verdict/lists.ts';
import { requirePermission } from './permissions.ts';
import { invalid, notFound } from './errors.ts';
import type { Principal } from './scan-service.ts';
import { addressOf, canonicalUrl, CIDR_KEY, domainSuffixes, ipMatches, normaliseValue, parseIp, urlMatches, VALUE_FIELD } from './list-values.ts';

export interface ListEntryInput {
  /** The target's value under its wire name (address, ip, prefix, sha256, domain). */
  value?: unknown;
  comment?: unknown;
  exact?: unknown;
  ownerOrgId?: unknown;
}

export interface ListQuery {
  /** 0-based offset and page size. */
  offset: number;
  limit: number;
  ownerOrgId?: number;
}

export interface ListsDeps {
  store: Store;
}

/** The organization setting read by the list policy (organizations.settings JSON). */
export const ALLOW_OVERRIDES_SIGNATURES = 'allow_list_overrides_signatures';

const MAX_COMMENT = 4000;

export class ListsService {
  constructor(private readonly deps: ListsDeps) {}

  private get db() {
    return this.deps.store.db;
  }

  // Management ----------------------------------------------------------------------------

  async list(principal: Principal, list: ListType, target: ListTarget, q: ListQuery): Promise<{ count: number; rows: ListEntryRow[] }> {
    requirePermission(principal, 'list:read');
    let orgIds = principal.orgIds;
    if (q.ownerOrgId !== undefined) {
      if (!orgIds.includes(q.ownerOrgId)) throw invalid('owner_organization', 'not an organization this token can see');
      orgIds = [q.ownerOrgId];
    }
    const base = this.db.selectFrom('list_entries').where('list_type', '=', list).where('target', '=', target).where('org_id', 'in', orgIds);
    const c = await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const rows = await base.selectAll().orderBy('id').limit(q.limit).offset(q.offset).execute();
    return { count: Number(c.n), rows };
  }

  /** One entry visible to the principal in that list, or 404. */
  async get(principal: Principal, list: ListType, target: ListTarget, id: number): Promise<ListEntryRow> {
    requirePermission(principal, 'list:read');
    return this.visible(principal, list, target, id);
  }

  async create(principal: Principal, list: ListType, target: ListTarget, input: ListEntryInput): Promise<ListEntryRow> {
    requirePermission(principal, 'list:write');
    const v = normaliseValue(target, input.value);
    const exact = exactOf(target, input.exact) ?? false;
    const orgId = this.ownerOf(principal, input.ownerOrgId) ?? principal.orgId;
    const comment = commentOf(input.comment) ?? '';
    await this.refuseDuplicate(orgId, list, target, v.norm, exact);
    const actor = await this.actorLabel(principal);
    const now = Date.now();
    const insert = this.db
      .insertInto('list_entries')
      .values({
        org_id: orgId,
        list_type: list,
        target,
        value: v.value,
        norm: v.norm,
        match_key: v.key,
        exact: exact ? 1 : 0,
        comment,
        created_by: actor,
        updated_by: actor,
        created_by_token_id: principal.tokenId,
        created_at: now,
        updated_at: now,
      })
      .returningAll();
    try {
      return await insert.executeTakeFirstOrThrow();
    } catch (e) {
      await this.refuseDuplicate(orgId, list, target, v.norm, exact); // lost a race with the same value
      throw e;
    }
  }

  /** Changes the fields given; the others keep their values (PUT and PATCH alike). */
  async update(principal: Principal, list: ListType, target: ListTarget, id: number, input: ListEntryInput): Promise<ListEntryRow> {
    requirePermission(principal, 'list:write');
    const row = await this.visible(principal, list, target, id);
    const v = input.value === undefined ? { value: row.value, norm: row.norm, key: row.match_key } : normaliseValue(target, input.value);
    const exact = exactOf(target, input.exact) ?? row.exact === 1;
    const orgId = this.ownerOf(principal, input.ownerOrgId) ?? row.org_id;
    const comment = commentOf(input.comment) ?? row.comment;
    if (v.norm !== row.norm || exact !== (row.exact === 1) || orgId !== row.org_id) await this.refuseDuplicate(orgId, list, target, v.norm, exact, id);
    return this.db
      .updateTable('list_entries')
      .set({ value: v.value, norm: v.norm, match_key: v.key, exact: exact ? 1 : 0, org_id: orgId, comment, updated_by: await this.actorLabel(principal), updated_at: Date.now() })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async delete(principal: Principal, list: ListType, target: ListTarget, id: number): Promise<void> {
    requirePermission(principal, 'list:write');
    await this.visible(principal, list, target, id);
    await this.db.deleteFrom('list_entries').where('id', '=', id).execute();
  }

  private async visible(principal: Principal, list: ListType, target: ListTarget, id: number): Promise<ListEntryRow> {
    const row = Number.isSafeInteger(id) && id > 0 ? await this.db.selectFrom('list_entries').selectAll().where('id', '=', id).executeTakeFirst() : undefined;
    if (!row || row.list_type !== list || row.target !== target || !principal.orgIds.includes(row.org_id)) throw notFound(`${list}/${target} entry ${id}`);
    return row;
  }

  private ownerOf(principal: Principal, raw: unknown): number | undefined {
    if (raw === undefined || raw === null || raw === '') return undefined;
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,15}$/.test(raw.trim()) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n)) throw invalid('owner_organization', 'expected an organization id (integer)');
    if (!principal.orgIds.includes(n)) throw invalid('owner_organization', `organization ${n} is not one this token can use`);
    return n;
  }

  private async refuseDuplicate(orgId: number, list: ListType, target: ListTarget, norm: string, exact: boolean, exceptId?: number): Promise<void> {
    let q = this.db
      .selectFrom('list_entries')
      .select('id')
      .where('org_id', '=', orgId)
      .where('list_type', '=', list)
      .where('target', '=', target)
      .where('norm', '=', norm)
      .where('exact', '=', exact ? 1 : 0);
    if (exceptId !== undefined) q = q.where('id', '!=', exceptId);
    const dup = await q.executeTakeFirst();
    if (dup) throw invalid(VALUE_FIELD[target], `organization ${orgId} already has this value in its ${list} (entry ${dup.id})`);
  }

  /** "name <email>" of a user token's user; for an organization token its label and organization. */
  private async actorLabel(principal: Principal): Promise<string> {
    const token = await this.db.selectFrom('api_tokens').select(['name', 'user_id', 'org_id']).where('id', '=', principal.tokenId).executeTakeFirst();
    const userId = principal.userId ?? token?.user_id ?? undefined;
    if (userId !== undefined && userId !== null) {
      const user = await this.deps.store.getUser(userId);
      if (user) return `${user.name} <${user.email}>`;
    }
    const org = await this.deps.store.getOrg(principal.orgId);
    return `${token?.name ?? 'token'} (organization ${org?.name ?? principal.orgId})`;
  }

  // Policy settings -----------------------------------------------------------------------

  /** The list policy of an organization (its `allow_list_overrides_signatures` setting). */
  async policyOf(orgId: number): Promise<ListPolicy> {
    const org = await this.deps.store.getOrg(orgId);
    return { allowListOverridesSignatures: settingsOf(org?.settings)[ALLOW_OVERRIDES_SIGNATURES] === true };
  }

  /**
   * Sets the organization's list policy (for the organizations API and the CLI; the caller
   * checks who may). Other settings are kept.
   */
  async setPolicy(orgId: number, policy: Partial<ListPolicy>): Promise<ListPolicy> {
    const org = await this.deps.store.getOrg(orgId);
    if (!org) throw notFound(`organization ${orgId}`);
    const settings = settingsOf(org.settings);
    if (policy.allowListOverridesSignatures !== undefined) settings[ALLOW_OVERRIDES_SIGNATURES] = policy.allowListOverridesSignatures;
    await this.db.updateTable('organizations').set({ settings: JSON.stringify(settings) }).where('id', '=', orgId).execute();
    return this.policyOf(orgId);
  }

  // Matching ------------------------------------------------------------------------------

  /** The organization and its ancestors: whose lists apply to its scans. */
  async applicableOrgs(orgId: number): Promise<number[]> {
    const out: number[] = [];
    let id: number | null = orgId;
    while (id !== null && !out.includes(id) && out.length < 64) {
      out.push(id);
      const org = await this.deps.store.getOrg(id);
      id = org?.parent_id ?? null;
    }
    return out;
  }

  /** Every entry of the applicable lists that matches something in the scan tree. */
  async matches(scan: ScanRow, report: ObjectReport): Promise<ListMatch[]> {
    const orgIds = await this.applicableOrgs(scan.org_id);
    const subjects = collectSubjects(scan, report);
    const out: ListMatch[] = [];
    const found = (e: ListEntryRow, subject: string, root: boolean) =>
      out.push({ entryId: e.id, list: e.list_type, target: e.target, value: e.value, ownerOrgId: e.org_id, subject, root });
    const lookup = async (target: ListTarget, keys: string[]) => {
      const unique = [...new Set(keys)];
      if (unique.length === 0) return [];
      const rows: ListEntryRow[] = [];
      for (let i = 0; i < unique.length; i += 500) {
        rows.push(
          ...(await this.db
            .selectFrom('list_entries')
            .selectAll()
            .where('target', '=', target)
            .where('match_key', 'in', unique.slice(i, i + 500))
            .where('org_id', 'in', orgIds)
            .orderBy('id')
            .execute()),
        );
      }
      return rows;
    };

    for (const e of await lookup('hash', subjects.hashes.map((h) => h.sha256))) {
      for (const h of subjects.hashes) if (h.sha256 === e.norm) found(e, h.label, h.root);
    }
    for (const e of await lookup('email', subjects.emails.map((a) => a.address))) {
      for (const a of subjects.emails) if (a.address === e.norm) found(e, a.label, a.root);
    }
    for (const e of await lookup('ip', [...subjects.ips.map((a) => a.ip), CIDR_KEY])) {
      for (const a of subjects.ips) if (ipMatches(e.norm, a.ip)) found(e, a.label, a.root);
    }
    const hosts = subjects.urls.map((u) => u.host);
    for (const e of await lookup('url', hosts)) {
      for (const u of subjects.urls) if (urlMatches(e.norm, e.exact === 1, u.url)) found(e, u.label, u.root);
    }
    for (const e of await lookup('domain', hosts.flatMap(domainSuffixes))) {
      for (const u of subjects.urls) if (domainSuffixes(u.host).includes(e.norm)) found(e, `domain ${u.host} of the ${u.label}`, u.root);
    }
    return out;
  }

  /**
   * Applies the lists to a finished scan's report: the root outcome gets the list decision and
   * verdict, the root evidence the hits. Children are left as they are.
   */
  async applyToReport(scan: ScanRow, report: ObjectReport): Promise<ObjectReport> {
    const matches = await this.matches(scan, report);
    if (matches.length === 0) return report;
    const treeEvidence = [...walk(report)].flatMap((n) => n.evidence);
    const r = applyListPolicy(report.outcome, matches, await this.policyOf(scan.org_id), treeEvidence);
    return {
      ...report,
      outcome: r.outcome,
      evidence: [...report.evidence, ...r.evidence],
      engines: [...report.engines, { scanner: 'lists', version: '1', layer: 'policy', status: 'ok', ms: 0, findings: r.evidence.length }],
    };
  }
}

interface Subjects {
  hashes: { sha256: string; label: string; root: boolean }[];
  emails: { address: string; label: string; root: boolean }[];
  ips: { ip: string; label: string; root: boolean }[];
  urls: { url: string; host: string; label: string; root: boolean }[];
}

/**
 * What lists can match in a scan: the sha256 of every file object (the submission and all it
 * contains), the submitted URL, redirect hops, final URLs and URL children, and for email the
 * sender address and IP (scan columns sample_from, sender_ip).
 */
export function collectSubjects(scan: ScanRow, report: ObjectReport): Subjects {
  const s: Subjects = { hashes: [], emails: [], ips: [], urls: [] };
  const addUrl = (raw: unknown, label: string, root: boolean) => {
    if (typeof raw !== 'string') return;
    const c = canonicalUrl(raw);
    if (c && !s.urls.some((u) => u.url === raw && u.root === root)) s.urls.push({ url: raw, host: c.host, label, root });
  };
  for (const node of walk(report)) {
    const isRoot = node === report;
    const where = isRoot ? 'submitted' : `contained (${node.relation ?? 'child'})`;
    if (node.info.kind === 'file') {
      s.hashes.push({ sha256: node.info.sha256.toLowerCase(), label: isRoot ? 'sha256 of the submitted file' : `sha256 of the contained object ${node.info.name}`, root: isRoot });
    } else {
      addUrl(node.info.url, isRoot ? 'submitted URL' : `${node.relation === 'redirect_target' ? 'redirect target' : 'linked URL'} ${node.info.url}`, isRoot);
    }
    const chain = node.attributes.redirectChain;
    if (Array.isArray(chain)) for (const hop of chain) addUrl((hop as { url?: unknown })?.url, `redirect hop ${(hop as { url?: unknown })?.url} of the ${where} URL`, false);
    const final = node.attributes.finalUrl;
    if (typeof final === 'string' && final !== node.info.url) addUrl(final, `redirect target ${final}`, false);
  }
  // the scan row's columns (set at submission, e.g. the SMTP envelope) and what the email
  // scanner read from the headers of the message itself (the row is filled only when saved)
  const email = (report.attributes.email ?? {}) as { from?: unknown; sourceIp?: unknown };
  for (const [from, label] of [[scan.sample_from, 'sender address'], [email.from, 'header sender address']] as const) {
    const a = typeof from === 'string' && from ? addressOf(from) : undefined;
    if (a && !s.emails.some((e) => e.address === a)) s.emails.push({ address: a, label: `${label} ${a}`, root: true });
  }
  for (const raw of [scan.sender_ip, email.sourceIp]) {
    const ip = typeof raw === 'string' && raw ? parseIp(raw) : undefined;
    if (ip && !s.ips.some((e) => e.ip === ip)) s.ips.push({ ip, label: `sender IP ${ip}`, root: true });
  }
  return s;
}

function exactOf(target: ListTarget, raw: unknown): boolean | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  let v: boolean;
  if (raw === true || raw === 'true' || raw === 'True' || raw === '1' || raw === 1) v = true;
  else if (raw === false || raw === 'false' || raw === 'False' || raw === '0' || raw === 0) v = false;
  else throw invalid('exact', 'expected true or false');
  if (target !== 'url') {
    if (v) throw invalid('exact', 'only URL entries have an exact flag');
    return undefined;
  }
  return v;
}

function commentOf(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (raw === null) return '';
  if (typeof raw !== 'string') throw invalid('comment', 'expected text');
  if (raw.length > MAX_COMMENT) throw invalid('comment', `longer than ${MAX_COMMENT} characters`);
  return raw;
}

function settingsOf(json: string | undefined): Record<string, unknown> {
  try {
    const v = JSON.parse(json ?? '{}') as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
