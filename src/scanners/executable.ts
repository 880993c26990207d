/**
 * Executables: Windows PE, ELF and Mach-O (thin and universal), read by a bounds-checked
 * parser of our own. Nothing here runs the sample; the only subprocess is `upx -d`, and only
 * when a `upx` binary is on the PATH.
 *
 * What is reported (`attributes.executable` holds the facts; findings only the anomalies):
 * - PE: machine, 32/64-bit, subsystem, DLL, .NET, build time, sections with entropy, entry
 *   point section, imports (named and by ordinal, delay-loaded too), exports, resources
 *   (version strings, manifest execution level), Authenticode presence (never verified:
 *   `signed: 'unverified'`, and a signature never lowers a score), PDB path, overlay.
 * - ELF: class, byte order, type, machine, interpreter, needed libraries, segments and
 *   executable sections with entropy, stripped, statically linked, executable stack.
 * - Mach-O: cpu, file type, load commands, dylibs, segments, code signature, encryption.
 *
 * Findings (category `executable`): a known packer (`EXEC_PACKED`; its usual side effects —
 * writable code, odd entry point, tiny import table — are folded into it, not counted again),
 * packed or encrypted code that could not be unpacked (`EXEC_CODE_UNEXAMINED`, partial),
 * high-entropy code, entry point anomalies, writable+executable memory, import combinations
 * (injection, download+execute, keyboard capture, anti-debugging, encryption+file walking,
 * a near-empty import table), a build time in the future, a system program's name on a
 * non-Microsoft file, an overlay (installer/SFX payload: 0 points, another scanner unpacks
 * archives), embedded executables (emitted as `embedded_object` children) and damage.
 * Single imports never score: ordinary programs call CreateProcess and ShellExecute.
 *
 * @example
 * const r = await runScanner(executableScanner, fs.readFileSync('/usr/bin/true'));
 * (r.attributes.executable as { format: string }).format // 'elf'
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { detectType } from './file-type.ts';
import { findTool, startTool } from './subprocess.ts';
import { MIN_BOMB_BYTES, baseName } from './archive-common.ts';
import type { ChildRefusal, Finding, SampleInfo, ScanContext, Scanner } from './types.ts';
import type { HeuristicId } from '../verdict/heuristics.ts';

export interface ExecutableState {
  /** Absolute path of a `upx` binary, when one is installed. */
  upx?: string;
}

const TYPES = new Set(['pe', 'elf', 'macho']);
const PAGE = 64 * 1024;
const MAX_PAGES = 128;
/** Bytes read for entropy per file; beyond it sections are measured on their first bytes. */
const ENTROPY_BUDGET = 128 * 1024 ** 2;
const ENTROPY_CHUNK = 1024 * 1024;
/** Entropy (bits per byte) from which code counts as compressed or encrypted. */
export const HIGH_ENTROPY = 7.2;
const MIN_ENTROPY_BYTES = 4096;
const MAX_SECTIONS = 256;
const MAX_LISTED = 32;
const MAX_DLLS = 1024;
const MAX_FUNCTIONS = 20_000;
const MAX_RESOURCES = 5_000;
/** How much of an overlay is searched for an embedded executable. */
const OVERLAY_SEARCH_BYTES = 16 * 1024 ** 2;
const MAX_EMBEDDED = 4;
const UPX_TIMEOUT_MS = 30_000;
const TOOL_OUTPUT_BYTES = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Bounds-checked reading

/** A structure runs past the end of the file (or an offset is absurd). */
class Truncated extends Error {
  override name = 'Truncated';
}
/** A structure is inconsistent in a way that stops its parsing. */
class Malformed extends Error {
  override name = 'Malformed';
}
/** The deadline passed or the scan was cancelled. */
class OutOfTime extends Error {
  override name = 'OutOfTime';
}

/** Random access to the sample; every read is checked, small reads share cached 64 KiB pages. */
class ByteView {
  private pages = new Map<number, Buffer>();
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  /** Exactly `len` bytes at `off`, or `Truncated`. */
  bytes(off: number, len: number): Buffer {
    if (!this.has(off, len)) throw new Truncated(`${len} bytes at offset ${off} lie beyond the end of the file (${this.size} bytes)`);
    if (len === 0) return Buffer.alloc(0);
    const first = Math.floor(off / PAGE);
    const last = Math.floor((off + len - 1) / PAGE);
    if (last - first > 3) return this.read(off, len);
    const start = off - first * PAGE;
    if (first === last) return this.page(first).subarray(start, start + len);
    const parts: Buffer[] = [];
    for (let i = first; i <= last; i++) parts.push(this.page(i));
    return Buffer.concat(parts).subarray(start, start + len);
  }

  has(off: number, len: number): boolean {
    return Number.isSafeInteger(off) && Number.isSafeInteger(len) && off >= 0 && len >= 0 && off + len <= this.size;
  }

  /** Up to `len` bytes at `off` (fewer at the end of the file, none outside it). */
  upTo(off: number, len: number): Buffer {
    if (!Number.isSafeInteger(off) || off < 0 || off >= this.size || len <= 0) return Buffer.alloc(0);
    return this.bytes(off, Math.min(len, this.size - off));
  }

  u8(off: number): number {
    return this.bytes(off, 1)[0];
  }
  u16(off: number, le = true): number {
    const b = this.bytes(off, 2);
    return le ? b.readUInt16LE(0) : b.readUInt16BE(0);
  }
  u32(off: number, le = true): number {
    const b = this.bytes(off, 4);
    return le ? b.readUInt32LE(0) : b.readUInt32BE(0);
  }
  /** Values above 2^53 come back approximate, which every bounds check then refuses. */
  u64(off: number, le = true): number {
    const b = this.bytes(off, 8);
    return Number(le ? b.readBigUInt64LE(0) : b.readBigUInt64BE(0));
  }
  /** A NUL-terminated string of at most `max` bytes, made printable. */
  cstr(off: number, max = 256): string {
    const b = this.upTo(off, max);
    const z = b.indexOf(0);
    return printable((z >= 0 ? b.subarray(0, z) : b).toString('latin1'));
  }

  private page(i: number): Buffer {
    let p = this.pages.get(i);
    if (!p) {
      if (this.pages.size >= MAX_PAGES) this.pages.clear();
      p = this.read(i * PAGE, Math.min(PAGE, this.size - i * PAGE));
      this.pages.set(i, p);
    }
    return p;
  }

  private read(off: number, len: number): Buffer {
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = fs.readSync(this.fd, buf, got, len - got, off + got);
      if (n === 0) throw new Truncated('the file ended early');
      got += n;
    }
    return buf;
  }
}

