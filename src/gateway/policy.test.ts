import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideAction, type PolicyInput } from './policy.ts';

const blocking = { send_malicious_emails: true, send_spam_emails: true, send_blocked_emails: true };
const open = { send_malicious_emails: false, send_spam_emails: false, send_blocked_emails: false };
const base: PolicyInput = { verdict: 'CLN', settings: blocking, lists: 'none', vip: false, atSmtpTime: false, rejectMalicious: false };
const act = (p: Partial<PolicyInput>) => decideAction({ ...base, ...p });

test('blocking mode holds MAL, SPM and BLK; off delivers them with their verdict', () => {
  const table: [PolicyInput['verdict'], string, string][] = [
    ['CLN', 'deliver', 'deliver'],
    ['LSP', 'deliver', 'deliver'],
    ['SPM', 'quarantine', 'deliver'],
    ['SUS', 'deliver', 'deliver'],
    ['MAL', 'quarantine', 'deliver'],
    ['BLK', 'quarantine', 'deliver'],
  ];
  for (const [verdict, on, off] of table) {
    assert.equal(act({ verdict }).action, on, `${verdict} in blocking mode`);
    const d = act({ verdict, settings: open });
    assert.equal(d.action, off, `${verdict} with blocking off`);
    assert.equal(d.verdict, verdict, 'the header carries the verdict');
  }
});

test('each blocking switch governs its own verdict only', () => {
  assert.equal(act({ verdict: 'SPM', settings: { ...blocking, send_spam_emails: false } }).action, 'deliver');
  assert.equal(act({ verdict: 'MAL', settings: { ...blocking, send_spam_emails: false } }).action, 'quarantine');
  assert.equal(act({ verdict: 'BLK', settings: { ...blocking, send_blocked_emails: false } }).action, 'deliver');
  assert.equal(act({ verdict: 'MAL', settings: { ...blocking, send_blocked_emails: false } }).action, 'quarantine');
});

test('a block-list hit on the sender makes a clean message BLK; an allow hit clears spam only', () => {
  assert.deepEqual([act({ lists: 'block' }).action, act({ lists: 'block' }).verdict], ['quarantine', 'BLK']);
  assert.equal(act({ lists: 'block', settings: { ...blocking, send_blocked_emails: false } }).action, 'deliver');
  assert.deepEqual([act({ verdict: 'SPM', lists: 'allow' }).action, act({ verdict: 'SPM', lists: 'allow' }).verdict], ['deliver', 'CLN']);
  assert.equal(act({ verdict: 'MAL', lists: 'allow' }).action, 'quarantine', 'an allowed sender does not clear malware');
  assert.equal(act({ verdict: 'SUS', lists: 'allow' }).verdict, 'SUS');
});

test('suspicious mail to a VIP is held; MAL is refused at SMTP time only when configured and known then', () => {
  assert.equal(act({ verdict: 'SUS', vip: true }).action, 'quarantine');
  assert.equal(act({ verdict: 'SUS', vip: true, settings: open }).action, 'deliver');
  assert.equal(act({ verdict: 'MAL', rejectMalicious: true, atSmtpTime: true }).action, 'reject');
  assert.equal(act({ verdict: 'MAL', rejectMalicious: true, atSmtpTime: false }).action, 'quarantine', 'after 250 it can only be held');
  assert.equal(act({ verdict: 'MAL', rejectMalicious: false, atSmtpTime: true }).action, 'quarantine');
});

test('an unfinished scan is held, never delivered as clean', () => {
  const d = act({ verdict: null, settings: open });
  assert.equal(d.action, 'hold');
  assert.equal(d.verdict, 'ERR');
});
