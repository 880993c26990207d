/**
 * CSS wire shapes built from core results. The one table that maps our verdicts onto CSS's
 * `result` words is RESULTS below; everything else here only reshapes.
 */
import type { EvidenceRow, ScanRow } from '../../store/schema.ts';
import type { ScanTree } from '../../service/scan-service.ts';
import type { ScanOutcome, UploadOutcome } from '../../service/css-service.ts';
import { heuristics, type HeuristicId } from '../../verdict/heuristics.ts';
import type { VerdictCode } from '../../verdict/codes.ts';

export type CssResult = 'Clean' | 'Infected' | 'Error' | 'Unscannable';

/**
 * Our verdict → CSS `result`, for a complete scan and for a partial one (an object, or part of
 * it, that was not fully examined: an encrypted archive no password opened, an engine that
 * failed, a limit that stopped extraction). A scan that failed outright is `Error`.
 *
 * - A partial scan is never `Clean`: it is `Unscannable` unless something was found anyway.
 * - `SUS` is `Infected` (CSS has no "suspicious"; clients quarantine what is not Clean), with
 *   the findings that made it suspicious as its infections.
 * - Spam verdicts (`LSP`, `SPM`) are about mail, not about a file's safety: `Clean`.
 */
export const RESULTS: Record<VerdictCode, { complete: CssResult; partial: CssResult }> = {
  CLN: { complete: 'Clean', partial: 'Unscannable' },
  LSP: { complete: 'Clean', partial: 'Unscannable' },
  SPM: { complete: 'Clean', partial: 'Unscannable' },
  SUS: { complete: 'Infected', partial: 'Unscannable' },
  MAL: { complete: 'Infected', partial: 'Infected' },
  BLK: { complete: 'Infected', partial: 'Infected' },
};

export function cssResult(root: ScanRow): CssResult {
  if (root.status === 'error' || !root.verdict) return 'Error';
  const row = RESULTS[root.verdict as VerdictCode];
  if (!row) return 'Error';
  return root.partial ? row.partial : row.complete;
}

/** ISO 8601 UTC, as CSS's `dateScanned`. */
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** "outer.zip/inner/eicar.com" for each object of the tree. */
function pathsOf(tree: ScanTree): Map<number, string> {
  const paths = new Map<number, string>([[tree.root.id, tree.root.name]]);
  for (const d of tree.descendants) paths.set(d.id, `${paths.get(d.parent_id!) ?? tree.root.name}/${d.name}`);
  return paths;
}

function isPartialFinding(e: EvidenceRow): boolean {
  return heuristics[e.heuristic as HeuristicId]?.partial === true;
}

/** Findings that make an object infected or suspicious (what CSS lists as infections). */
function infections(tree: ScanTree, paths: Map<number, string>) {
  return tree.evidence
    .filter((e) => e.category !== 'classification' && !isPartialFinding(e) && (e.verdict === 'MAL' || e.verdict === 'BLK' || e.score > 0))
    .sort((a, b) => (b.verdict === 'MAL' ? 1 : 0) - (a.verdict === 'MAL' ? 1 : 0) || b.score - a.score)
    .map((e) => ({ file: paths.get(e.scan_id) ?? tree.root.name, infection: e.details ?? e.name, engine: e.scanner, heuristic: e.heuristic, score: e.score }));
}

/** Why a scan is not fully examined, in words. */
function incompleteReasons(tree: ScanTree, paths: Map<number, string>): string {
  const reasons = tree.evidence.filter(isPartialFinding).map((e) => `${e.name} (${paths.get(e.scan_id) ?? tree.root.name})${e.details ? `: ${e.details}` : ''}`);
  return `not fully scanned: ${[...new Set(reasons)].join('; ') || 'an engine could not finish'}`;
}

interface EngineEntry {
  name: string;
  status: string;
}

/** The scan result body of `/api/Scan...` and JobStatus. */
export function scanBody(tree: ScanTree, upload?: UploadOutcome): Record<string, unknown> {
  const { root } = tree;
  const result = cssResult(root);
  const paths = pathsOf(tree);
  const engines = JSON.parse(root.engines || '[]') as EngineEntry[];
  const body: Record<string, unknown> = {
    dateScanned: iso(root.finished_at),
    detectedInfections: result === 'Infected' ? infections(tree, paths) : [],
    errorMessage: result === 'Error' ? (root.error ?? 'the scan failed') : result === 'Unscannable' ? incompleteReasons(tree, paths) : null,
    result,
    trueFileType: root.file_type,
    referenceId: String(root.id),
    // extras (clients ignore what they do not know)
    fileName: root.name,
    fileSize: root.size,
    sha256: root.sha256,
    verdict: root.verdict,
    partial: root.partial === 1,
    scanEngines: engines.filter((e) => e.status === 'ok').map((e) => e.name),
    incompleteEngines: engines.filter((e) => e.status !== 'ok' && e.status !== 'skipped').map((e) => e.name),
  };
  if (upload) {
    body.uploadedTo = upload.uploaded ? { storage: upload.storage, bucket: upload.bucket, key: upload.key } : null;
    if (!upload.uploaded) body.uploadSkipped = upload.error ?? `the file is ${result}, not Clean: not uploaded`;
  }
  return body;
}

/** The classification body of `/api/Classify...`: classes found, counts and masked matches. */
export function classifyBody(tree: ScanTree, upload?: UploadOutcome): Record<string, unknown> {
  const paths = pathsOf(tree);
  const byClass = new Map<string, { class: string; name: string; count: number; matches: { file: string; offset: number; masked: string }[] }>();
  for (const e of tree.evidence) {
    if (e.category !== 'classification') continue;
    const data = JSON.parse(e.data) as { class?: string; count?: number; matches?: { offset: number; masked: string }[] };
    const cls = data.class ?? e.heuristic;
    let entry = byClass.get(cls);
    if (!entry) byClass.set(cls, (entry = { class: cls, name: e.name, count: 0, matches: [] }));
    entry.count += data.count ?? 0;
    for (const m of data.matches ?? []) if (entry.matches.length < 100) entry.matches.push({ file: paths.get(e.scan_id) ?? tree.root.name, ...m });
  }
  const classes = [...byClass.values()].sort((a, b) => a.class.localeCompare(b.class));
  const scan = scanBody(tree, upload);
  const total = classes.reduce((s, c) => s + c.count, 0);
  return {
    dateScanned: scan.dateScanned,
    classificationResult: scan.result === 'Error' ? 'Error' : total > 0 ? 'Matched' : 'NoMatches',
    matchedClasses: classes.map((c) => c.class),
    totalMatches: total,
    classes,
    ...Object.fromEntries(Object.entries(scan).filter(([k]) => k !== 'dateScanned')),
  };
}

/** The 202 body while a scan is still running. */
export function pendingBody(scan: ScanRow, jobStatusPath: string): Record<string, unknown> {
  return {
    referenceId: String(scan.id),
    status: scan.status === 'scanning' ? 'Scanning' : 'Queued',
    jobStatus: `${jobStatusPath}?referenceId=${scan.id}`,
    dateScanned: null,
    detectedInfections: [],
    errorMessage: null,
    result: null,
  };
}

export function outcomeBody(outcome: Extract<ScanOutcome, { state: 'finished' }>, classify: boolean): Record<string, unknown> {
  return classify ? classifyBody(outcome.tree, outcome.upload) : scanBody(outcome.tree, outcome.upload);
}
