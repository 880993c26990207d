/**
 * VBA projects in OLE compound files, shared by the OLE scanner (.doc/.xls and
 * `vbaProject.bin` members) and the OOXML scanner (.docm/.xlsm/...): opening a compound file,
 * finding its VBA storages, reading the `dir` stream ([MS-OVBA] §2.3.4.2) for the module list,
 * decompressing each module's source, and turning the source into findings.
 *
 * Reading never throws on damaged projects: what could be read is returned with the problems in
 * `errors`; a `dir` stream that cannot be parsed falls back to finding compressed source by
 * its signature in every module-looking stream.
 *
 * @example
 * const compound = openCompound(bytes);
 * const projects = extractVbaProjects(compound);
 * const findings = vbaFindings(projects); // VBA_MACROS, VBA_AUTOEXEC, ...
 */
import { decompressOvba } from './ovba.ts';
import type { Finding } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Compound files

const OLE_MAGIC = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);

export interface OleEntry {
  /** Path from the root, `/`-separated, no leading slash (`Macros/VBA/dir`); '' for the root. */
  path: string;
  name: string;
  type: 'stream' | 'storage' | 'root';
  size: number;
  /** Class id as 32 hex digits, as stored (little-endian fields), lower case. */
  clsid: string;
  content: Buffer;
}

export interface Compound {
  entries: OleEntry[];
  /** The entry at `path`, compared case-insensitively as OLE does. */
  get(path: string): OleEntry | undefined;
  /** Structural damage met while reading (what could be read is still in `entries`). */
  damage?: string[];
}

/**
 * Parses an OLE compound file held in memory ([MS-CFB]). Throws when it is not one or its
 * header is unusable; damage further in (broken or looping sector chains, a directory that is
 * not a tree, streams sharing sectors) is listed in `damage` and what could be read is kept.
 *
 * Our own reader rather than the cfb library's: on crafted sector chains and directory links
 * cfb loops without end or grows arrays until V8 aborts the whole process (found by
 * test/fuzz.test.ts). Every walk here is bounded by the file's own size.
 */
