/**
 * The headless Chromium that URL rendering uses: one browser per process (Debian's
 * `/usr/bin/chromium` driven by playwright-core, never a downloaded browser), launched on first
 * use, one isolated context per scan, closed on shutdown (`closeSharedBrowsers()`).
 *
 * Chromium never reaches the network on its own. Each session gets a private forward proxy
 * (HTTP requests and CONNECT tunnels) that resolves and checks every destination with the
 * egress guard and connects to exactly the checked addresses, so nothing escapes the policy:
 * not the redirects Chromium follows without asking `route()`, not preconnects or tunnels,
 * and no DNS answer can change between check and connect. On top of that each request is
 * checked by `context.route()` first (refused ones are aborted and recorded), WebSockets are
 * refused, service workers blocked, downloads refused. The browser's own background traffic
 * (component updates, sign-in) goes to a sink proxy that refuses everything.
 *
 * Sessions are bounded: bytes carried by the proxy, and how many run at once.
 *
 * @example
 * const browser = sharedBrowser('/usr/bin/chromium');
 * const s = await browser.session({ guard, userAgent, maxBytes: 64 << 20, signal });
 * try {
 *   const page = await s.context.newPage();
 *   await page.goto('https://example.com/');
 * } finally {
 *   await s.close();
 * }
 * s.refused; // [{ target: 'http://10.0.0.1/x', kind: 'http', reason: '10.0.0.1 is private ...' }]
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Browser, BrowserContext } from 'playwright-core';
import { EgressRefusedError, type EgressGuard } from './egress-guard.ts';

export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

/**
 * Flags measured on Debian 12 (DEPENDENCIES.md), plus the ones that stop Chromium from talking
 * to Google services by itself (autofill, translation, hints) and from using UDP (QUIC, WebRTC)
 * or preresolving names outside the proxy.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--dns-prefetch-disable',
  '--force-webrtc-ip-handling-policy=disable_non_proxied_udp',
  '--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter,Translate,DialMediaRouteProvider,NetworkPrediction',
  '--disable-client-side-phishing-detection',
  '--disable-domain-reliability',
  '--no-pings',
  '--disable-extensions',
  '--disable-default-apps',
  '--disable-breakpad',
  '--mute-audio',
];

/** Whether a Chromium executable is there to launch. */
export function chromiumAvailable(executablePath: string): boolean {
  try {
    fs.accessSync(executablePath, fs.constants.X_OK);
    return fs.statSync(executablePath).isFile();
  } catch {
    return false;
  }
}

/** A destination the session's proxy refused (or a WebSocket the context refused). */
export interface RefusedEgress {
  /** The URL (a request, plain HTTP, a WebSocket) or `host:port` (a CONNECT tunnel). */
  target: string;
  /** Where it was stopped: `request` by the context's route check, the others by the proxy. */
  kind: 'request' | 'http' | 'connect' | 'websocket';
  reason: string;
  /** The egress guard refused the destination (not a budget, a limit or a refused protocol). */
  byPolicy: boolean;
}

export interface SessionOptions {
  guard: EgressGuard;
  userAgent: string;
  /** Most bytes the session's proxy carries, both directions together. */
  maxBytes: number;
  /** Most requests the context may make; the rest are aborted. */
  maxRequests: number;
  /** Aborting closes the session's context (and with it its pages and renderers). */
  signal?: AbortSignal;
  /** Epoch ms: give up waiting for a free session slot after this. */
  deadline?: number;
  viewport?: { width: number; height: number };
}

export interface BrowserSession {
  context: BrowserContext;
  /** What the proxy and the context refused, in order (at most 500). */
  readonly refused: RefusedEgress[];
  /** Bytes the proxy carried so far. */
  readonly bytes: number;
  /** Requests the context made (aborted ones included). */
  readonly requests: number;
  /** The byte budget ran out: the proxy cut every connection from then on. */
  readonly budgetExceeded: boolean;
  /** Closes the context and the proxy; safe to call twice. */
  close(): Promise<void>;
}

