/**
 * X-Ray organizations and users over a real HTTP socket: creation with every field of the
 * specification, the tree (parent sees children, siblings never meet), deactivation, users
 * invited with a one-time token, disabling, and roles.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startVerdict, type Running } from './harness.ts';

let v: Running;

before(async () => {
  v = await startVerdict({ clamd: 'off', workers: 1 });
});
after(async () => {
  await v?.close();
});

async function json(res: Response): Promise<any> {
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
}

/** Creates an organization under the token's organization and an org token for it. */
async function makeOrg(name: string, token = v.token): Promise<{ id: number; token: string }> {
  const res = await v.api('POST', '/api/organizations/', { token, json: { name, active: true, number_of_seats: 10 } });
  const body = await json(res);
  assert.equal(res.status, 201, JSON.stringify(body));
  return { id: body.id, token: (await v.verdict.service.createToken(name)).token };
}

describe('POST /api/organizations/', () => {
  test('every field of the specification is stored; omitted ones take the specification\'s defaults', async () => {
    const full = {
      name: 'acme',
      active: true,
      number_of_seats: 250,
      origins: ['office365', 'teams'],
      email_report_recipients: 'soc@acme.example, ciso@acme.example',
      send_malicious_emails: false,
      send_spam_emails: false,
      send_blocked_emails: false,
      email_weekly_report: false,
      email_monthly_report: false,
      email_domains_report: true,
      email_end_user_on_malicious_alert: true,
      client_alert_malicious_to_admin_email: true,
    };
    const res = await v.api('POST', '/api/organizations/', { json: full });
    const { id } = await json(res);
    assert.equal(res.status, 201);
    assert.ok(Number.isInteger(id));
    const got = await json(await v.api('GET', `/api/organizations/${id}/`));
    for (const [k, val] of Object.entries(full)) assert.deepEqual(got[k], val, k);
    const root = await v.verdict.store.getOrgByName('default');
    assert.equal(got.parent_organization, root!.id, 'a child of the caller\'s organization');
    assert.equal(got.parent_organization_name, 'default');

    const min = await json(await v.api('POST', '/api/organizations/', { json: { name: 'acme-min', active: false, number_of_seats: 0 } }));
    const d = await json(await v.api('GET', `/api/organizations/${min.id}`));
    assert.deepEqual(
      { origins: d.origins, email_report_recipients: d.email_report_recipients, send_malicious_emails: d.send_malicious_emails, send_spam_emails: d.send_spam_emails, send_blocked_emails: d.send_blocked_emails, email_weekly_report: d.email_weekly_report, email_monthly_report: d.email_monthly_report, email_domains_report: d.email_domains_report, email_end_user_on_malicious_alert: d.email_end_user_on_malicious_alert, client_alert_malicious_to_admin_email: d.client_alert_malicious_to_admin_email, active: d.active },
      { origins: [], email_report_recipients: null, send_malicious_emails: true, send_spam_emails: true, send_blocked_emails: true, email_weekly_report: true, email_monthly_report: true, email_domains_report: false, email_end_user_on_malicious_alert: false, client_alert_malicious_to_admin_email: false, active: false },
    );
  });

  test('a form-encoded body works as JSON does', async () => {
    const body = new URLSearchParams({ name: 'acme-form', active: 'true', number_of_seats: '3', origins: 'gmail', send_spam_emails: 'false' });
    const res = await v.api('POST', '/api/organizations/', { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const { id } = await json(res);
    assert.equal(res.status, 201);
    const got = await json(await v.api('GET', `/api/organizations/${id}/`));
    assert.deepEqual([got.origins, got.send_spam_emails, got.number_of_seats], [['gmail'], false, 3]);
  });

  test('invalid requests are 400 naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ active: true, number_of_seats: 1 }, 'name'],
      [{ name: 'x1', number_of_seats: 1 }, 'active'],
      [{ name: 'x2', active: true }, 'number_of_seats'],
      [{ name: 'x3', active: true, number_of_seats: -1 }, 'number_of_seats'],
      [{ name: 'x4', active: 'maybe', number_of_seats: 1 }, 'active'],
      [{ name: 'x5', active: true, number_of_seats: 1, origins: ['myspace'] }, 'origins'],
      [{ name: 'x6', active: true, number_of_seats: 1, email_report_recipients: 'not an address' }, 'email_report_recipients'],
      [{ name: 'x7', active: true, number_of_seats: 1, colour: 'blue' }, 'colour'],
      [{ name: 'acme', active: true, number_of_seats: 1 }, 'name'],
      [{ name: 'x8', active: true, number_of_seats: 1, parent_organization: 999999 }, 'parent_organization'],
    ];
    for (const [body, field] of cases) {
      const res = await v.api('POST', '/api/organizations/', { json: body });
      const b = await json(res);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${JSON.stringify(b)}`);
      assert.ok(Array.isArray(b[field]), `${JSON.stringify(body)} should name ${field}: ${JSON.stringify(b)}`);
      assert.ok(b.detail);
    }
  });

  test('only Administrators create organizations', async () => {
    for (const role of ['Admin', 'Analyst', 'Viewer'] as const) {
      const { token } = await v.verdict.service.createToken('default', role, `r-${role}`);
      const res = await v.api('POST', '/api/organizations/', { token, json: { name: `by-${role}`, active: true, number_of_seats: 1 } });
      assert.equal(res.status, 403, role);
    }
  });
});

describe('the organization tree', () => {
  test('a parent sees its children, a child sees only itself, siblings never see each other', async () => {
    const parent = await makeOrg('tree-parent');
    const a = await makeOrg('tree-a', parent.token);
    const b = await makeOrg('tree-b', parent.token);
    const list = await json(await v.api('GET', '/api/organizations/', { token: parent.token }));
    assert.deepEqual(list.results.map((o: any) => o.name).sort(), ['tree-a', 'tree-b', 'tree-parent']);
    assert.equal(list.count, 3);
    const seenByA = await json(await v.api('GET', '/api/organizations/', { token: a.token }));
    assert.deepEqual(seenByA.results.map((o: any) => o.name), ['tree-a']);
    assert.equal((await v.api('GET', `/api/organizations/${b.id}/`, { token: a.token })).status, 404);
    assert.equal((await v.api('GET', `/api/organizations/${parent.id}/`, { token: a.token })).status, 404);
    assert.equal((await v.api('PATCH', `/api/organizations/${b.id}/`, { token: a.token, json: { email_weekly_report: false } })).status, 404);
    // a child cannot file an organization under its sibling
    const res = await v.api('POST', '/api/organizations/', { token: a.token, json: { name: 'tree-a-x', active: true, number_of_seats: 1, parent_organization: b.id } });
    assert.equal(res.status, 400);
  });

  test('paging follows next to the end', async () => {
    const p = await makeOrg('page-root');
    for (let i = 0; i < 4; i++) await makeOrg(`page-${i}`, p.token);
    const seen: string[] = [];
    let url: string | null = `/api/organizations/?page_size=2`;
    while (url) {
      const body: any = await json(await v.api('GET', url.replace(v.url, ''), { token: p.token }));
      assert.equal(body.count, 5);
      seen.push(...body.results.map((o: any) => o.name));
      url = body.next;
    }
    assert.equal(seen.length, 5);
    assert.equal(new Set(seen).size, 5);
  });

  test('a parent deactivates a child: the child\'s and its children\'s tokens are refused until it is reactivated', async () => {
    const parent = await makeOrg('deact-parent');
    const child = await makeOrg('deact-child', parent.token);
    const grandchild = await makeOrg('deact-grandchild', child.token);
    const id = await v.submitFile(Buffer.from('child data'), 'c.txt', {}, child.token);

    // an organization cannot switch itself off, nor change its commercial terms
    assert.equal((await v.api('PATCH', `/api/organizations/${child.id}/`, { token: child.token, json: { active: false } })).status, 403);
    assert.equal((await v.api('PATCH', `/api/organizations/${child.id}/`, { token: child.token, json: { throttle_per_minute: 0 } })).status, 403);
    // ... but may change its own preferences
    const own = await v.api('PATCH', `/api/organizations/${child.id}/`, { token: child.token, json: { email_weekly_report: false } });
    assert.equal(own.status, 200);
    assert.equal((await json(own)).email_weekly_report, false);

    const off = await v.api('PATCH', `/api/organizations/${child.id}/`, { token: parent.token, json: { active: false } });
    assert.equal(off.status, 200);
    assert.equal((await json(off)).active, false);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`, { token: child.token })).status, 403);
    assert.equal((await v.api('GET', '/api/organizations/', { token: grandchild.token })).status, 403);
    // the parent still reads the child's scans and settings
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`, { token: parent.token })).status, 200);
    assert.equal((await v.api('GET', `/api/organizations/${child.id}/`, { token: parent.token })).status, 200);

    assert.equal((await v.api('PATCH', `/api/organizations/${child.id}/`, { token: parent.token, json: { active: true } })).status, 200);
    assert.equal((await v.api('GET', `/api/v1/scans/list/${id}/`, { token: child.token })).status, 200);
    assert.equal((await v.api('GET', '/api/organizations/', { token: grandchild.token })).status, 200);
  });

  test('a PATCH changes only what it names', async () => {
    const o = await makeOrg('patch-me');
    await v.api('PATCH', `/api/organizations/${o.id}/`, { json: { origins: ['s3'], send_spam_emails: false } });
    const r = await v.api('PATCH', `/api/organizations/${o.id}/`, { json: { investigation_webhook_url: 'https://hooks.example/x', number_of_seats: 99 } });
    const got = await json(r);
    assert.equal(r.status, 200, JSON.stringify(got));
    assert.deepEqual([got.origins, got.send_spam_emails, got.investigation_webhook_url, got.number_of_seats, got.send_malicious_emails], [['s3'], false, 'https://hooks.example/x', 99, true]);
    const bad = await v.api('PATCH', `/api/organizations/${o.id}/`, { json: { investigation_webhook_url: 'ftp://x' } });
    assert.equal(bad.status, 400);
    assert.ok('investigation_webhook_url' in (await json(bad)));
    assert.equal((await v.api('PATCH', `/api/organizations/${o.id}/`, { json: {} })).status, 400);
  });
});

describe('users and their tokens', () => {
  test('an administrator invites a user and gets a token that acts with the user\'s role', async () => {
    const res = await v.api('POST', '/api/v1/users/invite_user/', { json: { name: 'Vera Viewer', email: 'vera@example.org', role: 'Viewer' } });
    const body = await json(res);
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.match(body.token, /^vd_/);
    assert.equal(body.role, 'Viewer');
    assert.equal(body.active, true);
    const vera = body.token as string;
    // a Viewer reads but does not submit
    assert.equal((await v.api('GET', '/api/v1/scans/completed-jobs/', { token: vera })).status, 200);
    const form = new FormData();
    form.set('data', new Blob([Buffer.from('x')]), 'x.txt');
    assert.equal((await v.api('POST', '/api/v1/files/', { token: vera, body: form })).status, 403);
    // nor manages users
    assert.equal((await v.api('GET', '/api/v1/users/', { token: vera })).status, 403);
    // the token is shown once: listings never carry it
    const list = await json(await v.api('GET', '/api/v1/users/'));
    const row = list.results.find((u: any) => u.email === 'vera@example.org');
    assert.ok(row);
    assert.equal(row.token, undefined);
    assert.ok(!JSON.stringify(list).includes(vera));

    // a role change applies to the user's existing token at once
    const up = await v.api('PATCH', `/api/v1/users/${row.id}/`, { json: { role: 'Analyst' } });
    assert.equal(up.status, 200);
    const f2 = new FormData();
    f2.set('data', new Blob([Buffer.from('x')]), 'x.txt');
    assert.equal((await v.api('POST', '/api/v1/files/', { token: vera, body: f2 })).status, 200);
  });

  test('a disabled user\'s token stops working at once, and works again when enabled', async () => {
    const { id, token } = await json(await v.api('POST', '/api/v1/users/invite_user/', { json: { name: 'Dan', email: 'dan@example.org', role: 'Analyst' } }));
    assert.equal((await v.api('GET', '/api/v1/scans/completed-jobs/', { token })).status, 200);
    const off = await v.api('PATCH', `/api/v1/users/${id}/`, { json: { active: false } });
    assert.equal(off.status, 200);
    assert.equal((await json(off)).active, false);
    const refused = await v.api('GET', '/api/v1/scans/completed-jobs/', { token });
    assert.equal(refused.status, 403);
    assert.match((await json(refused)).detail, /disabled/);
    assert.equal((await v.api('PATCH', `/api/v1/users/${id}/`, { json: { active: true } })).status, 200);
    assert.equal((await v.api('GET', '/api/v1/scans/completed-jobs/', { token })).status, 200);
  });

  test('an administrator user cannot disable itself', async () => {
    const { id, token } = await json(await v.api('POST', '/api/v1/users/invite_user/', { json: { email: 'root@example.org', role: 'Administrator' } }));
    const res = await v.api('PATCH', `/api/v1/users/${id}/`, { token, json: { active: false } });
    assert.equal(res.status, 400);
    assert.ok('active' in (await json(res)));
  });

  test('invitations are validated and users stay inside the caller\'s subtree', async () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ name: 'No Mail' }, 'email'],
      [{ email: 'not-an-address' }, 'email'],
      [{ email: 'r@example.org', role: 'Overlord' }, 'role'],
      [{ email: 'vera@example.org' }, 'email'],
      [{ email: 'p@example.org', password: 'short' }, 'password'],
    ];
    for (const [body, field] of bad) {
      const res = await v.api('POST', '/api/v1/users/invite_user/', { json: body });
      const b = await json(res);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${JSON.stringify(b)}`);
      assert.ok(field in b, `${JSON.stringify(body)} should name ${field}: ${JSON.stringify(b)}`);
    }
    const parent = await makeOrg('users-parent');
    const a = await makeOrg('users-a', parent.token);
    const b = await makeOrg('users-b', parent.token);
    const inA = await json(await v.api('POST', '/api/v1/users/invite_user/', { token: parent.token, json: { email: 'amy@a.example', organization: a.id, role: 'Admin' } }));
    assert.equal(inA.organization, a.id);
    // a sibling's administrator neither lists nor changes nor files users there
    const listB = await json(await v.api('GET', '/api/v1/users/', { token: b.token }));
    assert.deepEqual(listB.results, []);
    assert.equal((await v.api('GET', `/api/v1/users/${inA.id}/`, { token: b.token })).status, 404);
    assert.equal((await v.api('PATCH', `/api/v1/users/${inA.id}/`, { token: b.token, json: { active: false } })).status, 404);
    assert.equal((await v.api('POST', '/api/v1/users/invite_user/', { token: b.token, json: { email: 'x@b.example', organization: a.id } })).status, 400);
    // the parent lists the child's users
    const listP = await json(await v.api('GET', '/api/v1/users/', { token: parent.token }));
    assert.deepEqual(listP.results.map((u: any) => u.email), ['amy@a.example']);
    // the invited user's token sees its own organization only
    const orgs = await json(await v.api('GET', '/api/organizations/', { token: inA.token }));
    assert.deepEqual(orgs.results.map((o: any) => o.id), [a.id]);
  });
});
