import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { YaraPool } from './yara-pool.ts';
import { loadConfig } from '../config/load.ts';
import { COMPILE_OPTIONS, compileRules, rootSource, RULES_DIR, THREAD_SCAN_MIN, yaraScanner } from '../scanners/yara.ts';
import { initScanner, runScanner } from '../scanners/testing.ts';

// a bundled rule's match (PowerShell with an encoded command), placed deep inside a big object
const NEEDLE = Buffer.from('\npowershell.exe -nop -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA\n');

test('big objects are scanned in a worker thread while the event loop keeps running; the result is the same', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-yarapool-'));
  const pool = new YaraPool(rootSource(compileRules([RULES_DIR]).files), COMPILE_OPTIONS, 2);
  try {
    // 64 MB of text with the needle in the middle: a scan long enough to notice a blocked loop
    const big = Buffer.alloc(64 * 1024 * 1024, 0x61);
    NEEDLE.copy(big, 32 * 1024 * 1024);
    const file = path.join(dir, 'big.bin');
    fs.writeFileSync(file, big);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    const [a, b] = await Promise.all([pool.scanFile(file), pool.scanFile(file)]);
    clearInterval(timer);
    const ms = Date.now() - started;
    assert.deepEqual(a.map((m) => m.ruleIdentifier), ['Verdict_PowerShell_Encoded_Command']);
    assert.deepEqual(b.map((m) => m.ruleIdentifier), a.map((m) => m.ruleIdentifier));
    assert.equal(pool.threads, 2, 'two concurrent scans use two threads');
    // the main thread was free: timers kept firing through the scans (a blocked loop fires ~once)
    assert.ok(ticks >= Math.min(10, ms / 20), `${ticks} timer ticks in ${ms} ms`);
  } finally {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the scanner sends objects from THREAD_SCAN_MIN to its pool and finds the same', async () => {
  const state = (await initScanner(yaraScanner, { config: loadConfig({ dataDir: os.tmpdir(), yaraThreads: 1 }, {}) })) as { pool?: YaraPool };
  assert.ok(state.pool, 'a pool when yaraThreads > 0');
  try {
    const data = Buffer.alloc(THREAD_SCAN_MIN + 1024, 0x20);
    NEEDLE.copy(data, THREAD_SCAN_MIN);
    const r = await runScanner(yaraScanner, data, { name: 'big.txt', state });
    assert.deepEqual(r.heuristics, ['YARA_SUSPICIOUS']);
    assert.equal(state.pool.threads, 1, 'the scan went through the worker');
  } finally {
    await state.pool.close();
  }
});
