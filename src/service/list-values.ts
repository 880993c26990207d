/**
 * Values of allow/block list entries: validation (a bad value throws `invalid` naming the wire
 * field), normalisation for matching, and the matching of one candidate against one entry.
 * Pure functions; the lists service stores `norm` and `key` beside the value as entered.
 *
 * | target | field | accepted | norm | key (index) |
 * | --- | --- | --- | --- | --- |
 * | email | `address` | one address `local@domain` | lower case | = norm |
 * | ip | `ip` | IPv4, IPv6, or a CIDR range of either | canonical address, or `network/bits` | address, or `*cidr` |
 * | url | `prefix` | http(s) URL or bare `host[/path]` | `host[:port]/path[?query]`, host lower case, scheme dropped | host |
 * | hash | `sha256` | 64 hex digits | lower case | = norm |
 * | domain | `domain` | a host name (IDN allowed) | lower-case punycode, no trailing dot | = norm |
 *
 * @example
 * normaliseValue('url', 'HTTPS://Example.com/login', 'prefix'); // { norm: 'example.com/login', key: 'example.com' }
 * urlMatches('example.com/login', false, 'http://example.com/login?x=1'); // true
 */
import ipaddr from 'ipaddr.js';
import { invalid } from './errors.ts';
import type { ListTarget } from '../verdict/lists.ts';

/** The wire field carrying each target's value. */
export const VALUE_FIELD: Record<ListTarget, string> = { email: 'address', ip: 'ip', url: 'prefix', hash: 'sha256', domain: 'domain' };

export const CIDR_KEY = '*cidr';

export interface Normalised {
  /** The value as shown back (trimmed). */
  value: string;
  /** The comparable form. */
  norm: string;
  /** The lookup key stored in the index. */
  key: string;
}

const EMAIL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$/;
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export function normaliseValue(target: ListTarget, raw: unknown, field = VALUE_FIELD[target]): Normalised {
  if (typeof raw !== 'string' || raw.trim() === '') throw invalid(field, 'this field is required');
  const value = raw.trim();
  if (value.length > 2048) throw invalid(field, 'longer than 2048 characters');
  switch (target) {
    case 'email': {
      if (!EMAIL.test(value) || value.includes('..')) throw invalid(field, `not a valid email address: ${value.slice(0, 200)}`);
      const norm = value.toLowerCase();
      return { value, norm, key: norm };
    }
    case 'hash': {
      if (!/^[0-9a-fA-F]{64}$/.test(value)) throw invalid(field, 'expected a sha256 digest (64 hexadecimal digits)');
      const norm = value.toLowerCase();
      return { value: norm, norm, key: norm };
    }
    case 'ip': {
      const n = normaliseIp(value);
      if (!n) throw invalid(field, `not a valid IPv4 or IPv6 address or CIDR range: ${value.slice(0, 200)}`);
      return { value, ...n };
    }
    case 'domain': {
      const host = hostOf(value.replace(/^\*\./, '').replace(/\.$/, ''));
      if (!host || isIpLiteral(host)) throw invalid(field, `not a valid domain name: ${value.slice(0, 200)}`);
      return { value, norm: host, key: host };
    }
    case 'url': {
      const u = parsePrefix(value);
      if (!u) throw invalid(field, `not a valid URL or URL prefix: ${value.slice(0, 200)}`);
      return { value, norm: u.norm, key: u.host };
    }
  }
}

