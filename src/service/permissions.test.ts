import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { PERMISSIONS, ROLES, can, type Permission } from './permissions.ts';

/** The table of docs/permissions.md, rendered from the one table the service enforces. */
function renderTable(): string {
  const lines = [`| permission | ${ROLES.join(' | ')} |`, `| --- | ${ROLES.map(() => ':---:').join(' | ')} |`];
  for (const p of Object.keys(PERMISSIONS) as Permission[]) lines.push(`| \`${p}\` | ${ROLES.map((r) => (can(r, p) ? 'yes' : '—')).join(' | ')} |`);
  return lines.join('\n');
}

test('docs/permissions.md shows exactly the permission table the service enforces', () => {
  const doc = fs.readFileSync(new URL('../../docs/permissions.md', import.meta.url), 'utf8');
  const table = renderTable();
  assert.ok(doc.includes(table), `docs/permissions.md is out of date; replace its table with:\n\n${table}\n`);
  for (const p of Object.keys(PERMISSIONS)) assert.match(doc, new RegExp(`^- \`${p}\`:`, 'm'), `docs/permissions.md should say what \`${p}\` allows`);
});

test('organization tokens act as Administrator; only Administrators manage organizations and users', () => {
  assert.equal(can('Administrator', 'org:manage'), true);
  for (const r of ['Admin', 'Analyst', 'Viewer'] as const) {
    assert.equal(can(r, 'org:manage'), false, r);
    assert.equal(can(r, 'user:manage'), false, r);
  }
  assert.equal(can('Viewer', 'scan:submit'), false);
  assert.equal(can('Viewer', 'scan:read'), true);
});
