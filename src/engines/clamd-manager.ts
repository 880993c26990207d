/**
 * Runs and supervises Verdict's own clamd, and resolves the `clamd` option into the endpoint
 * the ClamAV scanner talks to.
 *
 * The managed clamd lives under `<dataDir>/clamav/`: a `clamd.conf` written on every start
 * (limits derived from Verdict's `limits`), a unix socket, a `db/` folder holding the project's
 * own signatures (`signatures/` at the repository root) plus links to the freshclam databases
 * found in `clamavSystemDbDir`, a temporary folder and a pid file. clamd runs in the
 * foreground as our child; its log lines go to our logger. When it dies it is restarted with
 * backoff; a watchdog PING kills and restarts one that hangs.
 *
 * @example
 * const clamd = await resolveClamd(config, log);   // off, managed or external
 * const scanners = await initScanners({ config, log, clamd: clamd.endpoint });
 * health.add('clamav', () => clamd.status());
 * process.on('SIGTERM', () => clamd.stop());
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { limitsSchema, type Config, type Limits } from '../config/schema.ts';
import { EngineUnavailableError } from '../scanners/types.ts';
import { ClamdClient, formatClamdEndpoint, parseClamdEndpoint, type ClamdEndpoint, type ClamdVersion } from './clamd-client.ts';

export interface ClamdStatus {
  state: 'starting' | 'on' | 'off' | 'failed';
  /** clamd's engine version, e.g. `1.4.6`. */
  version?: string;
  /** What is going on, in words (for the health check and logs). */
  detail: string;
  /** Which signatures are loaded: project files, freshclam databases, database version. */
  signatures?: string;
}

/** What `resolveClamd` gives the composition root. */
export interface ClamdHandle {
  mode: 'off' | 'managed' | 'external';
  /** Absent when ClamAV is off or could not be started: the scanner is then disabled. */
  endpoint?: ClamdEndpoint;
  status(): ClamdStatus;
  stop(): Promise<void>;
}

/** clamd cannot scan files above this size and clamps its limits to it. */
export const CLAMD_MAX_FILE_SIZE = 2_147_483_645;

/** The project's own signature database, at the repository root. */
export const PROJECT_SIGNATURES_DIR = fileURLToPath(new URL('../../signatures/', import.meta.url));

/** File extensions clamd loads from its database folder. */
export const CLAMAV_DB_EXTENSIONS: readonly string[] = [
  '.cvd', '.cld', '.cud', '.db', '.hdb', '.hdu', '.hsb', '.hsu', '.mdb', '.mdu', '.msb', '.msu',
  '.ndb', '.ndu', '.ldb', '.ldu', '.idb', '.cdb', '.cbc', '.sdb', '.zmd', '.rmd', '.pdb', '.gdb',
  '.wdb', '.ftm', '.cfg', '.crb', '.cat', '.fp', '.sfp', '.ign', '.ign2', '.imp', '.ioc', '.pwdb',
  '.yar', '.yara',
];

