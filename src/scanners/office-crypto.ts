/**
 * Decryption of password-protected OOXML documents (MS-OFFCRYPTO / ECMA-376 "Agile" and
 * "Standard" encryption), pure node:crypto. An encrypted .docx/.xlsx/.pptx is an OLE compound
 * file holding an `EncryptionInfo` stream (the parameters) and an `EncryptedPackage` stream
 * (the original zip, encrypted); this module turns the two streams plus candidate passwords
 * back into the zip. RC4 and "Extensible" encryption are not handled (reported `unsupported`).
 *
 * Work is bounded: spin counts above MAX_SPIN_COUNT are refused, at most MAX_PASSWORD_TRIES
 * passwords are tried, and the key stretching yields to the event loop and stops at the
 * deadline or on abort.
 *
 * @example
 * const r = await decryptOfficePackage(info, pkg, ['secret', DEFAULT_EXCEL_PASSWORD], { deadline });
 * if (r.ok) emit(r.data); else report(r.reason, r.tried);
 */
import crypto from 'node:crypto';

/** Excel encrypts "read-only protected" workbooks with this password; Excel opens them silently. */
export const DEFAULT_EXCEL_PASSWORD = 'VelvetSweatshop';
/** Agile documents may ask for any spin count; Office writes 100,000. Higher is refused as a CPU trap. */
export const MAX_SPIN_COUNT = 10_000_000;
/** Each try costs one full key stretch (~50–100 ms at 100,000 SHA-512 spins). */
export const MAX_PASSWORD_TRIES = 8;

const SEGMENT = 4096;
/** Agile block keys (MS-OFFCRYPTO 2.3.4.11/2.3.4.13). */
const BLOCK_VERIFIER_INPUT = Buffer.from('fea7d2763b4b9e79', 'hex');
const BLOCK_VERIFIER_VALUE = Buffer.from('d7aa0f6d3061344e', 'hex');
const BLOCK_KEY_VALUE = Buffer.from('146e0be7abacd0d6', 'hex');
/** Standard encryption: SHA-1 stretched this many times (2.3.4.7). */
const STANDARD_SPINS = 50_000;

const HASHES: Record<string, { alg: string; size: number }> = {
  SHA1: { alg: 'sha1', size: 20 },
  'SHA-1': { alg: 'sha1', size: 20 },
  SHA256: { alg: 'sha256', size: 32 },
  SHA384: { alg: 'sha384', size: 48 },
  SHA512: { alg: 'sha512', size: 64 },
};

export interface AgileParams {
  method: 'agile';
  keyData: { salt: Buffer; blockSize: number; keyBits: number; hash: string; hashSize: number };
  password: {
    spinCount: number;
    salt: Buffer;
    blockSize: number;
    keyBits: number;
    hash: string;
    hashSize: number;
    encryptedVerifierHashInput: Buffer;
    encryptedVerifierHashValue: Buffer;
    encryptedKeyValue: Buffer;
  };
}

export interface StandardParams {
  method: 'standard';
  keyBits: number;
  salt: Buffer;
  encryptedVerifier: Buffer;
  verifierHashSize: number;
  encryptedVerifierHash: Buffer;
}

export type EncryptionParams = AgileParams | StandardParams;

export type DecryptFailure = 'wrong_password' | 'unsupported' | 'damaged' | 'too_costly' | 'deadline';

export type DecryptResult =
  | { ok: true; data: Buffer; method: EncryptionParams['method']; tried: number; passwordIndex: number; password: string }
  | { ok: false; reason: DecryptFailure; details: string; method?: EncryptionParams['method']; tried: number };

