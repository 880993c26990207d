/**
 * The synchronous face of the core, as the Cloud Storage Security API needs it: access tokens
 * for users (signed JWTs), "submit and wait for the verdict" over ScanService, scan-and-upload
 * to a named S3 storage, scans of objects already in a storage and of URLs, and the outcome of
 * a scan by reference. It speaks no wire format: the CSS adapter maps what it returns.
 *
 * Waiting wakes when this process's workers finish the scan, and re-reads the metadata store
 * on a backoff (20 ms doubling to 500 ms) for scans that run on a remote worker.
 *
 * @example
 * const css = await CssService.create({ config, service, store, blobs, storages, users, log });
 * const { accessToken } = await css.issueToken('ana@example.org', 'correct horse');
 * const principal = await css.authenticate(accessToken);
 * const row = await css.submitUpload(principal, stream, 'report.pdf', { requestId });
 * const outcome = await css.waitForOutcome(principal, row.id, 60_000); // { state: 'finished', tree, ... }
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import type { Config } from '../config/schema.ts';
import type { BlobStore, StoredBlob } from '../store/blobs.ts';
import type { Store } from '../store/store.ts';
import type { ScanRow } from '../store/schema.ts';
import { LOCAL_STORAGE, type Storages } from '../store/storages.ts';
import type { S3BlobStore } from '../store/s3-blobs.ts';
import type { UserService } from './users.ts';
import type { Principal, ScanOptions, ScanService, ScanTree, SubmitFile } from './scan-service.ts';
import type { Role } from './permissions.ts';
import { invalid, unauthenticated, VerdictError } from './errors.ts';

export interface CssDeps {
  config: Config;
  service: ScanService;
  store: Store;
  blobs: BlobStore;
  storages: Storages;
  users: UserService;
  log: Logger;
}

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
  /** Epoch seconds. */
  issuedAt: number;
}

/** Where a clean file was copied. */
export interface UploadTarget {
  storage: string;
  key: string;
}

export interface UploadOutcome extends UploadTarget {
  bucket: string;
  /** false when the scan was not clean (nothing uploaded). */
  uploaded: boolean;
  error?: string;
}

export type ScanOutcome =
  | { state: 'pending'; scan: ScanRow }
  | { state: 'finished'; tree: ScanTree; upload?: UploadOutcome };

export interface SyncSubmit {
  requestId?: string;
  classify?: boolean;
  uploadTo?: UploadTarget;
  signal?: AbortSignal;
}

const ISSUER = 'verdict';
const AUDIENCE = 'verdict-css';
/** Verdicts whose files are uploaded by scan-and-upload (when the scan is complete, not partial). */
const UPLOADABLE = new Set(['CLN', 'LSP', 'SPM']);

export class CssService {
  private constructor(
    private readonly deps: CssDeps,
    private readonly key: Uint8Array,
  ) {}

  /**
   * Loads the token key: the configured one; else the key an earlier version kept in the data
   * directory; else one generated on first start and kept in the database, so that every API
   * process of a scale deployment signs and checks tokens with the same key.
   */
  static async create(deps: CssDeps): Promise<CssService> {
    let secret = deps.config.cssTokenSecret;
    const legacy = path.join(deps.config.dataDir, 'css-token.key');
    if (!secret && fs.existsSync(legacy)) secret = fs.readFileSync(legacy, 'utf8').trim();
    if (!secret) secret = await deps.store.serviceKey('css-token', () => crypto.randomBytes(32).toString('hex'));
    return new CssService(deps, new TextEncoder().encode(secret));
  }

  get config(): Config {
    return this.deps.config;
  }

  // Tokens --------------------------------------------------------------------------------

