import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, type EvidenceItem, type Outcome } from './rules.ts';

const policy = { scoreSuspicious: 300, scoreMalicious: 1000 };
const ev = (heuristic: EvidenceItem['heuristic'], extra: Partial<EvidenceItem> = {}): EvidenceItem => ({ heuristic, scanner: 'test', layer: 'static', ...extra });

test('no evidence is a confident clean', () => {
  const o = decide([], [], policy);
  assert.deepEqual([o.verdict, o.confidence, o.partial, o.score], ['CLN', 'HIGH', false, 0]);
});

test('an antivirus hit is malicious by hard rule, whatever the score', () => {
  const o = decide([ev('AV_DETECTION', { details: 'Win.Test', score: 0 })], [], policy);
  assert.equal(o.verdict, 'MAL');
  assert.equal(o.confidence, 'HIGH');
  assert.match(o.decisions[0].reason, /Win.Test/);
});

test('scores add up into the suspicious and malicious bands', () => {
  assert.equal(decide([ev('URL_IP_HOST')], [], policy).verdict, 'CLN');
  assert.equal(decide([ev('URL_IP_HOST'), ev('URL_USERINFO')], [], policy).verdict, 'SUS');
  assert.equal(decide([ev('URL_IP_HOST', { score: 600 }), ev('URL_USERINFO', { score: 400 })], [], policy).verdict, 'MAL');
});

test('a required engine failure never yields clean', () => {
  const o = decide([ev('ENGINE_ERROR', { data: { required: true }, scanner: 'clamav' })], [], policy);
  assert.equal(o.verdict, 'SUS');
  assert.equal(o.partial, true);
  assert.match(o.decisions.map((d) => d.reason).join(), /clamav/);
});

test('an optional partial finding keeps clean but at low confidence', () => {
  const o = decide([ev('URL_FETCH_FAILED')], [], policy);
  assert.deepEqual([o.verdict, o.confidence, o.partial], ['CLN', 'LOW', true]);
});

test('children roll up to the parent, most severe wins, BLK above all', () => {
  const mal = decide([ev('AV_DETECTION')], [], policy);
  const clean = decide([], [], policy);
  const parent = decide([], [clean, mal], policy);
  assert.equal(parent.verdict, 'MAL');
  assert.equal(parent.ownVerdict, 'CLN');
  const blk: Outcome = { ...clean, verdict: 'BLK' };
  assert.equal(decide([], [mal, blk], policy).verdict, 'BLK');
});

test('an encrypted archive that could not be opened is suspicious and partial', () => {
  const o = decide([ev('ARCHIVE_ENCRYPTED_UNOPENED')], [], policy);
  assert.equal(o.verdict, 'SUS');
  assert.equal(o.partial, true);
});

test('a partial child makes the parent partial', () => {
  const child = decide([ev('NOT_FULLY_SCANNED')], [], policy);
  const o = decide([], [child], policy);
  assert.equal(o.partial, true);
  assert.equal(o.confidence, 'LOW');
});

test('ClamAV\'s encrypted alert does not make a result partial when the archive was opened', () => {
  const opened = decide([ev('AV_ENCRYPTED'), ev('ARCHIVE_ENCRYPTED')], [], policy);
  assert.equal(opened.partial, false);
  const locked = decide([ev('AV_ENCRYPTED')], [], policy);
  assert.equal(locked.partial, true);
});
