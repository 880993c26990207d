import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kataState } from './plugin.ts';
import { normalizeFingerprint } from '../../service/sensor-service.ts';

test('Verdict statuses and verdicts map onto KATA states through one table', () => {
  const now = 1_000_000;
  const at = (status: 'queued' | 'scanning' | 'done' | 'error', verdict: string | null, age = 0) => kataState({ status, verdict, createdAt: now - age }, now, 60_000);
  assert.equal(at('queued', null), 'processing');
  assert.equal(at('scanning', null), 'processing');
  assert.equal(at('queued', null, 60_001), 'timeout');
  assert.equal(at('scanning', null, 60_001), 'timeout');
  for (const v of ['MAL', 'SUS', 'BLK']) assert.equal(at('done', v), 'detect', v);
  for (const v of ['CLN', 'LSP', 'SPM']) assert.equal(at('done', v), 'not detected', v);
  // a finished scan is never a timeout, however old
  assert.equal(at('done', 'CLN', 10 * 60_000), 'not detected');
  assert.equal(at('error', null, 10 * 60_000), 'error');
  assert.equal(at('done', null), 'error', 'done without a verdict is not a clean result');
});

test('certificate fingerprints compare in one form', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(normalizeFingerprint(hex.toUpperCase().match(/../g)!.join(':')), hex);
  assert.equal(normalizeFingerprint(hex), hex);
  assert.equal(normalizeFingerprint('ab:cd'), undefined);
  assert.equal(normalizeFingerprint(undefined), undefined);
});
