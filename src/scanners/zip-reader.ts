/** A zip.js Reader over an open file handle: positioned reads, nothing cached, bounded size. */
import type { FileHandle } from 'node:fs/promises';
import * as zip from '@zip.js/zip.js';
import { readAt } from './archive-common.ts';

export class ReadTooLarge extends Error {
  override name = 'ReadTooLarge';
}

export class FileHandleReader extends zip.Reader<FileHandle> {
  constructor(
    private readonly fh: FileHandle,
    size: number,
    /** Largest single read allowed (a huge central directory or part is refused). */
    private readonly maxRead: number,
  ) {
    super(fh);
    this.size = size;
  }

  override async readUint8Array(index: number, length: number): Promise<Uint8Array> {
    if (length > this.maxRead) throw new ReadTooLarge(`zip.js asked for ${length} bytes in one read`);
    return readAt(this.fh, index, Math.min(length, Math.max(0, this.size - index)));
  }
}
