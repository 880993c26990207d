/**
 * Containers opened with 7-Zip (Debian's `7zz`): 7z, cabinets, cpio (every variant), ARJ,
 * ISO 9660 and UDF images, CHM help files, xar, and executables that carry an archive or an
 * installer payload (7z/zip/cab SFX, NSIS): for a PE, children are emitted only when 7zz
 * finds such a payload, never the PE's own sections (that analysis belongs to the executable
 * scanner).
 *
 * The archive is listed first (`7zz l -slt`): link entries, path traversal, encryption and
 * bombs are judged from the declared sizes before anything is written. The rest is extracted
 * in one run into a private folder whose size is watched, then handed over file by file
 * through the archive session (same findings as zip); bombs and the member that crosses the
 * total budget are streamed alone (`7zz x -so`) so that only the allowed prefix is ever
 * decompressed. Encrypted archives (content or headers, `-mhe`) are tried with the request's
 * passwords; 7zz always gets `-p` so that it never prompts.
 *
 * When 7zz cannot open the file (or is not installed), lsar/unar is tried (see unar.ts); when
 * nothing can open it, the object is reported as not examined (CONTAINER_UNOPENED) or damaged
 * (ARCHIVE_CORRUPT), both partial: never a confident clean.
 *
 * @example
 * const r = await runScanner(sevenZipScanner, sevenZipBytes, { passwords: ['infected'] });
 * r.children.map((c) => c.name) // ['docs/eicar.com']
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ArchiveSession } from './archive-common.ts';
import {
  emitTree,
  findContainerTools,
  matchKey,
  planExtraction,
  withPrivateDir,
  reportPlan,
  splitForBudget,
  streamMember,
  redact,
  toolError,
  watchTree,
  type ContainerTools,
  type EntryKind,
  type ListedEntry,
  type Listing,
  listWithHeaderPassword,
  flagLockedHeaders,
} from './container-extract.ts';
import { runTool, startTool, type ToolOptions, type ToolResult } from './subprocess.ts';
import type { ScanInput, Scanner } from './types.ts';
import { scanWithUnar } from './unar.ts';

/** Detected types this scanner opens (PE only when 7zz finds a payload in it). */
const FORMATS = new Set(['7z', 'cab', 'cpio', 'arj', 'iso', 'udf', 'chm', 'xar', 'pe']);
/** What 7zz calls an executable in which it found no archive: not a payload. */
const NOT_A_PAYLOAD = new Set(['PE', 'TE', 'COFF', 'ELF', 'MachO', 'Mub']);

const LIST_CAP_MS = 30_000;
const PROBE_CAP_MS = 60_000;
const EXTRACT_CAP_MS = 30 * 60_000;
/** Listings beyond this are cut (and reported): ~200k entries. */
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
/** How far into an executable a payload signature is looked for when 7zz is missing. */
const SFX_SIGNATURE_WINDOW = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Listing

export interface RawListing {
  /** Archive properties (Type, Physical Size, Offset...). */
  props: Record<string, string>;
  /** Messages under ERRORS:/WARNINGS: in the properties. */
  errors: string[];
  entries: Record<string, string>[];
}

const KEY = /^[A-Z][A-Za-z0-9 ]*$/;

/** Parses `7zz l -slt` output: property blocks after `--`, entries after `----------`. */
export function parse7zListing(text: string): RawListing {
  const props: Record<string, string> = {};
  const errors: string[] = [];
  const entries: Record<string, string>[] = [];
  let state: 'pre' | 'props' | 'entries' = 'pre';
  let mode: 'errors' | undefined;
  let cur: Record<string, string> = {};
  const flush = () => {
    if (Object.keys(cur).length > 0) entries.push(cur);
    cur = {};
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (state !== 'entries' && line === '--') {
      state = 'props';
      continue;
    }
    if (line === '----------') {
      state = 'entries';
      continue;
    }
    if (state === 'pre') continue;
    const eq = line.indexOf(' =');
    const key = eq > 0 ? line.slice(0, eq) : '';
    const isKv = eq > 0 && KEY.test(key);
    const value = isKv ? line.slice(eq + 2).replace(/^ /, '') : '';
    if (state === 'props') {
      if (line === 'ERRORS:' || line === 'WARNINGS:') mode = 'errors';
      else if (isKv) {
        props[key] = value;
        mode = undefined;
      } else if (mode === 'errors' && line.trim()) errors.push(line.trim());
      continue;
    }
    if (line === '') flush();
    else if (isKv && !(key in cur)) cur[key] = value;
  }
  flush();
  return { props, errors, entries };
}

const num = (v: string | undefined): number | undefined => (v === undefined || v.trim() === '' || !/^\d+$/.test(v.trim()) ? undefined : Number(v.trim()));

