/**
 * Render: opens a URL in headless Chromium (src/net/browser.ts: Debian's browser, every
 * connection through the egress guard) and hands the engine what a visitor would get — the DOM
 * the page's scripts built, as a `fetched_content` child named by the final URL so the HTML
 * scanner judges it as that site's page, and a PNG screenshot (`screenshot` child, listed in the
 * scan's `images`; the QR scanner reads it too). It adds to url-fetch, which still downloads
 * the raw content.
 *
 * - Time: `limits.renderTimeoutMs`, never past the scanner's deadline; the screenshot and DOM
 *   are taken from whatever loaded by then. A page counts as settled once it has loaded and no
 *   main-frame navigation started for a second (catches script and meta-refresh redirects).
 * - Bounds: 64 MiB carried by the proxy, 1,000 requests (more are aborted), 200 requests
 *   recorded, the DOM cut at the HTML scanner's limit, the screenshot clipped to 1280×2000.
 * - The DOM is emitted only for HTML documents (by the served Content-Type): for an image or
 *   a text file Chromium builds a viewer page of its own, which says nothing about the site.
 * - Attributes: `render: { finalUrl, title, status, contentType, redirects: [{ url, status, kind: 'http' |
 *   'client' }], requests: [{ url, method, type, status, blocked, error }], requestCount,
 *   consoleErrors, popups, refused, bytes, budgetExceeded, screenshot: { width, height }, ms }`,
 *   or `render: { skipped }` / `render: { error }` when there was nothing to render.
 * - Findings: RENDER_CLIENT_REDIRECT (a scripted or meta navigation to another site),
 *   RENDER_EGRESS_REFUSED (the page reached for addresses the policy refuses), NOT_FULLY_SCANNED
 *   (DOM cut, or a child refused by the engine's limits).
 * - Targets url-fetch already reports (refused, unparseable, unresolvable) are skipped without
 *   starting the browser; a navigation that fails is an attribute, not a finding, for the same
 *   reason. A browser that cannot start or crashes is a scanner failure (ENGINE_ERROR, partial).
 *
 * `init()`: `render: off` (or `urlFetch: false`) disables it; `auto` disables it when
 * `renderChromium` is missing; `on` makes a missing browser a start-up error.
 *
 * @example
 * const r = await runScanner(renderScanner, Buffer.alloc(0), {
 *   url: 'http://127.0.0.1:8080/', init: { config: loadConfig({ egressAllow: ['127.0.0.0/8'] }, {}) },
 * });
 * r.attributes.render.finalUrl; r.children.map((c) => c.relation); // ['fetched_content', 'screenshot']
 */
import net from 'node:net';
import { getDomain } from 'tldts';
import type { BrowserContext, Page, Request } from 'playwright-core';
import { EgressGuard, EgressRefusedError } from '../net/egress-guard.ts';
import { chromiumAvailable, sharedBrowser, type BrowserManager, type BrowserSession, type RefusedEgress } from '../net/browser.ts';
import { HTML_MAX_BYTES } from './html.ts';
import { DEFAULT_FETCH_USER_AGENT } from './url-fetch.ts';
import { parseSubmittedUrl } from './url-heuristics.ts';
import { ScannerDisabled, type ChildSpec, type Finding, type Scanner } from './types.ts';

export interface RenderState {
  guard: EgressGuard;
  browser: BrowserManager;
  fetchEmbeddedLinks: boolean;
}

export const RENDER_MAX_BYTES = 64 * 1024 * 1024;
const MAX_REQUESTS = 1000;
const MAX_RECORDED = 200;
const MAX_NAVIGATIONS = 20;
const SCREENSHOT = { width: 1280, height: 2000 };
/** Quiet time after `load` before a page counts as settled. */
const SETTLE_MS = 1000;
/** Time kept back from the budget for the title, screenshot and DOM (at most a third of it). */
const FINISH_MS = 3000;
const MAX_URL = 2048;
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

export interface RecordedRequest {
  url: string;
  method: string;
  type: string;
  status?: number;
  blocked?: boolean;
  error?: string;
}

export interface RenderHop {
  url: string;
  status?: number;
  kind: 'http' | 'client';
}

