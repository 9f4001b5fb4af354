import type { Blueprint } from '../lib/core/blueprint.js';
import type { ImageFacts } from '../lib/core/image-recipe.js';
import { CapacityExhaustedError, ConcurrentUpdateError, KeyInvalidError, LaunchRefusedError, LaunchWindowClosedError, NeuroCaasError, ObjectExistsError, ObjectNotFoundError } from '../lib/core/errors.js';
import {
  initialJobState,
  isJobFinished,
  jobOutcome,
  jobSpentUsd,
  reduceJob,
  renderCertificate,
  type JobEffect,
  type JobEvent,
  type JobState,
} from '../lib/core/job-machine.js';
import { budgetKey, chainKeys, isFolderKey, isValidObjectKey, jobKeys, parseCancelKey, parseSubmissionKey, receiptKey } from '../lib/core/keys.js';
import { checkDatasetCount, checkSubmissionSize, folderFactsOf, planJob, SUBMISSION_LIMITS, rejectionDatasetNames, type ChainParent, type ObjectFacts } from '../lib/core/plan.js';
import { buildProvenance } from '../lib/core/provenance.js';
import { buildRunnerSpec } from '../lib/core/runner-spec.js';
import { datanames, parseSubmissionText, type Submission } from '../lib/core/submission.js';
import type { UserProfile } from '../lib/core/user.js';
import { budgetDocument, BudgetDocumentSchema, CancelRequestSchema, parseDocument, type Receipt } from '../lib/core/researcher-documents.js';
import type {
  AgentCheck,
  Catalog,
  Clock,
  CommandRunner,
  IdSource,
  JobRecord,
  JobStore,
  PendingEffect,
  Ledger,
  Machines,
  Notifier,
  ObjectStore,
  Scheduler,
} from '../lib/ports.js';

/**
 * A job was evaluated (its state is stored, accepted or rejected) or a cancel request answered,
 * but the receipt saying so could not be written (EIO, a full disk). The outcome stands; the
 * receipt is `receipt`, and a submission's can be written again from the job
 * (`JobDriver.writeMissingReceipt`).
 */
export class ReceiptUnwrittenError extends NeuroCaasError {
  constructor(
    readonly receipt: Receipt,
    key: string,
    cause: unknown,
  ) {
    const what = receipt.submissionKey.endsWith('.cancel.json') ? `the cancel request ${receipt.submissionKey}` : `job ${receipt.jobId}`;
    super('ReceiptUnwritten', `${what} was ${receipt.outcome === 'rejected' ? 'refused' : 'accepted'}, but its receipt ${key} could not be written (${cause instanceof Error ? cause.message : String(cause)})`, { cause });
  }
}

/** How often a new machine's agent is polled while it boots. */
export const AGENT_POLL_MS = 5_000;
const MAX_CAS_RETRIES = 50;

export interface DriverPorts {
  objects: ObjectStore;
  jobs: JobStore;
  ledger: Ledger;
  machines: Machines;
  runner: CommandRunner;
  scheduler: Scheduler;
  catalog: Catalog;
  clock: Clock;
  ids: IdSource;
  /** Optional: a backend that can compute sha256 of inputs cheaply provides it for provenance. */
  sha256?: (bucket: string, key: string) => Promise<string | undefined>;
  /** Optional observer (the CLI's reporter); never required for correctness. */
  observer?: DriverObserver;
  /** Tells the submitter when a job ends (D7); absent: nobody is told. */
  notifier?: Notifier;
  /** How a job's folder is named to the researcher in a notification; default `s3://bucket/prefix`. */
  resultsLocation?: (bucket: string, prefix: string) => string;
  /**
   * Chains: starts the job of a next-stage submission the driver just wrote (local backend).
   * Absent on aws, where the submission object's S3 event starts it.
   */
  submitFollowOn?: (bucket: string, submissionKey: string, username: string) => Promise<void>;
  /** The bucket an analysis's submissions go to; default: the analysis name (local layout). */
  bucketOf?: (analysis: string) => Promise<string>;
}

export interface DriverObserver {
  certificateLines?(jobId: string, lines: string[]): void;
  transition?(jobId: string, event: JobEvent, state: JobState): void;
  /** An effect failed; it stays in the outbox and is retried. */
  effectFailed?(jobId: string, effect: JobEffect, error: unknown): void;
  /** A timer- or machine-driven dispatch failed in the background. */
  backgroundError?(jobId: string, error: unknown): void;
}

interface JobQueue {
  waiting: { event: JobEvent; resolve: (state: JobState) => void; reject: (error: unknown) => void }[];
  running: boolean;
}

export interface SubmitOptions {
  /**
   * Who submitted, when the key does not say it (a plain `<group>/submissions/x-submit.json`) and
   * the shell knows it by other means. The key's user segment (D1) always wins.
   */
  username?: string;
  /** The analysis the bucket serves; default: the bucket's name (the local backend's layout). */
  analysis?: string;
  /** Called once the job id is known, before the submission is evaluated (a shell takes ownership). */
  onJobId?: (jobId: string) => Promise<void> | void;
  /**
   * What to do with a claimed job still in NEW (its first handling died before evaluating it).
   * Default true: evaluate it now (aws: a redelivered S3 event is the job's only driver). The local
   * shell passes false: the job belongs to its lease holder, and the reaper resumes it.
   */
  resumeClaimed?: boolean;
}

/**
 * The job-manager protocol: turns submissions and world events into reducer events, persists
 * the job with its pending effects (a transactional outbox), then carries the effects out.
 * Every effect is idempotent, so replaying an outbox after a crash is safe.
 */
export class JobDriver {
  private readonly queues = new Map<string, JobQueue>();
  /** Last record this driver read or wrote per job; the store's version check keeps it honest. */
  private readonly records = new Map<string, JobRecord>();

  constructor(private readonly ports: DriverPorts) {}

