import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EmailAttributes } from './email.ts';
import { detectType } from './file-type.ts';
import { oleScanner } from './ole.ts';
import { decompressRtf, outlookMsgScanner } from './outlook-msg.ts';
import { eicar, makeOle, runScanner, type RunResult } from './testing.ts';

const utf16 = (s: string) => Buffer.from(s, 'utf16le');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** A fixed-size property entry of a __properties_version1.0 stream (tag, flags, 8-byte value). */
function prop(tag: number, value: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(tag, 0);
  b.writeUInt32LE(6, 4);
  b.writeUInt32LE(value, 8);
  return b;
}

/** Header of a message's property stream: 32 bytes at the top level, 24 in an embedded one. */
function messageProps(recipients: number, attachments: number, top: boolean, ...entries: Buffer[]): Buffer {
  return Buffer.concat([Buffer.alloc(8), u32(recipients), u32(attachments), u32(recipients), u32(attachments), Buffer.alloc(top ? 8 : 0), ...entries]);
}

interface MsgSpec {
  subject: string;
  senderEmail?: string;
  senderName?: string;
  body?: string;
  html?: string;
  headers?: string;
  rtf?: Buffer;
  recipients?: { name: string; address: string; type: 1 | 2 }[];
  attachments?: { name: string; data: Buffer }[];
  inner?: MsgSpec;
}

/** The streams of one message (paths relative to its storage). */
function messageStreams(m: MsgSpec, top: boolean): Record<string, Buffer> {
  const s: Record<string, Buffer> = {};
  const recips = m.recipients ?? [];
  const atts = m.attachments ?? [];
  const total = atts.length + (m.inner ? 1 : 0);
  s['__properties_version1.0'] = messageProps(recips.length, total, top);
  s['__substg1.0_001A001F'] = utf16('IPM.Note');
  s['__substg1.0_0037001F'] = utf16(m.subject);
  if (m.senderEmail) {
    s['__substg1.0_0C1F001F'] = utf16(m.senderEmail);
    s['__substg1.0_0C1E001F'] = utf16('SMTP');
  }
  if (m.senderName) s['__substg1.0_0C1A001F'] = utf16(m.senderName);
  if (m.body) s['__substg1.0_1000001F'] = utf16(m.body);
  if (m.html) s['__substg1.0_10130102'] = Buffer.from(m.html, 'utf8');
  if (m.headers) s['__substg1.0_007D001F'] = utf16(m.headers);
  if (m.rtf) s['__substg1.0_10090102'] = m.rtf;
  recips.forEach((r, i) => {
    const dir = `__recip_version1.0_#${i.toString(16).toUpperCase().padStart(8, '0')}`;
    s[`${dir}/__properties_version1.0`] = Buffer.concat([Buffer.alloc(8), prop(0x0c150003, r.type)]);
    s[`${dir}/__substg1.0_3001001F`] = utf16(r.name);
    s[`${dir}/__substg1.0_39FE001F`] = utf16(r.address);
  });
  atts.forEach((a, i) => {
    const dir = `__attach_version1.0_#${i.toString(16).toUpperCase().padStart(8, '0')}`;
    s[`${dir}/__properties_version1.0`] = Buffer.concat([Buffer.alloc(8), prop(0x37050003, 1)]);
    s[`${dir}/__substg1.0_3707001F`] = utf16(a.name);
    s[`${dir}/__substg1.0_37010102`] = a.data;
  });
  if (m.inner) {
    const dir = `__attach_version1.0_#${atts.length.toString(16).toUpperCase().padStart(8, '0')}`;
    s[`${dir}/__properties_version1.0`] = Buffer.concat([Buffer.alloc(8), prop(0x37050003, 5)]);
    s[`${dir}/__substg1.0_3001001F`] = utf16('Forwarded');
    for (const [p, data] of Object.entries(messageStreams(m.inner, false))) s[`${dir}/__substg1.0_3701000D/${p}`] = data;
  }
  return s;
}

const makeMsg = (m: MsgSpec) => makeOle(messageStreams(m, true));
const email = (r: RunResult) => r.attributes.email as EmailAttributes;

