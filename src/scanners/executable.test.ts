import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { executableScanner, entropy, parseVersionInfo } from './executable.ts';
import { eicar, makeZip, runScanner, type RunOptions, type RunResult } from './testing.ts';
import { decide } from '../verdict/rules.ts';
import { heuristics } from '../verdict/heuristics.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures built in code

const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };
const align = (n: number, a: number) => Math.ceil(n / a) * a;
const pad = (b: Buffer, a: number) => Buffer.concat([b, Buffer.alloc(align(b.length, a) - b.length)]);

/** Deterministic incompressible bytes (entropy ~8). */
function noise(n: number, seed = 'seed'): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < n; i++) parts.push(crypto.createHash('sha256').update(`${seed}${i}`).digest());
  return Buffer.concat(parts).subarray(0, n);
}

/** Code-like filler: x86 prologues and calls, far from random. */
const CODE = Buffer.from(Array.from({ length: 64 }, () => [0x55, 0x8b, 0xec, 0x83, 0xec, 0x10, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x8b, 0xe5, 0x5d, 0xc3, 0x90]).flat());

const R = 0x40000000;
const W = 0x80000000;
const X = 0x20000000;
const CODE_FLAGS = 0x20 | X | R;
const DATA_FLAGS = 0x40 | R;

interface SectionSpec {
  name: string;
  data: Buffer;
  flags: number;
  vsize?: number;
}

interface PeSpec {
  pe64?: boolean;
  /** DLL name → function names (numbers import by ordinal). */
  imports?: Record<string, (string | number)[]>;
  text?: Buffer;
  textName?: string;
  textFlags?: number;
  /** Sections after .text (and .idata/.rsrc when present). */
  extra?: SectionSpec[];
  /** Entry point: section index and offset (default: start of .text); a number is a raw RVA. */
  entry?: { section: number; offset?: number } | number;
  resources?: { type: number; data: Buffer }[];
  overlay?: Buffer;
  /** A WIN_CERTIFICATE appended after the overlay and named by the security directory. */
  cert?: Buffer | { offset: number; size: number };
  timestamp?: number;
  dll?: boolean;
  dotnet?: boolean;
  /** Bytes placed in the headers after the section table (UPX puts its marker there). */
  headerNote?: Buffer;
}

function importTable(va: number, imports: Record<string, (string | number)[]>, pe64: boolean): Buffer {
  const dlls = Object.entries(imports);
  const ts = pe64 ? 8 : 4;
  let off = (dlls.length + 1) * 20;
  const thunkAt = dlls.map(([, fns]) => {
    const ilt = off;
    off += (fns.length + 1) * ts;
    const iat = off;
    off += (fns.length + 1) * ts;
    return { ilt, iat };
  });
  const namesStart = off;
  const names: Buffer[] = [];
  const nameAt = (b: Buffer) => {
    const at = off;
    names.push(b);
    off += b.length;
    return at;
  };
  type Thunk = { ordinal: number } | { rva: number };
  const thunkValues = dlls.map(([, fns]) => fns.map((f): Thunk => (typeof f === 'number' ? { ordinal: f } : { rva: va + nameAt(pad(Buffer.concat([u16(0), Buffer.from(`${f}\0`)]), 2)) })));
  const dllNames = dlls.map(([dll]) => va + nameAt(pad(Buffer.from(`${dll}\0`), 2)));
  const out = Buffer.alloc(off);
  dlls.forEach((_, i) => {
    const d = i * 20;
    out.writeUInt32LE(va + thunkAt[i].ilt, d);
    out.writeUInt32LE(dllNames[i], d + 12);
    out.writeUInt32LE(va + thunkAt[i].iat, d + 16);
    for (const base of [thunkAt[i].ilt, thunkAt[i].iat]) {
      thunkValues[i].forEach((t, j) => {
        const at = base + j * ts;
        if ('ordinal' in t) {
          if (pe64) out.writeBigUInt64LE(0x8000000000000000n | BigInt(t.ordinal), at);
          else out.writeUInt32LE((0x80000000 | t.ordinal) >>> 0, at);
        } else if (pe64) out.writeBigUInt64LE(BigInt(t.rva), at);
        else out.writeUInt32LE(t.rva, at);
      });
    }
  });
  let p = namesStart;
  for (const n of names) {
    n.copy(out, p);
    p += n.length;
  }
  return out;
}

/** A resource tree with one resource (name 1, language 0x409) per entry. */
function resourceTable(va: number, resources: { type: number; data: Buffer }[]): Buffer {
  const dir = (entries: [number, number][]) => {
    const b = Buffer.alloc(16 + entries.length * 8);
    b.writeUInt16LE(entries.length, 14);
    entries.forEach(([id, target], i) => {
      b.writeUInt32LE(id, 16 + i * 8);
      b.writeUInt32LE(target >>> 0, 20 + i * 8);
    });
    return b;
  };
  const n = resources.length;
  const rootSize = 16 + 8 * n;
  const sub = (i: number) => rootSize + i * 48;
  const entryAt = (i: number) => rootSize + 48 * n + i * 16;
  let dataOff = rootSize + 48 * n + 16 * n;
  const dataAt = resources.map((r) => {
    const at = align(dataOff, 4);
    dataOff = at + r.data.length;
    return at;
  });
  const out = Buffer.alloc(align(dataOff, 4));
  dir(resources.map((r, i) => [r.type, 0x80000000 | sub(i)])).copy(out, 0);
  resources.forEach((r, i) => {
    dir([[1, 0x80000000 | (sub(i) + 24)]]).copy(out, sub(i));
    dir([[0x409, entryAt(i)]]).copy(out, sub(i) + 24);
    out.writeUInt32LE(va + dataAt[i], entryAt(i));
    out.writeUInt32LE(r.data.length, entryAt(i) + 4);
    r.data.copy(out, dataAt[i]);
  });
  return out;
}

