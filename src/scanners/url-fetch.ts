/**
 * URL fetch: retrieves a submitted URL through the egress guard (`safeFetch`), records where it
 * led, and hands the content to the engine as a `fetched_content` child so that the file
 * scanners judge it.
 *
 * - Limits: `limits.urlFetchMaxBytes`, `limits.urlFetchTimeoutMs` (never past the scanner's
 *   deadline), `limits.urlMaxRedirects`; the request's `userAgent` option, else a browser-like
 *   default (phishing kits serve harmless pages to tools that look like tools).
 * - Attributes: `{ finalUrl, statusCode, redirectChain, contentType, title, isRedirect, bytes,
 *   truncated }` (what is known, also when the fetch failed part-way).
 * - Findings: URL_REDIRECT_CHAIN (3 redirects or more), URL_CROSS_DOMAIN_REDIRECT (the chain
 *   leaves the site of the submitted URL; site = last two labels, three under `co.uk`-style
 *   second levels: an approximation without the public-suffix list), URL_EXECUTABLE_DOWNLOAD
 *   (served content type, magic bytes PE/ELF/Mach-O, a Content-Disposition file name, or a
 *   redirect target path with an executable extension), URL_FETCH_REFUSED (egress policy),
 *   URL_FETCH_FAILED (unparseable URL, network error, timeout, too many redirects, HTTP status
 *   ≥ 400 with `data.status`), NOT_FULLY_SCANNED (body cut at the size limit, or the engine
 *   refused the child).
 * - The body of an error page is still scanned: phishing kits answer 404 to some visitors.
 * - Bad URLs and unreachable sites are findings; only an abort of the scan itself is thrown.
 *
 * `init()` throws `ScannerDisabled` when `urlFetch` is off, and builds the guard from
 * `egressAllow` / `egressDeny` (an invalid entry fails start-up with the entry named).
 *
 * @example
 * const r = await runScanner(urlFetchScanner, Buffer.alloc(0), {
 *   url: 'http://127.0.0.1:8080/', init: { config: loadConfig({ egressAllow: ['127.0.0.0/8'] }, {}) },
 * });
 * r.attributes.title; r.children[0].relation; // 'fetched_content'
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { EgressGuard, EgressRefusedError } from '../net/egress-guard.ts';
import {
  FetchTimeoutError,
  TooManyRedirectsError,
  failedUrlOf,
  redirectChainOf,
  safeFetch,
  type RedirectHop,
  type SafeFetchResult,
} from '../net/safe-fetch.ts';
import { detectType } from './file-type.ts';
import { EXECUTABLE_EXTENSIONS, extensionOf, parseSubmittedUrl } from './url-heuristics.ts';
import { ScannerDisabled, type Finding, type Scanner } from './types.ts';

export interface UrlFetchState {
  guard: EgressGuard;
  /** Also fetch URLs found inside objects (links in pages, PDFs, documents), not only submitted ones. */
  fetchEmbeddedLinks: boolean;
}

export const DEFAULT_FETCH_USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

/** How much of the body is read for the title and the magic bytes. */
const HEAD_BYTES = 64 * 1024;
/** Redirects from which URL_REDIRECT_CHAIN is reported. */
const LONG_CHAIN = 3;

const EXECUTABLE_CONTENT_TYPES = new Set([
  'application/x-msdownload', 'application/x-msdos-program', 'application/x-dosexec', 'application/x-ms-dos-executable',
  'application/vnd.microsoft.portable-executable', 'application/x-exe', 'application/exe', 'application/x-winexe',
  'application/x-executable', 'application/x-elf', 'application/x-sharedlib', 'application/x-mach-binary',
  'application/x-msi', 'application/x-ms-installer', 'application/x-ms-application', 'application/java-archive',
  'application/x-java-archive', 'application/vnd.android.package-archive', 'application/x-apple-diskimage',
  'application/x-sh', 'application/x-csh', 'application/x-bat', 'application/x-msdos-batch', 'application/hta',
  'application/x-ms-shortcut', 'application/x-powershell',
]);
const EXECUTABLE_MAGIC = new Set(['pe', 'elf', 'macho']);
const HTML_CONTENT_TYPES = new Set(['text/html', 'application/xhtml+xml']);
/** Second-level labels under which registrations happen one level deeper (example.co.uk). */
const SECOND_LEVELS = new Set(['co', 'com', 'net', 'org', 'gov', 'ac', 'edu', 'ne', 'or', 'go', 'gob', 'mil', 'nic', 'ltd', 'plc']);

