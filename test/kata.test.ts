/**
 * The KATA scanner dialect over mutual TLS, replaying what the public TypeScript KATA SDK
 * (kdinisv/kata) sends: multipart `content` + `objectType=file` + `scanId` (a UUID) +
 * `sensorInstanceId`, expecting the text `OK`; polling `state=processing,detect,not detected,
 * error,timeout` with sensorInstanceId in the query; reading `state` as an array; 204 = none.
 * Certificates (a CA, the server's, sensors', and a foreign CA's) are made at run time with
 * the openssl command line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { eicar } from '../src/scanners/testing.ts';
import { startVerdict, type Running } from './harness.ts';

const root = path.resolve(import.meta.dirname, '..');
const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-kata-pki-'));
const STATES = 'processing,detect,not detected,error,timeout';

interface Identity {
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: certDir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function makeLeaf(name: string, ca: string, ext: string): Identity {
  fs.writeFileSync(path.join(certDir, `${name}.ext`), ext);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', String(crypto.randomInt(1, 2 ** 47)), '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`]);
  return { cert: fs.readFileSync(path.join(certDir, `${name}.crt`), 'utf8'), key: fs.readFileSync(path.join(certDir, `${name}.key`), 'utf8') };
}

const CLIENT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';
makeCa('kata-ca');
makeCa('foreign-ca');
makeLeaf('server', 'kata-ca', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
const sensorCert = makeLeaf('sensor-1', 'kata-ca', CLIENT_EXT);
const otherCert = makeLeaf('sensor-1-impostor', 'kata-ca', CLIENT_EXT);
const foreignCert = makeLeaf('foreign-sensor', 'foreign-ca', CLIENT_EXT);
const sensor2Cert = makeLeaf('sensor-2', 'kata-ca', CLIENT_EXT);
const caPem = fs.readFileSync(path.join(certDir, 'kata-ca.crt'), 'utf8');
const kataTls = { tlsCert: path.join(certDir, 'server.crt'), tlsKey: path.join(certDir, 'server.key'), clientCa: path.join(certDir, 'kata-ca.crt'), port: 0 };

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTPS request with a client certificate (node:https, as undici's client-cert agent would). */
function kata(base: string, method: string, p: string, id: Identity | null, body?: { bytes: Buffer; type: string }): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = https.request(base + p, {
      method,
      ca: caPem,
      ...(id ? { cert: id.cert, key: id.key } : {}),
      agent: false,
      headers: body ? { 'content-type': body.type, 'content-length': String(body.bytes.length) } : {},
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body?.bytes);
  });
}

/** The SDK's submission: FormData with content, objectType, scanId, sensorInstanceId in that order. */
async function sdkForm(file: Buffer, fields: { scanId?: string; objectType?: string; sensorInstanceId?: string; filename?: string }) {
  const form = new FormData();
  form.append('content', new Blob([new Uint8Array(file)]), fields.filename ?? 'file.bin');
  if (fields.objectType !== '') form.append('objectType', fields.objectType ?? 'file');
  if (fields.scanId !== undefined) form.append('scanId', fields.scanId);
  if (fields.sensorInstanceId) form.append('sensorInstanceId', fields.sensorInstanceId);
  const r = new Request('http://encode.invalid/', { method: 'POST', body: form });
  return { bytes: Buffer.from(await r.arrayBuffer()), type: r.headers.get('content-type')! };
}

/** What the SDK's getScans accepts: a top-level array or an object holding it; 204 = none. */
function scansOf(res: Res): { scanId: string; state: string[]; [k: string]: unknown }[] {
  if (res.status === 204) {
    assert.equal(res.text, '');
    return [];
  }
  assert.equal(res.status, 200, res.text);
  assert.match(String(res.headers['content-type']), /application\/json/);
  const data = JSON.parse(res.text);
  const list = Array.isArray(data) ? data : data.scans;
  assert.ok(Array.isArray(list));
  for (const item of list) assert.ok(Array.isArray(item.state), 'state is an array (the SDK calls state.some)');
  return list;
}

