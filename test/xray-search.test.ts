/**
 * X-Ray scan search, incidents feed (replaying Cortex XSOAR's calls) and SIEM export, over a
 * real HTTP socket. Scans are submitted through the API; fields the email channel would fill
 * are set directly in the store.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { makeZip, startVerdict, type Running } from './harness.ts';
import type { ScanUpdate } from '../src/store/schema.ts';

let v: Running;
let seq = 0;

before(async () => {
  v = await startVerdict({ clamd: 'off', siemDelayMs: 0 });
});
after(async () => {
  await v?.close();
});

/** A fresh organization (optionally a child of `parent`) and an Administrator token of it. */
async function org(parent?: string): Promise<{ name: string; token: string; orgId: number }> {
  const name = `search-org-${++seq}-${crypto.randomBytes(3).toString('hex')}`;
  await v.verdict.service.createOrg(name, parent);
  const { token, orgId } = await v.verdict.service.createToken(name);
  return { name, token, orgId };
}

/** Submits a small unique text file, waits for it, then sets `fields` as the email channel would. */
async function scan(token: string, fields: ScanUpdate = {}, name = `note-${++seq}.txt`): Promise<number> {
  const id = await v.submitFile(Buffer.from(`hello ${name} ${crypto.randomUUID()}`), name, {}, token);
  await v.waitForScan(id, token);
  if (Object.keys(fields).length > 0) await v.verdict.store.updateScan(id, fields);
  return id;
}

async function get(path: string, token: string): Promise<{ status: number; body: any }> {
  const res = await v.api('GET', path, { token });
  return { status: res.status, body: await res.json() };
}

