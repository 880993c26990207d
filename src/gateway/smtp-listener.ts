/**
 * The SMTP face of the gateway (smtp-server): accepts mail for the configured domains only,
 * announces and enforces SIZE, offers STARTTLS when a certificate is configured, and hands
 * each message's bytes, as a stream, to the intake. It answers 250 only once the intake says
 * the message is stored; the intake's refusals carry their SMTP reply code.
 *
 * - RCPT to a domain that is not ours: `550 5.7.1` (no relaying).
 * - Recipients of two organizations in one transaction: the second gets `451 4.5.3`, so the
 *   client sends it again in its own transaction (one scan belongs to one organization).
 * - Over `maxMessageBytes`: refused at MAIL FROM when the client declares its SIZE, otherwise
 *   the body stops being stored at the limit and DATA is answered `552`.
 * - A `Received:` trace line is put on top of the stored message (RFC 5321 §4.4), naming the
 *   client's HELO and address; everything below it is the message as received.
 *
 * @example
 * const l = new SmtpListener({ smtp: config.smtp, host: '127.0.0.1', intake, log });
 * const port = await l.listen();
 */
import fs from 'node:fs';
import os from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import type { Envelope, SmtpConfig } from './delivery.ts';
import { prependHeaders, rfc5322Date } from './message.ts';

/** A refusal with its SMTP reply code (smtp-server reads `responseCode`). */
export class SmtpReplyError extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}

export interface IncomingMessage {
  envelope: Envelope;
  orgId: number;
  /** The message with the Received line on top; ends early with an error when oversized. */
  body: Readable;
}

export interface Intake {
  /** The organization receiving mail for this address, or undefined when its domain is not ours. */
  routeRecipient(address: string): Promise<number | undefined>;
  /** Stores the message durably; resolves with the 250 reply text, or throws SmtpReplyError. */
  accept(msg: IncomingMessage): Promise<string>;
}

export interface ListenerOptions {
  smtp: SmtpConfig;
  /** Bind address when smtp.host is unset. */
  host: string;
  intake: Intake;
  log: Logger;
  /** Our name in the greeting and in Received lines (default: the host name). */
  serverName?: string;
}

const MAX_RECIPIENTS = 1000;

export class SmtpListener {
  private readonly server: SMTPServer;
  private readonly name: string;
  /** The organization of the transaction's first recipient. */
  private readonly txOrg = new WeakMap<object, number>();

  constructor(private readonly opts: ListenerOptions) {
    const { smtp } = opts;
    this.name = opts.serverName ?? os.hostname();
    const tls = smtp.tlsCert && smtp.tlsKey ? { cert: fs.readFileSync(smtp.tlsCert), key: fs.readFileSync(smtp.tlsKey) } : undefined;
    this.server = new SMTPServer({
      name: this.name,
      banner: 'Verdict ESMTP',
      size: smtp.maxMessageBytes,
      rejectOversized: true,
      authOptional: true,
      // no STARTTLS without our own certificate (never smtp-server's published test key)
      disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      ...(tls ?? {}),
      // reverse DNS would leave the host for every connection; the address is enough here
      disableReverseLookup: true,
      logger: false,
      // on shutdown, connections still open after this are closed (clients retry later)
      closeTimeout: 5_000,
      onRcptTo: (address, session, cb) => {
        this.onRcpt(address.address, session).then(() => cb(), (e: Error) => cb(e));
      },
      onData: (stream, session, cb) => {
        this.onData(stream, session).then((text) => cb(null, text), (e: Error) => cb(e));
      },
    });
    this.server.on('error', (e) => opts.log.warn({ err: e }, 'SMTP listener error'));
  }

  async listen(): Promise<number> {
    const { smtp, host } = this.opts;
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(smtp.port, smtp.host ?? host, () => {
        this.server.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.server.address();
    return typeof addr === 'object' && addr ? addr.port : smtp.port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async onRcpt(address: string, session: SMTPServerSession): Promise<void> {
    const envelope = session.envelope;
    if (envelope.rcptTo.length >= MAX_RECIPIENTS) throw new SmtpReplyError(452, `4.5.3 Too many recipients (at most ${MAX_RECIPIENTS} per message)`);
    const org = await this.opts.intake.routeRecipient(address);
    if (org === undefined) throw new SmtpReplyError(550, '5.7.1 Relaying denied: this server accepts mail only for its own domains');
    const first = this.txOrg.get(envelope);
    if (first === undefined) this.txOrg.set(envelope, org);
    else if (first !== org) throw new SmtpReplyError(451, '4.5.3 Recipient of another organization: send it in a separate transaction');
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const max = this.opts.smtp.maxMessageBytes;
    const body = new PassThrough();
    let bytes = 0;
    let over = false;
    // the DATA stream is always read to its end (the client is still sending); what goes to
    // storage stops at the size limit or when storage gave up
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      if (over || body.destroyed) return;
      if (bytes > max) {
        over = true;
        body.destroy(new SmtpReplyError(552, `5.3.4 Message exceeds the fixed maximum message size of ${max} bytes`));
        return;
      }
      if (!body.write(c)) {
        stream.pause();
        body.once('drain', () => stream.resume());
      }
    });
    body.on('close', () => stream.resume());
    stream.on('end', () => body.end());
    stream.on('error', (e) => body.destroy(e));

    const envelope: Envelope = {
      from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      to: session.envelope.rcptTo.map((r) => r.address),
      clientIp: session.remoteAddress,
      helo: session.hostNameAppearsAs || undefined,
    };
    const orgId = this.txOrg.get(session.envelope);
    if (orgId === undefined) throw new SmtpReplyError(503, '5.5.1 No valid recipients');
    const proto = session.secure ? 'ESMTPS' : 'ESMTP';
    const received =
      `from ${clean(envelope.helo ?? 'unknown')} ([${session.remoteAddress}]) by ${clean(this.name)} (Verdict) with ${proto} id ${session.id}` +
      `${envelope.to.length === 1 ? ` for <${clean(envelope.to[0])}>` : ''}; ${rfc5322Date()}`;
    try {
      return await this.opts.intake.accept({ envelope, orgId, body: prependHeaders(body, [['Received', received]]) });
    } catch (e) {
      if (over) throw new SmtpReplyError(552, `5.3.4 Message exceeds the fixed maximum message size of ${max} bytes`);
      if (e instanceof SmtpReplyError) throw e;
      this.opts.log.error({ err: e }, 'SMTP message could not be stored');
      throw new SmtpReplyError(451, '4.3.0 The message could not be stored; try again later');
    } finally {
      if (!body.destroyed) body.resume();
    }
  }
}

/** Text safe inside a trace header (no line breaks, no angle/parenthesis tricks). */
function clean(s: string): string {
  return s.replace(/[^\x21-\x7e]/g, '?').replace(/[()<>;]/g, '?').slice(0, 200);
}
