/**
 * PDF: our own tolerant parser (no pdf.js), in the spirit of Didier Stevens' pdfid/pdf-parser.
 * Objects are found by scanning for `N G obj` rather than trusting the cross-reference table
 * (real-world and malicious PDFs often have a bogus one); object streams (`/ObjStm`) are
 * decoded and their objects parsed, so that nothing hides in them.
 *
 * - Keyword statistics (`attributes.keywords`, pdfid's list) are counted outside stream bodies
 *   and inside decoded object streams; names written with `#xx` escapes of letters or digits
 *   (`/J#61vaScript`) are counted as obfuscation (`attributes.obfuscatedNames`).
 * - Streams are decoded only where it matters (object streams, JavaScript, embedded files):
 *   FlateDecode, ASCIIHexDecode, ASCII85Decode, LZWDecode, RunLengthDecode and predictors
 *   (src/scanners/pdf-filters.ts), each bounded by the compression-ratio limit (with the
 *   archives' 1 MiB floor), a per-stream cap and a per-file budget.
 * - Children: JavaScript (`script`, `object-12.js`), embedded files (`embedded_object`, named
 *   by their file specification's /UF or /F), URIs of /URI actions (`link`, http(s) only,
 *   deduplicated, at most 50; not when the PDF itself was reached by following a link).
 *   JPEG image XObjects (`embedded_object`, `image-12.jpg`, at most 20) for the QR scanner.
 * - Findings: PDF_JAVASCRIPT, PDF_AUTO_ACTION (an automatic trigger — /OpenAction, or a page,
 *   document or annotation /AA event that needs no click — leads to JavaScript, Launch, URI,
 *   or another document), PDF_LAUNCH, PDF_EMBEDDED_FILE, PDF_XFA, PDF_RICH_MEDIA,
 *   PDF_NAME_OBFUSCATION, PDF_ENCRYPTED (strings and streams are not decrypted: partial),
 *   PDF_MALFORMED (partial), ARCHIVE_BOMB (a decoded stream past the ratio limit),
 *   NOT_FULLY_SCANNED (size, budget or time limits).
 *
 * Scores (docs/decisions.md): JavaScript 150 and automatic action 200, so that OpenAction +
 * JavaScript reaches SUS (300) while form JavaScript alone does not; Launch 300 (SUS alone).
 *
 * @example
 * const r = await runScanner(pdfScanner, pdfBytes, { name: 'invoice.pdf' });
 * r.heuristics // ['PDF_JAVASCRIPT', 'PDF_AUTO_ACTION']
 * r.children[0].name // 'object-7.js'
 */
import { MIN_BOMB_BYTES, sanitiseMemberName } from './archive-common.ts';
import { decodeStream, type Decoded, type FilterSpec } from './pdf-filters.ts';
import { openStandardSecurity, type Decryptor, type EncryptParams } from './pdf-crypto.ts';
import { mayFollowLinks } from './html.ts';
import type { ChildSpec, Finding, SampleInfo, ScanContext, Scanner } from './types.ts';

/** The part of a PDF read in memory; the rest is reported as not scanned. */
export const PDF_MAX_BYTES = 128 * 1024 * 1024;
/** Most bytes one decoded stream may produce. */
const STREAM_CAP = 64 * 1024 * 1024;
/** Most decoded bytes per PDF (all streams together, before the global extraction budget). */
const DECODE_BUDGET = 512 * 1024 * 1024;
const MAX_OBJECTS = 200_000;
const MAX_DEPTH = 64;
const MAX_ITEMS = 100_000;
const MAX_URIS = 50;
const MAX_SCRIPTS = 50;
const MAX_EMBEDDED = 200;
const MAX_LISTED = 20;

/** pdfid's keywords, plus /AcroForm, /Encrypt and /JBIG2Decode which it also counts. */
export const PDF_KEYWORDS = [
  'JS', 'JavaScript', 'AA', 'OpenAction', 'Launch', 'EmbeddedFile', 'EmbeddedFiles', 'XFA', 'URI', 'ObjStm',
  'RichMedia', 'AcroForm', 'JBIG2Decode', 'Encrypt', 'Colors', 'SubmitForm', 'ImportData', 'GoToE', 'GoToR',
] as const;
const KEYWORD_SET: ReadonlySet<string> = new Set(PDF_KEYWORDS);

/** /AA events that fire without a click: page open/close, document close/save/print, annotation page open/visible. */
const AUTO_TRIGGERS = new Set(['O', 'PO', 'PV', 'PC', 'PI', 'WC', 'WS', 'DS', 'WP', 'DP']);
/** Action types that matter when an automatic trigger leads to them. */
const AUTO_KINDS = new Set(['javascript', 'launch', 'uri', 'gotoe', 'gotor', 'importdata', 'submitform']);
const EXECUTABLE_TARGET = /(\.(exe|scr|com|pif|bat|cmd|vbs|vbe|js|jse|wsf|hta|ps1|lnk|dll|msi|jar)\b)|\b(cmd|powershell|pwsh|mshta|wscript|cscript|rundll32|regsvr32)\b/i;

// ---------------------------------------------------------------------------------------------
// Values

export class PdfName {
  constructor(readonly name: string) {}
}
export class PdfString {
  constructor(readonly bytes: Buffer) {}
  text(): string {
    return textOf(this.bytes);
  }
}
export class PdfRef {
  constructor(
    readonly num: number,
    readonly gen: number,
  ) {}
}
export class PdfKeyword {
  constructor(readonly word: string) {}
}
export type PdfDict = Map<string, PdfValue>;
export type PdfValue = null | boolean | number | PdfName | PdfString | PdfRef | PdfKeyword | PdfValue[] | PdfDict;

