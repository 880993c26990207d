/**
 * X-Ray wire shapes: scan detail, report, completed-job entries, evidence and the callback
 * body, built from core rows. One table maps our statuses onto X-Ray's codes.
 */
import type { ObjectReport } from '../../engine/report.ts';
import { walk } from '../../engine/report.ts';
import { heuristics } from '../../verdict/heuristics.ts';
import type { EvidenceRow, ScanRow } from '../../store/schema.ts';
import type { ScanTree } from '../../service/scan-service.ts';

/** Our scan status → X-Ray `status` / `verbose_status`. */
export const STATUS_CODES: Record<ScanRow['status'], string> = {
  queued: 'QUE',
  scanning: 'SCN',
  done: 'CMP',
  error: 'ERR',
};

/** X-Ray timestamps: naive UTC ISO 8601 with microseconds, as in the specification's examples. */
export function isoTime(ms: number | null | undefined): string | null {
  if (ms === null || ms === undefined) return null;
  return new Date(ms).toISOString().replace('Z', '').replace(/\.(\d{3})$/, '.$1000');
}

/** The long string id form, kept for clients that display it. */
export function fullScanId(row: ScanRow): string {
  const d = new Date(row.created_at).toISOString().slice(0, 10).replace(/-/g, '');
  return `${row.org_id}_${row.root_id ?? row.id}_${row.id}_${d}`;
}

export function blobPath(row: ScanRow): string | null {
  return row.blob_sha256 ? `verdict://blobs/${row.blob_sha256}` : row.url;
}

export function mapEvidence(e: EvidenceRow, rootId: number): Record<string, unknown> {
  const data = JSON.parse(e.data) as Record<string, unknown>;
  return {
    id: e.id,
    scan_id: e.scan_id,
    root_scan_id: rootId,
    name: e.heuristic.toLowerCase(),
    heuristic: e.heuristic,
    title: e.name,
    category: e.category,
    description: e.details ?? e.description,
    verdict: e.verdict ?? '',
    confidence: e.score,
    score: e.score,
    engine: e.scanner,
    layer: e.layer,
    attack: e.attack,
    data: { ...data, evidence_creator_name: e.scanner },
    identifiers: '[]',
    trace_id: '',
    timestamp: e.created_at / 1000,
  };
}

function engines(row: ScanRow): { name: string; layer: string; status: string; ms: number; findings: number; error?: string }[] {
  return JSON.parse(row.engines);
}

/**
 * Screenshots of rendered pages (children with relation `screenshot`) in the tree below the
 * scan. Their bytes are scanned but not kept (`path` is null while children have no blob).
 */
function screenshotImages(root: ScanRow, descendants: ScanRow[]): Record<string, unknown>[] {
  const byId = new Map([root, ...descendants].map((r) => [r.id, r]));
  return descendants
    .filter((d) => d.relation === 'screenshot')
    .map((d) => {
      const page = d.parent_id === null ? undefined : byId.get(d.parent_id);
      return { scan_id: d.id, parent_scan_id: d.parent_id, name: d.name, page_url: page?.final_url ?? page?.url ?? null, sha256: d.sha256, file_type: d.file_type, mime_type: d.mime, file_size: d.size, path: blobPath(d) };
    });
}

function childSummary(row: ScanRow, byParent: Map<number, ScanRow[]>): Record<string, unknown> {
  const kids = byParent.get(row.id) ?? [];
  return {
    verbose_verdict: row.verdict,
    verbose_status: STATUS_CODES[row.status],
    id: row.id,
    sample_title: row.name,
    created_at: isoTime(row.created_at),
    sample_type_str: row.kind,
    sample_file_type: row.kind === 'url' ? 'url' : row.file_type,
    relation: row.relation,
    sample_sha256: row.sha256,
    sample_from: row.sample_from,
    sample_to: row.sample_to,
    payload_type: null,
    organization_id: row.org_id,
    origin: row.channel,
    verbose_origin: row.channel,
    children: kids.map((k) => childSummary(k, byParent)),
    has_mal_children: kids.some((k) => k.verdict === 'MAL' || hasMalBelow(k, byParent)),
    highlighted: false,
  };
}

