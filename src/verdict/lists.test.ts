import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyListPolicy, type ListMatch } from './lists.ts';
import { decide, type EvidenceItem, type Outcome } from './rules.ts';
import type { VerdictCode } from './codes.ts';

const policy = { scoreSuspicious: 300, scoreMalicious: 1000 };
const ev = (heuristic: EvidenceItem['heuristic']): EvidenceItem => ({ heuristic, scanner: heuristic.startsWith('AV') ? 'clamav' : 'yara', layer: 'signatures', details: `${heuristic}-detail` });
const block = (root = true, entryId = 1): ListMatch => ({ entryId, list: 'blacklist', target: 'hash', value: 'v', ownerOrgId: 1, subject: 'sha256 of the submitted file', root });
const allow = (root = true, entryId = 2): ListMatch => ({ entryId, list: 'whitelist', target: 'domain', value: 'example.org', ownerOrgId: 1, subject: 'submitted URL', root });

const clean = decide([], [], policy);
const suspicious = decide([{ heuristic: 'YARA_SUSPICIOUS', scanner: 'yara', layer: 'signatures' }], [], policy);
const scoredMal = decide([{ heuristic: 'URL_USERINFO', scanner: 'url', layer: 'url', score: 1200 }], [], policy);

interface Row {
  name: string;
  /** The engine's outcome (default: decided from `evidence`). */
  base?: Outcome;
  evidence: EvidenceItem[];
  matches: ListMatch[];
  overrides?: boolean;
  verdict: VerdictCode;
  effect: string;
  decision?: RegExp;
}

const table: Row[] = [
  { name: 'no match leaves the outcome alone', base: suspicious, evidence: [], matches: [], verdict: 'SUS', effect: 'none' },
  { name: 'a block hit on the submission blocks a clean scan', base: clean, evidence: [], matches: [block()], verdict: 'BLK', effect: 'blocked', decision: /^Block list entry #1$/ },
  { name: 'a block hit on a contained object blocks the submission', base: clean, evidence: [], matches: [block(false)], verdict: 'BLK', effect: 'blocked' },
  { name: 'a block hit beats a signature MAL', evidence: [ev('AV_DETECTION')], matches: [block()], verdict: 'BLK', effect: 'blocked' },
  { name: 'block wins over allow', base: clean, evidence: [], matches: [allow(), block()], verdict: 'BLK', effect: 'blocked' },
  { name: 'an allow hit clears a suspicious scan', base: suspicious, evidence: [], matches: [allow()], verdict: 'CLN', effect: 'allowed', decision: /^Allow list entry #2$/ },
  { name: 'an allow hit clears a MAL that came from scores, not signatures', base: scoredMal, evidence: [], matches: [allow()], verdict: 'CLN', effect: 'allowed' },
  { name: 'an allow hit on something inside the submission does not clear it', base: suspicious, evidence: [], matches: [allow(false)], verdict: 'SUS', effect: 'none' },
  { name: 'an allow hit does not clear a ClamAV detection', evidence: [ev('AV_DETECTION')], matches: [allow()], verdict: 'MAL', effect: 'allow_refused', decision: /not applied/ },
  { name: 'an allow hit does not clear a YARA malware rule', evidence: [ev('YARA_MALWARE')], matches: [allow()], verdict: 'MAL', effect: 'allow_refused' },
  { name: 'an allow hit does not clear EICAR', evidence: [ev('TEST_ARTEFACT')], matches: [allow()], verdict: 'MAL', effect: 'allow_refused' },
  { name: 'the organization setting lets allow override signatures', evidence: [ev('TEST_ARTEFACT')], matches: [allow()], overrides: true, verdict: 'CLN', effect: 'allowed' },
];

for (const row of table) {
  test(`list policy: ${row.name}`, () => {
    const base = row.base ?? decide(row.evidence, [], policy);
    const r = applyListPolicy(base, row.matches, { allowListOverridesSignatures: row.overrides ?? false }, row.evidence);
    assert.equal(r.outcome.verdict, row.verdict);
    assert.equal(r.effect, row.effect);
    if (row.decision) assert.ok(r.outcome.decisions.some((d) => row.decision!.test(d.name)), JSON.stringify(r.outcome.decisions));
    if (row.effect === 'none') assert.deepEqual(r.outcome, base);
  });
}

test('a block decision and its evidence name the entry and what matched', () => {
  const r = applyListPolicy(clean, [block(true, 42), block(false, 42)], { allowListOverridesSignatures: false });
  assert.equal(r.outcome.decisions.length, 1, 'one decision per entry, however many things it matched');
  assert.equal(r.outcome.decisions[0].category, 'policy');
  assert.match(r.outcome.decisions[0].reason, /blacklist\/hash entry #42 .*sha256 of the submitted file/);
  assert.equal(r.outcome.confidence, 'HIGH');
  assert.equal(r.evidence.length, 1);
  assert.equal(r.evidence[0].heuristic, 'LIST_BLOCKED');
  assert.equal(r.evidence[0].data?.entry_id, 42);
});

test('a refused allow says why, keeps the signature verdict and records the hit as not applied', () => {
  const mal = decide([ev('AV_DETECTION')], [], policy);
  const r = applyListPolicy(mal, [allow()], { allowListOverridesSignatures: false }, [ev('AV_DETECTION')]);
  assert.equal(r.outcome.confidence, mal.confidence);
  const d = r.outcome.decisions.at(-1)!;
  assert.match(d.reason, /AV_DETECTION-detail/);
  assert.match(d.reason, /allow_list_overrides_signatures/);
  assert.equal(r.evidence[0].heuristic, 'LIST_ALLOWED');
  assert.equal(r.evidence[0].data?.applied, false);
});

test('a block on a contained object keeps the submission\'s own verdict', () => {
  const r = applyListPolicy(clean, [block(false)], { allowListOverridesSignatures: false });
  assert.equal(r.outcome.ownVerdict, 'CLN');
  assert.equal(applyListPolicy(clean, [block(true)], { allowListOverridesSignatures: false }).outcome.ownVerdict, 'BLK');
});