export interface PdfObject {
  num: number;
  gen: number;
  value: PdfValue;
  /** Raw stream body range in the file. */
  stream?: { start: number; end: number };
  /** The object stream that held it. */
  inObjStm?: number;
}

/** Text strings: UTF-16BE with a BOM, UTF-8 with a BOM, else PDFDocEncoding read as Latin-1. */
export function textOf(b: Buffer): string {
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) {
    const swapped = Buffer.from(b.subarray(2, 2 + ((b.length - 2) & ~1)));
    swapped.swap16();
    return swapped.toString('utf16le');
  }
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return b.subarray(3).toString('utf8');
  return b.toString('latin1');
}

const WS = new Uint8Array(256);
for (const c of [0x00, 0x09, 0x0a, 0x0c, 0x0d, 0x20]) WS[c] = 1;
const DELIM = new Uint8Array(256);
for (const c of '()<>[]{}/%') DELIM[c.charCodeAt(0)] = 1;
const isRegular = (c: number) => !WS[c] && !DELIM[c];

class ParseLimit extends Error {}

/** A tolerant reader of PDF values over a buffer. */
export class PdfLexer {
  pos = 0;
  constructor(readonly b: Buffer) {}

  skipWs(): void {
    const b = this.b;
    while (this.pos < b.length) {
      const c = b[this.pos];
      if (WS[c]) this.pos++;
      else if (c === 0x25) {
        // comment to end of line
        while (this.pos < b.length && b[this.pos] !== 0x0a && b[this.pos] !== 0x0d) this.pos++;
      } else break;
    }
  }

