import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { limitsSchema } from '../config/schema.ts';
import { Engine } from '../engine/engine.ts';
import { fileTypeScanner } from './file-type.ts';
import { candidatePasswords, decryptOfficePackage, DEFAULT_EXCEL_PASSWORD, MAX_PASSWORD_TRIES, stretchPassword } from './office-crypto.ts';
import { oleScanner } from './ole.ts';
import { ooxmlScanner } from './ooxml.ts';
import { eicar, initScanner, makeOle, makeZip, runScanner } from './testing.ts';
import { yaraScanner } from './yara.ts';
import { zipScanner } from './zip.ts';

// ---------------------------------------------------------------------------------------------
// An encryptor, written from MS-OFFCRYPTO as the inverse of the decryptor (no Office here).

const HASH = { SHA1: ['sha1', 20], SHA256: ['sha256', 32], SHA384: ['sha384', 48], SHA512: ['sha512', 64] } as const;
type HashName = keyof typeof HASH;

function h(alg: string, ...parts: Buffer[]): Buffer {
  const x = crypto.createHash(alg);
  for (const p of parts) x.update(p);
  return x.digest();
}

const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function stretch(alg: string, salt: Buffer, password: string, spins: number): Buffer {
  let x = h(alg, salt, Buffer.from(password, 'utf16le'));
  for (let i = 0; i < spins; i++) x = h(alg, le32(i), x);
  return x;
}

const toBlocks = (b: Buffer) => Buffer.concat([b, Buffer.alloc((16 - (b.length % 16)) % 16)]);
const sized = (b: Buffer, n: number) => (b.length >= n ? b.subarray(0, n) : Buffer.concat([b, Buffer.alloc(n - b.length, 0x36)]));

function aes(mode: 'cbc' | 'ecb', key: Buffer, iv: Buffer | null, data: Buffer): Buffer {
  const c = crypto.createCipheriv(`aes-${key.length * 8}-${mode}`, key, iv).setAutoPadding(false);
  return Buffer.concat([c.update(toBlocks(data)), c.final()]);
}

