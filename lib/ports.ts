/**
 * The interfaces the job-manager shell needs. Each backend (lib/local, lib/aws) implements
 * them; the driver in protocols/ only ever talks to these. Shapes follow what both S3/EC2/SSM/
 * DynamoDB and a folder tree with child processes can honour.
 */
import type { LedgerEntry } from './core/cost.js';
import type { JobEffect, JobState, JobSummary } from './core/job-machine.js';
import type { RunnerSpec } from './core/runner-spec.js';

export type { RunnerSpec, JobSummary };

export interface ObjectInfo {
  key: string;
  size: number;
  /** Content fingerprint: S3 ETag on aws, sha256 of the bytes on local. */
  etag: string;
  lastModifiedMs: number;
}

export interface PutOptions {
  /**
   * Replace an existing object. Default false: the write fails with ObjectExistsError when the
   * key exists (S3 `If-None-Match: *`), which is how earlier results are never overwritten.
   */
  overwrite?: boolean;
  contentType?: string;
}

export interface ObjectStore {
  /** Throws ObjectNotFoundError when absent. */
  get(bucket: string, key: string): Promise<Buffer>;
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  put(bucket: string, key: string, body: string | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  /** Every object whose key starts with `prefix`, sorted by key. */
  list(bucket: string, prefix: string): Promise<ObjectInfo[]>;
}

/** A persisted job: its reducer state plus the effects not yet carried out (a transactional outbox). */
export interface JobRecord {
  jobId: string;
  /** The analysis bucket the submission came from. */
  bucket: string;
  submissionKey: string;
  /** Who submitted, when the shell knew it at claim time (so a resumed job is evaluated as the same user). */
  submitter?: string;
  /** Incremented by every write; writes are conditional on it. */
  version: number;
  state: JobState;
  outbox: PendingEffect[];
  /** Highest effect sequence number ever issued for this job. */
  effectSeq: number;
  updatedAtMs: number;
}

export interface PendingEffect {
  seq: number;
  effect: JobEffect;
}

export type ClaimResult = { claimed: true } | { claimed: false; jobId: string };

export interface JobStore {
  /**
   * Claims a submission's idempotency key (bucket + key + etag) for a job id; a second claim of
   * the same key returns the first job id. This is what makes a submission run once.
   */
  claimSubmission(idempotencyKey: string, jobId: string): Promise<ClaimResult>;
  /**
   * Claims a submission's idempotency key and creates the job's record in one atomic step, so
   * there is never a claim without a record. A duplicate returns the first job id and creates
   * nothing. Throws ConcurrentUpdateError if `record.jobId` exists under another claim.
   */
  claimAndCreate(idempotencyKey: string, record: JobRecord): Promise<ClaimResult>;
  /** Creates a record; throws ConcurrentUpdateError if the job exists. */
  create(record: JobRecord): Promise<void>;
  get(jobId: string): Promise<JobRecord | undefined>;
  /** Writes `record` if the stored version is `record.version - 1`; otherwise throws ConcurrentUpdateError. */
  update(record: JobRecord): Promise<void>;
  list(): Promise<JobSummary[]>;
}

export type ReserveResult = { ok: true } | { ok: false; reason: string };

export interface Ledger {
  /** Atomically reserves `amountUsd` unless it would exceed `budgetUsd` for the period. Idempotent per job. */
  reserve(request: { user: string; period: string; jobId: string; amountUsd: number; budgetUsd: number; nowMs: number }): Promise<ReserveResult>;
  /** Replaces the job's reservation by its actual spend. Idempotent. */
  settle(request: { user: string; period: string; jobId: string; spentUsd: number; nowMs: number }): Promise<void>;
  entries(user: string, period: string): Promise<LedgerEntry[]>;
}

export interface LaunchRequest {
  jobId: string;
  analysis: string;
  group: string;
  dataset: string;
  instanceType: string;
  /** Idempotency token: a second launch with the same token returns the same machine. */
  clientToken: string;
  /**
   * Absolute epoch ms after which the machine must not exist; tagged on it for the reaper.
   * A launch asked for at or after it only returns the machine an earlier try of the same
   * token started; it never starts one (throws MachineLaunchError), so a retried launch whose
   * answer was lost cannot create a machine that is already past its deadline.
   */
  deadlineAtMs: number;
  /**
   * Absolute epoch ms from which this launch starts no machine at all (its launch window
   * closes): a call at or after it only returns the machine an earlier try of the same token
   * started, and otherwise throws LaunchWindowClosedError. Every RunInstances-like call is
   * checked against it, so after it (plus the time one call can take) the token's machines are
   * all known to `findLaunched`. Default (older outboxes): `deadlineAtMs`.
   */
  launchByMs?: number;
  /**
   * Where to buy the machine. "spot-then-on-demand" tries spot first and, when spot has no
   * capacity anywhere, on demand within the same launch. Default "on-demand".
   */
  market?: import('./core/blueprint.js').MarketChoice;
}

export interface LaunchResult {
  instanceId: string;
  instanceType: string;
  /** The market the machine runs on; absent means on demand. */
  market?: import('./core/blueprint.js').Market;
  /** When the cloud says the machine started (EC2 LaunchTime), epoch ms; billing starts here. */
  launchedAtMs?: number;
}

export type MachineState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated' | 'unknown';

export interface MachineDescription {
  instanceId: string;
  state: MachineState;
  jobId?: string;
  dataset?: string;
  deadlineAtMs?: number;
  /** EC2's LaunchTime, epoch ms. */
  launchedAtMs?: number;
  /** When it began shutting down or terminated, as EC2 reports it (state-transition time), epoch ms. */
  terminatedAtMs?: number;
}

/** EC2 on aws; child processes on local. */
export interface Machines {
  /** Throws MachineLaunchError when no machine could be had. */
  launch(request: LaunchRequest): Promise<LaunchResult>;
  /**
   * The machine a launch with this client token started, in any state (terminated ones while
   * the cloud still lists them), or undefined when none did. Asked once the token's launch window
   * has closed, it proves whether a failed launch left a machine behind.
   */
  findLaunched(clientToken: string): Promise<LaunchResult | undefined>;
  /** Terminates (idempotent) and returns the state it is in now. */
  terminate(instanceId: string): Promise<MachineState>;
  describe(instanceId: string): Promise<MachineDescription>;
  /** Machines tagged as platform machines whose deadline has passed, for the reaper. */
  listExpired(nowMs: number): Promise<MachineDescription[]>;
}

/** SSM Run Command on aws; a message to the child process on local. */
export interface CommandRunner {
  isAgentOnline(instanceId: string): Promise<boolean>;
  /** Starts the runner on the machine; returns a command id. */
  sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }>;
}

