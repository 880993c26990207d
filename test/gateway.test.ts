/**
 * The SMTP gateway end to end, with real mail software on loopback: Debian's `swaks` and
 * nodemailer send to Verdict's listener; a sink SMTP server (smtp-server) started here is the
 * next hop and records what reaches it.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { execFile } from 'node:child_process';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import pino from 'pino';
import { freePort, startVerdict, type Running } from './harness.ts';
import { createVerdict } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { eicar } from '../src/scanners/testing.ts';

interface Received {
  from: string;
  to: string[];
  raw: Buffer;
}

/** A next-hop SMTP server on loopback that keeps every message it gets. */
async function startSink(port = 0) {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks) });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  const addr = server.server.address() as net.AddressInfo;
  return {
    port: addr.port,
    url: `smtp://127.0.0.1:${addr.port}`,
    received,
    /** The message delivered for scan `id` (by its X-Verdict-Scan-Id header). */
    async waitForScan(id: number, timeoutMs = 30_000): Promise<Received> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = received.find((r) => headerOf(r.raw, 'X-Verdict-Scan-Id') === String(id));
        if (m) return m;
        if (Date.now() > until) throw new Error(`scan ${id} never reached the sink (got ${received.length} messages)`);
        await sleep(50);
      }
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function headerOf(raw: Buffer, name: string): string | undefined {
  const head = raw.toString('latin1').split(/\r?\n\r?\n/)[0];
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head);
  return m?.[1].trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs swaks (a real SMTP client); resolves with its exit code and transcript. */
