import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { limitsSchema } from '../config/schema.ts';
import { inputFromBuffer } from '../engine/input.ts';
import { sampleInfo } from './testing.ts';
import { classificationScanner, findSensitive, ibanValid, luhnValid, ssnValid } from './classification.ts';
import type { Finding } from './types.ts';

async function classify(text: string | Buffer, classify = true): Promise<Finding[]> {
  const data = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-classify-'));
  try {
    const info = sampleInfo(data, 'doc.txt');
    const options = { passwords: [], classify };
    if (!classificationScanner.accepts(info, undefined, options)) return [];
    const limits = limitsSchema.parse({});
    const r = await classificationScanner.scan(
      inputFromBuffer(info, data, tmpDir),
      { options, limits, signal: new AbortController().signal, deadline: Date.now() + 10_000, log: pino({ level: 'silent' }), tmpDir, emitChild: async () => true },
      undefined,
    );
    return r.evidence ?? [];
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}
const classes = (f: Finding[]) => Object.fromEntries(f.map((e) => [e.data!.class as string, e.data!.count as number]));

test('validators: Luhn, IBAN mod 97, SSN area rules', () => {
  assert.equal(luhnValid('4111111111111111'), true);
  assert.equal(luhnValid('4111111111111112'), false);
  assert.equal(ibanValid('GB82 WEST 1234 5698 7654 32'), true);
  assert.equal(ibanValid('GB82 WEST 1234 5698 7654 33'), false);
  assert.equal(ibanValid('DE89370400440532013000'), true);
  assert.equal(ssnValid('123', '45', '6789'), true);
  assert.equal(ssnValid('666', '45', '6789'), false);
  assert.equal(ssnValid('900', '45', '6789'), false);
  assert.equal(ssnValid('123', '00', '6789'), false);
});

test('a Luhn-valid card number is found and masked; a Luhn-invalid one is ignored', async () => {
  const f = await classify('order 17: card 4111 1111 1111 1111, backup card 4111 1111 1111 1112, ref 1234567890123');
  const card = f.find((e) => e.heuristic === 'CLASSIFIED_PAYMENT_CARD');
  assert.ok(card);
  assert.equal(card.data!.count, 1);
  const m = (card.data!.matches as { offset: number; masked: string }[])[0];
  assert.equal(m.masked, '************1111');
  assert.equal(m.offset, 15);
  assert.ok(!JSON.stringify(f).includes('4111 1111 1111 1111'), 'the clear number never leaves the scanner');
});

test('each class is recognised with its validation', async () => {
  const text = [
    'IBAN: GB82 WEST 1234 5698 7654 32 and a broken one GB82 WEST 1234 5698 7654 33',
    'SSN 123-45-6789, not 666-12-3456 nor 000-12-3456',
    'mail jane.doe@example.org',
    'call +44 20 7946 0958 or (415) 555-2671',
    'aws AKIAIOSFODNN7EXAMPLE and aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    'gh ghp_' + 'a'.repeat(36),
    '-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----',
    'jwt ' + Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url') + '.' + Buffer.from('{"sub":"1234567890"}').toString('base64url') + '.sig_nature',
    'not a jwt eyJhbGciOiJIUzI1NiJ9x.eyJzdWIiOiIxMjM0NTY3ODkwIn0x.abc',
  ].join('\n');
  const c = classes(await classify(text));
  assert.deepEqual(c, { iban: 1, us_ssn: 1, email: 1, phone: 2, cloud_credential: 3, private_key: 1, jwt: 1 });
  const cred = findSensitive(text).filter((m) => m.cls === 'cloud_credential').map((m) => m.kind);
  assert.deepEqual(cred.sort(), ['aws_access_key', 'aws_secret_key', 'github_token']);
  assert.equal(findSensitive('jane.doe@example.org')[0].masked, 'j*******@example.org');
});

test('nothing is reported without the classify option or on plain prose', async () => {
  assert.deepEqual(await classify('card 4111 1111 1111 1111', false), []);
  assert.deepEqual(await classify('The quick brown fox jumps over the lazy dog 12 times in 2024.'), []);
});

test('matches across window boundaries are counted once, with their true offsets', async () => {
  const filler = 'x'.repeat(1024 * 1024 - 10);
  const text = filler + ' 4111111111111111 ' + filler + ' 5555555555554444 end';
  const card = (await classify(text)).find((e) => e.heuristic === 'CLASSIFIED_PAYMENT_CARD')!;
  assert.equal(card.data!.count, 2);
  const offsets = (card.data!.matches as { offset: number }[]).map((m) => m.offset);
  assert.deepEqual(offsets, [filler.length + 1, filler.length * 2 + 19]);
});