  /**
   * Handles a submission object: claims it (once per bucket + key + etag) and creates the job
   * in the same atomic step, validates and plans it, and starts it. Returns the job id (the
   * first one for a duplicate). A key that is not a usable object key but names a group's
   * submissions folder is claimed and rejected with the reason, so it too leaves a record.
   */
  async submit(bucket: string, submissionKey: string, options: SubmitOptions = {}): Promise<{ jobId: string; duplicate: boolean }> {
    const { objects, jobs, clock, ids } = this.ports;
    const analysis = options.analysis ?? bucket;
    const target = submissionTarget(submissionKey, analysis);
    let head: Awaited<ReturnType<ObjectStore['head']>>;
    try {
      head = await objects.head(bucket, submissionKey);
    } catch (error) {
      // A store that cannot even address the key (the local folder tree): rejected without reading it.
      if (!(target.problem !== undefined && error instanceof KeyInvalidError)) throw error;
      head = { key: submissionKey, size: 0, etag: 'unaddressable-key', lastModifiedMs: 0 };
    }
    if (!head) throw new NeuroCaasError('SubmissionMissing', `submission ${bucket}/${JSON.stringify(submissionKey)} does not exist`);
    const nowMs = clock.nowMs();
    const record = newJobRecord(ids.jobId(nowMs), bucket, submissionKey, analysis, target.group, nowMs, options.username);
    const claim = await jobs.claimAndCreate(`${bucket}/${submissionKey}#${head.etag}`, record);
    if (!claim.claimed) {
      const existing = await jobs.get(claim.jobId);
      const resume = options.resumeClaimed ?? true;
      if (!resume || (existing && existing.state.phase !== 'NEW')) {
        // The first receipt stands; a redelivered event only fills in one that was never written
        // (its process died, or the write failed, after the evaluation): with the job's outcome,
        // the receipt the submitter is waiting for.
        if (existing && existing.state.phase !== 'NEW') await this.writeSubmissionReceipt(existing.bucket, existing.submissionKey, head.etag, existing.state, receiptOutcomeOf(existing.state), false);
        return { jobId: claim.jobId, duplicate: true };
      }
      if (!existing) {
        // A claim without a record: only a store from before claims and records were created together.
        await jobs.create({ ...record, jobId: claim.jobId, state: { ...record.state, jobId: claim.jobId } }).catch((error: unknown) => {
          if (!(error instanceof ConcurrentUpdateError)) throw error;
        });
      }
      await options.onJobId?.(claim.jobId);
      await this.evaluate(claim.jobId, options.username === undefined ? {} : { username: options.username });
      return { jobId: claim.jobId, duplicate: false };
    }
    await options.onJobId?.(record.jobId);
    await this.evaluate(record.jobId, options.username === undefined ? {} : { username: options.username });
    return { jobId: record.jobId, duplicate: false };
  }

  /**
   * Evaluates a claimed job still in NEW (reads its submission, plans it) and starts it; a job
   * past NEW is left alone. This is how a job whose first handler died before evaluating it is
   * resumed. Resolves with the job's state.
   */
  async evaluate(jobId: string, options: { username?: string } = {}): Promise<JobState | undefined> {
    const record = await this.ports.jobs.get(jobId);
    if (!record) return undefined;
    if (record.state.phase !== 'NEW') return record.state;
    const target = submissionTarget(record.submissionKey, record.state.analysis);
    // D1: the key's user segment is the submitter (IAM lets only that user write there).
    const username = target.user ?? options.username ?? record.submitter;
    const event: JobEvent = target.problem
      ? { type: 'SubmissionRejected', atMs: this.ports.clock.nowMs(), reasons: [target.problem], datasets: [] }
      : await this.evaluateSubmission(record.state.analysis, record.bucket, record.submissionKey, target.group, jobId, username === undefined ? {} : { username }, target.user !== undefined);
    const state = await this.dispatch(jobId, event);
    // An unusable key has no receipt (and the local store cannot even address it).
    if (target.problem) return state;
    await this.writeSubmissionReceipt(record.bucket, record.submissionKey, undefined, state, receiptOutcomeOf(state), true);
    return state;
  }

  /**
   * Handles a cancel request object (D2): only the job's submitter may cancel it; anyone else is
   * refused with a reason, recorded in the request's receipt. Returns that receipt. `apply`
   * replaces the dispatch of the cancel (default: this driver dispatches it).
   */
  async cancelRequest(bucket: string, key: string, options: { apply?: (jobId: string, reason: string) => Promise<unknown> } = {}): Promise<Receipt> {
    const { objects } = this.ports;
    const parsedKey = parseCancelKey(key);
    if (!parsedKey.ok) throw new NeuroCaasError('CancelKeyInvalid', parsedKey.reason);
    const { group, user, fileName } = parsedKey;
    const head = await objects.head(bucket, key);
    if (!head) throw new NeuroCaasError('CancelRequestMissing', `cancel request ${bucket}/${key} does not exist`);
    const parsed = parseDocument(CancelRequestSchema, (await objects.get(bucket, key)).toString('utf8'), key);
    const at = receiptKey(group, user, fileName);
    const answer = async (jobId: string, analysis: string, reasons?: string[]): Promise<Receipt> => {
      const receipt: Receipt = { schemaVersion: 1, submissionKey: key, etag: head.etag, jobId, analysis, outcome: reasons ? 'rejected' : 'accepted', ...(reasons ? { reasons } : {}) };
      await this.writeReceipt(bucket, at, receipt, true);
      return receipt;
    };
    if (!parsed.ok) return answer('', '', [`${parsed.reason}; expected {"jobId": "...", "reason": "..."}`]);
    const { jobId } = parsed.value;
    const record = await this.ports.jobs.get(jobId);
    // Another group's job is answered like a missing one: its existence is none of this group's business.
    if (!record || record.state.group !== group) return answer(jobId, '', [`job "${jobId}" is not a job of group "${group}"; nothing was cancelled`]);
    const { state } = record;
    const submitter = state.plan?.user;
    if (submitter !== user) {
      return answer(jobId, state.analysis, [`job "${jobId}" was submitted by ${submitter === undefined ? 'nobody known' : `"${submitter}"`}, not "${user}"; only its submitter may cancel it`]);
    }
    if (isJobFinished(state)) return answer(jobId, state.analysis, [`job "${jobId}" already finished (${jobOutcome(state)}); nothing to cancel`]);
    const why = parsed.value.reason ? `cancelled by ${user} (${parsed.value.reason})` : `cancelled by ${user}`;
    // A shell whose jobs are driven by one process (local leases) passes the cancel on its own way.
    if (options.apply) await options.apply(jobId, why);
    else await this.dispatch(jobId, { type: 'CancelRequested', atMs: this.ports.clock.nowMs(), reason: why });
    return answer(jobId, state.analysis);
  }