function swaks(args: string[]): Promise<{ code: number; out: string }> {
  if (!fs.existsSync('/usr/bin/swaks')) throw new Error('swaks is not installed: apt-get install swaks (.ci/run installs it)');
  return new Promise((resolve) => {
    execFile('/usr/bin/swaks', ['--timeout', '60', ...args], { timeout: 90_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 99) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

/** The scan id in our 250 reply ("queued as scan N"). */
function scanIdOf(out: string): number {
  const m = /queued as scan (\d+)/.exec(out);
  if (!m) throw new Error(`no scan id in the SMTP transcript:\n${out.slice(-2000)}`);
  return Number(m[1]);
}

async function waitForAction(v: Running, id: number, action: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await v.verdict.store.getScan(id);
    if (s?.verbose_action === action) return;
    if (Date.now() > until) throw new Error(`scan ${id}: verbose_action ${s?.verbose_action} (status ${s?.status}, verdict ${s?.verdict}), expected ${action}`);
    await sleep(100);
  }
}


/** A plain message with a DKIM-Signature header, CRLF line endings, as a sender would write it. */
function cleanMessage(subject: string, messageId: string): Buffer {
  return Buffer.from(
    [
      'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.test; s=sel; h=from:to:subject:date;',
      '\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==',
      'From: Bob Sender <b@sender.test>',
      'To: Alice <a@example.test>',
      `Subject: ${subject}`,
      'Date: Mon, 23 Nov 2026 10:00:00 +0000',
      `Message-ID: <${messageId}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello Alice,',
      '',
      'the minutes of Tuesday\'s meeting are below. A line starting with a dot follows:',
      '.hidden dot line',
      '',
      'Regards, Bob',
      '',
    ].join('\r\n'),
  );
}

describe('SMTP gateway', () => {
  let sink: Awaited<ReturnType<typeof startSink>>;
  let v: Running;
  let smtpPort: number;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-gw-'));

  before(async () => {
    sink = await startSink();
    v = await startVerdict({
      smtp: { enabled: true, port: 0, domains: ['example.test'], nextHop: sink.url, deliveryRetryMs: 200, maxMessageBytes: 200_000 },
    });
    smtpPort = v.verdict.smtpPort!;
    assert.ok(smtpPort > 0, 'the SMTP listener is up');
  });
  after(async () => {
    await v?.close();
    await sink?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('clean mail (nodemailer) reaches the next hop byte-identical below the added headers', async () => {
    const original = cleanMessage('Minutes of the weekly meeting', 'minutes-1@sender.test');
    const client = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true });
    const info = await client.sendMail({ envelope: { from: 'b@sender.test', to: ['a@example.test'] }, raw: original });
    client.close();
    const id = scanIdOf(info.response);
    const got = await sink.waitForScan(id);
    assert.deepEqual(got.to, ['a@example.test']);
    assert.equal(got.from, 'b@sender.test');
    assert.ok(got.raw.subarray(got.raw.length - original.length).equals(original), 'the original bytes arrive unchanged (DKIM still verifies)');
    const added = got.raw.subarray(0, got.raw.length - original.length).toString('utf8').split('\r\n').filter(Boolean);
    assert.deepEqual(added.map((l) => l.split(':')[0]), ['X-Verdict-Verdict', 'X-Verdict-Scan-Id', 'Received'], added.join('\n'));
    const scan = (await v.verdict.store.getScan(id))!;
    assert.equal(scan.channel, 'email');
    assert.equal(headerOf(got.raw, 'X-Verdict-Verdict'), scan.verdict);
    assert.ok(scan.verdict === 'CLN' || scan.verdict === 'LSP', `delivered with verdict ${scan.verdict}`);
    await waitForAction(v, id, 'delivered');
    assert.equal(scan.envelope_to, 'a@example.test');
    assert.match(headerOf(got.raw, 'Received') ?? '', /\[127\.0\.0\.1\]/);

    // search finds it by sender, receiver, subject, message id and sender IP
    const ids = async (q: string) => {
      const r = await v.api('GET', `/api/v1/scans/list/?${q}`);
      const body = (await r.json()) as { results: { id: number }[] };
      assert.equal(r.status, 200, JSON.stringify(body));
      return body.results.map((x) => x.id);
    };
    assert.deepEqual(await ids('sample_from=b@sender.test'), [id]);
    assert.deepEqual(await ids('receiver_address=a@example.test'), [id]);
    assert.deepEqual(await ids('search_descendants.subject=weekly meeting'), [id]);
    assert.deepEqual(await ids(`search_descendants.original_message_id=${encodeURIComponent('<minutes-1@sender.test>')}`), [id]);
    assert.deepEqual(await ids('search_descendants.source_ip=127.0.0.1'), [id]);
    assert.deepEqual(await ids('channel=email&verbose_action=delivered'), [id]);
  });

  test('EICAR attachment (swaks) is quarantined, never delivered; released, it arrives', async () => {
    const file = path.join(tmp, 'invoice.com');
    fs.writeFileSync(file, eicar());
    const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: your invoice', '--attach', `@${file}`]);
    assert.equal(r.code, 0, r.out);
    const id = scanIdOf(r.out);
    await waitForAction(v, id, 'quarantine');
    const scan = (await v.verdict.store.getScan(id))!;
    assert.equal(scan.verdict, 'MAL');
    await sleep(1000); // a delivery would have happened by now
    assert.equal(sink.received.filter((m) => headerOf(m.raw, 'X-Verdict-Scan-Id') === String(id)).length, 0, 'held back');

    const res = await v.api('GET', `/api/v1/quarantine/release/${id}/`);
    assert.equal(res.status, 200, await res.clone().text());
    const got = await sink.waitForScan(id, 5_000);
    assert.deepEqual(got.to, ['a@example.test']);
    assert.equal(headerOf(got.raw, 'X-Verdict-Verdict'), 'CLN', 'released and marked clean');
    assert.match(got.raw.toString('latin1'), /invoice\.com/);
    const after = (await v.verdict.store.getScan(id))!;
    assert.equal(after.verbose_action, 'delivered');
    assert.equal(after.verdict, 'CLN');
  });

  test('relaying to a foreign domain is refused with 550', async () => {
    const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'someone@elsewhere.test', '--from', 'b@sender.test']);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /<\*\* 550 5\.7\.1 Relaying denied/, r.out);
  });

  test('a message over maxMessageBytes is refused with 552 and no scan is kept', async () => {
    const count = async () => (await v.verdict.store.db.selectFrom('scans').select('id').execute()).length + (await v.verdict.store.db.selectFrom('email_deliveries').select('id').execute()).length;
    const before = await count();
    const file = path.join(tmp, 'big.bin');
    fs.writeFileSync(file, Buffer.alloc(300_000, 0x41));
    const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--attach', `@${file}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /<\*\* 552 /, r.out);
    assert.equal(await count(), before, 'neither a scan nor a delivery was recorded');
  });

  test('GTUBE spam is quarantined in blocking mode, and delivered with its verdict header when send_spam_emails is off', async () => {
    const gtube = ['XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE', '-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'].join('');
    const send = async () => {
      const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: cheap offer', '--body', `Buy now.\n${gtube}\n`]);
      assert.equal(r.code, 0, r.out);
      return scanIdOf(r.out);
    };
    const held = await send();
    await waitForAction(v, held, 'quarantine');
    assert.equal((await v.verdict.store.getScan(held))!.verdict, 'SPM');

    const org = (await v.verdict.store.getOrgByName('default'))!;
    const patch = (value: boolean) => v.api('PATCH', `/api/organizations/${org.id}/`, { json: { send_spam_emails: value } });
    assert.equal((await patch(false)).status, 200);
    try {
      const passed = await send();
      const got = await sink.waitForScan(passed);
      assert.equal(headerOf(got.raw, 'X-Verdict-Verdict'), 'SPM');
      await waitForAction(v, passed, 'delivered');
    } finally {
      assert.equal((await patch(true)).status, 200);
    }
    assert.equal(sink.received.filter((m) => headerOf(m.raw, 'X-Verdict-Scan-Id') === String(held)).length, 0, 'the first one stays held');
  });

  test('mail from a block-listed sender address is quarantined, naming the list', async () => {
    const res = await v.api('POST', '/api/v1/blacklist/email/', { json: { address: 'mallory@bad.test', comment: 'known spammer' } });
    assert.equal(res.status, 201, await res.clone().text());
    const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'a@example.test', '--from', 'mallory@bad.test', '--header', 'Subject: hello again']);
    assert.equal(r.code, 0, r.out);
    const id = scanIdOf(r.out);
    await waitForAction(v, id, 'quarantine');
    const item = await v.verdict.quarantine.item(id);
    assert.match(item?.reason ?? '', /block list/);
  });

  test('malware alerts go to the recipient and the administrators when the organization asks for them', async () => {
    const org = (await v.verdict.store.getOrgByName('default'))!;
    const settings = (json: Record<string, unknown>) => v.api('PATCH', `/api/organizations/${org.id}/`, { json });
    const on = await settings({ email_end_user_on_malicious_alert: true, client_alert_malicious_to_admin_email: true, email_report_recipients: 'admin@example.test' });
    assert.equal(on.status, 200, await on.clone().text());
    try {
      const file = path.join(tmp, 'payload.com');
      fs.writeFileSync(file, eicar());
      const r = await swaks(['--server', `127.0.0.1:${smtpPort}`, '--to', 'carol@example.test', '--from', 'b@sender.test', '--header', 'Subject: the report you asked for', '--attach', `@${file}`]);
      assert.equal(r.code, 0, r.out);
      const id = scanIdOf(r.out);
      await waitForAction(v, id, 'quarantine');
      const until = Date.now() + 10_000;
      const alerts = () => sink.received.filter((m) => m.raw.toString('utf8').includes(`Scan: ${id}`));
      while (alerts().length < 2 && Date.now() < until) await sleep(50);
      const got = alerts();
      assert.deepEqual(got.map((m) => m.to.join(',')).sort(), ['admin@example.test', 'carol@example.test']);
      for (const m of got) {
        assert.equal(m.from, '', 'null envelope sender: no bounce loops');
        assert.match(m.raw.toString('utf8'), /Subject: the report you asked for/);
        assert.equal(headerOf(m.raw, 'Auto-Submitted'), 'auto-generated');
      }
      assert.equal(sink.received.filter((m) => headerOf(m.raw, 'X-Verdict-Scan-Id') === String(id)).length, 0, 'the message itself is held');
    } finally {
      assert.equal((await settings({ email_end_user_on_malicious_alert: false, client_alert_malicious_to_admin_email: false, email_report_recipients: null })).status, 200);
    }
  });

  test('a client that disconnects in the middle of DATA leaves no scan and no delivery behind', async () => {
    const count = async () => (await v.verdict.store.db.selectFrom('scans').select('id').execute()).length + (await v.verdict.store.db.selectFrom('email_deliveries').select('id').execute()).length;
    const before = await count();
    const sock = net.connect(smtpPort, '127.0.0.1');
    let transcript = '';
    sock.on('data', (d) => (transcript += d.toString()));
    const expect = async (re: RegExp) => {
      const until = Date.now() + 10_000;
      while (!re.test(transcript)) {
        if (Date.now() > until) throw new Error(`expected ${re} in:\n${transcript}`);
        await sleep(20);
      }
    };
    await expect(/^220 /m);
    sock.write('EHLO client.test\r\n');
    await expect(/^250 /m);
    sock.write('MAIL FROM:<b@sender.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n');
    await expect(/^354 /m);
    sock.write('From: b@sender.test\r\nTo: a@example.test\r\nSubject: cut short\r\n\r\nthe first half of');
    await sleep(200);
    sock.destroy();
    await sleep(1000);
    assert.equal(await count(), before);
  });
});

