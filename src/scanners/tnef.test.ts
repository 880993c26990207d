import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { detectType, fileTypeScanner } from './file-type.ts';
import { parseMapiProps, parseTnef, TNEF_SIGNATURE, tnefScanner } from './tnef.ts';
import { eicar, runScanner } from './testing.ts';

const u16 = (n: number) => Buffer.from([n & 255, n >> 8]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const pad4 = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);

/** One TNEF attribute: level, id (type in the high word), length, data, byte-sum checksum. */
function attr(level: 1 | 2, id: number, data: Buffer): Buffer {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xffff;
  return Buffer.concat([Buffer.from([level]), u32(id), u32(data.length), data, u16(sum)]);
}

/** A MAPI property list with variable-size values (string8 0x1E, unicode 0x1F, binary 0x102, object 0x0D). */
function props(list: { type: number; id: number; value: Buffer }[]): Buffer {
  return Buffer.concat([u32(list.length), ...list.map((p) => Buffer.concat([u16(p.type), u16(p.id), u32(1), u32(p.value.length), pad4(p.value)]))]);
}

const tnef = (...attrs: Buffer[]) => Buffer.concat([u32(TNEF_SIGNATURE), u16(0x0001), attr(1, 0x00089006, u32(0x00010000)), ...attrs]);
const ansi = (s: string) => Buffer.from(`${s}\0`, 'latin1');
const ATT = { messageClass: 0x00078008, renddata: 0x00069002, title: 0x00018010, data: 0x0006800f, attachment: 0x00069005, msgProps: 0x00069003 };
const renddata = () => attr(2, ATT.renddata, Buffer.alloc(14));

describe('tnef scanner', () => {
  test('attachments become children; the long file name wins over the 8.3 title', async () => {
    const data = tnef(
      attr(1, ATT.messageClass, ansi('IPM.Microsoft Mail.Note')),
      renddata(),
      attr(2, ATT.title, ansi('EICAR.COM')),
      attr(2, ATT.data, eicar()),
      renddata(),
      attr(2, ATT.title, ansi('INVOIC~1.EXE')),
      attr(2, ATT.data, Buffer.from('MZ fake')),
      attr(2, ATT.attachment, props([{ type: 0x001f, id: 0x3707, value: Buffer.from('invoice.pdf.exe\0', 'utf16le') }])),
    );
    assert.equal(detectType(data).type, 'tnef');
    const r = await runScanner(tnefScanner, data, { name: 'winmail.dat' });
    assert.deepEqual(r.children.map((c) => [c.name, c.relation]), [['EICAR.COM', 'attachment'], ['invoice.pdf.exe', 'attachment']]);
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.ok(r.heuristics.includes('EMAIL_ATTACHMENT_DOUBLE_EXTENSION'));
    assert.ok(r.heuristics.includes('EMAIL_EXECUTABLE_ATTACHMENT'));
    assert.deepEqual(r.attributes.tnef, { messageClass: 'IPM.Microsoft Mail.Note', subject: null, attachments: 2, checksumErrors: 0, emitted: 2 });
    // winmail.dat is the usual name: no mismatch finding.
    assert.deepEqual((await runScanner(fileTypeScanner, data, { name: 'winmail.dat' })).heuristics, []);
  });

  test('message bodies in attMsgProps become body children', async () => {
    const rtf = Buffer.from('{\\rtf1 hi}', 'latin1');
    const stored = Buffer.concat([u32(rtf.length + 12), u32(rtf.length), Buffer.from('MELA', 'latin1'), u32(0), rtf]);
    const data = tnef(attr(1, ATT.msgProps, props([
      { type: 0x001e, id: 0x0037, value: ansi('Hello') },
      { type: 0x0102, id: 0x1009, value: stored },
      { type: 0x001f, id: 0x1000, value: Buffer.from('plain body\0', 'utf16le') },
    ])));
    const r = await runScanner(tnefScanner, data);
    assert.deepEqual(r.children.map((c) => [c.name, c.relation, c.bytes?.toString('latin1')]), [['body.rtf', 'embedded_object', '{\\rtf1 hi}'], ['body.txt', 'embedded_object', 'plain body']]);
    assert.equal((r.attributes.tnef as { subject: string }).subject, 'Hello');
  });

  test('an attached message is handed out as its own TNEF stream', async () => {
    const inner = tnef(renddata(), attr(2, ATT.title, ansi('INNER.TXT')), attr(2, ATT.data, Buffer.from('inner data')));
    const iid = Buffer.alloc(16, 0x11);
    const outer = tnef(renddata(), attr(2, ATT.attachment, props([
      { type: 0x001f, id: 0x3001, value: Buffer.from('Forwarded\0', 'utf16le') },
      { type: 0x000d, id: 0x3701, value: Buffer.concat([iid, inner]) },
    ])));
    const r = await runScanner(tnefScanner, outer);
    assert.deepEqual(r.children.map((c) => c.name), ['Forwarded.tnef']);
    assert.equal(detectType(r.children[0].bytes!).type, 'tnef');
    const again = await runScanner(tnefScanner, r.children[0].bytes!);
    assert.equal(again.children[0].bytes?.toString(), 'inner data');
  });

  test('a truncated stream keeps what was read and is reported as corrupt', async () => {
    const whole = tnef(renddata(), attr(2, ATT.title, ansi('A.TXT')), attr(2, ATT.data, Buffer.from('first')), renddata(), attr(2, ATT.title, ansi('B.TXT')), attr(2, ATT.data, Buffer.alloc(1000, 0x41)));
    const r = await runScanner(tnefScanner, whole.subarray(0, whole.length - 500));
    assert.deepEqual(r.children.map((c) => c.name), ['A.TXT']);
    assert.ok(r.heuristics.includes('ARCHIVE_CORRUPT'));
    const bad = await runScanner(tnefScanner, Buffer.from('not tnef at all'));
    assert.deepEqual(bad.heuristics, ['UNPARSEABLE']);
  });

  test('checksum errors are counted, named properties and fixed-size values are skipped', () => {
    const good = attr(2, ATT.data, Buffer.from('abc'));
    const broken = Buffer.from(good);
    broken[broken.length - 1] ^= 0xff;
    assert.equal(parseTnef(tnef(renddata(), broken)).checksumErrors, 1);
    const named = Buffer.concat([
      u32(3),
      u16(0x0003), u16(0x8001), Buffer.alloc(16), u32(1), u32(10), pad4(Buffer.from('Name\0', 'utf16le')), u32(42),
      u16(0x1003), u16(0x1234), u32(2), u32(1), u32(2),
      u16(0x001e), u16(0x3001), u32(1), u32(4), Buffer.from('abc\0'),
    ]);
    assert.deepEqual(parseMapiProps(named).map((p) => [p.id, p.values.map((v) => v.toString())]), [[0x8001, []], [0x1234, []], [0x3001, ['abc\0']]]);
  });
});
