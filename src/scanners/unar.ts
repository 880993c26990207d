/**
 * RAR (RAR 1.5–4 and RAR 5), and the fallback for whatever 7zz cannot open, through The
 * Unarchiver's command-line tools (Debian `unar`): `lsar -j` lists, `unar -o - -i` streams one
 * member by index into the archive session. Debian's 7zz has no RAR codec, so RAR depends on
 * these two binaries.
 *
 * Streaming member by member keeps every member under `member.write`'s ratio and total limits
 * with no output folder at all, and keeps names out of the file system; the price is that a
 * solid archive is decompressed from its start for each member, which the time budget bounds
 * (the members left are then reported as ARCHIVE_LIMIT). unar can end with status 0 and no
 * bytes on a wrong password, so a member counts as read only when its declared size arrived.
 *
 * @example
 * const r = await runScanner(unarScanner, rarBytes);
 * r.children.map((c) => c.name) // ['docs/eicar.com']
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ArchiveSession } from './archive-common.ts';
import {
  findContainerTools,
  planExtraction,
  withPrivateDir,
  reportPlan,
  splitForBudget,
  toolError,
  toolSucceeded,
  type ContainerTools,
  type EntryKind,
  type ListedEntry,
  type Listing,
  type PlannedEntry,
  listWithHeaderPassword,
  flagLockedHeaders,
} from './container-extract.ts';
import { runTool, type ToolOptions, type ToolResult } from './subprocess.ts';
import type { Scanner } from './types.ts';

const LIST_CAP_MS = 60_000;
const MEMBER_CAP_MS = 30 * 60_000;
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
/** Larger than any archive with nothing in it (RAR 4: 20 bytes, RAR 5: ~40 with a comment-free main header). */
const EMPTY_ARCHIVE_BYTES = 128;

const S_IFMT = 0o170000;
const SPECIAL_MODES = new Set([0o010000, 0o020000, 0o060000, 0o140000]);

type LsarEntry = Record<string, unknown>;

/** A `lsar -j` record as a `ListedEntry`. */
export function lsarEntry(e: LsarEntry, position: number): ListedEntry {
  const n = (k: string) => (typeof e[k] === 'number' ? (e[k] as number) : undefined);
  const flag = (k: string) => e[k] === 1 || e[k] === true;
  const mode = n('XADPosixPermissions');
  let kind: EntryKind = 'file';
  if (flag('XADIsDirectory')) kind = 'dir';
  else if (flag('XADIsLink')) kind = 'symlink';
  else if (flag('XADIsHardLink')) kind = 'hardlink';
  // A fifo or device with data is a plain file to a Windows extractor: scan it as one.
  else if (mode !== undefined && SPECIAL_MODES.has(mode & S_IFMT) && !n('XADFileSize')) kind = 'special';
  else if (mode !== undefined && (mode & S_IFMT) === 0o120000) kind = 'symlink';
  const name = typeof e.XADFileName === 'string' ? e.XADFileName : `member-${position + 1}`;
  const target = typeof e.XADLinkDestination === 'string' ? e.XADLinkDestination : undefined;
  return {
    // Mac resource forks share their file's name.
    path: flag('XADIsResourceFork') ? `${name}.rsrc` : name,
    kind,
    size: n('XADFileSize'),
    packed: n('XADCompressedSize'),
    encrypted: flag('XADIsEncrypted'),
    ...(target !== undefined ? { linkTarget: target } : {}),
    index: n('XADIndex') ?? position,
  };
}

interface LsarOutcome {
  listing?: Listing;
  /** Names are encrypted and this password did not open them. */
  lockedHeaders: boolean;
  error?: string;
  result: ToolResult;
}

