/**
 * Users of an organization: people (with a password, for the CSS token endpoint and a future
 * web console) and their API tokens. A disabled user's tokens stop working at once (checked in
 * ScanService.authenticate).
 */
import type { Store } from '../store/store.ts';
import type { UserRow } from '../store/schema.ts';
import { hashPassword, verifyPassword } from './passwords.ts';
import { isRole, requirePermission, type Role } from './permissions.ts';
import { hashToken, newToken, type Principal } from './scan-service.ts';
import { invalid, notFound, VerdictError } from './errors.ts';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface NewUser {
  orgId: number;
  name: string;
  email: string;
  role: Role;
  password?: string;
}

export class UserService {
  constructor(private readonly store: Store) {}

  async createUser(u: NewUser): Promise<UserRow> {
    if (!u.name || u.name.length > 200) throw invalid('name', 'a name of 1 to 200 characters is required');
    if (!EMAIL.test(u.email)) throw invalid('email', 'not a valid email address');
    if (!isRole(u.role)) throw invalid('role', 'one of Administrator, Admin, Analyst, Viewer');
    if (u.password !== undefined && u.password.length < 10) throw invalid('password', 'at least 10 characters');
    const email = u.email.toLowerCase();
    const existing = await this.store.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
    if (existing) throw new VerdictError('conflict', `a user with the email ${email} already exists`, 409, 'email');
    return this.store.db
      .insertInto('users')
      .values({ org_id: u.orgId, name: u.name, email, role: u.role, password_hash: u.password ? await hashPassword(u.password) : null, created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** A new API token acting as the user (with the user's role); shown once. */
  async createUserToken(userId: number, name = 'user token'): Promise<string> {
    const user = await this.store.getUser(userId);
    if (!user) throw notFound(`user ${userId}`);
    const token = newToken();
    await this.store.createToken({ orgId: user.org_id, userId: user.id, name, role: user.role, hash: hashToken(token), prefix: token.slice(0, 6) });
    return token;
  }

  /** The user with this email (or name) and password, as a principal; undefined otherwise. */
  async verifyCredentials(username: string, password: string): Promise<{ user: UserRow; principal: Principal } | undefined> {
    const key = username.trim().toLowerCase();
    const user = await this.store.db
      .selectFrom('users')
      .selectAll()
      .where((eb) => eb.or([eb('email', '=', key), eb('name', '=', username.trim())]))
      .executeTakeFirst();
    // verify even when the user is missing, so timing does not reveal which usernames exist
    const ok = await verifyPassword(password, user?.password_hash ?? DUMMY_HASH);
    if (!user || !ok || !user.active) return undefined;
    const org = await this.store.getOrg(user.org_id);
    if (!org || !org.active) return undefined;
    return { user, principal: { tokenId: -user.id, orgId: user.org_id, orgIds: await this.store.orgSubtree(user.org_id), role: user.role as Role } };
  }

  async listUsers(orgIds: number[]): Promise<UserRow[]> {
    return this.store.db.selectFrom('users').selectAll().where('org_id', 'in', orgIds).orderBy('id').execute();
  }

  // On behalf of a caller (the API) ------------------------------------------------------

  /**
   * An administrator creates a user in an organization it can see (default: its own) and gets
   * an API token for that user, shown once (only its hash is stored).
   */
  async invite(principal: Principal, u: Omit<NewUser, 'orgId'> & { orgId?: number }): Promise<{ user: UserRow; token: string }> {
    requirePermission(principal, 'user:manage');
    const orgId = u.orgId ?? principal.orgId;
    if (!principal.orgIds.includes(orgId)) throw invalid('organization', 'not an organization this token can use');
    // the X-Ray dialect (Django REST Framework) answers a taken unique field with 400 naming it
    const taken = typeof u.email === 'string' && (await this.store.db.selectFrom('users').select('id').where('email', '=', u.email.toLowerCase()).executeTakeFirst());
    if (taken) throw invalid('email', 'a user with this email already exists');
    const user = await this.createUser({ ...u, orgId });
    return { user, token: await this.createUserToken(user.id, 'invitation') };
  }

  /** Users of the organizations the caller sees, by id. */
  async listVisible(principal: Principal, page: { offset: number; limit: number }): Promise<{ rows: UserRow[]; count: number }> {
    requirePermission(principal, 'user:manage');
    const rows = await this.store.db.selectFrom('users').selectAll().where('org_id', 'in', principal.orgIds).orderBy('id').offset(page.offset).limit(page.limit).execute();
    const c = await this.store.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', 'in', principal.orgIds).executeTakeFirstOrThrow();
    return { rows, count: Number(c.n) };
  }

  async getVisible(principal: Principal, id: number): Promise<UserRow> {
    requirePermission(principal, 'user:manage');
    const user = await this.store.getUser(id);
    if (!user || !principal.orgIds.includes(user.org_id)) throw notFound(`user ${id}`);
    return user;
  }

  /**
   * Changes a user's name, role or state. Disabling takes effect at once: the user's tokens are
   * refused from the next request. A caller cannot disable or demote the user it acts as.
   */
  async update(principal: Principal, id: number, patch: { name?: string; role?: Role; active?: boolean }): Promise<UserRow> {
    const user = await this.getVisible(principal, id);
    if (principal.userId === id && (patch.active === false || (patch.role !== undefined && patch.role !== user.role))) {
      throw invalid(patch.active === false ? 'active' : 'role', 'you cannot disable or change the role of the user you act as');
    }
    if (patch.name !== undefined && (!patch.name || patch.name.length > 200)) throw invalid('name', 'a name of 1 to 200 characters is required');
    if (patch.role !== undefined && !isRole(patch.role)) throw invalid('role', 'one of Administrator, Admin, Analyst, Viewer');
    if (patch.name !== undefined || patch.role !== undefined) {
      await this.store.db
        .updateTable('users')
        .set({ ...(patch.name !== undefined ? { name: patch.name } : {}), ...(patch.role !== undefined ? { role: patch.role } : {}) })
        .where('id', '=', id)
        .execute();
    }
    if (patch.active !== undefined && patch.active !== (user.active === 1)) await this.setActive(id, patch.active);
    return (await this.store.getUser(id))!;
  }

  async setActive(userId: number, active: boolean): Promise<void> {
    await this.store.db.updateTable('users').set({ active: active ? 1 : 0, disabled_at: active ? null : Date.now() }).where('id', '=', userId).execute();
  }
}

const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
