/**
 * The one configuration schema. Every option and its default is written here once; README's
 * option table is generated from it (`verdict config --doc`). Environment variables map onto
 * option paths: `limits.maxDepth` ⇐ `VERDICT_LIMITS_MAX_DEPTH`, `dataDir` ⇐ `VERDICT_DATA_DIR`.
 */
import { z } from 'zod';
import os from 'node:os';
import { DEFAULT_SPAM_THRESHOLDS } from '../verdict/spam.ts';

const bytes = z.coerce.number().int().positive();
const list = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  z.array(z.string()),
);
const bool = z.preprocess((v) => {
  if (typeof v !== 'string') return v;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  return v;
}, z.boolean());

/** One named S3-compatible storage (`storages` option). */
export const s3StorageSchema = z.object({
  type: z.literal('s3'),
  endpoint: z.string().url().optional(),
  region: z.string().default('us-east-1'),
  bucket: z.string().min(3),
  accessKeyId: z.string().optional(),
  secretAccessKey: z.string().optional(),
  forcePathStyle: z.boolean().default(false),
  /** Key prefix under which Verdict keeps its own blobs when this storage holds samples. */
  prefix: z.string().default(''),
});
export type S3StorageConfig = z.infer<typeof s3StorageSchema>;
const parseJsonOr = (v: string): unknown => {
  if (v.trim() === '') return {};
  try {
    return JSON.parse(v);
  } catch {
    return v; // refused by the schema with a clear message
  }
};
const storagesSchema = z.preprocess(
  (v) => (typeof v === 'string' ? parseJsonOr(v) : v),
  z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).refine((n) => n !== 'local', 'the name local is Verdict\'s own store'), s3StorageSchema),
);

export const limitsSchema = z.object({
  maxFileSize: bytes.default(2 * 1024 ** 3).describe('Largest object accepted for scanning, in bytes (413 above it)'),
  maxDepth: z.coerce.number().int().min(0).default(8).describe('Deepest level of nested containers unpacked'),
  maxChildren: z.coerce.number().int().min(0).default(10_000).describe('Most child objects extracted from one submission'),
  maxTotalExtractedBytes: bytes.default(4 * 1024 ** 3).describe('Most bytes extracted from one submission, all levels together'),
  maxCompressionRatio: z.coerce.number().positive().default(200).describe('Largest expansion ratio of one member before it counts as a bomb'),
  maxInMemoryChild: bytes.default(16 * 1024 ** 2).describe('Children larger than this are spooled to a temporary file'),
  scanTimeoutMs: z.coerce.number().int().positive().default(300_000).describe('Time budget for one submission, all children included'),
  scannerTimeoutMs: z.coerce.number().int().positive().default(60_000).describe('Time budget for one scanner on one object'),
  urlFetchMaxBytes: bytes.default(32 * 1024 ** 2).describe('Most bytes read from one fetched URL'),
  urlFetchTimeoutMs: z.coerce.number().int().positive().default(15_000).describe('Time budget for fetching one URL, redirects included'),
  urlMaxRedirects: z.coerce.number().int().min(0).default(10).describe('Most redirects followed when fetching a URL'),
  renderTimeoutMs: z.coerce.number().int().positive().default(20_000).describe('Time budget for rendering one URL in Chromium, screenshot included'),
});
export type Limits = z.infer<typeof limitsSchema>;

/** The KATA sensor listener (HTTPS with client certificates) and its limits. */
export const kataSchema = z.object({
  tlsCert: z.string().optional().describe('PEM file of the KATA listener\'s server certificate; the listener starts when tlsCert, tlsKey and clientCa are all set'),
  tlsKey: z.string().optional().describe('PEM file of the KATA listener\'s private key'),
  clientCa: z.string().optional().describe('PEM file of the CA(s) that sign sensors\' client certificates; other certificates are refused in the TLS handshake'),
  host: z.string().optional().describe('Address the KATA listener binds (default: `host`)'),
  port: z.coerce.number().int().min(0).max(65535).default(8443).describe('Port of the KATA listener (0 picks a free one)'),
  maxInFlightPerSensor: z.coerce.number().int().positive().default(100).describe('Scans a KATA sensor may have queued or scanning before its submissions get 429'),
  resultTimeoutMs: z.coerce.number().int().positive().default(3_600_000).describe('A KATA scan not finished this long after submission is reported in state `timeout`'),
});

