/**
 * YARA rules through YARA-X (`@litko/yara-x`): Verdict's bundled rule set (`rules/` at the
 * repository root) plus every `.yar`/`.yara` file under the folders of `yaraRulesDirs`.
 *
 * | rule meta | evidence |
 * | --- | --- |
 * | `test_artefact = true` | `TEST_ARTEFACT` (EICAR...) |
 * | `test_artefact = "spam"` | `TEST_SPAM_ARTEFACT` (GTUBE) |
 * | `severity = "malware"` | `YARA_MALWARE` |
 * | `severity = "suspicious"` | `YARA_SUSPICIOUS` |
 * | `severity = "info"`, other or none | `YARA_INFO` |
 *
 * Details are the rule identifier; data is `{ rule, namespace, tags, meta, file, patterns }`
 * (`file`: the rule file; `patterns`: the first matches, identifier, offset and length).
 *
 * All rule files are compiled at once, as `include`s of one root source, so that the compiler's
 * messages name the file (`/etc/verdict/rules/x.yar:3:28`). A file that does not compile stops
 * `init()` with a `YaraRuleError` naming the file, line and column. Rule identifiers share one
 * namespace: a user rule named like a bundled one is a compile error, not a silent override.
 *
 * Objects up to `IN_MEMORY_SCAN_MAX` are scanned from memory, larger ones from their file
 * (memory-mapped by YARA-X). Scans are synchronous, about 150–200 MB/s with the bundled rules:
 * the binding's `scanAsync`/`scanFileAsync` were measured to hold the event loop just as long
 * (and `scanAsync` costs ~1.5 ms per call), so they buy nothing. Keeping the event loop free
 * while scanning large objects needs worker threads.
 *
 * @example
 * const compiled = compileRules([RULES_DIR, '/etc/verdict/rules']);
 * const matches = compiled.rules.scan(Buffer.from('...'));
 * const evidence = matches.map((m) => findingFor(m, compiled));
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, validate, type RuleMatch, type YaraX } from '@litko/yara-x';
import { probeYaraCli, scanWithYaraCli, type YaraCli } from './yara-cli.ts';
import { withPrivateDir } from './container-extract.ts';
import { YaraPool } from '../engines/yara-pool.ts';
import type { HeuristicId } from '../verdict/heuristics.ts';
import type { Finding, Scanner } from './types.ts';

/** Verdict's bundled rules, at the repository root. */
export const RULES_DIR = fileURLToPath(new URL('../../rules/', import.meta.url));

/** File extensions compiled from a rules folder (compared case-insensitively). */
export const RULE_FILE_EXTENSIONS: readonly string[] = ['.yar', '.yara'];

/** How rules are compiled, here and in the scan threads. */
export const COMPILE_OPTIONS = { relaxedReSyntax: true };

/** Objects up to this size are scanned from memory, larger ones from their file. */
export const IN_MEMORY_SCAN_MAX = 64 * 1024 ** 2;

/**
 * Matches recorded per pattern. Rules only need to know that a pattern matched (or a small
 * count); every match is converted to a JS object by the binding, so an unbounded list on a
 * repetitive file costs time and memory for nothing.
 */
export const MAX_MATCHES_PER_PATTERN = 1000;

/** Pattern matches copied into a finding's data, per rule. */
const MAX_REPORTED_PATTERNS = 10;

/** A rule file that does not compile, or a rules folder or file that cannot be read. */
export class YaraRuleError extends Error {
  override name = 'YaraRuleError';
  readonly code = 'YARA_RULE_INVALID';
  constructor(
    message: string,
    /** The rule file (or folder) at fault. */
    readonly file: string,
    /** The compiler's diagnostic, e.g. `E001`, when the compiler produced one. */
    readonly compilerCode?: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
  }
}

export interface RuleDiagnostic {
  severity: 'error' | 'warning';
  /** The rule file at fault (the folder, when the folder itself could not be read). */
  file: string;
  /** The compiler's code (`E001`, `slow_pattern`...). */
  code?: string;
  line?: number;
  column?: number;
  /** One line: `title: label`. */
  summary: string;
  /** The compiler's full report, source excerpt included. */
  report: string;
}

