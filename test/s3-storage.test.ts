/**
 * Scale-mode sample storage: with `blobStorage` naming an S3 storage, submitted samples are
 * kept in the bucket (real s3rver) and the whole X-Ray flow runs on them unchanged.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startVerdict, makeZip, type Running } from './harness.ts';
import { startS3, type RunningS3 } from './s3rver.ts';
import { S3BlobStore } from '../src/store/s3-blobs.ts';
import { EgressGuard } from '../src/net/egress-guard.ts';

const EICAR = Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join(''), 'latin1');

describe('samples kept in S3 (blobStorage)', () => {
  let s3: RunningS3;
  let r: Running;
  let bucket: S3BlobStore;
  before(async () => {
    s3 = await startS3(['samples']);
    r = await startVerdict({ clamd: 'off', storages: { samples: s3.storage('samples', 'verdict/') }, blobStorage: 'samples' });
    bucket = new S3BlobStore(s3.storage('samples', 'verdict/'), { guard: new EgressGuard({ allow: ['127.0.0.0/8'] }) });
  });
  after(async () => {
    bucket.close();
    await r.close();
    await s3.close();
  });

  it('an uploaded sample is stored in the bucket, scanned from there, and reusable by path', async () => {
    const zip = await makeZip({ 'eicar.com': EICAR });
    const id = await r.submitFile(zip, 'bundle.zip');
    const done = await r.waitForScan(id);
    assert.equal(done.verdict, 'MAL');
    const sha = crypto.createHash('sha256').update(zip).digest('hex');
    assert.deepEqual(await bucket.headKey(`verdict/blobs/${sha.slice(0, 2)}/${sha.slice(2, 4)}/${sha}`), { size: zip.length });
    // nothing under the local blob folder
    const local = path.join(r.dataDir, 'blobs');
    const files = fs.existsSync(local) ? fs.readdirSync(local).filter((f) => f !== '.incoming') : [];
    assert.deepEqual(files, []);
    const res = await r.api('POST', '/api/v1/files/', { json: { name: 'again.zip', path: `verdict://blobs/${sha}` } });
    const again = (await res.json()) as { scan_id: number };
    assert.equal((await r.waitForScan(again.scan_id)).verdict, 'MAL');
  });

  it('deleting the scan removes the sample from the bucket', async () => {
    const data = Buffer.from('short-lived ' + Date.now());
    const id = await r.submitFile(data, 'x.txt');
    await r.waitForScan(id);
    const sha = crypto.createHash('sha256').update(data).digest('hex');
    assert.ok(await bucket.exists(sha));
    const res = await r.api('PUT', `/api/v1/scans/delete_scan/${id}/`);
    assert.equal(res.status, 204);
    assert.equal(await bucket.exists(sha), false);
  });
});
