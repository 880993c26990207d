import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOle1, parseRtf, rtfScanner } from './rtf.ts';
import { oleScanner } from './ole.ts';
import { eicar, makeOle, packagerData, runScanner } from './testing.ts';

/** An OLE1 embedded object ([MS-OLEDS] 2.2.5) of `className` carrying `native`. */
function ole1(className: string, native: Buffer): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const lp = (s: string) => (s ? Buffer.concat([u32(s.length + 1), Buffer.from(`${s}\0`, 'latin1')]) : u32(0));
  return Buffer.concat([u32(0x0501), u32(2), lp(className), lp(''), lp(''), u32(native.length), native]);
}

/** Hex in lines of 64 digits, as Word writes it. */
const hex = (b: Buffer) => b.toString('hex').replace(/(.{64})/g, '$1\r\n');

const rtf = (body: string) => Buffer.from(`{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Calibri;}}\\pard Please see the attachment.\\par ${body}}`, 'latin1');

test('a Packager object: the embedded file (EICAR) becomes a child', async () => {
  const doc = rtf(`{\\object\\objemb{\\*\\objclass Package}\\objw100\\objh100{\\*\\objdata ${hex(ole1('Package', packagerData('eicar.com', eicar())))}}}`);
  const r = await runScanner(rtfScanner, doc, { name: 'letter.rtf' });
  assert.deepEqual(r.heuristics, ['DOC_EMBEDDED_OBJECT', 'DOC_EMBEDDED_PACKAGE', 'DOC_PACKAGE_EXECUTABLE']);
  assert.equal(r.children.length, 1);
  assert.equal(r.children[0].name, 'eicar.com');
  assert.equal(r.children[0].relation, 'embedded_object');
  assert.ok(r.children[0].bytes!.equals(eicar()));
});

test('an Equation Editor object updated on open is flagged; its compound file is a child', async () => {
  const inner = await makeOle({ 'Equation Native': Buffer.alloc(64, 0x41), '\x01CompObj': Buffer.alloc(40) }, { clsids: { '': '0002CE02-0000-0000-C000-000000000046' } });
  const doc = rtf(`{\\object\\objemb\\objupdate{\\*\\objclass Equation.3}{\\*\\objdata ${hex(ole1('Equation.3', inner))}}{\\result {\\pict}}}`);
  const r = await runScanner(rtfScanner, doc);
  assert.deepEqual(r.heuristics, ['DOC_EMBEDDED_OBJECT', 'DOC_EQUATION_EDITOR', 'RTF_OBJUPDATE']);
  assert.equal(r.children[0].name, 'object0-Equation.3.ole');
  assert.ok(r.children[0].bytes!.equals(inner));
  assert.ok((await runScanner(oleScanner, r.children[0].bytes!)).heuristics.includes('DOC_EQUATION_EDITOR'));
  // The CLSID alone, in a raw OLE2 object without an OLE1 header, is found too.
  const raw = await runScanner(rtfScanner, rtf(`{\\object{\\*\\objdata ${hex(inner)}}}`));
  assert.ok(raw.heuristics.includes('DOC_EQUATION_EDITOR'), raw.heuristics.join());
});

test('hex data broken up by junk control words and groups is still decoded, and flagged', async () => {
  const data = ole1('Package', packagerData('eicar.com', eicar()));
  const digits = data.toString('hex');
  const junk = digits.replace(/(.{10})/g, '$1\\par\\fs22 {\\*\\bkmkstart x}\r\n');
  const r = await runScanner(rtfScanner, rtf(`{\\object\\objemb{\\*\\objdata ${junk}}}`));
  assert.ok(r.children[0].bytes!.equals(eicar()), 'the payload survives the junk');
  const f = r.evidence.find((e) => e.heuristic === 'RTF_OBFUSCATION');
  assert.ok(f, r.heuristics.join());
  assert.match(String(f.details), /control_words_in_object_data/);
});

test('an OLE2Link object (CVE-2017-0199 style) with a URL moniker', async () => {
  const link = await makeOle({ '\x01Ole': Buffer.concat([Buffer.alloc(20), Buffer.from('http://198.51.100.7/doc.hta\0', 'utf16le')]) }, { clsids: { '': '00000300-0000-0000-C000-000000000046' } });
  const r = await runScanner(rtfScanner, rtf(`{\\object\\objautlink\\objupdate\\rsltpict{\\*\\objclass Word.Document.8}{\\*\\objdata ${hex(ole1('OLE2Link', link))}}}`));
  assert.deepEqual(r.heuristics, ['DOC_EMBEDDED_OBJECT', 'DOC_OLE2LINK', 'RTF_OBJUPDATE']);
  assert.match(String(r.evidence[1].details), /OLE2Link to http:\/\/198\.51\.100\.7\/doc\.hta/);
  assert.deepEqual(r.children.filter((c) => 'url' in c).map((c) => c.relation), ['link']);
});

test('structural obfuscation: deep nesting, \\bin past the end, a bare {\\rt header', async () => {
  const deep = await runScanner(rtfScanner, Buffer.from(`{\\rtf1${'{'.repeat(5000)}x${'}'.repeat(5000)}}`));
  assert.deepEqual(deep.heuristics, ['RTF_OBFUSCATION']);
  assert.match(String(deep.evidence[0].details), /deep_nesting/);
  const bin = await runScanner(rtfScanner, Buffer.from('{\\rtf1{\\object{\\*\\objdata \\bin999999999 0102}}}'));
  assert.ok(bin.evidence.some((e) => e.heuristic === 'RTF_OBFUSCATION' && /bin_past_end/.test(String(e.details))), bin.heuristics.join());
  const header = await runScanner(rtfScanner, Buffer.from('{\\rtxyz\\ansi hello}'));
  assert.match(String(header.evidence.find((e) => e.heuristic === 'RTF_OBFUSCATION')?.details), /nonstandard_header/);
});

test('plain RTF is clean; malformed RTF is a finding, never an exception', async () => {
  assert.deepEqual((await runScanner(rtfScanner, rtf('{\\b bold} and {\\i italic} text with \\\'e9 accents'))).heuristics, []);
  const garbage = await runScanner(rtfScanner, rtf('{\\object{\\*\\objdata 00ff00ff00ff13371337'));
  assert.deepEqual(garbage.heuristics, ['DOC_EMBEDDED_OBJECT', 'UNPARSEABLE']);
  assert.equal(garbage.children.length, 1);
  assert.equal(parseOle1(Buffer.from([1, 5, 0, 0, 9, 0, 0, 0])), undefined);
  const s = parseRtf(Buffer.from('{\\rtf1}}}{{'));
  assert.equal(s.unbalanced, 4);
  // Random corruption of a document with an object: every run finishes quickly.
  const valid = rtf(`{\\object\\objemb{\\*\\objdata ${hex(ole1('Package', packagerData('a.txt', Buffer.from('hello'))))}}}`);
  let seed = 11;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const started = Date.now();
  for (let i = 0; i < 500; i++) {
    const b = Buffer.from(valid);
    for (let k = 0; k < 1 + (i % 8); k++) b[5 + Math.floor(rand() * (b.length - 5))] = '{}\\0aZ \'*'.charCodeAt(Math.floor(rand() * 10)) || 0;
    await runScanner(rtfScanner, i % 5 === 0 ? b.subarray(0, Math.floor(rand() * b.length)) : b);
  }
  assert.ok(Date.now() - started < 30_000);
});
