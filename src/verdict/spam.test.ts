import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../config/schema.ts';
import { decide, type EvidenceItem } from './rules.ts';
import { DEFAULT_SPAM_THRESHOLDS, spamDecision } from './spam.ts';

const policy = { scoreSuspicious: 300, scoreMalicious: 1000, scoreLikelySpam: 150, scoreSpam: 350 };
const ev = (heuristic: EvidenceItem['heuristic'], extra: Partial<EvidenceItem> = {}): EvidenceItem => ({ heuristic, scanner: 'email', layer: 'email', ...extra });

test('spam findings add up to a spam score that gives LSP, then SPM', () => {
  assert.equal(decide([ev('SPAM_SHOUTING_SUBJECT')], [], policy).verdict, 'CLN');
  const likely = decide([ev('SPAM_PHRASES', { score: 120 }), ev('SPAM_SHOUTING_SUBJECT')], [], policy);
  assert.deepEqual([likely.verdict, likely.spamScore, likely.score], ['LSP', 180, 0]);
  assert.equal(likely.decisions[0].category, 'spam');
  const spam = decide([ev('SPAM_PHRASES', { score: 240 }), ev('SPAM_BULK_WITHOUT_UNSUBSCRIBE'), ev('SPAM_HIDDEN_TEXT')], [], policy);
  assert.equal(spam.verdict, 'SPM');
  assert.match(spam.decisions[0].reason, /440.*LSP from 150, SPM from 350/);
});

test('however high, a spam score never makes a message SUS or MAL', () => {
  const o = decide([ev('SPAM_PHRASES', { score: 5000 }), ev('SPAM_LINK_HEAVY')], [], policy);
  assert.deepEqual([o.verdict, o.score], ['SPM', 0]);
});

test('threats still decide above spam, on their own score', () => {
  const o = decide([ev('SPAM_PHRASES', { score: 240 }), ev('SPAM_HIDDEN_TEXT'), ev('SPAM_BULK_WITHOUT_UNSUBSCRIBE'), ev('EMAIL_LOOKALIKE_DOMAIN')], [], policy);
  assert.deepEqual([o.verdict, o.score, o.spamScore], ['SUS', 300, 440]);
  // Below the SUS band the threat score alone is not enough, and spam gives the verdict.
  const weak = decide([ev('SPAM_PHRASES', { score: 240 }), ev('SPAM_HIDDEN_TEXT'), ev('SPAM_BULK_WITHOUT_UNSUBSCRIBE'), ev('EMAIL_REPLY_TO_MISMATCH')], [], policy);
  assert.deepEqual([weak.verdict, weak.score], ['SPM', 100]);
});

test('GTUBE stays SPM by hard rule; a spam child rolls up to its mailbox', () => {
  const gtube = decide([ev('TEST_SPAM_ARTEFACT', { scanner: 'yara' })], [], policy);
  assert.deepEqual([gtube.verdict, gtube.confidence], ['SPM', 'HIGH']);
  const likely = decide([ev('SPAM_PHRASES', { score: 160 })], [], policy);
  assert.equal(decide([], [likely], policy).verdict, 'LSP');
});

test('spam never hides a required engine that failed', () => {
  const o = decide([ev('SPAM_PHRASES', { score: 400 }), ev('ENGINE_ERROR', { scanner: 'clamav', data: { required: true } })], [], policy);
  assert.equal(o.verdict, 'SUS');
});

test('thresholds: policy values, else the defaults the config schema also uses', () => {
  assert.equal(spamDecision(200, { scoreLikelySpam: 250, scoreSpam: 500 }), undefined);
  assert.equal(spamDecision(DEFAULT_SPAM_THRESHOLDS.scoreSpam, {})?.verdict, 'SPM');
  assert.equal(decide([ev('SPAM_PHRASES', { score: 200 })], [], { scoreSuspicious: 300, scoreMalicious: 1000 }).verdict, 'LSP');
  const config = configSchema.parse({});
  assert.deepEqual([config.scoreLikelySpam, config.scoreSpam], [DEFAULT_SPAM_THRESHOLDS.scoreLikelySpam, DEFAULT_SPAM_THRESHOLDS.scoreSpam]);
  assert.equal(configSchema.parse({ scoreSpam: '500' }).scoreSpam, 500);
});
