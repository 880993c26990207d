import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { pdfScanner } from './pdf.ts';
import { qrScanner, webUrlOf, type QrCodeFound } from './qr.ts';
import { runScanner } from './testing.ts';

const QRENCODE = '/usr/bin/qrencode';

before(() => {
  assert.ok(fs.existsSync(QRENCODE), `qrencode not found at ${QRENCODE}: the QR tests build their images with it (Debian: apt-get install qrencode)`);
});

/** A PNG QR code made by Debian's qrencode (4 px modules, 4-module quiet zone). */
function qrPng(text: string): Buffer {
  return execFileSync(QRENCODE, ['-t', 'PNG', '-s', '4', '-o', '-', text]);
}

function rgba(png: Buffer): PNG {
  return PNG.sync.read(png);
}

function toPng(img: { width: number; height: number; data: Buffer }): Buffer {
  const p = new PNG({ width: img.width, height: img.height });
  img.data.copy(p.data);
  return PNG.sync.write(p);
}

function toJpeg(png: Buffer, quality = 90): Buffer {
  const img = rgba(png);
  return Buffer.from(jpeg.encode({ data: img.data, width: img.width, height: img.height }, quality).data);
}

/** Images side by side on a white canvas. */
function sideBySide(...pngs: Buffer[]): Buffer {
  const imgs = pngs.map(rgba);
  const width = imgs.reduce((w, i) => w + i.width, 0);
  const height = Math.max(...imgs.map((i) => i.height));
  const out = { width, height, data: Buffer.alloc(width * height * 4, 0xff) };
  let x0 = 0;
  for (const img of imgs) {
    for (let y = 0; y < img.height; y++) img.data.copy(out.data, (y * width + x0) * 4, y * img.width * 4, (y + 1) * img.width * 4);
    x0 += img.width;
  }
  return toPng(out);
}

const codes = (r: { attributes: Record<string, unknown> }) => (r.attributes.qr as { codes: QrCodeFound[]; skipped?: string });

test('a URL in a PNG QR code: finding and link child', async () => {
  const r = await runScanner(qrScanner, qrPng('http://127.0.0.1:1234/login'), { name: 'scan-me.png' });
  assert.deepEqual(r.heuristics, ['QR_URL']);
  assert.deepEqual(r.evidence[0].data?.urls, ['http://127.0.0.1:1234/login']);
  assert.deepEqual(r.children.map((c) => [c.name, c.relation, 'url' in c ? c.url : undefined]), [['http://127.0.0.1:1234/login', 'link', 'http://127.0.0.1:1234/login']]);
  assert.equal(codes(r).codes[0].payload, 'http://127.0.0.1:1234/login');
});

test('the same code in a JPEG', async () => {
  const r = await runScanner(qrScanner, toJpeg(qrPng('https://pay.example.net/invoice?id=42')), { name: 'photo.jpg' });
  assert.deepEqual(r.heuristics, ['QR_URL']);
  assert.equal(r.children[0].name, 'https://pay.example.net/invoice?id=42');
});

test('a light-on-dark code is read too', async () => {
  const img = rgba(qrPng('http://127.0.0.1:1234/inverted'));
  for (let i = 0; i < img.data.length; i += 4) for (let c = 0; c < 3; c++) img.data[i + c] = 255 - img.data[i + c];
  const r = await runScanner(qrScanner, toPng(img), { name: 'dark.png' });
  assert.deepEqual(r.evidence[0]?.data?.urls, ['http://127.0.0.1:1234/inverted']);
});

test('two codes in one image are both found', async () => {
  const r = await runScanner(qrScanner, sideBySide(qrPng('http://127.0.0.1:1234/one'), qrPng('WIFI:S:guest;T:WPA;P:secret;;')), { name: 'poster.png' });
  assert.deepEqual(codes(r).codes.map((c) => c.payload).sort(), ['WIFI:S:guest;T:WPA;P:secret;;', 'http://127.0.0.1:1234/one']);
  assert.equal(r.children.length, 1, 'only the web address becomes a child');
});

