/**
 * What every archive scanner shares: bounded extraction of members (compression ratio, total
 * bytes, time), member-name checks (path traversal, double extensions), spooling of large
 * members to `ctx.tmpDir`, emission of children with refusal handling, and findings that are
 * aggregated per heuristic so that an archive of 10,000 bad names yields one finding, not 10,000.
 *
 * A scanner opens one `ArchiveSession` per scan, one `MemberExtraction` per member, writes the
 * member's bytes into it as they are decompressed, then hands it to `session.emit()`:
 *
 * @example
 * const session = new ArchiveSession(ctx, 'archive_member');
 * try {
 *   for (const entry of entries) {
 *     if (!session.active) break;
 *     const member = session.member(entry.name, { compressedSize: entry.compressedSize });
 *     try {
 *       for await (const chunk of entry.stream()) await member.write(chunk);
 *     } catch (err) {
 *       if (!isExtractionStop(err)) session.corrupt(err, member.name);
 *     }
 *     await session.emit(member);
 *   }
 * } finally {
 *   session.close();
 * }
 * return session.result();
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { isExecutableName } from './file-type.ts';
import type { ChildRefusal, ChildSpec, Finding, Relation, ScanContext, ScanResult } from './types.ts';
import type { HeuristicId } from '../verdict/heuristics.ts';

/** Below this many expanded bytes a member is never called a bomb, whatever its ratio. */
export const MIN_BOMB_BYTES = 1024 * 1024;
/** How many members a finding lists by name (the count is always complete). */
export const MAX_LISTED = 50;
/** Longest child name kept; longer names keep their head and their extension-bearing tail. */
export const MAX_NAME_LENGTH = 1024;

/** Why extraction stopped: a member (`ratio`) or the whole archive (the others). */
export type StopReason = 'ratio' | 'total_bytes' | 'deadline' | 'aborted' | 'refused';

/** Thrown by `MemberExtraction.write()` and `ArchiveSession.checkContinue()`; already reported. */
export class ExtractionStop extends Error {
  override name = 'ExtractionStop';
  constructor(readonly reason: StopReason) {
    super(`extraction stopped: ${reason}`);
  }
}