export function openCompound(data: Buffer): Compound {
  if (data.length < 512 || !data.subarray(0, 8).equals(OLE_MAGIC)) throw new Error('no compound file header');
  const major = data.readUInt16LE(0x1a);
  if (major !== 3 && major !== 4) throw new Error(`major version ${major}, expected 3 or 4`);
  const ssz = major === 4 ? 4096 : 512;
  if (data.length < ssz) throw new Error(`file shorter than its ${ssz}-byte header`);
  const damage = new Set<string>();
  const sectorCount = Math.ceil((data.length - ssz) / ssz);
  const sector = (n: number) => data.subarray((n + 1) * ssz, (n + 2) * ssz);
  const perSector = ssz / 4;

  // FAT sectors: 109 in the header, then the DIFAT chain (its last slot links the next sector).
  const fatSectors: number[] = [];
  for (let i = 0; i < 109; i++) {
    const s = data.readInt32LE(0x4c + i * 4);
    if (s >= 0) fatSectors.push(s);
  }
  const difatSeen = new Set<number>();
  for (let s = data.readInt32LE(0x44); s >= 0; ) {
    if (s >= sectorCount || difatSeen.has(s)) {
      damage.add('broken DIFAT chain');
      break;
    }
    difatSeen.add(s);
    const d = sector(s);
    for (let i = 0; i + 4 <= Math.min(d.length, ssz - 4); i += 4) {
      const f = d.readInt32LE(i);
      if (f >= 0) fatSectors.push(f);
    }
    s = d.length >= ssz ? d.readInt32LE(ssz - 4) : ENDOFCHAIN;
  }
  // Only as many FAT sectors as the file has sectors can matter.
  const fatCount = Math.min(fatSectors.length, Math.ceil(sectorCount / perSector) + 1);
  const fat = new Int32Array(fatCount * perSector).fill(FREESECT);
  for (let i = 0; i < fatCount; i++) {
    if (fatSectors[i] >= sectorCount) {
      damage.add('FAT sector past the end of the file');
      continue;
    }
    const f = sector(fatSectors[i]);
    for (let k = 0; k + 4 <= f.length; k += 4) fat[i * perSector + k / 4] = f.readInt32LE(k);
  }

  // Sector visits, all chains together: in a sound file every sector belongs to one chain (mini
  // sectors are at most 8 per sector), so entries sharing long chains cannot cost n × m steps.
  let steps = 16 * sectorCount + 100_000;
  const chain = (next: Int32Array, start: number, limit: number, what: string): number[] => {
    const out: number[] = [];
    const seen = new Set<number>();
    for (let s = start; s !== ENDOFCHAIN; s = next[s]) {
      if (--steps < 0) {
        damage.add('sector chains overlap beyond the file size');
        return [];
      }
      if (s < 0 || s >= limit || s >= next.length) {
        damage.add(`${what}: sector chain leaves the file`);
        break;
      }
      if (seen.has(s)) {
        damage.add(`${what}: sector chain loops`);
        break;
      }
      seen.add(s);
      out.push(s);
    }
    return out;
  };
  // Sectors read into stream contents, all streams together: sharing sectors cannot multiply memory.
  let budget = 2 * data.length + 1024 * 1024;
  const readChain = (sectors: number[], unit: number, at: (n: number) => Buffer, size: number, what: string): Buffer => {
    const want = Math.min(size, sectors.length * unit);
    if (want > budget) {
      damage.add(`${what}: streams share sectors beyond the file size`);
      return Buffer.alloc(0);
    }
    budget -= want;
    const parts: Buffer[] = [];
    let got = 0;
    for (const n of sectors) {
      if (got >= want) break;
      const b = at(n).subarray(0, want - got);
      parts.push(b);
      got += b.length;
    }
    if (got < size) damage.add(`${what}: stream shorter than its declared size`);
    return Buffer.concat(parts, got);
  };

  // Directory entries, 128 bytes each.
  const dirSectors = chain(fat, data.readInt32LE(0x30), sectorCount, 'directory');
  const dir = Buffer.concat(dirSectors.map(sector));
  interface Raw { name: string; type: number; left: number; right: number; child: number; clsid: string; start: number; size: number }
  const raw: Raw[] = [];
  for (let off = 0; off + 128 <= dir.length; off += 128) {
    const nameBytes = Math.min(64, dir.readUInt16LE(off + 64));
    const size = major === 3 ? dir.readUInt32LE(off + 120) : dir.readUInt32LE(off + 120) + dir.readUInt32LE(off + 124) * 2 ** 32;
    raw.push({
      name: dir.toString('utf16le', off, off + (nameBytes & ~1)).replace(/\0/g, ''),
      type: dir[off + 66],
      left: dir.readInt32LE(off + 68),
      right: dir.readInt32LE(off + 72),
      child: dir.readInt32LE(off + 76),
      clsid: dir.toString('hex', off + 80, off + 96),
      start: dir.readInt32LE(off + 116),
      size,
    });
  }
  if (raw.length === 0 || raw[0].type !== 5) throw new Error('no root directory entry');

  // Paths: walk the storages' sibling trees from the root; every entry at most once.
  const paths = new Map<number, string>([[0, '']]);
  const stack: [number, string][] = [[raw[0].child, '']];
  while (stack.length) {
    const [i, parent] = stack.pop()!;
    if (i === NOSTREAM) continue;
    if (i < 0 || i >= raw.length || paths.has(i)) {
      damage.add('directory is not a tree');
      continue;
    }
    const e = raw[i];
    const p = parent ? `${parent}/${e.name}` : e.name;
    paths.set(i, p);
    stack.push([e.left, parent], [e.right, parent]);
    if (e.type === 1) stack.push([e.child, p]);
  }

  const root = raw[0];
  const miniFat = (() => {
    const sectors = chain(fat, data.readInt32LE(0x3c), sectorCount, 'mini FAT');
    const b = readChain(sectors, ssz, sector, sectors.length * ssz, 'mini FAT');
    const out = new Int32Array(b.length >> 2);
    for (let k = 0; k < out.length; k++) out[k] = b.readInt32LE(k * 4);
    return out;
  })();
  let miniStream: Buffer | undefined;
  const cutoff = data.readUInt32LE(0x38) || 4096;

  const entries: OleEntry[] = [];
  const byPath = new Map<string, OleEntry>();
  raw.forEach((e, i) => {
    const type = e.type === 5 && i === 0 ? 'root' : e.type === 1 ? 'storage' : e.type === 2 ? 'stream' : undefined;
    if (!type) return;
    // Entries no storage links to: kept (hidden streams are what a scanner wants to see).
    const p = paths.get(i) ?? e.name;
    let content: Buffer = Buffer.alloc(0);
    if (type === 'stream' && e.size > 0) {
      const what = `stream ${p}`;
      if (e.size < cutoff) {
        if (!miniStream) {
          const ms = chain(fat, root.start, sectorCount, 'mini stream');
          miniStream = readChain(ms, ssz, sector, root.size, 'mini stream');
        }
        const ms = miniStream;
        content = readChain(chain(miniFat, e.start, Math.ceil(ms.length / 64), what), 64, (n) => ms.subarray(n * 64, n * 64 + 64), e.size, what);
      } else {
        content = readChain(chain(fat, e.start, sectorCount, what), ssz, sector, e.size, what);
      }
    }
    const entry: OleEntry = { path: p, name: e.name, type, size: type === 'stream' ? content.length : 0, clsid: e.clsid.toLowerCase(), content };
    entries.push(entry);
    if (!byPath.has(p.toLowerCase())) byPath.set(p.toLowerCase(), entry);
  });
  return { entries, get: (p) => byPath.get(p.toLowerCase()), damage: [...damage] };
}

