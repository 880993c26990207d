/**
 * URL heuristics: judges a URL by its address alone, without fetching it.
 *
 * The URL is parsed and normalised with the WHATWG parser (lower-case host, IDN → punycode,
 * decimal/hex/octal IPv4 → dotted quad, default port dropped, dot segments resolved). A URL
 * submitted without a scheme (`example.com/x`) is read as `http://`. Attributes:
 * `{ normalizedUrl, domain, scheme }`; an unparseable URL is an `UNPARSEABLE` finding.
 *
 * Findings, and the thresholds chosen:
 * - URL_IP_HOST: the host is a literal IPv4/IPv6 address; `data.form` says when IPv4 was written
 *   in an obfuscated form (decimal `3232235777`, hex `0xc0a80101`, octal `0300.0250.1.1`,
 *   percent-encoded, or fewer than four parts).
 * - URL_USERINFO: `user[:password]@` before the host.
 * - URL_PUNYCODE: a host label starts with `xn--` (including hosts typed in Unicode).
 * - URL_SUSPICIOUS_TLD: the TLD is in `SUSPICIOUS_TLDS` below.
 * - URL_LONG: the normalised URL is longer than `LONG_URL` characters.
 * - URL_MANY_SUBDOMAINS: the host has `MANY_LABELS` or more labels (a leading `www.` not counted).
 * - URL_NONSTANDARD_PORT: an explicit port other than 80 and 443.
 * - URL_SHORTENER: the host is (a subdomain of) one in `SHORTENERS` below.
 * - URL_EXECUTABLE_DOWNLOAD: the last path segment ends in an extension of `EXECUTABLE_EXTENSIONS`.
 *
 * @example
 * const r = await runScanner(urlHeuristicsScanner, Buffer.alloc(0), { url: 'http://0x7f000001/a.exe' });
 * r.heuristics; // ['URL_IP_HOST', 'URL_EXECUTABLE_DOWNLOAD']
 */
import { parse as parseDomain } from 'tldts';
import { lookalikeOf, ownerOf } from './email.ts';
import type { Finding, Scanner } from './types.ts';

/**
 * TLDs that abuse reports (Spamhaus "most abused TLDs", Interisle's phishing landscape studies)
 * keep listing for phishing and malware, out of proportion to legitimate use: the former free
 * Freenom TLDs, and cheap new gTLDs. Short on purpose: a hit only adds a little score.
 */
export const SUSPICIOUS_TLDS: ReadonlySet<string> = new Set([
  'tk', 'ml', 'ga', 'cf', 'gq', // ex-Freenom free registrations
  'top', 'xyz', 'icu', 'cyou', 'buzz', 'rest', 'cfd', 'sbs', 'bond', 'monster', 'quest', 'click',
  'zip', 'mov', // look like file names in text
  'country', 'support', 'work', 'loan', 'gdn', 'lol', 'surf', 'hair', 'beauty',
]);

/** Well-known public URL-shortening services (links hide their destination). */
export const SHORTENERS: ReadonlySet<string> = new Set([
  'bit.ly', 'bitly.com', 'tinyurl.com', 't.co', 'goo.gl', 'ow.ly', 'is.gd', 'v.gd', 'buff.ly',
  'rebrand.ly', 'cutt.ly', 'shorturl.at', 'rb.gy', 'tiny.cc', 't.ly', 's.id', 'bl.ink',
  'lnkd.in', 'qrco.de', 'short.gy', 'shorturl.gg', 'tny.im', 'u.to', 'clck.ru', 'x.gd',
]);

/**
 * Extensions of programs and scripts Windows, macOS, Linux or Android run or install when
 * opened. Deliberately without `.js` and `.com`, which end countless ordinary URLs.
 */
export const EXECUTABLE_EXTENSIONS: ReadonlySet<string> = new Set([
  'exe', 'dll', 'scr', 'pif', 'cpl', 'msi', 'msp', 'msix', 'msixbundle', 'appx', 'appxbundle',
  'bat', 'cmd', 'vbs', 'vbe', 'jse', 'wsf', 'wsh', 'hta', 'ps1', 'psm1', 'lnk', 'reg', 'scf',
  'chm', 'xll', 'application', 'appref-ms', 'jar', 'apk', 'dmg', 'pkg', 'sh', 'command', 'run',
]);

