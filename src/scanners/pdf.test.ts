import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { pdfScanner, decodeName } from './pdf.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';
import { decide } from '../verdict/rules.ts';
import { startVerdict, type Running } from '../../test/harness.ts';

/** A PDF from object bodies (numbered from 1); the xref table is bogus, as in many real files. */
function pdf(objects: (string | Buffer)[], trailerExtra = ''): Buffer {
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  objects.forEach((body, i) => {
    parts.push(Buffer.from(`${i + 1} 0 obj\n`), Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'), Buffer.from('\nendobj\n'));
  });
  parts.push(Buffer.from(`xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size ${objects.length + 1} /Root 1 0 R ${trailerExtra} >>\nstartxref\n0\n%%EOF\n`));
  return Buffer.concat(parts);
}

function stream(dict: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`<< ${dict} /Length ${data.length} >>\nstream\n`), data, Buffer.from('\nendstream')]);
}

const PAGES = ['<< /Type /Pages /Kids [3 0 R] /Count 1 >>', '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>'];

function verdictOf(r: RunResult): string {
  return decide(r.evidence.map((e) => ({ ...e, scanner: 'pdf', layer: 'document' })), [], { scoreSuspicious: 300, scoreMalicious: 1000 }).verdict;
}

describe('PDF scanner', () => {
  test('a plain PDF has no findings', async () => {
    const content = zlib.deflateSync(Buffer.from('BT /F1 12 Tf 72 720 Td (Quarterly report) Tj ET'));
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R /OpenAction [3 0 R /Fit] >>', ...PAGES, stream('/Filter /FlateDecode', content)]), { name: 'report.pdf' });
    assert.deepEqual(r.heuristics, []);
    assert.equal(r.children.length, 0);
    assert.equal(verdictOf(r), 'CLN');
    assert.equal(r.attributes.objects, 4);
  });

  test('OpenAction running JavaScript: both findings, the script as a child, and SUS', async () => {
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>', ...PAGES, '<< /Type /Action /S /JavaScript /JS (app.alert\\("opened"\\); this.exportDataObject\\({cName: "a"}\\);) >>']));
    assert.deepEqual(r.heuristics.sort(), ['PDF_AUTO_ACTION', 'PDF_JAVASCRIPT']);
    const auto = r.evidence.find((e) => e.heuristic === 'PDF_AUTO_ACTION')!;
    assert.deepEqual(auto.data?.kinds, ['javascript']);
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].relation, 'script');
    assert.equal(r.children[0].name, 'object-4.js');
    assert.equal(r.children[0].bytes!.toString(), 'app.alert("opened"); this.exportDataObject({cName: "a"});');
    assert.equal(verdictOf(r), 'SUS');
  });

  test('JavaScript in a Flate stream (also behind ASCII85) is decoded', async () => {
    const code = 'var s = unescape("%u9090%u9090"); while (s.length < 0x40000) s += s;';
    const flate = zlib.deflateSync(Buffer.from(code));
    const a85 = Buffer.from(`<~${ascii85(flate)}~>`);
    const r = await runScanner(pdfScanner, pdf([
      '<< /Type /Catalog /Pages 2 0 R /Names << /JavaScript << /Names [(a) 4 0 R (b) 6 0 R] >> >> >>', ...PAGES,
      '<< /S /JavaScript /JS 5 0 R >>', stream('/Filter /FlateDecode', flate),
      '<< /S /JavaScript /JS 7 0 R >>', stream('/Filter [/ASCII85Decode /FlateDecode]', a85),
    ]));
    assert.ok(r.heuristics.includes('PDF_JAVASCRIPT'));
    assert.ok(!r.heuristics.includes('PDF_AUTO_ACTION'), 'document-level scripts are not an automatic action by themselves');
    // the same code twice is one child
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].bytes!.toString(), code);
    assert.equal(r.children[0].name, 'object-5.js');
  });

  test('an object stream hiding the catalog with /OpenAction and the script is expanded', async () => {
    const inner = ['<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>', '<< /S /JavaScript /JS (this.print\\(\\);) >>'];
    const off2 = inner[0].length + 1;
    const header = `1 0 6 ${off2} `;
    const body = Buffer.from(header + inner[0] + '\n' + inner[1]);
    const objstm = stream(`/Type /ObjStm /N 2 /First ${header.length} /Filter /FlateDecode`, zlib.deflateSync(body));
    const r = await runScanner(pdfScanner, pdf(['<< /Type /XRef /Size 7 >>', ...PAGES, objstm]));
    assert.deepEqual(r.heuristics.sort(), ['PDF_AUTO_ACTION', 'PDF_JAVASCRIPT']);
    assert.equal((r.attributes.keywords as Record<string, number>).OpenAction, 1);
    assert.equal(r.attributes.objectStreamObjects, 2);
    assert.equal(r.children[0].bytes!.toString(), 'this.print();');
    assert.equal(verdictOf(r), 'SUS');
  });

  test('hex-escaped names are decoded and reported as obfuscation', async () => {
    assert.deepEqual(decodeName('J#61vaScript'), { name: 'JavaScript', obfuscated: true });
    assert.deepEqual(decodeName('Font#20Name'), { name: 'Font Name', obfuscated: false });
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R /Op#65nAction 4 0 R >>', ...PAGES, '<< /S /J#61vaScript /J#53 (app.alert\\(1\\)) >>']));
    assert.ok(r.heuristics.includes('PDF_NAME_OBFUSCATION'));
    assert.ok(r.heuristics.includes('PDF_JAVASCRIPT'));
    assert.ok(r.heuristics.includes('PDF_AUTO_ACTION'));
    const obf = r.evidence.find((e) => e.heuristic === 'PDF_NAME_OBFUSCATION')!;
    assert.equal(obf.data?.count, 3);
    assert.equal(r.children[0].bytes!.toString(), 'app.alert(1)');
    assert.equal(verdictOf(r), 'SUS');
  });

  test('an embedded file is emitted under its file-specification name; Launch of it is SUS', async () => {
    const r = await runScanner(pdfScanner, pdf([
      '<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(eicar) 4 0 R] >> >> /OpenAction 6 0 R >>', ...PAGES,
      '<< /Type /Filespec /F (eicar.com) /UF <FEFF00650069006300610072002E0063006F006D> /EF << /F 5 0 R >> >>',
      stream('/Type /EmbeddedFile /Filter /FlateDecode', zlib.deflateSync(eicar())),
      '<< /S /Launch /Win << /F (cmd.exe) /P (/c start eicar.com) >> >>',
    ]));
    assert.ok(r.heuristics.includes('PDF_EMBEDDED_FILE'));
    assert.ok(r.heuristics.includes('PDF_LAUNCH'));
    assert.ok(r.heuristics.includes('PDF_AUTO_ACTION'));
    const file = r.children.find((c) => c.relation === 'embedded_object')!;
    assert.equal(file.name, 'eicar.com');
    assert.ok(file.bytes!.equals(eicar()));
    const launch = r.evidence.find((e) => e.heuristic === 'PDF_LAUNCH')!;
    assert.equal(launch.data?.executable, true);
    assert.equal(launch.data?.launchesEmbeddedFile, true);
    assert.equal(verdictOf(r), 'SUS');
  });

  test('URIs become link children: http(s) only, deduplicated, at most 50', async () => {
    const annots = Array.from({ length: 60 }, (_, i) => `<< /Type /Annot /Subtype /Link /A << /S /URI /URI (https://example.test/p${i % 55}) >> >>`);
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R >>', ...PAGES, '<< /S /URI /URI (mailto:a@b.test) >>', ...annots]));
    const links = r.children.filter((c) => c.relation === 'link');
    assert.equal(links.length, 50);
    assert.equal(new Set(links.map((l) => ('url' in l ? l.url : ''))).size, 50);
    assert.ok(links.every((l) => 'url' in l && l.url.startsWith('https://example.test/')));
    assert.equal((r.attributes.uris as string[]).length, 50);
    assert.deepEqual(r.heuristics, []);
    // a PDF reached by following a link hands out no more links
    const small = pdf(['<< /Type /Catalog >>', '<< /S /URI /URI (https://example.test/) >>']);
    assert.equal((await runScanner(pdfScanner, small, { depth: 2, relation: 'fetched_content' })).children.length, 0);
    assert.equal((await runScanner(pdfScanner, small, { depth: 1, relation: 'fetched_content' })).children.length, 1);
  });

  test('an encrypted PDF is reported as partial and its ciphertext is not emitted', async () => {
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>', ...PAGES, '<< /S /JavaScript /JS (\x8f\x12\xa0) >>', '<< /Filter /Standard /V 2 /R 3 /O <00> /U <00> /P -4 >>'], '/Encrypt 5 0 R'));
    assert.ok(r.heuristics.includes('PDF_ENCRYPTED'));
    assert.ok(r.heuristics.includes('PDF_JAVASCRIPT'));
    assert.equal(r.children.length, 0);
  });

  test('a Flate bomb is cut at the ratio limit and reported', async () => {
    const bomb = zlib.deflateSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
    const started = Date.now();
    const r = await runScanner(pdfScanner, pdf([
      '<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(z) 4 0 R] >> >> >>', ...PAGES,
      '<< /Type /Filespec /F (zeros.bin) /EF << /F 5 0 R >> >>', stream('/Type /EmbeddedFile /Filter /FlateDecode', bomb),
    ]));
    assert.ok(Date.now() - started < 5000);
    assert.ok(r.heuristics.includes('ARCHIVE_BOMB'));
    const child = r.children.find((c) => c.name === 'zeros.bin')!;
    assert.ok(child.bytes!.length <= Math.max(1024 * 1024, 200 * bomb.length));
  });

  test('a Launch action alone is SUS', async () => {
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R >>', ...PAGES, '<< /Type /Annot /Subtype /Link /A << /S /Launch /F (C:\\\\Windows\\\\System32\\\\calc.exe) >> >>']));
    assert.deepEqual(r.heuristics, ['PDF_LAUNCH']);
    assert.equal(verdictOf(r), 'SUS');
  });

  test('LZW-compressed JavaScript with /EarlyChange is decoded', async () => {
    // "app.alert(1)" as 9-bit LZW codes: clear, the 12 bytes, end of data
    const codes = [256, ...Buffer.from('app.alert(1)'), 257];
    let bits = '';
    for (const c of codes) bits += c.toString(2).padStart(9, '0');
    bits = bits.padEnd(Math.ceil(bits.length / 8) * 8, '0');
    const lzw = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
    const r = await runScanner(pdfScanner, pdf(['<< /Type /Catalog /Pages 2 0 R >>', ...PAGES, '<< /S /JavaScript /JS 5 0 R >>', stream('/Filter /LZWDecode /DecodeParms << /EarlyChange 1 >>', lzw)]));
    assert.equal(r.children[0].bytes!.toString(), 'app.alert(1)');
  });

  test('malformed input gives findings, never a throw or a hang', async () => {
    const good = pdf(['<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>', ...PAGES, '<< /S /JavaScript /JS 5 0 R >>', stream('/Filter /FlateDecode', zlib.deflateSync(Buffer.from('app.alert(2)')))]);
    const started = Date.now();
    // every truncation point of a small PDF, and byte flips
    for (let cut = 0; cut < good.length; cut += 7) await runScanner(pdfScanner, good.subarray(0, cut));
    let seed = 3;
    for (let i = 0; i < 300; i++) {
      const m = Buffer.from(good);
      for (let k = 0; k < 5; k++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        m[seed % m.length] = seed & 0xff;
      }
      await runScanner(pdfScanner, m);
    }
    assert.ok(Date.now() - started < 20_000);
    const noObjects = await runScanner(pdfScanner, Buffer.from('%PDF-1.4\ngarbage only\n'));
    assert.deepEqual(noObjects.heuristics, ['PDF_MALFORMED']);
    const unterminated = await runScanner(pdfScanner, Buffer.from('%PDF-1.4\n1 0 obj\n<< /Length 999 /Filter /FlateDecode >>\nstream\nxx'));
    assert.ok(unterminated.heuristics.includes('PDF_MALFORMED'));
    const deep = await runScanner(pdfScanner, Buffer.concat([Buffer.from('%PDF-1.4\n1 0 obj\n'), Buffer.alloc(200_000, '['), Buffer.from('\nendobj\n2 0 obj\n<< /S /JavaScript /JS (x) >>\nendobj\n')]));
    assert.ok(deep.heuristics.includes('PDF_MALFORMED'));
    assert.ok(deep.heuristics.includes('PDF_JAVASCRIPT'), 'a broken object does not hide the next one');
  });
});

