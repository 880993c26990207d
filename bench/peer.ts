/**
 * Verdict against a peer on the same clamd and the same kind of files.
 *
 * The peer is OUR OWN minimal equivalent of the request path of benzino77/clamav-rest-api (a
 * ClamAV REST wrapper used in production; it is not on this machine and Express is not
 * installed): POST /api/v1/scan with multipart field FILES, the upload buffered whole in memory
 * (as express-fileupload does there), then sent to clamd with INSTREAM, answering
 * `{ success, data: { result: [{ name, is_infected, viruses }] } }`. It runs in its own process
 * (`node --import tsx bench/peer.ts serve-peer <clamd socket> <port>`) so its RSS is sampled
 * like Verdict's.
 *
 * Contenders, each with fresh bytes of the same size mix (clamd caches clean results by hash):
 * raw clamd INSTREAM from this process (the floor), the peer, Verdict's CSS synchronous
 * POST /api/Scan with clamd on. Concurrency PEER_CONCURRENCY (default 1,16), PEER_COUNT files
 * (default 2,000, at most PEER_SECONDS = 30 s of submissions per round).
 *
 *   npm run bench:peer
 *   PEER_COUNT=200 NO_RECORD=1 npm run bench:peer
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { Busboy } from '@fastify/busboy';
import { ClamdClient } from '../src/engines/clamd-client.ts';
import { closedLoop, cssScan, freePort, record, root, smallFiles, startClamd, startServer, summarise, table, track, waitHttp, RssSampler } from './lib.ts';

if (process.argv[2] === 'serve-peer') {
  servePeer(process.argv[3], Number(process.argv[4]));
} else {
  await main();
}

function servePeer(socket: string, port: number): void {
  const clamd = new ClamdClient({ socket });
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/healthz') return send(200, { ok: true });
    if (req.method !== 'POST' || req.url !== '/api/v1/scan') return send(404, { success: false });
    let bb;
    try {
      bb = Busboy({ headers: req.headers as { 'content-type': string } & http.IncomingHttpHeaders, limits: { fileSize: 1024 ** 3 } });
    } catch {
      return send(400, { success: false, data: { error: 'not multipart' } });
    }
    const files: { name: string; data: Buffer }[] = [];
    bb.on('file', (field, stream, filename) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (field === 'FILES') files.push({ name: filename, data: Buffer.concat(chunks) });
      });
    });
    bb.on('finish', async () => {
      try {
        const result = [];
        for (const f of files) {
          const r = await clamd.instream(f.data);
          result.push({ name: f.name, is_infected: r.status === 'found', viruses: r.signature ? [r.signature] : [] });
        }
        send(200, { success: true, data: { result } });
      } catch (err) {
        send(500, { success: false, data: { error: (err as Error).message } });
      }
    });
    req.pipe(bb);
  });
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

async function main(): Promise<void> {
  const COUNT = Number(process.env.PEER_COUNT ?? 2000);
  const CONCURRENCY = (process.env.PEER_CONCURRENCY ?? '1,16').split(',').map(Number);
  const BUDGET_MS = Number(process.env.PEER_SECONDS ?? 30) * 1000;
  const clamd = await startClamd();
  const client = new ClamdClient({ socket: clamd.socket });
  const port = await freePort();
  const peer = spawn(process.execPath, ['--import', 'tsx', 'bench/peer.ts', 'serve-peer', clamd.socket, String(port)], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  track(peer);
  const peerBase = `http://127.0.0.1:${port}`;
  const verdict = await startServer({ clamd: clamd.socket });
  const rows: (string | number)[][] = [];
  const ratios: string[] = [];
  let wrong = 0;
  try {
    await waitHttp(`${peerBase}/healthz`);
    const contenders: { name: string; pid?: number; run: (f: { name: string; data: Buffer }) => Promise<boolean> }[] = [
      { name: 'raw clamd INSTREAM', pid: clamd.pid, run: async (f) => (await client.instream(f.data)).status === 'found' },
      {
        name: 'peer (our clamav-rest-api equivalent)',
        pid: peer.pid,
        run: async (f) => {
          const form = new FormData();
          form.set('FILES', new Blob([f.data]), f.name);
          const res = await fetch(`${peerBase}/api/v1/scan`, { method: 'POST', body: form });
          const body = (await res.json()) as { success: boolean; data: { result: { is_infected: boolean }[]; error?: string } };
          if (!body.success) throw new Error(`peer: ${body.data.error}`);
          return body.data.result[0].is_infected;
        },
      },
      { name: 'Verdict CSS /api/Scan (clamd on)', pid: verdict.pid, run: async (f) => (await cssScan(verdict, f.name, f.data)) === 'Infected' },
    ];
    for (const c of CONCURRENCY) {
      const perSecond: Record<string, number> = {};
      const p99: Record<string, number> = {};
      for (const who of contenders) {
        await closedLoop(smallFiles(10, 5), 2, async (f) => void (await who.run(f))); // warm-up
        const rss = who.pid ? new RssSampler(who.pid) : undefined;
        const r = await closedLoop(
          smallFiles(COUNT, 50),
          c,
          async (f) => {
            if ((await who.run(f)) !== f.name.startsWith('eicar')) wrong++;
          },
          BUDGET_MS,
        );
        const mem = rss?.stop();
        const s = summarise(r);
        perSecond[who.name] = s.perSecond;
        p99[who.name] = s.p99;
        const row = [who.name, c, r.latencies.length, s.perSecond.toFixed(0), s.p50.toFixed(1), s.p95.toFixed(1), s.p99.toFixed(1), r.errors, mem ? mem.peakMb.toFixed(0) : '-'];
        rows.push(row);
        console.log(row.join('\t') + (r.firstError ? `\tfirst error: ${r.firstError}` : ''));
      }
      const [raw, p, v] = contenders.map((x) => perSecond[x.name]);
      ratios.push(`concurrency ${c}: Verdict/peer throughput **${(v / p).toFixed(2)}×**, Verdict/raw clamd ${(v / raw).toFixed(2)}×, peer/raw clamd ${(p / raw).toFixed(2)}×; p99 Verdict ${p99[contenders[2].name].toFixed(1)} ms vs peer ${p99[contenders[1].name].toFixed(1)} ms`);
    }
  } finally {
    peer.kill('SIGTERM');
    if (peer.exitCode === null) await new Promise((r) => peer.once('exit', r));
    await verdict.stop();
    await clamd.stop();
  }
  const out = table(['contender', 'concurrency', 'files', 'scans/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'peak RSS MB'], rows);
  console.log('\n' + out + '\n\n' + ratios.join('\n'));
  if (wrong) console.log(`\n⚠ ${wrong} answers did not match the content`);
  record(
    'Peer: Verdict vs a ClamAV REST wrapper on the same clamd',
    `The peer is our own minimal equivalent of benzino77/clamav-rest-api's request path (multipart upload buffered in memory, then clamd INSTREAM), labelled as such; not the original code. Same bench-owned clamd (unix socket) and database for all three; fresh bytes of the same 1–64 KB mix for each (clamd caches clean results by hash); up to ${COUNT} files / ${BUDGET_MS / 1000} s per round, closed loop. Wrong answers: ${wrong}.\n\n${out}\n\n${ratios.map((r) => `- ${r}`).join('\n')}`,
  );
}
