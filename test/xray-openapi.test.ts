/**
 * The OpenAPI document describes every X-Ray route, with the schemas that validate it; Swagger UI
 * serves it. A route added without a schema (a summary, its path parameters) fails here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startVerdict, type Running } from './harness.ts';

let v: Running;
let doc: any;

before(async () => {
  v = await startVerdict({ clamd: 'off', workers: 0 });
  const res = await fetch(`${v.url}/api/openapi.json`);
  assert.equal(res.status, 200);
  doc = await res.json();
});
after(async () => {
  await v?.close();
});

/** Every route of the server as [METHOD, path], from Fastify's route tree. */
function registeredRoutes(): [string, string][] {
  const text = v.verdict.http.printRoutes({ commonPrefix: false });
  const out: [string, string][] = [];
  const stack: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+) \(([^)]+)\)/.exec(line);
    if (!m) continue;
    const depth = m[1].length / 4;
    stack.length = depth;
    stack.push(m[2]);
    for (const method of m[3].split(',').map((s) => s.trim())) out.push([method, stack.join('')]);
  }
  return out;
}

/** Routes outside the X-Ray dialect (operations, the CSS and KATA dialects), or that document it. */
const NOT_XRAY = [/^\/metrics$/, /^\/healthz$/, /^\/readyz$/, /^\/health$/, /^\/api\/docs/, /^\/api\/openapi\.json$/, /^\/api\/(Token|Scan|Classify)\b/, /^\/kata\//];

const norm = (p: string) => p.replace(/:(\w+)/g, '{$1}').replace(/\/$/, '');

test('the document is OpenAPI 3 and requires the token scheme', () => {
  assert.match(doc.openapi, /^3\./);
  assert.equal(doc.components.securitySchemes.token.in, 'header');
  assert.equal(doc.components.securitySchemes.token.name, 'Authorization');
});

test('every registered X-Ray route is documented, with a summary and its path parameters', () => {
  const paths = new Map<string, any>(Object.entries(doc.paths).map(([p, item]) => [norm(p), item]));
  const routes = registeredRoutes().filter(([m, p]) => m !== 'HEAD' && !NOT_XRAY.some((re) => re.test(p)));
  assert.ok(routes.length >= 15, `found only ${routes.length} routes`);
  const missing: string[] = [];
  for (const [method, p] of routes) {
    const op = paths.get(norm(p))?.[method.toLowerCase()];
    const name = `${method} ${p}`;
    if (!op) {
      missing.push(`${name}: not in the document`);
      continue;
    }
    if (!op.summary) missing.push(`${name}: no summary`);
    for (const param of p.match(/:\w+/g) ?? []) {
      if (!op.parameters?.some((x: any) => x.in === 'path' && x.name === param.slice(1) && x.schema)) missing.push(`${name}: path parameter ${param} has no schema`);
    }
  }
  assert.deepEqual(missing, []);
});

test('the foundation and organization routes document their fields', () => {
  const files = doc.paths['/api/v1/files/'].post;
  assert.ok(files.requestBody.content['multipart/form-data'].schema.properties.data);
  assert.ok(files.requestBody.content['application/json'].schema.properties.download_link);
  const orgs = doc.paths['/api/organizations/'].post.requestBody.content['application/json'].schema;
  assert.deepEqual([...orgs.required].sort(), ['active', 'name', 'number_of_seats']);
  for (const f of ['origins', 'email_report_recipients', 'send_malicious_emails', 'send_spam_emails', 'send_blocked_emails', 'email_weekly_report', 'email_monthly_report', 'email_domains_report', 'email_end_user_on_malicious_alert', 'client_alert_malicious_to_admin_email']) {
    assert.ok(orgs.properties[f], f);
  }
  const jobs = doc.paths['/api/v1/scans/completed-jobs/'].get.parameters.map((p: any) => p.name);
  assert.deepEqual(jobs.sort(), ['_cursor', 'from', 'page_size', 'to']);
});

test('the schemas validate: a bad value answers 400 naming the field, in the DRF style', async () => {
  const res = await v.api('GET', '/api/v1/scans/completed-jobs/?page_size=0');
  const body = (await res.json()) as any;
  assert.equal(res.status, 400);
  assert.ok(Array.isArray(body.page_size), JSON.stringify(body));
  assert.match(body.detail, /^page_size: /);
  const unknown = await v.api('GET', '/api/v1/scans/completed-jobs/?colour=blue');
  assert.equal(unknown.status, 400);
  assert.deepEqual(((await unknown.json()) as any).colour, ['colour: unknown parameter']);
});

test('Swagger UI is served at /api/docs without a token', async () => {
  const res = await fetch(`${v.url}/api/docs`, { redirect: 'follow' });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/html/);
  assert.match(await res.text(), /swagger/i);
});
