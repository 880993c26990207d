/**
 * QR codes in images ("quishing"): PNG (pngjs) and JPEG (jpeg-js) images are decoded to RGBA
 * and searched with jsQR, light-on-dark codes included. Images inside PDFs reach this scanner
 * as JPEG children of the PDF scanner; rendered pages as screenshots.
 *
 * - A payload that is a web address (`http(s)://…`, or `www.…` which phone cameras open too)
 *   becomes a `link` child (judged by the URL scanners; fetched only under
 *   `fetchEmbeddedLinks`, like any link found inside an object) and one QR_URL finding.
 *   Other payloads (text, Wi-Fi settings, vCards) are attributes only.
 * - Several codes per image: each one found is painted over and the image searched again
 *   (at most 5); when the whole image yields nothing, four overlapping parts are searched
 *   (images up to 8 megapixels), since jsQR fails when it sees two codes at once. A large image
 *   with no code is tried once more at half size, which helps photos of codes.
 * - Bounds: at most 64 MiB and 25 megapixels (read from the header before decoding); larger,
 *   unreadable or undecodable images are skipped with a note in `attributes.qr.skipped` — the
 *   image itself is still scanned by the other engines. Other image types: nothing.
 * - Attributes: `qr: { codes: [{ payload, url?, version }], skipped? }`.
 *
 * @example
 * const r = await runScanner(qrScanner, pngWithQrCode, { name: 'scan-me.png' });
 * r.heuristics; // ['QR_URL']
 * r.children[0]; // { name: 'https://login.example.net/', relation: 'link', url: 'https://login.example.net/' }
 */
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import jsQRModule from 'jsqr';
import { mayFollowLinks } from './html.ts';
import type { Finding, Scanner } from './types.ts';

type JsQR = (data: Uint8ClampedArray, width: number, height: number, options?: { inversionAttempts?: 'dontInvert' | 'onlyInvert' | 'attemptBoth' | 'invertFirst' }) => {
  data: string;
  version: number;
  location: Record<string, { x: number; y: number } | undefined>;
} | null;
// jsqr is a CommonJS bundle whose function sits on `default`, however it is loaded.
const jsQR: JsQR = ((jsQRModule as unknown as { default?: JsQR }).default ?? jsQRModule) as JsQR;

export const QR_MAX_BYTES = 64 * 1024 * 1024;
export const QR_MAX_PIXELS = 25_000_000;
const MAX_CODES = 5;
/** Images up to this size are also searched part by part (several codes side by side). */
const REGION_SEARCH_MAX_PIXELS = 8_000_000;
/** Above this side length an image with no code found is tried again at half size. */
const DOWNSCALE_FROM = 1200;
const MAX_PAYLOAD = 4096;

export interface QrCodeFound {
  payload: string;
  url?: string;
  version: number;
}

export const qrScanner: Scanner = {
  name: 'qr',
  version: '1',
  layer: 'static',
  accepts: (info) => info.kind === 'file' && (info.fileType === 'png' || info.fileType === 'jpeg'),
  async scan(input, ctx) {
    const skipped = (why: string) => ({ attributes: { qr: { codes: [], skipped: why } } });
    if (input.info.size > QR_MAX_BYTES) return skipped(`image larger than ${QR_MAX_BYTES} bytes`);
    const bytes = await input.bytes(QR_MAX_BYTES);
    const type = input.info.fileType as 'png' | 'jpeg';
    const dims = type === 'png' ? pngSize(bytes) : jpegSize(bytes);
    if (!dims) return skipped('image header not readable');
    if (dims.width * dims.height > QR_MAX_PIXELS) return skipped(`image of ${dims.width}×${dims.height} is above ${QR_MAX_PIXELS / 1e6} megapixels`);
    let image: Rgba;
    try {
      image = type === 'png' ? decodePng(bytes) : decodeJpeg(bytes);
    } catch (err) {
      return skipped(`image not decodable: ${(err instanceof Error ? err.message : String(err)).slice(0, 200)}`);
    }
    const codes = findCodes(image, ctx.deadline);

    const evidence: Finding[] = [];
    const urls = [...new Set(codes.map((c) => c.url).filter((u): u is string => u !== undefined))];
    if (urls.length > 0) {
      evidence.push({ heuristic: 'QR_URL', details: `QR code${urls.length > 1 ? 's' : ''} linking to ${urls.slice(0, 3).join(', ')}`, data: { urls } });
      if (mayFollowLinks(input.info)) {
        for (const url of urls) {
          const answer = await ctx.emitChild({ name: url, relation: 'link', url });
          if (answer !== true) {
            evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `QR code link not scanned: ${answer} limit`, data: { refused: answer, url } });
            break;
          }
        }
      }
    }
    return { evidence, attributes: { qr: { codes } } };
  },
};

