import { copyFile, open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnalysisNotFoundError, JobNotFoundError, UsageError } from '../core/errors.js';
import { downloadCreateOnly } from './place-file.js';
import { isJobFinished, jobOutcome, jobSpentUsd, summarizeJob, type JobState } from '../core/job-machine.js';
import { budgetDocument, type BudgetDocument, type Receipt } from '../core/researcher-documents.js';
import { budgetPeriodOf, type UserProfile } from '../core/user.js';
import type { LocalPlatform } from '../../protocols/local-shell.js';
import { ReceiptUnwrittenError } from '../../protocols/driver.js';
import type { ObjectInfo } from '../ports.js';
import { linkJobStructures, type JobStructureFacts } from './job-structures.js';
import type { ClientBackend, ClientObjects, Identity, IdentityRequest, JobDetail, JobListing, JobView, ProgressListener } from './ports.js';
import { join } from 'node:path';

/** How long a job's view waits for the writes its end still has in flight (a failed write is retried later): 2 s. */
const FINAL_WRITES_WAIT_MS = 2_000;

/** How long a local `cancel` waits for the process running the job before the reaper settles it: 15 s. */
const LOCAL_CANCEL_WAIT_MS = 15_000;

/**
 * The client ports on the local backend: the folder-tree buckets, the local job store, the
 * ledger; the protocol runs in this process (`deliver` calls the shared driver).
 */
export class LocalClientBackend implements ClientBackend {
  readonly kind = 'local' as const;
  readonly objects: ClientObjects;
  readonly jobs: JobListing;
  readonly pollMs = 200;
  readonly receiptTimeoutMs = 30_000;
  readonly clock = { nowMs: () => Date.now() };
  /** What this process delivered: a submission's job, or a cancel request's answer whose receipt was not written. */
  private readonly delivered = new Map<string, { jobId: string } | { receipt: Receipt }>();

  constructor(
    readonly platform: LocalPlatform,
    private readonly defaultUser: string | undefined,
  ) {
    this.objects = new LocalClientObjects(platform);
    this.jobs = new LocalJobListing(platform);
  }

  locationOf(bucket: string, key: string): string {
    return this.platform.objects.pathOf(bucket, key);
  }

  async identity(request: IdentityRequest): Promise<Identity> {
    const user = await this.profile(request.user ?? this.defaultUser ?? request.fallbackUser);
    return { user: user.username, group: request.group ?? user.group };
  }

  async scope(request: IdentityRequest): Promise<Identity | undefined> {
    const name = request.user ?? this.defaultUser;
    return name === undefined ? undefined : this.identity(request);
  }

  async analyses(): Promise<{ analysis: string; bucket: string }[]> {
    return (await this.platform.catalog.analyses()).map((analysis) => ({ analysis, bucket: analysis }));
  }

  async bucketOf(analysis: string): Promise<string> {
    const catalog = this.platform.catalog;
    if (!(await catalog.blueprint(analysis))) {
      const available = await catalog.analyses();
      throw new AnalysisNotFoundError(`analysis "${analysis}" not found in ${catalog.blueprintsDir}; available: ${available.join(', ') || 'none'}`);
    }
    // The local layout: one bucket folder per analysis, named after it.
    return analysis;
  }

  async deliver(bucket: string, key: string, kind: 'submission' | 'cancel'): Promise<void> {
    if (kind === 'submission') {
      // Every command is a reaper pass (issue 6): what a dead process left is finished or resumed first.
      await this.platform.reap();
      // The job claimed here or by another process (a `local serve`): its record answers if its receipt cannot.
      const { jobId } = await this.platform.startSubmission(bucket, key);
      this.delivered.set(`${bucket}/${key}`, { jobId });
      return;
    }
    // The protocol decides who may cancel; the platform passes the cancel to the process that runs the job.
    let receipt: Receipt;
    try {
      receipt = await this.platform.driver.cancelRequest(bucket, key, { apply: (jobId, reason) => this.platform.cancel(jobId, reason) });
    } catch (error) {
      // Decided (and applied) all the same: the answer is kept here for the one waiting for it.
      if (!(error instanceof ReceiptUnwrittenError)) throw error;
      this.platform.reportFailure(error.receipt.jobId || key, error);
      receipt = error.receipt;
      this.delivered.set(`${bucket}/${key}`, { receipt });
    }
    if (receipt.outcome !== 'accepted') return;
    // The process that runs the job settles it as its machines exit; an orphan is settled by the reaper.
    const deadline = Date.now() + LOCAL_CANCEL_WAIT_MS;
    let state = (await this.platform.jobs.get(receipt.jobId))?.state;
    while (state && !isJobFinished(state) && Date.now() < deadline) {
      await sleep(100);
      state = (await this.platform.jobs.get(receipt.jobId))?.state;
    }
    if (state && !isJobFinished(state)) await this.platform.reap();
  }

