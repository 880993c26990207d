/**
 * A real S3-compatible server for tests: npm `s3rver` (pure JavaScript, installs with npm ci;
 * Debian has no MinIO, Garage or s3proxy, and a Docker-free CI cannot pull one). It speaks
 * enough of S3 for our use — PutObject, GetObject, HeadObject, DeleteObject and multipart
 * uploads with SigV4 — with path-style addressing and the fixed credentials S3RVER/S3RVER.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
// @ts-expect-error s3rver ships no type declarations
import S3rver from 's3rver';
import type { S3StorageConfig } from '../src/config/schema.ts';

export interface RunningS3 {
  endpoint: string;
  /** A storage configuration for `bucket` on this server. */
  storage(bucket: string, prefix?: string): S3StorageConfig;
  close(): Promise<void>;
}

/** `unref`: a server shared by a whole test file, which must not keep the process alive. */
export async function startS3(buckets: string[], opts: { unref?: boolean } = {}): Promise<RunningS3> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: buckets.map((name) => ({ name })) });
  const addr = (await server.run()) as { port: number };
  if (opts.unref) server.httpServer?.unref();
  const endpoint = `http://127.0.0.1:${addr.port}`;
  return {
    endpoint,
    storage: (bucket, prefix = '') => ({ type: 's3', endpoint, region: 'us-east-1', bucket, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true, prefix }),
    async close() {
      await server.close();
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}
