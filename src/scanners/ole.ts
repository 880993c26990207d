/**
 * OLE compound files (.doc, .xls, .ppt, .msi, embedded objects, vbaProject.bin): lists the
 * streams, extracts VBA module source (each module becomes a `macro` child so that YARA and
 * ClamAV read the code), and reports auto-exec and suspicious macro calls, Excel 4.0 macro
 * sheets, DDE fields in Word text, encrypted documents, Equation Editor and OLE2Link objects.
 * Embedded objects (Packager `\x01Ole10Native` streams, `ObjectPool`/`MBD` storages) become
 * `embedded_object` children; in other compound files (MSI...) streams that hold a recognisable
 * file (a cabinet, an executable) do.
 *
 * Damaged files are findings (UNPARSEABLE), never exceptions. Encrypted OOXML (Agile, Standard)
 * is decrypted with the request's passwords or Excel's default (src/scanners/office-crypto.ts)
 * and the package becomes a child (DOCUMENT_DECRYPTED); what stays closed, and legacy RC4/XOR
 * encryption, is reported as not scanned (ENCRYPTED_DOCUMENT, partial).
 *
 * @example
 * const r = await runScanner(oleScanner, docBytes);
 * r.heuristics // ['VBA_MACROS', 'VBA_AUTOEXEC', ...]; r.children[0].name === 'ThisDocument.vba'
 */
import CFB from 'cfb';
import { baseName, sanitiseMemberName } from './archive-common.ts';
import { DETECT_HEAD_BYTES, detectType, isExecutableName } from './file-type.ts';
import type { ChildRefusal, ChildSpec, Finding, ScanContext, Scanner } from './types.ts';
import { extractVbaProjects, openCompound, vbaFindings, type Compound, type OleEntry } from './vba.ts';
import { decryptOfficePackage, DEFAULT_EXCEL_PASSWORD } from './office-crypto.ts';

/** Largest compound file parsed (the parser holds it in memory). */
export const MAX_OLE_BYTES = 256 * 1024 * 1024;
/** Most stream paths listed in the attributes. */
const MAX_LISTED_STREAMS = 200;

/** Class ids as `cfb` reports them (the 16 bytes in file order, as hex). */
export const CLSID = {
  equation: clsidBytes('0002CE02-0000-0000-C000-000000000046'),
  stdOleLink: clsidBytes('00000300-0000-0000-C000-000000000046'),
} as const;

/** A GUID in its text form → the hex of its 16 bytes as stored (first three fields little-endian). */
export function clsidBytes(guid: string): string {
  const h = guid.replace(/-/g, '').toLowerCase();
  const swap = (s: string) => s.match(/../g)!.reverse().join('');
  return swap(h.slice(0, 8)) + swap(h.slice(8, 12)) + swap(h.slice(12, 16)) + h.slice(16);
}

// ---------------------------------------------------------------------------------------------
// Children

/** Emits children until the engine refuses one or time runs out; reports that once. */
export class ChildSink {
  emitted = 0;
  refused?: ChildRefusal;

  constructor(private readonly ctx: ScanContext) {}

  async emit(child: ChildSpec): Promise<boolean> {
    if (this.refused) return false;
    if (this.ctx.signal.aborted || Date.now() >= this.ctx.deadline) {
      this.refused = 'deadline';
      return false;
    }
    const answer = await this.ctx.emitChild(child);
    if (answer === true) {
      this.emitted++;
      return true;
    }
    this.refused = answer;
    return false;
  }

  findings(): Finding[] {
    return this.refused ? [{ heuristic: 'ARCHIVE_LIMIT', details: `extraction stopped: ${this.refused}`, data: { reason: this.refused, emitted: this.emitted } }] : [];
  }
}

// ---------------------------------------------------------------------------------------------
// Packager objects

export interface PackageFile {
  label: string;
  /** The path the file had on the author's machine. */
  sourcePath: string;
  data: Buffer;
}

/**
 * Parses Packager native data: a 2-byte header, the label and the source path as NUL-terminated
 * strings, 4 reserved bytes, the temporary path (length-prefixed), then the file (size-prefixed).
 * `\x01Ole10Native` streams put a 4-byte total size in front (`sizePrefix`). Returns undefined
 * when the data does not have that shape.
 */
