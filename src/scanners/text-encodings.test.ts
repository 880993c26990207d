import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { detectType } from './file-type.ts';
import { findTool } from './subprocess.ts';
import { crc16, textEncodingsScanner } from './text-encodings.ts';
import { eicar, makeZip, runScanner, type RunResult } from './testing.ts';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-text-encodings-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

function uuencode(name: string, data: Buffer, mode = '644'): string {
  const ch = (v: number) => (v === 0 ? '`' : String.fromCharCode(32 + v));
  const lines = [`begin ${mode} ${name}`];
  for (let i = 0; i < data.length; i += 45) {
    const chunk = data.subarray(i, i + 45);
    let line = ch(chunk.length);
    for (let j = 0; j < chunk.length; j += 3) {
      const [a, b = 0, c = 0] = chunk.subarray(j, j + 3);
      line += ch(a >> 2) + ch(((a << 4) | (b >> 4)) & 63) + ch(((b << 2) | (c >> 6)) & 63) + ch(c & 63);
    }
    lines.push(line);
  }
  return `${lines.join('\n')}\n\`\nend\n`;
}

const HQX = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';

/** BinHex 4.0 with run-length encoding of repeated bytes, 64-character lines. */
function binhex(name: string, data: Buffer, rsrc = Buffer.alloc(0)): string {
  const n = Buffer.from(name, 'latin1');
  const head = Buffer.concat([Buffer.from([n.length]), n, Buffer.from([0]), Buffer.from('TEXTttxt', 'latin1'), Buffer.alloc(2), Buffer.alloc(8)]);
  head.writeUInt32BE(data.length, n.length + 12);
  head.writeUInt32BE(rsrc.length, n.length + 16);
  const crc = (b: Buffer) => { const c = Buffer.alloc(2); c.writeUInt16BE(crc16(b)); return c; };
  const plain = Buffer.concat([head, crc(head), data, crc(data), rsrc, crc(rsrc)]);
  const rle: number[] = [];
  for (let i = 0; i < plain.length; ) {
    const b = plain[i];
    let run = 1;
    while (b !== 0x90 && i + run < plain.length && plain[i + run] === b && run < 255) run++;
    if (b === 0x90) rle.push(0x90, 0x00);
    else if (run >= 3) rle.push(b, 0x90, run);
    else for (let k = 0; k < run; k++) rle.push(b);
    i += run;
  }
  let text = '';
  for (let i = 0; i < rle.length; i += 3) {
    const [a, b = 0, c = 0] = rle.slice(i, i + 3);
    const v = (a << 16) | (b << 8) | c;
    const chars = i + 1 >= rle.length ? 2 : i + 2 >= rle.length ? 3 : 4;
    for (let k = 0; k < chars; k++) text += HQX[(v >> (18 - 6 * k)) & 63];
  }
  const lines = `:${text}:`.match(/.{1,64}/g)!;
  return `(This file must be converted with BinHex 4.0)\n\n${lines.join('\n')}\n`;
}

const wrap = (b64: string, width = 76, indent = '') => b64.match(new RegExp(`.{1,${width}}`, 'g'))!.map((l) => indent + l).join('\n');
const finding = (r: RunResult, id: string) => r.evidence.find((e) => e.heuristic === id);
const scan = (text: string, name = 'notes.txt') => runScanner(textEncodingsScanner, Buffer.from(text, 'latin1'), { name });

