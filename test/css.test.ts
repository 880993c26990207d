/**
 * The Cloud Storage Security dialect over real HTTP, with S3-compatible storage served by a
 * real s3rver: tokens and their expiry, synchronous scans (multipart and raw bodies), 202 +
 * JobStatus, scan-and-upload, Scan/Existing, Scan/URL, classification, problem documents.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { startVerdict, startSink, makeZip, type Running } from './harness.ts';
import { startS3, type RunningS3 } from './s3rver.ts';
import { UserService } from '../src/service/users.ts';
import { S3BlobStore } from '../src/store/s3-blobs.ts';
import { EgressGuard } from '../src/net/egress-guard.ts';
import type { Role } from '../src/service/permissions.ts';

const EICAR = Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join(''), 'latin1');
const PASSWORD = 'correct horse battery';

let s3: RunningS3;
let bucket: (name: string) => S3BlobStore;
const s3Clients: S3BlobStore[] = [];

async function addUser(r: Running, email: string, role: Role = 'Analyst'): Promise<void> {
  const org = await r.verdict.store.getOrgByName('default');
  await new UserService(r.verdict.store).createUser({ orgId: org!.id, name: email.split('@')[0], email, role, password: PASSWORD });
}

/** What the documented client does: JSON string body with content-type application/json. */
async function token(r: Running, username = 'ana@example.org', password = PASSWORD): Promise<Response> {
  return fetch(`${r.url}/api/Token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
}
async function accessToken(r: Running, username?: string): Promise<string> {
  const res = await token(r, username);
  assert.equal(res.status, 200);
  return ((await res.json()) as { accessToken: string }).accessToken;
}

function form(data: Buffer, name: string, field = 'file', extra: Record<string, string> = {}): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(extra)) f.set(k, v);
  f.set(field, new Blob([data]), name);
  return f;
}

async function call(r: Running, method: string, p: string, tok: string | null, init: { body?: RequestInit['body']; json?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  if (tok) headers.authorization = `Bearer ${tok}`;
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(r.url + p, { method, headers, body, duplex: 'half' } as RequestInit);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

function assertProblem(res: { status: number; headers: Headers; body: Record<string, any> }, status: number) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(res.body.status, status);
  assert.equal(typeof res.body.type, 'string');
  assert.equal(typeof res.body.title, 'string');
  assert.equal(typeof res.body.detail, 'string');
}

before(async () => {
  s3 = await startS3(['uploads', 'inbox']);
  bucket = (name) => {
    const c = new S3BlobStore(s3.storage(name), { guard: new EgressGuard({ allow: ['127.0.0.0/8'] }) });
    s3Clients.push(c);
    return c;
  };
});
after(async () => {
  for (const c of s3Clients) c.close();
  await s3.close();
});

describe('CSS dialect', () => {
  let r: Running;
  let tok: string;
  before(async () => {
    r = await startVerdict({ clamd: 'off', storages: { archive: s3.storage('uploads'), inbox: s3.storage('inbox') }, limits: { maxFileSize: 1024 * 1024 } });
    await addUser(r, 'ana@example.org');
    await addUser(r, 'victor@example.org', 'Viewer');
    tok = await accessToken(r);
  });
  after(async () => r.close());

  it('POST /api/Token answers a bearer JWT with the fields both client families read', async () => {
    const res = await token(r);
    assert.equal(res.status, 200);
    const b = (await res.json()) as Record<string, any>;
    assert.equal(b.tokenType, 'Bearer');
    assert.equal(b.token_type, 'Bearer');
    assert.equal(b.expiresIn, 3600);
    assert.equal(b.expires_in, 3600);
    assert.ok(Math.abs(b.issued_at - Date.now() / 1000) < 5);
    assert.equal(b.accessToken.split('.').length, 3);
    assert.equal(JSON.parse(Buffer.from(b.accessToken.split('.')[0], 'base64url').toString()).alg, 'HS256');
  });

  it('POST /api/Token: bad credentials are 401, missing ones 400, as problem documents', async () => {
    const bad = await token(r, 'ana@example.org', 'wrong password!');
    const body = (await bad.json()) as Record<string, unknown>;
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('content-type')!, /application\/problem\+json/);
    assert.deepEqual(Object.keys(body).sort(), ['detail', 'status', 'title', 'type']);
    const unknown = await token(r, 'nobody@example.org');
    assert.equal(unknown.status, 401);
    assertProblem(await call(r, 'POST', '/api/Token', null, { json: { username: 'ana@example.org' } }), 400);
  });

  it('POST /api/Token also reads credentials sent form-encoded', async () => {
    const res = await fetch(`${r.url}/api/Token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `username=ana%40example.org&password=${encodeURIComponent(PASSWORD)}` });
    assert.equal(res.status, 200);
  });

  it('scans need a valid bearer token: 401 problem documents otherwise', async () => {
    const none = await call(r, 'POST', '/api/Scan', null, { body: form(Buffer.from('x'), 'x.txt') });
    assertProblem(none, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assertProblem(await call(r, 'POST', '/api/Scan', 'not.a.jwt', { body: form(Buffer.from('x'), 'x.txt') }), 401);
    assertProblem(await call(r, 'GET', '/api/Scan/JobStatus?referenceId=1', tok.slice(0, -3) + 'AAA'), 401);
  });

  it('a Viewer may not submit (403), and an API token works as a bearer token too', async () => {
    const viewer = await accessToken(r, 'victor@example.org');
    assertProblem(await call(r, 'POST', '/api/Scan', viewer, { body: form(Buffer.from('x'), 'x.txt') }), 403);
    const res = await call(r, 'POST', '/api/Scan', r.token, { body: form(Buffer.from('hello'), 'x.txt') });
    assert.equal(res.status, 200);
    assert.equal(res.body.result, 'Clean');
  });

  it('multipart EICAR (the documented client: form + Prefer: respond-async) is Infected with its infection, synchronously', async () => {
    const res = await call(r, 'POST', '/api/Scan', tok, { body: form(EICAR, 'eicar.com', 'upload'), headers: { prefer: 'respond-async' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.result, 'Infected');
    assert.equal(res.body.errorMessage, null);
    assert.ok(res.body.detectedInfections.length >= 1);
    assert.equal(res.body.detectedInfections[0].file, 'eicar.com');
    assert.match(res.body.detectedInfections[0].infection, /eicar/i);
    assert.ok(!Number.isNaN(Date.parse(res.body.dateScanned)));
    assert.match(res.body.referenceId, /^\d+$/);
    assert.ok(res.body.scanEngines.includes('yara'));
  });

  it('a raw body with File-Name is scanned: clean → Clean; JobStatus gives the same result later', async () => {
    const res = await call(r, 'POST', '/api/Scan', tok, { body: Buffer.from('quarterly numbers, nothing to see\n'), headers: { 'content-type': 'application/octet-stream', 'file-name': 'notes.txt' } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.result, 'Clean');
    assert.deepEqual(res.body.detectedInfections, []);
    assert.equal(res.body.trueFileType, 'text');
    assert.equal(res.body.fileName, 'notes.txt');
    const again = await call(r, 'GET', `/api/Scan/JobStatus?referenceId=${res.body.referenceId}`, tok);
    assert.equal(again.status, 200);
    assert.equal(again.body.result, 'Clean');
    assert.equal(again.body.dateScanned, res.body.dateScanned);
  });

  it('EICAR inside a zip is Infected and names the member', async () => {
    const zip = await makeZip({ 'docs/readme.txt': Buffer.from('hi'), 'eicar.com': EICAR });
    const res = await call(r, 'POST', '/api/Scan', tok, { body: zip, headers: { 'file-name': 'bundle.zip' } });
    assert.equal(res.body.result, 'Infected');
    assert.ok(res.body.detectedInfections.some((i: { file: string }) => i.file === 'bundle.zip/eicar.com'), JSON.stringify(res.body.detectedInfections));
  });

  it('an encrypted zip that no password opens is never Clean (Unscannable, with the reason)', async () => {
    const zip = await makeZip({ 'secret.txt': Buffer.from('hidden') }, { password: 'not-a-default-password' });
    const res = await call(r, 'POST', '/api/Scan', tok, { body: form(zip, 'secret.zip') });
    assert.equal(res.status, 200);
    assert.equal(res.body.result, 'Unscannable');
    assert.match(res.body.errorMessage, /encrypted/i);
    assert.equal(res.body.partial, true);
  });

  it('413 (problem document) when the file is larger than the maximum, raw or multipart', async () => {
    const big = Buffer.alloc(1024 * 1024 + 10, 0x41);
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: big, headers: { 'file-name': 'big.bin' } }), 413);
    const chunked = Readable.from([big.subarray(0, 600_000), big.subarray(600_000)]);
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: chunked as unknown as RequestInit['body'], headers: { 'file-name': 'big.bin', 'content-type': 'application/octet-stream' } }), 413);
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: form(big, 'big.bin') }), 413);
  });

  it('400 when the form has no file or the body is empty JSON', async () => {
    const f = new FormData();
    f.set('note', 'no file');
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: f }), 400);
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { json: {} }), 400);
  });

  it('Prefer: wait=0 answers 202 with a referenceId that JobStatus resolves', async () => {
    const res = await call(r, 'POST', '/api/Scan', tok, { body: form(EICAR, 'eicar.txt'), headers: { prefer: 'respond-async, wait=0' } });
    assert.equal(res.status, 202);
    assert.match(res.headers.get('location')!, /\/api\/Scan\/JobStatus\?referenceId=\d+$/);
    let status;
    for (let i = 0; i < 200; i++) {
      status = await call(r, 'GET', `/api/Scan/JobStatus?referenceId=${res.body.referenceId}`, tok);
      if (status.status === 200) break;
      assert.equal(status.status, 202);
      await new Promise((d) => setTimeout(d, 50));
    }
    assert.equal(status!.status, 200);
    assert.equal(status!.body.result, 'Infected');
  });

  it('JobStatus: unknown reference 404, missing or malformed 400', async () => {
    assertProblem(await call(r, 'GET', '/api/Scan/JobStatus?referenceId=999999', tok), 404);
    assertProblem(await call(r, 'GET', '/api/Scan/JobStatus', tok), 400);
    assertProblem(await call(r, 'GET', '/api/Scan/JobStatus?referenceId=abc', tok), 400);
  });

  it('scan-and-upload: a clean file lands in S3 (Upload-To header, storage:key), an infected one does not', async () => {
    const clean = Buffer.from('a clean report\n');
    const ok = await call(r, 'POST', '/api/Scan', tok, { body: form(clean, 'report.txt'), headers: { 'upload-to': 'archive:accepted/report.txt' } });
    assert.equal(ok.body.result, 'Clean');
    assert.deepEqual(ok.body.uploadedTo, { storage: 'archive', bucket: 'uploads', key: 'accepted/report.txt' });
    const got = await bucket('uploads').openKey('accepted/report.txt');
    const chunks: Buffer[] = [];
    for await (const c of got.stream) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), clean);

    const bad = await call(r, 'POST', '/api/Scan', tok, { body: form(EICAR, 'eicar.com', 'file', { 'Upload-To': 'uploads/accepted/eicar.com' }) });
    assert.equal(bad.body.result, 'Infected');
    assert.equal(bad.body.uploadedTo, null);
    assert.match(bad.body.uploadSkipped, /Infected/);
    assert.equal(await bucket('uploads').headKey('accepted/eicar.com'), undefined);
  });

  it('scan-and-upload with the bucket/key form field; an unknown target is 400 and nothing is scanned', async () => {
    const ok = await call(r, 'POST', '/api/Scan', tok, { body: form(Buffer.from('fine'), 'fine.txt', 'file', { 'Upload-To': 'uploads/in/fine.txt' }) });
    assert.equal(ok.body.uploadedTo.key, 'in/fine.txt');
    assert.deepEqual(await bucket('uploads').headKey('in/fine.txt'), { size: 4 });
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: form(Buffer.from('x'), 'x.txt'), headers: { 'upload-to': 'nosuch:key' } }), 400);
    assertProblem(await call(r, 'POST', '/api/Scan', tok, { body: form(Buffer.from('x'), 'x.txt'), headers: { 'upload-to': 'otherbucket/key' } }), 400);
  });

  it('POST /api/Scan/Existing scans an object already in S3 ({container, objectPath}, {bucket, key}, default storage)', async () => {
    await bucket('inbox').putStream('incoming/eicar.com', Readable.from([EICAR]));
    await bucket('inbox').putStream('incoming/ok.txt', Readable.from([Buffer.from('fine')]));
    await bucket('uploads').putStream('default/ok.txt', Readable.from([Buffer.from('fine too')]));
    const nhs = await call(r, 'POST', '/api/Scan/Existing', tok, { json: { container: 'inbox', objectPath: 'incoming/eicar.com' } });
    assert.equal(nhs.status, 200, JSON.stringify(nhs.body));
    assert.equal(nhs.body.result, 'Infected');
    assert.equal(nhs.body.fileName, 'eicar.com');
    const bk = await call(r, 'POST', '/api/Scan/Existing', tok, { json: { bucket: 'inbox', key: 'incoming/ok.txt' } });
    assert.equal(bk.body.result, 'Clean');
    const named = await call(r, 'POST', '/api/Scan/Existing', tok, { json: { storage: 'inbox', key: 'incoming/ok.txt' } });
    assert.equal(named.body.result, 'Clean');
    const dflt = await call(r, 'POST', '/api/Scan/Existing', tok, { json: { objectPath: 'default/ok.txt' } });
    assert.equal(dflt.body.result, 'Clean');
    assertProblem(await call(r, 'POST', '/api/Scan/Existing', tok, { json: { container: 'inbox', objectPath: 'incoming/missing' } }), 400);
    assertProblem(await call(r, 'POST', '/api/Scan/Existing', tok, { json: { container: 'inbox' } }), 400);
    assertProblem(await call(r, 'POST', '/api/Scan/Existing', tok, { json: { container: 'elsewhere', objectPath: 'x' } }), 400);
  });

  it('POST /api/Scan/URL downloads through the egress guard and scans; refused targets are 400', async () => {
    const sink = await startSink((req, _body, res) => {
      if (req.url === '/eicar.com') res.end(EICAR);
      else if (req.url === '/missing') {
        res.statusCode = 404;
        res.end('no');
      } else res.end('plain text');
    });
    try {
      const bad = await call(r, 'POST', '/api/Scan/URL', tok, { json: { url: `${sink.url}/eicar.com` } });
      assert.equal(bad.status, 200, JSON.stringify(bad.body));
      assert.equal(bad.body.result, 'Infected');
      assert.equal(bad.body.fileName, 'eicar.com');
      const ok = await call(r, 'POST', '/api/Scan/URL', tok, { json: { url: `${sink.url}/page.txt` } });
      assert.equal(ok.body.result, 'Clean');
      assertProblem(await call(r, 'POST', '/api/Scan/URL', tok, { json: { url: `${sink.url}/missing` } }), 400);
      const refused = await call(r, 'POST', '/api/Scan/URL', tok, { json: { url: 'http://169.254.169.254/latest/meta-data/' } });
      assertProblem(refused, 400);
      assert.match(refused.body.detail, /egress|refused|link-local/i);
      assertProblem(await call(r, 'POST', '/api/Scan/URL', tok, { json: {} }), 400);
    } finally {
      await sink.close();
    }
  });

  it('POST /api/Classify finds a Luhn-valid card number, ignores a Luhn-invalid one, and masks what it reports', async () => {
    const doc = Buffer.from('Invoice\ncard: 4111 1111 1111 1111\ntypo: 4111 1111 1111 1112\ncontact: jane.doe@example.org\n');
    const res = await call(r, 'POST', '/api/Classify', tok, { body: form(doc, 'invoice.txt') });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.classificationResult, 'Matched');
    assert.deepEqual(res.body.matchedClasses, ['email', 'payment_card']);
    const card = res.body.classes.find((c: { class: string }) => c.class === 'payment_card');
    assert.equal(card.count, 1);
    assert.deepEqual(card.matches, [{ file: 'invoice.txt', offset: 14, masked: '************1111' }]);
    assert.equal(res.body.result, 'Clean', 'classification findings are not threats');
    assert.ok(!JSON.stringify(res.body).includes('4111 1111 1111 1111'));
    // a plain scan of the same file does not classify
    const plain = await call(r, 'POST', '/api/Scan', tok, { body: form(doc, 'invoice.txt') });
    assert.equal(plain.body.classes, undefined);
    assert.ok(!plain.body.scanEngines.includes('classification'));
  });

  it('POST /api/Classify/Existing and /api/Classify/URL classify archive members and downloads', async () => {
    const zip = await makeZip({ 'hr/ssn.txt': Buffer.from('employee SSN 123-45-6789\n') });
    await bucket('inbox').putStream('hr.zip', Readable.from([zip]));
    const ex = await call(r, 'POST', '/api/Classify/Existing', tok, { json: { container: 'inbox', objectPath: 'hr.zip' } });
    assert.equal(ex.status, 200, JSON.stringify(ex.body));
    assert.deepEqual(ex.body.matchedClasses, ['us_ssn']);
    assert.equal(ex.body.classes[0].matches[0].file, 'hr.zip/hr/ssn.txt');
    assert.equal(ex.body.classes[0].matches[0].masked, '***-**-6789');
    const sink = await startSink((_req, _body, res) => res.end('key AKIAIOSFODNN7EXAMPLE\n'));
    try {
      const u = await call(r, 'POST', '/api/Classify/URL', tok, { json: { url: `${sink.url}/config.txt` } });
      assert.deepEqual(u.body.matchedClasses, ['cloud_credential']);
      const none = await call(r, 'POST', '/api/Classify', tok, { body: form(Buffer.from('nothing personal here'), 'n.txt') });
      assert.equal(none.body.classificationResult, 'NoMatches');
      assert.equal(none.body.totalMatches, 0);
    } finally {
      await sink.close();
    }
  });

  it('GET /health needs no token', async () => {
    const res = await call(r, 'GET', '/health', null);
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'Healthy');
  });

  it('the X-Ray path + storage fields read from a named storage', async () => {
    await bucket('inbox').putStream('xray/eicar.com', Readable.from([EICAR]));
    const res = await r.api('POST', '/api/v1/files/', { json: { name: 'eicar.com', path: 'xray/eicar.com', storage: 'inbox' } });
    const body = (await res.json()) as { scan_id: number };
    assert.equal(res.status, 200, JSON.stringify(body));
    const done = await r.waitForScan(body.scan_id);
    assert.equal(done.verdict, 'MAL');
    const missing = await r.api('POST', '/api/v1/files/', { json: { name: 'x', path: 'xray/none', storage: 'inbox' } });
    assert.equal(missing.status, 400);
    const unknown = await r.api('POST', '/api/v1/files/', { json: { name: 'x', path: 'xray/none', storage: 'nosuch' } });
    assert.equal(unknown.status, 400);
  });
});

