/**
 * Named storages: `local` (Verdict's own blob store, always present) and the S3-compatible
 * storages of the `storages` option. Built once in the composition root; services look
 * storages up by name.
 *
 * @example
 * const storages = new Storages(localBlobs, config.storages, { guard, tmpDir });
 * storages.s3('archive')?.openKey('inbox/report.pdf');
 */
import type { S3StorageConfig } from '../config/schema.ts';
import type { EgressGuard } from '../net/egress-guard.ts';
import type { BlobStore } from './blobs.ts';
import { S3BlobStore } from './s3-blobs.ts';

export const LOCAL_STORAGE = 'local';

export class Storages {
  private readonly byName = new Map<string, S3BlobStore>();

  constructor(
    readonly local: BlobStore,
    configs: Record<string, S3StorageConfig>,
    deps: { guard: EgressGuard; tmpDir: string },
  ) {
    for (const [name, c] of Object.entries(configs)) this.byName.set(name, new S3BlobStore(c, deps));
  }

  /** Names of the S3 storages, in configuration order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  s3(name: string): S3BlobStore | undefined {
    return this.byName.get(name);
  }

  /** The S3 storage holding `bucket` (the first one when several name it). */
  byBucket(bucket: string): { name: string; store: S3BlobStore } | undefined {
    for (const [name, store] of this.byName) if (store.bucket === bucket) return { name, store };
    return undefined;
  }

  /** The first configured S3 storage: the default of the CSS "existing object" calls. */
  first(): { name: string; store: S3BlobStore } | undefined {
    const [entry] = this.byName;
    return entry ? { name: entry[0], store: entry[1] } : undefined;
  }

  close(): void {
    for (const s of this.byName.values()) s.close();
  }
}
