/**
 * HTML (and SVG): a tolerant tokenizer of our own (no DOM), then phishing and delivery
 * heuristics. The page's own address is known when the object is the fetched content of a
 * URL scan (the engine names that child by its final URL); otherwise the page is a local file
 * (an attachment, an upload) and has no domain of its own.
 *
 * - HTML_CREDENTIAL_FORM: a password input on a page that is not served by a site (a local
 *   file: login forms in attachments are a phishing hallmark), or that sends it elsewhere.
 *   A login page posting to its own site is no finding.
 * - HTML_FORM_OFFSITE: a form with a password input posts to another site (any absolute
 *   http(s) action for a local file) or to a `data:`/`javascript:` URL.
 * - HTML_BRAND_IMPERSONATION: a well-known brand (list below) in the title, a logo's alt
 *   text or the page text, on a page that asks for credentials (password, or e-mail/login
 *   input in a form) and is not served from one of the brand's domains. `data.brand` names it.
 * - HTML_OBFUSCATED_SCRIPT: eval/document.write of atob/unescape..., packers, char-code
 *   arrays, long encoded blobs (the signals of src/scanners/script.ts), inline or in handlers.
 * - HTML_REDIRECT: meta refresh or script navigation (location = / replace / assign) to another URL.
 * - HTML_DATA_URI: `data:text/html`, `data:application/...` or `blob:` URLs used for navigation
 *   (links, frames, form actions, redirects).
 * - HTML_SMUGGLING: a script builds a Blob from a large embedded payload and saves or opens it
 *   (createObjectURL/msSaveOrOpenBlob + download/click); payloads are decoded as children.
 * - HTML_HIDDEN_IFRAME: an iframe sized 0–1 px or styled invisible, with a source.
 * - Children: inline scripts (`script`, `inline-script-1.js`/`.vbs`, deduplicated, at most
 *   20), links (`link`, http(s) only, resolved against the page's address, deduplicated, at
 *   most 25; not when the page was itself reached by following a link: one hop only),
 *   smuggled payloads (`embedded_object`).
 *
 * @example
 * const r = await runScanner(htmlScanner, page, { name: 'https://login.example.net/' });
 * r.evidence.find((e) => e.heuristic === 'HTML_BRAND_IMPERSONATION')?.data?.brand // 'Microsoft'
 */
import type { ChildSpec, Finding, SampleInfo, Scanner } from './types.ts';
import { isObfuscated, obfuscationSignals, scriptText } from './script.ts';

/** Most bytes of a page that are analysed. */
export const HTML_MAX_BYTES = 16 * 1024 * 1024;
export const MAX_LINKS = 25;
const MAX_SCRIPTS = 20;
const MAX_SMUGGLED = 5;
const MAX_TAGS = 200_000;
const MAX_TEXT = 256 * 1024;

/**
 * Whether an object may hand out links to follow: not when it is the content of a URL that
 * was itself reached from another object (one hop of crawling, not a crawler).
 */
