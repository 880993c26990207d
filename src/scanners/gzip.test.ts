import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { gzipScanner, parseGzipHeader } from './gzip.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

/** A gzip member with the original file name in its header (as `gzip -N` writes). */
function gzipNamed(data: Buffer, name: string): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlib.crc32(data), 0);
  trailer.writeUInt32LE(data.length >>> 0, 4);
  return Buffer.concat([header, Buffer.from(name + '\0', 'latin1'), zlib.deflateRawSync(data), trailer]);
}

async function gzipZeros(total: number): Promise<Buffer> {
  const chunk = Buffer.alloc(1024 * 1024);
  const source = Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += chunk.length) yield chunk;
    })(),
  );
  const out: Buffer[] = [];
  for await (const c of source.pipe(zlib.createGzip({ level: 1 }))) out.push(c as Buffer);
  return Buffer.concat(out);
}

const has = (r: RunResult, id: string) => r.heuristics.includes(id);
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);

describe('gzip scanner', () => {
  it('accepts gzip only', () => {
    assert.equal(gzipScanner.accepts({ kind: 'file', fileType: 'gzip' } as never, undefined), true);
    assert.equal(gzipScanner.accepts({ kind: 'file', fileType: 'bzip2' } as never, undefined), false);
  });

  it('names the child after the original name stored in the header', async () => {
    const r = await runScanner(gzipScanner, gzipNamed(eicar(), 'eicar.com'), { name: 'download.gz' });
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].name, 'eicar.com');
    assert.equal(r.children[0].relation, 'decompressed');
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.deepEqual(r.heuristics, []);
  });

  it('names the child after the file without its suffix otherwise', async () => {
    const gz = zlib.gzipSync(eicar());
    for (const [name, expected] of [
      ['eicar.com.gz', 'eicar.com'],
      ['bundle.tgz', 'bundle.tar'],
      ['dir/bundle.TAR.GZ', 'bundle.TAR'],
      ['picture.svgz', 'picture.svg'],
      ['noext', 'noext'],
    ]) {
      const r = await runScanner(gzipScanner, gz, { name });
      assert.equal(r.children[0].name, expected);
      assert.deepEqual(r.children[0].bytes, eicar());
    }
  });

  it('decompresses every member and ignores trailing bytes, as gunzip does', async () => {
    const gz = Buffer.concat([zlib.gzipSync(Buffer.from('one ')), zlib.gzipSync(Buffer.from('two')), Buffer.from('trailing junk')]);
    const r = await runScanner(gzipScanner, gz, { name: 'a.gz' });
    assert.equal(r.children[0].bytes?.toString(), 'one two');
    assert.equal(r.attributes.streams, 2);
    assert.equal(r.attributes.trailingBytes, 13);
    assert.deepEqual(r.heuristics, []);
  });

  it('stops a bomb at the ratio limit, in bounded time and memory', async () => {
    const gz = await gzipZeros(200 * 1024 * 1024);
    const started = Date.now();
    const r = await runScanner(gzipScanner, gz, { name: 'zeros.gz', limits: { maxCompressionRatio: 20 } });
    assert.ok(Date.now() - started < 15_000);
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.equal((bomb?.data?.items as { reason: string }[])[0].reason, 'ratio');
    const child = r.children[0];
    assert.ok(child.bytes && child.bytes.length <= Math.max(1024 * 1024, 20 * gz.length));
    assert.equal(child.meta?.truncated, true);
  });

  it('reports a truncated stream without throwing and keeps what was read', async () => {
    const random = crypto.randomBytes(200_000);
    const gz = zlib.gzipSync(random);
    const r = await runScanner(gzipScanner, gz.subarray(0, 150_000), { name: 'r.bin.gz' });
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    const child = r.children[0];
    assert.ok(child.bytes && child.bytes.length > 100_000 && child.bytes.length < 200_000);
    assert.deepEqual(child.bytes, random.subarray(0, child.bytes.length));
    assert.equal(child.meta?.corrupt, true);
  });

  it('reports a checksum mismatch', async () => {
    const gz = zlib.gzipSync(eicar());
    gz[gz.length - 8] ^= 0xff;
    const r = await runScanner(gzipScanner, gz, { name: 'e.gz' });
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    assert.deepEqual(r.children[0].bytes, eicar());
  });

  it('reports a path-traversal name in the header and uses a safe one', async () => {
    const r = await runScanner(gzipScanner, gzipNamed(eicar(), '../../etc/cron.d/job'), { name: 'x.gz' });
    assert.ok(has(r, 'ARCHIVE_PATH_TRAVERSAL'));
    assert.equal(r.children[0].name, 'etc/cron.d/job');
  });

  it('reports a double extension in the header name', async () => {
    const r = await runScanner(gzipScanner, gzipNamed(eicar(), 'invoice.pdf.exe'), { name: 'x.gz' });
    assert.ok(has(r, 'ARCHIVE_DOUBLE_EXTENSION'));
  });

  it('does not throw on garbage', async () => {
    for (const garbage of [Buffer.from([0x1f, 0x8b]), Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]), Buffer.from('plain')]) {
      const r = await runScanner(gzipScanner, garbage, { name: 'g.gz' });
      assert.ok(has(r, 'ARCHIVE_CORRUPT'));
      assert.equal(r.children.length, 0);
    }
  });

  it('reports ARCHIVE_LIMIT when the engine refuses the child', async () => {
    const r = await runScanner(gzipScanner, zlib.gzipSync(eicar()), { name: 'e.gz', acceptChildren: 0 });
    assert.equal(r.children.length, 0);
    assert.equal((finding(r, 'ARCHIVE_LIMIT')?.data?.items as { reason: string }[])[0].reason, 'count');
  });

  it('spools a child above maxInMemoryChild to a file', async () => {
    const random = crypto.randomBytes(100_000);
    const r = await runScanner(gzipScanner, zlib.gzipSync(random), { name: 'r.gz', limits: { maxInMemoryChild: 4096 } });
    assert.ok('file' in r.children[0]);
    assert.deepEqual(r.children[0].bytes, random);
  });

  it('parses optional header fields', () => {
    const h = Buffer.concat([
      Buffer.from([0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3, 3, 0, 1, 2, 3]),
      Buffer.from('name.txt\0a comment\0', 'latin1'),
      Buffer.from([0xaa, 0xbb]),
    ]);
    assert.deepEqual(parseGzipHeader(h, true), { ok: true, length: h.length, name: 'name.txt' });
    assert.equal(parseGzipHeader(h.subarray(0, 20), true).ok, false);
  });
});
