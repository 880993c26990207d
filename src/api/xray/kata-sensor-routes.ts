/**
 * Administration of KATA sensors in the X-Ray dialect (an Administrator's token):
 *
 * - `GET  /api/v1/kata/sensors/[?state=pending|approved|rejected]`: sensors and integration requests
 * - `GET  /api/v1/kata/sensors/<sensorId>/`
 * - `POST /api/v1/kata/sensors/<sensorId>/approve` `{organization_id?}` or `{organization?: name}`
 * - `POST /api/v1/kata/sensors/<sensorId>/reject` (also revokes an approved sensor)
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { XrayOptions } from './plugin.ts';
import type { SensorInfo, SensorState } from '../../service/sensor-service.ts';
import { invalid } from '../../service/errors.ts';
import { isoTime } from './mappers.ts';
import { str } from './params.ts';
import { bodyDoc } from './openapi.ts';
import { open, responses } from './schemas.ts';

// Documentation of these routes (the handlers validate, with their own messages).
const sensorDoc = open({ sensor_id: { type: 'string' }, state: { type: 'string', enum: ['pending', 'approved', 'rejected'] }, organization_id: { type: ['integer', 'null'] }, certificate_sha256: { type: ['string', 'null'] } });
const sensorIdDoc = { type: 'object', properties: { sensorId: { type: 'string', description: 'The sensor id the KATA sensor presents' } } };
const doc = (summary: string, extra: Record<string, unknown> = {}) => ({ summary, tags: ['kata sensors'], params: sensorIdDoc, response: responses({ 200: sensorDoc }), ...extra });

const STATES = ['pending', 'approved', 'rejected'];

export async function kataSensorRoutes(api: FastifyInstance, opts: XrayOptions): Promise<void> {
  const sensors = opts.sensors;
  if (!sensors) return;

  api.get('/api/v1/kata/sensors/', { schema: { summary: 'KATA sensors and their integration requests', tags: ['kata sensors'], querystring: { type: 'object', properties: { state: { description: 'pending, approved or rejected' } } }, response: responses({ 200: open({ count: { type: 'integer' }, results: { type: 'array', items: sensorDoc } }) }, [400, 403, 429]) } }, async (req: FastifyRequest<{ Querystring: Record<string, unknown> }>) => {
    const state = str(req.query.state);
    if (state !== undefined && !STATES.includes(state)) throw invalid('state', `one of ${STATES.join(', ')}`);
    const list = await sensors.list({ principal: req.principal! }, state as SensorState | undefined);
    return { count: list.length, results: list.map(sensorBody) };
  });

  api.get('/api/v1/kata/sensors/:sensorId/', { schema: doc('One KATA sensor') }, async (req: FastifyRequest<{ Params: { sensorId: string } }>) => {
    return sensorBody(await sensors.get({ principal: req.principal! }, req.params.sensorId));
  });

  api.post('/api/v1/kata/sensors/:sensorId/approve', { schema: doc('Approve a sensor\'s integration request, filing its scans under an organization'), config: bodyDoc({ organization_id: { type: 'integer', description: 'Organization (default: the token\'s)' }, organization: { type: 'string', description: 'Organization by name' } }) }, async (req: FastifyRequest<{ Params: { sensorId: string } }>) => {
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, unknown>;
    const rawId = str(body.organization_id);
    if (rawId !== undefined && !/^\d{1,15}$/.test(rawId)) throw invalid('organization_id', 'expected an integer');
    const org = rawId !== undefined ? { id: Number(rawId) } : str(body.organization) !== undefined ? { name: str(body.organization) } : {};
    return sensorBody(await sensors.approve({ principal: req.principal! }, req.params.sensorId, org));
  });

  api.post('/api/v1/kata/sensors/:sensorId/reject', { schema: doc('Reject a sensor (also revokes an approved one)') }, async (req: FastifyRequest<{ Params: { sensorId: string } }>) => {
    return sensorBody(await sensors.reject({ principal: req.principal! }, req.params.sensorId));
  });
}

function sensorBody(s: SensorInfo): Record<string, unknown> {
  return {
    sensor_id: s.sensorId,
    state: s.state,
    organization_id: s.orgId,
    certificate_sha256: s.certFingerprint,
    certificate_subject: s.certSubject,
    instance_ids: s.instanceIds,
    first_address: s.firstAddress,
    created_at: isoTime(s.createdAt),
    last_seen_at: isoTime(s.lastSeenAt),
    decided_by: s.decidedBy,
    decided_at: isoTime(s.decidedAt),
  };
}