export function mayFollowLinks(info: Pick<SampleInfo, 'depth' | 'relation'>): boolean {
  return !(info.relation === 'fetched_content' && info.depth >= 2);
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

export interface Tag {
  name: string;
  attrs: Map<string, string>;
  /** Text content for raw-text elements (script, style, title, textarea). */
  content?: string;
}

export interface Parsed {
  tags: Tag[];
  /** Visible text (outside script/style), whitespace collapsed, bounded. */
  text: string;
}

const RAW_TEXT = new Set(['script', 'style', 'title', 'textarea', 'xmp', 'noscript']);

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});?/gi, (m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** Splits HTML into tags with attributes; never throws, bounded by MAX_TAGS. */
export function tokenize(html: string): Parsed {
  const tags: Tag[] = [];
  const text: string[] = [];
  let textLen = 0;
  const pushText = (s: string) => {
    if (textLen >= MAX_TEXT) return;
    const t = decodeEntities(s).replace(/\s+/g, ' ');
    if (t.trim()) {
      text.push(t);
      textLen += t.length;
    }
  };
  let i = 0;
  const n = html.length;
  while (i < n && tags.length < MAX_TAGS) {
    const lt = html.indexOf('<', i);
    if (lt < 0) {
      pushText(html.slice(i));
      break;
    }
    if (lt > i) pushText(html.slice(i, lt));
    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4);
      i = end < 0 ? n : end + 3;
      continue;
    }
    const c = html.charCodeAt(lt + 1);
    if (c === 0x21 || c === 0x3f) {
      // <!doctype ...>, <![CDATA[ ... ]]>, <?xml ...?>
      if (html.startsWith('<![CDATA[', lt)) {
        const end = html.indexOf(']]>', lt);
        pushText(html.slice(lt + 9, end < 0 ? n : end));
        i = end < 0 ? n : end + 3;
      } else {
        const end = html.indexOf('>', lt);
        i = end < 0 ? n : end + 1;
      }
      continue;
    }
    if (c === 0x2f) {
      const end = html.indexOf('>', lt);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (!/[A-Za-z]/.test(html[lt + 1] ?? '')) {
      pushText('<');
      i = lt + 1;
      continue;
    }
    // Tag name
    let j = lt + 1;
    while (j < n && !/[\s/>]/.test(html[j])) j++;
    const name = html.slice(lt + 1, j).toLowerCase();
    const attrs = new Map<string, string>();
    // Attributes
    for (;;) {
      while (j < n && /[\s/]/.test(html[j])) j++;
      if (j >= n || html[j] === '>') break;
      let k = j;
      while (k < n && !/[\s=>/]/.test(html[k])) k++;
      if (k === j) k++;
      const an = html.slice(j, k).toLowerCase();
      j = k;
      while (j < n && /\s/.test(html[j])) j++;
      let value = '';
      if (html[j] === '=') {
        j++;
        while (j < n && /\s/.test(html[j])) j++;
        const q = html[j];
        if (q === '"' || q === "'") {
          const end = html.indexOf(q, j + 1);
          value = html.slice(j + 1, end < 0 ? n : end);
          j = end < 0 ? n : end + 1;
        } else {
          let e = j;
          while (e < n && !/[\s>]/.test(html[e])) e++;
          value = html.slice(j, e);
          j = e;
        }
      }
      if (!attrs.has(an) && attrs.size < 256) attrs.set(an, decodeEntities(value));
    }
    i = j < n ? j + 1 : n;
    const tag: Tag = { name, attrs };
    if (RAW_TEXT.has(name) && html[j - 1] !== '/') {
      const close = new RegExp(`</${name}[\\s>]`, 'ig');
      close.lastIndex = i;
      const m = close.exec(html);
      const end = m ? m.index : n;
      tag.content = html.slice(i, end);
      if (name === 'title' || name === 'textarea') pushText(` ${tag.content} `);
      i = m ? html.indexOf('>', end) + 1 || n : n;
    }
    tags.push(tag);
  }
  return { tags, text: text.join('').slice(0, MAX_TEXT) };
}

// ---------------------------------------------------------------------------------------------
// Brands

interface Brand {
  brand: string;
  /** Matched against title, logo alt text and page text (word boundaries). */
  pattern: RegExp;
  /** Registrable domains that belong to the brand. */
  domains: string[];
}

