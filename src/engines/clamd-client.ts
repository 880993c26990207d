/**
 * A client for clamd's socket protocol (unix socket or TCP), written for Verdict: `z`-prefixed,
 * NUL-terminated commands, one connection per command, INSTREAM with 4-byte big-endian length
 * prefixes and a zero-length terminator. Bytes are streamed with backpressure, so a 2 GB file
 * costs a few chunks of memory, never its size.
 *
 * Errors follow one rule: anything that means "clamd could not be asked" (refused, reset, no
 * socket, timeout, closed without an answer) throws `EngineUnavailableError('clamav', ...)` so
 * the job is retried later and never recorded as clean. An answer from clamd, even an error
 * answer, is returned as data. An aborted `signal` destroys the socket and rejects with the
 * signal's reason.
 *
 * @example
 * const clamd = new ClamdClient(parseClamdEndpoint('/var/run/clamav/clamd.ctl'));
 * await clamd.ping();
 * const r = await clamd.instream(fs.createReadStream('upload.bin'), { signal });
 * if (r.status === 'found') console.log(r.signature); // e.g. "Verdict.Test.EICAR.UNOFFICIAL"
 */
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { EngineUnavailableError } from '../scanners/types.ts';

/** Where a clamd listens: a unix socket path or a TCP host and port. */
export type ClamdEndpoint = { socket: string } | { host: string; port: number };

/** clamd's default TCP port. */
export const CLAMD_DEFAULT_PORT = 3310;

/**
 * Parses the `clamd` option's endpoint forms: a unix socket path (`/run/clamd.sock`,
 * `./clamd.sock`, `unix:/run/clamd.sock`) or `tcp://host:port` (`tcp://[::1]:3310`; the port
 * defaults to 3310). Throws a readable error on anything else.
 */
export function parseClamdEndpoint(s: string): ClamdEndpoint {
  const v = s.trim();
  if (!v) throw new Error('clamd endpoint is empty: expected a unix socket path or tcp://host:port');
  if (/^tcp:\/\//i.test(v)) {
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      throw new Error(`invalid clamd endpoint "${s}": expected tcp://host:port`);
    }
    if (url.pathname.replace(/\/+$/, '') || url.search || url.hash || url.username || url.password) {
      throw new Error(`invalid clamd endpoint "${s}": expected tcp://host:port with nothing after the port`);
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!host) throw new Error(`invalid clamd endpoint "${s}": no host`);
    const port = url.port ? Number(url.port) : CLAMD_DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid clamd endpoint "${s}": bad port`);
    return { host, port };
  }
  if (/^unix:/i.test(v)) {
    const p = v.replace(/^unix:(\/\/)?/i, '');
    if (!p) throw new Error(`invalid clamd endpoint "${s}": no socket path`);
    return { socket: p };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
    throw new Error(`invalid clamd endpoint "${s}": only unix socket paths and tcp://host:port are supported`);
  }
  return { socket: v };
}

