/**
 * Files carried as text: BinHex 4.0 and uuencode (classic and `begin-base64`), standalone or
 * inside a text file, and long base64 blocks in plain text that decode to a known binary
 * format (an executable, an archive, an Office or PDF document). Each decoded file becomes an
 * `embedded_object` child, written through the archive session (total bytes, spooling, name
 * checks); BinHex run-length expansion is bounded by the ratio limit like any decompression.
 *
 * One pass over the stream, whatever its size: lines drive the BinHex and uuencode decoders,
 * and a byte-level decoder follows base64 runs (across line breaks and indentation) and keeps
 * only those whose first decoded bytes name a format worth scanning; the rest is skipped as
 * it streams, so a 1 GB log costs one read.
 *
 * @example
 * const r = await runScanner(textEncodingsScanner, Buffer.from(`begin 644 a.com\n...\nend\n`));
 * r.children[0].name // 'a.com'
 */
import { ArchiveSession, MAX_NAME_LENGTH, type MemberExtraction } from './archive-common.ts';
import { detectType, isExecutableType } from './file-type.ts';
import type { Scanner } from './types.ts';

/** Base64 runs shorter than this many characters are ignored (96 decoded bytes). */
export const MIN_BASE64_CHARS = 128;
/** Decoded bytes examined to decide whether a base64 run is a file worth scanning. */
const HEAD_BYTES = 4096;
/** Lines longer than this cannot be BinHex or uuencode syntax; only their start is kept. */
const MAX_LINE = 4096;

/** Formats a base64 block is emitted for: programs, containers and documents, not media or text. */
const BASE64_TYPES = new Set([
  'pe', 'elf', 'macho', 'class', 'wasm', 'lnk', 'zip', 'gzip', 'bzip2', 'xz', '7z', 'rar', 'cab', 'zstd', 'tar', 'cpio',
  'arj', 'lzip', 'chm', 'ole', 'pdf', 'rtf',
]);

const B64 = new Int16Array(256).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) B64[c.charCodeAt(0)] = i;

const HQX_ALPHABET = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';
const HQX = new Int16Array(256).fill(-1);
for (const [i, c] of [...HQX_ALPHABET].entries()) HQX[c.charCodeAt(0)] = i;

