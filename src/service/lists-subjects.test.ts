import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectSubjects } from './lists-service.ts';
import type { ScanRow } from '../store/schema.ts';
import type { ObjectReport } from '../engine/report.ts';

const report = (attributes: Record<string, unknown>): ObjectReport => ({
  info: { kind: 'file', name: 'm.eml', size: 1, fileType: 'email', mime: 'message/rfc822', md5: '', sha1: '', sha256: 'ab'.repeat(32), sha512: '', depth: 0 },
  evidence: [],
  attributes,
  engines: [],
  outcome: { verdict: 'CLN', ownVerdict: 'CLN', score: 0, spamScore: 0, partial: false, confidence: 'HIGH', decisions: [] },
  children: [],
  startedAt: 0,
  selfFinishedAt: 0,
  finishedAt: 0,
});

test('an email scan is matched by the sender the message itself names, not only by the row (filled later)', () => {
  const row = { sample_from: null, sender_ip: null } as unknown as ScanRow;
  const s = collectSubjects(row, report({ email: { from: 'Mallory <mallory@evil.example>', sourceIp: '203.0.113.9' } }));
  assert.deepEqual(s.emails.map((e) => e.address), ['mallory@evil.example']);
  assert.deepEqual(s.ips.map((i) => String(i.ip)), ['203.0.113.9']);
  // the envelope (row) and the header both count, once each
  const both = collectSubjects({ sample_from: 'bounce@evil.example', sender_ip: '203.0.113.9' } as unknown as ScanRow, report({ email: { from: 'mallory@evil.example', sourceIp: '203.0.113.9' } }));
  assert.deepEqual(both.emails.map((e) => e.address).sort(), ['bounce@evil.example', 'mallory@evil.example']);
  assert.equal(both.ips.length, 1);
});
