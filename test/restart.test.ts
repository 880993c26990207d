/**
 * Restart safety with real processes: `verdict serve` is killed with SIGKILL while scans are
 * queued or in flight, started again on the same data directory, and every accepted scan
 * finishes. Also: the first start prints the administrator token once and VERDICT_ADMIN_TOKEN
 * is honoured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, makeTarGz } from './harness.ts';

const root = path.resolve(import.meta.dirname, '..');


function serve(dataDir: string, port: number, extraEnv: Record<string, string> = {}): { proc: ChildProcess; output: () => string } {
  let out = '';
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    cwd: root,
    env: {
      ...process.env,
      VERDICT_PORT: String(port),
      VERDICT_HOST: '127.0.0.1',
      VERDICT_DATA_DIR: dataDir,
      VERDICT_WORKERS: '1',
      VERDICT_LOG_LEVEL: 'warn',
      VERDICT_CLAMD: 'off',
      VERDICT_JOB_LEASE_MS: '3000',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return { proc, output: () => out };
}

async function waitReady(url: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`server at ${url} not ready`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('scans accepted before a SIGKILL, queued or in flight, all finish after a restart, each once', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-restart-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const token = 'vd_restart-test-admin-token-0123456789';
  const auth = { authorization: `Token ${token}` };
  const submit = async (data: Buffer, name: string) => {
    const form = new FormData();
    form.set('name', name);
    form.set('data', new Blob([data]), name);
    const res = await fetch(`${url}/api/v1/files/`, { method: 'POST', body: form, headers: auth });
    assert.equal(res.status, 200);
    return ((await res.json()) as { scan_id: number }).scan_id;
  };
  const detail = async (id: number) => {
    const res = await fetch(`${url}/api/v1/scans/list/${id}/`, { headers: auth });
    assert.equal(res.status, 200, `scan ${id} must exist`);
    return (await res.json()) as { status: string; verdict: string; children: { children: unknown[] }[] };
  };
  const kill = async (p: ChildProcess) => {
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  };
  // Phase 1: an API-only process accepts scans, then dies: they are all queued.
  let current = serve(dataDir, port, { VERDICT_ADMIN_TOKEN: token, VERDICT_WORKERS: '0' });
  try {
    await waitReady(url);
    assert.match(current.output(), new RegExp(token), 'the first start prints the administrator token');
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) ids.push(await submit(Buffer.from(`file number ${i} ${Math.random()}`), `f${i}.txt`));
    assert.equal((await detail(ids[0])).status, 'QUE');
    await kill(current.proc);

    // Phase 2: a process with a worker starts a big scan and dies in the middle of it.
    current = serve(dataDir, port);
    await waitReady(url);
    assert.doesNotMatch(current.output(), /First start/, 'a restart does not create another token');
    const members: Record<string, Buffer> = {};
    for (let i = 0; i < 1500; i++) members[`m/${i}.txt`] = Buffer.from(`member ${i} ${'y'.repeat(500)}`);
    const bigId = await submit(await makeTarGz(members), 'many.tar.gz');
    ids.push(bigId);
    const until1 = Date.now() + 30_000;
    let sawScanning = false;
    while (Date.now() < until1) {
      const s = (await detail(bigId)).status;
      if (s === 'SCN') {
        sawScanning = true;
        break;
      }
      if (s === 'CMP') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await kill(current.proc);
    assert.ok(sawScanning, 'the big scan was caught in flight');

    // Phase 3: everything accepted finishes, once.
    current = serve(dataDir, port);
    await waitReady(url);
    const until = Date.now() + 90_000;
    for (const id of ids) {
      for (;;) {
        const body = await detail(id);
        if (body.status === 'CMP') {
          assert.equal(body.verdict, 'CLN');
          break;
        }
        if (Date.now() > until) throw new Error(`scan ${id} did not finish after the restart (status ${body.status})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const big = await detail(bigId);
    assert.equal(big.children.length, 1, 'gzip → one tar');
    assert.equal(big.children[0].children.length, 1500, 'every member exactly once');
    const list = await fetch(`${url}/api/v1/scans/completed-jobs/?page_size=1000`, { headers: auth });
    const seen = ((await list.json()) as { results: { id: number }[] }).results.map((r) => r.id);
    for (const id of ids) assert.equal(seen.filter((s) => s === id).length, 1);
  } finally {
    current.proc.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('SIGTERM shuts down gracefully with exit code 0', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-term-'));
  const port = await freePort();
  const s = serve(dataDir, port);
  try {
    await waitReady(`http://127.0.0.1:${port}`);
    s.proc.kill('SIGTERM');
    const code = await new Promise((r) => s.proc.once('exit', r));
    assert.equal(code, 0, s.output());
  } finally {
    s.proc.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
