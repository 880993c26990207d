/**
 * Verdict rules: a pure function from an object's evidence and its children's outcomes to a
 * verdict, with the reasons (decisions) that produced it.
 *
 * - An object's score is the sum of its findings' scores (the catalogue's, unless overridden).
 * - Score bands give CLN / SUS / MAL; hard rules (a heuristic with `verdict`) set a floor.
 * - A tree's verdict is the most severe of the object's own and its children's (BLK wins).
 * - A required engine that failed makes the result partial and lifts a CLN to SUS: an object
 *   that was not examined is never reported clean. Other partial findings (not fully scanned,
 *   URL not fetched) keep the verdict but drop its confidence to LOW.
 * - Findings of the `spam` category are scored apart: their sum gives LSP / SPM, never SUS /
 *   MAL (src/verdict/spam.ts).
 */
import { heuristics, type HeuristicId } from './heuristics.ts';
import { worst, type Confidence, type VerdictCode } from './codes.ts';
import { isSpamEvidence, spamDecision } from './spam.ts';

export interface EvidenceItem {
  heuristic: HeuristicId;
  scanner: string;
  layer: string;
  details?: string;
  data?: Record<string, unknown>;
  score?: number;
}

export interface Decision {
  name: string;
  verdict: VerdictCode;
  category: string;
  reason: string;
}

export interface Policy {
  scoreSuspicious: number;
  scoreMalicious: number;
  /** Spam score from which an object is LSP / SPM (src/verdict/spam.ts; defaults there). */
  scoreLikelySpam?: number;
  scoreSpam?: number;
}

export interface Outcome {
  /** Verdict of the object with its children rolled up. */
  verdict: VerdictCode;
  /** Verdict of the object alone. */
  ownVerdict: VerdictCode;
  score: number;
  /** Sum of the `spam` findings, kept out of `score` (src/verdict/spam.ts). */
  spamScore: number;
  partial: boolean;
  confidence: Confidence;
  decisions: Decision[];
}

export function scoreOf(e: EvidenceItem): number {
  return e.score ?? heuristics[e.heuristic].score;
}

export function decide(evidence: EvidenceItem[], children: Outcome[], policy: Policy): Outcome {
  const decisions: Decision[] = [];
  const score = evidence.reduce((s, e) => s + (isSpamEvidence(e) ? 0 : scoreOf(e)), 0);
  const spamScore = evidence.reduce((s, e) => s + (isSpamEvidence(e) ? scoreOf(e) : 0), 0);

  let own: VerdictCode = 'CLN';
  let hard = false;
  for (const e of evidence) {
    const h = heuristics[e.heuristic];
    if (h.verdict) {
      own = worst(own, h.verdict);
      hard = true;
      decisions.push({
        name: h.name,
        verdict: h.verdict,
        category: h.category,
        reason: `${e.scanner}: ${e.details ?? h.description}`,
      });
    }
  }
  const byScore: VerdictCode = score >= policy.scoreMalicious ? 'MAL' : score >= policy.scoreSuspicious ? 'SUS' : 'CLN';
  if (byScore !== 'CLN' && worst(own, byScore) === byScore && byScore !== own) {
    decisions.push({
      name: `Score ${score}`,
      verdict: byScore,
      category: 'score',
      reason: `the findings add up to ${score} (SUS from ${policy.scoreSuspicious}, MAL from ${policy.scoreMalicious})`,
    });
  }
  own = worst(own, byScore);

  const failedRequired = evidence.filter((e) => e.heuristic === 'ENGINE_ERROR' && e.data?.required === true);
  if (failedRequired.length > 0 && own === 'CLN') {
    own = 'SUS';
    decisions.push({
      name: 'Incomplete scan',
      verdict: 'SUS',
      category: 'engine',
      reason: `required engine(s) could not finish: ${[...new Set(failedRequired.map((e) => e.scanner))].join(', ')}`,
    });
  }
  // After the incomplete-scan rule, so that spam never hides a required engine's failure.
  const spam = spamDecision(spamScore, policy);
  if (spam && worst(own, spam.verdict) !== own) {
    decisions.push(spam);
    own = spam.verdict;
  }
  // ClamAV's "encrypted" alert is moot when our archive scanner opened the archive itself.
  const opened = evidence.some((e) => e.heuristic === 'ARCHIVE_ENCRYPTED') && !evidence.some((e) => e.heuristic === 'ARCHIVE_ENCRYPTED_UNOPENED');
  const ownPartial = evidence.some((e) => heuristics[e.heuristic].partial && !(opened && e.heuristic === 'AV_ENCRYPTED'));

  let verdict = own;
  let decidingChild: Outcome | undefined;
  for (const c of children) {
    if (worst(verdict, c.verdict) !== verdict) {
      decidingChild = c;
      decisions.push({
        name: 'Child verdict',
        verdict: c.verdict,
        category: 'tree',
        reason: `a contained object is ${c.verdict}`,
      });
      verdict = c.verdict;
    }
  }
  const partial = ownPartial || children.some((c) => c.partial);

  let confidence: Confidence;
  if (partial && verdict === 'CLN') confidence = 'LOW';
  else if (decidingChild) confidence = decidingChild.confidence;
  else if (hard || verdict === 'CLN') confidence = partial ? 'MEDIUM' : 'HIGH';
  else confidence = 'MEDIUM';

  return { verdict, ownVerdict: own, score, spamScore, partial, confidence, decisions };
}
