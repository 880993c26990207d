/**
 * TNEF (winmail.dat, application/ms-tnef): the envelope in which Outlook and Exchange send a
 * message's rich content and attachments to other mail systems. A small parser of our own
 * (MS-OXTNEF): the stream is a signature (0x223E9F78) and a legacy key, then attributes of
 * `level (1 message, 2 attachment) | id (u16) | type (u16) | length (u32) | data | checksum
 * (u16, byte sum)`.
 *
 * - Each attAttachRenddata opens an attachment; its bytes are attAttachData, or PR_ATTACH_DATA
 *   from the attAttachment MAPI properties; its name PR_ATTACH_LONG_FILENAME, attAttachTitle,
 *   PR_DISPLAY_NAME or `attachment-N.bin`. An attached message (PR_ATTACH_DATA as an object)
 *   is itself TNEF and becomes a `<name>.tnef` child, parsed again.
 * - Message bodies in attMsgProps (PR_RTF_COMPRESSED decompressed, PR_HTML, PR_BODY) become
 *   `body.rtf`, `body.html`, `body.txt` (`embedded_object`).
 * - Attachment names are checked like an e-mail's (EMAIL_ATTACHMENT_DOUBLE_EXTENSION,
 *   EMAIL_EXECUTABLE_ATTACHMENT); a truncated stream is ARCHIVE_CORRUPT (what was read is kept).
 *
 * @example
 * const r = await runScanner(tnefScanner, winmailDat);
 * r.children.map((c) => c.name) // ['invoice.pdf']
 */
import { ArchiveSession, errorMessage, isExtractionStop } from './archive-common.ts';
import { attachmentFindings } from './email.ts';
import { ChildSink } from './ole.ts';
import { decompressRtf } from './outlook-msg.ts';
import type { Finding, Scanner } from './types.ts';

export const TNEF_SIGNATURE = 0x223e9f78;
/** Largest TNEF stream parsed (it is read into memory). */
export const MAX_TNEF_BYTES = 256 * 1024 * 1024;
const MAX_ATTRIBUTES = 100_000;
const MAX_PROPS = 10_000;

// Attribute ids (low word of AttrId).
const ATT = {
  subject: 0x8004,
  messageClass: 0x8008,
  body: 0x800c,
  attachData: 0x800f,
  attachTitle: 0x8010,
  attachRenddata: 0x9002,
  msgProps: 0x9003,
  attachment: 0x9005,
  oemCodepage: 0x9007,
} as const;

// MAPI property ids and types.
const PR = { subject: 0x0037, body: 0x1000, rtfCompressed: 0x1009, html: 0x1013, displayName: 0x3001, attachData: 0x3701, attachFilename: 0x3704, attachLongFilename: 0x3707, attachMimeTag: 0x370e } as const;
const PT = { string8: 0x001e, unicode: 0x001f, binary: 0x0102, object: 0x000d } as const;
const FIXED_SIZE: Record<number, number> = { 0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000a: 4, 0x000b: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16 };

export interface MapiProp {
  id: number;
  type: number;
  /** Values of variable-size types (strings, binaries, objects); fixed-size ones are skipped. */
  values: Buffer[];
}