export function isExtractionStop(err: unknown): err is ExtractionStop {
  return err instanceof ExtractionStop;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------
// Member names

export interface MemberName {
  /** Safe to show and to use as a child name: relative, `/`-separated, no `.`/`..`, no controls. */
  name: string;
  /** The name climbed out of the extraction folder (`..` segment, absolute path, drive letter). */
  traversal: boolean;
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/g;
// `..` followed by dots or spaces, which Windows trims, still names the parent folder.
const PARENT_SEGMENT = /^\.\.[. ]*$/;

/**
 * Sanitises an archive member name. Backslashes count as separators (Windows extractors treat
 * them so); the result never starts with `/`, never holds `..`, and is never empty.
 *
 * @example
 * sanitiseMemberName('..\\..\\Windows\\evil.dll') // { name: 'Windows/evil.dll', traversal: true }
 */
export function sanitiseMemberName(raw: string, fallback = 'member'): MemberName {
  const unified = raw.replace(CONTROL_CHARS, '').replace(/\\/g, '/');
  const absolute = unified.startsWith('/') || /^[a-zA-Z]:/.test(unified);
  const segments = unified.split('/');
  const traversal = absolute || segments.some((s) => PARENT_SEGMENT.test(s));
  if (segments.length > 0) segments[0] = segments[0].replace(/^[a-zA-Z]:/, '');
  const kept = segments.filter((s) => s !== '' && s !== '.' && !PARENT_SEGMENT.test(s));
  let name = kept.join('/');
  if (name.length > MAX_NAME_LENGTH) name = `${name.slice(0, 500)}…${name.slice(-500)}`;
  return { name: name || fallback, traversal };
}

/** The last path segment of a name, whichever separator it uses. */
export function baseName(name: string): string {
  const parts = name.split(/[\\/]/);
  return parts[parts.length - 1] ?? '';
}

// Extensions a lure shows before the real, executable one.
const DECOY_EXTENSIONS = new Set([
  'pdf', 'doc', 'docx', 'docm', 'xls', 'xlsx', 'xlsm', 'ppt', 'pptx', 'rtf', 'txt', 'csv', 'odt', 'ods', 'odp',
  'jpg', 'jpeg', 'png', 'gif', 'bmp', 'tif', 'tiff', 'svg', 'mp3', 'mp4', 'avi', 'mov', 'wav', 'wmv', 'mkv',
  'htm', 'html', 'xml', 'json', 'eml', 'msg', 'zip', 'rar', '7z', 'iso', 'img',
]);
const BIDI_OVERRIDES = /[\u202a-\u202e\u2066-\u2069]/;

/**
 * Why a name disguises an executable, or `undefined`: a document extension in front of an
 * executable one (`invoice.pdf.exe`, also with padding spaces), or a right-to-left override
 * that makes `invoice\u202Efdp.exe` display as `invoiceexe.pdf`.
 */
export function doubleExtension(name: string): 'double_extension' | 'bidi_override' | undefined {
  const base = baseName(name);
  if (BIDI_OVERRIDES.test(base)) return 'bidi_override';
  const parts = base.toLowerCase().split('.').map((p) => p.trim());
  if (parts.length < 3) return undefined;
  const last = parts[parts.length - 1];
  const decoy = parts[parts.length - 2];
  return DECOY_EXTENSIONS.has(decoy) && isExecutableName(`x.${last}`) ? 'double_extension' : undefined;
}

/**
 * The name of a decompressed stream derived from its container's name: `a.tar.gz` → `a.tar`,
 * `a.tgz` → `a.tar`; a name without a known suffix is kept as is.
 */
export function stripCompressionSuffix(name: string, suffixes: Record<string, string>): string {
  const base = baseName(name);
  const dot = base.lastIndexOf('.');
  if (dot > 0) {
    const ext = base.slice(dot + 1).toLowerCase();
    if (ext in suffixes) return base.slice(0, dot) + suffixes[ext];
  }
  return base || 'decompressed';
}

// ---------------------------------------------------------------------------------------------
// Session

interface Aggregate {
  count: number;
  items: Record<string, unknown>[];
}

export interface MemberOptions {
  /** Bytes the member occupies in the archive; enables the ratio check. */
  compressedSize?: number;
  /** The name comes from the archive (checked for traversal); false for derived names. */
  fromArchive?: boolean;
  /** Merged into the child's `meta`. */
  meta?: Record<string, unknown>;
}

/** One scan of one archive: limits, findings and children. Create one per `scan()` call. */
export class ArchiveSession {
  /** Aborts when the request is cancelled or the deadline passes; hand it to libraries. */
  readonly signal: AbortSignal;
  /** Set when extraction of the whole archive stopped (a member bomb does not set it). */
  stopped?: StopReason;
  /** Bytes extracted by this scan so far, counted as they stream. */
  extractedBytes = 0;
  /** Children accepted by the engine. */
  emitted = 0;
  /** Members met (files, links and all). */
  members = 0;
  readonly attributes: Record<string, unknown> = {};
  private readonly findings = new Map<HeuristicId, Aggregate>();
  private readonly timeout = new AbortController();
  private readonly timer?: NodeJS.Timeout;
  private counter = 0;

  constructor(
    readonly ctx: ScanContext,
    readonly relation: Relation,
  ) {
    const left = ctx.deadline - Date.now();
    if (left < 2 ** 31 - 1) {
      this.timer = setTimeout(() => this.timeout.abort(new Error('scanner deadline passed')), Math.max(0, left));
      this.timer.unref();
    }
    this.signal = AbortSignal.any([ctx.signal, this.timeout.signal]);
  }

  /** False once the archive must not be read further. */
  get active(): boolean {
    if (this.stopped) return false;
    try {
      this.checkContinue();
      return true;
    } catch {
      return false;
    }
  }

  /** Throws (and reports once) when the request was cancelled or the deadline has passed. */
  checkContinue(): void {
    if (this.stopped === 'deadline' || this.stopped === 'aborted') throw new ExtractionStop(this.stopped);
    if (this.ctx.signal.aborted) this.stop('aborted');
    else if (Date.now() >= this.ctx.deadline || this.timeout.signal.aborted) this.stop('deadline');
    else return;
    throw new ExtractionStop(this.stopped!);
  }

  /** Stops the whole archive; time and refusals are reported as ARCHIVE_LIMIT. */
  stop(reason: StopReason, data: Record<string, unknown> = {}): void {
    if (this.stopped) return;
    this.stopped = reason;
    if (reason === 'deadline' || reason === 'aborted') {
      this.flag('ARCHIVE_LIMIT', { reason, emitted: this.emitted, ...data });
    }
  }

  /** Records one occurrence of a finding; occurrences of one heuristic become one finding. */
  flag(heuristic: HeuristicId, item: Record<string, unknown> = {}): void {
    let agg = this.findings.get(heuristic);
    if (!agg) {
      agg = { count: 0, items: [] };
      this.findings.set(heuristic, agg);
    }
    agg.count++;
    if (agg.items.length < MAX_LISTED) agg.items.push(item);
  }

  has(heuristic: HeuristicId): boolean {
    return this.findings.has(heuristic);
  }

  /**
   * Sorts out an error thrown while reading: a limit stop (already reported), the request's
   * cancellation or deadline (reported here as ARCHIVE_LIMIT), or damage (ARCHIVE_CORRUPT).
   */
  failure(err: unknown, member?: string, extra: Record<string, unknown> = {}): 'stop' | 'corrupt' {
    if (isExtractionStop(err)) return 'stop';
    if (this.signal.aborted || this.stopped) {
      try {
        this.checkContinue();
      } catch {
        return 'stop';
      }
      if (this.stopped) return 'stop';
    }
    this.corrupt(err, member, extra);
    return 'corrupt';
  }

  /** Reports damage: the archive as a whole (no member) or one member. */
  corrupt(err: unknown, member?: string, extra: Record<string, unknown> = {}): void {
    this.flag('ARCHIVE_CORRUPT', { ...(member === undefined ? {} : { name: member }), error: errorMessage(err).slice(0, 300), ...extra });
  }

  /**
   * Starts a member: sanitises and checks its name, and returns the sink its bytes are written
   * to. Names from the archive are checked for traversal; every name for a double extension.
   */
  member(rawName: string, opts: MemberOptions = {}): MemberExtraction {
    this.members++;
    const checked = sanitiseMemberName(rawName, `member-${++this.counter}`);
    const fromArchive = opts.fromArchive ?? true;
    const meta: Record<string, unknown> = { ...opts.meta };
    if (fromArchive && checked.traversal) {
      this.flag('ARCHIVE_PATH_TRAVERSAL', { name: checked.name, original: rawName.slice(0, MAX_NAME_LENGTH) });
      meta.originalName = rawName.slice(0, MAX_NAME_LENGTH);
    }
    const disguise = doubleExtension(checked.name);
    if (disguise) this.flag('ARCHIVE_DOUBLE_EXTENSION', { name: checked.name, reason: disguise });
    return new MemberExtraction(this, checked.name, opts.compressedSize, meta);
  }

  /**
   * Hands a member's bytes to the engine as a child. Nothing is emitted once time ran out or
   * the engine refused a child; a refusal stops the archive and is reported as ARCHIVE_LIMIT.
   * Returns true when the engine took the child.
   */
  async emit(member: MemberExtraction, meta: Record<string, unknown> = {}): Promise<boolean> {
    if (this.stopped === 'deadline' || this.stopped === 'aborted' || this.stopped === 'refused') {
      await member.discard();
      return false;
    }
    const payload = await member.finish();
    const childMeta = { ...member.meta, ...meta, size: member.size };
    const child: ChildSpec =
      'file' in payload
        ? { name: member.name, relation: this.relation, file: payload.file, meta: childMeta }
        : { name: member.name, relation: this.relation, data: payload.data, meta: childMeta };
    let answer: true | ChildRefusal;
    try {
      answer = await this.ctx.emitChild(child);
    } catch (err) {
      await member.discard();
      throw err;
    }
    if (answer === true) {
      this.emitted++;
      return true;
    }
    await member.discard();
    this.flag('ARCHIVE_LIMIT', { reason: answer, name: member.name, emitted: this.emitted });
    this.stop('refused');
    return false;
  }

  /** Ends the session (clears the deadline timer). Safe to call twice. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  result(): ScanResult {
    const evidence: Finding[] = [];
    for (const [heuristic, agg] of this.findings) {
      const details = describe(heuristic, agg);
      evidence.push({
        heuristic,
        ...(details ? { details } : {}),
        data: { count: agg.count, items: agg.items, ...(agg.count > agg.items.length ? { listed: agg.items.length } : {}) },
      });
    }
    return {
      evidence,
      attributes: { ...this.attributes, members: this.members, emitted: this.emitted, extractedBytes: this.extractedBytes },
    };
  }
}

/** One line for a finding: the members concerned, or what stopped extraction. */
function describe(heuristic: HeuristicId, agg: Aggregate): string | undefined {
  const first = agg.items[0] ?? {};
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  if (heuristic === 'ARCHIVE_LIMIT') {
    const at = str(first.name);
    return `extraction stopped: ${String(first.reason)}${at ? ` (at ${at})` : ''}`;
  }
  const names = agg.items.map((i) => str(i.name)).filter((n): n is string => n !== undefined);
  if (names.length > 0) {
    return `${agg.count} member${agg.count === 1 ? '' : 's'}: ${names.slice(0, 5).join(', ')}${agg.count > 5 ? ', …' : ''}`;
  }
  return str(first.error) ?? str(first.reason);
}

// ---------------------------------------------------------------------------------------------
// One member

/**
 * The bytes of one member as they are decompressed: kept in memory up to
 * `limits.maxInMemoryChild`, then spooled to a randomly named file under `ctx.tmpDir`. Every
 * write is checked against the member's ratio allowance, what is left of the total budget and
 * the deadline; the write that crosses a limit keeps the bytes up to it and throws
 * `ExtractionStop` (already reported).
 */
export class MemberExtraction {
  size = 0;
  /** Set when a limit cut the member short. */
  stop?: StopReason;
  private chunks: Buffer[] = [];
  private file?: string;
  private fh?: FileHandle;
  private done = false;

  constructor(
    private readonly session: ArchiveSession,
    readonly name: string,
    readonly compressedSize: number | undefined,
    readonly meta: Record<string, unknown>,
  ) {}

  /** Writes decompressed bytes. Resolves once they are held (memory or disk). */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.stop) throw new ExtractionStop(this.stop);
    this.session.checkContinue();
    if (this.session.stopped) throw new ExtractionStop(this.session.stopped);
    if (chunk.byteLength === 0) return;
    // Copy what is not a Buffer: web-stream producers may reuse their arrays.
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    const { limits } = this.session.ctx;
    const { ratioLeft, totalLeft } = this.left();
    const allowed = Math.min(ratioLeft, totalLeft);
    if (buf.length <= allowed) {
      await this.append(buf);
      return;
    }
    if (allowed > 0) await this.append(buf.subarray(0, allowed));
    const reason: StopReason = ratioLeft <= totalLeft ? 'ratio' : 'total_bytes';
    this.stop = reason;
    this.meta.truncated = true;
    this.session.flag('ARCHIVE_BOMB', {
      name: this.name,
      reason,
      extractedBeforeStop: this.size,
      ...(this.compressedSize === undefined ? {} : { compressedSize: this.compressedSize }),
      limit: reason === 'ratio' ? limits.maxCompressionRatio : limits.maxTotalExtractedBytes,
    });
    if (reason === 'total_bytes') this.session.stop('total_bytes');
    throw new ExtractionStop(reason);
  }

  /**
   * How many more bytes this member may take before a limit stops it. Decoders that produce
   * output synchronously use it to stop early; `write()` still enforces (and reports) it.
   */
  allowance(): number {
    const { ratioLeft, totalLeft } = this.left();
    return Math.max(0, Math.min(ratioLeft, totalLeft));
  }

  private left(): { ratioLeft: number; totalLeft: number } {
    const { limits } = this.session.ctx;
    const ratioCap =
      this.compressedSize === undefined ? Infinity : Math.max(MIN_BOMB_BYTES, limits.maxCompressionRatio * this.compressedSize);
    return { ratioLeft: ratioCap - this.size, totalLeft: limits.maxTotalExtractedBytes - this.session.extractedBytes };
  }

  /** A web `WritableStream` over `write()`, for libraries that write into one. */
  writable(): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({ write: (chunk) => this.write(chunk) });
  }

  /** Closes the member and returns where its bytes are. */
  async finish(): Promise<{ data: Buffer } | { file: string }> {
    this.done = true;
    if (this.fh && this.file) {
      await this.fh.close();
      this.fh = undefined;
      return { file: this.file };
    }
    const data = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = [];
    return { data };
  }

  /** Forgets what was written (a wrong password's garbage) so the member can be written again. */
  async reset(): Promise<void> {
    await this.discard();
    this.session.extractedBytes -= this.size;
    this.size = 0;
    this.stop = undefined;
    this.done = false;
    delete this.meta.truncated;
  }

  /** Drops the member's bytes (memory and spool file). */
  async discard(): Promise<void> {
    this.done = true;
    this.chunks = [];
    if (this.fh) {
      await this.fh.close().catch(() => undefined);
      this.fh = undefined;
    }
    if (this.file) {
      await fsp.rm(this.file, { force: true }).catch(() => undefined);
      this.file = undefined;
    }
  }

  private async append(buf: Buffer): Promise<void> {
    if (this.done) throw new Error('member already finished');
    this.size += buf.length;
    this.session.extractedBytes += buf.length;
    if (!this.fh && this.size <= this.session.ctx.limits.maxInMemoryChild) {
      this.chunks.push(buf);
      return;
    }
    if (!this.fh) {
      // Never derived from the member name: the name is attacker-controlled.
      this.file = path.join(this.session.ctx.tmpDir, `member-${crypto.randomUUID()}`);
      await fsp.mkdir(this.session.ctx.tmpDir, { recursive: true });
      this.fh = await fsp.open(this.file, 'wx', 0o600);
      for (const c of this.chunks) await writeAll(this.fh, c);
      this.chunks = [];
    }
    await writeAll(this.fh, buf);
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw deflate over a file range (zip local entries, gzip members)

export interface InflateOutcome {
  /** Compressed bytes the deflate stream occupied (exact when `ended`). */
  consumed: number;
  /** The deflate stream reached its end marker. */
  ended: boolean;
}

/**
 * Inflates the raw deflate stream that starts at `start` in `file`, reading at most up to `end`,
 * and passes each decompressed chunk to `write` (awaited: backpressure). Stops at the end of
 * the deflate stream and says how many compressed bytes it took, so that whatever follows
 * (a gzip trailer, the next zip entry) can be found. Throws zlib's error on damaged or
 * truncated data, and whatever `write` throws.
 */
export async function inflateRawRange(
  file: string,
  start: number,
  end: number,
  write: (chunk: Buffer) => Promise<void>,
  signal: AbortSignal,
): Promise<InflateOutcome> {
  if (end <= start) throw new Error('unexpected end of file');
  const source = fs.createReadStream(file, { start, end: end - 1, highWaterMark: 64 * 1024, signal });
  const inflate = zlib.createInflateRaw({ chunkSize: 64 * 1024 });
  source.on('error', (err) => inflate.destroy(err));
  source.pipe(inflate);
  try {
    for await (const chunk of inflate) await write(chunk as Buffer);
    return { consumed: inflate.bytesWritten, ended: true };
  } finally {
    source.unpipe(inflate);
    source.destroy();
    inflate.destroy();
  }
}

/** Reads up to `length` bytes at `position` (fewer at the end of the file). */
export async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(Math.max(0, length));
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === buf.length ? buf : buf.subarray(0, off);
}
