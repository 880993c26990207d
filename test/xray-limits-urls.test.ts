/**
 * Limits and URL scans over a real socket: 413 for an oversized upload (stopped, not buffered),
 * URL submission fetched from a local server with its redirect chain, metrics, readiness.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { eicar } from '../src/scanners/testing.ts';
import { startVerdict, type Running } from './harness.ts';

let v: Running;
let site: http.Server;
let siteUrl: string;

before(async () => {
  v = await startVerdict({ limits: { maxFileSize: 1024 * 1024 }, clamd: 'off' });
  site = http.createServer((req, res) => {
    if (req.url === '/start') {
      res.writeHead(302, { location: '/middle' });
      return res.end();
    }
    if (req.url === '/middle') {
      res.writeHead(301, { location: '/landing' });
      return res.end();
    }
    if (req.url === '/landing') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<html><head><title>Welcome page</title></head><body>hello</body></html>');
    }
    if (req.url === '/eicar.com') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(eicar());
    }
    res.writeHead(404);
    res.end();
  });
  site.listen(0, '127.0.0.1');
  await once(site, 'listening');
  siteUrl = `http://127.0.0.1:${(site.address() as { port: number }).port}`;
});

after(async () => {
  await v?.close();
  site?.close();
});

test('an upload above the maximum size is 413 and leaves nothing behind', async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 0x41);
  const form = new FormData();
  form.set('name', 'big.bin');
  form.set('data', new Blob([big]), 'big.bin');
  const res = await v.api('POST', '/api/v1/files/', { body: form });
  assert.equal(res.status, 413);
  const body = (await res.json()) as any;
  assert.match(body.detail, /maximum/);
  const incoming = path.join(v.dataDir, 'blobs', '.incoming');
  assert.deepEqual(fs.readdirSync(incoming), [], 'no partial upload is kept');
  // the service still works afterwards
  const ok = await v.submitFile(Buffer.from('small'), 'small.txt');
  assert.equal((await v.waitForScan(ok)).verdict, 'CLN');
});

test('a base64 body above the maximum is 413 too', async () => {
  const res = await v.api('POST', '/api/v1/files/', { json: { name: 'b.bin', data: Buffer.alloc(2 * 1024 * 1024).toString('base64') } });
  assert.equal(res.status, 413);
});

test('a URL scan follows redirects on a local server and records the chain and title', async () => {
  const res = await v.api('POST', '/api/v1/urls/', { json: { path: `${siteUrl}/start`, user_agent_string: 'VerdictTest/1.0' } });
  assert.equal(res.status, 200);
  const id = ((await res.json()) as any).scan_id;
  const scan = await v.waitForScan(id);
  assert.equal(scan.sample_type_str, 'url');
  assert.equal(scan.sample.final_url, `${siteUrl}/landing`);
  assert.equal(scan.sample.url_title, 'Welcome page');
  assert.equal(scan.sample.status_code, 200);
  assert.equal(scan.sample.is_redirect, true);
  assert.equal(scan.sample.user_agent_string, 'VerdictTest/1.0');
  assert.equal(scan.children[0].sample_file_type, 'html');
  // loopback host literal is an IP host: a finding, but not enough alone for SUS
  assert.ok(['CLN', 'SUS'].includes(scan.verdict));
});

test('a URL serving EICAR is malicious through its fetched content', async () => {
  const res = await v.api('POST', '/api/v1/urls/', { json: { path: `${siteUrl}/eicar.com` } });
  const scan = await v.waitForScan(((await res.json()) as any).scan_id);
  assert.equal(scan.verdict, 'MAL');
  assert.equal(scan.has_mal_children, true);
});

test('a URL that is not http(s) is 400 naming path', async () => {
  const res = await v.api('POST', '/api/v1/urls/', { json: { path: 'file:///etc/passwd' } });
  assert.equal(res.status, 400);
  assert.ok('path' in ((await res.json()) as any));
  const res2 = await v.api('POST', '/api/v1/urls/', { json: {} });
  assert.equal(res2.status, 400);
});

test('metrics count scans by channel and verdict, and HTTP requests by route', async () => {
  const res = await fetch(`${v.url}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.match(text, /verdict_scans_total\{channel="api",verdict="CLN"\} \d+/);
  assert.match(text, /verdict_http_requests_total\{method="POST",route="\/api\/v1\/files\/",status="200"\}/);
  assert.match(text, /verdict_engine_duration_seconds_bucket\{le="[^"]+",engine="yara"\}/);
  assert.match(text, /verdict_queue_waiting \d+/);
});

test('readiness reports the engines, with ClamAV off when disabled', async () => {
  const res = await fetch(`${v.url}/readyz`);
  const body = (await res.json()) as any;
  assert.equal(res.status, 200);
  assert.equal(body.hap, 'off');
  assert.equal(body.engines.clamav.state, 'off');
  assert.equal(body.engines.yara.state, 'on');
});

test('a token over its request budget gets 429 with Retry-After, other tokens do not', async () => {
  const t = await startVerdict({ maxRequestsPerMinute: 3, clamd: 'off', workers: 0 });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await t.api('GET', '/api/v1/scans/completed-jobs/')).status, 200);
    const res = await t.api('GET', '/api/v1/scans/completed-jobs/');
    assert.equal(res.status, 429);
    const wait = Number(res.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
    assert.match(((await res.json()) as any).detail, /3 requests per minute/);
    const { token } = await t.verdict.service.createToken('default', 'Viewer', 'second');
    assert.equal((await t.api('GET', '/api/v1/scans/completed-jobs/', { token })).status, 200);
  } finally {
    await t.close();
  }
});

test('malformed bodies are 400 naming the problem, never a server error', async () => {
  const post = (headers: Record<string, string>, body: string) => v.api('POST', '/api/v1/files/', { headers, body });
  const cases: [Record<string, string>, string][] = [
    [{ 'content-type': 'application/json' }, '{bad json'],
    [{ 'content-type': 'application/json' }, '[1,2]'],
    [{ 'content-type': 'text/plain' }, 'hello'],
    [{ 'content-type': 'multipart/form-data; boundary=XYZ' }, '--XYZ\r\nContent-Disposition: form-data; name="data"; filename="a"\r\n\r\nabc'],
    [{ 'content-type': 'multipart/form-data' }, 'garbage'],
    [{ 'content-type': 'application/json' }, JSON.stringify({ name: 'x', data: { nested: true } })],
    [{ 'content-type': 'application/json' }, JSON.stringify({ name: 'x', data: '%%%not base64%%%' })],
  ];
  for (const [headers, body] of cases) {
    const res = await post(headers, body);
    const text = await res.text();
    assert.equal(res.status, 400, `${JSON.stringify(headers)} ${body.slice(0, 40)} → ${res.status} ${text}`);
    assert.ok(JSON.parse(text).detail, text);
  }
  const two = new FormData();
  two.set('name', 'x');
  two.append('data', new Blob([Buffer.from('a')]), 'a');
  two.append('data', new Blob([Buffer.from('b')]), 'b');
  const res = await v.api('POST', '/api/v1/files/', { body: two });
  assert.equal(res.status, 400);
  assert.match(((await res.json()) as any).detail, /one file/);
  const incoming = path.join(v.dataDir, 'blobs', '.incoming'); // absent when samples go to S3
  assert.deepEqual(fs.existsSync(incoming) ? fs.readdirSync(incoming) : [], [], 'nothing half-written is left');
});
