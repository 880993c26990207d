/**
 * The spam rule: findings of the catalogue's `spam` category measure how unwanted a message is,
 * not how dangerous. Their scores add up to a spam score of their own, kept out of the threat
 * score, which gives `LSP` from `scoreLikelySpam` and `SPM` from `scoreSpam`. Spam therefore
 * never makes a message `SUS` or `MAL`, and a threat is never hidden by spam (the threat
 * verdicts are more severe). Hard rules still apply on their own: GTUBE is `SPM` whatever the
 * score (TEST_SPAM_ARTEFACT).
 *
 * @example
 * spamDecision(400, { scoreLikelySpam: 150, scoreSpam: 350 })?.verdict // 'SPM'
 */
import { heuristics } from './heuristics.ts';
import type { Decision, EvidenceItem } from './rules.ts';

export const SPAM_CATEGORY = 'spam';

/** Written once: the config schema's defaults and the fallback of a policy that omits them. */
export const DEFAULT_SPAM_THRESHOLDS = { scoreLikelySpam: 150, scoreSpam: 350 } as const;

export interface SpamThresholds {
  scoreLikelySpam?: number;
  scoreSpam?: number;
}

export function isSpamEvidence(e: Pick<EvidenceItem, 'heuristic'>): boolean {
  return heuristics[e.heuristic].category === SPAM_CATEGORY;
}

/** The verdict and its reason for a spam score, or undefined below the likely-spam band. */
export function spamDecision(spamScore: number, policy: SpamThresholds): Decision | undefined {
  const likely = policy.scoreLikelySpam ?? DEFAULT_SPAM_THRESHOLDS.scoreLikelySpam;
  const spam = policy.scoreSpam ?? DEFAULT_SPAM_THRESHOLDS.scoreSpam;
  const verdict = spamScore >= spam ? 'SPM' : spamScore >= likely ? 'LSP' : undefined;
  if (!verdict) return undefined;
  return {
    name: `Spam score ${spamScore}`,
    verdict,
    category: SPAM_CATEGORY,
    reason: `the spam findings add up to ${spamScore} (LSP from ${likely}, SPM from ${spam}); they count apart from the threat score`,
  };
}
