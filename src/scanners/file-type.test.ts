import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { detectType, fileTypeScanner } from './file-type.ts';
import { runScanner } from './testing.ts';

test('types come from magic bytes', () => {
  const cases: [Buffer, string][] = [
    [Buffer.from('PK\x03\x04rest', 'latin1'), 'zip'],
    [zlib.gzipSync(Buffer.from('x')), 'gzip'],
    [Buffer.from('BZh91AY&SY', 'latin1'), 'bzip2'],
    [Buffer.from('%PDF-1.7\n', 'latin1'), 'pdf'],
    [Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0]), 'ole'],
    [Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), 'elf'],
    [Buffer.from('{\\rtf1\\ansi', 'latin1'), 'rtf'],
    [Buffer.from('<!DOCTYPE html><html></html>'), 'html'],
    [Buffer.from('From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody'), 'email'],
    [Buffer.from('just some words\n'), 'text'],
    [Buffer.from([0x00, 0x01, 0x02, 0x03, 0xff, 0x00, 0x10]), 'unknown'],
    [Buffer.alloc(0), 'empty'],
  ];
  for (const [data, type] of cases) assert.equal(detectType(data).type, type, `expected ${type}`);
  const tar = Buffer.alloc(1024);
  tar.write('ustar', 257, 'latin1');
  assert.equal(detectType(tar).type, 'tar');
});

test('a PE is identified through its MZ and PE headers', () => {
  const pe = Buffer.alloc(256);
  pe.write('MZ', 0, 'latin1');
  pe.writeUInt32LE(0x80, 0x3c);
  pe.write('PE\0\0', 0x80, 'latin1');
  assert.equal(detectType(pe).type, 'pe');
});

test('a name that lies about the content is reported; executables are flagged', async () => {
  const pe = Buffer.alloc(256);
  pe.write('MZ', 0, 'latin1');
  pe.writeUInt32LE(0x80, 0x3c);
  pe.write('PE\0\0', 0x80, 'latin1');
  const r = await runScanner(fileTypeScanner, pe, { name: 'invoice.pdf' });
  assert.ok(r.heuristics.includes('TYPE_MISMATCH'));
  assert.ok(r.heuristics.includes('EXECUTABLE'));
  const ok = await runScanner(fileTypeScanner, Buffer.from('%PDF-1.4\n'), { name: 'invoice.pdf' });
  assert.deepEqual(ok.heuristics, []);
});

test('a text that merely contains "ustar" at offset 257 is not a tar (found in a JavaScript tar library)', () => {
  const lead = "\nvar USTAR = Buffer.from('";
  const js = Buffer.from(`// ${'x'.repeat(257 - 3 - lead.length)}${lead}ustar\\x20', 'binary')\n`);
  assert.equal(js.toString('latin1', 257, 262), 'ustar');
  assert.equal(detectType(js).type, 'text');
  const gnu = Buffer.alloc(1024);
  gnu.write('ustar  \0', 257, 'latin1');
  assert.equal(detectType(gnu).type, 'tar');
});
