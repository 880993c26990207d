/**
 * The PDF Standard security handler (ISO 32000-1 §7.6.3, ISO 32000-2 §7.6.4): derives the file
 * key from a password and decrypts strings and streams. Revisions 2–4 (RC4 40–128 bit, AES-128)
 * and 5–6 (AES-256). Most encrypted PDFs in the wild have an empty user password (only editing
 * is restricted), so the empty password is always tried first; then the request's passwords,
 * each as a user and as an owner password.
 *
 * @example
 * const h = openStandardSecurity(encryptDict, fileId, ['', 'secret']);
 * if (h.ok) data = h.decryptor.stream(12, 0, raw);
 */
import crypto from 'node:crypto';

/** The /Encrypt dictionary's values this module needs, already resolved by the PDF parser. */
export interface EncryptParams {
  filter?: string;
  v: number;
  r: number;
  /** Key length in bits (V 2–3), default 40. */
  length?: number;
  o: Buffer;
  u: Buffer;
  oe?: Buffer;
  ue?: Buffer;
  p: number;
  encryptMetadata: boolean;
  /** Crypt filter method of streams and strings (V 4–5): V2 (RC4), AESV2, AESV3, or None/Identity. */
  stmMethod?: string;
  strMethod?: string;
}

export interface Decryptor {
  /** What the file is encrypted with, for the report. */
  readonly method: string;
  /** Which password opened it: the empty user password, or a supplied user/owner password. */
  readonly openedWith: 'empty' | 'user' | 'owner';
  string(num: number, gen: number, data: Buffer): Buffer;
  stream(num: number, gen: number, data: Buffer): Buffer;
}

export type OpenResult = { ok: true; decryptor: Decryptor } | { ok: false; reason: string; passwordsTried: number };

const PAD = Buffer.from('28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a', 'hex');

