/**
 * The X-Ray file API over a real HTTP socket, with the real engines (managed clamd included).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { eicar } from '../src/scanners/testing.ts';
import { makeTarGz, makeZip, startSink, startVerdict, type Running } from './harness.ts';

let v: Running;

before(async () => {
  v = await startVerdict();
});
after(async () => {
  await v?.close();
});

describe('X-Ray file submission', () => {
  test('the managed clamd is running (the health check says so)', async () => {
    const res = await v.api('GET', '/v1/health_check', { token: null });
    const body = (await res.json()) as Record<string, any>;
    assert.equal(res.status, 200);
    assert.equal(body.status, 'on');
    assert.equal(body.static, 'on');
    assert.equal(body.hap, 'on', `clamd must run in tests (detail: ${JSON.stringify(body.engines?.clamav)})`);
  });

  test('EICAR is malicious, found by both signature engines', async () => {
    const id = await v.submitFile(eicar(), 'eicar.com');
    assert.ok(Number.isInteger(id) && id > 0);
    const scan = await v.waitForScan(id);
    assert.equal(scan.verdict, 'MAL');
    assert.equal(scan.verbose_verdict, 'MAL');
    assert.equal(scan.status, 'CMP');
    const engines = scan.evidence.map((e: any) => e.engine);
    assert.ok(engines.includes('clamav'), `clamav evidence expected, got ${engines}`);
    assert.ok(engines.includes('yara'), `yara evidence expected, got ${engines}`);
    assert.equal(scan.sample.sha256, (await import('node:crypto')).createHash('sha256').update(eicar()).digest('hex'));
  });

  test('a clean text file is CLN with high confidence', async () => {
    const id = await v.submitFile(Buffer.from('Minutes of the Tuesday meeting.\nNothing to report.\n'), 'minutes.txt');
    const scan = await v.waitForScan(id);
    assert.equal(scan.verdict, 'CLN');
    assert.equal(scan.verbose_confidence, 'HIGH');
    assert.deepEqual(scan.scan_failures, []);
  });

  test('EICAR in a zip inside a tar.gz: the parent is MAL and the detail shows the chain', async () => {
    const zip = await makeZip({ 'docs/eicar.com': eicar() });
    const tgz = await makeTarGz({ 'bundle/inner.zip': zip, 'bundle/readme.txt': Buffer.from('hello') });
    const id = await v.submitFile(tgz, 'bundle.tar.gz');
    const scan = await v.waitForScan(id);
    assert.equal(scan.verdict, 'MAL');
    assert.equal(scan.has_mal_children, true);
    // gzip → tar → zip → eicar.com
    const tarNode = scan.children[0];
    assert.equal(tarNode.sample_file_type, 'tar');
    const zipNode = tarNode.children.find((c: any) => c.sample_title === 'bundle/inner.zip');
    assert.ok(zipNode, JSON.stringify(tarNode.children));
    assert.equal(zipNode.verbose_verdict, 'MAL');
    const leaf = zipNode.children.find((c: any) => c.sample_title === 'docs/eicar.com');
    assert.equal(leaf.verbose_verdict, 'MAL');
    const readme = tarNode.children.find((c: any) => c.sample_title === 'bundle/readme.txt');
    assert.equal(readme.verbose_verdict, 'CLN');
    // the leaf's own detail names its parent and root
    const leafDetail = await v.waitForScan(leaf.id);
    assert.equal(leafDetail.parent_scan_id, zipNode.id);
    assert.equal(leafDetail.root_scan_id, id);
    assert.equal(leafDetail.is_root_scan, false);
  });

  test('an encrypted zip opened with file_password is detected', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() }, { password: 'S3cret-pw!' });
    const id = await v.submitFile(zip, 'locked.zip', { file_password: 'S3cret-pw!' });
    const scan = await v.waitForScan(id);
    assert.equal(scan.verdict, 'MAL');
    assert.ok(scan.evidence.some((e: any) => e.heuristic === 'ARCHIVE_ENCRYPTED'));
  });

  test('an encrypted zip without its password is not a confident clean', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() }, { password: 'another-secret', zipCrypto: true });
    const id = await v.submitFile(zip, 'locked.zip');
    const scan = await v.waitForScan(id);
    assert.notEqual(scan.verdict, 'CLN');
    assert.equal(scan.partial, true);
    assert.ok(scan.evidence.some((e: any) => e.heuristic === 'ARCHIVE_ENCRYPTED_UNOPENED'), JSON.stringify(scan.evidence));
  });

  test('an encrypted zip using a default password (infected) is opened', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() }, { password: 'infected' });
    const scan = await v.waitForScan(await v.submitFile(zip, 'sample.zip'));
    assert.equal(scan.verdict, 'MAL');
  });

  test('data as base64 in a JSON body, and in a form-encoded body', async () => {
    const res = await v.api('POST', '/api/v1/files/', { json: { name: 'e.com', data: eicar().toString('base64') } });
    assert.equal(res.status, 200);
    const { scan_id } = (await res.json()) as any;
    assert.equal((await v.waitForScan(scan_id)).verdict, 'MAL');
    const form = new URLSearchParams({ name: 'note.txt', data: Buffer.from('plain words').toString('base64') });
    const res2 = await v.api('POST', '/api/v1/files/', { body: form });
    assert.equal(res2.status, 200);
    assert.equal((await v.waitForScan(((await res2.json()) as any).scan_id)).verdict, 'CLN');
  });

  test('download_link is fetched from a local server, and path re-scans a stored sample', async () => {
    const sink = await startSink((_req, _body, res) => res.end(eicar()));
    try {
      const res = await v.api('POST', '/api/v1/files/', { json: { download_link: `${sink.url}/files/payload.bin` } });
      assert.equal(res.status, 200, await res.clone().text());
      const scan = await v.waitForScan(((await res.json()) as any).scan_id);
      assert.equal(scan.verdict, 'MAL');
      assert.equal(scan.sample_title, 'payload.bin');
      const again = await v.api('POST', '/api/v1/files/', { json: { name: 'again.bin', path: scan.sample.path } });
      assert.equal(again.status, 200, await again.clone().text());
      const second = await v.waitForScan(((await again.json()) as any).scan_id);
      assert.equal(second.verdict, 'MAL');
      assert.equal(second.sample.sha256, scan.sample.sha256);
    } finally {
      await sink.close();
    }
  });

  test('callback_params are echoed and the callback reaches a local server with its headers', async () => {
    const sink = await startSink();
    try {
      const id = await v.submitFile(eicar(), 'cb.com', {
        callback_url: `${sink.url}/hook`,
        callback_params: JSON.stringify({ ticket: 'T-42' }),
        callback_headers: JSON.stringify({ Auth: 'secret-value' }),
      });
      const [got] = await sink.waitFor(1);
      assert.equal(got.method, 'POST');
      assert.equal(got.url, '/hook');
      assert.equal(got.headers.auth, 'secret-value');
      const body = JSON.parse(got.body.toString());
      assert.equal(body.scan_id, id);
      assert.equal(body.verdict, 'MAL');
      assert.equal(body.type, 'File');
      assert.equal(body.name, 'cb.com');
      assert.deepEqual(body.params, { ticket: 'T-42' });
      assert.ok(body.evidence.length > 0);
      assert.ok(body.evidence.every((e: any) => typeof e.Name === 'string' && 'Data' in e));
    } finally {
      await sink.close();
    }
  });

  test('the response echoes callback_params', async () => {
    const form = new FormData();
    form.set('name', 'x.txt');
    form.set('callback_params', JSON.stringify({ key1: 'val1' }));
    form.set('data', new Blob([Buffer.from('x')]), 'x.txt');
    const res = await v.api('POST', '/api/v1/files/', { body: form });
    const body = (await res.json()) as any;
    assert.deepEqual(body.callback_params, { key1: 'val1' });
    assert.ok(Number.isInteger(body.scan_id));
  });

  test('a failing callback endpoint is retried until it accepts', async () => {
    let calls = 0;
    const sink = await startSink((_req, _body, res) => {
      calls++;
      res.statusCode = calls < 3 ? 503 : 200;
      res.end();
    });
    try {
      await v.submitFile(Buffer.from('retry me'), 'r.txt', { callback_url: `${sink.url}/flaky` });
      await sink.waitFor(3, 20_000);
      assert.equal(calls, 3);
    } finally {
      await sink.close();
    }
  });

  test('scan ids only grow', async () => {
    const a = await v.submitFile(Buffer.from('a'), 'a.txt');
    const b = await v.submitFile(Buffer.from('b'), 'b.txt');
    assert.ok(b > a);
  });

  test('the report lists engines, layers, the scan tree, evidence, decisions and params', async () => {
    const zip = await makeZip({ 'eicar.com': eicar() });
    const id = await v.submitFile(zip, 'r.zip');
    await v.waitForScan(id);
    const res = await v.api('GET', `/api/v1/scans/report/${id}?lang=en`);
    const r = (await res.json()) as any;
    assert.equal(r.scan_id, id);
    assert.equal(r.verdict, 'MAL');
    assert.equal(r.type, 'file');
    assert.ok(r.scan_engines.includes('clamav'));
    assert.ok(r.scan_layers.includes('signatures'));
    assert.equal(r.scan_tree[0].name, 'eicar.com');
    assert.ok(r.decisions.some((d: any) => d.verdict === 'MAL'));
    assert.deepEqual(r.params, { lang: 'en' });
  });

  test('delete_scan answers 204, the scan is gone, and the unreferenced blob is removed', async () => {
    const data = Buffer.from(`unique content ${Date.now()} ${Math.random()}`);
    const id = await v.submitFile(data, 'gone.txt');
    const scan = await v.waitForScan(id);
    const sha = scan.sample.sha256 as string;
    assert.ok(await v.verdict.blobs.exists(sha));
    const res = await v.api('PUT', `/api/v1/scans/delete_scan/${id}/`);
    assert.equal(res.status, 204);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`)).status, 404);
    assert.equal(await v.verdict.blobs.exists(sha), false, 'the sample is gone from the blob store');
    assert.equal((await v.api('POST', `/api/v1/scans/delete_scan/${id}/`)).status, 404);
  });

  test('completed-jobs lists finished scans with from/to and pages with next', async () => {
    const since = Math.floor(Date.now() / 1000);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(await v.submitFile(Buffer.from(`page ${i} ${Math.random()}`), `p${i}.txt`));
    for (const id of ids) await v.waitForScan(id);
    let next: string | null = `${v.url}/api/v1/scans/completed-jobs/?from=${since}&page_size=2`;
    const seen: number[] = [];
    let pages = 0;
    while (next) {
      const res = await fetch(next, { headers: { authorization: `Token ${v.token}` } });
      const body = (await res.json()) as any;
      assert.equal(res.status, 200);
      assert.ok(body.page_result_count <= 2);
      assert.ok(body.count >= 5);
      for (const r of body.results) {
        seen.push(r.id);
        assert.match(r.created_on_elastic_at, /^\d{4}-\d\d-\d\dT/);
        assert.ok(['CLN', 'MAL', 'SUS'].includes(r.verbose_verdict));
      }
      next = body.next;
      pages++;
    }
    assert.ok(pages >= 3);
    for (const id of ids) assert.ok(seen.includes(id), `${id} missing from ${seen}`);
    assert.equal(new Set(seen).size, seen.length, 'no scan twice');
    const future = await v.api('GET', `/api/v1/scans/completed-jobs/?from=${since + 3600}`);
    assert.equal(((await future.json()) as any).count, 0);
  });
});

describe('X-Ray errors', () => {
  test('no token or a wrong token is 403', async () => {
    assert.equal((await v.api('GET', '/api/v1/scans/list/1/', { token: null })).status, 403);
    assert.equal((await v.api('GET', '/api/v1/scans/list/1/', { token: 'vd_wrong' })).status, 403);
  });

  test('an unknown scan is 404', async () => {
    assert.equal((await v.api('GET', '/api/v1/scans/list/99999999/')).status, 404);
    assert.equal((await v.api('GET', '/api/v1/scans/list/abc/')).status, 404);
  });

  test('a missing name or missing data is 400 naming the field', async () => {
    const r1 = await v.api('POST', '/api/v1/files/', { json: { data: 'aGVsbG8=' } });
    assert.equal(r1.status, 400);
    assert.ok('name' in ((await r1.json()) as any));
    const r2 = await v.api('POST', '/api/v1/files/', { json: { name: 'x' } });
    assert.equal(r2.status, 400);
    assert.ok('data' in ((await r2.json()) as any));
    const r3 = await v.api('POST', '/api/v1/files/', { json: { name: 'x', data: 'aGk=', colour: 'blue' } });
    assert.equal(r3.status, 400);
    assert.ok('colour' in ((await r3.json()) as any));
    const r4 = await v.api('POST', '/api/v1/files/', { json: { name: 'x', data: 'aGk=', callback_params: '{not json' } });
    assert.equal(r4.status, 400);
    assert.ok('callback_params' in ((await r4.json()) as any));
    const r5 = await v.api('GET', '/api/v1/scans/completed-jobs/?from=yesterday');
    assert.equal(r5.status, 400);
    assert.ok('from' in ((await r5.json()) as any));
  });

  test('a download_link to a refused address is 400, not a scan', async () => {
    const res = await v.api('POST', '/api/v1/files/', { json: { download_link: 'http://169.254.169.254/latest/meta-data' } });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as any).detail, /download_link/);
  });

  test('another organization\'s token sees 404 for our scans', async () => {
    const id = await v.submitFile(Buffer.from('private'), 'mine.txt');
    await v.verdict.service.createOrg('other-org');
    const { token } = await v.verdict.service.createToken('other-org');
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`, { token })).status, 404);
    assert.equal((await v.api('GET', `/api/v1/scans/report/${id}`, { token })).status, 404);
    assert.equal((await v.api('PUT', `/api/v1/scans/delete_scan/${id}/`, { token })).status, 404);
    // and the other way round: its scans are its own
    const theirs = await v.submitFile(Buffer.from('theirs'), 'theirs.txt', {}, token);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${theirs}/`, { token })).status, 200);
  });

  test('a parent organization\'s token sees its child organization\'s scans', async () => {
    await v.verdict.service.createOrg('parent-org');
    await v.verdict.service.createOrg('child-org', 'parent-org');
    const parent = (await v.verdict.service.createToken('parent-org')).token;
    const child = (await v.verdict.service.createToken('child-org')).token;
    const id = await v.submitFile(Buffer.from('child data'), 'c.txt', {}, child);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`, { token: parent })).status, 200);
    const pid = await v.submitFile(Buffer.from('parent data'), 'p.txt', {}, parent);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${pid}/`, { token: child })).status, 404);
  });
});