function sizeField(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

interface Encrypted {
  info: Buffer;
  pkg: Buffer;
}

interface AgileFields {
  keySalt: Buffer;
  pwSalt: Buffer;
  encInput: Buffer;
  encValue: Buffer;
  encKey: Buffer;
  spinCount: number;
  keyBits: number;
  hash: HashName;
}

/** An Agile EncryptionInfo stream: the 4.4 header, then the XML descriptor Office writes. */
function agileInfo(f: AgileFields): Buffer {
  const cipher = `keyBits="${f.keyBits}" hashSize="${HASH[f.hash][1]}" cipherAlgorithm="AES" cipherChaining="ChainingModeCBC" hashAlgorithm="${f.hash}"`;
  const xml =
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n' +
    '<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption" xmlns:p="http://schemas.microsoft.com/office/2006/keyEncryptor/password" xmlns:c="http://schemas.microsoft.com/office/2006/keyEncryptor/certificate">' +
    `<keyData saltSize="16" blockSize="16" ${cipher} saltValue="${f.keySalt.toString('base64')}"/>` +
    `<dataIntegrity encryptedHmacKey="${crypto.randomBytes(64).toString('base64')}" encryptedHmacValue="${crypto.randomBytes(64).toString('base64')}"/>` +
    '<keyEncryptors><keyEncryptor uri="http://schemas.microsoft.com/office/2006/keyEncryptor/password">' +
    `<p:encryptedKey spinCount="${f.spinCount}" saltSize="16" blockSize="16" ${cipher} saltValue="${f.pwSalt.toString('base64')}" ` +
    `encryptedVerifierHashInput="${f.encInput.toString('base64')}" encryptedVerifierHashValue="${f.encValue.toString('base64')}" encryptedKeyValue="${f.encKey.toString('base64')}"/>` +
    '</keyEncryptor></keyEncryptors></encryption>';
  return Buffer.concat([Buffer.from('0400040040000000', 'hex'), Buffer.from(xml, 'utf8')]);
}

function agileEncrypt(plain: Buffer, password: string, opts: { hash?: HashName; keyBits?: number; spinCount?: number } = {}): Encrypted {
  const [alg] = HASH[opts.hash ?? 'SHA512'];
  const keyBits = opts.keyBits ?? 256;
  const spinCount = opts.spinCount ?? 100_000;
  const keySalt = crypto.randomBytes(16);
  const pwSalt = crypto.randomBytes(16);
  const secret = crypto.randomBytes(keyBits / 8);
  const hn = stretch(alg, pwSalt, password, spinCount);
  const blockKey = (hex: string) => sized(h(alg, hn, Buffer.from(hex, 'hex')), keyBits / 8);
  const verifierInput = crypto.randomBytes(16);
  const encInput = aes('cbc', blockKey('fea7d2763b4b9e79'), pwSalt, verifierInput);
  const encValue = aes('cbc', blockKey('d7aa0f6d3061344e'), pwSalt, h(alg, verifierInput));
  const encKey = aes('cbc', blockKey('146e0be7abacd0d6'), pwSalt, secret);
  const segments: Buffer[] = [];
  for (let i = 0; i * 4096 < plain.length; i++) {
    segments.push(aes('cbc', secret, sized(h(alg, keySalt, le32(i)), 16), plain.subarray(i * 4096, (i + 1) * 4096)));
  }
  const fields = { keySalt, pwSalt, encInput, encValue, encKey, spinCount, keyBits, hash: opts.hash ?? 'SHA512' };
  return {
    info: agileInfo(fields),
    pkg: Buffer.concat([sizeField(plain.length), ...segments]),
  };
}

const AES_ALG_ID = { 128: 0x660e, 192: 0x660f, 256: 0x6610 } as Record<number, number>;

/** A Standard EncryptionInfo stream (version 3.2): header, EncryptionHeader, EncryptionVerifier. */
function standardInfo(keyBits: number, algId: number, salt: Buffer, encVerifier: Buffer, encVerifierHash: Buffer): Buffer {
  const csp = Buffer.from('Microsoft Enhanced RSA and AES Cryptographic Provider\0', 'utf16le');
  const header = Buffer.alloc(32);
  [0x24, 0, algId, 0x8004, keyBits, 0x18, 0, 0].forEach((v, i) => header.writeUInt32LE(v, i * 4));
  const head = Buffer.alloc(12);
  head.writeUInt16LE(3, 0);
  head.writeUInt16LE(2, 2);
  head.writeUInt32LE(0x24, 4);
  head.writeUInt32LE(header.length + csp.length, 8);
  return Buffer.concat([head, header, csp, le32(16), salt, encVerifier, le32(20), encVerifierHash]);
}

function standardEncrypt(plain: Buffer, password: string, keyBits = 128, algId = AES_ALG_ID[keyBits]): Encrypted {
  const salt = crypto.randomBytes(16);
  const hfinal = h('sha1', stretch('sha1', salt, password, 50_000), le32(0));
  const pad = (byte: number) => h('sha1', Buffer.from(Buffer.alloc(64, byte).map((b, i) => (i < 20 ? b ^ hfinal[i] : b))));
  const key = Buffer.concat([pad(0x36), pad(0x5c)]).subarray(0, keyBits / 8);
  const verifier = crypto.randomBytes(16);
  const info = standardInfo(keyBits, algId, salt, aes('ecb', key, null, verifier), aes('ecb', key, null, h('sha1', verifier)));
  return { info, pkg: Buffer.concat([sizeField(plain.length), aes('ecb', key, null, plain)]) };
}

const encryptedOle = (e: Encrypted) => makeOle({ EncryptionInfo: e.info, EncryptedPackage: e.pkg });

// ---------------------------------------------------------------------------------------------
// The decryptor

test('agile (SHA-512, AES-256, 100,000 spins): the right password gives back the exact package', async () => {
  const plain = crypto.randomBytes(10_000); // three segments, the last one partial
  const e = agileEncrypt(plain, 'Sup3r-sécret');
  const r = await decryptOfficePackage(e.info, e.pkg, ['wrong', 'Sup3r-sécret']);
  assert.ok(r.ok, r.ok ? '' : r.details);
  assert.equal(r.method, 'agile');
  assert.equal(r.passwordIndex, 1);
  assert.equal(r.tried, 2);
  assert.ok(r.data.equals(plain));
});

test('agile with SHA-1/AES-128, SHA-256/AES-192 and SHA-384/AES-256 parameters', async () => {
  for (const [hash, keyBits] of [['SHA1', 128], ['SHA256', 192], ['SHA384', 256]] as const) {
    const plain = crypto.randomBytes(4096);
    const e = agileEncrypt(plain, 'pw', { hash, keyBits, spinCount: 1000 });
    const r = await decryptOfficePackage(e.info, e.pkg, ['pw']);
    assert.ok(r.ok && r.data.equals(plain), `${hash}/${keyBits}`);
  }
});

test('a wrong password is reported as such after trying the given ones and the Excel default', async () => {
  const e = agileEncrypt(Buffer.from('PK\x03\x04 not really'), 'right');
  const r = await decryptOfficePackage(e.info, e.pkg, ['wrong']);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.reason, 'wrong_password');
  assert.equal(r.tried, 2);
});

