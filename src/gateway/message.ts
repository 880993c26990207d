/**
 * Byte-level helpers for messages passing through the gateway. The message is never parsed
 * and re-encoded on its way through: header lines are only ever added on top, in the line
 * ending the message itself uses, so DKIM signatures (which cover the original headers and
 * body) still verify at the next hop.
 */
import { Readable } from 'node:stream';

/** One header field, folded to a single line (no CR/LF inside the value). */
export function headerLine(name: string, value: string, eol: string): string {
  return `${name}: ${value.replace(/[\r\n]+/g, ' ')}${eol}`;
}

/** The line ending of the first line of `head` (CRLF unless the message uses bare LF). */
export function lineEnding(head: Buffer): string {
  const i = head.indexOf(0x0a);
  return i > 0 && head[i - 1] !== 0x0d ? '\n' : '\r\n';
}

/**
 * `source` with header fields put on top. The line ending follows the message's first line,
 * so the bytes below stay exactly as they came.
 */
export function prependHeaders(source: Readable, fields: [string, string][]): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    let first = true;
    for await (const chunk of source) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      if (first) {
        first = false;
        const eol = lineEnding(buf);
        yield Buffer.from(fields.map(([n, v]) => headerLine(n, v, eol)).join(''), 'utf8');
      }
      yield buf;
    }
    if (first) yield Buffer.from(fields.map(([n, v]) => headerLine(n, v, '\r\n')).join(''), 'utf8');
  }
  return Readable.from(gen(), { objectMode: false });
}

/** RFC 5322 date-time for trace headers. */
export function rfc5322Date(d = new Date()): string {
  return d.toUTCString().replace('GMT', '+0000');
}

/** The domain of an address (lower case), or '' when it has none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase().replace(/\.$/, '');
}