function hasMalBelow(row: ScanRow, byParent: Map<number, ScanRow[]>): boolean {
  return (byParent.get(row.id) ?? []).some((k) => k.verdict === 'MAL' || hasMalBelow(k, byParent));
}

/** GET /api/v1/scans/list/<id>/ */
export function scanDetail(tree: ScanTree, siblings: ScanRow[]): Record<string, unknown> {
  const { root, descendants, evidence, org } = tree;
  const byParent = new Map<number, ScanRow[]>();
  for (const d of descendants) {
    const list = byParent.get(d.parent_id!) ?? [];
    list.push(d);
    byParent.set(d.parent_id!, list);
  }
  const rootId = root.root_id ?? root.id;
  const own = evidence.filter((e) => e.scan_id === root.id);
  const children = byParent.get(root.id) ?? [];
  const eng = engines(root);
  const attributes = JSON.parse(root.attributes) as Record<string, unknown>;
  const done = root.status === 'done';
  const childFinished = descendants.reduce((m, d) => Math.max(m, d.finished_at ?? 0), 0);
  return {
    id: root.id,
    full_scan_id: fullScanId(root),
    organization: root.org_id,
    organization_id: root.org_id,
    organization_name: org?.name ?? null,
    parent_organization_name: null,
    created_at: isoTime(root.created_at),
    finished_at: isoTime(root.finished_at),
    start_scanning_at: isoTime(root.started_at),
    self_finished_at: isoTime(root.self_finished_at),
    children_finished_at: isoTime(childFinished || root.finished_at),
    verdict_changed_at: isoTime(root.verdict_changed_at),
    verdict: done ? root.verdict : null,
    sub_verdict: done ? root.sub_verdict : null,
    verbose_verdict: done ? root.verdict : null,
    status: STATUS_CODES[root.status],
    verbose_status: STATUS_CODES[root.status],
    verbose_action: root.verbose_action,
    verbose_confidence: done ? root.confidence : null,
    confidence: root.score,
    score: root.score,
    partial: root.partial === 1,
    origin: root.channel,
    verbose_origin: root.channel,
    sub_origin: root.sub_origin ?? '',
    content_type: null,
    object_id: root.id,
    scan_traces: [],
    joesandbox_report: null,
    static_signatures: evidence
      .filter((e) => e.category === 'signatures')
      .map((e) => e.details ?? e.heuristic),
    sample_type_str: root.kind,
    sample_title: root.name,
    sample: {
      id: root.id,
      scan_id: root.id,
      path: blobPath(root),
      file_name: root.kind === 'file' ? root.name : null,
      original_file_path: root.original_file_path,
      md5: root.md5,
      sha1: root.sha1,
      sha256: root.sha256,
      sha512: root.sha512,
      file_size: root.size,
      file_type: root.file_type,
      mime_type: root.mime,
      content_type: root.kind === 'url' ? ((attributes.contentType as string | undefined) ?? null) : root.mime,
      status_code: root.status_code,
      is_redirect: Array.isArray(attributes.redirectChain) ? (attributes.redirectChain as unknown[]).length > 0 : false,
      redirect_chain: attributes.redirectChain ?? [],
      final_url: root.final_url,
      url_title: root.url_title,
      user_agent_string: (JSON.parse(root.options) as { userAgent?: string }).userAgent ?? '',
      click_count: 0,
      origin: root.channel,
      domain: root.domain,
    },
    payload_type: null,
    sample_file_type: root.kind === 'url' ? 'url' : root.file_type,
    parent_scan_id: root.parent_id,
    root_scan_id: root.root_id,
    relation: root.relation,
    original_scan_id: null,
    found_in_cache: false,
    children: children.map((c) => childSummary(c, byParent)),
    has_warnings: root.partial === 1,
    children_warning_types_json: [],
    is_fp: root.is_fp === 1,
    is_fn: root.is_fn === 1,
    has_mal_children: hasMalBelow(root, byParent),
    user_full_name: null,
    summaries: [],
    images: screenshotImages(root, descendants),
    highlighted: false,
    sample_to: root.sample_to,
    sample_from: root.sample_from,
    subject: root.subject,
    message_id: root.message_id,
    sender_ip: root.sender_ip,
    sender_domain: root.sender_domain,
    reply_to: root.reply_to,
    return_path: root.return_path,
    receiver_domain: root.receiver_domain,
    sample_from_type: null,
    sample_to_type: null,
    scan_failures: eng.filter((e) => e.status === 'error' || e.status === 'timeout').map((e) => ({ engine: e.name, status: e.status, error: e.error ?? null })),
    scan_engines: eng.filter((e) => e.findings > 0).map((e) => e.name),
    scan_layers: JSON.parse(root.layers),
    engines: eng,
    decisions: JSON.parse(root.decisions),
    siblings: (root.parent_id === null ? children : siblings).map((s) => ({ sample_sha256: s.sha256, id: s.id, sample_title: s.name })),
    is_root_scan: root.parent_id === null,
    evidence: own.map((e) => mapEvidence(e, rootId)),
    root_evidence: evidence.map((e) => mapEvidence(e, rootId)),
    is_ready_to_viewer: done,
    uploaded_to_elastic: done,
    error: root.error,
  };
}

