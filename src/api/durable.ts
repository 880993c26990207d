/**
 * Every answer to a request that may have written something waits until the metadata
 * database has made those writes durable (SQLite's group commit: one flush shared by all the
 * requests answering at that moment). Reads answer at once.
 */
import type { FastifyInstance } from 'fastify';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function answerAfterDurable(app: FastifyInstance, durable: () => Promise<void>): void {
  app.addHook('onSend', async (req, _reply, payload) => {
    if (!READS.has(req.method)) await durable();
    return payload;
  });
}