/** A VS_VERSIONINFO resource carrying the given strings. */
function versionInfo(strings: Record<string, string>): Buffer {
  const utf16z = (s: string) => Buffer.from(`${s}\0`, 'utf16le');
  const block = (key: string, value: Buffer, type: number, valLen: number, children: Buffer[]): Buffer => {
    let b = Buffer.concat([Buffer.alloc(6), utf16z(key)]);
    b = pad(b, 4);
    b = pad(Buffer.concat([b, value]), 4);
    b = Buffer.concat([b, ...children.map((c) => pad(c, 4))]);
    b.writeUInt16LE(b.length, 0);
    b.writeUInt16LE(valLen, 2);
    b.writeUInt16LE(type, 4);
    return b;
  };
  const fixed = Buffer.alloc(52);
  fixed.writeUInt32LE(0xfeef04bd, 0);
  const strs = Object.entries(strings).map(([k, v]) => block(k, utf16z(v), 1, v.length + 1, []));
  const table = block('040904b0', Buffer.alloc(0), 1, 0, strs);
  return block('VS_VERSION_INFO', fixed, 0, 52, [block('StringFileInfo', Buffer.alloc(0), 1, 0, [table])]);
}

/** A small but complete PE32 or PE32+ image. */
function buildPe(spec: PeSpec = {}): Buffer {
  const pe64 = spec.pe64 ?? false;
  const sections: (SectionSpec & { va: number; raw: number; build?: (va: number) => Buffer })[] = [];
  const add = (s: SectionSpec & { build?: (va: number) => Buffer }) => sections.push({ ...s, va: 0, raw: 0 });
  add({ name: spec.textName ?? '.text', data: spec.text ?? CODE, flags: spec.textFlags ?? CODE_FLAGS });
  let importIndex = -1;
  if (spec.imports) {
    importIndex = sections.length;
    add({ name: '.idata', data: Buffer.alloc(0), flags: DATA_FLAGS | W, build: (va) => importTable(va, spec.imports!, pe64) });
  }
  let rsrcIndex = -1;
  if (spec.resources) {
    rsrcIndex = sections.length;
    add({ name: '.rsrc', data: Buffer.alloc(0), flags: DATA_FLAGS, build: (va) => resourceTable(va, spec.resources!) });
  }
  for (const s of spec.extra ?? []) add(s);
  const headersSize = 0x400;
  let va = 0x1000;
  let raw = headersSize;
  for (const s of sections) {
    s.va = va;
    if (s.build) s.data = s.build(va);
    s.raw = raw;
    raw += align(s.data.length, 0x200);
    va += align(Math.max(s.vsize ?? s.data.length, 1), 0x1000);
  }
  const optSize = pe64 ? 240 : 224;
  const h = Buffer.alloc(headersSize);
  h.write('MZ', 0, 'latin1');
  h.writeUInt32LE(0x80, 0x3c);
  h.write('This program cannot be run in DOS mode.', 0x4e, 'latin1');
  h.write('PE\0\0', 0x80, 'latin1');
  const coff = 0x84;
  h.writeUInt16LE(pe64 ? 0x8664 : 0x14c, coff);
  h.writeUInt16LE(sections.length, coff + 2);
  h.writeUInt32LE(spec.timestamp ?? 1_600_000_000, coff + 4);
  h.writeUInt16LE(optSize, coff + 16);
  h.writeUInt16LE(0x0002 | (spec.dll ? 0x2000 : 0) | (pe64 ? 0x20 : 0x100), coff + 18);
  const opt = coff + 20;
  h.writeUInt16LE(pe64 ? 0x20b : 0x10b, opt);
  const entry = typeof spec.entry === 'number' ? spec.entry : sections[spec.entry?.section ?? 0].va + (spec.entry?.offset ?? 0);
  h.writeUInt32LE(entry, opt + 16);
  if (pe64) h.writeBigUInt64LE(0x140000000n, opt + 24);
  else h.writeUInt32LE(0x400000, opt + 28);
  h.writeUInt32LE(0x1000, opt + 32);
  h.writeUInt32LE(0x200, opt + 36);
  h.writeUInt16LE(6, opt + 40);
  h.writeUInt16LE(6, opt + 48);
  h.writeUInt32LE(va, opt + 56);
  h.writeUInt32LE(headersSize, opt + 60);
  h.writeUInt16LE(3, opt + 68);
  h.writeUInt16LE(0x140, opt + 70);
  const fixed = pe64 ? 112 : 96;
  h.writeUInt32LE(16, opt + fixed - 4);
  const setDir = (i: number, rva: number, size: number) => {
    h.writeUInt32LE(rva, opt + fixed + i * 8);
    h.writeUInt32LE(size, opt + fixed + i * 8 + 4);
  };
  if (importIndex >= 0) setDir(1, sections[importIndex].va, (Object.keys(spec.imports!).length + 1) * 20);
  if (rsrcIndex >= 0) setDir(2, sections[rsrcIndex].va, sections[rsrcIndex].data.length);
  if (spec.dotnet) setDir(14, sections[0].va, 72);
  const table = opt + optSize;
  sections.forEach((s, i) => {
    const e = table + i * 40;
    h.write(s.name.slice(0, 8), e, 'latin1');
    h.writeUInt32LE(s.vsize ?? s.data.length, e + 8);
    h.writeUInt32LE(s.va, e + 12);
    h.writeUInt32LE(align(s.data.length, 0x200), e + 16);
    h.writeUInt32LE(s.data.length ? s.raw : 0, e + 20);
    h.writeUInt32LE(s.flags >>> 0, e + 36);
  });
  if (spec.headerNote) spec.headerNote.copy(h, table + sections.length * 40 + 16);
  const body = Buffer.concat([h, ...sections.map((s) => pad(s.data, 0x200))]);
  const overlay = spec.overlay ?? Buffer.alloc(0);
  let cert = Buffer.alloc(0);
  if (spec.cert && Buffer.isBuffer(spec.cert)) {
    const c = Buffer.concat([u32(8 + spec.cert.length), u16(0x200), u16(2), spec.cert]);
    cert = pad(c, 8);
    setDirAt(body, opt + fixed + 4 * 8, body.length + overlay.length, cert.length);
  } else if (spec.cert) {
    setDirAt(body, opt + fixed + 4 * 8, spec.cert.offset, spec.cert.size);
  }
  return Buffer.concat([body, overlay, cert]);
}

