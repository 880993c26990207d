/**
 * Fuzz test: every format the engine parses (test/fuzz-seeds.ts builds one valid object of
 * each at run time) is mutated deterministically — byte flips, truncation, chunk duplication
 * and removal, corrupted length fields (binary and ASCII), random insertions, repeated chunks,
 * tokens of other formats — and each case goes through the real engine, recursion included
 * (one case in eight is wrapped in a valid zip, tar or gzip so that the damaged object is
 * reached as a child). Each case must give a report with a verdict, within the time budget,
 * without an exception, a process crash or a hang.
 *
 * Cases run in two child processes (this file, forked with VERDICT_FUZZ_WORKER=1) so that a
 * crash, an out-of-memory or a synchronous endless loop is caught and pinned on its case: the
 * parent kills a worker whose case outlives the watchdog and starts another.
 *
 * ClamAV is off here on purpose: clamd is a separate process that receives bytes, and what is
 * fuzzed is our own parsing and recursion. URL fetching is off (no network).
 *
 * Knobs (environment): FUZZ_CASES (default 3000), FUZZ_SECONDS (stop starting cases after this
 * long; default 75 when FUZZ_CASES is not set, so that a loaded machine still finishes in about
 * 90 s: cases go round-robin over the seeds, so a shorter run still covers every format),
 * FUZZ_SEED (default 1), FUZZ_ONLY (`pdf-js#17,zip#3`: only these cases). A failing case is printed as `<seed>#<index>` with
 * its mutations, and its bytes are saved under $TMPDIR/verdict-fuzz-failures/ so that
 * `node bin/verdict.js scan <file>` reproduces it even for seeds with random salts
 * (encrypted zip and 7z).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { buildSeeds, gzipWithHeaders, tarArchive, zipArchive, type Seed } from './fuzz-seeds.ts';

const SCAN_TIMEOUT_MS = 4000;
const SCANNER_TIMEOUT_MS = 2000;
/** What a case may take beyond the engine's budget (temporary files, a loaded machine). */
const MARGIN_MS = 2500;
/** A case still running after this is a hang: its worker is killed. */
const WATCHDOG_MS = SCAN_TIMEOUT_MS + MARGIN_MS + 10_000;
const WORKERS = 2;

// ---------------------------------------------------------------------------------------------
// Deterministic mutations

