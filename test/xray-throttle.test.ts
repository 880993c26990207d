/**
 * Throttling over a real socket: 100 calls per minute per token by default, 429 with
 * Retry-After beyond it, and an organization's own `throttle_per_minute` set by its parent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startVerdict } from './harness.ts';
import { loadConfig } from '../src/config/load.ts';

test('by default a token may make 100 calls a minute; the 101st is 429 with Retry-After', async () => {
  assert.equal(loadConfig({}, {}).maxRequestsPerMinute, 100);
  const v = await startVerdict({ clamd: 'off', workers: 0, maxRequestsPerMinute: undefined });
  try {
    for (let i = 0; i < 100; i++) {
      const res = await v.api('GET', '/api/v1/scans/completed-jobs/');
      assert.equal(res.status, 200, `call ${i + 1}`);
      await res.arrayBuffer();
    }
    const res = await v.api('GET', '/api/v1/scans/completed-jobs/');
    assert.equal(res.status, 429);
    const wait = Number(res.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
    assert.match(((await res.json()) as any).detail, /100 requests per minute/);
    // the health check needs no token and is never throttled
    assert.equal((await v.api('GET', '/v1/health_check', { token: null })).status, 200);
  } finally {
    await v.close();
  }
});

test('an organization\'s throttle_per_minute, set by its parent, replaces the default for its tokens', async () => {
  const v = await startVerdict({ clamd: 'off', workers: 0, maxRequestsPerMinute: 100 });
  try {
    const mk = async (name: string) => {
      const res = await v.api('POST', '/api/organizations/', { json: { name, active: true, number_of_seats: 1 } });
      assert.equal(res.status, 201);
      return ((await res.json()) as any).id as number;
    };
    const slowId = await mk('slow');
    const freeId = await mk('free');
    // the parent (the root organization's token) sets the children's budgets
    const set = await v.api('PATCH', `/api/organizations/${slowId}/`, { json: { throttle_per_minute: 3 } });
    assert.equal(set.status, 200);
    assert.equal(((await set.json()) as any).throttle_per_minute, 3);
    assert.equal((await v.api('PATCH', `/api/organizations/${freeId}/`, { json: { throttle_per_minute: 0 } })).status, 200);

    const slow = (await v.verdict.service.createToken('slow')).token;
    const slow2 = (await v.verdict.service.createToken('slow', 'Viewer', 'second')).token;
    for (let i = 0; i < 3; i++) assert.equal((await v.api('GET', '/api/v1/scans/completed-jobs/', { token: slow })).status, 200);
    const refused = await v.api('GET', '/api/v1/scans/completed-jobs/', { token: slow });
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    // the budget is per token
    assert.equal((await v.api('GET', '/api/v1/scans/completed-jobs/', { token: slow2 })).status, 200);

    // 0: no limit for that organization, above the service default
    const free = (await v.verdict.service.createToken('free')).token;
    for (let i = 0; i < 120; i++) {
      const res = await v.api('GET', '/api/organizations/', { token: free });
      assert.equal(res.status, 200, `call ${i + 1}`);
      await res.arrayBuffer();
    }
    // a child cannot lift its own budget
    const admin = (await v.verdict.service.createToken('slow', 'Administrator', 'admin')).token;
    assert.equal((await v.api('PATCH', `/api/organizations/${slowId}/`, { token: admin, json: { throttle_per_minute: 0 } })).status, 403);
  } finally {
    await v.close();
  }
});