/** One listing record as a `ListedEntry`. */
export function toEntry(r: Record<string, string>, index: number, fallbackName: string): ListedEntry {
  const attrs = (r.Attributes ?? '').trim();
  const mode = (r.Mode ?? '').trim() || attrs.split(/\s+/).find((t) => /^[-dlbcps][-rwxsStT]{9}$/.test(t)) || '';
  const flags = attrs.split(/\s+/)[0] ?? '';
  let kind: EntryKind = 'file';
  if (r.Folder === '+' || (/^[A-Z]+$/.test(flags) && flags.includes('D')) || mode.startsWith('d')) kind = 'dir';
  else if ((r['Symbolic Link'] ?? '') !== '' || mode.startsWith('l')) kind = 'symlink';
  else if ((r['Hard Link'] ?? '') !== '') kind = 'hardlink';
  // A fifo or device with data is a plain file to a Windows extractor: scan it as one.
  else if (/^[bcps]/.test(mode) && !num(r.Size)) kind = 'special';
  const target = r['Symbolic Link'] || r['Hard Link'] || undefined;
  return {
    path: r.Path ?? fallbackName,
    kind,
    size: num(r.Size),
    packed: num(r['Packed Size']),
    block: r.Block?.trim() || undefined,
    encrypted: r.Encrypted === '+',
    ...(target ? { linkTarget: target } : {}),
    index,
  };
}

interface ListOutcome {
  listing?: Listing;
  /** The headers are encrypted and the password did not open them. */
  lockedHeaders: boolean;
  result: ToolResult;
}

async function list7z(bin: string, file: string, password: string, base: Omit<ToolOptions, 'capMs'>, fallbackName: string): Promise<ListOutcome> {
  const result = await runTool(bin, ['l', '-slt', '-sccUTF-8', '-spd', `-p${password}`, '--', file], { ...base, capMs: LIST_CAP_MS, maxStdout: MAX_LISTING_BYTES });
  const all = `${result.stderr}\n${result.stdout.toString('utf8', 0, 4096)}`;
  if (/open encrypted archive/i.test(all)) return { lockedHeaders: true, result };
  const raw = parse7zListing(result.stdout.toString('utf8'));
  if (!raw.props.Type) return { lockedHeaders: false, result };
  const stderrErrors = result.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(ERROR|WARNING):/.test(l) || /^Open (ERROR|WARNING)/.test(l));
  const listing: Listing = {
    format: raw.props.Type,
    entries: raw.entries.map((r, i) => toEntry(r, i, fallbackName)),
    errors: [...raw.errors, ...stderrErrors, ...(result.killed === 'output' ? ['listing too long: cut'] : [])],
    attributes: {
      format: raw.props.Type,
      ...(raw.props.Offset ? { payloadOffset: num(raw.props.Offset) } : {}),
      ...(raw.props.SubType ? { subType: raw.props.SubType } : {}),
    },
  };
  return { listing, lockedHeaders: false, result };
}

// ---------------------------------------------------------------------------------------------
// Scanner

export const sevenZipScanner: Scanner<ContainerTools> = {
  name: 'sevenzip',
  version: '1',
  layer: 'archive',
  async init() {
    return findContainerTools();
  },
  accepts: (info) => info.kind === 'file' && FORMATS.has(info.fileType),
  async scan(input, ctx, tools) {
    const session = new ArchiveSession(ctx, 'archive_member');
    try {
      const file = await input.path();
      await withPrivateDir(ctx.tmpDir, '7zz', async (work) => {
        if (tools.sevenZip) await scan7z(session, input, file, tools, work);
        else if (input.info.fileType === 'pe') await peWithoutTool(session, file);
        else if (tools.lsar && tools.unar) await scanWithUnar(session, file, tools, work, input.info.name);
        else session.flag('CONTAINER_UNOPENED', { reason: 'tool_missing', tool: '7zz', type: input.info.fileType });
      });
    } catch (err) {
      session.failure(err);
    } finally {
      session.close();
    }
    return session.result();
  },
};