  /**
   * The receipt (D3) of a job past evaluation, as its evaluation wrote it or would have: where
   * it goes and what it says. Undefined for a job still in NEW, or whose key has no receipt name.
   */
  async receiptOf(jobId: string): Promise<{ key: string; receipt: Receipt } | undefined> {
    const record = await this.ports.jobs.get(jobId);
    if (!record || record.state.phase === 'NEW') return undefined;
    const head = await this.ports.objects.head(record.bucket, record.submissionKey);
    return submissionReceipt(record.submissionKey, head?.etag ?? '', record.state, receiptOutcomeOf(record.state));
  }

  /**
   * Writes the receipt of an evaluated job if none is there (its evaluation's write failed, or
   * its process died right after the evaluation). Returns false for a job that has none to write.
   */
  async writeMissingReceipt(jobId: string): Promise<boolean> {
    const record = await this.ports.jobs.get(jobId);
    if (!record || record.state.phase === 'NEW' || !parseSubmissionKey(record.submissionKey).ok) return false;
    await this.writeSubmissionReceipt(record.bucket, record.submissionKey, undefined, record.state, receiptOutcomeOf(record.state), false);
    return true;
  }

  /**
   * D3: `<group>/receipts/<user>/<file>.json` for a submission with a parsable key. `etag`
   * undefined: the submission's own, read now. Throws ReceiptUnwrittenError if it cannot be written.
   */
  private async writeSubmissionReceipt(bucket: string, submissionKey: string, etag: string | undefined, state: JobState, outcome: Receipt['outcome'], replace: boolean): Promise<void> {
    if (!parseSubmissionKey(submissionKey).ok) return; // An unusable key has no receipt name; its job folder says why.
    let at: { key: string; receipt: Receipt } | undefined;
    try {
      const known = etag ?? (await this.ports.objects.head(bucket, submissionKey))?.etag ?? '';
      at = submissionReceipt(submissionKey, known, state, outcome);
      if (!at) return;
      await this.writeReceipt(bucket, at.key, at.receipt, replace);
    } catch (error) {
      if (error instanceof ReceiptUnwrittenError) throw error;
      throw new ReceiptUnwrittenError(at?.receipt ?? { schemaVersion: 1, submissionKey, etag: etag ?? '', jobId: state.jobId, analysis: state.analysis, outcome }, at?.key ?? submissionKey, error);
    }
  }

  /** Receipts live in the protocol's own area; `replace` false keeps one already there. */
  private async writeReceipt(bucket: string, key: string, receipt: Receipt, replace: boolean): Promise<void> {
    try {
      await this.ports.objects.put(bucket, key, JSON.stringify(receipt, null, 2), { overwrite: replace, contentType: 'application/json' });
    } catch (error) {
      if (error instanceof ObjectExistsError) return;
      throw new ReceiptUnwrittenError(receipt, key, error);
    }
  }

  /** D4: the user's budget as the ledger has it now, where their group can read it. */
  private async writeBudget(bucket: string, state: JobState, user: string, period: string, budgetUsd: number): Promise<void> {
    const entries = await this.ports.ledger.entries(user, period);
    // The ledger does not record analyses: the previous view in this bucket knows those of the
    // jobs it listed, so they are carried on (D4 lists each job's analysis).
    const known = await this.previousBudgetAnalyses(bucket, budgetKey(state.group, user));
    const doc = budgetDocument({
      user,
      group: state.group,
      period,
      budgetUsd,
      entries,
      nowMs: this.ports.clock.nowMs(),
      analysisOf: (jobId) => (jobId === state.jobId ? state.analysis : known.get(jobId)),
    });
    await this.ports.objects.put(bucket, budgetKey(state.group, user), JSON.stringify(doc, null, 2), { overwrite: true, contentType: 'application/json' });
  }