  /** Reads one value; undefined at the end of input or on a stray delimiter (skipped). */
  value(depth = 0): PdfValue | undefined {
    if (depth > MAX_DEPTH) throw new ParseLimit('nesting too deep');
    this.skipWs();
    const b = this.b;
    if (this.pos >= b.length) return undefined;
    const c = b[this.pos];
    if (c === 0x2f) return this.name();
    if (c === 0x28) return this.literal();
    if (c === 0x3c) {
      if (b[this.pos + 1] === 0x3c) return this.dict(depth);
      return this.hex();
    }
    if (c === 0x5b) {
      this.pos++;
      const arr: PdfValue[] = [];
      for (;;) {
        this.skipWs();
        if (this.pos >= b.length) return arr;
        if (b[this.pos] === 0x5d) {
          this.pos++;
          return arr;
        }
        const before = this.pos;
        const v = this.value(depth + 1);
        if (v === undefined) {
          if (this.pos === before) this.pos++;
          continue;
        }
        if (v instanceof PdfKeyword && (v.word === 'endobj' || v.word === 'stream')) {
          this.pos -= v.word.length;
          return arr;
        }
        if (arr.length >= MAX_ITEMS) throw new ParseLimit('array too long');
        arr.push(v);
      }
    }
    if ((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e) return this.numberOrRef();
    if (isRegular(c)) {
      const start = this.pos;
      while (this.pos < b.length && isRegular(b[this.pos])) this.pos++;
      const word = b.toString('latin1', start, this.pos);
      if (word === 'true') return true;
      if (word === 'false') return false;
      if (word === 'null') return null;
      return new PdfKeyword(word);
    }
    // A stray delimiter (')', '>', ']', '{', '}'): skip it.
    this.pos++;
    return undefined;
  }

  private name(): PdfName {
    const b = this.b;
    this.pos++;
    const start = this.pos;
    while (this.pos < b.length && isRegular(b[this.pos])) this.pos++;
    return new PdfName(decodeName(b.toString('latin1', start, this.pos)).name);
  }

  private literal(): PdfString {
    const b = this.b;
    this.pos++;
    const out: number[] = [];
    let depth = 1;
    while (this.pos < b.length) {
      const c = b[this.pos++];
      if (c === 0x5c) {
        const e = b[this.pos++];
        if (e === undefined) break;
        switch (e) {
          case 0x6e: out.push(0x0a); break;
          case 0x72: out.push(0x0d); break;
          case 0x74: out.push(0x09); break;
          case 0x62: out.push(0x08); break;
          case 0x66: out.push(0x0c); break;
          case 0x0d:
            if (b[this.pos] === 0x0a) this.pos++;
            break;
          case 0x0a:
            break;
          default:
            if (e >= 0x30 && e <= 0x37) {
              let v = e - 0x30;
              for (let k = 0; k < 2 && b[this.pos] >= 0x30 && b[this.pos] <= 0x37; k++) v = v * 8 + (b[this.pos++] - 0x30);
              out.push(v & 0xff);
            } else out.push(e);
        }
      } else if (c === 0x28) {
        depth++;
        out.push(c);
      } else if (c === 0x29) {
        if (--depth === 0) break;
        out.push(c);
      } else out.push(c);
      if (out.length > STREAM_CAP) throw new ParseLimit('string too long');
    }
    return new PdfString(Buffer.from(out));
  }

  private hex(): PdfString {
    const b = this.b;
    this.pos++;
    const end = b.indexOf(0x3e, this.pos);
    const stop = end < 0 ? b.length : end;
    const out: number[] = [];
    let hi = -1;
    for (let i = this.pos; i < stop; i++) {
      const v = hexDigit(b[i]);
      if (v < 0) continue;
      if (hi < 0) hi = v;
      else {
        out.push((hi << 4) | v);
        hi = -1;
      }
    }
    if (hi >= 0) out.push(hi << 4);
    this.pos = end < 0 ? b.length : end + 1;
    return new PdfString(Buffer.from(out));
  }

  private dict(depth: number): PdfDict {
    const b = this.b;
    this.pos += 2;
    const d: PdfDict = new Map();
    for (;;) {
      this.skipWs();
      if (this.pos >= b.length) return d;
      if (b[this.pos] === 0x3e && b[this.pos + 1] === 0x3e) {
        this.pos += 2;
        return d;
      }
      const before = this.pos;
      const key = this.value(depth + 1);
      if (key === undefined) {
        if (this.pos === before) this.pos++;
        continue;
      }
      if (key instanceof PdfKeyword && (key.word === 'endobj' || key.word === 'stream')) {
        this.pos -= key.word.length;
        return d;
      }
      if (!(key instanceof PdfName)) continue;
      this.skipWs();
      if (b[this.pos] === 0x3e && b[this.pos + 1] === 0x3e) {
        d.set(key.name, null);
        continue;
      }
      const v = this.value(depth + 1);
      if (d.size >= MAX_ITEMS) throw new ParseLimit('dictionary too long');
      d.set(key.name, v === undefined ? null : v);
    }
  }

  private numberOrRef(): number | PdfRef | undefined {
    const b = this.b;
    const start = this.pos;
    while (this.pos < b.length && /[0-9+\-.]/.test(String.fromCharCode(b[this.pos]))) this.pos++;
    const text = b.toString('latin1', start, this.pos);
    const n = Number(text);
    if (!Number.isFinite(n)) return 0;
    if (/^\d+$/.test(text)) {
      // `num gen R`?
      const save = this.pos;
      const m = /^[\0\t\n\f\r ]+(\d{1,5})[\0\t\n\f\r ]+R(?=[\0\t\n\f\r ()<>[\]{}/%]|$)/.exec(b.toString('latin1', this.pos, Math.min(b.length, this.pos + 32)));
      if (m) {
        this.pos = save + m[0].length;
        return new PdfRef(n, Number(m[1]));
      }
    }
    return n;
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Decodes `#xx` escapes in a name; `obfuscated` when an escape stands for a letter or digit. */
export function decodeName(raw: string): { name: string; obfuscated: boolean } {
  if (!raw.includes('#')) return { name: raw, obfuscated: false };
  let obfuscated = false;
  const name = raw.replace(/#([0-9A-Fa-f]{2})/g, (_, h: string) => {
    const ch = String.fromCharCode(parseInt(h, 16));
    if (/[A-Za-z0-9]/.test(ch)) obfuscated = true;
    return ch;
  });
  return { name, obfuscated };
}

// ---------------------------------------------------------------------------------------------
// Document

interface Stats {
  keywords: Record<string, number>;
  obfuscated: number;
  obfuscatedNames: string[];
}

const NAME_RE = /\/([^\0\t\n\f\r ()<>[\]{}/%]*)/g;

function countNames(text: string, stats: Stats): void {
  NAME_RE.lastIndex = 0;
  for (let m = NAME_RE.exec(text); m; m = NAME_RE.exec(text)) {
    const { name, obfuscated } = decodeName(m[1]);
    if (KEYWORD_SET.has(name)) stats.keywords[name] = (stats.keywords[name] ?? 0) + 1;
    if (obfuscated) {
      stats.obfuscated++;
      if (stats.obfuscatedNames.length < MAX_LISTED) stats.obfuscatedNames.push(`/${m[1].slice(0, 100)}`);
    }
  }
}

interface Problems {
  items: { reason: string; object?: number }[];
}

class OutOfTime extends Error {}

/** Parses every `N G obj` of the file and every object of its object streams. */
class PdfDocument {
  readonly objects: PdfObject[] = [];
  readonly byNum = new Map<number, PdfObject>();
  readonly trailers: PdfDict[] = [];
  readonly stats: Stats = { keywords: {}, obfuscated: 0, obfuscatedNames: [] };
  readonly problems: Problems = { items: [] };
  decodedBytes = 0;
  bombs: { object: number; decodedBeforeStop: number; compressedSize: number }[] = [];
  capped: { object: number; reason: string }[] = [];
  private readonly text: string;
  private readonly decodeCache = new Map<PdfObject, Decoded>();
  /** Set when the document is encrypted and a password opened it. */
  decryptor?: Decryptor;
  /** The outcome of opening an encrypted document (absent: not encrypted). */
  security?: { opened: true; method: string; openedWith: string } | { opened: false; reason: string; passwordsTried: number };
  private encryptObj?: number;

  constructor(
    readonly b: Buffer,
    private readonly ctx: ScanContext,
  ) {
    this.text = b.toString('latin1');
  }

  problem(reason: string, object?: number): void {
    if (this.problems.items.length < MAX_LISTED) this.problems.items.push({ reason, ...(object === undefined ? {} : { object }) });
  }

  checkTime(): void {
    if (this.ctx.signal.aborted || Date.now() >= this.ctx.deadline - 250) throw new OutOfTime();
  }

  parse(): void {
    const { b, text } = this;
    const re = /(\d{1,10})[\0\t\n\f\r ]+(\d{1,5})[\0\t\n\f\r ]+obj(?=[\0\t\n\f\r ()<>[\]{}/%]|$)/g;
    const streams: { start: number; end: number }[] = [];
    let n = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if ((++n & 255) === 0) this.checkTime();
      if (this.objects.length >= MAX_OBJECTS) {
        this.capped.push({ object: Number(m[1]), reason: 'object_count' });
        break;
      }
      const lx = new PdfLexer(b);
      lx.pos = m.index + m[0].length;
      const num = Number(m[1]);
      let value: PdfValue | undefined;
      try {
        value = lx.value();
      } catch (err) {
        this.problem(err instanceof ParseLimit ? err.message : 'unreadable object', num);
        continue;
      }
      const obj: PdfObject = { num, gen: Number(m[2]), value: value ?? null };
      lx.skipWs();
      if (value instanceof Map && text.startsWith('stream', lx.pos)) {
        let start = lx.pos + 6;
        if (b[start] === 0x0d && b[start + 1] === 0x0a) start += 2;
        else if (b[start] === 0x0a || b[start] === 0x0d) start += 1;
        const declared = value.get('Length');
        let end = -1;
        let after = -1;
        if (typeof declared === 'number' && declared >= 0 && start + declared <= b.length) {
          const probe = new PdfLexer(b);
          probe.pos = start + declared;
          probe.skipWs();
          if (text.startsWith('endstream', probe.pos)) {
            end = start + declared;
            after = probe.pos + 9;
          }
        }
        if (end < 0) {
          const found = text.indexOf('endstream', start);
          if (found < 0) {
            this.problem('stream without endstream', num);
            end = b.length;
            after = start;
          } else {
            end = found;
            if (b[end - 1] === 0x0a) end--;
            if (b[end - 1] === 0x0d) end--;
            if (end < start) end = start;
            after = found + 9;
          }
        }
        obj.stream = { start, end };
        streams.push({ start, end });
        re.lastIndex = Math.max(after, re.lastIndex);
      } else {
        re.lastIndex = Math.max(lx.pos, re.lastIndex);
      }
      this.objects.push(obj);
      this.byNum.set(num, obj);
    }
    // Keywords are counted outside stream bodies (binary noise) and in object streams below.
    let from = 0;
    for (const s of streams) {
      if (s.start > from) countNames(text.slice(from, s.start), this.stats);
      from = Math.max(from, s.end);
    }
    countNames(text.slice(from), this.stats);
    const tre = /trailer/g;
    for (let m = tre.exec(text); m && this.trailers.length < 1000; m = tre.exec(text)) {
      const lx = new PdfLexer(b);
      lx.pos = m.index + 7;
      try {
        const v = lx.value();
        if (v instanceof Map) this.trailers.push(v);
      } catch {
        this.problem('unreadable trailer');
      }
    }
  }

  /**
   * Opens an encrypted document with the Standard security handler (the empty password first,
   * then `passwords`) and decrypts the strings of every top-level object; streams are decrypted
   * as they are decoded. Call after parse(), before expandObjectStreams().
   */
  openEncryption(passwords: readonly string[]): void {
    const holders = [...this.trailers, ...this.objects.filter((o) => o.value instanceof Map && nameOf(o.value.get('Type')) === 'XRef').map((o) => o.value as PdfDict)];
    const holder = holders.find((t) => t.has('Encrypt'));
    if (!holder) return;
    const ref = holder.get('Encrypt');
    if (ref instanceof PdfRef) this.encryptObj = ref.num;
    const enc = this.resolve(ref);
    if (!(enc instanceof Map)) {
      this.security = { opened: false, reason: 'the /Encrypt dictionary cannot be read', passwordsTried: 0 };
      return;
    }
    const num = (k: string) => {
      const v = this.resolve(enc.get(k));
      return typeof v === 'number' ? v : undefined;
    };
    const bytes = (k: string) => {
      const v = this.resolve(enc.get(k));
      return v instanceof PdfString ? v.bytes : undefined;
    };
    const ids = this.resolve(holders.find((t) => t.has('ID'))?.get('ID'));
    const id0 = Array.isArray(ids) && ids[0] instanceof PdfString ? ids[0].bytes : Buffer.alloc(0);
    const cf = this.resolve(enc.get('CF'));
    const methodOf = (which: 'StmF' | 'StrF') => {
      const name = nameOf(this.resolve(enc.get(which)));
      if (!name || name === 'Identity') return name ?? 'Identity';
      const f = cf instanceof Map ? this.resolve(cf.get(name)) : undefined;
      return f instanceof Map ? (nameOf(this.resolve(f.get('CFM'))) ?? 'None') : 'None';
    };
    const o = bytes('O');
    const u = bytes('U');
    if (!o || !u) {
      this.security = { opened: false, reason: 'the /Encrypt dictionary lacks /O or /U', passwordsTried: 0 };
      return;
    }
    const params: EncryptParams = {
      filter: nameOf(this.resolve(enc.get('Filter'))),
      v: num('V') ?? 0,
      r: num('R') ?? 0,
      length: num('Length'),
      o,
      u,
      oe: bytes('OE'),
      ue: bytes('UE'),
      p: num('P') ?? 0,
      encryptMetadata: this.resolve(enc.get('EncryptMetadata')) !== false,
      stmMethod: methodOf('StmF'),
      strMethod: methodOf('StrF'),
    };
    const r = openStandardSecurity(params, id0, passwords);
    if (!r.ok) {
      this.security = { opened: false, reason: r.reason, passwordsTried: r.passwordsTried };
      return;
    }
    this.decryptor = r.decryptor;
    this.security = { opened: true, method: r.decryptor.method, openedWith: r.decryptor.openedWith };
    const d = r.decryptor;
    const fix = (v: PdfValue, obj: PdfObject, depth: number): PdfValue => {
      if (v instanceof PdfString) return new PdfString(d.string(obj.num, obj.gen, v.bytes));
      if (depth > MAX_DEPTH) return v;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) v[i] = fix(v[i], obj, depth + 1);
      } else if (v instanceof Map) {
        for (const [k, x] of v) if (x instanceof PdfString || x instanceof Map || Array.isArray(x)) v.set(k, fix(x, obj, depth + 1));
      }
      return v;
    };
    for (const obj of this.objects) {
      // the /Encrypt dictionary and cross-reference streams are never encrypted
      if (obj.num === this.encryptObj || obj.inObjStm !== undefined || (obj.value instanceof Map && nameOf(obj.value.get('Type')) === 'XRef')) continue;
      obj.value = fix(obj.value, obj, 0);
    }
  }

  /** Decodes each /ObjStm and parses the objects it holds. */
  async expandObjectStreams(): Promise<void> {
    const containers = this.objects.filter((o) => o.stream && o.value instanceof Map && nameOf(o.value.get('Type')) === 'ObjStm');
    for (const os of containers) {
      this.checkTime();
      const dict = os.value as PdfDict;
      const decoded = await this.decode(os);
      if (!decoded) continue;
      countNames(decoded.toString('latin1'), this.stats);
      const count = this.resolve(dict.get('N'));
      const first = this.resolve(dict.get('First'));
      if (typeof count !== 'number' || typeof first !== 'number' || first < 0 || first > decoded.length) {
        this.problem('object stream without a valid /N and /First', os.num);
        continue;
      }
      const lx = new PdfLexer(decoded);
      const pairs: [number, number][] = [];
      for (let i = 0; i < Math.min(count, MAX_OBJECTS); i++) {
        const a = lx.value();
        const c = lx.value();
        if (typeof a !== 'number' || typeof c !== 'number') break;
        pairs.push([a, c]);
      }
      if (pairs.length < count) this.problem('object stream header shorter than /N', os.num);
      for (const [num, off] of pairs) {
        if (this.objects.length >= MAX_OBJECTS) break;
        const ol = new PdfLexer(decoded);
        ol.pos = first + off;
        if (ol.pos >= decoded.length) {
          this.problem('object stream offset out of range', os.num);
          continue;
        }
        try {
          const value = ol.value();
          const obj: PdfObject = { num, gen: 0, value: value ?? null, inObjStm: os.num };
          this.objects.push(obj);
          if (!this.byNum.has(num)) this.byNum.set(num, obj);
        } catch (err) {
          this.problem(err instanceof ParseLimit ? err.message : 'unreadable object in object stream', num);
        }
      }
    }
  }

  resolve(v: PdfValue | undefined, hops = 0): PdfValue | undefined {
    let cur = v;
    for (let i = hops; cur instanceof PdfRef && i < 16; i++) cur = this.byNum.get(cur.num)?.value;
    return cur instanceof PdfRef ? undefined : cur;
  }

  object(v: PdfValue | undefined): PdfObject | undefined {
    return v instanceof PdfRef ? this.byNum.get(v.num) : undefined;
  }

  /** The decoded body of a stream object (cached), bounded; undefined when nothing could be read. */
  async decode(obj: PdfObject): Promise<Buffer | undefined> {
    if (!obj.stream || !(obj.value instanceof Map)) return undefined;
    const cached = this.decodeCache.get(obj);
    if (cached) return cached.data;
    let raw = this.b.subarray(obj.stream.start, obj.stream.end);
    if (this.decryptor && obj.num !== this.encryptObj && nameOf(obj.value.get('Type')) !== 'XRef') raw = this.decryptor.stream(obj.num, obj.gen, raw);
    const filters = this.filtersOf(obj.value);
    const limits = this.ctx.limits;
    const budgetLeft = Math.max(0, Math.min(DECODE_BUDGET, limits.maxTotalExtractedBytes) - this.decodedBytes);
    const ratioCap = Math.max(MIN_BOMB_BYTES, Math.floor(limits.maxCompressionRatio * Math.max(1, raw.length)));
    const cap = Math.min(budgetLeft, STREAM_CAP, ratioCap);
    const r: Decoded = filters.length === 0 ? { data: raw.length > cap ? raw.subarray(0, cap) : raw, truncated: raw.length > cap } : await decodeStream(raw, filters, cap);
    this.decodedBytes += filters.length === 0 ? 0 : r.data.length;
    this.decodeCache.set(obj, r);
    if (r.truncated) {
      if (cap === ratioCap) this.bombs.push({ object: obj.num, decodedBeforeStop: r.data.length, compressedSize: raw.length });
      else this.capped.push({ object: obj.num, reason: cap === budgetLeft ? 'decode_budget' : 'stream_size' });
    }
    if (r.error) this.problem(`stream cannot be decoded (${r.error})`, obj.num);
    if (r.stoppedAt && r.stoppedAt !== 'Crypt') this.problem(`stream filter ${r.stoppedAt} not decoded`, obj.num);
    return r.data;
  }

  private filtersOf(dict: PdfDict): FilterSpec[] {
    const f = this.resolve(dict.get('Filter'));
    const p = this.resolve(dict.get('DecodeParms') ?? dict.get('DP'));
    const names = Array.isArray(f) ? f.map((x) => nameOf(this.resolve(x))) : [nameOf(f)];
    const params = Array.isArray(p) ? p.map((x) => this.resolve(x)) : [p];
    const out: FilterSpec[] = [];
    names.forEach((name, i) => {
      if (!name) return;
      const pd = params[i];
      const spec: FilterSpec = { name };
      if (pd instanceof Map) {
        const num = (k: string) => {
          const v = this.resolve(pd.get(k));
          return typeof v === 'number' ? v : undefined;
        };
        spec.params = { Predictor: num('Predictor'), Colors: num('Colors'), BitsPerComponent: num('BitsPerComponent'), Columns: num('Columns'), EarlyChange: num('EarlyChange') };
      }
      out.push(spec);
    });
    return out.slice(0, 16);
  }
}

