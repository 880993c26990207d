import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { bzip2Scanner } from './bzip2.ts';
import { eicar, runScanner, type RunResult } from './testing.ts';

const fixtures = new URL('../../test/fixtures/bzip2/', import.meta.url);
const fixture = (name: string) => fs.readFileSync(new URL(name, fixtures));

/** Debian's bzip2 builds the inputs when it is installed; the committed fixtures cover the rest. */
const hasBzip2 = (() => {
  try {
    execFileSync('bzip2', ['--help'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = hasBzip2 ? false : 'the bzip2 command is not installed';
const bzip2 = (data: Buffer) => execFileSync('bzip2', ['-c', '-9'], { input: data, maxBuffer: 256 * 1024 * 1024 });

const has = (r: RunResult, id: string) => r.heuristics.includes(id);
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);

describe('bzip2 scanner', () => {
  it('accepts bzip2 only', () => {
    assert.equal(bzip2Scanner.accepts({ kind: 'file', fileType: 'bzip2' } as never, undefined), true);
    assert.equal(bzip2Scanner.accepts({ kind: 'file', fileType: 'gzip' } as never, undefined), false);
  });

  it('decompresses a committed fixture and names the child after the file', async () => {
    const r = await runScanner(bzip2Scanner, fixture('hello.txt.bz2'), { name: 'hello.txt.bz2' });
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].name, 'hello.txt');
    assert.equal(r.children[0].relation, 'decompressed');
    assert.equal(r.children[0].bytes?.toString(), 'hello from bzip2\n');
    assert.deepEqual(r.heuristics, []);
  });

  it('stops a bomb at the ratio limit, in bounded time and memory', async () => {
    const started = Date.now();
    const r = await runScanner(bzip2Scanner, fixture('zeros-100m.bz2'), { name: 'zeros.bz2', limits: { maxCompressionRatio: 20 } });
    assert.ok(Date.now() - started < 5_000);
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.equal((bomb?.data?.items as { reason: string }[])[0].reason, 'ratio');
    assert.equal(r.children[0].bytes?.length, 1024 * 1024);
    assert.equal(r.children[0].meta?.truncated, true);
  });

  it('stops when the total extraction budget is spent', async () => {
    const r = await runScanner(bzip2Scanner, fixture('zeros-100m.bz2'), {
      name: 'zeros.bz2',
      limits: { maxCompressionRatio: 1e9, maxTotalExtractedBytes: 3 * 1024 * 1024 },
    });
    assert.equal((finding(r, 'ARCHIVE_BOMB')?.data?.items as { reason: string }[])[0].reason, 'total_bytes');
    assert.equal(r.children[0].bytes?.length, 3 * 1024 * 1024);
  });

  it('emits the decompressed bytes', { skip }, async () => {
    for (const [name, expected] of [
      ['eicar.com.bz2', 'eicar.com'],
      ['bundle.tbz2', 'bundle.tar'],
      ['noext', 'noext'],
    ]) {
      const r = await runScanner(bzip2Scanner, bzip2(eicar()), { name });
      assert.equal(r.children[0].name, expected);
      assert.deepEqual(r.children[0].bytes, eicar());
    }
  });

  it('decompresses concatenated streams and ignores trailing bytes', { skip }, async () => {
    const data = Buffer.concat([bzip2(Buffer.from('one ')), bzip2(Buffer.from('two')), Buffer.from('junk')]);
    const r = await runScanner(bzip2Scanner, data, { name: 'x.bz2' });
    assert.equal(r.children[0].bytes?.toString(), 'one two');
    assert.equal(r.attributes.streams, 2);
    assert.deepEqual(r.heuristics, []);
  });

  it('decompresses several blocks', { skip }, async () => {
    const random = crypto.randomBytes(2_500_000);
    const r = await runScanner(bzip2Scanner, bzip2(random), { name: 'r.bz2' });
    assert.deepEqual(r.children[0].bytes, random);
  });

  it('reports a truncated stream without throwing and keeps the whole blocks read', { skip }, async () => {
    const random = crypto.randomBytes(2_500_000);
    const data = bzip2(random);
    const r = await runScanner(bzip2Scanner, data.subarray(0, data.length - 1000), { name: 'r.bz2' });
    assert.ok(has(r, 'ARCHIVE_CORRUPT'));
    const child = r.children[0];
    assert.ok(child.bytes && child.bytes.length >= 1_000_000 && child.bytes.length < random.length);
    assert.deepEqual(child.bytes, random.subarray(0, child.bytes.length));
    assert.equal(child.meta?.corrupt, true);
  });

  it('does not throw on garbage', async () => {
    for (const garbage of [Buffer.from('BZh9 not really bzip2'), Buffer.from('BZh')]) {
      const r = await runScanner(bzip2Scanner, garbage, { name: 'g.bz2' });
      assert.ok(has(r, 'ARCHIVE_CORRUPT'));
      assert.equal(r.children.length, 0);
    }
  });

  it('reports ARCHIVE_LIMIT when the engine refuses the child', async () => {
    const r = await runScanner(bzip2Scanner, fixture('hello.txt.bz2'), { name: 'h.bz2', acceptChildren: 0 });
    assert.equal(r.children.length, 0);
    assert.equal((finding(r, 'ARCHIVE_LIMIT')?.data?.items as { reason: string }[])[0].reason, 'count');
  });
});
