import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConcurrentUpdateError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { summarizeJob } from '../core/job-machine.js';
import type { ClaimResult, JobRecord, JobStore, JobSummary } from '../ports.js';
import { createFileExclusive, isErrno, readJsonIfExists, withFileLock, writeFileAtomic } from './fs-util.js';
import { readFile, stat } from 'node:fs/promises';

/**
 * Jobs as JSON files under `<root>/state/`. Every update is a compare-and-swap on the record's
 * version under a per-job lock file, so several neurocaas processes can share one root.
 */
export class LocalJobStore implements JobStore {
  private readonly jobsDir: string;
  private readonly claimsDir: string;
  private readonly written = new Map<string, { version: number; size: number; mtimeMs: number }>();

  constructor(stateDir: string) {
    this.jobsDir = join(stateDir, 'jobs');
    this.claimsDir = join(stateDir, 'claims');
  }

  async claimSubmission(idempotencyKey: string, jobId: string): Promise<ClaimResult> {
    const path = join(this.claimsDir, `${sha256Hex(idempotencyKey)}.json`);
    if (await createFileExclusive(path, JSON.stringify({ idempotencyKey, jobId }))) return { claimed: true };
    const existing = JSON.parse(await readFile(path, 'utf8')) as { jobId: string };
    return { claimed: false, jobId: existing.jobId };
  }

  async create(record: JobRecord): Promise<void> {
    if (!(await createFileExclusive(this.pathOf(record.jobId), JSON.stringify(record)))) {
      throw new ConcurrentUpdateError(`job ${record.jobId} already exists`);
    }
    await this.remember(record.jobId, record.version);
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    if (!/^[A-Za-z0-9_.-]+$/.test(jobId)) return undefined;
    return readJsonIfExists<JobRecord>(this.pathOf(jobId));
  }

  async update(record: JobRecord): Promise<void> {
    const path = this.pathOf(record.jobId);
    await withFileLock(`${path}.lock`, async () => {
      const storedVersion = await this.storedVersion(record.jobId);
      if (storedVersion === undefined) throw new ConcurrentUpdateError(`job ${record.jobId} does not exist`);
      if (storedVersion !== record.version - 1) {
        throw new ConcurrentUpdateError(`job ${record.jobId} changed underneath (stored version ${storedVersion}, writing ${record.version})`);
      }
      await writeFileAtomic(path, JSON.stringify(record));
      await this.remember(record.jobId, record.version);
    });
  }

  /**
   * The stored version; when the file is exactly as this process last wrote it (same size and
   * mtime), that version is known without reading and parsing the whole record.
   */
  private async storedVersion(jobId: string): Promise<number | undefined> {
    const known = this.written.get(jobId);
    if (known) {
      const info = await stat(this.pathOf(jobId)).catch(() => undefined);
      if (info && info.size === known.size && info.mtimeMs === known.mtimeMs) return known.version;
    }
    return (await this.get(jobId))?.version;
  }

  private async remember(jobId: string, version: number): Promise<void> {
    const info = await stat(this.pathOf(jobId));
    this.written.set(jobId, { version, size: info.size, mtimeMs: info.mtimeMs });
  }

  async list(): Promise<JobSummary[]> {
    let names: string[];
    try {
      names = await readdir(this.jobsDir);
    } catch (error) {
      // No jobs folder yet: no jobs. Anything else (permissions) is the user's to see.
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const summaries: JobSummary[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const record = await this.get(name.slice(0, -'.json'.length));
      if (record) summaries.push(summarizeJob(record.state, record.updatedAtMs));
    }
    return summaries.sort((a, b) => b.createdAtMs - a.createdAtMs);
  }

  private pathOf(jobId: string): string {
    return join(this.jobsDir, `${jobId}.json`);
  }
}

