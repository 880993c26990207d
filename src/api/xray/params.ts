/** Parsing of X-Ray request values, shared by the dialect's route files. */
import type { FastifyRequest } from 'fastify';
import { invalid, VerdictError } from '../../service/errors.ts';

export function baseUrl(req: FastifyRequest, publicUrl?: string): string {
  return publicUrl ?? `${req.protocol}://${req.headers.host ?? 'localhost'}`;
}

export function scanIdParam(raw: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw new VerdictError('not_found', `scan ${raw} not found`, 404);
  return Number(raw);
}

export function epochParam(v: unknown, field: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || !/^\d{10}$/.test(v)) throw invalid(field, 'expected a 10-digit epoch timestamp (seconds)');
  return Number(v) * 1000;
}

export function intParam(v: unknown, field: string, min: number, max: number): number {
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min || n > max) throw invalid(field, `expected an integer from ${min} to ${max}`);
  return n;
}

export function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

export function jsonField(v: unknown, field: string): unknown {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    throw invalid(field, 'expected JSON');
  }
}

export function checkFields(fields: Record<string, unknown>, allowed: Set<string>): void {
  for (const k of Object.keys(fields)) if (!allowed.has(k)) throw invalid(k, 'unknown field');
}
