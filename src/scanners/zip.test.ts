import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as zip from '@zip.js/zip.js';
import { doubleExtension, sanitiseMemberName, stripCompressionSuffix } from './archive-common.ts';
import { zipScanner } from './zip.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

zip.configure({ useWebWorkers: false });

interface Member {
  name: string;
  data?: Uint8Array | ReadableStream<Uint8Array>;
  directory?: boolean;
  password?: string;
  zipCrypto?: boolean;
  level?: number;
}

async function makeZip(members: Member[]): Promise<Buffer> {
  const w = new zip.ZipWriter(new zip.Uint8ArrayWriter());
  for (const m of members) {
    if (m.directory) {
      await w.add(m.name, undefined, { directory: true });
      continue;
    }
    const data = m.data ?? new Uint8Array();
    const reader = data instanceof ReadableStream ? data : new zip.Uint8ArrayReader(data);
    await w.add(m.name, reader, {
      ...(m.password ? { password: m.password, zipCrypto: m.zipCrypto ?? false } : {}),
      ...(m.level !== undefined ? { level: m.level } : {}),
    });
  }
  return Buffer.from(await w.close());
}

function zeros(total: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(1024 * 1024);
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      c.enqueue(chunk);
      sent += chunk.length;
    },
  });
}

/** Duplicates the first central directory record under another name of the same length. */
function withOverlappingEntry(buf: Buffer, newName: string): Buffer {
  const eocd = buf.length - 22;
  assert.equal(buf.readUInt32LE(eocd), 0x06054b50);
  const cdSize = buf.readUInt32LE(eocd + 12);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  const record = Buffer.from(buf.subarray(cdOffset, cdOffset + cdSize));
  const nameLength = record.readUInt16LE(28);
  assert.equal(newName.length, nameLength);
  const copy = Buffer.from(record);
  copy.write(newName, 46, 'latin1');
  const end = Buffer.from(buf.subarray(eocd));
  end.writeUInt16LE(end.readUInt16LE(8) * 2, 8);
  end.writeUInt16LE(end.readUInt16LE(10) * 2, 10);
  end.writeUInt32LE(cdSize * 2, 12);
  return Buffer.concat([buf.subarray(0, cdOffset), record, copy, end]);
}

const has = (r: RunResult, id: string) => r.heuristics.includes(id);
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);

