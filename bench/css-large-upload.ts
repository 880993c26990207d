/**
 * A large upload through the CSS synchronous path (`POST /api/Scan`, raw body) with the real
 * engines (managed clamd when installed): time to verdict, throughput, and the server's peak
 * RSS sampled during the run (it must stay flat whatever the size), beside the read-and-hash
 * floor (`openssl dgst -sha256` on the same bytes) measured in the same run.
 *
 *   node --import tsx bench/css-large-upload.ts [sizeGiB=3]
 *
 * Appends its results to docs/benchmarks.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import pino from 'pino';
import { createVerdict } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';

const GiB = 1024 ** 3;
const size = Math.round(Number(process.argv[2] ?? 3) * GiB);
const root = path.resolve(import.meta.dirname, '..');

/** Fresh pseudo-random bytes (clamd caches clean results by hash: never reuse data). */
function* blocks(total: number): Generator<Buffer> {
  const seed = crypto.randomBytes(4 * 1024 * 1024);
  let left = total;
  let n = 0;
  while (left > 0) {
    const b = Buffer.from(seed.subarray(0, Math.min(left, seed.length)));
    b.writeUInt32LE(n++, 0); // every block differs
    b.writeDoubleLE(Math.random(), 8);
    left -= b.length;
    yield b;
  }
}

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-bench-css-'));
  const sample = path.join(dataDir, 'sample.bin');
  fs.writeFileSync(sample, '');
  for (const b of blocks(size)) fs.appendFileSync(sample, b);

  let t = performance.now();
  execFileSync('openssl', ['dgst', '-sha256', sample]);
  const floorS = (performance.now() - t) / 1000;

  const config = loadConfig({ dataDir: path.join(dataDir, 'data'), port: 0, workers: 1, maxRequestsPerMinute: 0, cssWaitMs: 3_600_000, logLevel: 'silent', limits: { maxFileSize: size + 1, scanTimeoutMs: 3_600_000, scannerTimeoutMs: 3_600_000 } }, {});
  const v = await createVerdict(config, { log: pino({ level: 'silent' }) });
  const url = await v.listen();
  const baseRss = process.memoryUsage().rss;
  let peakRss = baseRss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 50);
  t = performance.now();
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request(`${url}/api/Scan`, { method: 'POST', headers: { authorization: `Bearer ${v.firstToken}`, 'file-name': 'big.bin', 'content-type': 'application/octet-stream', 'content-length': String(size) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
    });
    req.on('error', reject);
    fs.createReadStream(sample, { highWaterMark: 1024 * 1024 }).pipe(req);
  });
  const scanS = (performance.now() - t) / 1000;
  clearInterval(sampler);
  const engines = Object.entries(v.engines()).filter(([, s]) => s.state === 'on').map(([n]) => n).join(', ');
  await v.close();
  fs.rmSync(dataDir, { recursive: true, force: true });

  const result = JSON.parse(body.slice(body.indexOf(' ') + 1));
  const mb = size / 1024 ** 2;
  const lines = [
    `## Large upload through CSS /api/Scan, ${(size / GiB).toFixed(1)} GiB (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
    '',
    `Machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), ${(os.totalmem() / GiB).toFixed(1)} GiB RAM, Node ${process.version}. Engines on: ${engines}.`,
    '',
    '| measure | value |',
    '| --- | ---: |',
    `| openssl dgst -sha256 (read-and-hash floor) | ${floorS.toFixed(1)} s (${(mb / floorS).toFixed(0)} MB/s) |`,
    `| upload → verdict | ${scanS.toFixed(1)} s (${(mb / scanS).toFixed(0)} MB/s) |`,
    `| ratio to the floor | ${(scanS / floorS).toFixed(1)}× |`,
    `| server process RSS before / peak | ${(baseRss / 1024 ** 2).toFixed(0)} / ${(peakRss / 1024 ** 2).toFixed(0)} MiB |`,
    `| result | ${result.result}; engines that covered it: ${(result.scanEngines ?? []).join(', ') || '—'}; incomplete: ${(result.incompleteEngines ?? []).join(', ') || 'none'} |`,
    '',
  ];
  console.log(lines.join('\n'));
  fs.appendFileSync(path.join(root, 'docs', 'benchmarks.md'), '\n' + lines.join('\n'));
}

await main();