export interface CompiledRules {
  rules: YaraX;
  /** The rule files compiled, in order (real paths). */
  files: string[];
  /** Compiler warnings (the rules work; the rule author may want to know). */
  warnings: RuleDiagnostic[];
  /** What the sources say of each rule (see `RuleInfo`), by rule identifier. */
  ruleInfo: Map<string, RuleInfo>;
}

export interface RuleInfo {
  /** The rule file that declares the rule. */
  file: string;
  /** Boolean meta values: the binding reports a boolean meta value as the string `"unknown"`. */
  booleanMeta: Record<string, boolean>;
}

/**
 * Every rule file under `entry` (recursive, sorted), or `entry` itself when it is a file.
 * Throws a `YaraRuleError` when `entry` does not exist or cannot be read.
 */
export function listRuleFiles(entry: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(entry);
  } catch (e) {
    throw new YaraRuleError(`YARA rules folder ${entry} cannot be read: ${(e as Error).message}`, entry);
  }
  if (stat.isFile()) return [entry];
  const out: string[] = [];
  const walk = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      throw new YaraRuleError(`YARA rules folder ${dir} cannot be read: ${(e as Error).message}`, dir);
    }
    for (const d of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = path.join(dir, d.name);
      // Symbolic links are followed for files, not for folders (no loops).
      if (d.isDirectory()) walk(p);
      else if (RULE_FILE_EXTENSIONS.includes(path.extname(d.name).toLowerCase()) && (d.isFile() || isFileLink(p))) out.push(p);
    }
  };
  walk(entry);
  return out;
}

function isFileLink(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Compiles every rule file of `entries` (folders, searched recursively, or single files) into
 * one set of rules. Throws a `YaraRuleError` naming the file, line and column of the first
 * error. Pass `RULES_DIR` to include the bundled rules.
 */
export function compileRules(entries: readonly string[]): CompiledRules {
  const { files, sources } = readRuleFiles(entries);
  let rules: YaraX;
  try {
    rules = compile(rootSource(files), COMPILE_OPTIONS);
  } catch (e) {
    const d = diagnosticFrom('error', (e as Error).message, files);
    throw new YaraRuleError(
      `YARA rule file ${d.file} does not compile: ${location(d)}${d.summary}\n${d.report}`,
      d.file,
      d.code,
      d.line,
      d.column,
    );
  }
  rules.setMaxMatchesPerPattern(MAX_MATCHES_PER_PATTERN);
  const warnings = rules.getWarnings().map((w) => diagnosticFrom('warning', w.message, files, w.code));
  const ruleInfo = new Map<string, RuleInfo>();
  sources.forEach((source, n) => {
    for (const [rule, booleanMeta] of declaredRules(source)) ruleInfo.set(rule, { file: files[n], booleanMeta });
  });
  return { rules, files, warnings, ruleInfo };
}

/**
 * Checks rule files without stopping at the first problem (for `verdict rules check`): each
 * file is validated on its own, then all together (which finds clashes between files).
 */
export function checkRules(entries: readonly string[]): { files: string[]; errors: RuleDiagnostic[]; warnings: RuleDiagnostic[] } {
  let files: string[];
  try {
    files = readRuleFiles(entries).files;
  } catch (e) {
    const err = e as YaraRuleError;
    return { files: [], errors: [{ severity: 'error', file: err.file ?? '', summary: err.message, report: err.message }], warnings: [] };
  }
  const errors: RuleDiagnostic[] = [];
  const warnings: RuleDiagnostic[] = [];
  for (const file of files) {
    const r = validate(rootSource([file]), { relaxedReSyntax: true });
    // A file that uses rules of another file does not compile alone: the joint pass below
    // decides for those.
    errors.push(...r.errors.filter((x) => x.code !== 'E009').map((x) => diagnosticFrom('error', x.message, [file], x.code)));
    warnings.push(...r.warnings.map((x) => diagnosticFrom('warning', x.message, [file], x.code)));
  }
  if (errors.length === 0) {
    const r = validate(rootSource(files), { relaxedReSyntax: true });
    errors.push(...r.errors.map((x) => diagnosticFrom('error', x.message, files, x.code)));
  }
  return { files, errors, warnings };
}

function readRuleFiles(entries: readonly string[]): { files: string[]; sources: string[] } {
  const files: string[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    for (const f of listRuleFiles(entry)) {
      let real: string;
      try {
        real = fs.realpathSync(f);
      } catch (e) {
        throw new YaraRuleError(`YARA rule file ${f} cannot be read: ${(e as Error).message}`, f);
      }
      // The same file reached twice (overlapping folders) would be a duplicate-rule error.
      if (!seen.has(real)) {
        seen.add(real);
        files.push(real);
      }
    }
  }
  const sources = files.map((f) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch (e) {
      throw new YaraRuleError(`YARA rule file ${f} cannot be read: ${(e as Error).message}`, f);
    }
  });
  return { files, sources };
}

