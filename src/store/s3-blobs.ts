/**
 * S3-compatible object storage: the scale-mode blob store (content-addressed samples under
 * `<prefix>blobs/ab/cd/<sha256>`, same contract as `LocalBlobStore`) and a named storage whose
 * objects are read and written by key (the X-Ray `storage` + `path` fields, CSS
 * `/api/Scan/Existing` and scan-and-upload).
 *
 * - Memory stays flat whatever the size: `put` streams the source through the hashers into a
 *   temporary file (the key is the sha256, known only at the end), then uploads that file with
 *   one PutObject of known length, or a multipart upload (16 MiB parts read straight from the
 *   file) above 64 MiB. `checkout` downloads to a temporary file.
 * - Every connection goes through the egress guard: the endpoint's literal IP is checked before
 *   each call and host names are resolved by `guard.lookup` inside the SDK's HTTP agent, so an
 *   operator's storage on a private address must be allowed in `egressAllow` like any target.
 * - Checksums are only computed where S3 requires them (`WHEN_REQUIRED`): the SDK's default
 *   aws-chunked trailing checksums are not understood by every S3-compatible server.
 *
 * @example
 * const s3 = new S3BlobStore({ type: 's3', endpoint: 'http://127.0.0.1:4569', region: 'us-east-1', bucket: 'b',
 *   accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true, prefix: '' }, { guard, tmpDir });
 * const { digests } = await s3.put(fs.createReadStream('sample.bin'));
 * const copy = await s3.checkout(digests.sha256); // ... await copy.release();
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  S3Client,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  DeleteObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  AbortMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import type { S3StorageConfig } from '../config/schema.ts';
import type { EgressGuard } from '../net/egress-guard.ts';
import { DETECT_HEAD_BYTES } from '../scanners/file-type.ts';
import { HashingStream } from '../scanners/hashes.ts';
import type { BlobStore, StoredBlob } from './blobs.ts';

const SHA256 = /^[0-9a-f]{64}$/;
/** Above this size uploads are multipart. */
export const MULTIPART_THRESHOLD = 64 * 1024 * 1024;
const PART_SIZE = 16 * 1024 * 1024;
const PART_CONCURRENCY = 3;

/** The object does not exist in the storage. Stable code: `S3_NOT_FOUND`. */
export class ObjectNotFoundError extends Error {
  override name = 'ObjectNotFoundError';
  readonly code = 'S3_NOT_FOUND';
}

export interface S3BlobStoreDeps {
  guard: EgressGuard;
  /** Folder for upload and checkout spool files. */
  tmpDir?: string;
}

