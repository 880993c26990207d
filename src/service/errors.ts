/**
 * Typed errors of the core, with stable codes. Each API dialect renders them in its own shape;
 * the core never speaks HTTP, but each error names the status a dialect usually maps it to.
 */
export type ErrorCode = 'not_found' | 'invalid' | 'too_large' | 'unauthenticated' | 'forbidden' | 'rate_limited' | 'conflict' | 'unavailable' | 'upstream';

export class VerdictError extends Error {
  override name = 'VerdictError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly status: number,
    readonly field?: string,
    /** For rate_limited: seconds until the client may try again. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new VerdictError('not_found', `${what} not found`, 404);
export const invalid = (field: string, message: string) => new VerdictError('invalid', `${field}: ${message}`, 400, field);
export const tooLarge = (limit: number) => new VerdictError('too_large', `object is larger than the maximum of ${limit} bytes`, 413);
export const unauthenticated = (message = 'authentication credentials were not provided or are invalid') => new VerdictError('unauthenticated', message, 403);
export const forbidden = (message: string) => new VerdictError('forbidden', message, 403);
export const upstream = (message: string) => new VerdictError('upstream', message, 400);
export const rateLimited = (limit: number, retryAfter: number) =>
  new VerdictError('rate_limited', `more than ${limit} requests per minute with this token; retry in ${retryAfter} s`, 429, undefined, retryAfter);