/** One `include` per file: the compiler then names the file in its messages. */
/** The source that compiles all rule files: one `include` each (also what the thread pool compiles). */
export function rootSource(files: readonly string[]): string {
  return files.map((f) => `include "${f.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n')}"\n`).join('');
}

/**
 * Reads a compiler report such as
 * `error[E001]: syntax error\n --> /r/x.yar:3:8\n  |\n3 | $a = "abc\n  |      ^^^^ unclosed literal string`.
 * A location in the root source (`line:N:M`, e.g. an include not found) names the N-th file.
 */
function diagnosticFrom(severity: RuleDiagnostic['severity'], text: string, files: readonly string[], code?: string): RuleDiagnostic {
  const report = text.replace(/^Compilation error \([^)]*\):\s*/, '');
  const head = /^(?:error|warning)\[([^\]]+)\]:\s*([^\n]*)/m.exec(report);
  const at = /-->\s*(.+):(\d+):(\d+)\s*$/m.exec(report);
  const label = /^\s*\|\s*[\^-]+\s+([^\n]+)/m.exec(report);
  let file = at?.[1] ?? files[0] ?? '';
  let line = at ? Number(at[2]) : undefined;
  let column = at ? Number(at[3]) : undefined;
  if (at && at[1] === 'line') {
    file = files[Math.max(0, Number(at[2]) - 1)] ?? file;
    line = undefined;
    column = undefined;
  }
  const title = head?.[2] ?? report.split('\n')[0] ?? 'compilation failed';
  return {
    severity,
    file,
    code: code ?? head?.[1],
    line,
    column,
    summary: label ? `${title}: ${label[1]}` : title,
    report,
  };
}

function location(d: RuleDiagnostic): string {
  return d.line !== undefined ? `line ${d.line}, column ${d.column}: ` : '';
}

/**
 * The rules a source declares, each with its boolean meta values. Rule headers are found with a
 * pattern; the `meta:` section right after a header is read with a small lexer for
 * `name = value` entries.
 */
export function declaredRules(source: string): Map<string, Record<string, boolean>> {
  const out = new Map<string, Record<string, boolean>>();
  const header = /\brule\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^{]*)?\{(\s*meta\s*:)?/g;
  for (let m = header.exec(source); m; m = header.exec(source)) {
    const bools: Record<string, boolean> = {};
    out.set(m[1], bools);
    let i = header.lastIndex;
    while (m[2]) {
      i = skipBlank(source, i);
      const entry = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*/.exec(source.slice(i, i + 200));
      if (!entry) break;
      i += entry[0].length;
      const rest = source.slice(i, i + 16);
      const bool = /^(true|false)\b/.exec(rest);
      if (bool) {
        bools[entry[1]] = bool[1] === 'true';
        i += bool[0].length;
      } else if (source[i] === '"') {
        i = endOfString(source, i);
      } else {
        const num = /^-?(0x[0-9a-fA-F]+|0o[0-7]+|[0-9.]+(KB|MB)?)/.exec(rest);
        if (!num) break;
        i += num[0].length;
      }
    }
  }
  return out;
}

function skipBlank(s: string, i: number): number {
  for (;;) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (s.startsWith('//', i)) {
      const nl = s.indexOf('\n', i);
      i = nl < 0 ? s.length : nl + 1;
    } else if (s.startsWith('/*', i)) {
      const end = s.indexOf('*/', i + 2);
      i = end < 0 ? s.length : end + 2;
    } else return i;
  }
}

