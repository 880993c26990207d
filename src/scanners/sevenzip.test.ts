import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { limitsSchema } from '../config/schema.ts';
import { Engine } from '../engine/engine.ts';
import { decompressScanner } from './decompress.ts';
import { detectType, fileTypeScanner } from './file-type.ts';
import { parse7zListing, sevenZipScanner, toEntry } from './sevenzip.ts';
import { findTool } from './subprocess.ts';
import { eicar, initScanner, makeZip, runScanner, type RunResult } from './testing.ts';
import { yaraScanner } from './yara.ts';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-sevenzip-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** The Debian tool `name` (package `pkg`); fails, never skips, when it is missing. */
function need(name: string, pkg: string): string {
  const p = findTool(name);
  assert.ok(p, `${name} not found: the container tests need it (apt-get install ${pkg})`);
  return p;
}

function run(bin: string, args: string[], cwd: string, input?: Buffer | string): Buffer {
  return execFileSync(bin, args, { cwd, input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
}

type Tree = Record<string, Buffer | string | { link: string }>;

/** A fresh folder holding `files` (paths with `/`; `{ link }` makes a symbolic link). */
function folder(files: Tree): string {
  const dir = fs.mkdtempSync(path.join(work, 'src-'));
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (typeof content === 'object' && !Buffer.isBuffer(content)) fs.symlinkSync(content.link, p);
    else fs.writeFileSync(p, content);
  }
  return dir;
}

const out = (ext: string) => path.join(work, `${crypto.randomUUID()}.${ext}`);
const topLevel = (dir: string) => fs.readdirSync(dir).sort();

function make7z(files: Tree, extra: string[] = []): Buffer {
  const sevenZip = need('7zz', '7zip');
  const dir = folder(files);
  const file = out('7z');
  run(sevenZip, ['a', '-bd', '-snl', ...extra, file, '--', ...topLevel(dir)], dir);
  return fs.readFileSync(file);
}

/** A cabinet with one uncompressed folder (7zz and lcab-free Debian cannot write one). */
function makeCab(files: Record<string, Buffer>): Buffer {
  const names = Object.keys(files);
  const data = Buffer.concat(names.map((n) => files[n]));
  const entries: Buffer[] = [];
  let offset = 0;
  for (const n of names) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(files[n].length, 0);
    h.writeUInt32LE(offset, 4);
    h.writeUInt16LE(0, 8); // folder 0
    h.writeUInt16LE(0x5a21, 10); // 2025-01-01
    h.writeUInt16LE(0, 12);
    h.writeUInt16LE(0x20, 14);
    entries.push(h, Buffer.from(`${n.replace(/\//g, '\\')}\0`, 'latin1'));
    offset += files[n].length;
  }
  const fileTable = Buffer.concat(entries);
  const blocks: Buffer[] = [];
  for (let i = 0; i < Math.max(1, data.length); i += 32768) {
    const chunk = data.subarray(i, i + 32768);
    const h = Buffer.alloc(8);
    h.writeUInt16LE(chunk.length, 4);
    h.writeUInt16LE(chunk.length, 6);
    blocks.push(h, chunk);
  }
  const cfdata = Buffer.concat(blocks);
  const header = Buffer.alloc(36);
  header.write('MSCF', 0, 'latin1');
  const coffFiles = 36 + 8;
  const coffData = coffFiles + fileTable.length;
  header.writeUInt32LE(coffData + cfdata.length, 8);
  header.writeUInt32LE(coffFiles, 16);
  header[24] = 3;
  header[25] = 1;
  header.writeUInt16LE(1, 26); // folders
  header.writeUInt16LE(names.length, 28);
  const folderEntry = Buffer.alloc(8);
  folderEntry.writeUInt32LE(coffData, 0);
  folderEntry.writeUInt16LE(blocks.length / 2, 4);
  folderEntry.writeUInt16LE(0, 6); // no compression
  return Buffer.concat([header, folderEntry, fileTable, cfdata]);
}

