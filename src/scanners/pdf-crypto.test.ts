/**
 * Encrypted PDFs made by a real tool (Debian's qpdf) in every Standard-handler revision: the
 * PDF scanner opens them with the empty password or a supplied one and finds what the
 * encryption hid (the script of the OpenAction, an embedded EICAR file).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { pdfScanner } from './pdf.ts';
import { rc4 } from './pdf-crypto.ts';
import { eicar, runScanner } from './testing.ts';

let dir: string;
before(() => {
  try {
    execFileSync('qpdf', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('these tests need Debian\'s qpdf (apt-get install qpdf; .ci/run installs it)');
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-pdfcrypt-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A well-formed PDF (with a real xref table) holding a script and an embedded EICAR file. */
function plainPdf(): Buffer {
  const data = zlib.deflateSync(eicar());
  const bodies = [
    '<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(eicar) 4 0 R] >> >> /OpenAction 6 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>',
    '<< /Type /Filespec /F (eicar.com) /EF << /F 5 0 R >> >>',
    Buffer.concat([Buffer.from(`<< /Type /EmbeddedFile /Filter /FlateDecode /Length ${data.length} >>\nstream\n`, 'latin1'), data, Buffer.from('\nendstream')]),
    '<< /Type /Action /S /JavaScript /JS (app.alert\\("hidden by encryption"\\);) >>',
  ];
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n', 'latin1')];
  const offsets: number[] = [];
  let size = parts[0].length;
  bodies.forEach((body, i) => {
    const chunk = Buffer.concat([Buffer.from(`${i + 1} 0 obj\n`), Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'), Buffer.from('\nendobj\n')]);
    offsets.push(size);
    parts.push(chunk);
    size += chunk.length;
  });
  const xref = ['xref', `0 ${bodies.length + 1}`, '0000000000 65535 f ', ...offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n `)].join('\n');
  parts.push(Buffer.from(`${xref}\ntrailer\n<< /Size ${bodies.length + 1} /Root 1 0 R >>\nstartxref\n${size}\n%%EOF\n`, 'latin1'));
  return Buffer.concat(parts);
}

function encrypt(args: string[]): Buffer {
  const input = path.join(dir, 'in.pdf');
  const output = path.join(dir, `out-${args.join('_').replace(/[^a-z0-9]/gi, '')}.pdf`);
  fs.writeFileSync(input, plainPdf());
  try {
    execFileSync('qpdf', ['--allow-weak-crypto', ...args, input, output], { stdio: 'pipe' });
  } catch (e) {
    // exit code 3: finished with warnings
    if ((e as { status?: number }).status !== 3) throw e;
  }
  const out = fs.readFileSync(output);
  assert.ok(!out.includes('hidden by encryption'), 'the script is really encrypted in the file');
  return out;
}

const cases: [string, string[]][] = [
  ['RC4 40-bit (R2)', ['--encrypt', '', 'owner-pw', '40', '--']],
  ['RC4 128-bit (R3)', ['--encrypt', '', 'owner-pw', '128', '--use-aes=n', '--']],
  ['AES-128 (R4)', ['--encrypt', '', 'owner-pw', '128', '--use-aes=y', '--']],
  ['AES-256 (R6)', ['--encrypt', '', 'owner-pw', '256', '--']],
  ['AES-256 (R6) with object streams', ['--object-streams=generate', '--encrypt', '', 'owner-pw', '256', '--']],
];

describe('encrypted PDFs', () => {
  for (const [label, args] of cases) {
    test(`${label}, empty user password: opened, the script and the embedded file come out`, async () => {
      const r = await runScanner(pdfScanner, encrypt(args), { name: 'locked.pdf' });
      assert.ok(r.heuristics.includes('PDF_DECRYPTED'), r.heuristics.join());
      assert.ok(!r.heuristics.includes('PDF_ENCRYPTED'), 'not reported as unopened');
      assert.ok(r.heuristics.includes('PDF_JAVASCRIPT'), r.heuristics.join());
      const script = r.children.find((c) => c.relation === 'script');
      assert.match(String(script && 'data' in script ? script.data : ''), /hidden by encryption/);
      const file = r.children.find((c) => c.name === 'eicar.com');
      assert.ok(file && 'data' in file && file.data.equals(eicar()), 'the embedded file, decrypted and inflated');
    });
  }

  test('a user password: opened only with it (as user or as owner password), else reported as not examined', async () => {
    const locked = encrypt(['--encrypt', 'user-secret', 'owner-secret', '256', '--']);
    const none = await runScanner(pdfScanner, locked, { name: 'locked.pdf' });
    assert.ok(none.heuristics.includes('PDF_ENCRYPTED'));
    assert.equal(none.children.length, 0, 'ciphertext is not handed out as content');
    const asUser = await runScanner(pdfScanner, locked, { name: 'locked.pdf', passwords: ['wrong', 'user-secret'] });
    assert.ok(asUser.heuristics.includes('PDF_DECRYPTED'));
    assert.equal(asUser.evidence.find((e) => e.heuristic === 'PDF_DECRYPTED')?.data?.openedWith, 'user');
    assert.ok(asUser.children.some((c) => c.name === 'eicar.com'));
    const asOwner = await runScanner(pdfScanner, encrypt(['--encrypt', 'user-secret', 'owner-secret', '128', '--use-aes=y', '--']), { name: 'l.pdf', passwords: ['owner-secret'] });
    assert.equal(asOwner.evidence.find((e) => e.heuristic === 'PDF_DECRYPTED')?.data?.openedWith, 'owner');
  });

  test('RC4 matches the published test vector', () => {
    // RFC 6229-style check: key "Key", plaintext "Plaintext" → BBF316E8D940AF0AD3
    assert.equal(rc4(Buffer.from('Key'), Buffer.from('Plaintext')).toString('hex'), 'bbf316e8d940af0ad3');
  });
});