/** LZFu with literal tokens, except a back-reference to the first `ref` bytes of the primed ring. */
function lzfu(raw: Buffer, ref = 0): Buffer {
  const tokens: (number | [number, number])[] = [];
  if (ref) tokens.push([0, ref]);
  for (const b of raw.subarray(ref)) tokens.push(b);
  tokens.push([(207 + raw.length) & 4095, 0]); // end marker: a reference to the write position
  const body: number[] = [];
  for (let i = 0; i < tokens.length; i += 8) {
    const group = tokens.slice(i, i + 8);
    body.push(group.reduce<number>((c, t, bit) => c | (Array.isArray(t) ? 1 << bit : 0), 0));
    for (const t of group) {
      if (Array.isArray(t)) {
        const v = (t[0] << 4) | Math.max(0, t[1] - 2);
        body.push(v >> 8, v & 255);
      } else body.push(t);
    }
  }
  const header = Buffer.alloc(16);
  header.writeUInt32LE(body.length + 12, 0);
  header.writeUInt32LE(raw.length, 4);
  header.writeUInt32LE(0x75465a4c, 8);
  return Buffer.concat([header, Buffer.from(body)]);
}

const headers = [
  'Received: from relay.corp.example (relay.corp.example [10.1.1.1]) by mx.corp.example; Tue, 2 Jan 2024 10:00:01 +0000',
  'Received: from mail.paypa1.com (mail.paypa1.com [198.51.100.44]) by relay.corp.example; Tue, 2 Jan 2024 10:00:00 +0000',
  'Authentication-Results: mx.corp.example; spf=fail smtp.mailfrom=paypa1.com; dmarc=fail header.from=paypa1.com',
  'From: "PayPal" <billing@paypa1.com>',
  'To: Bob <bob@corp.example>',
  'Subject: Invoice due',
  'Message-ID: <m1@paypa1.com>',
  'Date: Tue, 2 Jan 2024 09:59:00 +0000',
  '',
  '',
].join('\r\n');

