/**
 * The managed clamd against the real Debian clamd: configuration, database folder, start,
 * crash and restart, stop, leftover processes, and the `clamd` option. Fails (never skips)
 * when clamd is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import { limitsSchema } from '../config/schema.ts';
import { CLAMD_BINARY, eicar, requireClamd } from '../scanners/testing.ts';
import { EngineUnavailableError } from '../scanners/types.ts';
import { ClamdClient } from './clamd-client.ts';
import {
  CLAMD_MAX_FILE_SIZE,
  ManagedClamd,
  PROJECT_SIGNATURES_DIR,
  clamdLimits,
  clamdPaths,
  isClamavDbFile,
  renderClamdConf,
  resolveClamd,
} from './clamd-manager.ts';

const silent = pino({ level: 'silent' });


function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vclamd-'));
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('clamd limits and configuration', () => {
  test('limits derive from Verdict\'s and are capped at what clamd can scan', () => {
    const l = clamdLimits(limitsSchema.parse({ maxFileSize: 3 * 1024 ** 3, maxTotalExtractedBytes: 5 * 1024 ** 3, scannerTimeoutMs: 45_000 }));
    assert.equal(l.maxFileSize, CLAMD_MAX_FILE_SIZE);
    assert.equal(l.streamMaxLength, CLAMD_MAX_FILE_SIZE);
    assert.equal(l.maxScanSize, 5 * 1024 ** 3);
    assert.equal(l.maxScanTime, 45_000);
    const small = clamdLimits(limitsSchema.parse({ maxFileSize: 1024 * 1024 }));
    assert.equal(small.maxFileSize, 1024 * 1024);
    assert.equal(small.streamMaxLength, 1024 * 1024);
    assert.ok(small.maxScanSize >= small.maxFileSize);
  });

  test('clamd.conf: own socket and folders, no TCP, limits alerted', () => {
    const paths = clamdPaths('/srv/verdict');
    const conf = renderClamdConf(paths, clamdLimits(limitsSchema.parse({ maxFileSize: 5_000_000 })));
    const has = (line: string): boolean => conf.split('\n').includes(line);
    assert.ok(has('LocalSocket /srv/verdict/clamav/clamd.sock'));
    assert.ok(has('DatabaseDirectory /srv/verdict/clamav/db'));
    assert.ok(has('TemporaryDirectory /srv/verdict/clamav/tmp'));
    assert.ok(has('Foreground yes'));
    assert.ok(has('StreamMaxLength 5000000'));
    assert.ok(has('MaxFileSize 5000000'));
    assert.ok(has('AlertExceedsMax yes'));
    assert.ok(has('AlertEncrypted yes'));
    assert.doesNotMatch(conf, /^TCP/m);
  });

  test('database file recognition and the project signatures', () => {
    for (const n of ['main.cvd', 'daily.cld', 'bytecode.cvd', 'x.cud', 'a.ndb', 'b.hdb', 'c.ldb', 'r.yar', 'w.ign2']) assert.ok(isClamavDbFile(n), n);
    for (const n of ['README.md', 'freshclam.dat', 'mirrors.dat', 'daily.cvd.tmp', 'x.cdiff']) assert.ok(!isClamavDbFile(n), n);
    const own = fs.readdirSync(PROJECT_SIGNATURES_DIR).filter(isClamavDbFile);
    assert.ok(own.includes('verdict-test-artefacts.ndb'), `project signatures: ${own.join(', ')}`);
  });
});

describe('ManagedClamd', () => {
  const dataDir = tempDir();
  const systemDb = tempDir();
  const marker = `verdict-system-db-marker-${process.pid}`;
  let clamd: ManagedClamd;

  before(async () => {
    requireClamd();
    // A stand-in for freshclam's folder: one database, plus files that are not databases.
    fs.writeFileSync(path.join(systemDb, 'local.ndb'), `Verdict.Test.SystemDb:0:*:${Buffer.from(marker).toString('hex')}\n`);
    fs.writeFileSync(path.join(systemDb, 'freshclam.dat'), 'not a database');
    clamd = new ManagedClamd({
      dataDir,
      binary: CLAMD_BINARY,
      systemDbDir: systemDb,
      log: silent,
      restartDelayMs: 50,
      stopGraceMs: 2_000,
    });
    await clamd.start();
  });

  after(async () => {
    await clamd?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(systemDb, { recursive: true, force: true });
  });

  test('starts, answers, and says what it loaded', async () => {
    const s = clamd.status();
    assert.equal(s.state, 'on', s.detail);
    assert.match(s.version ?? '', /^\d+\.\d+/);
    assert.match(s.signatures ?? '', /verdict-test-artefacts\.ndb/);
    assert.match(s.signatures ?? '', /freshclam: local\.ndb/);
    assert.equal(clamd.endpoint.socket, path.join(dataDir, 'clamav', 'clamd.sock'));
    assert.ok(fs.existsSync(path.join(dataDir, 'clamav', 'clamd.conf')));
    const conf = fs.readFileSync(path.join(dataDir, 'clamav', 'clamd.conf'), 'utf8');
    assert.match(conf, new RegExp(`^LocalSocket ${clamd.endpoint.socket}$`, 'm'));
    await new ClamdClient(clamd.endpoint).ping();
  });

  test('the database folder holds the project signatures and links the system databases', async () => {
    const db = path.join(dataDir, 'clamav', 'db');
    const names = fs.readdirSync(db).sort();
    assert.deepEqual(names, ['local.ndb', 'verdict-test-artefacts.ndb']);
    assert.ok(fs.lstatSync(path.join(db, 'local.ndb')).isSymbolicLink());
    const client = new ClamdClient(clamd.endpoint);
    const r = await client.instream(Buffer.from(`some text ${marker} more text`));
    assert.equal(r.signature, 'Verdict.Test.SystemDb.UNOFFICIAL');
  });

  test('detects EICAR with the project signature', async () => {
    const r = await new ClamdClient(clamd.endpoint).instream(eicar());
    assert.equal(r.status, 'found');
    assert.equal(r.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
  });

  test('restarts clamd when it dies', async () => {
    const first = clamd.pid;
    assert.ok(first);
    process.kill(first, 'SIGKILL');
    await until('clamd to die', () => !alive(first));
    await until('the restarted clamd', () => clamd.status().state === 'on' && clamd.pid !== undefined && clamd.pid !== first);
    assert.notEqual(clamd.pid, first);
    const r = await new ClamdClient(clamd.endpoint).instream(eicar());
    assert.equal(r.signature, 'Verdict.Test.EICAR.UNOFFICIAL');
  });

  test('reloads its databases on demand', async () => {
    await clamd.reloadDatabase();
    await until('clamd to answer after RELOAD', async () => {
      try {
        return (await new ClamdClient(clamd.endpoint).instream(eicar())).status === 'found';
      } catch {
        return false;
      }
    });
  });
});

describe('ManagedClamd start, stop and failures', () => {
  before(requireClamd);

  test('stop ends clamd and removes the socket', async () => {
    const dataDir = tempDir();
    const clamd = new ManagedClamd({ dataDir, binary: CLAMD_BINARY, log: silent });
    try {
      await clamd.start();
      const pid = clamd.pid!;
      assert.ok(alive(pid));
      await clamd.stop();
      assert.ok(!alive(pid), 'clamd still running after stop()');
      assert.ok(!fs.existsSync(clamd.endpoint.socket), 'socket left behind');
      assert.equal(clamd.status().state, 'off');
      await assert.rejects(new ClamdClient(clamd.endpoint).ping(), EngineUnavailableError);
    } finally {
      await clamd.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a clamd left over from a killed Verdict is ended before ours starts', async () => {
    const dataDir = tempDir();
    const first = new ManagedClamd({ dataDir, binary: CLAMD_BINARY, log: silent });
    const second = new ManagedClamd({ dataDir, binary: CLAMD_BINARY, log: silent, stopGraceMs: 2_000 });
    try {
      await first.start();
      await first.stop();
      // What a crashed Verdict leaves behind: a clamd on our config that nobody supervises.
      const orphan = spawn(CLAMD_BINARY, [`--config-file=${first.paths.conf}`], { stdio: 'ignore' });
      const client = new ClamdClient(first.endpoint);
      await until('the orphan clamd', () => client.ping().then(() => true, () => false));
      await second.start();
      assert.ok(!alive(orphan.pid!) || orphan.exitCode !== null || orphan.signalCode !== null, 'orphan clamd still running');
      assert.notEqual(second.pid, orphan.pid);
      assert.equal(second.status().state, 'on');
    } finally {
      await first.stop();
      await second.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a broken database fails the start with clamd\'s own message', async () => {
    const dataDir = tempDir();
    const sigs = tempDir();
    fs.writeFileSync(path.join(sigs, 'broken.ndb'), 'this is not a signature\n');
    const clamd = new ManagedClamd({ dataDir, binary: CLAMD_BINARY, signaturesDir: sigs, log: silent });
    try {
      await assert.rejects(clamd.start(), /clamd exited with code \d+: .*(malformed|error)/i);
      assert.equal(clamd.status().state, 'failed');
      assert.equal(clamd.pid, undefined);
    } finally {
      await clamd.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      fs.rmSync(sigs, { recursive: true, force: true });
    }
  });

  test('no database at all is refused before clamd runs', async () => {
    const dataDir = tempDir();
    const empty = tempDir();
    const clamd = new ManagedClamd({ dataDir, binary: CLAMD_BINARY, signaturesDir: empty, systemDbDir: path.join(empty, 'none'), log: silent });
    try {
      await assert.rejects(clamd.start(), /no signature files/);
      assert.equal(clamd.status().state, 'failed');
    } finally {
      await clamd.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('a missing binary fails the start clearly', async () => {
    const dataDir = tempDir();
    const clamd = new ManagedClamd({ dataDir, binary: path.join(dataDir, 'no-clamd'), log: silent });
    try {
      await assert.rejects(clamd.start(), /not found or not executable/);
    } finally {
      await clamd.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('resolveClamd (the clamd option)', () => {
  const dataDir = tempDir();
  const config = (o: Record<string, unknown>) => loadConfig({ dataDir, clamavSystemDbDir: path.join(dataDir, 'no-freshclam'), ...o }, {}, dataDir);

  before(requireClamd);
  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  test('off: no endpoint', async () => {
    const h = await resolveClamd(config({ clamd: 'off' }), silent);
    assert.equal(h.mode, 'off');
    assert.equal(h.endpoint, undefined);
    assert.equal(h.status().state, 'off');
    await assert.rejects(resolveClamd(config({ clamd: 'off', clamdRequired: true }), silent), EngineUnavailableError);
  });

  test('auto without the binary: off, with the reason', async () => {
    const h = await resolveClamd(config({ clamd: 'auto', clamdBinary: path.join(dataDir, 'missing-clamd') }), silent);
    assert.equal(h.mode, 'off');
    assert.equal(h.endpoint, undefined);
    assert.match(h.status().detail, /no clamd at .*missing-clamd/);
    await assert.rejects(
      resolveClamd(config({ clamd: 'auto', clamdRequired: true, clamdBinary: path.join(dataDir, 'missing-clamd') }), silent),
      /clamdRequired/,
    );
  });

  test('auto with the binary: a managed clamd, then an external one on its socket', async () => {
    const managed = await resolveClamd(config({ clamd: 'auto', clamdBinary: CLAMD_BINARY }), silent);
    try {
      assert.equal(managed.mode, 'managed');
      assert.deepEqual(managed.endpoint, { socket: path.join(dataDir, 'clamav', 'clamd.sock') });
      assert.equal(managed.status().state, 'on', managed.status().detail);

      const external = await resolveClamd(config({ clamd: path.join(dataDir, 'clamav', 'clamd.sock') }), silent);
      assert.equal(external.mode, 'external');
      assert.deepEqual(external.endpoint, managed.endpoint);
      assert.equal(external.status().state, 'on');
      assert.match(external.status().version ?? '', /^\d+\.\d+/);
      await external.stop();
    } finally {
      await managed.stop();
    }
    assert.equal(managed.status().state, 'off');
  });

  test('an external clamd that does not answer: endpoint kept (scans retry), status failed', async () => {
    const sock = path.join(dataDir, 'nobody.sock');
    const h = await resolveClamd(config({ clamd: sock }), silent);
    try {
      assert.equal(h.mode, 'external');
      assert.deepEqual(h.endpoint, { socket: sock });
      assert.equal(h.status().state, 'failed');
      assert.match(h.status().detail, /does not answer/);
    } finally {
      await h.stop();
    }
    await assert.rejects(resolveClamd(config({ clamd: 'tcp://127.0.0.1:1', clamdRequired: true }), silent), /clamdRequired/);
  });

  test('a malformed endpoint is a configuration error', async () => {
    await assert.rejects(resolveClamd(config({ clamd: 'ftp://example.org' }), silent), /option clamd/);
  });
});
