/**
 * Tar: streams the archive through tar-stream and emits each regular file as a child, never
 * holding more than one member (and only up to `maxInMemoryChild`) in memory. Symbolic and
 * hard links are reported, not followed or extracted. A truncated or damaged archive keeps the
 * members read before the damage (the one cut short included).
 *
 * @example
 * const r = await runScanner(tarScanner, tarBytes);
 * r.children.map((c) => c.name) // ['docs/eicar.com']
 */
import tar from 'tar-stream';
import { ArchiveSession, MAX_NAME_LENGTH } from './archive-common.ts';
import type { Scanner } from './types.ts';

const FILE_TYPES = new Set(['file', 'contiguous-file']);
const LINK_TYPES = new Set(['symlink', 'link']);

export const tarScanner: Scanner = {
  name: 'tar',
  version: '1',
  layer: 'archive',
  accepts: (info) => info.kind === 'file' && info.fileType === 'tar',
  async scan(input, ctx) {
    const session = new ArchiveSession(ctx, 'archive_member');
    const source = input.stream();
    // Also read pre-POSIX (v7) headers; their checksum is still verified.
    const extract = tar.extract({ allowUnknownFormat: true } as Parameters<typeof tar.extract>[0]);
    const consumer = { waiting: false, received: 0 };
    const next = async <T>(it: AsyncIterator<T>): Promise<IteratorResult<T>> => {
      consumer.waiting = true;
      try {
        return await it.next();
      } finally {
        consumer.waiting = false;
      }
    };
    source.on('error', (err) => extract.destroy(err));
    source.on('end', () => void endWhenConsumed(extract, consumer, session));
    source.pipe(extract, { end: false });
    const skipped: Record<string, number> = {};
    const entries = extract[Symbol.asyncIterator]();
    try {
      for (let e = await next(entries); !e.done; e = await next(entries)) {
        session.checkContinue();
        const entry = e.value;
        const { header } = entry;
        const type = header.type ?? 'file';
        if (LINK_TYPES.has(type)) {
          session.members++;
          session.flag('ARCHIVE_SYMLINK', {
            name: header.name.slice(0, MAX_NAME_LENGTH),
            type,
            target: (header.linkname ?? '').slice(0, MAX_NAME_LENGTH),
          });
        }
        const member = FILE_TYPES.has(type)
          ? session.member(header.name, { meta: validDate(header.mtime) ? { mtime: header.mtime.toISOString() } : {} })
          : undefined;
        if (!member && type !== 'directory' && !LINK_TYPES.has(type)) skipped[type] = (skipped[type] ?? 0) + 1;
        const chunks = entry[Symbol.asyncIterator]();
        try {
          for (let c = await next(chunks); !c.done; c = await next(chunks)) {
            consumer.received += (c.value as Buffer).length;
            if (member) await member.write(c.value as Buffer);
            else session.checkContinue();
          }
        } catch (err) {
          if (!member) throw err;
          if (session.failure(err, member.name) === 'corrupt') member.meta.corrupt = true;
          // A member cut short by damage or a limit is still scanned; then the archive stops.
          await session.emit(member);
          break;
        }
        if (member && !(await session.emit(member))) break;
        if (!session.active) break;
      }
    } catch (err) {
      session.failure(err);
    } finally {
      source.unpipe(extract);
      source.destroy();
      extract.destroy();
      session.close();
    }
    if (Object.keys(skipped).length > 0) session.attributes.skippedTypes = skipped;
    return session.result();
  },
};

/**
 * Ends tar-stream's input once the consumer has taken everything already handed over: on a
 * truncated archive tar-stream fails as soon as its input ends and drops the bytes of the
 * member it had not delivered yet, which are exactly the ones worth scanning.
 */
async function endWhenConsumed(extract: tar.Extract, consumer: { waiting: boolean; received: number }, session: ArchiveSession): Promise<void> {
  let quietTurns = 0;
  let lastReceived = -1;
  while (quietTurns < 3 && !extract.destroyed && session.active) {
    // Yield one turn while the consumer reads; sleep while it is busy elsewhere (emitting).
    await new Promise<void>((resolve) => (consumer.waiting ? setImmediate(resolve) : setTimeout(resolve, 5)));
    if (consumer.waiting && consumer.received === lastReceived) quietTurns++;
    else quietTurns = 0;
    lastReceived = consumer.received;
  }
  if (!extract.destroyed) extract.end(undefined);
}

function validDate(d: Date | undefined): d is Date {
  return d instanceof Date && Number.isFinite(d.getTime());
}
