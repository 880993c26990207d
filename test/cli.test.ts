/**
 * The `verdict` command line, run as a user would run it (a real process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eicar } from '../src/scanners/testing.ts';
import { makeZip } from './harness.ts';

const root = path.resolve(import.meta.dirname, '..');

function verdict(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['bin/verdict.js', ...args], { cwd: root, env: { ...process.env, VERDICT_LOG_LEVEL: 'error', ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('verdict scan: one line per object, exit 1 when something is detected, clamd included', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cli-'));
  try {
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'clean.txt'), 'nothing to see\n');
    fs.writeFileSync(path.join(dir, 'sub', 'e.com'), eicar());
    fs.writeFileSync(path.join(dir, 'sub', 'nested.zip'), await makeZip({ 'inner/e.com': eicar() }));
    const r = verdict(['scan', dir]);
    assert.equal(r.code, 1, r.err + r.out);
    const lines = r.out.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines.find((l) => l.includes('clean.txt'))!, /^CLN /);
    assert.match(lines.find((l) => l.includes('e.com') && !l.includes('nested'))!, /^MAL .*(Antivirus|test file)/i);
    assert.match(lines.find((l) => l.includes('nested.zip'))!, /^MAL .* in inner\/e\.com/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('verdict scan --json gives machine output; exit 0 when all clean, 2 on an error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cli-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha');
    const r = verdict(['scan', '--json', '--clamd', 'off', path.join(dir, 'a.txt')]);
    assert.equal(r.code, 0, r.err);
    const obj = JSON.parse(r.out.trim());
    assert.equal(obj.verdict, 'CLN');
    assert.equal(obj.sha256.length, 64);
    const missing = verdict(['scan', '--clamd', 'off', path.join(dir, 'nope.bin')]);
    assert.equal(missing.code, 2);
    assert.match(missing.out, /ERROR .*no such file/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('verdict org create and token create work on the data directory; the token authenticates', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cli-data-'));
  try {
    const env = { VERDICT_DATA_DIR: dataDir };
    const org = verdict(['org', 'create', 'acme'], env);
    assert.equal(org.code, 0, org.err);
    assert.equal(JSON.parse(org.out).name, 'acme');
    const child = verdict(['org', 'create', 'acme-eu', '--parent', 'acme'], env);
    assert.equal(child.code, 0, child.err);
    assert.equal(verdict(['org', 'create', 'acme'], env).code, 2, 'a duplicate name is refused');
    const tok = verdict(['token', 'create', '--org', 'acme-eu', '--role', 'Analyst'], env);
    assert.equal(tok.code, 0, tok.err);
    const token = tok.out.trim();
    assert.match(token, /^vd_/);
    assert.equal(verdict(['token', 'create', '--org', 'nope'], env).code, 2);
    // the token is accepted by the service on the same data directory
    const { createVerdict } = await import('../src/app.ts');
    const { loadConfig } = await import('../src/config/load.ts');
    const v = await createVerdict(loadConfig({ dataDir, port: 0, clamd: 'off', logLevel: 'silent' }, {}));
    try {
      const p = await v.service.authenticate(token);
      assert.equal(p.role, 'Analyst');
    } finally {
      await v.close();
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('verdict config --doc lists every option with its environment variable', () => {
  const r = verdict(['config', '--doc']);
  assert.equal(r.code, 0);
  assert.match(r.out, /`port` \| `VERDICT_PORT` \| `8080`/);
  assert.match(r.out, /`limits.maxDepth` \| `VERDICT_LIMITS_MAX_DEPTH`/);
});

test('README\'s configuration table is the one the code prints (docs stay true)', () => {
  const r = verdict(['config', '--doc']);
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(r.out.trim()), 'regenerate the table: node bin/verdict.js config --doc');
});