function nameOf(v: PdfValue | undefined): string | undefined {
  return v instanceof PdfName ? v.name : undefined;
}

// ---------------------------------------------------------------------------------------------
// Analysis

interface JsSource {
  object: number;
  code: string;
}

interface Analysis {
  scripts: JsSource[];
  jsActions: number;
  launches: { object: number; targets: string[]; executable: boolean }[];
  uris: string[];
  autos: { trigger: string; object: number; kinds: string[] }[];
  embedded: { object: number; name?: string }[];
  xfa: boolean;
  richMedia: boolean;
  encrypted: boolean;
}

async function analyse(doc: PdfDocument): Promise<Analysis> {
  const a: Analysis = { scripts: [], jsActions: 0, launches: [], uris: [], autos: [], embedded: [], xfa: false, richMedia: false, encrypted: false };
  const efNames = new Map<number, string>();
  const jsValues: { object: number; value: PdfValue }[] = [];
  const embeddedObjs = new Set<number>();
  const seenUris = new Set<string>();

  const visitDict = (d: PdfDict, owner: PdfObject) => {
    const s = nameOf(d.get('S'));
    const type = nameOf(d.get('Type'));
    if (d.has('JS')) {
      a.jsActions++;
      jsValues.push({ object: owner.num, value: d.get('JS')! });
    } else if (s === 'JavaScript') a.jsActions++;
    if (s === 'Launch') {
      const targets = launchTargets(doc, d);
      a.launches.push({ object: owner.num, targets, executable: targets.some((t) => EXECUTABLE_TARGET.test(t)) });
    }
    if (s === 'URI') {
      const u = doc.resolve(d.get('URI'));
      if (u instanceof PdfString) {
        const text = u.text().trim();
        if (text && !seenUris.has(text) && seenUris.size < 1000) {
          seenUris.add(text);
          a.uris.push(text);
        }
      }
    }
    if (s === 'RichMedia' || type === 'RichMedia' || d.has('RichMediaContent') || d.has('RichMediaSettings')) a.richMedia = true;
    if (d.has('OpenAction')) {
      const kinds = actionKinds(doc, d.get('OpenAction'));
      if (kinds.size) a.autos.push({ trigger: 'OpenAction', object: owner.num, kinds: [...kinds] });
    }
    const aa = doc.resolve(d.get('AA'));
    if (aa instanceof Map) {
      for (const [trigger, action] of aa) {
        if (!AUTO_TRIGGERS.has(trigger)) continue;
        const kinds = actionKinds(doc, action);
        if (kinds.size) a.autos.push({ trigger: `AA/${trigger}`, object: owner.num, kinds: [...kinds] });
      }
    }
    if (type === 'EmbeddedFile' && owner.stream && owner.value === d) embeddedObjs.add(owner.num);
    const ef = doc.resolve(d.get('EF'));
    if (ef instanceof Map) {
      const fname = fileSpecName(doc, d);
      for (const v of ef.values()) {
        const target = doc.object(v);
        if (target?.stream) {
          embeddedObjs.add(target.num);
          if (fname && !efNames.has(target.num)) efNames.set(target.num, fname);
        }
      }
    }
    if (d.has('XFA')) a.xfa = true;
    if (d.has('Encrypt')) a.encrypted = true;
  };

  const walk = (v: PdfValue, owner: PdfObject, depth: number) => {
    if (depth > MAX_DEPTH) return;
    if (v instanceof Map) {
      visitDict(v, owner);
      for (const x of v.values()) if (x instanceof Map || Array.isArray(x)) walk(x, owner, depth + 1);
    } else if (Array.isArray(v)) {
      for (const x of v) if (x instanceof Map || Array.isArray(x)) walk(x, owner, depth + 1);
    }
  };
  let n = 0;
  for (const o of doc.objects) {
    if ((++n & 1023) === 0) doc.checkTime();
    walk(o.value, o, 0);
  }
  const pseudo: PdfObject = { num: -1, gen: 0, value: null };
  for (const t of doc.trailers) walk(t, pseudo, 0);
  if (doc.stats.keywords.Encrypt) a.encrypted = true;

  for (const num of embeddedObjs) {
    if (a.embedded.length >= MAX_EMBEDDED) break;
    a.embedded.push({ object: num, name: efNames.get(num) });
  }
  const seenCode = new Set<string>();
  for (const j of jsValues) {
    if (a.scripts.length >= MAX_SCRIPTS) break;
    doc.checkTime();
    let code: string | undefined;
    const resolved = doc.resolve(j.value);
    const target = doc.object(j.value);
    if (resolved instanceof PdfString) code = resolved.text();
    else if (target?.stream) {
      const data = await doc.decode(target);
      if (data) code = textOf(data);
    }
    if (!code || !code.trim() || seenCode.has(code)) continue;
    seenCode.add(code);
    a.scripts.push({ object: target?.num ?? j.object, code });
  }
  return a;
}