export const renderScanner: Scanner<RenderState> = {
  name: 'render',
  version: '1',
  layer: 'url',
  async init(ictx) {
    const c = ictx.config;
    if (c.render === 'off') throw new ScannerDisabled('URL rendering is turned off (render: off)');
    if (!c.urlFetch) {
      if (c.render === 'on') throw new Error('render: on needs urlFetch: true (rendering fetches the URL too)');
      throw new ScannerDisabled('URL rendering follows URL fetching, which is turned off (urlFetch: false)');
    }
    if (!chromiumAvailable(c.renderChromium)) {
      const why = `no Chromium at ${c.renderChromium} (Debian: apt-get install chromium)`;
      if (c.render === 'on') throw new Error(`render: on, but ${why}`);
      throw new ScannerDisabled(why);
    }
    return {
      guard: new EgressGuard({ allow: c.egressAllow, deny: c.egressDeny }),
      browser: sharedBrowser(c.renderChromium, ictx.log),
      fetchEmbeddedLinks: c.fetchEmbeddedLinks,
    };
  },
  // The same URLs url-fetch fetches: submitted ones, and links found inside objects on request.
  accepts: (info, state) => info.kind === 'url' && (info.relation !== 'link' || state.fetchEmbeddedLinks),
  async scan(input, ctx, state) {
    const parsed = parseSubmittedUrl(input.info.url ?? '');
    if (!parsed || (parsed.url.protocol !== 'http:' && parsed.url.protocol !== 'https:')) {
      return { attributes: { render: { skipped: 'not an http(s) URL' } } };
    }
    const submitted = parsed.url.href;
    const skipped = await precheck(state.guard, parsed.url);
    if (skipped) return { attributes: { render: { skipped } } };

    const started = Date.now();
    const deadline = Math.min(ctx.deadline - 500, started + ctx.limits.renderTimeoutMs);
    const session = await state.browser.session({
      guard: state.guard,
      userAgent: ctx.options.userAgent || DEFAULT_FETCH_USER_AGENT,
      maxBytes: RENDER_MAX_BYTES,
      maxRequests: MAX_REQUESTS,
      signal: ctx.signal,
      deadline,
    });
    let page: Rendered;
    try {
      page = await renderPage(session, submitted, deadline);
    } finally {
      await session.close();
    }
    if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('aborted');

    const evidence: Finding[] = [];
    const refused = session.refused;
    const requests = markRefused(page.requests, refused);
    const policyRefusals = refused.filter((r) => r.byPolicy);
    if (policyRefusals.length > 0) {
      const targets = [...new Set(policyRefusals.map((r) => r.target))];
      evidence.push({
        heuristic: 'RENDER_EGRESS_REFUSED',
        details: `${targets.length} refused destination(s): ${targets.slice(0, 3).join(', ')}${targets.length > 3 ? ', …' : ''}`,
        data: { targets: targets.slice(0, 20), reasons: [...new Set(policyRefusals.map((r) => r.reason))].slice(0, 10) },
      });
    }
    const clientHops = crossSiteClientHops(page.redirects, page.finalUrl);
    if (clientHops.length > 0) {
      evidence.push({
        heuristic: 'RENDER_CLIENT_REDIRECT',
        details: clientHops.map((h) => `${h.from} → ${h.to}`).join('; '),
        data: { hops: clientHops },
      });
    }

    const attributes: Record<string, unknown> = {
      finalUrl: page.finalUrl,
      title: page.title,
      status: page.status,
      contentType: page.contentType,
      redirects: page.redirects,
      requests,
      requestCount: session.requests,
      consoleErrors: page.consoleErrors,
      popups: page.popups,
      refused: refused.slice(0, 50).map(({ target, kind, reason }) => ({ target, kind, reason })),
      bytes: session.bytes,
      budgetExceeded: session.budgetExceeded,
      ms: Date.now() - started,
      ...(page.error ? { error: page.error } : {}),
      ...(page.screenshot ? { screenshot: pngSize(page.screenshot) } : {}),
    };

    const children: ChildSpec[] = [];
    if (page.dom !== undefined) {
      children.push({ name: page.finalUrl, relation: 'fetched_content', data: page.dom, meta: { rendered: true, url: submitted } });
      if (page.domTruncated) {
        evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `rendered DOM cut at ${HTML_MAX_BYTES} bytes`, data: { scannedBytes: HTML_MAX_BYTES } });
      }
    }
    if (page.screenshot) children.push({ name: 'screenshot.png', relation: 'screenshot', data: page.screenshot, meta: { url: page.finalUrl } });
    for (const child of children) {
      const answer = await ctx.emitChild(child);
      if (answer !== true) {
        evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `rendered ${child.relation === 'screenshot' ? 'screenshot' : 'page'} not scanned: ${answer} limit`, data: { refused: answer } });
        break;
      }
    }
    return { evidence, attributes: { render: attributes } };
  },
};

