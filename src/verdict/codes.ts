/** Verdict codes (X-Ray's) and their severity order for rolling child verdicts up. */
export const VERDICT_CODES = ['CLN', 'LSP', 'SPM', 'SUS', 'MAL', 'BLK'] as const;
export type VerdictCode = (typeof VERDICT_CODES)[number];

const severity: Record<VerdictCode, number> = { CLN: 0, LSP: 1, SPM: 2, SUS: 3, MAL: 4, BLK: 5 };

export function isVerdictCode(v: unknown): v is VerdictCode {
  return typeof v === 'string' && (VERDICT_CODES as readonly string[]).includes(v);
}

/** The more severe of two verdicts (BLK, set by policy, wins over everything). */
export function worst(a: VerdictCode, b: VerdictCode): VerdictCode {
  return severity[a] >= severity[b] ? a : b;
}

export function severityOf(v: VerdictCode): number {
  return severity[v];
}

export type Confidence = 'HIGH' | 'MEDIUM' | 'LOW';
