/**
 * Outbound delivery to the next hop, durable: every accepted message has a row in
 * `email_deliveries` holding its envelope and where it stands, so a restart loses nothing.
 *
 * - `scanning`: waiting for its verdict (the gateway decides, then `schedule`s or `hold`s it).
 * - `queued`: to send at `next_attempt_at`. A temporary failure (4xx, connection refused,
 *   timeout) reschedules with a doubling delay from `deliveryRetryMs` (capped at one hour); a
 *   permanent one (5xx) or a message still undelivered `bounceAfterMs` after it was accepted
 *   ends `failed`, with the scan's verbose_action `delivery_error`.
 * - `delivered`, `held` (quarantined or refused: nothing to send), `failed`: final.
 *
 * Rows are claimed with a lease, so several processes can run the loop on one database.
 * Sending uses nodemailer's `raw` message with an explicit envelope: the stored bytes go out as
 * they are, below the `X-Verdict-*` header lines.
 *
 * @example
 * const d = new Deliveries({ store, blobs, smtp: config.smtp, log });
 * await d.record(scan, { from: 'a@x.test', to: ['b@y.test'] });   // when the message is accepted
 * await d.schedule(rowId, [['X-Verdict-Verdict', 'CLN']]);          // when its verdict allows delivery
 * await d.runDue();                                                  // the loop sends what is due
 */
