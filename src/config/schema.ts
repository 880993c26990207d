/**
 * The one configuration schema. Every option and its default is written here once; README's
 * option table is generated from it (`verdict config --doc`). Environment variables map onto
 * option paths: `limits.maxDepth` ⇐ `VERDICT_LIMITS_MAX_DEPTH`, `dataDir` ⇐ `VERDICT_DATA_DIR`.
 */
import { z } from 'zod';
import os from 'node:os';

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
});
export type Limits = z.infer<typeof limitsSchema>;

export const configSchema = z.object({
  host: z.string().default('127.0.0.1').describe('Address the HTTP API listens on'),
  port: z.coerce.number().int().min(0).max(65535).default(8080).describe('Port of the HTTP API (0 picks a free one)'),
  publicUrl: z.string().optional().describe('Base URL clients use to reach Verdict (for `next` links); defaults to the request\'s Host'),
  dataDir: z.string().default('./data').describe('Folder for the SQLite database, blobs, clamd files and temporary files'),
  adminToken: z.string().min(20).optional().describe('On first start, becomes the administrator token instead of a random one'),
  defaultOrgName: z.string().default('default').describe('Name of the organization created on first start'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
  workers: z.coerce.number().int().min(0).default(os.availableParallelism()).describe('Concurrent scans in this process (0: API only)'),
  jobLeaseMs: z.coerce.number().int().positive().default(60_000).describe('How long a worker holds a job before another may take it over (renewed while scanning)'),
  jobMaxAttempts: z.coerce.number().int().positive().default(5).describe('Attempts before a job whose engine stays unavailable completes as partial'),
  egressAllow: list.default([]).describe('CIDR ranges that URL fetches, download_link and callbacks may reach despite being private/loopback (e.g. 127.0.0.0/8)'),
  egressDeny: list.default([]).describe('Extra CIDR ranges that are always refused'),
  archivePasswords: list.default(['infected', 'malware', 'virus', 'password']).describe('Passwords tried on encrypted archives after the request\'s own'),
  clamd: z.string().default('auto').describe('`auto` (start our own clamd when Debian\'s binary exists), `off`, a unix socket path, or tcp://host:port of an external clamd'),
  clamdBinary: z.string().default('/usr/sbin/clamd').describe('clamd binary used when Verdict manages its own clamd'),
  clamavSystemDbDir: z.string().default('/var/lib/clamav').describe('Folder of freshclam databases loaded into the managed clamd when present'),
  clamdRequired: bool.default(false).describe('Refuse to start when clamd cannot be started or reached'),
  yaraRulesDirs: list.default([]).describe('Extra folders of .yar/.yara rule files compiled with the bundled rules'),
  urlFetch: bool.default(true).describe('Fetch submitted URLs (through the egress guard) and scan their content'),
  maxRequestsPerMinute: z.coerce.number().int().min(0).default(0).describe('Requests per token per minute before 429 with Retry-After (0: no limit; X-Ray\'s service uses 100)'),
  callbackMaxAttempts: z.coerce.number().int().positive().default(12).describe('Callback delivery attempts before giving up'),
  callbackRetryBaseMs: z.coerce.number().int().positive().default(5_000).describe('First delay between callback attempts; doubles each time, capped at one hour'),
  callbackTimeoutMs: z.coerce.number().int().positive().default(10_000).describe('Timeout of one callback delivery'),
  scoreSuspicious: z.coerce.number().int().positive().default(300).describe('Score from which a scan is SUS'),
  scoreMalicious: z.coerce.number().int().positive().default(1000).describe('Score from which a scan is MAL'),
  limits: limitsSchema.default(limitsSchema.parse({})),
});
export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
