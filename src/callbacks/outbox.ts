/**
 * Delivers the callbacks outbox: each due callback is claimed under a lease (so one process
 * sends each attempt), POSTed as JSON with the client's headers through the egress guard, and
 * marked delivered on a 2xx answer or rescheduled with exponential backoff. Rows live in the
 * database, so pending callbacks survive restarts: delivery is at least once.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Store } from '../store/store.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { CallbackRow } from '../store/schema.ts';
import { EgressGuard } from '../net/egress-guard.ts';
import { guardedAgent, safeFetch } from '../net/safe-fetch.ts';
import type { Agent } from 'undici';

/** Headers a client may not set on its callback (they belong to the transport). */
const FORBIDDEN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'content-type', 'expect', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection']);

export function backoffMs(attempts: number, baseMs: number): number {
  const exp = Math.min(3_600_000, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(exp * (0.8 + Math.random() * 0.4));
}

export class CallbackDeliverer {
  private readonly guard: EgressGuard;
  /** One agent for all deliveries: callbacks to the same receiver reuse their connections. */
  private readonly agent: Agent;
  private running = false;
  private loopDone?: Promise<void>;
  private wakeUp?: () => void;
  /** A notice that arrived while the loop was busy (claiming or delivering): look again before sleeping. */
  private kicked = false;
  private inFlight = 0;

  constructor(
    private readonly deps: { config: Config; store: Store; log: Logger; metrics?: Metrics },
    private readonly batch = 8,
  ) {
    this.guard = new EgressGuard({ allow: deps.config.egressAllow, deny: deps.config.egressDeny });
    this.agent = guardedAgent(this.guard, deps.config.callbackTimeoutMs);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  notify(): void {
    this.kicked = true;
    this.wakeUp?.();
  }

  private async loop(): Promise<void> {
    const { store, log } = this.deps;
    while (this.running) {
      this.kicked = false;
      let due: CallbackRow[] = [];
      try {
        due = await store.claimCallbacks(Date.now(), this.deps.config.callbackTimeoutMs * 3, this.batch);
      } catch (e) {
        log.error({ err: e }, 'claiming callbacks failed');
      }
      if (due.length > 0) {
        await Promise.all(due.map((c) => this.deliver(c)));
        continue;
      }
      if (this.kicked) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        this.wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  async deliver(c: CallbackRow): Promise<void> {
    const { store, config, log, metrics } = this.deps;
    this.inFlight++;
    const attempts = c.attempts + 1;
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(JSON.parse(c.headers) as Record<string, unknown>)) {
        if (!FORBIDDEN_HEADERS.has(k.toLowerCase()) && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) headers[k] = String(v).replace(/[\r\n]/g, ' ');
      }
      headers['content-type'] = 'application/json';
      headers['user-agent'] = 'Verdict-Callback/1';
      let status: number | undefined;
      let error: string | undefined;
      try {
        const res = await safeFetch(c.url, {
          guard: this.guard,
          method: 'POST',
          headers,
          body: c.body,
          maxBytes: 64 * 1024,
          timeoutMs: config.callbackTimeoutMs,
          maxRedirects: 0,
          followRedirects: false,
          agent: this.agent,
        });
        status = res.status;
        if (status < 200 || status >= 300) error = `callback answered ${status}`;
      } catch (e) {
        error = (e as Error).message;
      }
      if (!error) {
        await store.callbackDelivered(c.id, status!);
        metrics?.callbacks.inc({ outcome: 'delivered' });
        log.info({ scanId: c.scan_id, url: c.url, status, attempts }, 'callback delivered');
        return;
      }
      if (attempts >= config.callbackMaxAttempts) {
        await store.callbackFailed(c.id, { status, error });
        metrics?.callbacks.inc({ outcome: 'failed' });
        log.error({ scanId: c.scan_id, url: c.url, status, error, attempts }, 'callback abandoned after its last attempt');
        return;
      }
      const delay = backoffMs(attempts, config.callbackRetryBaseMs);
      await store.callbackFailed(c.id, { status, error, nextAttemptAt: Date.now() + delay });
      metrics?.callbacks.inc({ outcome: 'retry' });
      log.warn({ scanId: c.scan_id, url: c.url, status, error, attempts, retryInMs: delay }, 'callback failed; will retry');
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Stops the loop, then makes one last pass over the callbacks that are due (finished scans
   * whose callback has not gone out yet), bounded by `graceMs`. Whatever is still pending stays
   * in the outbox for the next start.
   */
  async close(graceMs = 5_000): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loopDone;
    const due = await this.deps.store.claimCallbacks(Date.now(), this.deps.config.callbackTimeoutMs * 3, 100).catch(() => []);
    if (due.length === 0) {
      await this.agent.close().catch(() => undefined);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(due.map((c) => this.deliver(c))),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    await this.agent.destroy().catch(() => undefined);
  }
}
