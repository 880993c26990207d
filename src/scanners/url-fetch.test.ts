import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import { limitsSchema, type ConfigInput } from '../config/schema.ts';
import { inputFromBuffer } from '../engine/input.ts';
import { EgressConfigError } from '../net/egress-guard.ts';
import { initScanner, runScanner, sampleInfo, type RunOptions } from './testing.ts';
import { ScannerDisabled } from './types.ts';
import { extractTitle, urlFetchScanner, type UrlFetchState } from './url-fetch.ts';

// All servers listen on 127.0.0.1 and every URL used names a loopback address.
let server: http.Server;
let port: number;
let base: string;
const sockets = new Set<net.Socket>();
const userAgents: string[] = [];

before(async () => {
  server = http.createServer(route);
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

after(() => {
  for (const s of sockets) s.destroy();
  server.close();
});

const MZ = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(0x3a), Buffer.from([0x40, 0, 0, 0]), Buffer.from('PE\0\0'), Buffer.alloc(200)]);
const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(100)]);

function route(req: http.IncomingMessage, res: http.ServerResponse): void {
  userAgents.push(String(req.headers['user-agent']));
  const u = new URL(req.url ?? '/', 'http://x');
  const redirect = (location: string, status = 302) => {
    res.writeHead(status, { location });
    res.end();
  };
  switch (u.pathname) {
    case '/page':
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html><head><title>\n  Sign in &amp; verify — Bank  </title></head><body>hi</body></html>');
      return;
    case '/a':
      return redirect('/b', 301);
    case '/b':
      return redirect(`http://127.0.0.1:${port}/c`);
    case '/c':
      return redirect('/page', 307);
    case '/cross':
      return redirect(`http://localhost:${port}/page`);
    case '/to-refused':
      return redirect(`http://127.0.0.2:${port}/page`);
    case '/exe':
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(MZ);
      return;
    case '/elf-as-text':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(ELF);
      return;
    case '/msdownload':
      res.writeHead(200, { 'content-type': 'application/x-msdownload' });
      res.end('not really');
      return;
    case '/attachment':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-disposition': 'attachment; filename="invoice.pdf.exe"' });
      res.end('data');
      return;
    case '/missing':
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><title>Not here</title></html>');
      return;
    case '/big':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(Buffer.alloc(5000, 0x61));
      return;
    case '/empty':
      res.writeHead(204);
      res.end();
      return;
    case '/hang':
      return;
    default:
      res.writeHead(404);
      res.end();
  }
}

const cfg = (o: ConfigInput = {}) => loadConfig({ egressAllow: ['127.0.0.0/8', '::1/128'], dataDir: os.tmpdir(), ...o }, {});
const fetchUrl = (url: string, o: RunOptions = {}) => runScanner(urlFetchScanner, Buffer.alloc(0), { url, init: { config: cfg() }, ...o });

test('init: disabled when urlFetch is off; a bad egress entry is a start-up error', async () => {
  await assert.rejects(initScanner(urlFetchScanner, { config: cfg({ urlFetch: false }) }), ScannerDisabled);
  await assert.rejects(initScanner(urlFetchScanner, { config: cfg({ egressAllow: ['127.0.0.0/99'] }) }), (e: unknown) => e instanceof EgressConfigError && e.message.includes('127.0.0.0/99'));
  assert.equal(urlFetchScanner.accepts(sampleInfo(Buffer.alloc(0), 'u', 0, base), {} as UrlFetchState), true);
  assert.equal(urlFetchScanner.accepts(sampleInfo(Buffer.from('x')), {} as UrlFetchState), false);
});

test('fetches a page: title, attributes, content emitted as a child', async () => {
  const r = await fetchUrl(`${base}/page`);
  assert.deepEqual(r.heuristics, []);
  assert.equal(r.attributes.title, 'Sign in & verify — Bank');
  assert.equal(r.attributes.statusCode, 200);
  assert.equal(r.attributes.finalUrl, `${base}/page`);
  assert.equal(r.attributes.contentType, 'text/html');
  assert.equal(r.attributes.isRedirect, false);
  assert.deepEqual(r.attributes.redirectChain, []);
  assert.equal(r.children.length, 1);
  assert.equal(r.children[0].relation, 'fetched_content');
  assert.equal(r.children[0].name, `${base}/page`);
  assert.match(r.children[0].bytes!.toString(), /<title>/);
  assert.ok('file' in r.children[0]);
  assert.match(userAgents[userAgents.length - 1], /^Mozilla\/5\.0/, 'browser-like default user agent');
});