function setDirAt(b: Buffer, at: number, offset: number, size: number): void {
  b.writeUInt32LE(offset, at);
  b.writeUInt32LE(size, at + 4);
}

/** An everyday console program's imports: process creation and shell calls included. */
const ORDINARY_IMPORTS = {
  'KERNEL32.dll': ['GetModuleHandleW', 'GetProcAddress', 'LoadLibraryExW', 'CreateProcessW', 'WaitForSingleObject', 'CloseHandle', 'GetLastError', 'ExitProcess', 'IsDebuggerPresent', 'FindFirstFileW', 'FindNextFileW', 'ReadFile', 'WriteFile', 'CreateFileW'],
  'SHELL32.dll': ['ShellExecuteW'],
  'USER32.dll': ['MessageBoxW', 'GetKeyState'],
};

interface ElfSpec {
  flags?: number;
  entry?: number;
  upx?: boolean;
  execStack?: boolean;
  code?: Buffer;
}

/** A minimal static x86-64 ELF executable: one PT_LOAD (and optionally PT_GNU_STACK), no sections. */
function buildElf(spec: ElfSpec = {}): Buffer {
  const phnum = spec.execStack ? 2 : 1;
  const codeOff = 64 + 56 * phnum;
  const code = spec.code ?? Buffer.from([0x48, 0x31, 0xff, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05]); // exit(0)
  const tail = spec.upx ? Buffer.concat([Buffer.alloc(16), Buffer.from('UPX!'), Buffer.alloc(8)]) : Buffer.alloc(0);
  const b = Buffer.alloc(codeOff + code.length + tail.length);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0);
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(62, 18);
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(BigInt(spec.entry ?? 0x400000 + codeOff), 24);
  b.writeBigUInt64LE(64n, 32);
  b.writeUInt16LE(64, 52);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(phnum, 56);
  b.writeUInt16LE(64, 58);
  const ph = (i: number, type: number, flags: number, size: number) => {
    const p = 64 + i * 56;
    b.writeUInt32LE(type, p);
    b.writeUInt32LE(flags, p + 4);
    b.writeBigUInt64LE(0n, p + 8);
    b.writeBigUInt64LE(type === 1 ? 0x400000n : 0n, p + 16);
    b.writeBigUInt64LE(type === 1 ? 0x400000n : 0n, p + 24);
    b.writeBigUInt64LE(BigInt(size), p + 32);
    b.writeBigUInt64LE(BigInt(size), p + 40);
    b.writeBigUInt64LE(0x1000n, p + 48);
  };
  ph(0, 1, spec.flags ?? 5, b.length);
  if (spec.execStack) ph(1, 0x6474e551, 7, 0);
  code.copy(b, codeOff);
  tail.copy(b, codeOff + code.length);
  return b;
}

interface MachOSpec {
  signed?: boolean;
  encrypted?: boolean;
  rwx?: boolean;
}

