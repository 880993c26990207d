/**
 * The OpenAPI 3 document of the X-Ray dialect, built by @fastify/swagger from the route schemas
 * that validate the requests: `/api/openapi.json` (the document) and `/api/docs` (Swagger UI).
 * Register before the routes (it collects them as they are added). Neither needs a token.
 */
import fs from 'node:fs';
import type { FastifyInstance, FastifySchema } from 'fastify';
import swagger, { type SwaggerTransform } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { JsonSchema } from './schemas.ts';

const VERSION = (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export async function registerOpenApi(app: FastifyInstance, version = VERSION): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Verdict — Perception Point X-Ray compatible API',
        version,
        description:
          'Scan files and URLs, read verdicts and evidence, manage organizations and users. Every call needs `Authorization: Token <token>` ' +
          '(or `Bearer`), except the health check and these documents. Errors follow Django REST Framework: `{"detail": …}`, and a 400 names ' +
          'the bad field as a key. Every path also answers without its trailing slash. 429 with `Retry-After` beyond the token\'s budget per minute.',
      },
      components: { securitySchemes: { token: { type: 'apiKey', in: 'header', name: 'Authorization', description: '`Token <token>`' } } },
      security: [{ token: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

/**
 * Documents a request body read as a multipart stream (never buffered, so never validated by a
 * body schema): the `swaggerTransform` route option adds the `multipart/form-data` media type to
 * the document only.
 */
export function multipartDoc(properties: Record<string, JsonSchema>, required: string[] = []): { swaggerTransform: SwaggerTransform } {
  return {
    swaggerTransform: ({ schema, url }) => {
      const body = (schema.body ?? {}) as { content?: Record<string, unknown> };
      const multipart = { schema: { type: 'object', required, properties } };
      return { url, schema: { ...schema, body: { content: { 'multipart/form-data': multipart, ...(body.content ?? {}) } } } as FastifySchema };
    },
  };
}

/**
 * Documents a request body that the route's handler validates itself (in any of the usual media
 * types), without adding a validating body schema: for routes whose own checks and messages must
 * stay as they are.
 */
export function bodyDoc(properties: Record<string, JsonSchema>, required: string[] = []): { swaggerTransform: SwaggerTransform } {
  const schema = { type: 'object', required, properties };
  return {
    swaggerTransform: ({ schema: s, url }) => ({
      url,
      schema: { ...s, body: { content: { 'application/json': { schema }, 'application/x-www-form-urlencoded': { schema }, 'multipart/form-data': { schema } } } } as FastifySchema,
    }),
  };
}