  private async previousBudgetAnalyses(bucket: string, key: string): Promise<Map<string, string>> {
    const known = new Map<string, string>();
    let body: Buffer;
    try {
      body = await this.ports.objects.get(bucket, key);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) return known;
      throw error;
    }
    const parsed = parseDocument(BudgetDocumentSchema, body.toString('utf8'), key);
    // An unreadable old view is replaced; only its analyses are lost.
    if (parsed.ok) for (const job of parsed.value.jobs) if (job.analysis !== undefined) known.set(job.jobId, job.analysis);
    return known;
  }

  /** D7: once, when end.txt is first written; a profile without email gets nothing. */
  private async notifyEnd(bucket: string, state: JobState): Promise<void> {
    const { notifier, catalog } = this.ports;
    const user = state.plan?.user;
    if (!notifier || user === undefined) return;
    const profile = await catalog.user(user);
    if (!profile?.email) return;
    const prefix = jobKeys(state.group, state.analysis, state.jobId).prefix;
    await notifier.jobEnded({
      user,
      email: profile.email,
      jobId: state.jobId,
      analysis: state.analysis,
      group: state.group,
      outcome: jobOutcome(state),
      costUsd: state.spentUsd ?? jobSpentUsd(state, this.ports.clock.nowMs()),
      resultsLocation: this.ports.resultsLocation?.(bucket, prefix) ?? `s3://${bucket}/${prefix}`,
    });
  }

  /**
   * A submission whose handling kept failing (its event reached the failed-submissions queue,
   * or the reaper gave up re-evaluating it): records `reason` where the researcher reads it
   * (certificate, end.txt, the submission's receipt) as a rejection, once. A job already past
   * evaluation is left alone.
   */
  async rejectUnprocessable(bucket: string, submissionKey: string, reason: string, options: SubmitOptions = {}): Promise<{ jobId: string; rejected: boolean } | undefined> {
    const { objects, jobs, clock, ids } = this.ports;
    const analysis = options.analysis ?? bucket;
    const target = submissionTarget(submissionKey, analysis);
    const head = await objects.head(bucket, submissionKey);
    // Gone (or never there): there is no submission a reason could be about.
    if (!head) return undefined;
    const nowMs = clock.nowMs();
    const record = newJobRecord(ids.jobId(nowMs), bucket, submissionKey, analysis, target.group, nowMs, options.username);
    const claim = await jobs.claimAndCreate(`${bucket}/${submissionKey}#${head.etag}`, record);
    const jobId = claim.claimed ? record.jobId : claim.jobId;
    if (!claim.claimed) {
      const existing = await jobs.get(jobId);
      if (existing && existing.state.phase !== 'NEW') return { jobId, rejected: false };
      if (!existing) {
        await jobs.create({ ...record, jobId, state: { ...record.state, jobId } }).catch((error: unknown) => {
          if (!(error instanceof ConcurrentUpdateError)) throw error;
        });
      }
    }
    const state = await this.dispatch(jobId, { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [reason], datasets: [] });
    // The receipt too (D3): a client waiting for one learns the job and why, on every backend.
    if (state.phase === 'REJECTED' && target.problem === undefined) await this.writeSubmissionReceipt(bucket, submissionKey, head.etag, state, 'rejected', true);
    return { jobId, rejected: state.phase === 'REJECTED' };
  }

  /** Reads everything a submission names and decides, purely, whether and how it runs. */
  private async evaluateSubmission(analysis: string, bucket: string, submissionKey: string, group: string, jobId: string, options: SubmitOptions, userFromKey: boolean): Promise<JobEvent> {
    const { objects, catalog, clock } = this.ports;
    // Limits first, before anything is read into memory or looked up per dataset.
    const head = await objects.head(bucket, submissionKey);
    const tooLarge = head && checkSubmissionSize(head.size, submissionKey);
    if (tooLarge) return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [tooLarge], datasets: [] };
    const text = (await objects.get(bucket, submissionKey)).toString('utf8');
    const parsed = parseSubmissionText(text, submissionKey);
    if (!parsed.ok) return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [parsed.reason], datasets: [] };
    const submission = parsed.submission;
    const tooMany = checkDatasetCount(datanames(submission).length);
    if (tooMany) return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [tooMany], datasets: [] };

    let blueprintEntry: { blueprint: Blueprint; versionId: string } | undefined;
    try {
      blueprintEntry = await catalog.blueprint(analysis);
    } catch (error) {
      if (!(error instanceof NeuroCaasError)) throw error;
      return {
        type: 'SubmissionRejected',
        atMs: clock.nowMs(),
        reasons: [`analysis "${analysis}" is misconfigured: ${error.message}`],
        datasets: rejectionDatasetNames(group, analysis, jobId, datanames(submission)),
      };
    }
    const { user, problem: submitterProblem } = await this.resolveSubmitter(group, options.username, userFromKey);

    const objectsFacts = new Map<string, ObjectFacts>();
    for (const key of [...datanames(submission), submission.configname]) {
      if (objectsFacts.has(key) || !key.startsWith(`${group}/`)) continue;
      if (isFolderKey(key)) {
        const folder = await this.folderFacts(bucket, key);
        if (folder) objectsFacts.set(key, folder);
        continue;
      }
      const info = await objects.head(bucket, key).catch((error: unknown) => {
        if (error instanceof NeuroCaasError) return error;
        throw error;
      });
      if (info instanceof NeuroCaasError) {
        // A link out of the bucket is there but must never be read: say so, not "missing".
        if (info.code === 'ObjectOutsideBucket') objectsFacts.set(key, { size: 0, etag: '', unreadable: info.message });
        continue;
      }
      if (!info) continue;
      const facts: ObjectFacts = { size: info.size, etag: info.etag };
      // A config over the limit is rejected by its size: hashing gigabytes would only delay that.
      const tooLargeConfig = key === submission.configname && info.size > SUBMISSION_LIMITS.maxConfigBytes && !datanames(submission).includes(key);
      const sha = tooLargeConfig ? undefined : await this.ports.sha256?.(bucket, key);
      if (sha) facts.sha256 = sha;
      objectsFacts.set(key, facts);
    }
    const configFacts = objectsFacts.get(submission.configname);
    // Never read a config over the limit into memory: the plan rejects it by its size.
    const configText = configFacts && configFacts.unreadable === undefined && configFacts.size <= SUBMISSION_LIMITS.maxConfigBytes ? (await objects.get(bucket, submission.configname)).toString('utf8') : undefined;

    const claim = parseChainClaim(submission);
    let parent: ChainParent | undefined;
    if (claim) {
      const verified = await this.verifyChainParent(claim, jobId, analysis, group, user);
      if (!verified.ok) {
        return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [verified.reason], datasets: rejectionDatasetNames(group, analysis, jobId, datanames(submission)) };
      }
      parent = verified.parent;
    }
    const chainBlueprints = blueprintEntry ? await this.chainBlueprints(blueprintEntry.blueprint) : new Map<string, Blueprint | undefined>();

    const result = planJob({
      jobId,
      analysis,
      group,
      submissionKey,
      submission,
      user,
      blueprint: blueprintEntry?.blueprint,
      blueprintHash: blueprintEntry?.versionId ?? 'unknown',
      objects: objectsFacts,
      configText,
      imageId: blueprintEntry ? catalog.imageId(blueprintEntry.blueprint) : 'unknown',
      ...imageFactsOf(catalog, blueprintEntry?.blueprint),
      nowMs: clock.nowMs(),
      ...(submitterProblem === undefined ? {} : { submitterProblem }),
      chainBlueprints,
      ...(parent ? { parent } : {}),
    });
    if (!result.ok) {
      if (parent) {
        // The chain stops here: the job before learns why (its certificate says so too).
        await this.dispatch(parent.jobId, {
          type: 'FollowOnEnded',
          atMs: clock.nowMs(),
          analysis,
          jobId,
          ledgerKey: parent.ledgerKey,
          outcome: 'REJECTED',
          reason: result.reasons.join('; '),
        });
      }
      return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: result.reasons, datasets: result.datasets, datasetReasons: result.datasetReasons };
    }
    return { type: 'SubmissionReceived', atMs: clock.nowMs(), plan: result.plan };
  }

  /**
   * D1: the submitter is the key's user segment (IAM lets only that user write there). A plain
   * key is unambiguous only when the group has exactly one profile.
   */
  private async resolveSubmitter(group: string, username: string | undefined, fromKey: boolean): Promise<{ user: UserProfile | undefined; problem?: string }> {
    const { catalog } = this.ports;
    if (username !== undefined) {
      const profile = await catalog.user(username);
      if (profile) return { user: profile };
      return {
        user: undefined,
        problem: fromKey
          ? `"${group}/submissions/${username}/" names user "${username}", who has no profile; submit under "${group}/submissions/<your user name>/" or ask an admin to add users/${username}.json`
          : `user "${username}" has no profile; ask an admin to add users/${username}.json with "group": "${group}"`,
      };
    }
    const members = await catalog.usersOfGroup(group);
    if (members.length === 1) return { user: members[0] };
    if (members.length === 0) return { user: undefined };
    return {
      user: undefined,
      problem:
        `group "${group}" has ${members.length} users (${members.map((m) => m.username).join(', ')}), so a submission directly under "${group}/submissions/" does not say who is charged; ` +
        `submit under "${group}/submissions/<your user name>/" (neurocaas run does)`,
    };
  }

  /**
   * Applies an event to a job and carries out everything it leads to; resolves with the job's
   * state afterwards. Events for one job are processed one batch at a time: all events waiting
   * when a batch starts are reduced together and persisted in one conditional write (group
   * commit), which keeps a job with many machines cheap.
   */
  dispatch(jobId: string, event: JobEvent): Promise<JobState> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(jobId);
      if (!queue) {
        queue = { waiting: [], running: false };
        this.queues.set(jobId, queue);
      }
      queue.waiting.push({ event, resolve, reject });
      if (!queue.running) void this.pump(jobId, queue);
    });
  }

  /** Carries out effects left in the outbox by a crash; safe to call at any time. */
  async recover(jobId: string): Promise<JobState | undefined> {
    const record = await this.ports.jobs.get(jobId);
    if (!record) return undefined;
    return this.dispatch(jobId, { type: 'Tick', atMs: this.ports.clock.nowMs() });
  }

  private async pump(jobId: string, queue: JobQueue): Promise<void> {
    queue.running = true;
    try {
      while (queue.waiting.length > 0) {
        const batch = queue.waiting.splice(0);
        try {
          const state = await this.process(jobId, batch.map((item) => item.event));
          for (const item of batch) item.resolve(state);
        } catch (error) {
          // The cache may be behind the store after a failure; read it afresh next time.
          this.records.delete(jobId);
          for (const item of batch) item.reject(error);
        }
      }
    } finally {
      queue.running = false;
      if (queue.waiting.length === 0) this.queues.delete(jobId);
    }
  }

  /** Reduce a batch, persist it with its effects, carry the effects out, repeat with what they produced. */
  private async process(jobId: string, events: JobEvent[]): Promise<JobState> {
    let pending = events;
    let done = new Set<number>();
    let record = await this.persist(jobId, pending, done);
    for (;;) {
      const result = await this.drainOutbox(record);
      done = result.done;
      pending = result.events;
      if (pending.length === 0) break;
      record = await this.persist(jobId, pending, done);
    }
    if (done.size > 0) record = await this.persist(jobId, [], done);
    return record.state;
  }

  /**
   * Reduces `events` from the latest record, appends their effects to the outbox and drops the
   * effects in `done`, in one conditional write; on a concurrent update, reloads and redoes it.
   */
  private async persist(jobId: string, events: JobEvent[], done: ReadonlySet<number>): Promise<JobRecord> {
    const { jobs, clock } = this.ports;
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt += 1) {
      const cached = attempt === 0 ? this.records.get(jobId) : undefined;
      const record = cached ?? (await this.load(jobId));
      let state = record.state;
      let seq = record.effectSeq;
      const added: PendingEffect[] = [];
      for (const event of events) {
        const transition = reduceJob(state, event);
        state = transition.state;
        for (const effect of transition.effects) added.push({ seq: (seq += 1), effect });
      }
      const kept = record.outbox.filter((item) => !done.has(item.seq));
      const outbox = appendPending(kept, added);
      const unchanged = outbox.length === kept.length && kept.length === record.outbox.length && JSON.stringify(state) === JSON.stringify(record.state);
      if (unchanged) {
        // Another process (another Lambda container) may have moved the job on since this copy
        // was cached; an event that changes nothing here must be tried on the stored job first.
        if (cached !== undefined) continue;
        this.records.set(jobId, record);
        return record;
      }
      const next: JobRecord = { ...record, version: record.version + 1, state, outbox, effectSeq: seq, updatedAtMs: clock.nowMs() };
      try {
        await jobs.update(next);
        this.records.set(jobId, next);
        for (const event of events) this.ports.observer?.transition?.(jobId, event, state);
        return next;
      } catch (error) {
        if (!(error instanceof ConcurrentUpdateError)) throw error;
      }
    }
    throw new ConcurrentUpdateError(`job ${jobId}: gave up after ${MAX_CAS_RETRIES} conflicting updates`);
  }

  private async load(jobId: string): Promise<JobRecord> {
    const record = await this.ports.jobs.get(jobId);
    if (!record) throw new NeuroCaasError('JobNotFound', `job ${jobId} does not exist`);
    return record;
  }

  /**
   * Carries out the outbox in three phases: the researcher-visible writes (only the latest
   * status per dataset and one certificate render), then machine and ledger calls in parallel
   * (they touch different machines), then the end-of-job effects in order. Returns the events
   * produced and the effects that are done; a failed effect stays for the next attempt.
   */
  private async drainOutbox(record: JobRecord): Promise<{ events: JobEvent[]; done: Set<number> }> {
    const events: JobEvent[] = [];
    const done = new Set<number>();
    const latestStatus = new Map<string, number>();
    let certificateSeq: number | undefined;
    for (const item of record.outbox) {
      if (item.effect.type === 'WriteStatus') latestStatus.set(item.effect.dataset, item.seq);
      if (item.effect.type === 'AppendCertificate') certificateSeq = item.seq;
    }
    const run = async (items: PendingEffect[]) => {
      const results = await Promise.all(
        items.map(async (item) => {
          try {
            return { item, events: await this.execute(record, item.effect) };
          } catch (error) {
            this.ports.observer?.effectFailed?.(record.jobId, item.effect, error);
            return undefined;
          }
        }),
      );
      for (const result of results) {
        if (!result) continue;
        done.add(result.item.seq);
        events.push(...result.events);
      }
    };
    const writes: PendingEffect[] = [];
    const calls: PendingEffect[] = [];
    const finals: PendingEffect[] = [];
    for (const item of record.outbox) {
      const { effect } = item;
      if (effect.type === 'WriteStatus' || effect.type === 'AppendCertificate') {
        // Superseded writes are done by the latest one of their kind.
        const latest = effect.type === 'WriteStatus' ? latestStatus.get(effect.dataset) : certificateSeq;
        if (latest === item.seq) writes.push(item);
        else done.add(item.seq);
      } else if (effect.type === 'WriteProvenance' || effect.type === 'SettleBudget' || effect.type === 'SubmitFollowOn' || effect.type === 'ReportToParent' || effect.type === 'WriteEnd') {
        finals.push(item);
      } else {
        calls.push(item);
      }
    }
    await run(writes);
    await run(calls);
    // The end of a job is recorded in order, end.txt last, and only once the writes before it landed.
    for (const item of finals) {
      if (writes.some((w) => !done.has(w.seq))) break;
      await run([item]);
      if (!done.has(item.seq)) break;
    }
    return { events, done };
  }

  /** One effect against the ports; returns the events that follow from it directly. */
  private async execute(record: JobRecord, effect: JobEffect): Promise<JobEvent[]> {
    const { objects, ledger, machines, runner, clock } = this.ports;
    const state = record.state;
    const keys = jobKeys(state.group, state.analysis, state.jobId);
    const bucket = record.bucket;
    switch (effect.type) {
      case 'Reject':
        return [];
      case 'AppendCertificate':
        await objects.put(bucket, keys.certificate, renderCertificate(state), { overwrite: true, contentType: 'text/plain' });
        this.ports.observer?.certificateLines?.(state.jobId, effect.lines);
        return [];
      case 'WriteStatus':
        await objects.put(bucket, keys.datasetStatus(effect.dataset), JSON.stringify(effect.document, null, 2), {
          overwrite: true,
          contentType: 'application/json',
        });
        return [];
      case 'ReserveBudget': {
        const result = await ledger.reserve({ ...effect, jobId: ledgerKeyOf(state), nowMs: clock.nowMs() });
        if (result.ok) await this.writeBudget(bucket, state, effect.user, effect.period, effect.budgetUsd);
        return [result.ok ? { type: 'BudgetReserved', atMs: clock.nowMs() } : { type: 'BudgetRefused', atMs: clock.nowMs(), reason: result.reason }];
      }
      case 'LaunchInstance': {
        try {
          const launched = await machines.launch({
            jobId: state.jobId,
            analysis: state.analysis,
            group: state.group,
            dataset: effect.dataset,
            instanceType: effect.instanceType,
            clientToken: effect.clientToken,
            deadlineAtMs: effect.deadlineAtMs,
            ...(effect.launchByMs !== undefined ? { launchByMs: effect.launchByMs } : {}),
            ...(effect.market ? { market: effect.market } : {}),
          });
          return [{ type: 'InstanceLaunched', atMs: clock.nowMs(), dataset: effect.dataset, clientToken: effect.clientToken, ...launched }];
        } catch (error) {
          if (!(error instanceof NeuroCaasError)) throw error;
          return [
            {
              type: 'InstanceLaunchFailed',
              atMs: clock.nowMs(),
              dataset: effect.dataset,
              reason: error.message,
              clientToken: effect.clientToken,
              ...launchFailureFacts(error),
            },
          ];
        }
      }
      case 'CheckLaunch': {
        // Asked only once the token's launch window has closed: what it finds is all there is.
        const found = await machines.findLaunched(effect.clientToken);
        return [
          found
            ? { type: 'InstanceLaunched', atMs: clock.nowMs(), dataset: effect.dataset, clientToken: effect.clientToken, ...found }
            : { type: 'LaunchTokenUnused', atMs: clock.nowMs(), dataset: effect.dataset, clientToken: effect.clientToken },
        ];
      }
      case 'ScheduleAgentCheck':
        return this.checkAgentNow({ jobId: state.jobId, dataset: effect.dataset, instanceId: effect.instanceId, expiresAtMs: effect.expiresAtMs });
      case 'SendCommand': {
        const ds = state.datasets.find((d) => d.name === effect.dataset);
        if (!ds) return [];
        try {
          const spec = buildRunnerSpec(state, ds, bucket);
          await createOnce(objects, bucket, spec.configKey, JSON.stringify(state.plan?.config ?? {}, null, 2));
          const { commandId } = await runner.sendCommand(effect.instanceId, spec);
          return [{ type: 'CommandStarted', atMs: clock.nowMs(), dataset: effect.dataset, commandId }];
        } catch (error) {
          if (!(error instanceof NeuroCaasError)) throw error;
          return [
            {
              type: 'CommandFinished',
              atMs: clock.nowMs(),
              dataset: effect.dataset,
              exitCode: null,
              timedOut: false,
              logTail: [`the workflow could not be started: ${error.message}`],
            },
          ];
        }
      }
      case 'TerminateInstance': {
        const machineState = await machines.terminate(effect.instanceId);
        if (machineState !== 'terminated') return [];
        // Billing ends when the cloud says it did, not when we heard of it; without a figure, now.
        const reported = await machines.describe(effect.instanceId).then(
          (machine) => machine.terminatedAtMs,
          () => undefined,
        );
        return [
          {
            type: 'InstanceStateChanged',
            atMs: clock.nowMs(),
            instanceId: effect.instanceId,
            state: 'terminated',
            ...(reported !== undefined ? { stateChangedAtMs: reported } : {}),
          },
        ];
      }
      case 'WriteProvenance':
        await createOnce(objects, bucket, keys.provenance, JSON.stringify(buildProvenance(state), null, 2));
        return [];
      case 'SettleBudget':
        await ledger.settle({ user: effect.user, period: effect.period, jobId: ledgerKeyOf(state), spentUsd: effect.spentUsd, nowMs: clock.nowMs() });
        await this.writeBudget(bucket, state, effect.user, effect.period, state.plan?.budgetUsd ?? 0);
        return [];
      case 'SubmitFollowOn':
        await this.submitFollowOn(record, effect);
        return [];
      case 'ReportToParent':
        // Another job's record; its own queue serialises it, and the event is idempotent there.
        if (await this.ports.jobs.get(effect.parentJobId)) await this.dispatch(effect.parentJobId, effect.event);
        return [];
      case 'WriteEnd':
        // Notified once: only the write that created end.txt tells the researcher.
        if (await createOnce(objects, bucket, keys.end, effect.text)) await this.notifyEnd(bucket, state);
        return [];
    }
  }

  /**
   * Starts a chain's next stage: for each of its jobs, moves its prepaid share of the chain's
   * reservation to that job's own ledger entry (this job still holds it, so it always fits),
   * copies the result files into the next analysis's inputs, writes the declared config and a
   * submission under the submitter's prefix (D1). Every write is create-only and the ledger
   * entry idempotent, so a replay after a crash submits nothing twice.
   */
  private async submitFollowOn(record: JobRecord, effect: Extract<JobEffect, { type: 'SubmitFollowOn' }>): Promise<void> {
    const { objects, ledger, clock } = this.ports;
    const state = record.state;
    const plan = state.plan;
    if (!plan) return;
    const nextBucket = this.ports.bucketOf ? await this.ports.bucketOf(effect.analysis) : effect.analysis;
    const group = state.group;
    const names = chainKeys(group, plan.user, state.jobId);
    const configKey = names.config;
    await createOnce(objects, nextBucket, configKey, JSON.stringify(effect.config, null, 2));
    for (const [index, job] of effect.jobs.entries()) {
      const reserved = await ledger.reserve({
        user: plan.user,
        period: plan.budgetPeriod,
        jobId: job.ledgerKey,
        amountUsd: job.reservedUsd,
        // This job's own entry still holds the whole downstream share until it settles.
        budgetUsd: plan.budgetUsd + (plan.chain?.downstreamReservedUsd ?? 0),
        nowMs: clock.nowMs(),
      });
      if (!reserved.ok) throw new NeuroCaasError('ChainReservation', `could not hand on the chain's reservation to ${effect.analysis}: ${reserved.reason}`);
      const datanames: string[] = [];
      for (const dataset of job.datasets) {
        const file = dataset.resultKey.slice(dataset.resultKey.lastIndexOf('/') + 1);
        const inputKey = names.input(dataset.name, file);
        await createOnce(objects, nextBucket, inputKey, await objects.get(record.bucket, dataset.resultKey));
        datanames.push(inputKey);
      }
      const submissionKey = names.submission(index);
      const submission = {
        dataname: datanames.length === 1 ? datanames[0] : datanames,
        configname: configKey,
        timestamp: new Date(clock.nowMs()).toISOString(),
        neurocaas_chain: { parentJobId: state.jobId, parentAnalysis: state.analysis, stage: effect.stage, ledgerKey: job.ledgerKey },
      };
      await createOnce(objects, nextBucket, submissionKey, JSON.stringify(submission, null, 2));
      await this.ports.submitFollowOn?.(nextBucket, submissionKey, plan.user);
    }
  }

  /**
   * A folder dataset's facts from a listing of everything under it. The folder's own path is
   * looked up first: a folder that is a link leading outside the bucket (local store) is
   * unreadable, never listed. Undefined when the key cannot name a folder at all.
   */
  private async folderFacts(bucket: string, key: string): Promise<ObjectFacts | undefined> {
    if (!isValidObjectKey(key.slice(0, -1))) return undefined;
    try {
      await this.ports.objects.head(bucket, key.slice(0, -1));
    } catch (error) {
      if (error instanceof NeuroCaasError && error.code === 'ObjectOutsideBucket') return { size: 0, etag: '', unreadable: error.message };
      throw error;
    }
    return folderFactsOf(await this.ports.objects.list(bucket, key));
  }

  /**
   * Checks a submission's claim to continue a chain against the job it names: that job exists,
   * succeeded, belongs to the same user and group, and chains to this analysis; and no other
   * job has taken this share of its reservation. Returns the parent or the reason it is refused.
   */
  private async verifyChainParent(
    claim: NonNullable<ReturnType<typeof parseChainClaim>>,
    jobId: string,
    analysis: string,
    group: string,
    user: UserProfile | undefined,
  ): Promise<{ ok: true; parent: ChainParent } | { ok: false; reason: string }> {
    const refuse = (why: string) => ({ ok: false as const, reason: `this submission continues job ${claim.parentJobId}, but ${why}` });
    const parentRecord = await this.ports.jobs.get(claim.parentJobId);
    const parentPlan = parentRecord?.state.plan;
    if (!parentRecord || !parentPlan) return refuse('no such job ran');
    if (parentPlan.group !== group || !user || parentPlan.user !== user.username) return refuse(`it was submitted by ${parentPlan.user} of group ${parentPlan.group}`);
    if (parentPlan.blueprint.followOn?.analysis !== analysis) return refuse(`its chain does not continue with "${analysis}"`);
    if (jobOutcome(parentRecord.state) !== 'SUCCEEDED') return refuse(`it did not succeed (${jobOutcome(parentRecord.state)})`);
    if (!claim.ledgerKey.startsWith(`${claim.parentJobId}~${analysis}~`)) return refuse(`its reservation "${claim.ledgerKey}" is not one it handed on`);
    const taken = await this.ports.jobs.claimSubmission(`chain:${claim.ledgerKey}`, jobId);
    if (!taken.claimed && taken.jobId !== jobId) return refuse(`job ${taken.jobId} already continues it with this share of its reservation`);
    return { ok: true, parent: { jobId: claim.parentJobId, analysis: parentPlan.analysis, stage: (parentPlan.chain?.stage ?? 1) + 1, ledgerKey: claim.ledgerKey } };
  }

  /** The blueprints a chain names after `blueprint`, looked up once each (a loop stops the walk). */
  private async chainBlueprints(blueprint: Blueprint): Promise<Map<string, Blueprint | undefined>> {
    const found = new Map<string, Blueprint | undefined>();
    let current: Blueprint | undefined = blueprint;
    while (current?.followOn && !found.has(current.followOn.analysis) && current.followOn.analysis !== blueprint.name) {
      const name: string = current.followOn.analysis;
      let next: Blueprint | undefined;
      try {
        next = (await this.ports.catalog.blueprint(name))?.blueprint;
      } catch (error) {
        if (!(error instanceof NeuroCaasError)) throw error;
      }
      found.set(name, next);
      current = next;
    }
    return found;
  }

  /** A scheduled agent check came due: poll again and apply what it finds. */
  async checkAgent(check: AgentCheck): Promise<JobState | undefined> {
    const events = await this.checkAgentNow(check);
    let state: JobState | undefined;
    for (const event of events) state = await this.dispatch(check.jobId, event);
    return state;
  }

  /**
   * Polls a booting machine's agent: online -> AgentOnline; past its expiry -> AgentWaitExpired;
   * otherwise checks again later through the scheduler (never by sleeping).
   */
  private async checkAgentNow(check: AgentCheck): Promise<JobEvent[]> {
    const { runner, clock, scheduler } = this.ports;
    const nowMs = clock.nowMs();
    const { dataset, instanceId } = check;
    if (await runner.isAgentOnline(instanceId)) return [{ type: 'AgentOnline', atMs: nowMs, dataset, instanceId }];
    if (nowMs >= check.expiresAtMs) return [{ type: 'AgentWaitExpired', atMs: nowMs, dataset, instanceId }];
    await scheduler.schedule(Math.min(check.expiresAtMs, nowMs + AGENT_POLL_MS), { kind: 'agent-check', ...check });
    return [];
  }
}