function printable(s: string, max = 200): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const round2 = (n: number | undefined) => (n === undefined ? undefined : Math.round(n * 100) / 100);
const yieldTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Shannon entropy in bits per byte. */
export function entropy(hist: ArrayLike<number>, total: number): number {
  if (total <= 0) return 0;
  let h = 0;
  for (let i = 0; i < 256; i++) {
    const c = hist[i];
    if (c > 0) {
      const p = c / total;
      h -= p * Math.log2(p);
    }
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// One analysis

interface Slice {
  name: string;
  start: number;
  length: number;
  meta: Record<string, unknown>;
}

interface Packer {
  name: string;
  /** Why: section names, a marker, entropy. */
  evidence: string;
}

/** The state of one scan: findings (one per heuristic), damage notes, children to emit. */
class Job {
  readonly findings = new Map<HeuristicId, Finding>();
  readonly problems: string[] = [];
  readonly slices: Slice[] = [];
  readonly attrs: Record<string, unknown> = {};
  packer?: Packer;
  /** The code cannot be read as it will run (packed or encrypted) and was not unpacked. */
  hiddenCode?: string;
  entropyLeft = ENTROPY_BUDGET;
  entropySampled = false;

  constructor(
    readonly view: ByteView,
    readonly ctx: ScanContext,
    readonly info: SampleInfo,
    readonly deadline: number,
  ) {}

  flag(heuristic: HeuristicId, details: string, data: Record<string, unknown> = {}): void {
    if (!this.findings.has(heuristic)) this.findings.set(heuristic, { heuristic, details, data });
  }

  problem(message: string): void {
    if (this.problems.length < 20 && !this.problems.includes(message)) this.problems.push(message);
  }

  /** Runs one part of the parse; damage there is noted and the rest goes on. */
  attempt<T>(part: string, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (err instanceof Truncated || err instanceof Malformed) {
        this.problem(`${part}: ${err.message}`);
        return undefined;
      }
      throw err;
    }
  }

  check(): void {
    if (this.ctx.signal.aborted) throw new OutOfTime('the scan was cancelled');
    if (Date.now() > this.deadline) throw new OutOfTime('the time limit was reached');
  }

  /** Entropy of a file range (its first bytes once the per-file budget is spent). */
  async entropyOf(start: number, length: number): Promise<number | undefined> {
    const end = Math.min(this.view.size, start + length);
    if (!Number.isSafeInteger(start) || start < 0 || end - start <= 0) return undefined;
    const n = Math.min(end - start, this.entropyLeft);
    if (n < end - start) this.entropySampled = true;
    if (n <= 0) return undefined;
    this.entropyLeft -= n;
    const hist = new Float64Array(256);
    for (let off = start; off < start + n; off += ENTROPY_CHUNK) {
      this.check();
      const b = this.view.bytes(off, Math.min(ENTROPY_CHUNK, start + n - off));
      for (let i = 0; i < b.length; i++) hist[b[i]]++;
      if ((off - start) % (8 * ENTROPY_CHUNK) === 0) await yieldTurn();
    }
    return entropy(hist, n);
  }

  result(): { evidence: Finding[]; attributes: Record<string, unknown> } {
    if (this.problems.length > 0) {
      this.flag('EXEC_MALFORMED', this.problems[0], { problems: this.problems });
    }
    if (this.entropySampled) this.attrs.entropySampled = true;
    return { evidence: [...this.findings.values()], attributes: { executable: this.attrs } };
  }
}

/** True when `off` starts an MZ header whose e_lfanew leads to a PE signature. */
function isPeAt(v: ByteView, off: number, limit = v.size): boolean {
  if (!v.has(off, 0x40) || v.upTo(off, 2).toString('latin1') !== 'MZ') return false;
  const lfanew = v.u32(off + 0x3c);
  return lfanew >= 4 && lfanew < 0x10000 && off + lfanew + 4 <= limit && v.upTo(off + lfanew, 4).toString('latin1') === 'PE\0\0';
}

const UPX_MARK = Buffer.from('UPX!');

/** UPX writes `UPX!` into the headers it builds and at the end of ELF/Mach-O files. */
function upxMarker(v: ByteView, headEnd: number, base = 0, end = v.size): boolean {
  if (v.upTo(base, Math.min(headEnd, 4096)).includes(UPX_MARK)) return true;
  return end - base > 4096 && v.upTo(end - 64, 64).includes(UPX_MARK);
}

// ---------------------------------------------------------------------------------------------
// PE

const PE_MACHINES: Record<number, string> = {
  0x14c: 'x86', 0x8664: 'x86-64', 0x1c0: 'arm', 0x1c2: 'thumb', 0x1c4: 'arm-thumb2', 0xaa64: 'arm64', 0xa641: 'arm64ec',
  0x200: 'ia64', 0xebc: 'efi-bytecode', 0x5032: 'riscv32', 0x5064: 'riscv64', 0x6264: 'loongarch64', 0x166: 'mips', 0x1f0: 'powerpc',
};
const SUBSYSTEMS: Record<number, string> = {
  1: 'native', 2: 'windows-gui', 3: 'windows-console', 5: 'os2-console', 7: 'posix-console', 9: 'windows-ce-gui',
  10: 'efi-application', 11: 'efi-boot-service-driver', 12: 'efi-runtime-driver', 13: 'efi-rom', 14: 'xbox', 16: 'windows-boot-application',
};
const RESOURCE_TYPES: Record<number, string> = {
  1: 'cursor', 2: 'bitmap', 3: 'icon', 4: 'menu', 5: 'dialog', 6: 'string', 7: 'fontdir', 8: 'font', 9: 'accelerator', 10: 'rcdata',
  11: 'messagetable', 12: 'group_cursor', 14: 'group_icon', 16: 'version', 17: 'dlginclude', 19: 'plugplay', 20: 'vxd', 21: 'anicursor',
  22: 'anifont', 23: 'html', 24: 'manifest',
};
const PACKER_SECTIONS: [RegExp, string][] = [
  [/^UPX[0-9!]$/, 'UPX'], [/^\.aspack$/i, 'ASPack'], [/^\.MPRESS[12]$/, 'MPRESS'], [/^\.petite$/, 'Petite'], [/^\.themida$/i, 'Themida'],
  [/^\.winlice$/i, 'WinLicense'], [/^\.vmp[0-9]$/, 'VMProtect'], [/^(PEC2|PEC2TO|PECompact2|pec[12])$/, 'PECompact'], [/^\.nsp[0-2]$/, 'NsPack'],
  [/^\.enigma[12]$/, 'Enigma Protector'], [/^\.RLPack$/, 'RLPack'], [/^\.packed$/, 'RLPack'], [/^kkrunchy$/, 'kkrunchy'], [/^\.yP$/, "yoda's Protector"],
  [/^\.y0da$/, "yoda's Crypter"], [/^\.perplex$/, 'Perplex'], [/^\.MaskPE$/, 'MaskPE'], [/^\.spack$/, 'Simple Pack'], [/^\.(WWPACK|WWP32)$/i, 'WWPack'],
  [/^\.neolit$/, 'NeoLite'], [/^\.shrink[1-3]$/, 'Shrinker'], [/^\.svkp$/, 'SVKP'], [/^\.sforce3$/, 'StarForce'], [/^\.ccg$/, 'CCG'],
  [/^\.boom$/, 'Boomerang'], [/^\.taz$/, 'PESpin'], [/^\.mew$/i, 'MEW'], [/^MEW$/, 'MEW'], [/^\.pelock$/i, 'PELock'],
];

// Import groups. Each matches exact Win32/NT names; A/W and Ex variants are spelled out.
const IMPORTS = {
  alloc: /^(VirtualAllocEx(Numa)?|VirtualAlloc2|NtAllocateVirtualMemory|ZwAllocateVirtualMemory|NtMapViewOfSection|ZwMapViewOfSection|MapViewOfFile2)$/,
  write: /^(WriteProcessMemory|NtWriteVirtualMemory|ZwWriteVirtualMemory)$/,
  run: /^(CreateRemoteThread(Ex)?|NtCreateThreadEx|ZwCreateThreadEx|RtlCreateUserThread|QueueUserAPC2?|NtQueueApcThread(Ex)?|SetThreadContext|Wow64SetThreadContext|NtSetContextThread)$/,
  hollow: /^(NtUnmapViewOfSection|ZwUnmapViewOfSection)$/,
  download: /^(URLDownloadToFile[AW]|URLDownloadToCacheFile[AW]|URLOpenBlockingStream[AW]|InternetOpenUrl[AW]|InternetReadFile(Ex[AW])?|HttpSendRequest(Ex)?[AW]|WinHttpOpen|WinHttpSendRequest|WinHttpReadData)$/,
  execute: /^(ShellExecute(Ex)?[AW]|WinExec|CreateProcess[AW]|CreateProcessAsUser[AW]|CreateProcessWithLogonW|CreateProcessWithTokenW)$/,
  hook: /^SetWindowsHookEx[AW]$/,
  keys: /^(GetAsyncKeyState|GetKeyboardState)$/,
  antiDebug: /^(CheckRemoteDebuggerPresent|NtSetInformationThread|ZwSetInformationThread)$/,
  encrypt: /^(CryptEncrypt|BCryptEncrypt)$/,
  walk: /^(FindFirstFile(Ex)?[AW]|FindNextFile[AW])$/,
  resolve: /^(GetProcAddress|LdrGetProcedureAddress)$/,
  load: /^(LoadLibrary(Ex)?[AW]|LdrLoadDll|GetModuleHandle(Ex)?[AW])$/,
} as const;
type ImportGroup = keyof typeof IMPORTS;

/** Windows programs that malware names itself after. */
const SYSTEM_NAMES = new Set([
  'svchost.exe', 'lsass.exe', 'csrss.exe', 'smss.exe', 'winlogon.exe', 'services.exe', 'explorer.exe', 'spoolsv.exe', 'wininit.exe',
  'taskhost.exe', 'taskhostw.exe', 'dllhost.exe', 'conhost.exe', 'rundll32.exe', 'regsvr32.exe', 'ctfmon.exe', 'dwm.exe', 'lsm.exe',
  'searchindexer.exe', 'wuauclt.exe', 'userinit.exe', 'sihost.exe', 'runtimebroker.exe', 'msiexec.exe', 'mshta.exe', 'cmd.exe', 'powershell.exe',
]);
const VERSION_KEYS = ['CompanyName', 'FileDescription', 'FileVersion', 'InternalName', 'LegalCopyright', 'OriginalFilename', 'ProductName', 'ProductVersion'];
const NSIS_MARK = Buffer.from([0xef, 0xbe, 0xad, 0xde, ...Buffer.from('NullsoftInst')]);
/** Overlay formats that make an installer or self-extracting archive (extracted elsewhere). */
const PAYLOAD_TYPES = new Set(['zip', '7z', 'rar', 'cab', 'gzip', 'bzip2', 'xz', 'zstd', 'ole', 'tar', 'pdf']);

interface PeSection {
  name: string;
  va: number;
  vsize: number;
  rawPtr: number;
  rawSize: number;
  flags: number;
  entropy?: number;
}

const SCN_CODE = 0x20;
const SCN_EXECUTE = 0x20000000;
const SCN_READ = 0x40000000;
const SCN_WRITE = 0x80000000;
const isExec = (s: PeSection) => (s.flags & SCN_EXECUTE) !== 0 || (s.flags & SCN_CODE) !== 0;
const isWrite = (s: PeSection) => (s.flags & SCN_WRITE) !== 0;
const perms = (r: boolean, w: boolean, x: boolean) => `${r ? 'r' : '-'}${w ? 'w' : '-'}${x ? 'x' : '-'}`;

interface Imports {
  libraries: string[];
  functions: Set<string>;
  count: number;
  byOrdinal: number;
  delayLoaded: number;
}

async function analysePe(job: Job): Promise<void> {
  const v = job.view;
  const a = job.attrs;
  a.format = 'pe';
  if (v.size < 0x40) {
    a.format = 'mz';
    job.problem('the DOS header is truncated');
    return;
  }
  const lfanew = v.u32(0x3c);
  const sig = v.upTo(lfanew, 4).toString('latin1');
  if (sig.startsWith('NE') || sig.startsWith('LE') || sig.startsWith('LX')) {
    a.format = sig.slice(0, 2).toLowerCase(); // 16-bit Windows or OS/2 / VxD: headers not analysed
    return;
  }
  if (sig !== 'PE\0\0') {
    a.format = 'mz';
    job.problem(lfanew + 4 > v.size ? 'the PE header offset points past the end of the file' : 'no PE signature (a DOS program or a damaged file)');
    return;
  }
  const coff = lfanew + 4;
  if (!v.has(coff, 20)) {
    job.problem('the COFF header is truncated');
    return;
  }
  const machine = v.u16(coff);
  const nsec = v.u16(coff + 2);
  const timestamp = v.u32(coff + 4);
  const symPtr = v.u32(coff + 8);
  const nsym = v.u32(coff + 12);
  const optSize = v.u16(coff + 16);
  const chars = v.u16(coff + 18);
  const opt = coff + 20;
  const magic = optSize >= 2 && v.has(opt, 2) ? v.u16(opt) : 0;
  const pe64 = magic === 0x20b;
  a.machine = PE_MACHINES[machine] ?? hex(machine);
  a.bits = pe64 ? 64 : magic === 0x10b ? 32 : undefined;
  a.dll = (chars & 0x2000) !== 0;
  if (magic !== 0x10b && magic !== 0x20b) job.problem(`unknown optional header magic ${hex(magic)}`);

  // Optional header (fields the Windows loader needs; missing ones leave gaps, not a stop).
  const fixed = pe64 ? 112 : 96;
  let ep = 0;
  let imageBase = 0;
  let fileAlign = 0x200;
  let sizeOfHeaders = 0;
  let subsystem = 0;
  const dirs: { rva: number; size: number }[] = [];
  if ((magic === 0x10b || magic === 0x20b) && optSize >= fixed && v.has(opt, fixed)) {
    ep = v.u32(opt + 16);
    imageBase = pe64 ? v.u64(opt + 24) : v.u32(opt + 28);
    fileAlign = v.u32(opt + 36);
    sizeOfHeaders = v.u32(opt + 60);
    subsystem = v.u16(opt + 68);
    const dllChars = v.u16(opt + 70);
    const ndirs = Math.min(v.u32(opt + fixed - 4), 16, Math.floor((optSize - fixed) / 8));
    for (let i = 0; i < ndirs; i++) {
      const d = opt + fixed + i * 8;
      dirs.push(v.has(d, 8) ? { rva: v.u32(d), size: v.u32(d + 4) } : { rva: 0, size: 0 });
    }
    a.subsystem = SUBSYSTEMS[subsystem] ?? subsystem;
    a.entryPoint = hex(ep);
    a.imageBase = hex(imageBase);
    a.mitigations = [
      ...(dllChars & 0x40 ? ['aslr'] : []), ...(dllChars & 0x20 ? ['high-entropy-va'] : []), ...(dllChars & 0x100 ? ['nx'] : []),
      ...(dllChars & 0x4000 ? ['cfg'] : []), ...(dllChars & 0x400 ? ['no-seh'] : []),
    ];
  } else if (magic === 0x10b || magic === 0x20b) {
    job.problem('the optional header is truncated');
  }
  const dir = (i: number) => (dirs[i] && dirs[i].size > 0 && dirs[i].rva > 0 ? dirs[i] : undefined);
  a.dotnet = dir(14) !== undefined;
  a.timestamp = timestamp === 0 ? null : new Date(timestamp * 1000).toISOString();

  // Sections
  const sections: PeSection[] = [];
  const table = opt + optSize;
  if (nsec > MAX_SECTIONS) job.problem(`${nsec} sections (only the first ${MAX_SECTIONS} analysed)`);
  job.attempt('section table', () => {
    for (let i = 0; i < Math.min(nsec, MAX_SECTIONS); i++) {
      const s = table + i * 40;
      let name = v.bytes(s, 8).toString('latin1').replace(/\0.*$/s, '');
      if (/^\/\d+$/.test(name) && symPtr > 0) {
        // A long name (object files, MinGW debug sections) lives in the COFF string table.
        const strtab = symPtr + nsym * 18;
        name = v.cstr(strtab + Number(name.slice(1)), 64) || name;
      }
      sections.push({ name: printable(name, 64), vsize: v.u32(s + 8), va: v.u32(s + 12), rawSize: v.u32(s + 16), rawPtr: v.u32(s + 20), flags: v.u32(s + 36) });
    }
  });
  if (nsec === 0) job.problem('no sections');
  const rawStart = (s: PeSection) => (fileAlign >= 0x200 ? s.rawPtr - (s.rawPtr % 0x200) : s.rawPtr);
  for (const s of sections) {
    if (s.rawSize > 0 && rawStart(s) + s.rawSize > v.size) job.problem(`section ${s.name} extends past the end of the file`);
  }
  const inSection = (rva: number, s: PeSection) => rva >= s.va && rva < s.va + Math.max(s.vsize, s.rawSize);
  /** File offset of `len` bytes at an RVA, or undefined when they are not in the file. */
  const rvaToOff = (rva: number, len = 1): number | undefined => {
    const s = sections.find((x) => inSection(rva, x));
    if (!s) return rva + len <= Math.max(sizeOfHeaders, 0x200) && rva + len <= v.size ? rva : undefined;
    const delta = rva - s.va;
    if (delta + len > s.rawSize) return undefined;
    const off = rawStart(s) + delta;
    return off + len <= v.size ? off : undefined;
  };
  const at = (rva: number, len: number, what: string): number => {
    const off = rvaToOff(rva, len);
    if (off === undefined) throw new Truncated(`${what} at RVA ${hex(rva)} is not in the file`);
    return off;
  };

  for (const s of sections) {
    if (s.rawSize > 0) s.entropy = await job.entropyOf(rawStart(s), Math.min(s.rawSize, Math.max(0, v.size - rawStart(s))));
  }
  a.sections = sections.slice(0, MAX_LISTED).map((s) => ({
    name: s.name, virtualSize: s.vsize, rawSize: s.rawSize, perms: perms((s.flags & SCN_READ) !== 0, isWrite(s), isExec(s)), entropy: round2(s.entropy),
  }));
  if (sections.length > MAX_LISTED) a.sectionCount = sections.length;
  const epSection = ep !== 0 ? sections.find((s) => inSection(ep, s)) : undefined;
  if (epSection) a.entryPointSection = epSection.name;

  // Imports, delay-loaded imports, exports
  const imports: Imports = { libraries: [], functions: new Set(), count: 0, byOrdinal: 0, delayLoaded: 0 };
  const thunks = (rva: number, delayed: boolean) => {
    const size = pe64 ? 8 : 4;
    for (let i = 0; imports.count < MAX_FUNCTIONS; i++) {
      const off = at(rva + i * size, size, 'an import thunk');
      const lo = v.u32(off);
      const hi = pe64 ? v.u32(off + 4) : 0;
      if (lo === 0 && hi === 0) return;
      imports.count++;
      if (delayed) imports.delayLoaded++;
      if ((pe64 ? hi : lo) & 0x80000000) {
        imports.byOrdinal++;
        imports.functions.add(`#${lo & 0xffff}`);
      } else {
        imports.functions.add(v.cstr(at(lo & 0x7fffffff, 2, 'an import name') + 2, 256));
      }
      if (i % 512 === 511) job.check();
    }
  };
  const importDir = dir(1);
  const problemsBefore = job.problems.length;
  if (importDir) {
    job.attempt('import directory', () => {
      for (let i = 0; i < MAX_DLLS; i++) {
        const d = at(importDir.rva + i * 20, 20, 'an import descriptor');
        const [ilt, , , name, iat] = [0, 4, 8, 12, 16].map((o) => v.u32(d + o));
        if (ilt === 0 && name === 0 && iat === 0) break;
        if (name === 0) continue;
        imports.libraries.push(v.cstr(at(name, 1, 'a DLL name'), 256));
        job.attempt('imports', () => thunks(ilt || iat, false));
      }
    });
  }
  const delayDir = dir(13);
  if (delayDir) {
    job.attempt('delay-load directory', () => {
      for (let i = 0; i < MAX_DLLS; i++) {
        const d = at(delayDir.rva + i * 32, 32, 'a delay-load descriptor');
        const attrs = v.u32(d);
        // Attribute bit 0 clear: old linkers wrote virtual addresses instead of RVAs.
        const fix = (x: number) => (attrs & 1 || x === 0 ? x : x - imageBase);
        const name = fix(v.u32(d + 4));
        const int = fix(v.u32(d + 16));
        if (name === 0 && int === 0) break;
        if (name > 0) imports.libraries.push(v.cstr(at(name, 1, 'a DLL name'), 256));
        if (int > 0) job.attempt('delay-loaded imports', () => thunks(int, true));
      }
    });
  }
  const importsRead = job.problems.length === problemsBefore;
  const fn = imports.functions;
  const group = (g: ImportGroup) => [...fn].filter((f) => IMPORTS[g].test(f));
  const notable: Partial<Record<ImportGroup, string[]>> = {};
  for (const g of Object.keys(IMPORTS) as ImportGroup[]) {
    if (g === 'walk' || g === 'resolve' || g === 'load') continue; // everyday imports: listed only in findings
    const hits = group(g);
    if (hits.length > 0) notable[g] = hits.slice(0, 16);
  }
  a.imports = {
    libraries: imports.libraries.length,
    functions: imports.count,
    ...(imports.byOrdinal ? { byOrdinal: imports.byOrdinal } : {}),
    ...(imports.delayLoaded ? { delayLoaded: imports.delayLoaded } : {}),
    names: [...new Set(imports.libraries.map((l) => l.toLowerCase()))].slice(0, 64),
    ...(Object.keys(notable).length ? { notable } : {}),
  };
  const exportDir = dir(0);
  if (exportDir) {
    job.attempt('export directory', () => {
      const e = at(exportDir.rva, 40, 'the export directory');
      const nameRva = v.u32(e + 12);
      const nameOff = nameRva ? rvaToOff(nameRva) : undefined;
      a.exports = { ...(nameOff !== undefined ? { name: v.cstr(nameOff, 256) } : {}), functions: v.u32(e + 20), names: v.u32(e + 24) };
    });
  }

  // Resources: count by type, version strings, manifest, executables inside
  const rsrc = dir(2);
  let version: Record<string, string> = {};
  if (rsrc) {
    job.attempt('resources', () => {
      const leaves = walkResources(v, at(rsrc.rva, 16, 'the resource directory'), rvaToOff);
      const types: Record<string, number> = {};
      let embedded = 0;
      for (const leaf of leaves) {
        types[leaf.type] = (types[leaf.type] ?? 0) + 1;
        if (leaf.off === undefined) {
          job.problem(`a ${leaf.type} resource points outside the file`);
          continue;
        }
        if (leaf.type === 'version' && Object.keys(version).length === 0) {
          version = parseVersionInfo(v.upTo(leaf.off, Math.min(leaf.size, 64 * 1024)));
        } else if (leaf.type === 'manifest') {
          const level = /requestedExecutionLevel[^>]*\blevel\s*=\s*["']([A-Za-z]+)/.exec(v.upTo(leaf.off, Math.min(leaf.size, 64 * 1024)).toString('utf8'));
          if (level) a.requestedExecutionLevel = level[1];
        } else if (embedded < MAX_EMBEDDED && isPeAt(v, leaf.off, leaf.off + leaf.size)) {
          embedded++;
          job.slices.push({ name: `resource-${leaf.type}-${embedded}.exe`, start: leaf.off, length: leaf.size, meta: { where: 'resource', type: leaf.type } });
        }
      }
      a.resources = { count: leaves.length, types };
    });
  }
  if (Object.keys(version).length > 0) a.version = version;

  // Debug directory: reproducible builds (hash timestamps) and the PDB path.
  let reproducible = false;
  const debugDir = dir(6);
  if (debugDir) {
    job.attempt('debug directory', () => {
      for (let i = 0; i < Math.min(Math.floor(debugDir.size / 28), 32); i++) {
        const e = at(debugDir.rva + i * 28, 28, 'a debug entry');
        const type = v.u32(e + 12);
        const raw = v.u32(e + 24);
        if (type === 16) reproducible = true;
        if (type === 2 && raw > 0 && v.upTo(raw, 4).toString('latin1') === 'RSDS') a.pdb = v.cstr(raw + 24, 260);
      }
    });
  }
  if (dir(9)) a.tls = true;

  // Authenticode: the security directory holds a file offset, not an RVA.
  const sec = dirs[4] && dirs[4].size > 0 ? dirs[4] : undefined;
  a.signed = false;
  if (sec) {
    if (!v.has(sec.rva, sec.size) || sec.size < 8) job.problem('the certificate table lies outside the file');
    else {
      a.signed = 'unverified';
      const type = v.u16(sec.rva + 6);
      if (type !== 2) a.signatureType = type;
    }
  }

  // Overlay: bytes after the last section, the certificate table excepted.
  let imageEnd = Math.min(v.size, sizeOfHeaders);
  for (const s of sections) if (s.rawSize > 0) imageEnd = Math.max(imageEnd, Math.min(v.size, rawStart(s) + s.rawSize));
  let overlayEnd = v.size;
  if (sec && a.signed) {
    if (sec.rva >= imageEnd) overlayEnd = sec.rva;
    const after = v.size - (sec.rva + sec.size);
    // The table is padded to 8 bytes; more than that is data hidden behind the signature.
    if (after > 8 && v.upTo(sec.rva + sec.size, 4096).some((b) => b !== 0)) job.problem(`${after} bytes of data follow the signature`);
  }
  if (overlayEnd > imageEnd) await overlay(job, imageEnd, overlayEnd);

  judgePe(job, { sections, ep, epSection, sizeOfHeaders, subsystem, imports, importsRead, timestamp, reproducible, version, pe64 });
}

interface ResourceLeaf {
  type: string;
  size: number;
  off?: number;
}

/** The leaves of the resource tree (type / name / language), bounded and cycle-safe. */
function walkResources(v: ByteView, root: number, rvaToOff: (rva: number, len?: number) => number | undefined): ResourceLeaf[] {
  const leaves: ResourceLeaf[] = [];
  const seen = new Set<number>();
  let visits = 0; // entries read, all directories together: crafted trees can point back at themselves
  const walk = (rel: number, level: number, type: string) => {
    if (level > 3 || seen.has(rel) || seen.size > MAX_RESOURCES) return;
    seen.add(rel);
    const d = root + rel;
    const n = Math.min(v.u16(d + 12) + v.u16(d + 14), MAX_RESOURCES);
    for (let i = 0; i < n && leaves.length < MAX_RESOURCES && visits++ < 4 * MAX_RESOURCES; i++) {
      const e = d + 16 + i * 8;
      const id = v.u32(e);
      const target = v.u32(e + 4);
      let t = type;
      if (level === 0) {
        if (id & 0x80000000) {
          const s = root + (id & 0x7fffffff);
          t = printable(v.upTo(s + 2, Math.min(v.u16(s), 64) * 2).toString('utf16le'), 64);
        } else t = RESOURCE_TYPES[id] ?? String(id);
      }
      if (target & 0x80000000) walk(target & 0x7fffffff, level + 1, t);
      else {
        const rva = v.u32(root + target);
        const size = v.u32(root + target + 4);
        leaves.push({ type: t, size, off: rvaToOff(rva, size) });
      }
    }
  };
  walk(0, 0, '');
  return leaves;
}

/** The StringFileInfo strings of a VS_VERSIONINFO resource (the keys worth showing). */
export function parseVersionInfo(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let blocks = 0;
  const align = (n: number) => (n + 3) & ~3;
  const walk = (start: number, end: number, depth: number): void => {
    let off = start;
    while (off + 6 <= end && blocks++ < 500) {
      const len = buf.readUInt16LE(off);
      if (len < 6 || off + len > end) return;
      const valLen = buf.readUInt16LE(off + 2);
      const type = buf.readUInt16LE(off + 4);
      let k = off + 6;
      let key = '';
      for (; k + 1 < off + len; k += 2) {
        const c = buf.readUInt16LE(k);
        if (c === 0) break;
        key += String.fromCharCode(c);
      }
      const value = align(k + 2);
      if (depth === 3) {
        // String values: UTF-16 up to a NUL (writers disagree on whether valLen counts bytes).
        const text = buf.subarray(Math.min(value, off + len), off + len).toString('utf16le').replace(/\0.*$/s, '').trim();
        if (VERSION_KEYS.includes(key) && text) out[key] = printable(text);
      } else if (depth === 0 || (depth === 1 && key === 'StringFileInfo') || depth === 2) {
        walk(align(value + (depth === 0 ? valLen : type === 1 ? valLen * 2 : valLen)), off + len, depth + 1);
      }
      off = align(off + len);
    }
  };
  if (buf.length >= 6) walk(0, Math.min(buf.length, buf.readUInt16LE(0) || buf.length), 0);
  return out;
}

/** Size, entropy and kind of appended data; executables found in it become children. */
async function overlay(job: Job, start: number, end: number): Promise<void> {
  const v = job.view;
  const size = end - start;
  const head = v.upTo(start, 0x8006);
  const type = detectType(head).type;
  let format: string | undefined = PAYLOAD_TYPES.has(type) ? type : undefined;
  if (!format && v.upTo(start, 64 * 1024).includes(NSIS_MARK)) format = 'nsis';
  const ent = await job.entropyOf(start, size);
  job.attrs.overlay = { offset: start, size, entropy: round2(ent), ...(format ? { format } : {}) };
  // Executables inside: at the start, or further in (first 16 MiB searched).
  const hits: number[] = [];
  const window = v.upTo(start, Math.min(size, OVERLAY_SEARCH_BYTES));
  for (let i = window.indexOf('MZ'); i >= 0 && hits.length < MAX_EMBEDDED; i = window.indexOf('MZ', i + 2)) {
    if (isPeAt(v, start + i, end)) hits.push(start + i);
  }
  hits.forEach((h, i) => {
    const stop = hits[i + 1] ?? end;
    job.slices.push({ name: `overlay-${hex(h - start)}.exe`, start: h, length: stop - h, meta: { where: 'overlay', offset: h } });
  });
  if (format) job.flag('EXEC_OVERLAY', `installer or self-extracting payload: ${format} data (${size} bytes) appended`, { format, size, offset: start });
  else if (hits[0] !== start) job.flag('EXEC_OVERLAY', `${size} bytes appended after the last section`, { size, offset: start, entropy: round2(ent) });
}

interface PeFacts {
  sections: PeSection[];
  ep: number;
  epSection?: PeSection;
  sizeOfHeaders: number;
  subsystem: number;
  imports: Imports;
  /** The import directory was read without damage (or there is none). */
  importsRead: boolean;
  timestamp: number;
  reproducible: boolean;
  version: Record<string, string>;
  pe64: boolean;
}

function judgePe(job: Job, f: PeFacts): void {
  const v = job.view;
  const fn = f.imports.functions;
  const has = (g: ImportGroup) => [...fn].filter((x) => IMPORTS[g].test(x));
  const dotnet = job.attrs.dotnet === true;

  // Known packers, by section name or UPX's marker in the headers.
  const named = f.sections.map((s) => ({ s, packer: PACKER_SECTIONS.find(([re]) => re.test(s.name))?.[1] })).filter((x) => x.packer);
  const firstRaw = Math.min(...f.sections.filter((s) => s.rawSize > 0).map((s) => s.rawPtr), 4096);
  if (named.length > 0) {
    job.packer = { name: named[0].packer!, evidence: `section names ${named.map((x) => x.s.name).join(', ')}` };
  } else if (upxMarker(v, Math.max(firstRaw, 0x200))) {
    job.packer = { name: 'UPX', evidence: 'UPX! marker in the headers' };
  }

  // Signs that also follow from packing: scored alone, folded into EXEC_PACKED otherwise.
  const signs: Record<string, unknown> = {};
  const last = f.sections[f.sections.length - 1];
  if (f.ep !== 0 && f.sections.length > 0) {
    let where: string | undefined;
    if (!f.epSection) where = f.ep < f.sizeOfHeaders ? 'in the headers' : 'outside every section';
    else if (isWrite(f.epSection)) where = `in writable section ${f.epSection.name}`;
    else if (!isExec(f.epSection)) where = `in non-executable section ${f.epSection.name}`;
    else if (f.sections.length > 1 && f.epSection === last) where = `in the last section ${last.name}`;
    if (where) signs.entryPoint = where;
  }
  const wx = f.sections.filter((s) => isWrite(s) && (s.flags & SCN_EXECUTE) !== 0).map((s) => s.name);
  if (wx.length > 0) signs.writableCode = wx;
  const few = f.imports.count <= 10 && f.importsRead;
  // Resources and (compressed) debug sections are legitimately dense.
  const dataOk = (s: PeSection) => s.name !== '.rsrc' && !/^(\.z?debug|\/\d)/.test(s.name);
  const dense = f.sections.filter((s) => (s.entropy ?? 0) >= HIGH_ENTROPY && s.rawSize >= MIN_ENTROPY_BYTES && (isExec(s) || (few && dataOk(s))));
  if (!dotnet && dense.length > 0) signs.highEntropy = dense.map((s) => ({ name: s.name, entropy: round2(s.entropy) }));
  const program = !dotnet && (f.subsystem === 2 || f.subsystem === 3) && f.ep !== 0;
  if (program && few && (f.imports.count === 0 || (has('resolve').length > 0 && has('load').length > 0))) signs.minimalImports = [...fn].slice(0, 10);

  if (job.packer) {
    packed(job, signs);
  } else {
    if (signs.highEntropy) {
      job.flag('EXEC_HIGH_ENTROPY', `compressed or encrypted code: ${dense.map((s) => `${s.name} ${round2(s.entropy)}`).join(', ')}`, { sections: signs.highEntropy, imports: f.imports.count });
      job.hiddenCode = 'high-entropy code was not unpacked';
    }
    if (signs.entryPoint) job.flag('EXEC_ENTRYPOINT_ANOMALY', `entry point ${signs.entryPoint}`, { entryPoint: hex(f.ep), where: signs.entryPoint });
    if (wx.length > 0) job.flag('EXEC_WX_MEMORY', `writable and executable section${wx.length > 1 ? 's' : ''}: ${wx.slice(0, 5).join(', ')}`, { sections: wx.slice(0, 16) });
    if (signs.minimalImports) job.flag('EXEC_DYNAMIC_IMPORTS', f.imports.count === 0 ? 'no imports at all' : `only ${f.imports.count} imports, including ${has('resolve').concat(has('load')).join(', ')}`, { functions: signs.minimalImports });
  }

  // Import combinations: only these score, never one import alone.
  const inject = { alloc: has('alloc'), write: has('write'), run: has('run'), hollow: has('hollow') };
  if (inject.write.length > 0 && (inject.run.length > 0 || inject.hollow.length > 0)) {
    const names = [...inject.alloc, ...inject.write, ...inject.run, ...inject.hollow];
    job.flag('EXEC_INJECTION_IMPORTS', `imports to write into and run code in another process: ${names.join(', ')}`, { functions: names, hollowing: inject.hollow.length > 0 });
  }
  const download = has('download');
  const execute = has('execute');
  if (download.length > 0 && execute.length > 0) {
    job.flag('EXEC_DOWNLOAD_EXECUTE_IMPORTS', `imports to download and run: ${[...download, ...execute].join(', ')}`, { download, execute });
  }
  if (has('hook').length > 0 && has('keys').length > 0) {
    job.flag('EXEC_KEYLOGGER_IMPORTS', `keyboard hook and key state imports: ${[...has('hook'), ...has('keys')].join(', ')}`, { functions: [...has('hook'), ...has('keys')] });
  }
  if (has('antiDebug').length > 0) job.flag('EXEC_ANTIDEBUG_IMPORTS', `anti-debugging imports: ${has('antiDebug').join(', ')}`, { functions: has('antiDebug') });
  if (has('encrypt').length > 0 && has('walk').length > 0) {
    job.flag('EXEC_RANSOM_IMPORTS', `imports to walk folders and encrypt: ${[...has('encrypt'), ...has('walk')].join(', ')}`, { functions: [...has('encrypt'), ...has('walk')] });
  }

  // A build time in the future (reproducible builds write a hash there and say so).
  if (f.timestamp > Date.now() / 1000 + 86_400 && !f.reproducible) {
    job.flag('EXEC_TIMESTAMP_ANOMALY', `build time in the future: ${new Date(f.timestamp * 1000).toISOString()}`, { timestamp: f.timestamp });
  }

  // Named like a Windows system program without coming from Microsoft.
  const own = baseName(job.info.name).toLowerCase();
  const original = (f.version.OriginalFilename ?? '').toLowerCase().replace(/\.mui$/, '');
  const claimed = SYSTEM_NAMES.has(own) ? own : SYSTEM_NAMES.has(original) ? original : undefined;
  if (claimed && !/microsoft/i.test(f.version.CompanyName ?? '')) {
    job.flag('EXEC_MASQUERADE', `named ${claimed}, but ${f.version.CompanyName ? `made by "${f.version.CompanyName}"` : 'without Microsoft version information'}`, {
      claimed, company: f.version.CompanyName ?? null, originalFilename: f.version.OriginalFilename ?? null,
    });
  }
}

function packed(job: Job, signs: Record<string, unknown>): void {
  const p = job.packer!;
  job.flag('EXEC_PACKED', `packed with ${p.name} (${p.evidence})`, { packer: p.name, evidence: p.evidence, ...signs });
  job.attrs.packer = p.name;
  job.hiddenCode = `packed with ${p.name}`;
}

// ---------------------------------------------------------------------------------------------
// ELF

const ELF_MACHINES: Record<number, string> = {
  2: 'sparc', 3: 'x86', 4: 'm68k', 8: 'mips', 20: 'powerpc', 21: 'powerpc64', 22: 's390', 40: 'arm', 42: 'superh', 43: 'sparcv9',
  50: 'ia64', 62: 'x86-64', 183: 'arm64', 243: 'riscv', 247: 'bpf', 258: 'loongarch',
};
const ELF_TYPES: Record<number, string> = { 0: 'none', 1: 'relocatable', 2: 'executable', 3: 'shared-object', 4: 'core' };
const ELF_ABIS: Record<number, string> = { 0: 'sysv', 3: 'linux', 6: 'solaris', 9: 'freebsd', 12: 'openbsd', 2: 'netbsd' };
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PT_GNU_STACK = 0x6474e551;
const PF_X = 1;
const PF_W = 2;
const PF_R = 4;

interface Segment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

async function analyseElf(job: Job): Promise<void> {
  const v = job.view;
  const a = job.attrs;
  a.format = 'elf';
  if (v.size < 52) {
    job.problem('the ELF header is truncated');
    return;
  }
  const cls = v.u8(4);
  const data = v.u8(5);
  if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2)) {
    job.problem(`invalid ELF class ${cls} or byte order ${data}`);
    return;
  }
  const is64 = cls === 2;
  const le = data === 1;
  if (is64 && v.size < 64) {
    job.problem('the ELF header is truncated');
    return;
  }
  const u16 = (o: number) => v.u16(o, le);
  const u32 = (o: number) => v.u32(o, le);
  const word = (o: number) => (is64 ? v.u64(o, le) : v.u32(o, le));
  const type = u16(16);
  const entry = word(24);
  const phoff = word(is64 ? 32 : 28);
  const shoff = word(is64 ? 40 : 32);
  const phentsize = u16(is64 ? 54 : 42);
  let phnum = u16(is64 ? 56 : 44);
  const shentsize = u16(is64 ? 58 : 46);
  let shnum = u16(is64 ? 60 : 48);
  let shstrndx = u16(is64 ? 62 : 50);
  Object.assign(a, {
    bits: is64 ? 64 : 32, endianness: le ? 'little' : 'big', type: ELF_TYPES[type] ?? hex(type),
    machine: ELF_MACHINES[u16(18)] ?? u16(18), osAbi: ELF_ABIS[v.u8(7)] ?? v.u8(7), entryPoint: hex(entry),
  });

  // Section headers (read first: huge counts are stored in section 0).
  const shsize = is64 ? 64 : 40;
  const sections: { name: number; type: number; flags: number; offset: number; size: number; link: number; label?: string }[] = [];
  if (shoff > 0) {
    job.attempt('section headers', () => {
      if (shentsize < shsize) throw new Malformed(`section header size ${shentsize}`);
      if (shnum === 0 || shstrndx === 0xffff || phnum === 0xffff) {
        const s0 = shoff;
        if (shnum === 0) shnum = word(s0 + (is64 ? 32 : 20));
        if (shstrndx === 0xffff) shstrndx = u32(s0 + (is64 ? 40 : 24));
        if (phnum === 0xffff) phnum = u32(s0 + (is64 ? 44 : 28));
      }
      if (shnum > 4096) job.problem(`${shnum} sections (only the first 4096 analysed)`);
      for (let i = 0; i < Math.min(shnum, 4096); i++) {
        const s = shoff + i * shentsize;
        sections.push({ name: u32(s), type: u32(s + 4), flags: word(s + 8), offset: word(s + (is64 ? 24 : 16)), size: word(s + (is64 ? 32 : 20)), link: u32(s + (is64 ? 40 : 24)) });
      }
      const strtab = sections[shstrndx];
      if (strtab) for (const s of sections) s.label = v.cstr(strtab.offset + s.name, 64);
    });
  }

  // Program headers
  const segments: Segment[] = [];
  if (phoff > 0 && phnum > 0) {
    job.attempt('program headers', () => {
      if (phentsize < (is64 ? 56 : 32)) throw new Malformed(`program header size ${phentsize}`);
      for (let i = 0; i < Math.min(phnum, 1024); i++) {
        const p = phoff + i * phentsize;
        segments.push(is64
          ? { type: u32(p), flags: u32(p + 4), offset: word(p + 8), vaddr: word(p + 16), filesz: word(p + 32), memsz: word(p + 40) }
          : { type: u32(p), offset: u32(p + 4), vaddr: u32(p + 8), filesz: u32(p + 16), memsz: u32(p + 20), flags: u32(p + 24) });
      }
    });
  }
  const loads = segments.filter((s) => s.type === PT_LOAD);
  const vaddrToOff = (addr: number) => {
    const s = loads.find((l) => addr >= l.vaddr && addr < l.vaddr + l.filesz);
    return s ? s.offset + (addr - s.vaddr) : undefined;
  };
  const interp = segments.find((s) => s.type === PT_INTERP);
  if (interp) a.interpreter = job.attempt('interpreter', () => v.cstr(interp.offset, Math.min(interp.filesz, 4096)));

  // Dynamic section: needed libraries and the PIE flag.
  const needed: string[] = [];
  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  if (dyn) {
    job.attempt('dynamic section', () => {
      const size = is64 ? 16 : 8;
      const entries: [number, number][] = [];
      for (let i = 0; i < Math.min(Math.floor(dyn.filesz / size), 4096); i++) {
        const e = dyn.offset + i * size;
        const tag = word(e);
        if (tag === 0) break;
        entries.push([tag, word(e + size / 2)]);
      }
      const strtab = entries.find(([t]) => t === 5);
      const strOff = strtab ? vaddrToOff(strtab[1]) : undefined;
      for (const [t, val] of entries) {
        if (t === 1 && strOff !== undefined && needed.length < 64) needed.push(v.cstr(strOff + val, 256));
        if (t === 0x6ffffffb && val & 0x08000000) a.pie = true;
      }
    });
  }
  if (needed.length > 0) a.libraries = needed;
  a.linking = !interp && needed.length === 0 && type !== 1 ? 'static' : 'dynamic';
  if (type === 3 && interp) a.pie = true;
  a.stripped = !sections.some((s) => s.type === 2);
  if (sections.length === 0 && type !== 1) a.sectionHeaders = false;

  for (const s of loads) {
    (s as Segment & { entropy?: number }).entropy = s.filesz > 0 ? await job.entropyOf(s.offset, s.filesz) : undefined;
  }
  a.segments = loads.slice(0, MAX_LISTED).map((s) => ({
    vaddr: hex(s.vaddr), fileSize: s.filesz, memSize: s.memsz, perms: perms((s.flags & PF_R) !== 0, (s.flags & PF_W) !== 0, (s.flags & PF_X) !== 0),
    entropy: round2((s as Segment & { entropy?: number }).entropy),
  }));
  const code = sections.filter((s) => s.flags & 0x4 && s.type !== 8 && s.size > 0);
  const codeEntropy: { name: string; entropy?: number; size: number }[] = [];
  for (const s of code.slice(0, MAX_LISTED)) codeEntropy.push({ name: s.label ?? '?', size: s.size, entropy: await job.entropyOf(s.offset, s.size) });
  if (codeEntropy.length) a.codeSections = codeEntropy.map((s) => ({ ...s, entropy: round2(s.entropy) }));
  if (sections.length > 0) a.sectionCount = sections.length;

  // Findings
  const signs: Record<string, unknown> = {};
  const exec = loads.filter((s) => s.flags & PF_X);
  if ((type === 2 || type === 3) && entry !== 0 && loads.length > 0 && !exec.some((s) => entry >= s.vaddr && entry < s.vaddr + s.memsz)) {
    signs.entryPoint = 'outside every executable segment';
  }
  const wx = loads.filter((s) => s.flags & PF_W && s.flags & PF_X).map((s) => hex(s.vaddr));
  const stack = segments.find((s) => s.type === PT_GNU_STACK);
  if (stack && stack.flags & PF_X) wx.push('stack');
  if (wx.length > 0) signs.writableCode = wx;
  const dense = [
    ...codeEntropy.filter((s) => (s.entropy ?? 0) >= HIGH_ENTROPY && s.size >= MIN_ENTROPY_BYTES).map((s) => ({ name: s.name, entropy: round2(s.entropy) })),
    ...(codeEntropy.length === 0
      ? exec.filter((s) => ((s as Segment & { entropy?: number }).entropy ?? 0) >= HIGH_ENTROPY && s.filesz >= MIN_ENTROPY_BYTES)
          .map((s) => ({ name: `segment ${hex(s.vaddr)}`, entropy: round2((s as Segment & { entropy?: number }).entropy) }))
      : []),
  ];
  if (dense.length > 0) signs.highEntropy = dense;
  if (upxMarker(v, 4096)) job.packer = { name: 'UPX', evidence: 'UPX! marker' };
  unixJudgement(job, signs, entry);
}

