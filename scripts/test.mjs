#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's test runner (Node 20 has no glob
// support in --test). Extra arguments are passed on, e.g. `npm test -- --test-only`; file
// arguments narrow the run: `npm test -- src/scanners`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));

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
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...flags, ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
