/**
 * Helpers for scanner unit tests: run one scanner on a buffer, collect its findings and the
 * children it emitted, with the real limits schema and a real temporary folder.
 *
 * @example
 * const r = await runScanner(zipScanner, zipBytes, { name: 'a.zip', passwords: ['infected'] });
 * assert.equal(r.children[0].name, 'eicar.com');
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { limitsSchema, type Limits } from '../config/schema.ts';
import { inputFromBuffer } from '../engine/input.ts';
import { digestBuffer } from './hashes.ts';
import { DETECT_HEAD_BYTES, detectType } from './file-type.ts';
import type { ChildSpec, ChildRefusal, Finding, Relation, SampleInfo, Scanner, ScannerInitContext } from './types.ts';
import { loadConfig } from '../config/load.ts';
import { ManagedClamd } from '../engines/clamd-manager.ts';
import assert from 'node:assert/strict';
import { configure, Uint8ArrayReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';

configure({ useWebWorkers: false });

export interface RunOptions {
  name?: string;
  passwords?: string[];
  limits?: Partial<Limits>;
  depth?: number;
  url?: string;
  /** State to pass instead of calling the scanner's `init()`. */
  state?: unknown;
  init?: Partial<ScannerInitContext>;
  /** Refuse children after this many (to test limit handling). */
  acceptChildren?: number;
  /** How the object relates to its parent (e.g. `fetched_content` for a page a URL scan fetched). */
  relation?: Relation;
}

export interface RunResult {
  evidence: Finding[];
  attributes: Record<string, unknown>;
  children: (ChildSpec & { bytes?: Buffer })[];
  heuristics: string[];
}

export function sampleInfo(data: Buffer, name = 'sample', depth = 0, url?: string): SampleInfo {
  const d = digestBuffer(data);
  const t = detectType(data.subarray(0, DETECT_HEAD_BYTES));
  return { kind: url ? 'url' : 'file', name, size: d.size, fileType: url ? 'url' : t.type, mime: url ? 'text/uri-list' : t.mime, md5: d.md5, sha1: d.sha1, sha256: d.sha256, sha512: d.sha512, depth, url };
}

export async function initScanner(scanner: Scanner, init: Partial<ScannerInitContext> = {}): Promise<unknown> {
  if (!scanner.init) return undefined;
  return scanner.init({ config: loadConfig({ dataDir: os.tmpdir() }, {}), log: pino({ level: 'silent' }), ...init });
}