/** The SMTP email gateway (src/gateway/): Verdict as a filtering relay in front of a mail server. */
export const smtpSchema = z.object({
  enabled: bool.default(false).describe('Run the SMTP gateway listener'),
  host: z.string().optional().describe('Address the SMTP listener binds (default: `host`)'),
  port: z.coerce.number().int().min(0).max(65535).default(2525).describe('Port of the SMTP listener (0 picks a free one)'),
  tlsCert: z.string().optional().describe('PEM file of the certificate offered with STARTTLS (STARTTLS is offered when tlsCert and tlsKey are set)'),
  tlsKey: z.string().optional().describe('PEM file of the STARTTLS private key'),
  maxMessageBytes: bytes.default(50 * 1024 ** 2).describe('Largest message accepted, announced with SIZE (552 above it)'),
  domains: list.default([]).describe('Recipient domains accepted (others get 550: no relaying); `domain=organization` files a domain\'s mail under that organization, otherwise the default one'),
  nextHop: z.string().optional().describe('The mail server that receives delivered and released messages: smtp://host:port (opportunistic STARTTLS) or smtps://host:port (TLS, certificate verified)'),
  deliveryRetryMs: z.coerce.number().int().positive().default(60_000).describe('First delay before retrying a delivery that failed temporarily (4xx, connection refused); doubles each time, capped at one hour'),
  bounceAfterMs: z.coerce.number().int().positive().default(5 * 86_400_000).describe('A message not delivered this long after it was accepted is given up (verbose_action delivery_error)'),
  rejectMalicious: bool.default(false).describe('Wait for the verdict before answering DATA and refuse MAL messages with 550 instead of quarantining them'),
  vipAddresses: list.default([]).describe('Recipient addresses marked VIP (belongs_to_vip): their suspicious mail is quarantined too'),
});