/** A thin 64-bit little-endian arm64 Mach-O executable. */
function buildMachO(spec: MachOSpec = {}): Buffer {
  const cmds: Buffer[] = [];
  const segment = (name: string, fileoff: number, filesize: number, prot: number) => {
    const c = Buffer.alloc(72);
    c.writeUInt32LE(0x19, 0);
    c.writeUInt32LE(72, 4);
    c.write(name, 8, 'latin1');
    c.writeBigUInt64LE(0x100000000n, 24);
    c.writeBigUInt64LE(0x4000n, 32);
    c.writeBigUInt64LE(BigInt(fileoff), 40);
    c.writeBigUInt64LE(BigInt(filesize), 48);
    c.writeUInt32LE(7, 56);
    c.writeUInt32LE(prot, 60);
    return c;
  };
  cmds.push(segment('__PAGEZERO', 0, 0, 0));
  cmds.push(segment('__TEXT', 0, 0x1000, spec.rwx ? 7 : 5));
  const lib = Buffer.from('/usr/lib/libSystem.B.dylib\0');
  const dylib = Buffer.alloc(align(24 + lib.length, 8));
  dylib.writeUInt32LE(0xc, 0);
  dylib.writeUInt32LE(dylib.length, 4);
  dylib.writeUInt32LE(24, 8);
  lib.copy(dylib, 24);
  cmds.push(dylib);
  const main = Buffer.alloc(24);
  main.writeUInt32LE(0x80000028, 0);
  main.writeUInt32LE(24, 4);
  main.writeBigUInt64LE(0x800n, 8);
  cmds.push(main);
  if (spec.signed) {
    const sig = Buffer.alloc(16);
    sig.writeUInt32LE(0x1d, 0);
    sig.writeUInt32LE(16, 4);
    sig.writeUInt32LE(0x1000, 8);
    sig.writeUInt32LE(0, 12);
    cmds.push(sig);
  }
  if (spec.encrypted) {
    const enc = Buffer.alloc(24);
    enc.writeUInt32LE(0x2c, 0);
    enc.writeUInt32LE(24, 4);
    enc.writeUInt32LE(0x800, 8);
    enc.writeUInt32LE(0x400, 12);
    enc.writeUInt32LE(1, 16);
    cmds.push(enc);
  }
  const all = Buffer.concat(cmds);
  const h = Buffer.alloc(32);
  h.writeUInt32LE(0xfeedfacf, 0);
  h.writeUInt32LE(0x0100000c, 4);
  h.writeUInt32LE(2, 12);
  h.writeUInt32LE(cmds.length, 16);
  h.writeUInt32LE(all.length, 20);
  const out = Buffer.alloc(0x1000);
  Buffer.concat([h, all]).copy(out, 0);
  CODE.copy(out, 0x800);
  return out;
}

function fat(slices: { cpu: number; data: Buffer }[]): Buffer {
  const h = Buffer.alloc(0x1000);
  h.writeUInt32BE(0xcafebabe, 0);
  h.writeUInt32BE(slices.length, 4);
  let off = 0x1000;
  slices.forEach((s, i) => {
    const e = 8 + i * 20;
    h.writeUInt32BE(s.cpu, e);
    h.writeUInt32BE(off, e + 8);
    h.writeUInt32BE(s.data.length, e + 12);
    h.writeUInt32BE(12, e + 16);
    off += align(s.data.length, 0x1000);
  });
  return Buffer.concat([h, ...slices.map((s) => pad(s.data, 0x1000))]);
}

// ---------------------------------------------------------------------------------------------
// Helpers

const NO_UPX = { state: {} };

async function scan(data: Buffer, opts: RunOptions = {}): Promise<RunResult> {
  return runScanner(executableScanner, data, { ...NO_UPX, ...opts });
}

function verdictOf(r: RunResult) {
  return decide(r.evidence.map((e) => ({ ...e, scanner: 'executable', layer: 'static' })), [], { scoreSuspicious: 300, scoreMalicious: 1000 });
}

const exe = (r: RunResult) => r.attributes.executable as Record<string, any>;
const sorted = (r: RunResult) => [...r.heuristics].sort();

// ---------------------------------------------------------------------------------------------

