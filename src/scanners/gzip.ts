/**
 * Gzip: decompresses the stream (all members of a multi-member file, as gunzip does) into one
 * child, named after the original file name stored in the gzip header when there is one, else
 * after the file's own name without its suffix (`a.tar.gz` → `a.tar`, `a.tgz` → `a.tar`). Each
 * member's CRC-32 and length are checked. Bytes after the last member (tape padding, appended
 * data) are left to the scanners that see the file itself, as gunzip leaves them.
 *
 * A `.tar.gz` becomes gzip → child tar → tar members: the engine does the recursion.
 *
 * @example
 * const r = await runScanner(gzipScanner, gzipSync(eicar()), { name: 'eicar.com.gz' });
 * r.children[0].name // 'eicar.com'
 */
import fsp, { type FileHandle } from 'node:fs/promises';
import zlib from 'node:zlib';
import {
  ArchiveSession,
  inflateRawRange,
  readAt,
  stripCompressionSuffix,
  type MemberExtraction,
} from './archive-common.ts';
import type { Scanner } from './types.ts';

/** File-name suffixes gzip removes, and what it puts instead. */
export const GZIP_SUFFIXES: Record<string, string> = { gz: '', gzip: '', z: '', tgz: '.tar', taz: '.tar', svgz: '.svg' };

/** How much of a member's start is read to find its header (extra field, name and comment). */
const HEADER_WINDOW = 256 * 1024;

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const FRESERVED = 0xe0;

export type GzipHeader = { ok: true; length: number; name?: string } | { ok: false; error: string };

/**
 * Parses a gzip member header (RFC 1952) at the start of `buf`. `atEnd` says the buffer holds
 * the rest of the file, so running out of bytes means truncation rather than a long header.
 */
export function parseGzipHeader(buf: Buffer, atEnd: boolean): GzipHeader {
  const short = (): GzipHeader => ({ ok: false, error: atEnd ? 'gzip header truncated' : 'gzip header too long' });
  if (buf.length < 10) return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b ? short() : { ok: false, error: 'not a gzip header' };
  if (buf[0] !== 0x1f || buf[1] !== 0x8b) return { ok: false, error: 'not a gzip header' };
  if (buf[2] !== 8) return { ok: false, error: `unknown compression method ${buf[2]}` };
  const flags = buf[3];
  if (flags & FRESERVED) return { ok: false, error: 'reserved gzip flags set' };
  let pos = 10;
  if (flags & FEXTRA) {
    if (pos + 2 > buf.length) return short();
    pos += 2 + buf.readUInt16LE(pos);
  }
  let name: string | undefined;
  if (flags & FNAME) {
    const end = buf.indexOf(0, pos);
    if (end < 0) return short();
    name = buf.toString('latin1', pos, end);
    pos = end + 1;
  }
  if (flags & FCOMMENT) {
    const end = buf.indexOf(0, pos);
    if (end < 0) return short();
    pos = end + 1;
  }
  if (flags & FHCRC) pos += 2;
  if (pos > buf.length) return short();
  return { ok: true, length: pos, ...(name ? { name } : {}) };
}

export const gzipScanner: Scanner = {
  name: 'gzip',
  version: '1',
  layer: 'archive',
  accepts: (info) => info.kind === 'file' && info.fileType === 'gzip',
  async scan(input, ctx) {
    const session = new ArchiveSession(ctx, 'decompressed');
    let fh: FileHandle | undefined;
    let member: MemberExtraction | undefined;
    try {
      const file = await input.path();
      fh = await fsp.open(file, 'r');
      const size = (await fh.stat()).size;
      let offset = 0;
      let streams = 0;
      while (offset < size && session.active) {
        const window = await readAt(fh, offset, HEADER_WINDOW);
        const header = parseGzipHeader(window, offset + window.length >= size);
        if (!header.ok) {
          if (streams === 0) session.corrupt(header.error);
          else session.attributes.trailingBytes = size - offset;
          break;
        }
        if (!member) {
          member =
            header.name !== undefined
              ? session.member(header.name, { compressedSize: size, meta: { nameFrom: 'gzip_header' } })
              : session.member(stripCompressionSuffix(input.info.name, GZIP_SUFFIXES), { compressedSize: size, fromArchive: false });
        }
        const out = member;
        let crc = 0;
        let length = 0;
        const dataStart = offset + header.length;
        const { consumed } = await inflateRawRange(
          file,
          dataStart,
          size,
          async (chunk) => {
            crc = zlib.crc32(chunk, crc);
            length = (length + chunk.length) >>> 0;
            await out.write(chunk);
          },
          session.signal,
        );
        const trailer = await readAt(fh, dataStart + consumed, 8);
        streams++;
        if (trailer.length < 8) {
          session.corrupt('gzip trailer missing (truncated)', member.name);
          member.meta.corrupt = true;
          break;
        }
        if (trailer.readUInt32LE(0) !== crc >>> 0 || trailer.readUInt32LE(4) !== length) {
          session.corrupt('gzip checksum or length mismatch', member.name, { stream: streams });
          member.meta.corrupt = true;
        }
        offset = dataStart + consumed + 8;
      }
      session.attributes.streams = streams;
    } catch (err) {
      if (session.failure(err, member?.name) === 'corrupt' && member) member.meta.corrupt = true;
    } finally {
      await fh?.close().catch(() => undefined);
    }
    try {
      // Something was read, or nothing was there to read: scan it. A stream broken before its
      // first byte leaves nothing to scan.
      if (member && (member.size > 0 || !member.meta.corrupt)) await session.emit(member);
      else await member?.discard();
    } finally {
      session.close();
    }
    return session.result();
  },
};
