/**
 * Data classification: finds personal data and secrets in text, each candidate confirmed by a
 * validation rule rather than a bare pattern — payment card numbers (IIN ranges + Luhn), IBANs
 * (country length + ISO 7064 mod 97), US social security numbers (area/group/serial rules),
 * e-mail addresses, phone numbers (E.164 or North American numbering), AWS access keys and other
 * cloud credentials, private keys, and JWTs (header decoded and checked).
 *
 * It runs only when the request asks for classification (`options.classify`, set by the CSS
 * `/api/Classify...` calls) and on text objects: plain text, HTML, XML, scripts, email. Archive
 * members and other extracted children are objects of their own, so it runs on them too.
 * Findings score 0 — classification is not a threat — and carry counts and masked matches with
 * their byte offsets; the clear values never leave the scanner.
 *
 * @example
 * findSensitive('card 4111 1111 1111 1111')  // [{ cls: 'payment_card', offset: 5, masked: '************1111' }]
 */
import { StringDecoder } from 'node:string_decoder';
import type { HeuristicId } from '../verdict/heuristics.ts';
import type { Finding, Scanner } from './types.ts';

export type DataClass = 'payment_card' | 'iban' | 'us_ssn' | 'email' | 'phone' | 'cloud_credential' | 'private_key' | 'jwt';

export interface SensitiveMatch {
  cls: DataClass;
  /** Byte offset in the object (latin1 decoding keeps bytes and characters aligned). */
  offset: number;
  /** The value with most of it hidden. */
  masked: string;
  /** For credentials: which kind (aws_access_key, github_token...). */
  kind?: string;
}

/** Heuristic of each class (one catalogue entry per class). */
export const CLASS_HEURISTICS: Record<DataClass, HeuristicId> = {
  payment_card: 'CLASSIFIED_PAYMENT_CARD',
  iban: 'CLASSIFIED_IBAN',
  us_ssn: 'CLASSIFIED_US_SSN',
  email: 'CLASSIFIED_EMAIL',
  phone: 'CLASSIFIED_PHONE',
  cloud_credential: 'CLASSIFIED_CLOUD_CREDENTIAL',
  private_key: 'CLASSIFIED_PRIVATE_KEY',
  jwt: 'CLASSIFIED_JWT',
};

const TEXT_TYPES = new Set(['text', 'html', 'xml', 'svg', 'script', 'email', 'json', 'csv']);
/** Most bytes read from one object. */
const MAX_BYTES = 64 * 1024 * 1024;
/** Matches kept (with offsets) per class and object; counts go on. */
const MAX_KEPT = 50;
const WINDOW = 1024 * 1024;
const OVERLAP = 4096;

// Validators ---------------------------------------------------------------------------------

export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** Issuer ranges of the major card schemes, with their lengths. */
function cardBrand(d: string): boolean {
  const n = d.length;
  const p2 = Number(d.slice(0, 2));
  const p3 = Number(d.slice(0, 3));
  const p4 = Number(d.slice(0, 4));
  const p6 = Number(d.slice(0, 6));
  if (d[0] === '4') return n === 13 || n === 16 || n === 19; // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n === 16; // Mastercard
  if (p2 === 34 || p2 === 37) return n === 15; // American Express
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) return n >= 16 && n <= 19; // Discover
  if (p4 >= 3528 && p4 <= 3589) return n >= 16 && n <= 19; // JCB
  if (p2 === 36 || p2 === 38 || p2 === 39 || (p3 >= 300 && p3 <= 305) || p3 === 309) return n >= 14 && n <= 19; // Diners
  if (p2 === 62) return n >= 16 && n <= 19; // UnionPay
  if (p2 === 50 || (p2 >= 56 && p2 <= 69)) return n >= 12 && n <= 19; // Maestro
  return false;
}

/** IBAN lengths by country (ISO 13616 registry, the commonly used part). */
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DK: 18, DO: 28, EE: 20, EG: 29,
  ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30,
  KZ: 20, LB: 28, LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24, ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25,
  QA: 29, RO: 24, RS: 22, SA: 24, SE: 24, SI: 19, SK: 24, SM: 27, TN: 24, TR: 26, UA: 29, VG: 24, XK: 20,
};