const FREESECT = -1;
const ENDOFCHAIN = -2;
const NOSTREAM = -1;

// ---------------------------------------------------------------------------------------------
// VBA projects

export interface VbaModule {
  name: string;
  stream: string;
  source: string;
  /** Why the source may be incomplete. */
  error?: string;
}

export interface VbaProject {
  /** The storage holding `VBA/` (`Macros`, `_VBA_PROJECT_CUR`, '' for vbaProject.bin). */
  storage: string;
  codePage?: number;
  modules: VbaModule[];
  errors: string[];
}

/** Largest decompressed `dir` stream or module source read. */
export const MAX_VBA_SOURCE_BYTES = 8 * 1024 * 1024;
const MAX_MODULES = 1000;

/** Streams of a VBA storage that never hold module source. */
const NOT_MODULES = /^(dir|_vba_project|__srp_\d+|_srp_\d+|projectwm|project)$/i;

/** Finds and reads every VBA project of a compound file. */
export function extractVbaProjects(compound: Compound): VbaProject[] {
  const projects: VbaProject[] = [];
  for (const e of compound.entries) {
    if (e.type !== 'stream' || !/(^|\/)VBA\/dir$/i.test(e.path)) continue;
    const storage = e.path.slice(0, -'VBA/dir'.length).replace(/\/$/, '');
    projects.push(readProject(compound, storage, e));
  }
  // A VBA storage whose dir stream is gone (stripped on purpose, or damaged): still look.
  for (const e of compound.entries) {
    if (e.type !== 'storage' || !/(^|\/)VBA$/i.test(e.path)) continue;
    const storage = e.path.slice(0, -3).replace(/\/$/, '');
    if (projects.some((p) => p.storage.toLowerCase() === storage.toLowerCase())) continue;
    const project: VbaProject = { storage, modules: [], errors: ['dir stream missing'] };
    project.modules = scanForSource(compound, storage);
    projects.push(project);
  }
  return projects;
}

