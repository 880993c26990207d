/**
 * MS-OVBA decompression (the run-length/LZ77 scheme VBA uses for the `dir` stream and the
 * source text of modules), written from the algorithm in [MS-OVBA] §2.4.1.
 *
 * A compressed container is a signature byte 0x01 followed by chunks. Each chunk has a 16-bit
 * little-endian header: bits 0–11 hold the chunk size minus 3, bits 12–14 the signature 0b011,
 * bit 15 says whether the chunk is compressed. A raw chunk holds 4096 literal bytes. A
 * compressed chunk is a series of token sequences: one flag byte, then up to eight tokens, a
 * 0 bit meaning a literal byte and a 1 bit a two-byte copy token whose split between offset and
 * length depends on how far into the chunk's (decompressed) output we are.
 *
 * Decompression never throws: damaged input returns what was decoded up to the damage, with
 * `error` saying why it stopped, so that a stomped or truncated module is still scanned.
 *
 * @example
 * const { data, error } = decompressOvba(stream.subarray(textOffset), 4 * 1024 * 1024);
 * const source = data.toString('latin1');
 */

export interface OvbaResult {
  data: Buffer;
  /** Why decompression stopped before the end of the input (absent: the input was whole). */
  error?: 'signature' | 'chunk_header' | 'truncated' | 'bad_copy_offset' | 'output_limit';
}

const CHUNK = 4096;

/** Bits of the offset field of a copy token written at `position` bytes into a chunk's output. */
export function copyTokenBitCount(position: number): number {
  let bits = 4;
  while (1 << bits < position) bits++;
  return bits;
}

/**
 * Decompresses a CompressedContainer that starts at `input[0]`, producing at most `maxOutput`
 * bytes (further output is cut, with `error: 'output_limit'`).
 */
export function decompressOvba(input: Uint8Array, maxOutput = 16 * 1024 * 1024): OvbaResult {
  if (input.length === 0 || input[0] !== 0x01) return { data: Buffer.alloc(0), error: 'signature' };
  let out = Buffer.allocUnsafe(Math.min(maxOutput, 64 * 1024));
  let o = 0;
  /** Makes room for `n` more bytes (never beyond `maxOutput`). */
  const room = (n: number): boolean => {
    if (o + n > maxOutput) return false;
    if (o + n > out.length) {
      const bigger = Buffer.allocUnsafe(Math.min(maxOutput, Math.max(out.length * 2, o + n)));
      out.copy(bigger, 0, 0, o);
      out = bigger;
    }
    return true;
  };
  let pos = 1;
  const done = (error?: OvbaResult['error']): OvbaResult => ({ data: Buffer.from(out.subarray(0, o)), ...(error ? { error } : {}) });

  while (pos < input.length) {
    if (pos + 2 > input.length) return done('truncated');
    const header = input[pos] | (input[pos + 1] << 8);
    if (((header >> 12) & 0x7) !== 0b011) return done('chunk_header');
    const size = (header & 0x0fff) + 3;
    const compressed = (header & 0x8000) !== 0;
    const chunkEnd = Math.min(pos + size, input.length);
    const truncated = pos + size > input.length;
    pos += 2;
    const chunkStart = o;

    if (!compressed) {
      // A raw chunk: 4096 bytes copied as they are.
      const n = Math.min(CHUNK, chunkEnd - pos);
      const fits = Math.min(n, maxOutput - o);
      room(fits);
      out.set(input.subarray(pos, pos + fits), o);
      o += fits;
      if (n > fits) return done('output_limit');
      pos = chunkEnd;
      if (truncated) return done('truncated');
      continue;
    }

    while (pos < chunkEnd) {
      const flags = input[pos++];
      for (let bit = 0; bit < 8 && pos < chunkEnd; bit++) {
        if ((flags & (1 << bit)) === 0) {
          if (!room(1)) return done('output_limit');
          out[o++] = input[pos++];
          continue;
        }
        if (pos + 2 > chunkEnd) return done('truncated');
        const token = input[pos] | (input[pos + 1] << 8);
        pos += 2;
        const bits = copyTokenBitCount(o - chunkStart);
        const lengthMask = 0xffff >> bits;
        const length = (token & lengthMask) + 3;
        const offset = (token >> (16 - bits)) + 1;
        if (offset > o - chunkStart) return done('bad_copy_offset');
        const fits = Math.min(length, maxOutput - o);
        room(fits);
        // Byte by byte: a copy may overlap the bytes it produces (a run).
        for (let i = 0; i < fits; i++, o++) out[o] = out[o - offset];
        if (fits < length) return done('output_limit');
      }
    }
    if (truncated) return done('truncated');
  }
  return done();
}
