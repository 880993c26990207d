/**
 * Egress guard: the one place that decides which addresses Verdict may connect to when it
 * fetches a submitted URL, follows `download_link`, calls an S3 endpoint or delivers a callback.
 *
 * Refused by default (each with a reason naming the range): loopback, RFC 1918 private,
 * link-local (incl. the cloud metadata address 169.254.169.254), carrier-grade NAT
 * (100.64.0.0/10), unspecified / "this network" (0.0.0.0/8, ::), multicast, broadcast,
 * documentation, benchmarking and reserved IPv4 ranges; IPv6 loopback, unique-local (fc00::/7),
 * link-local, site-local, multicast, Teredo, documentation and everything outside global
 * unicast (2000::/3). IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address they carry.
 *
 * Order of decision: an `egressDeny` entry always refuses; then an `egressAllow` entry accepts
 * (overriding the default refusals); then the default refusals; everything else is accepted.
 *
 * Host names are resolved once by `lookup` (all addresses); when ANY of them is refused the
 * connection fails with `EgressRefusedError`, and otherwise the socket connects to exactly the
 * addresses that were checked, so a DNS answer cannot change between check and connect
 * (no rebinding gap). Literal IP hosts never reach `lookup` (Node connects to them directly):
 * check them with `checkUrl()` or `check()` before connecting (`safeFetch` does both).
 *
 * @example
 * const guard = new EgressGuard({ allow: config.egressAllow, deny: config.egressDeny });
 * guard.check('10.1.2.3');        // { ok: false, reason: '10.1.2.3 is private (RFC 1918) 10.0.0.0/8' }
 * guard.checkUrl('ftp://x/');     // { ok: false, reason: 'scheme ftp: is not allowed (only http: and https:)' }
 * net.connect({ host: 'example.com', port: 80, lookup: guard.lookup });
 */
import dns from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

type Ip = ipaddr.IPv4 | ipaddr.IPv6;

export type EgressCheck = { ok: true } | { ok: false; reason: string };

/** A resolver returning every address of a host name (injectable for tests). */
export type Resolver = (hostname: string, family: 0 | 4 | 6) => Promise<{ address: string; family: number }[]>;

export interface EgressGuardOptions {
  /** CIDR ranges (or single addresses) accepted despite the default refusals. */
  allow?: string[];
  /** CIDR ranges (or single addresses) always refused. */
  deny?: string[];
  /** Defaults to `dns.lookup` with `all: true` (the system resolver, /etc/hosts included). */
  resolve?: Resolver;
}

/** A connection target was refused by the egress policy. Stable code: `EGRESS_REFUSED`. */
export class EgressRefusedError extends Error {
  override name = 'EgressRefusedError';
  readonly code = 'EGRESS_REFUSED';
  constructor(
    /** The host name or literal address that was asked for. */
    readonly host: string,
    /** The refused address (absent when the URL itself was refused, e.g. its scheme). */
    readonly address: string | undefined,
    readonly reason: string,
  ) {
    super(`egress refused: ${host}${address && address !== host ? ` → ${address}` : ''}: ${reason}`);
  }
}

/** An `egressAllow` / `egressDeny` entry is not a valid CIDR range. Stable code: `EGRESS_CONFIG`. */
export class EgressConfigError extends Error {
  override name = 'EgressConfigError';
  readonly code = 'EGRESS_CONFIG';
}

interface Range {
  ip: Ip;
  bits: number;
  text: string;
  label: string;
}

function range(cidr: string, label = ''): Range {
  const [ip, bits] = ipaddr.parseCIDR(cidr);
  return { ip, bits, text: cidr, label };
}

function inRange(ip: Ip, r: Range): boolean {
  return ip.kind() === r.ip.kind() && ip.match(r.ip, r.bits);
}