/** CRC-16/XMODEM, the checksum BinHex puts after its header and each fork. */
export function crc16(data: Uint8Array, crc = 0): number {
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

// ---------------------------------------------------------------------------------------------
// Base64 runs

/** Follows base64 runs through the byte stream; see the module comment. */
class Base64Runs {
  private inRun = false;
  private afterBreak = false;
  private lineStart = true;
  private fromLineStart = false;
  private lineChars = 0;
  /** Values of a run's first characters, decoded only if the run reaches MIN_BASE64_CHARS. */
  private readonly early = new Uint8Array(MIN_BASE64_CHARS);
  private chars = 0;
  private bits = 0;
  private nbits = 0;
  private padding = 0;
  private out: number[] = [];
  private head: Buffer[] = [];
  private headBytes = 0;
  private decision: 'keep' | 'drop' | undefined;
  private member?: MemberExtraction;
  private type = '';
  private runStart = 0;
  private ended = false;
  found = 0;

  constructor(private readonly session: ArchiveSession) {}

  /** Feeds bytes at stream offset `offset`; synchronous (no promise) unless a run needs work. */
  feed(buf: Buffer, offset: number): Promise<void> | undefined {
    const pos = this.scan(buf, 0, offset);
    if (pos >= buf.length && this.out.length === 0 && !this.ended) return undefined;
    return this.feedFrom(buf, pos, offset);
  }

  private async feedFrom(buf: Buffer, pos: number, offset: number): Promise<void> {
    for (;;) {
      await this.flush();
      if (this.ended) await this.finish();
      if (pos >= buf.length) return;
      pos = this.scan(buf, pos, offset);
    }
  }

  /** Abandons the current run (it was BinHex or uuencode syntax). */
  async drop(): Promise<void> {
    if (this.member) await this.member.discard();
    this.resetRun();
  }

  /** Ends the run in progress at the end of the stream. */
  async end(): Promise<void> {
    if (this.inRun) {
      this.ended = true;
      await this.flush();
      await this.finish();
    }
  }

  /**
   * Decodes synchronously until the buffer ends, the head of a run is ready to be judged, or a
   * run worth finishing ends; returns where it stopped. Words and other short runs are
   * dropped on the spot. A line break continues a run only when the run started a line and
   * the line held whole base64 quanta (at least 16 characters): the shape of a wrapped block,
   * not of a word at the end of a sentence.
   */
  private scan(buf: Buffer, pos: number, offset: number): number {
    // Hot loop: state in locals, written back on every exit. Short runs (words) are only
    // counted; their values are kept aside and decoded once the run is long enough to matter.
    let inRun = this.inRun;
    let chars = this.chars;
    let lineChars = this.lineChars;
    let lineStart = this.lineStart;
    let afterBreak = this.afterBreak;
    let padding = this.padding;
    const keep = this.decision !== 'drop';
    for (; pos < buf.length; pos++) {
      const c = buf[pos];
      const v = B64[c];
      if (v >= 0 && padding === 0) {
        if (!inRun) {
          inRun = true;
          this.runStart = offset + pos;
          this.fromLineStart = lineStart;
        }
        lineStart = false;
        afterBreak = false;
        chars++;
        lineChars++;
        if (chars < MIN_BASE64_CHARS) {
          this.early[chars - 1] = v;
          continue;
        }
        if (chars === MIN_BASE64_CHARS) for (let k = 0; k < MIN_BASE64_CHARS - 1; k++) this.decode(this.early[k]);
        if (keep) this.decode(v);
        // Give the head a chance to be judged before decoding megabytes of an unwanted run.
        if (this.out.length >= HEAD_BYTES && this.decision === undefined) {
          this.save(inRun, chars, lineChars, lineStart, afterBreak, padding);
          return pos + 1;
        }
        continue;
      }
      if (!inRun) {
        lineStart = c === 0x0a || (lineStart && (c === 0x20 || c === 0x09 || c === 0x0d));
        continue;
      }
      if (c === 0x3d /* = */ && padding < 2) {
        padding++;
        continue;
      }
      if (c === 0x0d) continue;
      if (c === 0x0a && padding === 0 && this.fromLineStart && lineChars >= 16 && lineChars % 4 === 0) {
        afterBreak = true;
        lineChars = 0;
        continue;
      }
      if ((c === 0x20 || c === 0x09) && afterBreak) continue; // indentation of the block's next line
      const newline = c === 0x0a;
      if (chars < MIN_BASE64_CHARS) {
        inRun = false;
        chars = 0;
        lineChars = 0;
        padding = 0;
        afterBreak = false;
        lineStart = newline;
        continue;
      }
      this.ended = true;
      lineStart = newline;
      this.save(inRun, chars, lineChars, lineStart, afterBreak, padding);
      return pos + 1;
    }
    this.save(inRun, chars, lineChars, lineStart, afterBreak, padding);
    return pos;
  }

  private save(inRun: boolean, chars: number, lineChars: number, lineStart: boolean, afterBreak: boolean, padding: number): void {
    this.inRun = inRun;
    this.chars = chars;
    this.lineChars = lineChars;
    this.lineStart = lineStart;
    this.afterBreak = afterBreak;
    this.padding = padding;
  }

  private decode(v: number): void {
    this.bits = ((this.bits << 6) | v) & 0xffffff;
    this.nbits += 6;
    if (this.nbits >= 8) {
      this.nbits -= 8;
      this.out.push((this.bits >> this.nbits) & 0xff);
    }
  }

  private async flush(): Promise<void> {
    if (this.out.length === 0) return;
    const bytes = Buffer.from(this.out);
    this.out = [];
    if (this.decision === undefined) {
      this.head.push(bytes);
      this.headBytes += bytes.length;
      if (this.headBytes >= HEAD_BYTES) await this.decide();
      return;
    }
    if (this.decision === 'keep' && this.member && !this.member.stop) await this.write(bytes);
  }

  private async decide(): Promise<void> {
    const head = Buffer.concat(this.head);
    this.head = [];
    this.headBytes = 0;
    const t = detectType(head);
    // Two-byte magics (binary cpio, ARJ) turn up by chance in decoded noise such as hex text:
    // only the six-character ASCII cpio headers are strong enough to act on.
    const weak = (t.type === 'cpio' && !head.subarray(0, 4).equals(Buffer.from('0707'))) || t.type === 'arj';
    if (this.chars < MIN_BASE64_CHARS || !BASE64_TYPES.has(t.type) || weak || !this.session.active) {
      this.decision = 'drop';
      return;
    }
    this.decision = 'keep';
    this.type = t.type;
    this.found++;
    this.member = this.session.member(`base64-${this.found}.${t.extensions[0] || 'bin'}`, { fromArchive: false, meta: { encoding: 'base64', offset: this.runStart, type: t.type } });
    await this.write(head);
  }

  private async write(bytes: Buffer): Promise<void> {
    try {
      await this.member!.write(bytes);
    } catch (err) {
      this.session.failure(err, this.member!.name);
    }
  }

  private async finish(): Promise<void> {
    if (this.decision === undefined && this.chars >= MIN_BASE64_CHARS) await this.decide();
    const member = this.member;
    if (member) {
      this.session.flag('TEXT_ENCODED_FILE', { name: member.name, encoding: 'base64', type: this.type, offset: this.runStart });
      if (isExecutableType(this.type)) this.session.flag('TEXT_ENCODED_EXECUTABLE', { name: member.name, type: this.type, offset: this.runStart });
      this.member = undefined;
      await this.session.emit(member);
    }
    this.resetRun();
  }

  private resetRun(): void {
    this.inRun = false;
    this.afterBreak = false;
    this.fromLineStart = false;
    this.lineChars = 0;
    this.chars = 0;
    this.bits = 0;
    this.nbits = 0;
    this.padding = 0;
    this.out = [];
    this.head = [];
    this.headBytes = 0;
    this.decision = undefined;
    this.member = undefined;
    this.type = '';
    this.ended = false;
  }
}

// ---------------------------------------------------------------------------------------------
// BinHex 4.0

type HqxStage = 'header' | 'data' | 'dataCrc' | 'rsrc' | 'rsrcCrc' | 'done';

/** Streams one BinHex 4.0 body (the characters between the colons) into children. */
class BinHexDecoder {
  private bits = 0;
  private nbits = 0;
  private last = -1;
  private marker = false;
  private stage: HqxStage = 'header';
  private header: number[] = [];
  private name = '';
  private dataLength = 0;
  private rsrcLength = 0;
  private left = 0;
  private crc = 0;
  private crcBytes: number[] = [];
  private member?: MemberExtraction;
  private out: number[] = [];
  private encoded = 0;
  bad?: string;

  constructor(private readonly session: ArchiveSession) {}

  get finished(): boolean {
    return this.stage === 'done';
  }

  /** Feeds encoded characters (whitespace allowed). */
  async feed(text: string): Promise<void> {
    for (let i = 0; i < text.length && !this.bad && this.stage !== 'done'; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) continue;
      const v = c < 256 ? HQX[c] : -1;
      if (v < 0) {
        this.bad = `character ${JSON.stringify(text[i])} outside the BinHex alphabet`;
        break;
      }
      this.encoded++;
      this.bits = ((this.bits << 6) | v) & 0xffffff;
      this.nbits += 6;
      if (this.nbits >= 8) {
        this.nbits -= 8;
        this.rle((this.bits >> this.nbits) & 0xff);
      }
      if (this.out.length >= 64 * 1024) await this.drain();
    }
    await this.drain();
  }

  /** Run-length expansion: 0x90 n repeats the previous byte n-1 more times; 0x90 0 is 0x90. */
  private rle(b: number): void {
    if (this.marker) {
      this.marker = false;
      if (b === 0) {
        this.byte(0x90);
        this.last = 0x90;
      } else if (this.last >= 0) {
        for (let k = 1; k < b; k++) this.byte(this.last);
      }
      return;
    }
    if (b === 0x90) {
      this.marker = true;
      return;
    }
    this.byte(b);
    this.last = b;
  }

  private byte(b: number): void {
    this.out.push(b);
  }

  /** Moves decoded bytes through the stages (header, forks, checksums). */
  private async drain(): Promise<void> {
    let i = 0;
    const out = this.out;
    this.out = [];
    while (i < out.length && this.stage !== 'done' && !this.bad) {
      if (this.stage === 'header') {
        this.header.push(out[i++]);
        const h = this.header;
        const n = h[0];
        if (n < 1 || n > 63) {
          this.bad = 'bad name length in the BinHex header';
          break;
        }
        if (h.length === n + 22) this.parseHeader();
        continue;
      }
      if (this.stage === 'data' || this.stage === 'rsrc') {
        const take = Math.min(this.left, out.length - i);
        const chunk = Buffer.from(out.slice(i, i + take));
        i += take;
        this.left -= take;
        this.crc = crc16(chunk, this.crc);
        if (this.member && !this.member.stop) {
          try {
            await this.member.write(chunk);
          } catch (err) {
            this.session.failure(err, this.member.name);
          }
        }
        if (this.left === 0) this.stage = this.stage === 'data' ? 'dataCrc' : 'rsrcCrc';
        continue;
      }
      this.crcBytes.push(out[i++]);
      if (this.crcBytes.length === 2) await this.endFork();
    }
  }

  private parseHeader(): void {
    const h = Buffer.from(this.header);
    const n = h[0];
    const expected = h.readUInt16BE(n + 20);
    if (crc16(h.subarray(0, n + 20)) !== expected) {
      this.bad = 'BinHex header checksum mismatch';
      return;
    }
    this.name = h.toString('latin1', 1, 1 + n);
    this.dataLength = h.readUInt32BE(n + 12);
    this.rsrcLength = h.readUInt32BE(n + 16);
    this.startFork('data');
  }

  private startFork(stage: 'data' | 'rsrc'): void {
    this.stage = stage;
    this.left = stage === 'data' ? this.dataLength : this.rsrcLength;
    this.crc = 0;
    this.crcBytes = [];
    const name = stage === 'data' ? this.name : `${this.name}.rsrc`;
    // The expansion is judged against the characters read so far, like a compressed size.
    this.member = this.session.member(name.replace(/:/g, '/'), { compressedSize: Math.max(this.encoded, 1), meta: { encoding: 'binhex', fork: stage } });
    if (this.left === 0) this.stage = stage === 'data' ? 'dataCrc' : 'rsrcCrc';
  }

  private async endFork(): Promise<void> {
    const stored = (this.crcBytes[0] << 8) | this.crcBytes[1];
    const member = this.member!;
    this.member = undefined;
    if (stored !== this.crc) {
      member.meta.corrupt = true;
      this.session.corrupt('BinHex fork checksum mismatch', member.name);
    }
    const isData = this.stage === 'dataCrc';
    if (member.size > 0 || isData) {
      this.session.flag('TEXT_ENCODED_FILE', { name: member.name, encoding: 'binhex', fork: isData ? 'data' : 'resource' });
      await this.session.emit(member);
    } else await member.discard();
    if (isData && this.rsrcLength > 0) this.startFork('rsrc');
    else this.stage = 'done';
  }

  /** The body ended (closing colon or end of file) before the last fork did. */
  async close(): Promise<void> {
    if (this.stage === 'done') return;
    const member = this.member;
    this.member = undefined;
    this.session.corrupt(this.bad ?? 'BinHex data ends before the file it describes', member?.name);
    if (member) {
      member.meta.corrupt = true;
      if (member.size > 0) await this.session.emit(member);
      else await member.discard();
    }
    this.stage = 'done';
  }
}