/** Thrown inside this module only; turned into a DecryptResult. */
class Refusal extends Error {
  constructor(
    readonly reason: DecryptFailure,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// EncryptionInfo

/** Parses an EncryptionInfo stream; throws a Refusal for what is not Agile or Standard AES. */
export function parseEncryptionInfo(info: Buffer): EncryptionParams {
  if (info.length < 8) throw new Refusal('damaged', 'EncryptionInfo shorter than its version header');
  const major = info.readUInt16LE(0);
  const minor = info.readUInt16LE(2);
  if (major === 4 && minor === 4) return parseAgile(info.subarray(8).toString('utf8'));
  if ((major === 3 || major === 4) && minor === 2) return parseStandard(info);
  throw new Refusal('unsupported', `encryption version ${major}.${minor} is not supported`);
}

/** Attributes of the first element named `local` (any namespace prefix) matching `filter`. */
function element(xml: string, local: string, filter: (a: Record<string, string>) => boolean = () => true): Record<string, string> | undefined {
  const re = new RegExp(`<(?:[\\w.-]+:)?${local}\\b([^>]*)>`, 'g');
  for (const m of xml.matchAll(re)) {
    const attrs: Record<string, string> = {};
    for (const a of m[1].matchAll(/([\w.:-]+)\s*=\s*"([^"]*)"/g)) attrs[a[1]] = a[2];
    if (filter(attrs)) return attrs;
  }
  return undefined;
}

function intAttr(a: Record<string, string>, name: string, min: number, max: number): number {
  const v = Number(a[name]);
  if (!Number.isInteger(v) || v < min || v > max) throw new Refusal('damaged', `EncryptionInfo ${name}="${(a[name] ?? '').slice(0, 20)}" is out of range`);
  return v;
}

function b64Attr(a: Record<string, string>, name: string): Buffer {
  const v = a[name];
  if (!v || !/^[A-Za-z0-9+/=\s]+$/.test(v)) throw new Refusal('damaged', `EncryptionInfo ${name} is missing or not base64`);
  return Buffer.from(v, 'base64');
}

/** Checks the cipher is AES-CBC and names the hash; shared by keyData and the password encryptor. */
function cipherOf(a: Record<string, string>, where: string): { blockSize: number; keyBits: number; hash: string; hashSize: number; salt: Buffer } {
  if ((a.cipherAlgorithm ?? 'AES') !== 'AES') throw new Refusal('unsupported', `${where} cipher ${a.cipherAlgorithm.slice(0, 20)} is not supported`);
  if ((a.cipherChaining ?? 'ChainingModeCBC') !== 'ChainingModeCBC') throw new Refusal('unsupported', `${where} chaining ${a.cipherChaining.slice(0, 30)} is not supported`);
  const hash = HASHES[a.hashAlgorithm ?? ''];
  if (!hash) throw new Refusal('unsupported', `${where} hash ${(a.hashAlgorithm ?? '(none)').slice(0, 20)} is not supported`);
  const keyBits = intAttr(a, 'keyBits', 128, 256);
  if (![128, 192, 256].includes(keyBits)) throw new Refusal('unsupported', `${where} AES key of ${keyBits} bits`);
  const blockSize = intAttr(a, 'blockSize', 16, 16);
  const salt = b64Attr(a, 'saltValue');
  if (salt.length < 1 || salt.length > 64) throw new Refusal('damaged', `${where} salt of ${salt.length} bytes`);
  return { blockSize, keyBits, hash: hash.alg, hashSize: hash.size, salt };
}

function parseAgile(xml: string): AgileParams {
  const keyData = element(xml, 'keyData');
  if (!keyData) throw new Refusal('damaged', 'agile EncryptionInfo without keyData');
  const encryptor = element(xml, 'encryptedKey', (a) => 'spinCount' in a);
  if (!encryptor) throw new Refusal('unsupported', 'no password key encryptor (certificate-only encryption)');
  const spinCount = intAttr(encryptor, 'spinCount', 0, Number.MAX_SAFE_INTEGER);
  if (spinCount > MAX_SPIN_COUNT) throw new Refusal('too_costly', `spin count ${spinCount} above ${MAX_SPIN_COUNT}`);
  return {
    method: 'agile',
    keyData: cipherOf(keyData, 'keyData'),
    password: {
      ...cipherOf(encryptor, 'password key encryptor'),
      spinCount,
      encryptedVerifierHashInput: b64Attr(encryptor, 'encryptedVerifierHashInput'),
      encryptedVerifierHashValue: b64Attr(encryptor, 'encryptedVerifierHashValue'),
      encryptedKeyValue: b64Attr(encryptor, 'encryptedKeyValue'),
    },
  };
}

/** Standard (binary) EncryptionInfo: version, flags, header size, EncryptionHeader, EncryptionVerifier. */
function parseStandard(info: Buffer): StandardParams {
  if (info.length < 12) throw new Refusal('damaged', 'standard EncryptionInfo truncated');
  const headerSize = info.readUInt32LE(8);
  const h = 12;
  if (headerSize < 32 || h + headerSize + 4 > info.length) throw new Refusal('damaged', 'standard EncryptionHeader truncated');
  const flags = info.readUInt32LE(h);
  const algId = info.readUInt32LE(h + 8);
  const algIdHash = info.readUInt32LE(h + 12);
  let keyBits = info.readUInt32LE(h + 16);
  if (flags & 0x10) throw new Refusal('unsupported', 'externally encrypted document (fExternal)');
  if (!(flags & 0x20) || (algId !== 0 && ![0x660e, 0x660f, 0x6610].includes(algId))) {
    throw new Refusal('unsupported', `standard encryption with algorithm 0x${algId.toString(16)} (only AES is supported)`);
  }
  if (algIdHash !== 0 && algIdHash !== 0x8004) throw new Refusal('unsupported', `standard encryption hash 0x${algIdHash.toString(16)}`);
  const byAlg = { 0x660e: 128, 0x660f: 192, 0x6610: 256 } as Record<number, number>;
  if (keyBits === 0) keyBits = byAlg[algId] ?? 128;
  if (![128, 192, 256].includes(keyBits)) throw new Refusal('damaged', `standard AES key of ${keyBits} bits`);
  let v = h + headerSize;
  const saltSize = info.readUInt32LE(v);
  v += 4;
  if (saltSize !== 16 || v + 16 + 16 + 4 + 32 > info.length) throw new Refusal('damaged', 'standard EncryptionVerifier truncated');
  const salt = info.subarray(v, v + 16);
  const encryptedVerifier = info.subarray(v + 16, v + 32);
  const verifierHashSize = info.readUInt32LE(v + 32);
  if (verifierHashSize !== 20) throw new Refusal('damaged', `verifier hash of ${verifierHashSize} bytes`);
  const encryptedVerifierHash = info.subarray(v + 36, v + 36 + 32);
  return { method: 'standard', keyBits, salt, encryptedVerifier, verifierHashSize, encryptedVerifierHash };
}

// ---------------------------------------------------------------------------------------------
// Key derivation

interface Guard {
  signal?: AbortSignal;
  deadline?: number;
}

function check(g: Guard): void {
  if (g.signal?.aborted) throw new Refusal('deadline', 'aborted');
  if (g.deadline !== undefined && Date.now() >= g.deadline) throw new Refusal('deadline', 'time limit reached while deriving keys');
}

/** H0 = H(salt + UTF-16LE password), Hi = H(LE32(i) + Hi-1); yields to the event loop now and then. */
export async function stretchPassword(alg: string, salt: Buffer, password: string, spinCount: number, guard: Guard = {}): Promise<Buffer> {
  let h = crypto.createHash(alg).update(salt).update(Buffer.from(password, 'utf16le')).digest();
  // One reused LE32(i) + H buffer and the one-shot crypto.hash: about twice as fast as createHash.
  const buf = Buffer.alloc(4 + h.length);
  for (let i = 0; i < spinCount; i++) {
    buf.writeUInt32LE(i, 0);
    h.copy(buf, 4);
    h = crypto.hash(alg, buf, 'buffer');
    if ((i & 0x7fff) === 0x7fff) {
      await new Promise((resolve) => setImmediate(resolve));
      check(guard);
    }
  }
  return h;
}

/** `buf` cut or padded with `pad` to `size` bytes. */
function fit(buf: Buffer, size: number, pad: number): Buffer {
  return buf.length >= size ? buf.subarray(0, size) : Buffer.concat([buf, Buffer.alloc(size - buf.length, pad)]);
}

function aesDecrypt(mode: 'cbc' | 'ecb', key: Buffer, iv: Buffer | null, data: Buffer): Buffer {
  if (data.length % 16 !== 0) throw new Refusal('damaged', `ciphertext of ${data.length} bytes is not whole AES blocks`);
  const d = crypto.createDecipheriv(`aes-${key.length * 8}-${mode}`, key, iv).setAutoPadding(false);
  return Buffer.concat([d.update(data), d.final()]);
}

/** Agile: the package key if `password` is right, else undefined. */
async function agileKey(p: AgileParams, password: string, guard: Guard): Promise<Buffer | undefined> {
  const e = p.password;
  const hn = await stretchPassword(e.hash, e.salt, password, e.spinCount, guard);
  const key = (block: Buffer) => fit(crypto.createHash(e.hash).update(hn).update(block).digest(), e.keyBits / 8, 0x36);
  const iv = fit(e.salt, e.blockSize, 0x36);
  const input = aesDecrypt('cbc', key(BLOCK_VERIFIER_INPUT), iv, e.encryptedVerifierHashInput).subarray(0, e.salt.length);
  const value = aesDecrypt('cbc', key(BLOCK_VERIFIER_VALUE), iv, e.encryptedVerifierHashValue).subarray(0, e.hashSize);
  if (!crypto.createHash(e.hash).update(input).digest().equals(value)) return undefined;
  const secret = aesDecrypt('cbc', key(BLOCK_KEY_VALUE), iv, e.encryptedKeyValue);
  if (secret.length < p.keyData.keyBits / 8) throw new Refusal('damaged', 'encrypted key shorter than the package key');
  return secret.subarray(0, p.keyData.keyBits / 8);
}

/** Standard (2.3.4.7): stretched SHA-1, then H(Hn + LE32(0)) expanded through the 0x36/0x5c pads. */
async function standardKey(p: StandardParams, password: string, guard: Guard): Promise<Buffer | undefined> {
  const hn = await stretchPassword('sha1', p.salt, password, STANDARD_SPINS, guard);
  const hfinal = crypto.createHash('sha1').update(hn).update(Buffer.alloc(4)).digest();
  const pad = (byte: number) => {
    const b = Buffer.alloc(64, byte);
    for (let i = 0; i < hfinal.length; i++) b[i] ^= hfinal[i];
    return crypto.createHash('sha1').update(b).digest();
  };
  const key = Buffer.concat([pad(0x36), pad(0x5c)]).subarray(0, p.keyBits / 8);
  const verifier = aesDecrypt('ecb', key, null, p.encryptedVerifier);
  const hash = aesDecrypt('ecb', key, null, p.encryptedVerifierHash).subarray(0, p.verifierHashSize);
  return crypto.createHash('sha1').update(verifier).digest().equals(hash) ? key : undefined;
}

// ---------------------------------------------------------------------------------------------
// Package

/** The declared plaintext size (8-byte LE), checked against what the stream can hold. */
function packageSize(pkg: Buffer): number {
  if (pkg.length < 8) throw new Refusal('damaged', 'EncryptedPackage shorter than its size field');
  const size = Number(pkg.readBigUInt64LE(0));
  if (size > pkg.length - 8) throw new Refusal('damaged', `EncryptedPackage declares ${size} bytes but holds ${pkg.length - 8}`);
  return size;
}

/** Whole AES blocks covering `size` bytes of ciphertext after the size field. */
function cipherBody(pkg: Buffer, size: number): Buffer {
  return pkg.subarray(8, 8 + Math.ceil(size / 16) * 16);
}

function decryptAgilePackage(p: AgileParams, key: Buffer, pkg: Buffer): Buffer {
  const size = packageSize(pkg);
  const body = cipherBody(pkg, size);
  const out = Buffer.alloc(body.length);
  const counter = Buffer.alloc(4);
  for (let i = 0, off = 0; off < body.length; i++, off += SEGMENT) {
    counter.writeUInt32LE(i, 0);
    const iv = fit(crypto.createHash(p.keyData.hash).update(p.keyData.salt).update(counter).digest(), p.keyData.blockSize, 0x36);
    aesDecrypt('cbc', key, iv, body.subarray(off, off + SEGMENT)).copy(out, off);
  }
  return out.subarray(0, size);
}

function decryptStandardPackage(key: Buffer, pkg: Buffer): Buffer {
  const size = packageSize(pkg);
  return aesDecrypt('ecb', key, null, cipherBody(pkg, size)).subarray(0, size);
}

// ---------------------------------------------------------------------------------------------
// Entry point

/** The passwords to try, in order: the given ones (deduplicated), then Excel's default; capped. */
export function candidatePasswords(passwords: readonly string[]): string[] {
  return [...new Set([...passwords, DEFAULT_EXCEL_PASSWORD])].slice(0, MAX_PASSWORD_TRIES);
}

/**
 * Tries `candidatePasswords(passwords)` on an encrypted OOXML package. Never throws for bad input:
 * failures come back with a reason (`wrong_password` after trying them all).
 */
export async function decryptOfficePackage(info: Buffer, pkg: Buffer, passwords: readonly string[], guard: Guard = {}): Promise<DecryptResult> {
  let params: EncryptionParams | undefined;
  let tried = 0;
  try {
    params = parseEncryptionInfo(info);
    const candidates = candidatePasswords(passwords);
    for (const [index, password] of candidates.entries()) {
      check(guard);
      tried++;
      if (params.method === 'agile') {
        const key = await agileKey(params, password, guard);
        if (key) return { ok: true, data: decryptAgilePackage(params, key, pkg), method: 'agile', tried, passwordIndex: index, password };
      } else {
        const key = await standardKey(params, password, guard);
        if (key) return { ok: true, data: decryptStandardPackage(key, pkg), method: 'standard', tried, passwordIndex: index, password };
      }
    }
    return { ok: false, reason: 'wrong_password', details: `none of the ${tried} passwords tried opened it`, method: params.method, tried };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, reason: err.reason, details: err.message, method: params?.method, tried };
    return { ok: false, reason: 'damaged', details: (err as Error).message.slice(0, 200), method: params?.method, tried };
  }
}