describe('zip scanner', () => {
  it('accepts zip only', () => {
    assert.equal(zipScanner.accepts({ kind: 'file', fileType: 'zip' } as never, undefined), true);
    assert.equal(zipScanner.accepts({ kind: 'file', fileType: 'tar' } as never, undefined), false);
  });

  it('emits every member with its path and bytes', async () => {
    const bytes = await makeZip([
      { name: 'docs/', directory: true },
      { name: 'docs/eicar.com', data: eicar() },
      { name: 'readme.txt', data: Buffer.from('hello'), level: 0 },
      { name: 'empty.txt', data: new Uint8Array() },
    ]);
    const r = await runScanner(zipScanner, bytes, { name: 'a.zip' });
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['docs/eicar.com', 'readme.txt', 'empty.txt'],
    );
    assert.ok(r.children.every((c) => c.relation === 'archive_member'));
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(r.children[1].bytes?.toString(), 'hello');
    assert.equal(r.children[2].bytes?.length, 0);
    assert.deepEqual(r.heuristics, []);
  });

  for (const zipCrypto of [true, false]) {
    const label = zipCrypto ? 'ZipCrypto' : 'AES';
    it(`opens a ${label} member with a supplied password, never reporting the password`, async () => {
      const bytes = await makeZip([{ name: 'eicar.com', data: eicar(), password: 's3cret-pw', zipCrypto }]);
      const r = await runScanner(zipScanner, bytes, { passwords: ['wrong', 'infected', 's3cret-pw'] });
      assert.equal(r.children.length, 1);
      assert.deepEqual(r.children[0].bytes, eicar());
      assert.ok(has(r, 'ARCHIVE_ENCRYPTED'));
      assert.ok(!has(r, 'ARCHIVE_ENCRYPTED_UNOPENED'));
      assert.equal(finding(r, 'ARCHIVE_ENCRYPTED')?.data?.count, 1);
      assert.ok(!JSON.stringify(r.evidence).includes('s3cret-pw'));
      assert.ok(!JSON.stringify(r.children.map((c) => c.meta)).includes('s3cret-pw'));
    });

    it(`reports a ${label} member it cannot open and emits nothing for it`, async () => {
      const bytes = await makeZip([
        { name: 'eicar.com', data: eicar(), password: 's3cret-pw', zipCrypto },
        { name: 'plain.txt', data: Buffer.from('plain') },
      ]);
      for (const passwords of [[], ['wrong', 'infected']]) {
        const r = await runScanner(zipScanner, bytes, { passwords });
        assert.deepEqual(
          r.children.map((c) => c.name),
          ['plain.txt'],
        );
        assert.ok(has(r, 'ARCHIVE_ENCRYPTED_UNOPENED'));
        assert.ok(!has(r, 'ARCHIVE_ENCRYPTED'));
      }
    });
  }

  it('stops a deflate bomb at the ratio limit, in bounded time and memory', async () => {
    const bytes = await makeZip([
      { name: 'zeros.bin', data: zeros(200 * 1024 * 1024) },
      { name: 'after.txt', data: Buffer.from('after') },
    ]);
    const started = Date.now();
    const r = await runScanner(zipScanner, bytes, { limits: { maxCompressionRatio: 20 } });
    assert.ok(Date.now() - started < 15_000);
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.ok(bomb);
    assert.equal((bomb.data?.items as { reason: string }[])[0].reason, 'ratio');
    // The prefix read before the stop is still scanned, and is no larger than the allowance.
    const prefix = r.children.find((c) => c.name === 'zeros.bin');
    assert.ok(prefix && prefix.bytes);
    assert.ok(prefix.bytes.length <= Math.max(1024 * 1024, 20 * bytes.length));
    assert.equal(prefix.meta?.truncated, true);
    // A bomb member does not stop the other members.
    assert.ok(r.children.some((c) => c.name === 'after.txt'));
  });

  it('stops when the total extraction budget is spent, counting the bytes themselves', async () => {
    const big = crypto.randomBytes(3 * 1024 * 1024);
    const bytes = await makeZip([
      { name: 'big.bin', data: big, level: 0 },
      { name: 'next.txt', data: Buffer.from('next') },
    ]);
    const r = await runScanner(zipScanner, bytes, { limits: { maxTotalExtractedBytes: 1024 * 1024 } });
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.equal((bomb?.data?.items as { reason: string }[])[0].reason, 'total_bytes');
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['big.bin'],
    );
    assert.equal(r.children[0].bytes?.length, 1024 * 1024);
  });

  it('reports path traversal and scans the content under a safe name', async () => {
    const bytes = await makeZip([
      { name: '../../etc/cron.d/eicar.com', data: eicar() },
      { name: '/abs/x.txt', data: Buffer.from('x') },
      { name: 'C:\\Windows\\..\\..\\y.txt', data: Buffer.from('y') },
    ]);
    const r = await runScanner(zipScanner, bytes);
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['etc/cron.d/eicar.com', 'abs/x.txt', 'Windows/y.txt'],
    );
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(r.children[0].meta?.originalName, '../../etc/cron.d/eicar.com');
    assert.equal(finding(r, 'ARCHIVE_PATH_TRAVERSAL')?.data?.count, 3);
  });

  it('reports a double extension', async () => {
    const bytes = await makeZip([
      { name: 'invoice.pdf.exe', data: eicar() },
      { name: 'report.tar.gz', data: Buffer.from('x') },
    ]);
    const r = await runScanner(zipScanner, bytes);
    const f = finding(r, 'ARCHIVE_DOUBLE_EXTENSION');
    assert.equal(f?.data?.count, 1);
    assert.equal((f?.data?.items as { name: string }[])[0].name, 'invoice.pdf.exe');
  });

  it('reports a truncated archive without throwing and still scans what is there', async () => {
    const bytes = await makeZip([
      { name: 'eicar.com', data: eicar() },
      { name: 'random.bin', data: crypto.randomBytes(64 * 1024) },
    ]);
    const cut = bytes.subarray(0, bytes.length - 1000);
    const r = await runScanner(zipScanner, cut);
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    assert.deepEqual(r.children[0].name, 'eicar.com');
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(r.children[0].meta?.recovered, true);
  });

  it('reads local entries hidden behind an empty central directory', async () => {
    const bytes = await makeZip([{ name: 'eicar.com', data: eicar() }]);
    const eocd = bytes.length - 22;
    const cdOffset = bytes.readUInt32LE(eocd + 16);
    const end = Buffer.from(bytes.subarray(eocd));
    end.writeUInt16LE(0, 8);
    end.writeUInt16LE(0, 10);
    end.writeUInt32LE(0, 12);
    const hidden = Buffer.concat([bytes.subarray(0, cdOffset), end]);
    const r = await runScanner(zipScanner, hidden);
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    assert.deepEqual(r.children[0].bytes, eicar());
  });

  it('reports damaged member data and goes on with the next members', async () => {
    const random = crypto.randomBytes(4096);
    const bytes = await makeZip([
      { name: 'a.txt', data: Buffer.alloc(50_000, 'abc') },
      { name: 'b.bin', data: random, level: 0 },
    ]);
    // Corrupt the deflated data of a.txt (right after its 30-byte local header and name).
    const damaged = Buffer.from(bytes);
    for (let i = 40; i < 60; i++) damaged[i] ^= 0xff;
    const r = await runScanner(zipScanner, damaged);
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    const b = r.children.find((c) => c.name === 'b.bin');
    assert.deepEqual(b?.bytes, random);
  });

  it('does not throw on garbage', async () => {
    for (const garbage of [Buffer.from('PK\x03\x04 not really a zip'), Buffer.alloc(0), crypto.randomBytes(10_000)]) {
      const r = await runScanner(zipScanner, garbage);
      assert.ok(has(r, 'ARCHIVE_CORRUPT'), garbage.toString('latin1', 0, 10));
      assert.equal(r.children.length, 0);
    }
  });

  it('stops emitting and reports ARCHIVE_LIMIT when the engine refuses a child', async () => {
    const bytes = await makeZip([
      { name: 'a.txt', data: Buffer.from('a') },
      { name: 'b.txt', data: Buffer.from('b') },
      { name: 'c.txt', data: Buffer.from('c') },
    ]);
    const r = await runScanner(zipScanner, bytes, { acceptChildren: 1 });
    assert.equal(r.children.length, 1);
    const limit = finding(r, 'ARCHIVE_LIMIT');
    assert.equal((limit?.data?.items as { reason: string }[])[0].reason, 'count');
    assert.equal(limit?.data?.count, 1);
  });

  it('reports ARCHIVE_LIMIT when the deadline passes', async () => {
    const bytes = await makeZip(Array.from({ length: 50 }, (_, i) => ({ name: `f${i}.bin`, data: crypto.randomBytes(100_000) })));
    const r = await runScanner(zipScanner, bytes, { limits: { scannerTimeoutMs: 1 } });
    const limit = finding(r, 'ARCHIVE_LIMIT');
    assert.equal((limit?.data?.items as { reason: string }[])[0].reason, 'deadline');
    assert.ok(r.children.length < 50);
  });

  it('reports entries that share their bytes', async () => {
    const bytes = withOverlappingEntry(await makeZip([{ name: 'a.bin', data: eicar() }]), 'b.bin');
    const r = await runScanner(zipScanner, bytes);
    assert.ok(has(r, 'ARCHIVE_OVERLAP'));
    assert.equal(finding(r, 'ARCHIVE_OVERLAP')?.data?.count, 2);
  });

  it('spools members above maxInMemoryChild to a randomly named file', async () => {
    const big = crypto.randomBytes(64 * 1024);
    const bytes = await makeZip([{ name: 'big-secret-name.bin', data: big }]);
    const r = await runScanner(zipScanner, bytes, { limits: { maxInMemoryChild: 4096 } });
    const child = r.children[0];
    assert.ok('file' in child);
    assert.ok(!path.basename(child.file).includes('big-secret-name'));
    assert.deepEqual(child.bytes, big);
  });

  it('reports symbolic links without extracting them', async () => {
    const w = new zip.ZipWriter(new zip.Uint8ArrayWriter());
    await w.add('link', new zip.TextReader('/etc/passwd'), { unixMode: 0o120777 });
    await w.add('file.txt', new zip.TextReader('f'));
    const r = await runScanner(zipScanner, Buffer.from(await w.close()));
    assert.ok(has(r, 'ARCHIVE_SYMLINK'));
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['file.txt'],
    );
  });
});