export async function runScanner(scanner: Scanner, data: Buffer, opts: RunOptions = {}): Promise<RunResult> {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-scanner-test-'));
  try {
    const info = { ...sampleInfo(data, opts.name, opts.depth ?? 0, opts.url), ...(opts.relation ? { relation: opts.relation } : {}) };
    const state = 'state' in opts ? opts.state : await initScanner(scanner, opts.init);
    const children: RunResult['children'] = [];
    const limits = limitsSchema.parse(opts.limits ?? {});
    const ac = new AbortController();
    const result = await scanner.scan(
      inputFromBuffer(info, data, tmpDir),
      {
        options: { passwords: opts.passwords ?? [] },
        limits,
        signal: ac.signal,
        deadline: Date.now() + limits.scannerTimeoutMs,
        log: pino({ level: 'silent' }),
        tmpDir,
        async emitChild(child): Promise<true | ChildRefusal> {
          if (opts.acceptChildren !== undefined && children.length >= opts.acceptChildren) return 'count';
          const bytes = 'data' in child ? child.data : 'file' in child ? fs.readFileSync(child.file) : undefined;
          children.push({ ...child, bytes });
          return true;
        },
      },
      state,
    );
    const evidence = result.evidence ?? [];
    return { evidence, attributes: result.attributes ?? {}, children, heuristics: evidence.map((e) => e.heuristic) };
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/** The EICAR test file, assembled at run time so the repository holds no detectable copy. */
export function eicar(): Buffer {
  return Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join(''), 'latin1');
}

/** A zip built in memory; `password` encrypts with AES, or ZipCrypto with `zipCrypto`. */
export async function makeZip(entries: Record<string, Uint8Array>, opts: { password?: string; zipCrypto?: boolean; level?: number } = {}): Promise<Buffer> {
  const w = new ZipWriter(new Uint8ArrayWriter(), {
    ...(opts.password ? { password: opts.password, zipCrypto: opts.zipCrypto } : {}),
    ...(opts.level !== undefined ? { level: opts.level } : {}),
  });
  for (const [name, data] of Object.entries(entries)) await w.add(name, new Uint8ArrayReader(data));
  return Buffer.from(await w.close());
}

export const CLAMD_BINARY = '/usr/sbin/clamd';

/** Fails (never skips) a test that needs Debian's clamd when it is not installed. */
export function requireClamd(): void {
  assert.ok(fs.existsSync(CLAMD_BINARY), `clamd not found at ${CLAMD_BINARY}: the ClamAV tests need a real clamd (Debian: apt-get install clamav-daemon)`);
}

// ---------------------------------------------------------------------------------------------
// Office fixtures (OLE compound files with VBA projects), built at run time

/**
 * MS-OVBA "compression" with literal tokens only (allowed by the format): chunks of 3,584 bytes,
 * each token sequence a zero flag byte and eight literals. Test fixtures only.
 */
export function ovbaCompressLiteral(data: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([0x01])];
  for (let start = 0; start < data.length || start === 0; start += 3584) {
    const chunk = data.subarray(start, Math.min(start + 3584, data.length));
    const body: number[] = [];
    for (let i = 0; i < chunk.length; i += 8) body.push(0, ...chunk.subarray(i, i + 8));
    const header = 0xb000 | (body.length + 2 - 3);
    parts.push(Buffer.from([header & 0xff, header >> 8, ...body]));
    if (chunk.length === 0) break;
  }
  return Buffer.concat(parts);
}

export interface VbaModuleFixture {
  name: string;
  source: string;
  /** Stream name inside the VBA storage (defaults to the module name). */
  stream?: string;
}

/**
 * The streams of a VBA project (`VBA/dir`, `VBA/_VBA_PROJECT`, one stream per module with fake
 * p-code before its compressed source, `PROJECT`), keyed by path relative to the project's
 * storage: `Macros` in a .doc, `_VBA_PROJECT_CUR` in a .xls, the root of vbaProject.bin.
 */
export function vbaProjectStreams(modules: VbaModuleFixture[]): Record<string, Buffer> {
  const rec = (id: number, data: Buffer | number[] = []) => {
    const d = Buffer.from(data);
    const h = Buffer.alloc(6);
    h.writeUInt16LE(id, 0);
    h.writeUInt32LE(d.length, 2);
    return Buffer.concat([h, d]);
  };
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
  const ansi = (s: string) => Buffer.from(s, 'latin1');
  const uni = (s: string) => Buffer.from(s, 'utf16le');
  const version = Buffer.concat([u16(0x0009), u32(4), u32(0x5b), u16(0x0006)]);
  const libid = ansi('*\\G{00020430-0000-0000-C000-000000000046}#2.0#0#C:\\Windows\\System32\\stdole2.tlb#OLE Automation');
  const records: Buffer[] = [
    rec(0x0001, u32(1)), rec(0x0002, u32(0x409)), rec(0x0014, u32(0x409)), rec(0x0003, u16(1252)),
    rec(0x0004, ansi('Project')), rec(0x0005), rec(0x0040), rec(0x0006), rec(0x003d), rec(0x0007, u32(0)), rec(0x0008, u32(0)),
    version, rec(0x000c), rec(0x003c),
    rec(0x0016, ansi('stdole')), rec(0x003e, uni('stdole')),
    rec(0x000d, Buffer.concat([u32(libid.length), libid, u32(0), u16(0)])),
    rec(0x000f, u16(modules.length)), rec(0x0013, u16(0xffff)),
  ];
  const streams: Record<string, Buffer> = {};
  for (const m of modules) {
    const stream = m.stream ?? m.name;
    const pcode = Buffer.alloc(48, 0xcc);
    records.push(
      rec(0x0019, ansi(m.name)), rec(0x0047, uni(m.name)), rec(0x001a, ansi(stream)), rec(0x0032, uni(stream)),
      rec(0x001c), rec(0x0048), rec(0x0031, u32(pcode.length)), rec(0x001e, u32(0)), rec(0x002c, u16(0xffff)),
      rec(0x0021), rec(0x002b),
    );
    streams[`VBA/${stream}`] = Buffer.concat([pcode, ovbaCompressLiteral(Buffer.from(m.source, 'latin1'))]);
  }
  records.push(rec(0x0010));
  streams['VBA/dir'] = ovbaCompressLiteral(Buffer.concat(records));
  streams['VBA/_VBA_PROJECT'] = Buffer.from([0xcc, 0x61, 0xff, 0xff, 0x00, 0x00, 0x00]);
  streams.PROJECT = Buffer.from(`ID="{00000000-0000-0000-0000-000000000000}"\r\n${modules.map((m) => `Module=${m.name}`).join('\r\n')}\r\nName="Project"\r\n`, 'latin1');
  return streams;
}

