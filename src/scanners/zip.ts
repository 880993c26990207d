/**
 * Zip: lists the central directory with @zip.js/zip.js over random reads of the file (a 2 GB zip
 * is never loaded in memory) and emits every member as a child. Encrypted members (ZipCrypto
 * and AES) are opened with the request's passwords, then the configured defaults, in order.
 * Entries whose data ranges overlap (the overlapping-entries zip bomb, parser confusion) are
 * reported; when the central directory cannot be read (a truncated download), the local file
 * headers are walked from the start so that what is there is still scanned.
 *
 * @example
 * const r = await runScanner(zipScanner, zipBytes, { passwords: ['infected'] });
 * r.children.map((c) => c.name) // ['docs/eicar.com']
 */
import fsp, { type FileHandle } from 'node:fs/promises';
import * as zip from '@zip.js/zip.js';
import {
  ArchiveSession,
  errorMessage,
  inflateRawRange,
  readAt,
  type MemberExtraction,
} from './archive-common.ts';
import type { Scanner } from './types.ts';
import { FileHandleReader, ReadTooLarge } from './zip-reader.ts';

zip.configure({ useWebWorkers: false });

/** Largest single read zip.js may ask for (its central directory is read in one piece). */
export const MAX_ZIP_READ = 64 * 1024 * 1024;

const LOCAL_HEADER = 0x04034b50;
const DATA_DESCRIPTOR = 0x08074b50;



type Kind = 'invalid_password' | 'unsupported_compression' | 'unsupported_encryption' | 'other';

function errorKind(err: unknown): Kind {
  const m = errorMessage(err);
  if (m === zip.ERR_INVALID_PASSWORD) return 'invalid_password';
  if (m === zip.ERR_UNSUPPORTED_COMPRESSION) return 'unsupported_compression';
  if (m === zip.ERR_UNSUPPORTED_ENCRYPTION) return 'unsupported_encryption';
  return 'other';
}

function encryptionOf(e: zip.FileEntry): 'zipcrypto' | 'aes' | 'other' {
  return e.zipCrypto ? 'zipcrypto' : e.extraFieldAES ? 'aes' : 'other';
}

/** A writable that swallows everything (for password checks). */
function nullWritable(): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>();
}

export const zipScanner: Scanner = {
  name: 'zip',
  version: '1',
  layer: 'archive',
  accepts: (info) => info.kind === 'file' && info.fileType === 'zip',
  async scan(input, ctx) {
    const session = new ArchiveSession(ctx, 'archive_member');
    let fh: FileHandle | undefined;
    try {
      const file = await input.path();
      fh = await fsp.open(file, 'r');
      const size = (await fh.stat()).size;
      await scanZip(session, fh, file, size);
    } catch (err) {
      session.failure(err);
    } finally {
      await fh?.close().catch(() => undefined);
      session.close();
    }
    return session.result();
  },
};

async function scanZip(session: ArchiveSession, fh: FileHandle, file: string, size: number): Promise<void> {
  const { ctx } = session;
  const reader = new FileHandleReader(fh, size, MAX_ZIP_READ);
  const zr = new zip.ZipReader(reader, {
    useWebWorkers: false,
    strictness: 'tolerant',
    filenameValidation: 'tolerant',
  });
  const maxEntries = Math.max(1, ctx.limits.maxChildren);
  const entries: zip.FileEntry[] = [];
  let listed = 0;
  try {
    for await (const e of zr.getEntriesGenerator()) {
      session.checkContinue();
      listed++;
      if (e.directory) continue;
      if (e.symlink) {
        session.members++;
        session.flag('ARCHIVE_SYMLINK', { name: e.filename.slice(0, 1024), type: 'symlink' });
        continue;
      }
      if (entries.length >= maxEntries) {
        session.flag('ARCHIVE_LIMIT', { reason: 'count', listed: entries.length });
        break;
      }
      entries.push(e);
    }
  } catch (err) {
    if (err instanceof ReadTooLarge) {
      session.flag('ARCHIVE_LIMIT', { reason: 'central_directory_size', error: err.message });
    } else if (session.failure(err) === 'stop') {
      return;
    }
    if (entries.length === 0) {
      session.attributes.recovered = 'local_headers';
      await walkLocalHeaders(session, fh, file, size, err instanceof ReadTooLarge ? 'central directory too large to read' : 'central directory missing or unreadable');
      return;
    }
  }
  session.attributes.entries = listed;
  if (zr.warnings?.length) session.attributes.zipWarnings = zr.warnings.slice(0, 20).map((w) => w.reason);
  if (listed === 0 && size >= 30 && (await readAt(fh, 0, 4)).readUInt32LE(0) === LOCAL_HEADER) {
    // An empty central directory in front of local entries: what streaming extractors (and
    // so the recipient) may still unpack.
    session.attributes.recovered = 'local_headers';
    await walkLocalHeaders(session, fh, file, size, 'central directory lists no entries but local entries exist');
    return;
  }

  const overlapping = await findOverlaps(session, fh, entries);
  let overlapBombed = false;
  let lastPassword: string | undefined;
  for (const e of entries) {
    if (!session.active) break;
    if (overlapBombed && overlapping.has(e)) {
      session.flag('ARCHIVE_LIMIT', { reason: 'overlapping_bomb', name: e.filename.slice(0, 1024) });
      continue;
    }
    const outcome = e.encrypted ? await extractEncrypted(session, e, lastPassword) : await extractPlain(session, e);
    if (outcome.password !== undefined) lastPassword = outcome.password;
    if (outcome.bomb && overlapping.has(e)) overlapBombed = true;
  }
}

