/**
 * PDF stream filters, written for the PDF scanner: FlateDecode (zlib, raw deflate as a
 * fallback), ASCIIHexDecode, ASCII85Decode, LZWDecode (with EarlyChange), RunLengthDecode and
 * the TIFF/PNG predictors of `/DecodeParms`. Every decoder stops at `cap` output bytes and
 * says so (`truncated`): a 10 KB stream that claims to expand to 10 GB costs 10 KB of work per
 * MB of cap, never an out-of-memory. Damaged data yields what could be decoded plus `error`;
 * nothing here throws on bad input.
 *
 * @example
 * const r = await decodeStream(raw, [{ name: 'FlateDecode' }], 1024 * 1024);
 * r.data; r.truncated; r.error; r.stoppedAt // a filter we do not decode (DCTDecode...)
 */
import zlib from 'node:zlib';

export interface FilterSpec {
  /** Filter name without the slash, abbreviations allowed (Fl, AHx, A85, LZW, RL). */
  name: string;
  /** The filter's `/DecodeParms` entries that matter here. */
  params?: { Predictor?: number; Colors?: number; BitsPerComponent?: number; Columns?: number; EarlyChange?: number };
}

export interface Decoded {
  data: Buffer;
  /** The output reached `cap` and was cut there. */
  truncated: boolean;
  /** Damage met while decoding (what came before it is in `data`). */
  error?: string;
  /** A filter this module does not decode (images, Crypt); `data` is its still-encoded input. */
  stoppedAt?: string;
}

const ALIASES: Record<string, string> = {
  Fl: 'FlateDecode',
  AHx: 'ASCIIHexDecode',
  A85: 'ASCII85Decode',
  LZW: 'LZWDecode',
  RL: 'RunLengthDecode',
};

/** Applies a filter chain in order; stops at the first filter it does not know. */
export async function decodeStream(raw: Buffer, filters: FilterSpec[], cap: number): Promise<Decoded> {
  let data = raw;
  let truncated = false;
  for (const f of filters) {
    const name = ALIASES[f.name] ?? f.name;
    let r: Decoded;
    switch (name) {
      case 'FlateDecode':
        r = await inflateBounded(data, cap);
        break;
      case 'ASCIIHexDecode':
        r = asciiHexDecode(data, cap);
        break;
      case 'ASCII85Decode':
        r = ascii85Decode(data, cap);
        break;
      case 'LZWDecode':
        r = lzwDecode(data, cap, f.params?.EarlyChange ?? 1);
        break;
      case 'RunLengthDecode':
        r = runLengthDecode(data, cap);
        break;
      default:
        return { data, truncated, stoppedAt: name };
    }
    if ((name === 'FlateDecode' || name === 'LZWDecode') && (f.params?.Predictor ?? 1) > 1) {
      r = { ...r, data: unpredict(r.data, f.params!) };
    }
    data = r.data;
    truncated ||= r.truncated;
    if (r.error) return { data, truncated, error: `${name}: ${r.error}` };
  }
  return { data, truncated };
}

/**
 * Inflates zlib data (raw deflate when the zlib header is missing, as some writers do), keeping
 * at most `cap` bytes. A truncated stream gives what it holds, as readers do.
 */