import type { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { BlobStore } from '../store/blobs.ts';
import type { EmailDeliveryRow, ScanRow } from '../store/schema.ts';
import type { Store } from '../store/store.ts';
import { prependHeaders } from './message.ts';

export type SmtpConfig = Config['smtp'];

export interface Envelope {
  /** MAIL FROM ('' for the null sender of bounces). */
  from: string;
  to: string[];
  clientIp?: string;
  helo?: string;
}

export interface SendResult {
  ok: boolean;
  /** A failure the next hop may get over (4xx, no connection). */
  temporary: boolean;
  detail: string;
}

/** How long one process holds a claimed row before another may take it. */
const LEASE_MS = 5 * 60_000;
const MAX_RETRY_MS = 3_600_000;

export interface DeliveryDeps {
  store: Store;
  blobs: BlobStore;
  smtp: SmtpConfig;
  log: Logger;
}

export class Deliveries {
  constructor(private readonly deps: DeliveryDeps) {}

  private get db() {
    return this.deps.store.db;
  }

  /** Records an accepted message, waiting for its verdict. Durable when it resolves. */
  async record(scan: ScanRow, env: Envelope, kind: 'message' | 'release' = 'message', state: EmailDeliveryRow['state'] = 'scanning'): Promise<number> {
    const now = Date.now();
    const row = await this.db
      .insertInto('email_deliveries')
      .values({
        scan_id: scan.id,
        org_id: scan.org_id,
        kind,
        mail_from: env.from,
        rcpt_to: JSON.stringify(env.to),
        client_ip: env.clientIp ?? null,
        helo: env.helo ?? null,
        state,
        headers: null,
        next_attempt_at: now,
        lease_until: null,
        last_error: null,
        created_at: now,
        updated_at: now,
        delivered_at: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  /** The accepted-message row of a scan (its envelope). */
  async ofScan(scanId: number): Promise<EmailDeliveryRow | undefined> {
    return this.db.selectFrom('email_deliveries').selectAll().where('scan_id', '=', scanId).where('kind', '=', 'message').orderBy('id').executeTakeFirst();
  }

  async get(id: number): Promise<EmailDeliveryRow | undefined> {
    return this.db.selectFrom('email_deliveries').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Messages whose scan has ended (done or error) or vanished, still waiting for a decision. */
  async awaitingDecision(limit = 50): Promise<EmailDeliveryRow[]> {
    const now = Date.now();
    return this.db
      .selectFrom('email_deliveries as d')
      .leftJoin('scans as s', 's.id', 'd.scan_id')
      .selectAll('d')
      .where('d.state', '=', 'scanning')
      .where((eb) => eb.or([eb('d.lease_until', 'is', null), eb('d.lease_until', '<', now)]))
      .where((eb) => eb.or([eb('s.status', 'in', ['done', 'error']), eb('s.id', 'is', null)]))
      .orderBy('d.id')
      .limit(limit)
      .execute();
  }

  /** Takes a row for this process (false: another one has it). */
  async claim(id: number, state: EmailDeliveryRow['state']): Promise<boolean> {
    const now = Date.now();
    const r = await this.db
      .updateTable('email_deliveries')
      .set({ lease_until: now + LEASE_MS, updated_at: now })
      .where('id', '=', id)
      .where('state', '=', state)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Gives a claimed row back without changing its state. */
  async unclaim(id: number): Promise<void> {
    await this.db.updateTable('email_deliveries').set({ lease_until: null, updated_at: Date.now() }).where('id', '=', id).execute();
  }

  /** Records a quarantine release that was sent (or refused) right away. */
  async recordRelease(scan: ScanRow, env: Envelope, res: SendResult, headers: [string, string][]): Promise<void> {
    const id = await this.record(scan, env, 'release', 'held'); // never 'queued': the loop must not send it again
    await this.db.updateTable('email_deliveries').set({ attempts: 1, headers: JSON.stringify(headers) }).where('id', '=', id).execute();
    await this.finish(id, res.ok ? 'delivered' : 'failed', res.detail);
  }

  /** The message may go: queue it for the next hop with these header lines on top. */
  async schedule(id: number, headers: [string, string][]): Promise<void> {
    const now = Date.now();
    await this.db
      .updateTable('email_deliveries')
      .set({ state: 'queued', headers: JSON.stringify(headers), next_attempt_at: now, lease_until: null, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  /** Nothing to send (quarantined, refused, unexaminable). */
  async hold(id: number, reason: string): Promise<void> {
    await this.finish(id, 'held', reason);
  }

  async fail(id: number, reason: string): Promise<void> {
    await this.finish(id, 'failed', reason);
  }

  private async finish(id: number, state: 'held' | 'failed' | 'delivered', detail: string | null): Promise<void> {
    const now = Date.now();
    await this.db
      .updateTable('email_deliveries')
      .set({ state, last_error: detail, lease_until: null, updated_at: now, ...(state === 'delivered' ? { delivered_at: now } : {}) })
      .where('id', '=', id)
      .execute();
  }

  /**
   * Sends queued messages that are due, a few connections at a time; returns how many were
   * tried (the caller comes back at once when that is the whole batch).
   */
  async runDue(limit = 20, concurrency = 4): Promise<number> {
    const now = Date.now();
    const due = await this.db
      .selectFrom('email_deliveries')
      .selectAll()
      .where('state', '=', 'queued')
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .orderBy('next_attempt_at')
      .limit(limit)
      .execute();
    const mine: EmailDeliveryRow[] = [];
    for (const row of due) if (await this.claim(row.id, 'queued')) mine.push(row);
    const workers = Array.from({ length: Math.min(concurrency, mine.length) }, async () => {
      for (let row = mine.shift(); row; row = mine.shift()) await this.attempt(row);
    });
    await Promise.all(workers);
    return due.length;
  }

  /** One delivery attempt of a claimed queued row, and what follows from its outcome. */
  private async attempt(row: EmailDeliveryRow): Promise<void> {
    const { store, log } = this.deps;
    const scan = await store.getScan(row.scan_id);
    if (!scan?.blob_sha256) {
      await this.fail(row.id, 'the scan or its stored message was deleted before delivery');
      return;
    }
    const headers = row.headers ? (JSON.parse(row.headers) as [string, string][]) : [];
    const res = await this.send(scan.blob_sha256, { from: row.mail_from, to: JSON.parse(row.rcpt_to) as string[] }, headers);
    const attempts = row.attempts + 1;
    const now = Date.now();
    if (res.ok) {
      await this.db.updateTable('email_deliveries').set({ attempts }).where('id', '=', row.id).execute();
      await this.finish(row.id, 'delivered', res.detail);
      if (row.kind === 'message') await store.updateScan(row.scan_id, { verbose_action: 'delivered' });
      log.info({ scanId: row.scan_id, attempts }, 'email delivered to the next hop');
      return;
    }
    const delay = Math.min(MAX_RETRY_MS, this.deps.smtp.deliveryRetryMs * 2 ** (attempts - 1));
    const expired = now + delay - row.created_at > this.deps.smtp.bounceAfterMs;
    if (res.temporary && !expired) {
      await this.db
        .updateTable('email_deliveries')
        .set({ attempts, next_attempt_at: now + delay, last_error: res.detail, lease_until: null, updated_at: now })
        .where('id', '=', row.id)
        .execute();
      log.warn({ scanId: row.scan_id, attempts, delayMs: delay, err: res.detail }, 'email delivery failed; will retry');
      return;
    }
    const why = res.temporary ? `given up after ${attempts} attempts over ${Math.round((now - row.created_at) / 1000)} s: ${res.detail}` : `refused by the next hop: ${res.detail}`;
    await this.db.updateTable('email_deliveries').set({ attempts }).where('id', '=', row.id).execute();
    await this.fail(row.id, why);
    if (row.kind === 'message') await store.updateScan(row.scan_id, { verbose_action: 'delivery_error' });
    log.error({ scanId: row.scan_id, attempts, err: res.detail }, 'email delivery failed for good');
  }

  /** Sends the stored message `sha256` with `headers` on top to the next hop, once. */
  send(sha256: string, env: { from: string; to: string[] }, headers: [string, string][]): Promise<SendResult> {
    return this.sendRaw(() => prependHeaders(this.deps.blobs.open(sha256), headers), env);
  }

  /** Sends a message (opened only once the next hop is known) to the next hop, once. */
  async sendRaw(open: () => Readable | Buffer, env: { from: string; to: string[] }): Promise<SendResult> {
    const hop = this.deps.smtp.nextHop;
    if (!hop) return { ok: false, temporary: true, detail: 'no next hop is configured (smtp.nextHop)' };
    let transport;
    try {
      transport = nodemailer.createTransport(transportOptions(hop));
    } catch (e) {
      return { ok: false, temporary: true, detail: `smtp.nextHop: ${(e as Error).message}` };
    }
    try {
      const raw = open();
      const info = await transport.sendMail({ envelope: { from: env.from, to: env.to }, raw });
      const rejected = (info.rejected ?? []).map(String);
      return { ok: true, temporary: false, detail: `${info.response ?? 'accepted'}${rejected.length ? `; refused recipients: ${rejected.join(', ')}` : ''}` };
    } catch (e) {
      const err = e as Error & { responseCode?: number; code?: string; response?: string };
      const code = err.responseCode;
      const temporary = typeof code !== 'number' || (code >= 400 && code < 500);
      return { ok: false, temporary, detail: `${code ?? err.code ?? 'error'} ${err.response ?? err.message}`.slice(0, 1000) };
    } finally {
      transport.close();
    }
  }
}

/** nodemailer options for `smtp://host:port` (opportunistic STARTTLS) or `smtps://host:port`. */
export function transportOptions(hop: string) {
  const u = new URL(hop);
  if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:') throw new Error(`expected smtp://host:port or smtps://host:port, not ${hop}`);
  const secure = u.protocol === 'smtps:';
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : secure ? 465 : 25,
    secure,
    // an internal mail server's certificate is often private: STARTTLS is opportunistic, as
    // between MTAs (RFC 7435); smtps:// verifies the certificate
    tls: secure ? undefined : { rejectUnauthorized: false },
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 120_000,
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}
