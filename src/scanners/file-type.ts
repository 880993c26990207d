/**
 * File type: identifies an object from its first bytes (never from its name), and reports an
 * extension that disagrees with the content, and executables.
 */
import path from 'node:path';
import type { Finding, Scanner } from './types.ts';

export interface DetectedType {
  /** Short stable id used by `accepts()`: zip, gzip, pe, pdf, text... */
  type: string;
  mime: string;
  /** Extensions a file of this type normally has. */
  extensions: string[];
}

interface Magic {
  type: string;
  mime: string;
  ext: string[];
  test: (b: Buffer) => boolean;
}

const at = (b: Buffer, off: number, sig: number[] | string) => {
  const bytes = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : Buffer.from(sig);
  return b.length >= off + bytes.length && b.subarray(off, off + bytes.length).equals(bytes);
};

// Order matters: the first match wins, so specific formats come before generic ones.
const magics: Magic[] = [
  { type: 'zip', mime: 'application/zip', ext: ['zip', 'jar', 'docx', 'xlsx', 'pptx', 'docm', 'xlsm', 'pptm', 'apk', 'odt', 'ods', 'odp', 'epub', 'msix', 'appx', 'vsix', 'xpi', 'whl', 'nupkg'], test: (b) => at(b, 0, [0x50, 0x4b, 0x03, 0x04]) || at(b, 0, [0x50, 0x4b, 0x05, 0x06]) || at(b, 0, [0x50, 0x4b, 0x07, 0x08]) },
  { type: 'gzip', mime: 'application/gzip', ext: ['gz', 'tgz', 'gzip'], test: (b) => at(b, 0, [0x1f, 0x8b]) },
  { type: 'bzip2', mime: 'application/x-bzip2', ext: ['bz2', 'tbz', 'tbz2', 'bzip2'], test: (b) => at(b, 0, 'BZh') && b.length > 3 && b[3] >= 0x31 && b[3] <= 0x39 },
  { type: 'xz', mime: 'application/x-xz', ext: ['xz', 'txz'], test: (b) => at(b, 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
  { type: '7z', mime: 'application/x-7z-compressed', ext: ['7z'], test: (b) => at(b, 0, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]) },
  { type: 'rar', mime: 'application/vnd.rar', ext: ['rar'], test: (b) => at(b, 0, 'Rar!\x1a\x07') },
  { type: 'cab', mime: 'application/vnd.ms-cab-compressed', ext: ['cab'], test: (b) => at(b, 0, 'MSCF\0\0\0\0') },
  { type: 'zstd', mime: 'application/zstd', ext: ['zst'], test: (b) => at(b, 0, [0x28, 0xb5, 0x2f, 0xfd]) },
  { type: 'tar', mime: 'application/x-tar', ext: ['tar'], test: (b) => at(b, 257, 'ustar\0') || at(b, 257, 'ustar ') },
  { type: 'ole', mime: 'application/x-ole-storage', ext: ['doc', 'xls', 'ppt', 'msi', 'msg', 'pub', 'vsd'], test: (b) => at(b, 0, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) },
  { type: 'pdf', mime: 'application/pdf', ext: ['pdf'], test: (b) => b.subarray(0, 1024).includes('%PDF-') },
  { type: 'rtf', mime: 'application/rtf', ext: ['rtf', 'doc'], test: (b) => at(b, 0, '{\\rt') },
  { type: 'pe', mime: 'application/vnd.microsoft.portable-executable', ext: ['exe', 'dll', 'sys', 'scr', 'cpl', 'ocx', 'com', 'efi', 'drv'], test: isPe },
  { type: 'elf', mime: 'application/x-elf', ext: ['so', 'elf', 'bin', 'o', ''], test: (b) => at(b, 0, [0x7f, 0x45, 0x4c, 0x46]) },
  { type: 'macho', mime: 'application/x-mach-binary', ext: ['dylib', 'app', ''], test: (b) => at(b, 0, [0xcf, 0xfa, 0xed, 0xfe]) || at(b, 0, [0xce, 0xfa, 0xed, 0xfe]) || at(b, 0, [0xfe, 0xed, 0xfa, 0xcf]) || at(b, 0, [0xca, 0xfe, 0xba, 0xbe]) },
  { type: 'png', mime: 'image/png', ext: ['png'], test: (b) => at(b, 0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]) },
  { type: 'jpeg', mime: 'image/jpeg', ext: ['jpg', 'jpeg', 'jfif'], test: (b) => at(b, 0, [0xff, 0xd8, 0xff]) },
  { type: 'gif', mime: 'image/gif', ext: ['gif'], test: (b) => at(b, 0, 'GIF87a') || at(b, 0, 'GIF89a') },
  { type: 'bmp', mime: 'image/bmp', ext: ['bmp'], test: (b) => at(b, 0, 'BM') && b.length > 14 },
  { type: 'webp', mime: 'image/webp', ext: ['webp'], test: (b) => at(b, 0, 'RIFF') && at(b, 8, 'WEBP') },
  { type: 'iso', mime: 'application/x-iso9660-image', ext: ['iso', 'img'], test: (b) => at(b, 0x8001, 'CD001') },
  { type: 'cpio', mime: 'application/x-cpio', ext: ['cpio'], test: (b) => at(b, 0, '070701') || at(b, 0, '070702') || at(b, 0, '070707') || at(b, 0, [0xc7, 0x71]) || at(b, 0, [0x71, 0xc7]) },
  { type: 'lnk', mime: 'application/x-ms-shortcut', ext: ['lnk'], test: (b) => at(b, 0, [0x4c, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00]) },
  { type: 'chm', mime: 'application/vnd.ms-htmlhelp', ext: ['chm'], test: (b) => at(b, 0, 'ITSF') },
  { type: 'class', mime: 'application/java-vm', ext: ['class'], test: (b) => at(b, 0, [0xca, 0xfe, 0xba, 0xbe]) && b.length > 8 && b[7] > 0x2c && b[7] < 0x80 },
  { type: 'wasm', mime: 'application/wasm', ext: ['wasm'], test: (b) => at(b, 0, [0x00, 0x61, 0x73, 0x6d]) },
  { type: 'tnef', mime: 'application/vnd.ms-tnef', ext: ['tnef'], test: (b) => at(b, 0, [0x78, 0x9f, 0x3e, 0x22]) },
  { type: 'arj', mime: 'application/x-arj', ext: ['arj'], test: (b) => at(b, 0, [0x60, 0xea]) && b.length > 10 && b.readUInt16LE(2) > 0 && b.readUInt16LE(2) <= 2600 && b[10] === 2 },
  { type: 'lzip', mime: 'application/x-lzip', ext: ['lz', 'tlz'], test: (b) => at(b, 0, 'LZIP') && b.length > 4 && b[4] <= 1 },
  { type: 'lzma', mime: 'application/x-lzma', ext: ['lzma', 'tlz'], test: isLzmaAlone },
  { type: 'xar', mime: 'application/x-xar', ext: ['xar', 'pkg', 'xip'], test: (b) => at(b, 0, 'xar!') && b.length > 6 && b.readUInt16BE(4) >= 28 },
  { type: 'udf', mime: 'application/x-udf-image', ext: ['iso', 'img', 'udf'], test: (b) => at(b, 0x8001, 'BEA01') },
  { type: 'binhex', mime: 'application/mac-binhex40', ext: ['hqx', 'txt'], test: (b) => /^\s*\(This file must be converted with BinHex/.test(textHead(b)) },
  { type: 'uuencode', mime: 'text/x-uuencode', ext: ['uu', 'uue', 'txt'], test: (b) => /^\s*begin(-base64)? [0-7]{3,4} [^\r\n]+\r?\n/.test(textHead(b)) },
  { type: 'email', mime: 'message/rfc822', ext: ['eml', 'msg', 'mbox', 'txt'], test: isEmail },
  { type: 'html', mime: 'text/html', ext: ['html', 'htm', 'xhtml', 'hta', 'shtml', 'svg', 'txt'], test: (b) => /^\s*(<!doctype html|<html|<head|<body|<script|<iframe)/i.test(textHead(b)) },
  { type: 'svg', mime: 'image/svg+xml', ext: ['svg', 'xml'], test: (b) => /^\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<svg/i.test(textHead(b)) },
  { type: 'xml', mime: 'application/xml', ext: ['xml', 'xsl', 'xslt', 'config', 'plist', 'svg', 'txt'], test: (b) => /^\s*<\?xml/i.test(textHead(b)) },
  { type: 'script', mime: 'text/x-script', ext: ['sh', 'py', 'pl', 'rb', 'bash', 'txt', ''], test: (b) => at(b, 0, '#!') },
];

function textHead(b: Buffer): string {
  let s = b.subarray(0, 512);
  if (at(s, 0, [0xef, 0xbb, 0xbf])) s = s.subarray(3);
  return s.toString('latin1');
}

function isPe(b: Buffer): boolean {
  if (!at(b, 0, 'MZ')) return false;
  if (b.length < 0x40) return true; // a DOS stub at least
  const off = b.readUInt32LE(0x3c);
  return off + 4 > b.length || at(b, off, 'PE\0\0') || off > b.length;
}

// Header fields that mark a mail message; other X- fields only back them up.
const MAIL_HEADERS = new Set([
  'from', 'to', 'cc', 'subject', 'date', 'received', 'return-path', 'message-id', 'mime-version', 'delivered-to',
  'reply-to', 'sender', 'dkim-signature', 'domainkey-signature', 'arc-seal', 'arc-message-signature',
  'arc-authentication-results', 'authentication-results', 'received-spf', 'x-original-to', 'envelope-to',
  'in-reply-to', 'references', 'thread-topic', 'thread-index', 'x-mailer', 'x-received', 'x-originating-ip',
]);

/**
 * A mail message (or an mbox, whose first line is a `From ` separator): the content opens with
 * a block of header fields (folded lines allowed) holding at least two mail headers, or one and
 * an X- field. Long blocks (DKIM and ARC signatures, many Received hops) are read up to 16 KiB.
 */
function isEmail(b: Buffer): boolean {
  let s = b.subarray(0, 16 * 1024);
  if (at(s, 0, [0xef, 0xbb, 0xbf])) s = s.subarray(3);
  const lines = s.toString('latin1').split(/\r?\n/);
  // The last line may be cut by the window: not judged.
  if (s.length === 16 * 1024) lines.pop();
  const mbox = /^From \S+ .*\d/.test(lines[0] ?? '');
  let strong = 0;
  let weak = 0;
  for (let i = mbox ? 1 : 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') break;
    if (/^[ \t]/.test(line)) {
      if (i === (mbox ? 1 : 0)) return false;
      continue;
    }
    const m = /^([!-9;-~]+)[ \t]*:/.exec(line);
    if (!m) break;
    const name = m[1].toLowerCase();
    if (MAIL_HEADERS.has(name)) strong++;
    else if (name.startsWith('x-')) weak++;
  }
  return strong >= 2 || (strong >= 1 && (weak >= 1 || mbox));
}

/** True when the bytes look like text (no NULs, few control characters). */
function isText(b: Buffer): boolean {
  if (b.length === 0) return false;
  const sample = b.subarray(0, 4096);
  let bad = 0;
  for (const c of sample) {
    if (c === 0) return isUtf16(sample);
    if (c < 7 || (c > 13 && c < 32 && c !== 27)) bad++;
  }
  return bad / sample.length < 0.02;
}

function isUtf16(b: Buffer): boolean {
  return at(b, 0, [0xff, 0xfe]) || at(b, 0, [0xfe, 0xff]);
}

/** Identifies the type of an object from its first bytes (8 KiB is plenty; 0x8006 for ISO). */
export function detectType(head: Buffer): DetectedType {
  if (head.length === 0) return { type: 'empty', mime: 'application/x-empty', extensions: [] };
  for (const m of magics) if (m.test(head)) return { type: m.type, mime: m.mime, extensions: m.ext };
  if (isText(head)) return { type: 'text', mime: 'text/plain', extensions: [] };
  return { type: 'unknown', mime: 'application/octet-stream', extensions: [] };
}

/** How many leading bytes `detectType` wants to see. */
export const DETECT_HEAD_BYTES = 0x8006;

const executableTypes = new Set(['pe', 'elf', 'macho', 'class', 'wasm']);
const executableExtensions = new Set(['exe', 'dll', 'scr', 'com', 'pif', 'cpl', 'msi', 'bat', 'cmd', 'vbs', 'vbe', 'js', 'jse', 'wsf', 'wsh', 'hta', 'ps1', 'lnk', 'jar', 'sh', 'elf', 'apk']);

export function isExecutableName(name: string): boolean {
  return executableExtensions.has(path.extname(name).slice(1).toLowerCase());
}

export function isExecutableType(type: string): boolean {
  return executableTypes.has(type);
}

export const fileTypeScanner: Scanner = {
  name: 'file-type',
  version: '1',
  layer: 'static',
  accepts: (info) => info.kind === 'file',
  async scan(input) {
    const { info } = input;
    const evidence: Finding[] = [];
    if (info.size === 0) evidence.push({ heuristic: 'EMPTY_FILE' });
    if (isExecutableType(info.fileType)) evidence.push({ heuristic: 'EXECUTABLE', details: info.fileType });
    const ext = path.extname(info.name).slice(1).toLowerCase();
    const detected = detectType(await input.head(DETECT_HEAD_BYTES));
    // A mismatch is only meaningful when the detected type has known extensions and the name
    // claims one that belongs to a different, specific type.
    if (ext && detected.extensions.length > 0 && !detected.extensions.includes(ext)) {
      const claimed = magics.find((m) => m.ext.includes(ext) && m.type !== 'email' && m.type !== 'xml' && m.type !== 'script');
      if (claimed || isExecutableType(detected.type)) {
        evidence.push({
          heuristic: 'TYPE_MISMATCH',
          details: `named .${ext} but the content is ${detected.type}`,
          data: { extension: ext, detected: detected.type },
        });
      }
    }
    return { evidence };
  },
};

/**
 * The .lzma ("alone") header has no magic: the usual properties byte (lc=3 lp=0 pb=2), a
 * plausible dictionary size, and an expanded size that is unknown (all ones) or below 1 TiB.
 */
function isLzmaAlone(b: Buffer): boolean {
  if (b.length < 14 || b[0] !== 0x5d) return false;
  const dict = b.readUInt32LE(1);
  const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (dict < 4096 || dict > 0x60000000 || !(pow2(dict) || (dict % 3 === 0 && pow2(dict / 3)))) return false;
  const size = b.subarray(5, 13);
  return size.every((x) => x === 0xff) || (size[5] === 0 && size[6] === 0 && size[7] === 0);
}
