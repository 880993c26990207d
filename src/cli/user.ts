/**
 * `verdict user create|token`: people of an organization and their API tokens, managed by the
 * operator on the server's data directory (no token needed: whoever runs this owns the data).
 * `--password` reads the password from the first line of standard input, so it never shows in
 * the process list or the shell history.
 */
import { parseArgs } from 'node:util';
import path from 'node:path';
import { loadConfig } from '../config/load.ts';
import { openDatabase } from '../store/database.ts';
import { Store } from '../store/store.ts';
import { UserService } from '../service/users.ts';
import { isRole, ROLES } from '../service/permissions.ts';

export const USER_USAGE = `usage: verdict user create --org NAME --email E --name N [--role ${ROLES.join('|')}] [--password]
       verdict user token --email E`;

export async function runUserCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { org: { type: 'string' }, email: { type: 'string' }, name: { type: 'string' }, role: { type: 'string' }, password: { type: 'boolean' } },
  });
  const sub = positionals[0];
  if ((sub !== 'create' && sub !== 'token') || !values.email || (sub === 'create' && (!values.org || !values.name))) {
    console.error(USER_USAGE);
    return 2;
  }
  const role = values.role ?? 'Viewer';
  if (!isRole(role)) {
    console.error(`verdict: --role must be one of ${ROLES.join(', ')}`);
    return 2;
  }
  const config = loadConfig();
  const db = await openDatabase(config);
  try {
    const store = new Store(db.db, db);
    const users = new UserService(store);
    if (sub === 'create') {
      const org = await store.getOrgByName(values.org!);
      if (!org) {
        console.error(`verdict: no organization named ${values.org}`);
        return 2;
      }
      const password = values.password ? await readLine() : undefined;
      const user = await users.createUser({ orgId: org.id, name: values.name!, email: values.email, role, password });
      console.log(JSON.stringify({ id: user.id, name: user.name, email: user.email, role: user.role, organization: org.name }));
      return 0;
    }
    const user = await store.db.selectFrom('users').selectAll().where('email', '=', values.email.toLowerCase()).executeTakeFirst();
    if (!user) {
      console.error(`verdict: no user with the email ${values.email}`);
      return 2;
    }
    const token = await users.createUserToken(user.id, 'cli');
    console.error(`token for ${user.email} (role ${user.role}; it follows the user's role and stops when the user is disabled); it is shown once:`);
    console.log(token);
    return 0;
  } finally {
    await db.close();
  }
}

async function readLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if (Buffer.concat(chunks).includes(10)) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
}
