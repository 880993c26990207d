/**
 * Prometheus metrics of one Verdict process, on a registry of its own (several apps can live
 * in one process, as in the tests).
 */
import client from 'prom-client';

export class Metrics {
  readonly registry = new client.Registry();
  readonly scansTotal = new client.Counter({ name: 'verdict_scans_total', help: 'Finished root scans by channel and verdict', labelNames: ['channel', 'verdict'], registers: [this.registry] });
  readonly scansSubmitted = new client.Counter({ name: 'verdict_scans_submitted_total', help: 'Accepted submissions by channel and kind', labelNames: ['channel', 'kind'], registers: [this.registry] });
  readonly scanDuration = new client.Histogram({ name: 'verdict_scan_duration_seconds', help: 'Time from submission to verdict', labelNames: ['kind'], buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [this.registry] });
  readonly engineLatency = new client.Histogram({ name: 'verdict_engine_duration_seconds', help: 'Time one scanner spent on one object', labelNames: ['engine'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [this.registry] });
  readonly engineFailures = new client.Counter({ name: 'verdict_engine_failures_total', help: 'Scanner runs that failed or timed out', labelNames: ['engine', 'status'], registers: [this.registry] });
  readonly jobRetries = new client.Counter({ name: 'verdict_job_retries_total', help: 'Scan jobs put back because an engine was unavailable or a run failed', labelNames: ['reason'], registers: [this.registry] });
  readonly queueWaiting = new client.Gauge({ name: 'verdict_queue_waiting', help: 'Jobs waiting in the queue', registers: [this.registry] });
  readonly queueActive = new client.Gauge({ name: 'verdict_queue_active', help: 'Jobs being scanned', registers: [this.registry] });
  readonly queueOldest = new client.Gauge({ name: 'verdict_queue_oldest_waiting_seconds', help: 'Age of the oldest waiting job', registers: [this.registry] });
  readonly callbacks = new client.Counter({ name: 'verdict_callback_deliveries_total', help: 'Callback delivery attempts by outcome (delivered, retry, failed)', labelNames: ['outcome'], registers: [this.registry] });
  readonly httpRequests = new client.Counter({ name: 'verdict_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [this.registry] });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'verdict_' });
  }
}
