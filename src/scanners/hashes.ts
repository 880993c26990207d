/**
 * Hashes: md5, sha1, sha256 and sha512 computed in one pass over a stream, so that a sample
 * is read once whatever its size.
 *
 * @example
 * const h = new MultiHasher();
 * for await (const chunk of stream) h.update(chunk);
 * const { sha256, size } = h.digest();
 */
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export interface Digests {
  md5: string;
  sha1: string;
  sha256: string;
  sha512: string;
  size: number;
}

export class MultiHasher {
  private md5 = crypto.createHash('md5');
  private sha1 = crypto.createHash('sha1');
  private sha256 = crypto.createHash('sha256');
  private sha512 = crypto.createHash('sha512');
  private size = 0;

  update(chunk: Buffer): void {
    this.md5.update(chunk);
    this.sha1.update(chunk);
    this.sha256.update(chunk);
    this.sha512.update(chunk);
    this.size += chunk.length;
  }

  digest(): Digests {
    return {
      md5: this.md5.digest('hex'),
      sha1: this.sha1.digest('hex'),
      sha256: this.sha256.digest('hex'),
      sha512: this.sha512.digest('hex'),
      size: this.size,
    };
  }
}

export function digestBuffer(data: Buffer): Digests {
  const h = new MultiHasher();
  h.update(data);
  return h.digest();
}

/** A pass-through stream that hashes what flows through it and can stop past a size limit. */
export class HashingStream extends Transform {
  readonly hasher = new MultiHasher();
  private seen = 0;
  /** The first bytes, kept for type detection. */
  head: Buffer = Buffer.alloc(0);

  constructor(
    private readonly maxBytes = Infinity,
    private readonly headBytes = 4096,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.maxBytes) {
      cb(new SizeLimitError(this.maxBytes));
      return;
    }
    if (this.head.length < this.headBytes) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, this.headBytes - this.head.length)]);
    }
    this.hasher.update(chunk);
    cb(null, chunk);
  }
}

export class SizeLimitError extends Error {
  override name = 'SizeLimitError';
  constructor(readonly limit: number) {
    super(`object is larger than the maximum of ${limit} bytes`);
  }
}