/** A minimal valid PE32 image (one .text section) to carry an overlay. */
function makePe(): Buffer {
  const b = Buffer.alloc(0x400);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x40, 0x3c);
  b.write('PE\0\0', 0x40, 'latin1');
  b.writeUInt16LE(0x14c, 0x44);
  b.writeUInt16LE(1, 0x46);
  b.writeUInt16LE(0xe0, 0x54);
  b.writeUInt16LE(0x0102, 0x56);
  const o = 0x58;
  b.writeUInt16LE(0x10b, o);
  b.writeUInt32LE(0x200, o + 4);
  b.writeUInt32LE(0x1000, o + 16);
  b.writeUInt32LE(0x1000, o + 20);
  b.writeUInt32LE(0x2000, o + 24);
  b.writeUInt32LE(0x400000, o + 28);
  b.writeUInt32LE(0x1000, o + 32);
  b.writeUInt32LE(0x200, o + 36);
  b.writeUInt16LE(6, o + 40);
  b.writeUInt16LE(6, o + 48);
  b.writeUInt32LE(0x2000, o + 56);
  b.writeUInt32LE(0x200, o + 60);
  b.writeUInt16LE(2, o + 68);
  b.writeUInt32LE(16, o + 92);
  const s = o + 0xe0;
  b.write('.text', s, 'latin1');
  b.writeUInt32LE(0x200, s + 8);
  b.writeUInt32LE(0x1000, s + 12);
  b.writeUInt32LE(0x200, s + 16);
  b.writeUInt32LE(0x200, s + 20);
  b.writeUInt32LE(0x60000020, s + 36);
  b[0x200] = 0xc3;
  return b;
}

const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);
const names = (r: RunResult) => r.children.map((c) => c.name).sort();
const eicarChild = (r: RunResult) => r.children.find((c) => c.bytes?.equals(eicar()));

