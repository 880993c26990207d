import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressOf, domainSuffixes, ipMatches, normaliseValue, parseIp, urlMatches } from './list-values.ts';
import { VerdictError } from './errors.ts';
import type { ListTarget } from '../verdict/lists.ts';

const refused = (target: ListTarget, value: unknown, field: string) => {
  assert.throws(
    () => normaliseValue(target, value),
    (e: unknown) => e instanceof VerdictError && e.status === 400 && e.field === field,
    `${target} ${JSON.stringify(value)} should be refused naming ${field}`,
  );
};

test('valid values are normalised for matching', () => {
  const cases: [ListTarget, string, string, string][] = [
    ['email', ' Alice@Example.COM ', 'alice@example.com', 'alice@example.com'],
    ['hash', 'A'.repeat(64), 'a'.repeat(64), 'a'.repeat(64)],
    ['ip', '192.0.2.7', '192.0.2.7', '192.0.2.7'],
    ['ip', '2001:DB8::1', '2001:db8::1', '2001:db8::1'],
    ['ip', '::ffff:192.0.2.7', '192.0.2.7', '192.0.2.7'],
    ['ip', '198.51.100.77/24', '198.51.100.0/24', '*cidr'],
    ['ip', '2001:db8:abcd::/48', '2001:db8:abcd::/48', '*cidr'],
    ['domain', 'Example.ORG.', 'example.org', 'example.org'],
    ['domain', '*.example.org', 'example.org', 'example.org'],
    ['domain', 'bücher.example', 'xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['domain', 'localhost', 'localhost', 'localhost'],
    ['url', 'example.com', 'example.com/', 'example.com'],
    ['url', 'HTTPS://Example.com/Login?a=1#frag', 'example.com/Login?a=1', 'example.com'],
    ['url', 'http://hello-world.com ', 'hello-world.com/', 'hello-world.com'],
    ['url', '127.0.0.1:8080/x', '127.0.0.1:8080/x', '127.0.0.1'],
  ];
  for (const [target, raw, norm, key] of cases) {
    const n = normaliseValue(target, raw);
    assert.equal(n.norm, norm, `${target} ${raw}`);
    assert.equal(n.key, key, `${target} ${raw}`);
  }
});

test('bad values are refused naming the wire field', () => {
  for (const v of ['', 'not-an-email', 'a@b', 'a@@b.com', 'a b@c.com', 'a..b@c.com', 42]) refused('email', v, 'address');
  for (const v of ['1.2.3', '256.1.1.1', '1.2.3.4.5', '0x7f.0.0.1', '10.0.0.1/33', 'fe80::1::2', 'example.com', '::1/129']) refused('ip', v, 'ip');
  for (const v of ['abc', 'd41d8cd98f00b204e9800998ecf8427e', 'g'.repeat(64)]) refused('hash', v, 'sha256');
  for (const v of ['exa mple.com', 'http://example.com/', '-bad-.com', '192.0.2.1', 'a_b.com']) refused('domain', v, 'domain');
  for (const v of ['ftp://example.com/', 'javascript:alert(1)', 'http://', 'http://user:pw@example.com/', 'mailto:a@b.com', 'exa mple.com']) refused('url', v, 'prefix');
});

test('URL prefixes match by host, port and path prefix; exact entries only the same URL', () => {
  const entry = normaliseValue('url', 'example.com/login').norm;
  assert.ok(urlMatches(entry, false, 'https://example.com/login'));
  assert.ok(urlMatches(entry, false, 'http://EXAMPLE.com/login/step2?x=1'));
  assert.ok(!urlMatches(entry, false, 'http://example.com/'));
  assert.ok(!urlMatches(entry, false, 'http://example.com.evil.org/login'));
  assert.ok(!urlMatches(entry, false, 'http://example.com:8080/login'));
  const bare = normaliseValue('url', 'example.com').norm;
  assert.ok(urlMatches(bare, false, 'http://example.com/anything'));
  assert.ok(!urlMatches(bare, false, 'http://sub.example.com/'));
  const exact = normaliseValue('url', 'https://example.com/a?b=1').norm;
  assert.ok(urlMatches(exact, true, 'http://example.com/a?b=1'));
  assert.ok(!urlMatches(exact, true, 'http://example.com/a?b=12'));
  assert.ok(!urlMatches(exact, true, 'http://example.com/a/b?b=1'));
  assert.ok(urlMatches(normaliseValue('url', 'example.com').norm, true, 'http://example.com'));
});

test('IP entries match single addresses and ranges of the same family', () => {
  assert.ok(ipMatches('198.51.100.0/24', '198.51.100.200'));
  assert.ok(!ipMatches('198.51.100.0/24', '198.51.101.1'));
  assert.ok(ipMatches('2001:db8::/32', parseIp('2001:db8:1::5')!));
  assert.ok(!ipMatches('2001:db8::/32', '198.51.100.1'));
  assert.equal(parseIp('[::ffff:10.0.0.1]'), '10.0.0.1');
});

test('domains match themselves and their subdomains; sender addresses come out of From values', () => {
  assert.deepEqual(domainSuffixes('a.b.example.org'), ['a.b.example.org', 'b.example.org', 'example.org', 'org']);
  assert.equal(addressOf('"Alice A." <Alice@Example.com>'), 'alice@example.com');
  assert.equal(addressOf('bob@example.org'), 'bob@example.org');
  assert.equal(addressOf('no address'), undefined);
});