export const urlFetchScanner: Scanner<UrlFetchState> = {
  name: 'url-fetch',
  version: '1',
  layer: 'url',
  async init(ictx) {
    if (!ictx.config.urlFetch) throw new ScannerDisabled('URL fetching is turned off (urlFetch: false)');
    return { guard: new EgressGuard({ allow: ictx.config.egressAllow, deny: ictx.config.egressDeny }), fetchEmbeddedLinks: ictx.config.fetchEmbeddedLinks };
  },
  // Submitted URLs (and redirect targets) are fetched; links found inside objects only when the
  // operator asks for it: fetching them can trigger one-time or unsubscribe links.
  accepts: (info, state) => info.kind === 'url' && (info.relation !== 'link' || state.fetchEmbeddedLinks),
  async scan(input, ctx, state) {
    const parsed = parseSubmittedUrl(input.info.url ?? '');
    if (!parsed) {
      return { evidence: [{ heuristic: 'URL_FETCH_FAILED', details: 'not a valid URL', data: { reason: 'unparseable' } }] };
    }
    const submitted = parsed.url.href;
    await fsp.mkdir(ctx.tmpDir, { recursive: true });
    const file = path.join(ctx.tmpDir, `fetched-${crypto.randomUUID()}`);
    const timeoutMs = Math.max(1, Math.min(ctx.limits.urlFetchTimeoutMs, ctx.deadline - Date.now()));

    let res: SafeFetchResult;
    try {
      res = await safeFetch(parsed.url, {
        guard: state.guard,
        maxBytes: ctx.limits.urlFetchMaxBytes,
        timeoutMs,
        maxRedirects: ctx.limits.urlMaxRedirects,
        userAgent: ctx.options.userAgent || DEFAULT_FETCH_USER_AGENT,
        headers: { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' },
        signal: ctx.signal,
        toFile: file,
      });
    } catch (err) {
      await fsp.rm(file, { force: true });
      if (ctx.signal.aborted) throw err;
      return failed(submitted, err);
    }

    const evidence: Finding[] = [];
    const chain = res.redirectChain;
    evidence.push(...chainFindings(submitted, chain, res.finalUrl));

    const head = res.bytes > 0 ? await readHead(file, HEAD_BYTES) : Buffer.alloc(0);
    const detected = detectType(head);
    const exe = executableSources(res, detected.type, chain.length > 0);
    if (exe.length) {
      evidence.push({ heuristic: 'URL_EXECUTABLE_DOWNLOAD', details: exe.join('; '), data: { sources: exe, contentType: res.contentType, detectedType: detected.type } });
    }
    if (res.status >= 400) {
      evidence.push({ heuristic: 'URL_FETCH_FAILED', details: `HTTP ${res.status}`, data: { reason: 'http_status', status: res.status } });
    }
    const untyped = !res.contentType || res.contentType === 'text/plain';
    const isHtml = HTML_CONTENT_TYPES.has(res.contentType) || detected.type === 'html' || (untyped && /<title[\s>]/i.test(head.toString('latin1')));
    const title = isHtml ? extractTitle(head, headerString(res.headers['content-type'])) : undefined;

    if (res.truncated) {
      evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `content cut at ${ctx.limits.urlFetchMaxBytes} bytes (limits.urlFetchMaxBytes)`, data: { limit: ctx.limits.urlFetchMaxBytes } });
    }
    if (res.bytes > 0) {
      const accepted = await ctx.emitChild({
        relation: 'fetched_content',
        file,
        name: res.finalUrl,
        meta: { url: submitted, finalUrl: res.finalUrl, statusCode: res.status, contentType: res.contentType },
      });
      if (accepted !== true) {
        await fsp.rm(file, { force: true });
        evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `fetched content not scanned: ${accepted} limit`, data: { refused: accepted } });
      }
    } else {
      await fsp.rm(file, { force: true });
    }

    return {
      evidence,
      attributes: {
        finalUrl: res.finalUrl,
        statusCode: res.status,
        redirectChain: chain,
        contentType: res.contentType,
        title,
        isRedirect: chain.length > 0,
        bytes: res.bytes,
        truncated: res.truncated,
      },
    };
  },
};