export const configSchema = z.object({
  host: z.string().default('127.0.0.1').describe('Address the HTTP API listens on'),
  port: z.coerce.number().int().min(0).max(65535).default(8080).describe('Port of the HTTP API (0 picks a free one)'),
  publicUrl: z.string().optional().describe('Base URL clients use to reach Verdict (for `next` links); defaults to the request\'s Host'),
  dataDir: z.string().default('./data').describe('Folder for the SQLite database, blobs, clamd files and temporary files'),
  adminToken: z.string().min(20).optional().describe('On first start, becomes the administrator token instead of a random one'),
  defaultOrgName: z.string().default('default').describe('Name of the organization created on first start'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
  workerPort: z.coerce.number().int().min(0).max(65535).default(8081).describe('Port of a `verdict worker` process\'s health, readiness and metrics endpoints (0 picks a free one)'),
  workers: z.coerce.number().int().min(0).default(os.availableParallelism()).describe('Concurrent scans in this process (0: API only)'),
  jobLeaseMs: z.coerce.number().int().positive().default(60_000).describe('How long a worker holds a job before another may take it over (renewed while scanning)'),
  requeueSweepMs: z.coerce.number().int().min(0).default(60_000).describe('Worker processes look this often for accepted scans older than this that have no job (e.g. after Redis lost its data) and queue them again (0: only at start)'),
  jobMaxAttempts: z.coerce.number().int().positive().default(5).describe('Attempts before a job whose engine stays unavailable completes as partial'),
  egressAllow: list.default([]).describe('CIDR ranges that URL fetches, download_link and callbacks may reach despite being private/loopback (e.g. 127.0.0.0/8)'),
  egressDeny: list.default([]).describe('Extra CIDR ranges that are always refused'),
  archivePasswords: list.default(['infected', 'malware', 'virus', 'password']).describe('Passwords tried on encrypted archives and documents (zip, 7z, rar, Office, PDF) after the request\'s own'),
  clamd: z.string().default('auto').describe('`auto` (start our own clamd when Debian\'s binary exists), `off`, a unix socket path, or tcp://host:port of an external clamd'),
  clamdBinary: z.string().default('/usr/sbin/clamd').describe('clamd binary used when Verdict manages its own clamd'),
  clamavSystemDbDir: z.string().default('/var/lib/clamav').describe('Folder of freshclam databases loaded into the managed clamd when present'),
  clamdFileAccess: z
    .enum(['auto', 'path', 'stream'])
    .default('auto')
    .describe('How clamd gets the bytes of a file of 1 MiB or more: `path` (clamd opens the file itself; same host and file system, clamd may read the data folder, and it must alert on its limits with AlertExceedsMax), `stream` (INSTREAM over the socket, any clamd), `auto` (path for the clamd Verdict manages, stream otherwise)'),
  clamdRequired: bool.default(false).describe('Refuse to start when clamd cannot be started or reached'),
  yaraThreads: z.coerce.number().int().min(0).default(Math.min(4, os.availableParallelism())).describe('Worker threads for YARA scans of objects from 4 MB, so a big scan never blocks the API (0: scan on the main thread)'),
  yaraCliFromBytes: z.coerce
    .number()
    .int()
    .min(0)
    .default(64 * 1024 ** 2)
    .describe('Objects from this size are scanned by Debian\'s `yara` (it maps the file; YARA-X would hold it all in memory) when /usr/bin/yara accepts every rule file (0: always YARA-X)'),
  yaraRulesDirs: list.default([]).describe('Extra folders of .yar/.yara rule files compiled with the bundled rules'),
  fetchEmbeddedLinks: bool.default(false).describe('Also fetch URLs found inside scanned objects (links in pages, PDFs, documents, emails); they are always judged by the URL heuristics'),
  urlFetch: bool.default(true).describe('Fetch submitted URLs (through the egress guard) and scan their content'),
  render: z.enum(['auto', 'on', 'off']).default('auto').describe('Render URLs in headless Chromium (screenshot, requests, the DOM scripts built): `auto` when `renderChromium` exists, `on` (start-up fails without it), `off`'),
  renderChromium: z.string().default('/usr/bin/chromium').describe('Chromium executable used to render URLs (Debian package `chromium`)'),
  maxRequestsPerMinute: z.coerce.number().int().min(0).default(100).describe('Requests per token per minute before 429 with Retry-After (0: no limit); an organization\'s `throttle_per_minute` setting overrides it'),
  callbackMaxAttempts: z.coerce.number().int().positive().default(12).describe('Callback delivery attempts before giving up'),
  callbackRetryBaseMs: z.coerce.number().int().positive().default(5_000).describe('First delay between callback attempts; doubles each time, capped at one hour'),
  callbackTimeoutMs: z.coerce.number().int().positive().default(10_000).describe('Timeout of one callback delivery'),
  scoreSuspicious: z.coerce.number().int().positive().default(300).describe('Score from which a scan is SUS'),
  scoreMalicious: z.coerce.number().int().positive().default(1000).describe('Score from which a scan is MAL'),
  scoreLikelySpam: z.coerce.number().int().positive().default(DEFAULT_SPAM_THRESHOLDS.scoreLikelySpam).describe('Spam score (sum of the spam findings, counted apart from the threat score) from which a message is LSP'),
  scoreSpam: z.coerce.number().int().positive().default(DEFAULT_SPAM_THRESHOLDS.scoreSpam).describe('Spam score from which a message is SPM'),
  storages: storagesSchema.default({}).describe('Named S3-compatible storages as JSON: {"archive": {"type": "s3", "endpoint": "https://…", "region": "us-east-1", "bucket": "b", "accessKeyId": "…", "secretAccessKey": "…", "forcePathStyle": true}}; `local` is Verdict\'s own store'),
  blobStorage: z.string().default('local').describe('Where submitted samples are kept: `local` (the data directory) or the name of an S3 storage of `storages` (scale mode)'),
  databaseUrl: z.string().optional().describe('PostgreSQL URL of the metadata database (scale mode), e.g. postgres://verdict@db:5432/verdict; unset: SQLite in the data directory. `DATABASE_URL` also sets it'),
  databasePoolSize: z.coerce.number().int().positive().default(10).describe('PostgreSQL connections per process'),
  queue: z.enum(['embedded', 'bullmq']).default('embedded').describe('Job queue: `embedded` (a table of the metadata database) or `bullmq` (Redis, scale mode; needs `redisUrl`)'),
  redisUrl: z.string().optional().describe('Redis URL (redis://host:6379/0) for the BullMQ queue and the throttling counters shared by all processes. `REDIS_URL` also sets it'),
  redisPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('verdict').describe('Prefix of every Redis key, so several deployments can share one Redis'),
  cssTokenLifetimeS: z.coerce.number().int().positive().default(3600).describe('Lifetime of the access tokens `POST /api/Token` issues, in seconds'),
  cssTokenSecret: z.string().min(32).optional().describe('HS256 key that signs CSS access tokens (default: a random key generated on first start and kept in the data directory)'),
  cssWaitMs: z.coerce.number().int().positive().default(180_000).describe('How long `POST /api/Scan` waits for the verdict before answering 202 with a referenceId'),
  searchCountLimit: z.coerce.number().int().min(1).default(1_000).describe('Scan search, incidents and SIEM pages count matches exactly up to this many; beyond, `count` is this number'),
  incidentsHoldbackMs: z.coerce.number().int().min(0).default(900_000).describe('The incidents feed stops before an unfinished scan younger than this, so a client moving its cursor never skips it'),
  siemDelayMs: z.coerce.number().int().min(0).default(5_000).describe('The SIEM export lists scans that finished at least this long ago, so one still being written is never skipped'),
  limits: limitsSchema.default(limitsSchema.parse({})),
  kata: kataSchema.default(kataSchema.parse({})),
  smtp: smtpSchema.default(smtpSchema.parse({})),
});
export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
