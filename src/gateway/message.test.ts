import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { domainOf, prependHeaders } from './message.ts';

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('headers go on top in the message\'s own line ending; the bytes below are untouched', async () => {
  const crlf = Buffer.from('Subject: a\r\n\r\nbody\r\n');
  const out = await collect(prependHeaders(Readable.from([crlf.subarray(0, 5), crlf.subarray(5)]), [['X-Verdict-Verdict', 'CLN']]));
  assert.equal(out.toString(), 'X-Verdict-Verdict: CLN\r\nSubject: a\r\n\r\nbody\r\n');
  const lf = Buffer.from('Subject: a\n\nbody\n');
  assert.equal((await collect(prependHeaders(Readable.from([lf]), [['X-A', '1'], ['X-B', '2']]))).toString(), 'X-A: 1\nX-B: 2\nSubject: a\n\nbody\n');
});

test('a header value cannot start a new header line', async () => {
  const out = await collect(prependHeaders(Readable.from([Buffer.from('S: x\r\n\r\n')]), [['X-Verdict-Released-By', 'eve\r\nX-Verdict-Verdict: CLN']]));
  assert.equal(out.toString().split('\r\n').filter((l) => l.startsWith('X-Verdict-Verdict')).length, 0);
});

test('domainOf lower-cases and drops a trailing dot', () => {
  assert.equal(domainOf('Alice@Example.TEST.'), 'example.test');
  assert.equal(domainOf('postmaster'), '');
});
