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
import type { ChildSpec, ChildRefusal, Finding, SampleInfo, Scanner, ScannerInitContext } from './types.ts';
import { loadConfig } from '../config/load.ts';
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
    const info = sampleInfo(data, opts.name, opts.depth ?? 0, opts.url);
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