/** Why rendering is pointless here (url-fetch reports the same target as refused or failed). */
async function precheck(guard: EgressGuard, url: URL): Promise<string | undefined> {
  const pre = guard.checkUrl(url);
  if (!pre.ok) return `refused by the egress policy: ${pre.reason}`;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (net.isIP(host)) return undefined;
  try {
    await guard.resolveChecked(host);
    return undefined;
  } catch (err) {
    if (err instanceof EgressRefusedError) return `refused by the egress policy: ${err.reason}`;
    const code = (err as { code?: unknown })?.code;
    return `host does not resolve${typeof code === 'string' ? ` (${code})` : ''}`;
  }
}

// ---------------------------------------------------------------------------------------------
// One page

interface Rendered {
  finalUrl: string;
  title?: string;
  status?: number;
  contentType?: string;
  redirects: RenderHop[];
  requests: RecordedRequest[];
  consoleErrors: number;
  popups: number;
  error?: string;
  dom?: Buffer;
  domTruncated?: boolean;
  screenshot?: Buffer;
}

async function renderPage(session: BrowserSession, url: string, deadline: number): Promise<Rendered> {
  const { context } = session;
  const page = await context.newPage();
  const rec = new Recorder(context, page);
  const left = (reserve = 0) => Math.max(1, deadline - reserve - Date.now());
  const finish = Math.min(FINISH_MS, Math.floor(left() / 3));

  let error: string | undefined;
  try {
    await page.goto(url, { waitUntil: 'commit', timeout: left(finish) });
  } catch (err) {
    error = firstLine(err);
  }
  // Wait for `load`, then for a quiet second; a navigation in that second starts the wait over.
  for (let i = 0; i <= MAX_NAVIGATIONS && left(finish) > 1; i++) {
    const before = rec.mainRequests;
    await page.waitForLoadState('load', { timeout: left(finish) }).catch(() => undefined);
    await sleep(Math.min(SETTLE_MS, left(finish)));
    if (rec.mainRequests === before && !rec.mainPending) break;
  }

  const finalUrl = page.url();
  const main = rec.main;
  const last = main[main.length - 1];
  const base = {
    finalUrl,
    status: last?.status,
    contentType: last?.contentType,
    redirects: hopsOf(main),
    consoleErrors: rec.consoleErrors,
    popups: rec.popups,
  };
  // A failed navigation leaves Chromium's error page (chrome-error://) or about:blank: nothing to scan.
  const refusedMain = session.refused.some((r) => r.target === finalUrl && (r.kind === 'http' || r.kind === 'request'));
  if (!/^https?:/i.test(finalUrl) || refusedMain) {
    return { ...base, requests: rec.recorded(), error: error ?? (last?.error ? last.error : refusedMain ? 'refused by the egress policy' : 'navigation failed') };
  }
  const title = await within(page.title(), left()).catch(() => undefined);
  const screenshot = await within(
    page.screenshot({ type: 'png', fullPage: true, clip: { x: 0, y: 0, ...SCREENSHOT }, timeout: left(), animations: 'disabled' }),
    left(),
  ).catch(() => undefined);
  // Chromium wraps images, text and media in viewer pages of its own: not the site's HTML.
  const isHtml = last?.contentType === undefined || HTML_TYPES.has(last.contentType);
  const html = isHtml ? await within(page.content(), left()).catch(() => undefined) : undefined;
  let dom: Buffer | undefined;
  let domTruncated = false;
  if (html !== undefined) {
    dom = Buffer.from(html, 'utf8');
    if (dom.length > HTML_MAX_BYTES) {
      dom = dom.subarray(0, HTML_MAX_BYTES);
      domTruncated = true;
    }
  }
  return { ...base, title: title?.slice(0, 512), requests: rec.recorded(), dom, domTruncated, screenshot, ...(error && !/interrupted by another navigation/i.test(error) ? { error } : {}) };
}

interface MainRequest {
  req: Request;
  url: string;
  status?: number;
  /** The media type the server declared (not what scripts claim). */
  contentType?: string;
  error?: string;
}

/** Watches a context's requests (popups included) and its page's main-frame navigations. */
class Recorder {
  readonly main: MainRequest[] = [];
  mainRequests = 0;
  /** A main-frame navigation has started and not yet committed or failed. */
  mainPending = false;
  consoleErrors = 0;
  popups = 0;
  private readonly entries = new Map<Request, RecordedRequest>();