async function scan7z(session: ArchiveSession, input: ScanInput, file: string, tools: ContainerTools, work: string): Promise<void> {
  const { ctx } = session;
  const bin = tools.sevenZip!;
  const isPe = input.info.fileType === 'pe';
  const base = { cwd: work, signal: session.signal, deadline: ctx.deadline };
  const fallbackName = path.basename(input.info.name) || 'content';
  const passwords = [...new Set(ctx.options.passwords)];

  let headerPassword: string | undefined;
  let listed = await list7z(bin, file, '', base, fallbackName);
  if (listed.lockedHeaders) {
    const opened = await listWithHeaderPassword(session, passwords, (pw) => list7z(bin, file, pw, base, fallbackName));
    if (!opened) {
      flagLockedHeaders(session, passwords);
      return;
    }
    listed = opened.listed;
    headerPassword = opened.password;
    session.flag('ARCHIVE_ENCRYPTED', { encryption: 'encrypted_headers', passwordWorked: true });
  }
  session.checkContinue();
  const listing = listed.listing;
  if (!listing) {
    if (isPe) return; // an executable without a payload 7zz can open: not ours
    if (listed.result.killed === 'timeout') {
      session.flag('ARCHIVE_LIMIT', { reason: 'tool_time_cap', stage: 'listing' });
      return;
    }
    let other = '';
    if (tools.lsar && tools.unar) {
      const viaUnar = await scanWithUnar(session, file, tools, work, input.info.name, { quietFailure: true });
      if (viaUnar.opened) return;
      other = `; lsar: ${viaUnar.error ?? 'not recognised'}`;
    }
    if (listed.result.killed) session.checkContinue();
    session.corrupt(`7zz could not open the file: ${toolError(listed.result, file)}${other}`, undefined, { type: input.info.fileType });
    return;
  }
  if (isPe) {
    if (NOT_A_PAYLOAD.has(listing.format)) return;
    const offset = listing.attributes.payloadOffset;
    session.flag('SFX_ARCHIVE', { format: listing.format, offset, reason: `${listing.format} payload${offset !== undefined ? ` at offset ${offset}` : ''}` });
  }
  Object.assign(session.attributes, listing.attributes, { tool: '7zz' });
  for (const e of listing.errors.slice(0, 5)) session.corrupt(e);

  const plan = planExtraction(listing, input.info.size, ctx.limits);
  reportPlan(session, plan);
  const duplicates = plan.files.length - new Set(plan.files.map((f) => matchKey(f.path))).size;
  if (duplicates > 0) session.flag('ARCHIVE_LIMIT', { reason: 'duplicate_names', count: duplicates });

  // Encrypted members: find the password on the smallest one, then extract with it.
  const encrypted = plan.files.filter((f) => f.encrypted);
  let password = headerPassword ?? '';
  let locked = false;
  if (encrypted.length > 0) {
    const probe = encrypted.reduce((a, b) => ((b.size ?? Infinity) < (a.size ?? Infinity) ? b : a));
    const order = [...new Set([...(headerPassword !== undefined ? [headerPassword] : []), ...passwords])];
    let found: string | undefined;
    for (const pw of order) {
      session.checkContinue();
      const r = await runTool(bin, ['t', '-sccUTF-8', '-spd', `-p${pw}`, '--', file, probe.path], { ...base, capMs: PROBE_CAP_MS, onStdout: async () => undefined });
      if (r.code === 0) {
        found = pw;
        break;
      }
      if (r.killed) session.checkContinue();
    }
    if (found === undefined) {
      locked = true;
      for (const f of encrypted) {
        const m = session.member(f.path, { compressedSize: f.compressed, meta: { encrypted: true } });
        await m.discard();
        session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { name: m.name, reason: order.length ? 'no_password_matched' : 'no_password', tried: order.length });
      }
    } else password = found;
  }

  const candidates = locked ? plan.files.filter((f) => !f.encrypted) : plan.files;
  const { bulk, streamed } = splitForBudget(candidates, ctx.limits.maxTotalExtractedBytes - session.extractedBytes);
  const bulkKeys = new Set(bulk.map((f) => f.path));
  const excluded = listing.entries.filter((e) => e.kind !== 'dir' && !bulkKeys.has(e.path)).map((e) => e.path);

  if (bulk.length > 0) {
    const outDir = path.join(work, 'out');
    await fsp.mkdir(outDir);
    const args = ['x', '-y', '-bd', '-sccUTF-8', '-scsUTF-8', '-spd', `-p${password}`, `-o${outDir}`];
    if (excluded.length > 0) {
      const listFile = path.join(work, 'exclude.txt');
      // A name with a line break cannot be excluded by a list: the output walk still
      // never follows links and the size watch still bounds what it writes.
      await fsp.writeFile(listFile, excluded.filter((n) => !/[\r\n]/.test(n)).join('\n'), { mode: 0o600 });
      args.push(`-x@${listFile}`);
    }
    args.push('--', file);
    const declared = bulk.reduce((n, f) => n + (f.size ?? f.compressed * ctx.limits.maxCompressionRatio), 0);
    const totalLeft = ctx.limits.maxTotalExtractedBytes - session.extractedBytes;
    const cap = Math.min(totalLeft, declared + Math.max(1024 * 1024, declared / 100));
    // Keep time to hand over what was extracted when the tool runs out of it.
    const reserve = Math.min(5_000, Math.max(0, (ctx.deadline - Date.now()) / 5));
    let oversize: number | undefined;
    const proc = startTool(bin, args, { ...base, deadline: ctx.deadline - reserve, capMs: EXTRACT_CAP_MS, onStdout: async () => undefined });
    const watch = watchTree(outDir, cap, (size) => {
      oversize = size;
      proc.kill('stopped');
    });
    const r = await proc.result;
    await watch.stop();
    if (oversize !== undefined) {
      session.flag('ARCHIVE_BOMB', {
        reason: cap < totalLeft ? 'declared_size_exceeded' : 'total_bytes',
        extractedBeforeStop: oversize,
        declared,
        limit: cap,
      });
    }
    const { damaged, wrongPassword, general } = extractionErrors(r, file);
    if (r.killed === 'timeout') session.flag('ARCHIVE_LIMIT', { reason: 'deadline', stage: 'extraction', emitted: session.emitted });
    else if (r.killed === 'aborted') session.checkContinue();
    else if (oversize === undefined && r.code !== 0) {
      for (const [key, msg] of damaged) {
        if (/unsupported/i.test(msg)) session.flag('UNPARSEABLE', { name: key, reason: 'unsupported_method', error: msg });
        else session.corrupt(msg, key);
      }
      for (const key of wrongPassword) session.flag('ARCHIVE_ENCRYPTED_UNOPENED', { name: key, reason: 'password_mismatch' });
      for (const msg of general.slice(0, 3)) session.corrupt(msg);
      if (damaged.size === 0 && wrongPassword.size === 0 && general.length === 0) session.corrupt(toolError(r, file));
    }
    const reportedLinks = new Set(plan.links.map((l) => matchKey(l.path)));
    const found = await emitTree(session, outDir, {
      entries: bulk,
      damaged: new Set(damaged.keys()),
      reportedLinks,
      meta: (e) => (e?.encrypted ? { encrypted: true } : {}),
    });
    for (const f of bulk) if (f.encrypted && !wrongPassword.has(matchKey(f.path))) session.flag('ARCHIVE_ENCRYPTED', { name: matchKey(f.path), passwordWorked: true });
    const expected = bulk.length - duplicates;
    if (found < expected && r.code === 0 && !r.killed && oversize === undefined) {
      session.corrupt(`${expected - found} listed member(s) were not extracted`);
    }
  }

  for (const f of streamed) {
    if (!session.active) break;
    await streamMember(
      session,
      f,
      (write) => runTool(bin, ['x', '-so', '-sccUTF-8', '-spd', `-p${password}`, '--', file, f.path], { ...base, capMs: EXTRACT_CAP_MS, onStdout: write }),
      f.encrypted ? { encrypted: true } : {},
      file,
    );
    if (f.encrypted) session.flag('ARCHIVE_ENCRYPTED', { name: matchKey(f.path), passwordWorked: true });
  }
}

