/**
 * The ClamAV scanner against a real clamd (a ManagedClamd in a temporary data folder), through
 * the scanner test kit. Fails (never skips) when clamd is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { configure, Uint8ArrayReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';
import { ClamdClient } from '../engines/clamd-client.ts';
import { ManagedClamd } from '../engines/clamd-manager.ts';
import { heuristic } from '../verdict/heuristics.ts';
import { clamavScanner, findingFor } from './clamav.ts';
import { eicar, initScanner, makeZip, runScanner, sampleInfo, startTestClamds } from './testing.ts';
import { EngineUnavailableError, ScannerDisabled } from './types.ts';

configure({ useWebWorkers: false });

const MiB = 1024 * 1024;



const unique = (label: string): Buffer => Buffer.from(`${label} ${crypto.randomUUID()}\n`);

describe('clamav scanner: declaration and mapping', () => {
  test('declares itself as a required signatures scanner for files', () => {
    assert.equal(clamavScanner.name, 'clamav');
    assert.equal(clamavScanner.layer, 'signatures');
    assert.equal(clamavScanner.required, true);
    const client = new ClamdClient({ socket: '/nonexistent' });
    assert.equal(clamavScanner.accepts(sampleInfo(Buffer.from('x')), client), true);
    assert.equal(clamavScanner.accepts(sampleInfo(Buffer.from('http://example.org/'), 'u', 0, 'http://example.org/'), client), false);
  });

  test('is disabled without a clamd', async () => {
    await assert.rejects(initScanner(clamavScanner, {}), ScannerDisabled);
  });

  test('maps clamd names to findings', () => {
    const av = findingFor('Win.Trojan.Agent-123');
    assert.equal(av.heuristic, 'AV_DETECTION');
    assert.equal(av.details, 'Win.Trojan.Agent-123');
    assert.deepEqual(av.data, { engine: 'clamav', signature: 'Win.Trojan.Agent-123', name: 'Win.Trojan.Agent-123', unofficial: false });
    const own = findingFor('Verdict.Test.EICAR.UNOFFICIAL');
    assert.equal(own.heuristic, 'AV_DETECTION');
    assert.equal(own.details, 'Verdict.Test.EICAR.UNOFFICIAL');
    assert.deepEqual(own.data, { engine: 'clamav', signature: 'Verdict.Test.EICAR.UNOFFICIAL', name: 'Verdict.Test.EICAR', unofficial: true });
    const limit = findingFor('Heuristics.Limits.Exceeded.MaxFileSize');
    assert.equal(limit.heuristic, 'NOT_FULLY_SCANNED');
    assert.equal(limit.data?.limit, 'MaxFileSize');
    assert.equal(findingFor('Heuristics.Encrypted.Zip').heuristic, 'AV_ENCRYPTED');
    assert.equal(findingFor('Heuristics.Encrypted.PDF').heuristic, 'AV_ENCRYPTED');
    assert.equal(findingFor('Heuristics.Phishing.Email.SpoofedDomain').heuristic, 'AV_HEURISTIC');
    // What these mean to the verdict.
    assert.equal(heuristic('AV_DETECTION').verdict, 'MAL');
    assert.equal(heuristic('AV_ENCRYPTED').partial, true);
    assert.equal(heuristic('AV_ENCRYPTED').verdict, undefined);
    assert.equal(heuristic('NOT_FULLY_SCANNED').partial, true);
  });
});

describe('clamav scanner against a real clamd', () => {
  let clamd: ManagedClamd;
  /** A second clamd whose size limits are 1 MiB. */
  let small: ManagedClamd;
  let stopClamds: (() => Promise<void>) | undefined;

  before(async () => {
    ({ clamd, small, stop: stopClamds } = await startTestClamds('vclamav'));
  });

  after(async () => {
    await stopClamds?.();
  });

  const scan = (data: Buffer, name = 'sample') => runScanner(clamavScanner, data, { name, init: { clamd: clamd.endpoint } });

  test('EICAR is an AV detection with the signature name', async () => {
    const r = await scan(eicar(), 'eicar.com');
    assert.deepEqual(r.heuristics, ['AV_DETECTION']);
    assert.equal(r.evidence[0].details, 'Verdict.Test.EICAR.UNOFFICIAL');
    assert.equal(r.evidence[0].data?.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
    assert.equal(r.evidence[0].data?.name, 'Verdict.Test.EICAR');
  });

  test('EICAR inside a zip, inside a zip', async () => {
    const inner = await makeZip({ 'eicar.com': eicar(), 'notes.txt': unique('notes') });
    const outer = await makeZip({ 'inner.zip': inner, 'other.txt': unique('other') });
    for (const [name, data] of [['inner.zip', inner], ['outer.zip', outer]] as const) {
      const r = await scan(data, name);
      assert.deepEqual(r.heuristics, ['AV_DETECTION'], name);
      assert.equal(r.evidence[0].data?.name, 'Verdict.Test.EICAR');
    }
  });

  test('clean content has no evidence', async () => {
    assert.deepEqual((await scan(unique('hello'), 'hello.txt')).evidence, []);
    assert.deepEqual((await scan(await makeZip({ 'a.txt': unique('a') }), 'a.zip')).evidence, []);
  });

  test('an encrypted zip is partial (clamd cannot look inside), not malicious', async () => {
    const locked = await makeZip({ 'secret.txt': unique('secret') }, { password: 'infected' });
    const r = await scan(locked, 'locked.zip');
    assert.deepEqual(r.heuristics, ['AV_ENCRYPTED']);
    assert.match(String(r.evidence[0].details), /Heuristics\.Encrypted\.Zip/);
  });

  test('content over clamd\'s limits is reported as not fully scanned', async () => {
    const scanSmall = (data: Buffer) => runScanner(clamavScanner, data, { init: { clamd: small.endpoint } });
    // A gzip whose content is over MaxFileSize (1 MiB) while the gzip itself is tiny.
    const gz = zlib.gzipSync(Buffer.concat([unique('big'), Buffer.alloc(MiB + MiB / 2, 0x61)]));
    assert.ok(gz.length < MiB);
    const r = await scanSmall(gz);
    assert.deepEqual(r.heuristics, ['NOT_FULLY_SCANNED']);
    assert.equal(r.evidence[0].data?.signature, 'Heuristics.Limits.Exceeded.MaxFileSize');
    // Not tested here, a ClamAV behaviour: a zip member over MaxFileSize is trimmed to it and
    // its prefix scanned, without an alert. Verdict's zip scanner scans members as children.
  });

  test('an object over the stream limit: the prefix is scanned and the result is partial', async () => {
    // Our managed clamd: the scanner knows its StreamMaxLength and sends only that much.
    const client = new ClamdClient(small.endpoint, { maxStreamBytes: MiB });
    const big = Buffer.concat([eicar(), Buffer.alloc(2 * MiB, 0x20)]);
    const r = await runScanner(clamavScanner, big, { state: client });
    assert.deepEqual(r.heuristics, ['AV_DETECTION', 'NOT_FULLY_SCANNED']);
    assert.equal(r.evidence[1].data?.bytesScanned, MiB);
    const clean = await runScanner(clamavScanner, Buffer.concat([unique('big'), Buffer.alloc(2 * MiB, 0x21)]), { state: client });
    assert.deepEqual(clean.heuristics, ['NOT_FULLY_SCANNED']);
  });

  test('an object over an external clamd\'s stream limit: refused, reported as not fully scanned', async () => {
    const client = new ClamdClient(small.endpoint); // limit unknown to the client
    const r = await runScanner(clamavScanner, Buffer.concat([unique('big'), Buffer.alloc(3 * MiB, 0x22)]), { state: client });
    assert.deepEqual(r.heuristics, ['NOT_FULLY_SCANNED']);
    assert.equal(r.evidence[0].data?.bytesScanned, 0);
  });

  test('SCAN by path: clamd reads a large file itself and finds what INSTREAM finds', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vclamav-path-'));
    try {
      const client = new ClamdClient(clamd.endpoint, { pathAccess: true });
      const bad = path.join(dir, 'bad.bin');
      fs.writeFileSync(bad, Buffer.concat([eicar(), Buffer.alloc(2 * MiB, 0x20)]));
      const good = path.join(dir, 'good.bin');
      fs.writeFileSync(good, Buffer.concat([unique('good'), Buffer.alloc(2 * MiB, 0x23)]));
      assert.equal((await client.scanPath(bad))?.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
      assert.equal((await client.scanPath(good))?.status, 'clean');
      // through the scanner: 2 MiB objects go by path, with the same findings
      const r = await runScanner(clamavScanner, fs.readFileSync(bad), { state: client });
      assert.deepEqual(r.heuristics, ['AV_DETECTION']);
      assert.equal(client.pathAccess, true);
      // a path clamd cannot open: no result, and the client goes back to streaming
      assert.equal(await client.scanPath(path.join(dir, 'missing.bin')), undefined);
      assert.equal(client.pathAccess, false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SCAN refused by a clamd that cannot open our files: the object is streamed instead', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vclamav-noaccess-'));
    const sock = path.join(dir, 'clamd.sock');
    const commands: string[] = [];
    const server = net.createServer((s) => {
      let first = true;
      s.on('data', (d: Buffer) => {
        if (!first) return;
        first = false;
        const cmd = d.toString('latin1').split('\0')[0];
        commands.push(cmd.split(' ')[0]);
        if (cmd.startsWith('zSCAN ')) s.end(`${cmd.slice(6)}: lstat() failed: No such file or directory. ERROR\0`);
      });
      // INSTREAM: answer once the zero-length terminator frame has arrived
      s.on('data', (d: Buffer) => {
        if (d.length >= 4 && d.subarray(d.length - 4).equals(Buffer.alloc(4))) s.end('stream: Verdict.Test.EICAR.UNOFFICIAL FOUND\0');
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const client = new ClamdClient({ socket: sock }, { pathAccess: true });
      const r = await runScanner(clamavScanner, Buffer.concat([eicar(), Buffer.alloc(2 * MiB)]), { state: client });
      assert.deepEqual(r.heuristics, ['AV_DETECTION']);
      assert.deepEqual(commands, ['zSCAN', 'zINSTREAM']);
      assert.equal(client.pathAccess, false);
    } finally {
      await new Promise((r) => server.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('over a known stream limit the prefix is streamed even with path access (SCAN would skip the file)', async () => {
    const client = new ClamdClient(small.endpoint, { maxStreamBytes: MiB, pathAccess: true });
    const r = await runScanner(clamavScanner, Buffer.concat([eicar(), Buffer.alloc(2 * MiB, 0x24)]), { state: client });
    assert.deepEqual(r.heuristics, ['AV_DETECTION', 'NOT_FULLY_SCANNED']);
    assert.equal(r.evidence[1].data?.bytesScanned, MiB);
  });

  test('init with the managed configuration', async () => {
    const client = (await initScanner(clamavScanner, { clamd: clamd.endpoint })) as ClamdClient;
    assert.ok(client instanceof ClamdClient);
    assert.deepEqual(client.endpoint, clamd.endpoint);
    assert.equal(client.pathAccess, true, 'our own clamd reads our files by path');
  });

  test('clamd down: EngineUnavailableError, so the job is retried', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vclamav-down-'));
    try {
      await assert.rejects(
        runScanner(clamavScanner, eicar(), { init: { clamd: { socket: path.join(dir, 'clamd.sock') } } }),
        (e: unknown) => e instanceof EngineUnavailableError && e.engine === 'clamav',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a clamd ERROR answer is a scanner failure, not a result', async () => {
    // clamd cannot be made to fail on purpose: a peer on a real socket gives its error reply.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vclamav-err-'));
    const sock = path.join(dir, 'clamd.sock');
    const server = net.createServer((s) => {
      s.once('data', () => s.end("stream: Can't allocate memory ERROR\0"));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      await assert.rejects(
        runScanner(clamavScanner, unique('x'), { state: new ClamdClient({ socket: sock }) }),
        (e: unknown) => !(e instanceof EngineUnavailableError) && /Can't allocate memory ERROR/.test((e as Error).message),
      );
    } finally {
      await new Promise((r) => server.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