/**
 * The group and analysis a submission key belongs to. A key that is not a valid submission key
 * but names a usable group (`<group>/submissions/...`) gets a rejection recorded in that group
 * (`problem`); one that names no usable group cannot be recorded anywhere and is refused.
 */
function submissionTarget(submissionKey: string, analysis: string): { group: string; user?: string; problem?: string } {
  const keyCheck = parseSubmissionKey(submissionKey);
  if (keyCheck.ok) return keyCheck.user === undefined ? { group: keyCheck.group } : { group: keyCheck.group, user: keyCheck.user };
  const [group, area] = submissionKey.split('/');
  if (group !== undefined && area === 'submissions' && isValidObjectKey(jobKeys(group, analysis, 'J').certificate)) {
    return { group, problem: `the submission file ${JSON.stringify(submissionKey)} cannot be processed: ${keyCheck.reason}; rename it and submit again` };
  }
  throw new NeuroCaasError('SubmissionKeyInvalid', keyCheck.reason);
}

/**
 * What a launch error tells the reducer. Only a refusal (EC2 refused the request as invalid, or
 * the adapter found it unlaunchable before sending) proves that no send of the token can start
 * a machine; no capacity and a closed window prove it only for this send (another invocation
 * may have sent the same token); anything else may have started one (a transport error, a 5xx,
 * a timeout, an answer nobody knows). Retryable: a platform fault a later attempt may not meet.
 */