/** URLs longer than this (characters of the normalised form) get URL_LONG. */
export const LONG_URL = 250;
/** Hosts with at least this many labels get URL_MANY_SUBDOMAINS (a.b.c.example.com). */
export const MANY_LABELS = 5;

const STANDARD_PORTS = new Set(['80', '443']);

export interface ParsedUrl {
  url: URL;
  /** Host without IPv6 brackets and without a trailing dot. */
  domain: string;
  /** Scheme without the colon. */
  scheme: string;
  /** The host as written in the input (before normalisation), lower case. */
  rawHost: string;
}

/**
 * Parses a submitted URL the way URL scanning reads it everywhere: trimmed, `http://` added when
 * no scheme was given, WHATWG-normalised. Returns undefined when it cannot be parsed.
 */
export function parseSubmittedUrl(text: string): ParsedUrl | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) || /^(javascript|data|mailto|file|about|blob|vbscript|tel|sms):/i.test(trimmed);
  const withScheme = hasScheme ? trimmed : `http://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { url, domain: host.replace(/\.$/, ''), scheme: url.protocol.replace(/:$/, ''), rawHost: rawHostOf(withScheme) };
}

/** The host as typed: after `//`, before the path, without userinfo and port. */
function rawHostOf(text: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#\\]*)/i.exec(text);
  if (!m) return '';
  let auth = m[1];
  const at = auth.lastIndexOf('@');
  if (at >= 0) auth = auth.slice(at + 1);
  if (auth.startsWith('[')) return auth.slice(0, auth.indexOf(']') + 1).toLowerCase();
  return auth.replace(/:\d*$/, '').toLowerCase();
}

/** How an IPv4 host was written when not as a plain dotted quad. */
function ipv4Form(raw: string): string | undefined {
  const host = raw.replace(/\.$/, '');
  const parts = host.split('.');
  if (parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p))) return undefined;
  if (host.includes('%')) return 'percent-encoded';
  if (parts.length === 1 && /^\d+$/.test(host)) return 'decimal';
  if (parts.some((p) => /^0x/i.test(p))) return parts.length === 1 ? 'hex' : 'hex-dotted';
  if (parts.some((p) => /^0\d/.test(p))) return 'octal';
  return 'short';
}

function isIpHost(url: URL): 4 | 6 | 0 {
  if (url.hostname.startsWith('[')) return 6;
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(url.hostname) ? 4 : 0;
}

export function extensionOf(pathname: string): string {
  let last = pathname.slice(pathname.lastIndexOf('/') + 1);
  try {
    last = decodeURIComponent(last);
  } catch {
    // keep it encoded
  }
  const dot = last.lastIndexOf('.');
  return dot > 0 ? last.slice(dot + 1).toLowerCase().replace(/[\s.]+$/, '') : '';
}

