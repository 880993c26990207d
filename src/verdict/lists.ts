/**
 * Allow/block list policy: a pure function from a scan's outcome, the list entries that matched
 * it and the organization's policy to the outcome the scan ends with, plus the evidence that
 * records the hits.
 *
 * - A block-list hit anywhere in the tree (the submission, a contained object, a redirect
 *   target, a link) makes the scan `BLK`, with one decision per matching entry.
 * - An allow-list hit on the submission itself (its sha256, its URL or domain, the email's
 *   sender address or IP) makes the scan `CLN`, with a decision naming the entry. Allow hits on
 *   something inside or behind the submission (a contained file, a redirect target) do not
 *   clear the submission: an archive holding one known-good file and one bad file stays bad.
 * - Block wins over allow when both match.
 * - Signature exception: when a signature engine found malware anywhere in the tree
 *   (AV_DETECTION, YARA_MALWARE, TEST_ARTEFACT), an allow hit does not clear the scan unless the
 *   organization sets `allowListOverridesSignatures`; the decision then says the entry was not
 *   applied and why.
 *
 * @example
 * const r = applyListPolicy(outcome, [{ entryId: 7, list: 'blacklist', target: 'hash', value: 'ab…',
 *   ownerOrgId: 1, subject: 'sha256 of the submitted file', root: true }], { allowListOverridesSignatures: false }, evidence);
 * r.outcome.verdict; // 'BLK'
 */
import { heuristics, type HeuristicId } from './heuristics.ts';
import type { Decision, EvidenceItem, Outcome } from './rules.ts';

export const LIST_TYPES = ['blacklist', 'whitelist'] as const;
export type ListType = (typeof LIST_TYPES)[number];
export const LIST_TARGETS = ['email', 'ip', 'url', 'hash', 'domain'] as const;
export type ListTarget = (typeof LIST_TARGETS)[number];

/** Heuristics whose hit means a signature engine found malware (the allow-list exception). */
export const SIGNATURE_HEURISTICS: ReadonlySet<HeuristicId> = new Set<HeuristicId>(['AV_DETECTION', 'YARA_MALWARE', 'TEST_ARTEFACT']);

export interface ListMatch {
  entryId: number;
  list: ListType;
  target: ListTarget;
  /** The entry's value as entered (address, ip, prefix, sha256, domain). */
  value: string;
  ownerOrgId: number;
  /** What in the scan matched, for people: "sha256 of contained object a.exe", "redirect target http://…". */
  subject: string;
  /** The subject is the submission itself, not something inside or behind it. */
  root: boolean;
}

export interface ListPolicy {
  /** An allow hit clears even a scan that signature engines found malicious. */
  allowListOverridesSignatures: boolean;
}

export interface ListPolicyResult {
  outcome: Outcome;
  /** Evidence to add to the submission's own findings (one per entry that matched). */
  evidence: EvidenceItem[];
  /** What the lists did to the verdict. */
  effect: 'blocked' | 'allowed' | 'allow_refused' | 'none';
}

const SCANNER = 'lists';
const LAYER = 'policy';

/** The signature-malware findings among `evidence` (pass the whole tree's evidence). */
export function signatureDetections(evidence: Iterable<EvidenceItem>): EvidenceItem[] {
  const out: EvidenceItem[] = [];
  for (const e of evidence) if (SIGNATURE_HEURISTICS.has(e.heuristic)) out.push(e);
  return out;
}

function entryName(m: ListMatch): string {
  return `${m.list === 'blacklist' ? 'Block' : 'Allow'} list entry #${m.entryId}`;
}

function describe(m: ListMatch): string {
  return `${m.list}/${m.target} entry #${m.entryId} "${m.value}" (organization ${m.ownerOrgId}) matches the ${m.subject}`;
}

function evidenceOf(m: ListMatch, heuristic: 'LIST_BLOCKED' | 'LIST_ALLOWED', applied: boolean): EvidenceItem {
  return {
    heuristic,
    scanner: SCANNER,
    layer: LAYER,
    details: describe(m),
    data: { entry_id: m.entryId, list_type: m.list, list_target: m.target, value: m.value, owner_organization: m.ownerOrgId, subject: m.subject, applied },
  };
}

/** Keeps the first match of each entry (an entry matching several things is one decision). */
function distinct(matches: ListMatch[]): ListMatch[] {
  const seen = new Set<number>();
  return matches.filter((m) => (seen.has(m.entryId) ? false : (seen.add(m.entryId), true)));
}

/**
 * Applies the organization's lists to a finished scan's outcome. `treeEvidence` is every
 * finding of the scan tree (for the signature exception). Children's outcomes are not touched.
 */
export function applyListPolicy(outcome: Outcome, matches: ListMatch[], policy: ListPolicy, treeEvidence: Iterable<EvidenceItem> = []): ListPolicyResult {
  const blocks = distinct(matches.filter((m) => m.list === 'blacklist'));
  if (blocks.length > 0) {
    const decisions: Decision[] = blocks.map((m) => ({ name: entryName(m), verdict: 'BLK', category: 'policy', reason: `blocked by ${describe(m)}` }));
    return {
      outcome: {
        ...outcome,
        verdict: 'BLK',
        ownVerdict: blocks.some((m) => m.root) ? 'BLK' : outcome.ownVerdict,
        confidence: 'HIGH',
        decisions: [...decisions, ...outcome.decisions],
      },
      evidence: blocks.map((m) => evidenceOf(m, 'LIST_BLOCKED', true)),
      effect: 'blocked',
    };
  }

  const allows = distinct(matches.filter((m) => m.list === 'whitelist' && m.root));
  if (allows.length === 0) return { outcome, evidence: [], effect: 'none' };

  const signatures = signatureDetections(treeEvidence);
  if (signatures.length > 0 && !policy.allowListOverridesSignatures) {
    const found = [...new Set(signatures.map((e) => `${e.scanner}: ${e.details ?? heuristics[e.heuristic].name}`))].slice(0, 5).join('; ');
    const decisions: Decision[] = allows.map((m) => ({
      name: `${entryName(m)} not applied`,
      verdict: outcome.verdict,
      category: 'policy',
      reason: `${describe(m)}, but signature engines found malware (${found}); allow lists do not override signatures unless the organization sets allow_list_overrides_signatures`,
    }));
    return {
      outcome: { ...outcome, decisions: [...outcome.decisions, ...decisions] },
      evidence: allows.map((m) => evidenceOf(m, 'LIST_ALLOWED', false)),
      effect: 'allow_refused',
    };
  }

  const decisions: Decision[] = allows.map((m) => ({ name: entryName(m), verdict: 'CLN', category: 'policy', reason: `allowed by ${describe(m)}` }));
  return {
    outcome: { ...outcome, verdict: 'CLN', ownVerdict: 'CLN', confidence: 'HIGH', decisions: [...decisions, ...outcome.decisions] },
    evidence: allows.map((m) => evidenceOf(m, 'LIST_ALLOWED', true)),
    effect: 'allowed',
  };
}
