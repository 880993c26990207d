/**
 * The static registry of scanners. Adding a scanner means adding its file, its test (a
 * meta-test fails when one is missing) and one line here.
 */
import type { ActiveScanner } from '../engine/engine.ts';
import { ScannerDisabled, type Scanner, type ScannerInitContext } from './types.ts';
import { fileTypeScanner } from './file-type.ts';
import { yaraScanner } from './yara.ts';
import { clamavScanner } from './clamav.ts';
import { zipScanner } from './zip.ts';
import { tarScanner } from './tar.ts';
import { gzipScanner } from './gzip.ts';
import { bzip2Scanner } from './bzip2.ts';
import { urlHeuristicsScanner } from './url-heuristics.ts';
import { urlFetchScanner } from './url-fetch.ts';
import { renderScanner } from './render.ts';
import { classificationScanner } from './classification.ts';
import { pdfScanner } from './pdf.ts';
import { scriptScanner } from './script.ts';
import { htmlScanner } from './html.ts';
import { qrScanner } from './qr.ts';
import { oleScanner } from './ole.ts';
import { ooxmlScanner } from './ooxml.ts';
import { rtfScanner } from './rtf.ts';
import { emailScanner } from './email.ts';
import { mboxScanner } from './mbox.ts';
import { outlookMsgScanner } from './outlook-msg.ts';
import { tnefScanner } from './tnef.ts';
import { sevenZipScanner } from './sevenzip.ts';
import { unarScanner } from './unar.ts';
import { decompressScanner } from './decompress.ts';
import { textEncodingsScanner } from './text-encodings.ts';
import { executableScanner } from './executable.ts';

export const scanners = [
  fileTypeScanner,
  yaraScanner,
  clamavScanner,
  zipScanner,
  tarScanner,
  gzipScanner,
  bzip2Scanner,
  urlHeuristicsScanner,
  urlFetchScanner,
  renderScanner,
  classificationScanner,
  pdfScanner,
  scriptScanner,
  htmlScanner,
  qrScanner,
  oleScanner,
  ooxmlScanner,
  rtfScanner,
  emailScanner,
  mboxScanner,
  outlookMsgScanner,
  tnefScanner,
  sevenZipScanner,
  unarScanner,
  decompressScanner,
  textEncodingsScanner,
  executableScanner,
] as const satisfies readonly Scanner<any>[];

export interface ScannerStatus {
  state: 'on' | 'off';
  detail: string;
  version?: string;
  layer?: string;
}

/**
 * Runs every scanner's `init()`. A scanner that declares itself disabled (no clamd, URL
 * fetching turned off) is left out and reported; any other init failure (a broken rule file)
 * stops the start-up with its message.
 */
export async function initScanners(ictx: ScannerInitContext): Promise<{ active: ActiveScanner[]; status: Record<string, ScannerStatus> }> {
  const active: ActiveScanner[] = [];
  const status: Record<string, ScannerStatus> = {};
  for (const scanner of scanners as readonly Scanner<any>[]) {
    try {
      const state = scanner.init ? await scanner.init(ictx) : undefined;
      active.push({ scanner, state });
      status[scanner.name] = { state: 'on', detail: 'ready', version: scanner.version, layer: scanner.layer };
      // A scanner that runs degraded (a tool missing) says so in its state.
      const health = (state as { health?: unknown } | undefined)?.health;
      if (typeof health === 'string') status[scanner.name].detail = health;
    } catch (e) {
      if (e instanceof ScannerDisabled) {
        status[scanner.name] = { state: 'off', detail: e.message, version: scanner.version, layer: scanner.layer };
        ictx.log.info({ scanner: scanner.name, reason: e.message }, 'scanner disabled');
        continue;
      }
      throw new Error(`scanner ${scanner.name} could not start: ${(e as Error).message}`);
    }
  }
  return { active, status };
}
