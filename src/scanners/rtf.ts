/**
 * RTF: walks the group structure once (tolerantly, as Word does: unbalanced braces and junk do
 * not stop it), decodes every `\object`'s `\objdata` (hex digits, plus `\bin` runs) into bytes,
 * reads the OLE1 object header and emits what the object carries as an `embedded_object`
 * child: the file inside a Packager object, the compound file of an embedded OLE2 object
 * (scanned in turn by the OLE scanner: macros, Equation Editor...), or the raw bytes.
 *
 * Findings: DOC_EMBEDDED_OBJECT (every object), DOC_EMBEDDED_PACKAGE/DOC_PACKAGE_EXECUTABLE,
 * DOC_EQUATION_EDITOR (Equation.3 class or CLSID 0002CE02-…), DOC_OLE2LINK (OLE2Link objects,
 * `\objautlink`, with the URLs they name emitted as `link` children), RTF_OBJUPDATE, and
 * RTF_OBFUSCATION for the tricks exploit kits use to hide objects from parsers (control words
 * and junk inside hex data, odd digit counts, deep nesting, `\bin` runs past the end, a
 * non-standard `{\rt` header). Bad input is a finding, never an exception.
 *
 * @example
 * const r = await runScanner(rtfScanner, Buffer.from('{\\rtf1{\\object\\objemb{\\*\\objdata 0105...}}}'));
 * r.children[0].relation // 'embedded_object'
 */
import { isExecutableName } from './file-type.ts';
import { CLSID, ChildSink, packageName, parsePackage } from './ole.ts';
import type { Finding, Scanner } from './types.ts';
import { sanitiseMemberName } from './archive-common.ts';

/** Largest RTF parsed in memory. */
export const MAX_RTF_BYTES = 128 * 1024 * 1024;
/** Group nesting deeper than this counts as obfuscation (real documents stay far below). */
export const DEEP_NESTING = 128;
/** Most objects decoded. */
const MAX_OBJECTS = 500;
/** Most bytes decoded for one object. */
const MAX_OBJECT_BYTES = 64 * 1024 * 1024;
/** Control words inside object data from which the data counts as obfuscated. */
const JUNK_CONTROL_WORDS = 2;

export interface RtfObject {
  index: number;
  /** Control words seen in the `\object` group: objemb, objlink, objautlink, objupdate, objocx... */
  flags: string[];
  objclass: string;
  data: Buffer;
  /** Control words (other than \bin) and groups met inside the hex data. */
  junkControlWords: number;
  /** Characters that are neither hex digits nor white space inside the hex data. */
  junkChars: number;
  oddDigits: boolean;
  truncated: boolean;
}

export interface RtfStructure {
  objects: RtfObject[];
  maxDepth: number;
  unbalanced: number;
  binOverflow: number;
  header: string;
}

interface Frame {
  /** This group is (or is inside) an objdata destination. */
  objdata?: Collector;
  /** This group is (or is inside) an objclass destination. */
  objclass?: RtfObject;
  /** The object this group (or an enclosing one) introduced. */
  object?: RtfObject;
  ignorable?: boolean;
  /** A nested group inside objdata (junk when it carries data). */
  nestedInData?: boolean;
}

class Collector {
  private buf = Buffer.allocUnsafe(4096);
  length = 0;
  private half = -1;
  done = false;
  constructor(readonly obj: RtfObject) {}

  nibble(v: number): void {
    if (this.half < 0) {
      this.half = v;
      return;
    }
    this.byte((this.half << 4) | v);
    this.half = -1;
  }

  byte(b: number): void {
    if (this.length >= MAX_OBJECT_BYTES) {
      this.obj.truncated = true;
      return;
    }
    if (this.length === this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(MAX_OBJECT_BYTES, this.buf.length * 2));
      this.buf.copy(bigger);
      this.buf = bigger;
    }
    this.buf[this.length++] = b;
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.half >= 0) this.obj.oddDigits = true;
    this.obj.data = Buffer.from(this.buf.subarray(0, this.length));
  }
}

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

const OBJECT_FLAGS = new Set(['objemb', 'objlink', 'objautlink', 'objsub', 'objpub', 'objicemb', 'objhtml', 'objocx', 'objupdate', 'objlock', 'objsetsize', 'objalink']);