function md5(...parts: Buffer[]): Buffer {
  const h = crypto.createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** RC4 (OpenSSL 3 keeps it in the legacy provider, which Node does not load). */
export function rc4(key: Buffer, data: Buffer): Buffer {
  const s = new Uint8Array(256);
  for (let i = 0; i < 256; i++) s[i] = i;
  for (let i = 0, j = 0; i < 256; i++) {
    j = (j + s[i] + key[i % key.length]) & 255;
    [s[i], s[j]] = [s[j], s[i]];
  }
  const out = Buffer.allocUnsafe(data.length);
  for (let n = 0, i = 0, j = 0; n < data.length; n++) {
    i = (i + 1) & 255;
    j = (j + s[i]) & 255;
    [s[i], s[j]] = [s[j], s[i]];
    out[n] = data[n] ^ s[(s[i] + s[j]) & 255];
  }
  return out;
}

function aesCbcDecrypt(key: Buffer, data: Buffer, padded: boolean): Buffer {
  if (data.length < 32 || data.length % 16 !== 0) {
    // too short for IV + one block, or not whole blocks: decrypt what can be, never throw
    if (data.length < 32) return Buffer.alloc(0);
    data = data.subarray(0, data.length - (data.length % 16));
  }
  const bits = key.length * 8;
  const d = crypto.createDecipheriv(`aes-${bits}-cbc`, key, data.subarray(0, 16));
  d.setAutoPadding(false);
  const out = Buffer.concat([d.update(data.subarray(16)), d.final()]);
  if (!padded || out.length === 0) return out;
  const pad = out[out.length - 1];
  return pad >= 1 && pad <= 16 ? out.subarray(0, out.length - pad) : out;
}

function aesNoIv(key: Buffer, data: Buffer, decrypt: boolean): Buffer {
  const c = decrypt ? crypto.createDecipheriv('aes-256-cbc', key, Buffer.alloc(16)) : crypto.createCipheriv('aes-256-cbc', key, Buffer.alloc(16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

// ---------------------------------------------------------------------------------------------
// Revisions 2–4

function padPassword(pw: string): Buffer {
  return Buffer.concat([Buffer.from(pw, 'latin1').subarray(0, 32), PAD]).subarray(0, 32);
}

function le32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n | 0);
  return b;
}

/** Algorithm 2: the file key of a (padded) user password. */
function fileKeyR4(p: EncryptParams, id0: Buffer, password: Buffer): Buffer {
  const n = p.r === 2 ? 5 : Math.max(5, Math.min(16, (p.length ?? 40) / 8));
  let key = md5(password, p.o.subarray(0, 32), le32(p.p), id0, p.r >= 4 && !p.encryptMetadata ? Buffer.from([255, 255, 255, 255]) : Buffer.alloc(0));
  if (p.r >= 3) for (let i = 0; i < 50; i++) key = md5(key.subarray(0, n));
  return key.subarray(0, n);
}

/** Algorithms 4 and 5: does `key` reproduce /U? */
function userKeyMatches(p: EncryptParams, id0: Buffer, key: Buffer): boolean {
  if (p.r === 2) return rc4(key, PAD).equals(p.u.subarray(0, 32));
  let x = rc4(key, md5(PAD, id0));
  for (let i = 1; i <= 19; i++) x = rc4(Buffer.from(key.map((b) => b ^ i)), x);
  return x.subarray(0, 16).equals(p.u.subarray(0, 16));
}

/** Algorithm 7: the user password hidden in /O under an owner password. */
function userPasswordFromOwner(p: EncryptParams, owner: string): Buffer {
  const n = p.r === 2 ? 5 : Math.max(5, Math.min(16, (p.length ?? 40) / 8));
  let h = md5(padPassword(owner));
  if (p.r >= 3) for (let i = 0; i < 50; i++) h = md5(h);
  const key = h.subarray(0, n);
  if (p.r === 2) return rc4(key, p.o.subarray(0, 32));
  let x: Buffer = Buffer.from(p.o.subarray(0, 32));
  for (let i = 19; i >= 0; i--) x = rc4(Buffer.from(key.map((b) => b ^ i)), x);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Revisions 5–6 (AES-256)

/** Algorithm 2.B (revision 6) or plain SHA-256 (revision 5). */
function hashR6(p: EncryptParams, password: Buffer, salt: Buffer, udata: Buffer): Buffer {
  let k = crypto.createHash('sha256').update(password).update(salt).update(udata).digest();
  if (p.r === 5) return k;
  for (let round = 0; ; round++) {
    const k1 = Buffer.concat(Array.from({ length: 64 }, () => Buffer.concat([password, k, udata])));
    const c = crypto.createCipheriv('aes-128-cbc', k.subarray(0, 16), k.subarray(16, 32));
    c.setAutoPadding(false);
    const e = Buffer.concat([c.update(k1), c.final()]);
    let mod = 0;
    for (let i = 0; i < 16; i++) mod += e[i];
    const alg = ['sha256', 'sha384', 'sha512'][mod % 3];
    k = crypto.createHash(alg).update(e).digest();
    if (round >= 63 && e[e.length - 1] <= round + 1 - 32) break;
  }
  return k.subarray(0, 32);
}

function fileKeyR6(p: EncryptParams, pw: string): { key: Buffer; as: 'user' | 'owner' } | undefined {
  const password = Buffer.from(pw.normalize('NFKC'), 'utf8').subarray(0, 127);
  const u = p.u.subarray(0, 48);
  const o = p.o.subarray(0, 48);
  if (u.length < 48 || o.length < 48) return undefined;
  if (p.oe && hashR6(p, password, o.subarray(32, 40), u).equals(o.subarray(0, 32))) {
    return { key: aesNoIv(hashR6(p, password, o.subarray(40, 48), u), p.oe.subarray(0, 32), true), as: 'owner' };
  }
  if (p.ue && hashR6(p, password, u.subarray(32, 40), Buffer.alloc(0)).equals(u.subarray(0, 32))) {
    return { key: aesNoIv(hashR6(p, password, u.subarray(40, 48), Buffer.alloc(0)), p.ue.subarray(0, 32), true), as: 'user' };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

function methodOf(p: EncryptParams, which: 'stm' | 'str'): 'rc4' | 'aes128' | 'aes256' | 'none' {
  if (p.v >= 5) return (which === 'stm' ? p.stmMethod : p.strMethod) === 'Identity' ? 'none' : 'aes256';
  if (p.v === 4) {
    const m = which === 'stm' ? p.stmMethod : p.strMethod;
    if (m === 'AESV2') return 'aes128';
    if (m === 'AESV3') return 'aes256';
    if (m === 'V2') return 'rc4';
    return 'none'; // Identity (or absent): not encrypted
  }
  return 'rc4';
}

function objectKey(fileKey: Buffer, num: number, gen: number, aes: boolean): Buffer {
  const extra = Buffer.from([num & 255, (num >> 8) & 255, (num >> 16) & 255, gen & 255, (gen >> 8) & 255]);
  return md5(fileKey, extra, aes ? Buffer.from('sAlT', 'latin1') : Buffer.alloc(0)).subarray(0, Math.min(fileKey.length + 5, 16));
}

function makeDecryptor(p: EncryptParams, fileKey: Buffer, openedWith: Decryptor['openedWith']): Decryptor {
  const run = (m: ReturnType<typeof methodOf>, num: number, gen: number, data: Buffer): Buffer => {
    if (m === 'none') return data;
    if (m === 'aes256') return aesCbcDecrypt(fileKey, data, true);
    if (m === 'aes128') return aesCbcDecrypt(objectKey(fileKey, num, gen, true), data, true);
    return rc4(objectKey(fileKey, num, gen, false), data);
  };
  const stm = methodOf(p, 'stm');
  const str = methodOf(p, 'str');
  const method = p.v >= 5 ? 'AES-256' : stm === 'aes128' ? 'AES-128' : `RC4-${p.r === 2 ? 40 : (p.length ?? 40)}`;
  return {
    method,
    openedWith,
    string: (num, gen, data) => run(str, num, gen, data),
    stream: (num, gen, data) => run(stm, num, gen, data),
  };
}

/** Tries the empty password, then each of `passwords` as user and owner password. */
export function openStandardSecurity(p: EncryptParams, id0: Buffer, passwords: readonly string[]): OpenResult {
  if (p.filter && p.filter !== 'Standard') return { ok: false, reason: `security handler ${p.filter} is not supported`, passwordsTried: 0 };
  if (![2, 3, 4, 5, 6].includes(p.r)) return { ok: false, reason: `security handler revision ${p.r} is not supported`, passwordsTried: 0 };
  const candidates = [...new Set(['', ...passwords])].slice(0, 16);
  let tried = 0;
  for (const pw of candidates) {
    tried++;
    if (p.r >= 5) {
      const k = fileKeyR6(p, pw);
      if (k) return { ok: true, decryptor: makeDecryptor(p, k.key, pw === '' ? 'empty' : k.as) };
      continue;
    }
    const asUser = fileKeyR4(p, id0, padPassword(pw));
    if (userKeyMatches(p, id0, asUser)) return { ok: true, decryptor: makeDecryptor(p, asUser, pw === '' ? 'empty' : 'user') };
    if (pw !== '') {
      const asOwner = fileKeyR4(p, id0, userPasswordFromOwner(p, pw));
      if (userKeyMatches(p, id0, asOwner)) return { ok: true, decryptor: makeDecryptor(p, asOwner, 'owner') };
    }
  }
  return { ok: false, reason: 'none of the passwords tried opens the document', passwordsTried: tried };
}
