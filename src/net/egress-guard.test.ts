import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { EgressConfigError, EgressGuard, EgressRefusedError, type Resolver } from './egress-guard.ts';

const refused = (g: EgressGuard, ip: string) => {
  const r = g.check(ip);
  return r.ok ? false : r.reason;
};

test('refuses non-public addresses by default, with a reason naming the range', () => {
  const g = new EgressGuard();
  const cases: [string, RegExp][] = [
    ['127.0.0.1', /loopback/],
    ['127.255.1.2', /loopback/],
    ['10.1.2.3', /private/],
    ['172.16.0.1', /private/],
    ['172.31.255.255', /private/],
    ['192.168.1.1', /private/],
    ['169.254.169.254', /link-local.*metadata/],
    ['100.64.0.1', /carrier-grade NAT/],
    ['100.127.255.254', /carrier-grade NAT/],
    ['0.0.0.0', /unspecified/],
    ['224.0.0.1', /multicast/],
    ['239.255.255.250', /multicast/],
    ['255.255.255.255', /broadcast/],
    ['240.0.0.1', /reserved/],
    ['192.0.2.1', /documentation/],
    ['198.18.0.1', /benchmarking/],
    ['::1', /loopback/],
    ['::', /unspecified/],
    ['fd12:3456::1', /unique-local/],
    ['fc00::1', /unique-local/],
    ['fe80::1', /link-local/],
    ['fe80::1%eth0', /link-local/],
    ['ff02::1', /multicast/],
    ['2001:db8::1', /documentation/],
    ['::ffff:127.0.0.1', /IPv4-mapped 127\.0\.0\.1, loopback/],
    ['::ffff:a9fe:a9fe', /IPv4-mapped 169\.254\.169\.254, link-local/],
    ['64:ff9b::a00:1', /NAT64 10\.0\.0\.1, private/],
    ['2002:c0a8:0101::1', /6to4 192\.168\.1\.1, private/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['4000::1', /outside global unicast/],
  ];
  for (const [ip, reason] of cases) {
    const r = refused(g, ip);
    assert.ok(r, `${ip} should be refused`);
    assert.match(r, reason, ip);
  }
});

test('accepts public addresses, including mapped and NAT64 forms of them', () => {
  const g = new EgressGuard();
  for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
    assert.deepEqual(g.check(ip), { ok: true }, ip);
  }
});

test('rejects things that are not IP addresses', () => {
  const g = new EgressGuard();
  assert.match(refused(g, 'example.com') || '', /not an IP address/);
  assert.match(refused(g, '0x7f000001') || '', /not an IP address/);
  assert.match(refused(g, '') || '', /not an IP address/);
});

test('allow entries override the default refusals, for plain and mapped forms', () => {
  const g = new EgressGuard({ allow: ['127.0.0.0/8', '10.0.0.5', 'fd00::/8'] });
  assert.deepEqual(g.check('127.0.0.1'), { ok: true });
  assert.deepEqual(g.check('::ffff:127.0.0.1'), { ok: true });
  assert.deepEqual(g.check('10.0.0.5'), { ok: true });
  assert.ok(refused(g, '10.0.0.6'));
  assert.deepEqual(g.check('fd00::1'), { ok: true });
  assert.ok(refused(g, '::1'), 'IPv6 loopback is a different range');
});

test('deny entries always refuse, even over allow and for public addresses', () => {
  const g = new EgressGuard({ allow: ['127.0.0.0/8'], deny: ['127.0.0.2/32', '203.0.114.0/24', '::ffff:8.8.4.0/120', '2606:4700::/32'] });
  assert.deepEqual(g.check('127.0.0.1'), { ok: true });
  assert.match(refused(g, '127.0.0.2') || '', /denied by egressDeny 127\.0\.0\.2\/32/);
  assert.match(refused(g, '203.0.114.9') || '', /egressDeny/);
  assert.match(refused(g, '::ffff:203.0.114.9') || '', /egressDeny/);
  assert.match(refused(g, '8.8.4.4') || '', /egressDeny/, 'a mapped-form entry covers the IPv4 range');
  assert.match(refused(g, '2606:4700:4700::1111') || '', /egressDeny/);
});

test('invalid list entries throw an error naming the entry', () => {
  for (const bad of ['10.0.0.0/33', 'not-an-ip', '10.0.0/8', '0x7f.0.0.1/8', '::1/129', '10.0.0.0/', '10.0.0.0/8x', 'fe80::1%eth0/64']) {
    assert.throws(
      () => new EgressGuard({ allow: [bad] }),
      (e: unknown) => e instanceof EgressConfigError && e.message.includes(`"${bad}"`) && e.message.includes('egressAllow'),
      bad,
    );
  }
  assert.throws(() => new EgressGuard({ deny: ['nope'] }), /egressDeny entry "nope"/);
});