export function launchFailureFacts(error: NeuroCaasError): Pick<Extract<JobEvent, { type: 'InstanceLaunchFailed' }>, 'retryable' | 'outcome'> {
  if (error instanceof LaunchRefusedError) return { outcome: 'refused' };
  if (error instanceof CapacityExhaustedError || error instanceof LaunchWindowClosedError) return { retryable: true };
  return { retryable: true, outcome: 'unknown' };
}

/** The ledger entry a job reserves and settles: its own id, or the share a chain handed it. */
function ledgerKeyOf(state: JobState): string {
  return state.plan?.chain?.parent?.ledgerKey ?? state.jobId;
}

function parseChainClaim(submission: Submission): Submission['neurocaas_chain'] {
  return submission.neurocaas_chain;
}

/**
 * The outbox after a reduction: what is still pending, then the new effects, except a new one
 * equal to an effect still pending. The reducer re-sends unanswered requests (a launch every
 * LAUNCH_RETRY_MS, a terminate every TERMINATE_RETRY_MS, a reservation every RESERVE_RETRY_MS)
 * without seeing the outbox; while their calls keep failing, each tick would add another copy,
 * the outbox would grow without bound and every invocation would have more calls to finish
 * (a DynamoDB item also stops at 400 KB). Effects are idempotent (a replayed outbox runs them
 * again), so the pending copy does all the new one would. Certificate and status writes are
 * kept: the drain already supersedes them by the latest of their kind, and a certificate's
 * lines go to the observer as they come.
 */