describe('7-Zip containers', () => {
  it('accepts the formats it opens, executables included, and nothing else', () => {
    for (const t of ['7z', 'cab', 'cpio', 'arj', 'iso', 'udf', 'chm', 'xar', 'pe']) assert.equal(sevenZipScanner.accepts({ kind: 'file', fileType: t } as never, {} as never), true, t);
    for (const t of ['zip', 'rar', 'text', 'ole', 'xz']) assert.equal(sevenZipScanner.accepts({ kind: 'file', fileType: t } as never, {} as never), false, t);
  });

  it('emits the members of a 7z archive, EICAR among them, with no finding', async () => {
    const r = await runScanner(sevenZipScanner, make7z({ 'docs/eicar.com': eicar(), 'readme.txt': 'hello' }), { name: 'a.7z' });
    assert.deepEqual(names(r), ['docs/eicar.com', 'readme.txt']);
    assert.ok(eicarChild(r));
    assert.ok(r.children.every((c) => c.relation === 'archive_member'));
    assert.deepEqual(r.heuristics, []);
    assert.equal(r.attributes.format, '7z');
  });

  it('reports a symbolic link member and never extracts or follows it', async () => {
    const r = await runScanner(sevenZipScanner, make7z({ 'eicar.com': eicar(), passwd: { link: '/etc/passwd' } }));
    assert.deepEqual(names(r), ['eicar.com']);
    assert.deepEqual((finding(r, 'ARCHIVE_SYMLINK')?.data?.items as { name: string }[]).map((i) => i.name), ['passwd']);
  });

  it('reports names that climb out of the extraction folder and scans them under safe names', async () => {
    const sevenZip = need('7zz', '7zip');
    const dir = folder({ 'eicar.com': eicar(), 'sub/keep.txt': 'k' });
    const file = out('7z');
    run(sevenZip, ['a', '-bd', '-spf', file, '--', '../eicar.com', path.join(dir, 'sub', 'keep.txt')], path.join(dir, 'sub'));
    const r = await runScanner(sevenZipScanner, fs.readFileSync(file));
    assert.ok(names(r).includes('eicar.com'));
    assert.ok(eicarChild(r));
    assert.ok(r.children.every((c) => !c.name.startsWith('/') && !c.name.split('/').includes('..')));
    const t = finding(r, 'ARCHIVE_PATH_TRAVERSAL');
    assert.equal(t?.data?.count, 2);
  });

  it('opens an encrypted 7z with the right password and reports it locked without one', async () => {
    const bytes = make7z({ 'eicar.com': eicar() }, ['-pinfected']);
    const locked = await runScanner(sevenZipScanner, bytes);
    assert.equal(locked.children.length, 0);
    assert.equal(finding(locked, 'ARCHIVE_ENCRYPTED_UNOPENED')?.data?.count, 1);
    const wrong = await runScanner(sevenZipScanner, bytes, { passwords: ['nope'] });
    assert.equal(wrong.children.length, 0);
    assert.ok(finding(wrong, 'ARCHIVE_ENCRYPTED_UNOPENED'));
    const open = await runScanner(sevenZipScanner, bytes, { passwords: ['nope', 'infected'] });
    assert.ok(eicarChild(open));
    assert.ok(finding(open, 'ARCHIVE_ENCRYPTED'));
    assert.equal(finding(open, 'ARCHIVE_ENCRYPTED_UNOPENED'), undefined);
  });

  it('opens a 7z with encrypted headers (-mhe=on) only with the password', async () => {
    const bytes = make7z({ 'eicar.com': eicar() }, ['-pinfected', '-mhe=on']);
    const locked = await runScanner(sevenZipScanner, bytes, { passwords: ['nope'] });
    assert.equal(locked.children.length, 0);
    const f = finding(locked, 'ARCHIVE_ENCRYPTED_UNOPENED');
    assert.equal((f?.data?.items as { encryption: string }[])[0].encryption, 'encrypted_headers');
    const open = await runScanner(sevenZipScanner, bytes, { passwords: ['infected'] });
    assert.ok(eicarChild(open));
    assert.ok(finding(open, 'ARCHIVE_ENCRYPTED'));
  });

  it('flags a 200 MB bomb from its listing in bounded time, scanning only a prefix, and still finds EICAR beside it', async () => {
    const sevenZip = need('7zz', '7zip');
    const dir = folder({ 'eicar.com': eicar() });
    const file = out('7z');
    run(sevenZip, ['a', '-bd', file, '--', 'eicar.com'], dir);
    // 200 MB of zeros streamed into 7zz: nothing that large is ever written by the test.
    await new Promise<void>((resolve, reject) => {
      const p = spawn(sevenZip, ['a', '-bd', '-mx=1', '-sizeros.bin', file], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
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
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`7zz exited with ${code}`))));
    });
    const bytes = fs.readFileSync(file);
    assert.ok(bytes.length < 200_000, 'the fixture is tiny');
    const started = Date.now();
    const r = await runScanner(sevenZipScanner, bytes, { name: 'bomb.7z' });
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    const bomb = finding(r, 'ARCHIVE_BOMB');
    assert.ok(bomb, 'ARCHIVE_BOMB reported');
    assert.equal((bomb.data?.items as { name: string; reason: string }[])[0].name, 'zeros.bin');
    assert.equal((bomb.data?.items as { reason: string }[])[0].reason, 'ratio');
    const zeros = r.children.find((c) => c.name === 'zeros.bin');
    assert.ok(zeros && zeros.bytes!.length < 20 * 1024 * 1024, 'only the allowed prefix was decompressed');
    assert.equal(zeros.meta?.truncated, true);
    assert.ok(eicarChild(r));
  });

  it('stops at the total extraction budget', async () => {
    const bytes = make7z({ 'a.bin': crypto.randomBytes(3000), 'b.bin': crypto.randomBytes(3000), 'c.bin': crypto.randomBytes(3000) });
    const r = await runScanner(sevenZipScanner, bytes, { limits: { maxTotalExtractedBytes: 5000 } });
    const total = r.children.reduce((n, c) => n + (c.bytes?.length ?? 0), 0);
    assert.ok(total <= 5000, `extracted ${total} bytes`);
    assert.ok(finding(r, 'ARCHIVE_BOMB') || finding(r, 'ARCHIVE_LIMIT'));
  });

  it('reports a damaged 7z as corrupt (partial), never as clean', async () => {
    const bytes = make7z({ 'eicar.com': eicar(), 'b.txt': crypto.randomBytes(4000) });
    const r = await runScanner(sevenZipScanner, bytes.subarray(0, bytes.length - 100));
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'), r.heuristics.join());
  });

  it('opens a cabinet', async () => {
    const r = await runScanner(sevenZipScanner, makeCab({ 'eicar.com': eicar(), 'docs/readme.txt': Buffer.from('hello cab') }), { name: 'a.cab' });
    assert.equal(r.attributes.format, 'Cab');
    assert.deepEqual(names(r), ['docs/readme.txt', 'eicar.com']);
    assert.ok(eicarChild(r));
    assert.deepEqual(r.heuristics, []);
  });

  for (const format of ['newc', 'crc', 'odc', 'bin']) {
    it(`opens cpio (${format}) and reports its symbolic link`, async () => {
      const cpio = need('cpio', 'cpio');
      const dir = folder({ 'eicar.com': eicar(), link: { link: '/etc/passwd' } });
      const bytes = run(cpio, ['-o', '--quiet', '-H', format], dir, 'eicar.com\nlink\n');
      assert.equal(detectType(bytes).type, 'cpio');
      const r = await runScanner(sevenZipScanner, bytes);
      assert.deepEqual(names(r), ['eicar.com']);
      assert.ok(eicarChild(r));
      assert.equal((finding(r, 'ARCHIVE_SYMLINK')?.data?.items as { target?: string }[])[0].target, '/etc/passwd');
    });
  }

  it('scans what precedes the damage in a truncated cpio and reports the damage', async () => {
    const cpio = need('cpio', 'cpio');
    const dir = folder({ 'eicar.com': eicar(), 'second.txt': crypto.randomBytes(2000) });
    const bytes = run(cpio, ['-o', '--quiet', '-H', 'newc'], dir, 'eicar.com\nsecond.txt\n');
    const r = await runScanner(sevenZipScanner, bytes.subarray(0, 1000));
    assert.ok(eicarChild(r));
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'));
  });

  it('opens ARJ', async () => {
    const arj = need('arj', 'arj');
    const dir = folder({ 'eicar.com': eicar(), 'notes.txt': 'some notes '.repeat(50) });
    const file = out('arj');
    run(arj, ['a', '-y', file, 'eicar.com', 'notes.txt'], dir);
    const bytes = fs.readFileSync(file);
    assert.equal(detectType(bytes).type, 'arj');
    const r = await runScanner(sevenZipScanner, bytes);
    assert.deepEqual(names(r), ['eicar.com', 'notes.txt']);
    assert.ok(eicarChild(r));
  });

  it('opens an ISO 9660 image (Rock Ridge) and reports its symbolic link', async () => {
    const genisoimage = need('genisoimage', 'genisoimage');
    const dir = folder({ 'sub/eicar.com': eicar(), passwd: { link: '/etc/passwd' } });
    const file = out('iso');
    run(genisoimage, ['-quiet', '-R', '-o', file, dir], work);
    const bytes = fs.readFileSync(file);
    assert.equal(detectType(bytes.subarray(0, 0x8006)).type, 'iso');
    const r = await runScanner(sevenZipScanner, bytes);
    assert.deepEqual(names(r), ['sub/eicar.com']);
    assert.ok(eicarChild(r));
    assert.ok(finding(r, 'ARCHIVE_SYMLINK'));
  });

  it('opens a UDF image', async () => {
    const genisoimage = need('genisoimage', 'genisoimage');
    const dir = folder({ 'sub/eicar.com': eicar() });
    const file = out('iso');
    run(genisoimage, ['-quiet', '-udf', '-o', file, dir], work);
    const r = await runScanner(sevenZipScanner, fs.readFileSync(file));
    assert.ok(eicarChild(r));
  });

  it('reports a CHM it cannot read as corrupt (partial)', async () => {
    const chm = Buffer.concat([Buffer.from('ITSF\x03\x00\x00\x00\x60\x00\x00\x00', 'latin1'), crypto.randomBytes(500)]);
    assert.equal(detectType(chm).type, 'chm');
    const r = await runScanner(sevenZipScanner, chm, { name: 'help.chm' });
    assert.equal(r.children.length, 0);
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'), r.heuristics.join());
  });

  it('extracts the payload of a self-extracting executable (7z and zip overlays) and reports it', async () => {
    const sfx7z = Buffer.concat([makePe(), make7z({ 'setup/eicar.com': eicar() })]);
    assert.equal(detectType(sfx7z).type, 'pe');
    const r = await runScanner(sevenZipScanner, sfx7z, { name: 'setup.exe' });
    assert.deepEqual(names(r), ['setup/eicar.com']);
    assert.ok(eicarChild(r));
    assert.equal((finding(r, 'SFX_ARCHIVE')?.data?.items as { format: string; offset: number }[])[0].format, '7z');
    const sfxZip = Buffer.concat([makePe(), await makeZip({ 'eicar.com': eicar() })]);
    const z = await runScanner(sevenZipScanner, sfxZip, { name: 'setup.exe' });
    assert.ok(eicarChild(z));
    assert.ok(finding(z, 'SFX_ARCHIVE'));
  });

  it('leaves a plain executable alone: no sections as children, no findings', async () => {
    const r = await runScanner(sevenZipScanner, makePe(), { name: 'tool.exe' });
    assert.equal(r.children.length, 0);
    assert.deepEqual(r.heuristics, []);
    const junk = await runScanner(sevenZipScanner, Buffer.concat([makePe(), crypto.randomBytes(3000)]), { name: 'tool.exe' });
    assert.equal(junk.children.length, 0);
    assert.deepEqual(junk.heuristics, []);
  });

  it('without 7zz: falls back to unar, else reports the object as not examined', async () => {
    const bytes = make7z({ 'eicar.com': eicar() });
    const noTools = { health: 'degraded' };
    const none = await runScanner(sevenZipScanner, bytes, { state: noTools });
    assert.equal(none.children.length, 0);
    assert.equal((finding(none, 'CONTAINER_UNOPENED')?.data?.items as { tool: string }[])[0].tool, '7zz');
    const unarOnly = { health: 'degraded', unar: need('unar', 'unar'), lsar: need('lsar', 'unar') };
    const fallback = await runScanner(sevenZipScanner, bytes, { state: unarOnly });
    assert.ok(eicarChild(fallback));
    assert.equal(fallback.attributes.tool, 'unar');
    const sfx = await runScanner(sevenZipScanner, Buffer.concat([makePe(), bytes]), { state: noTools, name: 'setup.exe' });
    assert.ok(finding(sfx, 'CONTAINER_UNOPENED'), 'an executable carrying a payload signature is not passed as examined');
    const plain = await runScanner(sevenZipScanner, makePe(), { state: noTools });
    assert.deepEqual(plain.heuristics, []);
  });
});