export function isClamavDbFile(name: string): boolean {
  return CLAMAV_DB_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

/** clamd's limits as derived from Verdict's: nothing above them is ever reported clean. */
export interface ClamdLimits {
  streamMaxLength: number;
  maxFileSize: number;
  maxScanSize: number;
  maxScanTime: number;
  maxRecursion: number;
  maxFiles: number;
}

export function clamdLimits(limits: Limits): ClamdLimits {
  const maxFileSize = Math.min(limits.maxFileSize, CLAMD_MAX_FILE_SIZE);
  return {
    // A stream is one object: the same bound as a file. The client sends at most this much.
    streamMaxLength: maxFileSize,
    maxFileSize,
    // Counts a container plus everything extracted from it: Verdict's extraction budget.
    maxScanSize: Math.max(maxFileSize, limits.maxTotalExtractedBytes),
    maxScanTime: limits.scannerTimeoutMs,
    // clamd's own defaults: deep enough for real nesting, bounded against bombs.
    maxRecursion: 17,
    maxFiles: 10_000,
  };
}

export interface ClamdPaths {
  dir: string;
  conf: string;
  socket: string;
  db: string;
  tmp: string;
  pid: string;
}

export function clamdPaths(dataDir: string): ClamdPaths {
  const dir = path.join(path.resolve(dataDir), 'clamav');
  return {
    dir,
    conf: path.join(dir, 'clamd.conf'),
    socket: path.join(dir, 'clamd.sock'),
    db: path.join(dir, 'db'),
    tmp: path.join(dir, 'tmp'),
    pid: path.join(dir, 'clamd.pid'),
  };
}

/** The clamd.conf of the managed clamd. */
export function renderClamdConf(paths: ClamdPaths, limits: ClamdLimits): string {
  const lines = [
    '# Written by Verdict each time it starts its managed clamd: edits are overwritten.',
    '# Size and time limits derive from Verdict\'s `limits` options.',
    'Foreground yes',
    `LocalSocket ${paths.socket}`,
    'LocalSocketMode 660',
    'FixStaleSocket yes',
    `DatabaseDirectory ${paths.db}`,
    `TemporaryDirectory ${paths.tmp}`,
    `PidFile ${paths.pid}`,
    '# No LogFile: clamd logs to its stdout, which Verdict forwards to its own log.',
    'LogTime no',
    'LogClean no',
    'SelfCheck 600',
    `StreamMaxLength ${limits.streamMaxLength}`,
    `MaxFileSize ${limits.maxFileSize}`,
    `MaxScanSize ${limits.maxScanSize}`,
    `MaxScanTime ${limits.maxScanTime}`,
    `MaxRecursion ${limits.maxRecursion}`,
    `MaxFiles ${limits.maxFiles}`,
    '# Content over a limit is reported (Heuristics.Limits.Exceeded.*), never passed as clean.',
    'AlertExceedsMax yes',
    '# Encrypted archives and documents are reported (Heuristics.Encrypted.*): clamd cannot see inside.',
    'AlertEncrypted yes',
    '# A real signature match anywhere in a container wins over a heuristic alert.',
    'HeuristicScanPrecedence no',
  ];
  return lines.join('\n') + '\n';
}

export interface PreparedDatabase {
  /** Project signature files copied in. */
  project: string[];
  /** freshclam databases linked in. */
  system: string[];
}

/**
 * Fills `dbDir` (which Verdict owns: its previous content is removed) with the project's
 * signature files (copied) and the freshclam databases of `systemDbDir` (symlinked, so that
 * freshclam's updates are picked up by clamd's SelfCheck; copied when links are refused).
 */
export async function prepareDatabase(dbDir: string, projectDir: string, systemDbDir?: string): Promise<PreparedDatabase> {
  await fsp.mkdir(dbDir, { recursive: true });
  for (const name of await fsp.readdir(dbDir)) await fsp.rm(path.join(dbDir, name), { recursive: true, force: true });
  const project: string[] = [];
  for (const name of (await fsp.readdir(projectDir)).sort()) {
    if (!isClamavDbFile(name)) continue;
    await fsp.copyFile(path.join(projectDir, name), path.join(dbDir, name));
    project.push(name);
  }
  const system: string[] = [];
  if (systemDbDir && fs.existsSync(systemDbDir)) {
    for (const name of (await fsp.readdir(systemDbDir)).sort()) {
      if (!isClamavDbFile(name) || project.includes(name)) continue;
      const src = path.resolve(systemDbDir, name);
      const st = await fsp.stat(src).catch(() => undefined);
      if (!st?.isFile()) continue;
      const dst = path.join(dbDir, name);
      try {
        await fsp.symlink(src, dst);
      } catch {
        await fsp.copyFile(src, dst);
      }
      system.push(name);
    }
  }
  return { project, system };
}

export interface ManagedClamdOptions {
  dataDir: string;
  /** clamd binary. Default `/usr/sbin/clamd`. */
  binary?: string;
  /** Verdict's limits, from which clamd's are derived. Default: the schema's defaults. */
  limits?: Limits;
  /** Folder of freshclam databases to link in when present. */
  systemDbDir?: string;
  /** Folder of the project's own signatures. Default: `signatures/` at the repository root. */
  signaturesDir?: string;
  log?: Logger;
  /** How long clamd may take to answer PING after it is spawned (large databases load slowly). Default 180 s. */
  startTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when stopping. Default 5 s. */
  stopGraceMs?: number;
  /** First restart delay after clamd dies; doubles up to `restartMaxDelayMs`. Default 500 ms. */
  restartDelayMs?: number;
  /** Default 30 s. */
  restartMaxDelayMs?: number;
  /** Interval of the watchdog PING; 0 turns it off. Default 30 s. */
  watchdogIntervalMs?: number;
}

/** Linux limit on a unix socket path (sun_path minus its NUL). */
const MAX_SOCKET_PATH = 107;
/** After this long up, a crash starts the backoff from the beginning again. */
const STABLE_AFTER_MS = 60_000;
/** Consecutive failed watchdog PINGs before a live but silent clamd is killed. */
const WATCHDOG_FAILURES = 3;

/** Verdict's own clamd, started, watched and restarted by this process. */
export class ManagedClamd {
  readonly paths: ClamdPaths;
  readonly endpoint: { socket: string };
  private readonly binary: string;
  private readonly limits: ClamdLimits;
  private readonly systemDbDir?: string;
  private readonly signaturesDir: string;
  private readonly log: Logger;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly restartDelayMs: number;
  private readonly restartMaxDelayMs: number;
  private readonly watchdogIntervalMs: number;
  private readonly client: ClamdClient;

  private child?: ChildProcess;
  private childExited?: Promise<void>;
  private state: ClamdStatus['state'] = 'off';
  private detail = 'not started';
  private version?: ClamdVersion;
  private database?: PreparedDatabase;
  private stopping = false;
  private restarts = 0;
  private restartTimer?: NodeJS.Timeout;
  private watchdogTimer?: NodeJS.Timeout;
  private watchdogFailures = 0;
  private startedAt = 0;
  private outputTail: string[] = [];
  private readonly exitHook = (): void => {
    this.child?.kill('SIGTERM');
  };

  constructor(opts: ManagedClamdOptions) {
    this.paths = clamdPaths(opts.dataDir);
    this.endpoint = { socket: this.paths.socket };
    this.binary = opts.binary ?? '/usr/sbin/clamd';
    this.limits = clamdLimits(opts.limits ?? limitsSchema.parse({}));
    this.systemDbDir = opts.systemDbDir;
    this.signaturesDir = opts.signaturesDir ?? PROJECT_SIGNATURES_DIR;
    this.log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'clamd' });
    this.startTimeoutMs = opts.startTimeoutMs ?? 180_000;
    this.stopGraceMs = opts.stopGraceMs ?? 5_000;
    this.restartDelayMs = opts.restartDelayMs ?? 500;
    this.restartMaxDelayMs = opts.restartMaxDelayMs ?? 30_000;
    this.watchdogIntervalMs = opts.watchdogIntervalMs ?? 30_000;
    this.client = new ClamdClient(this.endpoint, { connectTimeoutMs: 2_000, idleTimeoutMs: 10_000 });
  }

  static fromConfig(config: Config, log?: Logger): ManagedClamd {
    return new ManagedClamd({
      dataDir: config.dataDir,
      binary: config.clamdBinary,
      limits: config.limits,
      systemDbDir: config.clamavSystemDbDir,
      log,
    });
  }

  /** The pid of the running clamd, if any. */
  get pid(): number | undefined {
    return this.child && this.child.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  status(): ClamdStatus {
    return {
      state: this.state,
      ...(this.version ? { version: this.version.engine } : {}),
      detail: this.detail,
      ...(this.database ? { signatures: describeSignatures(this.database, this.version, this.systemDbDir) } : {}),
    };
  }

  /**
   * Writes the configuration and database folder, starts clamd and resolves once it answers
   * PING. Rejects (state `failed`) when clamd exits or stays silent past the start timeout;
   * the error carries clamd's last output lines.
   */
  async start(): Promise<void> {
    if (this.state === 'on' || this.state === 'starting') return;
    this.stopping = false;
    this.restarts = 0;
    this.setState('starting', 'starting clamd');
    try {
      await this.prepare();
      await this.spawnAndWait();
    } catch (err) {
      this.setState('failed', `clamd could not be started: ${(err as Error).message}`);
      await this.killChild();
      throw err;
    }
  }

  /** SIGTERM, then SIGKILL after the grace time; removes the socket and pid file. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.watchdogTimer);
    this.restartTimer = this.watchdogTimer = undefined;
    await this.killChild();
    await fsp.rm(this.paths.socket, { force: true });
    await fsp.rm(this.paths.pid, { force: true });
    process.off('exit', this.exitHook);
    this.setState('off', 'stopped');
  }

  /** Re-links the databases (new freshclam files, changed project signatures) and asks clamd to reload. */
  async reloadDatabase(): Promise<void> {
    this.database = await prepareDatabase(this.paths.db, this.signaturesDir, this.systemDbDir);
    await this.client.reload();
  }

  private async prepare(): Promise<void> {
    if (Buffer.byteLength(this.paths.socket) > MAX_SOCKET_PATH) {
      throw new Error(`socket path ${this.paths.socket} is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter dataDir`);
    }
    try {
      fs.accessSync(this.binary, fs.constants.X_OK);
    } catch {
      throw new Error(`clamd binary ${this.binary} not found or not executable (Debian: apt-get install clamav-daemon)`);
    }
    await fsp.mkdir(this.paths.tmp, { recursive: true });
    await this.killStale();
    this.database = await prepareDatabase(this.paths.db, this.signaturesDir, this.systemDbDir);
    if (this.database.project.length + this.database.system.length === 0) {
      throw new Error(`no signature files in ${this.signaturesDir} nor ${this.systemDbDir ?? '(no system database folder)'}: clamd refuses to start without a database`);
    }
    await fsp.writeFile(this.paths.conf, renderClamdConf(this.paths, this.limits));
  }

  /** A clamd left over from a Verdict that was killed still holds our socket: end it. */
  private async killStale(): Promise<void> {
    let pid: number;
    try {
      pid = Number((await fsp.readFile(this.paths.pid, 'utf8')).trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1 || pid === this.pid) return;
    let cmdline: string;
    try {
      cmdline = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
    } catch {
      return; // not running (or no /proc): nothing to do
    }
    if (!cmdline.includes(this.paths.conf)) return; // the pid was reused by something else
    this.log.warn({ pid }, 'stopping a clamd left over from an earlier run');
    signal(pid, 'SIGTERM');
    const until = Date.now() + this.stopGraceMs;
    while (alive(pid) && Date.now() < until) await sleep(50);
    if (alive(pid)) signal(pid, 'SIGKILL');
    while (alive(pid) && Date.now() < until + 2_000) await sleep(50);
  }

  private async spawnAndWait(): Promise<void> {
    if (this.stopping) throw new Error('stopped');
    this.outputTail = [];
    const child = spawn(this.binary, [`--config-file=${this.paths.conf}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    process.off('exit', this.exitHook);
    process.on('exit', this.exitHook);
    let exitInfo: string | undefined;
    this.childExited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        exitInfo = `spawn failed: ${err.message}`;
        resolve();
      });
      // 'close' (not 'exit'): clamd's last output lines have been read by then.
      child.once('close', (code, sig) => {
        exitInfo = sig ? `killed by ${sig}` : `exited with code ${code}`;
        resolve();
      });
    });
    for (const stream of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (line) => this.onOutput(line));
    }
    void this.childExited.then(() => this.onExit(child, exitInfo ?? 'exited'));

    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      if (exitInfo) throw new Error(`clamd ${exitInfo}${this.tail()}`);
      try {
        await this.client.ping();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`clamd did not answer PING within ${this.startTimeoutMs} ms${this.tail()}`);
        await Promise.race([sleep(50), this.childExited]);
      }
    }
    this.version = await this.client.version().catch(() => undefined);
    this.watchdogFailures = 0;
    this.setState('on', `managed clamd (pid ${child.pid}) on ${formatClamdEndpoint(this.endpoint)}`);
    this.startWatchdog();
  }

  private onOutput(line: string): void {
    const text = line.trim();
    if (!text) return;
    this.outputTail.push(text);
    if (this.outputTail.length > 20) this.outputTail.shift();
    if (/error/i.test(text)) this.log.warn({ clamd: text }, 'clamd');
    else if (/warning/i.test(text)) this.log.info({ clamd: text }, 'clamd');
    else this.log.debug({ clamd: text }, 'clamd');
  }

  /** clamd's last words, for error messages: its error lines, else its last lines. */
  private tail(): string {
    const errors = this.outputTail.filter((l) => /error|warning|can't|cannot|failed/i.test(l));
    const lines = (errors.length ? errors : this.outputTail).slice(-5);
    return lines.length ? `: ${lines.join(' | ')}` : '';
  }

  private onExit(child: ChildProcess, info: string): void {
    if (child !== this.child) return;
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
    if (this.stopping || this.state !== 'on') return; // stop() or a failed start handles it
    this.log.error({ exit: info, tail: this.outputTail.slice(-5) }, 'clamd died; restarting');
    if (Date.now() - this.startedAt > STABLE_AFTER_MS) this.restarts = 0;
    this.scheduleRestart(`clamd ${info}`);
  }

  private scheduleRestart(reason: string): void {
    if (this.stopping) return;
    this.restarts++;
    const delay = Math.min(this.restartDelayMs * 2 ** (this.restarts - 1), this.restartMaxDelayMs);
    this.setState(this.restarts > 3 ? 'failed' : 'starting', `${reason}; restart ${this.restarts} in ${delay} ms`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      void (async () => {
        try {
          await this.killChild();
          await this.prepare();
          await this.spawnAndWait();
          this.log.info({ pid: this.pid, restarts: this.restarts }, 'clamd restarted');
        } catch (err) {
          if (this.stopping) return;
          await this.killChild();
          this.log.error({ err }, 'clamd restart failed');
          this.scheduleRestart(`restart failed: ${(err as Error).message}`);
        }
      })();
    }, delay);
    this.restartTimer.unref();
  }

  private startWatchdog(): void {
    clearInterval(this.watchdogTimer);
    if (!this.watchdogIntervalMs) return;
    this.watchdogTimer = setInterval(() => void this.watch(), this.watchdogIntervalMs);
    this.watchdogTimer.unref();
  }

  private async watch(): Promise<void> {
    if (this.state !== 'on') return;
    try {
      this.version = await this.client.version();
      this.watchdogFailures = 0;
    } catch (err) {
      this.watchdogFailures++;
      this.log.warn({ err, failures: this.watchdogFailures }, 'clamd did not answer the watchdog');
      if (this.watchdogFailures >= WATCHDOG_FAILURES && this.state === 'on') {
        this.log.error('clamd stopped answering; killing it to restart');
        this.child?.kill('SIGKILL'); // the exit handler restarts it
      }
    }
  }

  private async killChild(): Promise<void> {
    const child = this.child;
    if (!child || !this.childExited) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      if (!(await settlesWithin(this.childExited, this.stopGraceMs))) {
        this.log.warn({ pid: child.pid }, 'clamd ignored SIGTERM; sending SIGKILL');
        child.kill('SIGKILL');
      }
    }
    await this.childExited;
  }

  private setState(state: ClamdStatus['state'], detail: string): void {
    this.state = state;
    this.detail = detail;
  }
}

/** An external clamd (socket or TCP) the user runs: checked with PING, watched periodically. */
export class ExternalClamd {
  private state: ClamdStatus['state'] = 'starting';
  private detail: string;
  private version?: ClamdVersion;
  private timer?: NodeJS.Timeout;
  private readonly client: ClamdClient;

  constructor(
    readonly endpoint: ClamdEndpoint,
    private readonly log: Logger = pino({ level: 'silent' }),
    private readonly intervalMs = 30_000,
  ) {
    this.client = new ClamdClient(endpoint, { connectTimeoutMs: 5_000, idleTimeoutMs: 10_000 });
    this.detail = `checking external clamd at ${formatClamdEndpoint(endpoint)}`;
  }

  /** One PING + VERSION now; returns whether clamd answered. Later checks run on a timer. */
  async start(): Promise<boolean> {
    const ok = await this.check();
    clearInterval(this.timer);
    if (this.intervalMs > 0) {
      this.timer = setInterval(() => void this.check(), this.intervalMs);
      this.timer.unref();
    }
    return ok;
  }

  async check(): Promise<boolean> {
    const where = formatClamdEndpoint(this.endpoint);
    try {
      await this.client.ping();
      this.version = await this.client.version();
      if (this.state !== 'on') this.log.info({ endpoint: where, version: this.version.raw }, 'external clamd is up');
      this.state = 'on';
      this.detail = `external clamd at ${where}`;
      return true;
    } catch (err) {
      if (this.state !== 'failed') this.log.warn({ endpoint: where, err }, 'external clamd does not answer');
      this.state = 'failed';
      this.detail = `external clamd at ${where} does not answer: ${(err as Error).message}`;
      return false;
    }
  }

  status(): ClamdStatus {
    return {
      state: this.state,
      ...(this.version ? { version: this.version.engine } : {}),
      detail: this.detail,
      ...(this.version ? { signatures: this.version.database ? `database version ${this.version.database} (${this.version.databaseDate})` : 'no official database version reported' } : {}),
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Implements the `clamd` option. `off`: no ClamAV. `auto`: start our own clamd when
 * `clamdBinary` exists, else none; if it exists but fails to start (broken database, bad
 * data folder), none as well, with status `failed` and clamd's own error. A socket path or
 * `tcp://host:port`: use that clamd; its endpoint is returned even when it does not answer yet,
 * so scans wait for it (retried) instead of passing without ClamAV. With `clamdRequired`,
 * anything short of a working clamd throws. The returned `status()` feeds the health check.
 */
export async function resolveClamd(config: Config, log: Logger): Promise<ClamdHandle> {
  const opt = config.clamd.trim();
  const required = (why: string): void => {
    if (config.clamdRequired) throw new EngineUnavailableError('clamav', `clamd is required (clamdRequired) but ${why}`);
  };

  if (opt.toLowerCase() === 'off') {
    required('the clamd option is off');
    const status: ClamdStatus = { state: 'off', detail: 'ClamAV is turned off (clamd=off)' };
    return { mode: 'off', status: () => status, stop: async () => {} };
  }

  if (opt.toLowerCase() === 'auto') {
    let executable = true;
    try {
      fs.accessSync(config.clamdBinary, fs.constants.X_OK);
    } catch {
      executable = false;
    }
    if (!executable) {
      const detail = `ClamAV is off: no clamd at ${config.clamdBinary} (install Debian's clamav-daemon, or set clamd to the socket or tcp://host:port of a running clamd)`;
      required(`no clamd binary at ${config.clamdBinary}`);
      log.warn(detail);
      const status: ClamdStatus = { state: 'off', detail };
      return { mode: 'off', status: () => status, stop: async () => {} };
    }
    const managed = ManagedClamd.fromConfig(config, log);
    try {
      await managed.start();
    } catch (err) {
      await managed.stop();
      const detail = `ClamAV is off: the managed clamd failed to start: ${(err as Error).message}`;
      required(detail);
      log.error({ err }, 'managed clamd failed to start; scanning without ClamAV');
      const status: ClamdStatus = { state: 'failed', detail };
      return { mode: 'managed', status: () => status, stop: async () => {} };
    }
    log.info({ endpoint: formatClamdEndpoint(managed.endpoint), ...managed.status() }, 'managed clamd is up');
    return { mode: 'managed', endpoint: managed.endpoint, status: () => managed.status(), stop: () => managed.stop() };
  }

  let endpoint: ClamdEndpoint;
  try {
    endpoint = parseClamdEndpoint(opt);
  } catch (err) {
    throw new Error(`option clamd: ${(err as Error).message} (or use auto / off)`);
  }
  const external = new ExternalClamd(endpoint, log.child({ component: 'clamd' }));
  if (!(await external.start())) {
    try {
      required(external.status().detail);
    } catch (err) {
      await external.stop();
      throw err;
    }
  }
  return { mode: 'external', endpoint, status: () => external.status(), stop: () => external.stop() };
}

function describeSignatures(db: PreparedDatabase, version: ClamdVersion | undefined, systemDbDir: string | undefined): string {
  const parts = [`project: ${db.project.join(', ') || 'none'}`];
  if (db.system.length) {
    parts.push(`freshclam: ${db.system.join(', ')}`);
    if (version?.database) parts.push(`database version ${version.database} (${version.databaseDate})`);
  } else {
    parts.push(`no freshclam databases${systemDbDir ? ` in ${systemDbDir}` : ''}`);
  }
  return parts.join('; ');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Whether `p` settles within `ms` (the timer does not outlive the answer). */
function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