export function ibanValid(iban: string): boolean {
  const s = iban.replace(/\s+/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$/.test(s)) return false;
  const len = IBAN_LENGTHS[s.slice(0, 2)];
  if (len === undefined || s.length !== len) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (const ch of rearranged) {
    const v = ch >= 'A' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const digit of v) rem = (rem * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

/** SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  const a = Number(area);
  if (a === 0 || a === 666 || a >= 900) return false;
  if (group === '00' || serial === '0000') return false;
  // widely published example numbers
  if (`${area}${group}${serial}` === '078051120' || `${area}${group}${serial}` === '219099999') return false;
  return true;
}

function jwtValid(token: string): boolean {
  const [h, p] = token.split('.');
  try {
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as unknown;
    return typeof header.alg === 'string' && typeof payload === 'object' && payload !== null;
  } catch {
    return false;
  }
}

// Masking ------------------------------------------------------------------------------------

function maskKeep(value: string, head: number, tail: number): string {
  if (value.length <= head + tail) return '*'.repeat(value.length);
  return value.slice(0, head) + '*'.repeat(value.length - head - tail) + value.slice(value.length - tail);
}

function maskEmail(v: string): string {
  const at = v.lastIndexOf('@');
  const local = v.slice(0, at);
  return `${local[0]}${'*'.repeat(Math.max(1, local.length - 1))}@${v.slice(at + 1)}`;
}

// Detectors ----------------------------------------------------------------------------------

interface Detector {
  cls: DataClass;
  re: RegExp;
  /** Confirms a candidate and masks it; undefined rejects it. */
  check(m: RegExpExecArray): { masked: string; kind?: string } | undefined;
}

const DETECTORS: Detector[] = [
  {
    cls: 'payment_card',
    re: /(?<![\d-])(?:\d[ -]?){11,18}\d(?![\d-])/g,
    check(m) {
      const raw = m[0];
      if (/[ -]{2}/.test(raw)) return undefined;
      const d = raw.replace(/[ -]/g, '');
      if (!cardBrand(d) || !luhnValid(d) || /^(\d)\1+$/.test(d)) return undefined;
      return { masked: '*'.repeat(d.length - 4) + d.slice(-4) };
    },
  },
  {
    cls: 'iban',
    re: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g,
    check(m) {
      const s = m[0].replace(/ /g, '');
      return ibanValid(s) ? { masked: s.slice(0, 4) + '*'.repeat(s.length - 8) + s.slice(-4) } : undefined;
    },
  },
  {
    cls: 'us_ssn',
    re: /(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])/g,
    check(m) {
      return ssnValid(m[1], m[3], m[4]) ? { masked: `***-**-${m[4]}` } : undefined;
    },
  },
  {
    cls: 'email',
    re: /\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b/g,
    check(m) {
      const v = m[0];
      const local = v.slice(0, v.lastIndexOf('@'));
      if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return undefined;
      return { masked: maskEmail(v) };
    },
  },
  {
    cls: 'phone',
    // E.164 (+ and 8-15 digits, with separators) or North American (NXX) NXX-XXXX
    re: /(?<![\w+])(?:\+[1-9](?:[ .-]?\(?\d\)?){7,14}|\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]\d{4})(?![\w])/g,
    check(m) {
      const raw = m[0];
      const digits = raw.replace(/\D/g, '');
      if (raw.startsWith('+')) {
        if (digits.length < 8 || digits.length > 15) return undefined;
      } else if (digits.length !== 10 || !/[-. )]/.test(raw)) return undefined;
      if (/^(\d)\1+$/.test(digits)) return undefined;
      return { masked: (raw.startsWith('+') ? '+' : '') + maskKeep(digits, 0, 2) };
    },
  },
  {
    cls: 'cloud_credential',
    re: /\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}|AIza[0-9A-Za-z_-]{35}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,90}|xox[abprs]-[A-Za-z0-9-]{10,100}|glpat-[A-Za-z0-9_-]{20})\b|(?:aws_secret_access_key|aws_secret_key|secretAccessKey)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])|AccountKey=[A-Za-z0-9+/]{86}==|"private_key_id"\s*:\s*"[0-9a-f]{40}"/g,
    check(m) {
      const v = m[0];
      const kind = /^A(KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)/.test(v)
        ? 'aws_access_key'
        : v.startsWith('AIza')
          ? 'google_api_key'
          : /^(gh[pousr]_|github_pat_)/.test(v)
            ? 'github_token'
            : v.startsWith('xox')
              ? 'slack_token'
              : v.startsWith('glpat-')
                ? 'gitlab_token'
                : v.startsWith('AccountKey=')
                  ? 'azure_storage_key'
                  : v.startsWith('"private_key_id"')
                    ? 'gcp_service_account_key'
                    : 'aws_secret_key';
      const secret = v.replace(/^.*?[:=]\s*["']?/, '');
      return { kind, masked: kind === 'aws_access_key' || kind.endsWith('_token') || kind === 'google_api_key' ? maskKeep(v, 4, 2) : `${kind}: ${maskKeep(secret.replace(/"/g, ''), 2, 0)}` };
    },
  },
  {
    cls: 'private_key',
    re: /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----/g,
    check(m) {
      return { masked: `-----BEGIN ${m[1]}----- [redacted]`, kind: m[1].toLowerCase().replace(/ /g, '_') };
    },
  },
  {
    cls: 'jwt',
    re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,1024}/g,
    check(m) {
      return jwtValid(m[0]) ? { masked: m[0].slice(0, 10) + '…[redacted]' } : undefined;
    },
  },
];

