import { attemptDocument, attemptOf, datasetCostUsd, jobOutcome, type JobState } from './job-machine.js';
import { isoOf, type AttemptRecordDocument } from './status.js';

/**
 * provenance.json: enough to say exactly what ran, on what, with what, and what it cost —
 * and to run it again. Built from the persisted job state only.
 */
export interface ProvenanceRecord {
  schemaVersion: 1;
  jobId: string;
  analysis: string;
  group: string;
  user: string;
  outcome: string;
  blueprint: { versionId: string; content: unknown };
  submission: { key: string; content: unknown };
  config: { key: string; etag: string; sha256?: string; content: unknown };
  inputs: { dataset: string; key: string; size: number; etag: string; sha256?: string }[];
  /** `market` is the blueprint's choice; each machine says the market it ran on. */
  environment: { imageId: string; instanceType: string; hourlyUsd: number; storageHourlyUsd: number; market?: string; spotDiscount?: number };
  /**
   * The image the machines booted (aws): its id again, whether it was a literal id or built from
   * the blueprint's recipe, the recipe hash, and the base image's SSM parameter with the AMI it
   * resolved to at deploy time. Absent when the catalog recorded nothing (local backend, or a
   * deployment made before images as code).
   */
  image?: { id: string; source: 'ami' | 'recipe'; recipeHash?: string; baseImage?: { parameter: string; imageId: string } };
  machines: {
    dataset: string;
    /** Ensembles: "replica" (with its index and seed) or "consensus". */
    role?: string;
    replica?: number;
    seed?: number;
    instanceId?: string;
    instanceType?: string;
    /** The market the (last) machine ran on. */
    market?: string;
    /** The attempt that ended the dataset, when platform faults ended earlier ones. */
    attempt?: number;
    earlierAttempts?: AttemptRecordDocument[];
    status: string;
    reason?: string;
    exitCode?: number | null;
    launched?: string;
    started?: string;
    finished?: string;
    terminated?: string;
    deadline?: string;
    /** The dataset's machines' cost as settled (every attempt): the same figure as its status document and the ledger's sum. */
    costUsd?: number;
  }[];
  timings: { submitted: string; ended?: string };
  cost: { reservedUsd: number; spentUsd?: number; budgetPeriod: string };
  /** Ensembles: the dataset, the number of replicas and how many had to succeed. */
  ensemble?: { dataset: string; size: number; minSucceeded: number };
  /** Chains: this job's stage, the job it came from, and the stages still to come. */
  chain?: { stage: number; parent?: { jobId: string; analysis: string; ledgerKey: string }; next: { analysis: string; jobs: number; reservedUsd: number }[] };
}

export function buildProvenance(state: JobState): ProvenanceRecord {
  const plan = state.plan;
  if (!plan) throw new Error(`job ${state.jobId} has no plan; provenance is only written for accepted jobs`);
  return {
    schemaVersion: 1,
    jobId: state.jobId,
    analysis: state.analysis,
    group: state.group,
    user: plan.user,
    outcome: jobOutcome(state),
    blueprint: { versionId: plan.blueprintHash, content: plan.blueprint },
    submission: { key: plan.submissionKey, content: plan.submission },
    config: { key: plan.configKey, etag: plan.configFacts.etag, sha256: plan.configFacts.sha256, content: plan.config },
    inputs: plan.datasets.map((ds) => ({ dataset: ds.name, key: ds.inputKey, size: ds.input.size, etag: ds.input.etag, sha256: ds.input.sha256 })),
    environment: {
      imageId: plan.imageId,
      instanceType: plan.instanceType,
      hourlyUsd: plan.hourlyUsd,
      storageHourlyUsd: plan.storageHourlyUsd ?? 0,
      ...(plan.market !== undefined ? { market: plan.market } : {}),
      ...(plan.spotDiscount !== undefined ? { spotDiscount: plan.spotDiscount } : {}),
    },
    ...(plan.image
      ? {
          image: {
            id: plan.imageId,
            source: plan.image.source,
            ...(plan.image.recipeHash ? { recipeHash: plan.image.recipeHash } : {}),
            ...(plan.image.baseImage ? { baseImage: { parameter: plan.image.baseImage.parameter, imageId: plan.image.baseImage.imageId } } : {}),
          },
        }
      : {}),
    machines: state.datasets.map((ds) => ({
      dataset: ds.name,
      role: ds.role,
      replica: ds.replica,
      seed: ds.seed,
      instanceId: ds.instanceId,
      instanceType: ds.instanceType,
      market: ds.market,
      ...(ds.earlierAttempts?.length ? { attempt: attemptOf(ds), earlierAttempts: ds.earlierAttempts.map(attemptDocument) } : {}),
      status: ds.phase,
      reason: ds.reason,
      exitCode: ds.exitCode,
      launched: isoOf(ds.launchedAtMs),
      started: isoOf(ds.startedAtMs),
      finished: isoOf(ds.finishedAtMs),
      terminated: isoOf(ds.terminatedAtMs),
      deadline: isoOf(ds.deadlineAtMs),
      ...((ds.launchedAtMs !== undefined && ds.terminatedAtMs !== undefined) || ds.earlierAttempts?.length ? { costUsd: datasetCostUsd(state, ds) } : {}),
    })),
    timings: { submitted: new Date(state.createdAtMs).toISOString(), ended: isoOf(state.endedAtMs) },
    cost: { reservedUsd: plan.reservedUsd, spentUsd: state.spentUsd, budgetPeriod: plan.budgetPeriod },
    ...(plan.chain
      ? {
          chain: {
            stage: plan.chain.stage,
            ...(plan.chain.parent ? { parent: { jobId: plan.chain.parent.jobId, analysis: plan.chain.parent.analysis, ledgerKey: plan.chain.parent.ledgerKey } } : {}),
            next: plan.chain.next.map((stage) => ({ analysis: stage.analysis, jobs: stage.jobs, reservedUsd: stage.reservedUsd })),
          },
        }
      : {}),
    ...(plan.ensemble ? { ensemble: { dataset: plan.ensemble.dataset, size: plan.ensemble.size, minSucceeded: plan.ensemble.minSucceeded } } : {}),
  };
}
