/**
 * The `verdict` command line: serve, scan, org create, token create, config.
 */
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, ConfigError, envName, optionPaths } from '../config/load.ts';
import type { ConfigInput } from '../config/schema.ts';
import { createVerdict } from '../app.ts';
import { openDatabase } from '../store/database.ts';
import { Store } from '../store/store.ts';
import { LocalBlobStore } from '../store/blobs.ts';
import { DbQueue } from '../queue/db-queue.ts';
import { ScanService, type Role } from '../service/scan-service.ts';
import { VerdictError } from '../service/errors.ts';
import { runScanCommand } from './scan.ts';
import { runUserCommand } from './user.ts';
import { runSensorCommand } from './sensor.ts';

const USAGE = `usage: verdict <command> [options]

commands:
  serve [--port N] [--host H] [--data-dir D] [--no-workers]
                                 run the HTTP API and the scan workers (--no-workers: API only)
  worker [--port N] [--concurrency N]
                                 scan only (scale mode): take jobs from the shared queue,
                                 deliver callbacks; the port answers /healthz, /readyz, /metrics
  scan <file|dir|url>... [--json] [--password P] [--concurrency N]
                                 scan objects in-process, no server; exit 0 all clean,
                                 1 something detected, 2 error
  org create NAME [--parent NAME]
  token create --org NAME [--role Administrator|Admin|Analyst|Viewer] [--name LABEL]
  user create --org NAME --email E --name N [--role R] [--password]
                                 add a user (--password: read from the first line of stdin)
  user token --email E           a new API token acting as that user (shown once)
  config [--doc]                 print the effective configuration (or the option table)
  sensor list [--state S] [--json] | sensor approve ID [--org NAME] | sensor reject ID
                                 KATA sensors' integration requests

Every option can also be set in verdict.config.json or as VERDICT_<OPTION> (see README).`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'worker':
      return serve(rest, 'worker');
    case 'scan':
      return runScanCommand(rest);
    case 'org':
      return orgCommand(rest);
    case 'token':
      return tokenCommand(rest);
    case 'user':
      return runUserCommand(rest);
    case 'sensor':
      return runSensorCommand(rest);
    case 'config':
      return configCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`verdict: unknown command ${cmd}\n\n${USAGE}`);
      return 2;
  }
}

async function serve(args: string[], role: 'serve' | 'worker' = 'serve'): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
      'no-workers': { type: 'boolean' },
      concurrency: { type: 'string' },
    },
  });
  const overrides: ConfigInput = {};
  if (values.host) overrides.host = values.host;
  if (values['data-dir']) overrides.dataDir = values['data-dir'];
  if (values.concurrency) overrides.workers = Number(values.concurrency);
  let config = loadConfig(overrides);
  if (role === 'worker') {
    if (config.workers < 1) throw new ConfigError('a worker needs workers >= 1');
    config = { ...config, port: values.port ? Number(values.port) : config.workerPort };
  } else if (values.port) config = { ...config, port: Number(values.port) };
  const verdict = await createVerdict(config, role === 'worker' ? { workers: true, api: false } : { workers: values['no-workers'] ? false : undefined });
  const url = await verdict.listen();
  if (verdict.firstToken) {
    const line = '='.repeat(72);
    process.stdout.write(
      `\n${line}\nFirst start: organization "${config.defaultOrgName}" and its administrator token were created.\n` +
        `Administrator API token (shown once, only its hash is stored):\n\n    ${verdict.firstToken}\n\n` +
        `Use it as:  curl -H 'Authorization: Token ${verdict.firstToken}' ${url}/v1/health_check\n${line}\n\n`,
    );
  }
  const engines = verdict.engines();
  verdict.log.info({ role, url, dataDir: config.dataDir, engines: Object.fromEntries(Object.entries(engines).map(([k, v]) => [k, v.state])) }, 'Verdict is serving');
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    verdict.log.info({ signal }, 'shutting down');
    await verdict.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  return new Promise<number>(() => {});
}

async function adminService(): Promise<{ service: ScanService; close: () => Promise<void> }> {
  const config = loadConfig();
  const db = await openDatabase(config);
  const store = new Store(db.db, db);
  const service = new ScanService({ config, store, blobs: new LocalBlobStore(path.join(config.dataDir, 'blobs')), queue: new DbQueue(db.db), log: pino({ level: 'silent' }) });
  await service.bootstrap().then((r) => {
    if (r.token) console.error(`note: this data directory was new; an administrator token was created for organization "${r.org.name}":\n  ${r.token}`);
  });
  return { service, close: () => db.close() };
}

async function orgCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { parent: { type: 'string' } } });
  if (positionals[0] !== 'create' || !positionals[1]) {
    console.error('usage: verdict org create NAME [--parent NAME]');
    return 2;
  }
  const { service, close } = await adminService();
  try {
    const org = await service.createOrg(positionals[1], values.parent);
    console.log(JSON.stringify({ id: org.id, name: org.name, parent_id: org.parent_id }));
    return 0;
  } finally {
    await close();
  }
}

async function tokenCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { org: { type: 'string' }, role: { type: 'string' }, name: { type: 'string' } } });
  if (positionals[0] !== 'create' || !values.org) {
    console.error('usage: verdict token create --org NAME [--role Administrator|Admin|Analyst|Viewer] [--name LABEL]');
    return 2;
  }
  const roles: Role[] = ['Administrator', 'Admin', 'Analyst', 'Viewer'];
  const role = (values.role ?? 'Administrator') as Role;
  if (!roles.includes(role)) {
    console.error(`verdict: --role must be one of ${roles.join(', ')}`);
    return 2;
  }
  const { service, close } = await adminService();
  try {
    const { token, orgId } = await service.createToken(values.org, role, values.name ?? 'api');
    console.error(`token for organization ${values.org} (id ${orgId}), role ${role}; it is shown once:`);
    console.log(token);
    return 0;
  } finally {
    await close();
  }
}

async function configCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { doc: { type: 'boolean' } } });
  if (values.doc) {
    console.log('| option | environment variable | default | meaning |\n| --- | --- | --- | --- |');
    const defaults = loadConfig({}, {}, os.tmpdir()) as unknown as Record<string, unknown>;
    for (const { path: p, schema } of optionPaths()) {
      let d: unknown = defaults;
      for (const k of p) d = (d as Record<string, unknown> | undefined)?.[k];
      if (p.join('.') === 'dataDir') d = './data';
      if (p.join('.') === 'workers') d = 'number of CPUs';
      if (p.join('.') === 'yaraThreads') d = 'number of CPUs, at most 4';
      const shown = d === undefined ? '(unset)' : Array.isArray(d) ? d.join(',') || '(empty)' : typeof d === 'object' && d !== null ? (Object.keys(d).length ? JSON.stringify(d) : '(none)') : String(d);
      console.log(`| \`${p.join('.')}\` | \`${envName(p)}\` | \`${shown}\` | ${schema.description ?? ''} |`);
    }
    return 0;
  }
  const cfg = loadConfig();
  console.log(JSON.stringify({ ...cfg, adminToken: cfg.adminToken ? '(set)' : undefined }, null, 2));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    if (e instanceof ConfigError || e instanceof VerdictError) console.error(`verdict: ${e.message}`);
    else console.error(e);
    process.exitCode = 2;
  },
);

void fs;
