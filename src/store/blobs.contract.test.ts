/**
 * ONE contract suite for every BlobStore, run against the local directory store and the
 * S3-compatible store (against a real S3 server, s3rver, started here — see test/s3rver.ts for
 * why that one). Each implementation is plugged in by a factory.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { LocalBlobStore, type BlobStore } from './blobs.ts';
import { S3BlobStore, MULTIPART_THRESHOLD } from './s3-blobs.ts';
import { EgressGuard, EgressRefusedError } from '../net/egress-guard.ts';
import { SizeLimitError } from '../scanners/hashes.ts';
import { startS3, type RunningS3 } from '../../test/s3rver.ts';

interface Factory {
  name: string;
  setup(): Promise<{ store: BlobStore; teardown(): Promise<void> }>;
}

let s3: RunningS3;
const loopbackGuard = new EgressGuard({ allow: ['127.0.0.0/8'] });

const factories: Factory[] = [
  {
    name: 'LocalBlobStore',
    async setup() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-blobs-'));
      return { store: new LocalBlobStore(dir), teardown: () => fsp.rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'S3BlobStore',
    async setup() {
      const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-s3tmp-'));
      const store = new S3BlobStore(s3.storage('contract', 'samples/'), { guard: loopbackGuard, tmpDir });
      return {
        store,
        async teardown() {
          store.close();
          // nothing may stay behind in the spool folder
          assert.deepEqual(fs.readdirSync(tmpDir), []);
          await fsp.rm(tmpDir, { recursive: true, force: true });
        },
      };
    },
  },
];

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

before(async () => {
  s3 = await startS3(['contract']);
});
after(async () => {
  await s3.close();
});

for (const f of factories) {
  describe(`BlobStore contract: ${f.name}`, () => {
    let store: BlobStore;
    let teardown: () => Promise<void>;
    before(async () => {
      ({ store, teardown } = await f.setup());
    });
    after(async () => teardown());

    it('put stores content under its sha256 and gives all digests and the head', async () => {
      const data = Buffer.from('%PDF-1.7 hello blob store');
      const { digests, head } = await store.put(Readable.from([data]));
      assert.equal(digests.sha256, sha(data));
      assert.equal(digests.md5, crypto.createHash('md5').update(data).digest('hex'));
      assert.equal(digests.size, data.length);
      assert.ok(head.subarray(0, 5).equals(Buffer.from('%PDF-')));
      assert.equal(await store.exists(digests.sha256), true);
      assert.deepEqual(await readAll(store.open(digests.sha256)), data);
    });

    it('checkout gives a readable local file, and release cleans up temporary copies', async () => {
      const data = crypto.randomBytes(100_000);
      const { digests } = await store.put(Readable.from([data]));
      const co = await store.checkout(digests.sha256);
      assert.deepEqual(await fsp.readFile(co.path), data);
      await co.release();
      // the blob itself is still there after release
      assert.equal(await store.exists(digests.sha256), true);
    });

    it('a missing blob does not exist, cannot be checked out, and its stream fails', async () => {
      const missing = sha(Buffer.from('never stored ' + f.name));
      assert.equal(await store.exists(missing), false);
      await assert.rejects(store.checkout(missing));
      await assert.rejects(readAll(store.open(missing)));
    });

    it('delete removes the blob; deleting twice is harmless', async () => {
      const { digests } = await store.put(Readable.from([Buffer.from('to delete ' + f.name)]));
      await store.delete(digests.sha256);
      assert.equal(await store.exists(digests.sha256), false);
      await store.delete(digests.sha256);
    });

    it('maxBytes stops the upload and stores nothing', async () => {
      const data = crypto.randomBytes(10_000);
      await assert.rejects(store.put(Readable.from([data]), { maxBytes: 5_000 }), SizeLimitError);
      assert.equal(await store.exists(sha(data)), false);
    });

    it('storing the same content twice is idempotent', async () => {
      const data = Buffer.from('twice ' + f.name);
      const a = await store.put(Readable.from([data]));
      const b = await store.put(Readable.from([data]));
      assert.equal(a.digests.sha256, b.digests.sha256);
      assert.deepEqual(await readAll(store.open(a.digests.sha256)), data);
    });

    it('a large object streams through (S3: as a multipart upload)', async () => {
      const size = MULTIPART_THRESHOLD + 5 * 1024 * 1024 + 123;
      const block = crypto.randomBytes(1024 * 1024);
      const hash = crypto.createHash('sha256');
      function* gen() {
        let left = size;
        while (left > 0) {
          const b = block.subarray(0, Math.min(left, block.length));
          hash.update(b);
          left -= b.length;
          yield b;
        }
      }
      const { digests } = await store.put(Readable.from(gen()));
      assert.equal(digests.size, size);
      assert.equal(digests.sha256, hash.digest('hex'));
      const co = await store.checkout(digests.sha256);
      try {
        assert.equal((await fsp.stat(co.path)).size, size);
        const back = crypto.createHash('sha256');
        for await (const c of fs.createReadStream(co.path)) back.update(c as Buffer);
        assert.equal(back.digest('hex'), digests.sha256);
      } finally {
        await co.release();
      }
    });
  });
}

describe('S3BlobStore integrity', () => {
  it('a sample damaged in the bucket fails its checkout instead of being scanned as the original', async () => {
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-s3tmp-'));
    const store = new S3BlobStore(s3.storage('contract', 'integrity/'), { guard: loopbackGuard, tmpDir });
    try {
      const data = Buffer.from(`original ${crypto.randomUUID()}`);
      const { digests } = await store.put(Readable.from([data]));
      // another writer (or a torn write) leaves other bytes under the same key
      const other = path.join(tmpDir, 'other');
      fs.writeFileSync(other, Buffer.from('half'));
      await store.putFile(store.keyOf(digests.sha256), other, 4);
      fs.rmSync(other);
      await assert.rejects(store.checkout(digests.sha256), /hashes to .*damaged or still being written/);
      assert.deepEqual(fs.readdirSync(tmpDir), [], 'the bad copy is not left behind');
      // storing the real content again repairs it (the size differs, so it is uploaded)
      await store.put(Readable.from([data]));
      const co = await store.checkout(digests.sha256);
      assert.deepEqual(fs.readFileSync(co.path), data);
      await co.release();
    } finally {
      store.close();
      fs.rmSync(tmpDir, { recursive: true, force: true });
    }
  });
});

describe('S3BlobStore and the egress guard', () => {
  it('refuses a loopback endpoint unless egressAllow names it', async () => {
    const store = new S3BlobStore(s3.storage('contract'), { guard: new EgressGuard() });
    try {
      await assert.rejects(store.exists(sha(Buffer.from('x'))), EgressRefusedError);
    } finally {
      store.close();
    }
  });

  it('checks the addresses a host name resolves to (localhost → loopback is refused)', async () => {
    const store = new S3BlobStore({ ...s3.storage('contract'), endpoint: s3.endpoint.replace('127.0.0.1', 'localhost') }, { guard: new EgressGuard() });
    try {
      await assert.rejects(store.exists(sha(Buffer.from('x'))), (e: Error) => /egress refused/.test(e.message) || /egress refused/.test(String((e as { cause?: Error }).cause?.message)));
    } finally {
      store.close();
    }
  });
});
