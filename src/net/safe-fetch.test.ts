import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { EgressGuard, EgressRefusedError } from './egress-guard.ts';
import {
  FetchTimeoutError,
  FetchTooLargeError,
  TooManyRedirectsError,
  redirectChainOf,
  safeFetch,
  type SafeFetchOptions,
} from './safe-fetch.ts';

// Every server here listens on 127.0.0.1; every address the tests name is loopback, so even a
// guard bug could not reach anything else.
let server: http.Server;
let base: string;
let port: number;
const seen: { url: string; method: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
const hanging = new Set<net.Socket>();

before(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers, body });
      route(req, res, body);
    });
  });
  server.on('connection', (s) => hanging.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

after(() => {
  for (const s of hanging) s.destroy();
  server.close();
});

function route(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
  const u = new URL(req.url ?? '/', base);
  const redirect = (status: number, location: string) => {
    res.writeHead(status, { location });
    res.end('moved');
  };
  switch (u.pathname) {
    case '/hello':
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-test': 'yes' });
      res.end('hello world');
      return;
    case '/r1':
      return redirect(302, '/r2');
    case '/r2':
      return redirect(301, `http://127.0.0.1:${port}/r3?x=1`);
    case '/r3':
      return redirect(307, 'hello');
    case '/loop':
      return redirect(302, '/loop');
    case '/to-refused':
      return redirect(302, `http://127.0.0.2:${port}/hello`);
    case '/to-refused-name':
      return redirect(302, `http://evil.test:${port}/hello`);
    case '/to-ftp':
      return redirect(302, 'ftp://127.0.0.1/x');
    case '/to-localhost':
      return redirect(302, `http://localhost:${port}/echo`);
    case '/big': {
      const n = Number(u.searchParams.get('n'));
      if (u.searchParams.has('chunked')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        for (let i = 0; i < n; i += 1000) res.write(Buffer.alloc(Math.min(1000, n - i), 0x41));
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
        res.end(Buffer.alloc(n, 0x41));
      }
      return;
    }
    case '/hang':
      return; // never answers
    case '/slow-body':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('start');
      return; // never ends
    case '/echo':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, body, auth: req.headers.authorization ?? null, ct: req.headers['content-type'] ?? null, ua: req.headers['user-agent'] }));
      return;
    case '/post-303':
      return redirect(303, '/echo');
    case '/post-307':
      return redirect(307, '/echo');
    case '/fail':
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
      return;
    default:
      res.writeHead(404);
      res.end();
  }
}

const loopback = new EgressGuard({ allow: ['127.0.0.0/8', '::1/128'] });
const opts = (o: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({ guard: loopback, maxBytes: 1 << 20, timeoutMs: 5000, maxRedirects: 5, ...o });

test('fetches a body with status, headers and content type', async () => {
  const r = await safeFetch(`${base}/hello`, opts());
  assert.equal(r.status, 200);
  assert.equal(r.body?.toString(), 'hello world');
  assert.equal(r.bytes, 11);
  assert.equal(r.truncated, false);
  assert.equal(r.contentType, 'text/plain');
  assert.equal(r.headers['x-test'], 'yes');
  assert.deepEqual(r.redirectChain, []);
  assert.equal(r.finalUrl, `${base}/hello`);
});

test('follows redirects by hand and records the chain', async () => {
  const r = await safeFetch(`${base}/r1`, opts());
  assert.equal(r.status, 200);
  assert.equal(r.body?.toString(), 'hello world');
  assert.equal(r.finalUrl, `${base}/hello`);
  assert.deepEqual(r.redirectChain, [
    { url: `${base}/r1`, status: 302 },
    { url: `${base}/r2`, status: 301 },
    { url: `${base}/r3?x=1`, status: 307 },
  ]);
});

test('followRedirects: false returns the redirect itself', async () => {
  const r = await safeFetch(`${base}/r1`, opts({ followRedirects: false }));
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, '/r2');
  assert.deepEqual(r.redirectChain, []);
});

test('too many redirects is a typed error carrying the chain', async () => {
  await assert.rejects(safeFetch(`${base}/loop`, opts({ maxRedirects: 3 })), (e: unknown) => {
    assert.ok(e instanceof TooManyRedirectsError);
    assert.equal(redirectChainOf(e).length, 3);
    return true;
  });
});

test('loopback is refused without an allow-list (literal IP and host name)', async () => {
  const guard = new EgressGuard();
  const before = seen.length;
  await assert.rejects(safeFetch(`${base}/hello`, opts({ guard })), (e: unknown) => e instanceof EgressRefusedError && /loopback/.test(e.reason));
  await assert.rejects(
    safeFetch(`http://localhost:${port}/hello`, opts({ guard })),
    (e: unknown) => e instanceof EgressRefusedError && e.host === 'localhost' && /loopback/.test(e.reason),
  );
  assert.equal(seen.length, before, 'no request reached the server');
});