  async answerOf(bucket: string, requestKey: string): Promise<Receipt | undefined> {
    const delivered = this.delivered.get(`${bucket}/${requestKey}`);
    if (!delivered) return undefined;
    if ('receipt' in delivered) return delivered.receipt;
    const found = await this.platform.driver.receiptOf(delivered.jobId);
    return found && found.receipt.submissionKey === requestKey ? found.receipt : undefined;
  }

  async budget(identity: Identity): Promise<BudgetDocument> {
    const profile = await this.profile(identity.user);
    const nowMs = this.clock.nowMs();
    const period = budgetPeriodOf(profile, nowMs);
    const entries = await this.platform.ledger.entries(profile.username, period);
    const analyses = new Map<string, string>();
    for (const entry of entries) {
      const record = await this.platform.jobs.get(entry.jobId);
      if (record) analyses.set(entry.jobId, record.state.analysis);
    }
    return budgetDocument({ user: profile.username, group: profile.group, period, budgetUsd: profile.budgetUsd, entries, nowMs, analysisOf: (jobId) => analyses.get(jobId) });
  }

  async stop(reason: string): Promise<void> {
    await this.platform.cancelOwned(reason);
  }

  killNow(): void {
    this.platform.machines.killOwnedNow();
  }

  async close(): Promise<void> {
    await this.platform.close();
  }

  private async profile(username: string | undefined): Promise<UserProfile> {
    const catalog = this.platform.catalog;
    if (username !== undefined) {
      const profile = await catalog.user(username);
      if (!profile) throw new UsageError(`user "${username}" has no profile ${join(catalog.usersDir, `${username}.json`)}; ask an admin to add one`);
      return profile;
    }
    const all = await catalog.allUsers();
    if (all.length === 1) return all[0] as UserProfile;
    if (all.length === 0) throw new UsageError(`no user profiles in ${catalog.usersDir}; add one (see docs/admin-guide.md) or pass --users DIR`);
    throw new UsageError(`several user profiles in ${catalog.usersDir} (${all.map((u) => u.username).join(', ')}); choose one with --user NAME`);
  }
}

class LocalClientObjects implements ClientObjects {
  constructor(private readonly platform: LocalPlatform) {}

