/**
 * Big objects through Debian's `yara` (libyara): the YARA-X binding reads a whole file into
 * memory before scanning it (measured: ~1 GB of heap for a 1 GB file, whatever its mmap
 * setting), so one 5 GB upload would cost 5 GB of RAM. libyara maps the file instead. Same rule
 * files, same matches (rule, tags, metadata, pattern offsets); used from `yaraCliFromBytes`
 * when `/usr/bin/yara` compiles every rule file, else YARA-X keeps scanning everything.
 *
 * Output read (`yara -w -f -N -m -g -L <rules...> <file>`):
 *
 *   Rule_Name [tag1,tag2] [key="text",n=3,flag=true] /path/of/file
 *   0x1c:40:$pattern
 *
 * @example
 * const cli = probeYaraCli(files);                   // undefined: libyara refused a rule file
 * const matches = await scanWithYaraCli(cli!, file, { cwd, signal, deadline, capMs });
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { RuleMatch } from '@litko/yara-x';
import { runTool, type ToolOptions } from './subprocess.ts';

export interface YaraCli {
  binary: string;
  files: string[];
}

/** Patterns kept per rule (the report shows a few; the rest only cost memory). */
const MAX_PATTERNS_PER_RULE = 100;

/** The CLI, when it exists and compiles every one of `files`; undefined otherwise. */
export function probeYaraCli(files: string[], binary = '/usr/bin/yara'): YaraCli | undefined {
  if (!fs.existsSync(binary) || files.length === 0) return undefined;
  const r = spawnSync(binary, ['-w', ...files, '/dev/null'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
  return r.status === 0 ? { binary, files } : undefined;
}

export async function scanWithYaraCli(cli: YaraCli, file: string, opts: Omit<ToolOptions, 'onStdout' | 'maxStdout'>): Promise<RuleMatch[]> {
  const parser = new YaraOutputParser(file);
  const r = await runTool(cli.binary, ['-w', '-f', '-N', '-m', '-g', '-L', ...cli.files, file], {
    ...opts,
    onStdout: async (chunk) => parser.push(chunk),
  });
  if (r.killed) throw new Error(`yara was stopped (${r.killed})`);
  if (r.code !== 0) throw new Error(`yara exited with ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
  return parser.end();
}

/** Line parser for the CLI's output, fed as it arrives (memory bounded by the matches kept). */
export class YaraOutputParser {
  private readonly matches: RuleMatch[] = [];
  private rest = '';

  constructor(private readonly file: string) {}

  push(chunk: Buffer): void {
    const lines = (this.rest + chunk.toString('utf8')).split('\n');
    this.rest = lines.pop() ?? '';
    for (const l of lines) this.line(l);
  }

  end(): RuleMatch[] {
    if (this.rest) this.line(this.rest);
    this.rest = '';
    return this.matches;
  }

  private line(line: string): void {
    if (!line) return;
    const hit = /^0x([0-9a-f]+):(\d+):(\$\S*)$/i.exec(line);
    if (hit) {
      const current = this.matches.at(-1);
      if (current && current.matches.length < MAX_PATTERNS_PER_RULE) {
        current.matches.push({ identifier: hit[3], offset: parseInt(hit[1], 16), length: Number(hit[2]), data: '' } as RuleMatch['matches'][number]);
      }
      return;
    }
    const suffix = ` ${this.file}`;
    if (!line.endsWith(suffix)) return; // not ours (yara prints nothing else on stdout)
    const head = line.slice(0, -suffix.length);
    const m = /^(\S+) \[([^\]]*)\] \[(.*)\]$/s.exec(head);
    if (!m) return;
    const [ns, rule] = m[1].includes(':') ? [m[1].slice(0, m[1].indexOf(':')), m[1].slice(m[1].indexOf(':') + 1)] : ['default', m[1]];
    this.matches.push({
      ruleIdentifier: rule,
      namespace: ns,
      tags: m[2] ? m[2].split(',') : [],
      meta: parseMeta(m[3]),
      matches: [],
    } as unknown as RuleMatch);
  }
}

/** `key="text with \" and ,",n=3,flag=true` → { key: 'text with " and ,', n: 3, flag: true } */
export function parseMeta(s: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) break;
    const key = s.slice(i, eq);
    i = eq + 1;
    let value: string | number | boolean;
    if (s[i] === '"') {
      let v = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) {
          const c = s[i + 1];
          v += c === 'n' ? '\n' : c === 't' ? '\t' : c === 'x' ? String.fromCharCode(parseInt(s.slice(i + 2, i + 4), 16)) : c;
          i += c === 'x' ? 4 : 2;
        } else v += s[i++];
      }
      i++; // closing quote
      value = v;
    } else {
      const end = s.indexOf(',', i);
      const raw = s.slice(i, end < 0 ? s.length : end);
      i += raw.length;
      value = raw === 'true' ? true : raw === 'false' ? false : /^-?\d+$/.test(raw) ? Number(raw) : raw;
    }
    out[key] = value;
    if (s[i] === ',') i++;
  }
  return out;
}