interface DirModule {
  name?: string;
  nameUnicode?: string;
  stream?: string;
  streamUnicode?: string;
  offset?: number;
}

/** The `dir` records that matter here: the code page and, per module, its name, stream and offset. */
export function parseDir(dir: Buffer): { codePage?: number; modules: DirModule[]; error?: string } {
  const modules: DirModule[] = [];
  let codePage: number | undefined;
  let current: DirModule | undefined;
  let pos = 0;
  while (pos + 6 <= dir.length) {
    const id = dir.readUInt16LE(pos);
    const size = dir.readUInt32LE(pos + 2);
    pos += 6;
    // PROJECTVERSION's "size" is a reserved 4 and six bytes follow.
    const len = id === 0x0009 ? 6 : size;
    if (pos + len > dir.length) return { codePage, modules, error: `dir record 0x${id.toString(16)} runs past the stream` };
    const data = dir.subarray(pos, pos + len);
    pos += len;
    switch (id) {
      case 0x0003:
        if (data.length >= 2) codePage = data.readUInt16LE(0);
        break;
      case 0x0019:
        current = { name: decode(data, codePage) };
        modules.push(current);
        if (modules.length > MAX_MODULES) return { codePage, modules, error: 'too many modules' };
        break;
      case 0x0047:
        if (current) current.nameUnicode = data.toString('utf16le');
        break;
      case 0x001a:
        if (current) current.stream = decode(data, codePage);
        break;
      case 0x0032:
        if (current) current.streamUnicode = data.toString('utf16le');
        break;
      case 0x0031:
        if (current && data.length >= 4) current.offset = data.readUInt32LE(0);
        break;
      case 0x002b:
        current = undefined;
        break;
      case 0x0010:
        return { codePage, modules };
      default:
        break;
    }
  }
  return { codePage, modules, error: 'dir stream ended without its terminator' };
}

function readProject(compound: Compound, storage: string, dirEntry: OleEntry): VbaProject {
  const project: VbaProject = { storage, modules: [], errors: [] };
  const prefix = storage ? `${storage}/VBA/` : 'VBA/';
  const dir = decompressOvba(dirEntry.content, MAX_VBA_SOURCE_BYTES);
  if (dir.error) project.errors.push(`dir stream: ${dir.error}`);
  const parsed = parseDir(dir.data);
  project.codePage = parsed.codePage;
  if (parsed.error) project.errors.push(parsed.error);
  for (const m of parsed.modules) {
    const streamName = m.streamUnicode || m.stream || m.name || '';
    const name = m.nameUnicode || m.name || streamName || 'module';
    const stream = compound.get(prefix + streamName);
    if (!stream || stream.type !== 'stream') {
      project.errors.push(`module ${name}: stream ${streamName} missing`);
      continue;
    }
    const offset = m.offset ?? 0;
    const text = decompressOvba(stream.content.subarray(offset), MAX_VBA_SOURCE_BYTES);
    project.modules.push({ name, stream: stream.path, source: decode(text.data, parsed.codePage), ...(text.error ? { error: text.error } : {}) });
  }
  if (project.modules.length === 0) {
    const found = scanForSource(compound, storage);
    if (found.length > 0) project.errors.push('modules found by signature scan');
    project.modules = found;
  }
  return project;
}

/**
 * Finds module source without the `dir` stream: compressed source starts with the container
 * signature, a chunk header and a literal run beginning `Attribut` (from `Attribute VB_Name`).
 */
