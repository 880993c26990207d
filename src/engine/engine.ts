/**
 * The engine scans one submitted object: identifies it, runs the scanners that accept it (each
 * bounded in time, failures turned into evidence), scans the children they emit as objects of
 * their own (bounded by depth, count, bytes and the submission's time budget), and applies
 * the verdict rules bottom-up. It knows nothing of HTTP, storage or queues.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Limits } from '../config/schema.ts';
import { DETECT_HEAD_BYTES, detectType } from '../scanners/file-type.ts';
import { digestBuffer, SplitHasher, type Digests } from '../scanners/hashes.ts';
import {
  EngineUnavailableError,
  type ChildRefusal,
  type ChildSpec,
  type Finding,
  type Relation,
  type RequestOptions,
  type SampleInfo,
  type ScanInput,
  type Scanner,
} from '../scanners/types.ts';
import { decide, type EvidenceItem, type Outcome, type Policy } from '../verdict/rules.ts';
import { inputFromBuffer, inputFromFile } from './input.ts';
import type { EngineRun, ObjectReport } from './report.ts';

export interface ActiveScanner {
  scanner: Scanner<any>;
  state: unknown;
}

export interface EngineOptions {
  limits: Limits;
  policy: Policy;
  log: Logger;
  /** Parent folder of each scan's private temporary folder. */
  tmpRoot?: string;
  /** Called after every scanner run (metrics). */
  onRun?: (run: EngineRun) => void;
}

export interface ScanRequest {
  options: RequestOptions;
  /** Aborts the whole scan (shutdown): the engine throws and the job is handed back. */
  signal?: AbortSignal;
  /** On the last attempt an unavailable engine becomes evidence instead of a retry. */
  finalAttempt?: boolean;
  log?: Logger;
}

export interface RootFile {
  file: string;
  name: string;
  /** Known digests (from the blob store); computed when absent. */
  digests?: Digests;
}

/** Children spill to disk above this size even when a scanner hands them over in memory. */
const SPILL_BYTES = 1024 * 1024;
/** Root samples up to this size are read into memory once and scanned from there. */
const IN_MEMORY_ROOT_BYTES = 1024 * 1024;

interface PendingChild {
  name: string;
  relation: Relation;
  data?: Buffer;
  file?: string;
  url?: string;
  size: number;
}

interface Budget {
  deadline: number;
  children: number;
  bytes: number;
  tmpDir: string;
  timedOut: boolean;
}

export class ScanAbortedError extends Error {
  override name = 'ScanAbortedError';
}

export class Engine {
  constructor(
    readonly scanners: ActiveScanner[],
    private readonly opts: EngineOptions,
  ) {}

  get limits(): Limits {
    return this.opts.limits;
  }

  async scanFile(root: RootFile, req: ScanRequest): Promise<ObjectReport> {
    return this.withBudget(async (budget) => {
      // A small sample is read once: every scanner then works from memory (no file opened per
      // scanner), and one that wants a path gets the original file.
      if (root.digests && root.digests.size <= IN_MEMORY_ROOT_BYTES) {
        const data = await fsp.readFile(root.file);
        if (data.length === root.digests.size) {
          const info = await identify(root.digests, root.name, 0, data.subarray(0, DETECT_HEAD_BYTES));
          return this.scanObject(inputFromBuffer(info, data, budget.tmpDir, root.file), undefined, budget, req);
        }
      }
      const digests = root.digests ?? (await hashFile(root.file));
      const info = await identify(digests, root.name, 0, await readHead(root.file, digests.size));
      return this.scanObject(inputFromFile(info, root.file), undefined, budget, req);
    });
  }

  async scanBuffer(data: Buffer, name: string, req: ScanRequest): Promise<ObjectReport> {
    return this.withBudget(async (budget) => {
      const info = await identify(digestBuffer(data), name, 0, data.subarray(0, DETECT_HEAD_BYTES));
      return this.scanObject(inputFromBuffer(info, data, budget.tmpDir), undefined, budget, req);
    });
  }

  async scanUrl(url: string, req: ScanRequest): Promise<ObjectReport> {
    return this.withBudget(async (budget) => {
      const info = urlInfo(url, 0);
      return this.scanObject(inputFromBuffer(info, Buffer.from(url), budget.tmpDir), undefined, budget, req);
    });
  }

