/**
 * Outlook messages (.msg: an OLE compound file with `__substg1.0_` property streams), read with
 * @kenjiuno/msgreader. The OLE scanner still runs on the same file (macros, embedded objects);
 * this one treats it as mail, with the email scanner's analysis:
 *
 * - Headers come from the transport headers (PR_TRANSPORT_MESSAGE_HEADERS, Received and all)
 *   when the message went through a server; otherwise from the MAPI properties (sender, SMTP
 *   addresses, recipients, delivery time), and checks that need real headers are skipped.
 * - Children: attachments (`attachment`; embedded messages as a rebuilt `<name>.msg`), the HTML
 *   body (`body.html`), the text body (`body.txt`), the RTF body (`body.rtf`, decompressed from
 *   PR_RTF_COMPRESSED, where Outlook keeps embedded objects) and body links, as for .eml.
 * - Attributes: `email` and `emailParts` (as the email scanner gives them), `msgClass`.
 *
 * An OLE file without message properties at its root (a .doc, .xls, .msi) is not reported on.
 *
 * @example
 * const r = await runScanner(outlookMsgScanner, msgBytes);
 * r.attributes.email.subject // 'Invoice due'
 */
import msgreader, { type FieldsData } from '@kenjiuno/msgreader';
import { parseAddressHeader } from 'mailparser';
import { ArchiveSession, errorMessage, isExtractionStop } from './archive-common.ts';
import { finishMessage, headerValues, mailboxes, splitHeaderBlock, type MessageFacts } from './email.ts';
import { MAX_OLE_BYTES } from './ole.ts';
import { openCompound } from './vba.ts';
import type { Finding, Scanner } from './types.ts';

// The package is CommonJS: its class is `exports.default`.
const MsgReader = msgreader.default;
type MsgReader = InstanceType<typeof MsgReader>;

/** Largest decompressed RTF body handed out. */
const MAX_RTF_BYTES = 64 * 1024 * 1024;

const SUBSTG = Buffer.from('__substg1.0_', 'utf16le');
const PROPERTIES = Buffer.from('__properties_version1.0', 'utf16le');

/** Cheap look at the directory names: Word and Excel files never carry these streams. */
function mayBeMessage(data: Buffer): boolean {
  return data.includes(SUBSTG) && data.includes(PROPERTIES);
}

/** msgreader reads a .doc as an empty message: real ones have some of these at their root. */
function isMessage(f: FieldsData): boolean {
  return Boolean(f.messageClass || f.subject || f.headers || f.senderEmail || f.senderSmtpAddress || f.body || f.bodyHtml || f.html || f.attachments?.length || f.recipients?.length);
}

// ---------------------------------------------------------------------------------------------
// Compressed RTF (MS-OXRTFCP)

const RTF_PREBUF = Buffer.from(
  '{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx',
  'latin1',
);

/**
 * Decompresses PR_RTF_COMPRESSED: a 16-byte header (sizes, `LZFu` or `MELA`), then control
 * bytes whose bits, low first, say literal byte (0) or a 2-byte back-reference into a 4 KiB
 * ring primed with RTF_PREBUF (1); a reference to the write position ends the stream.
 */
export function decompressRtf(data: Uint8Array, max = MAX_RTF_BYTES): Buffer {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < 16) throw new Error('compressed RTF shorter than its header');
  const rawSize = buf.readUInt32LE(4);
  const type = buf.readUInt32LE(8);
  if (rawSize > max) throw new Error(`RTF body of ${rawSize} bytes is over the limit`);
  if (type === 0x414c454d) return Buffer.from(buf.subarray(16, 16 + rawSize)); // 'MELA': stored
  if (type !== 0x75465a4c) throw new Error('unknown compressed RTF type');
  const ring = Buffer.alloc(4096);
  RTF_PREBUF.copy(ring);
  let write = RTF_PREBUF.length;
  const out = Buffer.alloc(rawSize);
  let o = 0;
  let i = 16;
  while (i < buf.length && o < rawSize) {
    const control = buf[i++];
    for (let bit = 0; bit < 8 && i < buf.length && o < rawSize; bit++) {
      if ((control & (1 << bit)) === 0) {
        ring[write] = buf[i++];
        out[o++] = ring[write];
        write = (write + 1) & 4095;
        continue;
      }
      if (i + 1 >= buf.length) return out.subarray(0, o);
      const ref = (buf[i] << 8) | buf[i + 1];
      i += 2;
      const offset = ref >> 4;
      if (offset === write) return out.subarray(0, o);
      const length = (ref & 15) + 2;
      for (let k = 0; k < length && o < rawSize; k++) {
        const c = ring[(offset + k) & 4095];
        ring[write] = c;
        out[o++] = c;
        write = (write + 1) & 4095;
      }
    }
  }
  return out.subarray(0, o);
}

// ---------------------------------------------------------------------------------------------
// Facts

const CODEPAGES: Record<number, string> = {
  65001: 'utf-8', 1250: 'windows-1250', 1251: 'windows-1251', 1252: 'windows-1252', 1253: 'windows-1253', 1254: 'windows-1254',
  1255: 'windows-1255', 1256: 'windows-1256', 1257: 'windows-1257', 932: 'shift_jis', 936: 'gbk', 949: 'euc-kr', 950: 'big5',
  20127: 'us-ascii', 28591: 'iso-8859-1', 28592: 'iso-8859-2', 28605: 'iso-8859-15', 50220: 'iso-2022-jp', 51932: 'euc-jp',
};