/** Parses the group structure and decodes the objects' data. Never throws on bad input. */
export function parseRtf(s: Buffer): RtfStructure {
  const objects: RtfObject[] = [];
  const stack: Frame[] = [{}];
  let maxDepth = 0;
  let unbalanced = 0;
  let binOverflow = 0;
  const collectors: Collector[] = [];
  const n = s.length;
  let i = 0;
  const top = () => stack[stack.length - 1];
  const newObject = (): RtfObject => {
    const o: RtfObject = { index: objects.length, flags: [], objclass: '', data: Buffer.alloc(0), junkControlWords: 0, junkChars: 0, oddDigits: false, truncated: false };
    if (objects.length < MAX_OBJECTS) objects.push(o);
    return o;
  };

  while (i < n) {
    const c = s[i];
    if (c === 0x7b /* { */) {
      const parent = top();
      const frame: Frame = { objdata: parent.objdata, objclass: parent.objclass, object: parent.object };
      if (parent.objdata) {
        frame.nestedInData = true;
        parent.objdata.obj.junkControlWords++;
      }
      stack.push(frame);
      if (stack.length - 1 > maxDepth) maxDepth = stack.length - 1;
      i++;
      continue;
    }
    if (c === 0x7d /* } */) {
      if (stack.length > 1) {
        const f = stack.pop()!;
        const parent = top();
        if (f.objdata && f.objdata !== parent.objdata) {
          f.objdata.finish();
        }
      } else unbalanced++;
      i++;
      continue;
    }
    if (c === 0x5c /* \ */) {
      const f = top();
      let j = i + 1;
      while (j < n && j - i <= 33 && ((s[j] >= 0x61 && s[j] <= 0x7a) || (s[j] >= 0x41 && s[j] <= 0x5a))) j++;
      if (j === i + 1) {
        // A control symbol: \* \' \\ \{ \} ...
        const sym = s[j];
        if (sym === 0x2a) f.ignorable = true;
        else if (f.objdata && sym !== undefined) f.objdata.obj.junkControlWords++;
        i = j + (sym === 0x27 ? 3 : 1);
        continue;
      }
      const word = s.subarray(i + 1, j).toString('latin1').toLowerCase();
      let k = j;
      if (k < n && s[k] === 0x2d) k++;
      const digitsFrom = k;
      while (k < n && k - digitsFrom < 10 && s[k] >= 0x30 && s[k] <= 0x39) k++;
      const param = k > digitsFrom ? Number(s.subarray(j, k).toString('latin1')) : undefined;
      if (k < n && s[k] === 0x20) k++;
      i = k;
      if (word === 'bin') {
        const len = param ?? 0;
        if (len < 0 || len > n - i) binOverflow++;
        const take = Math.max(0, Math.min(len, n - i));
        if (f.objdata) for (let b = 0; b < take; b++) f.objdata.byte(s[i + b]);
        i += take;
        continue;
      }
      if (word === 'object') {
        f.object = newObject();
        continue;
      }
      if (word === 'objdata') {
        const obj = f.object ?? newObject();
        f.object = obj;
        const col = new Collector(obj);
        collectors.push(col);
        f.objdata = col;
        f.nestedInData = false;
        continue;
      }
      if (word === 'objclass' && f.object) {
        f.objclass = f.object;
        continue;
      }
      if (f.objdata) {
        f.objdata.obj.junkControlWords++;
        continue;
      }
      if (f.object && OBJECT_FLAGS.has(word) && !f.object.flags.includes(word)) f.object.flags.push(word);
      continue;
    }
    const f = top();
    if (f.objdata) {
      const v = c < 128 ? HEX[c] : -1;
      if (v >= 0) {
        if (!(f.nestedInData && f.ignorable)) f.objdata.nibble(v);
      } else if (c !== 0x20 && c !== 0x0d && c !== 0x0a && c !== 0x09 && c !== 0x00) f.objdata.obj.junkChars++;
    } else if (f.objclass && c >= 0x20 && f.objclass.objclass.length < 256) {
      if (c !== 0x3b) f.objclass.objclass += String.fromCharCode(c);
    }
    i++;
  }
  // Groups left open at the end (exploit RTFs often omit their closing braces).
  for (const col of collectors) col.finish();
  unbalanced += stack.length - 1;
  const header = s.subarray(0, 6).toString('latin1');
  return { objects, maxDepth, unbalanced, binOverflow, header };
}

// ---------------------------------------------------------------------------------------------
// OLE1 objects

export interface Ole1Object {
  format: 'linked' | 'embedded' | 'unknown';
  className: string;
  topic: string;
  item: string;
  native?: Buffer;
}

