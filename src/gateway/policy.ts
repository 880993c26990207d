/**
 * The email gateway's policy: a pure function from a scanned message's verdict, its
 * organization's settings, the allow/block lists' word on its envelope and whether a VIP is
 * among its recipients, to what happens to the message.
 *
 * - `send_malicious_emails`, `send_spam_emails`, `send_blocked_emails` are X-Ray's "blocking
 *   mode" switches: on (the default) holds MAL, SPM and BLK messages in quarantine; off
 *   delivers them, marked by the `X-Verdict-Verdict` header.
 * - LSP (likely spam) and CLN are delivered; SUS is delivered with its header, except to a VIP
 *   recipient, whose suspicious mail is held when malicious mail is.
 * - A block-list hit on the envelope sender, the header sender or the client IP makes the
 *   message BLK; an allow-list hit lets spam verdicts (LSP, SPM) through as CLN but never
 *   clears SUS, MAL or BLK (the lists applied by the scan itself already decided those).
 * - `rejectMalicious`, when the verdict is known while the client waits for its DATA answer,
 *   refuses MAL with 550 instead of holding it.
 * - A scan that could not finish (status error) is held (`hold`): it cannot be quarantined
 *   through X-Ray, and delivering what was never examined would be a confident clean.
 *
 * @example
 * decideAction({ verdict: 'MAL', scanError: false, settings: { send_malicious_emails: true, … },
 *   lists: 'none', vip: false, atSmtpTime: false, rejectMalicious: false });
 * // → { action: 'quarantine', verdict: 'MAL', reason: 'malicious (blocking mode send_malicious_emails)' }
 */
import type { VerdictCode } from '../verdict/codes.ts';

export interface PolicySettings {
  send_malicious_emails: boolean;
  send_spam_emails: boolean;
  send_blocked_emails: boolean;
}

export interface PolicyInput {
  /** The scan's verdict (null when the scan ended in error). */
  verdict: VerdictCode | null;
  settings: PolicySettings;
  /** What the lists say about the envelope sender, header sender and client IP. */
  lists: 'block' | 'allow' | 'none';
  /** One of the recipients is a VIP address. */
  vip: boolean;
  /** The SMTP client is still waiting for the answer to DATA. */
  atSmtpTime: boolean;
  rejectMalicious: boolean;
}

export type GatewayAction = 'deliver' | 'quarantine' | 'reject' | 'hold';

export interface PolicyDecision {
  action: GatewayAction;
  /** The verdict the message is delivered or held with (after the lists). */
  verdict: VerdictCode | 'ERR';
  reason: string;
}

export function decideAction(p: PolicyInput): PolicyDecision {
  if (p.verdict === null) return { action: 'hold', verdict: 'ERR', reason: 'the scan did not finish; the message is held unexamined' };
  let verdict: VerdictCode = p.verdict;
  let why = '';
  if (p.lists === 'block') {
    verdict = 'BLK';
    why = ' (block list)';
  } else if (p.lists === 'allow' && (verdict === 'LSP' || verdict === 'SPM')) {
    verdict = 'CLN';
    why = ' (allow list)';
  }
  const hold = (blocking: boolean, what: string, setting: string): PolicyDecision =>
    blocking
      ? { action: 'quarantine', verdict, reason: `${what}${why} (blocking mode ${setting})` }
      : { action: 'deliver', verdict, reason: `${what}${why}, delivered with a header (${setting} is off)` };
  switch (verdict) {
    case 'MAL':
      if (p.atSmtpTime && p.rejectMalicious) return { action: 'reject', verdict, reason: `malicious${why}: refused at SMTP time` };
      return hold(p.settings.send_malicious_emails, 'malicious', 'send_malicious_emails');
    case 'BLK':
      return hold(p.settings.send_blocked_emails, 'blocked by policy', 'send_blocked_emails');
    case 'SPM':
      return hold(p.settings.send_spam_emails, 'spam', 'send_spam_emails');
    case 'SUS':
      if (p.vip) return hold(p.settings.send_malicious_emails, 'suspicious, to a VIP', 'send_malicious_emails');
      return { action: 'deliver', verdict, reason: `suspicious${why}, delivered with a header` };
    default:
      return { action: 'deliver', verdict, reason: verdict === 'CLN' ? `clean${why}` : `likely spam${why}, delivered with a header` };
  }
}

/** Header lines (CRLF-free values) that the gateway prepends to a delivered message. */
export function verdictHeaders(scanId: number, verdict: string, extra: Record<string, string> = {}): [string, string][] {
  const out: [string, string][] = [
    ['X-Verdict-Verdict', verdict],
    ['X-Verdict-Scan-Id', String(scanId)],
  ];
  for (const [k, v] of Object.entries(extra)) out.push([k, v.replace(/[\r\n]+/g, ' ')]);
  return out;
}