export const urlHeuristicsScanner: Scanner = {
  name: 'url-heuristics',
  version: '1',
  layer: 'url',
  accepts: (info) => info.kind === 'url',
  async scan(input) {
    const text = input.info.url ?? '';
    const parsed = parseSubmittedUrl(text);
    if (!parsed) {
      return { evidence: [{ heuristic: 'UNPARSEABLE', details: 'not a valid URL', data: { url: text.slice(0, 2048) } }] };
    }
    const { url, domain, scheme, rawHost } = parsed;
    const evidence: Finding[] = [];
    const href = url.href;

    const ipKind = isIpHost(url);
    if (ipKind === 4) {
      const form = ipv4Form(rawHost);
      evidence.push({
        heuristic: 'URL_IP_HOST',
        details: form ? `${rawHost} (${form} form of ${domain})` : domain,
        data: { ip: domain, ...(form ? { form, written: rawHost } : {}) },
      });
    } else if (ipKind === 6) {
      evidence.push({ heuristic: 'URL_IP_HOST', details: domain, data: { ip: domain } });
    }
    if (url.username || url.password) {
      evidence.push({ heuristic: 'URL_USERINFO', details: `user "${decodeSafe(url.username)}" before host ${domain}`, data: { username: decodeSafe(url.username), hasPassword: url.password !== '' } });
    }
    if (!ipKind && domain) {
      const labels = domain.split('.');
      const puny = labels.filter((l) => l.startsWith('xn--'));
      if (puny.length) evidence.push({ heuristic: 'URL_PUNYCODE', details: domain, data: { labels: puny } });
      const tld = labels[labels.length - 1];
      if (SUSPICIOUS_TLDS.has(tld)) evidence.push({ heuristic: 'URL_SUSPICIOUS_TLD', details: `.${tld}`, data: { tld } });
      const counted = labels[0] === 'www' ? labels.length - 1 : labels.length;
      if (counted >= MANY_LABELS) evidence.push({ heuristic: 'URL_MANY_SUBDOMAINS', details: `${labels.length} labels in ${domain}`, data: { labels: labels.length } });
      evidence.push(...brandFindings(domain));
      const shortener = [...SHORTENERS].find((s) => domain === s || domain.endsWith(`.${s}`));
      if (shortener) evidence.push({ heuristic: 'URL_SHORTENER', details: shortener, data: { service: shortener } });
    }
    if (href.length > LONG_URL) evidence.push({ heuristic: 'URL_LONG', details: `${href.length} characters`, data: { length: href.length } });
    const encoded = encodingFinding(url);
    if (encoded) evidence.push(encoded);
    if (url.port && !STANDARD_PORTS.has(url.port)) evidence.push({ heuristic: 'URL_NONSTANDARD_PORT', details: `port ${url.port}`, data: { port: Number(url.port) } });
    if (scheme === 'http' || scheme === 'https' || scheme === 'ftp') {
      const ext = extensionOf(url.pathname);
      if (EXECUTABLE_EXTENSIONS.has(ext)) evidence.push({ heuristic: 'URL_EXECUTABLE_DOWNLOAD', details: `path ends in .${ext}`, data: { extension: ext, source: 'path' } });
    }

    return { evidence, attributes: { normalizedUrl: href, domain, scheme } };
  },
};

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Brand imitation in the host: the registrable domain is a look-alike of a brand's (shared with
 * the email scanner's sender check), or a brand's whole domain sits in the subdomain of a domain
 * the brand does not own (paypal.com.secure-login.example).
 */
function brandFindings(host: string): Finding[] {
  const p = parseDomain(host, { allowPrivateDomains: true });
  if (!p.domain || p.isIp) return [];
  const out: Finding[] = [];
  const look = lookalikeOf(p.domain);
  if (look) {
    out.push({
      heuristic: 'URL_LOOKALIKE_DOMAIN',
      details: `${p.domain} imitates ${look.imitates} (${look.brand}, ${look.reason.replace('_', ' ')})`,
      data: { domain: p.domain, brand: look.brand, imitates: look.imitates, reason: look.reason },
      ...(look.reason === 'brand_name' ? { score: 150 } : {}),
    });
  }
  if (p.subdomain && !ownerOf(p.domain)) {
    const labels = p.subdomain.toLowerCase().split('.');
    for (let i = 0; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join('.');
      const sub = parseDomain(candidate);
      const owner = sub.domain && sub.isIcann ? ownerOf(sub.domain) : undefined;
      if (owner) {
        out.push({ heuristic: 'URL_BRAND_IN_SUBDOMAIN', details: `${sub.domain} (${owner.brand}) is a subdomain of ${p.domain}`, data: { brand: owner.brand, shown: sub.domain, domain: p.domain } });
        break;
      }
    }
  }
  return out;
}

/** Paths and queries that are mostly percent-escapes, or escaped twice (%25xx). */
function encodingFinding(url: URL): Finding | undefined {
  const rest = url.pathname + url.search;
  const double = /%25[0-9a-f]{2}/i.test(rest);
  if (rest.length < 30 && !double) return undefined;
  const escapes = rest.match(/%[0-9a-f]{2}/gi)?.length ?? 0;
  const share = (escapes * 3) / rest.length;
  if (share < 0.5 && !double) return undefined;
  return { heuristic: 'URL_ENCODED_PATH', details: double ? 'percent-encoded twice' : `${Math.round(share * 100)}% of the path and query is percent-encoded`, data: { share: Math.round(share * 100) / 100, double } };
}