describe('executable scanner: PE', () => {
  test('an ordinary PE32 program is clean; its headers, sections and imports are described', async () => {
    const pe = buildPe({ imports: { ...ORDINARY_IMPORTS, 'WS2_32.dll': [23, 115] } });
    const r = await scan(pe, { name: 'tool.exe' });
    assert.deepEqual(r.heuristics, []);
    assert.equal(verdictOf(r).verdict, 'CLN');
    const a = exe(r);
    assert.equal(a.format, 'pe');
    assert.equal(a.machine, 'x86');
    assert.equal(a.bits, 32);
    assert.equal(a.subsystem, 'windows-console');
    assert.equal(a.dll, false);
    assert.equal(a.dotnet, false);
    assert.equal(a.signed, false);
    assert.equal(a.entryPointSection, '.text');
    assert.deepEqual(a.sections.map((s: { name: string; perms: string }) => `${s.name}:${s.perms}`), ['.text:r-x', '.idata:rw-']);
    assert.ok(a.sections[0].entropy > 1 && a.sections[0].entropy < 6, `code entropy ${a.sections[0].entropy}`);
    assert.equal(a.imports.libraries, 4);
    assert.equal(a.imports.functions, 19);
    assert.equal(a.imports.byOrdinal, 2);
    assert.deepEqual(a.imports.names, ['kernel32.dll', 'shell32.dll', 'user32.dll', 'ws2_32.dll']);
    assert.deepEqual(a.imports.notable.execute.sort(), ['CreateProcessW', 'ShellExecuteW']);
    assert.equal(a.timestamp, '2020-09-13T12:26:40.000Z');
    assert.equal(a.overlay, undefined);
  });

  test('PE32+ with injection and download+execute imports is SUS; the groups name the functions', async () => {
    const pe = buildPe({
      pe64: true,
      imports: {
        ...ORDINARY_IMPORTS,
        'kernel32.dll': ['VirtualAllocEx', 'WriteProcessMemory', 'CreateRemoteThread', 'OpenProcess'],
        'urlmon.dll': ['URLDownloadToFileA'],
      },
    });
    const r = await scan(pe, { name: 'update.exe' });
    assert.deepEqual(sorted(r), ['EXEC_DOWNLOAD_EXECUTE_IMPORTS', 'EXEC_INJECTION_IMPORTS']);
    assert.equal(exe(r).bits, 64);
    assert.equal(exe(r).machine, 'x86-64');
    const inj = r.evidence.find((e) => e.heuristic === 'EXEC_INJECTION_IMPORTS')!;
    assert.deepEqual(inj.data?.functions, ['VirtualAllocEx', 'WriteProcessMemory', 'CreateRemoteThread']);
    const dl = r.evidence.find((e) => e.heuristic === 'EXEC_DOWNLOAD_EXECUTE_IMPORTS')!;
    assert.deepEqual(dl.data?.download, ['URLDownloadToFileA']);
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('one group alone stays CLN: a debugger-like injection import set scores below SUS', async () => {
    const r = await scan(buildPe({ imports: { ...ORDINARY_IMPORTS, 'kernel32.dll': ['WriteProcessMemory', 'SetThreadContext', 'CheckRemoteDebuggerPresent'] } }));
    assert.deepEqual(sorted(r), ['EXEC_ANTIDEBUG_IMPORTS', 'EXEC_INJECTION_IMPORTS']);
    assert.equal(verdictOf(r).verdict, 'CLN');
  });

  test('keylogging and encrypt+walk imports are reported', async () => {
    const r = await scan(buildPe({ imports: { ...ORDINARY_IMPORTS, 'USER32.dll': ['SetWindowsHookExW', 'GetAsyncKeyState'], 'ADVAPI32.dll': ['CryptEncrypt', 'CryptAcquireContextW'] } }));
    assert.deepEqual(sorted(r), ['EXEC_KEYLOGGER_IMPORTS', 'EXEC_RANSOM_IMPORTS']);
  });

  test('UPX section names and marker: EXEC_PACKED (side effects folded in) and the code is reported unexamined', async () => {
    const pe = buildPe({
      textName: 'UPX0', text: Buffer.alloc(0), textFlags: 0x80 | R | W | X,
      extra: [{ name: 'UPX1', data: noise(0x3000), flags: 0x40 | R | W | X }],
      entry: { section: 2, offset: 0x100 },
      imports: { 'KERNEL32.DLL': ['LoadLibraryA', 'GetProcAddress', 'VirtualProtect', 'ExitProcess'] },
      headerNote: Buffer.from('4.02\0UPX!'),
    });
    const r = await scan(pe, { name: 'small.exe' });
    assert.deepEqual(sorted(r), ['EXEC_CODE_UNEXAMINED', 'EXEC_PACKED']);
    const p = r.evidence.find((e) => e.heuristic === 'EXEC_PACKED')!;
    assert.equal(p.data?.packer, 'UPX');
    assert.ok(p.data?.writableCode, 'the writable code sections are listed in the finding');
    assert.match(String(p.data?.entryPoint), /UPX1/);
    assert.match(r.evidence.find((e) => e.heuristic === 'EXEC_CODE_UNEXAMINED')!.details!, /no upx binary/);
    assert.equal(heuristics.EXEC_CODE_UNEXAMINED.partial, true);
    const v = verdictOf(r);
    assert.equal(v.verdict, 'CLN');
    assert.equal(v.partial, true, 'packed code that was not unpacked is never a confident clean');
    assert.equal(exe(r).packer, 'UPX');
  });

  test('the UPX! marker alone (sections renamed) still identifies UPX', async () => {
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, headerNote: Buffer.from('3.96\0UPX!\r\n') }));
    assert.equal(r.evidence.find((e) => e.heuristic === 'EXEC_PACKED')?.data?.packer, 'UPX');
  });

  test('packed plus injection imports is SUS', async () => {
    const r = await scan(buildPe({ extra: [{ name: '.MPRESS1', data: noise(0x2000), flags: DATA_FLAGS }], imports: { ...ORDINARY_IMPORTS, 'ntdll.dll': ['NtUnmapViewOfSection', 'NtWriteVirtualMemory'] } }));
    assert.equal(r.evidence.find((e) => e.heuristic === 'EXEC_PACKED')?.data?.packer, 'MPRESS');
    assert.equal(r.evidence.find((e) => e.heuristic === 'EXEC_INJECTION_IMPORTS')?.data?.hollowing, true);
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('an unknown packer: encrypted writable code holding the entry point, two imports → SUS', async () => {
    const pe = buildPe({
      text: noise(0x4000), textName: '.xyz', textFlags: CODE_FLAGS | W,
      imports: { 'kernel32.dll': ['LoadLibraryA', 'GetProcAddress'] },
    });
    const r = await scan(pe);
    assert.deepEqual(sorted(r), ['EXEC_CODE_UNEXAMINED', 'EXEC_DYNAMIC_IMPORTS', 'EXEC_ENTRYPOINT_ANOMALY', 'EXEC_HIGH_ENTROPY', 'EXEC_WX_MEMORY']);
    assert.ok((exe(r).sections[0].entropy as number) > 7.9);
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('entry point outside every section', async () => {
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, entry: 0x90000 }));
    assert.deepEqual(r.heuristics, ['EXEC_ENTRYPOINT_ANOMALY']);
    assert.match(r.evidence[0].details!, /outside every section/);
  });

  test('a zip appended to a program is an installer payload: reported, not extracted here', async () => {
    const zip = await makeZip({ 'payload.com': eicar() });
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, overlay: zip }));
    assert.deepEqual(r.heuristics, ['EXEC_OVERLAY']);
    assert.equal(r.evidence[0].data?.format, 'zip');
    assert.equal(exe(r).overlay.size, zip.length);
    assert.equal(r.children.length, 0);
    assert.equal(verdictOf(r).verdict, 'CLN');
  });

  test('a PE hidden in the overlay becomes an embedded_object child', async () => {
    const inner = buildPe({ pe64: true, imports: ORDINARY_IMPORTS, text: Buffer.concat([CODE, eicar()]) });
    const junk = noise(300, 'junk');
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, overlay: Buffer.concat([junk, inner]) }), { name: 'dropper.exe' });
    assert.deepEqual(sorted(r), ['EXEC_EMBEDDED_EXECUTABLE', 'EXEC_OVERLAY']);
    assert.equal(r.children.length, 1);
    const child = r.children[0];
    assert.equal(child.relation, 'embedded_object');
    assert.equal(child.name, `overlay-0x${junk.length.toString(16)}.exe`);
    assert.ok(child.bytes?.equals(inner), 'the child is exactly the embedded program');
  });

  test('an embedded PE refused by the engine is reported as not scanned', async () => {
    const inner = buildPe({ imports: ORDINARY_IMPORTS });
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, overlay: inner }), { acceptChildren: 0 });
    assert.ok(r.heuristics.includes('ARCHIVE_LIMIT'));
    assert.equal(verdictOf(r).partial, true);
  });

  test('resources: version strings, an executable in RCDATA, a system name on a non-Microsoft file', async () => {
    const inner = buildPe({ imports: ORDINARY_IMPORTS });
    const pe = buildPe({
      imports: ORDINARY_IMPORTS,
      resources: [
        { type: 16, data: versionInfo({ CompanyName: 'Acme Tools', OriginalFilename: 'helper.exe', FileDescription: 'Helper' }) },
        { type: 10, data: inner },
        { type: 24, data: Buffer.from('<assembly><trustInfo><security><requestedPrivileges><requestedExecutionLevel level="requireAdministrator" uiAccess="false"/></requestedPrivileges></security></trustInfo></assembly>') },
      ],
    });
    const r = await scan(pe, { name: 'svchost.exe' });
    assert.deepEqual(sorted(r), ['EXEC_EMBEDDED_EXECUTABLE', 'EXEC_MASQUERADE']);
    const a = exe(r);
    assert.deepEqual(a.version, { CompanyName: 'Acme Tools', OriginalFilename: 'helper.exe', FileDescription: 'Helper' });
    assert.deepEqual(a.resources, { count: 3, types: { version: 1, rcdata: 1, manifest: 1 } });
    assert.equal(a.requestedExecutionLevel, 'requireAdministrator');
    assert.equal(r.children[0].name, 'resource-rcdata-1.exe');
    assert.ok(r.children[0].bytes?.equals(inner));
    // The same program under its own name, or from Microsoft, is no masquerade.
    assert.ok(!(await scan(pe, { name: 'helper.exe' })).heuristics.includes('EXEC_MASQUERADE'));
    const ms = buildPe({ imports: ORDINARY_IMPORTS, resources: [{ type: 16, data: versionInfo({ CompanyName: 'Microsoft Corporation', OriginalFilename: 'svchost.exe' }) }] });
    assert.deepEqual((await scan(ms, { name: 'svchost.exe' })).heuristics, []);
  });

  test('Authenticode present: "signed (unverified)", the certificate is no overlay, and no clean pass', async () => {
    const signed = buildPe({ imports: { ...ORDINARY_IMPORTS, 'kernel32.dll': ['WriteProcessMemory', 'CreateRemoteThread'], 'urlmon.dll': ['URLDownloadToFileW'] }, cert: Buffer.alloc(300, 0x30) });
    const r = await scan(signed);
    assert.equal(exe(r).signed, 'unverified');
    assert.equal(exe(r).overlay, undefined);
    assert.ok(!r.heuristics.includes('EXEC_OVERLAY'));
    assert.equal(verdictOf(r).verdict, 'SUS');
  });

  test('a certificate table pointing outside the file is damage', async () => {
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, cert: { offset: 0x100000, size: 0x200 } }));
    assert.deepEqual(r.heuristics, ['EXEC_MALFORMED']);
    assert.equal(exe(r).signed, false);
  });

  test('build time in the future; DLL and .NET flags', async () => {
    const r = await scan(buildPe({ imports: ORDINARY_IMPORTS, timestamp: Math.floor(Date.now() / 1000) + 3 * 365 * 86400, dll: true, dotnet: true }));
    assert.deepEqual(r.heuristics, ['EXEC_TIMESTAMP_ANOMALY']);
    assert.equal(exe(r).dll, true);
    assert.equal(exe(r).dotnet, true);
  });

  test('truncated and damaged headers never throw; damage is EXEC_MALFORMED, not partial', async () => {
    const pe = buildPe({ imports: ORDINARY_IMPORTS, resources: [{ type: 16, data: versionInfo({ CompanyName: 'X' }) }] });
    for (const n of [2, 0x3f, 0x40, 0x83, 0x90, 0xa0, 0x180, 0x3ff, 0x600, 0x900, pe.length - 1]) {
      const r = await scan(pe.subarray(0, n));
      assert.ok(r.heuristics.includes('EXEC_MALFORMED'), `prefix of ${n} bytes: ${r.heuristics.join(', ')}`);
    }
    const garbage = Buffer.concat([Buffer.from('MZ'), noise(2000, 'garbage')]);
    const g = await scan(garbage);
    assert.deepEqual(g.heuristics, ['EXEC_MALFORMED']);
    assert.equal(exe(g).format, 'mz');
    assert.equal(heuristics.EXEC_MALFORMED.partial, undefined);
  });

  test('random corruption of PE, ELF and Mach-O headers never throws', async () => {
    const bases = [buildPe({ pe64: true, imports: ORDINARY_IMPORTS, resources: [{ type: 16, data: versionInfo({ CompanyName: 'X' }) }], overlay: Buffer.alloc(100) }), buildElf(), buildMachO({ signed: true }), fs.readFileSync('/usr/bin/true')];
    let seed = 1;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const base of bases) {
      for (let i = 0; i < 60; i++) {
        const b = Buffer.from(base);
        for (let k = 0; k < 8; k++) b[rand(Math.min(b.length, 0x600))] = rand(256);
        const r = await scan(b);
        for (const h of r.heuristics) assert.ok(h in heuristics);
      }
    }
  });
});

