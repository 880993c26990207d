/**
 * What the scanners that drive external extractors (7zz, lsar/unar) share, on top of
 * archive-common's session: a listing model, a plan made from the listing before anything is
 * written (bombs by declared ratio, member count, links), a watch on the output folder while a
 * tool writes into it, the walk that turns the extracted files into children without following
 * links, and the streaming of one member from a tool's stdout into a `MemberExtraction`.
 *
 * Listing first is what bounds disk use: a 200 MB member packed into 40 KB is refused from
 * its declared sizes and only a prefix of it is ever decompressed (through `member.write`,
 * which stops at the ratio allowance), instead of being written out and measured afterwards.
 *
 * @example
 * const plan = planExtraction(listing, archiveSize, ctx.limits);
 * flagLinks(session, plan.links);
 * // ... a tool extracts plan.bulk into outDir ...
 * await emitTree(session, outDir, plan.bulk);
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Limits } from '../config/schema.ts';
import { ArchiveSession, MAX_NAME_LENGTH, MIN_BOMB_BYTES, sanitiseMemberName, type MemberExtraction } from './archive-common.ts';
import { findTool, type ToolResult } from './subprocess.ts';

export type EntryKind = 'file' | 'dir' | 'symlink' | 'hardlink' | 'special';

/** One entry of a tool's listing. */
export interface ListedEntry {
  /** The name as the archive stores it (may climb out; the session checks it). */
  path: string;
  kind: EntryKind;
  /** Declared expanded size; undefined when the format does not say. */
  size?: number;
  /** Compressed bytes of this entry alone, when the format says. */
  packed?: number;
  /** Solid block (7z) whose compressed bytes the entries of the block share. */
  block?: string;
  encrypted: boolean;
  linkTarget?: string;
  /** Position in the listing (unar extracts by index). */
  index: number;
}

export interface Listing {
  /** The format the tool recognised (`7z`, `Cab`, `RAR`...). */
  format: string;
  entries: ListedEntry[];
  /** Damage the tool reported while listing (the entries before it are still there). */
  errors: string[];
  attributes: Record<string, unknown>;
}

/** A file entry with the compressed size its ratio is judged against. */
export interface PlannedEntry extends ListedEntry {
  compressed: number;
  /** Declared size beyond the ratio allowance: only a prefix is decompressed. */
  bomb: boolean;
}

export interface Plan {
  /** Files to extract, in listing order, within the member count limit. */
  files: PlannedEntry[];
  links: ListedEntry[];
  /** Devices, fifos and sockets: never extracted. */
  special: number;
  /** Files left out by `maxChildren`. */
  overCount: number;
}

/**
 * Sorts a listing into what to extract and what to report. The compressed size of an entry is
 * its own when the format gives one, its share of its solid block's, or else its share of the
 * whole file's (cabinets, cpio, iso: honest enough, since the ratio only matters for the big
 * ones).
 */
export function planExtraction(listing: Listing, archiveSize: number, limits: Limits): Plan {
  const files = listing.entries.filter((e) => e.kind === 'file');
  const blocks = new Map<string, { packed: number; size: number }>();
  for (const e of files) {
    if (e.block === undefined || e.block === '') continue;
    const b = blocks.get(e.block) ?? { packed: 0, size: 0 };
    b.packed += e.packed ?? 0;
    b.size += e.size ?? 0;
    blocks.set(e.block, b);
  }
  const declaredTotal = files.reduce((n, e) => n + (e.size ?? 0), 0);
  const estimate = (e: ListedEntry): number => {
    const b = e.block ? blocks.get(e.block) : undefined;
    if (b && b.packed > 0 && b.size > 0) return Math.max(1, Math.round((b.packed * (e.size ?? 0)) / b.size));
    if (e.packed !== undefined && !(e.block && b)) return Math.max(1, e.packed);
    if (e.size === undefined || declaredTotal === 0) return Math.max(1, archiveSize);
    return Math.max(1, Math.round((archiveSize * e.size) / declaredTotal));
  };
  const max = Math.max(0, limits.maxChildren);
  const planned = files.slice(0, max).map((e): PlannedEntry => {
    const compressed = estimate(e);
    const bomb = e.size !== undefined && e.size > Math.max(MIN_BOMB_BYTES, limits.maxCompressionRatio * compressed);
    return { ...e, compressed, bomb };
  });
  return {
    files: planned,
    links: listing.entries.filter((e) => e.kind === 'symlink' || e.kind === 'hardlink'),
    special: listing.entries.filter((e) => e.kind === 'special').length,
    overCount: Math.max(0, files.length - max),
  };
}