test('records the redirect chain; 3 hops is a long chain', async () => {
  const r = await fetchUrl(`${base}/a`);
  assert.deepEqual(r.heuristics, ['URL_REDIRECT_CHAIN']);
  assert.equal(r.attributes.isRedirect, true);
  assert.equal(r.attributes.finalUrl, `${base}/page`);
  assert.deepEqual(r.attributes.redirectChain, [
    { url: `${base}/a`, status: 301 },
    { url: `${base}/b`, status: 302 },
    { url: `${base}/c`, status: 307 },
  ]);
  assert.equal(r.children[0].name, `${base}/page`);
});

test('a redirect to another site is reported', async () => {
  const r = await fetchUrl(`${base}/cross`);
  assert.deepEqual(r.heuristics, ['URL_CROSS_DOMAIN_REDIRECT']);
  assert.deepEqual(r.evidence[0].data, { from: '127.0.0.1', to: ['localhost'] });
  assert.equal(r.attributes.title, 'Sign in & verify — Bank');
});

test('loopback is refused without an allow-list, fetched with 127.0.0.0/8 allowed', async () => {
  const before = userAgents.length;
  const refused = await runScanner(urlFetchScanner, Buffer.alloc(0), { url: `${base}/page`, init: { config: loadConfig({ dataDir: os.tmpdir() }, {}) } });
  assert.deepEqual(refused.heuristics, ['URL_FETCH_REFUSED']);
  assert.match(String(refused.evidence[0].data?.reason), /loopback/);
  assert.equal(refused.children.length, 0);
  assert.equal(userAgents.length, before, 'nothing reached the server');
  const allowed = await runScanner(urlFetchScanner, Buffer.alloc(0), { url: `${base}/page`, init: { config: loadConfig({ egressAllow: ['127.0.0.0/8'], dataDir: os.tmpdir() }, {}) } });
  assert.equal(allowed.attributes.statusCode, 200);
});

test('a redirect to a refused address is refused mid-chain, with the chain so far', async () => {
  const r = await fetchUrl(`${base}/to-refused`, { init: { config: cfg({ egressAllow: ['127.0.0.1/32'] }) } });
  assert.deepEqual(r.heuristics, ['URL_CROSS_DOMAIN_REDIRECT', 'URL_FETCH_REFUSED'], 'another IP is another site');
  assert.equal(r.evidence[1].data?.address, '127.0.0.2');
  assert.deepEqual(r.attributes.redirectChain, [{ url: `${base}/to-refused`, status: 302 }]);
  assert.equal(r.attributes.finalUrl, `http://127.0.0.2:${port}/page`);
  assert.equal(r.children.length, 0);
});

test('executables served: by magic bytes, by content type, by attachment name', async () => {
  const exe = await fetchUrl(`${base}/exe`);
  assert.deepEqual(exe.heuristics, ['URL_EXECUTABLE_DOWNLOAD']);
  assert.equal(exe.evidence[0].data?.detectedType, 'pe');
  assert.equal(exe.children[0].bytes?.subarray(0, 2).toString(), 'MZ');
  assert.deepEqual((await fetchUrl(`${base}/elf-as-text`)).heuristics, ['URL_EXECUTABLE_DOWNLOAD']);
  assert.deepEqual((await fetchUrl(`${base}/msdownload`)).heuristics, ['URL_EXECUTABLE_DOWNLOAD']);
  const att = await fetchUrl(`${base}/attachment`);
  assert.deepEqual(att.heuristics, ['URL_EXECUTABLE_DOWNLOAD']);
  assert.match(String(att.evidence[0].details), /invoice\.pdf\.exe/);
});

test('HTTP error status is a failed fetch with the status; the page is still scanned', async () => {
  const r = await fetchUrl(`${base}/missing`);
  assert.deepEqual(r.heuristics, ['URL_FETCH_FAILED']);
  assert.equal(r.evidence[0].data?.status, 404);
  assert.equal(r.attributes.statusCode, 404);
  assert.equal(r.attributes.title, 'Not here');
  assert.equal(r.children.length, 1);
});

