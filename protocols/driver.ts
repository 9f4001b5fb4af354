import type { Blueprint } from '../lib/core/blueprint.js';
import { ConcurrentUpdateError, NeuroCaasError, ObjectExistsError } from '../lib/core/errors.js';
import {
  initialJobState,
  reduceJob,
  renderCertificate,
  type JobEffect,
  type JobEvent,
  type JobState,
} from '../lib/core/job-machine.js';
import { jobKeys, parseSubmissionKey } from '../lib/core/keys.js';
import { planJob, type ObjectFacts } from '../lib/core/plan.js';
import { buildProvenance } from '../lib/core/provenance.js';
import { buildRunnerSpec } from '../lib/core/runner-spec.js';
import { datanames, parseSubmissionText } from '../lib/core/submission.js';
import type { UserProfile } from '../lib/core/user.js';
import type {
  AgentCheck,
  Catalog,
  Clock,
  CommandRunner,
  IdSource,
  JobRecord,
  JobStore,
  Ledger,
  Machines,
  ObjectStore,
  Scheduler,
} from '../lib/ports.js';

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
  /** Chained analyses; when absent, the follow-on effect is reported and skipped. */
  submitFollowOn?: (state: JobState, analysis: string) => Promise<void>;
}

export interface DriverObserver {
  certificateLines?(jobId: string, lines: string[]): void;
  transition?(jobId: string, event: JobEvent, state: JobState): void;
  /** An effect failed; it stays in the outbox and is retried. */
  effectFailed?(jobId: string, effect: JobEffect, error: unknown): void;
  /** A timer- or machine-driven dispatch failed in the background. */
  backgroundError?(jobId: string, error: unknown): void;
}

export interface SubmitOptions {
  /** Who submitted: the S3 principal on aws, --user or the group's only profile on local. */
  username?: string;
}

/**
 * The job-manager protocol: turns submissions and world events into reducer events, persists
 * the job with its pending effects (a transactional outbox), then carries the effects out.
 * Every effect is idempotent, so replaying an outbox after a crash is safe.
 */
