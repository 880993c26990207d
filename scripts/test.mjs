#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's test runner (Node 20 has no glob
// support in --test). Extra arguments are passed on, e.g. `npm test -- --test-only`; file
// arguments narrow the run: `npm test -- src/scanners`.
//
// Two passes: everything on the embedded default (SQLite, the embedded queue, local blobs),
// then the integration tests (test/) again in the scale mode (PostgreSQL, BullMQ on Redis, S3)
// with VERDICT_TEST_SCALE=1. `--embedded-only` / `--scale-only` run one pass.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith('-'));
const ownFlags = new Set(['--embedded-only', '--scale-only']);
const flags = args.filter((a) => a.startsWith('-') && !ownFlags.has(a));
const passes = args.includes('--scale-only') ? ['scale'] : args.includes('--embedded-only') ? ['embedded'] : ['embedded', 'scale'];

function find(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...find(p));
    else if (e.name.endsWith('.test.ts')) out.push(path.relative(root, p));
  }
  return out;
}

let files = ['src', 'test'].flatMap((d) => (fs.existsSync(path.join(root, d)) ? find(path.join(root, d)) : [])).sort();
if (filters.length) files = files.filter((f) => filters.some((x) => f.startsWith(x.replace(/^\.\//, ''))));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
let status = 0;
for (const pass of passes) {
  // the scale pass covers what depends on the store, queue and blob store: the integration tests
  // (*.scale.test.ts always run on the scale backends: only in that pass)
  const list = pass === 'scale' ? files.filter((f) => f.startsWith('test/')) : files.filter((f) => !f.endsWith('.scale.test.ts'));
  if (list.length === 0) continue;
  console.log(`\n# ${pass} mode: ${list.length} test files`);
  const env = { ...process.env, VERDICT_TEST_SCALE: pass === 'scale' ? '1' : '0' };
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...flags, ...list], { cwd: root, stdio: 'inherit', env });
  if ((r.status ?? 1) !== 0) status = r.status ?? 1;
}
process.exit(status);
