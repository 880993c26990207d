/**
 * Single-stream compressors gzip and bzip2 have no neighbours for: xz, zstd, lzma ("alone")
 * and lzip, decompressed by libarchive's `bsdcat` (Debian libarchive-tools) into one child,
 * streamed through the archive session so the ratio and total limits cut a bomb short. The
 * child is named after the file without its suffix (`a.tar.xz` → `a.tar`, `a.tzst` → `a.tar`);
 * the engine recurses into it (a .tar.xz becomes xz → tar → members).
 *
 * @example
 * const r = await runScanner(decompressScanner, xzBytes, { name: 'eicar.com.xz' });
 * r.children[0].name // 'eicar.com'
 */
import { ArchiveSession, stripCompressionSuffix } from './archive-common.ts';
import { findContainerTools, toolSucceeded, withPrivateDir, type ContainerTools } from './container-extract.ts';
import { runTool } from './subprocess.ts';
import type { Scanner } from './types.ts';

const FORMATS = new Set(['xz', 'zstd', 'lzma', 'lzip']);

/** File-name suffixes these formats add, and what the decompressed name gets instead. */
export const STREAM_SUFFIXES: Record<string, string> = { xz: '', txz: '.tar', zst: '', zstd: '', tzst: '.tar', lzma: '', tlz: '.tar', lz: '' };

const CAP_MS = 30 * 60_000;

export const decompressScanner: Scanner<ContainerTools> = {
  name: 'decompress',
  version: '1',
  layer: 'archive',
  async init() {
    return findContainerTools();
  },
  accepts: (info) => info.kind === 'file' && FORMATS.has(info.fileType),
  async scan(input, ctx, tools) {
    const session = new ArchiveSession(ctx, 'decompressed');
    if (!tools.bsdcat) {
      session.flag('CONTAINER_UNOPENED', { reason: 'tool_missing', tool: 'bsdcat', type: input.info.fileType });
      return session.result();
    }
    const bsdcat = tools.bsdcat;
    const member = session.member(stripCompressionSuffix(input.info.name, STREAM_SUFFIXES), { compressedSize: input.info.size, fromArchive: false });
    try {
      const file = await input.path();
      const r = await withPrivateDir(ctx.tmpDir, 'bsdcat', (work) =>
        runTool(bsdcat, ['--', file], { cwd: work, signal: session.signal, deadline: ctx.deadline, capMs: CAP_MS, onStdout: (c) => member.write(c) }),
      );
      if (!toolSucceeded(session, r, member.name, undefined, member.size, member.stop !== undefined) && !member.stop) member.meta.corrupt = true;
    } catch (err) {
      if (session.failure(err, member.name) === 'corrupt') member.meta.corrupt = true;
    }
    try {
      // Like gzip: what was read is scanned; a stream broken before its first byte gives nothing.
      if (member.size > 0 || !member.meta.corrupt) await session.emit(member);
      else await member.discard();
    } finally {
      session.close();
    }
    return session.result();
  },
};