class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos = 0,
  ) {}
  need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new RangeError(`truncated at offset ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  align4(): void {
    this.pos = Math.min(this.buf.length, (this.pos + 3) & ~3);
  }
}

/** The MAPI property list of attMsgProps / attAttachment (MS-OXTNEF 2.1.3.4). */
export function parseMapiProps(data: Buffer): MapiProp[] {
  const c = new Cursor(data);
  const count = c.u32();
  const props: MapiProp[] = [];
  for (let n = 0; n < Math.min(count, MAX_PROPS); n++) {
    const type = c.u16();
    const id = c.u16();
    if (id >= 0x8000) {
      c.bytes(16); // property set GUID
      if (c.u32() === 0) c.u32();
      else {
        c.bytes(c.u32());
        c.align4();
      }
    }
    const multi = (type & 0x1000) !== 0;
    const base = type & ~0x1000;
    const values: Buffer[] = [];
    if (base === PT.string8 || base === PT.unicode || base === PT.binary || base === PT.object) {
      const k = c.u32();
      for (let v = 0; v < Math.min(k, MAX_PROPS); v++) {
        values.push(c.bytes(c.u32()));
        c.align4();
      }
    } else {
      const size = FIXED_SIZE[base];
      if (size === undefined) throw new Error(`unknown MAPI property type 0x${base.toString(16)}`);
      c.bytes((multi ? c.u32() : 1) * size);
    }
    props.push({ id, type: base, values });
  }
  return props;
}

function propString(p: MapiProp | undefined): string | undefined {
  const v = p?.values[0];
  if (!v) return undefined;
  return (p.type === PT.unicode ? v.toString('utf16le') : v.toString('latin1')).replace(/\0+$/, '') || undefined;
}

function ansi(b: Buffer): string {
  return b.toString('latin1').replace(/\0[\s\S]*$/, '').trim();
}

export interface TnefAttachment {
  name?: string;
  title?: string;
  data?: Buffer;
  /** An attached message: its own TNEF stream. */
  message?: Buffer;
  mimeType?: string;
}

export interface Tnef {
  messageClass?: string;
  subject?: string;
  attachments: TnefAttachment[];
  body?: string;
  html?: Buffer;
  rtf?: Buffer;
  checksumErrors: number;
  /** Set when the stream ended inside an attribute. */
  truncated?: string;
}

/** Parses a TNEF stream; never throws past the signature (damage ends as `truncated`). */
export function parseTnef(buf: Buffer): Tnef {
  const c = new Cursor(buf);
  if (buf.length < 6 || c.u32() !== TNEF_SIGNATURE) throw new Error('no TNEF signature');
  c.u16(); // legacy key
  const out: Tnef = { attachments: [], checksumErrors: 0 };
  let current: TnefAttachment | undefined;
  try {
    for (let n = 0; c.pos < buf.length && n < MAX_ATTRIBUTES; n++) {
      const level = c.u8();
      const id = c.u32() & 0xffff;
      const data = c.bytes(c.u32());
      const checksum = c.u16();
      let sum = 0;
      for (const b of data) sum = (sum + b) & 0xffff;
      if (sum !== checksum) out.checksumErrors++;
      if (id === ATT.attachRenddata) {
        current = {};
        out.attachments.push(current);
      } else if (level === 2 && current) {
        if (id === ATT.attachData) current.data = data;
        else if (id === ATT.attachTitle) current.title = ansi(data) || undefined;
        else if (id === ATT.attachment) readAttachmentProps(current, data);
      } else if (level === 1) {
        if (id === ATT.subject) out.subject = ansi(data);
        else if (id === ATT.messageClass) out.messageClass = ansi(data);
        else if (id === ATT.body) out.body = data.toString('latin1');
        else if (id === ATT.msgProps) readMessageProps(out, data);
      }
    }
  } catch (err) {
    out.truncated = errorMessage(err);
  }
  return out;
}

function readAttachmentProps(a: TnefAttachment, data: Buffer): void {
  const props = parseMapiProps(data);
  const get = (id: number) => props.find((p) => p.id === id);
  a.name = propString(get(PR.attachLongFilename)) ?? propString(get(PR.attachFilename)) ?? a.name ?? propString(get(PR.displayName));
  a.mimeType = propString(get(PR.attachMimeTag)) ?? a.mimeType;
  const attached = get(PR.attachData);
  const value = attached?.values[0];
  if (value && attached.type === PT.object) a.message = value.subarray(16); // after the interface id
  else if (value && !a.data) a.data = value;
}

function readMessageProps(t: Tnef, data: Buffer): void {
  const props = parseMapiProps(data);
  for (const p of props) {
    const v = p.values[0];
    if (!v) continue;
    if (p.id === PR.rtfCompressed) t.rtf = v;
    else if (p.id === PR.html) t.html = v;
    else if (p.id === PR.body && !t.body) t.body = propString(p);
    else if (p.id === PR.subject && !t.subject) t.subject = propString(p);
  }
}

export const tnefScanner: Scanner = {
  name: 'tnef',
  version: '1',
  layer: 'email',
  accepts: (info) => info.kind === 'file' && info.fileType === 'tnef',
  async scan(input, ctx) {
    if (input.info.size > MAX_TNEF_BYTES) {
      return { evidence: [{ heuristic: 'NOT_FULLY_SCANNED', details: `TNEF stream larger than ${MAX_TNEF_BYTES} bytes: attachments not extracted`, data: { size: input.info.size, limit: MAX_TNEF_BYTES } }] };
    }
    let tnef: Tnef;
    try {
      tnef = parseTnef(await input.bytes(MAX_TNEF_BYTES));
    } catch (err) {
      return { evidence: [{ heuristic: 'UNPARSEABLE', details: `not a TNEF stream: ${errorMessage(err)}`, data: { format: 'tnef' } }] };
    }
    const evidence: Finding[] = [];
    const session = new ArchiveSession(ctx, 'attachment');
    const names: string[] = [];
    try {
      for (const [i, a] of tnef.attachments.entries()) {
        if (!session.active) break;
        const bytes = a.message ?? a.data;
        if (!bytes) continue;
        const base = a.name ?? a.title ?? `attachment-${i + 1}.bin`;
        const member = session.member(a.message ? `${base}.tnef` : base, { meta: { ...(a.mimeType ? { contentType: a.mimeType } : {}), ...(a.message ? { embeddedMessage: true } : {}) } });
        names.push(member.name);
        try {
          await member.write(bytes);
        } catch (err) {
          if (!isExtractionStop(err)) session.corrupt(err, member.name);
        }
        await session.emit(member);
      }
      if (tnef.truncated) session.corrupt(new Error(tnef.truncated));
    } finally {
      session.close();
    }
    const sink = new ChildSink(ctx);
    if (!session.stopped) {
      if (tnef.rtf) {
        try {
          await sink.emit({ name: 'body.rtf', relation: 'embedded_object', data: decompressRtf(tnef.rtf) });
        } catch (err) {
          evidence.push({ heuristic: 'UNPARSEABLE', details: `RTF body not decompressed: ${errorMessage(err)}`.slice(0, 300), data: { format: 'compressed-rtf' } });
        }
      }
      if (tnef.html?.length) await sink.emit({ name: 'body.html', relation: 'embedded_object', data: tnef.html });
      if (tnef.body?.trim()) await sink.emit({ name: 'body.txt', relation: 'embedded_object', data: Buffer.from(tnef.body, 'utf8') });
    }
    const archive = session.result();
    evidence.push(...attachmentFindings(archive.evidence ?? [], names));
    if (!archive.evidence?.some((e) => e.heuristic === 'ARCHIVE_LIMIT')) evidence.push(...sink.findings());
    return {
      evidence,
      attributes: {
        tnef: { messageClass: tnef.messageClass ?? null, subject: tnef.subject ?? null, attachments: tnef.attachments.length, checksumErrors: tnef.checksumErrors, emitted: session.emitted + sink.emitted },
      },
    };
  },
};
