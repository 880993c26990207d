/**
 * The clamd client against a real clamd (a ManagedClamd in a temporary data folder): the
 * protocol, INSTREAM with backpressure, size limits, aborts and every way of not reaching
 * clamd. Fails (never skips) when clamd is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { configure, Uint8ArrayReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';
import { EngineUnavailableError } from '../scanners/types.ts';
import { eicar, makeZip, startTestClamds } from '../scanners/testing.ts';
import {
  ClamdClient,
  formatClamdEndpoint,
  parseClamdEndpoint,
  parseClamdVersion,
  parseInstreamReply,
} from './clamd-client.ts';
import { ManagedClamd } from './clamd-manager.ts';

configure({ useWebWorkers: false });

const MiB = 1024 * 1024;



/**
 * `total` bytes made only as fast as they are read: a pattern stamped with a random tag and the
 * offset in every chunk, so clamd's cache of clean results never answers for it.
 */
function lazySource(total: number, chunk = 64 * 1024): Readable & { produced: () => number } {
  let produced = 0;
  const tag = crypto.randomBytes(16);
  const r = new Readable({
    highWaterMark: chunk,
    read() {
      if (produced >= total) return void this.push(null);
      const n = Math.min(chunk, total - produced);
      const b = Buffer.alloc(n, produced & 0xff);
      tag.copy(b, 0, 0, Math.min(16, n));
      if (n >= 24) b.writeDoubleBE(produced, 16);
      produced += n;
      this.push(b);
    },
  });
  return Object.assign(r, { produced: () => produced });
}

describe('endpoint and reply parsing', () => {
  test('parseClamdEndpoint', () => {
    assert.deepEqual(parseClamdEndpoint('/run/clamav/clamd.ctl'), { socket: '/run/clamav/clamd.ctl' });
    assert.deepEqual(parseClamdEndpoint('./clamd.sock'), { socket: './clamd.sock' });
    assert.deepEqual(parseClamdEndpoint('unix:/tmp/c.sock'), { socket: '/tmp/c.sock' });
    assert.deepEqual(parseClamdEndpoint('unix:///tmp/c.sock'), { socket: '/tmp/c.sock' });
    assert.deepEqual(parseClamdEndpoint('tcp://127.0.0.1:3310'), { host: '127.0.0.1', port: 3310 });
    assert.deepEqual(parseClamdEndpoint('TCP://clamav.internal:9000'), { host: 'clamav.internal', port: 9000 });
    assert.deepEqual(parseClamdEndpoint('tcp://[::1]:3311'), { host: '::1', port: 3311 });
    assert.deepEqual(parseClamdEndpoint('tcp://clamd'), { host: 'clamd', port: 3310 });
    for (const bad of ['', '  ', 'tcp://', 'tcp://host:0', 'tcp://host:70000', 'tcp://host:3310/x', 'http://host:3310', 'unix:']) {
      assert.throws(() => parseClamdEndpoint(bad), Error, JSON.stringify(bad));
    }
  });

  test('formatClamdEndpoint', () => {
    assert.equal(formatClamdEndpoint({ socket: '/a.sock' }), 'unix:/a.sock');
    assert.equal(formatClamdEndpoint({ host: '::1', port: 3310 }), 'tcp://[::1]:3310');
    assert.equal(formatClamdEndpoint({ host: 'h', port: 1 }), 'tcp://h:1');
  });

  test('parseInstreamReply', () => {
    assert.deepEqual(parseInstreamReply('stream: OK\0'), { status: 'clean', raw: 'stream: OK' });
    assert.deepEqual(parseInstreamReply('stream: Win.Test.EICAR_HDB-1 FOUND\0'), {
      status: 'found',
      signature: 'Win.Test.EICAR_HDB-1',
      raw: 'stream: Win.Test.EICAR_HDB-1 FOUND',
    });
    assert.equal(parseInstreamReply('3: stream: Foo.Bar FOUND').signature, 'Foo.Bar');
    assert.deepEqual(parseInstreamReply('INSTREAM size limit exceeded. ERROR\0'), { status: 'error', raw: 'INSTREAM size limit exceeded. ERROR' });
    assert.equal(parseInstreamReply("stream: Can't allocate memory ERROR").status, 'error');
    assert.equal(parseInstreamReply('UNKNOWN COMMAND').status, 'error');
  });

  test('parseClamdVersion', () => {
    assert.deepEqual(parseClamdVersion('ClamAV 1.4.6\0'), { engine: '1.4.6', database: undefined, databaseDate: undefined, raw: 'ClamAV 1.4.6' });
    const v = parseClamdVersion('ClamAV 1.4.6/27450/Tue Nov 18 09:36:02 2026');
    assert.equal(v.engine, '1.4.6');
    assert.equal(v.database, 27450);
    assert.equal(v.databaseDate, 'Tue Nov 18 09:36:02 2026');
  });
});

