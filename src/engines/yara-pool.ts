/**
 * YARA-X scans of large objects in worker threads. A synchronous scan runs at a few hundred MB/s
 * and holds the thread for its whole duration: on the main thread a 1 GB sample would freeze the
 * HTTP API for seconds. Each worker compiles the same rule folders once, then scans the files
 * (by path) the main thread hands it; matches come back as plain data. Small objects stay on
 * the main thread, where a scan costs microseconds and a message round trip would cost more.
 *
 * @example
 * const pool = new YaraPool(rootSource(files), COMPILE_OPTIONS, 2);
 * const matches = await pool.scanFile('/tmp/big.iso');
 * await pool.close();
 */
import { Worker } from 'node:worker_threads';
import type { RuleMatch } from '@litko/yara-x';

interface Pending {
  resolve(m: RuleMatch[]): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  busy: number;
  ready: Promise<void>;
  pending: Map<number, Pending>;
}

// The worker body: plain JavaScript evaluated by Node. It compiles the very source the main
// thread compiled (the scanner's \`include\` list of rule files) with the same options.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ready = Promise.resolve().then(() => ({ rules: require('@litko/yara-x').compile(workerData.source, workerData.options) }));
ready.then(() => parentPort.postMessage({ ready: true }), (e) => parentPort.postMessage({ ready: false, error: String(e && e.message || e) }));
parentPort.on('message', async (task) => {
  try {
    const compiled = await ready;
    const matches = compiled.rules.scanFile(task.path).map((m) => ({
      ruleIdentifier: m.ruleIdentifier, namespace: m.namespace, tags: m.tags, meta: m.meta,
      matches: m.matches.slice(0, 100).map((p) => ({ identifier: p.identifier, offset: p.offset, length: p.length })),
    }));
    parentPort.postMessage({ id: task.id, matches });
  } catch (e) {
    parentPort.postMessage({ id: task.id, error: String(e && e.message || e) });
  }
});
`;

export class YaraPool {
  private readonly slots: Slot[] = [];
  private next = 1;
  private closed = false;

  constructor(
    /** YARA source to compile (e.g. `include` lines of rule files). */
    private readonly source: string,
    private readonly options: Record<string, unknown>,
    private readonly size: number,
  ) {}

  private start(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { source: this.source, options: this.options } });
    worker.unref(); // an idle pool never keeps the process alive
    const pending = new Map<number, Pending>();
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    ready.catch(() => {});
    const slot: Slot = { worker, busy: 0, ready, pending };
    worker.on('message', (msg: { ready?: boolean; error?: string; id?: number; matches?: RuleMatch[] }) => {
      if (msg.ready !== undefined) return msg.ready ? readyResolve() : readyReject(new Error(`YARA worker could not compile the rules: ${msg.error}`));
      const p = pending.get(msg.id!);
      if (!p) return;
      pending.delete(msg.id!);
      if (msg.error) p.reject(new Error(`YARA scan failed: ${msg.error}`));
      else p.resolve(msg.matches!);
    });
    const fail = (e: Error) => {
      readyReject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1); // a crashed worker is replaced on the next scan
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`YARA worker exited (${code})`)));
    this.slots.push(slot);
    return slot;
  }

  /** Scans the file at `path` in the least busy worker (starting one when fewer than `size` run). */
  async scanFile(path: string): Promise<RuleMatch[]> {
    if (this.closed) throw new Error('YARA pool is closed');
    let slot = this.slots.reduce<Slot | undefined>((a, s) => (!a || s.busy < a.busy ? s : a), undefined);
    if (!slot || (slot.busy > 0 && this.slots.length < this.size)) slot = this.start();
    const id = this.next++;
    slot.busy++; // counted before the worker is ready, so concurrent calls spread over threads
    if (slot.busy === 1) slot.worker.ref();
    try {
      await slot.ready;
      return await new Promise<RuleMatch[]>((resolve, reject) => {
        slot.pending.set(id, { resolve, reject });
        slot.worker.postMessage({ id, path });
      });
    } finally {
      slot.pending.delete(id);
      if (--slot.busy === 0) slot.worker.unref();
    }
  }

  get threads(): number {
    return this.slots.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}
