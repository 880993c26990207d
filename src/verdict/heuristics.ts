/**
 * The heuristics catalogue: every kind of evidence any scanner can report, with its default
 * score. A scan's score is the sum of its own findings' scores; a tree's verdict is the most
 * severe of its objects'. `verdict` marks hard rules that decide regardless of score.
 * `partial` marks findings that mean the object was not fully examined: such an object is
 * never a confident clean.
 */
import type { VerdictCode } from './codes.ts';

export interface Heuristic {
  id: string;
  name: string;
  category: string;
  score: number;
  description: string;
  /** MITRE ATT&CK technique, where one fits. */
  attack?: string;
  /** A hard rule: this finding alone decides at least this verdict. */
  verdict?: VerdictCode;
  /** The object (or part of it) could not be examined. */
  partial?: boolean;
}

const catalogue = {
  // Signatures
  AV_DETECTION: { name: 'Antivirus detection', category: 'signatures', score: 1000, verdict: 'MAL', description: 'ClamAV matched a signature', attack: 'T1204.002' },
  AV_HEURISTIC: { name: 'Antivirus heuristic alert', category: 'signatures', score: 300, description: 'ClamAV raised a heuristic alert (Heuristics.*, e.g. phishing or a broken executable) rather than a signature match' },
  AV_ENCRYPTED: { name: 'Encrypted content not scanned by ClamAV', category: 'signatures', score: 0, partial: true, description: 'ClamAV met an encrypted archive or document (Heuristics.Encrypted.*) and could not look inside it' },
  YARA_MALWARE: { name: 'Malware rule match', category: 'signatures', score: 1000, verdict: 'MAL', description: 'A YARA rule marked as malware matched' },
  YARA_SUSPICIOUS: { name: 'Suspicious rule match', category: 'signatures', score: 300, description: 'A YARA rule marked as suspicious matched' },
  YARA_INFO: { name: 'Informational rule match', category: 'signatures', score: 0, description: 'A YARA rule without a severity matched' },
  TEST_ARTEFACT: { name: 'Antivirus test file', category: 'signatures', score: 1000, verdict: 'MAL', description: 'A standard antivirus test artefact (EICAR, GTUBE...) was found; detected as malicious so that pipelines can be tested end to end' },
  TEST_SPAM_ARTEFACT: { name: 'Spam test message', category: 'signatures', score: 0, verdict: 'SPM', description: 'The GTUBE spam test string was found; detected as spam (not malware) so that mail pipelines can be tested end to end' },
  // Archives
  ARCHIVE_ENCRYPTED: { name: 'Encrypted archive', category: 'archive', score: 50, description: 'The archive is encrypted; it was opened with a supplied or default password' },
  ARCHIVE_ENCRYPTED_UNOPENED: { name: 'Encrypted archive not opened', category: 'archive', score: 300, partial: true, description: 'The archive is encrypted and none of the passwords tried opened it: its content was not scanned', attack: 'T1027.013' },
  ARCHIVE_CORRUPT: { name: 'Corrupt archive', category: 'archive', score: 100, partial: true, description: 'The archive is damaged or truncated; some members may not have been scanned' },
  ARCHIVE_BOMB: { name: 'Decompression bomb', category: 'archive', score: 500, partial: true, description: 'A member expands beyond the allowed compression ratio or size', attack: 'T1499' },
  ARCHIVE_LIMIT: { name: 'Extraction limit reached', category: 'archive', score: 100, partial: true, description: 'Depth, member count, total size or time limit stopped extraction; the rest was not scanned' },
  ARCHIVE_PATH_TRAVERSAL: { name: 'Path traversal member name', category: 'archive', score: 300, description: 'A member name climbs out of the extraction folder (../ or absolute path)', attack: 'T1222' },
  ARCHIVE_SYMLINK: { name: 'Symbolic link member', category: 'archive', score: 50, description: 'The archive holds a symbolic or hard link' },
  ARCHIVE_OVERLAP: { name: 'Overlapping archive entries', category: 'archive', score: 500, description: 'Entries share bytes (a structure used by zip bombs and parser-confusion attacks)' },
  ARCHIVE_DOUBLE_EXTENSION: { name: 'Double extension member', category: 'archive', score: 200, description: 'A member name hides an executable extension behind a document one', attack: 'T1036.007' },
  ARCHIVE_EXECUTABLE_MEMBER: { name: 'Executable in archive', category: 'archive', score: 50, description: 'The archive carries an executable or script' },
  // File type
  TYPE_MISMATCH: { name: 'Extension does not match content', category: 'static', score: 100, description: 'The file name\'s extension disagrees with the detected type', attack: 'T1036.008' },
  EXECUTABLE: { name: 'Executable file', category: 'static', score: 0, description: 'The object is an executable program' },
  EMPTY_FILE: { name: 'Empty file', category: 'static', score: 0, description: 'The object has no content' },
  // URLs
  URL_IP_HOST: { name: 'IP address as host', category: 'url', score: 150, description: 'The URL uses a literal IP address instead of a domain name' },
  URL_USERINFO: { name: 'Credentials in URL', category: 'url', score: 200, description: 'The URL carries user information before the host (user@host), a classic disguise', attack: 'T1036' },
  URL_PUNYCODE: { name: 'Internationalised host', category: 'url', score: 150, description: 'The host uses punycode, which can imitate another domain', attack: 'T1036' },
  URL_SUSPICIOUS_TLD: { name: 'Suspicious top-level domain', category: 'url', score: 100, description: 'The domain is under a TLD widely abused for phishing' },
  URL_LONG: { name: 'Very long URL', category: 'url', score: 50, description: 'The URL is unusually long' },
  URL_MANY_SUBDOMAINS: { name: 'Deep subdomain nesting', category: 'url', score: 100, description: 'The host has many labels, often used to mimic a brand domain' },
  URL_NONSTANDARD_PORT: { name: 'Non-standard port', category: 'url', score: 50, description: 'The URL uses an unusual port' },
  URL_SHORTENER: { name: 'URL shortener', category: 'url', score: 50, description: 'The link goes through a URL-shortening service that hides its destination' },
  URL_EXECUTABLE_DOWNLOAD: { name: 'Executable download', category: 'url', score: 300, description: 'The URL serves an executable or script', attack: 'T1105' },
  URL_REDIRECT_CHAIN: { name: 'Long redirect chain', category: 'url', score: 100, description: 'The URL goes through several redirects' },
  URL_CROSS_DOMAIN_REDIRECT: { name: 'Cross-domain redirect', category: 'url', score: 50, description: 'The URL redirects to another domain' },
  URL_FETCH_FAILED: { name: 'URL could not be fetched', category: 'url', score: 0, partial: true, description: 'The URL\'s content could not be retrieved, so it was judged on its address only' },
  URL_FETCH_REFUSED: { name: 'URL target refused', category: 'url', score: 0, partial: true, description: 'The egress policy refused the URL\'s destination (private, loopback or link-local address)' },
  URL_BLOCKLISTED: { name: 'URL on block list', category: 'policy', score: 0, verdict: 'BLK', description: 'The URL matches an entry of the organization\'s block list' },
  // Engine health
  ENGINE_ERROR: { name: 'Engine failed', category: 'engine', score: 0, partial: true, description: 'A scanner failed or timed out on this object; the result is partial' },
  SCAN_TIMEOUT: { name: 'Scan time budget exhausted', category: 'engine', score: 0, partial: true, description: 'The time budget for the submission ran out before all objects were scanned' },
  NOT_FULLY_SCANNED: { name: 'Not fully scanned', category: 'engine', score: 0, partial: true, description: 'An engine skipped part of the object because of its size limits' },
  UNPARSEABLE: { name: 'Unparseable content', category: 'engine', score: 50, partial: true, description: 'A parser could not read the object as its detected type' },
} as const satisfies Record<string, Omit<Heuristic, 'id'>>;

export type HeuristicId = keyof typeof catalogue;

export const heuristics: Record<HeuristicId, Heuristic> = Object.fromEntries(
  Object.entries(catalogue).map(([id, h]) => [id, { id, ...h }]),
) as Record<HeuristicId, Heuristic>;

export function heuristic(id: HeuristicId): Heuristic {
  return heuristics[id];
}