export function parsePackage(buf: Buffer, sizePrefix: boolean): PackageFile | undefined {
  let p = sizePrefix ? 4 : 0;
  const cstr = (): string | undefined => {
    const end = buf.indexOf(0, p);
    if (end < 0 || end - p > 4096) return undefined;
    const s = buf.subarray(p, end).toString('latin1');
    p = end + 1;
    return s;
  };
  if (p + 2 > buf.length) return undefined;
  p += 2;
  const label = cstr();
  const sourcePath = cstr();
  if (label === undefined || sourcePath === undefined || p + 8 > buf.length) return undefined;
  p += 4;
  const tempLen = buf.readUInt32LE(p);
  p += 4;
  if (tempLen > 4096 || p + tempLen + 4 > buf.length) return undefined;
  p += tempLen;
  const size = buf.readUInt32LE(p);
  p += 4;
  if (size > buf.length - p) return undefined;
  return { label, sourcePath, data: buf.subarray(p, p + size) };
}

/** A child name for a package: the source path's file name, else the label. */
export function packageName(pkg: PackageFile): string {
  const base = baseName(pkg.sourcePath) || baseName(pkg.label) || 'package.bin';
  return sanitiseMemberName(base, 'package.bin').name;
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const oleScanner: Scanner = {
  name: 'ole',
  version: '1',
  layer: 'document',
  accepts: (info) => info.kind === 'file' && info.fileType === 'ole',
  async scan(input, ctx) {
    if (input.info.size > MAX_OLE_BYTES) {
      return { evidence: [{ heuristic: 'NOT_FULLY_SCANNED', details: `compound file larger than ${MAX_OLE_BYTES} bytes: streams not examined`, data: { size: input.info.size, limit: MAX_OLE_BYTES } }] };
    }
    const data = await input.bytes(MAX_OLE_BYTES);
    let compound: Compound;
    try {
      compound = openCompound(data);
    } catch (err) {
      return { evidence: [{ heuristic: 'UNPARSEABLE', details: `not a readable OLE compound file: ${(err as Error).message}`.slice(0, 300), data: { format: 'ole' } }] };
    }
    const result = await analyseCompound(compound, ctx, input.info.name);
    if (compound.damage?.length) {
      result.evidence.unshift({ heuristic: 'UNPARSEABLE', details: `damaged compound file, read in part: ${compound.damage.slice(0, 3).join('; ')}`.slice(0, 300), data: { format: 'ole', damage: compound.damage.slice(0, 20) } });
    }
    return result;
  },
};

type Kind = 'word' | 'excel' | 'powerpoint' | 'msg' | 'encrypted_ooxml' | 'other';

function kindOf(c: Compound): Kind {
  if (c.get('EncryptedPackage') && c.get('EncryptionInfo')) return 'encrypted_ooxml';
  if (c.get('WordDocument')) return 'word';
  if (c.get('Workbook') || c.get('Book')) return 'excel';
  if (c.get('PowerPoint Document')) return 'powerpoint';
  if (c.get('__properties_version1.0')) return 'msg';
  return 'other';
}

async function analyseCompound(compound: Compound, ctx: ScanContext, name: string): Promise<{ evidence: Finding[]; attributes: Record<string, unknown> }> {
  const evidence: Finding[] = [];
  const sink = new ChildSink(ctx);
  const streams = compound.entries.filter((e) => e.type === 'stream');
  const kind = kindOf(compound);
  const attributes: Record<string, unknown> = {
    oleKind: kind,
    streams: streams.length,
    streamList: streams.slice(0, MAX_LISTED_STREAMS).map((e) => ({ path: printable(e.path), size: e.size })),
  };

  // VBA: findings on this object, module source as children.
  const projects = extractVbaProjects(compound);
  evidence.push(...vbaFindings(projects));
  for (const project of projects) {
    for (const m of project.modules) {
      const ok = await sink.emit({ name: `${sanitiseMemberName(m.name, 'module').name}.vba`, relation: 'macro', data: Buffer.from(m.source, 'utf8'), meta: { module: m.name, stream: printable(m.stream) } });
      if (!ok) break;
    }
  }

  const encryption = encryptionOf(compound, kind);
  if (encryption && kind === 'encrypted_ooxml') {
    evidence.push(await decryptOoxml(compound, ctx, sink, name, encryption));
  } else if (encryption) {
    evidence.push({
      heuristic: 'ENCRYPTED_DOCUMENT',
      details: `${encryption.method} encryption; decryption is not supported, the content was not scanned`,
      data: { ...encryption, passwordsTried: 0 },
    });
  }

  if (kind === 'excel') evidence.push(...xlmFindings(compound));
  if (kind === 'word' && !encryption) evidence.push(...ddeFindings(compound));
  evidence.push(...exploitObjectFindings(compound));
  evidence.push(...(await embeddedObjects(compound, sink)));
  for (const url of oleLinkUrls(compound).slice(0, 20)) await sink.emit({ name: url, relation: 'link', url });
  if (kind === 'other') await typedStreams(compound, sink);

  evidence.push(...sink.findings());
  attributes.children = sink.emitted;
  return { evidence, attributes };
}

/** Stream names start with control characters (\x01Ole, \x05SummaryInformation): make them visible. */
function printable(s: string): string {
  return s.replace(/[\u0000-\u001f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

// ---------------------------------------------------------------------------------------------
// Encryption

function encryptionOf(c: Compound, kind: Kind): Record<string, unknown> | undefined {
  if (kind === 'encrypted_ooxml') {
    const info = c.get('EncryptionInfo')!.content;
    const major = info.length >= 4 ? info.readUInt16LE(0) : 0;
    const minor = info.length >= 4 ? info.readUInt16LE(2) : 0;
    const method = major === 4 && minor === 4 ? 'agile' : minor === 2 && (major === 3 || major === 4) ? 'standard' : minor === 3 ? 'extensible' : 'unknown';
    return { format: 'ooxml', method, version: `${major}.${minor}` };
  }
  if (kind === 'word') {
    const wd = c.get('WordDocument')!.content;
    if (wd.length >= 12 && wd.readUInt16LE(0) === 0xa5ec) {
      const flags = wd.readUInt16LE(0x0a);
      if (flags & 0x0100) return { format: 'doc', method: flags & 0x8000 ? 'xor' : 'rc4' };
    }
  }
  if (kind === 'excel') {
    for (const r of biffGlobals(workbook(c))) {
      if (r.type === 0x002f) return { format: 'xls', method: r.data.length >= 2 && r.data.readUInt16LE(0) === 0 ? 'xor' : 'rc4' };
    }
  }
  if (kind === 'powerpoint' && c.get('EncryptedSummary')) return { format: 'ppt', method: 'rc4' };
  return undefined;
}

/**
 * Encrypted OOXML: tries the request's passwords and Excel's default; the decrypted package (a
 * zip) becomes a child for the OOXML, YARA and ClamAV scanners. Unopened stays partial.
 */
async function decryptOoxml(c: Compound, ctx: ScanContext, sink: ChildSink, name: string, encryption: Record<string, unknown>): Promise<Finding> {
  const r = await decryptOfficePackage(c.get('EncryptionInfo')!.content, c.get('EncryptedPackage')!.content, ctx.options.passwords, { signal: ctx.signal, deadline: ctx.deadline });
  if (!r.ok) {
    return { heuristic: 'ENCRYPTED_DOCUMENT', details: `${encryption.method} encryption, not decrypted (${r.reason}): ${r.details}`.slice(0, 300), data: { ...encryption, reason: r.reason, passwordsTried: r.tried } };
  }
  // Keep the document's own extension so the child reads as what it is (.docx, .xlsm...).
  const ext = /\.[a-z0-9]{1,5}$/i.exec(name)?.[0].toLowerCase() ?? '.zip';
  const defaultPassword = r.password === DEFAULT_EXCEL_PASSWORD;
  await sink.emit({ name: `decrypted${ext}`, relation: 'decompressed', data: r.data, meta: { decryptedFrom: encryption.method } });
  return {
    heuristic: 'DOCUMENT_DECRYPTED',
    details: `${encryption.method} encryption, opened with ${defaultPassword ? `Excel's default password ${DEFAULT_EXCEL_PASSWORD}` : `supplied password #${r.passwordIndex + 1}`}; the content is scanned as a child`,
    data: { ...encryption, passwordsTried: r.tried, passwordIndex: r.passwordIndex, defaultPassword, size: r.data.length },
  };
}

// ---------------------------------------------------------------------------------------------
// Excel 4.0 macros

function workbook(c: Compound): Buffer {
  return (c.get('Workbook') ?? c.get('Book'))?.content ?? Buffer.alloc(0);
}

interface BiffRecord {
  type: number;
  data: Buffer;
}

/** The records of the workbook globals substream (up to its EOF). */
export function* biffGlobals(stream: Buffer): Generator<BiffRecord> {
  let pos = 0;
  let n = 0;
  while (pos + 4 <= stream.length && n++ < 1_000_000) {
    const type = stream.readUInt16LE(pos);
    const len = stream.readUInt16LE(pos + 2);
    const data = stream.subarray(pos + 4, pos + 4 + len);
    pos += 4 + len;
    yield { type, data };
    if (type === 0x000a) return;
  }
}

const SHEET_STATE = ['visible', 'hidden', 'very_hidden', 'unknown'] as const;

function xlmFindings(c: Compound): Finding[] {
  const sheets: { name: string; state: string }[] = [];
  let autoOpen = false;
  for (const r of biffGlobals(workbook(c))) {
    if (r.type === 0x0085 && r.data.length >= 8 && r.data[5] === 0x01) {
      const cch = r.data[6];
      const wide = (r.data[7] & 1) === 1;
      const raw = r.data.subarray(8, 8 + (wide ? cch * 2 : cch));
      sheets.push({ name: wide ? raw.toString('utf16le') : raw.toString('latin1'), state: SHEET_STATE[r.data[4] & 0x03] });
    }
    // Lbl: a built-in name (fBuiltin, bit 5) whose one-character name is 0x01 is Auto_Open.
    if (r.type === 0x0018 && r.data.length >= 16 && r.data.readUInt16LE(0) & 0x0020 && r.data[3] >= 1) {
      const wide = (r.data[14] & 1) === 1;
      const first = wide ? r.data.readUInt16LE(15) : r.data[15];
      if (first === 0x01) autoOpen = true;
    }
  }
  if (sheets.length === 0) return [];
  const hidden = sheets.filter((s) => s.state !== 'visible').map((s) => s.name);
  return [
    {
      heuristic: 'XLM_MACRO_SHEET',
      details: `Excel 4.0 macro sheet${sheets.length > 1 ? 's' : ''}: ${sheets.slice(0, 10).map((s) => `${s.name} (${s.state})`).join(', ')}${autoOpen ? '; Auto_Open defined' : ''}`,
      data: { sheets: sheets.slice(0, 50), hidden, autoOpen },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// DDE

/** DDE and DDEAUTO field instructions: a field-begin character, then the instruction. */
const DDE_FIELD = /\x13\s*(?:\\\*\s*\w+\s*)?(DDE(?:AUTO)?)\b([^\x13\x14\x15]{0,300})/gi;

export function findDdeInstructions(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(DDE_FIELD)) {
    out.push(`${m[1]}${m[2]}`.trim().slice(0, 300));
    if (out.length >= 20) break;
  }
  return out;
}

function ddeFindings(c: Compound): Finding[] {
  const wd = c.get('WordDocument')!.content;
  const texts = [wd.toString('latin1'), wd.toString('utf16le'), wd.subarray(1).toString('utf16le')];
  const found = [...new Set(texts.flatMap(findDdeInstructions))];
  if (found.length === 0) return [];
  return [{ heuristic: 'DDE_FIELD', details: found[0].slice(0, 200), data: { fields: found } }];
}

// ---------------------------------------------------------------------------------------------
// Exploit-associated objects

function exploitObjectFindings(c: Compound): Finding[] {
  const findings: Finding[] = [];
  const equation = c.entries.filter((e) => e.clsid === CLSID.equation || (e.type === 'stream' && /^equation native$/i.test(e.name)));
  if (equation.length > 0) {
    findings.push({ heuristic: 'DOC_EQUATION_EDITOR', details: `Equation Editor object: ${printable(equation[0].path) || 'root'}`, data: { entries: equation.slice(0, 20).map((e) => printable(e.path) || '/') } });
  }
  const links = c.entries.filter((e) => e.clsid === CLSID.stdOleLink);
  const urls = oleLinkUrls(c);
  if (links.length > 0 || urls.length > 0) {
    findings.push({ heuristic: 'DOC_OLE2LINK', details: urls.length ? `linked object to ${urls[0]}` : 'OLE2Link object', data: { entries: links.slice(0, 20).map((e) => printable(e.path) || '/'), urls } });
  }
  return findings;
}

/** URLs in the monikers of `\x01Ole` streams (linked objects), UTF-16 or 8-bit. */
function oleLinkUrls(c: Compound): string[] {
  const urls = new Set<string>();
  for (const e of c.entries) {
    if (e.type !== 'stream' || e.name !== '\x01Ole' || e.size < 20) continue;
    for (const text of [e.content.toString('utf16le'), e.content.subarray(1).toString('utf16le'), e.content.toString('latin1')]) {
      for (const m of text.matchAll(/\b(?:https?|ftp):\/\/[\x21-\x7e]{3,2000}/gi)) urls.add(m[0]);
    }
  }
  return [...urls].slice(0, 50);
}

// ---------------------------------------------------------------------------------------------
// Embedded objects

/** Storages that hold one embedded object each. */
function isObjectStorage(e: OleEntry): boolean {
  return e.type === 'storage' && (/(^|\/)ObjectPool\/_\d+$/i.test(e.path) || /^MBD[0-9A-F]{8}$/i.test(e.name));
}

async function embeddedObjects(c: Compound, sink: ChildSink): Promise<Finding[]> {
  const findings: Finding[] = [];
  const objects: { name: string; kind: string; from: string }[] = [];
  const packages: { name: string; label: string; sourcePath: string; size: number }[] = [];
  const executables: string[] = [];
  const handled = new Set<string>();

  for (const e of c.entries) {
    if (e.type !== 'stream' || e.name !== '\x01Ole10Native') continue;
    const owner = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
    handled.add(owner.toLowerCase());
    const pkg = parsePackage(e.content, true);
    if (pkg) {
      const name = packageName(pkg);
      packages.push({ name, label: pkg.label.slice(0, 256), sourcePath: pkg.sourcePath.slice(0, 1024), size: pkg.data.length });
      if (isExecutableName(name)) executables.push(name);
      objects.push({ name, kind: 'package', from: printable(e.path) });
      await sink.emit({ name, relation: 'embedded_object', data: pkg.data, meta: { label: pkg.label.slice(0, 256), sourcePath: pkg.sourcePath.slice(0, 1024), stream: printable(e.path) } });
    } else if (e.size > 4) {
      // Native data of another OLE1 class: hand over what it holds.
      objects.push({ name: 'Ole10Native.bin', kind: 'ole1_native', from: printable(e.path) });
      await sink.emit({ name: 'Ole10Native.bin', relation: 'embedded_object', data: e.content.subarray(4), meta: { stream: printable(e.path) } });
    }
  }

  for (const s of c.entries) {
    if (!isObjectStorage(s) || handled.has(s.path.toLowerCase())) continue;
    const pkg = c.get(`${s.path}/Package`) ?? c.get(`${s.path}/CONTENTS`);
    if (pkg && pkg.type === 'stream') {
      const name = `${s.name}.${pkg.name === 'Package' ? 'package' : 'contents'}`;
      objects.push({ name, kind: pkg.name.toLowerCase(), from: s.path });
      await sink.emit({ name, relation: 'embedded_object', data: pkg.content, meta: { storage: s.path } });
      continue;
    }
    const rebuilt = rebuildStorage(c, s);
    if (rebuilt) {
      const name = `${s.name}.ole`;
      objects.push({ name, kind: 'ole', from: s.path });
      await sink.emit({ name, relation: 'embedded_object', data: rebuilt, meta: { storage: s.path, clsid: s.clsid } });
    }
  }

  if (objects.length > 0) findings.push({ heuristic: 'DOC_EMBEDDED_OBJECT', details: `${objects.length} embedded object${objects.length === 1 ? '' : 's'}: ${objects.slice(0, 5).map((o) => o.name).join(', ')}`, data: { objects: objects.slice(0, 50) } });
  if (packages.length > 0) findings.push({ heuristic: 'DOC_EMBEDDED_PACKAGE', details: `package${packages.length === 1 ? '' : 's'}: ${packages.slice(0, 5).map((p) => p.name).join(', ')}`, data: { packages: packages.slice(0, 50) } });
  if (executables.length > 0) findings.push({ heuristic: 'DOC_PACKAGE_EXECUTABLE', details: executables.slice(0, 5).join(', '), data: { names: executables.slice(0, 50) } });
  return findings;
}

/** A storage written out as a compound file of its own (an embedded Word or Excel object). */
function rebuildStorage(c: Compound, storage: OleEntry): Buffer | undefined {
  const prefix = `${storage.path}/`.toLowerCase();
  const inside = c.entries.filter((e) => e.type === 'stream' && e.path.toLowerCase().startsWith(prefix));
  if (inside.length === 0) return undefined;
  try {
    const out = CFB.utils.cfb_new();
    for (const e of inside) CFB.utils.cfb_add(out, `/${e.path.slice(prefix.length)}`, e.content);
    if (storage.clsid) out.FileIndex[0].clsid = storage.clsid;
    return Buffer.from(CFB.write(out, { type: 'buffer' }) as Uint8Array);
  } catch {
    return undefined;
  }
}

/**
 * In compound files that are not Office documents (MSI packages, custom containers), streams
 * that hold a recognisable file (a cabinet, an executable, an archive) become children.
 */
async function typedStreams(c: Compound, sink: ChildSink): Promise<void> {
  for (const e of c.entries) {
    if (e.type !== 'stream' || e.size < 16) continue;
    const t = detectType(e.content.subarray(0, DETECT_HEAD_BYTES)).type;
    if (t === 'text' || t === 'unknown' || t === 'empty') continue;
    const name = sanitiseMemberName(printable(e.name), 'stream').name;
    if (!(await sink.emit({ name, relation: 'embedded_object', data: e.content, meta: { stream: printable(e.path), type: t } }))) return;
  }
}
