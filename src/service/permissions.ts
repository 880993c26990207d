/**
 * Who may do what. One table, checked by the service (never by an API adapter).
 * Organization tokens carry the role they were created with (Administrator by default, as
 * X-Ray's organization tokens act as Administrator); user tokens carry their user's role.
 */
import { forbidden } from './errors.ts';

export const ROLES = ['Administrator', 'Admin', 'Analyst', 'Viewer'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = {
  'scan:submit': ['Administrator', 'Admin', 'Analyst'],
  'scan:read': ['Administrator', 'Admin', 'Analyst', 'Viewer'],
  'scan:delete': ['Administrator', 'Admin'],
  'verdict:change': ['Administrator', 'Admin', 'Analyst'],
  'investigation:request': ['Administrator', 'Admin', 'Analyst'],
  'quarantine:release': ['Administrator', 'Admin', 'Analyst'],
  'list:read': ['Administrator', 'Admin', 'Analyst', 'Viewer'],
  'list:write': ['Administrator', 'Admin'],
  'org:read': ['Administrator', 'Admin', 'Analyst', 'Viewer'],
  'org:manage': ['Administrator'],
  'user:manage': ['Administrator'],
} as const satisfies Record<string, readonly Role[]>;

export type Permission = keyof typeof PERMISSIONS;

export function can(role: Role, permission: Permission): boolean {
  return (PERMISSIONS[permission] as readonly Role[]).includes(role);
}

/** Throws 403 unless `role` holds `permission`. */
export function requirePermission(principal: { role: Role }, permission: Permission): void {
  if (!can(principal.role, permission)) throw forbidden(`the role ${principal.role} may not ${permission.replace(':', ' ')}`);
}

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}
