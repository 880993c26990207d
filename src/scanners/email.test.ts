import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import MailComposer from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';
import { limitsSchema } from '../config/schema.ts';
import { Engine } from '../engine/engine.ts';
import { decide, type Outcome } from '../verdict/rules.ts';
import { detectType } from './file-type.ts';
import { emailScanner, lookalikeOf, parseReceived, senderIp, type EmailAttributes } from './email.ts';
import { eicar, initScanner, makeZip, runScanner, type RunResult } from './testing.ts';
import { yaraScanner } from './yara.ts';

const policy = { scoreSuspicious: 300, scoreMalicious: 1000, scoreLikelySpam: 150, scoreSpam: 350 };

function build(opts: Mail.Options): Promise<Buffer> {
  return new Promise((resolve, reject) => new MailComposer(opts).compile().build((err, msg) => (err ? reject(err) : resolve(msg))));
}

const email = (r: RunResult) => r.attributes.email as EmailAttributes;
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);
const verdictOf = (r: RunResult) => decide(r.evidence.map((e) => ({ ...e, scanner: 'email', layer: 'email' })), [], policy);

const gtube = () => ['XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE', '-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'].join('');

describe('email detection (file-type)', () => {
  test('real messages are email, whatever header comes first', async () => {
    const dkim = `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n h=from:to:subject:date:message-id;\r\n bh=${'A'.repeat(44)};\r\n b=${'B'.repeat(76)}\r\n ${'C'.repeat(76)}\r\n ${'D'.repeat(76)}\r\n ${'E'.repeat(76)}\r\n ${'F'.repeat(76)}\r\n ${'G'.repeat(76)}\r\n`;
    const cases = [
      'Received: from mx.example.org (mx.example.org [203.0.113.5])\r\n\tby mx.ours (Postfix) with ESMTP id 1;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@example.org\r\n\r\nbody',
      'Return-Path: <a@example.org>\r\nDelivered-To: b@example.net\r\nSubject: hi\r\n\r\nbody',
      `${dkim}From: a@example.org\r\nTo: b@example.net\r\n\r\nbody`,
      'From MAILER-DAEMON Fri Jul  8 12:08:34 2011\nFrom: a@example.org\nSubject: x\n\nbody\n',
      'ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org\r\nX-Google-Smtp-Source: AGHT\r\n\r\nbody',
    ];
    for (const c of cases) assert.equal(detectType(Buffer.from(c)).type, 'email', c.slice(0, 40));
    assert.equal(detectType(await build({ from: 'a@example.org', to: 'b@example.net', subject: 's', text: 't' })).type, 'email');
  });

  test('text that merely mentions headers is not email', () => {
    assert.equal(detectType(Buffer.from('Notes\nFrom: someone\nTo: someone else\n')).type, 'text');
    assert.equal(detectType(Buffer.from('name: build\nversion: 2\nsteps: []\n')).type, 'text');
  });
});

