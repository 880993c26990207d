/**
 * Big files: for each size of BIG_SIZES (default 100M,1G; add 5G explicitly) and each kind of
 * BIG_KINDS (random, text = repeated lines, compressible), generated in a temp dir, the time of
 *   (a) `openssl dgst -sha256` (the read-and-hash floor),
 *   (b) raw clamd INSTREAM of the file from this process (the engine floor; clamd peak RSS),
 *       and raw clamd SCAN <path> (clamd reading the file itself: the fastest clamd can go),
 *   (c) Debian's `yara` CLI with the bundled rules/ (what a user would run by hand),
 *   (d) `verdict scan FILE --json` with the same clamd,
 *   (e) POST /api/v1/files/ (multipart streamed from disk) until the X-Ray callback, with clamd
 *       on and with built-in engines only; the server's peak RSS (its process and children).
 * clamd caches clean results by hash, and Verdict may too: before each of (b), (d) and (e) the
 * first 4 KB of the file are replaced with fresh random bytes, so every run has a new hash.
 *
 *   npm run bench:big
 *   BIG_SIZES=20M BIG_KINDS=random NO_RECORD=1 npm run bench:big
 *   BIG_SIZES=100M,1G,5G npm run bench:big     # 5 GB: about 10 GB of temp space, long
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { ClamdClient } from '../src/engines/clamd-client.ts';
import { fmtBytes, haveCommand, parseSizes, record, root, startClamd, startServer, startSink, table, timeCommand, tmpDir, xraySubmit, RssSampler } from './lib.ts';

const SIZES = parseSizes(process.env.BIG_SIZES ?? '100M,1G');
const KINDS = (process.env.BIG_KINDS ?? 'random,text').split(',') as ('random' | 'text')[];
const MAX = Math.max(...SIZES);
const LIMIT = String(Math.max(MAX * 2, 4 * 1024 ** 3)); // Verdict must accept and fully scan the biggest file
const TIMEOUT_MS = String(30 * 60_000);

for (const tool of ['openssl', 'yara']) if (!haveCommand(tool)) throw new Error(`${tool} is missing: apt-get install -y ${tool} (see .ci/run)`);

const rulesDir = path.join(root, 'rules');
const rules = fs
  .readdirSync(rulesDir)
  .filter((f) => /\.yara?$/i.test(f))
  .map((f) => path.join(rulesDir, f));

async function generate(file: string, size: number, kind: 'random' | 'text'): Promise<void> {
  const CHUNK = 1 << 20;
  // text: the same 64 KB block of numbered lines over and over (compresses ~100×)
  const block = Buffer.from(Array.from({ length: 2000 }, (_, i) => `line ${i} of a very compressible benchmark file, nothing to see here\n`).join('')).subarray(0, 64 * 1024);
  const text = Buffer.concat(Array.from({ length: CHUNK / block.length }, () => block));
  let left = size;
  await pipeline(
    Readable.from(
      (function* () {
        while (left > 0) {
          const n = Math.min(CHUNK, left);
          left -= n;
          yield kind === 'random' ? crypto.randomBytes(n) : text.subarray(0, n);
        }
      })(),
    ),
    fs.createWriteStream(file),
  );
}

/** New first 4 KB: a new hash for caches, the same size and nature. */
function freshen(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, 0);
  } finally {
    fs.closeSync(fd);
  }
}

const dir = tmpDir('big');
const clamd = await startClamd(Number(LIMIT));
const client = new ClamdClient({ socket: clamd.socket }, { idleTimeoutMs: 30 * 60_000, pathAccess: true });
const serverEnv = { VERDICT_LIMITS_MAX_FILE_SIZE: LIMIT, VERDICT_LIMITS_MAX_TOTAL_EXTRACTED_BYTES: LIMIT, VERDICT_LIMITS_SCANNER_TIMEOUT_MS: TIMEOUT_MS };
const withClamd = await startServer({ clamd: clamd.socket, env: serverEnv });
const builtIn = await startServer({ clamd: 'off', env: serverEnv });
const sink = await startSink();
const rows: (string | number)[][] = [];
const notes: string[] = [];
const cliData = tmpDir('cli');