export class JobDriver {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly ports: DriverPorts) {}

  /**
   * Handles a submission object: claims it (once per bucket + key + etag), creates the job,
   * validates and plans it, and starts it. Returns the job id (the first one for a duplicate).
   */
  async submit(bucket: string, submissionKey: string, options: SubmitOptions = {}): Promise<{ jobId: string; duplicate: boolean }> {
    const { objects, jobs, clock, ids } = this.ports;
    const keyCheck = parseSubmissionKey(submissionKey);
    if (!keyCheck.ok) throw new NeuroCaasError('SubmissionKeyInvalid', keyCheck.reason);
    const group = keyCheck.group;
    const head = await objects.head(bucket, submissionKey);
    if (!head) throw new NeuroCaasError('SubmissionMissing', `submission ${bucket}/${submissionKey} does not exist`);
    const nowMs = clock.nowMs();
    const jobId = ids.jobId(nowMs);
    const claim = await jobs.claimSubmission(`${bucket}/${submissionKey}#${head.etag}`, jobId);
    if (!claim.claimed) return { jobId: claim.jobId, duplicate: true };

    const record: JobRecord = {
      jobId,
      bucket,
      submissionKey,
      version: 1,
      state: initialJobState(jobId, bucket, group, nowMs),
      outbox: [],
      effectSeq: 0,
      updatedAtMs: nowMs,
    };
    await jobs.create(record);
    const event = await this.evaluateSubmission(bucket, submissionKey, group, jobId, options);
    await this.dispatch(jobId, event);
    return { jobId, duplicate: false };
  }

  /** Reads everything a submission names and decides, purely, whether and how it runs. */
  private async evaluateSubmission(bucket: string, submissionKey: string, group: string, jobId: string, options: SubmitOptions): Promise<JobEvent> {
    const { objects, catalog, clock } = this.ports;
    const text = (await objects.get(bucket, submissionKey)).toString('utf8');
    const parsed = parseSubmissionText(text, submissionKey);
    if (!parsed.ok) return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [parsed.reason], datasets: [] };
    const submission = parsed.submission;

    let blueprintEntry: { blueprint: Blueprint; versionId: string } | undefined;
    try {
      blueprintEntry = await catalog.blueprint(bucket);
    } catch (error) {
      if (!(error instanceof NeuroCaasError)) throw error;
      return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: [`analysis "${bucket}" is misconfigured: ${error.message}`], datasets: datanames(submission) };
    }
    const user = await this.resolveUser(group, options.username);

    const objectsFacts = new Map<string, ObjectFacts>();
    for (const key of [...datanames(submission), submission.configname]) {
      if (objectsFacts.has(key) || !key.startsWith(`${group}/`)) continue;
      const info = await objects.head(bucket, key).catch((error: unknown) => {
        if (error instanceof NeuroCaasError) return undefined;
        throw error;
      });
      if (!info) continue;
      const facts: ObjectFacts = { size: info.size, etag: info.etag };
      const sha = await this.ports.sha256?.(bucket, key);
      if (sha) facts.sha256 = sha;
      objectsFacts.set(key, facts);
    }
    const configText = objectsFacts.has(submission.configname) ? (await objects.get(bucket, submission.configname)).toString('utf8') : undefined;

    const result = planJob({
      jobId,
      analysis: bucket,
      group,
      submissionKey,
      submission,
      user,
      blueprint: blueprintEntry?.blueprint,
      blueprintHash: blueprintEntry?.versionId ?? 'unknown',
      objects: objectsFacts,
      configText,
      imageId: blueprintEntry ? catalog.imageId(blueprintEntry.blueprint) : 'unknown',
      nowMs: clock.nowMs(),
    });
    if (!result.ok) return { type: 'SubmissionRejected', atMs: clock.nowMs(), reasons: result.reasons, datasets: result.datasets };
    return { type: 'SubmissionReceived', atMs: clock.nowMs(), plan: result.plan };
  }

  private async resolveUser(group: string, username: string | undefined): Promise<UserProfile | undefined> {
    const { catalog } = this.ports;
    if (username !== undefined) return catalog.user(username);
    const members = await catalog.usersOfGroup(group);
    // Without a named submitter, only an unambiguous group may submit.
    return members.length === 1 ? members[0] : undefined;
  }

  /** Applies one event to a job and carries out everything it leads to. Serialised per job. */
  async dispatch(jobId: string, event: JobEvent): Promise<JobState> {
    return this.serialised(jobId, async () => {
      const queue: JobEvent[] = [event];
      let state: JobState | undefined;
      while (queue.length > 0) {
        const next = queue.shift() as JobEvent;
        await this.apply(jobId, next);
        const produced = await this.drainOutbox(jobId);
        queue.push(...produced.events);
        state = produced.state;
      }
      return state as JobState;
    });
  }

  /** Carries out effects left in the outbox by a crash; safe to call at any time. */
  async recover(jobId: string): Promise<JobState | undefined> {
    const record = await this.ports.jobs.get(jobId);
    if (!record) return undefined;
    return this.dispatch(jobId, { type: 'Tick', atMs: this.ports.clock.nowMs() });
  }

  private async serialised<T>(jobId: string, action: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(jobId) ?? Promise.resolve();
    const run = previous.then(action, action);
    const settled = run.catch(() => undefined);
    this.locks.set(jobId, settled);
    try {
      return await run;
    } finally {
      if (this.locks.get(jobId) === settled) this.locks.delete(jobId);
    }
  }

  /** reduce + persist (state and new effects together), retried on concurrent updates. */
  private async apply(jobId: string, event: JobEvent): Promise<void> {
    const { jobs, clock } = this.ports;
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt += 1) {
      const record = await this.load(jobId);
      const { state, effects } = reduceJob(record.state, event);
      if (effects.length === 0 && JSON.stringify(state) === JSON.stringify(record.state)) return;
      let seq = record.effectSeq;
      const next: JobRecord = {
        ...record,
        version: record.version + 1,
        state,
        outbox: [...record.outbox, ...effects.map((effect) => ({ seq: (seq += 1), effect }))],
        effectSeq: seq,
        updatedAtMs: clock.nowMs(),
      };
      try {
        await jobs.update(next);
        this.ports.observer?.transition?.(jobId, event, state);
        return;
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

  /** Executes pending effects in order, then removes them; returns the events they produced. */
  private async drainOutbox(jobId: string): Promise<{ events: JobEvent[]; state: JobState }> {
    const record = await this.load(jobId);
    const events: JobEvent[] = [];
    const done = new Set<number>();
    for (const pending of record.outbox) {
      try {
        events.push(...(await this.execute(record, pending.effect)));
        done.add(pending.seq);
      } catch (error) {
        // Left in the outbox: the next event or recovery tick retries it.
        this.ports.observer?.effectFailed?.(jobId, pending.effect, error);
      }
    }
    if (done.size === 0) return { events, state: record.state };
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt += 1) {
      const latest = await this.load(jobId);
      const next: JobRecord = {
        ...latest,
        version: latest.version + 1,
        outbox: latest.outbox.filter((pending) => !done.has(pending.seq)),
        updatedAtMs: this.ports.clock.nowMs(),
      };
      try {
        await this.ports.jobs.update(next);
        return { events, state: next.state };
      } catch (error) {
        if (!(error instanceof ConcurrentUpdateError)) throw error;
      }
    }
    throw new ConcurrentUpdateError(`job ${jobId}: could not clear its outbox`);
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
        const result = await ledger.reserve({ ...effect, jobId: state.jobId, nowMs: clock.nowMs() });
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
          });
          return [{ type: 'InstanceLaunched', atMs: clock.nowMs(), dataset: effect.dataset, ...launched }];
        } catch (error) {
          if (!(error instanceof NeuroCaasError)) throw error;
          return [{ type: 'InstanceLaunchFailed', atMs: clock.nowMs(), dataset: effect.dataset, reason: error.message }];
        }
      }
      case 'ScheduleAgentCheck':
        return this.checkAgentNow({ jobId: state.jobId, dataset: effect.dataset, instanceId: effect.instanceId, expiresAtMs: effect.expiresAtMs });
      case 'SendCommand': {
        const ds = state.datasets.find((d) => d.name === effect.dataset);
        if (!ds) return [];
        try {
          const spec = buildRunnerSpec(state, ds, bucket, clock.nowMs());
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
        return machineState === 'terminated'
          ? [{ type: 'InstanceStateChanged', atMs: clock.nowMs(), instanceId: effect.instanceId, state: 'terminated' }]
          : [];
      }
      case 'WriteProvenance':
        await createOnce(objects, bucket, keys.provenance, JSON.stringify(buildProvenance(state), null, 2));
        return [];
      case 'SettleBudget':
        await ledger.settle({ user: effect.user, period: effect.period, jobId: state.jobId, spentUsd: effect.spentUsd, nowMs: clock.nowMs() });
        return [];
      case 'SubmitFollowOn':
        if (this.ports.submitFollowOn) await this.ports.submitFollowOn(state, effect.analysis);
        else this.ports.observer?.certificateLines?.(state.jobId, [`follow-on analysis "${effect.analysis}" is not supported by this backend yet; skipped`]);
        return [];
      case 'WriteEnd':
        await createOnce(objects, bucket, keys.end, effect.text);
        return [];
    }
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

/** Create-only write that treats "already there" as done (a replayed effect). */
async function createOnce(objects: ObjectStore, bucket: string, key: string, body: string): Promise<void> {
  try {
    await objects.put(bucket, key, body);
  } catch (error) {
    if (!(error instanceof ObjectExistsError)) throw error;
  }
}