interface Outcome {
  bomb?: boolean;
  password?: string;
}

async function extractPlain(session: ArchiveSession, e: zip.FileEntry): Promise<Outcome> {
  const member = session.member(e.filename, { compressedSize: e.compressedSize });
  try {
    await e.getData(member.writable(), { checkCrc32: true, signal: session.signal });
  } catch (err) {
    if (member.stop === undefined && !failEntry(session, member, err, e)) {
      await member.discard();
      return {};
    }
  }
  await session.emit(member);
  return { bomb: member.stop === 'ratio' };
}

/**
 * Reports a member that could not be read whole. Returns true when what was read should still
 * be emitted.
 */
function failEntry(session: ArchiveSession, member: MemberExtraction, err: unknown, e: zip.FileEntry): boolean {
  const kind = errorKind(err);
  if (kind === 'unsupported_compression') {
    session.flag('UNPARSEABLE', { name: member.name, reason: 'unsupported_compression', method: e.compressionMethod });
    return false;
  }
  if (session.failure(err, member.name) === 'stop') return false;
  member.meta.corrupt = true;
  return member.size > 0;
}

async function extractEncrypted(session: ArchiveSession, e: zip.FileEntry, preferred: string | undefined): Promise<Outcome> {
  const { passwords } = session.ctx.options;
  const order = [...new Set(preferred !== undefined && passwords.includes(preferred) ? [preferred, ...passwords] : passwords)];
  const method = encryptionOf(e);
  // The name is checked even when the content stays locked: it is in plain sight.
  const member = session.member(e.filename, { compressedSize: e.compressedSize, meta: { encrypted: method } });
  const unopened = async (reason: string) => {
    session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { name: member.name, encryption: method, reason, tried: order.length });
    await member.discard();
    return {};
  };
  for (const password of order) {
    if (!session.active) break;
    // Cheap check first (header verifier); a false positive fails below on CRC/authentication.
    try {
      await e.getData(nullWritable(), { password, checkPasswordOnly: true, signal: session.signal });
    } catch (err) {
      const kind = errorKind(err);
      if (kind === 'invalid_password') continue;
      if (kind === 'unsupported_encryption') return unopened('unsupported_encryption');
      session.failure(err, member.name);
      await member.discard();
      return {};
    }
    try {
      await e.getData(member.writable(), { password, checkCrc32: true, signal: session.signal });
    } catch (err) {
      if (member.stop === undefined) {
        if (session.signal.aborted || session.stopped) {
          session.failure(err);
          await member.discard();
          return {};
        }
        if (errorKind(err) === 'unsupported_compression') {
          session.flag('UNPARSEABLE', { name: member.name, reason: 'unsupported_compression', method: e.compressionMethod });
          await member.discard();
          return {};
        }
        // A wrong password that passed the verifier, or damaged data: try the next one.
        await member.reset();
        continue;
      }
    }
    session.flag('ARCHIVE_ENCRYPTED', { name: member.name, encryption: method, passwordWorked: true });
    await session.emit(member);
    return { password, bomb: member.stop === 'ratio' };
  }
  if (!session.active) {
    await member.discard();
    return {};
  }
  return unopened(order.length === 0 ? 'no_password' : 'no_password_matched');
}

/**
 * Finds entries whose local data ranges (local header + compressed data) overlap another
 * entry's: honest writers never produce them; overlapping-entry bombs and parser-confusion
 * archives do.
 */
