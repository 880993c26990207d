import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { scanners } from './index.ts';

const dir = import.meta.dirname;
/** Files in src/scanners that are not scanners. */
const support = new Set(['types.ts', 'testing.ts', 'index.ts', 'archive-common.ts', 'zip-reader.ts']);

test('every scanner file has a test beside it', () => {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !support.has(f));
  const missing = files.filter((f) => !fs.existsSync(path.join(dir, f.replace(/\.ts$/, '.test.ts'))));
  assert.deepEqual(missing, [], `scanner files without a test: ${missing.join(', ')}`);
});

test('scanner names are unique and every registered scanner declares a layer and version', () => {
  const names = scanners.map((s) => s.name);
  assert.equal(new Set(names).size, names.length);
  for (const s of scanners) {
    assert.ok(s.version, `${s.name} has no version`);
    assert.ok(s.layer, `${s.name} has no layer`);
  }
});
