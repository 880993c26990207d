/**
 * Hashes: md5, sha1, sha256 and sha512 computed in one pass over a stream, so that a sample
 * is read once whatever its size.
 *
 * @example
 * const h = new MultiHasher();
 * for await (const chunk of stream) h.update(chunk);
 * const { sha256, size } = h.digest();
 *
 * Big streams (uploads, extracted files) use `SplitHasher`: sha1 and sha256 on the calling
 * thread, md5 and sha512 in a helper thread once the stream passes 1 MiB, so hashing a large
 * sample takes about half the time on the event loop and runs on two cores.
 */
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';

export interface Digests {
  md5: string;
  sha1: string;
  sha256: string;
  sha512: string;
  size: number;
}

export class MultiHasher {
  private md5 = crypto.createHash('md5');
  private sha1 = crypto.createHash('sha1');
  private sha256 = crypto.createHash('sha256');
  private sha512 = crypto.createHash('sha512');
  private size = 0;

  update(chunk: Buffer): void {
    this.md5.update(chunk);
    this.sha1.update(chunk);
    this.sha256.update(chunk);
    this.sha512.update(chunk);
    this.size += chunk.length;
  }

  digest(): Digests {
    return {
      md5: this.md5.digest('hex'),
      sha1: this.sha1.digest('hex'),
      sha256: this.sha256.digest('hex'),
      sha512: this.sha512.digest('hex'),
      size: this.size,
    };
  }
}

export function digestBuffer(data: Buffer): Digests {
  const h = new MultiHasher();
  h.update(data);
  return h.digest();
}

/** Streams that grow past this many bytes have their md5 and sha512 computed in the helper thread. */
export const OFFLOAD_AFTER_BYTES = 1024 * 1024;
/** Bytes sent to the helper thread and not yet hashed there before `update` asks the caller to wait. */
const MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;