  private async withBudget(fn: (b: Budget) => Promise<ObjectReport>): Promise<ObjectReport> {
    // Named, not made: most scans write nothing. Whoever writes there creates it (mkdir -p);
    // the temporary root is private to our user.
    const tmpDir = path.join(this.opts.tmpRoot ?? os.tmpdir(), `scan-${crypto.randomUUID()}`);
    const budget: Budget = { deadline: Date.now() + this.opts.limits.scanTimeoutMs, children: 0, bytes: 0, tmpDir, timedOut: false };
    try {
      return await fn(budget);
    } finally {
      await fsp.rm(tmpDir, { recursive: true, force: true });
    }
  }

  private async scanObject(input: ScanInput, relation: Relation | undefined, budget: Budget, req: ScanRequest): Promise<ObjectReport> {
    const { info } = input;
    const log = (req.log ?? this.opts.log).child({ object: info.name, sha256: info.sha256, depth: info.depth });
    const startedAt = Date.now();
    const evidence: EvidenceItem[] = [];
    const attributes: Record<string, unknown> = {};
    const engines: EngineRun[] = [];
    const pending: PendingChild[] = [];
    const limits = this.opts.limits;

    const emitChild = async (child: ChildSpec): Promise<true | ChildRefusal> => {
      if (info.depth + 1 > limits.maxDepth) return discard(child, 'depth');
      if (budget.children >= limits.maxChildren) return discard(child, 'count');
      if (Date.now() > budget.deadline) return discard(child, 'deadline');
      let size = 0;
      if ('data' in child) size = child.data.length;
      else if ('file' in child) size = (await fsp.stat(child.file)).size;
      if (budget.bytes + size > limits.maxTotalExtractedBytes) return discard(child, 'total_bytes');
      budget.children++;
      budget.bytes += size;
      const p: PendingChild = { name: child.name, relation: child.relation, size };
      if ('url' in child) p.url = child.url;
      else if ('file' in child) p.file = child.file;
      else if (child.data.length > SPILL_BYTES) {
        p.file = path.join(budget.tmpDir, `child-${crypto.randomUUID()}`);
        await fsp.mkdir(budget.tmpDir, { recursive: true });
        await fsp.writeFile(p.file, child.data);
      } else p.data = child.data;
      pending.push(p);
      return true;
    };

    const accepted = this.scanners.filter(({ scanner, state }) => {
      try {
        return scanner.accepts(info, state, req.options);
      } catch {
        return false;
      }
    });
    await Promise.all(
      accepted.map(async ({ scanner, state }) => {
        const run = await this.runScanner(scanner, state, input, req, budget, emitChild, log);
        engines.push(run.run);
        for (const f of run.findings) evidence.push(toEvidence(f, scanner));
        Object.assign(attributes, run.attributes);
        this.opts.onRun?.(run.run);
      }),
    );
    engines.sort((a, b) => a.scanner.localeCompare(b.scanner));
    const selfFinishedAt = Date.now();

    const children: ObjectReport[] = [];
    for (const [i, p] of pending.entries()) {
      if (req.signal?.aborted) throw new ScanAbortedError('scan aborted');
      if (Date.now() > budget.deadline) {
        if (!budget.timedOut) {
          evidence.push({ heuristic: 'SCAN_TIMEOUT', scanner: 'engine', layer: 'static', details: `${pending.length - i} contained object(s) not scanned` });
        }
        budget.timedOut = true;
        await cleanup(pending.slice(i));
        break;
      }
      try {
        const childInput = await childToInput(p, info.depth + 1, budget.tmpDir);
        children.push(await this.scanObject(childInput, p.relation, budget, req));
      } finally {
        if (p.file) await fsp.rm(p.file, { force: true });
      }
    }

    if (budget.timedOut && info.depth === 0 && !evidence.some((e) => e.heuristic === 'SCAN_TIMEOUT')) {
      evidence.push({ heuristic: 'SCAN_TIMEOUT', scanner: 'engine', layer: 'static', details: 'the time budget ran out' });
    }
    const outcome: Outcome = decide(evidence, children.map((c) => c.outcome), this.opts.policy);
    return { info, relation, evidence, attributes, engines, outcome, children, startedAt, selfFinishedAt, finishedAt: Date.now() };
  }

