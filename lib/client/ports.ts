/**
 * What the researcher use-cases (researcher-client.ts) need from a backend. A shell (the CLI,
 * the local web API) picks the adapters once at start-up (local-backend.ts, aws-backend.ts) and
 * never looks at which one it got.
 */
import type { BudgetDocument, Receipt } from '../core/researcher-documents.js';
import type { DatasetPhase } from '../core/status.js';
import type { JobPhase } from '../core/job-machine.js';
import type { Clock, ObjectInfo } from '../ports.js';

/** Who the researcher is: proven by IAM on aws, a profile on local. */
export interface Identity {
  user: string;
  group: string;
}

/** Called as bytes move: bytes done so far and the total, in bytes. */
export type ProgressListener = (doneBytes: number, totalBytes: number) => void;

/**
 * The analysis buckets as a researcher sees them, without files: what the use-cases need, in
 * Node and in a browser bundle alike. Every write is create-only.
 */
export interface ClientStore {
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /**
   * The object's bytes from `fromByte` (default 0), at most `maxBytes` of them (default: to the
   * end); undefined when it does not exist. (Node adapters return Buffers; decode with
   * utf8Text from bytes.ts, which works on both.)
   */
  read(bucket: string, key: string, fromByte?: number, maxBytes?: number): Promise<Uint8Array | undefined>;
  /** Every object under `prefix`, sorted by key. */
  list(bucket: string, prefix: string): Promise<ObjectInfo[]>;
  /** Creates a small object; throws ObjectExistsError when the key exists. */
  write(bucket: string, key: string, body: string): Promise<void>;
  /** sha256 (hex) of a stored object: recorded metadata on S3, computed on local; undefined when unknown. */
  sha256(bucket: string, key: string): Promise<string | undefined>;
}

/** The analysis buckets with local files (Node only: the CLI and the local web API). */
export interface ClientObjects extends ClientStore {
  /**
   * Uploads a file as a new object, all or nothing: an interrupted upload leaves no object
   * (S3 multipart is only visible once completed; on aws its stored parts are reused when the
   * same file, by size, `mtimeMs` and sha256, is uploaded to the same key again; a second
   * upload of the same file to the same key waits for the first, and says so through `onStep`).
   * ObjectExistsError when the key holds an object, also one another upload created meanwhile:
   * the caller compares its sha256.
   */
  upload(bucket: string, key: string, file: string, options: { sha256: string; sizeBytes: number; mtimeMs?: number; onProgress?: ProgressListener; onStep?: (text: string) => void }): Promise<void>;
  /** Downloads an object to a new `file` through this process's temp, placed create-only (never a half file, never a replaced one: ObjectExistsError). */
  download(bucket: string, key: string, file: string, options?: { onProgress?: ProgressListener }): Promise<void>;
}

/** One line of `neurocaas jobs`, the same shape on both backends. */
export interface JobView {
  jobId: string;
  analysis: string;
  group: string;
  /** The submitter (D1), when known. */
  user?: string;
  phase: JobPhase;
  outcome: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'REJECTED' | 'CANCELLED';
  createdAtMs: number;
  updatedAtMs: number;
  /** `role` and `reason` only where known (an ensemble's replicas and consensus on local; a failed dataset's reason). */
  datasets: { name: string; phase: DatasetPhase; role?: 'replica' | 'consensus'; reason?: string }[];
  /** Cost so far (final once the job is DONE), in USD; absent while nothing is known (a rejected job). */
  costUsd?: number;
  /** Present on every job of a chain: its place in it. */
  chain?: JobChainLink;
  /** Present on the first job of a chain (the one shown as the unit): every stage and the chain's outcome. */
  chainSummary?: ChainSummary;
  /** Present on an ensemble's job: its replicas and consensus at a glance. */
  ensemble?: EnsembleSummary;
}

/** A job's place in a chain. */
export interface JobChainLink {
  /** 1 for the chain's first job, 2 for the stage after it, ... */
  stage: number;
  /** The chain's first job (this job's own id on the first). */
  firstJobId: string;
  /** The job this one continues; absent on the first. */
  parentJobId?: string;
  /** The next stage's jobs this one started, as far as the listing shows them. */
  nextJobIds: string[];
  /** The stages planned after this one and their job counts; absent when not known yet (aws: a job still being accepted). */
  plannedNext?: { analysis: string; jobs: number }[];
}

