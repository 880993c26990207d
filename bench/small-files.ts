/**
 * Small files: SMALL_COUNT (default 2,000) files of 1–64 KB (half random bytes, half prose, one
 * in 50 EICAR), fresh bytes for every round, through the X-Ray async path (POST /api/v1/files/
 * with a callback_url; latency = submission until the callback arrives) and the CSS synchronous
 * path (POST /api/Scan; latency = the response), at each concurrency of SMALL_CONCURRENCY
 * (default 1,16,64), with built-in engines only (clamd off) and with clamd (a bench-owned clamd
 * with the database Verdict's managed one loads). Closed loop: each of N clients waits for its
 * verdict before submitting the next file; a round stops submitting after SMALL_SECONDS
 * (default 30) so slow configurations end in bounded time. SMALL_MODES=off,clamd and
 * SMALL_PATHS=xray,css pick subsets.
 *
 * The load generator is this closed loop over fetch rather than autocannon: every request needs
 * its own fresh body (clamd and Verdict cache by hash) and the X-Ray latency ends at a callback,
 * which autocannon cannot see. The same client code drives the peer (bench/peer.ts), so its
 * overhead cancels out in the ratios.
 *
 *   npm run bench:small
 *   SMALL_COUNT=200 SMALL_CONCURRENCY=1,16 SMALL_MODES=off NO_RECORD=1 npm run bench:small
 */
import { closedLoop, cssScan, record, smallFiles, startClamd, startServer, startSink, summarise, table, xrayScan, RssSampler, type BenchClamd } from './lib.ts';

const COUNT = Number(process.env.SMALL_COUNT ?? 2000);
const CONCURRENCY = (process.env.SMALL_CONCURRENCY ?? '1,16,64').split(',').map(Number);
const MODES = (process.env.SMALL_MODES ?? 'off,clamd').split(',') as ('off' | 'clamd')[];
const PATHS = (process.env.SMALL_PATHS ?? 'xray,css').split(',') as ('xray' | 'css')[];
const EICAR_EVERY = 50;
/** Per round: stop submitting after this long (slow configurations would otherwise take an hour). */
const BUDGET_S = Number(process.env.SMALL_SECONDS ?? 30);

const rows: (string | number)[][] = [];
let wrong = 0;

for (const mode of MODES) {
  let clamd: BenchClamd | undefined;
  if (mode === 'clamd') clamd = await startClamd();
  const server = await startServer({ clamd: clamd?.socket ?? 'off' });
  const sink = await startSink();
  const rss = new RssSampler(server.pid);
  try {
    // one short warm-up so lazy start-up (rule compilation, first connections) is not measured
    await closedLoop(smallFiles(20, 5), 4, async (f) => void (await cssScan(server, f.name, f.data)));
    for (const path of PATHS) {
      for (const c of CONCURRENCY) {
        const files = smallFiles(COUNT, EICAR_EVERY);
        rss.reset();
        const r = await closedLoop(files, c, async (f) => {
          const bad = f.name.startsWith('eicar');
          if (path === 'xray') {
            const v = await xrayScan(server, sink, f.name, new Blob([f.data]));
            if ((v === 'MAL') !== bad) wrong++;
          } else {
            const v = await cssScan(server, f.name, f.data);
            if ((v === 'Infected') !== bad) wrong++;
          }
        }, BUDGET_S * 1000);
        const s = summarise(r);
        const mem = rss.peakKb / 1024;
        const row = [mode === 'off' ? 'built-in' : 'with clamd', path === 'xray' ? 'X-Ray async' : 'CSS sync', c, r.latencies.length, s.perSecond.toFixed(0), s.p50.toFixed(1), s.p95.toFixed(1), s.p99.toFixed(1), r.errors, mem.toFixed(0)];
        rows.push(row);
        console.log(row.join('\t') + (r.firstError ? `\tfirst error: ${r.firstError}` : ''));
      }
    }
  } finally {
    rss.stop();
    await sink.close();
    await server.stop();
    await clamd?.stop();
  }
}

const out = table(['engines', 'path', 'concurrency', 'files', 'scans/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'server peak RSS MB'], rows);
console.log('\n' + out);
if (wrong) console.log(`\n⚠ ${wrong} verdicts did not match the content (EICAR must be MAL/Infected, the rest clean)`);
record(
  `Small files, ${COUNT} per round`,
  `${COUNT} files of 1–64 KB per round (half random bytes, half prose, 1 in ${EICAR_EVERY} EICAR), fresh bytes each round, at most ${BUDGET_S} s of submissions per round; closed loop (each of N clients waits for its verdict). X-Ray latency = POST until the callback arrives; CSS latency = the synchronous response. Server with default workers; clamd = a bench-owned clamd on a unix socket. Wrong verdicts: ${wrong}.\n\n${out}`,
);