describe('email scanner', () => {
  test('an EICAR attachment becomes a child with its bytes; headers fill the email attributes', async () => {
    const msg = await build({
      from: '"Alice Example" <alice@example.org>',
      to: ['bob@example.net', 'carol@example.net'],
      cc: 'dave@example.com',
      replyTo: 'alice@example.org',
      subject: 'Quarterly report',
      date: new Date('2024-03-04T05:06:07Z'),
      messageId: '<abc123@example.org>',
      text: 'Please find the report attached.',
      attachments: [{ filename: 'eicar.com', content: eicar() }],
      headers: { 'Return-Path': '<bounce@example.org>' },
    });
    const r = await runScanner(emailScanner, msg, { name: 'report.eml' });
    const child = r.children.find((c) => c.name === 'eicar.com');
    assert.ok(child, `children: ${r.children.map((c) => c.name)}`);
    assert.equal(child.relation, 'attachment');
    assert.deepEqual(child.bytes, eicar());
    const e = email(r);
    assert.equal(e.from, 'alice@example.org');
    assert.equal(e.fromName, 'Alice Example');
    assert.deepEqual(e.to, ['bob@example.net', 'carol@example.net']);
    assert.deepEqual(e.cc, ['dave@example.com']);
    assert.equal(e.subject, 'Quarterly report');
    assert.equal(e.messageId, '<abc123@example.org>');
    assert.equal(e.date, '2024-03-04T05:06:07.000Z');
    assert.equal(e.senderDomain, 'example.org');
    assert.equal(e.receiverDomain, 'example.net');
    assert.equal(e.replyTo, 'alice@example.org');
    assert.equal(e.returnPath, 'bounce@example.org');
    assert.equal(r.children.find((c) => c.name === 'body.txt')?.bytes?.toString(), 'Please find the report attached.');
    // An executable name, but an honest mail otherwise: no spoofing, no spam.
    assert.deepEqual(r.heuristics, ['EMAIL_EXECUTABLE_ATTACHMENT']);
  });

  test('the sender IP is the first external hop from the top; forged lower hops are ignored', async () => {
    const received = [
      'from mx1.ours.example (mx1.ours.example [10.0.0.2]) by mx2.ours.example (Postfix); Mon, 1 Jan 2024 00:00:03 +0000',
      'from mail.sender.example (mail.sender.example [198.51.100.25]) by mx1.ours.example (Postfix) with ESMTPS id 9; Mon, 1 Jan 2024 00:00:02 +0000',
      'from [192.168.1.5] (unknown [203.0.113.99]) by mail.sender.example; Mon, 1 Jan 2024 00:00:01 +0000',
      'from forged.example (forged.example [8.8.8.8]) by nowhere.example; Mon, 1 Jan 2024 00:00:00 +0000',
    ];
    const msg = await build({ from: 'a@sender.example', to: 'b@ours.example', subject: 'hop', text: 'x', headers: { Received: received } });
    const r = await runScanner(emailScanner, msg);
    const e = email(r);
    assert.equal(e.sourceIp, '198.51.100.25');
    assert.deepEqual(e.received.map((h) => h.ip), ['10.0.0.2', '198.51.100.25', '203.0.113.99', '8.8.8.8']);
    assert.deepEqual(e.received[1], { from: 'mail.sender.example', ip: '198.51.100.25', by: 'mx1.ours.example', date: '2024-01-01T00:00:02.000Z' });
    // All internal: the bottom-most address (the internal client).
    assert.equal(senderIp([{ ip: '10.0.0.2' }, { ip: '192.168.7.7' }, {}]), '192.168.7.7');
    assert.equal(senderIp([]), null);
    // The observed address in parentheses beats a HELO literal; IPv6 literals are read.
    assert.equal(parseReceived('from [10.9.9.9] (host.example [IPv6:2001:db8::25]) by mx; Tue, 2 Jan 2024 10:00:00 +0000').ip, '2001:db8::25');
    assert.equal(parseReceived('from EX1.corp.local (10.1.2.3) by EX2.corp.local (10.1.2.4) with Microsoft SMTP Server').ip, '10.1.2.3');
  });

  test('display-name impersonation, look-alike domains, Reply-To and authentication failures are evidence', async () => {
    const msg = await build({
      from: '"PayPal Service" <service@paypa1.com>',
      to: 'victim@example.net',
      replyTo: 'collect@gmail.com',
      subject: 'Your account is limited',
      text: 'Please confirm your details.',
      headers: {
        'Return-Path': '<bounce@mailer.example>',
        'Authentication-Results': 'mx.example.net; spf=softfail (domain of transitioning service@paypa1.com) smtp.mailfrom=paypa1.com; dkim=fail header.d=paypa1.com; dmarc=fail (p=none) header.from=paypa1.com',
      },
    });
    const r = await runScanner(emailScanner, msg);
    assert.equal(finding(r, 'EMAIL_DISPLAY_NAME_SPOOF')?.data?.claimed, 'PayPal');
    assert.deepEqual(finding(r, 'EMAIL_LOOKALIKE_DOMAIN')?.data, { senderDomain: 'paypa1.com', brand: 'PayPal', imitates: 'paypal.com', reason: 'homoglyph' });
    assert.ok(finding(r, 'EMAIL_REPLY_TO_MISMATCH'));
    assert.ok(finding(r, 'EMAIL_RETURN_PATH_MISMATCH'));
    assert.equal(finding(r, 'EMAIL_SPF_FAIL')?.score, 30);
    assert.ok(finding(r, 'EMAIL_DKIM_FAIL'));
    assert.ok(finding(r, 'EMAIL_DMARC_FAIL'));
    assert.deepEqual(email(r).auth, { spf: 'softfail', dkim: 'fail', dmarc: 'fail' });
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('an address shown in the display name is impersonation; the brand\'s own mail is not', async () => {
    const fake = await runScanner(emailScanner, await build({ from: '"ceo@acme.example" <ceo.acme@freemail.example>', to: 'x@acme.example', subject: 'Wire', text: 'Call me' }));
    assert.equal(finding(fake, 'EMAIL_DISPLAY_NAME_SPOOF')?.data?.reason, 'address');
    for (const from of ['"PayPal" <service@paypal.com>', '"Amazon.com" <order-update@amazon.co.uk>', '"Google" <no-reply@accounts.google.com>', '"Alice" <alice@example.org>']) {
      const r = await runScanner(emailScanner, await build({ from, to: 'x@example.net', subject: 'Receipt', text: 'Thanks.' }));
      assert.deepEqual(r.heuristics, [], from);
    }
  });

  test('look-alike domains: homoglyphs, typos, brand names with extra words, IDN', () => {
    assert.equal(lookalikeOf('micros0ft.com')?.reason, 'homoglyph');
    assert.equal(lookalikeOf('rnicrosoft.com')?.reason, 'homoglyph');
    assert.equal(lookalikeOf('paypall.com')?.reason, 'typo');
    assert.equal(lookalikeOf('paypal-secure-login.net')?.reason, 'brand_name');
    assert.equal(lookalikeOf('rnicrosoft-online.com')?.reason, 'homoglyph');
    assert.equal(lookalikeOf('apple-pie.com'), undefined);
    assert.equal(lookalikeOf('xn--pypal-4ve.com')?.brand, 'PayPal'); // Cyrillic а
    for (const own of ['paypal.com', 'mail.google.com', 'amazon.de', 'facebookmail.com', 'example.org', 'github.com']) assert.equal(lookalikeOf(own), undefined, own);
  });

  test('a disguised executable attachment is evidence enough for SUS', async () => {
    const msg = await build({ from: 'a@example.org', to: 'b@example.net', subject: 'Invoice', text: 'see attached', attachments: [{ filename: 'invoice.pdf.exe', content: Buffer.from('MZ') }] });
    const r = await runScanner(emailScanner, msg);
    assert.deepEqual(finding(r, 'EMAIL_ATTACHMENT_DOUBLE_EXTENSION')?.data?.items, [{ name: 'invoice.pdf.exe', reason: 'double_extension' }]);
    assert.ok(finding(r, 'EMAIL_EXECUTABLE_ATTACHMENT'));
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('spam signals give LSP or SPM through the spam rule, never SUS', async () => {
    const spam = await build({
      from: '"Rewards" <promo@deals.example>',
      to: 'undisclosed-recipients:;',
      subject: 'YOU HAVE WON A FREE GIFT!!!',
      html: `<p>Dear friend, you have won! Claim your prize now. 100% free, risk-free, no credit check.</p>
        <div style="display:none">${'cheap meds pharmacy without prescription lowest rates debt relief '.repeat(6)}</div>
        ${Array.from({ length: 40 }, (_, i) => `<a href="http://promo${i}.deals.example/c">x</a>`).join(' ')}`,
      headers: { Precedence: 'bulk' },
    });
    const r = await runScanner(emailScanner, spam);
    for (const id of ['SPAM_BULK_WITHOUT_UNSUBSCRIBE', 'SPAM_PHRASES', 'SPAM_SHOUTING_SUBJECT', 'SPAM_UNDISCLOSED_RECIPIENTS', 'SPAM_HIDDEN_TEXT', 'SPAM_LINK_HEAVY']) assert.ok(finding(r, id), id);
    const o = verdictOf(r);
    assert.equal(o.verdict, 'SPM');
    assert.ok(o.spamScore >= 350);
    assert.equal(o.score, 0, 'spam findings stay out of the threat score');
    assert.match(o.decisions.map((d) => d.reason).join(), /spam findings add up/);

    const grey = await build({ from: 'news@shop.example', to: 'x@example.net', subject: 'LIMITED TIME OFFER ON SHOES', text: 'Our limited time offer: risk-free returns.', headers: { 'List-Unsubscribe': '<https://unsub.mailer.example/u/1>', 'List-Id': '<news.shop.example>' } });
    const g = await runScanner(emailScanner, grey);
    assert.ok(finding(g, 'SPAM_UNSUBSCRIBE_FOREIGN'));
    assert.equal(verdictOf(g).verdict, 'LSP');

    const honest = await runScanner(emailScanner, await build({ from: 'a@example.org', to: 'b@example.net', subject: 'Lunch tomorrow?', text: 'Shall we meet at noon? The place is https://maps.example/abc' }));
    assert.deepEqual(honest.heuristics, []);
    assert.equal(verdictOf(honest).verdict, 'CLN');
  });

  test('the HTML body is a child; body links are children, deduplicated and bounded', async () => {
    const links = Array.from({ length: 60 }, (_, i) => `<a href="https://site${i}.example/p?id=${i}">link ${i} with some words around it to read</a>`).join('\n');
    const msg = await build({ from: 'a@example.org', to: 'b@example.net', subject: 'Links', text: 'Plain https://site0.example/p?id=0 and www.plain.example/here.', html: `<html><body>${links}<a href="https://site1.example/p?id=1#frag">again</a></body></html>` });
    const r = await runScanner(emailScanner, msg);
    const html = r.children.find((c) => c.name === 'body.html');
    assert.equal(html?.relation, 'embedded_object');
    assert.match(html?.bytes?.toString() ?? '', /site59\.example/);
    const urls = r.children.filter((c) => c.relation === 'link').map((c) => ('url' in c ? c.url : ''));
    assert.equal(urls.length, 50);
    assert.equal(new Set(urls).size, 50);
    assert.equal(urls[0], 'https://site0.example/p?id=0');
    const over = finding(r, 'NOT_FULLY_SCANNED');
    assert.deepEqual(over?.data, { links: 61, scanned: 50 });
    assert.deepEqual(r.attributes.emailParts, { attachments: 0, links: 50, totalLinks: 61, emitted: 52 });
    // A fragment (`<p>…`, common in mail) is still handed out as HTML.
    const fragment = await runScanner(emailScanner, await build({ from: 'a@example.org', to: 'b@example.net', subject: 'f', html: '<p>Hello <b>there</b></p>' }));
    const body = fragment.children.find((c) => c.name === 'body.html')!.bytes!;
    assert.equal(detectType(body).type, 'html');
    assert.equal(body.toString().trim(), '<!DOCTYPE html>\n<p>Hello <b>there</b></p>');
    // A message reached through a link of a fetched page hands out no more links.
    const deep = await runScanner(emailScanner, msg, { relation: 'fetched_content', depth: 2 });
    assert.equal(deep.children.filter((c) => c.relation === 'link').length, 0);
  });

  test('uuencoded and base64 files inside body text are decoded as attachments', async () => {
    const uu = uuencode(eicar());
    const zip = await makeZip({ 'a.txt': Buffer.from('hello '.repeat(50)) });
    const b64 = zip.toString('base64').match(/.{1,76}/g)!.join('\n');
    const msg = await build({ from: 'a@example.org', to: 'b@example.net', subject: 'old style', text: `Here it is:\n\nbegin 644 tool.com\n${uu}end\n\nand a zip:\n${b64}\n\nbye` });
    const r = await runScanner(emailScanner, msg);
    assert.deepEqual(r.children.find((c) => c.name === 'tool.com')?.bytes, eicar());
    const block = r.children.find((c) => c.name === 'text-block-2.zip');
    assert.deepEqual(block?.bytes, zip);
    assert.equal(block?.relation, 'attachment');
  });

  test('a forwarded message attachment is a child; attachments refused by the engine end as a limit', async () => {
    const inner = await build({ from: 'x@example.org', to: 'y@example.net', subject: 'inner', text: 'inner', attachments: [{ filename: 'a.txt', content: 'A' }] });
    const msg = await build({ from: 'a@example.org', to: 'b@example.net', subject: 'fwd', text: 'see below', attachments: [{ filename: 'fwd.eml', content: inner, contentType: 'message/rfc822', contentDisposition: 'attachment' }, { filename: 'b.txt', content: 'B' }] });
    const r = await runScanner(emailScanner, msg);
    const fwd = r.children.find((c) => c.name === 'fwd.eml');
    assert.equal(detectType(fwd!.bytes!).type, 'email');
    const limited = await runScanner(emailScanner, msg, { acceptChildren: 1 });
    assert.deepEqual(limited.children.map((c) => c.name), ['fwd.eml']);
    assert.equal(finding(limited, 'ARCHIVE_LIMIT')?.data?.count, 1);
  });

  test('one message behind an mbox From line is parsed; several are left to the mbox scanner', async () => {
    const one = Buffer.concat([Buffer.from('From alice@example.org Mon Jan  1 00:00:00 2024\n'), await build({ from: 'alice@example.org', to: 'b@example.net', subject: 'single', text: 'hi' })]);
    const r = await runScanner(emailScanner, one);
    assert.equal(email(r).subject, 'single');
    const two = Buffer.from('From a@example.org Mon Jan  1 00:00:00 2024\nFrom: a@example.org\nSubject: 1\n\none\n\nFrom b@example.org Mon Jan  1 00:00:01 2024\nFrom: b@example.org\nSubject: 2\n\ntwo\n');
    const m = await runScanner(emailScanner, two);
    assert.deepEqual([m.evidence, m.attributes, m.children], [[], {}, []]);
  });

  test('damaged messages never throw', async () => {
    const broken = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64');
    const r = await runScanner(emailScanner, broken);
    assert.equal(email(r).from, 'a@example.org');
    assert.ok(Array.isArray(r.evidence));
  });
});

describe('email through the engine', () => {
  let tmp: string;
  let engine: Engine;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-email-engine-'));
    const yara = await initScanner(yaraScanner);
    engine = new Engine([{ scanner: emailScanner, state: undefined }, { scanner: yaraScanner, state: yara }], { limits: limitsSchema.parse({}), policy, log: pino({ level: 'silent' }), tmpRoot: tmp });
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const scan = async (msg: Buffer): Promise<Outcome> => (await engine.scanBuffer(msg, 'm.eml', { options: { passwords: [] } })).outcome;

  test('an EICAR attachment makes the message MAL', async () => {
    const o = await scan(await build({ from: 'a@example.org', to: 'b@example.net', subject: 'hi', text: 'x', attachments: [{ filename: 'readme.txt', content: eicar() }] }));
    assert.equal(o.verdict, 'MAL');
  });

  test('GTUBE in a base64 body is SPM, not more', async () => {
    const o = await scan(await build({ from: 'a@example.org', to: 'b@example.net', subject: 'test', text: `Spam test: ${gtube()}`, textEncoding: 'base64' }));
    assert.equal(o.verdict, 'SPM');
  });
});

function uuencode(data: Buffer): string {
  const enc = (n: number) => String.fromCharCode(n === 0 ? 96 : n + 32);
  let out = '';
  for (let i = 0; i < data.length; i += 45) {
    const chunk = data.subarray(i, i + 45);
    let line = enc(chunk.length);
    for (let j = 0; j < chunk.length; j += 3) {
      const [a, b = 0, c = 0] = chunk.subarray(j, j + 3);
      line += enc(a >> 2) + enc(((a & 3) << 4) | (b >> 4)) + enc(((b & 15) << 2) | (c >> 6)) + enc(c & 63);
    }
    out += `${line}\n`;
  }
  return `${out}\`\n`;
}
