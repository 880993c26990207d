/**
 * Email (.eml, RFC 5322 / MIME), parsed as a stream by mailparser so that attachments never sit
 * in memory whole (they spool to `ctx.tmpDir` like archive members). The analysis of headers
 * and bodies is shared with the Outlook .msg scanner (`analyseMessage`, `emitBodyChildren`).
 *
 * Attributes: `email` (the shape below; the store fills the X-Ray email columns from it) and
 * `emailParts` (attachments, links handed out, distinct links seen, children emitted).
 *
 * - `received` lists the Received hops newest first, as they stand in the message.
 * - `sourceIp`, the sender's IP: walking the Received hops from the top (the hop our own
 *   servers wrote last), hops whose `from` address is internal (private, loopback, link-local,
 *   CGNAT, unique-local) are our relays and are trusted; the first hop with an external
 *   address names the host that handed the message to them. Hops below it were written by
 *   servers we do not control and may be forged, so they are never used. When every hop is
 *   internal, the bottom-most address (an internal client) is the source.
 * - `auth`: spf/dkim/dmarc results of the Authentication-Results headers (the first result of
 *   each method, top-down; Received-SPF when no spf result is there).
 *
 * Children: every attachment and inline part (`attachment`; its file name, or
 * `attachment-N.<ext>`), uuencoded (`begin 644 name`) and base64 blocks in text parts that
 * decode to a recognisable file (`attachment`), the HTML body (`body.html`, a doctype put in
 * front of a fragment so that it is detected as HTML) and the plain text
 * body (`body.txt`) (`embedded_object`, so the HTML, script and signature scanners read them
 * decoded), and the body's links (`link`; HTML hrefs and plain-text URLs, http(s), deduplicated,
 * at most MAX_EMAIL_LINKS: more is NOT_FULLY_SCANNED). Links are handed out the way pages and
 * PDFs hand theirs: judged by the URL heuristics, fetched only when `fetchEmbeddedLinks` is on.
 *
 * Findings: EMAIL_* (spoofing, authentication, dangerous attachments) and SPAM_* (scored apart,
 * see src/verdict/spam.ts). A file that starts with an mbox `From ` line and holds several
 * messages is left to the mbox scanner; one message behind such a line is parsed here.
 *
 * @example
 * const r = await runScanner(emailScanner, emlBytes);
 * r.attributes.email.sourceIp // '203.0.113.5'
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { domainToASCII, domainToUnicode } from 'node:url';
import ipaddr from 'ipaddr.js';
import { MailParser, type AddressObject, type AttachmentStream, type EmailAddress, type MessageText } from 'mailparser';
import { parse as parseDomain } from 'tldts';
import { ArchiveSession, baseName, errorMessage, isExtractionStop } from './archive-common.ts';
import { DETECT_HEAD_BYTES, detectType, isExecutableName } from './file-type.ts';
import { BRANDS, decodeEntities, mayFollowLinks, tokenize } from './html.ts';
import { countMboxMessages, isFromLine, mboxParts } from './mbox.ts';
import { ChildSink } from './ole.ts';
import type { Finding, SampleInfo, ScanContext, Scanner } from './types.ts';

/** Most bytes of one message parsed; the rest is reported as not scanned. */
export const EMAIL_MAX_BYTES = 256 * 1024 * 1024;
/** Most body links handed out as children. */
export const MAX_EMAIL_LINKS = 50;
/** Most characters of body text analysed for links, phrasing and embedded blocks. */
const MAX_TEXT = 1024 * 1024;
const MAX_RECEIVED = 50;
const MAX_BLOCKS = 20;

// ---------------------------------------------------------------------------------------------
// Shapes

export interface ReceivedHop {
  from?: string;
  by?: string;
  ip?: string;
  date?: string;
}

export interface AuthResults {
  spf?: string;
  dkim?: string;
  dmarc?: string;
}

/** `attributes.email`: keep the shape, the store reads it. */
export interface EmailAttributes {
  from: string | null;
  fromName: string | null;
  to: string[];
  cc: string[];
  subject: string | null;
  messageId: string | null;
  senderDomain: string | null;
  sourceIp: string | null;
  replyTo: string | null;
  returnPath: string | null;
  receiverDomain: string | null;
  date: string | null;
  received: ReceivedHop[];
  auth: AuthResults;
}

/** A raw header field: `key` lower case, `line` the field as written (folded). */
export interface HeaderLine {
  key: string;
  line: string;
}

