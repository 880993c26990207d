import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScanner, sampleInfo } from './testing.ts';
import { parseSubmittedUrl, urlHeuristicsScanner } from './url-heuristics.ts';

const scan = (url: string) => runScanner(urlHeuristicsScanner, Buffer.alloc(0), { url });

test('accepts URL objects only', () => {
  assert.equal(urlHeuristicsScanner.accepts(sampleInfo(Buffer.alloc(0), 'u', 0, 'https://example.com/'), undefined), true);
  assert.equal(urlHeuristicsScanner.accepts(sampleInfo(Buffer.from('x')), undefined), false);
});

test('a plain URL: normalised attributes and no findings', async () => {
  const r = await scan('  HTTPS://Example.COM:443/a/../b?q=1#frag ');
  assert.deepEqual(r.heuristics, []);
  assert.deepEqual(r.attributes, { normalizedUrl: 'https://example.com/b?q=1#frag', domain: 'example.com', scheme: 'https' });
});

test('a URL without a scheme is read as http', async () => {
  const r = await scan('www.example.org/login');
  assert.equal(r.attributes.normalizedUrl, 'http://www.example.org/login');
  assert.equal(parseSubmittedUrl('example.com:8080/x')?.url.href, 'http://example.com:8080/x');
});

test('unparseable URLs are a finding, not an exception', async () => {
  for (const bad of ['http://exa mple.com/', 'http://[::1/', '', 'http://']) {
    const r = await scan(bad);
    assert.deepEqual(r.heuristics, ['UNPARSEABLE'], JSON.stringify(bad));
  }
});

test('IP hosts, including decimal, hex and octal IPv4 forms', async () => {
  const cases: [string, string, string | undefined][] = [
    ['http://192.168.1.1/x', '192.168.1.1', undefined],
    ['http://3232235777/x', '192.168.1.1', 'decimal'],
    ['http://0xc0a80101/x', '192.168.1.1', 'hex'],
    ['http://0xc0.0xa8.1.1/x', '192.168.1.1', 'hex-dotted'],
    ['http://0300.0250.01.01/x', '192.168.1.1', 'octal'],
    ['http://192.168.257/x', '192.168.1.1', 'short'],
    ['http://%31%39%32.168.1.1/', '192.168.1.1', 'percent-encoded'],
  ];
  for (const [url, ip, form] of cases) {
    const r = await scan(url);
    assert.deepEqual(r.heuristics, ['URL_IP_HOST'], url);
    assert.equal(r.attributes.domain, ip, url);
    assert.equal(r.evidence[0].data?.form, form, url);
  }
  const v6 = await scan('http://[2001:db8::1]:8080/');
  assert.deepEqual(v6.heuristics, ['URL_IP_HOST', 'URL_NONSTANDARD_PORT']);
  assert.equal(v6.attributes.domain, '2001:db8::1');
});

test('userinfo, punycode, suspicious TLD, subdomains, port, shortener', async () => {
  assert.deepEqual((await scan('https://paypal.com@evil.example/')).heuristics, ['URL_USERINFO']);
  assert.deepEqual((await scan('https://user:pw@example.com/')).evidence[0].data, { username: 'user', hasPassword: true });
  const idn = await scan('https://аpple.com/'); // Cyrillic а
  assert.deepEqual(idn.heuristics, ['URL_PUNYCODE', 'URL_LOOKALIKE_DOMAIN'], 'a Cyrillic а imitating apple.com');
  assert.match(String(idn.attributes.domain), /^xn--/);
  assert.deepEqual((await scan('http://login-secure.tk/')).heuristics, ['URL_SUSPICIOUS_TLD']);
  assert.deepEqual((await scan('http://paypal.com.account.verify.example.net/')).heuristics, ['URL_MANY_SUBDOMAINS']);
  assert.deepEqual((await scan('http://www.a.b.example.com/')).heuristics, [], 'www. is not counted');
  assert.deepEqual((await scan('http://example.com:8081/')).heuristics, ['URL_NONSTANDARD_PORT']);
  assert.deepEqual((await scan('http://example.com:80/')).heuristics, [], 'the default port is dropped');
  assert.deepEqual((await scan('https://bit.ly/3abcDEF')).heuristics, ['URL_SHORTENER']);
  assert.deepEqual((await scan('https://www.tinyurl.com/x')).heuristics, ['URL_SHORTENER']);
  assert.deepEqual((await scan('https://notbit.ly/x')).heuristics, []);
});

test('long URLs', async () => {
  assert.deepEqual((await scan(`https://example.com/?${'a'.repeat(300)}`)).heuristics, ['URL_LONG']);
  assert.deepEqual((await scan(`https://example.com/?${'a'.repeat(100)}`)).heuristics, []);
});

test('executable downloads by path extension', async () => {
  for (const url of ['http://example.com/setup.EXE', 'http://example.com/a/invoice.pdf.scr', 'http://example.com/run.ps1?x=1', 'http://example.com/x%2Ehta']) {
    const r = await scan(url);
    assert.deepEqual(r.heuristics, ['URL_EXECUTABLE_DOWNLOAD'], url);
  }
  for (const url of ['http://example.com/app.js', 'http://example.com/go/www.example.com', 'http://example.com/setup.exe/', 'http://example.com/doc.pdf']) {
    assert.deepEqual((await scan(url)).heuristics, [], url);
  }
});

test('several findings together', async () => {
  const r = await scan('http://admin@0x7f000001:8080/payload.exe');
  assert.deepEqual(r.heuristics.sort(), ['URL_EXECUTABLE_DOWNLOAD', 'URL_IP_HOST', 'URL_NONSTANDARD_PORT', 'URL_USERINFO']);
  assert.equal(r.attributes.normalizedUrl, 'http://admin@127.0.0.1:8080/payload.exe');
});

test('look-alike brand domains, brands in subdomains and heavily encoded links are findings; the brands themselves are not', async () => {
  const homoglyph = await scan('https://paypa1.com/signin');
  assert.ok(homoglyph.heuristics.includes('URL_LOOKALIKE_DOMAIN'), homoglyph.heuristics.join());
  const sub = await scan('https://www.paypal.com.account-verify.example/login');
  assert.ok(sub.heuristics.includes('URL_BRAND_IN_SUBDOMAIN'), sub.heuristics.join());
  const f = sub.evidence.find((e) => e.heuristic === 'URL_BRAND_IN_SUBDOMAIN')!;
  assert.equal(f.data?.domain, 'account-verify.example');
  const encoded = await scan('https://example.com/%2F%2E%2E%2F%70%61%79%6D%65%6E%74%2F%6C%6F%67%69%6E%2E%70%68%70');
  assert.ok(encoded.heuristics.includes('URL_ENCODED_PATH'));
  assert.ok((await scan('https://example.com/a?u=%2568%2574')).heuristics.includes('URL_ENCODED_PATH'), 'double encoding');
  for (const own of ['https://www.paypal.com/signin', 'https://login.microsoftonline.com/common/oauth2', 'https://accounts.google.com/', 'https://example.com/search?q=caf%C3%A9']) {
    const r = await scan(own);
    assert.deepEqual(r.heuristics.filter((h) => h.startsWith('URL_LOOKALIKE') || h === 'URL_BRAND_IN_SUBDOMAIN' || h === 'URL_ENCODED_PATH'), [], own);
  }
});