  head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    return this.platform.objects.head(bucket, key);
  }

  async read(bucket: string, key: string, fromByte = 0, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer | undefined> {
    let handle;
    try {
      handle = await open(this.platform.objects.pathOf(bucket, key), 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw error;
    }
    try {
      const { size } = await handle.stat();
      if (size <= fromByte) return Buffer.alloc(0);
      const buffer = Buffer.alloc(Math.min(size - fromByte, maxBytes));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, fromByte);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    return this.platform.objects.list(bucket, prefix);
  }

  async write(bucket: string, key: string, body: string): Promise<void> {
    await this.platform.objects.put(bucket, key, body);
  }

  sha256(bucket: string, key: string): Promise<string | undefined> {
    return this.platform.objects.sha256(bucket, key);
  }

  async upload(bucket: string, key: string, file: string, options: { sha256: string; sizeBytes: number; onProgress?: ProgressListener }): Promise<void> {
    // Streamed (or reflinked) through the bucket's staging area in constant memory, whatever the size.
    const { info } = await this.platform.objects.stageFile(bucket, key, file);
    options.onProgress?.(info.size, options.sizeBytes);
  }

  async download(bucket: string, key: string, file: string, options: { onProgress?: ProgressListener } = {}): Promise<void> {
    // Create-only through this process's temp: a file that appeared at `file` meanwhile is never replaced.
    await downloadCreateOnly(file, (temp) => copyFile(this.platform.objects.pathOf(bucket, key), temp));
    const info = await this.platform.objects.head(bucket, key);
    options.onProgress?.(info?.size ?? 0, info?.size ?? 0);
  }
}

class LocalJobListing implements JobListing {
  constructor(private readonly platform: LocalPlatform) {}

  /** Reaps first: a job whose neurocaas process died is cancelled and settled before it is shown. */
  async list(scope: Identity | undefined): Promise<{ jobs: JobView[]; notices: string[] }> {
    const reaped = await this.platform.reap();
    const notices = reaped.jobsRecovered.map((jobId) => `job ${jobId} had lost its neurocaas process; it was cancelled and settled`);
    const jobs: JobView[] = [];
    const facts = new Map<string, JobStructureFacts>();
    const nowMs = Date.now();
    for (const summary of await this.platform.jobs.list()) {
      if (scope && summary.group !== scope.group) continue;
      const record = await this.platform.jobs.get(summary.jobId);
      if (!record) {
        jobs.push({ ...summary, outcome: 'RUNNING' });
        continue;
      }
      const { state } = record;
      const view: JobView = { ...summary, outcome: jobOutcome(state), datasets: state.datasets.map(datasetView) };
      if (state.plan) view.costUsd = state.spentUsd ?? jobSpentUsd(state, nowMs);
      jobs.push(view);
      const chain = state.plan?.chain;
      if (chain || state.followOns) {
        facts.set(state.jobId, {
          ...(chain?.parent ? { parentJobId: chain.parent.jobId } : {}),
          ...(chain ? { stage: chain.stage, plannedNext: chain.next.map((stage) => ({ analysis: stage.analysis, jobs: stage.jobs })) } : {}),
          nextJobIds: (state.followOns ?? []).map((f) => f.jobId),
        });
      }
    }
    return { jobs: linkJobStructures(jobs, facts), notices };
  }

  async get(jobId: string, scope: Identity | undefined): Promise<JobDetail> {
    let record = await this.platform.jobs.get(jobId);
    // A job's state says DONE a moment before its last writes (certificate, provenance, end.txt)
    // land: wait for them, bounded, so whoever follows the job sees them all when it ends.
    const until = Date.now() + FINAL_WRITES_WAIT_MS;
    while (record && isJobFinished(record.state) && record.outbox.length > 0 && Date.now() < until) {
      await sleep(20);
      record = await this.platform.jobs.get(jobId);
    }
    if (!record || (scope && record.state.group !== scope.group)) {
      const recent = (await this.platform.jobs.list())
        .filter((job) => !scope || job.group === scope.group)
        .slice(0, 5)
        .map((job) => job.jobId);
      const where = scope ? `in group "${scope.group}" under ${this.platform.root}` : `under ${this.platform.root}`;
      throw new JobNotFoundError(`job "${jobId}" not found ${where}; recent jobs: ${recent.join(', ') || 'none'} (see "neurocaas jobs")`);
    }
    return detailOf(record.state, record.bucket, record.updatedAtMs, Date.now());
  }
}

function datasetView(ds: JobState['datasets'][number]): JobView['datasets'][number] {
  return { name: ds.name, phase: ds.phase, ...(ds.role === undefined ? {} : { role: ds.role }), ...(ds.reason === undefined ? {} : { reason: ds.reason }) };
}

function detailOf(state: JobState, bucket: string, updatedAtMs: number, nowMs: number): JobDetail {
  const summary = summarizeJob(state, updatedAtMs);
  const detail: JobDetail = {
    ...summary,
    bucket,
    outcome: jobOutcome(state),
    datasets: state.datasets.map((ds) => ({
      ...datasetView(ds),
      ...(ds.exitCode === undefined ? {} : { exitCode: ds.exitCode }),
      ...(ds.instanceId === undefined ? {} : { instanceId: ds.instanceId }),
    })),
  };
  if (state.rejection) detail.rejection = state.rejection;
  if (state.plan) {
    detail.costUsd = state.spentUsd ?? jobSpentUsd(state, nowMs);
    detail.reservedUsd = state.plan.reservedUsd;
    detail.instanceType = state.plan.instanceType;
    detail.hourlyUsd = state.plan.hourlyUsd;
  }
  return detail;
}