describe('ClamdClient against a real clamd', () => {
  let clamd: ManagedClamd;
  /** A second clamd whose size limits are 1 MiB. */
  let small: ManagedClamd;
  let client: ClamdClient;
  let stopClamds: (() => Promise<void>) | undefined;

  before(async () => {
    ({ clamd, small, stop: stopClamds } = await startTestClamds('vclamc'));
    client = new ClamdClient(clamd.endpoint);
  });

  after(async () => {
    await stopClamds?.();
  });

  test('PING, VERSION, RELOAD', async () => {
    await client.ping();
    const v = await client.version();
    assert.match(v.engine, /^\d+\.\d+\.\d+/);
    assert.match(v.raw, /^ClamAV /);
    await client.reload();
    // clamd answers again once the reload is done.
    for (let i = 0; ; i++) {
      try {
        await client.ping();
        break;
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });

  test('EICAR is found, from a Buffer and from a stream', async () => {
    const r = await client.instream(eicar());
    assert.equal(r.status, 'found');
    assert.equal(r.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
    assert.equal(r.raw, 'stream: Verdict.Test.EICAR.UNOFFICIAL FOUND');
    assert.equal(r.bytesSent, 68);
    assert.equal(r.truncated, undefined);
    // Split across tiny frames: clamd reassembles the stream.
    const s = await client.instream(Readable.from([eicar().subarray(0, 10), eicar().subarray(10)]), { chunkSize: 7 });
    assert.equal(s.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
  });

  test('EICAR inside a zip, and inside a zip inside a zip', async () => {
    const inner = await makeZip({ 'eicar.com': eicar(), 'readme.txt': Buffer.from('hello') });
    assert.equal((await client.instream(inner)).signature, 'Verdict.Test.EICAR.UNOFFICIAL');
    const outer = await makeZip({ 'docs/inner.zip': inner });
    assert.equal((await client.instream(outer)).signature, 'Verdict.Test.EICAR.UNOFFICIAL');
  });

  test('clean bytes are clean', async () => {
    const r = await client.instream(Buffer.from(`nothing to see here ${crypto.randomUUID()}\n`));
    assert.deepEqual({ status: r.status, raw: r.raw }, { status: 'clean', raw: 'stream: OK' });
    assert.equal((await client.instream(Buffer.alloc(0))).status, 'clean');
  });

  test('a 48 MiB stream is scanned without buffering it', async (t) => {
    const total = 48 * MiB;
    const source = lazySource(total);
    // Live Buffer memory, after a collection so that garbage does not count.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const live = (): number => {
      gc();
      return process.memoryUsage().arrayBuffers;
    };
    const base = live();
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, live())), 20);
    try {
      const r = await client.instream(source);
      assert.equal(r.status, 'clean', r.raw);
      assert.equal(r.bytesSent, total);
    } finally {
      clearInterval(sampler);
    }
    assert.equal(source.produced(), total);
    const grew = (peak - base) / MiB;
    t.diagnostic(`live buffers grew by at most ${grew.toFixed(2)} MiB while streaming ${total / MiB} MiB`);
    assert.ok(grew < 8, `live buffers grew by ${grew.toFixed(1)} MiB while streaming ${total / MiB} MiB`);
  });

  test('a stream over StreamMaxLength: clamd refuses it, reported as truncated', async () => {
    const c = new ClamdClient(small.endpoint);
    for (const size of [2 * MiB, 8 * MiB]) {
      const r = await c.instream(lazySource(size));
      assert.equal(r.status, 'error');
      assert.equal(r.truncated, true, r.raw);
    }
    const exact = await c.instream(Buffer.alloc(MiB, 1));
    assert.equal(exact.status, 'clean', 'exactly StreamMaxLength bytes are accepted');
  });

  test('maxBytes: only a prefix is sent, clamd scans it, the result says truncated', async () => {
    const c = new ClamdClient(small.endpoint, { maxStreamBytes: MiB });
    const withEicar = Readable.from([eicar(), Buffer.alloc(3 * MiB, 0x41)]);
    const r = await c.instream(withEicar);
    assert.equal(r.status, 'found');
    assert.equal(r.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
    assert.equal(r.truncated, true);
    assert.equal(r.bytesSent, MiB);
    assert.ok(withEicar.destroyed, 'the rest of the source is not read');
    const clean = await c.instream(Buffer.alloc(2 * MiB, 0x42));
    assert.deepEqual([clean.status, clean.truncated, clean.bytesSent], ['clean', true, MiB]);
  });

  test('abort: the socket is destroyed and the call rejects with the reason', async () => {
    const ac = new AbortController();
    let served = 0;
    // A source that never ends: only the abort can stop it.
    const endless = new Readable({
      read() {
        served++;
        this.push(Buffer.alloc(64 * 1024, 0x43));
      },
    });
    setTimeout(() => ac.abort(new Error('deadline')), 100);
    await assert.rejects(client.instream(endless, { signal: ac.signal }), /deadline/);
    assert.ok(served > 0);
    assert.ok(endless.destroyed);
    await assert.rejects(client.instream(eicar(), { signal: AbortSignal.abort() }), { name: 'AbortError' });
    await client.ping(); // clamd is fine
  });

  test('idle timeout: clamd waiting for bytes that never come', async () => {
    const c = new ClamdClient(clamd.endpoint, { idleTimeoutMs: 200 });
    const silent = new Readable({ read() {} });
    const t0 = Date.now();
    await assert.rejects(c.instream(silent), (e: unknown) => e instanceof EngineUnavailableError && /no answer for 200 ms/.test(e.message));
    assert.ok(Date.now() - t0 < 2_000);
  });

  test('a source that fails is that error, not an outage', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('disk read failed'));
      },
    });
    await assert.rejects(client.instream(failing), (e: unknown) => !(e instanceof EngineUnavailableError) && /disk read failed/.test(String(e)));
  });

  test('concurrent scans on one client', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => client.instream(i % 3 === 0 ? eicar() : Buffer.from(`clean ${i} ${crypto.randomUUID()}`))),
    );
    results.forEach((r, i) => assert.equal(r.status, i % 3 === 0 ? 'found' : 'clean'));
  });
});

