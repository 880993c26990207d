/**
 * OOXML documents (.docx/.docm/.xlsx/.xlsm/.pptx/... — zips holding `[Content_Types].xml`):
 * reads the few parts it needs straight from the zip (the zip scanner already emits every part
 * as a child, so this scanner emits none of them) and reports, on the document itself:
 * - VBA projects (`vbaProject.bin`, read with the same code as OLE files: VBA_* findings; the
 *   module source is emitted by the OLE scanner when it scans the `vbaProject.bin` member);
 * - relationships with `TargetMode="External"` that load remote content (remote template
 *   injection through `attachedTemplate`, linked OLE objects, frames, sub-documents):
 *   OOXML_EXTERNAL_REL, and their URLs as `link` children (bounded);
 * - DDE/DDEAUTO field codes in Word parts and `ddeLink`s in Excel external links: DDE_FIELD;
 * - Excel 4.0 macro sheets (`xl/macrosheets/`): XLM_MACRO_SHEET;
 * - embedded objects and ActiveX parts, listed in the attributes.
 *
 * @example
 * const r = await runScanner(ooxmlScanner, docxBytes);
 * r.evidence[0] // { heuristic: 'OOXML_EXTERNAL_REL', data: { relationships: [...] } }
 */
import fsp, { type FileHandle } from 'node:fs/promises';
import * as zip from '@zip.js/zip.js';
import { FileHandleReader } from './zip-reader.ts';
import { ChildSink } from './ole.ts';
import type { Finding, Scanner } from './types.ts';
import { extractVbaProjects, openCompound, vbaFindings } from './vba.ts';

zip.configure({ useWebWorkers: false });

/** Largest XML part read. */
const MAX_XML_BYTES = 32 * 1024 * 1024;
/** Largest vbaProject.bin read. */
const MAX_VBA_BYTES = 64 * 1024 * 1024;
/** Most entries listed from the zip. */
const MAX_ENTRIES = 20_000;
/** Most `.rels` parts read. */
const MAX_RELS_PARTS = 2_000;
/** Most URLs emitted as children. */
const MAX_URL_CHILDREN = 20;


class TooLarge extends Error {}

/** A part's bytes, or undefined when it is larger than `max` (even if its header lies). */
async function readPart(e: zip.FileEntry, max: number, signal: AbortSignal): Promise<Buffer | undefined> {
  if (e.encrypted || e.uncompressedSize > max) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    await e.getData(
      new WritableStream<Uint8Array>({
        write(chunk) {
          size += chunk.byteLength;
          if (size > max) throw new TooLarge();
          chunks.push(Buffer.from(chunk));
        },
      }),
      { signal, checkCrc32: false },
    );
  } catch (err) {
    if (err instanceof TooLarge || signal.aborted) return undefined;
    // A damaged part: use what was read.
    if (size === 0) return undefined;
  }
  return Buffer.concat(chunks);
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function xmlDecode(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) && n <= 0x10ffff ? String.fromCodePoint(n) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) out[m[1]] = xmlDecode(m[2] ?? m[3] ?? '');
  return out;
}

export interface Relationship {
  part: string;
  id: string;
  type: string;
  target: string;
}

/** External relationships of one `.rels` part. */
export function externalRelationships(part: string, xml: string): Relationship[] {
  const out: Relationship[] = [];
  for (const m of xml.matchAll(/<(?:\w+:)?Relationship\b[^>]*>/g)) {
    const a = attrs(m[0]);
    if ((a.TargetMode ?? '').toLowerCase() !== 'external') continue;
    out.push({ part, id: a.Id ?? '', type: (a.Type ?? '').split('/').pop() ?? '', target: a.Target ?? '' });
  }
  return out;
}

/** Relationship types whose external target is loaded by the application, not just shown. */
const ACTIVE_TYPES = new Set(['attachedtemplate', 'oleobject', 'frame', 'subdocument', 'package', 'control']);

/**
 * A target on another machine: a URL (also inside `mhtml:`), a UNC path, or `file://host/`.
 * `file:///C:/...` (the author's own disk, as Word writes for Normal.dotm) is local.
 */
export function remoteTarget(target: string): boolean {
  const t = target.trim().toLowerCase();
  return /^(mhtml:)?(https?|ftp):\/\//.test(t) || /^(\\\\|\/\/)[^\\/]/.test(t) || /^file:\/\/[^/]/.test(t);
}