/** A modest list of the brands phishing kits imitate most. */
export const BRANDS: Brand[] = [
  { brand: 'Microsoft', pattern: /\b(microsoft|office ?365|microsoft ?365|outlook|onedrive|sharepoint|hotmail)\b/i, domains: ['microsoft.com', 'microsoftonline.com', 'office.com', 'office365.com', 'live.com', 'outlook.com', 'sharepoint.com', 'onedrive.com', 'hotmail.com', 'msn.com', 'windows.net', 'azure.com', 'bing.com', 'skype.com', 'msft.net'] },
  { brand: 'Google', pattern: /\b(google|gmail)\b/i, domains: ['google.com', 'gmail.com', 'youtube.com', 'googleusercontent.com', 'gstatic.com', 'withgoogle.com'] },
  { brand: 'Apple', pattern: /\b(apple ?id|icloud|itunes|apple pay)\b/i, domains: ['apple.com', 'icloud.com'] },
  { brand: 'PayPal', pattern: /\bpaypal\b/i, domains: ['paypal.com', 'paypal.me', 'paypalobjects.com'] },
  { brand: 'Amazon', pattern: /\b(amazon|aws)\b/i, domains: ['amazon.com', 'amazonaws.com', 'aws.amazon.com', 'amazon.co.uk', 'amazon.de', 'amazon.fr', 'amazon.co.jp'] },
  { brand: 'DHL', pattern: /\bdhl\b/i, domains: ['dhl.com', 'dhl.de'] },
  { brand: 'FedEx', pattern: /\bfedex\b/i, domains: ['fedex.com'] },
  { brand: 'UPS', pattern: /\bUPS\b/, domains: ['ups.com'] },
  { brand: 'USPS', pattern: /\busps\b/i, domains: ['usps.com'] },
  { brand: 'Netflix', pattern: /\bnetflix\b/i, domains: ['netflix.com'] },
  { brand: 'Facebook', pattern: /\b(facebook|instagram|whatsapp)\b/i, domains: ['facebook.com', 'fb.com', 'instagram.com', 'whatsapp.com', 'meta.com'] },
  { brand: 'LinkedIn', pattern: /\blinkedin\b/i, domains: ['linkedin.com'] },
  { brand: 'DocuSign', pattern: /\bdocusign\b/i, domains: ['docusign.com', 'docusign.net'] },
  { brand: 'Dropbox', pattern: /\bdropbox\b/i, domains: ['dropbox.com'] },
  { brand: 'Adobe', pattern: /\badobe\b/i, domains: ['adobe.com', 'adobelogin.com'] },
  { brand: 'WeTransfer', pattern: /\bwetransfer\b/i, domains: ['wetransfer.com'] },
  { brand: 'Yahoo', pattern: /\byahoo\b/i, domains: ['yahoo.com'] },
  { brand: 'Wells Fargo', pattern: /\bwells ?fargo\b/i, domains: ['wellsfargo.com'] },
  { brand: 'Chase', pattern: /\bchase (bank|online)\b|\bjp ?morgan chase\b/i, domains: ['chase.com', 'jpmorganchase.com'] },
  { brand: 'Bank of America', pattern: /\bbank of america\b/i, domains: ['bankofamerica.com'] },
  { brand: 'HSBC', pattern: /\bhsbc\b/i, domains: ['hsbc.com', 'hsbc.co.uk'] },
  { brand: 'Citibank', pattern: /\bciti ?bank\b/i, domains: ['citi.com', 'citibank.com'] },
  { brand: 'Coinbase', pattern: /\bcoinbase\b/i, domains: ['coinbase.com'] },
  { brand: 'Binance', pattern: /\bbinance\b/i, domains: ['binance.com'] },
  { brand: 'Steam', pattern: /\bsteam(community|powered)?\b/i, domains: ['steampowered.com', 'steamcommunity.com'] },
];

/** Second-level labels under which registrations happen one level deeper (example.co.uk). */
const SECOND_LEVELS = new Set(['co', 'com', 'net', 'org', 'gov', 'ac', 'edu', 'ne', 'or', 'go', 'gob', 'mil', 'ltd', 'plc']);

/** The registrable part of a host (an approximation without the public-suffix list). */
export function siteOf(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (/^[\d.]+$/.test(h) || h.includes(':')) return h;
  const labels = h.split('.');
  if (labels.length <= 2) return h;
  const keep = labels.length >= 3 && SECOND_LEVELS.has(labels[labels.length - 2]) && labels[labels.length - 1].length === 2 ? 3 : 2;
  return labels.slice(-keep).join('.');
}

function brandOwns(b: Brand, site: string): boolean {
  if (b.domains.some((d) => site === d || site.endsWith(`.${d}`))) return true;
  // Country variants: paypal.de, amazon.co.uk...
  const first = site.split('.')[0];
  return b.domains.some((d) => d.split('.')[0] === first);
}

// ---------------------------------------------------------------------------------------------
// Scanner