/** A web address in a QR payload, normalised, or undefined. */
export function webUrlOf(payload: string): string | undefined {
  const text = payload.trim();
  if (/\s/.test(text)) return undefined;
  const candidate = /^https?:\/\//i.test(text) ? text : /^www\.[^/]+\.[^/]+/i.test(text) ? `http://${text}` : undefined;
  if (!candidate) return undefined;
  try {
    const u = new URL(candidate);
    return u.hostname ? u.href : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

interface Rgba {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

function pngSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length < 24 || b.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

/** Dimensions from the first start-of-frame marker. */
function jpegSize(b: Buffer): { width: number; height: number } | undefined {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) {
      i += 2;
      continue;
    }
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) return { height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    i += 2 + b.readUInt16BE(i + 2);
  }
  return undefined;
}

function decodePng(b: Buffer): Rgba {
  const png = PNG.sync.read(b);
  return { data: new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), width: png.width, height: png.height };
}

function decodeJpeg(b: Buffer): Rgba {
  const img = jpeg.decode(b, { useTArray: true, formatAsRGBA: true, tolerantDecoding: true, maxResolutionInMP: QR_MAX_PIXELS / 1e6, maxMemoryUsageInMB: 512 });
  return { data: new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.length), width: img.width, height: img.height };
}

// ---------------------------------------------------------------------------------------------
// Searching

function findCodes(image: Rgba, deadline: number): QrCodeFound[] {
  const found: QrCodeFound[] = [];
  const seen = new Set<string>();
  const record = (code: { data: string; version: number }) => {
    const payload = code.data.slice(0, MAX_PAYLOAD);
    if (seen.has(payload)) return;
    seen.add(payload);
    const url = webUrlOf(payload);
    found.push({ payload, ...(url ? { url } : {}), version: code.version });
  };
  // Painting over found codes changes the pixels: work on a copy.
  const work: Rgba = { ...image, data: new Uint8ClampedArray(image.data) };
  for (let pass = 0; pass < MAX_CODES && Date.now() < deadline; pass++) {
    const hit = locate(work, deadline);
    if (!hit) break;
    record(hit);
    paintOver(work, hit.points);
  }
  if (found.length === 0 && Math.max(image.width, image.height) > DOWNSCALE_FROM && Date.now() < deadline) {
    const code = jsQR(...args(halve(image)));
    if (code) record(code);
  }
  return found;
}

/**
 * One code in the whole image or, failing that, in one of four overlapping parts: jsQR finds
 * nothing when it sees the finder patterns of two codes at once.
 */
function locate(img: Rgba, deadline: number): { data: string; version: number; points: { x: number; y: number }[] } | undefined {
  const pointsOf = (code: NonNullable<ReturnType<JsQR>>, dx: number, dy: number) =>
    Object.values(code.location).filter((p): p is { x: number; y: number } => p !== undefined).map((p) => ({ x: p.x + dx, y: p.y + dy }));
  const whole = jsQR(...args(img));
  if (whole) return { ...whole, points: pointsOf(whole, 0, 0) };
  if (img.width * img.height > REGION_SEARCH_MAX_PIXELS) return undefined;
  const w = Math.ceil(img.width * 0.6);
  const h = Math.ceil(img.height * 0.6);
  const parts = [[0, 0, w, img.height], [img.width - w, 0, w, img.height], [0, 0, img.width, h], [0, img.height - h, img.width, h]];
  for (const [x, y, pw, ph] of parts) {
    if (Date.now() >= deadline) return undefined;
    const code = jsQR(...args(crop(img, x, y, pw, ph)));
    if (code) return { ...code, points: pointsOf(code, x, y) };
  }
  return undefined;
}

function args(img: Rgba): [Uint8ClampedArray, number, number, { inversionAttempts: 'attemptBoth' }] {
  return [img.data, img.width, img.height, { inversionAttempts: 'attemptBoth' }];
}

function crop(img: Rgba, x: number, y: number, width: number, height: number): Rgba {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let row = 0; row < height; row++) {
    const from = ((y + row) * img.width + x) * 4;
    data.set(img.data.subarray(from, from + width * 4), row * width * 4);
  }
  return { data, width, height };
}

/** Fills the bounding box of a found code (plus a margin for its quiet zone) with white. */
function paintOver(img: Rgba, points: { x: number; y: number }[]): void {
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const margin = Math.max(4, (Math.max(...xs) - Math.min(...xs)) / 10);
  const x0 = Math.max(0, Math.floor(Math.min(...xs) - margin));
  const x1 = Math.min(img.width, Math.ceil(Math.max(...xs) + margin));
  const y0 = Math.max(0, Math.floor(Math.min(...ys) - margin));
  const y1 = Math.min(img.height, Math.ceil(Math.max(...ys) + margin));
  for (let y = y0; y < y1; y++) img.data.fill(255, (y * img.width + x0) * 4, (y * img.width + x1) * 4);
}

/** Half-size copy, each pixel the average of a 2×2 block. */
function halve(img: Rgba): Rgba {
  const width = Math.max(1, img.width >> 1);
  const height = Math.max(1, img.height >> 1);
  const out = new Uint8ClampedArray(width * height * 4);
  const src = img.data;
  const stride = img.width * 4;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = y * 2 * stride + x * 8;
      const d = (y * width + x) * 4;
      for (let c = 0; c < 4; c++) out[d + c] = (src[s + c] + src[s + 4 + c] + src[s + stride + c] + src[s + stride + 4 + c]) >> 2;
    }
  }
  return { data: out, width, height };
}
