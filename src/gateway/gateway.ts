/**
 * The email gateway: Verdict as a filtering SMTP relay in front of a mail server.
 *
 *   SMTP client ─► SmtpListener ─► intake: ScanService.submitFile (channel `email`), envelope
 *   recorded in email_deliveries, 250 ─► worker scans ─► loop: policy ─► deliver | quarantine
 *
 * The loop is a small poll over the database (every POLL_MS): it claims messages whose scan has
 * ended, applies the policy (src/gateway/policy.ts) and sends what is due (delivery.ts). Polling
 * keeps it right in every deployment: the scan may finish in another process (scale mode), and
 * after a restart the pending rows are simply found again.
 *
 * @example
 * const gw = new EmailGateway({ config, store, blobs, service, quarantine, orgs, lists, log });
 * quarantine.setReleaser(gw.releaser);
 * const port = await gw.listen();   // SMTP listener + loop
 * await gw.close();
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { ObjectReport } from '../engine/report.ts';
import type { BlobStore } from '../store/blobs.ts';
import type { EmailDeliveryRow, ScanRow } from '../store/schema.ts';
import type { Store } from '../store/store.ts';
import type { ScanService, Principal } from '../service/scan-service.ts';
import type { QuarantineService } from '../service/quarantine.ts';
import type { OrgService } from '../service/org-service.ts';
import type { ListsService } from '../service/lists-service.ts';
import { VerdictError } from '../service/errors.ts';
import { isVerdictCode } from '../verdict/codes.ts';
import { Deliveries, type Envelope } from './delivery.ts';
import { decideAction, verdictHeaders, type PolicyDecision } from './policy.ts';
import { GatewayReleaser } from './releaser.ts';
import { SmtpListener, SmtpReplyError, type IncomingMessage, type Intake } from './smtp-listener.ts';
import { domainOf } from './message.ts';
import { malwareAlerts } from './alerts.ts';

const POLL_MS = 500;
const DECIDE_BATCH = 50;
const DUE_BATCH = 20;
/** Longest wait for a verdict before answering DATA when `rejectMalicious` is on. */
const REJECT_WAIT_MS = 120_000;

export interface GatewayDeps {
  config: Config;
  store: Store;
  blobs: BlobStore;
  service: ScanService;
  quarantine: QuarantineService;
  orgs: OrgService;
  lists: ListsService;
  log: Logger;
}