function decodeHtml(bytes: Uint8Array, codepage: number | undefined): string {
  try {
    return new TextDecoder(CODEPAGES[codepage ?? 65001] ?? 'utf-8').decode(bytes);
  } catch {
    return new TextDecoder('utf-8').decode(bytes);
  }
}

const smtp = (v: string | undefined) => (v && v.includes('@') && !v.startsWith('/') ? v.trim() : undefined);

function parseDate(...values: (string | undefined)[]): Date | null {
  for (const v of values) {
    if (!v) continue;
    const d = new Date(v);
    if (!Number.isNaN(d.getTime())) return d;
  }
  return null;
}

export function messageFacts(f: FieldsData): MessageFacts {
  const headers = splitHeaderBlock(f.headers ?? '');
  const header = (k: string) => headerValues(headers, k)[0];
  const fromHeader = header('from') ? mailboxes(parseAddressHeader(header('from')))[0] : undefined;
  const senderAddress = smtp(f.senderSmtpAddress) ?? smtp(f.sentRepresentingSmtpAddress) ?? (f.senderAddressType === 'EX' ? smtp(f.creatorSMTPAddress) : smtp(f.senderEmail));
  const recipients = (type: 'to' | 'cc') => (f.recipients ?? []).filter((r) => (r.recipType ?? 'to') === type).map((r) => smtp(r.smtpAddress) ?? smtp(r.email)).filter((a): a is string => a !== undefined);
  const listed = (k: string) => (header(k) ? mailboxes(parseAddressHeader(headerValues(headers, k))).map((a) => a.address!) : undefined);
  const html = f.bodyHtml ?? (f.html ? decodeHtml(f.html, f.internetCodepage) : null);
  return {
    headers,
    headersUnknown: headers.length === 0,
    from: fromHeader ? { address: fromHeader.address!, name: fromHeader.name } : senderAddress ? { address: senderAddress, name: f.senderName ?? '' } : null,
    to: listed('to') ?? recipients('to'),
    cc: listed('cc') ?? recipients('cc'),
    replyTo: header('reply-to') ? (mailboxes(parseAddressHeader(header('reply-to')))[0]?.address ?? null) : null,
    subject: f.subject ?? header('subject') ?? null,
    messageId: f.messageId ?? header('message-id') ?? null,
    date: parseDate(header('date'), f.clientSubmitTime, f.messageDeliveryTime),
    text: f.body ?? '',
    html: html && html.trim() ? html : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const outlookMsgScanner: Scanner = {
  name: 'outlook-msg',
  version: '1',
  layer: 'email',
  accepts: (info) => info.kind === 'file' && info.fileType === 'ole',
  async scan(input, ctx) {
    // Larger compound files are reported by the OLE scanner as not fully scanned.
    if (input.info.size > MAX_OLE_BYTES) return {};
    const data = await input.bytes(MAX_OLE_BYTES);
    if (!mayBeMessage(data)) return {};
    let reader: MsgReader;
    let fields: FieldsData;
    let facts: ReturnType<typeof messageFacts>;
    try {
      // msgreader can loop forever on damaged sector chains: our bounded reader checks first
      const damage = openCompound(data).damage;
      if (damage?.length) throw new Error(`damaged compound file: ${damage.slice(0, 3).join('; ')}`);
      reader = new MsgReader(new DataView(data.buffer, data.byteOffset, data.byteLength));
      fields = reader.getFileData();
      if (fields.error) throw new Error(fields.error);
      if (!isMessage(fields)) return {};
      // values of unexpected types in a damaged message make the library's getters throw
      facts = messageFacts(fields);
    } catch (err) {
      return { evidence: [{ heuristic: 'UNPARSEABLE', details: `not a readable Outlook message: ${errorMessage(err)}`.slice(0, 300), data: { format: 'msg' } }] };
    }
    const session = new ArchiveSession(ctx, 'attachment');
    const names: string[] = [];
    const evidence: Finding[] = [];
    for (const [i, a] of (fields.attachments ?? []).entries()) {
      if (!session.active) break;
      const fallback = `attachment-${i + 1}.${a.innerMsgContent ? 'msg' : 'bin'}`;
      let name = a.fileName ?? a.fileNameShort ?? a.name ?? fallback;
      let content: Uint8Array | undefined;
      try {
        const got = reader.getAttachment(a);
        content = got.content;
        if (a.innerMsgContent) name = got.fileName && got.fileName !== 'undefined.msg' ? got.fileName : fallback;
      } catch (err) {
        session.corrupt(err, name);
        continue;
      }
      if (!content) continue;
      const member = session.member(name, { meta: { ...(a.attachMimeTag ? { contentType: a.attachMimeTag } : {}), ...(a.innerMsgContent ? { embeddedMessage: true } : {}), ...(a.attachmentHidden ? { hidden: true } : {}) } });
      names.push(member.name);
      try {
        await member.write(Buffer.from(content.buffer, content.byteOffset, content.byteLength));
      } catch (err) {
        if (!isExtractionStop(err)) session.corrupt(err, member.name);
      }
      await session.emit(member);
    }
    if (fields.compressedRtf) {
      try {
        facts.rtf = decompressRtf(fields.compressedRtf);
      } catch (err) {
        evidence.push({ heuristic: 'UNPARSEABLE', details: `RTF body not decompressed: ${errorMessage(err)}`.slice(0, 300), data: { format: 'compressed-rtf' } });
      }
    }
    const result = await finishMessage(facts, session, names, input.info, ctx);
    return { evidence: [...evidence, ...result.evidence], attributes: { ...result.attributes, msgClass: fields.messageClass ?? null } };
  },
};
