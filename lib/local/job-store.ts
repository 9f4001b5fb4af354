import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConcurrentUpdateError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import type { ClaimResult, JobRecord, JobStore, JobSummary } from '../ports.js';
import { createFileExclusive, readJsonIfExists, withFileLock, writeFileAtomic } from './fs-util.js';
import { readFile } from 'node:fs/promises';

/**
 * Jobs as JSON files under `<root>/state/`. Every update is a compare-and-swap on the record's
 * version under a per-job lock file, so several neurocaas processes can share one root.
 */
export class LocalJobStore implements JobStore {
  private readonly jobsDir: string;
  private readonly claimsDir: string;

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
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    if (!/^[A-Za-z0-9_.-]+$/.test(jobId)) return undefined;
    return readJsonIfExists<JobRecord>(this.pathOf(jobId));
  }

  async update(record: JobRecord): Promise<void> {
    await withFileLock(`${this.pathOf(record.jobId)}.lock`, async () => {
      const stored = await this.get(record.jobId);
      if (!stored) throw new ConcurrentUpdateError(`job ${record.jobId} does not exist`);
      if (stored.version !== record.version - 1) {
        throw new ConcurrentUpdateError(`job ${record.jobId} changed underneath (stored version ${stored.version}, writing ${record.version})`);
      }
      await writeFileAtomic(this.pathOf(record.jobId), JSON.stringify(record));
    });
  }

  async list(): Promise<JobSummary[]> {
    let names: string[];
    try {
      names = await readdir(this.jobsDir);
    } catch {
      // No jobs folder yet: no jobs.
      return [];
    }
    const summaries: JobSummary[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const record = await this.get(name.slice(0, -'.json'.length));
      if (record) summaries.push(summarizeJob(record));
    }
    return summaries.sort((a, b) => b.createdAtMs - a.createdAtMs);
  }

  private pathOf(jobId: string): string {
    return join(this.jobsDir, `${jobId}.json`);
  }
}

export function summarizeJob(record: JobRecord): JobSummary {
  const state = record.state;
  const summary: JobSummary = {
    jobId: record.jobId,
    analysis: state.analysis,
    group: state.group,
    phase: state.phase,
    createdAtMs: state.createdAtMs,
    updatedAtMs: record.updatedAtMs,
    datasets: state.datasets.map((ds) => ({ name: ds.name, phase: ds.phase })),
  };
  if (state.plan) summary.user = state.plan.user;
  return summary;
}
