import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import os from 'node:os';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { decompressScanner } from './decompress.ts';
import { detectType } from './file-type.ts';
import { findTool } from './subprocess.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

function need(name: string, pkg: string): string {
  const p = findTool(name);
  assert.ok(p, `${name} not found: the decompression tests need it (apt-get install ${pkg})`);
  return p;
}

/** Runs a compressor over `data` (stdin to stdout). */
function compress(bin: string, args: string[], data: Buffer): Buffer {
  return execFileSync(bin, args, { input: data, cwd: os.tmpdir(), maxBuffer: 64 * 1024 * 1024 });
}

const xz = (data: Buffer, args: string[] = []) => compress(need('xz', 'xz-utils'), ['-c', ...args], data);
const zstd = (data: Buffer) => compress(need('zstd', 'zstd'), ['-q', '-c'], data);

/**
 * lzip has no writer in Debian: a member is "LZIP", version 1, the dictionary size code, an
 * LZMA stream with an end marker (what xz writes into a .lzma file of unknown size, after its
 * 13-byte header), then CRC-32, data size and member size.
 */
function makeLzip(data: Buffer): Buffer {
  const lzma = xz(data, ['--format=lzma', '--lzma1=preset=6,dict=8MiB']);
  const head = Buffer.from([0x4c, 0x5a, 0x49, 0x50, 1, 23]); // 2^23 = 8 MiB
  const body = lzma.subarray(13);
  const trailer = Buffer.alloc(20);
  trailer.writeUInt32LE(zlib.crc32(data), 0);
  trailer.writeBigUInt64LE(BigInt(data.length), 4);
  trailer.writeBigUInt64LE(BigInt(head.length + body.length + 20), 12);
  return Buffer.concat([head, body, trailer]);
}

const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);

describe('xz, zstd, lzma and lzip', () => {
  it('accepts the single-stream formats gzip and bzip2 do not cover', () => {
    for (const t of ['xz', 'zstd', 'lzma', 'lzip']) assert.equal(decompressScanner.accepts({ kind: 'file', fileType: t } as never, {} as never), true, t);
    for (const t of ['gzip', 'bzip2', '7z']) assert.equal(decompressScanner.accepts({ kind: 'file', fileType: t } as never, {} as never), false, t);
  });

  const formats: [string, string, () => Buffer][] = [
    ['xz', 'eicar.com.xz', () => xz(eicar())],
    ['zstd', 'eicar.com.zst', () => zstd(eicar())],
    ['lzma', 'eicar.com.lzma', () => xz(eicar(), ['--format=lzma'])],
    ['lzip', 'eicar.com.lz', () => makeLzip(eicar())],
  ];
  for (const [type, name, make] of formats) {
    it(`decompresses ${type} into one child named after the file, EICAR included`, async () => {
      need('bsdcat', 'libarchive-tools');
      const bytes = make();
      assert.equal(detectType(bytes).type, type);
      const r = await runScanner(decompressScanner, bytes, { name });
      assert.equal(r.children.length, 1);
      assert.equal(r.children[0].name, 'eicar.com');
      assert.equal(r.children[0].relation, 'decompressed');
      assert.deepEqual(r.children[0].bytes, eicar());
      assert.deepEqual(r.heuristics, []);
    });
  }

  it('recognises .lzma headers without mistaking other bytes for them', () => {
    const header = (props: number, dict: number, size: Buffer) => Buffer.concat([Buffer.from([props]), Buffer.from(new Uint32Array([dict]).buffer), size, Buffer.alloc(8)]);
    assert.equal(detectType(header(0x5d, 1 << 23, Buffer.alloc(8, 0xff))).type, 'lzma');
    assert.equal(detectType(header(0x5d, 3 << 20, Buffer.from([68, 0, 0, 0, 0, 0, 0, 0]))).type, 'lzma');
    assert.notEqual(detectType(header(0x5d, 12345, Buffer.alloc(8, 0xff))).type, 'lzma');
    assert.notEqual(detectType(header(0x5d, 1 << 23, Buffer.alloc(8, 0x7f))).type, 'lzma');
    assert.notEqual(detectType(Buffer.from('] not compressed, just text\n')).type, 'lzma');
  });

  it('names a .txz/.tzst child as the tar it holds', async () => {
    const r = await runScanner(decompressScanner, xz(Buffer.from('not really a tar')), { name: 'backup.txz' });
    assert.equal(r.children[0].name, 'backup.tar');
  });

  it('cuts a 200 MB bomb at the ratio allowance in bounded time', async () => {
    need('bsdcat', 'libarchive-tools');
    const bin = need('xz', 'xz-utils');
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      const p = spawn(bin, ['-c', '-1'], { stdio: ['pipe', 'pipe', 'ignore'] });
      const out: Buffer[] = [];
      p.stdout.on('data', (c: Buffer) => out.push(c));
      p.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`xz exited with ${code}`))));
      const zeros = Buffer.alloc(1024 * 1024);
      let left = 200;
      const write = () => {
        while (left > 0) {
          left--;
          if (!p.stdin.write(zeros)) return void p.stdin.once('drain', write);
        }
        p.stdin.end();
      };
      write();
    });
    const started = Date.now();
    const r = await runScanner(decompressScanner, bytes, { name: 'zeros.xz' });
    assert.ok(Date.now() - started < 10_000);
    assert.equal((finding(r, 'ARCHIVE_BOMB')?.data?.items as { reason: string }[])[0].reason, 'ratio');
    assert.ok(r.children[0].bytes!.length < 20 * 1024 * 1024);
  });

  it('reports a damaged stream as corrupt (partial)', async () => {
    need('bsdcat', 'libarchive-tools');
    const bytes = xz(crypto.randomBytes(200_000));
    const r = await runScanner(decompressScanner, bytes.subarray(0, 100_000), { name: 'a.xz' });
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'), r.heuristics.join());
  });

  it('reports the object as not examined when bsdcat is not installed', async () => {
    const r = await runScanner(decompressScanner, xz(eicar()), { state: { health: 'degraded' } });
    assert.equal(r.children.length, 0);
    assert.ok(finding(r, 'CONTAINER_UNOPENED'));
  });
});