/** A host name validated and brought to its lower-case ASCII (punycode) form, or undefined. */
export function hostOf(raw: string): string | undefined {
  if (!raw || /[\s/?#@:\\]/.test(raw)) return undefined;
  let host: string;
  try {
    host = new URL(`http://${raw}/`).hostname;
  } catch {
    return undefined;
  }
  if (host.length > 253) return undefined;
  if (isIpLiteral(host)) return host;
  return host.split('.').every((l) => LABEL.test(l)) ? host : undefined;
}

function isIpLiteral(host: string): boolean {
  return host.startsWith('[') || /^\d+(\.\d+){3}$/.test(host);
}

function normaliseIp(value: string): { norm: string; key: string } | undefined {
  if (value.includes('/')) {
    try {
      const [addr, bits] = ipaddr.parseCIDR(value);
      if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(value.split('/')[0])) return undefined;
      const network = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(value) : ipaddr.IPv6.networkAddressFromCIDR(value);
      return { norm: `${network.toString()}/${bits}`, key: CIDR_KEY };
    } catch {
      return undefined;
    }
  }
  const ip = parseIp(value);
  return ip ? { norm: ip, key: ip } : undefined;
}

/** A single address in canonical form (IPv4-mapped IPv6 as IPv4), or undefined. */
export function parseIp(value: string): string | undefined {
  const v = value.trim().replace(/^\[(.*)\]$/, '$1');
  if (ipaddr.IPv4.isValidFourPartDecimal(v)) return ipaddr.IPv4.parse(v).toString();
  if (!v.includes(':') || !ipaddr.IPv6.isValid(v)) return undefined;
  return ipaddr.process(v).toString();
}

/** Whether the canonical address `ip` falls in the entry's `norm` (an address or a CIDR range). */
export function ipMatches(norm: string, ip: string): boolean {
  if (!norm.includes('/')) return norm === ip;
  try {
    const range = ipaddr.parseCIDR(norm);
    const addr = ipaddr.parse(ip);
    return addr.kind() === range[0].kind() && addr.match(range);
  } catch {
    return false;
  }
}

interface ParsedUrl {
  host: string;
  /** `host[:port]` + path (+ `?query`). */
  norm: string;
}

/** An entry's prefix: an http(s) URL, or the same without its scheme. */
function parsePrefix(value: string): ParsedUrl | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    if (!/^https?:\/\//i.test(value)) return undefined;
    return canonicalUrl(value);
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(value) && !/^[^/]+:\d+(\/|$)/.test(value)) return undefined; // mailto:, javascript: ...
  return canonicalUrl(`http://${value}`);
}

/** The comparable form of an http(s) URL (scheme and fragment dropped), or undefined. */
export function canonicalUrl(raw: string): ParsedUrl | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username || u.password) return undefined;
  const host = u.hostname.startsWith('[') ? u.hostname : hostOf(u.hostname.replace(/\.$/, ''));
  if (!host) return undefined;
  const port = u.port ? `:${u.port}` : '';
  return { host, norm: `${host}${port}${u.pathname}${u.search}` };
}

/**
 * Whether the URL `candidate` matches an entry (`norm` from `canonicalUrl`): the same host and
 * port, and a path starting with the entry's path (`exact`: the same path and query). A bare
 * host (`example.com`) matches every URL of that host.
 */
export function urlMatches(norm: string, exact: boolean, candidate: string): boolean {
  const c = canonicalUrl(candidate);
  if (!c) return false;
  if (exact) return c.norm === norm || c.norm === `${norm}/` || `${c.norm}/` === norm;
  const slash = norm.indexOf('/');
  const entryAuthority = slash < 0 ? norm : norm.slice(0, slash);
  const entryRest = slash < 0 ? '/' : norm.slice(slash);
  const cs = c.norm.indexOf('/');
  if (c.norm.slice(0, cs) !== entryAuthority) return false;
  return entryRest === '/' || c.norm.slice(cs).startsWith(entryRest);
}

/** The domain and every parent domain of a host (`a.b.c` → `a.b.c`, `b.c`, `c`). */
export function domainSuffixes(host: string): string[] {
  const labels = host.toLowerCase().replace(/\.$/, '').split('.');
  const out: string[] = [];
  for (let i = 0; i < labels.length; i++) out.push(labels.slice(i).join('.'));
  return out;
}

/** The address inside a From value (`"Name" <a@b.c>` → `a@b.c`), lower case. */
export function addressOf(from: string): string | undefined {
  const m = /<([^<>\s]+@[^<>\s]+)>/.exec(from) ?? /([^\s<>"',;]+@[^\s<>"',;]+)/.exec(from);
  return m ? m[1].toLowerCase() : undefined;
}