function appendPending(pending: PendingEffect[], added: PendingEffect[]): PendingEffect[] {
  const keyOf = (item: PendingEffect) => (item.effect.type === 'AppendCertificate' || item.effect.type === 'WriteStatus' ? undefined : JSON.stringify(item.effect));
  const waiting = new Set(pending.map(keyOf));
  const out = [...pending];
  for (const item of added) {
    const key = keyOf(item);
    if (key !== undefined && waiting.has(key)) continue;
    if (key !== undefined) waiting.add(key);
    out.push(item);
  }
  return out;
}

/** What a receipt says of a job past evaluation: rejected (with its reasons) or accepted. */
function receiptOutcomeOf(state: JobState): 'accepted' | 'rejected' {
  return state.phase === 'REJECTED' ? 'rejected' : 'accepted';
}

/** A submission's receipt (D3): its name from the submission's key, its body from the job. */
function submissionReceipt(submissionKey: string, etag: string, state: JobState, outcome: Receipt['outcome']): { key: string; receipt: Receipt } | undefined {
  const parsedKey = parseSubmissionKey(submissionKey);
  if (!parsedKey.ok) return undefined;
  const user = parsedKey.user ?? state.plan?.user;
  const receipt: Receipt = {
    schemaVersion: 1,
    submissionKey,
    etag,
    jobId: state.jobId,
    analysis: state.analysis,
    outcome,
    ...(outcome === 'rejected' ? { reasons: state.rejection ?? [] } : {}),
  };
  return { key: receiptKey(parsedKey.group, user, parsedKey.fileName), receipt };
}