export class EmailGateway implements Intake {
  readonly deliveries: Deliveries;
  readonly releaser: GatewayReleaser;
  private readonly listener: SmtpListener;
  private readonly log: Logger;
  /** Accepted domain → organization name (undefined: the default organization). */
  private readonly domains = new Map<string, string | undefined>();
  private readonly vips: Set<string>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: GatewayDeps) {
    const { config } = deps;
    this.log = deps.log.child({ component: 'smtp-gateway' });
    for (const entry of config.smtp.domains) {
      const [domain, org] = entry.split('=').map((s) => s.trim());
      if (domain) this.domains.set(domain.toLowerCase().replace(/\.$/, ''), org || undefined);
    }
    this.vips = new Set(config.smtp.vipAddresses.map((a) => a.toLowerCase()));
    this.deliveries = new Deliveries({ store: deps.store, blobs: deps.blobs, smtp: config.smtp, log: this.log });
    this.releaser = new GatewayReleaser(this.deliveries);
    this.listener = new SmtpListener({ smtp: config.smtp, host: config.host, intake: this, log: this.log });
  }

  /** Starts the SMTP listener and the delivery loop; resolves with the SMTP port. */
  async listen(): Promise<number> {
    const { smtp } = this.deps.config;
    if (this.domains.size === 0) this.log.warn('smtp.domains is empty: every recipient will be refused');
    if (!smtp.nextHop) this.log.warn('smtp.nextHop is not set: accepted mail cannot be delivered (deliveries are retried until smtp.bounceAfterMs)');
    const port = await this.listener.listen();
    this.schedule(0);
    return port;
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.listener.close();
    await this.running;
  }

  // Intake (called by the listener) ---------------------------------------------------------

  async routeRecipient(address: string): Promise<number | undefined> {
    const domain = domainOf(address);
    if (!this.domains.has(domain)) return undefined;
    const name = this.domains.get(domain) ?? this.deps.config.defaultOrgName;
    const org = await this.deps.store.getOrgByName(name);
    if (!org) {
      this.log.error({ domain, organization: name }, 'smtp.domains names an organization that does not exist');
      throw new SmtpReplyError(451, '4.3.0 Mailbox domain is not available right now');
    }
    return org.id;
  }

  async accept(msg: IncomingMessage): Promise<string> {
    const { service, store } = this.deps;
    // the gateway acts for the organization that owns the recipient domain
    const principal: Principal = { tokenId: 0, orgId: msg.orgId, orgIds: [msg.orgId], role: 'Administrator' };
    let scan: ScanRow;
    try {
      scan = await service.submitFile({ principal, channel: 'email', subOrigin: 'smtp', name: 'message.eml' }, msg.body as Readable);
    } catch (e) {
      if (e instanceof VerdictError && e.status === 413) throw new SmtpReplyError(552, `5.3.4 ${e.message}`);
      throw e;
    }
    const vip = msg.envelope.to.some((a) => this.vips.has(a.toLowerCase()));
    const rowId = await this.deliveries.record(scan, msg.envelope);
    await store.updateScan(scan.id, { envelope_to: msg.envelope.to.join(',').slice(0, 4000), verbose_action: 'indelivery', belongs_to_vip: vip ? 1 : 0 });
    this.log.info({ scanId: scan.id, from: msg.envelope.from, to: msg.envelope.to, clientIp: msg.envelope.clientIp }, 'message accepted');
    if (this.deps.config.smtp.rejectMalicious) await this.decideWhileWaiting(scan.id, rowId);
    await store.durable(); // 250 only once the delivery record is kept too
    this.schedule(0);
    return `2.0.0 Ok: queued as scan ${scan.id}`;
  }

  /** `rejectMalicious`: the client waits for the verdict; a MAL message is refused with 550. */
  private async decideWhileWaiting(scanId: number, rowId: number): Promise<void> {
    // hold the row so the loop leaves it to us while the client waits
    if (!(await this.deliveries.claim(rowId, 'scanning'))) return;
    const until = Date.now() + Math.min(REJECT_WAIT_MS, this.deps.config.limits.scanTimeoutMs + 10_000);
    let decided: PolicyDecision | undefined;
    try {
      while (!this.stopped && Date.now() < until) {
        // woken when this process finishes the scan; re-read every 100 ms for remote workers
        const finished = this.deps.service.events.next(scanId, 100);
        const scan = await this.deps.store.getScan(scanId).catch((e) => {
          finished.cancel();
          throw e;
        });
        if (!scan || scan.status === 'done' || scan.status === 'error') {
          finished.cancel();
          if (scan) decided = await this.decide(scan, (await this.deliveries.get(rowId))!, true);
          break;
        }
        await finished.wait;
      }
    } catch (e) {
      // the message is stored: answer 250 and let the loop decide, rather than have the client send it twice
      this.log.warn({ err: e, scanId }, 'verdict could not be read at SMTP time; the message is accepted and the loop decides');
      decided = undefined;
    }
    if (decided?.action !== 'reject') {
      await this.deliveries.unclaim(rowId).catch(() => {}); // else the claim expires on its own
      return;
    }
    await this.deliveries.hold(rowId, decided.reason);
    await this.deps.store.updateScan(scanId, { verbose_action: 'scanned' });
    throw new SmtpReplyError(550, `5.7.1 Message refused: ${decided.reason} (scan ${scanId})`);
  }

  // Loop ------------------------------------------------------------------------------------

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.running) return; // a pass is under way; it schedules the next one
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      let more = false;
      this.running = this.pass()
        .then((m) => void (more = m))
        .catch((e) => this.log.warn({ err: e }, 'email gateway pass failed; next time'))
        .finally(() => {
          this.running = undefined;
          this.schedule(more ? 0 : POLL_MS);
        });
    }, ms);
    this.timer.unref();
  }

  /** One pass: decide on messages whose scan has ended, then send what is due. True: more is waiting. */
  async pass(): Promise<boolean> {
    const decided = await this.deliveries.awaitingDecision(DECIDE_BATCH);
    for (const row of decided) {
      if (this.stopped) return false;
      if (!(await this.deliveries.claim(row.id, 'scanning'))) continue;
      try {
        await this.apply(row);
      } catch (e) {
        // the claim stays until its lease runs out: tried again then, not in a tight loop
        this.log.error({ err: e, scanId: row.scan_id }, 'policy could not be applied; will try again when the claim expires');
      }
    }
    if (this.stopped) return false;
    return (await this.deliveries.runDue(DUE_BATCH)) >= DUE_BATCH || decided.length >= DECIDE_BATCH;
  }

  /** Applies the policy to a claimed message whose scan has ended. */
  private async apply(row: EmailDeliveryRow): Promise<void> {
    const scan = await this.deps.store.getScan(row.scan_id);
    if (!scan) {
      await this.deliveries.fail(row.id, 'the scan was deleted before its message was delivered');
      return;
    }
    const d = await this.decide(scan, row, false);
    switch (d.action) {
      case 'deliver':
        await this.deliveries.schedule(row.id, verdictHeaders(scan.id, d.verdict));
        break;
      case 'quarantine':
        await this.deps.quarantine.quarantine(scan.id, { reason: d.reason, by: 'email gateway' });
        await this.deliveries.hold(row.id, d.reason);
        if (d.verdict === 'MAL') await this.alert(scan, row, d.reason);
        break;
      default:
        await this.deliveries.hold(row.id, d.reason);
        await this.deps.store.updateScan(scan.id, { verbose_action: 'scanned' });
    }
    this.log.info({ scanId: scan.id, action: d.action, verdict: d.verdict, reason: d.reason }, 'email policy applied');
  }

  /**
   * The organization's malware notices (alerts.ts). Best effort: sent once, a failure is
   * logged; the held message itself is safe in quarantine either way.
   */
  private async alert(scan: ScanRow, row: EmailDeliveryRow, reason: string): Promise<void> {
    const settings = await this.deps.orgs.settings(scan.org_id);
    const fresh = (await this.deps.store.getScan(scan.id)) ?? scan;
    for (const a of malwareAlerts(fresh, JSON.parse(row.rcpt_to) as string[], settings, reason)) {
      const res = await this.deliveries.sendRaw(() => a.raw, { from: '', to: a.to });
      if (!res.ok) this.log.warn({ scanId: scan.id, to: a.to, err: res.detail }, 'malware alert could not be sent');
    }
  }

  private async decide(scan: ScanRow, row: EmailDeliveryRow, atSmtpTime: boolean): Promise<PolicyDecision> {
    const v = scan.sub_verdict ?? scan.verdict;
    const settings = await this.deps.orgs.settings(scan.org_id);
    return decideAction({
      verdict: scan.status === 'done' && isVerdictCode(v) ? v : null,
      settings,
      lists: await this.listsSay(scan, row),
      vip: scan.belongs_to_vip === 1,
      atSmtpTime,
      rejectMalicious: this.deps.config.smtp.rejectMalicious,
    });
  }

  /**
   * The allow/block lists on the envelope sender and client IP, and on the header sender and
   * source IP the email scanner found (the scan's own list pass ran before those were known).
   */
  private async listsSay(scan: ScanRow, row: EmailDeliveryRow): Promise<'block' | 'allow' | 'none'> {
    const empty = { info: { kind: 'url' }, evidence: [], attributes: {}, engines: [], children: [] } as unknown as ObjectReport;
    const probes = [
      { ...scan, sample_from: row.mail_from || null, sender_ip: row.client_ip },
      { ...scan, sample_from: scan.sample_from, sender_ip: scan.sender_ip },
    ];
    let allow = false;
    for (const p of probes) {
      for (const m of await this.deps.lists.matches(p, empty)) {
        if (m.list === 'blacklist') return 'block';
        allow = true;
      }
    }
    return allow ? 'allow' : 'none';
  }
}

export type { Envelope };