describe('outlook-msg scanner', () => {
  test('reads headers, bodies and attachments of a .msg built with cfb', async () => {
    const msg = await makeMsg({
      subject: 'Invoice due',
      senderEmail: 'billing@paypa1.com',
      senderName: 'PayPal',
      body: 'Pay now at http://pay.paypa1.example/now',
      html: '<html><body><a href="http://pay.paypa1.example/now">Pay</a></body></html>',
      headers,
      recipients: [{ name: 'Bob', address: 'bob@corp.example', type: 1 }, { name: 'Carol', address: 'carol@corp.example', type: 2 }],
      attachments: [{ name: 'invoice.pdf.exe', data: eicar() }],
    });
    assert.equal(detectType(msg).type, 'ole');
    const r = await runScanner(outlookMsgScanner, msg, { name: 'invoice.msg' });
    const e = email(r);
    assert.equal(e.from, 'billing@paypa1.com');
    assert.equal(e.fromName, 'PayPal');
    assert.equal(e.subject, 'Invoice due');
    assert.deepEqual(e.to, ['bob@corp.example']);
    assert.equal(e.sourceIp, '198.51.100.44');
    assert.equal(e.messageId, '<m1@paypa1.com>');
    assert.equal(e.date, '2024-01-02T09:59:00.000Z');
    assert.deepEqual(e.auth, { spf: 'fail', dmarc: 'fail' });
    assert.equal(r.attributes.msgClass, 'IPM.Note');
    const att = r.children.find((c) => c.name === 'invoice.pdf.exe');
    assert.deepEqual(att?.bytes, eicar());
    assert.equal(att?.relation, 'attachment');
    assert.deepEqual(r.children.filter((c) => c.relation === 'embedded_object').map((c) => c.name), ['body.html', 'body.txt']);
    assert.deepEqual(r.children.filter((c) => c.relation === 'link').map((c) => c.name), ['http://pay.paypa1.example/now']);
    for (const id of ['EMAIL_DISPLAY_NAME_SPOOF', 'EMAIL_LOOKALIKE_DOMAIN', 'EMAIL_SPF_FAIL', 'EMAIL_DMARC_FAIL', 'EMAIL_ATTACHMENT_DOUBLE_EXTENSION', 'EMAIL_EXECUTABLE_ATTACHMENT']) {
      assert.ok(r.heuristics.includes(id), id);
    }
  });

  test('without transport headers the MAPI properties stand in; no missing-header spam finding', async () => {
    const msg = await makeMsg({ subject: 'Draft', senderEmail: 'me@corp.example', senderName: 'Me', body: 'hello', recipients: [{ name: 'You', address: 'you@corp.example', type: 1 }, { name: 'Boss', address: 'boss@corp.example', type: 2 }] });
    const r = await runScanner(outlookMsgScanner, msg);
    const e = email(r);
    assert.deepEqual([e.from, e.fromName, e.to, e.cc, e.sourceIp], ['me@corp.example', 'Me', ['you@corp.example'], ['boss@corp.example'], null]);
    assert.deepEqual(r.heuristics, []);
  });

  test('an attached message is rebuilt as a .msg child that scans again', async () => {
    const msg = await makeMsg({ subject: 'Fwd', senderEmail: 'a@corp.example', body: 'see attached', inner: { subject: 'Inner secret', senderEmail: 'x@example.org', body: 'inner', attachments: [{ name: 'eicar.com', data: eicar() }] } });
    const r = await runScanner(outlookMsgScanner, msg);
    const inner = r.children.find((c) => c.name.endsWith('.msg'));
    assert.ok(inner, `children: ${r.children.map((c) => c.name)}`);
    assert.equal(inner.name, 'Forwarded.msg');
    const again = await runScanner(outlookMsgScanner, inner.bytes!);
    assert.equal(email(again).subject, 'Inner secret');
    assert.deepEqual(again.children.find((c) => c.name === 'eicar.com')?.bytes, eicar());
  });

  test('the compressed RTF body is decompressed into body.rtf', async () => {
    const raw = Buffer.from('{\\rtf1\\ansi Hello from Outlook\\par}', 'latin1');
    assert.deepEqual(decompressRtf(lzfu(raw)), raw);
    assert.deepEqual(decompressRtf(lzfu(raw, 6)), raw, 'a back-reference into the primed dictionary');
    const stored = Buffer.concat([Buffer.from([raw.length + 12, 0, 0, 0]), u32(raw.length), Buffer.from('MELA', 'latin1'), u32(0), raw]);
    assert.deepEqual(decompressRtf(stored), raw);
    const msg = await makeMsg({ subject: 'rtf', senderEmail: 'a@corp.example', rtf: lzfu(raw, 6) });
    const r = await runScanner(outlookMsgScanner, msg);
    assert.deepEqual(r.children.find((c) => c.name === 'body.rtf')?.bytes, raw);
  });

  test('Word and Excel files are not messages; the OLE scanner still reads a .msg', async () => {
    const doc = await makeOle({ WordDocument: Buffer.alloc(600, 1), '\u0005SummaryInformation': Buffer.alloc(64) });
    const r = await runScanner(outlookMsgScanner, doc, { name: 'a.doc' });
    assert.deepEqual([r.evidence, r.attributes, r.children], [[], {}, []]);
    const msg = await makeMsg({ subject: 's', senderEmail: 'a@corp.example', body: 'b' });
    const ole = await runScanner(oleScanner, msg);
    assert.equal(ole.attributes.oleKind, 'msg');
    assert.deepEqual(ole.heuristics, []);
  });
});

test('a damaged message that sends the msgreader library into an endless loop is reported, in bounded time', async () => {
  // found by test/fuzz.test.ts (seed outlook-msg#4): looping sector chains
  const { readFileSync } = await import('node:fs');
  const data = readFileSync(new URL('../../test/fixtures/msg/damaged-loop.msg', import.meta.url));
  const started = Date.now();
  const r = await runScanner(outlookMsgScanner, data, { name: 'invoice.msg' });
  assert.deepEqual(r.heuristics, ['UNPARSEABLE']);
  assert.match(String(r.evidence[0].details), /not a readable Outlook message/);
  assert.ok(Date.now() - started < 10_000);
});
