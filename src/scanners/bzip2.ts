/**
 * Bzip2: decompresses the stream (concatenated streams included, as bunzip2 does) into one child
 * named after the file without its suffix (`a.tar.bz2` → `a.tar`, `a.tbz2` → `a.tar`); bzip2
 * stores no original file name. Bytes after the last stream are left to the scanners that see
 * the file itself, as bunzip2 leaves them.
 *
 * The decoder is unbzip2-stream's block decoder (`lib/bzip2`, `lib/bit_iterator`), driven here
 * one block at a time rather than through the package's stream wrapper: the wrapper decodes
 * every remaining block in one synchronous loop when its input ends and buffers the output as
 * arrays of numbers, so a 400-byte file expanding to 500 MB blocks the process for tens of
 * seconds and holds all of it in memory. Driven per block, the input held is at most about two
 * blocks (< 2 MB), the output held is at most one block (< 46 MB) and never more than the
 * member's remaining allowance, and the limits are checked every MiB of output.
 *
 * @example
 * const r = await runScanner(bzip2Scanner, bz2Bytes, { name: 'eicar.com.bz2' });
 * r.children[0].name // 'eicar.com'
 */
import { createRequire } from 'node:module';
import { ArchiveSession, stripCompressionSuffix, type MemberExtraction } from './archive-common.ts';
import type { Scanner } from './types.ts';

/** File-name suffixes bunzip2 removes, and what it puts instead. */
export const BZIP2_SUFFIXES: Record<string, string> = { bz2: '', bz: '', bzip2: '', tbz: '.tar', tbz2: '.tar', tb2: '.tar' };

interface BitReader {
  (bits: number | null): number;
  bytesRead: number;
}
interface Bzip2Decoder {
  /** Reads a stream header; returns the block size level (1..9). */
  header(bits: BitReader): number;
  /** Decodes one block, calling `out` per byte; returns the running stream CRC, or null at the end of a stream. */
  decompress(bits: BitReader, out: (byte: number) => void, buf: Int32Array, bufsize: number, streamCRC: number): number | null;
}

const require = createRequire(import.meta.url);
const decoder = require('unbzip2-stream/lib/bzip2') as Bzip2Decoder;
const bitIterator = require('unbzip2-stream/lib/bit_iterator') as (next: () => Uint8Array | undefined) => BitReader;

/** Output is collected in pieces of this size; limits and the deadline are checked per piece. */
const PIECE = 1024 * 1024;

class Interrupted extends Error {}

export const bzip2Scanner: Scanner = {
  name: 'bzip2',
  version: '1',
  layer: 'archive',
  accepts: (info) => info.kind === 'file' && info.fileType === 'bzip2',
  async scan(input, ctx) {
    const session = new ArchiveSession(ctx, 'decompressed');
    const member = session.member(stripCompressionSuffix(input.info.name, BZIP2_SUFFIXES), {
      compressedSize: input.info.size,
      fromArchive: false,
    });
    const source = input.stream();
    try {
      await decode(source[Symbol.asyncIterator](), member, session);
    } catch (err) {
      if (session.failure(err, member.name) === 'corrupt') member.meta.corrupt = true;
    } finally {
      source.destroy();
    }
    try {
      if (member.size > 0 || !member.meta.corrupt) await session.emit(member);
      else await member.discard();
    } finally {
      session.close();
    }
    return session.result();
  },
};

async function decode(chunks: AsyncIterator<Buffer>, member: MemberExtraction, session: ArchiveSession): Promise<void> {
  const queue: Uint8Array[] = [];
  let fed = 0;
  let ended = false;
  let bits: BitReader | undefined;
  const buffered = () => fed - (bits?.bytesRead ?? 0);
  /** Reads input until `min` unread bytes are held or the input ends. */
  const fill = async (min: number) => {
    while (!ended && buffered() < min) {
      session.checkContinue();
      const next = await chunks.next();
      if (next.done) ended = true;
      else if (next.value.length > 0) {
        queue.push(next.value);
        fed += next.value.length;
      }
    }
  };

  await fill(4);
  if (buffered() === 0) return;
  bits = bitIterator(() => queue.shift());
  let streams = 0;
  let level = 0;
  let crc = 0;
  let buf = new Int32Array(0);
  for (;;) {
    session.checkContinue();
    if (level === 0) {
      await fill(4);
      if (ended && buffered() <= 0) break;
      try {
        level = decoder.header(bits);
      } catch (err) {
        if (streams === 0) throw ended && err instanceof TypeError ? new Error('bzip2 data truncated') : err;
        session.attributes.trailingBytes = buffered();
        break;
      }
      crc = 0;
      if (buf.length !== 100_000 * level) buf = new Int32Array(100_000 * level);
      continue;
    }
    // A compressed block is at most a little more than its uncompressed size.
    await fill(2 * 100_000 * level + 64 * 1024);
    const out = await decodeBlock(bits, buf, crc, member, session, ended);
    if (out === null) {
      streams++;
      level = 0;
    } else {
      crc = out;
    }
  }
  session.attributes.streams = streams;
}

/** Decodes one block into the member; returns the next stream CRC, null at a stream's end. */
async function decodeBlock(
  bits: BitReader,
  buf: Int32Array,
  crc: number,
  member: MemberExtraction,
  session: ArchiveSession,
  inputEnded: boolean,
): Promise<number | null> {
  const pieces: Buffer[] = [];
  let piece = Buffer.allocUnsafe(PIECE);
  let pos = 0;
  let produced = 0;
  // One byte over the allowance lets `write()` see and report the limit.
  const allowance = member.allowance() + 1;
  const deadline = session.ctx.deadline;
  let result: number | null | undefined;
  let failure: unknown;
  try {
    result = decoder.decompress(
      bits,
      (byte) => {
        piece[pos++] = byte;
        if (pos === PIECE) {
          pieces.push(piece);
          produced += PIECE;
          piece = Buffer.allocUnsafe(PIECE);
          pos = 0;
          if (produced >= allowance || Date.now() >= deadline || session.ctx.signal.aborted) throw new Interrupted();
        }
      },
      buf,
      buf.length,
      crc,
    );
  } catch (err) {
    if (!(err instanceof Interrupted)) {
      failure = inputEnded && err instanceof TypeError ? new Error('bzip2 data truncated') : err;
    }
  }
  if (pos > 0) pieces.push(piece.subarray(0, pos));
  for (const p of pieces) await member.write(p);
  if (failure !== undefined) throw failure;
  // Interrupted by time: write() would have thrown already unless no byte was pending.
  session.checkContinue();
  if (result === undefined) throw new Error('bzip2 decoding interrupted');
  return result;
}