test('standard encryption (AES-128/192/256, SHA-1, 50,000 spins) including the default password', async () => {
  for (const keyBits of [128, 192, 256]) {
    const plain = crypto.randomBytes(5000);
    const e = standardEncrypt(plain, DEFAULT_EXCEL_PASSWORD, keyBits);
    const r = await decryptOfficePackage(e.info, e.pkg, ['nope']);
    assert.ok(r.ok, r.ok ? '' : r.details);
    assert.equal(r.method, 'standard');
    assert.equal(r.password, DEFAULT_EXCEL_PASSWORD);
    assert.ok(r.data.equals(plain), `AES-${keyBits}`);
  }
  const wrong = standardEncrypt(Buffer.from('x'), 'right');
  const r = await decryptOfficePackage(wrong.info, wrong.pkg, []);
  assert.equal(!r.ok && r.reason, 'wrong_password');
});

test('refuses what it cannot or should not do: RC4, extensible, huge spin counts, damage, deadline', async () => {
  const rc4 = standardEncrypt(Buffer.from('x'), 'pw', 128, 0x6801);
  const r = await decryptOfficePackage(rc4.info, rc4.pkg, ['pw']);
  assert.equal(!r.ok && r.reason, 'unsupported');
  const extensible = Buffer.from('0300030040000000', 'hex');
  const ext = await decryptOfficePackage(extensible, Buffer.alloc(16), ['pw']);
  assert.equal(!ext.ok && ext.reason, 'unsupported');

  const costly = agileEncrypt(Buffer.from('x'), 'pw', { spinCount: 1 });
  const info = Buffer.from(costly.info.toString('latin1').replace('spinCount="1"', 'spinCount="10000001"'), 'latin1');
  const c = await decryptOfficePackage(info, costly.pkg, ['pw']);
  assert.equal(!c.ok && c.reason, 'too_costly');
  assert.equal(c.tried, 0);

  const e = agileEncrypt(Buffer.from('hello'), 'pw', { spinCount: 10 });
  const lying = Buffer.concat([sizeField(1_000_000), e.pkg.subarray(8)]);
  const d = await decryptOfficePackage(e.info, lying, ['pw']);
  assert.equal(!d.ok && d.reason, 'damaged');
  const late = await decryptOfficePackage(e.info, e.pkg, ['pw'], { deadline: Date.now() - 1 });
  assert.equal(!late.ok && late.reason, 'deadline');
  const garbage = await decryptOfficePackage(Buffer.concat([Buffer.from('0400040040000000', 'hex'), Buffer.from('<encryption/>')]), e.pkg, ['pw']);
  assert.equal(!garbage.ok && garbage.reason, 'damaged');
});

test('candidate passwords: request order kept, duplicates dropped, Excel default added, capped', () => {
  assert.deepEqual(candidatePasswords(['a', 'b', 'a']), ['a', 'b', DEFAULT_EXCEL_PASSWORD]);
  assert.deepEqual(candidatePasswords([DEFAULT_EXCEL_PASSWORD]), [DEFAULT_EXCEL_PASSWORD]);
  const many = Array.from({ length: 20 }, (_, i) => `p${i}`);
  assert.equal(candidatePasswords(many).length, MAX_PASSWORD_TRIES);
});

// ---------------------------------------------------------------------------------------------
// Known answers: values taken from real Office files, published in msoffcrypto-tool's doctests.

const hex = (s: string) => Buffer.from(s, 'hex');

test('known answer: Office agile verifier (SHA-512, 100,000 spins) accepts Password1234_ only', async () => {
  const info = agileInfo({
    keySalt: crypto.randomBytes(16),
    pwSalt: hex('cbca1c999343fbad92075634150034b0'),
    encInput: hex('39eea54e26e514798c284bc7714d38ac'),
    encValue: hex('14376d6d817334e6b0ff4fd8221a7c678e5d8a784e8f999f4c188930c36a4b29c5b333605b5cd403b05003adcf18cca8cbab8debe373c65604a0becfae5c0ad0'),
    encKey: Buffer.alloc(32),
    spinCount: 100_000,
    keyBits: 256,
    hash: 'SHA512',
  });
  const pkg = sizeField(0);
  const right = await decryptOfficePackage(info, pkg, ['Password1234_']);
  assert.ok(right.ok, right.ok ? '' : right.details);
  const wrong = await decryptOfficePackage(info, pkg, ['Password1234']);
  assert.equal(!wrong.ok && wrong.reason, 'wrong_password');
});

test('known answer: Office agile key stretching unwraps the published secret key', async () => {
  const salt = hex('4c725d45dc610f939412a04da7910466');
  const hn = await stretchPassword('sha512', salt, 'Password1234_', 100_000);
  const k3 = h('sha512', hn, hex('146e0be7abacd0d6')).subarray(0, 32);
  const d = crypto.createDecipheriv('aes-256-cbc', k3, salt).setAutoPadding(false);
  const secret = Buffer.concat([d.update(hex('a16cd5165a7ab9d271113ed386a78cf49692e8e527b0c5fc0055ed080b7cb94b')), d.final()]);
  assert.equal(secret.toString('hex'), '40206609d9faadf24b076aebf2c435b74292c8b8a7aa81bc679be89711b02ac2');
});

