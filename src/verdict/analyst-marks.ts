/**
 * False-positive and false-negative marks from an analyst's verdict change. The marks compare
 * the analyst's verdict with the one the engines gave (not with the previous analyst verdict),
 * so changing a verdict back to what the engines said clears them.
 *
 * ```ts
 * analystMarks('MAL', 'CLN'); // { isFp: true, isFn: false }: the engines flagged a clean object
 * analystMarks('CLN', 'SPM'); // { isFp: false, isFn: true }: the engines missed spam
 * analystMarks('MAL', 'SUS'); // neither: both are detections
 * ```
 */
import type { VerdictCode } from './codes.ts';

export interface AnalystMarks {
  /** The engines detected something (any verdict but CLN) and the analyst says CLN. */
  isFp: boolean;
  /** The engines said CLN and the analyst says it is a detection. */
  isFn: boolean;
}

export function analystMarks(engineVerdict: VerdictCode | null, analystVerdict: VerdictCode): AnalystMarks {
  if (engineVerdict === null) return { isFp: false, isFn: false };
  return {
    isFp: engineVerdict !== 'CLN' && analystVerdict === 'CLN',
    isFn: engineVerdict === 'CLN' && analystVerdict !== 'CLN',
  };
}
