/**
 * mbox: a mailbox file of messages, each opened by a `From ` separator line (`From sender date`)
 * at the start of the file or after a blank line. Each message becomes an `embedded_object`
 * child named `message-N.eml` (the separator and the blank line before the next one removed,
 * `>From ` lines unquoted as mboxrd writes them), which the email scanner then parses. At most
 * MAX_MBOX_MESSAGES messages; more, or the byte and time limits, end as ARCHIVE_LIMIT.
 *
 * A file holding one message behind a `From ` line (how some tools save a single mail) is left
 * to the email scanner, which parses it as the message itself: no child then.
 *
 * @example
 * const r = await runScanner(mboxScanner, Buffer.from('From a@b Mon Jan  1 00:00:00 2024\nSubject: 1\n\nx\n\nFrom c@d Mon Jan  1 00:00:01 2024\nSubject: 2\n\ny\n'));
 * r.children.map((c) => c.name) // ['message-1.eml', 'message-2.eml']
 */
import type { Readable } from 'node:stream';
import { ArchiveSession, type MemberExtraction } from './archive-common.ts';
import type { Scanner } from './types.ts';

/** Most messages split out of one mbox. */
export const MAX_MBOX_MESSAGES = 10_000;
/** Pieces of a line longer than this are passed on as they come (never a separator). */
const MAX_LINE = 64 * 1024;
/** Bytes gathered before a write to the member (lines are small). */
const WRITE_BATCH = 64 * 1024;

const FROM_LINE = /^From \S+ .*\d/;
const QUOTED_FROM = /^>+From /;

/** A `From ` separator line (the bytes of one line, with or without its ending). */
export function isFromLine(line: Buffer): boolean {
  return line.length >= 7 && line[0] === 0x46 && FROM_LINE.test(line.subarray(0, 1024).toString('latin1'));
}

export type MboxPart = { start: true; separator: string } | { data: Buffer };

/**
 * Reads an mbox stream as message starts and message bytes. Content before the first
 * separator (none in a real mbox) comes out as data with no start. Lines are looked at only
 * when they may matter (blank, `From `, `>From `), so ordinary text passes in large slices.
 */
export async function* mboxParts(stream: Readable): AsyncGenerator<MboxPart> {
  let carry: Buffer = Buffer.alloc(0);
  /** The next bytes continue an over-long line already passed on. */
  let midLine = false;
  /** The start of the file counts as after a blank line. */
  let previousBlank = true;
  /** A blank line ending a chunk: dropped if a separator follows, else passed on. */
  let held: Buffer | undefined;

  const separator = (line: Buffer): MboxPart => ({ start: true, separator: line.toString('latin1').replace(/\r?\n$/, '').slice(0, 500) });
  const quoted = (line: Buffer) => line[0] === 0x3e && QUOTED_FROM.test(line.subarray(0, 64).toString('latin1'));

  for await (const chunk of stream) {
    const buf: Buffer = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    const parts: MboxPart[] = [];
    let run = 0; // the first byte not handed out yet
    let pos = 0;
    let blankAt: number | undefined; // start of the previous line when it was blank
    let nl: number;
    while ((nl = buf.indexOf(0x0a, pos)) >= 0) {
      const start = pos;
      pos = nl + 1;
      if (midLine) {
        midLine = false;
        previousBlank = false;
        continue;
      }
      const line = buf.subarray(start, pos);
      const blank = line.length === 1 || (line.length === 2 && line[0] === 0x0d);
      if (previousBlank && line[0] === 0x46 && isFromLine(line)) {
        // The blank line before a separator belongs to the mbox, not to the message.
        const end = blankAt ?? start;
        if (end > run) parts.push({ data: buf.subarray(run, end) });
        held = undefined;
        parts.push(separator(line));
        run = pos;
      } else {
        if (held) parts.push({ data: held });
        held = undefined;
        if (quoted(line)) {
          if (start > run) parts.push({ data: buf.subarray(run, start) });
          parts.push({ data: line.subarray(1) });
          run = pos;
        }
      }
      blankAt = blank ? start : undefined;
      previousBlank = blank;
    }
    let end = pos;
    if (blankAt !== undefined && blankAt >= run) {
      held = buf.subarray(blankAt, pos);
      end = blankAt;
    }
    if (end > run) parts.push({ data: buf.subarray(run, end) });
    carry = buf.subarray(pos);
    if (carry.length > MAX_LINE) {
      if (held) parts.push({ data: held });
      held = undefined;
      parts.push({ data: carry });
      carry = Buffer.alloc(0);
      midLine = true;
      previousBlank = false;
    }
    for (const part of parts) yield part;
  }
  // A last line without its newline; a final blank line is the mbox's own.
  if (carry.length) {
    if (!midLine && previousBlank && isFromLine(carry)) yield separator(carry);
    else {
      if (held) yield { data: held };
      yield { data: !midLine && quoted(carry) ? carry.subarray(1) : carry };
    }
  }
}

/** How many messages the mbox holds, counting no further than `stopAt`. */
export async function countMboxMessages(stream: Readable, stopAt = 2): Promise<number> {
  let n = 0;
  try {
    for await (const part of mboxParts(stream)) {
      if ('start' in part && ++n >= stopAt) break;
    }
  } finally {
    stream.destroy();
  }
  return n;
}

export const mboxScanner: Scanner = {
  name: 'mbox',
  version: '1',
  layer: 'email',
  accepts: (info) => info.kind === 'file' && info.fileType === 'email',
  async scan(input, ctx) {
    if (!isFromLine(await input.head(1024))) return {};
    const session = new ArchiveSession(ctx, 'embedded_object');
    const stream = input.stream();
    const onAbort = () => stream.destroy();
    session.signal.addEventListener('abort', onAbort, { once: true });
    let messages = 0;
    let current: MemberExtraction | undefined;
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = async () => {
      if (current && batched > 0) await current.write(batch.length === 1 ? batch[0] : Buffer.concat(batch));
      batch = [];
      batched = 0;
    };
    try {
      for await (const part of mboxParts(stream)) {
        if ('start' in part) {
          await flush();
          session.checkContinue();
          if (messages >= MAX_MBOX_MESSAGES) {
            session.flag('ARCHIVE_LIMIT', { reason: 'messages', limit: MAX_MBOX_MESSAGES, emitted: session.emitted });
            break;
          }
          // A message is emitted once the next one starts: a lone message stays with the email scanner.
          if (current && !(await session.emit(current))) {
            current = undefined;
            break;
          }
          messages++;
          current = session.member(`message-${messages}.eml`, { fromArchive: false, meta: { separator: part.separator } });
        } else if (current) {
          batch.push(part.data);
          batched += part.data.length;
          if (batched >= WRITE_BATCH) await flush();
        }
      }
      await flush();
      if (current && messages >= 2) await session.emit(current);
      else await current?.discard();
    } catch (err) {
      // Keep what was read of a cut-short message (it is marked truncated when a limit cut it).
      if (current && messages >= 2) await session.emit(current).catch(() => undefined);
      else await current?.discard();
      session.failure(err, current?.name);
    } finally {
      session.signal.removeEventListener('abort', onAbort);
      stream.destroy();
      session.close();
    }
    const result = session.result();
    return { evidence: result.evidence, attributes: { mbox: { messages, emitted: session.emitted } } };
  },
};
