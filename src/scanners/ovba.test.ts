import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyTokenBitCount, decompressOvba } from './ovba.ts';
import { ovbaCompressLiteral } from './testing.ts';

/**
 * A greedy MS-OVBA compressor (test only): finds the longest earlier match within the chunk and
 * writes a copy token for it, so decompression is checked on many offset/length splits.
 */
function compressGreedy(data: Buffer): Buffer {
  const out: number[] = [0x01];
  for (let start = 0; start < data.length; start += 4096) {
    const chunk = data.subarray(start, Math.min(start + 4096, data.length));
    const body: number[] = [];
    let i = 0;
    while (i < chunk.length) {
      const flagAt = body.length;
      body.push(0);
      for (let bit = 0; bit < 8 && i < chunk.length; bit++) {
        const bits = copyTokenBitCount(i);
        const maxLen = (0xffff >> bits) + 3;
        const maxOff = 1 << (16 - bits);
        let bestLen = 0;
        let bestOff = 0;
        for (let off = 1; off <= Math.min(i, maxOff); off++) {
          let len = 0;
          while (len < maxLen && i + len < chunk.length && chunk[i + len] === chunk[i + len - off]) len++;
          if (len > bestLen) [bestLen, bestOff] = [len, off];
        }
        if (bestLen >= 3) {
          const token = ((bestOff - 1) << (16 - bits)) | (bestLen - 3);
          body.push(token & 0xff, token >> 8);
          body[flagAt] |= 1 << bit;
          i += bestLen;
        } else {
          body.push(chunk[i++]);
        }
      }
    }
    const header = 0xb000 | (body.length + 2 - 3);
    out.push(header & 0xff, header >> 8, ...body);
  }
  return Buffer.from(out);
}

test('a hand-encoded chunk with a copy token: "abc" then copy offset 3, length 6', () => {
  // flag 0b1000 (tokens 0-2 literals, token 3 a copy), copy token 0x2003: at position 3 the
  // offset takes the top 12 bits (bit count 4): offset-1 = 2, length-3 = 3.
  const container = Buffer.from([0x01, 0x05, 0xb0, 0x08, 0x61, 0x62, 0x63, 0x03, 0x20]);
  const r = decompressOvba(container);
  assert.equal(r.error, undefined);
  assert.equal(r.data.toString('latin1'), 'abcabcabc');
});

test('the copy token split widens the offset field as the chunk grows', () => {
  assert.equal(copyTokenBitCount(1), 4);
  assert.equal(copyTokenBitCount(16), 4);
  assert.equal(copyTokenBitCount(17), 5);
  assert.equal(copyTokenBitCount(33), 6);
  assert.equal(copyTokenBitCount(4096), 12);
});

test('module-sized source round-trips through compression with copy tokens, over several chunks', () => {
  const lines: string[] = ['Attribute VB_Name = "Module1"'];
  // Short repeats: late in a chunk, copy tokens only reach a few dozen bytes back.
  for (let i = 0; i < 1500; i++) lines.push(i % 50 === 0 ? `Sub Routine${i}()` : `  n = n + ${i % 7}`);
  const source = Buffer.from(lines.join('\r\n'), 'latin1');
  assert.ok(source.length > 3 * 4096);
  const compressed = compressGreedy(source);
  assert.ok(compressed.length < source.length * 0.7, `${compressed.length} of ${source.length}: 'the greedy compressor actually used copy tokens`);
  const r = decompressOvba(compressed);
  assert.equal(r.error, undefined);
  assert.ok(r.data.equals(source));
});

test('literal-only chunks (the fixtures\' compressor) and raw chunks decompress', () => {
  const text = Buffer.from('Sub AutoOpen()\r\n  Shell "calc.exe"\r\nEnd Sub\r\n'.repeat(300), 'latin1');
  assert.ok(decompressOvba(ovbaCompressLiteral(text)).data.equals(text));
  const raw = Buffer.alloc(4096, 0x41);
  const container = Buffer.concat([Buffer.from([0x01, 0xff, 0x3f]), raw, Buffer.from([0x01, 0xb0, 0x00, 0x42])]);
  const r = decompressOvba(container);
  assert.equal(r.error, undefined);
  assert.equal(r.data.length, 4097);
  assert.equal(r.data.subarray(4096).toString(), 'B');
});

test('damaged input returns what was decoded and says why it stopped', () => {
  const good = compressGreedy(Buffer.from('Attribute VB_Name = "M"\r\nSub X()\r\nEnd Sub\r\n'.repeat(20)));
  assert.equal(decompressOvba(Buffer.from([0x02, 0x00])).error, 'signature');
  assert.equal(decompressOvba(Buffer.alloc(0)).error, 'signature');
  const cut = decompressOvba(good.subarray(0, 40));
  assert.equal(cut.error, 'truncated');
  assert.ok(cut.data.toString('latin1').startsWith('Attribute VB_Name'));
  const badHeader = Buffer.from(good);
  badHeader[2] = 0x00; // signature bits of the chunk header
  assert.equal(decompressOvba(badHeader).error, 'chunk_header');
  // A copy token pointing before the start of the chunk.
  assert.equal(decompressOvba(Buffer.from([0x01, 0x03, 0xb0, 0x02, 0x61, 0xff, 0xff])).error, 'bad_copy_offset');
});

test('output is bounded: a tiny container cannot expand past the limit', () => {
  // One literal, then copy tokens 0x0fff: at position 1 that is offset 1, length 4098; past
  // position 4096 the same token means offset 512, length 10.
  const body = [0xfe, 0x61];
  for (let i = 0; i < 7; i++) body.push(0xff, 0x0f);
  const header = 0xb000 | (body.length + 2 - 3);
  const container = Buffer.from([0x01, header & 0xff, header >> 8, ...body]);
  assert.equal(decompressOvba(container).data.length, 1 + 4098 + 6 * 10);
  const limited = decompressOvba(container, 100);
  assert.equal(limited.error, 'output_limit');
  assert.equal(limited.data.length, 100);
});