function scanForSource(compound: Compound, storage: string): VbaModule[] {
  const prefix = (storage ? `${storage}/VBA/` : 'VBA/').toLowerCase();
  const modules: VbaModule[] = [];
  const marker = Buffer.from('\x00Attribut', 'latin1');
  for (const e of compound.entries) {
    if (e.type !== 'stream' || !e.path.toLowerCase().startsWith(prefix) || NOT_MODULES.test(e.name)) continue;
    let from = 0;
    for (;;) {
      const at = e.content.indexOf(marker, from);
      if (at < 0) break;
      if (at >= 3 && e.content[at - 3] === 0x01) {
        const text = decompressOvba(e.content.subarray(at - 3), MAX_VBA_SOURCE_BYTES);
        if (text.data.subarray(0, 9).toString('latin1') === 'Attribute') {
          modules.push({ name: e.name, stream: e.path, source: decode(text.data, undefined), ...(text.error ? { error: text.error } : {}) });
          break;
        }
      }
      from = at + 1;
    }
    if (modules.length >= MAX_MODULES) break;
  }
  return modules;
}

const CODE_PAGES: Record<number, string> = { 932: 'shift_jis', 936: 'gbk', 949: 'euc-kr', 950: 'big5', 10000: 'macintosh', 65001: 'utf-8', 1200: 'utf-16le' };

/** Decodes MBCS text in the project's code page (Windows-1252 when unknown). */
export function decode(data: Buffer, codePage: number | undefined): string {
  const label = codePage === undefined ? 'windows-1252' : (CODE_PAGES[codePage] ?? (codePage >= 874 && codePage <= 1258 ? `windows-${codePage}` : 'windows-1252'));
  try {
    return new TextDecoder(label).decode(data);
  } catch {
    return data.toString('latin1');
  }
}

// ---------------------------------------------------------------------------------------------
// Analysis

/**
 * What a keyword says about the macro. `strong` keywords run, fetch or write things or hide
 * what they do; weak ones (CreateObject, Environ...) are everyday VBA that malware also uses.
 */
export type KeywordKind = 'execute' | 'download' | 'write' | 'obfuscation' | 'object' | 'environment';

interface KeywordRule {
  keyword: string;
  kind: KeywordKind;
  strong: boolean;
  re: RegExp;
}

const kw = (keyword: string, kind: KeywordKind, re: RegExp, strong = true): KeywordRule => ({ keyword, kind, strong, re });