/** sfc32 seeded from an FNV-1a hash of the case id: each case reproduces on its own. */
export function rngFor(key: string): () => number {
  let h = 0x811c9dc5;
  const seeds: number[] = [];
  for (let k = 0; k < 4; k++) {
    for (const c of `${k}:${key}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
    seeds.push(h >>> 0);
  }
  let [a, b, c, d] = seeds;
  return () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];
const ASCII_NUMBERS = ['0', '-1', '1', '99999999999', '4294967295', '2147483648', '65536', '00000000000000000000001', '1e308', '-0'];
/** Tokens of the formats under test, inserted anywhere to steer parsers into their branches. */
const TOKENS = [
  'PK\x03\x04', 'PK\x01\x02', 'PK\x05\x06', 'ustar\x00', '\x1f\x8b\x08', 'BZh9', '7z\xbc\xaf\x27\x1c', '\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1',
  '%PDF-1.7', ' 0 obj', 'endobj', 'stream\r\n', 'endstream', '<<', '>>', '/Filter /FlateDecode', '/ObjStm', '/JS (', '/Length 999999', 'trailer',
  '{\\rtf1', '{\\object', '\\objdata ', '\\bin999999 ', '{{{{{{{{', '}}}}', '\\u-1?',
  '<script>', '</script>', '<form action="', '<input type="password">', '<!--', '<![CDATA[', '&#x', '<svg', '<iframe',
  'eval(', 'atob("', 'String.fromCharCode(', '-enc ', '%x:~', '^', '`', 'Chr(', '"{0}{1}" -f',
  '\r\n--b1_fuzz_boundary\r\n', 'Content-Transfer-Encoding: base64\r\n\r\n', '=?UTF-8?B?', '=\r\n', 'Content-Type: multipart/mixed; boundary=""\r\n',
  'http://', 'xn--', '@', '%00', '%%', '\u0000', '\uffff', '\ud800',
];

type Rng = () => number;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);

const MUTATORS: Record<string, (b: Buffer, rng: Rng) => Buffer> = {
  flip(b, rng) {
    const out = Buffer.from(b);
    for (let k = 1 + int(rng, 16); k > 0 && out.length; k--) {
      const i = int(rng, out.length);
      out[i] = rng() < 0.5 ? out[i] ^ (1 << int(rng, 8)) : int(rng, 256);
    }
    return out;
  },
  truncate(b, rng) {
    return b.subarray(0, int(rng, b.length + 1));
  },
  duplicate(b, rng) {
    if (!b.length) return b;
    const start = int(rng, b.length);
    const chunk = b.subarray(start, start + 1 + int(rng, Math.min(4096, b.length - start)));
    const at = int(rng, b.length + 1);
    return Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)]);
  },
  remove(b, rng) {
    if (!b.length) return b;
    const start = int(rng, b.length);
    return Buffer.concat([b.subarray(0, start), b.subarray(start + 1 + int(rng, Math.min(4096, b.length - start)))]);
  },
  lengthField(b, rng) {
    const out = Buffer.from(b);
    if (out.length < 4) return out;
    const width = rng() < 0.5 ? 2 : 4;
    // Structures are mostly aligned: prefer aligned offsets.
    let at = int(rng, out.length - width + 1);
    if (rng() < 0.6) at -= at % width;
    const old = width === 2 ? out.readUInt16LE(at) : out.readUInt32LE(at);
    const choices = [...INTERESTING, old + 1, old - 1, old * 2, old * 256, old + 0x1000];
    const v = (choices[int(rng, choices.length)] >>> 0) & (width === 2 ? 0xffff : 0xffffffff);
    if (width === 2) rng() < 0.7 ? out.writeUInt16LE(v, at) : out.writeUInt16BE(v, at);
    else rng() < 0.7 ? out.writeUInt32LE(v >>> 0, at) : out.writeUInt32BE(v >>> 0, at);
    return out;
  },
  asciiNumber(b, rng) {
    const text = b.toString('latin1');
    const runs = [...text.matchAll(/\d+/g)];
    if (!runs.length) return MUTATORS.lengthField(b, rng);
    const m = runs[int(rng, runs.length)];
    const repl = ASCII_NUMBERS[int(rng, ASCII_NUMBERS.length)];
    return Buffer.concat([b.subarray(0, m.index!), Buffer.from(repl, 'latin1'), b.subarray(m.index! + m[0].length)]);
  },
  insertRandom(b, rng) {
    const junk = Buffer.alloc(1 + int(rng, 64));
    for (let i = 0; i < junk.length; i++) junk[i] = int(rng, 256);
    const at = int(rng, b.length + 1);
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
  },
  repeat(b, rng) {
    // Amplification: many copies of a small piece (deep nesting, long runs, regex stress).
    if (!b.length) return b;
    const start = int(rng, b.length);
    const chunk = b.subarray(start, start + 1 + int(rng, 16));
    const times = 100 + int(rng, 5000);
    return Buffer.concat([b.subarray(0, start), Buffer.alloc(chunk.length * times).fill(chunk), b.subarray(start)]);
  },
  token(b, rng) {
    const t = Buffer.from(TOKENS[int(rng, TOKENS.length)], 'latin1');
    const at = int(rng, b.length + 1);
    return rng() < 0.5 ? Buffer.concat([b.subarray(0, at), t, b.subarray(at)]) : Buffer.concat([b.subarray(0, at), t, b.subarray(Math.min(b.length, at + t.length))]);
  },
};
const MUTATOR_NAMES = Object.keys(MUTATORS);

export interface FuzzCase {
  seed: string;
  index: number;
  name: string;
  kind: 'file' | 'url';
  data: Buffer;
  ops: string[];
}

