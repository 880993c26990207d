/**
 * safeFetch: one HTTP(S) request through the egress guard, bounded in bytes, time and redirects.
 * Used by URL scanning, `download_link` and callback delivery.
 *
 * - Every connection goes through `guard.lookup` (host names: all resolved addresses checked,
 *   the socket connects to the checked ones) and literal-IP hosts are checked before connecting.
 * - Redirects (301, 302, 303, 307, 308) are followed by hand: the Location is resolved against
 *   the current URL and each hop is re-checked. 303, and 301/302 after a POST, continue as GET
 *   without a body (what browsers do); 307/308 keep method and body. Authorization, Cookie and
 *   Proxy-Authorization are dropped when a redirect leaves the origin.
 * - The body is read up to `maxBytes` (`truncated: true` when more was offered), into memory or
 *   into `toFile`. With `failOnTruncate` an oversized body is an error (`FetchTooLargeError`)
 *   instead, and a partial `toFile` is removed.
 * - `timeoutMs` bounds the whole exchange, redirects included (`FetchTimeoutError`).
 * - Credentials in the URL (user:pass@) are never sent; the fragment is never sent.
 * - Errors: `EgressRefusedError`, `FetchTimeoutError`, `TooManyRedirectsError`,
 *   `FetchTooLargeError`, the caller's abort reason, or Node/undici network errors as they come
 *   (`ECONNREFUSED`, `ENOTFOUND`, TLS errors...). `redirectChainOf(err)` gives the hops followed
 *   before any of them, `failedUrlOf(err)` the URL being fetched when it failed.
 *
 * @example
 * const r = await safeFetch('https://example.com/', { guard, maxBytes: 1 << 20, timeoutMs: 10_000, maxRedirects: 5 });
 * r.status; r.finalUrl; r.redirectChain; r.body?.toString();
 *
 * @example callback delivery
 * const r = await safeFetch(callbackUrl, { guard, method: 'POST', headers: { 'content-type': 'application/json' },
 *   body: JSON.stringify(payload), maxBytes: 64 * 1024, timeoutMs: 10_000, maxRedirects: 0, followRedirects: false });
 */
import fsp from 'node:fs/promises';
import net from 'node:net';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { EgressRefusedError, type EgressGuard } from './egress-guard.ts';

export interface RedirectHop {
  /** The URL that answered with a redirect. */
  url: string;
  status: number;
}

export interface SafeFetchOptions {
  guard: EgressGuard;
  /** Most body bytes read. */
  maxBytes: number;
  /** Time budget for the whole fetch, redirects included. */
  timeoutMs: number;
  /** Most redirects followed; one more is a `TooManyRedirectsError`. */
  maxRedirects: number;
  /** When false, a redirect response is returned as it is (status, headers, Location). Default true. */
  followRedirects?: boolean;
  /** Defaults to `Verdict/<version>`. */
  userAgent?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer | Uint8Array;
  signal?: AbortSignal;
  /** Write the body to this file instead of returning it in memory. */
  toFile?: string;
  /** Throw `FetchTooLargeError` instead of returning a truncated body. */
  failOnTruncate?: boolean;
  /**
   * A long-lived agent from `guardedAgent` (same guard), so repeated fetches to one origin
   * reuse their connections. Default: a private agent closed after this fetch.
   */
  agent?: Agent;
}

export interface SafeFetchResult {
  finalUrl: string;
  status: number;
  headers: Record<string, string | string[]>;
  redirectChain: RedirectHop[];
  /** The body, unless `toFile` was given. */
  body?: Buffer;
  /** The file written, when `toFile` was given. */
  file?: string;
  /** Body bytes kept (in `body` or `file`). */
  bytes: number;
  /** More than `maxBytes` was offered; the rest was not read. */
  truncated: boolean;
  /** The media type of Content-Type, lower case, without parameters ('' when absent). */
  contentType: string;
}

export const DEFAULT_USER_AGENT = 'Verdict/0.1';

/** The fetch ran out of its time budget. Stable code: `FETCH_TIMEOUT`. */
export class FetchTimeoutError extends Error {
  override name = 'FetchTimeoutError';
  readonly code = 'FETCH_TIMEOUT';
  constructor(
    readonly url: string,
    readonly timeoutMs: number,
  ) {
    super(`fetching ${url} took longer than ${timeoutMs} ms`);
  }
}

/** More redirects than allowed. Stable code: `TOO_MANY_REDIRECTS`. */
export class TooManyRedirectsError extends Error {
  override name = 'TooManyRedirectsError';
  readonly code = 'TOO_MANY_REDIRECTS';
  constructor(
    readonly url: string,
    readonly maxRedirects: number,
  ) {
    super(`more than ${maxRedirects} redirects fetching ${url}`);
  }
}

/** The body is larger than allowed (only with `failOnTruncate`). Stable code: `FETCH_TOO_LARGE`. */
export class FetchTooLargeError extends Error {
  override name = 'FetchTooLargeError';
  readonly code = 'FETCH_TOO_LARGE';
  constructor(
    readonly url: string,
    readonly maxBytes: number,
    /** The announced Content-Length, when the server sent one. */
    readonly contentLength?: number,
  ) {
    super(`${url} is larger than ${maxBytes} bytes${contentLength !== undefined ? ` (Content-Length ${contentLength})` : ''}`);
  }
}

const failures = new WeakMap<object, { url: string; chain: RedirectHop[] }>();