describe('executable scanner: ELF', () => {
  test('/usr/bin/true is clean and described', async () => {
    const r = await scan(fs.readFileSync('/usr/bin/true'), { name: 'true' });
    assert.deepEqual(r.heuristics, []);
    const a = exe(r);
    assert.equal(a.format, 'elf');
    assert.equal(a.bits, 64);
    assert.equal(a.linking, 'dynamic');
    assert.ok(['executable', 'shared-object'].includes(a.type));
    assert.match(a.interpreter, /^\/lib/);
    assert.ok(a.libraries.includes('libc.so.6'));
    assert.ok(a.segments.some((s: { perms: string }) => s.perms === 'r-x'));
  });

  test('a hand-made static ELF: described, and its writable+executable segment and stack are flagged', async () => {
    const plain = await scan(buildElf());
    assert.deepEqual(plain.heuristics, []);
    assert.equal(exe(plain).linking, 'static');
    assert.equal(exe(plain).type, 'executable');
    assert.equal(exe(plain).sectionHeaders, false);
    const wx = await scan(buildElf({ flags: 7, execStack: true }));
    assert.deepEqual(wx.heuristics, ['EXEC_WX_MEMORY']);
    assert.deepEqual(wx.evidence[0].data?.segments, ['0x400000', 'stack']);
  });

  test('ELF entry point outside the executable segment, and UPX', async () => {
    assert.deepEqual((await scan(buildElf({ entry: 0x900000 }))).heuristics, ['EXEC_ENTRYPOINT_ANOMALY']);
    const upx = await scan(buildElf({ upx: true, flags: 7, code: noise(8192) }));
    assert.deepEqual(upx.heuristics.sort(), ['EXEC_CODE_UNEXAMINED', 'EXEC_PACKED']);
    assert.equal(upx.evidence.find((e) => e.heuristic === 'EXEC_PACKED')?.data?.packer, 'UPX');
  });

  test('a big-endian 32-bit ELF header is read in its byte order', async () => {
    const b = Buffer.alloc(52);
    b.set([0x7f, 0x45, 0x4c, 0x46, 1, 2, 1, 0], 0);
    b.writeUInt16BE(3, 16); // ET_DYN
    b.writeUInt16BE(8, 18); // MIPS
    const r = await scan(b);
    assert.equal(exe(r).endianness, 'big');
    assert.equal(exe(r).bits, 32);
    assert.equal(exe(r).machine, 'mips');
    assert.equal(exe(r).type, 'shared-object');
  });

  test('a truncated ELF header is damage', async () => {
    assert.deepEqual((await scan(fs.readFileSync('/usr/bin/true').subarray(0, 40))).heuristics, ['EXEC_MALFORMED']);
    const bad = buildElf();
    bad[4] = 9;
    assert.deepEqual((await scan(bad)).heuristics, ['EXEC_MALFORMED']);
  });
});

