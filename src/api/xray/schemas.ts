/**
 * JSON schemas of the X-Ray dialect. Fastify validates requests with them and @fastify/swagger
 * builds the OpenAPI document (`/api/openapi.json`, `/api/docs`) from the same objects, so the
 * documentation cannot drift from what is enforced. Validation failures are rendered by the
 * plugin's error handler in the DRF style, naming the field.
 *
 * Response schemas document the main shapes only: the plugin serializes with JSON.stringify,
 * so a field missing from a response schema is never dropped from a response.
 *
 * @example
 *   api.get('/api/v1/things/:id/', { schema: { summary: 'A thing', tags: ['things'], params: idParams('thing'), response: errors(ok(thingSchema)) } }, handler);
 */

export type JsonSchema = Record<string, unknown>;

/** Path parameter `id`: an integer id. A malformed id answers 404, as for an unknown one. */
export const idParams = (what: string): JsonSchema => ({
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^\\d{1,15}$', description: `The ${what} id (an integer)` } },
});

export const errorBody: JsonSchema = {
  type: 'object',
  description: 'Django REST Framework style error: `detail`, and on a 400 the bad field as a key with a list of messages',
  properties: { detail: { type: 'string' }, code: { type: 'string' } },
  additionalProperties: true,
};

const errorResponse = (description: string): JsonSchema => ({ ...errorBody, description });

/** The error statuses every authenticated X-Ray route can answer, plus `ok`. */
export function responses(ok: Record<number, JsonSchema>, statuses: number[] = [400, 403, 404, 429]): Record<number, JsonSchema> {
  const described: Record<number, string> = {
    400: 'Invalid request: the body names the bad field',
    403: 'No token, an invalid token, an inactive organization or user, or a role without the permission',
    404: 'Not found, or not visible to this token',
    413: 'Larger than the maximum object size',
    429: 'Too many requests with this token; see the Retry-After header',
  };
  const out: Record<number, JsonSchema> = { ...ok };
  for (const s of statuses) out[s] = errorResponse(described[s] ?? 'Error');
  return out;
}

/** An object schema that documents the listed properties and lets others through. */
export const open = (properties: Record<string, JsonSchema>, extra: JsonSchema = {}): JsonSchema => ({ type: 'object', properties, additionalProperties: true, ...extra });

/** DRF page-number paging: `?page=&page_size=` → `{count, next, previous, results}`. */
export const pageQuery: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    page: { type: 'integer', minimum: 1, default: 1, description: 'Page number, from 1' },
    page_size: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Results per page (1 to 1000)' },
  },
};

export const page = (item: JsonSchema): JsonSchema => ({
  type: 'object',
  properties: {
    count: { type: 'integer', description: 'Results in all pages' },
    next: { type: ['string', 'null'], description: 'Full URL of the next page' },
    previous: { type: ['string', 'null'], description: 'Full URL of the previous page' },
    results: { type: 'array', items: item },
  },
});

export const scanIdResponse: JsonSchema = open({ scan_id: { type: 'integer', description: 'The new scan id' }, callback_params: { description: 'Echo of callback_params when given' } });

/** A JSON value that clients send either as JSON or as a string holding JSON. */
export const jsonOrString = (description: string): JsonSchema => ({ description: `${description} (a JSON object, or a string holding one)` });

export const callbackFields: Record<string, JsonSchema> = {
  callback_url: { type: 'string', description: 'http(s) URL that receives the result when the scan completes' },
  callback_params: jsonOrString('Echoed in the response and sent in the callback as `params`'),
  callback_headers: jsonOrString('Headers sent with the callback'),
};

// The foundation routes (plugin.ts) ------------------------------------------------------------

const fileFields: Record<string, JsonSchema> = {
  name: { type: 'string', description: 'File name (mandatory; with multipart the part\'s file name is used when absent)' },
  data: { type: 'string', description: 'The file as base64 (JSON or form body; buffered) — or, in multipart, the file part itself (streamed)' },
  path: { type: 'string', description: 'A sample already stored: `verdict://blobs/<sha256>` or the bare sha256, of a scan visible to the token' },
  download_link: { type: 'string', description: 'URL Verdict fetches (through the egress guard) and scans' },
  storage: { type: 'string', description: 'Accepted and ignored (only Verdict\'s own storage is readable)' },
  file_password: { type: 'string', description: 'Password tried first on encrypted archives' },
  ...callbackFields,
  original_file_path: { type: 'string', description: 'Stored and shown in the detail' },
  sub_origin: { type: 'string', description: 'Stored and shown in the detail' },
  organization_id: { type: ['integer', 'string'], description: 'File the scan under this organization (the token\'s own or a descendant)' },
};

const urlFields: Record<string, JsonSchema> = {
  path: { type: 'string', description: 'The URL to scan (a bare domain is read as http://)' },
  url: { type: 'string', description: 'Alias of path' },
  user_agent_string: { type: 'string', description: 'User-Agent of the fetch' },
  user_location: { type: 'string', description: 'Stored (no geo-located egress)' },
  ...callbackFields,
  sub_origin: { type: 'string' },
  organization_id: { type: ['integer', 'string'], description: 'File the scan under this organization (the token\'s own or a descendant)' },
};