describe('CSS token expiry and the NHS client refresh-and-retry-once flow', () => {
  let r: Running;
  before(async () => {
    r = await startVerdict({ clamd: 'off', cssTokenLifetimeS: 1 });
    await addUser(r, 'ana@example.org');
  });
  after(async () => r.close());

  it('an expired token is 401; the client gets a new token, retries once and succeeds', async () => {
    let tokensIssued = 0;
    let current: string | undefined;
    const getToken = async () => {
      tokensIssued++;
      current = await accessToken(r);
      return current;
    };
    // the client's logic: cached token, on 401 refresh and retry once
    const scan = async (data: Buffer, name: string) => {
      const send = (t: string) => call(r, 'POST', '/api/Scan', t, { body: form(data, name) });
      let res = await send(current ?? (await getToken()));
      if (res.status === 401) res = await send(await getToken());
      return res;
    };
    const first = await scan(Buffer.from('one'), 'one.txt');
    assert.equal(first.status, 200);
    assert.equal(tokensIssued, 1);
    await new Promise((d) => setTimeout(d, 2100));
    const expired = await call(r, 'POST', '/api/Scan', current!, { body: form(Buffer.from('x'), 'x.txt') });
    assertProblem(expired, 401);
    assert.match(expired.body.detail, /expired/);
    const second = await scan(Buffer.from('two'), 'two.txt');
    assert.equal(second.status, 200);
    assert.equal(second.body.result, 'Clean');
    assert.equal(tokensIssued, 2);
  });

  it('the signing key is generated on first start and kept in the database, shared by every process', async () => {
    const row = await r.verdict.store.db.selectFrom('service_keys').select('value').where('name', '=', 'css-token').executeTakeFirst();
    assert.match(row?.value ?? '', /^[0-9a-f]{64}$/);
    assert.equal(fs.existsSync(path.join(r.dataDir, 'css-token.key')), false, 'no copy on the local disk');
  });
});