function fingerprint(pem: string): string {
  return new crypto.X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

let v: Running;
let base: string;
const sensorPath = '/kata/scanner/v1/sensors/sensor-1';

before(async () => {
  v = await startVerdict({ clamd: 'off', kata: kataTls });
  base = v.verdict.kataUrl!;
  assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
});

after(async () => {
  await v?.close();
  fs.rmSync(certDir, { recursive: true, force: true });
});

async function poll(scanIds: string[], instance: string, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await kata(base, 'GET', `${sensorPath}/scans/state?state=${encodeURIComponent(STATES)}&sensorInstanceId=${encodeURIComponent(instance)}`, sensorCert);
    const items = scansOf(res);
    const done = scanIds.map((id) => items.find((i) => i.scanId === id)).filter((i) => i && i.state.some((s) => s !== 'processing'));
    if (done.length === scanIds.length) return items;
    if (Date.now() > until) throw new Error(`not finished: ${JSON.stringify(items)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('an unknown sensor gets 401 and files a pending integration request bound to its certificate', async () => {
  const res = await kata(base, 'POST', `${sensorPath}/scans?sensorInstanceId=node-a`, sensorCert, await sdkForm(eicar(), { scanId: crypto.randomUUID() }));
  assert.equal(res.status, 401);
  assert.match(res.text, /pending/);
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/state?state=detect`, sensorCert)).status, 401);
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/filters`, sensorCert)).status, 401);

  const list = await v.api('GET', '/api/v1/kata/sensors/?state=pending');
  assert.equal(list.status, 200);
  const body = (await list.json()) as any;
  assert.equal(body.count, 1);
  assert.equal(body.results[0].sensor_id, 'sensor-1');
  assert.equal(body.results[0].state, 'pending');
  assert.equal(body.results[0].organization_id, null);
  assert.equal(body.results[0].certificate_sha256, fingerprint(sensorCert.cert));
  assert.deepEqual(body.results[0].instance_ids, ['node-a']);
  assert.match(body.results[0].certificate_subject, /CN=sensor-1/);
});

test('only an Administrator approves; the sensor joins the approver\'s organization', async () => {
  const { token: viewer } = await v.verdict.service.createToken('default', 'Viewer', 'viewer');
  const denied = await v.api('POST', '/api/v1/kata/sensors/sensor-1/approve', { token: viewer });
  assert.equal(denied.status, 403);
  assert.equal((await v.api('POST', '/api/v1/kata/sensors/no-such-sensor/approve')).status, 404);
  const res = await v.api('POST', '/api/v1/kata/sensors/sensor-1/approve');
  assert.equal(res.status, 200);
  const s = (await res.json()) as any;
  assert.equal(s.state, 'approved');
  assert.equal(s.organization_id, 1);
  assert.match(s.decided_by, /^token:/);
  assert.ok(s.decided_at);
});

test('filters give the maximum object size from configuration', async () => {
  const res = await kata(base, 'GET', `${sensorPath}/scans/filters`, sensorCert);
  assert.equal(res.status, 200);
  const f = JSON.parse(res.text);
  assert.equal(f.maxObjectSize, v.verdict.config.limits.maxFileSize);
  assert.equal(f.maxScansInFlight, v.verdict.config.kata.maxInFlightPerSensor);
});

const evilId = crypto.randomUUID();
const cleanId = crypto.randomUUID();

test('the SDK flow: submit EICAR and a clean file, poll until detect / not detected', async () => {
  for (const [id, file] of [[evilId, eicar()], [cleanId, Buffer.from('quarterly report, nothing to see\n')]] as const) {
    const res = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, await sdkForm(file, { scanId: id, sensorInstanceId: 'node-a' }));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'OK');
    assert.match(String(res.headers['content-type']), /^text\/plain/);
  }
  const items = await poll([evilId, cleanId], 'node-a');
  const evil = items.find((i) => i.scanId === evilId)!;
  const clean = items.find((i) => i.scanId === cleanId)!;
  assert.deepEqual(evil.state, ['detect']);
  assert.deepEqual(clean.state, ['not detected']);
  assert.equal(evil.verdict, 'MAL');
  assert.ok((evil.threats as string[]).length > 0, JSON.stringify(evil));
  assert.ok((evil.engines as string[]).includes('yara'), JSON.stringify(evil));
  assert.deepEqual(clean.threats, []);
  // the same scan through the X-Ray API, filed under the sensor's organization and channel
  const detail = (await (await v.api('GET', `/api/v1/scans/list/${evil.verdictScanId}/`)).json()) as any;
  assert.equal(detail.verdict, 'MAL');
  assert.equal(detail.origin, 'kata');
  assert.equal(detail.sub_origin, 'kata:sensor-1');
});

test('state filters: only the states asked for; 204 with no body when none match; unknown instance is empty', async () => {
  const detect = scansOf(await kata(base, 'GET', `${sensorPath}/scans/state?sensorInstanceId=node-a&state=detect`, sensorCert));
  assert.deepEqual(detect.map((i) => i.scanId), [evilId]);
  const notDetected = scansOf(await kata(base, 'GET', `${sensorPath}/scans/state?state=not%20detected`, sensorCert));
  assert.deepEqual(notDetected.map((i) => i.scanId), [cleanId]);
  const both = scansOf(await kata(base, 'GET', `${sensorPath}/scans/state?state=processing,detect&state=not+detected`, sensorCert));
  assert.equal(both.length, 2);
  const none = await kata(base, 'GET', `${sensorPath}/scans/state?state=timeout,error`, sensorCert);
  assert.equal(none.status, 204);
  assert.equal(none.text, '');
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/state?sensorInstanceId=node-b`, sensorCert)).status, 204);
  const bad = await kata(base, 'GET', `${sensorPath}/scans/state?state=finished`, sensorCert);
  assert.equal(bad.status, 400);
  assert.match(bad.text, /state/);
});