test('known answer: Office standard AES-128 verifier accepts Password1234_ only', async () => {
  const info = standardInfo(128, 0x660e, hex('e88266490c5bd1eebd2b4394e3f830ef'), hex('516f732e966fac17b1c5d7d8cc36c928'), hex('2b6168dabe2911ad2bd37c1746745c14d3cf1bb140a48f4e6f3d23880872b16a'));
  const right = await decryptOfficePackage(info, sizeField(0), ['nope', 'Password1234_']);
  assert.ok(right.ok && right.passwordIndex === 1, right.ok ? '' : right.details);
  const wrong = await decryptOfficePackage(info, sizeField(0), ['password1234_']);
  assert.equal(!wrong.ok && wrong.reason, 'wrong_password');
});

// ---------------------------------------------------------------------------------------------
// Through the OLE scanner and the engine

async function macroDocx(): Promise<Buffer> {
  return makeZip({
    '[Content_Types].xml': Buffer.from('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
    'word/document.xml': Buffer.from('<w:document><w:body>Sub AutoOpen() Shell "calc" End Sub</w:body></w:document>'),
    'word/media/eicar.com': eicar(),
  });
}

test('ole scanner: an encrypted docx opened with the request password becomes a decrypted.docx child', async () => {
  const docx = await macroDocx();
  const r = await runScanner(oleScanner, await encryptedOle(agileEncrypt(docx, 'infected')), { name: 'invoice.docx', passwords: ['infected'] });
  assert.deepEqual(r.heuristics, ['DOCUMENT_DECRYPTED']);
  assert.equal(r.evidence[0].data?.method, 'agile');
  assert.equal(r.evidence[0].data?.defaultPassword, false);
  assert.deepEqual(r.children.map((c) => [c.name, c.relation]), [['decrypted.docx', 'decompressed']]);
  assert.ok(r.children[0].bytes?.equals(docx), 'the child is the original package, byte for byte');
});

test('ole scanner: a workbook "protected" with VelvetSweatshop opens without any password supplied', async () => {
  const xlsm = await makeZip({ 'xl/workbook.xml': Buffer.from('<workbook/>'), 'xl/vbaProject.bin': Buffer.from('Attribute VB_Name = "Module1"') });
  const r = await runScanner(oleScanner, await encryptedOle(standardEncrypt(xlsm, DEFAULT_EXCEL_PASSWORD)), { name: 'Report.XLSM' });
  assert.deepEqual(r.heuristics, ['DOCUMENT_DECRYPTED']);
  assert.equal(r.evidence[0].data?.defaultPassword, true);
  assert.match(r.evidence[0].details ?? '', /VelvetSweatshop/);
  assert.equal(r.children[0].name, 'decrypted.xlsm');
  assert.ok(r.children[0].bytes?.equals(xlsm));
});

test('ole scanner: with a wrong password the document stays reported as not scanned', async () => {
  const r = await runScanner(oleScanner, await encryptedOle(agileEncrypt(await macroDocx(), 'infected', { spinCount: 1000 })), { name: 'a.docx', passwords: ['guess'] });
  assert.deepEqual(r.heuristics, ['ENCRYPTED_DOCUMENT']);
  assert.equal(r.evidence[0].data?.passwordsTried, 2);
  assert.equal(r.evidence[0].data?.reason, 'wrong_password');
  assert.equal(r.children.length, 0);
});

test('engine: EICAR inside an encrypted docx is found with the password (MAL) and not claimed clean without', async () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-office-crypto-'));
  try {
    const limits = limitsSchema.parse({});
    const policy = { scoreSuspicious: 300, scoreMalicious: 1000, scoreLikelySpam: 150, scoreSpam: 350 };
    const active = [];
    for (const scanner of [fileTypeScanner, yaraScanner, oleScanner, zipScanner, ooxmlScanner]) active.push({ scanner, state: await initScanner(scanner) });
    const engine = new Engine(active, { limits, policy, log: pino({ level: 'silent' }), tmpRoot: work });
    const doc = await encryptedOle(agileEncrypt(await macroDocx(), 'infected'));

    const open = await engine.scanBuffer(doc, 'invoice.docx', { options: { passwords: ['infected'] } });
    assert.equal(open.outcome.verdict, 'MAL');
    assert.equal(open.children[0].info.name, 'decrypted.docx');

    const closed = await engine.scanBuffer(doc, 'invoice.docx', { options: { passwords: [] } });
    assert.notEqual(closed.outcome.verdict, 'MAL');
    assert.equal(closed.outcome.partial, true);
    assert.equal(closed.children.length, 0);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});