describe('SMTP gateway: STARTTLS', () => {
  test('with a configured certificate, swaks upgrades with STARTTLS and the trace line says ESMTPS', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-gw-tls-'));
    const cert = path.join(tmp, 'smtp.crt');
    const key = path.join(tmp, 'smtp.key');
    await new Promise<void>((resolve, reject) =>
      execFile('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { timeout: 60_000 }, (e) => (e ? reject(e) : resolve())),
    );
    const sink = await startSink();
    const v = await startVerdict({ smtp: { enabled: true, port: 0, domains: ['example.test'], nextHop: sink.url, tlsCert: cert, tlsKey: key } });
    try {
      const r = await swaks(['--server', `127.0.0.1:${v.verdict.smtpPort}`, '--tls', '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: over TLS']);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /STARTTLS/);
      const got = await sink.waitForScan(scanIdOf(r.out));
      assert.match(headerOf(got.raw, 'Received') ?? '', /with ESMTPS /);
    } finally {
      await v.close();
      await sink.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('SMTP gateway: rejectMalicious', () => {
  test('a malicious message is refused with 550 while the client waits, and nothing is delivered', async () => {
    const sink = await startSink();
    const v = await startVerdict({ smtp: { enabled: true, port: 0, domains: ['example.test'], nextHop: sink.url, rejectMalicious: true } });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-gw-'));
    try {
      const file = path.join(tmp, 'tool.com');
      fs.writeFileSync(file, eicar());
      const bad = await swaks(['--server', `127.0.0.1:${v.verdict.smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--attach', `@${file}`]);
      assert.notEqual(bad.code, 0);
      const m = /<\*\* 550 5\.7\.1 Message refused: malicious.*\(scan (\d+)\)/.exec(bad.out);
      assert.ok(m, bad.out);
      const scan = (await v.verdict.store.getScan(Number(m[1])))!;
      assert.equal(scan.verdict, 'MAL');
      assert.equal(scan.verbose_action, 'scanned');
      const good = await swaks(['--server', `127.0.0.1:${v.verdict.smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: lunch?']);
      assert.equal(good.code, 0, good.out);
      await sink.waitForScan(scanIdOf(good.out));
      assert.equal(sink.received.length, 1, 'only the clean message arrived');
    } finally {
      await v.close();
      await sink.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('SMTP gateway: next hop down', () => {
  test('delivery is retried and succeeds once the next hop comes up', async () => {
    const port = await freePort();
    const v = await startVerdict({ smtp: { enabled: true, port: 0, domains: ['example.test'], nextHop: `smtp://127.0.0.1:${port}`, deliveryRetryMs: 200 } });
    let sink: Awaited<ReturnType<typeof startSink>> | undefined;
    try {
      const r = await swaks(['--server', `127.0.0.1:${v.verdict.smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: while the server was down']);
      assert.equal(r.code, 0, r.out);
      const id = scanIdOf(r.out);
      // wait until at least two attempts failed
      const until = Date.now() + 60_000;
      for (;;) {
        const row = await v.verdict.store.db.selectFrom('email_deliveries').selectAll().where('scan_id', '=', id).executeTakeFirst();
        if (row && row.attempts >= 2) {
          assert.equal(row.state, 'queued');
          assert.ok(row.last_error, 'the failure is recorded');
          break;
        }
        if (Date.now() > until) throw new Error(`no retries seen: ${JSON.stringify(row)}`);
        await sleep(100);
      }
      assert.equal((await v.verdict.store.getScan(id))!.verbose_action, 'indelivery');
      sink = await startSink(port);
      const got = await sink.waitForScan(id, 30_000);
      assert.deepEqual(got.to, ['a@example.test']);
      await waitForAction(v, id, 'delivered');
    } finally {
      await v.close();
      await sink?.close();
    }
  });
});

describe('SMTP gateway: restart', () => {
  test('a message accepted while the next hop is down is delivered by the next Verdict process on the same data', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'verdict-gw-restart-'));
    const port = await freePort();
    const start = async () => {
      const config = loadConfig(
        { port: 0, host: '127.0.0.1', dataDir, workers: 1, logLevel: 'silent', smtp: { enabled: true, port: 0, domains: ['example.test'], nextHop: `smtp://127.0.0.1:${port}`, deliveryRetryMs: 200 } },
        {},
      );
      const verdict = await createVerdict(config, { log: pino({ level: 'silent' }) });
      await verdict.listen();
      return verdict;
    };
    let sink: Awaited<ReturnType<typeof startSink>> | undefined;
    let second: Awaited<ReturnType<typeof start>> | undefined;
    try {
      const first = await start();
      let id: number;
      try {
        const r = await swaks(['--server', `127.0.0.1:${first.smtpPort}`, '--to', 'a@example.test', '--from', 'b@sender.test', '--header', 'Subject: survives a restart']);
        assert.equal(r.code, 0, r.out);
        id = scanIdOf(r.out);
        const until = Date.now() + 60_000;
        while (!((await first.store.db.selectFrom('email_deliveries').select('attempts').where('scan_id', '=', id).executeTakeFirst())?.attempts ?? 0)) {
          if (Date.now() > until) throw new Error('no delivery attempt before the restart');
          await sleep(100);
        }
      } finally {
        await first.close(2000);
      }
      sink = await startSink(port);
      second = await start();
      const got = await sink.waitForScan(id, 30_000);
      assert.deepEqual(got.to, ['a@example.test']);
      assert.equal(headerOf(got.raw, 'Subject'), 'survives a restart');
    } finally {
      await second?.close(2000);
      await sink?.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
