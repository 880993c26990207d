/**
 * 0007: KATA sensors (integration requests and approved sensors, bound to a client
 * certificate) and the mapping of a sensor's own scan ids to Verdict's scan ids.
 */
import type { Kysely, Migration } from 'kysely';
import { columnTypes, type Dialect } from './types.ts';

export function kata(dialect: Dialect): Migration {
  const { idType, id, big } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('kata_sensors')
        .addColumn('id', idType, id)
        /** The sensorId the external system sends in the URL. */
        .addColumn('sensor_id', 'text', (c) => c.notNull().unique())
        /** null while the integration request is pending. */
        .addColumn('org_id', big, (c) => c.references('organizations.id'))
        .addColumn('state', 'text', (c) => c.notNull())
        /** SHA-256 of the client certificate seen at first contact, lowercase hex. */
        .addColumn('cert_fingerprint', 'text', (c) => c.notNull())
        .addColumn('cert_subject', 'text')
        /** JSON array of sensorInstanceId values seen. */
        .addColumn('instance_ids', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('first_address', 'text')
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('last_seen_at', big)
        .addColumn('decided_by', 'text')
        .addColumn('decided_at', big)
        .execute();
      await db.schema
        .createTable('kata_scans')
        .addColumn('id', idType, id)
        .addColumn('sensor_row_id', big, (c) => c.notNull().references('kata_sensors.id'))
        /** The scanId the sensor generated; null when it sent none (results not viewable). */
        .addColumn('client_scan_id', 'text')
        .addColumn('instance_id', 'text')
        .addColumn('scan_id', big, (c) => c.notNull())
        .addColumn('created_at', big, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('kata_scans_client').on('kata_scans').columns(['sensor_row_id', 'client_scan_id']).unique().execute();
      await db.schema.createIndex('kata_scans_scan').on('kata_scans').column('scan_id').execute();
    },
  };
}