export interface BrowserManagerOptions {
  executablePath?: string;
  /** Sessions open at once; others wait. Default 4. */
  maxSessions?: number;
  log?: Logger;
}

const MAX_REFUSED = 500;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export class BrowserManager {
  readonly executablePath: string;
  private browser?: Promise<Browser>;
  private sink?: { server: net.Server; url: string };
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly opts: BrowserManagerOptions = {}) {
    this.executablePath = opts.executablePath ?? DEFAULT_CHROMIUM;
  }

  /** Opens an isolated context behind its own guarded proxy. Launches the browser if needed. */
  async session(o: SessionOptions): Promise<BrowserSession> {
    await this.acquire(o);
    let proxy: GuardedProxy | undefined;
    let context: BrowserContext | undefined;
    try {
      const browser = await this.launch();
      proxy = new GuardedProxy(o.guard, o.maxBytes);
      const proxyUrl = await proxy.listen();
      context = await browser.newContext({
        // `<-loopback>` sends loopback through the proxy too (Chromium bypasses it by default).
        proxy: { server: proxyUrl, bypass: '<-loopback>' },
        serviceWorkers: 'block',
        acceptDownloads: false,
        userAgent: o.userAgent,
        viewport: o.viewport ?? { width: 1280, height: 800 },
        javaScriptEnabled: true,
        ignoreHTTPSErrors: false,
        permissions: [],
      });
      const p = proxy;
      await context.routeWebSocket(/.*/, (ws) => {
        p.refuse({ target: ws.url(), kind: 'websocket', reason: 'WebSockets are not allowed while rendering', byPolicy: false });
        ws.close({ code: 1008, reason: 'refused' }).catch(() => undefined);
      });
      // The proxy enforces the policy; checking here too stops refused requests before they
      // leave the renderer and tells which request it was (the proxy sees only host:port for TLS).
      await context.route('**/*', async (route) => {
        const url = route.request().url();
        const overLimit = ++p.requests > o.maxRequests;
        const refusal = overLimit ? `more than ${o.maxRequests} requests` : await refusalOf(o.guard, url);
        if (refusal) {
          p.refuse({ target: url, kind: 'request', reason: refusal, byPolicy: !overLimit });
          await route.abort('blockedbyclient').catch(() => undefined);
        } else {
          await route.continue().catch(() => undefined);
        }
      });
      return this.wrap(context, proxy, o.signal);
    } catch (err) {
      await context?.close().catch(() => undefined);
      await proxy?.close();
      this.release();
      throw err;
    }
  }

  /** Closes the browser and the sink; later sessions launch a new one. */
  async close(): Promise<void> {
    const b = this.browser;
    this.browser = undefined;
    if (b) await b.then((x) => x.close(), () => undefined).catch(() => undefined);
    if (this.sink) {
      const s = this.sink.server;
      this.sink = undefined;
      await new Promise<void>((r) => s.close(() => r()));
    }
    for (const w of [...this.waiting]) w();
  }

  private wrap(context: BrowserContext, proxy: GuardedProxy, signal?: AbortSignal): BrowserSession {
    let done: Promise<void> | undefined;
    const close = () => {
      done ??= (async () => {
        signal?.removeEventListener('abort', close);
        await context.close().catch(() => undefined);
        await proxy.close();
        this.release();
      })();
      return done;
    };
    if (signal?.aborted) void close();
    else signal?.addEventListener('abort', close, { once: true });
    return {
      context,
      get refused() {
        return proxy.refused;
      },
      get bytes() {
        return proxy.bytes;
      },
      get requests() {
        return proxy.requests;
      },
      get budgetExceeded() {
        return proxy.budgetExceeded;
      },
      close,
    };
  }

  private async launch(): Promise<Browser> {
    if (!this.browser) {
      const attempt = (async () => {
        const sink = await this.startSink();
        // loaded on first launch: ~55 MB of memory a server that never renders does not need
        const { chromium } = await import('playwright-core');
        const b = await chromium.launch({
          executablePath: this.executablePath,
          args: CHROMIUM_ARGS,
          // Background traffic of the browser itself goes to the sink; contexts set their own proxy.
          proxy: { server: sink, bypass: '<-loopback>' },
          handleSIGINT: false,
          handleSIGTERM: false,
          handleSIGHUP: false,
          timeout: 30_000,
        });
        b.on('disconnected', () => {
          if (this.browser === attempt) this.browser = undefined;
        });
        this.opts.log?.info({ version: b.version(), executable: this.executablePath }, 'chromium started');
        return b;
      })();
      this.browser = attempt;
      attempt.catch(() => {
        if (this.browser === attempt) this.browser = undefined;
      });
    }
    return this.browser;
  }

  /** A proxy that answers everything with 403: the browser-wide default route. */
  private async startSink(): Promise<string> {
    if (this.sink) return this.sink.url;
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.setTimeout(5_000, () => s.destroy());
      s.once('data', () => s.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'));
    });
    server.unref();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.sink = { server, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
    return this.sink.url;
  }

  private async acquire(o: SessionOptions): Promise<void> {
    const max = this.opts.maxSessions ?? 4;
    while (this.active >= max) {
      if (o.signal?.aborted) throw o.signal.reason ?? new Error('aborted');
      const left = (o.deadline ?? Infinity) - Date.now();
      if (left <= 0) throw new Error(`no free browser session before the deadline (${max} in use)`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          o.signal?.removeEventListener('abort', done);
          const i = this.waiting.indexOf(done);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 2 ** 31 - 1));
        o.signal?.addEventListener('abort', done, { once: true });
        this.waiting.push(done);
      });
    }
    this.active++;
  }

  private release(): void {
    this.active = Math.max(0, this.active - 1);
    this.waiting[0]?.();
  }
}