/** A chain as one unit, on its first job. */
export interface ChainSummary {
  /** RUNNING while any stage runs or a hand-off is due; FAILED or CANCELLED at the stage that stopped it; SUCCEEDED when the last stage did. */
  outcome: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  /** Every stage's cost so far, summed, in USD. */
  costUsd: number;
  /** Stages known: started ones plus the ones still planned (while the chain runs). */
  stages: number;
  /** Every job of the chain, by stage, the first job first. */
  jobs: { jobId: string; analysis: string; stage: number; parentJobId?: string; phase: JobPhase; outcome: JobView['outcome']; costUsd?: number; datasets: JobView['datasets'] }[];
  /** Analyses of the stages not started yet (while RUNNING). */
  pendingAnalyses?: string[];
  /** Where a FAILED or CANCELLED chain stopped, with why. */
  stoppedAt?: { jobId: string; analysis: string; stage: number; outcome: JobView['outcome']; reason: string };
}

/** An ensemble's replicas and consensus. */
export interface EnsembleSummary {
  replicas: number;
  replicasSucceeded: number;
  /** Replicas that ended without succeeding, by name. */
  failedReplicas: string[];
  consensusPhase: DatasetPhase;
}

/** What `status`, `run` and `cancel` report about one job. */
export interface JobDetail extends JobView {
  bucket: string;
  rejection?: string[];
  /** Final cost, or the cost so far, in USD. */
  costUsd?: number;
  reservedUsd?: number;
  instanceType?: string;
  hourlyUsd?: number;
  datasets: { name: string; phase: DatasetPhase; role?: 'replica' | 'consensus'; reason?: string; exitCode?: number | null; instanceId?: string }[];
}

export interface JobListing {
  /** Jobs newest first; only `scope`'s group when given. `notices` are things the listing fixed on the way (local reaper). */
  list(scope: Identity | undefined): Promise<{ jobs: JobView[]; notices: string[] }>;
  /** Throws JobNotFoundError (with what to do) when the job does not exist or is not `scope`'s group's. */
  get(jobId: string, scope: Identity | undefined): Promise<JobDetail>;
}

export interface IdentityRequest {
  /** --user (local only: on aws the IAM user is who you are). */
  user?: string;
  /** --group: on aws when the IAM user's tags cannot be read; on local to submit elsewhere. */
  group?: string;
  /** Local only: who to act as when nothing else says (a command about one job acts as its submitter). */
  fallbackUser?: string;
}

/**
 * What the browser-safe use-cases (researcher-use-cases.ts) need from a backend: no files, no
 * processes. The web app's aws backend implements this in the browser.
 */
export interface UseCaseBackend {
  readonly kind: 'local' | 'aws';
  readonly objects: ClientStore;
  readonly jobs: JobListing;
  readonly clock: Clock;
  /** How often receipts, logs and job ends are polled, in ms. */
  readonly pollMs: number;
  /** How long to wait for the protocol's receipt of a submission or cancel, in ms. */
  readonly receiptTimeoutMs: number;
  /** How a researcher finds an object: a file path on local, `s3://bucket/key` on aws. */
  locationOf(bucket: string, key: string): string;
  /** Throws a NeuroCaasError saying what to do when it cannot be told. */
  identity(request: IdentityRequest): Promise<Identity>;
  /**
   * Whose jobs the job commands see: on aws always the caller's group; on local the group of an
   * explicitly chosen user, else everyone's (one machine, one folder tree).
   */
  scope(request: IdentityRequest): Promise<Identity | undefined>;
  /** Deployed analyses and their buckets. */
  analyses(): Promise<{ analysis: string; bucket: string }[]>;
  /** Throws AnalysisNotFoundError (naming the deployed ones) when `analysis` is not deployed. */
  bucketOf(analysis: string): Promise<string>;
  /**
   * Hands a written submission or cancel request to the protocol. On aws S3 notifies it (nothing
   * to do); on local the protocol runs in this process.
   */
  deliver(bucket: string, key: string, kind: 'submission' | 'cancel'): Promise<void>;
  /**
   * Local only: the answer to a request this process delivered as the protocol's own records
   * give it, for when its receipt is not there (its write failed: the outcome stands all the
   * same). Undefined while there is none yet. Absent on aws, where only the receipt answers.
   */
  answerOf?(bucket: string, requestKey: string): Promise<Receipt | undefined>;
  /** The user's budget view: from the ledger on local, the newest budget object (D4) on aws. */
  budget(identity: Identity): Promise<BudgetDocument | undefined>;
}

export interface ClientBackend extends UseCaseBackend {
  readonly objects: ClientObjects;
  /** Stops what this process runs (local: cancels its jobs); nothing on aws, where jobs outlive the client. */
  stop(reason: string): Promise<void>;
  /** Kills at once whatever this process started (a second Ctrl-C). */
  killNow(): void;
  close(): Promise<void>;
}
