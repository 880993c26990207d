/**
 * ScanService: the one entry to the core. API dialects, the CLI and future faces call it;
 * it authenticates tokens, accepts samples durably, reads scans back with their tree and
 * evidence, and deletes them. It never speaks a wire format.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { BlobStore, StoredBlob } from '../store/blobs.ts';
import type { Store, CallbackSpec } from '../store/store.ts';
import type { EvidenceRow, ScanRow, OrgRow } from '../store/schema.ts';
import type { JobQueue } from '../queue/queue.ts';
import { detectType } from '../scanners/file-type.ts';
import { SizeLimitError } from '../scanners/hashes.ts';
import { digestBuffer } from '../scanners/hashes.ts';
import { EgressGuard } from '../net/egress-guard.ts';
import { safeFetch } from '../net/safe-fetch.ts';
import type { Metrics } from '../ops/metrics.ts';
import { requirePermission, type Role } from './permissions.ts';
import { ScanEvents } from './scan-events.ts';
import { LOCAL_STORAGE, type Storages } from '../store/storages.ts';
import { ObjectNotFoundError } from '../store/s3-blobs.ts';
import { MemoryRateLimiter, type RateLimiter } from './rate-limiter.ts';
import { invalid, notFound, rateLimited, tooLarge, unauthenticated, upstream, VerdictError } from './errors.ts';

export type { Role } from './permissions.ts';

export interface Principal {
  tokenId: number;
  orgId: number;
  /** The organization and its descendants: what this token may see. */
  orgIds: number[];
  role: Role;
  /** The user a user-based token acts for (undefined for an organization token). */
  userId?: number;
  /** The organization's own request budget per minute (setting `throttle_per_minute`), if set. */
  throttlePerMinute?: number;
}

export interface CallbackRequest extends CallbackSpec {
  /** Which dialect formats the callback body. */
  format: string;
}

export interface SubmitCommon {
  principal: Principal;
  channel: string;
  subOrigin?: string;
  callback?: CallbackRequest;
  requestId?: string;
  originalFilePath?: string;
  /** Organization to file the scan under (must be visible to the principal). */
  orgId?: number;
}

export interface SubmitFile extends SubmitCommon {
  name: string;
  password?: string;
  /** Run data classification on the sample's text (CSS `/api/Classify...`). */
  classify?: boolean;
  /** Copy the sample to this named storage when it is found clean (CSS scan-and-upload). */
  uploadTo?: { storage: string; key: string };
}

export interface SubmitUrl extends SubmitCommon {
  url: string;
  userAgent?: string;
  userLocation?: string;
}

export interface ScanTree {
  root: ScanRow;
  descendants: ScanRow[];
  evidence: EvidenceRow[];
  org: OrgRow | undefined;
}

export interface ScanOptions {
  passwords?: string[];
  userAgent?: string;
  userLocation?: string;
  classify?: boolean;
  uploadTo?: { storage: string; key: string };
}

export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newToken(): string {
  return 'vd_' + crypto.randomBytes(24).toString('base64url');
}

export interface ServiceDeps {
  config: Config;
  store: Store;
  blobs: BlobStore;
  queue: JobQueue;
  log: Logger;
  metrics?: Metrics;
  /** Named storages (`local` + the S3 storages of the `storages` option). */
  storages?: Storages;
  /** Counts requests per token (default: in this process's memory). */
  rateLimiter?: RateLimiter;
}

export class ScanService {
  /** Scans finished by this process's workers (for clients waiting on a verdict). */
  readonly events = new ScanEvents();
  private readonly guard: EgressGuard;
  private readonly tmpDir: string;
  private readonly limiter: RateLimiter;

  constructor(private readonly deps: ServiceDeps) {
    this.guard = new EgressGuard({ allow: deps.config.egressAllow, deny: deps.config.egressDeny });
    this.tmpDir = path.join(deps.config.dataDir, 'tmp');
    this.limiter = deps.rateLimiter ?? new MemoryRateLimiter();
    fs.mkdirSync(this.tmpDir, { recursive: true });
  }

