/**
 * Loads the configuration: defaults ← config file ← environment ← explicit overrides.
 * The file is `VERDICT_CONFIG` or `./verdict.config.json` when it exists.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { configSchema, type Config, type ConfigInput } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** `limits.maxDepth` → `VERDICT_LIMITS_MAX_DEPTH`. */
export function envName(optionPath: string[]): string {
  return 'VERDICT_' + optionPath.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** Every option path with its schema, for env mapping and documentation. */
export function optionPaths(schema: z.ZodObject = configSchema, prefix: string[] = []): { path: string[]; schema: z.ZodType }[] {
  const out: { path: string[]; schema: z.ZodType }[] = [];
  for (const [key, value] of Object.entries(schema.shape)) {
    const inner = unwrap(value as z.ZodType);
    if (inner instanceof z.ZodObject) out.push(...optionPaths(inner, [...prefix, key]));
    else out.push({ path: [...prefix, key], schema: value as z.ZodType });
  }
  return out;
}

function unwrap(t: z.ZodType): z.ZodType {
  let cur: z.ZodType = t;
  for (let i = 0; i < 5; i++) {
    const def = (cur as unknown as { def?: { innerType?: z.ZodType; type?: string } }).def;
    if (def?.innerType && (def.type === 'default' || def.type === 'optional')) cur = def.innerType;
    else break;
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, p: string[], value: unknown): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) {
    if (typeof cur[k] !== 'object' || cur[k] === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[p[p.length - 1]] = value;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const av = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && av && typeof av === 'object' && !Array.isArray(av)
        ? deepMerge(av as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export function loadConfig(
  overrides: ConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Config {
  let fileValues: Record<string, unknown> = {};
  const file = env.VERDICT_CONFIG ?? path.join(cwd, 'verdict.config.json');
  if (fs.existsSync(file)) {
    try {
      fileValues = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError(`config file ${file}: ${(e as Error).message}`);
    }
  } else if (env.VERDICT_CONFIG) {
    throw new ConfigError(`config file ${file} does not exist`);
  }
  const envValues: Record<string, unknown> = {};
  for (const { path: p } of optionPaths()) {
    const v = env[envName(p)];
    if (v !== undefined && v !== '') setPath(envValues, p, v);
  }
  const merged = deepMerge(deepMerge(deepMerge(fileValues, conventionalEnv(env)), envValues), overrides as Record<string, unknown>);
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const msg = parsed.error.issues
      .map((i) => `${i.path.join('.')} (${envName(i.path.map(String))}): ${i.message}`)
      .join('; ');
    throw new ConfigError(`invalid configuration: ${msg}`);
  }
  const cfg = parsed.data;
  cfg.dataDir = path.resolve(cwd, cfg.dataDir);
  return cfg;
}

/**
 * The conventional variables of container platforms (`DATABASE_URL`, `REDIS_URL`, `S3_*`),
 * below Verdict's own `VERDICT_*` ones. `S3_ENDPOINT` with `S3_BUCKET` defines a storage named
 * `s3` and keeps the samples there.
 */
export function conventionalEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.DATABASE_URL) out.databaseUrl = env.DATABASE_URL;
  if (env.REDIS_URL) {
    out.redisUrl = env.REDIS_URL;
    out.queue = 'bullmq';
  }
  if (env.S3_ENDPOINT && env.S3_BUCKET) {
    out.storages = {
      s3: {
        type: 's3',
        endpoint: env.S3_ENDPOINT,
        bucket: env.S3_BUCKET,
        region: env.S3_REGION ?? 'us-east-1',
        accessKeyId: env.S3_ACCESS_KEY_ID ?? env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.S3_SECRET_ACCESS_KEY ?? env.AWS_SECRET_ACCESS_KEY,
        forcePathStyle: env.S3_FORCE_PATH_STYLE !== 'false',
      },
    };
    out.blobStorage = 's3';
  }
  return out;
}