/** Findings shared by ELF and Mach-O once their facts are gathered. */
function unixJudgement(job: Job, signs: Record<string, unknown>, entry: number): void {
  if (job.packer) return packed(job, signs);
  const dense = signs.highEntropy as { name: string; entropy?: number }[] | undefined;
  if (dense) {
    job.flag('EXEC_HIGH_ENTROPY', `compressed or encrypted code: ${dense.map((s) => `${s.name} ${s.entropy}`).join(', ')}`, { sections: dense });
    job.hiddenCode = 'high-entropy code was not unpacked';
  }
  if (signs.entryPoint) job.flag('EXEC_ENTRYPOINT_ANOMALY', `entry point ${signs.entryPoint}`, { entryPoint: hex(entry), where: signs.entryPoint });
  const wx = signs.writableCode as string[] | undefined;
  if (wx) job.flag('EXEC_WX_MEMORY', `writable and executable memory: ${wx.slice(0, 5).join(', ')}`, { segments: wx.slice(0, 16) });
}

// ---------------------------------------------------------------------------------------------
// Mach-O

const CPU_TYPES: Record<number, string> = {
  7: 'x86', 0x01000007: 'x86-64', 12: 'arm', 0x0100000c: 'arm64', 0x0200000c: 'arm64_32', 18: 'powerpc', 0x01000012: 'powerpc64',
};
const MACHO_TYPES: Record<number, string> = {
  1: 'object', 2: 'executable', 3: 'fvmlib', 4: 'core', 5: 'preload', 6: 'dylib', 7: 'dylinker', 8: 'bundle', 9: 'dylib-stub', 10: 'dsym', 11: 'kext',
};
const DYLIB_COMMANDS = new Set([0xc, 0x80000018, 0x8000001f, 0x20, 0x80000023]);