// Order matters where ranges nest: the first match names the reason.
const DEFAULT_REFUSED_V4: Range[] = [
  range('0.0.0.0/8', 'unspecified ("this network")'),
  range('10.0.0.0/8', 'private (RFC 1918)'),
  range('100.64.0.0/10', 'carrier-grade NAT (RFC 6598)'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local (incl. cloud metadata 169.254.169.254)'),
  range('172.16.0.0/12', 'private (RFC 1918)'),
  range('192.0.0.0/24', 'reserved (IETF protocol assignments)'),
  range('192.0.2.0/24', 'reserved (documentation)'),
  range('192.88.99.0/24', 'reserved (6to4 relay anycast)'),
  range('192.168.0.0/16', 'private (RFC 1918)'),
  range('198.18.0.0/15', 'reserved (benchmarking)'),
  range('198.51.100.0/24', 'reserved (documentation)'),
  range('203.0.113.0/24', 'reserved (documentation)'),
  range('224.0.0.0/4', 'multicast'),
  range('255.255.255.255/32', 'broadcast'),
  range('240.0.0.0/4', 'reserved (240.0.0.0/4)'),
];

const DEFAULT_REFUSED_V6: Range[] = [
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('::/96', 'reserved (IPv4-compatible, deprecated)'),
  range('::ffff:0:0:0/96', 'reserved (IPv4-translated)'),
  range('64:ff9b:1::/48', 'reserved (local-use NAT64)'),
  range('100::/64', 'reserved (discard-only)'),
  range('2001::/32', 'Teredo tunnel'),
  range('2001:2::/48', 'reserved (benchmarking)'),
  range('2001:10::/28', 'reserved (ORCHID)'),
  range('2001:20::/28', 'reserved (ORCHIDv2)'),
  range('2001:db8::/32', 'reserved (documentation)'),
  range('3fff::/20', 'reserved (documentation)'),
  range('fc00::/7', 'unique-local'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local (deprecated)'),
  range('ff00::/8', 'multicast'),
];
const GLOBAL_UNICAST_V6 = range('2000::/3');

const MAPPED = range('::ffff:0:0/96');
const NAT64 = range('64:ff9b::/96');
const SIXTOFOUR = range('2002::/16');

/** The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), with the form's name. */
function embeddedV4(ip: Ip): { v4: ipaddr.IPv4; form: string } | undefined {
  if (ip.kind() !== 'ipv6') return undefined;
  const v6 = ip as ipaddr.IPv6;
  const p = v6.parts;
  const tail = () => new ipaddr.IPv4([p[6] >> 8, p[6] & 0xff, p[7] >> 8, p[7] & 0xff]);
  if (inRange(v6, MAPPED)) return { v4: tail(), form: 'IPv4-mapped' };
  if (inRange(v6, NAT64)) return { v4: tail(), form: 'NAT64' };
  if (inRange(v6, SIXTOFOUR)) return { v4: new ipaddr.IPv4([p[1] >> 8, p[1] & 0xff, p[2] >> 8, p[2] & 0xff]), form: '6to4' };
  return undefined;
}

function defaultRefusal(ip: Ip): Range | undefined {
  if (ip.kind() === 'ipv4') return DEFAULT_REFUSED_V4.find((r) => inRange(ip, r));
  const hit = DEFAULT_REFUSED_V6.find((r) => inRange(ip, r));
  if (hit) return hit;
  if (!inRange(ip, GLOBAL_UNICAST_V6)) return { ...GLOBAL_UNICAST_V6, label: 'reserved (outside global unicast 2000::/3)' };
  return undefined;
}

/** Strictly parses a list entry: `a.b.c.d/n`, `x::y/n`, or a single address. */
function parseEntry(entry: string, list: 'egressAllow' | 'egressDeny'): Range {
  const text = entry.trim();
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = net.isIP(addr);
  const max = family === 4 ? 32 : 128;
  const bitsText = slash < 0 ? String(max) : text.slice(slash + 1);
  const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (family === 0 || addr.includes('%') || !(bits >= 0 && bits <= max)) {
    throw new EgressConfigError(
      `${list} entry "${entry}" is not a valid CIDR range (expected e.g. 10.0.0.0/8, 127.0.0.1 or fd00::/8)`,
    );
  }
  let ip: Ip = parseValid(addr);
  let b = bits;
  // ::ffff:a.b.c.d/n (n >= 96) means an IPv4 range: store it as one so it matches both forms.
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    ip = (ip as ipaddr.IPv6).toIPv4Address();
    b = bits - 96;
  }
  return { ip, bits: b, text, label: list };
}

function parseIp(text: string): Ip | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (net.isIP(bare) === 0) return undefined;
  try {
    return parseValid(bare);
  } catch {
    return undefined;
  }
}

/**
 * Parses an address `net.isIP` accepted. An IPv6 text with a dotted IPv4 tail is rewritten to
 * hex groups first: ipaddr.js reads `::a.b.c.d` as IPv4-mapped, which it is not.
 */
function parseValid(addr: string): Ip {
  const m = net.isIPv6(addr) ? /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)(%.*)?$/.exec(addr) : null;
  if (!m) return ipaddr.parse(addr);
  const [, head, a, b, c, d, zone = ''] = m;
  const hex = (x: string, y: string) => ((Number(x) << 8) | Number(y)).toString(16);
  return ipaddr.parse(`${head}${hex(a, b)}:${hex(c, d)}${zone}`);
}

const ALLOWED_SCHEMES = new Set(['http:', 'https:']);

