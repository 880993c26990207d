import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { digestBuffer, HashingStream, SizeLimitError } from './hashes.ts';

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
  assert.equal(h.hasher.digest().sha256, crypto.createHash('sha256').update(all).digest('hex'));
  assert.deepEqual(h.head, all.subarray(0, 1500));
});

test('the hashing stream stops past its size limit', async () => {
  const h = new HashingStream(5000);
  await assert.rejects(
    pipeline(Readable.from([Buffer.alloc(4000), Buffer.alloc(4000)]), h, new Writable({ write: (_c, _e, cb) => cb() })),
    SizeLimitError,
  );
});
