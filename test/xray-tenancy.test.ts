/**
 * Tenant isolation, over a real socket: a parent organization P with two children A and B.
 * P's token reaches A's and B's data; A's token reaches A's only; A and B never see each other;
 * a child never sees its parent's data. Every read and write endpoint is tried: what must not
 * reach answers 404 (as an unknown id) or 400 (an organization the token cannot use) or 403.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { eicar } from '../src/scanners/testing.ts';
import { startVerdict, type Running } from './harness.ts';

let v: Running;
const org: Record<'P' | 'A' | 'B', { id: number; token: string }> = {} as never;
const scan: Record<'P' | 'A' | 'B', number> = {} as never;
let malA = 0;

async function json(res: Response): Promise<any> {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text;
  }
}

async function status(method: string, p: string, token: string, init: { json?: unknown } = {}): Promise<number> {
  const res = await v.api(method, p, { token, ...init });
  await res.arrayBuffer();
  return res.status;
}

/** Ids of the scans in a page of results, whatever the endpoint calls them. */
function idsOf(body: any): number[] {
  assert.ok(Array.isArray(body?.results), `expected a page of results, got ${JSON.stringify(body).slice(0, 300)}`);
  return body.results.map((r: any) => Number(r.id ?? r['Scan Id'] ?? r.scan_id));
}

before(async () => {
  v = await startVerdict({ clamd: 'off', workers: 2 });
  const mk = async (name: string, token: string) => {
    const res = await v.api('POST', '/api/organizations/', { token, json: { name, active: true, number_of_seats: 5 } });
    const body = await json(res);
    assert.equal(res.status, 201, JSON.stringify(body));
    return { id: body.id as number, token: (await v.verdict.service.createToken(name)).token };
  };
  org.P = await mk('ten-parent', v.token);
  org.A = await mk('ten-a', org.P.token);
  org.B = await mk('ten-b', org.P.token);
  for (const k of ['P', 'A', 'B'] as const) scan[k] = await v.submitFile(Buffer.from(`data of ${k}`), `${k}.txt`, {}, org[k].token);
  malA = await v.submitFile(eicar(), 'eicar.com', {}, org.A.token);
  for (const id of [...Object.values(scan), malA]) await v.waitForScan(id, v.token);
});
after(async () => {
  await v?.close();
});

describe('scans', () => {
  const reads = (id: number) => [`/api/v1/scans/list/${id}/`, `/api/scans/${id}`, `/api/v1/scans/${id}/`, `/api/v1/scans/report/${id}`];

  test('detail and report: the parent reads its children\'s scans; siblings and children-to-parent get 404', async () => {
    for (const p of reads(scan.A)) {
      assert.equal(await status('GET', p, org.P.token), 200, `P ${p}`);
      assert.equal(await status('GET', p, org.A.token), 200, `A ${p}`);
      assert.equal(await status('GET', p, org.B.token), 404, `B ${p}`);
    }
    for (const p of reads(scan.P)) {
      assert.equal(await status('GET', p, org.A.token), 404, `A ${p}`);
      assert.equal(await status('GET', p, org.B.token), 404, `B ${p}`);
    }
  });

  test('completed-jobs, search, incidents and the SIEM export list only visible scans', async () => {
    const listings = ['/api/v1/scans/completed-jobs/', '/api/v1/scans/list/', '/api/v1/scans/incidents/', '/api/get_siem_logs/?start=0'];
    for (const p of listings) {
      const seenByB = idsOf(await json(await v.api('GET', p, { token: org.B.token })));
      assert.ok(!seenByB.includes(scan.A) && !seenByB.includes(malA) && !seenByB.includes(scan.P), `B sees others' scans in ${p}: ${seenByB}`);
      const seenByA = idsOf(await json(await v.api('GET', p, { token: org.A.token })));
      assert.ok(!seenByA.includes(scan.B) && !seenByA.includes(scan.P), `A sees others' scans in ${p}: ${seenByA}`);
      if (p.startsWith('/api/get_siem_logs/')) continue; // lists only scans finished siemDelayMs (5 s) ago
      const seenByP = idsOf(await json(await v.api('GET', p, { token: org.P.token })));
      assert.ok(seenByP.includes(malA), `P does not see its child's scan in ${p}: ${seenByP}`);
    }
  });

  test('a scan search filtered on another organization finds nothing of it', async () => {
    const res = await v.api('GET', `/api/v1/scans/list/?organization_id=${org.A.id}`, { token: org.B.token });
    if (res.status === 200) assert.deepEqual(idsOf(await json(res)), []);
    else assert.ok([400, 403, 404].includes(res.status), `status ${res.status}`);
  });

  test('submitting into an organization: the parent may file into a child; a child not into its sibling or parent', async () => {
    const form = (orgId: number) => {
      const f = new FormData();
      f.set('organization_id', String(orgId));
      f.set('data', new Blob([Buffer.from('x')]), 'x.txt');
      return f;
    };
    const ok = await v.api('POST', '/api/v1/files/', { token: org.P.token, body: form(org.A.id) });
    const { scan_id } = await json(ok);
    assert.equal(ok.status, 200);
    assert.equal(await status('GET', `/api/v1/scans/list/${scan_id}/`, org.A.token), 200);
    assert.equal((await v.api('POST', '/api/v1/files/', { token: org.A.token, body: form(org.B.id) })).status, 400);
    assert.equal((await v.api('POST', '/api/v1/files/', { token: org.A.token, body: form(org.P.id) })).status, 400);
    assert.equal((await v.api('POST', '/api/v1/urls/', { token: org.B.token, json: { path: 'http://example.org/', organization_id: org.A.id } })).status, 400);
  });

  test('verdict change, investigation, quarantine release and delete of a sibling\'s scan are 404 and change nothing', async () => {
    assert.equal(await status('PUT', `/api/v1/scans/handle_scan/${scan.A}/`, org.B.token, { json: { sub_verdict: 'MAL', comment: 'x' } }), 404);
    assert.equal(await status('GET', `/api/v1/scans/request-investigation/${scan.A}/?comment=x`, org.B.token), 404);
    assert.equal(await status('GET', `/api/v1/quarantine/release/${scan.A}/`, org.B.token), 404);
    assert.equal(await status('PUT', `/api/v1/scans/delete_scan/${scan.A}/`, org.B.token), 404);
    assert.equal(await status('PUT', `/api/v1/scans/delete_scan/${scan.P}/`, org.A.token), 404);
    const detail = await json(await v.api('GET', `/api/v1/scans/list/${scan.A}/`, { token: org.A.token }));
    assert.equal(detail.verdict, 'CLN');
    assert.notEqual(detail.was_requested_for_investigation, true);
    // the parent may act on its child's scan
    assert.equal(await status('PUT', `/api/v1/scans/handle_scan/${scan.A}/`, org.P.token, { json: { sub_verdict: 'SPM', comment: 'parent' } }), 200);
    assert.equal(await status('PUT', `/api/v1/scans/delete_scan/${scan.A}/`, org.P.token), 204);
    assert.equal(await status('GET', `/api/v1/scans/list/${scan.A}/`, org.A.token), 404);
  });
});

