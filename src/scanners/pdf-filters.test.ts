import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { ascii85Decode, asciiHexDecode, decodeStream, inflateBounded, lzwDecode, runLengthDecode, unpredict } from './pdf-filters.ts';

/** An LZW encoder that follows the PDF rules (9–12 bits, EarlyChange), for fixtures. */
function lzwEncode(data: Buffer, early = 1): { bytes: Buffer; maxWidth: number } {
  const codes: [number, number][] = [];
  let width = 9;
  let maxWidth = 9;
  const dict = new Map<string, number>();
  let next = 258;
  let decNext = 258;
  let first = true;
  const code = (w: string) => (w.length === 1 ? w.charCodeAt(0) : dict.get(w)!);
  const emitData = (c: number) => {
    codes.push([c, width]);
    // What the decoder does after reading this code.
    if (!first && decNext < 4096) decNext++;
    first = false;
    if (decNext + early >= 1 << width && width < 12) width++;
    maxWidth = Math.max(maxWidth, width);
  };
  codes.push([256, 9]);
  let w = '';
  for (const byte of data) {
    const c = String.fromCharCode(byte);
    if (w === '') {
      w = c;
      continue;
    }
    if (dict.has(w + c)) {
      w += c;
      continue;
    }
    emitData(code(w));
    if (next < 4096) dict.set(w + c, next++);
    w = c;
  }
  if (w) emitData(code(w));
  codes.push([257, width]);
  const bits: number[] = [];
  for (const [c, n] of codes) for (let i = n - 1; i >= 0; i--) bits.push((c >> i) & 1);
  while (bits.length % 8) bits.push(0);
  const out = Buffer.alloc(bits.length / 8);
  for (let i = 0; i < bits.length; i++) out[i >> 3] |= bits[i] << (7 - (i & 7));
  return { bytes: out, maxWidth };
}

describe('PDF filters', () => {
  test('LZW decodes the example of the PDF specification', () => {
    const r = lzwDecode(Buffer.from([0x80, 0x0b, 0x60, 0x50, 0x22, 0x0c, 0x0c, 0x85, 0x01]), 1000);
    assert.equal(r.data.toString('latin1'), '-----A---B');
    assert.equal(r.error, undefined);
  });

  test('LZW round-trips data whose codes grow to 11 bits', () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    const words = ['var ', 'app', '.alert', '(', ')', ';\n', 'this', 'get', 'Field', 'x', 'y', '0', '1'];
    const text = Buffer.from(Array.from({ length: 2500 }, () => words[rnd() % words.length]).join(''));
    const enc = lzwEncode(text);
    assert.ok(enc.maxWidth >= 11, `codes reached ${enc.maxWidth} bits only`);
    const r = lzwDecode(enc.bytes, 10 * 1024 * 1024);
    assert.equal(r.error, undefined);
    assert.ok(r.data.equals(text));
  });

  test('LZW stops at the cap and says so; garbage codes are an error, not a throw', () => {
    const text = Buffer.from('abcabcabcabcabcabcabcabcabcabcabcabcabcabc'.repeat(50));
    const r = lzwDecode(lzwEncode(text).bytes, 100);
    assert.equal(r.data.length, 100);
    assert.equal(r.truncated, true);
    const bad = lzwDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 100);
    assert.match(bad.error ?? '', /code/);
  });

  test('ASCII85 and ASCIIHex decode what their encoders wrote', () => {
    const a85 = ascii85Decode(Buffer.from('<~87cURD_*#-6q/;CDfTZ)+TMKB!+g%Y~>'), 1000);
    assert.equal(a85.data.toString('latin1'), 'Hello, PDF world!\0\0\0\0end');
    assert.equal(ascii85Decode(Buffer.from('z~>'), 100).data.length, 4);
    const hex = asciiHexDecode(Buffer.from('48 65 6C\n6c 6F 7>'), 100);
    assert.equal(hex.data.toString('latin1'), 'Hellop');
    assert.match(asciiHexDecode(Buffer.from('4G'), 10).error ?? '', /bad character/);
  });

  test('RunLength decodes literal and repeated runs', () => {
    const r = runLengthDecode(Buffer.from([2, 0x61, 0x62, 0x63, 254, 0x7a, 128]), 100);
    assert.equal(r.data.toString('latin1'), 'abczzz');
  });

  test('the PNG Up predictor is undone', () => {
    // two rows of 3 columns, filter type 2 (Up)
    const rows = Buffer.from([2, 1, 2, 3, 2, 1, 1, 1]);
    assert.deepEqual([...unpredict(rows, { Predictor: 12, Columns: 3 })], [1, 2, 3, 2, 3, 4]);
  });

  test('Flate output is capped (a bomb costs the cap, not its claimed size)', async () => {
    const bomb = zlib.deflateSync(Buffer.alloc(50 * 1024 * 1024));
    const started = Date.now();
    const r = await inflateBounded(bomb, 1024 * 1024);
    assert.equal(r.data.length, 1024 * 1024);
    assert.equal(r.truncated, true);
    assert.ok(Date.now() - started < 2000);
  });

  test('truncated and raw deflate streams still give their content', async () => {
    const data = Buffer.from('app.alert("hello");'.repeat(100));
    const z = zlib.deflateSync(data);
    const cut = await inflateBounded(z.subarray(0, z.length - 10), 1 << 20);
    assert.ok(cut.data.length > 0 && data.subarray(0, cut.data.length).equals(cut.data));
    const raw = await inflateBounded(zlib.deflateRawSync(data), 1 << 20);
    assert.ok(raw.data.equals(data));
  });

  test('a chain decodes in order and stops at an image filter', async () => {
    const data = Buffer.from('chain test');
    const hexOfFlate = Buffer.from(zlib.deflateSync(data).toString('hex') + '>');
    const r = await decodeStream(hexOfFlate, [{ name: 'AHx' }, { name: 'Fl' }], 1000);
    assert.equal(r.data.toString(), 'chain test');
    const img = await decodeStream(Buffer.from('xyz'), [{ name: 'DCTDecode' }], 1000);
    assert.equal(img.stoppedAt, 'DCTDecode');
  });
});