  /** An access token for a user of the core; 401 (unauthenticated) for bad credentials. */
  async issueToken(username: unknown, password: unknown): Promise<IssuedToken> {
    if (typeof username !== 'string' || typeof password !== 'string' || !username || !password) {
      throw invalid(typeof username !== 'string' || !username ? 'username' : 'password', 'username and password are required');
    }
    const found = await this.deps.users.verifyCredentials(username, password);
    if (!found) throw unauthenticated('invalid username or password');
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresIn = this.deps.config.cssTokenLifetimeS;
    const accessToken = await new SignJWT({ org: found.user.org_id, role: found.user.role })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(String(found.user.id))
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + expiresIn)
      .setJti(crypto.randomUUID())
      .sign(this.key);
    return { accessToken, expiresIn, issuedAt };
  }

  /**
   * The principal of a bearer token: a JWT from `issueToken` (its user must still be active),
   * or one of the core's API tokens.
   */
  async authenticate(bearer: string | undefined): Promise<Principal> {
    if (!bearer) throw unauthenticated('a bearer token is required (POST /api/Token)');
    if (bearer.split('.').length !== 3) return this.deps.service.authenticate(bearer);
    let sub: string | undefined;
    try {
      const { payload } = await jwtVerify(bearer, this.key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      sub = payload.sub;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw unauthenticated('the access token has expired');
      throw unauthenticated('invalid access token');
    }
    const user = sub && /^\d+$/.test(sub) ? await this.deps.store.getUser(Number(sub)) : undefined;
    if (!user || !user.active) throw unauthenticated('the token\'s user is disabled');
    const org = await this.deps.store.getOrg(user.org_id);
    if (!org || !org.active) throw unauthenticated('the token\'s organization is inactive');
    return { tokenId: -user.id, userId: user.id, orgId: user.org_id, orgIds: await this.deps.store.orgSubtree(user.org_id), role: user.role as Role };
  }

  // Submission ----------------------------------------------------------------------------

  /**
   * Reads an upload target: `storage:key` (a configured storage name) or `bucket/key` (a
   * configured storage's bucket). Only S3 storages take uploads.
   */
  parseUploadTarget(spec: string, field = 'Upload-To'): UploadTarget {
    const text = spec.trim();
    const colon = /^([A-Za-z0-9_.-]{1,64}):(?!\/\/)(.+)$/.exec(text);
    if (colon) {
      if (colon[1] === LOCAL_STORAGE || !this.deps.storages.s3(colon[1])) throw invalid(field, `no S3 storage named ${colon[1]} (configured: ${this.deps.storages.names().join(', ') || 'none'})`);
      return { storage: colon[1], key: checkKey(colon[2], field) };
    }
    const slash = text.replace(/^s3:\/\//, '').split('/');
    if (slash.length >= 2) {
      const hit = this.deps.storages.byBucket(slash[0]);
      if (hit) return { storage: hit.name, key: checkKey(slash.slice(1).join('/'), field) };
      throw invalid(field, `bucket ${slash[0]} is not a configured storage`);
    }
    throw invalid(field, 'expected bucket/key or storage:key');
  }

  /** Streams an upload into the blob store and accepts it as a scan. */
  async submitUpload(principal: Principal, source: Readable, name: string, opts: SyncSubmit = {}): Promise<ScanRow> {
    return this.deps.service.submitFile(this.request(principal, name, opts), source, opts.signal);
  }

  /** Accepts a blob already streamed in (multipart: the file part comes before later fields). */
  async acceptStored(principal: Principal, stored: StoredBlob, name: string, opts: SyncSubmit = {}): Promise<ScanRow> {
    return this.deps.service.acceptStoredBlob(this.request(principal, name, opts), stored);
  }

  /** Scans an object of a named storage (default: the first S3 storage). */
  async submitExisting(principal: Principal, where: { storage?: string; bucket?: string; key?: string }, opts: SyncSubmit = {}): Promise<ScanRow> {
    if (!where.key) throw invalid('objectPath', 'the key of the object to scan is required (objectPath or key)');
    let storage: string | undefined = where.storage;
    if (storage && !this.deps.storages.s3(storage)) throw invalid('storage', `no S3 storage named ${storage}`);
    if (!storage && where.bucket) {
      storage = this.deps.storages.byBucket(where.bucket)?.name ?? (this.deps.storages.s3(where.bucket) ? where.bucket : undefined);
      if (!storage) throw invalid('container', `bucket ${where.bucket} is not a configured storage`);
    }
    if (storage && where.bucket && this.deps.storages.s3(storage)!.bucket !== where.bucket) throw invalid('container', `storage ${storage} holds bucket ${this.deps.storages.s3(storage)!.bucket}, not ${where.bucket}`);
    storage ??= this.deps.storages.first()?.name;
    if (!storage) throw new VerdictError('invalid', 'no S3 storage is configured (option storages)', 400, 'storage');
    const name = where.key.split('/').filter(Boolean).pop() ?? where.key;
    return this.deps.service.submitFromStorage(this.request(principal, name, opts), storage, where.key, opts.signal, 'objectPath');
  }

  /** Downloads `url` through the egress guard and accepts what it serves. */
  async submitUrl(principal: Principal, url: unknown, opts: SyncSubmit = {}): Promise<ScanRow> {
    if (typeof url !== 'string' || !url.trim()) throw invalid('url', 'the URL of the file to scan is required');
    let name = 'download';
    try {
      const u = new URL(url.trim());
      name = decodeURIComponent(u.pathname.split('/').filter(Boolean).pop() ?? '') || u.hostname;
    } catch {
      // submitDownload reports the bad URL
    }
    try {
      return await this.deps.service.submitDownload(this.request(principal, name, opts), url.trim(), opts.signal);
    } catch (e) {
      // ScanService names X-Ray's field; here it is `url`
      if (e instanceof VerdictError && e.field === 'download_link') throw new VerdictError(e.code, e.message.replace(/^download_link/, 'url'), e.status, 'url');
      if (e instanceof VerdictError && e.code === 'upstream') throw new VerdictError(e.code, e.message.replace(/^download_link/, 'url'), e.status, 'url');
      throw e;
    }
  }

  private request(principal: Principal, name: string, opts: SyncSubmit): SubmitFile {
    return { principal, channel: 'css', name, requestId: opts.requestId, classify: opts.classify, uploadTo: opts.uploadTo };
  }

  // Outcome -------------------------------------------------------------------------------

  /** Waits up to `timeoutMs` for the scan to finish; the outcome so far when it has not. */
  async waitForOutcome(principal: Principal, id: number, timeoutMs: number, signal?: AbortSignal): Promise<ScanOutcome> {
    const until = Date.now() + timeoutMs;
    let delay = 20;
    for (;;) {
      // listen before reading: a finish between the read and the wait still wakes us
      const finished = this.deps.service.events.next(id, Math.max(0, Math.min(delay, until - Date.now())));
      let row: ScanRow;
      try {
        row = await this.deps.service.getScan(principal, id);
      } catch (e) {
        finished.cancel();
        throw e;
      }
      if (row.status === 'done' || row.status === 'error') {
        finished.cancel();
        return this.outcome(principal, row);
      }
      if (until - Date.now() <= 0 || signal?.aborted) {
        finished.cancel();
        return { state: 'pending', scan: row };
      }
      await finished.wait;
      delay = Math.min(500, delay * 2);
    }
  }

  /** The outcome of a scan by its reference (a root scan of the principal's organizations). */
  async outcomeOf(principal: Principal, referenceId: string): Promise<ScanOutcome> {
    if (!/^\d{1,15}$/.test(referenceId)) throw invalid('referenceId', 'not a referenceId given by /api/Scan');
    const row = await this.deps.service.getScan(principal, Number(referenceId));
    if (row.parent_id !== null) throw invalid('referenceId', 'not a referenceId given by /api/Scan');
    if (row.status !== 'done' && row.status !== 'error') return { state: 'pending', scan: row };
    return this.outcome(principal, row);
  }

  private async outcome(principal: Principal, row: ScanRow): Promise<ScanOutcome> {
    const tree = await this.deps.service.getTree(principal, row.id);
    const target = (JSON.parse(row.options) as ScanOptions).uploadTo;
    if (!target) return { state: 'finished', tree };
    return { state: 'finished', tree, upload: await this.uploadIfClean(tree.root, target) };
  }

  /**
   * Scan-and-upload: copies the sample to the target when the scan is complete and clean.
   * Idempotent (an object of the same size already under the key is left alone), so a retried
   * JobStatus call does not upload twice.
   */
  private async uploadIfClean(root: ScanRow, target: UploadTarget): Promise<UploadOutcome> {
    const s3 = this.deps.storages.s3(target.storage) as S3BlobStore;
    const base = { ...target, bucket: s3?.bucket ?? '' };
    const clean = root.status === 'done' && root.partial === 0 && UPLOADABLE.has(root.verdict ?? '');
    if (!clean || !s3 || !root.blob_sha256) return { ...base, uploaded: false };
    try {
      const existing = await s3.headKey(target.key);
      if (existing?.size !== (root.size ?? -1)) {
        const copy = await this.deps.blobs.checkout(root.blob_sha256);
        try {
          await s3.putFile(target.key, copy.path, root.size ?? fs.statSync(copy.path).size);
        } finally {
          await copy.release();
        }
        this.deps.log.info({ scanId: root.id, storage: target.storage, key: target.key }, 'clean file uploaded');
      }
      return { ...base, uploaded: true };
    } catch (e) {
      this.deps.log.warn({ scanId: root.id, err: (e as Error).message }, 'upload of a clean file failed');
      return { ...base, uploaded: false, error: `upload to ${target.storage}:${target.key} failed: ${(e as Error).message}` };
    }
  }
}

function checkKey(key: string, field: string): string {
  const k = key.replace(/^\/+/, '');
  if (!k || k.length > 1024 || /(^|\/)\.\.(\/|$)/.test(k) || /[\0-\x1f]/.test(k)) throw invalid(field, 'an object key of 1 to 1024 characters without control characters or .. segments is required');
  return k;
}
