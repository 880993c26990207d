/**
 * Archives through POST /api/v1/files/ until the X-Ray callback: time to verdict and the
 * server's peak RSS (process plus children: extractors run as subprocesses), with clamd on (a
 * bench-owned clamd) and with built-in engines only.
 *   - a zip of ARCH_MEMBERS (default 10,000) small members (1–4 KB prose, one EICAR at the end),
 *   - a 5-level nested archive: zip ⊃ tar.gz ⊃ zip ⊃ tar.gz ⊃ zip ⊃ EICAR,
 *   - a compression bomb: ARCH_BOMB (default 1G) of zeros in a zip, that zip in another zip.
 * Archives are built with Debian's 7zz and tar (no shell) in a private temp dir.
 *
 *   npm run bench:archives
 *   ARCH_MEMBERS=1000 ARCH_BOMB=100M NO_RECORD=1 npm run bench:archives
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { EICAR, fmtBytes, proseBytes, haveCommand, parseSizes, record, startClamd, startServer, startSink, table, tmpDir, xraySubmit, RssSampler, type Server } from './lib.ts';

const run = promisify(execFile);
const MEMBERS = Number(process.env.ARCH_MEMBERS ?? 10_000);
const BOMB = parseSizes(process.env.ARCH_BOMB ?? '1G')[0];

for (const tool of ['7zz', 'tar']) if (!haveCommand(tool)) throw new Error(`${tool} is missing (see .ci/run: 7zip, tar)`);

const dir = tmpDir('archives');
const tool = (cmd: string, args: string[], cwd: string) => run(cmd, args, { cwd, timeout: 10 * 60_000, maxBuffer: 1 << 20 });

/** zip of `entries` (names relative to `cwd`), 7zz deflate. */
async function zip(out: string, cwd: string, entries: string[], level = 5): Promise<void> {
  await tool('7zz', ['a', '-tzip', `-mx=${level}`, '-bd', '-bso0', '-bsp0', out, '--', ...entries], cwd);
}

async function manyMembers(): Promise<string> {
  const src = path.join(dir, 'many');
  fs.mkdirSync(src);
  for (let i = 0; i < MEMBERS; i++) {
    const size = 1024 * (1 + (i % 4));
    const body = i === MEMBERS - 1 ? EICAR : proseBytes(size);
    fs.writeFileSync(path.join(src, `m${String(i).padStart(5, '0')}.${i === MEMBERS - 1 ? 'com' : 'txt'}`), body);
  }
  const out = path.join(dir, 'many.zip');
  await zip(out, src, ['.'], 1);
  fs.rmSync(src, { recursive: true, force: true });
  return out;
}

async function nested(): Promise<string> {
  const work = path.join(dir, 'nested');
  fs.mkdirSync(work);
  fs.writeFileSync(path.join(work, 'eicar.com'), EICAR);
  let inner = 'eicar.com';
  // innermost first: zip, tar.gz, zip, tar.gz, zip (5 container levels)
  for (let level = 1; level <= 5; level++) {
    const name = level % 2 ? `level${level}.zip` : `level${level}.tar.gz`;
    if (level % 2) await zip(path.join(work, name), work, [inner]);
    else await tool('tar', ['-czf', name, '--', inner], work);
    fs.rmSync(path.join(work, inner));
    inner = name;
  }
  const out = path.join(dir, inner);
  fs.renameSync(path.join(work, inner), out);
  fs.rmSync(work, { recursive: true, force: true });
  return out;
}

async function bomb(): Promise<string> {
  const work = path.join(dir, 'bomb');
  fs.mkdirSync(work);
  const zeros = path.join(work, 'zeros.bin');
  fs.closeSync(fs.openSync(zeros, 'w'));
  fs.truncateSync(zeros, BOMB); // sparse: no disk written, 7zz reads zeros
  await zip(path.join(work, 'inner.zip'), work, ['zeros.bin'], 1); // deflate tops out near 1000:1 at any level; level 1 builds fastest
  fs.rmSync(zeros);
  const out = path.join(dir, 'bomb.zip');
  await zip(out, work, ['inner.zip'], 9);
  fs.rmSync(work, { recursive: true, force: true });
  return out;
}

const samples: { label: string; file: string; expect: string }[] = [];
let t = performance.now();
samples.push({ label: `zip of ${MEMBERS.toLocaleString('en')} members`, file: await manyMembers(), expect: 'MAL (EICAR is the last member)' });
samples.push({ label: '5-level nested (zip/tar.gz alternating)', file: await nested(), expect: 'MAL (EICAR at the bottom)' });
samples.push({ label: `bomb: ${fmtBytes(BOMB)} of zeros, zip in zip`, file: await bomb(), expect: 'partial or a bomb heuristic, never a plain clean' });
console.log(`built samples in ${((performance.now() - t) / 1000).toFixed(1)} s: ${samples.map((s) => `${path.basename(s.file)} ${fmtBytes(fs.statSync(s.file).size)}`).join(', ')}`);

const clamd = await startClamd();
const servers: [string, Server][] = [
  ['clamd on', await startServer({ clamd: clamd.socket })],
  ['built-in only', await startServer({ clamd: 'off' })],
];
const sink = await startSink();
const rows: (string | number)[][] = [];
try {
  for (const s of samples) {
    for (const [mode, server] of servers) {
      const rss = new RssSampler(server.pid);
      t = performance.now();
      const body = await xraySubmit(server, sink, path.basename(s.file), { file: s.file }, 30 * 60_000);
      const ms = performance.now() - t;
      const mem = rss.stop();
      const evidence = ((body.evidence as { Name: string }[] | undefined) ?? []).map((e) => e.Name);
      const top = [...new Set(evidence)].slice(0, 4).join(', ');
      const row = [s.label, fmtBytes(fs.statSync(s.file).size), mode, (ms / 1000).toFixed(2), `${body.verdict}${body.partial ? ' (partial)' : ''}`, s.expect, top || '-', mem.peakMb.toFixed(0), mem.peakTreeMb.toFixed(0)];
      rows.push(row);
      console.log(row.join('\t'));
    }
  }
} finally {
  await sink.close();
  for (const [, s] of servers) await s.stop();
  await clamd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

const out = table(['sample', 'size', 'engines', 'seconds to verdict', 'verdict', 'expected', 'evidence (first)', 'server peak RSS MB', 'with children MB'], rows);
console.log('\n' + out);
record('Archives', `Each sample submitted once per server (POST /api/v1/files/ until the X-Ray callback), default limits; RSS sampled every 100 ms, "with children" adds extractor subprocesses.\n\n${out}`);