/** The kinds of action a value leads to, following /Next chains (bounded). */
function actionKinds(doc: PdfDocument, v: PdfValue | undefined): Set<string> {
  const kinds = new Set<string>();
  const seen = new Set<unknown>();
  const visit = (x: PdfValue | undefined, depth: number) => {
    const d = doc.resolve(x);
    if (depth > 16 || d === undefined || seen.has(d)) return;
    seen.add(d);
    if (Array.isArray(d)) {
      // A destination array, or an array of /Next actions.
      for (const e of d) if (e instanceof PdfRef || e instanceof Map) visit(e, depth + 1);
      return;
    }
    if (!(d instanceof Map)) return;
    const s = nameOf(d.get('S'))?.toLowerCase();
    if (d.has('JS')) kinds.add('javascript');
    if (s && AUTO_KINDS.has(s)) kinds.add(s);
    if (s === 'rendition' && d.has('JS')) kinds.add('javascript');
    if (d.has('Next')) visit(d.get('Next'), depth + 1);
  };
  visit(v, 0);
  return kinds;
}

function stringOf(doc: PdfDocument, v: PdfValue | undefined): string | undefined {
  const r = doc.resolve(v);
  return r instanceof PdfString ? r.text() : undefined;
}

/** The name a file specification gives (/UF, /F, /DOS, /Unix, /Mac), or a plain string one. */
function fileSpecName(doc: PdfDocument, spec: PdfValue | undefined): string | undefined {
  const r = doc.resolve(spec);
  if (r instanceof PdfString) return r.text();
  if (!(r instanceof Map)) return undefined;
  for (const k of ['UF', 'F', 'DOS', 'Unix', 'Mac']) {
    const s = stringOf(doc, r.get(k));
    if (s) return s;
  }
  return undefined;
}