/** Reads an OLE1 ObjectHeader ([MS-OLEDS] 2.2.4–2.2.6); undefined when the data is not one. */
export function parseOle1(data: Buffer): Ole1Object | undefined {
  let p = 0;
  const u32 = (): number | undefined => {
    if (p + 4 > data.length) return undefined;
    const v = data.readUInt32LE(p);
    p += 4;
    return v;
  };
  const lpstr = (): string | undefined => {
    const len = u32();
    if (len === undefined || len > 4096 || p + len > data.length) return undefined;
    const s = data.subarray(p, p + len).toString('latin1').replace(/\0+$/, '');
    p += len;
    return s;
  };
  const version = u32();
  const formatId = u32();
  if (version === undefined || formatId === undefined || (formatId !== 1 && formatId !== 2)) return undefined;
  const className = lpstr();
  const topic = lpstr();
  const item = lpstr();
  if (className === undefined || topic === undefined || item === undefined || !/^[\x20-\x7e]*$/.test(className)) return undefined;
  if (formatId === 1) return { format: 'linked', className, topic, item };
  const size = u32();
  if (size === undefined) return { format: 'embedded', className, topic, item };
  return { format: 'embedded', className, topic, item, native: data.subarray(p, p + Math.min(size, data.length - p)) };
}

const OLE_MAGIC = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);
const EQUATION_BYTES = Buffer.from(CLSID.equation, 'hex');
const OLE2LINK_BYTES = Buffer.from(CLSID.stdOleLink, 'hex');