test('checkUrl: schemes other than http(s) and literal-IP hosts', () => {
  const g = new EgressGuard();
  assert.deepEqual(g.checkUrl('https://example.com/x'), { ok: true });
  assert.match(refused2(g.checkUrl('ftp://example.com/')), /scheme ftp: is not allowed/);
  assert.match(refused2(g.checkUrl('file:///etc/passwd')), /scheme file:/);
  assert.match(refused2(g.checkUrl('javascript:alert(1)')), /scheme javascript:/);
  assert.match(refused2(g.checkUrl('not a url')), /not a valid URL/);
  assert.match(refused2(g.checkUrl('http://127.0.0.1:8080/')), /loopback/);
  assert.match(refused2(g.checkUrl('http://[::1]/')), /loopback/);
  assert.match(refused2(g.checkUrl('http://[::ffff:169.254.169.254]/')), /link-local/);
  // Obfuscated IPv4 forms are normalised by the WHATWG parser before the check.
  assert.match(refused2(g.checkUrl('http://2130706433/')), /127\.0\.0\.1 is loopback/);
  assert.match(refused2(g.checkUrl('http://0x7f.1/')), /loopback/);
  assert.match(refused2(g.checkUrl('http://0177.0.0.1/')), /loopback/);
  assert.throws(() => g.assertUrl('http://10.0.0.1/'), (e: unknown) => e instanceof EgressRefusedError && e.host === '10.0.0.1' && e.address === '10.0.0.1');
});

function refused2(r: { ok: boolean; reason?: string }): string {
  assert.equal(r.ok, false);
  return r.reason ?? '';
}

function fakeResolver(map: Record<string, string[]>): Resolver {
  return async (host) => {
    const a = map[host];
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return a.map((address) => ({ address, family: net.isIP(address) }));
  };
}

function lookupP(g: EgressGuard, host: string, all: boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    g.lookup(host, { all }, (err, address, family) => (err ? reject(err) : resolve(all ? address : { address, family })));
  });
}

test('lookup refuses a name when any resolved address is refused, and returns the checked ones', async () => {
  const g = new EgressGuard({ resolve: fakeResolver({ 'public.test': ['93.184.215.14', '2606:2800:21f:cb07::1'], 'mixed.test': ['93.184.215.14', '10.0.0.1'], 'meta.test': ['169.254.169.254'] }) });
  assert.deepEqual(await lookupP(g, 'public.test', true), [
    { address: '93.184.215.14', family: 4 },
    { address: '2606:2800:21f:cb07::1', family: 6 },
  ]);
  assert.deepEqual(await lookupP(g, 'public.test', false), { address: '93.184.215.14', family: 4 });
  await assert.rejects(lookupP(g, 'mixed.test', true), (e: unknown) => {
    assert.ok(e instanceof EgressRefusedError);
    assert.equal(e.host, 'mixed.test');
    assert.equal(e.address, '10.0.0.1');
    assert.match(e.reason, /private/);
    return true;
  });
  await assert.rejects(lookupP(g, 'meta.test', false), EgressRefusedError);
  await assert.rejects(lookupP(g, 'nowhere.test', false), { code: 'ENOTFOUND' });
});

test('net.connect through the lookup: localhost refused by default, reached when allowed', async () => {
  const server = net.createServer((s) => s.end('hi'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  try {
    const connect = (g: EgressGuard) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: 'localhost', port, lookup: g.lookup, family: 4 });
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
    await assert.rejects(connect(new EgressGuard()), (e: unknown) => e instanceof EgressRefusedError && e.address === '127.0.0.1');
    assert.equal(await connect(new EgressGuard({ allow: ['127.0.0.0/8', '::1/128'] })), 'hi');
  } finally {
    server.close();
  }
});

test('the connection goes to the address that was checked (no second resolution)', async () => {
  // A resolver that answers differently each time, as a rebinding DNS server would: first a
  // loopback address the guard allows, then one it refuses. Only one answer must be used.
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  let calls = 0;
  const g = new EgressGuard({
    allow: ['127.0.0.1/32'],
    resolve: async () => (calls++ === 0 ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.0.0.1', family: 4 }]),
  });
  try {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: 'rebind.test', port, lookup: g.lookup, agent: false }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    assert.equal(body, 'ok');
    assert.equal(calls, 1);
  } finally {
    server.close();
  }
});