/** The case `index` of a seed: 1–3 stacked mutations, sometimes wrapped in a valid container. */
export function makeCase(seed: Seed, index: number, globalSeed: string): FuzzCase {
  const rng = rngFor(`${globalSeed}:${seed.name}:${index}`);
  let data = seed.data;
  const ops: string[] = [];
  for (let k = 1 + int(rng, 3); k > 0; k--) {
    const m = MUTATOR_NAMES[int(rng, MUTATOR_NAMES.length)];
    data = MUTATORS[m](data, rng);
    ops.push(m);
  }
  let name = seed.file;
  if (seed.kind === 'file' && rng() < 1 / 8) {
    const base = path.basename(seed.file);
    const w = int(rng, 3);
    if (w === 0) [data, name] = [zipArchive([[`docs/${base}`, data]]), `${base}.zip`];
    else if (w === 1) [data, name] = [tarArchive([{ name: base, data }]), `${base}.tar`];
    else [data, name] = [rng() < 0.5 ? zlib.gzipSync(data) : gzipWithHeaders(data, base), `${base}.gz`];
    ops.push(['zip', 'tar', 'gzip'][w]);
  }
  return { seed: seed.name, index, name, kind: seed.kind, data, ops };
}

// ---------------------------------------------------------------------------------------------
// Worker (a child process: one engine, one case at a time)

interface CaseResult {
  type: 'result';
  id: string;
  ms: number;
  verdict?: string;
  objects: number;
  /** ENGINE_ERROR findings: scanner, timeout?, message. */
  engineErrors: { scanner: string; timeout: boolean; error: string }[];
  thrown?: string;
}