const KEYWORDS: KeywordRule[] = [
  kw('Shell', 'execute', /(?<![.\w])Shell\b(?![.\w])/i),
  kw('WScript.Shell', 'execute', /WScript\.Shell/i),
  kw('Shell.Application', 'execute', /Shell\.Application/i),
  kw('ShellExecute', 'execute', /\bShellExecute/i),
  kw('.Run', 'execute', /\.Run\b(?!\w)/i, false),
  kw('.Exec', 'execute', /\.Exec\b/i),
  kw('Win32_Process', 'execute', /Win32_Process/i),
  kw('MacScript', 'execute', /\bMacScript\b/i),
  kw('ExecuteExcel4Macro', 'execute', /\bExecuteExcel4Macro\b/i),
  kw('CreateProcess/WinExec', 'execute', /\b(CreateProcess[AW]?|WinExec)\b/i),
  kw('shellcode API', 'execute', /\b(VirtualAlloc(Ex)?|RtlMoveMemory|WriteProcessMemory|CreateRemoteThread|CreateThread|EnumSystemLanguageGroups[AW]?)\b/i),
  kw('PowerShell', 'execute', /powershell/i),
  kw('cmd.exe', 'execute', /\bcmd(\.exe)?\s*["']?\s*\/[ck]\b|\bcmd\.exe\b/i),
  kw('living-off-the-land binary', 'execute', /\b(mshta|rundll32|regsvr32|certutil|bitsadmin|wmic|schtasks)(\.exe)?\b|\b(cscript|wscript)\.exe\b/i),
  kw('URLDownloadToFile', 'download', /URLDownloadToFile/i),
  kw('XMLHTTP', 'download', /XMLHTTP/i),
  kw('WinHttpRequest', 'download', /WinHttp\.WinHttpRequest/i),
  kw('Net.WebClient', 'download', /Net\.WebClient/i),
  kw('DownloadFile/DownloadString', 'download', /\bDownload(File|String|Data)\b/i),
  kw('InternetExplorer.Application', 'download', /InternetExplorer\.Application/i),
  kw('WinINet', 'download', /\b(InternetOpenUrl[AW]?|InternetReadFile|HttpSendRequest[AW]?)\b/i),
  kw('ADODB.Stream', 'write', /ADODB\.Stream/i),
  kw('SaveToFile', 'write', /\.SaveToFile\b/i),
  kw('binary file write', 'write', /\bOpen\b[^\r\n]*\bFor\s+Binary\b[^\r\n]*\bAs\b/i),
  kw('Scripting.FileSystemObject', 'write', /Scripting\.FileSystemObject/i, false),
  kw('encoded PowerShell', 'obfuscation', /\s-e(nc|ncodedcommand)?\s+["']?[A-Za-z0-9+/]{40,}={0,2}/i),
  kw('base64 blob', 'obfuscation', /["'][A-Za-z0-9+/]{200,}={0,2}["']/),
  kw('StrReverse', 'obfuscation', /\bStrReverse\b/i, false),
  kw('CallByName', 'obfuscation', /\bCallByName\b/i, false),
  kw('CreateObject', 'object', /\bCreateObject\b/i, false),
  kw('GetObject', 'object', /\bGetObject\b/i, false),
  kw('Environ', 'environment', /\bEnviron\$?\s*\(/i, false),
];

/** How many Chr()/ChrW() calls make string building count as obfuscation. */
export const CHR_OBFUSCATION_MIN = 25;

const AUTOEXEC = new RegExp(
  String.raw`\b(?:Sub|Function)\s+(` +
    [
      'AutoExec', 'AutoOpen', 'AutoClose', 'AutoNew', 'AutoExit', 'Auto_Open', 'Auto_Close', 'Auto_Activate', 'Auto_Deactivate',
      'Document_Open', 'Document_Close', 'Document_New', 'Document_BeforeClose', 'Document_ContentControlOnEnter', 'Document_ContentControlOnExit',
      'DocumentOpen', 'DocumentBeforeClose', 'Workbook_Open', 'Workbook_Activate', 'Workbook_Close', 'Workbook_BeforeClose', 'Workbook_Deactivate',
      'Workbook_WindowActivate', 'App_DocumentOpen', 'App_WorkbookOpen', 'App_NewDocument',
      // ActiveX control events that fire without a click when the document opens
      String.raw`\w+_(?:Layout|Painted|Resize|GotFocus|BeforeNavigate2|NavigateComplete2|DocumentComplete|ProgressChange|OnConnecting)`,
    ].join('|') +
    String.raw`)\b`,
  'gi',
);

export interface VbaIndicators {
  /** Procedures that run by themselves (document open/close, ActiveX events). */
  triggers: string[];
  keywords: { keyword: string; kind: KeywordKind; strong: boolean }[];
  urls: string[];
}

/** Scans VBA source text for auto-exec triggers, suspicious keywords and URLs. */
export function vbaIndicators(sources: string[]): VbaIndicators {
  const triggers = new Set<string>();
  const found = new Map<string, { keyword: string; kind: KeywordKind; strong: boolean }>();
  const urls = new Set<string>();
  let chr = 0;
  for (const raw of sources) {
    // Attribute lines are metadata, not code.
    const src = raw.replace(/^Attribute [^\r\n]*$/gim, '');
    for (const m of src.matchAll(AUTOEXEC)) triggers.add(m[1]);
    for (const k of KEYWORDS) if (k.re.test(src)) found.set(k.keyword, { keyword: k.keyword, kind: k.kind, strong: k.strong });
    chr += (src.match(/\bChr[BW]?\$?\s*\(/gi) ?? []).length;
    for (const m of src.matchAll(/\b(?:https?|ftp):\/\/[^\s"'<>)]{3,2000}/gi)) {
      if (urls.size >= 50) break;
      urls.add(m[0]);
    }
  }
  if (chr >= CHR_OBFUSCATION_MIN) found.set('Chr', { keyword: `Chr (${chr} calls)`, kind: 'obfuscation', strong: true });
  return { triggers: [...triggers], keywords: [...found.values()], urls: [...urls] };
}

/**
 * Findings for VBA projects:
 * - VBA_MACROS whenever a project is present (with its modules);
 * - VBA_AUTOEXEC for procedures that run on open/close;
 * - VBA_SUSPICIOUS_CALL for keywords (weak-only keywords score 50 instead of the catalogue's);
 * - VBA_AUTOEXEC_SUSPICIOUS when an auto-exec trigger meets a strong keyword;
 * - VBA_DOWNLOAD_EXECUTE when an auto-exec project both downloads and executes.
 */
export function vbaFindings(projects: VbaProject[], where?: string): Finding[] {
  if (projects.length === 0) return [];
  const modules = projects.flatMap((p) => p.modules);
  const errors = projects.flatMap((p) => p.errors);
  const at = where ? { part: where } : {};
  const findings: Finding[] = [
    {
      heuristic: 'VBA_MACROS',
      details: `VBA project with ${modules.length} module${modules.length === 1 ? '' : 's'}${modules.length ? `: ${modules.slice(0, 10).map((m) => m.name).join(', ')}` : ''}`,
      data: { ...at, modules: modules.slice(0, 100).map((m) => ({ name: m.name, bytes: m.source.length, ...(m.error ? { error: m.error } : {}) })), ...(errors.length ? { errors: errors.slice(0, 20) } : {}) },
    },
  ];
  const ind = vbaIndicators(modules.map((m) => m.source));
  if (ind.triggers.length > 0) {
    findings.push({ heuristic: 'VBA_AUTOEXEC', details: `runs on its own: ${ind.triggers.slice(0, 10).join(', ')}`, data: { ...at, triggers: ind.triggers } });
  }
  const strong = ind.keywords.filter((k) => k.strong);
  if (ind.keywords.length > 0) {
    findings.push({
      heuristic: 'VBA_SUSPICIOUS_CALL',
      details: `${strong.length ? 'suspicious' : 'notable (weak)'} calls: ${ind.keywords.map((k) => k.keyword).join(', ')}`,
      data: { ...at, keywords: ind.keywords.map((k) => k.keyword), kinds: [...new Set(ind.keywords.map((k) => k.kind))], ...(ind.urls.length ? { urls: ind.urls } : {}) },
      ...(strong.length === 0 ? { score: 50 } : {}),
    });
  }
  if (ind.triggers.length > 0 && strong.length > 0) {
    findings.push({
      heuristic: 'VBA_AUTOEXEC_SUSPICIOUS',
      details: `${ind.triggers[0]} runs code that uses ${strong.map((k) => k.keyword).join(', ')}`,
      data: { ...at, triggers: ind.triggers, keywords: strong.map((k) => k.keyword) },
    });
    const kinds = new Set(strong.map((k) => k.kind));
    if (kinds.has('download') && kinds.has('execute')) {
      findings.push({
        heuristic: 'VBA_DOWNLOAD_EXECUTE',
        details: `${ind.triggers[0]} downloads (${strong.filter((k) => k.kind === 'download').map((k) => k.keyword).join(', ')}) and executes (${strong.filter((k) => k.kind === 'execute').map((k) => k.keyword).join(', ')})`,
        data: { ...at, triggers: ind.triggers, keywords: strong.map((k) => k.keyword), ...(ind.urls.length ? { urls: ind.urls } : {}) },
      });
    }
  }
  return findings;
}