/** A failed fetch as findings, with what was learnt before it failed. */
function failed(submitted: string, err: unknown): { evidence: Finding[]; attributes: Record<string, unknown> } {
  const chain = redirectChainOf(err);
  const at = failedUrlOf(err) ?? submitted;
  const evidence: Finding[] = chainFindings(submitted, chain, at);
  if (err instanceof EgressRefusedError) {
    evidence.push({ heuristic: 'URL_FETCH_REFUSED', details: err.message, data: { url: at, host: err.host, address: err.address, reason: err.reason } });
  } else if (err instanceof FetchTimeoutError) {
    evidence.push({ heuristic: 'URL_FETCH_FAILED', details: err.message, data: { reason: 'timeout', url: at, timeoutMs: err.timeoutMs } });
  } else if (err instanceof TooManyRedirectsError) {
    evidence.push({ heuristic: 'URL_FETCH_FAILED', details: err.message, data: { reason: 'too_many_redirects', url: at, maxRedirects: err.maxRedirects } });
  } else {
    const e = err as { code?: unknown; message?: unknown };
    const code = typeof e?.code === 'string' ? e.code : undefined;
    const message = typeof e?.message === 'string' ? e.message : String(err);
    evidence.push({ heuristic: 'URL_FETCH_FAILED', details: code ? `${code}: ${message}` : message, data: { reason: 'network', url: at, code } });
  }
  return { evidence, attributes: { finalUrl: at, redirectChain: chain, isRedirect: chain.length > 0 } };
}

function chainFindings(submitted: string, chain: RedirectHop[], finalUrl: string): Finding[] {
  const out: Finding[] = [];
  if (chain.length >= LONG_CHAIN) {
    out.push({ heuristic: 'URL_REDIRECT_CHAIN', details: `${chain.length} redirects`, data: { hops: chain.length } });
  }
  if (chain.length > 0) {
    const from = siteOf(submitted);
    const sites = [...new Set([...chain.map((h) => siteOf(h.url)), siteOf(finalUrl)])].filter((s) => s !== undefined);
    const others = sites.filter((s) => s !== from);
    if (from !== undefined && others.length) {
      out.push({ heuristic: 'URL_CROSS_DOMAIN_REDIRECT', details: `${from} → ${others.join(' → ')}`, data: { from, to: others } });
    }
  }
  return out;
}

/** The registrable-ish part of a URL's host (see the file's comment for the approximation). */
function siteOf(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  } catch {
    return undefined;
  }
  if (!host || net.isIP(host)) return host || undefined;
  const labels = host.split('.');
  const n = labels.length >= 3 && labels[labels.length - 1].length === 2 && SECOND_LEVELS.has(labels[labels.length - 2]) ? 3 : 2;
  return labels.slice(-n).join('.');
}

function executableSources(res: SafeFetchResult, detectedType: string, redirected: boolean): string[] {
  const out: string[] = [];
  if (EXECUTABLE_CONTENT_TYPES.has(res.contentType)) out.push(`served as ${res.contentType}`);
  if (EXECUTABLE_MAGIC.has(detectedType)) out.push(`content is ${detectedType}`);
  const name = attachmentName(headerString(res.headers['content-disposition']));
  if (name && EXECUTABLE_EXTENSIONS.has(extensionOf(name))) out.push(`attachment named ${name}`);
  if (redirected) {
    const ext = extensionOf(new URL(res.finalUrl).pathname);
    if (EXECUTABLE_EXTENSIONS.has(ext)) out.push(`redirected to a .${ext} path`);
  }
  return out;
}

/** The file name of a Content-Disposition header (`filename*=` preferred). */
function attachmentName(cd: string | undefined): string | undefined {
  if (!cd) return undefined;
  const star = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(cd);
  if (star) {
    try {
      return decodeURIComponent(star[2].trim());
    } catch {
      return star[2].trim();
    }
  }
  const plain = /filename\s*=\s*("([^"]*)"|[^;]+)/i.exec(cd);
  return plain ? (plain[2] ?? plain[1]).trim() : undefined;
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

/** The text of the first <title> in an HTML head, decoded with the declared charset. */
export function extractTitle(head: Buffer, contentType?: string): string | undefined {
  const latin = head.toString('latin1');
  const m = /<title[^>]*>([\s\S]*?)<\/title\s*>/i.exec(latin);
  if (!m) return undefined;
  const charset =
    /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType ?? '')?.[1] ??
    /<meta[^>]+charset\s*=\s*["']?([\w.:-]+)/i.exec(latin)?.[1] ??
    'utf-8';
  const start = m.index + m[0].indexOf('>') + 1;
  const raw = head.subarray(start, start + m[1].length);
  let text: string;
  try {
    text = new TextDecoder(charset.toLowerCase()).decode(raw);
  } catch {
    text = new TextDecoder('utf-8').decode(raw);
  }
  text = text
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (all, e: string) => {
      if (e[0] === '#') {
        const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
      }
      return ENTITIES[e.toLowerCase()] ?? all;
    })
    .replace(/\s+/g, ' ')
    .trim();
  return text.slice(0, 512);
}