async function workerMain(): Promise<void> {
  const fatal = (what: string) => (e: unknown) => {
    process.send!({ type: 'fatal', error: `${what}: ${(e as Error)?.stack ?? String(e)}` }, () => process.exit(70));
  };
  process.on('unhandledRejection', fatal('unhandled rejection'));
  process.on('uncaughtException', fatal('uncaught exception'));
  const pino = (await import('pino')).default;
  const { loadConfig } = await import('../src/config/load.ts');
  const { initScanners } = await import('../src/scanners/index.ts');
  const { Engine } = await import('../src/engine/engine.ts');
  const { walk } = await import('../src/engine/report.ts');
  const { isVerdictCode } = await import('../src/verdict/codes.ts');

  const dir = process.env.FUZZ_SEEDS_DIR!;
  const seeds: Seed[] = JSON.parse(fs.readFileSync(path.join(dir, 'seeds.json'), 'utf8')).map((s: Omit<Seed, 'data'> & { file: string; path: string }) => ({ ...s, data: fs.readFileSync(s.path) }));
  const tmp = fs.mkdtempSync(path.join(dir, 'worker-'));
  const log = pino({ level: 'silent' });
  const config = loadConfig(
    { dataDir: tmp, clamd: 'off', urlFetch: false, fetchEmbeddedLinks: false, logLevel: 'silent', limits: { scanTimeoutMs: SCAN_TIMEOUT_MS, scannerTimeoutMs: SCANNER_TIMEOUT_MS, maxChildren: 500, maxTotalExtractedBytes: 256 * 1024 * 1024 } },
    {},
  );
  const { active } = await initScanners({ config, log });
  const engine = new Engine(active, { limits: config.limits, policy: { scoreSuspicious: config.scoreSuspicious, scoreMalicious: config.scoreMalicious }, log, tmpRoot: tmp });
  const globalSeed = process.env.FUZZ_SEED ?? '1';

  process.on('message', async (msg: { seed: string; index: number }) => {
    const seed = seeds.find((s) => s.name === msg.seed)!;
    const c = makeCase(seed, msg.index, globalSeed);
    const id = `${c.seed}#${c.index}`;
    const started = performance.now();
    const req = { options: { passwords: ['infected', ...config.archivePasswords], classify: c.index % 3 === 0 }, finalAttempt: true };
    let out: CaseResult;
    try {
      const r = c.kind === 'url' ? await engine.scanUrl(c.data.toString('latin1'), req) : await engine.scanBuffer(c.data, c.name, req);
      const nodes = [...walk(r)];
      out = {
        type: 'result',
        id,
        ms: performance.now() - started,
        verdict: isVerdictCode(r?.outcome?.verdict) ? r.outcome.verdict : undefined,
        objects: nodes.length,
        engineErrors: nodes.flatMap((n) => n.evidence.filter((e) => e.heuristic === 'ENGINE_ERROR').map((e) => ({ scanner: e.scanner, timeout: e.data?.timeout === true, error: String(e.data?.error ?? e.details).slice(0, 300) }))),
      };
    } catch (e) {
      out = { type: 'result', id, ms: performance.now() - started, objects: 0, engineErrors: [], thrown: (e as Error)?.stack ?? String(e) };
    }
    process.send!(out);
  });
  process.send!({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// The test (parent)

interface Failure {
  id: string;
  what: string;
  ops?: string[];
  saved?: string;
}

if (process.env.VERDICT_FUZZ_WORKER) {
  await workerMain();
} else {
  describe('fuzz', () => {
    let dir: string;
    let seeds: Seed[];
    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-fuzz-'));
      seeds = await buildSeeds(path.join(dir, 'build'));
      fs.mkdirSync(path.join(dir, 'seeds'));
      const manifest = seeds.map((s) => {
        const p = path.join(dir, 'seeds', `${s.name}.bin`);
        fs.writeFileSync(p, s.data);
        return { name: s.name, file: s.file, kind: s.kind, path: p };
      });
      fs.writeFileSync(path.join(dir, 'seeds.json'), JSON.stringify(manifest));
    });
    after(() => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test('mutation cases are deterministic and really mutate', () => {
      const s = seeds.find((x) => x.name === 'pdf-js')!;
      const a = makeCase(s, 5, '1');
      assert.deepEqual(makeCase(s, 5, '1'), a);
      let changed = 0;
      for (let i = 0; i < 50; i++) if (!makeCase(s, i, '1').data.equals(s.data)) changed++;
      assert.ok(changed >= 45, `${changed} of 50 cases differ from their seed`);
    });

    test('mutated inputs of every format never crash, hang or overrun the time budget', { timeout: 20 * 60_000 }, async (t) => {
      const globalSeed = process.env.FUZZ_SEED ?? '1';
      let queue: { seed: string; index: number }[];
      if (process.env.FUZZ_ONLY) {
        queue = process.env.FUZZ_ONLY.split(',').map((id) => {
          const [seed, index] = id.trim().split('#');
          assert.ok(seeds.some((s) => s.name === seed), `FUZZ_ONLY: no seed named ${seed} (seeds: ${seeds.map((s) => s.name).join(', ')})`);
          return { seed, index: Number(index) };
        });
      } else {
        const total = Number(process.env.FUZZ_CASES ?? 3000);
        queue = Array.from({ length: total }, (_, i) => ({ seed: seeds[i % seeds.length].name, index: Math.floor(i / seeds.length) }));
      }
      const total = queue.length;
      const seconds = Number(process.env.FUZZ_SECONDS ?? (process.env.FUZZ_CASES || process.env.FUZZ_ONLY ? Infinity : 75));
      // The budget starts when the first worker is ready (loading the engine takes seconds).
      let stopAt = Infinity;
      const failures: Failure[] = [];
      const results: CaseResult[] = [];
      const started = performance.now();

      const failDir = path.join(os.tmpdir(), 'verdict-fuzz-failures');
      const fail = (job: { seed: string; index: number }, what: string) => {
        const seed = seeds.find((s) => s.name === job.seed)!;
        const c = makeCase(seed, job.index, globalSeed);
        fs.mkdirSync(failDir, { recursive: true });
        const saved = path.join(failDir, `${c.seed}-${c.index}-${path.basename(c.name).replace(/[^\w.-]/g, '_').slice(-60)}`);
        fs.writeFileSync(saved, c.data);
        failures.push({ id: `${c.seed}#${c.index}`, what, ops: c.ops, saved });
      };

      await new Promise<void>((resolve) => {
        let running = 0;
        const spawn = () => {
          const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
            execArgv: ['--import', 'tsx', '--max-old-space-size=1536'],
            env: { ...process.env, VERDICT_FUZZ_WORKER: '1', FUZZ_SEEDS_DIR: dir, FUZZ_SEED: globalSeed },
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          running++;
          let job: { seed: string; index: number } | undefined;
          let watchdog: NodeJS.Timeout | undefined;
          let fatal: string | undefined;
          let done = false;
          let ready = false;
          const next = () => {
            job = performance.now() < stopAt ? queue.shift() : undefined;
            if (!job) {
              done = true;
              child.kill();
              return;
            }
            child.send(job);
            watchdog = setTimeout(() => {
              fail(job!, `hang: no result after ${WATCHDOG_MS} ms (worker killed)`);
              job = undefined;
              child.kill('SIGKILL');
            }, WATCHDOG_MS);
          };
          child.on('message', (m: CaseResult | { type: 'ready' } | { type: 'fatal'; error: string }) => {
            if (m.type === 'ready') {
              ready = true;
              if (stopAt === Infinity) stopAt = performance.now() + seconds * 1000;
              return next();
            }
            if (m.type === 'fatal') {
              fatal = m.error;
              return;
            }
            clearTimeout(watchdog);
            // A result racing the watchdog's kill: the case is already recorded as a hang.
            if (!job) return;
            const j = job;
            results.push(m);
            if (m.thrown) fail(j, `the engine threw: ${m.thrown}`);
            else if (!m.verdict) fail(j, 'no verdict in the report');
            else if (m.ms > SCAN_TIMEOUT_MS + MARGIN_MS) fail(j, `took ${Math.round(m.ms)} ms (budget ${SCAN_TIMEOUT_MS} + ${MARGIN_MS} ms)`);
            next();
          });
          child.on('exit', (code, signal) => {
            clearTimeout(watchdog);
            running--;
            if (!done) {
              // Died with a case in flight (crash, out of memory) or killed by the watchdog.
              if (job) fail(job, `worker died (code ${code}, signal ${signal})${fatal ? `: ${fatal}` : ''}`);
              else if (!ready) failures.push({ id: 'worker', what: `a worker could not start (code ${code}, signal ${signal})${fatal ? `: ${fatal}` : ''}` });
              else if (fatal) failures.push({ id: 'worker', what: fatal });
              if (ready && queue.length && performance.now() < stopAt) return spawn();
            }
            if (running === 0) resolve();
          });
        };
        for (let w = 0; w < Math.min(WORKERS, total); w++) spawn();
      });

      const elapsed = (performance.now() - started) / 1000;
      // What the run saw, for whoever reads the log: failing engines are allowed (they become
      // partial findings) but a parser that throws on damaged input deserves a look.
      const byEngine = new Map<string, { errors: number; timeouts: number; example: string }>();
      for (const r of results) {
        for (const e of r.engineErrors) {
          const k = byEngine.get(e.scanner) ?? { errors: 0, timeouts: 0, example: `${r.id}: ${e.error}` };
          if (e.timeout) k.timeouts++;
          else k.errors++;
          byEngine.set(e.scanner, k);
        }
      }
      const ms = results.map((r) => r.ms).sort((a, b) => a - b);
      t.diagnostic(`${results.length}/${total} cases in ${elapsed.toFixed(1)} s (${(results.length / elapsed).toFixed(0)}/s)${queue.length ? ` (${queue.length} not started: ${seconds} s budget)` : ''}, ${seeds.length} seeds${ms.length ? `, p50 ${ms[Math.floor(ms.length / 2)].toFixed(0)} ms, p99 ${ms[Math.floor(ms.length * 0.99)].toFixed(0)} ms, max ${ms.at(-1)!.toFixed(0)} ms` : ''}`);
      for (const [scanner, k] of byEngine) t.diagnostic(`ENGINE_ERROR ${scanner}: ${k.errors} errors, ${k.timeouts} timeouts; e.g. ${k.example.slice(0, 200)}`);
      const slowest = [...results].sort((a, b) => b.ms - a.ms).slice(0, 3);
      t.diagnostic(`slowest: ${slowest.map((r) => `${r.id} ${r.ms.toFixed(0)} ms`).join(', ')}`);

      const report = failures.map((f) => `${f.id} [${f.ops?.join(' + ') ?? ''}] ${f.what.slice(0, 2000)}${f.saved ? `\n    input saved: ${f.saved}\n    reproduce: FUZZ_ONLY=${f.id} FUZZ_SEED=${globalSeed} node --import tsx --test test/fuzz.test.ts  (or node bin/verdict.js scan ${f.saved})` : ''}`);
      assert.equal(failures.length, 0, `${failures.length} failing case(s):\n${report.join('\n')}`);
      // Every case started gave a result; a run cut by the time budget still covered every seed.
      assert.equal(results.length + failures.filter((f) => f.id !== 'worker' && !results.some((r) => r.id === f.id)).length, total - queue.length, 'every case started gave a result');
      assert.ok(results.length >= Math.min(total, 10 * seeds.length), `only ${results.length} cases ran in ${seconds} s`);
    });
  });
}
