/**
 * ClamAV through clamd: streams the object with INSTREAM (no temporary file, no buffering), or
 * for a file of 1 MiB or more hands clamd its path (SCAN) when clamd shares our file system
 * (`clamdFileAccess`), and turns clamd's answer into evidence.
 *
 * | clamd says | evidence |
 * | --- | --- |
 * | `<name> FOUND` | `AV_DETECTION`, details = the raw name, data `{ signature, name, unofficial }` |
 * | `Heuristics.Limits.Exceeded.*` | `NOT_FULLY_SCANNED` (content over clamd's limits) |
 * | `Heuristics.Encrypted.*` | `AV_ENCRYPTED` (partial: clamd could not look inside) |
 * | other `Heuristics.*` | `AV_HEURISTIC` (suspicious, not a signature match) |
 * | stream cut or refused for its size | `NOT_FULLY_SCANNED`, plus any match in the bytes sent |
 * | `... ERROR` | throws: the engine records `ENGINE_ERROR` |
 * | no answer (down, refused, timeout) | `EngineUnavailableError`: the job is retried later |
 *
 * One ClamAV behaviour to know: a zip member larger than clamd's MaxFileSize is trimmed to that
 * size and its beginning scanned, without an alert. Verdict's archive scanners extract members
 * and each is scanned here on its own, where the size limit is reported.
 *
 * @example
 * const client = await clamavScanner.init!({ config, log, clamd: { socket: '/data/clamav/clamd.sock' } });
 * const { evidence } = await clamavScanner.scan(input, ctx, client);
 */
import { ClamdClient } from '../engines/clamd-client.ts';
import { clamdLimits } from '../engines/clamd-manager.ts';
import { ScannerDisabled, type Finding, type Scanner } from './types.ts';

/**
 * From this size a file-backed object is scanned by path when the client may (clamd reads it
 * without a copy through the socket, ~20% faster on 100 MB here); smaller ones are streamed.
 */
const PATH_SCAN_MIN_BYTES = 1024 * 1024;

/** Time clamd may stay silent beyond the scanner's own budget before the connection is given up. */
const IDLE_MARGIN_MS = 30_000;

export const clamavScanner: Scanner<ClamdClient> = {
  name: 'clamav',
  version: '1',
  layer: 'signatures',
  required: true,

  async init(ictx) {
    if (!ictx.clamd) {
      throw new ScannerDisabled('no clamd: ClamAV is off, not installed or failed to start (see the clamav status)');
    }
    // Our own clamd's StreamMaxLength is known: send at most that much, so clamd scans the
    // prefix of a larger object instead of refusing all of it.
    const managed = ictx.config.clamd.trim().toLowerCase() === 'auto';
    const access = ictx.config.clamdFileAccess;
    return new ClamdClient(ictx.clamd, {
      idleTimeoutMs: ictx.config.limits.scannerTimeoutMs + IDLE_MARGIN_MS,
      ...(managed ? { maxStreamBytes: clamdLimits(ictx.config.limits).streamMaxLength } : {}),
      // our own clamd runs as our user, reads our data folder and alerts on its limits
      pathAccess: access === 'path' || (access === 'auto' && managed),
    });
  },

  accepts: (info) => info.kind === 'file',

  async scan(input, ctx, client) {
    // over clamd's size limit, INSTREAM still scans the prefix where SCAN would skip the file
    if (client.pathAccess && input.info.size >= PATH_SCAN_MIN_BYTES && input.info.size <= (client.maxStreamBytes ?? Infinity)) {
      const file = await input.path();
      const r = await client.scanPath(file, { signal: ctx.signal });
      if (r?.status === 'error') throw new Error(`clamd could not scan the object: ${r.raw}`);
      if (r) return { evidence: r.status === 'found' && r.signature ? [findingFor(r.signature)] : [] };
      ctx.log.warn({ reply: 'cannot open' }, 'clamd cannot open Verdict\'s files; streaming them instead (set clamdFileAccess to stream)');
    }
    const r = await client.instream(input.stream(), { signal: ctx.signal });
    const evidence: Finding[] = [];
    if (r.status === 'found' && r.signature) evidence.push(findingFor(r.signature));
    if (r.truncated) {
      const scanned = r.status === 'error' ? 0 : r.bytesSent;
      evidence.push({
        heuristic: 'NOT_FULLY_SCANNED',
        details:
          scanned > 0
            ? `ClamAV scanned only the first ${scanned} of ${input.info.size} bytes (clamd stream size limit)`
            : `clamd refused the object for its size (${input.info.size} bytes): ${r.raw}`,
        data: { engine: 'clamav', limit: 'StreamMaxLength', bytesScanned: scanned, size: input.info.size, reply: r.raw },
      });
    } else if (r.status === 'error') {
      throw new Error(`clamd could not scan the object: ${r.raw}`);
    }
    return { evidence };
  },
};

/** Maps one name from a clamd FOUND reply to a finding. */
export function findingFor(signature: string): Finding {
  const name = signature.replace(/\.UNOFFICIAL$/, '');
  const data = { engine: 'clamav', signature, name, unofficial: name !== signature };
  const limit = /^Heuristics\.Limits\.Exceeded\.?(.*)$/.exec(name);
  if (limit) {
    return {
      heuristic: 'NOT_FULLY_SCANNED',
      details: `ClamAV skipped content over its limits (${signature})`,
      data: { ...data, limit: limit[1] || 'unknown' },
    };
  }
  if (name.startsWith('Heuristics.Encrypted.')) {
    return { heuristic: 'AV_ENCRYPTED', details: `ClamAV could not scan encrypted content (${signature})`, data };
  }
  if (name.startsWith('Heuristics.')) return { heuristic: 'AV_HEURISTIC', details: signature, data };
  return { heuristic: 'AV_DETECTION', details: signature, data };
}