  get config(): Config {
    return this.deps.config;
  }

  /** Resolves once every write committed so far survives a power loss. */
  durable(): Promise<void> {
    return this.deps.store.durable();
  }

  // Identity ------------------------------------------------------------------------------

  /**
   * First start: creates the default organization and an administrator token. Returns the
   * token when one was created (to print once); only its hash is stored.
   */
  async bootstrap(): Promise<{ token?: string; org: OrgRow }> {
    const { store, config } = this.deps;
    let org = await store.getOrgByName(config.defaultOrgName);
    if (!org) org = (await store.countOrgs()) === 0 ? await store.createOrg(config.defaultOrgName) : undefined;
    if (!org) throw new Error(`default organization ${config.defaultOrgName} is missing`);
    if ((await store.countTokens()) > 0) return { org };
    const token = config.adminToken ?? newToken();
    await store.createToken({ orgId: org.id, name: 'administrator', role: 'Administrator', hash: hashToken(token), prefix: token.slice(0, 6) });
    return { token, org };
  }

  async authenticate(token: string | undefined): Promise<Principal> {
    if (!token) throw unauthenticated();
    const row = await this.deps.store.findToken(hashToken(token));
    if (!row) throw unauthenticated('invalid token');
    const org = await this.deps.store.getOrg(row.org_id);
    if (!org || !org.active) throw unauthenticated('the token\'s organization is inactive');
    // an inactive organization switches off its whole subtree
    for (let p = org.parent_id, hops = 0; p !== null && hops < 64; hops++) {
      const up = await this.deps.store.getOrg(p);
      if (!up) break;
      if (!up.active) throw unauthenticated('the token\'s organization is inactive (its parent organization is)');
      p = up.parent_id;
    }
    let role = row.role as Role;
    if (row.user_id !== null) {
      const user = await this.deps.store.getUser(row.user_id);
      if (!user || !user.active) throw unauthenticated('the token\'s user is disabled');
      role = user.role as Role; // a user token acts with the user's current role
    }
    // last_used_at is advisory: update at most once a minute per token
    if (!row.last_used_at || Date.now() - row.last_used_at > 60_000) await this.deps.store.touchToken(row.id);
    let throttlePerMinute: number | undefined;
    try {
      const t = (JSON.parse(org.settings) as { throttle_per_minute?: unknown }).throttle_per_minute;
      if (typeof t === 'number' && Number.isInteger(t) && t >= 0) throttlePerMinute = t;
    } catch {
      // settings are written by OrgService as JSON; a damaged value falls back to the default
    }
    return {
      tokenId: row.id,
      orgId: row.org_id,
      orgIds: await this.deps.store.orgSubtree(row.org_id),
      role,
      userId: row.user_id ?? undefined,
      throttlePerMinute,
    };
  }

  /**
   * Per-token request budget: the organization's `throttle_per_minute` setting, else
   * `maxRequestsPerMinute` (0: no limit), counted by the rate limiter in one-minute windows.
   * Throws a rate_limited error carrying the seconds to wait.
   */
  async throttle(principal: Principal, now = Date.now()): Promise<void> {
    const limit = principal.throttlePerMinute ?? this.deps.config.maxRequestsPerMinute;
    if (limit <= 0) return;
    const d = await this.limiter.hit(`token:${principal.tokenId}`, limit, now);
    if (!d.allowed) throw rateLimited(limit, d.retryAfterSeconds);
  }

  async createOrg(name: string, parentName?: string): Promise<OrgRow> {
    const { store } = this.deps;
    if (!/^[\w .@-]{1,100}$/.test(name)) throw invalid('name', 'use 1-100 letters, digits, spaces, dots, @, _ or -');
    if (await store.getOrgByName(name)) throw new VerdictError('conflict', `organization ${name} already exists`, 409, 'name');
    let parentId: number | null = null;
    if (parentName) {
      const parent = await store.getOrgByName(parentName);
      if (!parent) throw notFound(`organization ${parentName}`);
      parentId = parent.id;
    }
    return store.createOrg(name, parentId);
  }

