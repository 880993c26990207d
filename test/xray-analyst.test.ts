/**
 * X-Ray analyst endpoints over a real HTTP socket: verdict change (handle_scan) with its audit
 * trail and fp/fn marks, request investigation with the organization webhook, quarantine
 * release through the EmailReleaser interface (as XSOAR's integration calls it), roles and
 * tenant isolation.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { eicar } from '../src/scanners/testing.ts';
import type { ScanRow } from '../src/store/schema.ts';
import type { EmailReleaser, ReleaseContext } from '../src/service/quarantine.ts';
import { makeZip, startSink, startVerdict, type Running } from './harness.ts';

let v: Running;
let viewer: string;
let other: string;
let childToken: string;

const clean = () => Buffer.from(`Quarterly figures, nothing unusual ${Math.random()}\n`);

async function scanOf(data: Buffer, name: string, token?: string): Promise<{ id: number; detail: Record<string, any> }> {
  const id = await v.submitFile(data, name, {}, token);
  return { id, detail: await v.waitForScan(id, token) };
}

async function detail(id: number, token?: string): Promise<Record<string, any>> {
  const res = await v.api('GET', `/api/v1/scans/list/${id}/`, { token });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, any>;
}

async function json(res: Response): Promise<Record<string, any>> {
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

before(async () => {
  v = await startVerdict({ clamd: 'off' });
  viewer = (await v.verdict.service.createToken('default', 'Viewer', 'viewer')).token;
  await v.verdict.service.createOrg('analyst-other');
  other = (await v.verdict.service.createToken('analyst-other')).token;
  await v.verdict.service.createOrg('analyst-child', 'default');
  childToken = (await v.verdict.service.createToken('analyst-child', 'Analyst')).token;
});
after(async () => {
  await v?.close();
});

describe('verdict change (PUT handle_scan)', () => {
  test('MAL changed to CLN: 200 with the new state, a false positive, and the audit trail in the detail', async () => {
    const { id, detail: before } = await scanOf(eicar(), 'eicar.com');
    assert.equal(before.verdict, 'MAL');
    assert.equal(before.verdict_changed_by, 'System');
    assert.deepEqual(before.verdict_changes, []);

    const res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'CLN', comment: 'our own test file' } });
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.scan_id, id);
    assert.equal(body.previous_sub_verdict, 'MAL');
    assert.equal(body.sub_verdict, 'CLN');
    assert.equal(body.is_fp, true);
    assert.equal(body.is_fn, false);

    const d = await detail(id);
    assert.equal(d.verdict, 'CLN');
    assert.equal(d.sub_verdict, 'CLN');
    assert.equal(d.verbose_verdict, 'CLN');
    assert.equal(d.is_fp, true);
    assert.equal(d.is_fn, false);
    assert.equal(d.original_verdict, 'MAL');
    assert.match(d.verdict_changed_by, /^token administrator/);
    assert.equal(d.marked_as_fp_by, d.verdict_changed_by);
    assert.ok(Date.parse(d.verdict_changed_at + 'Z') >= Date.parse(d.finished_at + 'Z'));
    assert.equal(d.verdict_changes.length, 1);
    const c = d.verdict_changes[0];
    assert.deepEqual([c.kind, c.old_verdict, c.new_verdict, c.comment, c.is_fp, c.is_fn], ['analyst', 'MAL', 'CLN', 'our own test file', true, false]);
    assert.equal(c.changed_by, d.verdict_changed_by);
    assert.equal(c.changed_by_organization_id, d.organization_id);
  });

  test('CLN changed to SPM (form body) is a false negative; back to CLN clears the marks and both changes stay in the trail', async () => {
    const { id, detail: d0 } = await scanOf(clean(), 'figures.txt');
    assert.equal(d0.verdict, 'CLN');
    const form = new URLSearchParams({ sub_verdict: 'spm', comment: 'newsletter nobody asked for' });
    let res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}`, { body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(res.status, 200, await res.clone().text());
    let d = await detail(id);
    assert.deepEqual([d.verdict, d.is_fp, d.is_fn], ['SPM', false, true]);

    res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'CLN' } });
    assert.equal(res.status, 200);
    d = await detail(id);
    assert.deepEqual([d.verdict, d.is_fp, d.is_fn, d.marked_as_fp_by], ['CLN', false, false, null]);
    assert.deepEqual(
      d.verdict_changes.map((c: any) => [c.old_verdict, c.new_verdict, c.comment]),
      [
        ['CLN', 'SPM', 'newsletter nobody asked for'],
        ['SPM', 'CLN', null],
      ],
    );
  });

  test('400 naming sub_verdict when it is unchanged, unknown or missing; unknown fields are refused by name', async () => {
    const { id } = await scanOf(eicar(), 'eicar.com');
    const cases: [unknown, string][] = [
      [{ sub_verdict: 'MAL' }, 'sub_verdict'],
      [{ sub_verdict: 'EVIL' }, 'sub_verdict'],
      [{ comment: 'no verdict' }, 'sub_verdict'],
      [{ sub_verdict: 'CLN', reason: 'x' }, 'reason'],
    ];
    for (const [payload, field] of cases) {
      const res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: payload });
      const body = await json(res);
      assert.equal(res.status, 400, JSON.stringify(payload));
      assert.ok(Array.isArray(body[field]), `${field} named in ${JSON.stringify(body)}`);
    }
    const unchanged = await json(await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'MAL' } }));
    assert.match(unchanged.detail, /already MAL/);
    assert.equal((await detail(id)).verdict_changes.length, 0);
  });

  test('only a whole submission changes verdict: a child scan is 400 naming the root', async () => {
    const zip = await makeZip({ 'inner/eicar.com': eicar() });
    const { detail: d } = await scanOf(zip, 'bundle.zip');
    const childId = d.children[0].id;
    const res = await v.api('PUT', `/api/v1/scans/handle_scan/${childId}/`, { json: { sub_verdict: 'CLN' } });
    const body = await json(res);
    assert.equal(res.status, 400);
    assert.match(body.detail, new RegExp(`part of scan ${d.id}`));
  });

  test('a Viewer gets 403, another organization 404, an unknown scan 404', async () => {
    const { id } = await scanOf(eicar(), 'eicar.com');
    let res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'CLN' }, token: viewer });
    assert.equal(res.status, 403);
    assert.match((await json(res)).detail, /Viewer/);
    res = await v.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'CLN' }, token: other });
    assert.equal(res.status, 404);
    res = await v.api('PUT', `/api/v1/scans/handle_scan/99999999/`, { json: { sub_verdict: 'CLN' } });
    assert.equal(res.status, 404);
    assert.equal((await detail(id)).verdict, 'MAL');
  });
});

describe('request investigation', () => {
  test('stored, flagged and announced to the organization webhook (a child organization uses its parent\'s)', async () => {
    const sink = await startSink();
    try {
      const admin = await v.verdict.service.authenticate(v.token);
      const defaultOrg = admin.orgId;
      await v.verdict.analyst.setInvestigationWebhook(admin, defaultOrg, `${sink.url}/pp-investigations`, { 'X-Api-Key': 'soar-key' });

      const { id } = await scanOf(eicar(), 'eicar.com');
      const res = await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=clean&comment=${encodeURIComponent('looks like our test file')}`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), '', 'a blank 200');

      const [got] = await sink.waitFor(1);
      assert.equal(got.method, 'POST');
      assert.equal(got.url, '/pp-investigations');
      assert.equal(got.headers['x-verdict-event'], 'investigation_requested');
      assert.equal(got.headers['x-api-key'], 'soar-key');
      const event = JSON.parse(got.body.toString());
      assert.equal(event.event, 'investigation_requested');
      assert.equal(event.scan_id, id);
      assert.equal(event.option, 'clean');
      assert.equal(event.comment, 'looks like our test file');
      assert.equal(event.scan.verdict, 'MAL');
      assert.match(event.requested_by, /^token administrator/);

      // the detail shows the flag and the request, with the webhook delivery
      let d: Record<string, any> = {};
      for (let i = 0; i < 50; i++) {
        d = await detail(id);
        if (d.investigation_requests[0]?.webhook?.state === 'delivered') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(d.was_requested_for_investigation, true);
      assert.equal(d.investigation_requests.length, 1);
      assert.equal(d.investigation_requests[0].option, 'clean');
      assert.equal(d.investigation_requests[0].webhook.state, 'delivered');

      // the child organization has no webhook of its own: its parent's receives the request
      const child = await scanOf(clean(), 'child.txt', childToken);
      const res2 = await v.api('GET', `/api/v1/scans/request-investigation/${child.id}?option=malicious`, { token: childToken });
      assert.equal(res2.status, 200);
      const received = await sink.waitFor(2);
      const e2 = JSON.parse(received[1].body.toString());
      assert.equal(e2.scan_id, child.id);
      assert.equal(e2.organization_name, 'analyst-child');
      assert.equal(e2.option, 'malicious');
      assert.equal(e2.comment, null);
    } finally {
      const admin = await v.verdict.service.authenticate(v.token);
      await v.verdict.analyst.setInvestigationWebhook(admin, admin.orgId, null);
      await sink.close();
    }
  });

  test('without a webhook the request is still stored; option is mandatory (400 naming it)', async () => {
    const { id } = await scanOf(clean(), 'plain.txt', other);
    let res = await v.api('GET', `/api/v1/scans/request-investigation/${id}/`, { token: other });
    assert.equal(res.status, 400);
    assert.ok(Array.isArray((await json(res)).option));
    res = await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=&comment=x`, { token: other });
    assert.equal(res.status, 400);
    res = await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=spam&colour=red`, { token: other });
    assert.equal(res.status, 400);
    assert.ok(Array.isArray((await json(res)).colour));

    res = await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=spam`, { token: other });
    assert.equal(res.status, 200);
    const d = await detail(id, other);
    assert.equal(d.was_requested_for_investigation, true);
    assert.equal(d.investigation_requests[0].webhook, null);
  });

  test('a Viewer gets 403, another organization 404; a bad webhook URL is refused naming the setting', async () => {
    const { id } = await scanOf(clean(), 'plain.txt');
    assert.equal((await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=spam`, { token: viewer })).status, 403);
    assert.equal((await v.api('GET', `/api/v1/scans/request-investigation/${id}/?option=spam`, { token: other })).status, 404);
    assert.equal((await detail(id)).was_requested_for_investigation, false);

    const admin = await v.verdict.service.authenticate(v.token);
    await assert.rejects(v.verdict.analyst.setInvestigationWebhook(admin, admin.orgId, 'ftp://example.org/hook'), (e: Error & { field?: string }) => e.field === 'investigation_webhook_url');
    const viewerPrincipal = await v.verdict.service.authenticate(viewer);
    await assert.rejects(v.verdict.analyst.setInvestigationWebhook(viewerPrincipal, admin.orgId, 'https://example.org/hook'), /may not/);
  });
});

describe('quarantine release', () => {
  const calls: { scanId: number; ctx: ReleaseContext }[] = [];
  const recording: EmailReleaser = {
    async release(scan: ScanRow, ctx: ReleaseContext) {
      calls.push({ scanId: scan.id, ctx });
      return { delivered: true, detail: `delivered scan ${scan.id} to its recipients` };
    },
  };

  test('without an email gateway the release is refused (409) and the scan stays quarantined', async () => {
    const { id } = await scanOf(eicar(), 'mail.eml');
    await v.verdict.quarantine.quarantine(id, { reason: 'MAL verdict', by: 'email gateway' });
    const res = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    const body = await json(res);
    assert.equal(res.status, 409);
    assert.match(body.detail, /no email gateway is configured/);
    const d = await detail(id);
    assert.equal(d.quarantine.state, 'quarantined');
    assert.equal(d.quarantine.quarantined_by, 'email gateway');
    assert.equal(d.verbose_action, 'quarantine');
    assert.equal(d.verdict, 'MAL');
  });

  test('XSOAR\'s release call (no trailing slash, no parameters) releases and marks clean, audited; twice is 400', async () => {
    v.verdict.quarantine.setReleaser(recording);
    const { id } = await scanOf(eicar(), 'mail.eml');
    await v.verdict.quarantine.quarantine(id, { reason: 'MAL verdict' });

    const res = await v.api('GET', `/api/v1/quarantine/release/${id}`);
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.released, true);
    assert.equal(body.marked_as_clean, true);
    assert.equal(body.verdict, 'CLN');
    assert.deepEqual(
      calls.filter((c) => c.scanId === id).map((c) => c.ctx.markAsClean),
      [true],
    );

    const d = await detail(id);
    assert.equal(d.verdict, 'CLN');
    assert.equal(d.is_fp, true);
    assert.equal(d.quarantine.state, 'released');
    assert.equal(d.quarantine.marked_as_clean, true);
    assert.match(d.quarantine.released_by, /^token administrator/);
    assert.equal(d.verbose_action, 'delivered');
    assert.deepEqual(
      d.verdict_changes.map((c: any) => [c.kind, c.old_verdict, c.new_verdict]),
      [['quarantine_release', 'MAL', 'CLN']],
    );

    const again = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    assert.equal(again.status, 400);
    assert.match((await json(again)).detail, /already released/);
    assert.equal(calls.filter((c) => c.scanId === id).length, 1, 'the releaser is not called again');
  });

  test('should_mark_as_clean=false releases without changing the verdict', async () => {
    v.verdict.quarantine.setReleaser(recording);
    const { id } = await scanOf(eicar(), 'mail.eml');
    await v.verdict.quarantine.quarantine(id);
    const res = await v.api('GET', `/api/v1/quarantine/release/${id}/?should_mark_as_clean=False`);
    assert.equal(res.status, 200);
    const d = await detail(id);
    assert.equal(d.verdict, 'MAL');
    assert.deepEqual(d.verdict_changes, []);
    assert.equal(d.quarantine.state, 'released');
    assert.equal(d.quarantine.marked_as_clean, false);
  });

  test('400 for a scan that is not quarantined, a bad boolean or a bad id; a failing gateway is 503 and keeps it quarantined', async () => {
    v.verdict.quarantine.setReleaser(recording);
    const { id } = await scanOf(eicar(), 'mail.eml');
    let res = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    assert.equal(res.status, 400);
    assert.match((await json(res)).detail, /not in quarantine/);

    await v.verdict.quarantine.quarantine(id);
    res = await v.api('GET', `/api/v1/quarantine/release/${id}/?should_mark_as_clean=maybe`);
    assert.equal(res.status, 400);
    assert.ok(Array.isArray((await json(res)).should_mark_as_clean));
    res = await v.api('GET', `/api/v1/quarantine/release/not-an-id/`);
    assert.equal(res.status, 400);
    assert.ok(Array.isArray((await json(res)).scan_id));

    v.verdict.quarantine.setReleaser({
      async release() {
        throw new Error('smtp relay unreachable');
      },
    });
    res = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    assert.equal(res.status, 503);
    assert.match((await json(res)).detail, /smtp relay unreachable/);
    assert.equal((await detail(id)).quarantine.state, 'quarantined');

    v.verdict.quarantine.setReleaser(recording);
    res = await v.api('GET', `/api/v1/quarantine/release/${id}/?should_mark_as_clean=1`);
    assert.equal(res.status, 200);
  });

  test('two releases at once deliver the message once: the second is 409 while the first is in progress', async () => {
    const { id } = await scanOf(eicar(), 'mail.eml');
    await v.verdict.quarantine.quarantine(id);
    let deliveries = 0;
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    v.verdict.quarantine.setReleaser({
      async release() {
        deliveries++;
        await gate;
        return { delivered: true, detail: 'delivered' };
      },
    });
    const first = v.api('GET', `/api/v1/quarantine/release/${id}/`);
    while (deliveries === 0) await new Promise((r) => setTimeout(r, 10));
    const second = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    assert.equal(second.status, 409);
    assert.match((await json(second)).detail, /in progress/);
    finish();
    assert.equal((await first).status, 200);
    assert.equal(deliveries, 1);
  });

  test('a Viewer gets 403, another organization 404, and neither reaches the releaser', async () => {
    v.verdict.quarantine.setReleaser(recording);
    const { id } = await scanOf(eicar(), 'mail.eml');
    await v.verdict.quarantine.quarantine(id);
    const before = calls.length;
    assert.equal((await v.api('GET', `/api/v1/quarantine/release/${id}/`, { token: viewer })).status, 403);
    assert.equal((await v.api('GET', `/api/v1/quarantine/release/${id}`, { token: other })).status, 404);
    assert.equal(calls.length, before);
    assert.equal((await detail(id)).quarantine.state, 'quarantined');
  });
});

test('metrics count verdict changes with their fp/fn mark, investigations and releases', async () => {
  const res = await v.api('GET', '/metrics', { token: null });
  const text = await res.text();
  assert.match(text, /verdict_analyst_verdict_changes_total\{from="MAL",to="CLN",kind="analyst",mark="fp"\} \d+/);
  assert.match(text, /verdict_analyst_verdict_changes_total\{from="CLN",to="SPM",kind="analyst",mark="fn"\} 1/);
  assert.match(text, /verdict_investigation_requests_total\{webhook="yes"\} 2/);
  assert.match(text, /verdict_quarantine_releases_total\{outcome="released"\} \d+/);
});

test('a scan that is not finished cannot be changed, investigated or quarantined yet (409)', async () => {
  const idle = await startVerdict({ clamd: 'off', workers: 0 });
  try {
    const id = await idle.submitFile(eicar(), 'eicar.com');
    let res = await idle.api('PUT', `/api/v1/scans/handle_scan/${id}/`, { json: { sub_verdict: 'CLN' } });
    assert.equal(res.status, 409);
    assert.match((await json(res)).detail, /not complete/);
    res = await idle.api('GET', `/api/v1/scans/request-investigation/${id}/?option=clean`);
    assert.equal(res.status, 409);
    await assert.rejects(idle.verdict.quarantine.quarantine(id), /not complete/);
  } finally {
    await idle.close();
  }
});