/** The fetchable URLs named by a target (`mhtml:http://a!x-usc:http://b` names two). */
export function targetUrls(target: string): string[] {
  return [...target.matchAll(/\b(?:https?|ftp):\/\/[^\s!"'<>]+/gi)].map((m) => m[0]);
}

/**
 * Field instructions of a WordprocessingML part: complex fields (`w:fldChar` begin … separate,
 * with the instruction split over any number of `w:instrText` runs) and simple fields
 * (`w:fldSimple w:instr`).
 */
export function fieldInstructions(xml: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  const RESULT = '\u0000'; // after `separate`: the field's result, not its instruction
  const close = () => {
    const v = stack.pop();
    if (v !== undefined && v !== RESULT && v.trim()) out.push(v.trim());
  };
  const re = /<w:fldChar\b[^>]*w:fldCharType\s*=\s*["'](begin|separate|end)["'][^>]*>|<w:instrText\b[^>]*>([^<]*)<\/w:instrText>|<w:fldSimple\b[^>]*>/g;
  for (const m of xml.matchAll(re)) {
    if (m[1] === 'begin') stack.push('');
    else if (m[1] === 'separate') {
      close();
      stack.push(RESULT);
    } else if (m[1] === 'end') close();
    else if (m[2] !== undefined) {
      if (stack.length === 0) stack.push('');
      if (stack[stack.length - 1] !== RESULT) stack[stack.length - 1] += xmlDecode(m[2]);
    } else {
      const instr = attrs(m[0])['w:instr'];
      if (instr?.trim()) out.push(instr.trim());
    }
    if (out.length >= 10_000 || stack.length > 1_000) break;
  }
  while (stack.length > 0) close();
  return out;
}

export const ooxmlScanner: Scanner = {
  name: 'ooxml',
  version: '1',
  layer: 'document',
  accepts: (info) => info.kind === 'file' && info.fileType === 'zip',
  async scan(input, ctx) {
    const file = await input.path();
    const fh = await fsp.open(file, 'r');
    const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(Math.max(1, ctx.deadline - Date.now()))]);
    try {
      const size = (await fh.stat()).size;
      const zr = new zip.ZipReader(new FileHandleReader(fh, size, MAX_VBA_BYTES + 1024 * 1024), { useWebWorkers: false, strictness: 'tolerant', filenameValidation: 'tolerant' });
      const entries: zip.FileEntry[] = [];
      try {
        for await (const e of zr.getEntriesGenerator()) {
          if (!e.directory) entries.push(e);
          if (entries.length >= MAX_ENTRIES) break;
        }
      } catch {
        // Not a readable zip: the zip scanner reports it.
      }
      const byName = new Map(entries.map((e) => [e.filename.replace(/\\/g, '/').replace(/^\//, '').toLowerCase(), e]));
      if (!byName.has('[content_types].xml')) return {};
      return await analyse(entries, byName, ctx, signal);
    } finally {
      await fh.close().catch(() => undefined);
    }
  },
};

async function analyse(entries: zip.FileEntry[], byName: Map<string, zip.FileEntry>, ctx: Parameters<Scanner['scan']>[1], signal: AbortSignal) {
  const evidence: Finding[] = [];
  const attributes: Record<string, unknown> = {};
  const sink = new ChildSink(ctx);
  const names = [...byName.keys()];
  const text = async (name: string): Promise<string | undefined> => {
    const e = byName.get(name);
    if (!e) return undefined;
    const b = await readPart(e, MAX_XML_BYTES, signal);
    return b?.toString('utf8');
  };
  const skipped: string[] = [];
  const contentTypes = (await text('[content_types].xml')) ?? '';
  attributes.ooxmlType = names.includes('word/document.xml') ? 'word' : names.includes('xl/workbook.xml') || names.includes('xl/workbook.bin') ? 'excel' : names.includes('ppt/presentation.xml') ? 'powerpoint' : 'other';

  // VBA projects
  const vbaParts = names.filter((n) => n.endsWith('vbaproject.bin'));
  for (const n of vbaParts) {
    if (signal.aborted) break;
    const e = byName.get(n)!;
    const data = await readPart(e, MAX_VBA_BYTES, signal);
    if (!data) {
      skipped.push(e.filename);
      continue;
    }
    try {
      evidence.push(...vbaFindings(extractVbaProjects(openCompound(data)), e.filename));
    } catch (err) {
      evidence.push({ heuristic: 'UNPARSEABLE', details: `${e.filename}: not a readable VBA project (${(err as Error).message})`.slice(0, 300), data: { part: e.filename } });
    }
  }

  // Relationships
  const external: Relationship[] = [];
  let relsRead = 0;
  for (const n of names) {
    if (!n.endsWith('.rels') || signal.aborted) continue;
    if (++relsRead > MAX_RELS_PARTS) {
      skipped.push('(further .rels parts)');
      break;
    }
    const xml = await text(n);
    if (xml === undefined) {
      skipped.push(byName.get(n)!.filename);
      continue;
    }
    external.push(...externalRelationships(byName.get(n)!.filename, xml));
  }
  const active = external.filter((r) => ACTIVE_TYPES.has(r.type.toLowerCase()) && remoteTarget(r.target));
  const hyperlinks = external.filter((r) => r.type.toLowerCase() === 'hyperlink');
  if (hyperlinks.length > 0) attributes.hyperlinks = { count: hyperlinks.length, first: hyperlinks.slice(0, 20).map((r) => r.target.slice(0, 2000)) };
  if (active.length > 0) {
    const template = active.find((r) => r.type.toLowerCase() === 'attachedtemplate');
    evidence.push({
      heuristic: 'OOXML_EXTERNAL_REL',
      details: template ? `remote template: ${template.target.slice(0, 300)}` : `${active[0].type} loaded from ${active[0].target.slice(0, 300)}`,
      data: { relationships: active.slice(0, 50).map((r) => ({ ...r, target: r.target.slice(0, 2000) })), count: active.length },
    });
    const urls = [...new Set(active.flatMap((r) => targetUrls(r.target)))].slice(0, MAX_URL_CHILDREN);
    for (const url of urls) if (!(await sink.emit({ name: url, relation: 'link', url, meta: { source: 'external_relationship' } }))) break;
  }

  // DDE
  const dde: { part: string; instruction: string }[] = [];
  for (const n of names) {
    if (signal.aborted) break;
    if (/^word\/(glossary\/)?[^/]+\.xml$/.test(n)) {
      const xml = await text(n);
      if (xml === undefined) {
        skipped.push(byName.get(n)!.filename);
        continue;
      }
      for (const instr of fieldInstructions(xml)) if (/^\s*DDE(AUTO)?\b/i.test(instr)) dde.push({ part: byName.get(n)!.filename, instruction: instr.slice(0, 500) });
    } else if (/^xl\/externallinks\/[^/]+\.xml$/.test(n)) {
      const xml = (await text(n)) ?? '';
      for (const m of xml.matchAll(/<(?:\w+:)?ddeLink\b[^>]*>/g)) {
        const a = attrs(m[0]);
        dde.push({ part: byName.get(n)!.filename, instruction: `ddeLink ${a.ddeService ?? ''}|${a.ddeTopic ?? ''}`.slice(0, 500) });
      }
    }
  }
  if (dde.length > 0) evidence.push({ heuristic: 'DDE_FIELD', details: dde[0].instruction.slice(0, 200), data: { fields: dde.slice(0, 20) } });

  // Excel 4.0 macro sheets
  const macroParts = names.filter((n) => n.startsWith('xl/macrosheets/') && !n.endsWith('.rels'));
  const typed = [...contentTypes.matchAll(/<Override\b[^>]*>/g)].map((m) => attrs(m[0])).filter((a) => /macrosheet/i.test(a.ContentType ?? '')).map((a) => (a.PartName ?? '').replace(/^\//, '').toLowerCase());
  const macroSheets = [...new Set([...macroParts, ...typed])].filter((n) => byName.has(n));
  if (macroSheets.length > 0) {
    const info = await workbookSheets(text, macroSheets);
    evidence.push({
      heuristic: 'XLM_MACRO_SHEET',
      details: `Excel 4.0 macro sheet${macroSheets.length > 1 ? 's' : ''}: ${info.sheets.slice(0, 10).map((s) => `${s.name} (${s.state})`).join(', ')}${info.autoOpen ? '; Auto_Open defined' : ''}`,
      data: { sheets: info.sheets.slice(0, 50), hidden: info.sheets.filter((s) => s.state !== 'visible').map((s) => s.name), autoOpen: info.autoOpen, parts: macroSheets.slice(0, 50) },
    });
  }

  const embeddings = entries.filter((e) => /\/embeddings\//i.test(e.filename)).map((e) => e.filename);
  if (embeddings.length > 0) attributes.embeddings = embeddings.slice(0, 100);
  const activeX = entries.filter((e) => /\/activex\//i.test(e.filename) && /\.bin$/i.test(e.filename)).map((e) => e.filename);
  if (activeX.length > 0) attributes.activeX = activeX.slice(0, 100);
  if (skipped.length > 0) {
    evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `parts too large or unreadable: ${skipped.slice(0, 5).join(', ')}`, data: { parts: skipped.slice(0, 50) } });
  }
  evidence.push(...sink.findings());
  return { evidence, attributes };
}

/** Names and visibility of the macro sheets, and whether an Auto_Open name is defined. */
async function workbookSheets(text: (n: string) => Promise<string | undefined>, macroParts: string[]) {
  const workbook = (await text('xl/workbook.xml')) ?? '';
  const rels = (await text('xl/_rels/workbook.xml.rels')) ?? '';
  const targets = new Map<string, string>();
  for (const m of rels.matchAll(/<(?:\w+:)?Relationship\b[^>]*>/g)) {
    const a = attrs(m[0]);
    const t = (a.Target ?? '').replace(/^\/?(xl\/)?/, 'xl/').toLowerCase();
    if (a.Id) targets.set(a.Id, t);
  }
  const sheets: { name: string; state: string }[] = [];
  for (const m of workbook.matchAll(/<(?:\w+:)?sheet\b[^>]*>/g)) {
    const a = attrs(m[0]);
    const rid = Object.entries(a).find(([k]) => /(^|:)id$/.test(k) && k !== 'sheetId')?.[1];
    const target = rid ? targets.get(rid) : undefined;
    if (target && macroParts.includes(target)) sheets.push({ name: a.name ?? target, state: a.state === 'veryHidden' ? 'very_hidden' : a.state === 'hidden' ? 'hidden' : 'visible' });
  }
  if (sheets.length === 0) for (const p of macroParts) sheets.push({ name: p.split('/').pop() ?? p, state: 'unknown' });
  const autoOpen = /<(?:\w+:)?definedName\b[^>]*name\s*=\s*["'](?:_xlnm\.)?Auto_Open/i.test(workbook);
  return { sheets, autoOpen };
}