export class EgressGuard {
  private readonly allow: Range[];
  private readonly deny: Range[];
  private readonly resolve: Resolver;

  constructor(opts: EgressGuardOptions = {}) {
    this.allow = (opts.allow ?? []).map((e) => parseEntry(e, 'egressAllow'));
    this.deny = (opts.deny ?? []).map((e) => parseEntry(e, 'egressDeny'));
    this.resolve = opts.resolve ?? defaultResolver;
  }

  /** Decides whether one literal IP address (v4 or v6, as `dns.lookup` returns it) may be reached. */
  check(address: string): EgressCheck {
    const ip = parseIp(address);
    if (!ip) return { ok: false, reason: `${address} is not an IP address` };
    const shown = ip.toString();
    const inner = embeddedV4(ip);
    const forms: Ip[] = inner ? [ip, inner.v4] : [ip];
    for (const f of forms) {
      const d = this.deny.find((r) => inRange(f, r));
      if (d) return { ok: false, reason: `${shown} is denied by egressDeny ${d.text}` };
    }
    for (const f of forms) if (this.allow.some((r) => inRange(f, r))) return { ok: true };
    if (inner) {
      const r = defaultRefusal(inner.v4);
      if (r) return { ok: false, reason: `${shown} is ${inner.form} ${inner.v4.toString()}, ${r.label} ${r.text}` };
      return { ok: true };
    }
    const r = defaultRefusal(ip);
    if (r) return { ok: false, reason: `${shown} is ${r.label} ${r.text}` };
    return { ok: true };
  }

  /**
   * Checks what can be checked before connecting: the scheme (http: and https: only) and a
   * literal IP host. A host name is accepted here; `lookup` judges its addresses.
   */
  checkUrl(url: string | URL): EgressCheck {
    let u: URL;
    try {
      u = typeof url === 'string' ? new URL(url) : url;
    } catch {
      return { ok: false, reason: 'not a valid URL' };
    }
    if (!ALLOWED_SCHEMES.has(u.protocol)) return { ok: false, reason: `scheme ${u.protocol} is not allowed (only http: and https:)` };
    if (!u.hostname) return { ok: false, reason: 'the URL has no host' };
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    return net.isIP(host) ? this.check(host) : { ok: true };
  }

  /** `checkUrl` that throws `EgressRefusedError`. */
  assertUrl(url: string | URL): void {
    const r = this.checkUrl(url);
    if (!r.ok) {
      let host = String(url);
      let address: string | undefined;
      try {
        const u = typeof url === 'string' ? new URL(url) : url;
        host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname || u.href;
        if (net.isIP(host)) address = host;
      } catch {
        // keep the raw text
      }
      throw new EgressRefusedError(host, address, r.reason);
    }
  }

  /**
   * Resolves a host name to every address and checks each one. Resolves to the checked
   * addresses; rejects with `EgressRefusedError` when any is refused.
   */
  async resolveChecked(hostname: string, family: 0 | 4 | 6 = 0): Promise<{ address: string; family: number }[]> {
    if (net.isIP(hostname)) {
      const r = this.check(hostname);
      if (!r.ok) throw new EgressRefusedError(hostname, hostname, r.reason);
      return [{ address: hostname, family: net.isIP(hostname) }];
    }
    const addresses = await this.resolve(hostname, family);
    if (addresses.length === 0) {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
    }
    for (const a of addresses) {
      const r = this.check(a.address);
      if (!r.ok) throw new EgressRefusedError(hostname, a.address, r.reason);
    }
    return addresses;
  }

  /**
   * A `lookup` for `net.connect`, `tls.connect`, `http.Agent` or undici's `connect` option.
   * Bound to the guard, so it can be passed around as is.
   */
  readonly lookup: net.LookupFunction = (hostname, options, callback) => {
    // Node always passes an options object, but tolerate the (hostname, callback) shape too.
    const opts: dns.LookupOptions = typeof options === 'object' && options !== null ? options : {};
    const cb = (typeof options === 'function' ? options : callback) as Parameters<net.LookupFunction>[2];
    const fam = opts.family === 'IPv4' ? 4 : opts.family === 'IPv6' ? 6 : ((opts.family ?? 0) as 0 | 4 | 6);
    this.resolveChecked(hostname, fam).then(
      (addresses) => {
        if (opts.all) cb(null, addresses);
        else cb(null, addresses[0].address, addresses[0].family);
      },
      (err: NodeJS.ErrnoException) => cb(err, opts.all ? [] : '', undefined),
    );
  };
}

const defaultResolver: Resolver = async (hostname, family) => {
  const res = await dns.promises.lookup(hostname, { all: true, family, verbatim: true });
  return res.map((a) => ({ address: a.address, family: a.family }));
};