/** Every confirmed match in `text`; offsets are relative to `base`. */
export function findSensitive(text: string, base = 0): SensitiveMatch[] {
  const out: SensitiveMatch[] = [];
  for (const d of DETECTORS) {
    d.re.lastIndex = 0;
    for (let m = d.re.exec(text); m; m = d.re.exec(text)) {
      const ok = d.check(m);
      if (ok) out.push({ cls: d.cls, offset: base + m.index, masked: ok.masked, ...(ok.kind ? { kind: ok.kind } : {}) });
    }
  }
  return out;
}

export const classificationScanner: Scanner = {
  name: 'classification',
  version: '1',
  layer: 'classification',
  accepts: (info, _state, options) => options?.classify === true && info.kind === 'file' && TEXT_TYPES.has(info.fileType),
  async scan(input, ctx) {
    if (!ctx.options.classify) return {};
    const found = new Map<DataClass, { count: number; kinds: Set<string>; matches: { offset: number; masked: string }[] }>();
    const seen = new Set<string>();
    let read = 0;
    let carry = '';
    let carryStart = 0;
    const decoder = new StringDecoder('latin1');
    const consume = (text: string, start: number, final: boolean) => {
      // a match that starts inside the overlap will be seen again in the next window: keep it for then
      const limit = final ? Infinity : start + text.length - OVERLAP;
      for (const m of findSensitive(text, start)) {
        if (m.offset >= limit) continue;
        const key = `${m.cls}:${m.offset}`;
        if (seen.has(key)) continue;
        seen.add(key);
        let e = found.get(m.cls);
        if (!e) found.set(m.cls, (e = { count: 0, kinds: new Set(), matches: [] }));
        e.count++;
        if (m.kind) e.kinds.add(m.kind);
        if (e.matches.length < MAX_KEPT) e.matches.push({ offset: m.offset, masked: m.masked });
      }
    };
    let truncated = false;
    for await (const chunk of input.stream()) {
      if (ctx.signal.aborted) break;
      const buf = chunk as Buffer;
      const room = MAX_BYTES - read;
      const part = buf.length > room ? buf.subarray(0, room) : buf;
      read += part.length;
      carry += decoder.write(part);
      if (carry.length >= WINDOW + OVERLAP) {
        consume(carry, carryStart, false);
        const keep = carry.slice(carry.length - OVERLAP);
        carryStart += carry.length - OVERLAP;
        carry = keep;
      }
      if (read >= MAX_BYTES) {
        truncated = input.info.size > MAX_BYTES;
        break;
      }
    }
    carry += decoder.end();
    consume(carry, carryStart, true);

    const evidence: Finding[] = [];
    for (const [cls, e] of found) {
      evidence.push({
        heuristic: CLASS_HEURISTICS[cls],
        details: `${e.count} ${cls.replace(/_/g, ' ')} match${e.count === 1 ? '' : 'es'}`,
        data: { class: cls, count: e.count, matches: e.matches, ...(e.kinds.size ? { kinds: [...e.kinds].sort() } : {}) },
      });
    }
    return { evidence, attributes: truncated ? { classificationTruncatedAt: MAX_BYTES } : {} };
  },
};