/** What the analysis needs of a message, whatever format it came in. */
export interface MessageFacts {
  headers: HeaderLine[];
  from: { address: string; name: string } | null;
  to: string[];
  cc: string[];
  replyTo: string | null;
  subject: string | null;
  messageId: string | null;
  date: Date | null;
  text: string;
  html: string | null;
  /** An RTF body (Outlook), handed out as `body.rtf`. */
  rtf?: Buffer;
  /** No real header block (an Outlook message that never went through a server). */
  headersUnknown?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Headers

/** The value of a header line, unfolded, without its name. */
export function headerValue(line: string): string {
  const colon = line.indexOf(':');
  return line.slice(colon + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
}

export function headerValues(headers: HeaderLine[], key: string): string[] {
  return headers.filter((h) => h.key === key).map((h) => headerValue(h.line));
}

/** Splits a header block (an Outlook message's transport headers) into fields. */
export function splitHeaderBlock(text: string): HeaderLine[] {
  const out: HeaderLine[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (raw === '') {
      if (out.length) break;
      continue;
    }
    if (/^[ \t]/.test(raw) && out.length) {
      out[out.length - 1].line += `\r\n${raw}`;
      continue;
    }
    const m = /^([!-9;-~]+)[ \t]*:/.exec(raw);
    if (m) out.push({ key: m[1].toLowerCase(), line: raw });
  }
  return out;
}

/** Lower-case ASCII (punycode) form of a domain; '' when it is not one. */
export function asciiDomain(domain: string): string {
  const d = domain.trim().replace(/\.$/, '').toLowerCase();
  if (!d) return '';
  return domainToASCII(d) || d;
}

export function domainOf(address: string | null | undefined): string | null {
  if (!address) return null;
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  return asciiDomain(address.slice(at + 1).replace(/[>\s]+$/, '')) || null;
}

/** The registrable domain (public-suffix aware), or the host itself when it has none. */
export function registrable(domain: string): string {
  const d = asciiDomain(domain);
  return parseDomain(d).domain ?? d;
}

/** Mailboxes of an address header (groups flattened). */
export function mailboxes(value: AddressObject | AddressObject[] | undefined): EmailAddress[] {
  const out: EmailAddress[] = [];
  const walk = (list: EmailAddress[]) => {
    for (const a of list) {
      if (a.group) walk(a.group);
      else if (a.address) out.push(a);
    }
  };
  for (const obj of [value ?? []].flat()) walk(obj.value);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Received chain and sender IP

const INTERNAL_RANGES = new Set(['private', 'loopback', 'linkLocal', 'carrierGradeNat', 'uniqueLocal', 'unspecified']);

export function isInternalIp(ip: string): boolean {
  try {
    return INTERNAL_RANGES.has(ipaddr.process(ip).range());
  } catch {
    return false;
  }
}

function normaliseIp(raw: string): string | undefined {
  const v = raw.replace(/^ipv6:/i, '');
  if (!ipaddr.isValid(v)) return undefined;
  // Dotted quads only for IPv4: ipaddr.js also takes "1" or "0x7f.1", which Received never means.
  if (!v.includes(':') && !/^\d{1,3}(\.\d{1,3}){3}$/.test(v)) return undefined;
  return ipaddr.process(v).toString();
}

/** One Received header: who handed it over (`from`, `ip`), who took it (`by`) and when. */
export function parseReceived(value: string): ReceivedHop {
  const hop: ReceivedHop = {};
  const semi = value.lastIndexOf(';');
  const body = semi >= 0 ? value.slice(0, semi) : value;
  if (semi >= 0) {
    const t = Date.parse(value.slice(semi + 1).trim());
    if (!Number.isNaN(t)) hop.date = new Date(t).toISOString();
  }
  const fromAt = body.search(/(^|\s)from\s/i);
  const byAt = body.search(/(^|\s|\))by\s/i);
  if (fromAt >= 0) {
    const fromPart = body.slice(fromAt, byAt > fromAt ? byAt : undefined);
    const name = /from\s+([^\s();]+)/i.exec(fromPart);
    if (name) hop.from = name[1].slice(0, 255);
    // The address the receiving server saw stands in parentheses (Postfix, Sendmail, Exim,
    // Exchange: `from helo (rdns [ip])`); outside them it may be the sender's own HELO claim.
    const inParens = [...fromPart.matchAll(/\(([^()]*)\)/g)].map((m) => m[1]).join(' ');
    const ipsIn = (t: string) => [
      ...[...t.matchAll(/\[((?:ipv6:)?[0-9a-f:.]+)\]/gi)].map((m) => m[1]),
      ...[...t.matchAll(/(?<![\w.:])((?:\d{1,3}\.){3}\d{1,3})(?![\w.])/g)].map((m) => m[1]),
      ...[...t.matchAll(/(?<![\w:])((?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4})(?![\w:])/gi)].map((m) => m[1]),
    ];
    for (const c of [...ipsIn(inParens), ...ipsIn(fromPart)]) {
      const ip = normaliseIp(c);
      if (ip) {
        hop.ip = ip;
        break;
      }
    }
  }
  if (byAt >= 0) {
    const by = /by\s+([^\s()[\];]+)/i.exec(body.slice(byAt));
    if (by) hop.by = by[1].slice(0, 255);
  }
  return hop;
}

/** The sender's IP by the rule in the file comment: the first external hop from the top. */
export function senderIp(hops: ReceivedHop[]): string | null {
  let lastInternal: string | null = null;
  for (const h of hops) {
    if (!h.ip) continue;
    if (!isInternalIp(h.ip)) return h.ip;
    lastInternal = h.ip;
  }
  return lastInternal;
}

export function parseAuthResults(headers: HeaderLine[]): AuthResults {
  const out: AuthResults = {};
  for (const v of headerValues(headers, 'authentication-results')) {
    const clean = v.replace(/\([^()]*\)/g, ' ');
    for (const m of clean.matchAll(/(?:^|[\s;])(spf|dkim|dmarc)\s*=\s*([a-z]+)/gi)) {
      const method = m[1].toLowerCase() as keyof AuthResults;
      out[method] ??= m[2].toLowerCase();
    }
  }
  if (!out.spf) {
    const r = /^\s*([a-z]+)/i.exec(headerValues(headers, 'received-spf')[0] ?? '');
    if (r) out.spf = r[1].toLowerCase();
  }
  return out;
}

function angleAddress(value: string | undefined): string | null {
  if (value === undefined) return null;
  const m = /<([^<>]*)>/.exec(value);
  const a = (m ? m[1] : value).trim();
  return a.includes('@') ? a.slice(0, 320) : null;
}

export function emailAttributes(f: MessageFacts): EmailAttributes {
  const received = headerValues(f.headers, 'received').slice(0, MAX_RECEIVED).map(parseReceived);
  const senderDomain = domainOf(f.from?.address);
  return {
    from: f.from?.address ?? null,
    fromName: f.from?.name || null,
    to: f.to,
    cc: f.cc,
    subject: f.subject,
    messageId: f.messageId,
    senderDomain,
    sourceIp: senderIp(received),
    replyTo: f.replyTo,
    returnPath: angleAddress(headerValues(f.headers, 'return-path')[0]),
    receiverDomain: domainOf(f.to[0]),
    date: f.date && !Number.isNaN(f.date.getTime()) ? f.date.toISOString() : null,
    received,
    auth: parseAuthResults(f.headers),
  };
}

// ---------------------------------------------------------------------------------------------
// Brands: ownership and look-alikes

type Brand = (typeof BRANDS)[number];

/** Domains the brands really send from that html.ts's list (made for login pages) lacks. */
const MORE_BRAND_DOMAINS: Record<string, string[]> = {
  Google: ['googlemail.com', 'googleapis.com', 'googlegroups.com', 'google.co.uk'],
  Facebook: ['facebookmail.com'],
  PayPal: ['paypal-communication.com', 'paypal-notice.com'],
  Amazon: ['amazonses.com', 'amazon.ca', 'amazon.it', 'amazon.es'],
  Dropbox: ['dropboxmail.com'],
  Microsoft: ['microsoftstore.com', 'microsoft365.com', 'xbox.com', 'github.com'],
  Apple: ['me.com', 'mac.com'],
  LinkedIn: ['linkedin.cn'],
};

/** Brand labels too common as words to judge look-alikes by. */
const GENERIC_LABELS = new Set(['office', 'outlook', 'windows', 'live', 'bing', 'msn', 'skype', 'azure', 'chase', 'citi', 'meta', 'fb', 'ups', 'aws', 'apple', 'steam']);

interface BrandDomain {
  brand: Brand;
  domain: string;
  /** The domain without its public suffix (`paypal`), and how it looks (`skeleton`). */
  label: string;
  shape: string;
}

/** Every brand domain, prepared once: look-alike checks compare each sender with all of them. */
let brandDomainList: BrandDomain[] | undefined;
function brandDomains(): BrandDomain[] {
  brandDomainList ??= BRANDS.flatMap((brand) =>
    [...brand.domains, ...(MORE_BRAND_DOMAINS[brand.brand] ?? [])].map((domain) => {
      const label = parseDomain(domain).domainWithoutSuffix ?? domain;
      return { brand, domain, label, shape: skeleton(label) };
    }),
  );
  return brandDomainList;
}

/** Whether a registrable domain belongs to the brand. */
export function brandOwns(b: Brand, site: string): boolean {
  return ownersOf(site).includes(b);
}

/** The brands a registrable domain belongs to (its domains, their subdomains, ccTLD twins). */
function ownersOf(site: string): Brand[] {
  const p = parseDomain(site);
  const suffix = p.publicSuffix ?? '';
  const ccTld = /^[a-z]{2}$/.test(suffix) || /^(co|com)\.[a-z]{2}$/.test(suffix);
  const owners: Brand[] = [];
  for (const d of brandDomains()) {
    if (owners.includes(d.brand)) continue;
    if (site === d.domain || site.endsWith(`.${d.domain}`) || (ccTld && d.label === p.domainWithoutSuffix)) owners.push(d.brand);
  }
  return owners;
}

export function ownerOf(site: string): Brand | undefined {
  return ownersOf(site)[0];
}

// Characters that render like Latin letters (Cyrillic, Greek) and digits typed for letters.
const CONFUSABLES: Record<string, string> = {
  а: 'a', е: 'e', о: 'o', р: 'p', с: 'c', у: 'y', х: 'x', і: 'i', ј: 'j', ԁ: 'd', һ: 'h', ѕ: 's', ӏ: 'l', ԛ: 'q', ԝ: 'w', ɡ: 'g',
  ο: 'o', α: 'a', ν: 'v', ι: 'i', κ: 'k', ρ: 'p', τ: 't', υ: 'u', χ: 'x',
  '0': 'o', '1': 'l', '3': 'e', '5': 's', '!': 'l', '|': 'l',
};

/** What a label looks like to a reader: confusables folded, `rn`→`m`, `vv`→`w`, `i`→`l`. */
export function skeleton(label: string): string {
  const s = [...domainToUnicode(label).normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase()].map((c) => CONFUSABLES[c] ?? c).join('');
  return s.replace(/rn/g, 'm').replace(/vv/g, 'w').replace(/i/g, 'l');
}

/** Whether two different strings are one typing error apart: a substitution, an insertion or deletion, or two neighbours swapped. */
function oneEditApart(a: string, b: string): boolean {
  if (a === b || Math.abs(a.length - b.length) > 1) return false;
  if (a.length === b.length) {
    const diff: number[] = [];
    for (let i = 0; i < a.length && diff.length <= 2; i++) if (a[i] !== b[i]) diff.push(i);
    if (diff.length === 1) return true;
    return diff.length === 2 && diff[1] === diff[0] + 1 && a[diff[0]] === b[diff[1]] && a[diff[1]] === b[diff[0]];
  }
  const [long, short] = a.length > b.length ? [a, b] : [b, a];
  let i = 0;
  while (i < short.length && long[i] === short[i]) i++;
  return long.slice(i + 1) === short.slice(i);
}

export interface Lookalike {
  brand: string;
  imitates: string;
  reason: 'homoglyph' | 'typo' | 'brand_name';
}

/** Whether a sender domain imitates a brand's domain without belonging to any brand. */
export function lookalikeOf(domain: string): Lookalike | undefined {
  const site = registrable(domain);
  const p = parseDomain(site);
  const label = p.domainWithoutSuffix;
  if (!label || p.isIp || ownerOf(site)) return undefined;
  const shape = skeleton(label);
  const ascii = /^[a-z0-9-]+$/.test(label) && !label.startsWith('xn--');
  const tokens: string[] = label.split(/[-\d]+/);
  const words: string[] = label.split('-');
  const wordShapes = words.map(skeleton);
  for (const { brand, domain, label: brandLabel, shape: brandShape } of brandDomains()) {
    if (brandLabel.length < 4) continue;
    let reason: Lookalike['reason'] | undefined;
    if ((shape === brandShape && label !== brandLabel) || (wordShapes.includes(brandShape) && !words.includes(brandLabel))) reason = 'homoglyph';
    else if (GENERIC_LABELS.has(brandLabel) || brandLabel.length < 6) continue;
    else if (ascii && label.length >= 6 && oneEditApart(label, brandLabel)) reason = 'typo';
    // The brand's own name under another suffix, or with words around it.
    else if (label === brandLabel || tokens.includes(brandLabel) || label.startsWith(brandLabel) || label.endsWith(brandLabel)) reason = 'brand_name';
    if (reason) return { brand: brand.brand, imitates: domain, reason };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Spoofing and authentication findings

const ADDRESS_IN_TEXT = /[^\s<>"'@()]+@((?:[a-z0-9-]+\.)+[a-z]{2,})/gi;
const DOMAIN_IN_TEXT = /(?<![@\w.-])((?:[a-z0-9-]+\.)+[a-z]{2,})(?![\w.-]*@)/gi;

/** Two registrable domains of one owner: equal, or both a brand's (amazon.com and amazon.de). */
function sameOwner(a: string, b: string): boolean {
  if (a === b) return true;
  const owner = ownerOf(a);
  return owner !== undefined && brandOwns(owner, b);
}

function displayNameFinding(fullName: string, site: string): Finding | undefined {
  const name = fullName.slice(0, 500);
  if (!name) return undefined;
  for (const m of name.matchAll(ADDRESS_IN_TEXT)) {
    if (!sameOwner(registrable(m[1]), site)) return { heuristic: 'EMAIL_DISPLAY_NAME_SPOOF', details: `display name "${name.slice(0, 100)}" shows the address ${m[0]}, sent from ${site}`, data: { reason: 'address', claimed: m[0].slice(0, 320), senderDomain: site } };
  }
  for (const m of name.replace(ADDRESS_IN_TEXT, ' ').matchAll(DOMAIN_IN_TEXT)) {
    const p = parseDomain(m[1]);
    if (p.isIcann && p.domain && !sameOwner(p.domain, site)) return { heuristic: 'EMAIL_DISPLAY_NAME_SPOOF', details: `display name "${name.slice(0, 100)}" shows the domain ${p.domain}, sent from ${site}`, data: { reason: 'domain', claimed: p.domain, senderDomain: site } };
  }
  const brand = BRANDS.find((b) => b.pattern.test(name));
  if (brand && !brandOwns(brand, site)) {
    return { heuristic: 'EMAIL_DISPLAY_NAME_SPOOF', details: `display name "${name.slice(0, 100)}" shows ${brand.brand}, sent from ${site}`, data: { reason: 'brand', claimed: brand.brand, senderDomain: site } };
  }
  return undefined;
}

function spoofingFindings(f: MessageFacts, a: EmailAttributes): Finding[] {
  const out: Finding[] = [];
  const site = a.senderDomain ? registrable(a.senderDomain) : undefined;
  if (site) {
    const spoof = displayNameFinding(f.from?.name ?? '', site);
    if (spoof) out.push(spoof);
    const look = lookalikeOf(site);
    if (look) {
      out.push({
        heuristic: 'EMAIL_LOOKALIKE_DOMAIN',
        details: `sender domain ${site} imitates ${look.imitates} (${look.brand}, ${look.reason.replace('_', ' ')})`,
        data: { senderDomain: site, brand: look.brand, imitates: look.imitates, reason: look.reason },
        ...(look.reason === 'brand_name' ? { score: 150 } : {}),
      });
    }
    const isList = f.headers.some((h) => h.key === 'list-id' || h.key === 'list-post');
    const replySite = domainOf(a.replyTo);
    if (replySite && registrable(replySite) !== site && !isList) {
      out.push({ heuristic: 'EMAIL_REPLY_TO_MISMATCH', details: `replies go to ${a.replyTo}, sent from ${site}`, data: { replyTo: a.replyTo, senderDomain: site } });
    }
    const bounceSite = domainOf(a.returnPath);
    if (bounceSite && registrable(bounceSite) !== site) {
      out.push({ heuristic: 'EMAIL_RETURN_PATH_MISMATCH', details: `envelope sender ${a.returnPath}, From domain ${site}`, data: { returnPath: a.returnPath, senderDomain: site } });
    }
  }
  const { spf, dkim, dmarc } = a.auth;
  if (spf === 'fail' || spf === 'softfail') out.push({ heuristic: 'EMAIL_SPF_FAIL', details: `spf=${spf}`, data: { result: spf }, ...(spf === 'softfail' ? { score: 30 } : {}) });
  if (dkim === 'fail') out.push({ heuristic: 'EMAIL_DKIM_FAIL', details: 'dkim=fail', data: { result: dkim } });
  if (dmarc === 'fail') out.push({ heuristic: 'EMAIL_DMARC_FAIL', details: 'dmarc=fail', data: { result: dmarc } });
  return out;
}

/**
 * Attachment-name findings of a session: its double-extension flags become the e-mail ones,
 * and executables by name are counted.
 */
export function attachmentFindings(evidence: Finding[], names: string[]): Finding[] {
  const out = evidence.map((e) => (e.heuristic === 'ARCHIVE_DOUBLE_EXTENSION' ? { ...e, heuristic: 'EMAIL_ATTACHMENT_DOUBLE_EXTENSION' as const } : e));
  const executables = names.filter((n) => isExecutableName(baseName(n)));
  if (executables.length) {
    out.push({ heuristic: 'EMAIL_EXECUTABLE_ATTACHMENT', details: `${executables.length} attachment${executables.length === 1 ? '' : 's'}: ${executables.slice(0, 5).join(', ')}`, data: { names: executables.slice(0, 50), count: executables.length } });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Body: visible text, links, embedded blocks

interface Body {
  /** What a reader sees: the HTML's text, or the plain text. */
  visible: string;
  words: number;
  links: string[];
  /** Distinct links before the MAX_EMAIL_LINKS cut. */
  totalLinks: number;
  images: number;
}

function httpLink(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let v = raw.trim();
  if (/^www\./i.test(v)) v = `http://${v}`;
  if (!/^https?:\/\//i.test(v)) return undefined;
  try {
    const u = new URL(v);
    u.hash = '';
    return u.href;
  } catch {
    return undefined;
  }
}

const TEXT_URL = /\b(?:https?:\/\/|www\.)[^\s<>"'`{}|\\^]+/gi;

export function analyseBody(text: string, html: string | null): Body {
  const seen = new Set<string>();
  const add = (raw: string | undefined) => {
    const u = httpLink(raw);
    if (u) seen.add(u);
  };
  let visible = text.slice(0, MAX_TEXT);
  let images = 0;
  if (html) {
    const parsed = tokenize(html.slice(0, 16 * MAX_TEXT));
    for (const t of parsed.tags) {
      if (t.name === 'a' || t.name === 'area') add(t.attrs.get('href'));
      else if (t.name === 'form') add(t.attrs.get('action'));
      else if (t.name === 'img') images++;
    }
    visible = parsed.text || visible;
  }
  for (const m of text.slice(0, MAX_TEXT).matchAll(TEXT_URL)) add(m[0].replace(/[.,;:!?)\]]+$/, ''));
  const all = [...seen];
  const words = visible.match(/\p{L}[\p{L}\p{N}'’-]*/gu)?.length ?? 0;
  return { visible, words, links: all.slice(0, MAX_EMAIL_LINKS), totalLinks: all.length, images };
}

export interface EmbeddedBlock {
  name: string;
  data: Buffer;
  encoding: 'uuencode' | 'base64';
}

function uudecodeLine(line: string): Buffer {
  const n = (line.charCodeAt(0) - 32) & 63;
  const out = Buffer.alloc(Math.ceil(n / 3) * 3);
  let o = 0;
  for (let i = 1; i < line.length && o < n; i += 4) {
    const c = [0, 1, 2, 3].map((k) => ((line.charCodeAt(i + k) || 32) - 32) & 63);
    out[o++] = (c[0] << 2) | (c[1] >> 4);
    out[o++] = ((c[1] & 15) << 4) | (c[2] >> 2);
    out[o++] = ((c[2] & 3) << 6) | c[3];
  }
  return out.subarray(0, n);
}

/**
 * Files hidden in body text: uuencoded blocks (`begin 644 name` … `end`) and runs of base64
 * lines that decode to a recognisable file type (plain text and unknown bytes are ignored).
 */
export function embeddedBlocks(text: string): EmbeddedBlock[] {
  const out: EmbeddedBlock[] = [];
  const lines = text.slice(0, 16 * MAX_TEXT).split(/\r?\n/);
  let b64: string[] = [];
  const flushB64 = () => {
    if (b64.join('').length >= 64 && out.length < MAX_BLOCKS) {
      const data = Buffer.from(b64.join(''), 'base64');
      const t = detectType(data.subarray(0, DETECT_HEAD_BYTES));
      if (!['text', 'unknown', 'empty'].includes(t.type)) out.push({ name: `text-block-${out.length + 1}.${t.extensions.find(Boolean) ?? 'bin'}`, data, encoding: 'base64' });
    }
    b64 = [];
  };
  for (let i = 0; i < lines.length && out.length < MAX_BLOCKS; i++) {
    const line = lines[i];
    const begin = /^begin [0-7]{3,4} (.+)$/.exec(line);
    if (begin) {
      flushB64();
      const parts: Buffer[] = [];
      let j = i + 1;
      // Up to `end`, or to the first line that cannot be uuencoded data (a stray "begin 644").
      for (; j < lines.length && lines[j] !== 'end' && /^[\x20-\x60]{0,62}$/.test(lines[j]); j++) {
        const l = lines[j];
        if (l === '' || l === '`') continue;
        parts.push(uudecodeLine(l));
      }
      const data = Buffer.concat(parts);
      if (data.length) out.push({ name: begin[1].trim(), data, encoding: 'uuencode' });
      i = lines[j] === 'end' ? j : j - 1;
      continue;
    }
    if (/^[A-Za-z0-9+/]{40,}={0,2}$/.test(line) || (b64.length > 0 && /^[A-Za-z0-9+/]{4,}={0,2}$/.test(line))) {
      b64.push(line);
      if (/=$/.test(line)) flushB64();
    } else flushB64();
  }
  flushB64();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Spam

/** Phrasing that spam uses and honest mail rarely does; each pattern counts once. */
const SPAM_PHRASES: [string, RegExp][] = [
  ['100% free/guaranteed', /\b100 ?% (free|guaranteed|satisfied|legit)/i],
  ['act now', /\b(act|order|call|apply) (now|today)\b.{0,20}(!|limited|offer|expires)/i],
  ['limited time offer', /\blimited[- ]time (offer|only|deal)\b/i],
  ['you have won', /\byou('ve| have)? (won|been (selected|chosen))\b/i],
  ['prize / lottery', /\b(lottery|jackpot|sweepstakes?|claim your (prize|reward|gift))\b/i],
  ['pills', /\b(viagra|cialis|levitra|pharmacy without prescription|cheap (meds|pills))\b/i],
  ['quick money', /\b(make money (fast|from home|online)|earn \$?\d[\d,]* (per|a) (day|week|hour)|work from home and earn)\b/i],
  ['credit offers', /\b(no credit check|lowest (mortgage )?rates?|debt relief|consolidate your debt|pre-?approved)\b/i],
  ['risk free', /\b(risk[- ]free|no obligation|no strings attached|money[- ]back guarantee)\b/i],
  ['millions to transfer', /(?<![\w$])(\$|usd|us\$|€|£) ?\d[\d,.]* ?million|\b(inheritance|next of kin|beneficiary) (fund|claim|transfer)/i],
  ['crypto profits', /\b(crypto(currency)?|bitcoin|forex) (investment|profit|trading) (opportunit|return|guarantee)/i],
  ['weight loss', /\b(lose \d+ ?(lbs|pounds|kg)|weight loss (miracle|secret|pill))/i],
  ['dear friend', /\bdear (friend|beneficiary|winner|lucky (winner|customer))\b/i],
  ['once in a lifetime', /\b(once in a lifetime|miracle (cure|offer)|double your (money|income))\b/i],
  ['free gift', /\bfree (gift|money|cash|iphone|trial offer)\b/i],
  ['urgent confidential', /\b(strictly confidential|urgent (reply|response) needed|kindly (reply|respond) urgently)\b/i],
  ['click below', /\bclick (here|below) (now )?to (claim|unsubscribe|remove|receive)\b/i],
  ['adult', /\b(hot singles|adult dating)\b/i],
];

const BULK_KEYS = /^(list-id|feedback-id|x-campaign[\w-]*|x-mc-user|x-mailchimp[\w-]*|x-sg-eid|x-ses-outgoing|x-mailgun-[\w-]+|x-csa-complaints|x-bulkmail|x-mailer-recptid)$/;

const HIDDEN_STYLE = /display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](\.\d+)?(px|pt)?\b|opacity\s*:\s*0(\.0+)?\s*(;|$)|(^|[;\s])color\s*:\s*(#fff(fff)?|white)\b/i;

function hiddenText(html: string): { blocks: number; chars: number } {
  let blocks = 0;
  let chars = 0;
  // No class may run past a '<' or '>': each tag is then read once (no quadratic backtracking).
  const re = /<([a-z][\w-]*)\b[^<>]*?\bstyle\s*=\s*("[^"<>]*"|'[^'<>]*')[^<>]*>([^<]*)/gi;
  for (const m of html.slice(0, 4 * MAX_TEXT).matchAll(re)) {
    if (!HIDDEN_STYLE.test(m[2])) continue;
    const t = decodeEntities(m[3]).replace(/\s+/g, ' ').trim();
    if (t.length >= 20) {
      blocks++;
      chars += t.length;
    }
  }
  return { blocks, chars };
}

function listUnsubscribeTargets(value: string): string[] {
  return [...value.matchAll(/<([^<>]+)>/g)].map((m) => m[1].trim()).slice(0, 10);
}

export function spamFindings(f: MessageFacts, body: Body, senderSite: string | undefined): Finding[] {
  const out: Finding[] = [];
  const keys = new Set(f.headers.map((h) => h.key));
  const precedence = (headerValues(f.headers, 'precedence')[0] ?? '').toLowerCase();
  const bulkBy = /^(bulk|list|junk)\b/.test(precedence) ? `Precedence: ${precedence}` : [...keys].find((k) => BULK_KEYS.test(k));
  const unsubscribe = headerValues(f.headers, 'list-unsubscribe')[0];
  if (bulkBy && !unsubscribe) out.push({ heuristic: 'SPAM_BULK_WITHOUT_UNSUBSCRIBE', details: `bulk (${bulkBy}) without List-Unsubscribe`, data: { bulk: bulkBy } });
  if (unsubscribe) {
    const targets = listUnsubscribeTargets(unsubscribe);
    const odd: string[] = [];
    let own = false;
    for (const t of targets) {
      if (/^mailto:/i.test(t)) {
        const d = domainOf(t.slice(7).split('?')[0]);
        if (d && senderSite && registrable(d) === senderSite) own = true;
        continue;
      }
      let u: URL;
      try {
        u = new URL(t);
      } catch {
        odd.push(t);
        continue;
      }
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (!/^https?:$/.test(u.protocol) || ipaddr.isValid(host)) odd.push(t);
      else if (senderSite && registrable(host) === senderSite) own = true;
    }
    if (odd.length || (targets.length && !own)) {
      out.push({ heuristic: 'SPAM_UNSUBSCRIBE_FOREIGN', details: odd.length ? `List-Unsubscribe to ${odd[0].slice(0, 200)}` : `List-Unsubscribe outside ${senderSite ?? 'the sender domain'}`, data: { targets: targets.map((t) => t.slice(0, 300)), senderDomain: senderSite ?? null } });
    }
  }
  if (body.totalLinks >= 3 && body.words < body.totalLinks * 5) {
    out.push({ heuristic: 'SPAM_LINK_HEAVY', details: `${body.totalLinks} links for ${body.words} words`, data: { links: body.totalLinks, words: body.words } });
  }
  const subject = f.subject ?? '';
  const hay = `${subject}\n${body.visible}`;
  const phrases = SPAM_PHRASES.filter(([, re]) => re.test(hay)).map(([name]) => name);
  if (phrases.length) out.push({ heuristic: 'SPAM_PHRASES', details: phrases.slice(0, 5).join(', '), data: { phrases }, score: Math.min(6, phrases.length) * 40 });
  const letters = subject.match(/\p{L}/gu)?.length ?? 0;
  const upper = subject.match(/\p{Lu}/gu)?.length ?? 0;
  if ((letters >= 8 && upper / letters >= 0.7) || /([!$€])\1{2,}/.test(subject)) out.push({ heuristic: 'SPAM_SHOUTING_SUBJECT', details: subject.slice(0, 200) });
  if (f.html) {
    const hidden = hiddenText(f.html);
    if (hidden.chars >= 300 || hidden.blocks >= 3) out.push({ heuristic: 'SPAM_HIDDEN_TEXT', details: `${hidden.blocks} hidden block(s), ${hidden.chars} characters`, data: hidden });
    if (body.images >= 1 && body.words < 15) out.push({ heuristic: 'SPAM_IMAGE_ONLY', details: `${body.images} image(s), ${body.words} word(s)`, data: { images: body.images, words: body.words } });
  }
  const missing = ['message-id', 'date'].filter((k) => !keys.has(k));
  if (missing.length && !f.headersUnknown) out.push({ heuristic: 'SPAM_MISSING_HEADERS', details: `no ${missing.join(', ')}`, data: { missing } });
  if (f.to.length + f.cc.length === 0) out.push({ heuristic: 'SPAM_UNDISCLOSED_RECIPIENTS', details: 'no visible recipient' });
  return out;
}

// ---------------------------------------------------------------------------------------------
// The whole analysis (shared with the Outlook scanner)

export interface MessageAnalysis {
  evidence: Finding[];
  email: EmailAttributes;
  body: Body;
}

export function analyseMessage(f: MessageFacts): MessageAnalysis {
  const email = emailAttributes(f);
  const body = analyseBody(f.text, f.html);
  const site = email.senderDomain ? registrable(email.senderDomain) : undefined;
  return { evidence: [...spoofingFindings(f, email), ...spamFindings(f, body, site)], email, body };
}

/**
 * Hands out the decoded bodies and the links of a message. Returns findings for links over the
 * limit and for refusals.
 */
export async function emitBodyChildren(f: MessageFacts, body: Body, info: SampleInfo, sink: ChildSink): Promise<Finding[]> {
  const out: Finding[] = [];
  if (f.html && f.html.trim()) {
    // Mail HTML is often a fragment (`<p>…`); a doctype makes it detected as HTML, for the HTML scanner.
    let html = Buffer.from(f.html, 'utf8');
    if (detectType(html.subarray(0, DETECT_HEAD_BYTES)).type !== 'html') html = Buffer.concat([Buffer.from('<!DOCTYPE html>\n'), html]);
    await sink.emit({ name: 'body.html', relation: 'embedded_object', data: html });
  }
  if (f.text.trim()) await sink.emit({ name: 'body.txt', relation: 'embedded_object', data: Buffer.from(f.text, 'utf8') });
  if (f.rtf?.length) await sink.emit({ name: 'body.rtf', relation: 'embedded_object', data: f.rtf });
  if (mayFollowLinks(info)) {
    for (const url of body.links) if (!(await sink.emit({ name: url, relation: 'link', url }))) break;
    if (body.totalLinks > body.links.length) {
      out.push({ heuristic: 'NOT_FULLY_SCANNED', details: `${body.totalLinks - body.links.length} of ${body.totalLinks} body links not scanned (limit ${MAX_EMAIL_LINKS})`, data: { links: body.totalLinks, scanned: body.links.length } });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scanner

const EXTENSIONS: Record<string, string> = {
  'text/html': 'html', 'text/plain': 'txt', 'text/calendar': 'ics', 'message/rfc822': 'eml', 'application/pdf': 'pdf',
  'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'application/ms-tnef': 'dat', 'application/vnd.ms-tnef': 'dat',
  'application/zip': 'zip', 'application/x-zip-compressed': 'zip',
};

/**
 * Passes the first `max` bytes on in pieces of at most 64 KiB (mailparser is several times
 * slower on one huge chunk than on many small ones), then drops the rest; `cut` says so.
 */
class ByteLimit extends Transform {
  seen = 0;
  cut = false;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const left = this.max - this.seen;
    this.seen += chunk.length;
    if (left <= 0) {
      this.cut = true;
      return done();
    }
    if (chunk.length > left) this.cut = true;
    const kept = chunk.length > left ? chunk.subarray(0, left) : chunk;
    for (let i = 0; i < kept.length; i += 64 * 1024) this.push(kept.subarray(i, i + 64 * 1024));
    done();
  }
}

/** The message behind an mbox `From ` line: the line dropped, `>From ` unquoted. */
async function* afterFromLine(stream: Readable): AsyncGenerator<Buffer> {
  for await (const part of mboxParts(stream)) if ('data' in part) yield part.data;
}

function first(v: AddressObject | AddressObject[] | undefined): EmailAddress | undefined {
  return mailboxes(v)[0];
}

export const emailScanner: Scanner = {
  name: 'email',
  version: '1',
  layer: 'email',
  accepts: (info) => info.kind === 'file' && info.fileType === 'email',
  async scan(input, ctx) {
    const head = await input.head(1024);
    const mbox = isFromLine(head);
    if (mbox && (await countMboxMessages(input.stream(), 2)) >= 2) return {};

    const session = new ArchiveSession(ctx, 'attachment');
    const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true, checksumAlgo: false });
    let headerLines: HeaderLine[] = [];
    parser.on('headerLines', (lines: HeaderLine[]) => {
      headerLines = lines.map((l) => ({ key: l.key, line: l.line }));
    });
    const source = input.stream();
    const limit = new ByteLimit(EMAIL_MAX_BYTES);
    const feed = mbox ? Readable.from(afterFromLine(source)) : source;
    const stopAll = (err?: Error) => {
      for (const s of [source, feed, limit]) s.destroy();
      parser.destroy(err);
    };
    feed.on('error', (err) => stopAll(err));
    limit.on('error', (err) => stopAll(err));
    const onAbort = () => stopAll();
    session.signal.addEventListener('abort', onAbort, { once: true });
    feed.pipe(limit).pipe(parser);

    const evidence: Finding[] = [];
    const names: string[] = [];
    let text = '';
    let html: string | null = null;
    let parseError: string | undefined;
    try {
      for await (const data of parser as AsyncIterable<AttachmentStream | MessageText>) {
        if (data.type === 'text') {
          if (typeof data.text === 'string') text += data.text;
          if (typeof data.html === 'string') html = (html ?? '') + data.html;
          continue;
        }
        await readAttachment(data, session, names);
        if (session.stopped) break;
      }
    } catch (err) {
      // Limits and time are reported by the session; anything else is the message's fault.
      if (isExtractionStop(err) || session.signal.aborted) session.failure(err);
      else parseError = errorMessage(err);
    } finally {
      session.signal.removeEventListener('abort', onAbort);
      stopAll();
    }

    const p = parser;
    const from = first(p.from);
    const dateRaw = headerValues(headerLines, 'date')[0];
    const date = dateRaw ? new Date(dateRaw) : null;
    const facts: MessageFacts = {
      headers: headerLines,
      from: from ? { address: from.address!, name: from.name } : null,
      to: mailboxes(p.to).map((a) => a.address!),
      cc: mailboxes(p.cc).map((a) => a.address!),
      replyTo: first(p.replyTo)?.address ?? null,
      subject: p.subject ?? null,
      messageId: p.messageId || null,
      date: date && !Number.isNaN(date.getTime()) ? date : null,
      text,
      html,
    };
    if (parseError) evidence.push({ heuristic: 'UNPARSEABLE', details: `message not fully parsed: ${parseError}`.slice(0, 300), data: { format: 'email' } });
    if (limit.cut) evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `message parsed up to ${EMAIL_MAX_BYTES} bytes`, data: { scannedBytes: EMAIL_MAX_BYTES } });

    const result = await finishMessage(facts, session, names, input.info, ctx);
    return { evidence: [...evidence, ...result.evidence], attributes: result.attributes };
  },
};

async function readAttachment(data: AttachmentStream, session: ArchiveSession, names: string[]): Promise<void> {
  const content = data.content;
  if (!session.active) {
    content.resume();
    data.release?.();
    return;
  }
  const ext = EXTENSIONS[data.contentType?.toLowerCase()] ?? 'bin';
  const raw = data.filename?.trim() || `attachment-${session.members + 1}.${ext}`;
  const member = session.member(raw, {
    meta: { contentType: data.contentType, ...(data.contentDisposition ? { disposition: data.contentDisposition } : {}), ...(data.cid ? { cid: data.cid } : {}), ...(data.partId ? { partId: data.partId } : {}) },
  });
  names.push(member.name);
  let failed = false;
  for await (const chunk of content) {
    if (failed) continue;
    try {
      await member.write(chunk as Buffer);
    } catch (err) {
      failed = true;
      if (!isExtractionStop(err)) session.corrupt(err, member.name);
      if (session.stopped) break;
    }
  }
  data.release?.();
  await session.emit(member);
}

/**
 * What every message format ends with: embedded blocks of the text as attachments, the
 * analysis, the bodies and links as children, and the findings of the session.
 */
export async function finishMessage(
  facts: MessageFacts,
  session: ArchiveSession,
  names: string[],
  info: SampleInfo,
  ctx: ScanContext,
): Promise<{ evidence: Finding[]; attributes: Record<string, unknown> }> {
  const evidence: Finding[] = [];
  try {
    for (const block of embeddedBlocks(facts.text)) {
      if (!session.active) break;
      const member = session.member(block.name, { meta: { encoding: block.encoding, from: 'body text' } });
      names.push(member.name);
      try {
        await member.write(block.data);
      } catch (err) {
        if (!isExtractionStop(err)) session.corrupt(err, member.name);
      }
      await session.emit(member);
    }
  } finally {
    session.close();
  }
  const analysis = analyseMessage(facts);
  evidence.push(...analysis.evidence);
  const sink = new ChildSink(ctx);
  if (!session.stopped) evidence.push(...(await emitBodyChildren(facts, analysis.body, info, sink)));
  const archive = session.result();
  evidence.push(...attachmentFindings(archive.evidence ?? [], names));
  if (!archive.evidence?.some((e) => e.heuristic === 'ARCHIVE_LIMIT')) evidence.push(...sink.findings());
  return {
    evidence,
    attributes: {
      email: analysis.email,
      // Namespaced: other scanners of the same object (OLE on a .msg) have their own counts.
      emailParts: { attachments: names.length, links: analysis.body.links.length, totalLinks: analysis.body.totalLinks, emitted: session.emitted + sink.emitted },
    },
  };
}
