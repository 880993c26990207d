/**
 * Sample storage, content-addressed by sha256. `put` streams (memory stays flat whatever the
 * size), hashes on the way, and resolves only once the bytes are on disk (fsync) under their
 * final name. The local implementation is the embedded default; an S3-compatible one plugs in
 * behind the same interface.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { HashingStream, type Digests } from '../scanners/hashes.ts';
import { DETECT_HEAD_BYTES } from '../scanners/file-type.ts';

export interface StoredBlob {
  digests: Digests;
  /** The first bytes, for type detection. */
  head: Buffer;
}

export interface BlobStore {
  put(source: Readable, opts?: { maxBytes?: number; signal?: AbortSignal }): Promise<StoredBlob>;
  open(sha256: string): Readable;
  /** A local file holding the blob; `release()` when done (deletes a temporary copy). */
  checkout(sha256: string): Promise<{ path: string; release(): Promise<void> }>;
  exists(sha256: string): Promise<boolean>;
  delete(sha256: string): Promise<void>;
}

const SHA256 = /^[0-9a-f]{64}$/;

export class LocalBlobStore implements BlobStore {
  private readonly tmp: string;
  /** Fan-out directories known to exist (saves a mkdir per upload). */
  private readonly madeDirs = new Set<string>();

  constructor(readonly root: string) {
    this.tmp = path.join(root, '.incoming');
    fs.mkdirSync(this.tmp, { recursive: true });
  }

  pathOf(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async put(source: Readable, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<StoredBlob> {
    const tmpFile = path.join(this.tmp, crypto.randomUUID());
    const hashing = new HashingStream(opts.maxBytes, DETECT_HEAD_BYTES);
    try {
      // `flush`: the stream fsyncs its descriptor before closing it (no second open to flush)
      await pipeline(source, hashing, fs.createWriteStream(tmpFile, { flags: 'wx', flush: true }), { signal: opts.signal });
      const digests = await hashing.digests();
      const final = this.pathOf(digests.sha256);
      const dir = path.dirname(final);
      if (!this.madeDirs.has(dir)) {
        await fsp.mkdir(dir, { recursive: true });
        this.madeDirs.add(dir); // at most 65,536 of them
      }
      await fsp.rename(tmpFile, final).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        await fsp.mkdir(dir, { recursive: true }); // removed behind our back
        await fsp.rename(tmpFile, final);
      });
      await syncDir(path.dirname(final));
      return { digests, head: hashing.head };
    } catch (e) {
      await fsp.rm(tmpFile, { force: true });
      throw e;
    }
  }

  open(sha256: string): Readable {
    return fs.createReadStream(this.pathOf(sha256));
  }

  async checkout(sha256: string) {
    const p = this.pathOf(sha256);
    await fsp.access(p);
    return { path: p, release: async () => {} };
  }

  async exists(sha256: string): Promise<boolean> {
    return fsp.access(this.pathOf(sha256)).then(
      () => true,
      () => false,
    );
  }

  async delete(sha256: string): Promise<void> {
    await fsp.rm(this.pathOf(sha256), { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // some file systems refuse fsync on directories; the rename is still atomic
  } finally {
    await fh.close();
  }
}