async function lsar(bin: string, file: string, password: string, base: Omit<ToolOptions, 'capMs'>): Promise<LsarOutcome> {
  const result = await runTool(bin, ['-j', '-nr', '-p', password, file], { ...base, capMs: LIST_CAP_MS, maxStdout: MAX_LISTING_BYTES });
  let json: { lsarFormatName?: string; lsarContents?: LsarEntry[]; lsarError?: number; lsarProperties?: Record<string, unknown> };
  try {
    json = JSON.parse(result.stdout.toString('utf8'));
  } catch {
    return { lockedHeaders: false, error: result.killed === 'output' ? 'listing too long' : toolError(result, file), result };
  }
  const contents = Array.isArray(json.lsarContents) ? json.lsarContents : [];
  const error = json.lsarError ? lsarErrorText(json.lsarError) : undefined;
  const encryptedArchive = json.lsarProperties?.XADIsEncrypted === 1;
  if (!json.lsarFormatName) return { lockedHeaders: false, error: error ?? toolError(result, file), result };
  if (contents.length === 0 && error && encryptedArchive) return { lockedHeaders: true, error, result };
  return {
    listing: {
      format: json.lsarFormatName,
      entries: contents.map((e, i) => lsarEntry(e, i)),
      errors: error ? [error] : [],
      attributes: { format: json.lsarFormatName, tool: 'unar' },
    },
    lockedHeaders: false,
    ...(error ? { error } : {}),
    result,
  };
}

export interface UnarOptions {
  /** Used as a fallback: when lsar cannot open the file either, report nothing and return false. */
  quietFailure?: boolean;
}

/**
 * Lists and extracts `file` with lsar/unar into `session`. `opened` is false when lsar could
 * not read the file (reported unless `quietFailure`, in which case `error` says why).
 */
export async function scanWithUnar(
  session: ArchiveSession,
  file: string,
  tools: ContainerTools,
  work: string,
  sampleName: string,
  opts: UnarOptions = {},
): Promise<{ opened: boolean; error?: string }> {
  const { ctx } = session;
  const base = { cwd: work, signal: session.signal, deadline: ctx.deadline };
  const passwords = [...new Set(ctx.options.passwords)];
  let headerPassword: string | undefined;
  let listed = await lsar(tools.lsar!, file, '', base);
  if (listed.lockedHeaders) {
    const opened = await listWithHeaderPassword(session, passwords, (pw) => lsar(tools.lsar!, file, pw, base));
    if (!opened) {
      flagLockedHeaders(session, passwords);
      return { opened: true };
    }
    listed = opened.listed;
    headerPassword = opened.password;
    session.flag('ARCHIVE_ENCRYPTED', { encryption: 'encrypted_headers', passwordWorked: true });
  }
  const listing = listed.listing;
  // Recognised but nothing readable (truncated headers): no better than not opened.
  const empty = listing !== undefined && listing.entries.length === 0 && listing.errors.length > 0;
  if (!listing || (empty && opts.quietFailure)) {
    if (listed.result.killed) session.checkContinue();
    const error = listed.error ?? toolError(listed.result, file);
    if (!opts.quietFailure) session.corrupt(`lsar could not open the file: ${error}`);
    return { opened: false, error };
  }
  Object.assign(session.attributes, listing.attributes);
  for (const e of listing.errors) session.corrupt(e);
  // A single-stream format (xz, gzip...) lists one nameless member named after the file.
  const fallback = path.basename(sampleName).replace(/\.[^.]+$/, '') || 'content';
  for (const e of listing.entries) if (e.path === '') e.path = fallback;

  const size = (await fsp.stat(file)).size;
  // lsar lists a garbled archive as an empty one; an empty archive is a few dozen bytes.
  if (listing.entries.length === 0 && size > EMPTY_ARCHIVE_BYTES) session.corrupt(`${listing.format} archive of ${size} bytes lists no members`);
  const plan = planExtraction(listing, size, ctx.limits);
  reportPlan(session, plan);
  const { bulk, streamed } = splitForBudget(plan.files, ctx.limits.maxTotalExtractedBytes - session.extractedBytes);
  const order = [...bulk, ...streamed].sort((a, b) => a.index - b.index);
  let lastPassword = headerPassword;
  for (const entry of order) {
    if (!session.active) break;
    if (entry.encrypted) {
      const pw = await extractEncrypted(session, tools.unar!, file, entry, base, lastPassword, passwords);
      if (pw !== undefined) lastPassword = pw;
    } else {
      await extractOne(session, tools.unar!, file, entry, base, headerPassword ?? '');
    }
  }
  return { opened: true };
}