/** Reports link entries (never extracted) and the files left out by the count limit. */
export function reportPlan(session: ArchiveSession, plan: Plan): void {
  for (const l of plan.links) {
    session.members++;
    session.flag('ARCHIVE_SYMLINK', {
      name: l.path.slice(0, MAX_NAME_LENGTH),
      type: l.kind === 'hardlink' ? 'link' : 'symlink',
      ...(l.linkTarget !== undefined ? { target: l.linkTarget.slice(0, MAX_NAME_LENGTH) } : {}),
    });
  }
  if (plan.special > 0) session.attributes.specialEntries = plan.special;
  if (plan.overCount > 0) session.flag('ARCHIVE_LIMIT', { reason: 'count', listed: plan.files.length, notExtracted: plan.overCount });
}

/**
 * Splits the planned files into those one extraction run may write (their declared sizes fit
 * in what is left of the total budget) and those to stream one by one through `member.write`
 * (bombs, and the file that crosses the budget, whose prefix is still scanned).
 */
export function splitForBudget(files: PlannedEntry[], budgetLeft: number): { bulk: PlannedEntry[]; streamed: PlannedEntry[] } {
  const bulk: PlannedEntry[] = [];
  const streamed: PlannedEntry[] = [];
  let sum = 0;
  let crossed = false;
  for (const f of files) {
    if (crossed) break;
    if (f.bomb) {
      streamed.push(f);
      continue;
    }
    if (sum + (f.size ?? 0) > budgetLeft) {
      streamed.push(f);
      crossed = true;
      continue;
    }
    sum += f.size ?? 0;
    bulk.push(f);
  }
  return { bulk, streamed };
}

/** The key that ties a file a tool wrote to its listing entry (tools strip `..` and `/` alike). */
export function matchKey(name: string): string {
  return sanitiseMemberName(name).name;
}

// ---------------------------------------------------------------------------------------------
// The output folder

interface Walked {
  rel: string;
  full: string;
  stat: fs.Stats;
}

/** Everything under `dir`, depth first in name order, never through a link. */
async function* walk(dir: string, rel = ''): AsyncGenerator<Walked> {
  let items: fs.Dirent[];
  try {
    items = await fsp.readdir(rel ? path.join(dir, rel) : dir, { withFileTypes: true });
  } catch {
    return;
  }
  items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const d of items) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    const full = path.join(dir, r);
    let stat: fs.Stats;
    try {
      stat = await fsp.lstat(full);
    } catch {
      continue;
    }
    if (stat.isDirectory()) yield* walk(dir, r);
    else yield { rel: r, full, stat };
  }
}

/** Bytes of the regular files under `dir` (links not followed). */
export async function treeSize(dir: string): Promise<number> {
  let n = 0;
  for await (const w of walk(dir)) if (w.stat.isFile()) n += w.stat.size;
  return n;
}

/**
 * Polls the size of `dir` while a tool writes into it and calls `onExceeded` once it passes
 * `cap`. The poll backs off on big trees so that measuring never costs more than the writing.
 */
