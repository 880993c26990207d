/**
 * KATA sensors: external systems that submit objects through the KATA scanner API.
 *
 * A sensor is known by the `sensorId` it sends and the client certificate it presents. Its
 * first contact files an integration request (pending, with the certificate's SHA-256
 * fingerprint); an administrator approves it into an organization, or rejects it. Only an
 * approved sensor presenting the same certificate is let in. A sensor's own scan ids map to
 * Verdict's scans, one per (sensor, scanId). The wire format stays in `src/api/kata/`.
 *
 * @example
 * const sensor = await sensors.authenticate({ sensorId, fingerprint });   // 401 until approved
 * const release = await sensors.beginUpload(sensor);                       // 429 when full
 * try { await sensors.submit(sensor, { clientScanId }, await scans.storeBlob(stream)); } finally { release(); }
 */
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Store } from '../store/store.ts';
import type { StoredBlob } from '../store/blobs.ts';
import type { KataSensorRow } from '../store/schema.ts';
import type { Principal, ScanService } from './scan-service.ts';
import { requirePermission } from './permissions.ts';
import { forbidden, invalid, notFound, unauthenticated, VerdictError } from './errors.ts';

/** sensorId, scanId: letters, digits, `-` and `_` (UUIDs, GUIDs, hex, names); no spaces or other characters. */
const ID = /^[A-Za-z0-9_-]{1,128}$/;
/** sensorInstanceId: host names and similar are common, so dots and colons too. */
const INSTANCE_ID = /^[A-Za-z0-9_.:@-]{1,200}$/;
const MAX_INSTANCE_IDS = 1000;

export type SensorState = 'pending' | 'approved' | 'rejected';

/** Who presents itself: the sensorId of the URL and the TLS client certificate. */
export interface SensorIdentity {
  sensorId: string;
  /** SHA-256 of the client certificate (hex, any case, colons allowed). */
  fingerprint: string | undefined;
  subject?: string;
  address?: string;
  instanceId?: string;
}

/** An approved sensor, authenticated for this request. */
export interface Sensor {
  rowId: number;
  sensorId: string;
  orgId: number;
  /** Acts for the sensor in the core: submits into and deletes from its organization only. */
  principal: Principal;
}

export interface SensorSubmission {
  clientScanId?: string;
  objectType?: string;
  instanceId?: string;
  /** File name of the uploaded part, if the client gave one. */
  name?: string;
  requestId?: string;
}

/** One of a sensor's scans with what a state listing needs. */
export interface SensorScan {
  clientScanId: string;
  instanceId: string | null;
  scanId: number;
  status: 'queued' | 'scanning' | 'done' | 'error';
  verdict: string | null;
  confidence: string | null;
  partial: boolean;
  score: number;
  createdAt: number;
  finishedAt: number | null;
  /** Findings that scored or decided (threat names), deduplicated. */
  findings: { name: string; engine: string; heuristic: string }[];
}

/** What an administrator sees of a sensor or integration request. */
export interface SensorInfo {
  sensorId: string;
  state: SensorState;
  orgId: number | null;
  certFingerprint: string;
  certSubject: string | null;
  instanceIds: string[];
  firstAddress: string | null;
  createdAt: number;
  lastSeenAt: number | null;
  decidedBy: string | null;
  decidedAt: number | null;
}

/** Who decides on an integration request: an API principal, or the operator at the CLI. */
export type SensorActor = { principal: Principal } | { operator: string };

export interface SensorDeps {
  config: Config;
  store: Store;
  scans: ScanService;
  log: Logger;
  /** Counts uploads in progress; shared between processes in the scale mode (Redis). */
  uploads?: UploadCounter;
}

/** Uploads in progress per key, counted where every API process sees them. */
export interface UploadCounter {
  /** Counts one more upload of `key`; resolves with the count including it. */
  acquire(key: string): Promise<number>;
  release(key: string): Promise<void>;
}

/** This process's uploads only (the embedded mode runs one process). */
export class MemoryUploadCounter implements UploadCounter {
  private readonly counts = new Map<string, number>();
  async acquire(key: string): Promise<number> {
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n;
  }
  async release(key: string): Promise<void> {
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}

/**
 * Uploads counted in Redis, so a sensor's limit holds across all API processes. The counter
 * expires after `ttlMs` without a new upload, so a process that died mid-upload cannot hold a
 * slot forever.
 */
export class RedisUploadCounter implements UploadCounter {
  constructor(
    private readonly redis: { incr(k: string): Promise<number>; decr(k: string): Promise<number>; pexpire(k: string, ms: number): Promise<number> },
    private readonly prefix: string,
    private readonly ttlMs = 600_000,
  ) {}
  async acquire(key: string): Promise<number> {
    const k = `${this.prefix}:uploads:${key}`;
    const n = await this.redis.incr(k);
    await this.redis.pexpire(k, this.ttlMs);
    return n;
  }
  async release(key: string): Promise<void> {
    const k = `${this.prefix}:uploads:${key}`;
    if ((await this.redis.decr(k)) <= 0) await this.redis.pexpire(k, 1);
  }
}

export class SensorService {
  /** Uploads in progress per sensor row, counted as in flight. */
  private readonly uploads: UploadCounter;