test('a repeated scanId for the same sensor is 409; bad fields are 400', async () => {
  const again = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, await sdkForm(Buffer.from('other bytes'), { scanId: evilId }));
  assert.equal(again.status, 409);
  assert.match(again.text, /already/);
  for (const scanId of ['with space', 'semi;colon', 'quote"d', 'ünïcode', '../etc', '']) {
    const res = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, await sdkForm(Buffer.from('x'), { scanId }));
    assert.equal(res.status, 400, `scanId ${JSON.stringify(scanId)}: ${res.text}`);
    assert.match(res.text, /scanId/);
  }
  const url = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, await sdkForm(Buffer.from('x'), { scanId: crypto.randomUUID(), objectType: 'url' }));
  assert.equal(url.status, 400);
  assert.match(url.text, /objectType/);
  const form = new FormData();
  form.append('scanId', crypto.randomUUID());
  form.append('objectType', 'file');
  const r = new Request('http://encode.invalid/', { method: 'POST', body: form });
  const noContent = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, { bytes: Buffer.from(await r.arrayBuffer()), type: r.headers.get('content-type')! });
  assert.equal(noContent.status, 400);
  assert.match(noContent.text, /content/);
  // none of the refused submissions became a scan
  assert.equal(scansOf(await kata(base, 'GET', `${sensorPath}/scans/state`, sensorCert)).length, 2);
});

test('DELETE one scan, then all: OK, 404 when nothing matches, scans and samples gone', async () => {
  const items = scansOf(await kata(base, 'GET', `${sensorPath}/scans/state?state=${encodeURIComponent(STATES)}`, sensorCert));
  const evil = items.find((i) => i.scanId === evilId)!;
  const sha = ((await (await v.api('GET', `/api/v1/scans/list/${evil.verdictScanId}/`)).json()) as any).sample.sha256 as string;
  assert.ok(await v.verdict.blobs.exists(sha));

  const del = await kata(base, 'DELETE', `${sensorPath}/scans/${evilId}`, sensorCert);
  assert.equal(del.status, 200);
  assert.equal(del.text, 'OK');
  assert.equal((await kata(base, 'DELETE', `${sensorPath}/scans/${evilId}`, sensorCert)).status, 404);
  assert.equal((await kata(base, 'DELETE', `${sensorPath}/scans/never-submitted`, sensorCert)).status, 404);
  assert.equal((await v.api('GET', `/api/v1/scans/list/${evil.verdictScanId}/`)).status, 404);
  assert.equal(await v.verdict.blobs.exists(sha), false, 'the sample goes with its only scan');
  assert.deepEqual(scansOf(await kata(base, 'GET', `${sensorPath}/scans/state`, sensorCert)).map((i) => i.scanId), [cleanId]);

  // the scanId is free again once deleted
  const reuse = await kata(base, 'POST', `${sensorPath}/scans`, sensorCert, await sdkForm(Buffer.from('second life'), { scanId: evilId, sensorInstanceId: 'node-b' }));
  assert.equal(reuse.status, 200, reuse.text);

  const all = await kata(base, 'DELETE', `${sensorPath}/scans`, sensorCert);
  assert.equal(all.status, 200);
  assert.equal(all.text, 'OK');
  assert.equal((await kata(base, 'DELETE', `${sensorPath}/scans`, sensorCert)).status, 404);
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/state?state=${encodeURIComponent(STATES)}`, sensorCert)).status, 204);
});

test('a client certificate from another CA, or none, is refused in the TLS handshake', async () => {
  // TLS 1.3: the server's alert arrives after the client's side of the handshake
  const refused = /unknown ca|certificate required|ECONNRESET|socket hang up|EPIPE/i;
  await assert.rejects(kata(base, 'GET', `${sensorPath}/scans/filters`, foreignCert), (e: Error & { code?: string }) => refused.test(`${e.message} ${e.code}`));
  await assert.rejects(kata(base, 'GET', `${sensorPath}/scans/filters`, null), (e: Error & { code?: string }) => refused.test(`${e.message} ${e.code}`));
  // the same request with the approved sensor's certificate gets through
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/filters`, sensorCert)).status, 200);
});