describe('allow and block lists', () => {
  test('a sibling neither lists, reads, changes nor deletes another organization\'s entry; the parent does', async () => {
    const res = await v.api('POST', '/api/v1/blacklist/email/', { token: org.A.token, json: { address: 'bad@evil.example', comment: 'A' } });
    const entry = await json(res);
    assert.equal(res.status, 201, JSON.stringify(entry));
    const p = `/api/v1/blacklist/email/${entry.id}/`;
    assert.equal(await status('GET', p, org.B.token), 404);
    assert.equal(await status('PUT', p, org.B.token, { json: { address: 'x@evil.example', comment: 'B' } }), 404);
    assert.equal(await status('DELETE', p, org.B.token), 404);
    const listB = await json(await v.api('GET', '/api/v1/blacklist/email/', { token: org.B.token }));
    assert.ok(!listB.results.some((e: any) => e.id === entry.id));
    assert.equal((await v.api('POST', '/api/v1/blacklist/email/', { token: org.B.token, json: { address: 'y@evil.example', owner_organization: org.A.id } })).status, 400);
    assert.equal(await status('GET', p, org.P.token), 200);
    const still = await json(await v.api('GET', p, { token: org.A.token }));
    assert.equal(still.address, 'bad@evil.example');
  });
});

describe('organizations and users', () => {
  test('organizations: children never reach their parent or siblings', async () => {
    for (const [who, target] of [['A', 'B'], ['A', 'P'], ['B', 'A']] as const) {
      assert.equal(await status('GET', `/api/organizations/${org[target].id}/`, org[who].token), 404, `${who} → ${target}`);
      assert.equal(await status('PATCH', `/api/organizations/${org[target].id}/`, org[who].token, { json: { email_weekly_report: false } }), 404, `${who} → ${target}`);
    }
    assert.equal(await status('GET', `/api/organizations/${org.A.id}/`, org.P.token), 200);
    const rootId = (await v.verdict.store.getOrgByName('default'))!.id;
    assert.equal(await status('GET', `/api/organizations/${rootId}/`, org.P.token), 404);
  });

  test('users: a sibling\'s administrator cannot list, read, change or create users of another organization', async () => {
    const u = await json(await v.api('POST', '/api/v1/users/invite_user/', { token: org.A.token, json: { email: 'alice@a.example', role: 'Analyst' } }));
    assert.equal(u.organization, org.A.id);
    assert.ok(!idsOf(await json(await v.api('GET', '/api/v1/users/', { token: org.B.token }))).includes(u.id));
    assert.equal(await status('GET', `/api/v1/users/${u.id}/`, org.B.token), 404);
    assert.equal(await status('PATCH', `/api/v1/users/${u.id}/`, org.B.token, { json: { active: false } }), 404);
    assert.equal(await status('POST', '/api/v1/users/invite_user/', org.B.token, { json: { email: 'bob@b.example', organization: org.A.id } }), 400);
    assert.equal(await status('GET', `/api/v1/users/${u.id}/`, org.P.token), 200);
    // the user's token sees what its organization sees: not its sibling's scans
    assert.equal(await status('GET', `/api/v1/scans/list/${scan.B}/`, u.token), 404);
  });
});