  constructor(private readonly deps: SensorDeps) {
    this.uploads = deps.uploads ?? new MemoryUploadCounter();
  }

  /** The limits a sensor may read (`GET …/scans/filters`). */
  limits(): { maxObjectSize: number; maxScansInFlight: number; objectTypes: string[] } {
    return { maxObjectSize: this.deps.config.limits.maxFileSize, maxScansInFlight: this.deps.config.kata.maxInFlightPerSensor, objectTypes: ['file'] };
  }

  // Authentication -----------------------------------------------------------------------

  /**
   * Lets in an approved sensor presenting the certificate it was approved with. An unknown
   * sensorId files a pending integration request bound to the certificate shown; everything
   * else is `unauthenticated`.
   */
  async authenticate(who: SensorIdentity): Promise<Sensor> {
    if (!ID.test(who.sensorId)) throw invalid('sensorId', 'use 1-128 letters, digits, - or _');
    const fingerprint = normalizeFingerprint(who.fingerprint);
    if (!fingerprint) throw unauthenticated('a client certificate is required');
    if (who.instanceId !== undefined) checkInstanceId(who.instanceId);
    const { db } = this.deps.store;
    let row = await db.selectFrom('kata_sensors').selectAll().where('sensor_id', '=', who.sensorId).executeTakeFirst();
    if (!row) {
      const now = Date.now();
      await db
        .insertInto('kata_sensors')
        .values({
          sensor_id: who.sensorId,
          org_id: null,
          state: 'pending',
          cert_fingerprint: fingerprint,
          cert_subject: who.subject?.slice(0, 500) ?? null,
          instance_ids: JSON.stringify(who.instanceId ? [who.instanceId] : []),
          first_address: who.address ?? null,
          created_at: now,
          last_seen_at: now,
        })
        .onConflict((oc) => oc.column('sensor_id').doNothing())
        .execute();
      this.deps.log.warn({ sensorId: who.sensorId, fingerprint, address: who.address }, 'KATA integration request from an unknown sensor: approve it with `verdict sensor approve`');
      throw unauthenticated(`sensor ${who.sensorId} is not approved yet: an integration request is pending`);
    }
    if (!sameFingerprint(row.cert_fingerprint, fingerprint)) {
      this.deps.log.warn({ sensorId: who.sensorId, fingerprint, expected: row.cert_fingerprint }, 'KATA sensor presented a different client certificate');
      throw unauthenticated(`sensor ${who.sensorId} is bound to another client certificate`);
    }
    row = await this.seen(row, who.instanceId);
    if (row.state === 'pending') throw unauthenticated(`sensor ${who.sensorId} is not approved yet: an integration request is pending`);
    if (row.state !== 'approved' || row.org_id === null) throw unauthenticated(`sensor ${who.sensorId} was rejected`);
    const org = await this.deps.store.getOrg(row.org_id);
    if (!org || !org.active) throw unauthenticated(`the organization of sensor ${who.sensorId} is inactive`);
    return {
      rowId: row.id,
      sensorId: row.sensor_id,
      orgId: row.org_id,
      principal: { tokenId: 0, orgId: row.org_id, orgIds: [row.org_id], role: 'Admin' },
    };
  }

  /** Records the contact time (at most once a minute) and a new instance id. */
  private async seen(row: KataSensorRow, instanceId: string | undefined): Promise<KataSensorRow> {
    const ids = parseIds(row.instance_ids);
    const newId = instanceId !== undefined && !ids.includes(instanceId) && ids.length < MAX_INSTANCE_IDS;
    const now = Date.now();
    if (!newId && row.last_seen_at !== null && now - row.last_seen_at < 60_000) return row;
    const patch = { last_seen_at: now, ...(newId ? { instance_ids: JSON.stringify([...ids, instanceId]) } : {}) };
    await this.deps.store.db.updateTable('kata_sensors').set(patch).where('id', '=', row.id).execute();
    return { ...row, ...patch };
  }

