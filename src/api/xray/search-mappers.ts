/**
 * X-Ray wire shapes of the search area: a scan-search result (the scan-list example's shape),
 * an incidents record (the same with `Scan Id` and `Attachment`) and a SIEM event.
 */
import type { OrgRow, ScanRow } from '../../store/schema.ts';
import type { PageData, TreeData } from '../../service/search-service.ts';
import { blobPath, fullScanId, isoTime, mapEvidence, STATUS_CODES } from './mappers.ts';

export interface ResultContext {
  tree: TreeData;
  orgs: Map<number, OrgRow>;
}

interface Decision {
  name?: string;
  verdict?: string;
  category?: string;
  reason?: string;
}

function decisionsOf(row: ScanRow): Record<string, unknown>[] {
  return (JSON.parse(row.decisions) as Decision[]).map((d) => ({ verdict: d.verdict ?? '', decision_name: d.name ?? '', category: d.category ?? '', reason: d.reason ?? '' }));
}

function firingEngines(row: ScanRow): string[] {
  return (JSON.parse(row.engines) as { name: string; findings: number }[]).filter((e) => e.findings > 0).map((e) => e.name);
}

function attributesOf(row: ScanRow): Record<string, unknown> {
  return JSON.parse(row.attributes) as Record<string, unknown>;
}

function verdictOf(row: ScanRow): string | null {
  return row.status === 'done' ? row.verdict : null;
}

/** One node of the tree as X-Ray lists it under `search_descendants` (the root included). */
function descendantEntry(row: ScanRow): Record<string, unknown> {
  const a = attributesOf(row);
  return {
    scan_id: row.id,
    parent_scan_id: row.parent_id ?? '',
    relation: row.relation,
    verbose_verdict: verdictOf(row),
    verbose_status: STATUS_CODES[row.status],
    verdict_changed_by: row.verdict_changed_by ?? 'System',
    sample_title: row.name,
    sample_type_str: row.kind,
    sample_sha256: row.sha256,
    original_file_name: row.kind === 'file' ? row.name : null,
    original_file_path: row.original_file_path,
    original_type: row.kind === 'url' ? 'url' : row.file_type,
    mime_type: row.mime,
    path: row.kind === 'url' ? row.url : blobPath(row),
    domain: row.domain,
    url_title: row.url_title ?? '',
    url_description: typeof a.description === 'string' ? a.description : '',
    sample_from: row.sample_from ?? '',
    subject: row.subject,
    original_message_id: row.message_id,
    sender_domain: row.sender_domain,
    source_ip: row.sender_ip,
    reply_to: row.reply_to,
    source: row.return_path,
    receiver_domain: row.receiver_domain,
    envelope_to: row.envelope_to,
    scan_layers: JSON.parse(row.layers),
    decisions: decisionsOf(row),
    scan_traces_count: 0,
    group_keys: [],
    upload: null,
    malicious_file_link: null,
    headers: null,
  };
}

/** Names of an email's attachments (direct children related as attachments), or null. */
export function attachmentNames(row: ScanRow, tree: TreeData): string[] | null {
  const names = tree.descendants.filter((d) => d.parent_id === row.id && d.relation === 'attachment').map((d) => d.name);
  return names.length > 0 ? names : null;
}