export function watchTree(dir: string, cap: number, onExceeded: (size: number) => void): { stop(): Promise<number> } {
  let stopped = false;
  let last = 0;
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      last = await treeSize(dir);
      if (last > cap) {
        onExceeded(last);
        return;
      }
      const spent = performance.now() - t;
      await new Promise((r) => setTimeout(r, Math.max(50, spent * 4)));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return last;
    },
  };
}

export interface EmitTreeOptions {
  /** Listing entries by `matchKey`, for their raw names and compressed sizes. */
  entries: PlannedEntry[];
  /** Names (`matchKey`) the tool said it could not extract properly. */
  damaged?: Set<string>;
  /** Names (`matchKey`) of links already reported from the listing. */
  reportedLinks?: Set<string>;
  /** Meta added to every child (e.g. `{ encrypted: '7zAES' }` by name). */
  meta?: (entry: PlannedEntry | undefined) => Record<string, unknown>;
}

/**
 * Emits the regular files a tool wrote under `outDir` as children (their bytes go through the
 * session's members, so ratio, total bytes, name checks and refusals apply as for zip), deleting
 * each file once handed over. Links found on disk are reported, never opened; files are opened
 * with O_NOFOLLOW. Returns how many files were found.
 */
export async function emitTree(session: ArchiveSession, outDir: string, opts: EmitTreeOptions): Promise<number> {
  const byKey = new Map<string, PlannedEntry>();
  for (const e of opts.entries) if (!byKey.has(matchKey(e.path))) byKey.set(matchKey(e.path), e);
  let found = 0;
  for await (const w of walk(outDir)) {
    if (!session.active) break;
    const key = matchKey(w.rel);
    if (w.stat.isSymbolicLink()) {
      if (!opts.reportedLinks?.has(key)) {
        session.members++;
        session.flag('ARCHIVE_SYMLINK', { name: key, type: 'symlink', target: (await fsp.readlink(w.full).catch(() => '')).slice(0, MAX_NAME_LENGTH) });
      }
      continue;
    }
    if (!w.stat.isFile()) continue;
    found++;
    const entry = byKey.get(key);
    const member = session.member(entry?.path ?? w.rel, {
      compressedSize: entry?.compressed,
      meta: { ...(opts.meta?.(entry) ?? {}), ...(opts.damaged?.has(key) ? { corrupt: true } : {}) },
    });
    await copyInto(session, member, w.full);
    await fsp.rm(w.full, { force: true });
    if (!(await session.emit(member))) break;
  }
  return found;
}

async function copyInto(session: ArchiveSession, member: MemberExtraction, file: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const buf = Buffer.alloc(1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      // A copy: the read buffer is reused.
      await member.write(Buffer.from(buf.subarray(0, bytesRead)));
    }
  } catch (err) {
    if (session.failure(err, member.name) === 'corrupt') member.meta.corrupt = true;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * Streams one member from a tool's stdout into the session. `run` starts the tool with the
 * given stdout consumer. A limit stop (bomb prefix) is already reported by `member.write`; a
 * tool that fails is damage unless `verify` says otherwise. Emits what was read.
 */
export async function streamMember(
  session: ArchiveSession,
  entry: PlannedEntry,
  run: (write: (chunk: Buffer) => Promise<void>) => Promise<ToolResult>,
  meta: Record<string, unknown> = {},
  file?: string,
): Promise<{ ok: boolean; member: MemberExtraction }> {
  const member = session.member(entry.path, { compressedSize: entry.compressed, meta });
  const r = await run((chunk) => member.write(chunk));
  const ok = toolSucceeded(session, r, member.name, entry.size, member.size, member.stop !== undefined, file);
  if (!ok && !member.stop) member.meta.corrupt = true;
  if (member.size > 0 || ok) await session.emit(member);
  else await member.discard();
  return { ok, member };
}

/**
 * Turns a tool's end into findings. True when it delivered the whole member. A consumer stop
 * (a limit) is already reported; time and cancellation become ARCHIVE_LIMIT through the
 * session; anything else is ARCHIVE_CORRUPT.
 */
export function toolSucceeded(session: ArchiveSession, r: ToolResult, name: string, declared: number | undefined, got: number, limited: boolean, file?: string): boolean {
  if (limited) return false;
  if (r.consumerError !== undefined) {
    session.failure(r.consumerError, name);
    return false;
  }
  if (r.killed === 'timeout' || r.killed === 'aborted') {
    try {
      session.checkContinue();
      session.flag('ARCHIVE_LIMIT', { reason: 'tool_time_cap', name });
    } catch {
      // reported by the session
    }
    return false;
  }
  if (r.code !== 0) {
    session.corrupt(toolError(r, file), name);
    return false;
  }
  if (declared !== undefined && got !== declared) {
    session.corrupt(`extracted ${got} bytes where the archive declares ${declared}`, name);
    return false;
  }
  return true;
}

/** A short description of why a tool failed; `file` (a temporary path) is left out of it. */
export function toolError(r: ToolResult, file?: string): string {
  if (r.spawnError) return `could not start: ${r.spawnError}`;
  const lines = r.stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/NSCalendarDate/.test(l));
  const msg = redact(lines.slice(0, 3).join('; '), file);
  return (msg || (r.signal ? `ended by ${r.signal}` : `exit code ${r.code}`)).slice(0, 300);
}