  async createToken(orgName: string, role: Role = 'Administrator', name = 'api'): Promise<{ token: string; orgId: number }> {
    const org = await this.deps.store.getOrgByName(orgName);
    if (!org) throw notFound(`organization ${orgName}`);
    const token = newToken();
    await this.deps.store.createToken({ orgId: org.id, name, role, hash: hashToken(token), prefix: token.slice(0, 6) });
    return { token, orgId: org.id };
  }

  // Submission ----------------------------------------------------------------------------

  /** Stores the stream as a blob, then the scan and its job. Returns once all are durable. */
  async submitFile(req: SubmitFile, source: Readable, signal?: AbortSignal): Promise<ScanRow> {
    this.targetOrg(req);
    const stored = await this.storeBlob(source, signal);
    return this.acceptStoredBlob(req, stored);
  }

  /**
   * Streams a sample into the blob store (durable when it resolves). For wire formats that
   * deliver the bytes before the other fields: follow with `acceptStoredBlob`, or with
   * `discardBlob` when the request turns out invalid.
   */
  async storeBlob(source: Readable, signal?: AbortSignal): Promise<StoredBlob> {
    // A request body cut off mid-file can leave the part's stream destroyed without an error
    // before we read it; a pipeline from it would then wait forever.
    if (source.destroyed) throw invalid('data', 'the upload ended before the file did (truncated body)');
    try {
      return await this.deps.blobs.put(source, { maxBytes: this.deps.config.limits.maxFileSize, signal });
    } catch (e) {
      if (e instanceof SizeLimitError || (e as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(this.deps.config.limits.maxFileSize);
      throw e;
    }
  }

  async acceptStoredBlob(req: SubmitFile, stored: StoredBlob): Promise<ScanRow> {
    const orgId = this.targetOrg(req);
    if (!req.name || req.name.length > 1024) {
      await this.discardBlob(stored.digests.sha256);
      throw invalid('name', 'a file name of 1 to 1024 characters is required');
    }
    return this.acceptFile(req, orgId, stored.digests, stored.head);
  }

  /** Removes a stored blob that no scan refers to (a submission that failed validation). */
  async discardBlob(sha256: string): Promise<void> {
    if (!(await this.deps.store.blobReferenced(sha256))) await this.deps.blobs.delete(sha256);
  }

  /** Fetches `link` through the egress guard and submits what it serves. */
  async submitDownload(req: SubmitFile, link: string, signal?: AbortSignal): Promise<ScanRow> {
    this.targetOrg(req);
    const url = parseHttpUrl(link, 'download_link');
    const file = path.join(this.tmpDir, `download-${crypto.randomUUID()}`);
    try {
      const { limits } = this.deps.config;
      let res;
      try {
        res = await safeFetch(url.href, {
          guard: this.guard,
          maxBytes: limits.maxFileSize,
          timeoutMs: Math.max(limits.urlFetchTimeoutMs, 60_000),
          maxRedirects: limits.urlMaxRedirects,
          toFile: file,
          failOnTruncate: true,
          signal,
        });
      } catch (e) {
        const err = e as Error;
        if (err.name === 'FetchTooLargeError') throw tooLarge(limits.maxFileSize);
        throw upstream(`download_link: ${err.message}`);
      }
      if (res.status >= 400) throw upstream(`download_link: the server answered ${res.status}`);
      return await this.submitFile(req, fs.createReadStream(file), signal);
    } finally {
      await fsp.rm(file, { force: true });
    }
  }

  /**
   * Scans a blob already in Verdict's storage, named by its sha256 (or the `path` a callback
   * or scan detail gave). Only blobs of scans this principal can see are accepted.
   */
  async submitStoredPath(req: SubmitFile, blobPath: string, storage?: string): Promise<ScanRow> {
    if (storage && storage !== LOCAL_STORAGE) return this.submitFromStorage(req, storage, blobPath);
    const orgId = this.targetOrg(req);
    const m = /([0-9a-f]{64})$/i.exec(blobPath.trim());
    if (!m) throw invalid('path', 'expected the sha256 of a stored sample (as given in a scan\'s path)');
    const sha256 = m[1].toLowerCase();
    const owner = await this.deps.store.db
      .selectFrom('scans')
      .selectAll()
      .where('blob_sha256', '=', sha256)
      .where('org_id', 'in', req.principal.orgIds)
      .limit(1)
      .executeTakeFirst();
    if (!owner || !(await this.deps.blobs.exists(sha256))) throw invalid('path', 'no stored sample with that path is visible to this token');
    const head = await readStart(this.deps.blobs.open(sha256), 0x8006);
    const digests = { md5: owner.md5!, sha1: owner.sha1!, sha256, sha512: owner.sha512!, size: owner.size ?? 0 };
    return this.acceptFile(req, orgId, digests, head);
  }

  /**
   * Scans the object `key` of a named S3 storage: streamed into the blob store (never held in
   * memory), then accepted like an upload. `field` names the request field errors point at.
   */
  async submitFromStorage(req: SubmitFile, storage: string, key: string, signal?: AbortSignal, field = 'path'): Promise<ScanRow> {
    this.targetOrg(req);
    const s3 = this.deps.storages?.s3(storage);
    if (!s3) throw invalid('storage', `no storage named ${storage} (configured: ${[LOCAL_STORAGE, ...(this.deps.storages?.names() ?? [])].join(', ')})`);
    if (!key || key.length > 1024) throw invalid(field, 'an object key of 1 to 1024 characters is required');
    let object;
    try {
      object = await s3.openKey(key, signal);
    } catch (e) {
      if (e instanceof ObjectNotFoundError) throw invalid(field, `no object ${key} in storage ${storage}`);
      throw upstream(`storage ${storage}: ${(e as Error).message}`);
    }
    if (object.size > this.deps.config.limits.maxFileSize) {
      object.stream.destroy();
      throw tooLarge(this.deps.config.limits.maxFileSize);
    }
    return this.submitFile(req, object.stream, signal);
  }

  private async acceptFile(req: SubmitFile, orgId: number, d: { md5: string; sha1: string; sha256: string; sha512: string; size: number }, head: Buffer): Promise<ScanRow> {
    const type = detectType(head);
    const options: ScanOptions = { passwords: req.password ? [req.password] : [], ...(req.classify ? { classify: true } : {}), ...(req.uploadTo ? { uploadTo: req.uploadTo } : {}) };
    const row = await this.deps.store.insertScan(
      {
        org_id: orgId,
        depth: 0,
        kind: 'file',
        channel: req.channel,
        sub_origin: req.subOrigin ?? null,
        name: req.name,
        status: 'queued',
        created_at: Date.now(),
        size: d.size,
        md5: d.md5,
        sha1: d.sha1,
        sha256: d.sha256,
        sha512: d.sha512,
        file_type: type.type,
        mime: type.mime,
        blob_sha256: d.sha256,
        options: JSON.stringify(options),
        callback: req.callback ? JSON.stringify(req.callback) : null,
        request_id: req.requestId ?? null,
        original_file_path: req.originalFilePath ?? null,
      },
      { sha256: d.sha256, size: d.size },
    );
    await this.deps.queue.enqueue(row.id);
    await this.deps.store.durable(); // the id goes out only once the scan and its job are durable
    this.deps.metrics?.scansSubmitted.inc({ channel: req.channel, kind: 'file' });
    return row;
  }

  async submitUrl(req: SubmitUrl): Promise<ScanRow> {
    const orgId = this.targetOrg(req);
    const url = parseHttpUrl(req.url, 'path');
    const d = digestBuffer(Buffer.from(url.href));
    const options: ScanOptions = { userAgent: req.userAgent, userLocation: req.userLocation };
    const row = await this.deps.store.insertScan({
      org_id: orgId,
      depth: 0,
      kind: 'url',
      channel: req.channel,
      sub_origin: req.subOrigin ?? null,
      name: req.url,
      status: 'queued',
      created_at: Date.now(),
      md5: d.md5,
      sha1: d.sha1,
      sha256: d.sha256,
      sha512: d.sha512,
      file_type: 'url',
      mime: 'text/uri-list',
      url: url.href,
      domain: url.hostname,
      options: JSON.stringify(options),
      callback: req.callback ? JSON.stringify(req.callback) : null,
      request_id: req.requestId ?? null,
    });
    await this.deps.queue.enqueue(row.id);
    await this.deps.store.durable();
    this.deps.metrics?.scansSubmitted.inc({ channel: req.channel, kind: 'url' });
    return row;
  }

  private targetOrg(req: SubmitCommon): number {
    requirePermission(req.principal, 'scan:submit');
    const orgId = req.orgId ?? req.principal.orgId;
    if (!req.principal.orgIds.includes(orgId)) throw invalid('organization_id', 'not an organization this token can use');
    return orgId;
  }

  // Reading -------------------------------------------------------------------------------

  /** A scan visible to the principal (any node of a tree), or 404. */
  async getScan(principal: Principal, id: number): Promise<ScanRow> {
    const row = await this.deps.store.getScan(id);
    if (!row || !principal.orgIds.includes(row.org_id)) throw notFound(`scan ${id}`);
    return row;
  }

  /** A scan with everything below it and all their evidence. */
  async getTree(principal: Principal, id: number): Promise<ScanTree> {
    const root = await this.getScan(principal, id);
    const treeRoot = root.root_id ?? root.id;
    const all = await this.deps.store.getDescendants(treeRoot);
    // descendants of `root` only (root may itself be a child)
    const below = new Set<number>([root.id]);
    const descendants: ScanRow[] = [];
    for (const r of all) {
      if (r.parent_id !== null && below.has(r.parent_id)) {
        below.add(r.id);
        descendants.push(r);
      }
    }
    const evidence = await this.deps.store.getEvidence([root.id, ...descendants.map((d) => d.id)]);
    return { root, descendants, evidence, org: await this.deps.store.getOrg(root.org_id) };
  }

  /** Direct children of the scan's parent other than the scan itself. */
  async getSiblings(row: ScanRow): Promise<ScanRow[]> {
    if (row.parent_id === null) return [];
    return this.deps.store.db.selectFrom('scans').selectAll().where('parent_id', '=', row.parent_id).where('id', '!=', row.id).orderBy('id').execute();
  }

  async listCompleted(principal: Principal, q: { from?: number; to?: number; after?: { finishedAt: number; id: number }; limit: number }) {
    return this.deps.store.listCompleted({ orgIds: principal.orgIds, ...q });
  }

  async deleteScan(principal: Principal, id: number): Promise<void> {
    requirePermission(principal, 'scan:delete');
    const row = await this.getScan(principal, id);
    const orphaned = await this.deps.store.deleteScanTree(row.id);
    for (const sha of orphaned) await this.deps.blobs.delete(sha);
  }

  async callbacksOf(principal: Principal, id: number) {
    await this.getScan(principal, id);
    return this.deps.store.getCallbacks(id);
  }
}

export function parseHttpUrl(value: string, field: string): URL {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(field, 'a URL is required');
  if (value.length > 8192) throw invalid(field, 'the URL is longer than 8192 characters');
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    // X-Ray users often submit bare domains: accept them as http URLs
    try {
      url = new URL('http://' + value.trim());
      if (!url.hostname.includes('.')) throw new Error('no domain');
    } catch {
      throw invalid(field, `not a valid URL: ${value.slice(0, 200)}`);
    }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(field, `only http and https URLs can be scanned, not ${url.protocol}`);
  return url;
}

async function readStart(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const c of stream) {
    chunks.push(c as Buffer);
    got += (c as Buffer).length;
    if (got >= n) break;
  }
  stream.destroy();
  return Buffer.concat(chunks).subarray(0, n);
}