function urlsIn(data: Buffer): string[] {
  const out = new Set<string>();
  for (const text of [data.toString('latin1'), data.toString('utf16le'), data.subarray(1).toString('utf16le')]) {
    for (const m of text.matchAll(/\b(?:https?|ftp):\/\/[\x21-\x7e]{3,2000}/gi)) {
      out.add(m[0]);
      if (out.size >= 20) return [...out];
    }
  }
  return [...out];
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const rtfScanner: Scanner = {
  name: 'rtf',
  version: '1',
  layer: 'document',
  accepts: (info) => info.kind === 'file' && info.fileType === 'rtf',
  async scan(input, ctx) {
    if (input.info.size > MAX_RTF_BYTES) {
      return { evidence: [{ heuristic: 'NOT_FULLY_SCANNED', details: `RTF larger than ${MAX_RTF_BYTES} bytes: objects not examined`, data: { size: input.info.size, limit: MAX_RTF_BYTES } }] };
    }
    const data = await input.bytes(MAX_RTF_BYTES);
    let rtf: RtfStructure;
    try {
      rtf = parseRtf(data);
    } catch (err) {
      return { evidence: [{ heuristic: 'UNPARSEABLE', details: `RTF could not be parsed: ${(err as Error).message}`.slice(0, 300), data: { format: 'rtf' } }] };
    }
    const evidence: Finding[] = [];
    const sink = new ChildSink(ctx);
    const obfuscation: Record<string, unknown>[] = [];
    if (!/^\{\\rtf/i.test(rtf.header)) obfuscation.push({ reason: 'nonstandard_header', header: rtf.header });
    if (rtf.maxDepth > DEEP_NESTING) obfuscation.push({ reason: 'deep_nesting', depth: rtf.maxDepth });
    if (rtf.binOverflow > 0) obfuscation.push({ reason: 'bin_past_end', count: rtf.binOverflow });

    const described: Record<string, unknown>[] = [];
    const packages: { name: string; label: string; sourcePath: string; size: number }[] = [];
    const executables: string[] = [];
    const equation: number[] = [];
    const links: { object: number; reason: string; urls: string[] }[] = [];
    const updates: number[] = [];
    const unreadable: number[] = [];
    const rawText = data.toString('latin1').toLowerCase();

    for (const o of rtf.objects) {
      if (o.junkControlWords >= JUNK_CONTROL_WORDS) obfuscation.push({ reason: 'control_words_in_object_data', object: o.index, count: o.junkControlWords });
      if (o.junkChars > 0) obfuscation.push({ reason: 'junk_in_object_data', object: o.index, count: o.junkChars });
      if (o.oddDigits) obfuscation.push({ reason: 'odd_hex_digit_count', object: o.index });
      const ole1 = parseOle1(o.data);
      const className = ole1?.className || o.objclass.trim();
      described.push({ object: o.index, class: className || undefined, format: ole1?.format ?? 'raw', flags: o.flags, bytes: o.data.length, ...(o.truncated ? { truncated: true } : {}) });
      if (o.flags.includes('objupdate')) updates.push(o.index);
      if (/^equation\.3$/i.test(className) || /^equation\.3$/i.test(o.objclass.trim()) || o.data.includes(EQUATION_BYTES)) equation.push(o.index);
      const isLink = /^ole2link$/i.test(className) || o.data.includes(OLE2LINK_BYTES);
      const objUrls = urlsIn(o.data);
      if (isLink || o.flags.includes('objautlink')) links.push({ object: o.index, reason: isLink ? 'OLE2Link' : 'objautlink', urls: objUrls });
      if (ole1?.format === 'linked' && /^(https?|ftp):\/\//i.test(ole1.topic) && !objUrls.includes(ole1.topic)) objUrls.push(ole1.topic);

      const base = sanitiseMemberName(className || 'object', 'object').name.replace(/\//g, '_');
      const native = ole1?.native;
      if (native && /^package$/i.test(className)) {
        const pkg = parsePackage(native, false);
        if (pkg) {
          const name = packageName(pkg);
          packages.push({ name, label: pkg.label.slice(0, 256), sourcePath: pkg.sourcePath.slice(0, 1024), size: pkg.data.length });
          if (isExecutableName(name)) executables.push(name);
          await sink.emit({ name, relation: 'embedded_object', data: pkg.data, meta: { object: o.index, class: className } });
          continue;
        }
      }
      if (native && native.length > 0) {
        const ext = native.subarray(0, 8).equals(OLE_MAGIC) ? 'ole' : 'bin';
        await sink.emit({ name: `object${o.index}-${base}.${ext}`, relation: 'embedded_object', data: native, meta: { object: o.index, class: className } });
      } else if (!ole1 && o.data.length > 0) {
        // Not an OLE1 object: hand over the raw bytes (an OLE2 file, or something mangled).
        const at = o.data.indexOf(OLE_MAGIC);
        const payload = at >= 0 ? o.data.subarray(at) : o.data;
        if (at < 0) unreadable.push(o.index);
        await sink.emit({ name: `object${o.index}-${base}.${at >= 0 ? 'ole' : 'bin'}`, relation: 'embedded_object', data: payload, meta: { object: o.index, raw: true } });
      }
      for (const url of objUrls.slice(0, 20)) await sink.emit({ name: url, relation: 'link', url, meta: { object: o.index } });
    }
    if (equation.length === 0 && /0002ce02-0000-0000-c000-000000000046/.test(rawText)) equation.push(-1);

    if (described.length > 0) evidence.push({ heuristic: 'DOC_EMBEDDED_OBJECT', details: `${described.length} embedded object${described.length === 1 ? '' : 's'}${described.some((d) => d.class) ? `: ${described.map((d) => d.class ?? '?').slice(0, 5).join(', ')}` : ''}`, data: { objects: described.slice(0, 50) } });
    if (packages.length > 0) evidence.push({ heuristic: 'DOC_EMBEDDED_PACKAGE', details: `package${packages.length === 1 ? '' : 's'}: ${packages.slice(0, 5).map((p) => p.name).join(', ')}`, data: { packages: packages.slice(0, 50) } });
    if (executables.length > 0) evidence.push({ heuristic: 'DOC_PACKAGE_EXECUTABLE', details: executables.slice(0, 5).join(', '), data: { names: executables.slice(0, 50) } });
    if (equation.length > 0) evidence.push({ heuristic: 'DOC_EQUATION_EDITOR', details: 'Equation Editor 3.0 object (CVE-2017-11882 / CVE-2018-0802 target)', data: { objects: equation } });
    if (links.length > 0) evidence.push({ heuristic: 'DOC_OLE2LINK', details: links[0].urls[0] ? `${links[0].reason} to ${links[0].urls[0]}` : links[0].reason, data: { links: links.slice(0, 20) } });
    if (updates.length > 0) evidence.push({ heuristic: 'RTF_OBJUPDATE', details: `${updates.length} object${updates.length === 1 ? '' : 's'} with \\objupdate`, data: { objects: updates } });
    if (obfuscation.length > 0) evidence.push({ heuristic: 'RTF_OBFUSCATION', details: [...new Set(obfuscation.map((o) => String(o.reason)))].join(', '), data: { signs: obfuscation.slice(0, 50) } });
    if (unreadable.length > 0) evidence.push({ heuristic: 'UNPARSEABLE', details: `object data is not an OLE object (emitted raw): ${unreadable.slice(0, 10).join(', ')}`, data: { objects: unreadable } });
    evidence.push(...sink.findings());
    return { evidence, attributes: { objects: rtf.objects.length, maxDepth: rtf.maxDepth, unbalancedGroups: rtf.unbalanced } };
  },
};