describe('executable scanner: Mach-O', () => {
  test('a thin arm64 executable: cpu, type, dylibs, signature, segments', async () => {
    const r = await scan(buildMachO({ signed: true }));
    assert.deepEqual(r.heuristics, []);
    const a = exe(r);
    assert.equal(a.format, 'macho');
    assert.equal(a.cpu, 'arm64');
    assert.equal(a.fileType, 'executable');
    assert.equal(a.loadCommands, 5);
    assert.deepEqual(a.dylibs, ['/usr/lib/libSystem.B.dylib']);
    assert.equal(a.signed, 'unverified');
    assert.equal(a.encrypted, false);
    assert.deepEqual(a.segments.map((s: { name: string; perms: string }) => `${s.name}:${s.perms}`), ['__PAGEZERO:---', '__TEXT:r-x']);
    assert.equal(exe(await scan(buildMachO())).signed, false);
  });

  test('encrypted segments are reported unexamined; RWX segments flagged', async () => {
    const enc = await scan(buildMachO({ encrypted: true }));
    assert.deepEqual(enc.heuristics, ['EXEC_CODE_UNEXAMINED']);
    assert.equal(exe(enc).encrypted, true);
    assert.deepEqual((await scan(buildMachO({ rwx: true }))).heuristics, ['EXEC_WX_MEMORY']);
  });

  test('a universal binary describes each architecture', async () => {
    const r = await scan(fat([{ cpu: 0x01000007, data: buildMachO() }, { cpu: 0x0100000c, data: buildMachO({ signed: true }) }]));
    assert.deepEqual(r.heuristics, []);
    assert.equal(exe(r).format, 'macho-fat');
    assert.equal(exe(r).arches.length, 2);
    assert.equal(exe(r).arches[1].signed, 'unverified');
  });

  test('a Java class file (same magic) is left alone; a truncated Mach-O is damage', async () => {
    const cls = Buffer.concat([Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0x00, 0x00, 0x00, 0x34]), Buffer.alloc(64)]);
    const r = await runScanner(executableScanner, cls, { ...NO_UPX, name: 'A.class' });
    assert.deepEqual(r.heuristics, []);
    assert.deepEqual(r.attributes, {});
    assert.deepEqual((await scan(buildMachO().subarray(0, 60))).heuristics, ['EXEC_MALFORMED']);
  });
});