/** A booting machine's agent must be polled again. */
export interface AgentCheck {
  jobId: string;
  dataset: string;
  instanceId: string;
  /** After this, the machine has failed to come online. */
  expiresAtMs: number;
}

export type ScheduledAction = ({ kind: 'agent-check' } & AgentCheck) | { kind: 'tick'; jobId: string };

/** Runs an action later: an SQS delayed message on aws, a timer on local. Never a sleeping process. */
export interface Scheduler {
  schedule(atMs: number, action: ScheduledAction): Promise<void>;
}

export interface Clock {
  nowMs(): number;
}

export interface IdSource {
  /** Sortable, readable, unique job id, e.g. "20261122T151533Z-7f3a". */
  jobId(nowMs: number): string;
}

/** Where blueprints and user profiles come from: the repo on local, bundled config on aws. */
export interface Catalog {
  /** Undefined when the analysis does not exist; throws BlueprintInvalidError when it is broken. */
  blueprint(analysis: string): Promise<{ blueprint: import('./core/blueprint.js').Blueprint; versionId: string } | undefined>;
  /** Profiles of a group (the submitter is chosen among them). */
  usersOfGroup(group: string): Promise<import('./core/user.js').UserProfile[]>;
  user(username: string): Promise<import('./core/user.js').UserProfile | undefined>;
  /** What the machines run: an AMI id on aws, the environment folder on local. */
  imageId(blueprint: import('./core/blueprint.js').Blueprint): string;
  /** Where that image came from (provenance); optional: a catalog that knows nothing more omits it. */
  imageFacts?(blueprint: import('./core/blueprint.js').Blueprint): import('./core/image-recipe.js').ImageFacts | undefined;
}

/** What a researcher is told when a job ends (D7). */
export interface JobEndNotice {
  user: string;
  email: string;
  jobId: string;
  analysis: string;
  group: string;
  outcome: 'SUCCEEDED' | 'FAILED' | 'REJECTED' | 'CANCELLED' | 'RUNNING';
  costUsd: number;
  /** Where the job's folder is: `s3://bucket/prefix` on aws, a folder path on local. */
  resultsLocation: string;
}

/** Tells researchers about their jobs: SNS on aws; on local, nothing (no mail server to send through). */
export interface Notifier {
  jobEnded(notice: JobEndNotice): Promise<void>;
}
