/** What the engine produces for one submitted object: a tree of examined objects. */
import type { Relation, SampleInfo } from '../scanners/types.ts';
import type { EvidenceItem, Outcome } from '../verdict/rules.ts';

export interface EngineRun {
  scanner: string;
  version: string;
  layer: string;
  status: 'ok' | 'error' | 'timeout' | 'skipped';
  ms: number;
  error?: string;
  /** Number of findings this scanner reported on the object. */
  findings: number;
}

export interface ObjectReport {
  info: SampleInfo;
  relation?: Relation;
  evidence: EvidenceItem[];
  attributes: Record<string, unknown>;
  engines: EngineRun[];
  outcome: Outcome;
  children: ObjectReport[];
  startedAt: number;
  selfFinishedAt: number;
  finishedAt: number;
}

/** Depth-first walk over a report tree. */
export function* walk(r: ObjectReport): Generator<ObjectReport> {
  yield r;
  for (const c of r.children) yield* walk(c);
}