describe('CSS answers 202 past the configured wait', () => {
  let r: Running;
  before(async () => {
    r = await startVerdict({ clamd: 'off', cssWaitMs: 1, workers: 1 });
    await addUser(r, 'ana@example.org');
  });
  after(async () => r.close());

  it('busy workers and a tiny wait: 202 + referenceId, JobStatus shows progress then the result', async () => {
    const tok = await accessToken(r);
    const sent = await Promise.all([1, 2, 3].map((i) => call(r, 'POST', '/api/Scan', tok, { body: form(i === 3 ? EICAR : Buffer.from(`file ${i}`), `f${i}.txt`) })));
    for (const s of sent) {
      assert.equal(s.status, 202, JSON.stringify(s.body));
      assert.match(s.body.referenceId, /^\d+$/);
      assert.ok(['Queued', 'Scanning'].includes(s.body.status));
      assert.equal(s.body.result, null);
    }
    const last = sent[2];
    let res;
    for (let i = 0; i < 300; i++) {
      res = await call(r, 'GET', `/api/Scan/JobStatus?referenceId=${last.body.referenceId}`, tok);
      if (res.status === 200) break;
      assert.equal(res.status, 202);
      assert.ok(['Queued', 'Scanning'].includes(res.body.status));
      await new Promise((d) => setTimeout(d, 50));
    }
    assert.equal(res!.status, 200);
    assert.equal(res!.body.result, 'Infected');
    assert.equal(res!.body.referenceId, last.body.referenceId);
  });
});
