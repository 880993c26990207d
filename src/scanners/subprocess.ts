/**
 * Bounded subprocesses for the Debian tools that open containers (7zz, lsar/unar, bsdcat).
 * One way to run them, so that every call gets the same guarantees: an argv array (never a
 * shell), stdin closed (a tool that wants to prompt for a password reads end-of-file instead of
 * hanging), a private working directory that is also its HOME and TMPDIR, a time limit (the
 * scan's deadline or the per-tool cap, whichever comes first), capped stderr and captured
 * stdout, and the whole process group killed on timeout, on abort, when the stdout consumer
 * throws or when the caller calls `kill()`.
 *
 * @example
 * const r = await runTool('/usr/bin/7zz', ['l', '-slt', '-p', '--', file], { cwd, signal, deadline, capMs: 20_000 });
 * if (r.code === 0) parse(r.stdout.toString('utf8'));
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface ToolOptions {
  /** Working directory (private to this scan); also HOME and TMPDIR of the tool. */
  cwd: string;
  signal: AbortSignal;
  /** Epoch ms after which the tool is killed. */
  deadline: number;
  /** The longest this one run may take, whatever the deadline. */
  capMs: number;
  /** Most stdout bytes kept when captured; the tool is killed beyond (default 16 MiB). */
  maxStdout?: number;
  /** Most stderr characters kept; the rest is dropped (default 64 KiB). */
  maxStderr?: number;
  /**
   * Streams stdout to a consumer instead of capturing it; awaited per chunk (backpressure).
   * When it throws, the tool is killed and the error is returned as `consumerError`.
   */
  onStdout?: (chunk: Buffer) => Promise<void>;
}

export type KillReason = 'timeout' | 'aborted' | 'output' | 'consumer' | 'stopped';

export interface ToolResult {
  /** Exit code, null when a signal ended it or it never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Captured stdout (empty when streamed). */
  stdout: Buffer;
  stderr: string;
  /** Set when we ended the tool ourselves. */
  killed?: KillReason;
  /** What `onStdout` threw. */
  consumerError?: unknown;
  /** The tool could not be started (missing binary, not executable). */
  spawnError?: string;
  ms: number;
}

export interface ToolProcess {
  readonly result: Promise<ToolResult>;
  /** Kills the process group; the result says `reason`. Safe to call after the end. */
  kill(reason?: KillReason): void;
}

const DEFAULT_MAX_STDOUT = 16 * 1024 * 1024;
const DEFAULT_MAX_STDERR = 64 * 1024;

/** Starts `binary` with `args`; see `ToolOptions` for the bounds. */
export function startTool(binary: string, args: string[], opts: ToolOptions): ToolProcess {
  const started = performance.now();
  const maxStdout = opts.maxStdout ?? DEFAULT_MAX_STDOUT;
  const maxStderr = opts.maxStderr ?? DEFAULT_MAX_STDERR;
  let killed: KillReason | undefined;
  let exited = false;
  const child = spawn(binary, args, {
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that helpers it starts die with it.
    detached: true,
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: opts.cwd, TMPDIR: opts.cwd },
  });
  const kill = (reason: KillReason = 'stopped') => {
    killed ??= reason;
    // Only while the leader is alive: once reaped, its id may belong to someone else.
    if (exited || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  };

  const result = new Promise<ToolResult>((resolve) => {
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let consumerError: unknown;
    let spawnError: string | undefined;
    const left = Math.max(0, Math.min(opts.capMs, opts.deadline - Date.now()));
    const timer = setTimeout(() => kill('timeout'), left);
    const onAbort = () => kill('aborted');
    if (opts.signal.aborted) onAbort();
    else opts.signal.addEventListener('abort', onAbort, { once: true });

    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      if (stderr.length < maxStderr) stderr += s.slice(0, maxStderr - stderr.length);
    });
    const reading = (async () => {
      try {
        for await (const chunk of child.stdout) {
          const buf = chunk as Buffer;
          if (opts.onStdout) {
            if (consumerError === undefined) await opts.onStdout(buf);
          } else if (stdoutBytes + buf.length > maxStdout) {
            stdout.push(buf.subarray(0, maxStdout - stdoutBytes));
            stdoutBytes = maxStdout;
            kill('output');
            break;
          } else {
            stdout.push(buf);
            stdoutBytes += buf.length;
          }
        }
      } catch (err) {
        consumerError = err;
        kill('consumer');
      } finally {
        child.stdout.destroy();
      }
    })();
    child.on('error', (err) => {
      spawnError = err.message;
    });
    child.on('exit', () => {
      exited = true;
    });
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      void reading.then(() =>
        resolve({
          code: spawnError ? null : code,
          signal,
          stdout: Buffer.concat(stdout),
          stderr,
          ...(killed ? { killed } : {}),
          ...(consumerError !== undefined ? { consumerError } : {}),
          ...(spawnError ? { spawnError } : {}),
          ms: performance.now() - started,
        }),
      );
    });
  });
  return { result, kill };
}

/** Runs a tool to its end (see `startTool`). */
export function runTool(binary: string, args: string[], opts: ToolOptions): Promise<ToolResult> {
  return startTool(binary, args, opts).result;
}

/** The absolute path of an executable named `name` in the system folders, or undefined. */
export function findTool(name: string, dirs: string[] = ['/usr/bin', '/bin', '/usr/local/bin']): string | undefined {
  for (const dir of dirs) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not there
    }
  }
  return undefined;
}
