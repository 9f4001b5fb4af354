import { ConcurrentUpdateError, NeuroCaasError } from '../core/errors.js';
import { summarizeJob } from '../core/job-machine.js';
import type { ClaimResult, JobRecord, JobStore, JobSummary } from '../ports.js';
import type { LeaseOwner, StateDb } from './state-db.js';

/** A write of a job whose lease this process no longer holds: another process owns the job now. */
export class LeaseLostError extends NeuroCaasError {
  constructor(message: string) {
    super('LeaseLost', message);
  }
}

/**
 * Jobs in the local state database (lib/local/state-db.ts). Every update is a compare-and-swap
 * on the record's version inside one SQLite transaction. Given an owner, the store also makes
 * the job's lease part of those transactions: a claim creates the record and takes the lease
 * at once, and an update is refused unless the owner still holds the lease, so one job never
 * has two writers.
 */
export class LocalJobStore implements JobStore {
  constructor(
    private readonly state: StateDb,
    private readonly owner?: LeaseOwner,
    private readonly clock: { nowMs(): number } = { nowMs: () => Date.now() },
  ) {}

  async claimSubmission(idempotencyKey: string, jobId: string): Promise<ClaimResult> {
    const { db } = this.state;
    return this.state.transaction(() => {
      const existing = db.prepare<[string], { job_id: string }>('SELECT job_id FROM claims WHERE idempotency_key = ?').get(idempotencyKey);
      if (existing) return { claimed: false as const, jobId: existing.job_id };
      db.prepare('INSERT INTO claims (idempotency_key, job_id) VALUES (?, ?)').run(idempotencyKey, jobId);
      return { claimed: true as const };
    });
  }

  async claimAndCreate(idempotencyKey: string, record: JobRecord): Promise<ClaimResult> {
    const { db } = this.state;
    return this.state.transaction(() => {
      const existing = db.prepare<[string], { job_id: string }>('SELECT job_id FROM claims WHERE idempotency_key = ?').get(idempotencyKey);
      if (existing) return { claimed: false as const, jobId: existing.job_id };
      db.prepare('INSERT INTO claims (idempotency_key, job_id) VALUES (?, ?)').run(idempotencyKey, record.jobId);
      this.insert(record);
      if (this.owner) this.state.writeLease(record.jobId, this.owner, this.clock.nowMs());
      return { claimed: true as const };
    });
  }

  async create(record: JobRecord): Promise<void> {
    this.state.transaction(() => this.insert(record));
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    const row = this.state.db.prepare<[string], { record: string }>('SELECT record FROM jobs WHERE job_id = ?').get(jobId);
    return row ? (JSON.parse(row.record) as JobRecord) : undefined;
  }

  async update(record: JobRecord): Promise<void> {
    const { db } = this.state;
    this.state.transaction(() => {
      if (this.owner) {
        const lease = this.state.lease(record.jobId);
        if (lease && lease.owner_token !== this.owner.token) {
          throw new LeaseLostError(`job ${record.jobId} is run by another neurocaas process (pid ${lease.owner_pid} on ${lease.owner_host}); this one no longer writes it`);
        }
      }
      const result = db
        .prepare('UPDATE jobs SET version = ?, phase = ?, updated_at_ms = ?, summary = ?, record = ? WHERE job_id = ? AND version = ?')
        .run(record.version, record.state.phase, record.updatedAtMs, JSON.stringify(summarizeJob(record.state, record.updatedAtMs)), JSON.stringify(record), record.jobId, record.version - 1);
      if (result.changes === 1) return;
      const stored = db.prepare<[string], { version: number }>('SELECT version FROM jobs WHERE job_id = ?').get(record.jobId);
      throw new ConcurrentUpdateError(
        stored === undefined
          ? `job ${record.jobId} does not exist`
          : `job ${record.jobId} changed underneath (stored version ${stored.version}, writing ${record.version})`,
      );
    });
  }

  /** Every job, newest first; reads only the stored summaries, never the whole records. */
  async list(): Promise<JobSummary[]> {
    return this.state.db
      .prepare<[], { summary: string }>('SELECT summary FROM jobs ORDER BY created_at_ms DESC, job_id DESC')
      .all()
      .map((row) => JSON.parse(row.summary) as JobSummary);
  }

  /** Ids of jobs that are not finished (neither DONE nor REJECTED), oldest first: what the reaper looks at. */
  async unfinished(): Promise<string[]> {
    return this.state.db
      .prepare<[], { job_id: string }>("SELECT job_id FROM jobs WHERE phase NOT IN ('DONE', 'REJECTED') ORDER BY created_at_ms, job_id")
      .all()
      .map((row) => row.job_id);
  }

  /** Finished jobs whose outbox still holds effects (a last write failed: end.txt, the settlement). */
  async finishedWithPendingEffects(): Promise<string[]> {
    return this.state.db
      .prepare<[], { job_id: string }>(
        "SELECT job_id FROM jobs WHERE phase IN ('DONE', 'REJECTED') AND json_array_length(json_extract(record, '$.outbox')) > 0 ORDER BY created_at_ms, job_id",
      )
      .all()
      .map((row) => row.job_id);
  }

  private insert(record: JobRecord): void {
    const result = this.state.db
      .prepare(
        `INSERT INTO jobs (job_id, bucket, submission_key, version, phase, created_at_ms, updated_at_ms, summary, record)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING`,
      )
      .run(
        record.jobId,
        record.bucket,
        record.submissionKey,
        record.version,
        record.state.phase,
        record.state.createdAtMs,
        record.updatedAtMs,
        JSON.stringify(summarizeJob(record.state, record.updatedAtMs)),
        JSON.stringify(record),
      );
    if (result.changes === 0) throw new ConcurrentUpdateError(`job ${record.jobId} already exists`);
  }
}