function reportTree(row: ScanRow, byParent: Map<number, ScanRow[]>): Record<string, unknown> {
  return {
    scan_id: row.id,
    name: row.name,
    type: row.kind,
    file_type: row.file_type,
    relation: row.relation,
    sha256: row.sha256,
    verdict: row.verdict,
    scan_tree: (byParent.get(row.id) ?? []).map((k) => reportTree(k, byParent)),
  };
}

/** GET /api/v1/scans/report/<id> */
export function scanReport(tree: ScanTree, params: Record<string, unknown>): Record<string, unknown> {
  const { root, descendants, evidence } = tree;
  const byParent = new Map<number, ScanRow[]>();
  for (const d of descendants) byParent.set(d.parent_id!, [...(byParent.get(d.parent_id!) ?? []), d]);
  const all = [root, ...descendants];
  const firing = new Set<string>();
  const layers = new Set<string>();
  for (const r of all) {
    for (const e of engines(r)) if (e.findings > 0) firing.add(e.name);
    for (const l of JSON.parse(r.layers) as string[]) layers.add(l);
  }
  return {
    scan_id: root.id,
    timestamp: isoTime(root.finished_at),
    name: root.name,
    type: root.kind,
    verdict: root.status === 'done' ? root.verdict : null,
    status: STATUS_CODES[root.status],
    scan_engines: [...firing].sort(),
    scan_layers: [...layers].sort(),
    scan_tree: (byParent.get(root.id) ?? []).map((k) => reportTree(k, byParent)),
    evidence: evidence.map((e) => mapEvidence(e, root.id)),
    decisions: all.flatMap((r) => (JSON.parse(r.decisions) as Record<string, unknown>[]).map((d) => ({ ...d, scan_id: r.id }))),
    params,
  };
}

export function completedJob(row: ScanRow): Record<string, unknown> {
  const at = isoTime(row.finished_at);
  return { verbose_verdict: row.verdict, created_on_elastic_at: at, id: row.id, _index: `scans.${at?.slice(0, 7)}.write` };
}

/** The Callback API body (POST to callback_url). */
export function callbackBody(scan: ScanRow, report: ObjectReport, params: unknown): Record<string, unknown> {
  const evidence = [...walk(report)].flatMap((node) =>
    node.evidence.map((e) => ({
      Name: e.heuristic.toLowerCase(),
      Description: e.details ?? heuristics[e.heuristic].description,
      Data: { ...(e.data ?? {}), engine: e.scanner, object: node.info.name, sha256: node.info.sha256, heuristic: e.heuristic },
    })),
  );
  return {
    scan_id: scan.id,
    name: scan.name,
    type: scan.kind === 'url' ? 'URL' : 'File',
    path: blobPath(scan),
    verdict: report.outcome.verdict,
    confidence: report.outcome.confidence,
    partial: report.outcome.partial,
    evidence,
    decisions: report.outcome.decisions,
    params: params ?? {},
  };
}