describe('PDF through the engine', () => {
  let v: Running;
  before(async () => {
    v = await startVerdict({ clamd: 'off' });
  });
  after(async () => {
    await v?.close();
  });

  test('a PDF carrying EICAR as an embedded file is MAL, the file shown as its child', async () => {
    const doc = pdf([
      '<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(eicar) 4 0 R] >> >> >>', ...PAGES,
      '<< /Type /Filespec /F (eicar.com) /EF << /F 5 0 R >> >>', stream('/Type /EmbeddedFile /Filter /FlateDecode', zlib.deflateSync(eicar())),
    ]);
    const id = await v.submitFile(doc, 'statement.pdf');
    const scan = await v.waitForScan(id);
    assert.equal(scan.verdict, 'MAL');
    const child = scan.children.find((c: any) => c.sample_title === 'eicar.com');
    assert.ok(child, JSON.stringify(scan.children));
    assert.equal(child.verbose_verdict, 'MAL');
  });
});

function ascii85(b: Buffer): string {
  let out = '';
  for (let i = 0; i < b.length; i += 4) {
    const chunk = Buffer.alloc(4);
    b.copy(chunk, 0, i, Math.min(b.length, i + 4));
    let v = chunk.readUInt32BE(0);
    const n = Math.min(4, b.length - i);
    const digits: string[] = [];
    for (let k = 0; k < 5; k++) {
      digits.unshift(String.fromCharCode((v % 85) + 33));
      v = Math.floor(v / 85);
    }
    out += digits.slice(0, n + 1).join('');
  }
  return out;
}