// The helper thread: plain JavaScript (no TypeScript loader in workers). One per process, shared
// by every stream; messages of a port arrive in order, so a digest follows its stream's updates.
const HASH_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
const open = new Map();
parentPort.on('message', (m) => {
  let h = open.get(m.id);
  if (m.op === 'update') {
    if (!h) open.set(m.id, (h = [crypto.createHash('md5'), crypto.createHash('sha512')]));
    const b = new Uint8Array(m.buf);
    h[0].update(b);
    h[1].update(b);
    parentPort.postMessage({ id: m.id, ack: b.length });
  } else if (m.op === 'digest') {
    if (!h) h = [crypto.createHash('md5'), crypto.createHash('sha512')];
    open.delete(m.id);
    parentPort.postMessage({ id: m.id, md5: h[0].digest('hex'), sha512: h[1].digest('hex') });
  } else if (m.op === 'drop') open.delete(m.id);
});
`;

interface HashSession {
  inFlight: number;
  drained?: () => void;
  done?: { resolve(v: { md5: string; sha512: string }): void; reject(e: Error): void };
}

class HashThread {
  private static current: HashThread | undefined;
  private readonly worker: Worker;
  private readonly sessions = new Map<number, HashSession>();
  private nextId = 1;
  private failed: Error | undefined;

  static get(): HashThread {
    if (!HashThread.current || HashThread.current.failed) HashThread.current = new HashThread();
    return HashThread.current;
  }

  private constructor() {
    this.worker = new Worker(HASH_WORKER_SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; ack?: number; md5?: string; sha512?: string }) => {
      const s = this.sessions.get(m.id);
      if (!s) return;
      if (m.ack !== undefined) {
        s.inFlight -= m.ack;
        if (s.drained && s.inFlight <= MAX_IN_FLIGHT_BYTES / 2) {
          const d = s.drained;
          s.drained = undefined;
          d();
        }
      } else {
        this.end(m.id);
        s.done?.resolve({ md5: m.md5!, sha512: m.sha512! });
      }
    });
    const fail = (e: Error) => {
      this.failed = e;
      for (const [id, s] of this.sessions) {
        this.end(id);
        s.drained?.();
        s.done?.reject(new Error(`the hashing thread failed: ${e.message}`));
      }
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
  }

  open(): number {
    if (this.failed) throw this.failed;
    const id = this.nextId++;
    this.sessions.set(id, { inFlight: 0 });
    if (this.sessions.size === 1) this.worker.ref(); // a pending digest keeps the process alive
    return id;
  }

  private end(id: number): void {
    this.sessions.delete(id);
    if (this.sessions.size === 0) this.worker.unref();
  }

  /** Sends a copy of `chunk`; resolves at once, or once the thread has caught up when too much is queued. */
  update(id: number, chunk: Buffer): Promise<void> | undefined {
    const s = this.sessions.get(id);
    if (!s) throw this.failed ?? new Error('hash session closed');
    const copy = new Uint8Array(chunk.length);
    copy.set(chunk);
    s.inFlight += copy.length;
    this.worker.postMessage({ id, op: 'update', buf: copy.buffer }, [copy.buffer]);
    if (s.inFlight <= MAX_IN_FLIGHT_BYTES) return undefined;
    return new Promise((resolve) => (s.drained = resolve));
  }

  digest(id: number): Promise<{ md5: string; sha512: string }> {
    const s = this.sessions.get(id);
    if (!s) return Promise.reject(this.failed ?? new Error('hash session closed'));
    return new Promise((resolve, reject) => {
      s.done = { resolve, reject };
      this.worker.postMessage({ id, op: 'digest' });
    });
  }

  drop(id: number): void {
    if (!this.sessions.has(id)) return;
    this.end(id);
    this.worker.postMessage({ id, op: 'drop' });
  }
}

/**
 * The four digests of a stream, with md5 and sha512 moved to the helper thread once the stream
 * passes `OFFLOAD_AFTER_BYTES` (the bytes seen until then are sent first). Small streams never
 * leave the calling thread. `update` may return a promise: await it before the next chunk (the
 * helper thread is behind). Call `digest()` once, or `dispose()` when giving up.
 */
export class SplitHasher {
  private readonly sha1 = crypto.createHash('sha1');
  private readonly sha256 = crypto.createHash('sha256');
  private size = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private session: number | undefined;
  private thread: HashThread | undefined;

  update(chunk: Buffer): Promise<void> | undefined {
    this.sha1.update(chunk);
    this.sha256.update(chunk);
    this.size += chunk.length;
    if (this.session !== undefined) return this.thread!.update(this.session, chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes <= OFFLOAD_AFTER_BYTES) return undefined;
    this.thread = HashThread.get();
    this.session = this.thread.open();
    let wait: Promise<void> | undefined;
    for (const c of this.pending) wait = this.thread.update(this.session, c) ?? wait;
    this.pending = [];
    this.pendingBytes = 0;
    return wait;
  }

  async digest(): Promise<Digests> {
    let far: { md5: string; sha512: string };
    if (this.session !== undefined) {
      const session = this.session;
      this.session = undefined; // dispose() from here on leaves the digest alone
      far = await this.thread!.digest(session);
    } else {
      const md5 = crypto.createHash('md5');
      const sha512 = crypto.createHash('sha512');
      for (const c of this.pending) {
        md5.update(c);
        sha512.update(c);
      }
      this.pending = [];
      far = { md5: md5.digest('hex'), sha512: sha512.digest('hex') };
    }
    return { md5: far.md5, sha1: this.sha1.digest('hex'), sha256: this.sha256.digest('hex'), sha512: far.sha512, size: this.size };
  }

  /** Frees the helper thread's state for a stream that will not be digested. */
  dispose(): void {
    if (this.session !== undefined) this.thread!.drop(this.session);
    this.session = undefined;
    this.pending = [];
  }
}

/**
 * A pass-through stream that hashes what flows through it and can stop past a size limit.
 * `digests()` once the stream has finished; a stream that fails frees its hashing state.
 */
export class HashingStream extends Transform {
  private readonly hasher = new SplitHasher();
  private seen = 0;
  /** The first bytes, kept for type detection. */
  head: Buffer = Buffer.alloc(0);

  constructor(
    private readonly maxBytes = Infinity,
    private readonly headBytes = 4096,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.maxBytes) {
      cb(new SizeLimitError(this.maxBytes));
      return;
    }
    if (this.head.length < this.headBytes) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, this.headBytes - this.head.length)]);
    }
    const wait = this.hasher.update(chunk);
    if (wait) wait.then(() => cb(null, chunk), cb);
    else cb(null, chunk);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (err || !this.writableFinished) this.hasher.dispose();
    cb(err);
  }

  digests(): Promise<Digests> {
    return this.hasher.digest();
  }
}

export class SizeLimitError extends Error {
  override name = 'SizeLimitError';
  constructor(readonly limit: number) {
    super(`object is larger than the maximum of ${limit} bytes`);
  }
}