/** Validates JSON and form bodies; multipart bodies are streamed, documented by `multipartDoc`. */
const bodyByType = (properties: Record<string, JsonSchema>): JsonSchema => {
  const schema = { type: 'object', additionalProperties: false, properties };
  return { content: { 'application/json': { schema }, 'application/x-www-form-urlencoded': { schema } } };
};

export const filesMultipartFields = { ...fileFields, data: { type: 'string', format: 'binary', description: 'The file (streamed to storage, never buffered)' } };
export const urlsMultipartFields = urlFields;

const scanDetailSchema = open({
  id: { type: 'integer' },
  organization: { type: 'integer' },
  organization_id: { type: 'integer' },
  status: { type: 'string', enum: ['QUE', 'SCN', 'CMP', 'ERR'] },
  verdict: { type: ['string', 'null'], enum: ['CLN', 'LSP', 'SPM', 'SUS', 'MAL', 'BLK', null] },
  sub_verdict: { type: ['string', 'null'] },
  verbose_verdict: { type: ['string', 'null'] },
  verbose_confidence: { type: ['string', 'null'] },
  created_at: { type: 'string' },
  finished_at: { type: ['string', 'null'] },
  sample: open({ md5: { type: ['string', 'null'] }, sha1: { type: ['string', 'null'] }, sha256: { type: ['string', 'null'] }, path: { type: ['string', 'null'] } }),
  children: { type: 'array', items: open({}) },
  siblings: { type: 'array', items: open({}) },
  evidence: { type: 'array', items: open({ name: { type: 'string' }, category: { type: 'string' }, description: { type: 'string' } }) },
  decisions: { type: 'array', items: open({}) },
  parent_scan_id: { type: ['integer', 'null'] },
  root_scan_id: { type: ['integer', 'null'] },
  is_root_scan: { type: 'boolean' },
  partial: { type: 'boolean' },
});

export const FOUNDATION = {
  files: {
    summary: 'Submit a file for scanning',
    description: 'Exactly one of: a multipart file part `data` (streamed), base64 `data`, `download_link`, or `path` of a stored sample. Answers once the sample and the scan are stored durably.',
    tags: ['scans'],
    body: bodyByType(fileFields),
    response: responses({ 200: scanIdResponse }, [400, 403, 413, 429]),
  },
  urls: {
    summary: 'Submit a URL for scanning',
    tags: ['scans'],
    body: bodyByType(urlFields),
    response: responses({ 200: scanIdResponse }, [400, 403, 429]),
  },
  detail: {
    summary: 'A scan: verdict, status, timestamps, sample, evidence, children tree, siblings, decisions',
    tags: ['scans'],
    params: idParams('scan'),
    response: responses({ 200: scanDetailSchema }, [403, 404, 429]),
  },
  report: {
    summary: 'The scan report: engines, layers, scan tree, evidence, decisions; query parameters are echoed as `params`',
    tags: ['scans'],
    params: idParams('scan'),
    response: responses(
      { 200: open({ scan_id: { type: 'integer' }, timestamp: { type: ['string', 'null'] }, name: { type: 'string' }, type: { type: 'string' }, verdict: { type: ['string', 'null'] }, scan_engines: { type: 'array' }, scan_layers: { type: 'array' }, scan_tree: open({}), evidence: { type: 'array' }, decisions: { type: 'array' }, params: open({}) }) },
      [403, 404, 429],
    ),
  },
  completedJobs: {
    summary: 'Scans finished between `from` and `to`, by completion time, paged with `next`',
    tags: ['scans'],
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        from: { type: 'string', pattern: '^(\\d{10})?$', description: 'Finished at or after (10-digit epoch seconds)' },
        to: { type: 'string', pattern: '^(\\d{10})?$', description: 'Finished before (10-digit epoch seconds)' },
        _cursor: { type: 'string', pattern: '^\\d+_\\d+$', description: 'Position given by a previous page\'s `next`' },
        page_size: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Results per page' },
      },
    },
    response: responses(
      {
        200: {
          type: 'object',
          properties: {
            count: { type: 'integer' },
            page_result_count: { type: 'integer' },
            next: { type: ['string', 'null'], description: 'Full URL of the next page (carries `_cursor`)' },
            results: { type: 'array', items: open({ id: { type: 'integer' }, verbose_verdict: { type: ['string', 'null'] }, created_on_elastic_at: { type: ['string', 'null'] }, _index: { type: 'string' } }) },
          },
        },
      },
      [400, 403, 429],
    ),
  },
  deleteScan: {
    summary: 'Delete a scan tree (its sample goes when no scan refers to it)',
    tags: ['scans'],
    params: idParams('scan'),
    response: responses({ 204: { type: 'null', description: 'Deleted' } }, [403, 404, 429]),
  },
  health: {
    summary: 'Health check (no token needed)',
    tags: ['health'],
    security: [],
    response: {
      200: open({
        hap: { type: 'string', enum: ['on', 'off'], description: 'ClamAV' },
        static: { type: 'string', enum: ['on', 'off'], description: 'Built-in engines' },
        status: { type: 'string', enum: ['on', 'off'], description: 'Database and accepting requests' },
        engines: open({}),
      }),
    },
  },
} satisfies Record<string, JsonSchema>;