/** The endpoint as a string for logs and the health check (`unix:/path` or `tcp://host:port`). */
export function formatClamdEndpoint(e: ClamdEndpoint): string {
  if ('socket' in e) return `unix:${e.socket}`;
  return `tcp://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

export interface ClamdClientOptions {
  /** Time allowed to establish the connection. Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Longest time without any traffic on the connection, in either direction, before giving up.
   * clamd sends nothing while it scans, so this must exceed its longest scan. Default 120 s.
   */
  idleTimeoutMs?: number;
  /** Default INSTREAM chunk size in bytes. Default 256 KiB. */
  chunkSize?: number;
  /** Default `maxBytes` of `instream()`: clamd's StreamMaxLength when it is known. */
  maxStreamBytes?: number;
  /** Scan large files by path (`SCAN`) rather than by stream; unix-socket clamd only. */
  pathAccess?: boolean;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface InstreamOptions extends RequestOptions {
  /** Largest chunk sent in one length-prefixed frame (bigger source chunks are split). */
  chunkSize?: number;
  /**
   * Send at most this many bytes (set it to clamd's `StreamMaxLength`): clamd scans that
   * prefix instead of refusing the whole stream, and the result says `truncated`.
   */
  maxBytes?: number;
}

export interface InstreamResult {
  status: 'clean' | 'found' | 'error';
  /** The signature name clamd reported (status `found`), e.g. `Verdict.Test.EICAR.UNOFFICIAL`. */
  signature?: string;
  /** clamd's reply, without the trailing NUL (or a description when the reply was lost). */
  raw: string;
  /**
   * clamd did not get the whole stream: `maxBytes` cut it, or clamd refused it for its size
   * (`INSTREAM size limit exceeded`). A `clean` result then only covers the bytes sent.
   */
  truncated?: boolean;
  /** Bytes of content sent to clamd. */
  bytesSent: number;
}

/** The fields of clamd's VERSION reply, e.g. `ClamAV 1.4.6/27450/Tue Nov 18 09:36:02 2026`. */
export interface ClamdVersion {
  /** Engine version, e.g. `1.4.6`. */
  engine: string;
  /** Version of the official database (daily), when one is loaded. */
  database?: number;
  /** Build date of that database, as clamd prints it. */
  databaseDate?: string;
  raw: string;
}

export function parseClamdVersion(raw: string): ClamdVersion {
  const text = raw.replace(/\0+$/, '').trim();
  const [head = '', db, ...date] = text.split('/');
  const engine = head.replace(/^ClamAV\s+/i, '').trim();
  const database = db !== undefined && /^\d+$/.test(db.trim()) ? Number(db.trim()) : undefined;
  return { engine, database, databaseDate: date.length ? date.join('/').trim() : undefined, raw: text };
}

/**
 * Parses an INSTREAM reply: `stream: Foo.Bar FOUND`, `stream: OK`, `INSTREAM size limit
 * exceeded. ERROR`, `<anything> ERROR`. An optional session id prefix (`12: `) is tolerated.
 * Anything unrecognised is an `error`.
 */
export function parseInstreamReply(raw: string): Omit<InstreamResult, 'bytesSent'> {
  const text = raw.replace(/\0+$/, '').trim();
  const line = text.replace(/^\d+: /, '');
  const found = /^stream: (.+) FOUND$/.exec(line);
  if (found) return { status: 'found', signature: found[1], raw: text };
  if (/^stream: OK$/.test(line)) return { status: 'clean', raw: text };
  return { status: 'error', raw: text };
}

/** True when an INSTREAM error reply means "more bytes than clamd's StreamMaxLength". */
export function isSizeLimitReply(raw: string): boolean {
  return /size limit exceeded/i.test(raw);
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** The length prefix is an unsigned 32-bit number; stay well inside it. */
const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** Replies are one short line; refuse to collect more than this. */
const MAX_REPLY_BYTES = 64 * 1024;

const TERMINATOR = Buffer.alloc(4);

/** A SCAN reply: clamd opened and scanned the file itself. */
export interface PathScanResult {
  status: 'clean' | 'found' | 'error';
  signature?: string;
  raw: string;
}

/** clamd could not open the file (another host, another mount namespace, no permission). */
const CANNOT_OPEN = /lstat\(\) failed|Access denied|Permission denied|No such file|File path check failure|Can't open/i;

export class ClamdClient {
  readonly endpoint: ClamdEndpoint;
  /**
   * Large files are scanned with `SCAN <path>` (clamd reads the file itself: no copy through
   * the socket). Switched off by the first reply saying clamd cannot open our files.
   */
  pathAccess: boolean;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly chunkSize: number;
  /** clamd's StreamMaxLength when known (our managed clamd): at most this much is streamed. */
  readonly maxStreamBytes?: number;

  constructor(endpoint: ClamdEndpoint, opts: ClamdClientOptions = {}) {
    this.endpoint = endpoint;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.chunkSize = clampChunkSize(opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
    this.maxStreamBytes = opts.maxStreamBytes;
    this.pathAccess = opts.pathAccess === true && 'socket' in endpoint;
  }

  /**
   * clamd's `SCAN <path>`. Resolves undefined (and turns `pathAccess` off) when clamd cannot
   * open the file, so the caller streams the bytes instead. Only for a clamd that sees our file
   * system and reports its own limits (`AlertExceedsMax yes`): a file over a clamd limit is
   * otherwise passed as clean.
   */
  async scanPath(file: string, opts: RequestOptions = {}): Promise<PathScanResult | undefined> {
    if (!path.isAbsolute(file) || /[\0\n\r]/.test(file)) throw new Error(`clamd SCAN needs an absolute path without line breaks: ${JSON.stringify(file)}`);
    const raw = (await this.exchange(`SCAN ${file}`, opts.signal)).replace(/\0+$/, '').trim();
    const line = raw.startsWith(`${file}: `) ? raw.slice(file.length + 2) : raw.replace(/^.*?: /, '');
    if (line === 'OK') return { status: 'clean', raw };
    const found = /^(.+) FOUND$/.exec(line);
    if (found) return { status: 'found', signature: found[1], raw };
    if (CANNOT_OPEN.test(line)) {
      this.pathAccess = false;
      return undefined;
    }
    return { status: 'error', raw };
  }

  /** Resolves when clamd answers PONG; throws `EngineUnavailableError` otherwise. */
  async ping(opts: RequestOptions = {}): Promise<void> {
    const reply = await this.command('PING', opts);
    if (reply !== 'PONG') throw new EngineUnavailableError('clamav', `unexpected PING reply from ${this.where()}: ${JSON.stringify(reply)}`);
  }

  /** clamd's VERSION: engine version and, when official databases are loaded, their version. */
  async version(opts: RequestOptions = {}): Promise<ClamdVersion> {
    return parseClamdVersion(await this.command('VERSION', opts));
  }

  /** Asks clamd to reload its signature databases (answered before the reload completes). */
  async reload(opts: RequestOptions = {}): Promise<void> {
    const reply = await this.command('RELOAD', opts);
    if (reply !== 'RELOADING') throw new Error(`clamd RELOAD failed: ${reply}`);
  }

  /**
   * Streams `source` to clamd with INSTREAM and returns its answer. A Readable is consumed (and
   * destroyed on failure or abort); a Buffer is sent as it is. If clamd answers before the
   * stream ends (size limit), sending stops and that answer is returned.
   */
  async instream(source: Readable | Buffer, opts: InstreamOptions = {}): Promise<InstreamResult> {
    const chunkSize = clampChunkSize(opts.chunkSize ?? this.chunkSize);
    const maxBytes = opts.maxBytes ?? this.maxStreamBytes ?? Infinity;
    let sent = 0;
    let cut = false;
    let terminated = false;
    let reply: string;
    try {
      reply = await this.exchange('INSTREAM', opts.signal, async (conn) => {
        const chunks: AsyncIterable<unknown> | Iterable<unknown> = Buffer.isBuffer(source) ? [source] : source;
        // An abort, an early answer or a dead connection must not leave us waiting on a slow source.
        const stopSource = (): void => {
          if (!Buffer.isBuffer(source)) source.destroy();
        };
        opts.signal?.addEventListener('abort', stopSource, { once: true });
        conn.onEnd(stopSource);
        try {
          // Source chunks (64 KiB from a file stream) are gathered into frames of `chunkSize`
          // without copying (one corked write per frame): fewer frames, fewer syscalls.
          let pending: Buffer[] = [];
          let pendingBytes = 0;
          const flush = async (): Promise<void> => {
            if (!pendingBytes || conn.finished) return;
            const frame = pending;
            const n = pendingBytes;
            pending = [];
            pendingBytes = 0;
            await conn.writeFrame(frame, n);
            sent += n;
          };
          for await (const chunk of chunks) {
            let buf = toBuffer(chunk);
            if (sent + pendingBytes + buf.length > maxBytes) {
              buf = buf.subarray(0, Math.max(0, maxBytes - sent - pendingBytes));
              cut = true;
            }
            while (buf.length) {
              if (conn.finished) return;
              const take = Math.min(chunkSize - pendingBytes, buf.length);
              pending.push(buf.subarray(0, take));
              pendingBytes += take;
              buf = buf.subarray(take);
              if (pendingBytes >= chunkSize) await flush();
            }
            if (cut) break;
          }
          await flush();
          if (!conn.finished) {
            await conn.write(TERMINATOR);
            terminated = true;
          }
        } finally {
          opts.signal?.removeEventListener('abort', stopSource);
          // Stop the source when clamd answered, the stream was cut, or the connection failed.
          if (!Buffer.isBuffer(source) && !source.readableEnded) source.destroy();
        }
      });
    } catch (err) {
      // clamd closes the connection when a stream passes its StreamMaxLength; its answer can be
      // lost when our next write fails first (EPIPE/ECONNRESET). If clamd still answers PING,
      // it refused the stream rather than died: report that as a cut stream, not an outage.
      // (Nothing sent yet means the connection itself was refused: that is an outage.)
      if (!terminated && sent > 0 && isBrokenPipe(err) && !opts.signal?.aborted) {
        await this.ping({ signal: opts.signal }).catch(() => {
          throw err;
        });
        return {
          status: 'error',
          raw: `clamd closed the connection after ${sent} bytes of the stream without an answer (its size limit exceeded?)`,
          truncated: true,
          bytesSent: sent,
        };
      }
      throw err;
    }
    const result = parseInstreamReply(reply);
    const truncated = cut || (result.status === 'error' && isSizeLimitReply(result.raw));
    return { ...result, ...(truncated ? { truncated } : {}), bytesSent: sent };
  }

  private where(): string {
    return formatClamdEndpoint(this.endpoint);
  }

  private command(name: string, opts: RequestOptions): Promise<string> {
    return this.exchange(name, opts.signal);
  }

  /**
   * One connection: connect, send `z<name>\0`, run `body` (which may stream more bytes), and
   * resolve with the NUL-terminated reply. The socket is always destroyed at the end.
   */
  private async exchange(name: string, signal: AbortSignal | undefined, body?: (conn: Connection) => Promise<void>): Promise<string> {
    signal?.throwIfAborted();
    const socket = await this.connect(signal);
    const conn = new Connection(socket, this.where(), this.idleTimeoutMs, signal);
    try {
      await conn.write(Buffer.from(`z${name}\0`, 'latin1'));
      if (body) {
        try {
          await body(conn);
        } catch (err) {
          // A reply that arrived while sending (e.g. the size-limit error, after which clamd
          // closes the connection and our write fails) wins over the write error.
          if (conn.finished && conn.replyText !== undefined) return conn.replyText;
          if (conn.failure) throw conn.failure;
          throw err;
        }
      }
      return await conn.reply;
    } finally {
      conn.dispose();
    }
  }

  private connect(signal: AbortSignal | undefined): Promise<net.Socket> {
    const where = this.where();
    return new Promise<net.Socket>((resolve, reject) => {
      const socket =
        'socket' in this.endpoint
          ? net.createConnection({ path: this.endpoint.socket })
          : net.createConnection({ host: this.endpoint.host, port: this.endpoint.port });
      const done = (err?: Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        if (err) {
          socket.destroy();
          reject(err);
        } else {
          resolve(socket);
        }
      };
      const onConnect = (): void => done();
      const onError = (e: Error): void => done(unavailable(where, 'cannot connect', e));
      const onAbort = (): void => done(abortReason(signal!));
      const timer = setTimeout(
        () => done(new EngineUnavailableError('clamav', `cannot connect to ${where}: timed out after ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
      socket.once('connect', onConnect);
      socket.once('error', onError);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** The state of one open connection: writes with backpressure, and the reply as it arrives. */
class Connection {
  /** Resolves with the reply (without its NUL) or rejects with the failure. */
  readonly reply: Promise<string>;
  /** Set once the exchange is over: reply received, connection failed, or aborted. */
  finished = false;
  replyText?: string;
  failure?: Error;
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private settle!: { resolve(v: string): void; reject(e: Error): void };
  private waiters = new Set<() => void>();
  private endListeners: (() => void)[] = [];
  private onAbort?: () => void;

  constructor(
    private readonly socket: net.Socket,
    private readonly where: string,
    idleTimeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.reply = new Promise<string>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Callers that never await `reply` (a failed send) must not cause an unhandled rejection.
    this.reply.catch(() => {});
    socket.setTimeout(idleTimeoutMs);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('timeout', () => this.fail(new EngineUnavailableError('clamav', `${where}: no answer for ${idleTimeoutMs} ms`)));
    socket.on('error', (e: Error) => this.fail(unavailable(where, 'connection failed', e)));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.wake());
    if (signal) {
      this.onAbort = () => this.fail(abortReason(signal));
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** Writes bytes, waiting for the socket to drain when its buffer is full. */
  async write(data: Buffer): Promise<void> {
    this.assertOpen();
    if (!this.socket.write(data)) await this.waitDrain();
  }

  /** Writes one INSTREAM frame: 4-byte big-endian length, then the bytes of `parts`. */
  async writeFrame(parts: Buffer[], length: number): Promise<void> {
    if (length === 0) return; // a zero-length frame would end the stream
    this.assertOpen();
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(length, 0);
    this.socket.cork();
    let ok = this.socket.write(header);
    for (const p of parts) ok = this.socket.write(p);
    this.socket.uncork();
    if (!ok) await this.waitDrain();
  }

  /** Calls `fn` once the exchange is over (reply, failure or abort). */
  onEnd(fn: () => void): void {
    if (this.finished) fn();
    else this.endListeners.push(fn);
  }

  dispose(): void {
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.finished = true;
    this.wake();
    this.socket.destroy();
  }

  private assertOpen(): void {
    if (this.failure) throw this.failure;
    if (this.finished) throw new Error('clamd connection already finished');
  }

  private waitDrain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        this.waiters.delete(wake);
        if (this.failure) reject(this.failure);
        else resolve();
      };
      this.waiters.add(wake);
      if (this.finished) wake();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
    if (this.finished) for (const fn of this.endListeners.splice(0)) fn();
  }

  private onData(d: Buffer): void {
    if (this.finished) return;
    this.received.push(d);
    this.receivedBytes += d.length;
    const nul = d.indexOf(0);
    if (nul >= 0) {
      const all = Buffer.concat(this.received);
      this.finish(all.subarray(0, all.indexOf(0)).toString('latin1'));
    } else if (this.receivedBytes > MAX_REPLY_BYTES) {
      this.fail(new Error(`${this.where}: reply longer than ${MAX_REPLY_BYTES} bytes without a terminator`));
    }
  }

  private onClose(): void {
    if (this.finished) return;
    if (this.receivedBytes > 0) {
      // clamd ended the reply without its NUL (old versions, or a non-z reply): take what came.
      this.finish(Buffer.concat(this.received).toString('latin1'));
    } else {
      this.fail(new EngineUnavailableError('clamav', `${this.where}: connection closed without an answer`));
    }
  }

  private finish(text: string): void {
    if (this.finished) return;
    this.finished = true;
    this.replyText = text.trim();
    this.settle.resolve(this.replyText);
    this.wake();
  }

  private fail(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = err;
    this.settle.reject(err);
    this.socket.destroy();
    this.wake();
  }
}

function isBrokenPipe(err: unknown): boolean {
  if (!(err instanceof EngineUnavailableError)) return false;
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ECONNRESET';
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError(`INSTREAM source yielded a ${typeof chunk}, expected bytes`);
}

function clampChunkSize(n: number): number {
  if (!Number.isFinite(n) || n < 1) throw new RangeError(`INSTREAM chunk size must be a positive number, got ${n}`);
  return Math.min(Math.floor(n), MAX_CHUNK_SIZE);
}

function unavailable(where: string, what: string, e: Error): EngineUnavailableError {
  const code = (e as NodeJS.ErrnoException).code;
  const err = new EngineUnavailableError('clamav', `${what} ${where}: ${code ? `${code} ` : ''}${e.message}`);
  err.cause = e;
  return err;
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new DOMException('The operation was aborted', 'AbortError');
}
