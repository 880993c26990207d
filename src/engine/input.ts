/**
 * ScanInput implementations over a file on disk or a buffer in memory.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import type { SampleInfo, ScanInput } from '../scanners/types.ts';

export class TooLargeForMemoryError extends Error {
  override name = 'TooLargeForMemoryError';
}

export function inputFromFile(info: SampleInfo, file: string): ScanInput {
  return {
    info,
    stream: () => fs.createReadStream(file),
    path: async () => file,
    async bytes(maxBytes = Infinity) {
      if (info.size > maxBytes) throw new TooLargeForMemoryError(`${info.size} bytes is more than ${maxBytes}`);
      return fsp.readFile(file);
    },
    async head(n: number) {
      const fh = await fsp.open(file, 'r');
      try {
        const buf = Buffer.alloc(Math.min(n, info.size));
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    },
  };
}

/**
 * `tmpDir` is where `path()` writes the buffer when a scanner asks for a file, unless `file`
 * already holds these very bytes.
 */
export function inputFromBuffer(info: SampleInfo, data: Buffer, tmpDir: string, file?: string): ScanInput {
  let written: Promise<string> | undefined = file === undefined ? undefined : Promise.resolve(file);
  return {
    info,
    stream: () => Readable.from([data]),
    path() {
      written ??= (async () => {
        await fsp.mkdir(tmpDir, { recursive: true });
        const file = path.join(tmpDir, `buf-${crypto.randomUUID()}`);
        await fsp.writeFile(file, data);
        return file;
      })();
      return written;
    },
    async bytes(maxBytes = Infinity) {
      if (data.length > maxBytes) throw new TooLargeForMemoryError(`${data.length} bytes is more than ${maxBytes}`);
      return data;
    },
    async head(n: number) {
      return data.subarray(0, n);
    },
  };
}