  constructor(context: BrowserContext, private readonly page: Page) {
    context.on('request', (r) => {
      if (this.entries.size < MAX_RECORDED) {
        this.entries.set(r, { url: r.url().slice(0, MAX_URL), method: r.method(), type: r.resourceType() });
      }
      if (this.isMain(r)) {
        this.mainRequests++;
        this.mainPending = true;
        if (this.main.length < MAX_NAVIGATIONS * 3) this.main.push({ req: r, url: r.url().slice(0, MAX_URL) });
      }
    });
    context.on('response', (resp) => {
      const r = resp.request();
      const e = this.entries.get(r);
      if (e) e.status = resp.status();
      const m = this.main.find((x) => x.req === r);
      if (m) {
        m.status = resp.status();
        const type = resp.headers()['content-type'];
        if (type) m.contentType = type.split(';')[0].trim().toLowerCase();
      }
    });
    context.on('requestfailed', (r) => {
      const text = r.failure()?.errorText ?? 'failed';
      const e = this.entries.get(r);
      if (e) e.error = text;
      const m = this.main.find((x) => x.req === r);
      if (m) {
        m.error = text;
        this.mainPending = false;
      }
    });
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) this.mainPending = false;
    });
    // Popups are counted and closed: their requests are recorded, their content is not scanned.
    context.on('page', (p) => {
      if (p === page) return;
      this.popups++;
      p.close().catch(() => undefined);
    });
    page.on('dialog', (d) => void d.dismiss().catch(() => undefined));
    page.on('console', (m) => {
      if (m.type() === 'error') this.consoleErrors++;
    });
    page.on('pageerror', () => this.consoleErrors++);
  }

  recorded(): RecordedRequest[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  private isMain(r: Request): boolean {
    try {
      return r.isNavigationRequest() && r.frame() === this.page.mainFrame();
    } catch {
      return false; // service-worker requests have no frame
    }
  }
}

/** The main-frame URLs left on the way to the final one, and how each was left. */
function hopsOf(main: MainRequest[]): RenderHop[] {
  const hops: RenderHop[] = [];
  for (let i = 0; i + 1 < main.length; i++) {
    const next = main[i + 1];
    const http = next.req.redirectedFrom() === main[i].req;
    hops.push({ url: main[i].url, ...(main[i].status !== undefined ? { status: main[i].status } : {}), kind: http ? 'http' : 'client' });
  }
  return hops;
}

/** Client-side hops that change site (registrable domain, or the address for IP hosts). */
function crossSiteClientHops(hops: RenderHop[], finalUrl: string): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (let i = 0; i < hops.length; i++) {
    if (hops[i].kind !== 'client') continue;
    const to = i + 1 < hops.length ? hops[i + 1].url : finalUrl;
    const a = siteOf(hops[i].url);
    const b = siteOf(to);
    if (a && b && a !== b) out.push({ from: a, to: b });
  }
  return out;
}

function siteOf(url: string): string | undefined {
  try {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    if (!host) return undefined;
    return net.isIP(host) ? host : (getDomain(host) ?? host);
  } catch {
    return undefined;
  }
}

/** Marks recorded requests the route or the proxy refused; refusals of unrecorded requests are added. */
function markRefused(requests: RecordedRequest[], refused: RefusedEgress[]): RecordedRequest[] {
  const tunnelOf = (u: string) => {
    try {
      const x = new URL(u);
      return x.protocol === 'https:' || x.protocol === 'wss:' ? `${x.hostname}:${x.port || 443}` : undefined;
    } catch {
      return undefined;
    }
  };
  for (const r of refused) {
    const hits = requests.filter((q) => (r.kind === 'connect' ? q.error !== undefined && tunnelOf(q.url) === r.target : q.url === r.target));
    for (const q of hits) q.blocked = true;
    if (hits.length === 0 && requests.length < MAX_RECORDED) {
      requests.push({ url: r.target, method: r.kind === 'connect' ? 'CONNECT' : 'GET', type: r.kind === 'websocket' ? 'websocket' : 'other', blocked: true });
    }
  }
  return requests;
}

function pngSize(png: Buffer): { width: number; height: number; bytes: number } | undefined {
  if (png.length < 24) return undefined;
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20), bytes: png.length };
}

function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0].slice(0, 500);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** Rejects when `p` has not settled within `ms` (a page stuck in a script loop never answers). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