function launchTargets(doc: PdfDocument, d: PdfDict): string[] {
  const out: string[] = [];
  const f = fileSpecName(doc, d.get('F'));
  if (f) out.push(f);
  for (const k of ['Win', 'Unix', 'Mac']) {
    const w = doc.resolve(d.get(k));
    if (!(w instanceof Map)) continue;
    const file = stringOf(doc, w.get('F')) ?? fileSpecName(doc, w.get('F'));
    const params = stringOf(doc, w.get('P'));
    if (file || params) out.push([file, params].filter(Boolean).join(' '));
  }
  return out.map((t) => t.slice(0, 1000)).slice(0, MAX_LISTED);
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const pdfScanner: Scanner = {
  name: 'pdf',
  version: '1',
  layer: 'document',
  accepts: (info) => info.kind === 'file' && info.fileType === 'pdf',
  async scan(input, ctx) {
    const evidence: Finding[] = [];
    const cut = input.info.size > PDF_MAX_BYTES;
    const b = cut ? await input.head(PDF_MAX_BYTES) : await input.bytes(PDF_MAX_BYTES);
    const doc = new PdfDocument(b, ctx);
    let timedOut = false;
    let a: Analysis | undefined;
    try {
      doc.parse();
      doc.openEncryption(ctx.options.passwords);
      await doc.expandObjectStreams();
      a = await analyse(doc);
    } catch (err) {
      if (!(err instanceof OutOfTime)) throw err;
      timedOut = true;
    }
    const attributes: Record<string, unknown> = {
      objects: doc.objects.length,
      objectStreamObjects: doc.objects.filter((o) => o.inObjStm !== undefined).length,
      keywords: doc.stats.keywords,
      obfuscatedNames: doc.stats.obfuscated,
      hasEof: b.lastIndexOf('%%EOF') >= 0,
    };
    const refused: string[] = [];
    if (a) {
      const children = await emitChildren(doc, a, ctx, input.info, refused);
      Object.assign(attributes, {
        javascript: a.scripts.length,
        embeddedFiles: a.embedded.map((e) => e.name ?? `object ${e.object}`).slice(0, MAX_LISTED),
        uris: a.uris.slice(0, MAX_URIS),
        encrypted: a.encrypted,
        ...children,
      });
      evidence.push(...findings(doc, a));
    } else if (doc.stats.keywords.JS || doc.stats.keywords.JavaScript) {
      evidence.push({ heuristic: 'PDF_JAVASCRIPT', details: 'JavaScript keywords (analysis cut short)', data: { keywords: doc.stats.keywords } });
    }
    if (doc.stats.obfuscated > 0) {
      evidence.push({
        heuristic: 'PDF_NAME_OBFUSCATION',
        details: `${doc.stats.obfuscated} name(s) written with #xx escapes: ${doc.stats.obfuscatedNames.slice(0, 5).join(', ')}`,
        data: { count: doc.stats.obfuscated, names: doc.stats.obfuscatedNames },
      });
    }
    if (doc.objects.length === 0) doc.problem('no objects found');
    if (doc.problems.items.length > 0) {
      evidence.push({ heuristic: 'PDF_MALFORMED', details: doc.problems.items.slice(0, 3).map((p) => p.reason).join('; '), data: { problems: doc.problems.items } });
    }
    for (const bomb of doc.bombs.slice(0, MAX_LISTED)) {
      evidence.push({ heuristic: 'ARCHIVE_BOMB', details: `stream of object ${bomb.object} expands beyond ${ctx.limits.maxCompressionRatio}×`, data: { ...bomb, limit: ctx.limits.maxCompressionRatio } });
    }
    const notScanned: Record<string, unknown>[] = [];
    if (cut) notScanned.push({ reason: 'size', scannedBytes: PDF_MAX_BYTES });
    if (timedOut) notScanned.push({ reason: 'deadline' });
    for (const c of doc.capped.slice(0, MAX_LISTED)) notScanned.push(c);
    for (const r of refused) notScanned.push({ reason: 'child_refused', refusal: r });
    if (notScanned.length) {
      evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `PDF not fully analysed: ${[...new Set(notScanned.map((n) => String(n.reason)))].join(', ')}`, data: { items: notScanned } });
    }
    return { evidence, attributes };
  },
};

