/**
 * `verdict scan <file|dir|url>...`: runs the engine in this process, without a server or a
 * database. One line per object (verdict, name, strongest evidence), `--json` for one JSON
 * object per line, a progress bar on a terminal when there are many objects.
 * Exit code: 0 all clean, 1 something detected, 2 an error (including an object that could not
 * be scanned).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import type { ConfigInput } from '../config/schema.ts';
import { Engine } from '../engine/engine.ts';
import type { ObjectReport } from '../engine/report.ts';
import { walk } from '../engine/report.ts';
import { initScanners } from '../scanners/index.ts';
import { resolveClamd } from '../engines/clamd-manager.ts';
import { closeSharedBrowsers } from '../net/browser.ts';
import { heuristics } from '../verdict/heuristics.ts';
import { scoreOf } from '../verdict/rules.ts';

interface Target {
  kind: 'file' | 'url';
  value: string;
}

async function* expand(args: string[]): AsyncGenerator<Target | { error: string; value: string }> {
  for (const a of args) {
    if (/^https?:\/\//i.test(a)) {
      yield { kind: 'url', value: a };
      continue;
    }
    let st: fs.Stats;
    try {
      st = await fsp.stat(a);
    } catch (e) {
      yield { error: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message, value: a };
      continue;
    }
    if (st.isDirectory()) {
      for await (const f of walkDir(a)) yield { kind: 'file', value: f };
    } else yield { kind: 'file', value: a };
  }
}

async function* walkDir(dir: string): AsyncGenerator<string> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  entries.sort((x, y) => x.name.localeCompare(y.name));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walkDir(p);
    else if (e.isFile()) yield p;
  }
}

/** The most telling finding of a report tree: highest hard verdict, then highest score. */
export function topEvidence(r: ObjectReport): string {
  let best: { text: string; rank: number } | undefined;
  for (const node of walk(r)) {
    for (const e of node.evidence) {
      const h = heuristics[e.heuristic];
      // ties go to the deepest object: "found in inner/x.exe" says more than "found in the zip"
      const rank = (h.verdict ? 1e9 : 0) + scoreOf(e) + node.info.depth / 1000;
      const where = node === r ? '' : ` in ${node.info.name}`;
      const text = `${h.name}: ${e.details ?? h.description}${where}`;
      if (!best || rank > best.rank) best = { text, rank };
    }
  }
  return best?.text ?? '';
}

export async function runScanCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      password: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      clamd: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length === 0) {
    console.error('usage: verdict scan <file|dir|url>... [--json] [--password P] [--concurrency N] [--clamd off|auto|SOCKET|tcp://H:P]');
    return 2;
  }
  const overrides: ConfigInput = {};
  if (values.clamd) overrides.clamd = values.clamd;
  const base = loadConfig(overrides);
  // The CLI runs its own engines: a managed clamd lives in a private temporary folder so that
  // it never collides with a running `verdict serve` on the same data directory.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-cli-'));
  const config = { ...base, dataDir: tmp, logLevel: 'silent' as const };
  const log = pino({ level: process.env.VERDICT_LOG_LEVEL ?? 'warn' }, pino.destination(2));
  const clamd = await resolveClamd(config, log);
  let worst = 0;
  try {
    const { active } = await initScanners({ config, log, clamd: clamd.endpoint });
    const engine = new Engine(active, { limits: config.limits, policy: { scoreSuspicious: config.scoreSuspicious, scoreMalicious: config.scoreMalicious, scoreLikelySpam: config.scoreLikelySpam, scoreSpam: config.scoreSpam }, log, tmpRoot: tmp });
    const targets: (Target | { error: string; value: string })[] = [];
    for await (const t of expand(positionals)) targets.push(t);
    const tty = process.stderr.isTTY && !values.quiet && targets.length > 1;
    let done = 0;
    const progress = () => {
      if (!tty) return;
      const width = 30;
      const filled = Math.round((done / targets.length) * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${targets.length}`);
    };
    const print = (line: string) => {
      if (tty) process.stderr.write('\r\x1b[K');
      process.stdout.write(line + '\n');
      progress();
    };
    const concurrency = Math.max(1, Number(values.concurrency ?? config.workers) || 1);
    const passwords = [...(values.password ?? []), ...config.archivePasswords];
    let next = 0;
    const worker = async () => {
      while (next < targets.length) {
        const t = targets[next++];
        if ('error' in t) {
          worst = Math.max(worst, 2);
          print(values.json ? JSON.stringify({ object: t.value, error: t.error }) : `ERROR ${t.value}: ${t.error}`);
          done++;
          continue;
        }
        try {
          const req = { options: { passwords }, finalAttempt: true };
          const r = t.kind === 'url' ? await engine.scanUrl(t.value, req) : await engine.scanFile({ file: t.value, name: path.basename(t.value) }, req);
          const v = r.outcome.verdict;
          if (v !== 'CLN') worst = Math.max(worst, 1);
          if (values.json) {
            print(
              JSON.stringify({
                object: t.value,
                verdict: v,
                confidence: r.outcome.confidence,
                partial: r.outcome.partial,
                score: r.outcome.score,
                sha256: r.info.sha256,
                type: r.info.fileType,
                decisions: r.outcome.decisions,
                evidence: [...walk(r)].flatMap((n) => n.evidence.map((e) => ({ object: n.info.name, heuristic: e.heuristic, engine: e.scanner, details: e.details, score: scoreOf(e) }))),
                children: [...walk(r)].length - 1,
              }),
            );
          } else {
            const top = topEvidence(r);
            print(`${v.padEnd(3)} ${t.value}${top ? `  (${top})` : ''}${r.outcome.partial ? '  [partial]' : ''}`);
          }
        } catch (e) {
          worst = Math.max(worst, 2);
          print(values.json ? JSON.stringify({ object: t.value, error: (e as Error).message }) : `ERROR ${t.value}: ${(e as Error).message}`);
        }
        done++;
        progress();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
    if (tty) process.stderr.write('\r\x1b[K');
    return worst;
  } finally {
    await clamd.stop();
    await closeSharedBrowsers();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