describe('executable scanner: unpacking with upx', () => {
  const upxPe = () => buildPe({ textName: 'UPX0', text: Buffer.alloc(0), textFlags: 0x80 | R | W | X, extra: [{ name: 'UPX1', data: noise(0x1000), flags: 0x40 | R | W | X }], imports: { 'KERNEL32.DLL': ['LoadLibraryA', 'GetProcAddress'] } });

  /** A stand-in `upx` (a shell script): the real binary is not packaged for Debian 12. */
  function fakeUpx(body: string): { file: string; dir: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-upx-'));
    const file = path.join(dir, 'upx');
    fs.writeFileSync(file, `#!/bin/sh\n# called as: upx -d -q -o OUT IN\n${body}\n`, { mode: 0o755 });
    return { file, dir };
  }

  /** Waits up to 2 s for a process to end (a zombie awaiting its reaper counts as ended). */
  async function gone(pid: number): Promise<boolean> {
    for (let i = 0; i < 40; i++) {
      let stat: string;
      try {
        stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        return true;
      }
      if (/^\d+ \(.*\) Z/.test(stat)) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  }

  test('the unpacked program becomes a decompressed child and the code counts as examined', async () => {
    const { file, dir } = fakeUpx('[ "$1" = "-d" ] && [ "$3" = "-o" ] || exit 9\nprintf "unpacked program" > "$4"');
    try {
      const r = await runScanner(executableScanner, upxPe(), { name: 'small.exe', state: { upx: file } });
      assert.deepEqual(r.heuristics, ['EXEC_PACKED']);
      assert.equal(r.children.length, 1);
      assert.equal(r.children[0].relation, 'decompressed');
      assert.equal(r.children[0].name, 'small.exe.unpacked');
      assert.equal(r.children[0].bytes?.toString(), 'unpacked program');
      assert.equal(verdictOf(r).partial, false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a failing upx leaves the code unexamined, with its message', async () => {
    const { file, dir } = fakeUpx('echo "upx: small.exe: CantUnpackException: file is modified/hacked/protected; take care!!!" >&2\nexit 2');
    try {
      const r = await runScanner(executableScanner, upxPe(), { state: { upx: file } });
      assert.deepEqual(r.heuristics.sort(), ['EXEC_CODE_UNEXAMINED', 'EXEC_PACKED']);
      assert.match(r.evidence.find((e) => e.heuristic === 'EXEC_CODE_UNEXAMINED')!.details!, /CantUnpackException/);
      assert.equal(r.children.length, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a hanging upx is killed with its whole process group at the deadline', async () => {
    const { file, dir } = fakeUpx(`sleep 30 &\necho $! > "${'$'}(dirname "$0")/pid"\nwait`);
    try {
      const started = Date.now();
      const r = await runScanner(executableScanner, upxPe(), { state: { upx: file }, limits: { scannerTimeoutMs: 1500 } });
      assert.ok(Date.now() - started < 5000, `returned after ${Date.now() - started} ms`);
      assert.match(r.evidence.find((e) => e.heuristic === 'EXEC_CODE_UNEXAMINED')!.details!, /stopped: timeout/);
      const pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
      assert.ok(await gone(pid), 'the grandchild sleep was killed too');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('executable scanner: helpers', () => {
  test('entropy: 0 for one value, 8 for a uniform histogram', () => {
    assert.equal(entropy(Object.assign(new Array(256).fill(0), { 65: 100 }), 100), 0);
    assert.equal(entropy(new Array(256).fill(4), 1024), 8);
  });

  test('version info strings are read from a VS_VERSIONINFO block; damaged blocks give what they can', () => {
    const v = versionInfo({ CompanyName: 'Acme', ProductName: 'Thing', Comments: 'ignored' });
    assert.deepEqual(parseVersionInfo(v), { CompanyName: 'Acme', ProductName: 'Thing' });
    assert.deepEqual(parseVersionInfo(v.subarray(0, 30)), {});
    assert.deepEqual(parseVersionInfo(Buffer.alloc(3)), {});
  });
});
