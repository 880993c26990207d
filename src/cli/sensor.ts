/**
 * `verdict sensor list|approve|reject`: KATA integration requests, decided by the operator
 * on the data directory of the server (no token needed: whoever runs this owns the data).
 */
import { parseArgs } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../config/load.ts';
import { openDatabase } from '../store/database.ts';
import { Store } from '../store/store.ts';
import { LocalBlobStore } from '../store/blobs.ts';
import { DbQueue } from '../queue/db-queue.ts';
import { ScanService } from '../service/scan-service.ts';
import { SensorService, type SensorInfo, type SensorState } from '../service/sensor-service.ts';

export const SENSOR_USAGE = `usage: verdict sensor list [--state pending|approved|rejected] [--json]
       verdict sensor approve SENSOR_ID [--org NAME]
       verdict sensor reject SENSOR_ID`;

export async function runSensorCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { state: { type: 'string' }, org: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [sub, id] = positionals;
  if (!['list', 'approve', 'reject'].includes(sub ?? '') || (sub !== 'list' && !id)) {
    console.error(SENSOR_USAGE);
    return 2;
  }
  if (values.state !== undefined && !['pending', 'approved', 'rejected'].includes(values.state)) {
    console.error('verdict: --state must be pending, approved or rejected');
    return 2;
  }
  const config = loadConfig();
  const db = await openDatabase(config);
  try {
    const store = new Store(db.db, db);
    const log = pino({ level: 'silent' });
    const scans = new ScanService({ config, store, blobs: new LocalBlobStore(path.join(config.dataDir, 'blobs')), queue: new DbQueue(db.db), log });
    await scans.bootstrap();
    const sensors = new SensorService({ config, store, scans, log });
    const actor = { operator: os.userInfo().username };
    if (sub === 'list') {
      const list = await sensors.list(actor, values.state as SensorState | undefined);
      if (values.json) for (const s of list) console.log(JSON.stringify(s));
      else if (list.length === 0) console.log('no sensors or integration requests');
      else for (const s of list) console.log(line(s));
      return 0;
    }
    const s = sub === 'approve' ? await sensors.approve(actor, id!, values.org !== undefined ? { name: values.org } : {}) : await sensors.reject(actor, id!);
    console.log(line(s));
    return 0;
  } finally {
    await db.close();
  }
}

function line(s: SensorInfo): string {
  const org = s.orgId === null ? '' : ` org=${s.orgId}`;
  const inst = s.instanceIds.length ? ` instances=${s.instanceIds.join(',')}` : '';
  return `${s.sensorId}  ${s.state}${org}  sha256=${s.certFingerprint}${s.certSubject ? `  subject="${s.certSubject}"` : ''}${inst}  since=${new Date(s.createdAt).toISOString()}`;
}