  // Submission ---------------------------------------------------------------------------

  /**
   * Reserves an upload slot: throws 429 when the sensor already has its maximum of scans
   * queued, scanning or uploading. Call the returned function when the upload is done.
   */
  async beginUpload(sensor: Sensor): Promise<() => void> {
    const max = this.deps.config.kata.maxInFlightPerSensor;
    const key = String(sensor.rowId);
    const uploading = await this.uploads.acquire(key);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.uploads.release(key).catch((e) => this.deps.log.warn({ err: e }, 'releasing an upload slot failed'));
    };
    try {
      const inFlight = (await this.countInFlight(sensor.rowId)) + uploading;
      if (inFlight > max) throw new VerdictError('rate_limited', `sensor ${sensor.sensorId} already has ${max} scans in flight; retry when some have finished`, 429, undefined, 60);
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }

  private async countInFlight(sensorRowId: number): Promise<number> {
    const r = await this.deps.store.db
      .selectFrom('kata_scans as k')
      .innerJoin('scans as s', 's.id', 'k.scan_id')
      .where('k.sensor_row_id', '=', sensorRowId)
      .where('s.status', 'in', ['queued', 'scanning'])
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /**
   * Checks the fields a submission carries (also callable before the upload has been read,
   * with the fields seen so far): 400 for a bad scanId, objectType or instance id, 409 for a
   * scanId the sensor already used.
   */
  async checkSubmission(sensor: Sensor, s: SensorSubmission): Promise<void> {
    if (s.clientScanId !== undefined && !ID.test(s.clientScanId)) throw invalid('scanId', 'use 1-128 letters, digits, - or _ (no spaces or other characters)');
    if (s.objectType !== undefined && s.objectType !== 'file') throw invalid('objectType', 'the only supported object type is file');
    if (s.instanceId !== undefined) checkInstanceId(s.instanceId);
    if (s.clientScanId !== undefined && (await this.findMapping(sensor, s.clientScanId))) throw duplicate(s.clientScanId);
  }

  /**
   * Files a stored upload as a scan of the sensor (channel `kata`); a missing objectType means
   * `file`. On any refusal the blob is discarded (when no other scan refers to it). Resolves
   * once the scan, its job and the scanId mapping are durable.
   */
  async submit(sensor: Sensor, s: SensorSubmission, stored: StoredBlob): Promise<void> {
    const { scans } = this.deps;
    try {
      await this.checkSubmission(sensor, s);
    } catch (e) {
      await scans.discardBlob(stored.digests.sha256).catch(() => {});
      throw e;
    }
    const name = (s.name && s.name.trim() ? s.name.trim() : `kata-${s.clientScanId ?? stored.digests.sha256.slice(0, 16)}`).slice(0, 1024);
    const row = await scans.acceptStoredBlob(
      { principal: sensor.principal, channel: 'kata', subOrigin: `kata:${sensor.sensorId}`, name, requestId: s.requestId, orgId: sensor.orgId },
      stored,
    );
    try {
      await this.deps.store.db
        .insertInto('kata_scans')
        .values({ sensor_row_id: sensor.rowId, client_scan_id: s.clientScanId ?? null, instance_id: s.instanceId ?? null, scan_id: row.id, created_at: Date.now() })
        .execute();
    } catch (e) {
      // the same scanId submitted twice at once: the unique index keeps the first
      await scans.deleteScan(sensor.principal, row.id).catch(() => {});
      if (isUniqueViolation(e)) throw duplicate(s.clientScanId ?? '');
      throw e;
    }
    if (s.instanceId !== undefined) await this.noteInstance(sensor.rowId, s.instanceId);
  }

  /** Adds an instance id (given in a form rather than the query) to the sensor's list. */
  private async noteInstance(rowId: number, instanceId: string): Promise<void> {
    const row = await this.deps.store.db.selectFrom('kata_sensors').selectAll().where('id', '=', rowId).executeTakeFirst();
    if (row && !parseIds(row.instance_ids).includes(instanceId)) await this.seen(row, instanceId);
  }

  // Results ------------------------------------------------------------------------------

  /** The sensor's scans that have a scanId (optionally of one instance), oldest first. */
  async listScans(sensor: Sensor, instanceId?: string): Promise<SensorScan[]> {
    if (instanceId !== undefined) checkInstanceId(instanceId);
    const { db } = this.deps.store;
    let q = db
      .selectFrom('kata_scans as k')
      .innerJoin('scans as s', 's.id', 'k.scan_id')
      .where('k.sensor_row_id', '=', sensor.rowId)
      .where('k.client_scan_id', 'is not', null);
    if (instanceId !== undefined) q = q.where('k.instance_id', '=', instanceId);
    const rows = await q
      .select(['k.client_scan_id', 'k.instance_id', 's.id', 's.status', 's.verdict', 's.confidence', 's.partial', 's.score', 's.created_at', 's.finished_at'])
      .orderBy('k.id')
      .execute();
    const findings = new Map<number, SensorScan['findings']>();
    const done = rows.filter((r) => r.status === 'done').map((r) => r.id);
    for (let i = 0; i < done.length; i += 500) {
      const ev = await db
        .selectFrom('evidence')
        .select(['root_id', 'heuristic', 'name', 'details', 'scanner', 'score', 'verdict'])
        .where('root_id', 'in', done.slice(i, i + 500))
        .where((eb) => eb.or([eb('score', '>', 0), eb('verdict', 'is not', null)]))
        .orderBy('id')
        .execute();
      for (const e of ev) {
        const list = findings.get(e.root_id) ?? [];
        const name = e.details && e.details.length <= 300 ? e.details : e.name;
        if (!list.some((f) => f.name === name && f.engine === e.scanner)) list.push({ name, engine: e.scanner, heuristic: e.heuristic });
        findings.set(e.root_id, list);
      }
    }
    return rows.map((r) => ({
      clientScanId: r.client_scan_id!,
      instanceId: r.instance_id,
      scanId: r.id,
      status: r.status,
      verdict: r.verdict,
      confidence: r.confidence,
      partial: r.partial === 1,
      score: r.score,
      createdAt: r.created_at,
      finishedAt: r.finished_at,
      findings: findings.get(r.id) ?? [],
    }));
  }

  /** Deletes one scan of the sensor (and its sample when nothing else refers to it); 404 when unknown. */
  async deleteScan(sensor: Sensor, clientScanId: string): Promise<void> {
    if (!ID.test(clientScanId)) throw notFound(`scan ${clientScanId}`);
    const m = await this.findMapping(sensor, clientScanId);
    if (!m) throw notFound(`scan ${clientScanId}`);
    await this.dropMapping(sensor, m);
  }

  /** Deletes all the sensor's scans (of one instance, when given). Returns how many; 404 when none. */
  async deleteAll(sensor: Sensor, instanceId?: string): Promise<number> {
    if (instanceId !== undefined) checkInstanceId(instanceId);
    let q = this.deps.store.db.selectFrom('kata_scans').selectAll().where('sensor_row_id', '=', sensor.rowId);
    if (instanceId !== undefined) q = q.where('instance_id', '=', instanceId);
    const all = await q.orderBy('id').execute();
    if (all.length === 0) throw notFound(`scans of sensor ${sensor.sensorId}`);
    for (const m of all) await this.dropMapping(sensor, m);
    return all.length;
  }

  private async findMapping(sensor: Sensor, clientScanId: string) {
    return this.deps.store.db
      .selectFrom('kata_scans')
      .selectAll()
      .where('sensor_row_id', '=', sensor.rowId)
      .where('client_scan_id', '=', clientScanId)
      .executeTakeFirst();
  }

  private async dropMapping(sensor: Sensor, m: { id: number; scan_id: number }): Promise<void> {
    try {
      await this.deps.scans.deleteScan(sensor.principal, m.scan_id);
    } catch (e) {
      // already deleted through another API: forget the mapping all the same
      if (!(e instanceof VerdictError && e.code === 'not_found')) throw e;
    }
    await this.deps.store.db.deleteFrom('kata_scans').where('id', '=', m.id).execute();
  }

  // Administration -----------------------------------------------------------------------

  /**
   * Sensors and integration requests the actor may see: an operator sees all; an
   * Administrator sees the sensors of its organizations and, when its organization is a
   * top-level one, the requests not yet given to an organization.
   */
  async list(actor: SensorActor, state?: SensorState): Promise<SensorInfo[]> {
    const scope = await this.scope(actor);
    let q = this.deps.store.db.selectFrom('kata_sensors').selectAll();
    if (state) q = q.where('state', '=', state);
    const rows = await q.orderBy('id').execute();
    return rows.filter((r) => scope.sees(r)).map(sensorInfo);
  }

  async get(actor: SensorActor, sensorId: string): Promise<SensorInfo> {
    const scope = await this.scope(actor);
    const row = await this.deps.store.db.selectFrom('kata_sensors').selectAll().where('sensor_id', '=', sensorId).executeTakeFirst();
    if (!row || !scope.sees(row)) throw notFound(`sensor ${sensorId}`);
    return sensorInfo(row);
  }

  /**
   * Approves a pending (or earlier rejected) sensor into an organization: the one given, or
   * the approver's own (the default organization for the operator). Binds the certificate
   * recorded in the request.
   */
  async approve(actor: SensorActor, sensorId: string, org: { id?: number; name?: string } = {}): Promise<SensorInfo> {
    const scope = await this.scope(actor);
    const row = await this.deps.store.db.selectFrom('kata_sensors').selectAll().where('sensor_id', '=', sensorId).executeTakeFirst();
    if (!row || !scope.sees(row)) throw notFound(`sensor ${sensorId}`);
    let orgId: number;
    if (org.name !== undefined) {
      const o = await this.deps.store.getOrgByName(org.name);
      if (!o) throw notFound(`organization ${org.name}`);
      orgId = o.id;
    } else if (org.id !== undefined) {
      if (!(await this.deps.store.getOrg(org.id))) throw notFound(`organization ${org.id}`);
      orgId = org.id;
    } else {
      orgId = scope.defaultOrgId ?? row.org_id ?? (await this.defaultOrgId());
    }
    if (!scope.mayUse(orgId)) throw invalid('organization_id', 'not an organization you can give sensors to');
    return this.decide(row, 'approved', orgId, scope.by);
  }

  /** Rejects a pending request, or revokes an approved sensor: it gets 401 from then on. */
  async reject(actor: SensorActor, sensorId: string): Promise<SensorInfo> {
    const scope = await this.scope(actor);
    const row = await this.deps.store.db.selectFrom('kata_sensors').selectAll().where('sensor_id', '=', sensorId).executeTakeFirst();
    if (!row || !scope.sees(row)) throw notFound(`sensor ${sensorId}`);
    return this.decide(row, 'rejected', row.org_id, scope.by);
  }

  private async decide(row: KataSensorRow, state: SensorState, orgId: number | null, by: string): Promise<SensorInfo> {
    const patch = { state, org_id: orgId, decided_by: by, decided_at: Date.now() };
    await this.deps.store.db.updateTable('kata_sensors').set(patch).where('id', '=', row.id).execute();
    this.deps.log.info({ sensorId: row.sensor_id, state, orgId, by }, 'KATA sensor decision');
    return sensorInfo({ ...row, ...patch });
  }

  private async defaultOrgId(): Promise<number> {
    const o = await this.deps.store.getOrgByName(this.deps.config.defaultOrgName);
    if (!o) throw notFound(`organization ${this.deps.config.defaultOrgName}`);
    return o.id;
  }

  private async scope(actor: SensorActor): Promise<{ sees(r: KataSensorRow): boolean; mayUse(orgId: number): boolean; defaultOrgId?: number; by: string }> {
    if ('operator' in actor) return { sees: () => true, mayUse: () => true, by: `cli:${actor.operator}` };
    const p = actor.principal;
    requirePermission(p, 'org:manage');
    const own = await this.deps.store.getOrg(p.orgId);
    if (!own) throw forbidden('the token\'s organization is gone');
    const topLevel = own.parent_id === null;
    return {
      sees: (r) => (r.org_id === null ? topLevel : p.orgIds.includes(r.org_id)),
      mayUse: (orgId) => p.orgIds.includes(orgId),
      defaultOrgId: p.orgId,
      by: p.userId !== undefined ? `user:${p.userId}` : `token:${p.tokenId}`,
    };
  }
}

/** `AB:CD:…` or `abcd…` → lowercase hex without separators; undefined when not a SHA-256. */
export function normalizeFingerprint(fp: string | undefined): string | undefined {
  if (!fp) return undefined;
  const hex = fp.replace(/[:\s]/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

function sameFingerprint(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function checkInstanceId(v: string): void {
  if (!INSTANCE_ID.test(v)) throw invalid('sensorInstanceId', 'use 1-200 letters, digits, and . : @ - _');
}

function duplicate(clientScanId: string): VerdictError {
  return new VerdictError('conflict', `scanId ${clientScanId} was already submitted by this sensor; delete its results first or use a new scanId`, 409, 'scanId');
}

function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === '23505';
}

function parseIds(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function sensorInfo(r: KataSensorRow): SensorInfo {
  return {
    sensorId: r.sensor_id,
    state: r.state,
    orgId: r.org_id,
    certFingerprint: r.cert_fingerprint,
    certSubject: r.cert_subject,
    instanceIds: parseIds(r.instance_ids),
    firstAddress: r.first_address,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    decidedBy: r.decided_by,
    decidedAt: r.decided_at,
  };
}