async function analyseMachO(job: Job): Promise<boolean> {
  const v = job.view;
  const a = job.attrs;
  if (v.size < 8) {
    a.format = 'macho';
    job.problem('the Mach-O header is truncated');
    return true;
  }
  const magic = v.u32(0, false);
  if (magic === 0xcafebabe || magic === 0xcafebabf) {
    const n = v.u32(4, false);
    // Java class files share the magic; their "count" is a class-file version (45 and up).
    if (n === 0 || n > 30) return false;
    a.format = 'macho-fat';
    const wide = magic === 0xcafebabf;
    const arches: Record<string, unknown>[] = [];
    for (let i = 0; i < Math.min(n, 16); i++) {
      const f = 8 + i * (wide ? 32 : 20);
      const slice = job.attempt('fat header', () => ({ cpu: v.u32(f, false), offset: wide ? v.u64(f + 8, false) : v.u32(f + 8, false), size: wide ? v.u64(f + 16, false) : v.u32(f + 12, false) }));
      if (!slice) break;
      if (!v.has(slice.offset, slice.size)) {
        job.problem(`architecture ${CPU_TYPES[slice.cpu] ?? slice.cpu} lies outside the file`);
        continue;
      }
      const attrs: Record<string, unknown> = {};
      await machOSlice(job, slice.offset, slice.size, attrs);
      arches.push(attrs);
    }
    a.arches = arches;
    return true;
  }
  a.format = 'macho';
  await machOSlice(job, 0, v.size, a);
  return true;
}