function findings(doc: PdfDocument, a: Analysis): Finding[] {
  const out: Finding[] = [];
  const kw = doc.stats.keywords;
  if (a.scripts.length > 0 || a.jsActions > 0 || kw.JS || kw.JavaScript) {
    out.push({
      heuristic: 'PDF_JAVASCRIPT',
      details: a.scripts.length ? `${a.scripts.length} script(s): objects ${a.scripts.slice(0, 5).map((s) => s.object).join(', ')}` : 'JavaScript keywords',
      data: { scripts: a.scripts.length, objects: a.scripts.map((s) => s.object).slice(0, MAX_LISTED), keywords: { JS: kw.JS ?? 0, JavaScript: kw.JavaScript ?? 0 } },
    });
  }
  if (a.autos.length > 0) {
    const kinds = [...new Set(a.autos.flatMap((x) => x.kinds))];
    out.push({
      heuristic: 'PDF_AUTO_ACTION',
      details: `${a.autos.slice(0, 3).map((x) => `${x.trigger} → ${x.kinds.join('+')}`).join('; ')}`,
      data: { triggers: a.autos.slice(0, MAX_LISTED), kinds },
    });
  }
  if (a.launches.length > 0) {
    const embeddedNames = new Set(a.embedded.map((e) => e.name?.toLowerCase()).filter(Boolean));
    const targets = a.launches.flatMap((l) => l.targets);
    const launchesEmbedded = targets.some((t) => [...embeddedNames].some((n) => n && t.toLowerCase().includes(n)));
    out.push({
      heuristic: 'PDF_LAUNCH',
      details: targets.length ? `launches ${targets.slice(0, 3).join('; ')}` : 'Launch action',
      data: { count: a.launches.length, targets: targets.slice(0, MAX_LISTED), executable: a.launches.some((l) => l.executable), launchesEmbeddedFile: launchesEmbedded },
    });
  }
  if (a.embedded.length > 0) {
    out.push({
      heuristic: 'PDF_EMBEDDED_FILE',
      details: `${a.embedded.length} embedded file(s): ${a.embedded.slice(0, 5).map((e) => e.name ?? `object ${e.object}`).join(', ')}`,
      data: { count: a.embedded.length, names: a.embedded.map((e) => e.name ?? null).slice(0, MAX_LISTED) },
    });
  }
  if (a.xfa) out.push({ heuristic: 'PDF_XFA', details: 'XML Forms Architecture form' });
  if (a.richMedia || kw.RichMedia) out.push({ heuristic: 'PDF_RICH_MEDIA', details: 'RichMedia (Flash or other embedded player content)' });
  const sec = doc.security;
  if (sec?.opened) out.push({ heuristic: 'PDF_DECRYPTED', details: `${sec.method} encryption opened with ${sec.openedWith === 'empty' ? 'the empty user password' : `a supplied ${sec.openedWith} password`}; strings and streams were decrypted and analysed`, data: { method: sec.method, openedWith: sec.openedWith } });
  else if (a.encrypted) out.push({ heuristic: 'PDF_ENCRYPTED', details: `encrypted: ${sec && !sec.opened ? sec.reason : 'strings and streams were not decrypted'}`, data: sec && !sec.opened ? { passwordsTried: sec.passwordsTried, reason: sec.reason } : undefined });
  return out;
}