// ---------------------------------------------------------------------------------------------
// The per-session guarded proxy

/**
 * A forward proxy on 127.0.0.1 for one browser context: plain HTTP requests are re-issued and
 * CONNECT tunnels opened through `guard.lookup` (literal addresses through `guard.check`).
 * Refusals answer 403 and are recorded; the byte budget cuts every connection once spent.
 */
class GuardedProxy {
  readonly refused: RefusedEgress[] = [];
  bytes = 0;
  /** Requests seen by the context's route (counted here so the session reports one number). */
  requests = 0;
  budgetExceeded = false;
  private readonly server: http.Server;
  private readonly sockets = new Set<Duplex>();

  constructor(
    private readonly guard: EgressGuard,
    private readonly maxBytes: number,
  ) {
    this.server = http.createServer((req, res) => this.forward(req, res));
    this.server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.tunnel(req, socket, head));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
      this.refuse({ target: req.url ?? '', kind: 'websocket', reason: 'protocol upgrades are not allowed while rendering', byPolicy: false });
      socket.destroy();
    });
    this.server.on('connection', (s: net.Socket) => this.track(s));
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  refuse(r: RefusedEgress): void {
    if (this.refused.length < MAX_REFUSED) this.refused.push({ ...r, target: r.target.slice(0, 2048) });
  }

  private track(s: Duplex): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
  }

  /** Counts bytes; false (and every connection cut) once the budget is spent. */
  private count(n: number): boolean {
    this.bytes += n;
    if (this.bytes <= this.maxBytes) return true;
    if (!this.budgetExceeded) {
      this.budgetExceeded = true;
      for (const s of this.sockets) s.destroy();
    }
    return false;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end();
      return;
    }
    const refusedHere = (reason: string, byPolicy = true) => {
      this.refuse({ target: url.href, kind: 'http', reason, byPolicy });
      if (!res.headersSent) res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' });
      res.end('refused by the egress policy');
    };
    if (this.budgetExceeded) return refusedHere('byte budget of the rendering spent', false);
    const pre = this.guard.checkUrl(url);
    if (!pre.ok) return refusedHere(pre.reason);
    if (url.protocol !== 'http:') return refusedHere(`scheme ${url.protocol} through an HTTP proxy`, false);
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    const upstream = http.request({
      hostname: unbracket(url.hostname),
      port: url.port || 80,
      path: `${url.pathname}${url.search}`,
      method: req.method,
      headers,
      lookup: this.guard.lookup,
      agent: false,
      timeout: 30_000,
    });
    upstream.on('socket', (s) => this.track(s));
    upstream.on('timeout', () => upstream.destroy(new Error('upstream timeout')));
    upstream.on('error', (err) => {
      if (err instanceof EgressRefusedError) return refusedHere(err.reason);
      if (!res.headersSent) res.writeHead(502, { connection: 'close' });
      res.end();
    });
    upstream.on('response', (up) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      res.writeHead(up.statusCode ?? 502, out);
      up.on('data', (chunk: Buffer) => {
        if (!this.count(chunk.length)) {
          up.destroy();
          res.destroy();
          return;
        }
        if (!res.write(chunk)) {
          up.pause();
          res.once('drain', () => up.resume());
        }
      });
      up.on('end', () => res.end());
      up.on('error', () => res.destroy());
    });
    req.on('data', (chunk: Buffer) => {
      if (!this.count(chunk.length)) upstream.destroy();
    });
    req.pipe(upstream);
  }

  private tunnel(req: http.IncomingMessage, client: Duplex, head: Buffer): void {
    this.track(client);
    const target = req.url ?? '';
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):(\d{1,5})$/.exec(target);
    const refuse = (reason: string, byPolicy = true) => {
      this.refuse({ target, kind: 'connect', reason, byPolicy });
      client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    };
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return refuse('malformed CONNECT target', false);
    if (this.budgetExceeded) return refuse('byte budget of the rendering spent', false);
    const host = unbracket(m[1]);
    if (net.isIP(host)) {
      const r = this.guard.check(host);
      if (!r.ok) return refuse(r.reason);
    }
    const upstream = net.connect({ host, port: Number(m[2]), lookup: this.guard.lookup, timeout: 30_000 });
    this.track(upstream);
    upstream.on('timeout', () => upstream.destroy());
    upstream.once('error', (err) => {
      if (err instanceof EgressRefusedError) return refuse(err.reason);
      client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      const relay = (from: Duplex, to: Duplex) => {
        from.on('data', (chunk: Buffer) => {
          if (!this.count(chunk.length)) return;
          if (!to.write(chunk)) {
            from.pause();
            to.once('drain', () => from.resume());
          }
        });
        from.on('end', () => to.end());
        from.on('close', () => to.destroy());
      };
      relay(upstream, client);
      relay(client, upstream);
    });
  }
}

