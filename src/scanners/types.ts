/**
 * The scanner contract. A scanner is one file exporting one `Scanner` object; the engine
 * decides when it runs, bounds its time, and turns what it returns into evidence and child
 * scans. Scanners never decide a verdict, never touch the store, and keep no state between
 * calls (one-time setup such as compiled rules lives in what `init()` returns).
 *
 * @example
 * export const helloScanner: Scanner = {
 *   name: 'hello', version: '1', layer: 'static',
 *   accepts: (info) => info.kind === 'file',
 *   async scan(input, ctx) {
 *     const head = await input.head(5);
 *     return head.toString() === 'hello' ? { evidence: [{ heuristic: 'TEST_HELLO' }] } : {};
 *   },
 * };
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { HeuristicId } from '../verdict/heuristics.ts';
import type { Config, Limits } from '../config/schema.ts';
import type { ClamdEndpoint } from '../engines/clamd-client.ts';

export type Layer =
  | 'static'
  | 'signatures'
  | 'archive'
  | 'document'
  | 'email'
  | 'url'
  | 'classification';

/** What the engine knows about an object before the scanners run. */
export interface SampleInfo {
  kind: 'file' | 'url';
  /** File name as submitted (never trusted for type detection). */
  name: string;
  size: number;
  /** Detected type id from magic bytes, e.g. `zip`, `gzip`, `pe`, `text`, `unknown`. */
  fileType: string;
  /** Detected MIME type. */
  mime: string;
  md5: string;
  sha1: string;
  sha256: string;
  sha512: string;
  /** For URL objects: the URL. */
  url?: string;
  /** 0 for the submitted object, +1 for each level of extraction. */
  depth: number;
  /** How this object relates to its parent (absent at the root). */
  relation?: Relation;
}

/** Read access to the object's bytes. Large objects live on disk; use `path()` for random access. */
export interface ScanInput {
  info: SampleInfo;
  /** A fresh stream of the whole content. */
  stream(): Readable;
  /** A path to a file holding the content (created on demand for in-memory objects). */
  path(): Promise<string>;
  /** The whole content in memory; refuse (throw) above `maxBytes`. */
  bytes(maxBytes?: number): Promise<Buffer>;
  /** The first `n` bytes. */
  head(n: number): Promise<Buffer>;
}

export type Relation =
  | 'archive_member'
  | 'decompressed'
  | 'attachment'
  | 'embedded_object'
  | 'link'
  | 'redirect_target'
  | 'fetched_content'
  | 'script'
  | 'macro'
  /** A picture of a rendered page (src/scanners/render.ts); listed in the scan's `images`. */
  | 'screenshot';

/** A child object found inside the one being scanned. */
export type ChildSpec =
  | { name: string; relation: Relation; data: Buffer; meta?: Record<string, unknown> }
  /** A file the scanner wrote under `ctx.tmpDir`; the engine takes ownership and deletes it. */
  | { name: string; relation: Relation; file: string; meta?: Record<string, unknown> }
  | { name: string; relation: Relation; url: string; meta?: Record<string, unknown> };

/** Why `emitChild` refused a child. The scanner records it as evidence if it wants. */
export type ChildRefusal = 'depth' | 'count' | 'total_bytes' | 'deadline';

/** One finding. `heuristic` names an entry of the catalogue in src/verdict/heuristics.ts. */
export interface Finding {
  heuristic: HeuristicId;
  /** Human-readable detail, e.g. the signature name. */
  details?: string;
  /** Structured data (threat name, offsets, member name...). */
  data?: Record<string, unknown>;
  /** Overrides the catalogue's score for this finding (rarely needed). */
  score?: number;
}

export interface ScanResult {
  evidence?: Finding[];
  /** Facts about the object that are not findings (e.g. URL title, status code, final URL). */
  attributes?: Record<string, unknown>;
}

/** Per-request options that scanners may read. */
export interface RequestOptions {
  /** Passwords to try on encrypted containers, the request's own first. */
  passwords: string[];
  userAgent?: string;
  userLocation?: string;
  /** Run data classification (PII and secrets) on text objects (CSS `/api/Classify...`). */
  classify?: boolean;
}

export interface ScanContext {
  options: RequestOptions;
  limits: Limits;
  signal: AbortSignal;
  /** Epoch ms after which the scanner must give up. */
  deadline: number;
  log: Logger;
  /** A private temporary directory for this scan; removed by the engine afterwards. */
  tmpDir: string;
  /**
   * Hands a child object to the engine. Resolves `true` when accepted; a refusal names the
   * limit that stopped it, and the scanner should stop emitting (and report it).
   */
  emitChild(child: ChildSpec): Promise<true | ChildRefusal>;
}

/** What `init()` receives: the configuration and the shared engine endpoints. */
export interface ScannerInitContext {
  config: Config;
  log: Logger;
  /** The clamd to talk to, when one is configured or managed (absent: ClamAV is off). */
  clamd?: ClamdEndpoint;
}

/** Thrown by `init()` to leave a scanner out (e.g. no clamd); the reason shows in the health check. */
export class ScannerDisabled extends Error {
  override name = 'ScannerDisabled';
}

/**
 * Raised by a scanner when a dependency it needs is unavailable (clamd down, ...). The job is
 * retried later; it is never turned into a clean result.
 */
export class EngineUnavailableError extends Error {
  override name = 'EngineUnavailableError';
  constructor(
    readonly engine: string,
    message: string,
  ) {
    super(`${engine}: ${message}`);
  }
}

export interface Scanner<State = unknown> {
  name: string;
  version: string;
  layer: Layer;
  /**
   * When true, a failure of this scanner makes the result partial and the verdict can never
   * be a confident clean.
   */
  required?: boolean;
  /** One-time setup (compile rules, connect); its result is passed to every `scan()`. */
  init?(ictx: ScannerInitContext): Promise<State>;
  /** `options` are the request's, for scanners that run only when asked (classification). */
  accepts(info: SampleInfo, state: State, options?: RequestOptions): boolean;
  scan(input: ScanInput, ctx: ScanContext, state: State): Promise<ScanResult>;
}
