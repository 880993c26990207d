/**
 * Quarantine release through the gateway: the stored original message goes to the recipients
 * of its SMTP envelope through the next hop, by the same send path as any delivery, right
 * away (the analyst waits for the answer). A next hop that is down throws, so the release
 * answers 503 and the message stays in quarantine; one that refuses the message answers 409.
 *
 * @example
 * quarantine.setReleaser(new GatewayReleaser(deliveries));
 */
import type { EmailReleaser, ReleaseContext } from '../service/quarantine.ts';
import type { ScanRow } from '../store/schema.ts';
import type { Deliveries } from './delivery.ts';
import { verdictHeaders } from './policy.ts';

export class GatewayReleaser implements EmailReleaser {
  constructor(private readonly deliveries: Deliveries) {}

  async release(scan: ScanRow, ctx: ReleaseContext): Promise<{ delivered: boolean; detail: string }> {
    const original = await this.deliveries.ofScan(scan.id);
    if (!original) return { delivered: false, detail: 'this message did not come through the SMTP gateway: there is no envelope to deliver it to' };
    if (!scan.blob_sha256) return { delivered: false, detail: 'the stored message was deleted' };
    const env = { from: original.mail_from, to: JSON.parse(original.rcpt_to) as string[] };
    // the header says what the recipient's filters should believe from now on
    const verdict = ctx.markAsClean ? 'CLN' : (scan.sub_verdict ?? scan.verdict ?? 'ERR');
    const headers = verdictHeaders(scan.id, verdict, { 'X-Verdict-Released-By': ctx.releasedBy });
    const res = await this.deliveries.send(scan.blob_sha256, env, headers);
    await this.deliveries.recordRelease(scan, env, res, headers);
    if (res.ok) return { delivered: true, detail: `delivered to ${env.to.join(', ')}: ${res.detail}` };
    if (res.temporary) throw new Error(`the next hop is unavailable (${res.detail})`);
    return { delivered: false, detail: `the next hop refused the message: ${res.detail}` };
  }
}