/** Replaces a temporary path in a tool's message: it means nothing to the reader of a report. */
export function redact(message: string, file?: string): string {
  return file ? message.split(file).join('<file>') : message;
}

// ---------------------------------------------------------------------------------------------
// Tools

/** The extractors found on this machine (absolute paths), resolved once at init. */
export interface ContainerTools {
  sevenZip?: string;
  unar?: string;
  lsar?: string;
  bsdcat?: string;
  /** One line for the health check. */
  health: string;
}

export function findContainerTools(): ContainerTools {
  const tools = { sevenZip: findTool('7zz'), unar: findTool('unar'), lsar: findTool('lsar'), bsdcat: findTool('bsdcat') };
  const missing = Object.entries({ '7zz': tools.sevenZip, unar: tools.unar, lsar: tools.lsar, bsdcat: tools.bsdcat })
    .filter(([, p]) => !p)
    .map(([n]) => n);
  const health =
    missing.length === 0
      ? 'ready (7zz, lsar/unar, bsdcat)'
      : `degraded: ${missing.join(', ')} not installed; containers that need them are reported as not examined (partial)`;
  return { ...tools, health };
}

/** A private folder for one tool run under the scan's temporary folder. */
export async function privateDir(tmpDir: string, prefix: string): Promise<string> {
  await fsp.mkdir(tmpDir, { recursive: true });
  return fsp.mkdtemp(path.join(tmpDir, `${prefix}-`));
}

/** Runs `fn` in a fresh private folder (see `privateDir`), removed afterwards whatever happens. */
export async function withPrivateDir<T>(tmpDir: string, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await privateDir(tmpDir, prefix);
  try {
    return await fn(dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Lists an archive whose headers (member names) are encrypted: tries each password until one
 * gives a listing. Undefined when none does; the caller then reports the archive as unopened.
 */
export async function listWithHeaderPassword<L extends { listing?: unknown }>(session: ArchiveSession, passwords: readonly string[], list: (password: string) => Promise<L>): Promise<{ listed: L; password: string } | undefined> {
  for (const pw of passwords) {
    session.checkContinue();
    const attempt = await list(pw);
    if (attempt.listing) return { listed: attempt, password: pw };
  }
  return undefined;
}

/** The finding of an archive whose encrypted headers no password opened. */
export function flagLockedHeaders(session: ArchiveSession, passwords: readonly string[]): void {
  session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { reason: passwords.length ? 'no_password_matched' : 'no_password', encryption: 'encrypted_headers', tried: passwords.length });
}