/** Why the guard refuses a URL (scheme, literal address, or any resolved address), if it does. */
async function refusalOf(guard: EgressGuard, url: string): Promise<string | undefined> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a valid URL';
  }
  const pre = guard.checkUrl(u);
  if (!pre.ok) return pre.reason;
  const host = unbracket(u.hostname);
  if (net.isIP(host)) return undefined;
  try {
    await guard.resolveChecked(host);
  } catch (err) {
    // A name that does not resolve is the proxy's to fail, like any network error.
    if (err instanceof EgressRefusedError) return err.reason;
  }
  return undefined;
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

// ---------------------------------------------------------------------------------------------
// One browser per process

const shared = new Map<string, BrowserManager>();

/** The process's browser for this executable (created on first call, launched on first session). */
export function sharedBrowser(executablePath = DEFAULT_CHROMIUM, log?: Logger): BrowserManager {
  let m = shared.get(executablePath);
  if (!m) {
    m = new BrowserManager({ executablePath, log });
    shared.set(executablePath, m);
  }
  return m;
}

/**
 * Closes every shared browser (shutdown of the service, end of a CLI run or a test file). The
 * managers stay registered: a later session launches their browser again and this closes it.
 */
export async function closeSharedBrowsers(): Promise<void> {
  await Promise.all([...shared.values()].map((m) => m.close()));
}