/** Sorts 7zz's extraction errors: per member (damage, wrong password) or about the archive. */
export function extractionErrors(r: ToolResult, file: string): { damaged: Map<string, string>; wrongPassword: Set<string>; general: string[] } {
  const damaged = new Map<string, string>();
  const wrongPassword = new Set<string>();
  const general: string[] = [];
  for (const raw of r.stderr.split('\n')) {
    const line = raw.trim();
    const m = /^ERROR: (.*?) : (.*)$/.exec(line);
    if (m && m[2] !== file && m[1] !== file) {
      const key = matchKey(m[2]);
      if (/wrong password/i.test(m[1])) wrongPassword.add(key);
      else damaged.set(key, m[1].slice(0, 300));
    } else if (/^(Open )?(ERROR|WARNING)/.test(line)) {
      general.push(redact(line, file).slice(0, 300));
    }
  }
  return { damaged, wrongPassword, general };
}

/**
 * Without 7zz an executable cannot be opened as an archive; when it holds the signature of a
 * payload format an installer would carry, it is reported as not examined rather than passed.
 */
async function peWithoutTool(session: ArchiveSession, file: string): Promise<void> {
  const signatures = [
    Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]),
    Buffer.from('Rar!\x1a\x07', 'latin1'),
    Buffer.from('MSCF\0\0\0\0', 'latin1'),
    Buffer.from('NullsoftInst', 'latin1'),
    Buffer.from([0x50, 0x4b, 0x03, 0x04]),
  ];
  const fh = await fsp.open(file, 'r');
  try {
    const chunk = Buffer.alloc(1024 * 1024 + 16);
    for (let pos = 512; pos < SFX_SIGNATURE_WINDOW; pos += 1024 * 1024) {
      session.checkContinue();
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) return;
      const view = chunk.subarray(0, bytesRead);
      const hit = signatures.find((s) => view.includes(s));
      if (hit) {
        session.flag('CONTAINER_UNOPENED', { reason: 'tool_missing', tool: '7zz', type: 'pe', payloadSignature: hit.toString('latin1').replace(/[^\x20-\x7e]/g, '.') });
        return;
      }
    }
  } finally {
    await fh.close();
  }
}
