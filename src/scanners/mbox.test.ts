import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { countMboxMessages, isFromLine, mboxParts, mboxScanner } from './mbox.ts';
import { emailScanner, type EmailAttributes } from './email.ts';
import { detectType } from './file-type.ts';
import { eicar, runScanner } from './testing.ts';

const message = (n: number, body: string) => `From: sender${n}@example.org\nTo: rcpt@example.net\nSubject: message ${n}\nMessage-ID: <${n}@example.org>\n\n${body}\n`;
const mbox = (...bodies: string[]) =>
  Buffer.from(bodies.map((b, i) => `From sender${i + 1}@example.org Mon Jan  1 00:00:0${i} 2024\n${message(i + 1, b)}\n`).join(''));

describe('mbox scanner', () => {
  test('splits an mbox into messages named message-N.eml, each an email', async () => {
    const box = mbox('first body', 'second body\n>From the mbox escaping\nFrom noon until 3 pm, in a paragraph: not a separator', 'third');
    assert.equal(detectType(box).type, 'email');
    const r = await runScanner(mboxScanner, box, { name: 'inbox.mbox' });
    assert.deepEqual(r.children.map((c) => c.name), ['message-1.eml', 'message-2.eml', 'message-3.eml']);
    assert.ok(r.children.every((c) => c.relation === 'embedded_object'));
    assert.equal(r.children[0].bytes?.toString(), message(1, 'first body'));
    // mboxrd quoting undone; a From line inside a paragraph (no blank line before) stays text.
    assert.equal(r.children[1].bytes?.toString(), message(2, 'second body\nFrom the mbox escaping\nFrom noon until 3 pm, in a paragraph: not a separator'));
    assert.deepEqual(r.attributes.mbox, { messages: 3, emitted: 3 });
    for (const c of r.children) assert.equal(detectType(c.bytes!).type, 'email');
    // And each message parses as an email with its own attachment-free body.
    const parsed = await runScanner(emailScanner, r.children[2].bytes!);
    assert.equal((parsed.attributes.email as EmailAttributes).subject, 'message 3');
  });

  test('a message carrying EICAR keeps its bytes', async () => {
    const r = await runScanner(mboxScanner, mbox('hello', `test file: ${eicar().toString('latin1')}`));
    assert.match(r.children[1].bytes?.toString('latin1') ?? '', /EICAR-STANDARD-ANTIVIRUS-TEST-FILE/);
  });

  test('a single message behind a From line is left to the email scanner', async () => {
    const r = await runScanner(mboxScanner, mbox('only one'));
    assert.deepEqual(r.children, []);
    assert.deepEqual(r.attributes.mbox, { messages: 1, emitted: 0 });
  });

  test('a plain message (no From line) is not an mbox', async () => {
    const r = await runScanner(mboxScanner, Buffer.from(message(1, 'x')));
    assert.deepEqual([r.evidence, r.attributes, r.children], [[], {}, []]);
  });

  test('messages the engine refuses end as ARCHIVE_LIMIT', async () => {
    const r = await runScanner(mboxScanner, mbox('a', 'b', 'c', 'd'), { acceptChildren: 2 });
    assert.equal(r.children.length, 2);
    const limit = r.evidence.find((e) => e.heuristic === 'ARCHIVE_LIMIT');
    assert.equal((limit?.data?.items as { reason: string }[])[0].reason, 'count');
  });

  test('separator lines and counting', async () => {
    assert.equal(isFromLine(Buffer.from('From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n')), true);
    assert.equal(isFromLine(Buffer.from('From: someone@example.org\n')), false);
    assert.equal(isFromLine(Buffer.from('From here we go\n')), false);
    assert.equal(await countMboxMessages(Readable.from([mbox('a', 'b', 'c')]), 10), 3);
    // Chunk boundaries inside lines do not matter.
    const box = mbox('a', 'b');
    const pieces = Array.from({ length: Math.ceil(box.length / 7) }, (_, i) => box.subarray(i * 7, i * 7 + 7));
    assert.equal(await countMboxMessages(Readable.from(pieces), 10), 2);
  });

  test('any chunking of the stream gives the same messages', async () => {
    const box = Buffer.concat([mbox('a\n\n>From quoted\n\n\nend', 'b\r\n\r\nx'), Buffer.from('From last@example.org Mon Jan  1 00:00:09 2024\nSubject: no newline at the end')]);
    const split = async (size: number) => {
      const messages: string[] = [];
      const pieces = Array.from({ length: Math.ceil(box.length / size) }, (_, i) => box.subarray(i * size, i * size + size));
      for await (const part of mboxParts(Readable.from(pieces))) {
        if ('start' in part) messages.push('');
        else messages[messages.length - 1] += part.data.toString('latin1');
      }
      return messages;
    };
    const whole = await split(box.length);
    assert.equal(whole.length, 3);
    assert.equal(whole[0], message(1, 'a\n\nFrom quoted\n\n\nend'));
    assert.equal(whole[2], 'Subject: no newline at the end');
    for (const size of [1, 2, 3, 7, 64]) assert.deepEqual(await split(size), whole, `chunks of ${size}`);
  });
});