async function emitChildren(
  doc: PdfDocument,
  a: Analysis,
  ctx: ScanContext,
  info: Pick<SampleInfo, 'depth' | 'relation'>,
  refused: string[],
): Promise<Record<string, unknown>> {
  let stop = false;
  const emit = async (child: ChildSpec): Promise<boolean> => {
    if (stop) return false;
    const answer = await ctx.emitChild(child);
    if (answer === true) return true;
    stop = true;
    refused.push(answer);
    return false;
  };
  let scripts = 0;
  let files = 0;
  let links = 0;
  let images = 0;
  // Encrypted strings and streams that no password opened are ciphertext: nothing worth scanning.
  if (!a.encrypted || doc.decryptor) {
    for (const s of a.scripts) {
      if (await emit({ name: `object-${s.object}.js`, relation: 'script', data: Buffer.from(s.code, 'utf8'), meta: { object: s.object } })) scripts++;
    }
    for (const e of a.embedded) {
      doc.checkTime();
      const obj = doc.byNum.get(e.object);
      if (!obj) continue;
      const data = await doc.decode(obj);
      if (!data) continue;
      const name = sanitiseMemberName(e.name ?? `embedded-${e.object}.bin`, `embedded-${e.object}.bin`).name;
      if (await emit({ name, relation: 'embedded_object', data, meta: { object: e.object, ...(e.name ? { pdfName: e.name.slice(0, 1024) } : {}) } })) files++;
    }
    // JPEG images go out as they are stored, so that the QR scanner reads codes printed in the PDF.
    for (const img of jpegImages(doc)) {
      if (await emit({ name: `image-${img.num}.jpg`, relation: 'embedded_object', data: img.data, meta: { object: img.num, image: true } })) images++;
    }
  }
  if (mayFollowLinks(info)) {
    let stopLinks = false;
    for (const u of a.uris) {
      if (links >= MAX_URIS || stopLinks) break;
      if (!/^https?:\/\//i.test(u)) continue;
      let href: string;
      try {
        href = new URL(u).href;
      } catch {
        continue;
      }
      const answer = await ctx.emitChild({ name: href, relation: 'link', url: href });
      if (answer === true) links++;
      else stopLinks = true;
    }
  }
  return { emittedScripts: scripts, emittedFiles: files, emittedLinks: links, emittedImages: images };
}

/** Image XObjects stored as plain JPEG (/DCTDecode alone), at most 20 of at most 16 MiB each. */
function jpegImages(doc: PdfDocument): { num: number; data: Buffer }[] {
  const out: { num: number; data: Buffer }[] = [];
  for (const o of doc.objects) {
    if (out.length >= 20) break;
    if (!o.stream || !(o.value instanceof Map) || nameOf(doc.resolve(o.value.get('Subtype'))) !== 'Image') continue;
    const f = doc.resolve(o.value.get('Filter'));
    const filters = Array.isArray(f) ? f.map((x) => nameOf(doc.resolve(x))) : [nameOf(f)];
    if (filters.length !== 1 || filters[0] !== 'DCTDecode') continue;
    const data = doc.b.subarray(o.stream.start, o.stream.end);
    if (data.length < 4 || data.length > 16 * 1024 * 1024 || data[0] !== 0xff || data[1] !== 0xd8) continue;
    out.push({ num: o.num, data });
  }
  return out;
}