/** Create-only write that treats "already there" as done (a replayed effect). */
async function createOnce(objects: ObjectStore, bucket: string, key: string, body: string | Uint8Array): Promise<boolean> {
  try {
    await objects.put(bucket, key, body);
    return true;
  } catch (error) {
    if (!(error instanceof ObjectExistsError)) throw error;
    return false;
  }
}

/** The record a claim creates: a job in NEW, nothing in its outbox, version 1. */
function newJobRecord(jobId: string, bucket: string, submissionKey: string, analysis: string, group: string, nowMs: number, submitter: string | undefined): JobRecord {
  const record: JobRecord = {
    jobId,
    bucket,
    submissionKey,
    version: 1,
    state: initialJobState(jobId, analysis, group, nowMs),
    outbox: [],
    effectSeq: 0,
    updatedAtMs: nowMs,
  };
  if (submitter !== undefined) record.submitter = submitter;
  return record;
}

/** The catalog's facts about an analysis's image, as a PlanInput fragment (empty when it knows none). */
function imageFactsOf(catalog: Catalog, blueprint: Blueprint | undefined): { image?: ImageFacts } {
  const facts = blueprint && catalog.imageFacts ? catalog.imageFacts(blueprint) : undefined;
  return facts ? { image: facts } : {};
}