function endOfString(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') j++;
    else if (s[j] === '"') return j + 1;
  }
  return s.length;
}

/** Maps one rule match to a finding (see the table at the top of this file). */
export function findingFor(match: RuleMatch, compiled: Pick<CompiledRules, 'ruleInfo'>): Finding {
  const raw = match.meta as Record<string, unknown>;
  const info = compiled.ruleInfo.get(match.ruleIdentifier);
  const bools = info?.booleanMeta ?? {};
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) meta[k] = v === 'unknown' && k in bools ? bools[k] : v;
  const patterns = match.matches.slice(0, MAX_REPORTED_PATTERNS).map((p) => ({ pattern: p.identifier, offset: p.offset, length: p.length }));
  return {
    heuristic: heuristicFor(meta),
    details: match.ruleIdentifier,
    data: { rule: match.ruleIdentifier, namespace: match.namespace, tags: match.tags, meta, file: info?.file, patterns },
  };
}

function heuristicFor(meta: Record<string, unknown>): HeuristicId {
  const test = meta.test_artefact;
  if (test === 'spam') return 'TEST_SPAM_ARTEFACT';
  if (test === true || test === 'true' || test === 1) return 'TEST_ARTEFACT';
  const severity = typeof meta.severity === 'string' ? meta.severity.toLowerCase() : '';
  if (severity === 'malware' || severity === 'malicious') return 'YARA_MALWARE';
  if (severity === 'suspicious') return 'YARA_SUSPICIOUS';
  return 'YARA_INFO';
}

/** Objects from this size are scanned in a worker thread (when `yaraThreads` > 0). */
export const THREAD_SCAN_MIN = 4 * 1024 ** 2;

export const yaraScanner: Scanner<CompiledRules & { pool?: YaraPool; cli?: YaraCli; cliFrom?: number }> = {
  name: 'yara',
  version: '1',
  layer: 'signatures',
  required: true,

  async init(ictx) {
    const compiled = compileRules([RULES_DIR, ...ictx.config.yaraRulesDirs]);
    for (const w of compiled.warnings) ictx.log.warn({ file: w.file, line: w.line, column: w.column, code: w.code }, `YARA rule warning: ${w.summary}`);
    ictx.log.info({ files: compiled.files.length, userDirs: ictx.config.yaraRulesDirs }, 'YARA rules compiled');
    const threads = ictx.config.yaraThreads;
    const cliFrom = ictx.config.yaraCliFromBytes;
    const cli = cliFrom > 0 ? probeYaraCli(compiled.files) : undefined;
    if (cliFrom > 0 && !cli) ictx.log.warn('Debian\'s yara is missing or refuses a rule file: YARA-X scans big objects too, holding each one whole in memory');
    return { ...compiled, pool: threads > 0 ? new YaraPool(rootSource(compiled.files), COMPILE_OPTIONS, threads) : undefined, cli, cliFrom };
  },

  accepts: (info) => info.kind === 'file',

  async scan(input, ctx, compiled) {
    // huge objects through libyara (memory-mapped, bounded memory); big ones in a worker thread,
    // so the API stays responsive; small ones here (cheaper)
    if (compiled.cli && compiled.cliFrom && input.info.size >= compiled.cliFrom) {
      const cli = compiled.cli;
      const file = await input.path();
      const matches = await withPrivateDir(ctx.tmpDir, 'yara', (cwd) => scanWithYaraCli(cli, file, { cwd, signal: ctx.signal, deadline: ctx.deadline, capMs: ctx.limits.scannerTimeoutMs }));
      return { evidence: matches.map((m) => findingFor(m, compiled)) };
    }
    const matches =
      compiled.pool && input.info.size >= THREAD_SCAN_MIN
        ? await compiled.pool.scanFile(await input.path())
        : input.info.size <= IN_MEMORY_SCAN_MAX
          ? compiled.rules.scan(await input.bytes(IN_MEMORY_SCAN_MAX))
          : compiled.rules.scanFile(await input.path());
    return { evidence: matches.map((m) => findingFor(m, compiled)) };
  },
};