async function machOSlice(job: Job, base: number, length: number, a: Record<string, unknown>): Promise<void> {
  const v = job.view;
  const end = base + length;
  const m = v.upTo(base, 4).length === 4 ? v.u32(base, true) : 0;
  const kinds: Record<number, [boolean, boolean]> = { 0xfeedface: [false, true], 0xfeedfacf: [true, true], 0xcefaedfe: [false, false], 0xcffaedfe: [true, false] };
  const kind = kinds[m];
  if (!kind) {
    job.problem(`no Mach-O header at offset ${base}`);
    return;
  }
  const [is64, le] = kind;
  const hsize = is64 ? 32 : 28;
  if (!v.has(base, hsize) || hsize > length) {
    job.problem('the Mach-O header is truncated');
    return;
  }
  const u32 = (o: number) => v.u32(o, le);
  const word = (o: number) => (is64 ? v.u64(o, le) : v.u32(o, le));
  const cpu = u32(base + 4);
  const ncmds = u32(base + 16);
  const sizeofcmds = u32(base + 20);
  Object.assign(a, { cpu: CPU_TYPES[cpu] ?? hex(cpu), bits: is64 ? 64 : 32, fileType: MACHO_TYPES[u32(base + 12)] ?? u32(base + 12), loadCommands: ncmds });
  if (hsize + sizeofcmds > length) job.problem('the load commands run past the end of the file');
  const dylibs: string[] = [];
  const segments: { name: string; fileoff: number; filesize: number; initprot: number; entropy?: number }[] = [];
  let signed = false;
  let encrypted = false;
  let entry = 0;
  job.attempt('load commands', () => {
    let off = base + hsize;
    const cmdsEnd = Math.min(end, off + sizeofcmds);
    for (let i = 0; i < Math.min(ncmds, 4096); i++) {
      if (off + 8 > cmdsEnd) throw new Truncated(`load command ${i} lies past the end of the commands`);
      const cmd = u32(off);
      const size = u32(off + 4);
      if (size < 8 || off + size > cmdsEnd) throw new Malformed(`load command ${i} has size ${size}`);
      if (cmd === 0x1 || cmd === 0x19) {
        const w = cmd === 0x19;
        segments.push({
          name: printable(v.bytes(off + 8, 16).toString('latin1').replace(/\0.*$/s, ''), 16),
          fileoff: w ? v.u64(off + 40, le) : u32(off + 32), filesize: w ? v.u64(off + 48, le) : u32(off + 36), initprot: u32(off + (w ? 60 : 44)),
        });
      } else if (DYLIB_COMMANDS.has(cmd)) {
        if (dylibs.length < 64) dylibs.push(v.cstr(off + u32(off + 8), Math.min(size, 1024)));
      } else if (cmd === 0x1d) signed = true;
      else if (cmd === 0x21 || cmd === 0x2c) encrypted ||= u32(off + 16) !== 0;
      else if (cmd === 0x80000028) entry = word(off + 8);
      else if (cmd === 0xe) a.dylinker = v.cstr(off + u32(off + 8), Math.min(size, 1024));
      off += size;
    }
  });
  for (const s of segments) {
    if (s.filesize > 0) s.entropy = await job.entropyOf(base + s.fileoff, Math.min(s.filesize, Math.max(0, end - base - s.fileoff)));
  }
  Object.assign(a, {
    dylibs, signed: signed ? 'unverified' : false, encrypted,
    segments: segments.slice(0, MAX_LISTED).map((s) => ({ name: s.name, fileSize: s.filesize, perms: perms((s.initprot & 1) !== 0, (s.initprot & 2) !== 0, (s.initprot & 4) !== 0), entropy: round2(s.entropy) })),
  });

  const signs: Record<string, unknown> = {};
  const wx = segments.filter((s) => (s.initprot & 6) === 6).map((s) => s.name);
  if (wx.length > 0) signs.writableCode = wx;
  const dense = segments.filter((s) => s.initprot & 4 && (s.entropy ?? 0) >= HIGH_ENTROPY && s.filesize >= MIN_ENTROPY_BYTES);
  if (dense.length > 0 && !encrypted) signs.highEntropy = dense.map((s) => ({ name: s.name, entropy: round2(s.entropy) }));
  if (upxMarker(v, 4096, base, end) || segments.some((s) => s.name === '__XHDR')) job.packer ??= { name: 'UPX', evidence: 'UPX! marker' };
  if (encrypted) job.hiddenCode = 'encrypted code segment (LC_ENCRYPTION_INFO)';
  unixJudgement(job, signs, entry);
}