function httpUrl(raw: string | undefined, base: URL | undefined): URL | undefined {
  if (!raw) return undefined;
  const v = raw.trim();
  if (!v || v.startsWith('#')) return undefined;
  try {
    const u = base ? new URL(v, base) : new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

const NAV_DATA = /^\s*(data:(text\/html|application\/|image\/svg)|blob:)/i;
const SCRIPT_URL = /^\s*javascript:/i;

export const htmlScanner: Scanner = {
  name: 'html',
  version: '1',
  layer: 'document',
  accepts: (info) => info.kind === 'file' && (info.fileType === 'html' || info.fileType === 'svg'),
  async scan(input, ctx) {
    const { info } = input;
    const truncated = info.size > HTML_MAX_BYTES;
    const bytes = truncated ? await input.head(HTML_MAX_BYTES) : await input.bytes(HTML_MAX_BYTES);
    const html = scriptText(bytes);
    const { tags, text } = tokenize(html);
    const evidence: Finding[] = [];

    const pageUrl = /^https?:\/\//i.test(info.name) ? httpUrl(info.name, undefined) : undefined;
    const pageSite = pageUrl ? siteOf(pageUrl.hostname) : undefined;
    const baseTag = tags.find((t) => t.name === 'base' && t.attrs.get('href'));
    const base = httpUrl(baseTag?.attrs.get('href'), pageUrl) ?? pageUrl;
    const title = decodeEntities(tags.find((t) => t.name === 'title')?.content ?? '').replace(/\s+/g, ' ').trim().slice(0, 500);

    // Forms and inputs
    let passwordInputs = 0;
    let identityInputs = 0;
    const offsite: { action: string; reason: string }[] = [];
    let formAction: string | undefined;
    let inForm = false;
    let formHasPassword = false;
    const closeForm = () => {
      if (inForm && formHasPassword && formAction !== undefined) {
        const a = formAction.trim();
        if (SCRIPT_URL.test(a) || /^\s*data:/i.test(a)) offsite.push({ action: a.slice(0, 200), reason: 'script_or_data_url' });
        else {
          // Without an address of its own (and no <base>), a relative action does not resolve.
          const u = httpUrl(a, base);
          if (u && pageSite && siteOf(u.hostname) !== pageSite) offsite.push({ action: u.href.slice(0, 500), reason: 'other_site' });
          else if (u && !pageSite) offsite.push({ action: u.href.slice(0, 500), reason: 'remote_from_local_file' });
        }
      }
      inForm = false;
      formHasPassword = false;
      formAction = undefined;
    };
    // The tokenizer keeps no end tags: a form runs until the next form (or the end).
    for (const t of tags) {
      if (t.name === 'form') {
        closeForm();
        inForm = true;
        formAction = t.attrs.get('action') ?? '';
      } else if (t.name === 'input') {
        const type = (t.attrs.get('type') ?? 'text').toLowerCase();
        const nameish = `${t.attrs.get('name') ?? ''} ${t.attrs.get('id') ?? ''} ${t.attrs.get('placeholder') ?? ''} ${t.attrs.get('autocomplete') ?? ''}`;
        if (type === 'password') {
          passwordInputs++;
          if (inForm) formHasPassword = true;
        } else if (type === 'email' || ((type === 'text' || type === 'tel') && /e-?mail|user(name)?|login|account|phone/i.test(nameish))) identityInputs++;
      }
    }
    closeForm();
    const asksCredentials = passwordInputs > 0 || identityInputs > 0;
    if (passwordInputs > 0 && (!pageSite || offsite.length > 0)) {
      evidence.push({
        heuristic: 'HTML_CREDENTIAL_FORM',
        details: pageSite ? `password input on ${pageSite} sent elsewhere` : 'password input in a local HTML file',
        data: { passwordInputs, pageSite: pageSite ?? null },
      });
    }
    if (offsite.length > 0) {
      evidence.push({ heuristic: 'HTML_FORM_OFFSITE', details: `credentials posted to ${offsite[0].action}`, data: { forms: offsite.slice(0, 10), pageSite: pageSite ?? null } });
    }

    // Brands
    const logoAlts = tags
      .filter((t) => t.name === 'img' && (t.attrs.get('alt') || /logo/i.test(`${t.attrs.get('src') ?? ''} ${t.attrs.get('class') ?? ''} ${t.attrs.get('id') ?? ''}`)))
      .map((t) => `${t.attrs.get('alt') ?? ''} ${decodeURIComponentSafe(t.attrs.get('src') ?? '').replace(/[/_.-]+/g, ' ')}`)
      .join(' ')
      .slice(0, 20_000);
    const brandsSeen: { brand: string; where: string }[] = [];
    for (const b of BRANDS) {
      const where = b.pattern.test(title) ? 'title' : b.pattern.test(logoAlts) ? 'logo' : b.pattern.test(text) ? 'text' : undefined;
      if (where) brandsSeen.push({ brand: b.brand, where });
    }
    const foreign = brandsSeen.filter((s) => !pageSite || !brandOwns(BRANDS.find((b) => b.brand === s.brand)!, pageSite));
    if (asksCredentials && foreign.length > 0) {
      // The brand in the title or logo first: that is who the page pretends to be.
      const rank = { title: 0, logo: 1, text: 2 } as Record<string, number>;
      foreign.sort((x, y) => rank[x.where] - rank[y.where]);
      evidence.push({
        heuristic: 'HTML_BRAND_IMPERSONATION',
        details: `${foreign[0].brand} (${foreign[0].where}) on ${pageSite ?? 'a local file'} asking for credentials`,
        data: { brand: foreign[0].brand, where: foreign[0].where, brands: foreign.map((f) => f.brand), pageSite: pageSite ?? null },
      });
    }

    // Scripts
    const scripts = tags.filter((t) => t.name === 'script' && t.content && t.content.trim());
    const handlers = tags.flatMap((t) => [...t.attrs].filter(([k, v]) => k.startsWith('on') && v.length > 0).map(([, v]) => v));
    const jsUrls = tags.flatMap((t) => ['href', 'src', 'action'].map((k) => t.attrs.get(k) ?? '').filter((v) => SCRIPT_URL.test(v)));
    const allScript = [...scripts.map((s) => s.content!), ...handlers, ...jsUrls].join('\n;\n');
    const signals = obfuscationSignals(allScript, 'javascript');
    if (isObfuscated(signals)) {
      evidence.push({ heuristic: 'HTML_OBFUSCATED_SCRIPT', details: signals.map((s) => s.detail ?? s.id).slice(0, 5).join('; '), data: { signals } });
    }

    // Redirects
    const redirects: { kind: string; target: string }[] = [];
    for (const t of tags) {
      if (t.name === 'meta' && /refresh/i.test(t.attrs.get('http-equiv') ?? '')) {
        const m = /url\s*=\s*['"]?([^'"]+)/i.exec(t.attrs.get('content') ?? '');
        if (m) redirects.push({ kind: 'meta_refresh', target: m[1].trim() });
      }
    }
    for (const m of allScript.matchAll(/\b(?:window\.|document\.|top\.|self\.)?location(?:\.href)?\s*=\s*["'`]([^"'`]+)["'`]|\blocation\.(?:replace|assign)\s*\(\s*["'`]([^"'`]+)["'`]/g)) {
      if (redirects.length >= 20) break;
      redirects.push({ kind: 'script', target: (m[1] ?? m[2]).trim() });
    }
    const navRedirects = redirects.filter((r) => {
      if (NAV_DATA.test(r.target)) return true;
      const u = httpUrl(r.target, base);
      return u !== undefined && (!pageUrl || siteOf(u.hostname) !== pageSite || u.href !== pageUrl.href);
    });
    if (navRedirects.length) {
      evidence.push({ heuristic: 'HTML_REDIRECT', details: `${navRedirects[0].kind} to ${navRedirects[0].target.slice(0, 200)}`, data: { redirects: navRedirects.slice(0, 10).map((r) => ({ ...r, target: r.target.slice(0, 500) })) } });
    }

    // data:/blob: navigation
    const dataNav: string[] = [];
    for (const t of tags) {
      for (const k of ['href', 'src', 'action', 'data']) {
        const v = t.attrs.get(k);
        if (v && NAV_DATA.test(v) && ['a', 'area', 'iframe', 'frame', 'form', 'object', 'embed', 'meta'].includes(t.name)) dataNav.push(`${t.name}[${k}]=${v.slice(0, 60)}`);
      }
    }
    for (const r of redirects) if (NAV_DATA.test(r.target)) dataNav.push(`${r.kind}=${r.target.slice(0, 60)}`);
    if (/\b(window\.open|location(\.href)?\s*=|location\.(replace|assign))\s*\(?\s*["'`]?\s*data:text\/html/i.test(allScript)) dataNav.push('script navigation to data:text/html');
    if (dataNav.length) {
      evidence.push({ heuristic: 'HTML_DATA_URI', details: dataNav[0], data: { uses: dataNav.slice(0, 10) } });
    }

    // HTML smuggling
    const smuggled: Buffer[] = [];
    if (/\bnew\s+Blob\s*\(/.test(allScript) && /createObjectURL|msSaveOrOpenBlob|msSaveBlob/.test(allScript) && /\.download\s*=|\bdownload\b|\.click\s*\(\s*\)|msSaveOrOpenBlob|window\.open|location/.test(allScript)) {
      const blobs = [...allScript.matchAll(/(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{1000,}={0,2}/g)].map((m) => m[0]);
      if (blobs.length > 0) {
        for (const b of blobs.slice(0, MAX_SMUGGLED)) smuggled.push(Buffer.from(b, 'base64'));
        evidence.push({ heuristic: 'HTML_SMUGGLING', details: `a script assembles a ${smuggled[0].length}-byte payload into a Blob and hands it to the browser`, data: { payloads: smuggled.length, sizes: smuggled.map((s) => s.length) } });
      }
    }

    // Hidden iframes
    const hidden: string[] = [];
    for (const t of tags) {
      if (t.name !== 'iframe' && t.name !== 'frame') continue;
      const src = t.attrs.get('src') ?? '';
      if (!src.trim() || src.trim() === 'about:blank') continue;
      const w = t.attrs.get('width');
      const h = t.attrs.get('height');
      const style = (t.attrs.get('style') ?? '').toLowerCase().replace(/\s+/g, '');
      const tiny = (w !== undefined && parseFloat(w) <= 1) || (h !== undefined && parseFloat(h) <= 1) || /(^|;)(width|height):0*[01](px)?(;|$)/.test(style);
      const invisible = t.attrs.has('hidden') || /display:none|visibility:hidden|opacity:0(;|$)/.test(style);
      if (tiny || invisible) hidden.push(src.slice(0, 500));
    }
    if (hidden.length) evidence.push({ heuristic: 'HTML_HIDDEN_IFRAME', details: `hidden frame loading ${hidden[0]}`, data: { sources: hidden.slice(0, 10) } });

    // Children
    const children: ChildSpec[] = [];
    const seenScripts = new Set<string>();
    for (const s of scripts) {
      if (children.length >= MAX_SCRIPTS) break;
      const code = s.content!;
      if (seenScripts.has(code)) continue;
      seenScripts.add(code);
      const lang = `${s.attrs.get('type') ?? ''} ${s.attrs.get('language') ?? ''}`;
      if (/json|template|html|text\/x-|ld\+json|importmap/i.test(lang) && !/vbscript|jscript/i.test(lang)) continue;
      const ext = /vbscript/i.test(lang) ? 'vbs' : 'js';
      children.push({ name: `inline-script-${seenScripts.size}.${ext}`, relation: 'script', data: Buffer.from(code, 'utf8') });
    }
    smuggled.forEach((data, i) => children.push({ name: `smuggled-${i + 1}.bin`, relation: 'embedded_object', data }));
    const links: string[] = [];
    if (mayFollowLinks(info)) {
      const seen = new Set<string>();
      const candidates: (string | undefined)[] = [];
      for (const t of tags) {
        if (t.name === 'a' || t.name === 'area') candidates.push(t.attrs.get('href'));
        else if (t.name === 'iframe' || t.name === 'frame') candidates.push(t.attrs.get('src'));
        else if (t.name === 'form') candidates.push(t.attrs.get('action'));
        else if (t.name === 'use' || t.name === 'image') candidates.push(t.attrs.get('xlink:href') ?? t.attrs.get('href'));
      }
      for (const r of redirects) candidates.push(r.target);
      for (const c of candidates) {
        if (links.length >= MAX_LINKS) break;
        const u = httpUrl(c, base);
        if (!u) continue;
        u.hash = '';
        if (seen.has(u.href) || (pageUrl && u.href === pageUrl.href)) continue;
        seen.add(u.href);
        links.push(u.href);
      }
    }
    let emitted = 0;
    let refused: string | undefined;
    for (const c of [...children, ...links.map((l): ChildSpec => ({ name: l, relation: 'link', url: l }))]) {
      const answer = await ctx.emitChild(c);
      if (answer !== true) {
        refused = answer;
        break;
      }
      emitted++;
    }
    if (refused && (children.length > 0 && emitted < children.length)) {
      evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `scripts or payloads of the page not scanned: ${refused} limit`, data: { refused } });
    }
    if (truncated) evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `page analysed up to ${HTML_MAX_BYTES} bytes`, data: { scannedBytes: HTML_MAX_BYTES } });

    return {
      evidence,
      attributes: {
        ...(title ? { htmlTitle: title } : {}),
        pageSite: pageSite ?? null,
        passwordInputs,
        brands: brandsSeen.map((b) => b.brand),
        inlineScripts: scripts.length,
        links,
      },
    };
  },
};

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
