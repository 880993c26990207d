/**
 * Table types for Kysely. Columns are portable between SQLite and PostgreSQL: integers,
 * text, real; booleans are stored as 0/1 integers; JSON as text; times as epoch milliseconds
 * (bigint-safe numbers) so ordering and ranges work the same in both dialects.
 */
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

export interface OrganizationsTable {
  id: Generated<number>;
  name: string;
  parent_id: number | null;
  active: number;
  seats: number;
  /** JSON: policy and limits of this organization. */
  settings: string;
  created_at: number;
}

export interface ApiTokensTable {
  id: Generated<number>;
  org_id: number;
  user_id: number | null;
  name: string;
  role: string;
  /** sha256 of the token, hex. The token itself is never stored. */
  token_hash: string;
  /** The first characters of the token, to recognise it in listings. */
  prefix: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface UsersTable {
  id: Generated<number>;
  org_id: number;
  name: string;
  email: string;
  role: string;
  password_hash: string | null;
  active: Generated<number>;
  created_at: number;
  disabled_at: number | null;
}

export interface BlobsTable {
  sha256: string;
  size: number;
  created_at: number;
}

export interface ScansTable {
  id: Generated<number>;
  org_id: number;
  parent_id: number | null;
  root_id: number | null;
  depth: number;
  kind: 'file' | 'url';
  channel: string;
  sub_origin: string | null;
  relation: string | null;
  name: string;
  status: 'queued' | 'scanning' | 'done' | 'error';
  verdict: string | null;
  sub_verdict: string | null;
  /** The verdict of this object alone, before children are rolled up. */
  own_verdict: string | null;
  confidence: string | null;
  score: Generated<number>;
  partial: Generated<number>;
  is_fp: Generated<number>;
  is_fn: Generated<number>;
  created_at: number;
  started_at: number | null;
  self_finished_at: number | null;
  finished_at: number | null;
  verdict_changed_at: number | null;
  size: number | null;
  md5: string | null;
  sha1: string | null;
  sha256: string | null;
  sha512: string | null;
  file_type: string | null;
  mime: string | null;
  /** sha256 of the stored blob, when the sample is kept. */
  blob_sha256: string | null;
  url: string | null;
  domain: string | null;
  final_url: string | null;
  status_code: number | null;
  url_title: string | null;
  /** JSON: request options (passwords, user agent...). */
  options: Generated<string>;
  /** JSON: {url, headers, params} or null. */
  callback: string | null;
  /** JSON arrays. */
  engines: Generated<string>;
  layers: Generated<string>;
  decisions: Generated<string>;
  attributes: Generated<string>;
  error: string | null;
  request_id: string | null;
  original_file_path: string | null;
  attempts: Generated<number>;
  // 0003: search, analyst and email fields
  sample_from: string | null;
  sample_to: string | null;
  subject: string | null;
  message_id: string | null;
  sender_ip: string | null;
  sender_domain: string | null;
  reply_to: string | null;
  return_path: string | null;
  receiver_domain: string | null;
  envelope_to: string | null;
  to_region: string | null;
  to_country: string | null;
  handle_status: string | null;
  verbose_action: string | null;
  verdict_changed_by: string | null;
  belongs_to_vip: Generated<number>;
  highlighted: Generated<number>;
  was_requested_for_investigation: Generated<number>;
  group_size: Generated<number>;
}

export interface EvidenceTable {
  id: Generated<number>;
  scan_id: number;
  root_id: number;
  heuristic: string;
  name: string;
  category: string;
  scanner: string;
  layer: string;
  description: string;
  details: string | null;
  score: number;
  verdict: string | null;
  attack: string | null;
  /** JSON */
  data: string;
  created_at: number;
}

export interface JobsTable {
  id: Generated<number>;
  scan_id: number;
  state: 'waiting' | 'active' | 'done' | 'failed';
  attempts: number;
  run_at: number;
  locked_by: string | null;
  locked_until: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface CallbacksTable {
  id: Generated<number>;
  scan_id: number;
  org_id: number;
  url: string;
  /** JSON */
  headers: string;
  /** JSON body as sent */
  body: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

// 0004: analyst actions
export interface VerdictChangesTable {
  id: Generated<number>;
  scan_id: number;
  /** The scan's organization. */
  org_id: number;
  actor_org_id: number;
  actor_token_id: number | null;
  actor_user_id: number | null;
  /** Who, as shown to users: `Name <email>` for a user's token, `token <name>` otherwise. */
  actor: string;
  kind: 'analyst' | 'quarantine_release';
  old_verdict: string | null;
  new_verdict: string;
  engine_verdict: string | null;
  comment: string | null;
  is_fp: Generated<number>;
  is_fn: Generated<number>;
  created_at: number;
}

export interface InvestigationRequestsTable {
  id: Generated<number>;
  scan_id: number;
  org_id: number;
  actor_org_id: number;
  actor_token_id: number | null;
  actor_user_id: number | null;
  actor: string;
  option: string;
  comment: string | null;
  callback_id: number | null;
  created_at: number;
}

export interface QuarantineItemsTable {
  scan_id: number;
  org_id: number;
  state: 'quarantined' | 'releasing' | 'released';
  reason: string | null;
  quarantined_by: string;
  quarantined_at: number;
  claimed_at: number | null;
  released_at: number | null;
  released_by: string | null;
  released_by_token_id: number | null;
  marked_clean: Generated<number>;
  release_detail: string | null;
  release_attempts: Generated<number>;
}

export interface KataSensorsTable {
  id: Generated<number>;
  /** The sensorId the external system sends in the URL. */
  sensor_id: string;
  /** null while the integration request is pending. */
  org_id: number | null;
  state: 'pending' | 'approved' | 'rejected';
  /** SHA-256 of the client certificate seen at first contact, lowercase hex. */
  cert_fingerprint: string;
  cert_subject: string | null;
  /** JSON array of sensorInstanceId values seen. */
  instance_ids: Generated<string>;
  first_address: string | null;
  created_at: number;
  last_seen_at: number | null;
  decided_by: string | null;
  decided_at: number | null;
}

export interface KataScansTable {
  id: Generated<number>;
  sensor_row_id: number;
  client_scan_id: string | null;
  instance_id: string | null;
  scan_id: number;
  created_at: number;
}

/** 0005: allow/block list entries (one table for every list and target). */
export interface ListEntriesTable {
  id: Generated<number>;
  /** The owner organization: the entry applies to its scans and its descendants'. */
  org_id: number;
  list_type: 'blacklist' | 'whitelist';
  target: 'email' | 'ip' | 'url' | 'hash' | 'domain';
  /** As entered (trimmed). */
  value: string;
  /** Comparable form (src/service/list-values.ts). */
  norm: string;
  /** Lookup key: sha256, address, host, domain, IP, or `*cidr`. */
  match_key: string;
  /** URL entries: 1 = the whole URL must be equal, 0 = prefix. */
  exact: number;
  comment: string;
  /** "name <email>" of the user, or the organization token's label. */
  created_by: string;
  updated_by: string;
  created_by_token_id: number | null;
  created_at: number;
  updated_at: number;
}

export interface Database {
  organizations: OrganizationsTable;
  api_tokens: ApiTokensTable;
  users: UsersTable;
  blobs: BlobsTable;
  scans: ScansTable;
  evidence: EvidenceTable;
  jobs: JobsTable;
  callbacks: CallbacksTable;
  verdict_changes: VerdictChangesTable;
  investigation_requests: InvestigationRequestsTable;
  quarantine_items: QuarantineItemsTable;
  kata_sensors: KataSensorsTable;
  kata_scans: KataScansTable;
  service_keys: ServiceKeysTable;
  email_deliveries: EmailDeliveriesTable;
  list_entries: ListEntriesTable;
}

export type ScanRow = Selectable<ScansTable>;
export type NewScan = Insertable<ScansTable>;
export type ScanUpdate = Updateable<ScansTable>;
export type EvidenceRow = Selectable<EvidenceTable>;
export type NewEvidence = Insertable<EvidenceTable>;
export type OrgRow = Selectable<OrganizationsTable>;
export type TokenRow = Selectable<ApiTokensTable>;
export type UserRow = Selectable<UsersTable>;
export type JobRow = Selectable<JobsTable>;
export type CallbackRow = Selectable<CallbacksTable>;
export type ListEntryRow = Selectable<ListEntriesTable>;
export type VerdictChangeRow = Selectable<VerdictChangesTable>;
export type InvestigationRequestRow = Selectable<InvestigationRequestsTable>;
export type QuarantineItemRow = Selectable<QuarantineItemsTable>;
export type { ColumnType };
export type KataSensorRow = Selectable<KataSensorsTable>;
export type KataScanMapRow = Selectable<KataScansTable>;

export interface ServiceKeysTable {
  name: string;
  value: string;
  created_at: number;
}

/** 0009: the email gateway's deliveries (src/gateway/delivery.ts). */
export interface EmailDeliveriesTable {
  id: Generated<number>;
  scan_id: number;
  org_id: number;
  /** `message`: an accepted message; `release`: a quarantine release. */
  kind: 'message' | 'release';
  /** MAIL FROM ('' for the null sender). */
  mail_from: string;
  /** JSON array of RCPT TO addresses. */
  rcpt_to: string;
  client_ip: string | null;
  helo: string | null;
  /** scanning → queued → delivered | failed; held: quarantined or refused, nothing to send. */
  state: 'scanning' | 'queued' | 'delivered' | 'held' | 'failed';
  headers: string | null;
  attempts: Generated<number>;
  next_attempt_at: number;
  lease_until: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
}
export type EmailDeliveryRow = Selectable<EmailDeliveriesTable>;