// ---------------------------------------------------------------------------------------------
// UPX and children

/** `upx -d` on a private copy; the unpacked program becomes a `decompressed` child. */
async function unpackUpx(job: Job, sample: string, upx: string): Promise<string | undefined> {
  const { ctx } = job;
  await fsp.mkdir(ctx.tmpDir, { recursive: true });
  const dir = await fsp.mkdtemp(path.join(ctx.tmpDir, 'upx-'));
  const packedCopy = path.join(dir, 'packed.bin');
  const out = path.join(dir, 'unpacked.bin');
  let handedOver = false;
  try {
    await fsp.copyFile(sample, packedCopy);
    const maxBytes = Math.min(ctx.limits.maxTotalExtractedBytes, Math.max(MIN_BOMB_BYTES, ctx.limits.maxCompressionRatio * job.view.size));
    const proc = startTool(upx, ['-d', '-q', '-o', out, packedCopy], { cwd: dir, signal: ctx.signal, deadline: job.deadline, capMs: UPX_TIMEOUT_MS, maxStdout: TOOL_OUTPUT_BYTES });
    // upx writes the output itself: watch its size, since a crafted file can claim any size.
    let tooBig = false;
    const watch = setInterval(() => {
      fs.lstat(out, (err, st) => {
        if (!err && st.size > maxBytes) {
          tooBig = true;
          proc.kill('output');
        }
      });
    }, 100);
    const run = await proc.result.finally(() => clearInterval(watch));
    if (run.killed) return `upx -d stopped: ${tooBig ? `output over ${maxBytes} bytes` : run.killed}`;
    const st = await fsp.lstat(out).catch(() => undefined);
    if (run.code !== 0 || !st?.isFile()) return `upx -d failed: ${printable(run.spawnError ?? run.stderr.trim().split('\n').pop() ?? `exit ${run.code}`)}`;
    const answer = await ctx.emitChild({ name: `${baseName(job.info.name) || 'sample'}.unpacked`, relation: 'decompressed', file: out, meta: { packer: 'UPX', tool: 'upx -d', size: st.size } });
    handedOver = answer === true;
    if (answer !== true) {
      refused(job, answer, 'the unpacked program');
      return `the unpacked program was refused (${answer})`;
    }
    job.attrs.unpacked = { tool: 'upx -d', size: st.size };
    return undefined;
  } finally {
    await fsp.rm(packedCopy, { force: true });
    if (!handedOver) await fsp.rm(out, { force: true });
  }
}

