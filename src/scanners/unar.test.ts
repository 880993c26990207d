import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { detectType } from './file-type.ts';
import { findTool } from './subprocess.ts';
import { lsarEntry, unarScanner } from './unar.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

// Debian has no RAR writer: these build stored (uncompressed) archives by hand, enough to
// test listing, names, limits and damage. Compressed and encrypted RAR extraction is unar's
// own and is not covered by a fixture here.

const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };

/** RAR 1.5–4.x: marker, archive header, stored file headers (Unix host), end block. */
export function makeRar4(files: Record<string, Buffer>): Buffer {
  const block = (type: number, flags: number, body: Buffer, data: Buffer = Buffer.alloc(0)) => {
    const head = Buffer.concat([Buffer.from([type]), u16(flags), u16(7 + body.length), body]);
    return Buffer.concat([u16(zlib.crc32(head) & 0xffff), head, data]);
  };
  const parts: Buffer[] = [Buffer.from('Rar!\x1a\x07\x00', 'latin1'), block(0x73, 0, Buffer.concat([u16(0), u32(0)]))];
  for (const [name, data] of Object.entries(files)) {
    const n = Buffer.from(name, 'utf8');
    const body = Buffer.concat([
      u32(data.length), u32(data.length), Buffer.from([3]), u32(zlib.crc32(data)), u32(0x5a210000),
      Buffer.from([20, 0x30]), u16(n.length), u32(0o100644 | 0), n,
    ]);
    parts.push(block(0x74, 0x8000, body, data));
  }
  parts.push(block(0x7b, 0x4000, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

function vint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** RAR 5: signature, main header, stored file headers (Unix host, CRC32), end header. */
export function makeRar5(files: Record<string, Buffer>): Buffer {
  const header = (fields: Buffer, data: Buffer = Buffer.alloc(0)) => {
    const withSize = Buffer.concat([vint(fields.length), fields]);
    return Buffer.concat([u32(zlib.crc32(withSize)), withSize, data]);
  };
  const parts: Buffer[] = [Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), header(Buffer.concat([vint(1), vint(0), vint(0)]))];
  for (const [name, data] of Object.entries(files)) {
    const n = Buffer.from(name, 'utf8');
    const fields = Buffer.concat([
      vint(2), vint(0x2), vint(data.length), // file header with a data area
      vint(0x4), vint(data.length), vint(0o644), u32(zlib.crc32(data)), // CRC32 present
      vint(0), vint(1), vint(n.length), n, // stored, Unix, name
    ]);
    parts.push(header(fields, data));
  }
  parts.push(header(Buffer.concat([vint(5), vint(0), vint(0)])));
  return Buffer.concat(parts);
}

const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);
const eicarChild = (r: RunResult) => r.children.find((c) => c.bytes?.equals(eicar()));

function needUnar(): void {
  assert.ok(findTool('unar') && findTool('lsar'), 'unar/lsar not found: RAR support needs them (apt-get install unar)');
}

describe('RAR through unar', () => {
  it('accepts RAR only', () => {
    assert.equal(unarScanner.accepts({ kind: 'file', fileType: 'rar' } as never, {} as never), true);
    assert.equal(unarScanner.accepts({ kind: 'file', fileType: '7z' } as never, {} as never), false);
  });

  for (const [label, make] of [['RAR 4', makeRar4], ['RAR 5', makeRar5]] as const) {
    it(`emits the members of a ${label} archive, EICAR among them`, async () => {
      needUnar();
      const bytes = make({ 'docs/eicar.com': eicar(), 'readme.txt': Buffer.from('hello rar') });
      assert.equal(detectType(bytes).type, 'rar');
      const r = await runScanner(unarScanner, bytes, { name: 'a.rar' });
      assert.deepEqual(r.children.map((c) => c.name), ['docs/eicar.com', 'readme.txt']);
      assert.ok(eicarChild(r));
      assert.equal(r.children[1].bytes?.toString(), 'hello rar');
      assert.deepEqual(r.heuristics, []);
      assert.match(String(r.attributes.format), /^RAR/);
    });

    it(`reports ${label} member names that climb out of the extraction folder`, async () => {
      needUnar();
      const r = await runScanner(unarScanner, make({ '../../etc/cron.d/eicar.com': eicar() }));
      assert.deepEqual(r.children.map((c) => c.name), ['etc/cron.d/eicar.com']);
      assert.ok(eicarChild(r));
      assert.ok(finding(r, 'ARCHIVE_PATH_TRAVERSAL'));
    });
  }

  it('reports a truncated RAR as corrupt and scans what came before the damage', async () => {
    needUnar();
    const bytes = makeRar4({ 'eicar.com': eicar(), 'big.bin': crypto.randomBytes(5000) });
    const r = await runScanner(unarScanner, bytes.subarray(0, 1000));
    assert.ok(eicarChild(r));
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'));
  });

  it('reports a garbled RAR header as corrupt (partial), never as clean', async () => {
    needUnar();
    const r = await runScanner(unarScanner, Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), crypto.randomBytes(300)]));
    assert.equal(r.children.length, 0);
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'), r.heuristics.join());
  });

  it('reports the object as not examined when unar is not installed', async () => {
    const r = await runScanner(unarScanner, makeRar4({ 'eicar.com': eicar() }), { state: { health: 'degraded' } });
    assert.equal(r.children.length, 0);
    assert.ok(finding(r, 'CONTAINER_UNOPENED'));
  });

  it('stops a member at the total extraction budget', async () => {
    needUnar();
    const r = await runScanner(unarScanner, makeRar4({ 'a.bin': crypto.randomBytes(3000), 'b.bin': crypto.randomBytes(3000) }), { limits: { maxTotalExtractedBytes: 4000 } });
    assert.deepEqual(r.children.map((c) => [c.name, c.bytes?.length]), [['a.bin', 3000], ['b.bin', 1000]]);
    assert.equal((finding(r, 'ARCHIVE_BOMB')?.data?.items as { reason: string }[])[0].reason, 'total_bytes');
  });
});

describe('lsar listing', () => {
  it('sorts entry kinds, links and devices included', () => {
    const kinds = [
      { XADFileName: 'a', XADFileSize: 3, XADIndex: 0 },
      { XADFileName: 'd', XADIsDirectory: 1, XADIndex: 1 },
      { XADFileName: 'l', XADIsLink: 1, XADLinkDestination: '/etc/passwd', XADIndex: 2 },
      { XADFileName: 'dev', XADPosixPermissions: 0o020644, XADFileSize: 0, XADIndex: 3 },
      { XADFileName: 'fifo-with-data', XADPosixPermissions: 0o010644, XADFileSize: 5, XADIndex: 4 },
      { XADFileName: 'x', XADIsEncrypted: 1, XADIsResourceFork: 1, XADIndex: 5 },
    ].map((e, i) => lsarEntry(e, i));
    assert.deepEqual(kinds.map((e) => [e.path, e.kind]), [['a', 'file'], ['d', 'dir'], ['l', 'symlink'], ['dev', 'special'], ['fifo-with-data', 'file'], ['x.rsrc', 'file']]);
    assert.equal(kinds[2].linkTarget, '/etc/passwd');
    assert.equal(kinds[5].encrypted, true);
  });
});
