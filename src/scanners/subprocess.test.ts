import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { findTool, runTool, startTool, type ToolOptions } from './subprocess.ts';

const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-subprocess-test-'));
after(() => fs.rmSync(cwd, { recursive: true, force: true }));

const node = process.execPath;
const opts = (extra: Partial<ToolOptions> = {}): ToolOptions => ({ cwd, signal: new AbortController().signal, deadline: Date.now() + 30_000, capMs: 30_000, ...extra });
/** Running (a zombie waiting for a reaper does not count). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
};

describe('bounded subprocesses', () => {
  it('captures stdout, stderr and the exit code, in a private HOME with stdin closed', async () => {
    const script = "process.stdin.resume();process.stdin.on('end',()=>{process.stdout.write(process.env.HOME+'|'+process.cwd());console.error('warned');process.exit(3)})";
    const r = await runTool(node, ['-e', script], opts());
    assert.equal(r.code, 3);
    assert.equal(r.stdout.toString(), `${cwd}|${fs.realpathSync(cwd)}`);
    assert.equal(r.stderr.trim(), 'warned');
    assert.equal(r.killed, undefined);
  });

  it('kills the whole process group when the time cap passes, helpers included', async () => {
    const script = "const c=require('child_process').spawn('/bin/sleep',['30'],{stdio:'ignore'});console.log(c.pid);setInterval(()=>{},1000)";
    const started = Date.now();
    const r = await runTool(node, ['-e', script], opts({ capMs: 500 }));
    assert.equal(r.killed, 'timeout');
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(Date.now() - started < 5_000, 'killed promptly');
    const helper = Number(r.stdout.toString().trim());
    assert.ok(helper > 0);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(alive(helper), false, 'the helper process died with the group');
  });

  it('honours the scan deadline when it comes before the cap', async () => {
    const r = await runTool(node, ['-e', 'setInterval(()=>{},1000)'], opts({ deadline: Date.now() + 300 }));
    assert.equal(r.killed, 'timeout');
  });

  it('kills the tool when the scan is aborted', async () => {
    const ac = new AbortController();
    const p = startTool(node, ['-e', 'setInterval(()=>{},1000)'], opts({ signal: ac.signal }));
    setTimeout(() => ac.abort(), 100);
    const r = await p.result;
    assert.equal(r.killed, 'aborted');
  });

  it('stops a tool whose captured output passes the cap', async () => {
    const r = await runTool(node, ['-e', "const b=Buffer.alloc(65536,97);(function w(){process.stdout.write(b,w)})()"], opts({ maxStdout: 1000 }));
    assert.equal(r.killed, 'output');
    assert.equal(r.stdout.length, 1000);
  });

  it('streams stdout to a consumer and kills the tool when the consumer throws', async () => {
    let seen = 0;
    const r = await runTool(node, ['-e', "const b=Buffer.alloc(65536,97);(function w(){process.stdout.write(b,w)})()"], opts({
      onStdout: async (c) => {
        seen += c.length;
        if (seen > 200_000) throw new Error('enough');
      },
    }));
    assert.equal(r.killed, 'consumer');
    assert.equal((r.consumerError as Error).message, 'enough');
    assert.equal(r.stdout.length, 0);
  });

  it('reports a binary that cannot be started instead of throwing', async () => {
    const r = await runTool(path.join(cwd, 'no-such-tool'), [], opts());
    assert.equal(r.code, null);
    assert.match(r.spawnError ?? '', /ENOENT/);
  });

  it('finds tools only in the system folders', () => {
    assert.equal(findTool('sh'), '/usr/bin/sh');
    assert.equal(findTool('no-such-tool-here'), undefined);
    assert.equal(findTool('sh', [cwd]), undefined);
  });
});
