/**
 * `verdict user create|token`, run as an operator would (a real process), then the token used
 * against the service on the same data directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function verdict(args: string[], env: Record<string, string>, input?: string) {
  const r = spawnSync(process.execPath, ['bin/verdict.js', ...args], { cwd: root, env: { ...process.env, VERDICT_LOG_LEVEL: 'error', ...env }, input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('verdict user create and user token: the token acts as the user, with its role', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cli-user-'));
  try {
    const env = { VERDICT_DATA_DIR: dataDir };
    assert.equal(verdict(['org', 'create', 'acme'], env).code, 0);
    const created = verdict(['user', 'create', '--org', 'acme', '--email', 'Ana@Acme.example', '--name', 'Ana', '--role', 'Analyst', '--password'], env, 'a long enough password\n');
    assert.equal(created.code, 0, created.err);
    assert.deepEqual(JSON.parse(created.out), { id: 1, name: 'Ana', email: 'ana@acme.example', role: 'Analyst', organization: 'acme' });
    assert.equal(verdict(['user', 'create', '--org', 'nope', '--email', 'b@x.example', '--name', 'B'], env).code, 2);
    assert.equal(verdict(['user', 'create', '--org', 'acme', '--email', 'c@x.example', '--name', 'C', '--role', 'Overlord'], env).code, 2);
    const tok = verdict(['user', 'token', '--email', 'ana@acme.example'], env);
    assert.equal(tok.code, 0, tok.err);
    const token = tok.out.trim();
    assert.match(token, /^vd_/);
    assert.equal(verdict(['user', 'token', '--email', 'nobody@x.example'], env).code, 2);

    const { createVerdict } = await import('../src/app.ts');
    const { loadConfig } = await import('../src/config/load.ts');
    const { UserService } = await import('../src/service/users.ts');
    const v = await createVerdict(loadConfig({ dataDir, port: 0, clamd: 'off', logLevel: 'silent' }, {}));
    try {
      const p = await v.service.authenticate(token);
      assert.equal(p.role, 'Analyst');
      assert.equal(p.orgId, (await v.store.getOrgByName('acme'))!.id);
      // the password read from stdin signs in
      assert.ok(await new UserService(v.store).verifyCredentials('ana@acme.example', 'a long enough password'));
    } finally {
      await v.close();
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
