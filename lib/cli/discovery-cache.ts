/**
 * The aws backend's discovery (who the credentials are: STS and the IAM user's group tag; where
 * the deployment is: the SSM parameters) kept for a short while in a file, so back-to-back
 * commands (`status`, `jobs`, `logs`) skip three AWS services and the SDK clients they need.
 *
 * One file per access key, endpoint and region (named by a hash of them; the key itself is never
 * written), under `$XDG_CACHE_HOME/neurocaas/aws-discovery/` (default `~/.cache/...`), mode 0600 in
 * a 0700 folder, written whole and renamed into place. It holds a user name, a group and bucket
 * names: nothing that grants access. Safe because it is short-lived and keyed by the credentials:
 * new credentials, another endpoint or region miss it; an analysis missing from it is looked up
 * again (lib/client/aws-backend.ts). A group the admin changes is seen when the entry expires.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as z from 'zod';
import type { CachedDiscovery, DiscoveryCache } from '../client/aws-backend.js';
import { UsageError } from '../core/errors.js';

/** How long an entry is used: 300 s (NEUROCAAS_DISCOVERY_TTL_SECONDS; 0 turns the cache off). */
export const DEFAULT_DISCOVERY_TTL_SECONDS = 300;

const EntrySchema = z.object({
  schemaVersion: z.literal(1),
  writtenAtMs: z.number(),
  user: z.string().min(1),
  group: z.string().min(1),
  region: z.string().min(1),
  analyses: z.record(z.string(), z.string()),
});

export interface FileDiscoveryCacheOptions {
  /** The folder of the entries. */
  dir: string;
  /** Identifies the credentials and where they are used (access key id, endpoint, region). */
  key: () => Promise<string>;
  ttlMs: number;
  nowMs?: () => number;
}

export class FileDiscoveryCache implements DiscoveryCache {
  private readonly nowMs: () => number;

  constructor(private readonly options: FileDiscoveryCacheOptions) {
    this.nowMs = options.nowMs ?? (() => Date.now());
  }

  async read(): Promise<CachedDiscovery | undefined> {
    const file = await this.file();
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return undefined;
    }
    const entry = EntrySchema.safeParse(value);
    if (!entry.success) return undefined;
    const age = this.nowMs() - entry.data.writtenAtMs;
    if (age < 0 || age >= this.options.ttlMs) return undefined;
    const { user, group, region, analyses } = entry.data;
    return { user, group, region, analyses };
  }

  async write(found: CachedDiscovery): Promise<void> {
    const file = await this.file();
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temp, JSON.stringify({ schemaVersion: 1, writtenAtMs: this.nowMs(), ...found }), { mode: 0o600 });
    await rename(temp, file);
    await this.prune();
  }

  private async file(): Promise<string> {
    const digest = createHash('sha256').update(await this.options.key()).digest('hex').slice(0, 32);
    return join(this.options.dir, `${digest}.json`);
  }

  /** Entries of other credentials long expired (and stray temporary files) go: the folder stays small. */
  private async prune(): Promise<void> {
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    await Promise.all(
      names.map(async (name) => {
        const path = join(this.options.dir, name);
        const info = await stat(path).catch(() => undefined);
        if (info && this.nowMs() - info.mtimeMs > Math.max(this.options.ttlMs, 60_000) * 2) await rm(path, { force: true });
      }),
    );
  }
}

/** The cache for the CLI's aws backend from its environment; undefined when turned off. */
export function discoveryCacheFor(env: NodeJS.ProcessEnv, key: () => Promise<string>): FileDiscoveryCache | undefined {
  const raw = env['NEUROCAAS_DISCOVERY_TTL_SECONDS'];
  const seconds = raw === undefined || raw === '' ? DEFAULT_DISCOVERY_TTL_SECONDS : Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new UsageError(`NEUROCAAS_DISCOVERY_TTL_SECONDS must be a number of seconds (0 turns the discovery cache off), got "${raw}"`);
  }
  if (seconds === 0) return undefined;
  const base = env['XDG_CACHE_HOME'] || join(env['HOME'] || homedir(), '.cache');
  return new FileDiscoveryCache({ dir: join(base, 'neurocaas', 'aws-discovery'), key, ttlMs: seconds * 1000 });
}
