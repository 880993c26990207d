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
  // Containers opened by external tools (src/scanners/sevenzip.ts, unar.ts, decompress.ts, text-encodings.ts)
  CONTAINER_UNOPENED: { name: 'Container not examined', category: 'archive', score: 0, partial: true, description: 'The object is a container (archive, disk image, installer, compressed stream) that could not be opened: the tool it needs is not installed or the variant is not supported. Its content was not scanned' },
  SFX_ARCHIVE: { name: 'Self-extracting or installer executable', category: 'archive', score: 0, description: 'The executable carries an archive or installer payload (7z, zip, cab, NSIS...) that was extracted and scanned as children' },
  TEXT_ENCODED_FILE: { name: 'Encoded file in text', category: 'static', score: 0, description: 'A text object is or carries a file in BinHex, uuencode or a long base64 block that decodes to a known format; it was decoded and scanned as a child' },
  TEXT_ENCODED_EXECUTABLE: { name: 'Encoded executable in text', category: 'static', score: 150, description: 'A base64 block inside a text object decodes to an executable (PE, ELF, Mach-O...): a way to carry a program past filters', attack: 'T1027' },
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
  URL_LOOKALIKE_DOMAIN: { name: 'Look-alike domain', category: 'url', score: 300, description: 'The host imitates a well-known brand\'s domain (look-alike characters, a one-letter typo, or the brand\'s name inside another domain)', attack: 'T1583.001' },
  URL_BRAND_IN_SUBDOMAIN: { name: 'Brand name in a subdomain', category: 'url', score: 200, description: 'A well-known brand\'s domain appears as a subdomain of an unrelated domain (paypal.com.account-check.example)', attack: 'T1036' },
  URL_ENCODED_PATH: { name: 'Heavily encoded URL', category: 'url', score: 50, description: 'Most of the path or query is percent-encoded, or encoded twice, hiding what the link points to', attack: 'T1027' },
  URL_CROSS_DOMAIN_REDIRECT: { name: 'Cross-domain redirect', category: 'url', score: 50, description: 'The URL redirects to another domain' },
  URL_FETCH_FAILED: { name: 'URL could not be fetched', category: 'url', score: 0, partial: true, description: 'The URL\'s content could not be retrieved, so it was judged on its address only' },
  URL_FETCH_REFUSED: { name: 'URL target refused', category: 'url', score: 0, partial: true, description: 'The egress policy refused the URL\'s destination (private, loopback or link-local address)' },
  // Allow/block lists (src/verdict/lists.ts)
  LIST_BLOCKED: { name: 'Block list hit', category: 'policy', score: 0, verdict: 'BLK', description: 'The submission, something inside it or something it leads to matches an entry of the organization\'s block list' },
  LIST_ALLOWED: { name: 'Allow list hit', category: 'policy', score: 0, description: 'The submission matches an entry of the organization\'s allow list (data.applied says whether it cleared the verdict)' },
  // Engine health
  ENGINE_ERROR: { name: 'Engine failed', category: 'engine', score: 0, partial: true, description: 'A scanner failed or timed out on this object; the result is partial' },
  SCAN_TIMEOUT: { name: 'Scan time budget exhausted', category: 'engine', score: 0, partial: true, description: 'The time budget for the submission ran out before all objects were scanned' },
  NOT_FULLY_SCANNED: { name: 'Not fully scanned', category: 'engine', score: 0, partial: true, description: 'An engine skipped part of the object because of its size limits' },
  UNPARSEABLE: { name: 'Unparseable content', category: 'engine', score: 50, partial: true, description: 'A parser could not read the object as its detected type' },
  // Data classification (src/scanners/classification.ts): facts about the content, not threats
  CLASSIFIED_PAYMENT_CARD: { name: 'Payment card numbers', category: 'classification', score: 0, description: 'Payment card numbers (issuer range and Luhn checksum valid)' },
  CLASSIFIED_IBAN: { name: 'Bank account numbers (IBAN)', category: 'classification', score: 0, description: 'International bank account numbers (country length and mod-97 checksum valid)' },
  CLASSIFIED_US_SSN: { name: 'US social security numbers', category: 'classification', score: 0, description: 'US social security numbers (area, group and serial rules valid)' },
  CLASSIFIED_EMAIL: { name: 'E-mail addresses', category: 'classification', score: 0, description: 'E-mail addresses' },
  CLASSIFIED_PHONE: { name: 'Phone numbers', category: 'classification', score: 0, description: 'Phone numbers in international (E.164) or North American form' },
  CLASSIFIED_CLOUD_CREDENTIAL: { name: 'Cloud credentials', category: 'classification', score: 0, description: 'Cloud and service credentials: AWS access and secret keys, Google API keys, GCP service-account keys, Azure storage keys, GitHub, GitLab and Slack tokens' },
  CLASSIFIED_PRIVATE_KEY: { name: 'Private keys', category: 'classification', score: 0, description: 'PEM or OpenSSH private keys' },
  CLASSIFIED_JWT: { name: 'JSON web tokens', category: 'classification', score: 0, description: 'JSON web tokens (header decodes to a JOSE header)' },
  // Office and RTF documents (src/scanners/ole.ts, ooxml.ts, rtf.ts, vba.ts). Scores are set so
  // that macros alone stay CLN (50-150), an auto-exec macro with a suspicious call is SUS
  // (50+100+150+200 = 500), and only auto-exec + download + execute reaches MAL (+700 = 1200).
  VBA_MACROS: { name: 'VBA macros', category: 'document', score: 50, description: 'The document carries a VBA project; its modules\' source is extracted and scanned as children' },
  VBA_AUTOEXEC: { name: 'Auto-executing macro', category: 'document', score: 100, description: 'A macro runs by itself when the document is opened or closed (AutoOpen, Document_Open, Workbook_Open, Auto_Open, ActiveX events...)', attack: 'T1204.002' },
  VBA_SUSPICIOUS_CALL: { name: 'Suspicious macro calls', category: 'document', score: 150, description: 'Macro source uses calls that run programs, download, write files or hide strings (Shell, WScript.Shell, URLDownloadToFile, PowerShell, ADODB.Stream, Chr() chains...); data.keywords lists them. Only weak ones (CreateObject, Environ, CallByName...) score 50', attack: 'T1059.005' },
  VBA_AUTOEXEC_SUSPICIOUS: { name: 'Auto-executing macro with suspicious calls', category: 'document', score: 200, description: 'An auto-exec trigger and a strong suspicious call in the same project: the pattern of macro droppers (adds to the two findings it combines)', attack: 'T1059.005' },
  VBA_DOWNLOAD_EXECUTE: { name: 'Auto-executing macro downloads and executes', category: 'document', score: 700, description: 'An auto-exec macro both downloads (URLDownloadToFile, XMLHTTP, WebClient...) and executes (Shell, WScript.Shell, PowerShell...): with the findings it implies this reaches MAL', attack: 'T1105' },
  XLM_MACRO_SHEET: { name: 'Excel 4.0 (XLM) macro sheet', category: 'document', score: 300, description: 'The workbook has an Excel 4.0 macro sheet (BIFF8 BOUNDSHEET of type macro, or xl/macrosheets/ in OOXML); rarely used legitimately today and a common malware vector. data.hidden tells hidden sheets', attack: 'T1059' },
  DDE_FIELD: { name: 'DDE field', category: 'document', score: 400, description: 'The document has a DDE or DDEAUTO field (Word field code or Excel ddeLink) that can launch a program when the document opens', attack: 'T1559.002' },
  DOC_EMBEDDED_OBJECT: { name: 'Embedded objects', category: 'document', score: 0, description: 'The document embeds OLE objects; each is extracted and scanned as a child' },
  DOC_EMBEDDED_PACKAGE: { name: 'Embedded package', category: 'document', score: 100, description: 'The document embeds a Packager object (Ole10Native), which carries an arbitrary file the reader can open with a double click', attack: 'T1204.002' },
  DOC_PACKAGE_EXECUTABLE: { name: 'Executable in embedded package', category: 'document', score: 250, description: 'An embedded Packager object carries an executable or script by name (.exe, .js, .vbs, .hta, .lnk...)', attack: 'T1204.002' },
  DOC_EQUATION_EDITOR: { name: 'Equation Editor object', category: 'document', score: 500, description: 'The document embeds a Microsoft Equation 3.0 object (CLSID 0002CE02-0000-0000-C000-000000000046), the component exploited by CVE-2017-11882 and CVE-2018-0802', attack: 'T1203' },
  DOC_OLE2LINK: { name: 'Linked OLE object (OLE2Link)', category: 'document', score: 500, description: 'The document holds an OLE2Link (StdOleLink) object or an automatic link, the mechanism of CVE-2017-0199 that fetches and runs remote content on open', attack: 'T1203' },
  OOXML_EXTERNAL_REL: { name: 'External relationship to a remote target', category: 'document', score: 400, description: 'An OOXML relationship with TargetMode="External" loads a remote template, OLE object, frame or sub-document (remote template injection); local file:/// targets and plain hyperlinks are not counted. The URLs are scanned as children', attack: 'T1221' },
  ENCRYPTED_DOCUMENT: { name: 'Encrypted document not opened', category: 'document', score: 300, partial: true, description: 'The Office document is password-encrypted (EncryptedPackage, Word/Excel legacy encryption) and its content was not scanned', attack: 'T1027.013' },
  DOCUMENT_DECRYPTED: { name: 'Encrypted document opened', category: 'document', score: 50, description: 'The Office document is password-encrypted (OOXML Agile or Standard encryption); it was opened with a supplied or default password and its content is scanned as a child', attack: 'T1027.013' },
  RTF_OBJUPDATE: { name: 'RTF object updated on open', category: 'document', score: 150, description: 'An RTF embedded object carries \\objupdate, which makes Word load it when the document opens, without user action (used to trigger exploits)', attack: 'T1203' },
  RTF_OBFUSCATION: { name: 'Obfuscated RTF', category: 'document', score: 250, description: 'The RTF hides its structure: control words or junk inside object hex data, very deep group nesting, \\bin runs larger than the file, or an odd hex digit count', attack: 'T1027' },
  // PDF (src/scanners/pdf.ts)
  PDF_JAVASCRIPT: { name: 'PDF JavaScript', category: 'document', score: 150, description: 'The PDF carries JavaScript (/JS, /JavaScript); the scripts are extracted and scanned as children. Forms use it too, so alone it stays below SUS', attack: 'T1059.007' },
  PDF_AUTO_ACTION: { name: 'PDF automatic action', category: 'document', score: 200, description: 'An action that runs without a click (/OpenAction, or a page/document/annotation /AA event) leads to JavaScript, Launch, a URI or another document; with JavaScript or Launch it reaches SUS', attack: 'T1204.002' },
  PDF_LAUNCH: { name: 'PDF Launch action', category: 'document', score: 300, description: 'A /Launch action starts a program or opens a file (data.targets; data.executable, data.launchesEmbeddedFile)', attack: 'T1204.002' },
  PDF_EMBEDDED_FILE: { name: 'PDF embedded file', category: 'document', score: 50, description: 'The PDF carries embedded files (/EmbeddedFile); they are extracted and scanned as children', attack: 'T1027.009' },
  PDF_XFA: { name: 'PDF XFA form', category: 'document', score: 50, description: 'The PDF holds an XML Forms Architecture form (/XFA), a surface of past reader exploits', attack: 'T1203' },
  PDF_RICH_MEDIA: { name: 'PDF rich media', category: 'document', score: 100, description: 'The PDF embeds RichMedia (Flash or other player content), a surface of past reader exploits', attack: 'T1203' },
  PDF_NAME_OBFUSCATION: { name: 'PDF name obfuscation', category: 'document', score: 200, description: 'PDF names are written with #xx escapes of letters or digits (/J#61vaScript), which honest writers never do: a way to hide keywords from scanners', attack: 'T1027' },
  PDF_DECRYPTED: { name: 'Encrypted PDF, opened', category: 'document', score: 0, description: 'The PDF is encrypted (often only to restrict editing); the empty or a supplied password opened it and its content was analysed' },
  PDF_ENCRYPTED: { name: 'Encrypted PDF', category: 'document', score: 0, partial: true, description: 'The PDF is encrypted; its structure was analysed but its strings and streams (scripts, embedded files) were not decrypted', attack: 'T1027.013' },
  PDF_MALFORMED: { name: 'Malformed PDF', category: 'document', score: 50, partial: true, description: 'Parts of the PDF could not be read (unterminated streams, undecodable filters, broken object streams, no objects): they may hide content' },
  // Scripts (src/scanners/script.ts)
  SCRIPT_DOWNLOAD_CRADLE: { name: 'Script download cradle', category: 'script', score: 150, description: 'The script downloads content (Net.WebClient, Invoke-WebRequest, BITS, XMLHTTP + ADODB.Stream, certutil -urlcache, curl|sh...); with execution it reaches SUS', attack: 'T1105' },
  SCRIPT_EXECUTION: { name: 'Script executes commands', category: 'script', score: 150, description: 'The script runs code or programs in ways droppers use (Invoke-Expression, WScript.Shell Run/Exec, hidden or policy-bypassing PowerShell, cmd /c from a script host, WMI process creation); data.attack names the language technique', attack: 'T1059' },
  SCRIPT_OBFUSCATION: { name: 'Obfuscated script', category: 'script', score: 150, description: 'The script hides its code: eval of decoded strings, packers, character-code arrays, caret or tick escapes, format-string reordering, encoded VBE/JSE, base64 payloads, high-entropy strings (data.signals)', attack: 'T1027' },
  SCRIPT_ENCODED_COMMAND: { name: 'Encoded PowerShell command', category: 'script', score: 200, description: 'PowerShell is started with -EncodedCommand; the decoded command is scanned as a child script', attack: 'T1059.001' },
  SCRIPT_PERSISTENCE: { name: 'Script installs persistence', category: 'script', score: 100, description: 'The script writes Run keys, creates scheduled tasks, services or WMI event subscriptions, or drops into the Startup folder; data.attack names the technique', attack: 'T1547.001' },
  // HTML (src/scanners/html.ts)
  HTML_CREDENTIAL_FORM: { name: 'Credential form', category: 'phishing', score: 150, description: 'A password input in a local HTML file (attachment, upload) or on a page that sends it to another site', attack: 'T1566.001' },
  HTML_FORM_OFFSITE: { name: 'Credentials posted elsewhere', category: 'phishing', score: 150, description: 'A form with a password input posts to another site than the page\'s own (any remote site for a local file) or to a data:/javascript: URL', attack: 'T1056.003' },
  HTML_BRAND_IMPERSONATION: { name: 'Brand impersonation', category: 'phishing', score: 150, description: 'A page asking for credentials shows a well-known brand (data.brand) in its title, logo or text but is not served from that brand\'s domains', attack: 'T1656' },
  HTML_OBFUSCATED_SCRIPT: { name: 'Obfuscated page script', category: 'phishing', score: 150, description: 'The page\'s scripts hide their code (eval/document.write of atob/unescape, packers, character-code arrays, long encoded blobs)', attack: 'T1027' },
  HTML_REDIRECT: { name: 'Page redirect', category: 'phishing', score: 50, description: 'The page sends the browser elsewhere at once (meta refresh or script navigation)' },
  HTML_DATA_URI: { name: 'data:/blob: navigation', category: 'phishing', score: 100, description: 'Links, frames, forms or redirects lead to data:text/html, data:application/... or blob: URLs, which hide the content from URL filters', attack: 'T1027' },
  HTML_SMUGGLING: { name: 'HTML smuggling', category: 'phishing', score: 250, description: 'A script assembles an embedded payload into a Blob and saves or opens it in the browser; the payload is scanned as a child', attack: 'T1027.006' },
  HTML_HIDDEN_IFRAME: { name: 'Hidden iframe', category: 'phishing', score: 150, description: 'An iframe of 0-1 pixels or styled invisible loads another page', attack: 'T1189' },
  // Rendering in Chromium (src/scanners/render.ts) and QR codes in images (src/scanners/qr.ts)
  RENDER_CLIENT_REDIRECT: { name: 'Scripted redirect to another site', category: 'url', score: 50, description: 'Rendered in a browser, the page sent itself to another site by script or meta refresh rather than an HTTP redirect, which hides the destination from plain fetchers' },
  RENDER_EGRESS_REFUSED: { name: 'Rendered page reached for refused addresses', category: 'url', score: 100, description: 'Rendered in a browser, the page (its resources, redirects or frames) tried to reach destinations the egress policy refuses (private, loopback, link-local or reserved addresses, as router and intranet attacks do). Nothing was sent; data.targets lists them', attack: 'T1189' },
  QR_URL: { name: 'QR code with a link', category: 'phishing', score: 50, description: 'An image carries a QR code that encodes a web address ("quishing": the link escapes text-based filters and is opened on a phone); the URL is scanned as a child', attack: 'T1204.001' },
  // Email (src/scanners/email.ts, outlook-msg.ts, tnef.ts, mbox.ts): sender spoofing and delivery.
  // Authentication failures alone stay below SUS (forwarding and mailing lists break SPF and
  // DKIM); together, or with impersonation, they reach it.
  EMAIL_DISPLAY_NAME_SPOOF: { name: 'Display name impersonation', category: 'email', score: 200, description: 'The From display name shows an e-mail address, a domain or a well-known brand that the sender\'s domain does not own (data.reason, data.claimed)', attack: 'T1656' },
  EMAIL_LOOKALIKE_DOMAIN: { name: 'Look-alike sender domain', category: 'email', score: 300, description: 'The sender\'s domain imitates a well-known brand\'s domain (look-alike characters, one typing error away) without belonging to it; a brand name with extra words scores 150 (data.brand, data.reason)', attack: 'T1583.001' },
  EMAIL_REPLY_TO_MISMATCH: { name: 'Reply-To another domain', category: 'email', score: 100, description: 'Replies go to another domain than the sender\'s, a mark of business e-mail compromise and advance-fee fraud', attack: 'T1566' },
  EMAIL_RETURN_PATH_MISMATCH: { name: 'Envelope sender of another domain', category: 'email', score: 20, description: 'The Return-Path (envelope sender) domain differs from the From domain; mailing services do this routinely, so it weighs little alone' },
  EMAIL_SPF_FAIL: { name: 'SPF failed', category: 'email', score: 75, description: 'The receiving server recorded an SPF fail (softfail scores 30): the sending host is not authorised by the envelope domain', attack: 'T1566' },
  EMAIL_DKIM_FAIL: { name: 'DKIM failed', category: 'email', score: 75, description: 'The receiving server recorded a DKIM signature that did not verify (the message was altered or the signature forged)', attack: 'T1566' },
  EMAIL_DMARC_FAIL: { name: 'DMARC failed', category: 'email', score: 200, description: 'The receiving server recorded a DMARC fail: neither SPF nor DKIM vouch for the From domain', attack: 'T1566' },
  EMAIL_EXECUTABLE_ATTACHMENT: { name: 'Executable attachment', category: 'email', score: 150, description: 'The message carries an executable or script by name (.exe, .js, .vbs, .hta, .lnk, .bat...)', attack: 'T1566.001' },
  EMAIL_ATTACHMENT_DOUBLE_EXTENSION: { name: 'Attachment with a disguised extension', category: 'email', score: 250, description: 'An attachment name hides an executable extension behind a document one (invoice.pdf.exe) or with a right-to-left override', attack: 'T1036.007' },
  // Spam (src/scanners/email.ts). Scored apart from threats: the sum of `spam` findings gives
  // LSP/SPM (policy scoreLikelySpam/scoreSpam) and never SUS/MAL (src/verdict/rules.ts).
  SPAM_BULK_WITHOUT_UNSUBSCRIBE: { name: 'Bulk mail without unsubscribe', category: 'spam', score: 100, description: 'The message declares itself bulk (Precedence: bulk/list/junk, List-Id, Feedback-ID, mass-mailer campaign headers) but offers no List-Unsubscribe header' },
  SPAM_UNSUBSCRIBE_FOREIGN: { name: 'Unsubscribe elsewhere', category: 'spam', score: 30, description: 'List-Unsubscribe points to another domain than the sender\'s, or to an IP address or an unusual scheme' },
  SPAM_LINK_HEAVY: { name: 'Mostly links', category: 'spam', score: 100, description: 'The body is mostly links: fewer than 5 words of text per link (data.links, data.words)' },
  SPAM_PHRASES: { name: 'Spam phrasing', category: 'spam', score: 40, description: 'The subject or body uses phrasing typical of spam (prizes, miracle offers, pills, quick money...); 40 per distinct phrase, at most 240 (data.phrases)' },
  SPAM_SHOUTING_SUBJECT: { name: 'Shouting subject', category: 'spam', score: 60, description: 'The subject is mostly capitals or repeats !, $ or € three times or more' },
  SPAM_HIDDEN_TEXT: { name: 'Hidden text', category: 'spam', score: 100, description: 'The HTML body hides blocks of text (display:none, zero-size or invisible fonts, white on white) to fool content filters' },
  SPAM_IMAGE_ONLY: { name: 'Image-only message', category: 'spam', score: 80, description: 'The HTML body shows images with almost no text, so that filters cannot read it' },
  SPAM_MISSING_HEADERS: { name: 'Missing standard headers', category: 'spam', score: 50, description: 'The message has no Message-ID or no Date header, which mail clients and honest servers always add' },
  SPAM_UNDISCLOSED_RECIPIENTS: { name: 'Undisclosed recipients', category: 'spam', score: 40, description: 'The message names no visible recipient (no To/Cc, or an empty group such as "undisclosed-recipients:;")' },
  // Executables (src/scanners/executable.ts). Import combinations score, single imports never;
  // an ordinary program stays CLN, packing plus injection or download+execute reaches SUS.
  EXEC_MALFORMED: { name: 'Malformed executable', category: 'executable', score: 100, description: 'Executable headers are truncated or inconsistent (data.problems): fields point outside the file, a signature is missing, tables are cut short; loaders and analysers may disagree on such files' },
  EXEC_PACKED: { name: 'Packed executable', category: 'executable', score: 200, description: 'The program is packed or protected by a known tool (data.packer: UPX, ASPack, MPRESS, Themida, VMProtect...), found by section names or markers; the side effects of packing (writable code, odd entry point, tiny import table) are listed in data, not scored again', attack: 'T1027.002' },
  EXEC_CODE_UNEXAMINED: { name: 'Packed or encrypted code not examined', category: 'executable', score: 0, partial: true, description: 'The program\'s code is packed or encrypted and could not be unpacked here (no unpacker, or it failed), so what it really runs was not analysed', attack: 'T1027.002' },
  EXEC_HIGH_ENTROPY: { name: 'Compressed or encrypted code', category: 'executable', score: 150, description: 'A code section (or, with very few imports, any section but resources) has entropy of 7.2 bits per byte or more: compiled code stays well below, packed or encrypted code does not', attack: 'T1027.002' },
  EXEC_ENTRYPOINT_ANOMALY: { name: 'Unusual entry point', category: 'executable', score: 100, description: 'The entry point lies outside every section or executable segment, in the headers, in a writable or non-executable section, or in the last section: where packers and infectors put their stub', attack: 'T1027.002' },
  EXEC_WX_MEMORY: { name: 'Writable and executable memory', category: 'executable', score: 100, description: 'A section or segment is both writable and executable (or the ELF stack is executable): code that rewrites itself, typical of packers and shellcode loaders', attack: 'T1027.002' },
  EXEC_INJECTION_IMPORTS: { name: 'Process injection imports', category: 'executable', score: 200, description: 'The program imports functions to write into another process and run code there (WriteProcessMemory with CreateRemoteThread, QueueUserAPC, SetThreadContext or NtUnmapViewOfSection); debuggers do too, so alone it stays below SUS', attack: 'T1055' },
  EXEC_DOWNLOAD_EXECUTE_IMPORTS: { name: 'Download and execute imports', category: 'executable', score: 100, description: 'The program imports both a download API (URLDownloadToFile, WinINet, WinHTTP) and a way to start programs (ShellExecute, WinExec, CreateProcess): the shape of a downloader, and of many updaters', attack: 'T1105' },
  EXEC_KEYLOGGER_IMPORTS: { name: 'Keyboard capture imports', category: 'executable', score: 100, description: 'The program imports a Windows hook (SetWindowsHookEx) and key state polling (GetAsyncKeyState, GetKeyboardState)', attack: 'T1056.001' },
  EXEC_ANTIDEBUG_IMPORTS: { name: 'Anti-debugging imports', category: 'executable', score: 50, description: 'The program imports functions used to detect or hide from debuggers (CheckRemoteDebuggerPresent, NtSetInformationThread); IsDebuggerPresent alone is in every MSVC runtime and is not counted', attack: 'T1622' },
  EXEC_RANSOM_IMPORTS: { name: 'Encrypt and walk folders imports', category: 'executable', score: 100, description: 'The program imports both bulk encryption (CryptEncrypt, BCryptEncrypt) and folder enumeration (FindFirstFile/FindNextFile): what ransomware needs, and backup tools too', attack: 'T1486' },
  EXEC_DYNAMIC_IMPORTS: { name: 'Minimal import table', category: 'executable', score: 100, description: 'A native Windows program imports nothing, or only a handful of functions including GetProcAddress and LoadLibrary/GetModuleHandle: it resolves what it uses at run time, hiding it from import analysis', attack: 'T1027.007' },
  EXEC_TIMESTAMP_ANOMALY: { name: 'Build time in the future', category: 'executable', score: 50, description: 'The PE build timestamp is in the future and the file does not declare a reproducible build (which stores a hash there)', attack: 'T1070.006' },
  EXEC_OVERLAY: { name: 'Data appended to executable', category: 'executable', score: 0, description: 'Data follows the last section (the Authenticode signature excepted): an installer or self-extracting payload when data.format names an archive format (another scanner unpacks it), otherwise data.size and data.entropy describe it', attack: 'T1027.009' },
  EXEC_EMBEDDED_EXECUTABLE: { name: 'Embedded executable', category: 'executable', score: 100, description: 'A complete PE lies inside a resource or the overlay; it is extracted and scanned as a child (embedded_object)', attack: 'T1027.009' },
  EXEC_MASQUERADE: { name: 'Windows system program name', category: 'executable', score: 200, description: 'The file is named (or its version information claims to be) a Windows system program such as svchost.exe or lsass.exe, but its version information does not name Microsoft', attack: 'T1036.005' },
} as const satisfies Record<string, Omit<Heuristic, 'id'>>;

export type HeuristicId = keyof typeof catalogue;

export const heuristics: Record<HeuristicId, Heuristic> = Object.fromEntries(
  Object.entries(catalogue).map(([id, h]) => [id, { id, ...h }]),
) as Record<HeuristicId, Heuristic>;

export function heuristic(id: HeuristicId): Heuristic {
  return heuristics[id];
}