/** A result of `GET /api/v1/scans/list/` (the scan-list example's fields, plus a few of ours). */
export function searchResult(row: ScanRow, ctx: ResultContext): Record<string, unknown> {
  const org = ctx.orgs.get(row.org_id);
  const parent = org?.parent_id ? ctx.orgs.get(org.parent_id) : undefined;
  const verdict = verdictOf(row);
  const attachments = attachmentNames(row, ctx.tree);
  const requested = row.was_requested_for_investigation === 1;
  return {
    id: row.id,
    full_scan_id: fullScanId(row),
    root_scan_id: '',
    organization_id: row.org_id,
    organization_name: org?.name ?? null,
    organization_display_name: org?.name ?? null,
    parent_organization_name: parent?.name ?? null,
    parent_organization_display_name: parent?.name ?? null,
    organization_is_demo: false,
    origin: row.channel,
    verbose_origin: row.channel,
    sub_origin: row.sub_origin ?? '',
    created_at: isoTime(row.created_at),
    finished_at: isoTime(row.finished_at),
    verdict_changed_at: isoTime(row.verdict_changed_at),
    verbose_status: STATUS_CODES[row.status],
    verdict,
    sub_verdict: row.status === 'done' ? row.sub_verdict : null,
    verbose_verdict: verdict,
    verbose_confidence: row.status === 'done' ? row.confidence : null,
    confidence: row.score,
    verbose_action: row.verbose_action,
    verbose_automation_status: null,
    handle_status: row.handle_status,
    ir_decision: null,
    is_fp: row.is_fp === 1,
    is_fn: row.is_fn === 1,
    marked_as_fp_by: null,
    was_requested_for_investigation: requested,
    root_scan_summary: { is_fn: row.is_fn === 1, was_requested_for_investigation: requested, sub_verdict: row.status === 'done' ? row.sub_verdict : null, verbose_verdict: verdict },
    is_highlighted: row.highlighted === 1,
    highlighted: row.highlighted === 1,
    belongs_to_vip: row.belongs_to_vip === 1,
    max_group_size: row.group_size,
    group_keys: [],
    queued_for_bulk_action: false,
    max_external_bulk_size: 0,
    sample_type_str: row.kind,
    sample_file_type: row.kind === 'url' ? 'url' : row.file_type,
    sample_title: row.name,
    sample_from: row.sample_from ?? '',
    sample_from_type: null,
    sample_to: row.sample_to,
    sample_to_type: null,
    subject: row.subject,
    payload_type: null,
    attachments_names: attachments,
    attachment: null,
    images: [],
    sample: {
      sha256: row.sha256,
      sha1: row.sha1,
      md5: row.md5,
      domain: row.domain,
      path: row.kind === 'url' ? row.url : blobPath(row),
      url_title: row.url_title,
      file_size: row.size,
      headers: null,
      pe_icon_link: null,
      delivery_time: null,
    },
    scan_engines: firingEngines(row),
    scan_layers: JSON.parse(row.layers),
    decisions: decisionsOf(row),
    evidence: ctx.tree.evidence.map((e) => mapEvidence(e, row.id)),
    search_descendants: [row, ...ctx.tree.descendants].map(descendantEntry),
  };
}

/** A record of `GET /api/v1/scans/incidents/`: the search result with `Scan Id` and `Attachment`. */
export function incidentRecord(row: ScanRow, ctx: ResultContext): Record<string, unknown> {
  const names = attachmentNames(row, ctx.tree);
  return { 'Scan Id': row.id, Attachment: names ? names.join(', ') : null, ...searchResult(row, ctx) };
}

/** An event of `GET /api/get_siem_logs/`: flat fields a SIEM indexes, `timestamp` in epoch seconds. */
export function siemEvent(row: ScanRow, ctx: ResultContext): Record<string, unknown> {
  const org = ctx.orgs.get(row.org_id);
  const findings = new Set(ctx.tree.evidence.map((e) => e.heuristic.toLowerCase()));
  return {
    timestamp: (row.finished_at ?? row.created_at) / 1000,
    scan_id: row.id,
    id: row.id,
    full_scan_id: fullScanId(row),
    organization_id: row.org_id,
    organization_name: org?.name ?? null,
    origin: row.channel,
    created_at: isoTime(row.created_at),
    finished_at: isoTime(row.finished_at),
    verbose_status: STATUS_CODES[row.status],
    verbose_verdict: verdictOf(row),
    sub_verdict: row.status === 'done' ? row.sub_verdict : null,
    verbose_confidence: row.status === 'done' ? row.confidence : null,
    score: row.score,
    partial: row.partial === 1,
    error: row.error,
    sample_type_str: row.kind,
    sample_file_type: row.kind === 'url' ? 'url' : row.file_type,
    sample_title: row.name,
    sha256: row.sha256,
    md5: row.md5,
    file_size: row.size,
    url: row.url,
    domain: row.domain,
    sample_from: row.sample_from,
    sample_to: row.sample_to,
    subject: row.subject,
    message_id: row.message_id,
    source_ip: row.sender_ip,
    verbose_action: row.verbose_action,
    handle_status: row.handle_status,
    attachments_names: attachmentNames(row, ctx.tree),
    is_fp: row.is_fp === 1,
    is_fn: row.is_fn === 1,
    scan_engines: [...new Set([row, ...ctx.tree.descendants].flatMap(firingEngines))].sort(),
    evidence: [...findings].sort(),
    decisions: decisionsOf(row),
    children_count: ctx.tree.descendants.length,
  };
}

/** Maps each row of a page with its loaded tree. */
export function mapPage<T>(page: PageData, fn: (row: ScanRow, ctx: ResultContext) => T): T[] {
  return page.rows.map((row) => fn(row, { tree: page.trees.get(row.id) ?? { descendants: [], evidence: [] }, orgs: page.orgs }));
}