// The name checks shared by every archive scanner (src/scanners/archive-common.ts).
describe('archive member names', () => {
  it('sanitises traversal, absolute and Windows paths', () => {
    assert.deepEqual(sanitiseMemberName('a/b.txt'), { name: 'a/b.txt', traversal: false });
    assert.deepEqual(sanitiseMemberName('./a//b.txt'), { name: 'a/b.txt', traversal: false });
    assert.deepEqual(sanitiseMemberName('../x'), { name: 'x', traversal: true });
    assert.deepEqual(sanitiseMemberName('a/../../x'), { name: 'a/x', traversal: true });
    assert.deepEqual(sanitiseMemberName('/etc/passwd'), { name: 'etc/passwd', traversal: true });
    assert.deepEqual(sanitiseMemberName('..\\..\\Windows\\evil.dll'), { name: 'Windows/evil.dll', traversal: true });
    assert.deepEqual(sanitiseMemberName('C:evil.dll'), { name: 'evil.dll', traversal: true });
    assert.deepEqual(sanitiseMemberName('a/.. /x'), { name: 'a/x', traversal: true });
    assert.deepEqual(sanitiseMemberName('...hidden'), { name: '...hidden', traversal: false });
    assert.deepEqual(sanitiseMemberName('a\u0000b\n.txt'), { name: 'ab.txt', traversal: false });
    assert.deepEqual(sanitiseMemberName('../..', 'member-3'), { name: 'member-3', traversal: true });
    assert.ok(sanitiseMemberName('x'.repeat(5000) + '.exe').name.endsWith('.exe'));
  });

  it('spots executables dressed as documents', () => {
    assert.equal(doubleExtension('invoice.pdf.exe'), 'double_extension');
    assert.equal(doubleExtension('dir/Photo.JPG.scr'), 'double_extension');
    assert.equal(doubleExtension('invoice.pdf      .exe'), 'double_extension');
    assert.equal(doubleExtension('invoice\u202Efdp.exe'), 'bidi_override');
    assert.equal(doubleExtension('report.tar.gz'), undefined);
    assert.equal(doubleExtension('jquery.min.js'), undefined);
    assert.equal(doubleExtension('setup.exe'), undefined);
  });

  it('derives a decompressed name from the container name', () => {
    const suffixes = { gz: '', tgz: '.tar' };
    assert.equal(stripCompressionSuffix('a.tar.gz', suffixes), 'a.tar');
    assert.equal(stripCompressionSuffix('dir\\a.TGZ', suffixes), 'a.tar');
    assert.equal(stripCompressionSuffix('.gz', suffixes), '.gz');
    assert.equal(stripCompressionSuffix('', suffixes), 'decompressed');
  });
});