describe('container magics', () => {
  it('tells ARJ, xar and pure UDF images apart from look-alikes', () => {
    const arj = Buffer.from([0x60, 0xea, 0x29, 0x00, 0x22, 0x0b, 0x01, 0x02, 0x10, 0x00, 0x02, 0x7b]);
    assert.equal(detectType(arj).type, 'arj');
    assert.notEqual(detectType(Buffer.from([0x60, 0xea, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 2])).type, 'arj');
    const xar = Buffer.concat([Buffer.from('xar!'), Buffer.from([0, 28, 0, 1]), Buffer.alloc(20)]);
    assert.equal(detectType(xar).type, 'xar');
    const udf = Buffer.alloc(0x8006);
    udf.write('BEA01', 0x8001, 'latin1');
    assert.equal(detectType(udf).type, 'udf');
  });
});

describe('7zz listing', () => {
  it('parses properties, errors and entries, and sorts entry kinds', () => {
    const raw = parse7zListing(
      [
        '7-Zip (z) 26.02',
        '--',
        'Path = x.cpio',
        'Type = Cpio',
        'ERRORS:',
        'Unexpected end of archive',
        'Physical Size = 250',
        '',
        '----------',
        'Path = a = b.txt',
        'Size = 68',
        'Packed Size = ',
        'Attributes = A -rw-r--r--',
        '',
        'Path = d',
        'Attributes = D drwxr-xr-x',
        '',
        'Path = l',
        'Mode = lrwxrwxrwx',
        'Symbolic Link = /etc/passwd',
        '',
        'Path = fifo',
        'Size = 0',
        'Mode = prw-r--r--',
        '',
        'Path = piped',
        'Size = 5',
        'Attributes = A prw-------',
        '',
      ].join('\n'),
    );
    assert.equal(raw.props.Type, 'Cpio');
    assert.deepEqual(raw.errors, ['Unexpected end of archive']);
    const entries = raw.entries.map((r, i) => toEntry(r, i, 'x'));
    assert.deepEqual(entries.map((e) => [e.path, e.kind]), [['a = b.txt', 'file'], ['d', 'dir'], ['l', 'symlink'], ['fifo', 'special'], ['piped', 'file']]);
    assert.equal(entries[0].size, 68);
    assert.equal(entries[0].packed, undefined);
    assert.equal(entries[2].linkTarget, '/etc/passwd');
  });
});

