import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { limitsSchema } from '../config/schema.ts';
import { heuristics } from '../verdict/heuristics.ts';
import { ArchiveSession } from './archive-common.ts';
import { emitTree, findContainerTools, planExtraction, splitForBudget, watchTree, type ListedEntry, type Listing } from './container-extract.ts';
import type { ChildSpec, ScanContext } from './types.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-container-extract-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const limits = limitsSchema.parse({});
const entry = (p: Partial<ListedEntry> & { path: string }, index = 0): ListedEntry => ({ kind: 'file', encrypted: false, index, ...p });
const listing = (entries: ListedEntry[]): Listing => ({ format: 'test', entries, errors: [], attributes: {} });

function session(tmpDir: string, children: (ChildSpec & { bytes?: Buffer })[]): ArchiveSession {
  const ctx: ScanContext = {
    options: { passwords: [] },
    limits,
    signal: new AbortController().signal,
    deadline: Date.now() + 30_000,
    log: pino({ level: 'silent' }),
    tmpDir,
    async emitChild(child) {
      children.push({ ...child, bytes: 'data' in child ? child.data : 'file' in child ? fs.readFileSync(child.file) : undefined });
      return true;
    },
  };
  return new ArchiveSession(ctx, 'archive_member');
}

describe('container extraction plan', () => {
  it('judges solid-block members by their share of the block and flags bombs from declared sizes', () => {
    const plan = planExtraction(
      listing([
        entry({ path: 'small.txt', size: 68, packed: 40_000, block: '0' }),
        entry({ path: 'zeros.bin', size: 200_000_000, block: '0' }, 1),
        entry({ path: 'docs', kind: 'dir' }, 2),
      ]),
      40_500,
      limits,
    );
    assert.deepEqual(plan.files.map((f) => [f.path, f.bomb]), [['small.txt', false], ['zeros.bin', true]]);
    assert.ok(plan.files[1].compressed <= 40_000 && plan.files[1].compressed > 39_000, 'the big member owns almost all of the block');
  });

  it('uses per-member packed sizes, else a share of the whole file', () => {
    const perMember = planExtraction(listing([entry({ path: 'a', size: 10_000_000, packed: 9_000_000 })]), 9_000_100, limits);
    assert.equal(perMember.files[0].bomb, false);
    const shared = planExtraction(listing([entry({ path: 'a', size: 300_000_000 }), entry({ path: 'b', size: 100 }, 1)]), 1_000_000, limits);
    assert.equal(shared.files[0].bomb, true, '300 MB out of a 1 MB cabinet');
    assert.equal(shared.files[1].bomb, false);
  });

  it('never calls a member a bomb below 1 MiB, and keeps unknown sizes', () => {
    const plan = planExtraction(listing([entry({ path: 'a', size: 1024 * 1024, packed: 10 }), entry({ path: 'b' }, 1)]), 100, limits);
    assert.deepEqual(plan.files.map((f) => f.bomb), [false, false]);
  });

  it('sets links and specials aside and applies the member count limit', () => {
    const plan = planExtraction(
      listing([
        entry({ path: 'a' }),
        entry({ path: 'l', kind: 'symlink', linkTarget: '/etc/passwd' }, 1),
        entry({ path: 'h', kind: 'hardlink' }, 2),
        entry({ path: 'fifo', kind: 'special' }, 3),
        entry({ path: 'b' }, 4),
        entry({ path: 'c' }, 5),
      ]),
      100,
      limitsSchema.parse({ maxChildren: 2 }),
    );
    assert.deepEqual(plan.files.map((f) => f.path), ['a', 'b']);
    assert.deepEqual(plan.links.map((l) => l.path), ['l', 'h']);
    assert.equal(plan.special, 1);
    assert.equal(plan.overCount, 1);
  });

  it('streams bombs and the member that crosses the total budget, and stops after it', () => {
    const files = planExtraction(
      listing([entry({ path: 'a', size: 600 }), entry({ path: 'bomb', size: 500_000_000, packed: 10 }, 1), entry({ path: 'b', size: 600 }, 2), entry({ path: 'c', size: 10 }, 3)]),
      1000,
      limits,
    ).files;
    const { bulk, streamed } = splitForBudget(files, 1000);
    assert.deepEqual(bulk.map((f) => f.path), ['a']);
    assert.deepEqual(streamed.map((f) => f.path), ['bomb', 'b']);
  });
});

describe('extracted tree', () => {
  it('emits regular files with their archive names and never follows links', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'tree-'));
    const out = path.join(dir, 'out');
    fs.mkdirSync(path.join(out, 'docs'), { recursive: true });
    fs.writeFileSync(path.join(out, 'docs', 'a.txt'), 'hello');
    fs.writeFileSync(path.join(dir, 'secret'), 'outside the output folder');
    fs.symlinkSync(path.join(dir, 'secret'), path.join(out, 'docs', 'link'));
    fs.symlinkSync(dir, path.join(out, 'dirlink'));
    const children: (ChildSpec & { bytes?: Buffer })[] = [];
    const s = session(dir, children);
    const found = await emitTree(s, out, {
      entries: planExtraction(listing([entry({ path: '../docs/a.txt', size: 5 })]), 5, limits).files,
    });
    s.close();
    const r = s.result();
    assert.equal(found, 1);
    assert.deepEqual(children.map((c) => [c.name, c.bytes?.toString()]), [['docs/a.txt', 'hello']]);
    assert.ok(!children.some((c) => c.bytes?.toString().includes('outside')), 'nothing read through a link');
    const links = (r.evidence ?? []).find((e) => e.heuristic === 'ARCHIVE_SYMLINK');
    assert.equal(links?.data?.count, 2);
    // The listing name climbed out: reported, and the child keeps the safe name.
    assert.ok((r.evidence ?? []).some((e) => e.heuristic === 'ARCHIVE_PATH_TRAVERSAL'));
    assert.equal(fs.existsSync(path.join(out, 'docs', 'a.txt')), false, 'handed-over files are deleted');
  });

  it('watches a folder grow and calls out once it passes the cap', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'watch-'));
    let seen = 0;
    const w = watchTree(dir, 1000, (size) => {
      seen = size;
    });
    fs.writeFileSync(path.join(dir, 'a'), Buffer.alloc(600));
    fs.writeFileSync(path.join(dir, 'b'), Buffer.alloc(600));
    const until = Date.now() + 5_000;
    while (seen === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await w.stop();
    assert.equal(seen, 1200);
  });
});

describe('container tools', () => {
  it('finds the Debian extractors and says so in one health line', () => {
    const t = findContainerTools();
    assert.ok(t.sevenZip, "7zz not found: the container scanners need Debian's 7zip package (apt-get install 7zip)");
    assert.ok(t.unar && t.lsar, 'unar/lsar not found: apt-get install unar');
    assert.ok(t.bsdcat, 'bsdcat not found: apt-get install libarchive-tools');
    assert.match(t.health, /^ready/);
  });

  it('marks an unopened container as partial so it can never be a confident clean', () => {
    assert.equal(heuristics.CONTAINER_UNOPENED.partial, true);
    assert.equal(heuristics.ARCHIVE_CORRUPT.partial, true);
  });
});