test('a redirect to a refused address is refused mid-chain', async () => {
  const guard = new EgressGuard({
    allow: ['127.0.0.1/32'],
    resolve: async (h) => (h === 'evil.test' ? [{ address: '127.0.0.3', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]),
  });
  for (const [p, reason] of [
    ['/to-refused', /127\.0\.0\.2 is loopback/],
    ['/to-refused-name', /127\.0\.0\.3 is loopback/],
    ['/to-ftp', /scheme ftp:/],
  ] as const) {
    await assert.rejects(safeFetch(`${base}${p}`, opts({ guard })), (e: unknown) => {
      assert.ok(e instanceof EgressRefusedError, String(e));
      assert.match(e.reason, reason);
      assert.deepEqual(redirectChainOf(e), [{ url: `${base}${p}`, status: 302 }]);
      return true;
    });
  }
});

test('size cap: truncates at maxBytes, or fails with failOnTruncate', async () => {
  for (const q of ['', '&chunked']) {
    const r = await safeFetch(`${base}/big?n=100000${q}`, opts({ maxBytes: 4096 }));
    assert.equal(r.bytes, 4096);
    assert.equal(r.body?.length, 4096);
    assert.equal(r.truncated, true);
    const exact = await safeFetch(`${base}/big?n=4096${q}`, opts({ maxBytes: 4096, failOnTruncate: true }));
    assert.equal(exact.truncated, false);
    assert.equal(exact.bytes, 4096);
    await assert.rejects(safeFetch(`${base}/big?n=4097${q}`, opts({ maxBytes: 4096, failOnTruncate: true })), (e: unknown) => {
      assert.ok(e instanceof FetchTooLargeError);
      assert.equal(e.contentLength, q ? undefined : 4097);
      return true;
    });
  }
});

test('toFile writes the body to a file, and removes it when the body is too large', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'safe-fetch-test-'));
  try {
    const file = path.join(dir, 'body');
    const r = await safeFetch(`${base}/big?n=5000&chunked`, opts({ toFile: file }));
    assert.equal(r.file, file);
    assert.equal(r.body, undefined);
    assert.equal(fs.statSync(file).size, 5000);
    const file2 = path.join(dir, 'body2');
    await assert.rejects(safeFetch(`${base}/big?n=5000&chunked`, opts({ toFile: file2, maxBytes: 100, failOnTruncate: true })), FetchTooLargeError);
    assert.equal(fs.existsSync(file2), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('times out against a server that never answers, or never finishes', async () => {
  for (const p of ['/hang', '/slow-body']) {
    const t0 = Date.now();
    await assert.rejects(safeFetch(`${base}${p}`, opts({ timeoutMs: 200 })), (e: unknown) => e instanceof FetchTimeoutError && e.timeoutMs === 200);
    assert.ok(Date.now() - t0 < 2000, `${p} gave up in time`);
  }
});

test('the caller signal aborts the fetch with its reason', async () => {
  const ac = new AbortController();
  const reason = new Error('cancelled by caller');
  setTimeout(() => ac.abort(reason), 50);
  await assert.rejects(safeFetch(`${base}/hang`, opts({ signal: ac.signal })), (e: unknown) => e === reason);
});

test('POST JSON for callbacks: headers and body sent, status returned even on errors', async () => {
  const post = (p: string) =>
    safeFetch(`${base}${p}`, opts({ method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer x' }, body: JSON.stringify({ a: 1 }), userAgent: 'cb-test' }));
  const r = await post('/echo');
  assert.deepEqual(JSON.parse(r.body!.toString()), { method: 'POST', body: '{"a":1}', auth: 'Bearer x', ct: 'application/json', ua: 'cb-test' });
  const r307 = await post('/post-307');
  assert.equal(JSON.parse(r307.body!.toString()).body, '{"a":1}', '307 keeps method and body');
  const r303 = await post('/post-303');
  const j303 = JSON.parse(r303.body!.toString());
  assert.equal(j303.method, 'GET', '303 continues as GET');
  assert.equal(j303.body, '');
  const fail = await post('/fail');
  assert.equal(fail.status, 500);
  assert.equal(fail.body?.toString(), 'boom');
});

test('credentials are not sent: none from the URL, and none across origins', async () => {
  const r = await safeFetch(`http://user:secret@127.0.0.1:${port}/echo`, opts());
  assert.equal(JSON.parse(r.body!.toString()).auth, null);
  const r2 = await safeFetch(`${base}/to-localhost`, opts({ headers: { authorization: 'Bearer x' } }));
  assert.equal(r2.finalUrl, `http://localhost:${port}/echo`);
  assert.equal(JSON.parse(r2.body!.toString()).auth, null);
});

test('network errors come through as they are', async () => {
  // A port that was just free on loopback: connection refused.
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const freePort = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  await assert.rejects(safeFetch(`http://127.0.0.1:${freePort}/`, opts()), { code: 'ECONNREFUSED' });
});

test('an invalid URL is refused before any connection', async () => {
  await assert.rejects(safeFetch('not a url', opts()), (e: unknown) => e instanceof EgressRefusedError && /not a valid URL/.test(e.reason));
});