async function ids(path: string, token: string): Promise<number[]> {
  const r = await get(path, token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.results.map((x: any) => x.id);
}

const sorted = (a: number[]) => [...a].sort((x, y) => x - y);

describe('scan search: filters', () => {
  test('verdict: single, comma list and repeated form; OR within the field', async () => {
    const o = await org();
    const cln = await scan(o.token);
    const mal = await scan(o.token, { verdict: 'MAL', sub_verdict: 'MAL' });
    const spm = await scan(o.token, { verdict: 'SPM', sub_verdict: 'SPM' });
    assert.deepEqual(await ids('/api/v1/scans/list/?verbose_verdict=MAL', o.token), [mal]);
    assert.deepEqual(sorted(await ids('/api/v1/scans/list/?verbose_verdict[]=MAL,SPM', o.token)), sorted([mal, spm]));
    assert.deepEqual(sorted(await ids('/api/v1/scans/list/?verbose_verdict[]=MAL&verbose_verdict[]=SPM', o.token)), sorted([mal, spm]));
    assert.deepEqual(sorted(await ids('/api/v1/scans/list/?verbose_verdict%5B%5D=CLN', o.token)), [cln]);
    // no filter: all three, newest first
    assert.deepEqual(await ids('/api/v1/scans/list/', o.token), [spm, mal, cln]);
  });

  test('AND across fields: channel and verdict and time range', async () => {
    const o = await org();
    const t0 = Math.floor(Date.now() / 1000);
    const a = await scan(o.token, { channel: 'email', verdict: 'MAL', sub_verdict: 'MAL' });
    const b = await scan(o.token, { channel: 'email' });
    const c = await scan(o.token, { verdict: 'MAL', sub_verdict: 'MAL' }); // channel api
    assert.deepEqual(await ids('/api/v1/scans/list/?channel=email&verbose_verdict=MAL', o.token), [a]);
    assert.deepEqual(sorted(await ids('/api/v1/scans/list/?channel[]=email,api', o.token)), sorted([a, b, c]));
    assert.deepEqual(sorted(await ids(`/api/v1/scans/list/?channel=email&start=${t0}&end=${t0 + 3600}`, o.token)), sorted([a, b]));
    assert.deepEqual(await ids(`/api/v1/scans/list/?start=${t0 + 3600}`, o.token), []);
    assert.deepEqual(await ids(`/api/v1/scans/list/?end=${t0 - 3600}`, o.token), []);
    // the example of the specification: highlighted clean scans from email or api
    await v.verdict.store.updateScan(b, { highlighted: 1 });
    assert.deepEqual(await ids('/api/v1/scans/list/?channel[]=email,api&is_highlighted=true&verbose_verdict=CLN', o.token), [b]);
    assert.deepEqual(sorted(await ids('/api/v1/scans/list/?is_highlighted=false', o.token)), sorted([a, c]));
  });

  test('root fields of an email: sender, recipients, region, country, action, handle status, VIP, campaign size', async () => {
    const o = await org();
    const mail = await scan(o.token, {
      channel: 'email',
      sample_from: 'Alice@Example.com',
      sample_to: 'bob@corp.example, carol@corp.example',
      to_region: 'Europe',
      to_country: 'DE, FR',
      verbose_action: 'quarantine',
      handle_status: 'AAP',
      belongs_to_vip: 1,
      group_size: 12,
    });
    const other = await scan(o.token, { channel: 'email', sample_from: 'mallory@evil.example', sample_to: 'jimbob@corp.example', verbose_action: 'delivered', group_size: 2 });
    const q = (s: string) => ids(`/api/v1/scans/list/?${s}`, o.token);
    assert.deepEqual(await q('sample_from=alice@example.com'), [mail]);
    assert.deepEqual(await q('receiver_address=carol@corp.example'), [mail]);
    assert.deepEqual(await q('receiver_address=bob@corp.example'), [mail], 'jimbob@ is not bob@');
    assert.deepEqual(await q('sample.to_users.un_region=europe'), [mail]);
    assert.deepEqual(await q('sample.to_users.country[]=FR,US'), [mail]);
    assert.deepEqual(await q('verbose_action=quarantine'), [mail]);
    assert.deepEqual(await q('verbose_action[]=quarantine,delivered'), [other, mail]);
    assert.deepEqual(await q('handle_status=AAP'), [mail]);
    assert.deepEqual(await q('belongs_to_vip=true'), [mail]);
    assert.deepEqual(await q('belongs_to_vip=false'), [other]);
    assert.deepEqual(await q('max_group_size=10'), [mail]);
    assert.deepEqual(await q('max_group_size=2'), [other, mail]);
    const r = await get(`/api/v1/scans/list/?sample_from=alice@example.com`, o.token);
    const res = r.body.results[0];
    assert.equal(res.sample_from, 'Alice@Example.com');
    assert.equal(res.verbose_action, 'quarantine');
    assert.equal(res.handle_status, 'AAP');
    assert.equal(res.max_group_size, 12);
    assert.equal(res.belongs_to_vip, true);
  });

  test('search_descendants: a root matches through a member of its archive (sha256, file name, type, mime)', async () => {
    const o = await org();
    const member = Buffer.from(`invoice body ${crypto.randomUUID()}`);
    const sha = crypto.createHash('sha256').update(member).digest('hex');
    const zip = await makeZip({ 'docs/Invoice-2024.txt': member, 'readme.md': Buffer.from('# hi') });
    const root = await v.submitFile(zip, 'bundle.zip', {}, o.token);
    await v.waitForScan(root, o.token);
    const plain = await scan(o.token);
    const q = (s: string) => ids(`/api/v1/scans/list/?${s}`, o.token);
    assert.deepEqual(await q(`search_descendants.sample_sha256=${sha}`), [root], 'roots only, found through the member');
    assert.deepEqual(await q(`search_descendants.sample_sha256=${sha.toUpperCase()}`), [root]);
    assert.deepEqual(await q('search_descendants.original_file_name=invoice-2024'), [root]);
    assert.deepEqual(await q('search_descendants.original_file_name=bundle.zip'), [root], 'the root itself counts');
    assert.deepEqual(await q('search_descendants.original_type=zip'), [root]);
    assert.deepEqual(sorted(await q('search_descendants.mime_type=text/plain')), sorted([root, plain]));
    // AND across fields, each matched by any node of the tree
    assert.deepEqual(await q(`search_descendants.sample_sha256=${sha}&search_descendants.original_type=zip`), [root]);
    assert.deepEqual(await q(`search_descendants.sample_sha256=${sha}&verbose_verdict=MAL`), []);
    const body = (await get(`/api/v1/scans/list/?search_descendants.sample_sha256=${sha}`, o.token)).body;
    const res = body.results[0];
    const entry = res.search_descendants.find((d: any) => d.sample_sha256 === sha);
    assert.ok(entry, 'the member is listed under search_descendants');
    assert.equal(entry.original_file_name, 'docs/Invoice-2024.txt');
    assert.equal(res.search_descendants[0].scan_id, root);
    assert.equal(res.search_descendants[0].parent_scan_id, '');
  });

  test('search_descendants: email header fields on a child and URL fields', async () => {
    const o = await org();
    const zip = await makeZip({ 'a.txt': Buffer.from(`x ${crypto.randomUUID()}`) });
    const root = await v.submitFile(zip, 'message.zip', {}, o.token);
    await v.waitForScan(root, o.token);
    const child = (await v.verdict.store.getDescendants(root))[0];
    await v.verdict.store.updateScan(root, { channel: 'email', subject: 'Your Invoice, March', message_id: '<ABC@mail.example>', sender_domain: 'Mail.Example', sender_ip: '203.0.113.7', reply_to: 'billing@mail.example', return_path: 'bounce@mail.example', receiver_domain: 'corp.example', envelope_to: 'bob@corp.example' });
    await v.verdict.store.updateScan(child.id, { original_file_path: '/Inbox/Finance', url: 'https://login.example.net/reset?x=1', domain: 'login.example.net', kind: 'url', url_title: 'Sign in to your account', attributes: JSON.stringify({ description: 'Reset your Password now' }) });
    const other = await scan(o.token, { subject: 'lunch' });
    const q = (s: string) => ids(`/api/v1/scans/list/?${s}`, o.token);
    assert.deepEqual(await q('search_descendants.subject=invoice'), [root]);
    assert.deepEqual(await q('search_descendants.subject=Invoice, March'), [root], 'a plain parameter keeps its commas');
    assert.deepEqual(await q(`search_descendants.original_message_id=${encodeURIComponent('<abc@mail.example>')}`), [root]);
    assert.deepEqual(await q(`search_descendants.original_message_id=${encodeURIComponent('abc@mail.example')}`), [root], 'with or without the angle brackets');
    assert.deepEqual(await q('search_descendants.sender_domain=mail.example'), [root]);
    assert.deepEqual(await q('search_descendants.source_ip=203.0.113.7'), [root]);
    assert.deepEqual(await q('search_descendants.reply_to=billing@mail.example'), [root]);
    assert.deepEqual(await q('search_descendants.source=bounce@mail.example'), [root]);
    assert.deepEqual(await q('search_descendants.receiver_domain=corp.example'), [root]);
    assert.deepEqual(await q('search_descendants.envelope_to=bob@corp.example'), [root]);
    assert.deepEqual(await q('search_descendants.original_file_path=finance'), [root]);
    assert.deepEqual(await q('search_descendants.path=login.example.net/reset'), [root]);
    assert.deepEqual(await q('search_descendants.domain=LOGIN.example.net'), [root]);
    assert.deepEqual(await q('search_descendants.url_title=sign in'), [root]);
    assert.deepEqual(await q('search_descendants.url_description=password'), [root]);
    assert.deepEqual(await q('search_descendants.url_description=100%25'), [], 'LIKE wildcards are literal');
    assert.deepEqual(await q('search_descendants.subject[]=lunch,invoice'), [other, root]);
  });

  test('evidence.data.brand searches the findings of the whole tree', async () => {
    const o = await org();
    const root = await scan(o.token);
    const plain = await scan(o.token);
    const now = Date.now();
    await v.verdict.store.db
      .insertInto('evidence')
      .values({ scan_id: root, root_id: root, heuristic: 'TEST', name: 'brand', category: 'html_content', scanner: 'test', layer: 'url', description: '', details: null, score: 0, verdict: null, attack: null, data: JSON.stringify({ brand: 'Microsoft Office 365' }), created_at: now })
      .execute();
    assert.deepEqual(await ids('/api/v1/scans/list/?evidence.data.brand=microsoft', o.token), [root]);
    assert.deepEqual(await ids('/api/v1/scans/list/?evidence.data.brand[]=paypal,office', o.token), [root]);
    assert.deepEqual(await ids('/api/v1/scans/list/?evidence.data.brand=paypal', o.token), []);
    void plain;
  });

  test('each result has the shape of the specification\'s example', async () => {
    const o = await org();
    const id = await scan(o.token, { was_requested_for_investigation: 1 });
    const { status, body } = await get('/api/v1/scans/list/', o.token);
    assert.equal(status, 200);
    for (const k of ['count', 'page_result_count', 'next', 'has_more', 'results', 'aggregations']) assert.ok(k in body, k);
    assert.equal(body.count, 1);
    assert.equal(body.page_result_count, 1);
    assert.equal(body.has_more, false);
    assert.match(body.next, /^http:\/\/127\.0\.0\.1:\d+\/api\/v1\/scans\/list\/\?_cursor=\d+$/);
    const r = body.results[0];
    for (const k of [
      'organization_display_name', 'origin', 'full_scan_id', 'is_highlighted', 'evidence', 'attachments_names', 'ir_decision', 'max_group_size',
      'verbose_action', 'created_at', 'finished_at', 'sample_to_type', 'payload_type', 'verbose_status', 'verdict_changed_at', 'group_keys',
      'was_requested_for_investigation', 'root_scan_summary', 'sample_file_type', 'sample_title', 'organization_name', 'confidence',
      'scan_engines', 'sub_verdict', 'search_descendants', 'queued_for_bulk_action', 'parent_organization_display_name', 'is_fn', 'sample_to',
      'root_scan_id', 'max_external_bulk_size', 'verbose_confidence', 'verbose_verdict', 'marked_as_fp_by', 'sub_origin', 'highlighted',
      'organization_id', 'sample_type_str', 'organization_is_demo', 'id', 'sample', 'sample_from_type', 'scan_layers', 'attachment',
      'decisions', 'images', 'verbose_automation_status', 'handle_status', 'sample_from', 'parent_organization_name', 'verbose_origin',
    ]) assert.ok(k in r, `result field ${k}`);
    assert.equal(r.id, id);
    assert.equal(r.organization_id, o.orgId);
    assert.equal(r.organization_name, o.name);
    assert.equal(r.verbose_status, 'CMP');
    assert.equal(r.verbose_verdict, 'CLN');
    assert.equal(r.was_requested_for_investigation, true);
    assert.deepEqual(r.root_scan_summary, { is_fn: false, was_requested_for_investigation: true, sub_verdict: 'CLN', verbose_verdict: 'CLN' });
    for (const k of ['sha256', 'domain', 'md5', 'headers', 'pe_icon_link', 'sha1', 'url_title', 'file_size', 'path', 'delivery_time']) assert.ok(k in r.sample, `sample.${k}`);
    for (const k of ['verdict_changed_by', 'scan_traces_count', 'path', 'sample_sha256', 'verbose_status', 'url_title', 'sample_title', 'url_description', 'parent_scan_id', 'verbose_verdict', 'sample_type_str', 'scan_id', 'domain', 'scan_layers', 'decisions', 'sample_from']) {
      assert.ok(k in r.search_descendants[0], `search_descendants.${k}`);
    }
    assert.match(r.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    // the detail route beside it still works
    assert.equal((await get(`/api/v1/scans/list/${id}/`, o.token)).body.id, id);
  });
});

describe('scan search: paging, errors, tenants', () => {
  test('cursor paging walks every match once, newest first, and the last page says has_more false', async () => {
    const o = await org();
    const made: number[] = [];
    for (let i = 0; i < 7; i++) made.push(await scan(o.token));
    let next: string | null = `${v.url}/api/v1/scans/list/?page_size=3&verbose_verdict[]=CLN`;
    const seen: number[] = [];
    const pages: any[] = [];
    while (next) {
      const res = await fetch(next, { headers: { authorization: `Token ${o.token}` } });
      const body = (await res.json()) as any;
      assert.equal(res.status, 200, JSON.stringify(body));
      pages.push(body);
      seen.push(...body.results.map((r: any) => r.id));
      next = body.has_more ? body.next : null;
    }
    assert.deepEqual(pages.map((p) => p.page_result_count), [3, 3, 1]);
    assert.deepEqual(seen, [...made].reverse(), 'all, once each, newest first');
    assert.equal(pages[0].count, 7);
    assert.match(pages[0].next, /verbose_verdict%5B%5D=CLN/, 'next keeps the filters');
    // a scan that arrives while paging does not disturb the walk (it is newer than the cursor)
    const cursor = new URL(pages[0].next).searchParams.get('_cursor');
    await scan(o.token);
    assert.deepEqual(await ids(`/api/v1/scans/list/?page_size=3&_cursor=${cursor}`, o.token), seen.slice(3, 6));
  });

  test('unknown parameters and malformed values are 400 naming the parameter', async () => {
    const o = await org();
    const bad: [string, string][] = [
      ['colour=blue', 'colour'],
      ['search_descendants.nope=1', 'search_descendants.nope'],
      ['start=yesterday', 'start'],
      ['end=17000000000', 'end'],
      ['verbose_verdict=BAD', 'verbose_verdict'],
      ['verbose_verdict[]=MAL,XYZ', 'verbose_verdict'],
      ['is_highlighted=maybe', 'is_highlighted'],
      ['belongs_to_vip=yes', 'belongs_to_vip'],
      ['max_group_size=-1', 'max_group_size'],
      ['search_descendants.sample_sha256=abc', 'search_descendants.sample_sha256'],
      ['search_descendants.source_ip=999.1.1.1', 'search_descendants.source_ip'],
      ['verbose_action=shredded', 'verbose_action'],
      ['organization_id=abc', 'organization_id'],
      ['_cursor=abc', '_cursor'],
      ['page_size=0', 'page_size'],
      ['channel=e mail', 'channel'],
    ];
    for (const [qs, name] of bad) {
      const r = await get(`/api/v1/scans/list/?${qs}`, o.token);
      assert.equal(r.status, 400, `${qs} → ${r.status}`);
      assert.ok(name in r.body, `${qs}: the body names ${name}: ${JSON.stringify(r.body)}`);
    }
  });

  test('tenants: another organization sees nothing, a parent sees its child, a child not its parent', async () => {
    const parent = await org();
    const child = await org(parent.name);
    const sibling = await org(parent.name);
    const stranger = await org();
    const inChild = await scan(child.token, { verdict: 'MAL', sub_verdict: 'MAL' });
    const inParent = await scan(parent.token);
    assert.deepEqual(await ids('/api/v1/scans/list/', stranger.token), []);
    assert.deepEqual(await ids('/api/v1/scans/list/', sibling.token), []);
    assert.deepEqual(await ids('/api/v1/scans/list/', child.token), [inChild]);
    assert.deepEqual(await ids('/api/v1/scans/list/', parent.token), [inParent, inChild]);
    assert.deepEqual(await ids(`/api/v1/scans/list/?organization_id=${child.orgId}`, parent.token), [inChild]);
    const r = await get('/api/v1/scans/list/', parent.token);
    const res = r.body.results.find((x: any) => x.id === inChild);
    assert.equal(res.parent_organization_name, parent.name);
    // an organization the token cannot see: 400 naming organization_id (whether or not it exists)
    for (const [token, orgId] of [[child.token, parent.orgId], [stranger.token, child.orgId], [sibling.token, child.orgId]] as const) {
      const bad = await get(`/api/v1/scans/list/?organization_id=${orgId}`, token);
      assert.equal(bad.status, 400);
      assert.ok('organization_id' in bad.body);
    }
    // descendants of another tenant's scans never make a match
    const sha = (await v.verdict.store.getScan(inChild))!.sha256!;
    assert.deepEqual(await ids(`/api/v1/scans/list/?search_descendants.sample_sha256=${sha}`, stranger.token), []);
    assert.deepEqual(await ids('/api/v1/scans/incidents/', stranger.token), []);
    assert.deepEqual(await ids('/api/get_siem_logs/?start=0', stranger.token), []);
    assert.equal((await v.api('GET', '/api/v1/scans/list/', { token: null })).status, 403);
  });
});

describe('incidents feed (Cortex XSOAR)', () => {
  test('replays the integration: connection test, _cursor=0, follow next, int(results[-1]["Scan Id"]) as the next cursor', async () => {
    const o = await org();
    // connection test: no parameters, a 200 with a non-empty JSON object
    const probe = await get('/api/v1/scans/incidents/', o.token);
    assert.equal(probe.status, 200);
    assert.deepEqual(Object.keys(probe.body).sort(), ['count', 'has_more', 'next', 'page_result_count', 'results']);
    assert.equal(probe.body.count, 0);
    // 22 MAL/BLK/SPM, 6 SUS, 5 CLN, interleaved
    const detected: number[] = [];
    const kinds = ['MAL', 'BLK', 'SPM', 'SUS'];
    for (let i = 0; i < 32; i++) {
      const verdict = i % 6 === 5 ? 'CLN' : kinds[i % 4];
      const id = await scan(o.token, verdict === 'CLN' ? {} : { verdict, sub_verdict: verdict });
      if (['MAL', 'BLK', 'SPM'].includes(verdict)) detected.push(id);
    }
    const mailRoot = detected[0];
    const zipScan = await v.submitFile(await makeZip({ 'invoice.pdf.exe': Buffer.from(`x${crypto.randomUUID()}`) }), 'mail.eml', {}, o.token);
    await v.waitForScan(zipScan, o.token);
    const kid = (await v.verdict.store.getDescendants(zipScan))[0];
    await v.verdict.store.updateScan(kid.id, { relation: 'attachment' });
    await v.verdict.store.updateScan(zipScan, { verdict: 'MAL', sub_verdict: 'MAL', channel: 'email' });
    detected.push(zipScan);

    // what the integration sends (requests encodes repeated keys)
    const params = 'verbose_verdict%5B%5D=MAL&verbose_verdict%5B%5D=BLK&verbose_verdict%5B%5D=SPM';
    const apiLoops = 10;
    const collect = async (lastRunId: number) => {
      const incidents: any[] = [];
      let res = await get(`/api/v1/scans/incidents/?${params}&_cursor=${lastRunId}`, o.token);
      assert.equal(res.status, 200);
      let loops = 0;
      while (res.body.count && loops < apiLoops) {
        incidents.push(...res.body.results);
        if (res.body.next) {
          const r = await fetch(res.body.next, { headers: { authorization: `Token ${o.token}` } });
          res = { status: r.status, body: await r.json() };
          assert.equal(res.status, 200);
        }
        loops++;
      }
      return incidents;
    };
    let lastRunId = 0;
    const first = await collect(lastRunId);
    assert.ok(first.length > 20, 'more than one page was followed');
    const got = first.map((r) => r['Scan Id']);
    assert.deepEqual(got, detected, 'every MAL/BLK/SPM once, oldest first, no SUS, no CLN');
    for (const r of first) {
      assert.equal(typeof r['Scan Id'], 'number');
      assert.equal(r['Scan Id'], r.id);
      assert.ok('Attachment' in r);
    }
    assert.equal(first.find((r) => r['Scan Id'] === zipScan).Attachment, 'invoice.pdf.exe');
    assert.equal(first.find((r) => r['Scan Id'] === mailRoot).Attachment, null);
    lastRunId = Math.max(lastRunId, Math.trunc(Number(first[first.length - 1]['Scan Id'])));
    // the next fetch: nothing new, then one new incident
    assert.deepEqual(await collect(lastRunId), []);
    const later = await scan(o.token, { verdict: 'BLK', sub_verdict: 'BLK' });
    assert.deepEqual((await collect(lastRunId)).map((r) => r['Scan Id']), [later]);
    // without verbose_verdict[]: every verdict but CLN
    const all = await get('/api/v1/scans/incidents/?_cursor=0', o.token);
    assert.equal(all.body.page_result_count, 20);
    assert.ok(all.body.results.some((r: any) => r.verbose_verdict === 'SUS'));
    assert.ok(all.body.results.every((r: any) => r.verbose_verdict !== 'CLN'));
    // malformed values
    assert.equal((await get('/api/v1/scans/incidents/?verbose_verdict[]=EVIL', o.token)).status, 400);
    assert.equal((await get('/api/v1/scans/incidents/?_cursor=x', o.token)).status, 400);
    assert.equal((await get('/api/v1/scans/incidents/?limit=5', o.token)).status, 400);
  });

  test('a scan still being examined holds the feed back, so the cursor never skips it', async () => {
    const o = await org();
    const a = await scan(o.token, { verdict: 'MAL', sub_verdict: 'MAL' });
    const pending = await scan(o.token);
    const c = await scan(o.token, { verdict: 'MAL', sub_verdict: 'MAL' });
    await v.verdict.store.updateScan(pending, { status: 'scanning', verdict: null });
    const held = await get('/api/v1/scans/incidents/?_cursor=0', o.token);
    assert.deepEqual(held.body.results.map((r: any) => r['Scan Id']), [a]);
    await v.verdict.store.updateScan(pending, { status: 'done', verdict: 'SPM', sub_verdict: 'SPM' });
    const after = await get(`/api/v1/scans/incidents/?_cursor=${a}`, o.token);
    assert.deepEqual(after.body.results.map((r: any) => r['Scan Id']), [pending, c]);
  });
});

describe('SIEM export', () => {
  test('scans finished since start, paged with next, each with a numeric timestamp; the Splunk add-on\'s loop', async () => {
    const o = await org();
    const made: number[] = [];
    for (let i = 0; i < 5; i++) made.push(await scan(o.token));
    // the add-on: start=<checkpoint> on every request, also beside the next URL's own parameters
    const run = async (checkpoint: number) => {
      const events: any[] = [];
      let last = checkpoint;
      let url: string | null = `${v.url}/api/get_siem_logs/?page_size=2`;
      while (url) {
        const u = new URL(url);
        u.searchParams.append('start', String(last));
        const res = await fetch(u, { headers: { authorization: `Token ${o.token}` } });
        const body = (await res.json()) as any;
        assert.equal(res.status, 200, JSON.stringify(body));
        url = body.next;
        for (const r of body.results) {
          assert.equal(typeof r.timestamp, 'number');
          last = Math.max(r.timestamp, last);
          events.push(r);
        }
      }
      return { events, last };
    };
    const first = await run(0);
    assert.deepEqual(first.events.map((e) => e.scan_id), made, 'in finishing order, once each');
    for (const e of first.events) assert.equal(e.verbose_verdict, 'CLN');
    const again = await run(first.last);
    assert.deepEqual(again.events, [], 'nothing twice');
    const later = await scan(o.token);
    assert.deepEqual((await run(first.last)).events.map((e) => e.scan_id), [later]);
    assert.equal((await get('/api/get_siem_logs/?start=yesterday', o.token)).status, 400);
    assert.equal((await get('/api/get_siem_logs/?start=0&colour=1', o.token)).status, 400);
  });
});
