import { test } from 'node:test';
import assert from 'node:assert/strict';
import { oleScanner, parsePackage } from './ole.ts';
import { eicar, makeOle, makeZip, packagerData, runScanner, vbaProjectStreams } from './testing.ts';

const prefixed = (prefix: string, streams: Record<string, Buffer>) =>
  Object.fromEntries(Object.entries(streams).map(([k, v]) => [`${prefix}${k}`, v]));

/** A Word FIB start: wIdent 0xA5EC, then flags at 0x0A. */
function wordStream(text = '', flags = 0): Buffer {
  const fib = Buffer.alloc(0x200);
  fib.writeUInt16LE(0xa5ec, 0);
  fib.writeUInt16LE(flags, 0x0a);
  return Buffer.concat([fib, Buffer.from(text, 'latin1')]);
}

const DROPPER = [
  'Attribute VB_Name = "ThisDocument"',
  'Private Sub Document_Open()',
  '    Dim s As String',
  '    s = "powershell -nop -w hidden -c calc"',
  '    Shell s, vbHide',
  'End Sub',
].join('\r\n');

/** A BIFF8 workbook globals substream with the given BOUNDSHEET entries and optional records. */
function workbookStream(sheets: { name: string; type: number; state?: number }[], extra: Buffer[] = []): Buffer {
  const rec = (type: number, data: Buffer) => {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(type, 0);
    h.writeUInt16LE(data.length, 2);
    return Buffer.concat([h, data]);
  };
  const bof = rec(0x0809, Buffer.from([0x00, 0x06, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  const sheetRecs = sheets.map((s) => {
    const d = Buffer.alloc(8 + s.name.length);
    d[4] = s.state ?? 0;
    d[5] = s.type;
    d[6] = s.name.length;
    d[7] = 0;
    d.write(s.name, 8, 'latin1');
    return rec(0x0085, d);
  });
  return Buffer.concat([bof, ...extra.map((e) => rec(e.readUInt16LE(0), e.subarray(2))), ...sheetRecs, rec(0x000a, Buffer.alloc(0))]);
}

test('a .doc with an auto-exec macro calling Shell: macros found, source emitted, findings combined', async () => {
  const doc = await makeOle({
    WordDocument: wordStream('Dear customer, enable content to view this invoice.'),
    ...prefixed('Macros/', vbaProjectStreams([{ name: 'ThisDocument', source: DROPPER }, { name: 'Module1', source: 'Attribute VB_Name = "Module1"\r\nSub Helper()\r\nEnd Sub' }])),
  });
  const r = await runScanner(oleScanner, doc, { name: 'invoice.doc' });
  assert.deepEqual(r.heuristics, ['VBA_MACROS', 'VBA_AUTOEXEC', 'VBA_SUSPICIOUS_CALL', 'VBA_AUTOEXEC_SUSPICIOUS']);
  const calls = r.evidence.find((e) => e.heuristic === 'VBA_SUSPICIOUS_CALL')!;
  assert.deepEqual(calls.data?.keywords, ['Shell', 'PowerShell']);
  assert.deepEqual(r.evidence.find((e) => e.heuristic === 'VBA_AUTOEXEC')!.data?.triggers, ['Document_Open']);
  assert.deepEqual(r.children.map((c) => [c.name, c.relation]), [['ThisDocument.vba', 'macro'], ['Module1.vba', 'macro']]);
  assert.equal(r.children[0].bytes!.toString('utf8'), DROPPER);
  assert.equal(r.attributes.oleKind, 'word');
});

test('an .xls with a hidden Excel 4.0 macro sheet and Auto_Open', async () => {
  // Lbl record: fBuiltin, cch 1, name 0x01 (Auto_Open)
  const lbl = Buffer.alloc(2 + 16);
  lbl.writeUInt16LE(0x0018, 0);
  lbl.writeUInt16LE(0x0020, 2);
  lbl[2 + 3] = 1;
  lbl[2 + 14] = 0;
  lbl[2 + 15] = 0x01;
  const xls = await makeOle({ Workbook: workbookStream([{ name: 'Sheet1', type: 0 }, { name: 'Macro1', type: 1, state: 1 }], [lbl]) });
  const r = await runScanner(oleScanner, xls, { name: 'report.xls' });
  assert.deepEqual(r.heuristics, ['XLM_MACRO_SHEET']);
  assert.deepEqual(r.evidence[0].data, { sheets: [{ name: 'Macro1', state: 'hidden' }], hidden: ['Macro1'], autoOpen: true });
  // An ordinary workbook has no finding.
  const plain = await runScanner(oleScanner, await makeOle({ Workbook: workbookStream([{ name: 'Sheet1', type: 0 }]) }));
  assert.deepEqual(plain.heuristics, []);
});

test('a DDEAUTO field in Word text, 8-bit and UTF-16', async () => {
  const field = '\x13 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k calc.exe" \x14\x15';
  for (const wd of [wordStream(`Hello ${field} world`), Buffer.concat([wordStream(), Buffer.from(`Hello ${field}`, 'utf16le')])]) {
    const r = await runScanner(oleScanner, await makeOle({ WordDocument: wd }));
    assert.deepEqual(r.heuristics, ['DDE_FIELD']);
    assert.match(String(r.evidence[0].details), /^DDEAUTO c:.*cmd\.exe/);
  }
  const clean = await runScanner(oleScanner, await makeOle({ WordDocument: wordStream('The DDE protocol is described in chapter 3.') }));
  assert.deepEqual(clean.heuristics, []);
});

test('an embedded Packager object: the file inside becomes a child, an executable name is flagged', async () => {
  const doc = await makeOle({ WordDocument: wordStream('see attached'), 'ObjectPool/_1234567/\x01Ole10Native': packagerData('readme.txt.exe', eicar(), true), 'ObjectPool/_1234567/\x01Ole': Buffer.alloc(20) });
  const r = await runScanner(oleScanner, doc);
  assert.deepEqual(r.heuristics, ['DOC_EMBEDDED_OBJECT', 'DOC_EMBEDDED_PACKAGE', 'DOC_PACKAGE_EXECUTABLE']);
  assert.equal(r.children.length, 1);
  assert.equal(r.children[0].name, 'readme.txt.exe');
  assert.equal(r.children[0].relation, 'embedded_object');
  assert.ok(r.children[0].bytes!.equals(eicar()));
  assert.equal(parsePackage(Buffer.from([1, 2, 3]), true), undefined);
});

test('an embedded OLE object storage is rebuilt as a compound file child; Equation Editor is flagged', async () => {
  const doc = await makeOle(
    { WordDocument: wordStream(), 'ObjectPool/_99/Equation Native': Buffer.alloc(64, 1), 'ObjectPool/_99/\x01CompObj': Buffer.alloc(30) },
    { clsids: { 'ObjectPool/_99': '0002CE02-0000-0000-C000-000000000046' } },
  );
  const r = await runScanner(oleScanner, doc);
  assert.deepEqual(r.heuristics, ['DOC_EQUATION_EDITOR', 'DOC_EMBEDDED_OBJECT']);
  assert.equal(r.children[0].name, '_99.ole');
  // The child is itself a compound file whose root carries the object's class id.
  const inner = await runScanner(oleScanner, r.children[0].bytes!);
  assert.deepEqual(inner.heuristics, ['DOC_EQUATION_EDITOR']);
});

test('an OLE2Link object with a URL moniker is flagged and its URL emitted', async () => {
  const moniker = Buffer.concat([Buffer.alloc(20), Buffer.from('http://203.0.113.5/payload.hta\0', 'utf16le')]);
  const r = await runScanner(oleScanner, await makeOle({ '\x01Ole': moniker }, { clsids: { '': '00000300-0000-0000-C000-000000000046' } }));
  assert.deepEqual(r.heuristics, ['DOC_OLE2LINK']);
  assert.deepEqual(r.evidence[0].data?.urls, ['http://203.0.113.5/payload.hta']);
  assert.deepEqual(r.children.map((c) => ['url' in c ? c.url : undefined, c.relation]), [['http://203.0.113.5/payload.hta', 'link']]);
});

test('encrypted documents are reported as not scanned', async () => {
  const info = Buffer.alloc(8);
  info.writeUInt16LE(4, 0);
  info.writeUInt16LE(4, 2);
  const agile = await runScanner(oleScanner, await makeOle({ EncryptionInfo: info, EncryptedPackage: Buffer.alloc(256, 7) }));
  assert.deepEqual(agile.heuristics, ['ENCRYPTED_DOCUMENT']);
  assert.equal(agile.evidence[0].data?.method, 'agile');
  const doc = await runScanner(oleScanner, await makeOle({ WordDocument: wordStream('\x13 DDEAUTO hidden by encryption', 0x0100) }));
  assert.deepEqual(doc.heuristics, ['ENCRYPTED_DOCUMENT']);
  const filepass = Buffer.from([0x2f, 0x00, 0x01, 0x00, 0x01, 0x00]);
  const xls = await runScanner(oleScanner, await makeOle({ Workbook: workbookStream([{ name: 'Sheet1', type: 0 }], [filepass]) }));
  assert.deepEqual(xls.heuristics, ['ENCRYPTED_DOCUMENT']);
  assert.equal(xls.evidence[0].data?.format, 'xls');
});

test('other compound files (MSI...): streams holding a recognisable file become children', async () => {
  const zip = await makeZip({ 'eicar.com': eicar() });
  const r = await runScanner(oleScanner, await makeOle({ '\u4840\u3b3f': Buffer.from('string pool'), 'Binary.payload': zip }));
  assert.deepEqual(r.children.map((c) => c.name), ['Binary.payload']);
  assert.equal(r.attributes.oleKind, 'other');
});

test('a refused child stops extraction and says so', async () => {
  const doc = await makeOle(prefixed('Macros/', vbaProjectStreams([{ name: 'A', source: 'Sub A()\r\nEnd Sub' }, { name: 'B', source: 'Sub B()\r\nEnd Sub' }])));
  const r = await runScanner(oleScanner, doc, { acceptChildren: 1 });
  assert.equal(r.children.length, 1);
  assert.ok(r.evidence.some((e) => e.heuristic === 'ARCHIVE_LIMIT' && e.data?.reason === 'count'));
});

test('damaged compound files are findings, never exceptions or hangs', async () => {
  const doc = await makeOle({ WordDocument: wordStream('x'), ...prefixed('Macros/', vbaProjectStreams([{ name: 'ThisDocument', source: DROPPER }])) });
  const truncated = await runScanner(oleScanner, doc.subarray(0, 600));
  assert.ok(truncated.heuristics.includes('UNPARSEABLE'), truncated.heuristics.join());
  const header = await runScanner(oleScanner, Buffer.concat([doc.subarray(0, 8), Buffer.alloc(100, 0xff)]));
  assert.deepEqual(header.heuristics, ['UNPARSEABLE']);
  // Random corruption anywhere: every run finishes.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const started = Date.now();
  for (let i = 0; i < 300; i++) {
    const b = Buffer.from(doc);
    for (let k = 0; k < 1 + (i % 16); k++) b[8 + Math.floor(rand() * (b.length - 8))] = Math.floor(rand() * 256);
    await runScanner(oleScanner, b);
  }
  assert.ok(Date.now() - started < 60_000);
});

test('looping sector chains and a directory that is not a tree are read in bounded time and reported (fuzz regression: the cfb library aborted the process)', async () => {
  const ole = await makeOle({ Big: Buffer.alloc(10_000, 0x41), Small: Buffer.from('hello') });
  const sector = (n: number) => (n + 1) * 512;
  const fat0 = ole.readInt32LE(0x4c);
  const dir = sector(ole.readInt32LE(0x30));
  const entry = (name: string) => {
    for (let i = 0; i < 4; i++) if (ole.toString('utf16le', dir + i * 128, dir + i * 128 + name.length * 2) === name) return { i, at: dir + i * 128 };
    throw new Error(`no entry ${name}`);
  };
  const big = entry('Big');
  const start = ole.readInt32LE(big.at + 116);
  ole.writeInt32LE(start, sector(fat0) + (start + 1) * 4); // second sector of Big links back to its first
  const small = entry('Small');
  ole.writeInt32LE(small.i, small.at + 68); // Small is its own left sibling
  const started = Date.now();
  const r = await runScanner(oleScanner, ole, { name: 'loop.doc' });
  assert.ok(Date.now() - started < 2000);
  const u = r.evidence.find((e) => e.heuristic === 'UNPARSEABLE');
  assert.ok(u, r.heuristics.join());
  assert.match(String(u.details), /sector chain loops/);
  assert.match(String(u.details), /not a tree/);
});