test('the right CA but another certificate for an approved sensor is 401; a rejected sensor is 401', async () => {
  const res = await kata(base, 'GET', `${sensorPath}/scans/filters`, otherCert);
  assert.equal(res.status, 401);
  assert.match(res.text, /another client certificate/);
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/filters`, sensorCert)).status, 200);

  const rej = await v.api('POST', '/api/v1/kata/sensors/sensor-1/reject');
  assert.equal(rej.status, 200);
  assert.equal(((await rej.json()) as any).state, 'rejected');
  assert.equal((await kata(base, 'GET', `${sensorPath}/scans/filters`, sensorCert)).status, 401);
});

test('413 above the maximum size (upload stopped, nothing kept), 429 at the in-flight maximum; CLI approval', async () => {
  const small = await startVerdict({ clamd: 'off', workers: 0, limits: { maxFileSize: 4096 }, kata: { ...kataTls, maxInFlightPerSensor: 1 } });
  try {
    const b = small.verdict.kataUrl!;
    const p = '/kata/scanner/v1/sensors/sensor-2';
    const first = await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.from('hello'), { scanId: crypto.randomUUID() }));
    assert.equal(first.status, 401);

    // the operator decides at the command line, on the server's data directory
    const env = { ...process.env, ...small.cliEnv, VERDICT_LOG_LEVEL: 'error' };
    const list = spawnSync(process.execPath, ['bin/verdict.js', 'sensor', 'list', '--state', 'pending'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^sensor-2  pending  sha256=${fingerprint(sensor2Cert.cert)}`, 'm'));
    const approve = spawnSync(process.execPath, ['bin/verdict.js', 'sensor', 'approve', 'sensor-2', '--org', 'default'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(approve.status, 0, approve.stderr);
    assert.match(approve.stdout, /sensor-2 {2}approved org=1/);

    const big = await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.alloc(64 * 1024, 0x41), { scanId: crypto.randomUUID() }));
    assert.equal(big.status, 413);
    assert.match(big.text, /maximum of 4096 bytes/);
    const incoming = path.join(small.dataDir, 'blobs', '.incoming'); // absent when samples go to S3
    assert.deepEqual(fs.existsSync(incoming) ? fs.readdirSync(incoming) : [], [], 'no partial upload is kept');
    assert.equal((await kata(b, 'GET', `${p}/scans/state`, sensor2Cert)).status, 204);

    const limits = JSON.parse((await kata(b, 'GET', `${p}/scans/filters`, sensor2Cert)).text);
    assert.deepEqual([limits.maxObjectSize, limits.maxScansInFlight], [4096, 1]);

    const queued = crypto.randomUUID();
    assert.equal((await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.from('one'), { scanId: queued }))).status, 200);
    const busy = await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.from('two'), { scanId: crypto.randomUUID() }));
    assert.equal(busy.status, 429);
    assert.ok(busy.headers['retry-after']);
    assert.deepEqual(scansOf(await kata(b, 'GET', `${p}/scans/state?state=processing`, sensor2Cert)).map((i) => [i.scanId, i.state]), [[queued, ['processing']]]);
    // once the queued scan is gone, the sensor may submit again
    assert.equal((await kata(b, 'DELETE', `${p}/scans/${queued}`, sensor2Cert)).status, 200);
    assert.equal((await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.from('two'), { scanId: crypto.randomUUID() }))).status, 200);
  } finally {
    await small.close();
  }
});

test('a scan unfinished past kata.resultTimeoutMs is reported as timeout', async () => {
  const slow = await startVerdict({ clamd: 'off', workers: 0, kata: { ...kataTls, resultTimeoutMs: 1 } });
  try {
    await slow.verdict.sensors.authenticate({ sensorId: 'sensor-3', fingerprint: fingerprint(sensor2Cert.cert) }).catch(() => {});
    await slow.verdict.sensors.approve({ operator: 'test' }, 'sensor-3');
    const b = slow.verdict.kataUrl!;
    const p = '/kata/scanner/v1/sensors/sensor-3';
    const id = crypto.randomUUID();
    assert.equal((await kata(b, 'POST', `${p}/scans`, sensor2Cert, await sdkForm(Buffer.from('never scanned'), { scanId: id }))).status, 200);
    await new Promise((r) => setTimeout(r, 5));
    const items = scansOf(await kata(b, 'GET', `${p}/scans/state?state=${encodeURIComponent(STATES)}`, sensor2Cert));
    assert.deepEqual(items.map((i) => [i.scanId, i.state]), [[id, ['timeout']]]);
    assert.equal((await kata(b, 'GET', `${p}/scans/state?state=processing`, sensor2Cert)).status, 204);
  } finally {
    await slow.close();
  }
});