/**
 * An OLE compound file holding `streams` (paths without a leading slash). `clsids` sets class
 * ids (GUID text) by storage path, '' being the root.
 */
export async function makeOle(streams: Record<string, Buffer>, opts: { clsids?: Record<string, string> } = {}): Promise<Buffer> {
  const { default: CFB } = await import('cfb');
  const { clsidBytes } = await import('./ole.ts');
  const c = CFB.utils.cfb_new();
  for (const [p, data] of Object.entries(streams)) CFB.utils.cfb_add(c, `/${p}`, data);
  for (const [p, guid] of Object.entries(opts.clsids ?? {})) {
    const i = p === '' ? 0 : c.FullPaths.findIndex((f) => f.replace(/\/$/, '').split('/').slice(1).join('/') === p);
    assert.ok(i >= 0, `no storage ${p}`);
    c.FileIndex[i].clsid = clsidBytes(guid);
  }
  return Buffer.from(CFB.write(c, { type: 'buffer' }) as Uint8Array);
}

/**
 * Packager (OLE1 "Package") native data carrying `data` as `fileName`; with `sizePrefix`, the
 * layout of an `\x01Ole10Native` stream.
 */
export function packagerData(fileName: string, data: Buffer, sizePrefix = false): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const temp = Buffer.from(`C:\\Users\\me\\AppData\\Local\\Temp\\${fileName}\0`, 'latin1');
  const body = Buffer.concat([
    Buffer.from([0x02, 0x00]),
    Buffer.from(`${fileName}\0C:\\Users\\me\\Desktop\\${fileName}\0`, 'latin1'),
    Buffer.from([0x00, 0x00, 0x03, 0x00]),
    u32(temp.length), temp, u32(data.length), data,
  ]);
  return sizePrefix ? Buffer.concat([u32(body.length), body]) : body;
}

/**
 * Two real managed clamds for engine tests: `clamd` with the default limits and `small` whose
 * size limits are 1 MiB. Call `stop()` in an `after` hook.
 */
export async function startTestClamds(prefix: string): Promise<{ clamd: ManagedClamd; small: ManagedClamd; stop(): Promise<void> }> {
  requireClamd();
  const dirs = [fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`)), fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-small-`))];
  const log = pino({ level: 'silent' });
  const clamd = new ManagedClamd({ dataDir: dirs[0], binary: CLAMD_BINARY, log });
  const small = new ManagedClamd({ dataDir: dirs[1], binary: CLAMD_BINARY, log, limits: limitsSchema.parse({ maxFileSize: 1024 * 1024 }) });
  const stop = async () => {
    await Promise.all([clamd.stop(), small.stop()]);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  };
  try {
    await Promise.all([clamd.start(), small.start()]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { clamd, small, stop };
}