test('a text payload is an attribute, not a finding', async () => {
  const r = await runScanner(qrScanner, qrPng('Table 12 - thank you for dining with us'), { name: 'menu.png' });
  assert.deepEqual(r.heuristics, []);
  assert.equal(r.children.length, 0);
  assert.deepEqual(codes(r).codes.map((c) => c.payload), ['Table 12 - thank you for dining with us']);
});

test('an image without a code has no findings', async () => {
  const blank = toPng({ width: 1600, height: 1300, data: Buffer.alloc(1600 * 1300 * 4, 0xee) });
  const r = await runScanner(qrScanner, blank, { name: 'blank.png' });
  assert.deepEqual(r.heuristics, []);
  assert.deepEqual(codes(r), { codes: [] });
});

test('too large or broken images are skipped with a note, never an error', async () => {
  const huge = Buffer.from(qrPng('x'));
  huge.writeUInt32BE(10_000, 16);
  huge.writeUInt32BE(10_000, 20);
  const big = await runScanner(qrScanner, huge, { name: 'huge.png' });
  assert.match(String(codes(big).skipped), /10000×10000 is above 25 megapixels/);
  const broken = Buffer.concat([qrPng('x').subarray(0, 40), Buffer.alloc(100, 7)]);
  const r = await runScanner(qrScanner, broken, { name: 'broken.png' });
  assert.match(String(codes(r).skipped), /not decodable/);
  assert.deepEqual(r.heuristics, []);
});

test('no link child from content reached by following a link (one hop), the finding stays', async () => {
  const r = await runScanner(qrScanner, qrPng('http://127.0.0.1:1234/deep'), { name: 'deep.png', relation: 'fetched_content', depth: 2 });
  assert.deepEqual(r.heuristics, ['QR_URL']);
  assert.equal(r.children.length, 0);
});

test('a QR code printed in a PDF: the PDF scanner hands out its JPEG, the QR scanner reads it', async () => {
  const img = toJpeg(qrPng('http://127.0.0.1:1234/from-pdf'));
  const { width, height } = rgba(qrPng('http://127.0.0.1:1234/from-pdf'));
  const content = Buffer.from(`q ${width} 0 0 ${height} 72 500 cm /Im1 Do Q`);
  const objects: Buffer[] = [
    Buffer.from('<< /Type /Catalog /Pages 2 0 R >>'),
    Buffer.from('<< /Type /Pages /Kids [3 0 R] /Count 1 >>'),
    Buffer.from('<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 5 0 R >> >> /Contents 4 0 R >>'),
    Buffer.concat([Buffer.from(`<< /Length ${content.length} >>\nstream\n`), content, Buffer.from('\nendstream')]),
    Buffer.concat([Buffer.from(`<< /Type /XObject /Subtype /Image /Width ${width} /Height ${height} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length ${img.length} >>\nstream\n`), img, Buffer.from('\nendstream')]),
  ];
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n')];
  objects.forEach((body, i) => parts.push(Buffer.from(`${i + 1} 0 obj\n`), body, Buffer.from('\nendobj\n')));
  parts.push(Buffer.from('trailer\n<< /Root 1 0 R >>\n%%EOF\n'));
  const pdf = await runScanner(pdfScanner, Buffer.concat(parts), { name: 'invoice.pdf' });
  assert.deepEqual(pdf.children.map((c) => [c.name, c.relation]), [['image-5.jpg', 'embedded_object']]);
  assert.equal(pdf.attributes.emittedImages, 1);
  const r = await runScanner(qrScanner, pdf.children[0].bytes!, { name: 'image-5.jpg', depth: 1, relation: 'embedded_object' });
  assert.deepEqual(r.heuristics, ['QR_URL']);
  assert.equal(r.children[0].name, 'http://127.0.0.1:1234/from-pdf');
});

test('webUrlOf: web addresses only', () => {
  assert.equal(webUrlOf(' HTTPS://Example.COM/a '), 'https://example.com/a');
  assert.equal(webUrlOf('www.example.com/login'), 'http://www.example.com/login');
  assert.equal(webUrlOf('mailto:a@example.com'), undefined);
  assert.equal(webUrlOf('javascript:alert(1)'), undefined);
  assert.equal(webUrlOf('http://exa mple.com/'), undefined);
  assert.equal(webUrlOf('hello world'), undefined);
});