describe('containers through the engine', () => {
  let engine: Engine;
  let blind: Engine;
  before(async () => {
    const limits = limitsSchema.parse({});
    const policy = { scoreSuspicious: 300, scoreMalicious: 1000, scoreLikelySpam: 150, scoreSpam: 350 };
    const yara = { scanner: yaraScanner, state: await initScanner(yaraScanner) };
    const fileType = { scanner: fileTypeScanner, state: undefined };
    const tools = await initScanner(sevenZipScanner);
    const opts = { limits, policy, log: pino({ level: 'silent' }), tmpRoot: work };
    engine = new Engine([fileType, yara, { scanner: sevenZipScanner, state: tools }, { scanner: decompressScanner, state: tools }], opts);
    blind = new Engine([fileType, yara, { scanner: sevenZipScanner, state: { health: 'degraded' } }], opts);
  });

  it('finds EICAR in an xz stream inside a cpio inside a 7z: MAL', async () => {
    const cpio = run(need('cpio', 'cpio'), ['-o', '--quiet', '-H', 'newc'], folder({ 'eicar.com': eicar() }), 'eicar.com\n');
    const xz = execFileSync(need('xz', 'xz-utils'), ['-c'], { input: cpio });
    const report = await engine.scanBuffer(make7z({ 'payload.cpio.xz': xz }), 'outer.7z', { options: { passwords: [] } });
    assert.equal(report.outcome.verdict, 'MAL');
    assert.equal(report.children[0].children[0].children[0].info.name, 'eicar.com');
  });

  it('never calls a container it could not open a confident clean', async () => {
    const report = await blind.scanBuffer(make7z({ 'eicar.com': eicar() }), 'outer.7z', { options: { passwords: [] } });
    assert.equal(report.outcome.verdict, 'CLN');
    assert.equal(report.outcome.partial, true);
    assert.equal(report.outcome.confidence, 'LOW');
  });
});