// ---------------------------------------------------------------------------------------------
// Lines: uuencode and BinHex framing

const BEGIN = /^begin(-base64)? ([0-7]{3,4}) (.+?)\s*$/;
const BINHEX_MARK = /^\s*\(This file must be converted with BinHex/;

class LineDecoders {
  private mode: 'idle' | 'uu' | 'uu64' | 'hqxWait' | 'hqx' = 'idle';
  private member?: MemberExtraction;
  private hqx?: BinHexDecoder;
  found = 0;

  constructor(private readonly session: ArchiveSession) {}

  /** True while inside a block (its lines are not free text). */
  get inBlock(): boolean {
    return this.mode !== 'idle';
  }

  async line(raw: string): Promise<void> {
    const line = raw.replace(/\r$/, '');
    switch (this.mode) {
      case 'idle': {
        const m = BEGIN.exec(line);
        if (m) {
          this.found++;
          this.mode = m[1] ? 'uu64' : 'uu';
          this.member = this.session.member(m[3].slice(0, MAX_NAME_LENGTH), { meta: { encoding: m[1] ? 'uuencode-base64' : 'uuencode', mode: m[2] } });
        } else if (BINHEX_MARK.test(line)) {
          this.mode = 'hqxWait';
          const rest = line.slice(line.indexOf(')') + 1);
          if (rest.trim() !== '') await this.hqxText(rest);
        }
        return;
      }
      case 'uu':
        return this.uuLine(line);
      case 'uu64':
        return this.uu64Line(line);
      case 'hqxWait':
      case 'hqx':
        return this.hqxText(line);
    }
  }

  private async uuLine(line: string): Promise<void> {
    if (line.trimEnd() === 'end') return this.endUu(true);
    if (line === '' || line === '`' || line === ' ') return;
    const n = (line.charCodeAt(0) - 32) & 63;
    const out = Buffer.alloc(Math.ceil(n / 3) * 3);
    // Encoders that strip trailing spaces leave lines short: missing characters count as zero.
    const sextet = (k: number): number => {
      const ch = k < line.length ? line.charCodeAt(k) : 32;
      return ch < 32 || ch > 96 ? -1 : (ch - 32) & 63;
    };
    for (let i = 1, o = 0; o < n; i += 4) {
      const q = [sextet(i), sextet(i + 1), sextet(i + 2), sextet(i + 3)];
      if (q.some((x) => x < 0)) {
        // `begin 644 name` followed by prose (a manual page, say) was not a block at all.
        if (this.member && this.member.size === 0) return this.abandon();
        this.session.corrupt('character outside the uuencode range', this.member?.name);
        return this.endUu(false);
      }
      out[o++] = (q[0] << 2) | (q[1] >> 4);
      out[o++] = ((q[1] << 4) | (q[2] >> 2)) & 0xff;
      out[o++] = ((q[2] << 6) | q[3]) & 0xff;
    }
    await this.write(out.subarray(0, n));
  }

  private async uu64Line(line: string): Promise<void> {
    if (line.trim() === '====') return this.endUu(true);
    await this.write(Buffer.from(line.trim(), 'base64'));
  }

  private async write(bytes: Buffer): Promise<void> {
    const member = this.member;
    if (!member || member.stop || bytes.length === 0) return;
    try {
      await member.write(bytes);
    } catch (err) {
      this.session.failure(err, member.name);
    }
  }

  private async endUu(complete: boolean): Promise<void> {
    const member = this.member;
    this.member = undefined;
    this.mode = 'idle';
    if (!member) return;
    if (!complete) {
      member.meta.corrupt = true;
      if (!this.session.has('ARCHIVE_CORRUPT')) this.session.corrupt('uuencoded block has no end line', member.name);
    }
    this.session.flag('TEXT_ENCODED_FILE', { name: member.name, encoding: member.meta.encoding });
    if (member.size > 0 || complete) await this.session.emit(member);
    else await member.discard();
  }

  private async hqxText(text: string): Promise<void> {
    let t = text;
    if (this.mode === 'hqxWait') {
      // The data starts with a colon on the first line that is not blank; prose after the
      // marker means the marker was only quoted.
      const start = t.trimStart().startsWith(':') ? t.indexOf(':') : -1;
      if (start < 0) {
        if (t.trim() !== '') this.mode = 'idle';
        return;
      }
      this.found++;
      this.mode = 'hqx';
      this.hqx = new BinHexDecoder(this.session);
      t = t.slice(start + 1);
    }
    const end = t.indexOf(':');
    await this.hqx!.feed(end >= 0 ? t.slice(0, end) : t);
    if (end >= 0 || this.hqx!.bad || this.hqx!.finished) {
      await this.hqx!.close();
      this.hqx = undefined;
      this.mode = 'idle';
    }
  }

  /** End of the stream: a block still open was cut short. */
  async end(): Promise<void> {
    if (this.mode === 'uu' || this.mode === 'uu64') await this.endUu(false);
    else if (this.mode === 'hqx') await this.hqx?.close();
    this.mode = 'idle';
  }

  /** Forgets a block that turned out not to be one. */
  private async abandon(): Promise<void> {
    await this.member?.discard();
    this.member = undefined;
    this.mode = 'idle';
    this.found--;
  }
}

/** Whether a line (its first piece) can start `begin ...` or the BinHex marker. */
function mayOpenBlock(piece: Buffer): boolean {
  let i = 0;
  while (i < piece.length && (piece[i] === 0x20 || piece[i] === 0x09 || piece[i] === 0x0d || piece[i] === 0x0a)) i++;
  return i === piece.length || piece[i] === 0x62 /* b */ || piece[i] === 0x28 /* ( */;
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const textEncodingsScanner: Scanner = {
  name: 'text-encodings',
  version: '1',
  layer: 'archive',
  accepts: (info) => info.kind === 'file' && (info.fileType === 'text' || info.fileType === 'binhex' || info.fileType === 'uuencode'),
  async scan(input, ctx) {
    const session = new ArchiveSession(ctx, 'embedded_object');
    const lines = new LineDecoders(session);
    const base64 = new Base64Runs(session);
    // The current line (null: it cannot matter to the line decoders).
    let line: string | null = '';
    let offset = 0;
    const source = input.stream();
    try {
      for await (const chunk of source) {
        session.checkContinue();
        const buf = chunk as Buffer;
        let start = 0;
        while (start < buf.length && session.active) {
          const nl = buf.indexOf(0x0a, start);
          const end = nl < 0 ? buf.length : nl + 1;
          const piece = buf.subarray(start, end);
          if (!lines.inBlock) {
            const pending = base64.feed(piece, offset + start);
            if (pending) await pending;
          }
          // Only lines that can open a block, or lines inside one, are worth a string.
          if (line !== null && (line.length > 0 || lines.inBlock || mayOpenBlock(piece))) {
            if (line.length < MAX_LINE) line += piece.toString('latin1', 0, Math.min(piece.length, MAX_LINE - line.length));
          } else line = null;
          if (nl >= 0) {
            if (line !== null) {
              const wasInBlock = lines.inBlock;
              await lines.line(line.replace(/\n$/, ''));
              // The line opened a block: whatever base64 run it seemed to start is block syntax.
              if (!wasInBlock && lines.inBlock) await base64.drop();
            }
            line = '';
          }
          start = end;
        }
        offset += buf.length;
        if (!session.active) break;
      }
      if (line) await lines.line(line);
      await lines.end();
      await base64.end();
    } catch (err) {
      session.failure(err);
    } finally {
      source.destroy();
      session.close();
    }
    const fileType = input.info.fileType;
    if ((fileType === 'binhex' || fileType === 'uuencode') && lines.found === 0) session.corrupt(`no ${fileType} block found`);
    return session.result();
  },
};