function refused(job: Job, reason: ChildRefusal, what: string): void {
  job.flag('ARCHIVE_LIMIT', `${what} was not scanned: ${reason} limit`, { reason });
}

/** Hands embedded executables to the engine (in memory when small, else copied to a file). */
async function emitSlices(job: Job, sample: string): Promise<void> {
  const { ctx, view } = job;
  if (job.slices.length === 0) return;
  job.flag('EXEC_EMBEDDED_EXECUTABLE', `${job.slices.length} executable${job.slices.length > 1 ? 's' : ''} embedded (${job.slices.map((s) => s.meta.where).join(', ')})`, {
    items: job.slices.map((s) => ({ name: s.name, offset: s.start, size: s.length, where: s.meta.where })),
  });
  for (const s of job.slices) {
    job.check();
    const meta = { ...s.meta, offset: s.start, size: s.length };
    let answer: true | ChildRefusal;
    if (s.length <= ctx.limits.maxInMemoryChild) {
      answer = await ctx.emitChild({ name: s.name, relation: 'embedded_object', data: Buffer.from(view.bytes(s.start, s.length)), meta });
    } else {
      await fsp.mkdir(ctx.tmpDir, { recursive: true });
      const file = path.join(ctx.tmpDir, `embedded-${crypto.randomUUID()}`);
      await pipeline(fs.createReadStream(sample, { start: s.start, end: s.start + s.length - 1, signal: ctx.signal }), fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }));
      answer = await ctx.emitChild({ name: s.name, relation: 'embedded_object', file, meta });
      if (answer !== true) await fsp.rm(file, { force: true });
    }
    if (answer !== true) {
      refused(job, answer, `embedded executable ${s.name}`);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The scanner

export const executableScanner: Scanner<ExecutableState> = {
  name: 'executable',
  version: '1',
  layer: 'static',
  async init() {
    return { upx: findTool('upx', (process.env.PATH ?? '').split(path.delimiter).filter((d) => path.isAbsolute(d))) };
  },
  accepts: (info) => info.kind === 'file' && TYPES.has(info.fileType),
  async scan(input, ctx, state) {
    const sample = await input.path();
    const fd = fs.openSync(sample, 'r');
    // Leave a moment before the engine's own deadline to report what was found.
    const margin = Math.min(1000, Math.max(0, (ctx.deadline - Date.now()) / 10));
    const job = new Job(new ByteView(fd, fs.fstatSync(fd).size), ctx, input.info, ctx.deadline - margin);
    try {
      const type = input.info.fileType;
      if (type === 'pe') await analysePe(job);
      else if (type === 'elf') await analyseElf(job);
      else if (!(await analyseMachO(job))) return {}; // a Java class file, not ours
      if (job.packer) {
        const why = job.packer.name === 'UPX' ? (state?.upx ? await unpackUpx(job, sample, state.upx) : 'no upx binary on this host') : 'no unpacker for it';
        if (why) job.hiddenCode = `${job.hiddenCode ?? `packed with ${job.packer.name}`}; ${why}`;
        else job.hiddenCode = undefined;
      }
      if (job.hiddenCode) job.flag('EXEC_CODE_UNEXAMINED', job.hiddenCode, { packer: job.packer?.name ?? null });
      await emitSlices(job, sample);
    } catch (err) {
      if (!(err instanceof OutOfTime)) throw err;
      job.flag('NOT_FULLY_SCANNED', `executable analysis stopped: ${err.message}`, { scanner: 'executable' });
    } finally {
      fs.closeSync(fd);
    }
    return job.result();
  },
};