export async function inflateBounded(input: Buffer, cap: number): Promise<Decoded> {
  const zlibHeader = input.length >= 2 && (input[0] & 0x0f) === 8 && ((input[0] << 8) | input[1]) % 31 === 0;
  const inflater = zlibHeader ? zlib.createInflate({ finishFlush: zlib.constants.Z_SYNC_FLUSH, chunkSize: 64 * 1024 }) : zlib.createInflateRaw({ finishFlush: zlib.constants.Z_SYNC_FLUSH, chunkSize: 64 * 1024 });
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  let error: string | undefined;
  await new Promise<void>((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      inflater.removeAllListeners('data');
      resolve();
    };
    inflater.on('data', (chunk: Buffer) => {
      if (done) return;
      const room = cap - size;
      if (chunk.length > room) {
        if (room > 0) chunks.push(chunk.subarray(0, room));
        size = cap;
        truncated = true;
        // Anything more is past the cap: stop the inflater.
        inflater.destroy();
        finish();
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    inflater.on('error', (err) => {
      error = err.message;
      finish();
    });
    inflater.on('end', finish);
    inflater.on('close', finish);
    inflater.end(input);
  });
  return { data: Buffer.concat(chunks), truncated, ...(error ? { error } : {}) };
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x0c || c === 0x00;

export function asciiHexDecode(input: Buffer, cap: number): Decoded {
  const out = Buffer.alloc(Math.min(cap, Math.ceil(input.length / 2)));
  let n = 0;
  let hi = -1;
  for (const c of input) {
    if (c === 0x3e) break; // '>'
    if (isWs(c)) continue;
    const v = hexValue(c);
    if (v < 0) return { data: out.subarray(0, n), truncated: false, error: `bad character 0x${c.toString(16)}` };
    if (hi < 0) hi = v;
    else {
      if (n >= out.length) return { data: out.subarray(0, n), truncated: true };
      out[n++] = (hi << 4) | v;
      hi = -1;
    }
  }
  if (hi >= 0 && n < out.length) out[n++] = hi << 4;
  return { data: out.subarray(0, n), truncated: false };
}

export function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

export function ascii85Decode(input: Buffer, cap: number): Decoded {
  let start = 0;
  if (input[0] === 0x3c && input[1] === 0x7e) start = 2; // '<~'
  const out = Buffer.alloc(Math.min(cap, Math.ceil(((input.length - start) * 4) / 5) + 4 + countZ(input) * 4));
  let n = 0;
  const group: number[] = [];
  const flush = (count: number): boolean => {
    let v = 0;
    for (let i = 0; i < 5; i++) v = v * 85 + (i < group.length ? group[i] : 84);
    if (v > 0xffffffff) return false;
    for (let i = 0; i < count; i++) {
      if (n >= out.length) return true;
      out[n++] = (v >>> (24 - 8 * i)) & 0xff;
    }
    return true;
  };
  for (let i = start; i < input.length; i++) {
    const c = input[i];
    if (c === 0x7e) break; // '~>'
    if (isWs(c)) continue;
    if (c === 0x7a && group.length === 0) {
      for (let k = 0; k < 4 && n < out.length; k++) out[n++] = 0;
      if (n >= cap) return { data: out.subarray(0, n), truncated: true };
      continue;
    }
    if (c < 0x21 || c > 0x75) return { data: out.subarray(0, n), truncated: false, error: `bad character 0x${c.toString(16)}` };
    group.push(c - 0x21);
    if (group.length === 5) {
      if (!flush(4)) return { data: out.subarray(0, n), truncated: false, error: 'group out of range' };
      group.length = 0;
      if (n >= cap) return { data: out.subarray(0, n), truncated: i + 1 < input.length && input[i + 1] !== 0x7e };
    }
  }
  if (group.length === 1) return { data: out.subarray(0, n), truncated: false, error: 'lone final character' };
  if (group.length > 1 && !flush(group.length - 1)) return { data: out.subarray(0, n), truncated: false, error: 'group out of range' };
  return { data: out.subarray(0, n), truncated: false };
}

function countZ(b: Buffer): number {
  let z = 0;
  for (const c of b) if (c === 0x7a) z++;
  return z;
}

/**
 * LZW as PDF uses it: 9 to 12-bit codes, MSB first, 256 clears the table, 257 ends the data,
 * and with `earlyChange` 1 (the default) the code width grows one code early.
 */
export function lzwDecode(input: Buffer, cap: number, earlyChange = 1): Decoded {
  const prefix = new Int32Array(4096);
  const suffix = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  for (let i = 0; i < 256; i++) {
    prefix[i] = -1;
    suffix[i] = i;
    length[i] = 1;
  }
  const out: Buffer[] = [];
  let outSize = 0;
  let buf = Buffer.alloc(64 * 1024);
  let bufN = 0;
  const emit = (code: number): boolean => {
    const len = length[code];
    if (bufN + len > buf.length) {
      out.push(buf.subarray(0, bufN));
      buf = Buffer.alloc(Math.max(64 * 1024, len));
      bufN = 0;
    }
    let c = code;
    for (let i = len - 1; i >= 0; i--) {
      buf[bufN + i] = suffix[c];
      c = prefix[c];
    }
    bufN += len;
    outSize += len;
    return outSize < cap;
  };
  const firstByte = (code: number): number => {
    let c = code;
    while (prefix[c] >= 0) c = prefix[c];
    return suffix[c];
  };
  let bitBuf = 0;
  let bitCount = 0;
  let pos = 0;
  let width = 9;
  let next = 258;
  let prev = -1;
  let error: string | undefined;
  let truncated = false;
  for (;;) {
    while (bitCount < width && pos < input.length) {
      bitBuf = ((bitBuf << 8) | input[pos++]) >>> 0;
      bitCount += 8;
    }
    if (bitCount < width) break;
    const code = (bitBuf >>> (bitCount - width)) & ((1 << width) - 1);
    bitCount -= width;
    bitBuf &= (1 << bitCount) - 1;
    if (code === 256) {
      next = 258;
      width = 9;
      prev = -1;
      continue;
    }
    if (code === 257) break;
    let ok: boolean;
    if (prev < 0) {
      if (code > 255) {
        error = `code ${code} before any table entry`;
        break;
      }
      ok = emit(code);
    } else if (code < next) {
      ok = emit(code);
      if (next < 4096) {
        prefix[next] = prev;
        suffix[next] = firstByte(code);
        length[next] = length[prev] + 1;
        next++;
      }
    } else if (code === next && next < 4096) {
      prefix[next] = prev;
      suffix[next] = firstByte(prev);
      length[next] = length[prev] + 1;
      next++;
      ok = emit(code);
    } else {
      error = `code ${code} out of table (${next})`;
      break;
    }
    prev = code;
    if (next + earlyChange >= 1 << width && width < 12) width++;
    if (!ok) {
      truncated = true;
      break;
    }
  }
  out.push(buf.subarray(0, bufN));
  let data = Buffer.concat(out);
  if (data.length > cap) {
    data = data.subarray(0, cap);
    truncated = true;
  }
  return { data, truncated, ...(error ? { error } : {}) };
}

export function runLengthDecode(input: Buffer, cap: number): Decoded {
  const chunks: Buffer[] = [];
  let size = 0;
  let i = 0;
  while (i < input.length) {
    const len = input[i++];
    if (len === 128) break;
    let piece: Buffer;
    if (len < 128) {
      piece = input.subarray(i, i + len + 1);
      i += len + 1;
    } else {
      if (i >= input.length) break;
      piece = Buffer.alloc(257 - len, input[i++]);
    }
    if (size + piece.length >= cap) {
      chunks.push(piece.subarray(0, cap - size));
      return { data: Buffer.concat(chunks), truncated: true };
    }
    chunks.push(piece);
    size += piece.length;
  }
  return { data: Buffer.concat(chunks), truncated: false };
}

/** Undoes the TIFF (2) or PNG (10–15) predictor; a short last row is kept as it is. */
export function unpredict(data: Buffer, params: NonNullable<FilterSpec['params']>): Buffer {
  const predictor = params.Predictor ?? 1;
  const colors = clampInt(params.Colors, 1, 1, 32);
  const bpc = clampInt(params.BitsPerComponent, 8, 1, 16);
  const columns = clampInt(params.Columns, 1, 1, 1 << 20);
  const bpp = Math.max(1, Math.ceil((colors * bpc) / 8));
  const rowBytes = Math.ceil((colors * bpc * columns) / 8);
  if (predictor === 2) {
    if (bpc !== 8) return data;
    const out = Buffer.from(data);
    for (let r = 0; r + rowBytes <= out.length; r += rowBytes) {
      for (let i = bpp; i < rowBytes; i++) out[r + i] = (out[r + i] + out[r + i - bpp]) & 0xff;
    }
    return out;
  }
  if (predictor < 10) return data;
  const rows = Math.floor(data.length / (rowBytes + 1));
  const out = Buffer.alloc(rows * rowBytes);
  let prevRow = Buffer.alloc(rowBytes);
  for (let r = 0; r < rows; r++) {
    const inOff = r * (rowBytes + 1);
    const type = data[inOff];
    const row = out.subarray(r * rowBytes, (r + 1) * rowBytes);
    data.copy(row, 0, inOff + 1, inOff + 1 + rowBytes);
    for (let i = 0; i < rowBytes; i++) {
      const left = i >= bpp ? row[i - bpp] : 0;
      const up = prevRow[i];
      const upLeft = i >= bpp ? prevRow[i - bpp] : 0;
      switch (type) {
        case 1:
          row[i] = (row[i] + left) & 0xff;
          break;
        case 2:
          row[i] = (row[i] + up) & 0xff;
          break;
        case 3:
          row[i] = (row[i] + ((left + up) >> 1)) & 0xff;
          break;
        case 4: {
          const p = left + up - upLeft;
          const pa = Math.abs(p - left);
          const pb = Math.abs(p - up);
          const pc = Math.abs(p - upLeft);
          row[i] = (row[i] + (pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft)) & 0xff;
          break;
        }
        default:
          break;
      }
    }
    prevRow = row;
  }
  return out;
}

function clampInt(v: number | undefined, dflt: number, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return dflt;
  return Math.min(max, Math.max(min, Math.trunc(v)));
}