/** The redirects followed before a `safeFetch` error (empty when it failed on the first URL). */
export function redirectChainOf(err: unknown): RedirectHop[] {
  return (err !== null && typeof err === 'object' && failures.get(err)?.chain) || [];
}

/** The URL `safeFetch` was fetching when it failed (the last redirect target), if it failed there. */
export function failedUrlOf(err: unknown): string | undefined {
  return err !== null && typeof err === 'object' ? failures.get(err)?.url : undefined;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

/** An undici connector that refuses literal-IP hosts the guard refuses and resolves names through it. */
/** An agent whose every new connection passes the egress guard (keep-alive connections were checked when made). */
export function guardedAgent(guard: EgressGuard, timeoutMs: number): Agent {
  return new Agent({ connect: guardedConnector(guard, timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
}

export function guardedConnector(guard: EgressGuard, timeoutMs: number): buildConnector.connector {
  const base = buildConnector({ lookup: guard.lookup, timeout: timeoutMs });
  return (opts, callback) => {
    if (net.isIP(opts.hostname)) {
      const r = guard.check(opts.hostname);
      if (!r.ok) {
        callback(new EgressRefusedError(opts.hostname, opts.hostname, r.reason), null);
        return;
      }
    }
    base(opts, callback);
  };
}

export async function safeFetch(url: string | URL, opts: SafeFetchOptions): Promise<SafeFetchResult> {
  const chain: RedirectHop[] = [];
  const ac = new AbortController();
  let timedOut = false;
  let current = String(url);
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new FetchTimeoutError(current, opts.timeoutMs));
  }, opts.timeoutMs);
  const onAbort = () => ac.abort(opts.signal?.reason);
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const agent = opts.agent ?? guardedAgent(opts.guard, opts.timeoutMs);
  try {
    return await run();
  } catch (err) {
    let e = err;
    if (timedOut) e = new FetchTimeoutError(current, opts.timeoutMs);
    else if (opts.signal?.aborted) e = opts.signal.reason ?? err;
    if (e && typeof e === 'object') failures.set(e, { url: current, chain });
    throw e;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    if (!opts.agent) agent.destroy().catch(() => undefined);
  }

  async function run(): Promise<SafeFetchResult> {
    let method = (opts.method ?? 'GET').toUpperCase();
    let body = opts.body;
    const headers: Record<string, string> = {
      'user-agent': opts.userAgent ?? DEFAULT_USER_AGENT,
      accept: '*/*',
      'accept-encoding': 'identity',
    };
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
    const follow = opts.followRedirects ?? true;

    for (;;) {
      opts.guard.assertUrl(current); // scheme, validity, literal-IP host
      const target = new URL(current);
      target.username = '';
      target.password = '';
      target.hash = '';
      const res = await request(target, { dispatcher: agent, method: method as Dispatcher.HttpMethod, headers, body, signal: ac.signal });
      const location = headerValue(res.headers.location);
      if (follow && REDIRECTS.has(res.statusCode) && location !== undefined) {
        // Reads a small redirect body so the connection can be reused; destroys a large one.
        await res.body.dump({ limit: 64 * 1024 });
        if (chain.length >= opts.maxRedirects) throw new TooManyRedirectsError(String(url), opts.maxRedirects);
        chain.push({ url: current, status: res.statusCode });
        let next: URL;
        try {
          next = new URL(location, current);
        } catch {
          throw new EgressRefusedError(location, undefined, `redirect to an invalid URL`);
        }
        if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
          if (method !== 'HEAD') method = 'GET';
          body = undefined;
          delete headers['content-type'];
          delete headers['content-length'];
        }
        if (next.origin !== target.origin) for (const h of CREDENTIAL_HEADERS) delete headers[h];
        current = next.href;
        continue;
      }
      return readBody(res);
    }
  }

  async function readBody(res: Dispatcher.ResponseData): Promise<SafeFetchResult> {
    const contentType = (headerValue(res.headers['content-type']) ?? '').split(';')[0].trim().toLowerCase();
    const lengthHeader = headerValue(res.headers['content-length']);
    const contentLength = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    if (opts.failOnTruncate && contentLength !== undefined && contentLength > opts.maxBytes) {
      discard(res.body);
      throw new FetchTooLargeError(current, opts.maxBytes, contentLength);
    }
    const chunks: Buffer[] = [];
    const fh = opts.toFile ? await fsp.open(opts.toFile, 'w') : undefined;
    let bytes = 0;
    let truncated = false;
    try {
      for await (const raw of res.body) {
        let chunk = raw as Buffer;
        const room = opts.maxBytes - bytes;
        if (chunk.length > room) {
          truncated = true;
          chunk = chunk.subarray(0, room);
        }
        if (chunk.length > 0) {
          if (fh) await fh.write(chunk);
          else chunks.push(chunk);
          bytes += chunk.length;
        }
        if (truncated) break;
      }
      if (truncated && opts.failOnTruncate) throw new FetchTooLargeError(current, opts.maxBytes, contentLength);
    } catch (err) {
      discard(res.body);
      if (fh) {
        await fh.close().catch(() => undefined);
        await fsp.rm(opts.toFile!, { force: true });
      }
      throw err;
    }
    if (truncated) discard(res.body);
    await fh?.close();
    return {
      finalUrl: current,
      status: res.statusCode,
      headers: flattenHeaders(res.headers),
      redirectChain: chain,
      ...(fh ? { file: opts.toFile } : { body: Buffer.concat(chunks) }),
      bytes,
      truncated,
      contentType,
    };
  }
}

/** Stops reading a body; undici then emits an abort error, which nobody else listens to. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function flattenHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
  return out;
}
