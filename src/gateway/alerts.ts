/**
 * Notices the gateway sends when it holds a malicious message, as the organization settings ask:
 * `email_end_user_on_malicious_alert` tells each recipient that a message to them was held;
 * `client_alert_malicious_to_admin_email` tells the organization's report recipients
 * (`email_report_recipients`). Plain text, sent with the null envelope sender (RFC 3834: an
 * automatic notice must not draw replies or bounces) through the next hop.
 *
 * @example
 * for (const a of malwareAlerts(scan, ['alice@example.com'], settings, 'malicious')) await send(a);
 */
import crypto from 'node:crypto';
import type { ScanRow } from '../store/schema.ts';
import { domainOf, rfc5322Date } from './message.ts';

export interface AlertSettings {
  email_end_user_on_malicious_alert: boolean;
  client_alert_malicious_to_admin_email: boolean;
  email_report_recipients: string | null;
}

export interface Alert {
  to: string[];
  raw: Buffer;
}

export function malwareAlerts(scan: ScanRow, recipients: string[], settings: AlertSettings, reason: string): Alert[] {
  const out: Alert[] = [];
  const what = [`Scan: ${scan.id}`, `From: ${scan.sample_from ?? '(unknown)'}`, `Subject: ${scan.subject ?? '(none)'}`, `Reason: ${reason}`];
  if (settings.email_end_user_on_malicious_alert) {
    for (const to of recipients) {
      out.push({
        to: [to],
        raw: compose(to, 'A message to you was held: it is malicious', [
          'A message addressed to you was found malicious and is held in quarantine. It was not delivered.',
          '',
          ...what,
          '',
          'If you expected this message, ask your administrator to review it.',
        ]),
      });
    }
  }
  const admins = (settings.email_report_recipients ?? '').split(/[,;]/).map((a) => a.trim()).filter(Boolean);
  if (settings.client_alert_malicious_to_admin_email && admins.length) {
    out.push({
      to: admins,
      raw: compose(admins.join(', '), `Malicious email held for ${recipients.join(', ')}`.slice(0, 200), [
        'The email gateway held a malicious message in quarantine.',
        '',
        `To: ${recipients.join(', ')}`,
        ...what,
      ]),
    });
  }
  return out;
}

function compose(to: string, subject: string, lines: string[]): Buffer {
  const domain = domainOf(to.split(',')[0].trim()) || 'localhost';
  const head = [
    `From: Verdict email gateway <postmaster@${domain}>`,
    `To: ${to}`,
    `Subject: ${subject.replace(/[\r\n]+/g, ' ')}`,
    `Date: ${rfc5322Date()}`,
    `Message-ID: <${crypto.randomUUID()}@verdict.${domain}>`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ];
  const body = lines.map((l) => l.replace(/[\r\n]+/g, ' '));
  return Buffer.from([...head, '', ...body, ''].join('\r\n'), 'utf8');
}
