import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { digestBuffer, HashingStream, OFFLOAD_AFTER_BYTES, SizeLimitError, SplitHasher } from './hashes.ts';

test('all four digests match node:crypto, with the size', () => {
  const data = crypto.randomBytes(100_000);
  const d = digestBuffer(data);
  for (const alg of ['md5', 'sha1', 'sha256', 'sha512'] as const) {
    assert.equal(d[alg], crypto.createHash(alg).update(data).digest('hex'));
  }
  assert.equal(d.size, data.length);
});

test('the hashing stream hashes chunk by chunk and keeps the head', async () => {
  const chunks = Array.from({ length: 10 }, () => crypto.randomBytes(1000));
  const h = new HashingStream(Infinity, 1500);
  await pipeline(Readable.from(chunks), h, new Writable({ write: (_c, _e, cb) => cb() }));
  const all = Buffer.concat(chunks);
  assert.equal((await h.digests()).sha256, crypto.createHash('sha256').update(all).digest('hex'));
  assert.deepEqual(h.head, all.subarray(0, 1500));
});

test('the hashing stream stops past its size limit', async () => {
  const h = new HashingStream(5000);
  await assert.rejects(
    pipeline(Readable.from([Buffer.alloc(4000), Buffer.alloc(4000)]), h, new Writable({ write: (_c, _e, cb) => cb() })),
    SizeLimitError,
  );
});

test('a big stream hashed partly in the helper thread gives the same four digests, many at once', async () => {
  // sizes around the hand-over point, and one far past the in-flight cap (backpressure)
  const sizes = [OFFLOAD_AFTER_BYTES - 1, OFFLOAD_AFTER_BYTES, OFFLOAD_AFTER_BYTES + 1, 5 * OFFLOAD_AFTER_BYTES + 123, 80 * OFFLOAD_AFTER_BYTES];
  await Promise.all(
    sizes.map(async (size) => {
      const data = crypto.randomBytes(size);
      const h = new HashingStream();
      const chunks = [];
      for (let i = 0; i < size; i += 65_536) chunks.push(data.subarray(i, i + 65_536));
      await pipeline(Readable.from(chunks), h, new Writable({ write: (_c, _e, cb) => cb() }));
      assert.deepEqual(await h.digests(), digestBuffer(data), `size ${size}`);
    }),
  );
});

test('a split hasher given up on frees its state and later streams still hash', async () => {
  const h = new SplitHasher();
  await h.update(crypto.randomBytes(3 * OFFLOAD_AFTER_BYTES));
  h.dispose();
  const again = new SplitHasher();
  const data = crypto.randomBytes(2 * OFFLOAD_AFTER_BYTES);
  await again.update(data);
  assert.deepEqual(await again.digest(), digestBuffer(data));
});

test('a stream that fails past its size limit in the helper thread rejects and leaves nothing pending', async () => {
  const h = new HashingStream(4 * OFFLOAD_AFTER_BYTES);
  await assert.rejects(
    pipeline(Readable.from(Array.from({ length: 10 }, () => crypto.randomBytes(OFFLOAD_AFTER_BYTES))), h, new Writable({ write: (_c, _e, cb) => cb() })),
    SizeLimitError,
  );
});
