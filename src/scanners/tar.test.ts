import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { tarScanner } from './tar.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

type Entry = Partial<tar.Header> & { name: string; data?: Buffer };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) out.push(chunk as Buffer);
  })();
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(out);
}

const has = (r: RunResult, id: string) => r.heuristics.includes(id);
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);

describe('tar scanner', () => {
  it('accepts tar only', () => {
    assert.equal(tarScanner.accepts({ kind: 'file', fileType: 'tar' } as never, undefined), true);
    assert.equal(tarScanner.accepts({ kind: 'file', fileType: 'zip' } as never, undefined), false);
  });

  it('emits regular files with their path and bytes', async () => {
    const bytes = await makeTar([
      { name: 'docs', type: 'directory' },
      { name: 'docs/eicar.com', data: eicar() },
      { name: 'readme.txt', data: Buffer.from('hello') },
      { name: 'empty', data: Buffer.alloc(0) },
    ]);
    const r = await runScanner(tarScanner, bytes, { name: 'a.tar' });
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['docs/eicar.com', 'readme.txt', 'empty'],
    );
    assert.ok(r.children.every((c) => c.relation === 'archive_member'));
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(r.children[1].bytes?.toString(), 'hello');
    assert.deepEqual(r.heuristics, []);
  });

  it('reports symbolic and hard links and does not extract them', async () => {
    const bytes = await makeTar([
      { name: 'passwd', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'hard', type: 'link', linkname: 'docs/eicar.com' },
      { name: 'file.txt', data: Buffer.from('f') },
    ]);
    const r = await runScanner(tarScanner, bytes);
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['file.txt'],
    );
    const f = finding(r, 'ARCHIVE_SYMLINK');
    assert.equal(f?.data?.count, 2);
    assert.deepEqual(
      (f?.data?.items as { type: string; target: string }[]).map((i) => [i.type, i.target]),
      [
        ['symlink', '/etc/passwd'],
        ['link', 'docs/eicar.com'],
      ],
    );
  });

  it('reports path traversal and scans the content under a safe name', async () => {
    const bytes = await makeTar([
      { name: '../../etc/cron.d/eicar.com', data: eicar() },
      { name: '/abs/x.txt', data: Buffer.from('x') },
    ]);
    const r = await runScanner(tarScanner, bytes);
    assert.deepEqual(
      r.children.map((c) => c.name),
      ['etc/cron.d/eicar.com', 'abs/x.txt'],
    );
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(finding(r, 'ARCHIVE_PATH_TRAVERSAL')?.data?.count, 2);
  });

  it('reports a double extension', async () => {
    const r = await runScanner(tarScanner, await makeTar([{ name: 'scan.jpg   .scr', data: eicar() }]));
    assert.ok(has(r, 'ARCHIVE_DOUBLE_EXTENSION'));
  });

  it('reports a truncated archive without throwing and keeps what was read', async () => {
    const random = crypto.randomBytes(10_000);
    const bytes = await makeTar([
      { name: 'eicar.com', data: eicar() },
      { name: 'random.bin', data: random },
      { name: 'never.txt', data: Buffer.from('never') },
    ]);
    const cut = bytes.subarray(0, 512 + 512 + 512 + 5000);
    const r = await runScanner(tarScanner, cut);
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.equal(r.children[1].name, 'random.bin');
    assert.deepEqual(r.children[1].bytes, random.subarray(0, 5000));
    assert.equal(r.children[1].meta?.corrupt, true);
    assert.equal(r.children.length, 2);
  });

  it('does not throw on garbage', async () => {
    const garbage = Buffer.alloc(2048, 'x');
    const r = await runScanner(tarScanner, garbage);
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    assert.equal(r.children.length, 0);
  });

  it('stops when the total extraction budget is spent', async () => {
    const bytes = await makeTar([
      { name: 'big.bin', data: crypto.randomBytes(3 * 1024 * 1024) },
      { name: 'next.txt', data: Buffer.from('next') },
    ]);
    const r = await runScanner(tarScanner, bytes, { limits: { maxTotalExtractedBytes: 1024 * 1024 } });
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.equal((bomb?.data?.items as { reason: string }[])[0].reason, 'total_bytes');
    assert.deepEqual(
      r.children.map((c) => [c.name, c.bytes?.length]),
      [['big.bin', 1024 * 1024]],
    );
  });

  it('stops emitting and reports ARCHIVE_LIMIT when the engine refuses a child', async () => {
    const bytes = await makeTar(['a', 'b', 'c'].map((n) => ({ name: n, data: Buffer.from(n) })));
    const r = await runScanner(tarScanner, bytes, { acceptChildren: 2 });
    assert.equal(r.children.length, 2);
    assert.equal((finding(r, 'ARCHIVE_LIMIT')?.data?.items as { reason: string }[])[0].reason, 'count');
  });

  it('spools members above maxInMemoryChild to a file', async () => {
    const big = crypto.randomBytes(100_000);
    const r = await runScanner(tarScanner, await makeTar([{ name: 'big.bin', data: big }]), { limits: { maxInMemoryChild: 4096 } });
    assert.ok('file' in r.children[0]);
    assert.deepEqual(r.children[0].bytes, big);
  });
});