describe('text encodings', () => {
  it('accepts text, BinHex and uuencode files', () => {
    for (const t of ['text', 'binhex', 'uuencode']) assert.equal(textEncodingsScanner.accepts({ kind: 'file', fileType: t } as never, undefined), true, t);
    for (const t of ['html', 'email', 'pe']) assert.equal(textEncodingsScanner.accepts({ kind: 'file', fileType: t } as never, undefined), false, t);
    assert.equal(detectType(Buffer.from(uuencode('a.com', eicar()))).type, 'uuencode');
    assert.equal(detectType(Buffer.from(binhex('a.com', eicar()), 'latin1')).type, 'binhex');
  });

  it('decodes a uuencoded file, EICAR included', async () => {
    const r = await scan(uuencode('eicar.com', eicar()), 'eicar.uu');
    assert.deepEqual(r.children.map((c) => [c.name, c.relation]), [['eicar.com', 'embedded_object']]);
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.ok(finding(r, 'TEXT_ENCODED_FILE'));
  });

  it('decodes begin-base64 blocks and uuencoded blocks inside prose', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() });
    const text = [
      'Hello, here are the files.',
      `begin-base64 644 files.zip\n${wrap(zip.toString('base64'), 60)}\n====`,
      'and the other one:',
      uuencode('bin.dat', crypto.randomBytes(1000)),
      'regards',
    ].join('\n');
    const r = await scan(text);
    assert.deepEqual(r.children.map((c) => c.name), ['files.zip', 'bin.dat']);
    assert.deepEqual(r.children[0].bytes, zip);
    assert.equal(r.children[1].bytes?.length, 1000);
  });

  it('checks uuencoded names and reports a block cut short', async () => {
    const full = uuencode('../../tmp/eicar.com', eicar());
    const r = await scan(full.slice(0, full.indexOf('`\nend')), 'cut.uu');
    assert.equal(r.children[0].name, 'tmp/eicar.com');
    assert.deepEqual(r.children[0].bytes, eicar());
    assert.ok(finding(r, 'ARCHIVE_PATH_TRAVERSAL'));
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'));
  });

  it('decodes BinHex (data and resource forks, run-length encoded), as unar does', async () => {
    const data = Buffer.concat([eicar(), Buffer.alloc(100_000), Buffer.from([0x90, 0x90, 0x01])]);
    const text = binhex('eicar.com', data, Buffer.from('resource fork'));
    const unar = findTool('unar');
    assert.ok(unar, 'unar not found: the BinHex fixture is checked against it (apt-get install unar)');
    const file = path.join(work, 'a.hqx');
    fs.writeFileSync(file, text, 'latin1');
    assert.deepEqual(execFileSync(unar, ['-o', '-', '-i', '-p', '', file, '0'], { cwd: work, stdio: ['ignore', 'pipe', 'ignore'] }), data, 'the test encoder writes what unar reads');
    const r = await scan(text, 'a.hqx');
    assert.deepEqual(r.children.map((c) => c.name), ['eicar.com', 'eicar.com.rsrc']);
    assert.deepEqual(r.children[0].bytes, data);
    assert.equal(r.children[1].bytes?.toString(), 'resource fork');
    assert.equal(finding(r, 'ARCHIVE_CORRUPT'), undefined);
  });

  it('reports damaged BinHex data and still scans it', async () => {
    const text = binhex('eicar.com', Buffer.concat([eicar(), Buffer.from(' and some more text to damage')]));
    const at = text.lastIndexOf(':') - 10;
    const damaged = text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1);
    const r = await scan(damaged, 'a.hqx');
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'));
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].meta?.corrupt, true);
  });

  it('decodes long base64 blocks that hold a known format, indented or inline', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() });
    const pe = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(0x3a), Buffer.from([0x80, 0, 0, 0]), Buffer.alloc(0x40), Buffer.from('PE\0\0'), crypto.randomBytes(400)]);
    const text = [
      'log: attachment follows',
      wrap(zip.toString('base64'), 76, '    '),
      'done',
      `{"payload":"data:application/octet-stream;base64,${pe.toString('base64')}","ok":true}`,
    ].join('\n');
    const r = await scan(text);
    assert.deepEqual(r.children.map((c) => c.name), ['base64-1.zip', 'base64-2.exe']);
    assert.deepEqual(r.children[0].bytes, zip);
    assert.deepEqual(r.children[1].bytes, pe);
    assert.equal(finding(r, 'TEXT_ENCODED_FILE')?.data?.count, 2);
    assert.deepEqual((finding(r, 'TEXT_ENCODED_EXECUTABLE')?.data?.items as { name: string }[]).map((i) => i.name), ['base64-2.exe']);
  });

  it('ignores base64 that decodes to nothing known, and short runs', async () => {
    const random = crypto.randomBytes(3000).toString('base64');
    const shortZip = (await makeZip({ a: Buffer.from('x') })).toString('base64').slice(0, 100);
    const r = await scan(`key: ${random}\n${wrap(random)}\nshort: ${shortZip}\nplain words and sha256 ${crypto.randomBytes(32).toString('hex')}\n`);
    assert.equal(r.children.length, 0);
    assert.deepEqual(r.heuristics, []);
  });

  it('reads a large text file in one pass', async () => {
    const line = 'The quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ/+ abcdef\n';
    const zip = await makeZip({ 'eicar.com': eicar() });
    const text = line.repeat(100_000) + wrap(zip.toString('base64')) + '\n' + line.repeat(10);
    const started = Date.now();
    const r = await scan(text);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms for ${text.length} bytes`);
    assert.deepEqual(r.children.map((c) => c.name), ['base64-1.zip']);
  });

  it('is not fooled by prose that quotes the block syntax', async () => {
    const r = await scan('To send a file, start with a line like\nbegin 644 report.doc\nfollowed by the encoded lines, or use BinHex, whose files open with\n(This file must be converted with BinHex 4.0)\nand then: a colon.\n');
    assert.equal(r.children.length, 0);
    assert.deepEqual(r.heuristics, []);
  });

  it('reports a file typed BinHex or uuencode in which no block could be read', async () => {
    const r = await scan('begin 644 x.bin\n!!!!this is not uuencode at all ~~~~\n', 'x.uu');
    assert.ok(finding(r, 'ARCHIVE_CORRUPT'));
  });
});

describe('weak magics in decoded base64', () => {
  it('noise that happens to start like binary cpio or ARJ is not handed out; an ASCII cpio header is', async () => {
    for (const magic of [[0xc7, 0x71], [0x71, 0xc7], [0x60, 0xea]]) {
      const noise = Buffer.concat([Buffer.from(magic), crypto.randomBytes(300)]);
      const r = await runScanner(textEncodingsScanner, Buffer.from(`data: ${noise.toString('base64')}\n`), { name: 'notes.txt' });
      assert.equal(r.children.length, 0, `magic ${magic.map((b) => b.toString(16)).join(' ')}`);
    }
    const asciiCpio = Buffer.concat([Buffer.from('070701'), Buffer.alloc(104, 0x30), Buffer.from('eicar.com\0'), eicar()]);
    const r = await runScanner(textEncodingsScanner, Buffer.from(`data: ${asciiCpio.toString('base64')}\n`), { name: 'notes.txt' });
    assert.equal(r.children.length, 1);
  });
});