try {
  for (const size of SIZES) {
    for (const kind of KINDS) {
      const file = path.join(dir, `${kind}-${size}.bin`);
      await generate(file, size, kind);
      const label = `${fmtBytes(size)} ${kind}`;
      const mbps = (ms: number) => (size / 1024 ** 2 / (ms / 1000)).toFixed(0);
      const openssl = (await timeCommand('openssl', ['dgst', '-sha256', file])).ms;
      const yara = (await timeCommand('yara', [...rules, file])).ms;

      freshen(file);
      const clamdRss = new RssSampler(clamd.pid);
      const t = performance.now();
      const raw = await client.instream(fs.createReadStream(file));
      const clamdMs = performance.now() - t;
      const clamdPeak = clamdRss.stop().peakMb;
      freshen(file);
      const t2 = performance.now();
      const rawPath = await client.scanPath(file);
      const clamdPathMs = performance.now() - t2;
      if (!rawPath || rawPath.status === 'error') notes.push(`${label}: clamd SCAN failed: ${rawPath?.raw ?? 'cannot open the file'}`);
      if (raw.truncated) notes.push(`${label}: clamd got only ${fmtBytes(raw.bytesSent)} (its StreamMaxLength is clamped to 2 GiB), so (b) covers a prefix`);

      freshen(file);
      // a hung CLI must not hang the benchmark: allow 2 min plus 1 s per MB, then record a failure
      const cli = await timeCommand(process.execPath, ['bin/verdict.js', 'scan', file, '--json'], {
        okCodes: [0, 1],
        timeoutMs: 120_000 + size / 1000,
        env: { VERDICT_DATA_DIR: cliData, VERDICT_CLAMD: clamd.socket, VERDICT_CLAMD_FILE_ACCESS: 'path', VERDICT_RENDER: 'off', VERDICT_LOG_LEVEL: 'warn', ...serverEnv },
      }).catch((err: Error) => {
        notes.push(`${path.basename(file)}: verdict scan failed: ${err.message.slice(0, 300)}`);
        return { ms: NaN, stdout: '' };
      });

      const viaServer = async (server: typeof withClamd): Promise<{ ms: number; peak: number; anon: number; verdict: string }> => {
        freshen(file);
        const rss = new RssSampler(server.pid);
        const t0 = performance.now();
        const body = await xraySubmit(server, sink, path.basename(file), { file }, 60 * 60_000);
        const ms = performance.now() - t0;
        const verdict = `${body.verdict}${body.partial ? ', partial' : ''}`;
        // a random or text file has nothing to find: say what made it anything but clean
        const evidence = ((body.evidence as { Name: string; Description?: string }[] | undefined) ?? []).map((e) => `${e.Name}: ${e.Description ?? ''}`.slice(0, 200));
        if (body.verdict !== 'CLN' || body.partial) notes.push(`${path.basename(file)} via ${server === withClamd ? 'clamd-on' : 'built-in'} server: ${verdict}; ${[...new Set(evidence)].join('; ') || 'no evidence'}`);
        const mem = rss.stop();
        return { ms, peak: mem.peakTreeMb, anon: mem.peakAnonMb, verdict };
      };
      const on = await viaServer(withClamd);
      const off = await viaServer(builtIn);

      const row = [
        label,
        `${(openssl / 1000).toFixed(2)} (${mbps(openssl)} MB/s)`,
        `${(clamdMs / 1000).toFixed(2)} (${mbps(clamdMs)} MB/s)`,
        `${(clamdPathMs / 1000).toFixed(2)}`,
        `${(yara / 1000).toFixed(2)} (${mbps(yara)} MB/s)`,
        `${(cli.ms / 1000).toFixed(2)}`,
        `${(on.ms / 1000).toFixed(2)} (${on.verdict})`,
        `${(off.ms / 1000).toFixed(2)} (${off.verdict})`,
        (on.ms / openssl).toFixed(1),
        (clamdMs / on.ms).toFixed(2),
        (yara / off.ms).toFixed(2),
        `${on.peak.toFixed(0)} / ${off.peak.toFixed(0)}`,
        `${on.anon.toFixed(0)} / ${off.anon.toFixed(0)}`,
        clamdPeak.toFixed(0),
      ];
      rows.push(row);
      console.log(row.join('\t'));
      fs.rmSync(file, { force: true });
    }
  }
} finally {
  await sink.close();
  await withClamd.stop();
  await builtIn.stop();
  await clamd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(cliData, { recursive: true, force: true });
}

const out = table(
  [
    'file',
    '(a) openssl sha256 s',
    '(b) raw clamd INSTREAM s',
    '(b2) raw clamd SCAN path s',
    '(c) yara CLI s',
    '(d) verdict scan CLI s',
    '(e) server, clamd on s',
    '(e) server, built-in only s',
    'server(clamd) / openssl time',
    'clamd throughput ratio (b/e; target ≥ 0.9)',
    'built-in vs yara CLI throughput (c/e; target ≥ 0.6)',
    'server peak RSS MB (clamd on / off)',
    'server peak RssAnon MB (on / off)',
    'clamd peak RSS MB',
  ],
  rows,
);
console.log('\n' + out + (notes.length ? '\n\n' + notes.join('\n') : ''));
record(
  `Big files: ${SIZES.map(fmtBytes).join(', ')}`,
  `Generated files (random bytes; text = one 64 KB block of lines repeated), in the page cache. Before (b), (d) and each (e) run the first 4 KB are replaced with fresh random bytes (clamd caches by hash). (b) streams the file to a bench-owned clamd over its unix socket, (b2) asks the same clamd to SCAN the file by path; (d) and the clamd-on server use that same clamd, the server with clamdFileAccess=path (objects of 1 MiB or more by path). (e) = POST /api/v1/files/ with the file streamed as multipart until the X-Ray callback arrives. Server RSS = its process plus children (VmRSS, which counts file pages YARA-X maps), sampled every 100 ms; RssAnon = the server process's anonymous memory (heap and buffers) alone. Ratios: higher is better for Verdict except "server / openssl time".\n\n${out}${notes.length ? '\n\n' + notes.map((n) => `- ${n}`).join('\n') : ''}`,
);
