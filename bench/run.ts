/**
 * `npm run bench`: every part in sequence, each in its own process (each starts and stops what it
 * needs and records itself in docs/benchmarks.md unless NO_RECORD=1). A failing part does not stop
 * the others; the exit code is 1 when any failed.
 *
 *   npm run bench
 *   BENCH_PARTS=big,archives NO_RECORD=1 npm run bench
 *
 * Parts: big, small, peer, archives (this harness), search (1M scans in SQLite), workers (scale
 * mode, 1 vs 2 workers; needs PostgreSQL and Redis on loopback, as the tests do).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

// not from lib.ts: its interruption handler would exit before the running part is told to stop
const root = path.resolve(import.meta.dirname, '..');

const PARTS: Record<string, string> = {
  big: 'bench/big-files.ts',
  small: 'bench/small-files.ts',
  peer: 'bench/peer.ts',
  archives: 'bench/archives.ts',
  search: 'bench/search.ts',
  workers: 'bench/workers.ts',
};
const chosen = (process.env.BENCH_PARTS ?? Object.keys(PARTS).join(',')).split(',').map((s) => s.trim());
for (const p of chosen) if (!PARTS[p]) throw new Error(`unknown part ${p} (parts: ${Object.keys(PARTS).join(', ')})`);

const results: string[] = [];
let failed = false;
let stopping = false;
for (const part of chosen) {
  if (stopping) break;
  console.log(`\n=== ${part} (${PARTS[part]}) ===`);
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', PARTS[part]], { cwd: root, stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal; a SIGTERM to this process is passed on
  const forward = (): void => {
    stopping = true; // no further parts once told to stop
    child.kill('SIGTERM');
  };
  process.once('SIGTERM', forward);
  const code: number = await new Promise((r) => child.once('exit', (c, sig) => r(c ?? (sig ? 128 : 1))));
  process.removeListener('SIGTERM', forward);
  const s = ((performance.now() - t0) / 1000).toFixed(0);
  results.push(`${part}: ${code === 0 ? 'ok' : `FAILED (exit ${code})`} in ${s} s`);
  if (code !== 0) failed = true;
}
console.log('\n' + results.join('\n'));
process.exitCode = failed ? 1 : 0;