test('size cap: content cut at urlFetchMaxBytes is reported', async () => {
  const r = await fetchUrl(`${base}/big`, { limits: { urlFetchMaxBytes: 1000 } });
  assert.deepEqual(r.heuristics, ['NOT_FULLY_SCANNED']);
  assert.equal(r.attributes.truncated, true);
  assert.equal(r.children[0].bytes?.length, 1000);
});

test('timeout against a server that never answers', async () => {
  const t0 = Date.now();
  const r = await fetchUrl(`${base}/hang`, { limits: { urlFetchTimeoutMs: 200 } });
  assert.deepEqual(r.heuristics, ['URL_FETCH_FAILED']);
  assert.equal(r.evidence[0].data?.reason, 'timeout');
  assert.ok(Date.now() - t0 < 3000);
});

test('unreachable sites and bad URLs are findings, never exceptions', async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const free = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  const down = await fetchUrl(`http://127.0.0.1:${free}/`);
  assert.deepEqual(down.heuristics, ['URL_FETCH_FAILED']);
  assert.equal(down.evidence[0].data?.code, 'ECONNREFUSED');
  const bad = await fetchUrl('http://exa mple.com/');
  assert.deepEqual(bad.heuristics, ['URL_FETCH_FAILED']);
  assert.equal(bad.evidence[0].data?.reason, 'unparseable');
  const ftp = await fetchUrl('ftp://127.0.0.1/x');
  assert.deepEqual(ftp.heuristics, ['URL_FETCH_REFUSED']);
});

test('no child for an empty body; a refused child is reported', async () => {
  const empty = await fetchUrl(`${base}/empty`);
  assert.deepEqual(empty.heuristics, []);
  assert.equal(empty.children.length, 0);
  assert.equal(empty.attributes.statusCode, 204);
  const refused = await fetchUrl(`${base}/page`, { acceptChildren: 0 });
  assert.deepEqual(refused.heuristics, ['NOT_FULLY_SCANNED']);
  assert.equal(refused.evidence[0].data?.refused, 'count');
});

test("the request's user agent is sent", async () => {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'url-fetch-ua-'));
  try {
    const state = (await initScanner(urlFetchScanner, { config: cfg() })) as UrlFetchState;
    const limits = limitsSchema.parse({});
    await urlFetchScanner.scan(
      inputFromBuffer(sampleInfo(Buffer.alloc(0), 'u', 0, `${base}/page`), Buffer.alloc(0), tmpDir),
      {
        options: { passwords: [], userAgent: 'Custom-UA/1' },
        limits,
        signal: new AbortController().signal,
        deadline: Date.now() + 10_000,
        log: pino({ level: 'silent' }),
        tmpDir,
        emitChild: async () => true,
      },
      state,
    );
    assert.equal(userAgents[userAgents.length - 1], 'Custom-UA/1');
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
});

test('extractTitle: charsets, entities, no title', () => {
  const latin1 = Buffer.concat([Buffer.from('<title>Caf'), Buffer.from([0xe9]), Buffer.from(' &#x41;&#66;</title>')]);
  assert.equal(extractTitle(latin1, 'text/html; charset=windows-1252'), 'Café AB');
  assert.equal(extractTitle(Buffer.from('<meta charset="iso-8859-1"><TITLE lang=x>Caf\xe9</TITLE>', 'latin1')), 'Café');
  assert.equal(extractTitle(Buffer.from('<html><body>none</body></html>')), undefined);
});

test('links found inside objects are fetched only when fetchEmbeddedLinks is on', async () => {
  const off = (await initScanner(urlFetchScanner, { config: loadConfig({ dataDir: os.tmpdir() }, {}) })) as never;
  const on = (await initScanner(urlFetchScanner, { config: loadConfig({ dataDir: os.tmpdir(), fetchEmbeddedLinks: true }, {}) })) as never;
  const submitted = sampleInfo(Buffer.alloc(0), 'u', 0, 'http://127.0.0.1:9/');
  const link = { ...sampleInfo(Buffer.alloc(0), 'u', 1, 'http://127.0.0.1:9/'), relation: 'link' as const };
  assert.equal(urlFetchScanner.accepts(submitted, off), true);
  assert.equal(urlFetchScanner.accepts(link, off), false);
  assert.equal(urlFetchScanner.accepts(link, on), true);
});