export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  private readonly prefix: string;
  private readonly tmpDir: string;

  constructor(
    readonly config: S3StorageConfig,
    private readonly deps: S3BlobStoreDeps,
  ) {
    this.bucket = config.bucket;
    this.prefix = config.prefix ?? '';
    this.tmpDir = deps.tmpDir ?? os.tmpdir();
    fs.mkdirSync(this.tmpDir, { recursive: true });
    const lookup = deps.guard.lookup;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      credentials: config.accessKeyId && config.secretAccessKey ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } : undefined,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new http.Agent({ keepAlive: true, lookup } as http.AgentOptions),
        httpsAgent: new https.Agent({ keepAlive: true, lookup } as https.AgentOptions),
      },
    });
  }

  /** The literal-IP part of the egress check (host names are checked by the agent's lookup). */
  private guarded(): void {
    if (this.config.endpoint) this.deps.guard.assertUrl(this.config.endpoint);
  }

  keyOf(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return `${this.prefix}blobs/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  }

  // BlobStore ------------------------------------------------------------------------------

  async put(source: Readable, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<StoredBlob> {
    const spool = this.spoolName('put');
    const hashing = new HashingStream(opts.maxBytes, DETECT_HEAD_BYTES);
    try {
      await pipeline(source, hashing, fs.createWriteStream(spool, { flags: 'wx' }), { signal: opts.signal });
      const digests = await hashing.digests();
      const key = this.keyOf(digests.sha256);
      // the key is the content's hash: an object already there with this size is these bytes
      if ((await this.headKey(key))?.size !== digests.size) await this.putFile(key, spool, digests.size, opts.signal);
      return { digests, head: hashing.head };
    } finally {
      await fsp.rm(spool, { force: true });
    }
  }

  open(sha256: string): Readable {
    return this.openKeySync(this.keyOf(sha256));
  }

  /**
   * Downloads a sample and checks that its bytes still hash to `sha256`: a sample damaged or
   * half-written in the bucket must fail the scan (and be retried), never be judged as if it
   * were the submitted object.
   */
  async checkout(sha256: string): Promise<{ path: string; release(): Promise<void> }> {
    const hash = crypto.createHash('sha256');
    const got = await this.downloadKey(this.keyOf(sha256), (chunk) => hash.update(chunk));
    const actual = hash.digest('hex');
    if (actual !== sha256) {
      await got.release();
      throw new Error(`sample ${sha256} read back from the bucket hashes to ${actual}: the stored object is damaged or still being written`);
    }
    return got;
  }

  async exists(sha256: string): Promise<boolean> {
    return (await this.headKey(this.keyOf(sha256))) !== undefined;
  }

  async delete(sha256: string): Promise<void> {
    this.guarded();
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(sha256) }));
  }

  // Objects by key ------------------------------------------------------------------------

  /** Size of the object, or undefined when it does not exist. */
  async headKey(key: string): Promise<{ size: number } | undefined> {
    this.guarded();
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: Number(r.ContentLength ?? 0) };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** A stream of the object's bytes; rejects with `ObjectNotFoundError` when it is missing. */
  async openKey(key: string, signal?: AbortSignal): Promise<{ stream: Readable; size: number }> {
    this.guarded();
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      return { stream: r.Body as Readable, size: Number(r.ContentLength ?? 0) };
    } catch (e) {
      if (isNotFound(e)) throw new ObjectNotFoundError(`no object ${key} in bucket ${this.bucket}`);
      throw e;
    }
  }

  /** Uploads a local file under `key`: one PutObject, or multipart above 64 MiB. */
  async putFile(key: string, file: string, size: number, signal?: AbortSignal): Promise<void> {
    this.guarded();
    if (size <= MULTIPART_THRESHOLD) {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: fs.createReadStream(file), ContentLength: size }), { abortSignal: signal });
      return;
    }
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
    try {
      const count = Math.ceil(size / PART_SIZE);
      const parts: { ETag: string; PartNumber: number }[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          const start = i * PART_SIZE;
          const end = Math.min(size, start + PART_SIZE);
          const r = await this.client.send(
            new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId, PartNumber: i + 1, Body: fs.createReadStream(file, { start, end: end - 1 }), ContentLength: end - start }),
            { abortSignal: signal },
          );
          parts[i] = { ETag: r.ETag!, PartNumber: i + 1 };
        }
      };
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, worker));
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }), { abortSignal: signal });
    } catch (e) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId })).catch(() => {});
      throw e;
    }
  }

  /** Uploads a stream of unknown length under `key` (spooled to a temporary file first). */
  async putStream(key: string, source: Readable, signal?: AbortSignal): Promise<number> {
    const spool = this.spoolName('upload');
    try {
      await pipeline(source, fs.createWriteStream(spool, { flags: 'wx' }), { signal });
      const { size } = await fsp.stat(spool);
      await this.putFile(key, spool, size, signal);
      return size;
    } finally {
      await fsp.rm(spool, { force: true });
    }
  }

  /** Downloads the object to a temporary file; `release()` deletes it. */
  async downloadKey(key: string, onChunk?: (chunk: Buffer) => void): Promise<{ path: string; release(): Promise<void> }> {
    const file = this.spoolName('checkout');
    const { stream } = await this.openKey(key);
    if (onChunk) stream.on('data', onChunk);
    try {
      await pipeline(stream, fs.createWriteStream(file, { flags: 'wx' }));
    } catch (e) {
      await fsp.rm(file, { force: true });
      throw e;
    }
    return { path: file, release: () => fsp.rm(file, { force: true }) };
  }

  private openKeySync(key: string): Readable {
    const out = new PassThrough();
    this.openKey(key).then(
      ({ stream }) => {
        stream.on('error', (e) => out.destroy(e));
        stream.pipe(out);
      },
      (e) => out.destroy(e as Error),
    );
    return out;
  }

  private spoolName(kind: string): string {
    return path.join(this.tmpDir, `s3-${kind}-${crypto.randomUUID()}`);
  }

  close(): void {
    this.client.destroy();
  }
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NotFound' || err?.name === 'NoSuchKey' || err?.$metadata?.httpStatusCode === 404;
}