async function findOverlaps(session: ArchiveSession, fh: FileHandle, entries: zip.FileEntry[]): Promise<Set<zip.FileEntry>> {
  const ranges: { e: zip.FileEntry; start: number; end: number }[] = [];
  for (const e of entries) {
    session.checkContinue();
    const h = await readAt(fh, e.offset, 30);
    if (h.length < 30 || h.readUInt32LE(0) !== LOCAL_HEADER) continue;
    const dataStart = e.offset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    ranges.push({ e, start: e.offset, end: dataStart + e.compressedSize });
  }
  ranges.sort((a, b) => a.start - b.start || a.end - b.end);
  const overlapping = new Set<zip.FileEntry>();
  let reach = ranges[0];
  for (const r of ranges.slice(1)) {
    if (r.start < reach.end) {
      overlapping.add(reach.e);
      overlapping.add(r.e);
    }
    if (r.end > reach.end) reach = r;
  }
  if (overlapping.size > 0) {
    for (const e of overlapping) session.flag('ARCHIVE_OVERLAP', { name: e.filename.slice(0, 1024), offset: e.offset });
  }
  return overlapping;
}

/**
 * Recovery for archives whose central directory is missing or unreadable: reads entries from
 * their local headers, front to back, as a streaming unzip would. Stored and deflated members
 * are extracted; encrypted ones and other methods are reported.
 */
async function walkLocalHeaders(session: ArchiveSession, fh: FileHandle, file: string, size: number, why: string): Promise<void> {
  let offset = 0;
  let found = 0;
  while (offset + 30 <= size && session.active) {
    const h = await readAt(fh, offset, 30);
    if (h.readUInt32LE(0) !== LOCAL_HEADER) break;
    found++;
    const flags = h.readUInt16LE(6);
    const method = h.readUInt16LE(8);
    const headerSize = h.readUInt32LE(18);
    const nameLength = h.readUInt16LE(26);
    const extraLength = h.readUInt16LE(28);
    const rawName = await readAt(fh, offset + 30, nameLength);
    const name = decodeName(rawName, (flags & 0x800) !== 0);
    const dataStart = offset + 30 + nameLength + extraLength;
    const descriptor = (flags & 0x8) !== 0;
    const sizeKnown = !(descriptor && headerSize === 0) && headerSize !== 0xffffffff;
    const dataEnd = sizeKnown ? Math.min(size, dataStart + headerSize) : size;
    if (dataStart > size) {
      session.corrupt('local header runs past the end of the file', name);
      break;
    }
    if (flags & 0x1) {
      session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { name: name.slice(0, 1024), reason: 'no_central_directory' });
      if (!sizeKnown) break;
      offset = skipDescriptor(await readAt(fh, dataEnd, 4), dataEnd, descriptor);
      continue;
    }
    if (method !== 0 && method !== 8) {
      session.flag('UNPARSEABLE', { name: name.slice(0, 1024), reason: 'unsupported_compression', method });
      if (!sizeKnown) break;
      offset = skipDescriptor(await readAt(fh, dataEnd, 4), dataEnd, descriptor);
      continue;
    }
    if (name.endsWith('/') && dataEnd === dataStart) {
      offset = skipDescriptor(await readAt(fh, dataEnd, 4), dataEnd, descriptor);
      continue;
    }
    const member = session.member(name, { compressedSize: dataEnd - dataStart, meta: { recovered: true } });
    let next: number | undefined;
    try {
      if (method === 0) {
        if (!sizeKnown) throw new Error('stored member of unknown size');
        await streamRange(fh, dataStart, dataEnd, (c) => member.write(c));
        if (dataStart + headerSize > size) throw new Error('unexpected end of file');
        next = dataEnd;
      } else {
        const r = await inflateRawRange(file, dataStart, dataEnd, (c) => member.write(c), session.signal);
        next = dataStart + r.consumed;
      }
    } catch (err) {
      if (session.failure(err, member.name) === 'corrupt') member.meta.corrupt = true;
    }
    if (member.size > 0 || next !== undefined) await session.emit(member);
    else await member.discard();
    if (next === undefined || member.stop) break;
    offset = skipDescriptor(await readAt(fh, next, 4), next, descriptor);
  }
  session.attributes.entries = found;
  if (found > 0 && !session.has('ARCHIVE_CORRUPT')) session.corrupt(why);
}

function skipDescriptor(head: Buffer, at: number, descriptor: boolean): number {
  if (!descriptor) return at;
  // crc32 + compressed + uncompressed sizes, optionally signed; zip64 descriptors are rarer.
  return head.length === 4 && head.readUInt32LE(0) === DATA_DESCRIPTOR ? at + 16 : at + 12;
}

async function streamRange(fh: FileHandle, start: number, end: number, write: (c: Buffer) => Promise<void>): Promise<void> {
  for (let pos = start; pos < end; ) {
    const chunk = await readAt(fh, pos, Math.min(1024 * 1024, end - pos));
    if (chunk.length === 0) break;
    await write(chunk);
    pos += chunk.length;
  }
}

function decodeName(raw: Buffer, utf8Flag: boolean): string {
  if (utf8Flag) return raw.toString('utf8');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return raw.toString('latin1');
  }
}