  private async runScanner(
    scanner: Scanner<any>,
    state: unknown,
    input: ScanInput,
    req: ScanRequest,
    budget: Budget,
    emitChild: (c: ChildSpec) => Promise<true | ChildRefusal>,
    log: Logger,
  ): Promise<{ run: EngineRun; findings: Finding[]; attributes: Record<string, unknown> }> {
    const started = performance.now();
    const timeoutMs = Math.max(1, Math.min(this.opts.limits.scannerTimeoutMs, budget.deadline - Date.now()));
    const ac = new AbortController();
    const onAbort = () => ac.abort(req.signal?.reason);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const base = { scanner: scanner.name, version: scanner.version, layer: scanner.layer };
    try {
      const result = await Promise.race([
        scanner.scan(
          input,
          { options: req.options, limits: this.opts.limits, signal: ac.signal, deadline: Date.now() + timeoutMs, log: log.child({ scanner: scanner.name }), tmpDir: budget.tmpDir, emitChild },
          state,
        ),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ScannerTimeoutError(timeoutMs)), timeoutMs);
        }),
      ]);
      const findings = result.evidence ?? [];
      return { run: { ...base, status: 'ok', ms: performance.now() - started, findings: findings.length }, findings, attributes: result.attributes ?? {} };
    } catch (e) {
      ac.abort();
      if (req.signal?.aborted) throw new ScanAbortedError('scan aborted');
      if (e instanceof EngineUnavailableError && !req.finalAttempt) throw e;
      const timeout = e instanceof ScannerTimeoutError;
      const message = (e as Error)?.message ?? String(e);
      log.warn({ scanner: scanner.name, err: message }, timeout ? 'scanner timed out' : 'scanner failed');
      const finding: Finding = {
        heuristic: 'ENGINE_ERROR',
        details: `${scanner.name} ${timeout ? 'timed out' : 'failed'}: ${message}`,
        data: { scanner: scanner.name, required: scanner.required === true, timeout, error: message },
      };
      return { run: { ...base, status: timeout ? 'timeout' : 'error', ms: performance.now() - started, error: message, findings: 1 }, findings: [finding], attributes: {} };
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    }
  }
}

class ScannerTimeoutError extends Error {
  constructor(ms: number) {
    super(`no result within ${ms} ms`);
  }
}

function toEvidence(f: Finding, scanner: Scanner<any>): EvidenceItem {
  return { heuristic: f.heuristic, scanner: scanner.name, layer: scanner.layer, details: f.details, data: f.data, score: f.score };
}

async function discard(child: ChildSpec, why: ChildRefusal): Promise<ChildRefusal> {
  if ('file' in child) await fsp.rm(child.file, { force: true });
  return why;
}

async function cleanup(pending: PendingChild[]): Promise<void> {
  for (const p of pending) if (p.file) await fsp.rm(p.file, { force: true });
}

async function childToInput(p: PendingChild, depth: number, tmpDir: string): Promise<ScanInput> {
  if (p.url !== undefined) {
    const info = urlInfo(p.url, depth, p.relation);
    return inputFromBuffer(info, Buffer.from(p.url), tmpDir);
  }
  if (p.data) {
    const info = await identify(digestBuffer(p.data), p.name, depth, p.data.subarray(0, DETECT_HEAD_BYTES), p.relation);
    return inputFromBuffer(info, p.data, tmpDir);
  }
  const digests = await hashFile(p.file!);
  const info = await identify(digests, p.name, depth, await readHead(p.file!, digests.size), p.relation);
  return inputFromFile(info, p.file!);
}

export async function identify(d: Digests, name: string, depth: number, head: Buffer, relation?: Relation): Promise<SampleInfo> {
  const t = detectType(head);
  return { kind: 'file', name, size: d.size, fileType: t.type, mime: t.mime, md5: d.md5, sha1: d.sha1, sha256: d.sha256, sha512: d.sha512, depth, relation };
}

export function urlInfo(url: string, depth: number, relation?: Relation): SampleInfo {
  const d = digestBuffer(Buffer.from(url));
  return { kind: 'url', name: url, size: 0, fileType: 'url', mime: 'text/uri-list', md5: d.md5, sha1: d.sha1, sha256: d.sha256, sha512: d.sha512, url, depth, relation };
}

export async function hashFile(file: string): Promise<Digests> {
  const h = new SplitHasher(); // big files: md5 and sha512 on the helper thread
  try {
    for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) await h.update(chunk as Buffer);
    return await h.digest();
  } catch (e) {
    h.dispose();
    throw e;
  }
}

async function readHead(file: string, size: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size, DETECT_HEAD_BYTES));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