describe('ClamdClient when clamd cannot be reached', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vclamc-down-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const unavailable = (re: RegExp) => (e: unknown) => e instanceof EngineUnavailableError && e.engine === 'clamav' && re.test(e.message);

  test('no socket file', async () => {
    const c = new ClamdClient({ socket: path.join(dir, 'missing.sock') });
    await assert.rejects(c.ping(), unavailable(/ENOENT/));
    await assert.rejects(c.instream(eicar()), unavailable(/ENOENT/));
  });

  test('TCP connection refused', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((r) => server.close(r)); // the port is now closed
    await assert.rejects(new ClamdClient({ host: '127.0.0.1', port }).instream(eicar()), unavailable(/ECONNREFUSED/));
  });

  test('a peer that closes without answering, and one that never answers', async () => {
    const closing = path.join(dir, 'closing.sock');
    const mute = path.join(dir, 'mute.sock');
    const sockets: net.Socket[] = [];
    const s1 = net.createServer((s) => s.destroy());
    const s2 = net.createServer((s) => {
      sockets.push(s);
      s.resume();
    });
    await Promise.all([new Promise<void>((r) => s1.listen(closing, r)), new Promise<void>((r) => s2.listen(mute, r))]);
    try {
      await assert.rejects(new ClamdClient({ socket: closing }).ping(), unavailable(/closed without an answer|ECONNRESET|EPIPE/));
      await assert.rejects(new ClamdClient({ socket: mute }, { idleTimeoutMs: 150 }).instream(eicar()), unavailable(/no answer for 150 ms/));
    } finally {
      sockets.forEach((s) => s.destroy());
      await Promise.all([new Promise((r) => s1.close(r)), new Promise((r) => s2.close(r))]);
    }
  });
});