// XADMaster's error codes (XADException.h) for the ones lsar reports on damaged input.
const XAD_ERRORS: Record<number, string> = {
  2: 'input ended early (truncated)',
  6: 'damaged data',
  7: 'not supported',
  9: 'decompression failed',
  15: 'password missing or wrong',
  17: 'checksum mismatch',
};

function lsarErrorText(code: number): string {
  return `lsar error ${code}${XAD_ERRORS[code] ? `: ${XAD_ERRORS[code]}` : ''}`;
}

function unarArgs(file: string, index: number, password: string): string[] {
  return ['-o', '-', '-nr', '-i', '-p', password, file, String(index)];
}

async function extractOne(session: ArchiveSession, bin: string, file: string, entry: PlannedEntry, base: Omit<ToolOptions, 'capMs'>, password: string): Promise<void> {
  const member = session.member(entry.path, { compressedSize: entry.compressed });
  const r = await runTool(bin, unarArgs(file, entry.index, password), { ...base, capMs: MEMBER_CAP_MS, onStdout: (c) => member.write(c) });
  const ok = toolSucceeded(session, r, member.name, entry.size, member.size, member.stop !== undefined, file);
  if (!ok && !member.stop) member.meta.corrupt = true;
  if (member.size > 0 || ok) await session.emit(member);
  else await member.discard();
}

async function extractEncrypted(
  session: ArchiveSession,
  bin: string,
  file: string,
  entry: PlannedEntry,
  base: Omit<ToolOptions, 'capMs'>,
  preferred: string | undefined,
  passwords: string[],
): Promise<string | undefined> {
  const order = [...new Set(preferred !== undefined ? [preferred, ...passwords] : passwords)];
  const member = session.member(entry.path, { compressedSize: entry.compressed, meta: { encrypted: true } });
  for (const pw of order) {
    if (!session.active) break;
    const r = await runTool(bin, unarArgs(file, entry.index, pw), { ...base, capMs: MEMBER_CAP_MS, onStdout: (c) => member.write(c) });
    const whole = r.code === 0 && r.consumerError === undefined && !r.killed && (entry.size === undefined || member.size === entry.size);
    if (member.stop || whole) {
      session.flag('ARCHIVE_ENCRYPTED', { name: member.name, passwordWorked: true });
      await session.emit(member);
      return pw;
    }
    if (r.killed === 'timeout' || r.killed === 'aborted') {
      toolSucceeded(session, r, member.name, entry.size, member.size, false, file);
      await member.discard();
      return undefined;
    }
    // A wrong password (garbage or nothing): forget what was written, try the next one.
    await member.reset();
  }
  await member.discard();
  if (session.active) session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { name: member.name, reason: order.length ? 'no_password_matched' : 'no_password', tried: order.length });
  return undefined;
}

export const unarScanner: Scanner<ContainerTools> = {
  name: 'unar',
  version: '1',
  layer: 'archive',
  async init() {
    return findContainerTools();
  },
  accepts: (info) => info.kind === 'file' && info.fileType === 'rar',
  async scan(input, ctx, tools) {
    const session = new ArchiveSession(ctx, 'archive_member');
    try {
      if (!tools.lsar || !tools.unar) {
        session.flag('CONTAINER_UNOPENED', { reason: 'tool_missing', tool: 'unar', type: input.info.fileType });
        return session.result();
      }
      const file = await input.path();
      await withPrivateDir(ctx.tmpDir, 'unar', (work) => scanWithUnar(session, file, tools, work, input.info.name));
    } catch (err) {
      session.failure(err);
    } finally {
      session.close();
    }
    return session.result();
  },
};
