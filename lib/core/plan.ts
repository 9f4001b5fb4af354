import { allowedInstanceTypes, type Blueprint, type Market, type MarketChoice } from './blueprint.js';
import type { ImageFacts } from './image-recipe.js';
import { checkConfig, parseConfigText } from './config.js';
import { DEFAULT_EBS_USD_PER_GIB_MONTH, deadlineFromReservation, jobReservationUsd, machineReservationUsd, roundUsd, storageHourlyUsd } from './cost.js';
import { checkDatasetKey, checkKeyInArea, datasetNameOf, isFolderKey, isValidObjectKey, jobKeys } from './keys.js';
import { sha256Hex } from './hash.js';
import { datanames, type Submission } from './submission.js';
import { budgetPeriodOf, mayRunAnalysis, type UserProfile } from './user.js';

/** What the shell knows about one object, looked up before planning. */
export interface ObjectFacts {
  size: number;
  etag: string;
  sha256?: string;
  /** The object exists but must not be read (e.g. a link leading outside the bucket): why. */
  unreadable?: string;
  /**
   * A folder dataset (key ending in "/"): how many objects lie under it. `size` is then their
   * total in bytes and `etag` a digest of the listing (keys, etags, sizes).
   */
  objectCount?: number;
}

export interface PlannedDataset {
  name: string;
  inputKey: string;
  input: ObjectFacts;
  /** Ensembles: "replica" datasets run the workflow, the "consensus" one combines them. */
  role?: 'replica' | 'consensus';
  /** Ensembles: the replica's index (NCAP_REPLICA, 0..size-1) and seed (NCAP_SEED). */
  replica?: number;
  seed?: number;
}

/** A later stage of a chain, as planned (and reserved for) by the stage before it. */
export interface ChainStagePlan {
  analysis: string;
  /** Jobs this stage runs ("perDataset": one per dataset of the stage before) and datasets each. */
  jobs: number;
  datasetsPerJob: number;
  instanceType: string;
  hourlyUsd: number;
  timeoutMinutes: number;
  /** Reserved for this stage (all its jobs), by the chain's first job, before anything launched. */
  reservedUsd: number;
}

/** The job a chain stage continues, checked by the shell against the job store. */
export interface ChainParent {
  jobId: string;
  analysis: string;
  /** This job's position in the chain: 2 for the stage after the first. */
  stage: number;
  /** The ledger entry the parent reserved this job's share under; this job settles it. */
  ledgerKey: string;
}

export interface ChainPlan {
  /** 1 for the first job of a chain. */
  stage: number;
  parent?: ChainParent;
  /** The stages after this one, in order. */
  next: ChainStagePlan[];
  /** Part of `reservedUsd` held for the stages after this one; handed on to them. */
  downstreamReservedUsd: number;
}

/** Ledger entry a chain job's follow-on `index` settles: unique per parent job, stage and job. */
export function followOnLedgerKey(parentJobId: string, analysis: string, index: number): string {
  return `${parentJobId}~${analysis}~${index}`;
}

/** Name of the consensus step's dataset; its results land in `process_results/consensus/`. */
export const CONSENSUS_DATASET = 'consensus';

/** What an ensemble job runs: `size` replicas of `dataset`, then the consensus. */
export interface EnsemblePlan {
  dataset: string;
  size: number;
  minSucceeded: number;
  consensusCommand: string[];
}

/** Everything the job needs decided before anything launches; persisted with the job. */
export interface JobPlan {
  jobId: string;
  analysis: string;
  group: string;
  user: string;
  submissionKey: string;
  submission: Submission;
  blueprint: Blueprint;
  blueprintHash: string;
  configKey: string;
  config: unknown;
  configFacts: ObjectFacts;
  datasets: PlannedDataset[];
  instanceType: string;
  /** On-demand instance price of `instanceType`, USD per hour. */
  hourlyUsd: number;
  /**
   * What the machine's EBS volumes (root + extra) cost per hour, USD; reserved and settled
   * together with the instance. Absent in plans made before volumes were priced (then 0).
   */
  storageHourlyUsd?: number;
  timeoutMinutes: number;
  agentWaitMinutes: number;
  maxConcurrentMachines: number;
  machineReservedUsd: number;
  reservedUsd: number;
  budgetUsd: number;
  budgetPeriod: string;
  imageId: string;
  /** Where the image came from (a literal id, or a recipe with its hash and base image); absent when the catalog does not say. */
  image?: ImageFacts;
  /** Where machines are bought (hardware.market); absent in plans made before markets: on demand. */
  market?: MarketChoice;
  /** Fresh machines a dataset may get after platform faults (limits.platformRetries); absent: none. */
  platformRetries?: number;
  /** Share of the on-demand price a spot machine saves (pricing.spotDiscount); absent: 0. */
  spotDiscount?: number;
  /** Present for protocol "ensemble". */
  ensemble?: EnsemblePlan;
  /** Present when the job is a stage of a chain (it has a follow-on, or continues a job). */
  chain?: ChainPlan;
}

export interface PlanInput {
  jobId: string;
  analysis: string;
  group: string;
  submissionKey: string;
  submission: Submission;
  /** Undefined when no profile could be found for the submitter. */
  user: UserProfile | undefined;
  blueprint: Blueprint | undefined;
  blueprintHash: string;
  /** Facts for every key the submission names that exists; missing keys are absent. */
  objects: ReadonlyMap<string, ObjectFacts>;
  /** Config file text, when it exists. */
  configText: string | undefined;
  /** Image the machines run: an AMI id on aws, the environment folder on local. */
  imageId: string;
  /** Where that image came from, as the deploy recorded it (aws). */
  image?: ImageFacts;
  nowMs: number;
  /** Why no submitter could be told (D1), in place of the generic "no profile" reason. */
  submitterProblem?: string;
  /** Blueprints of the analyses the chain names after this one (undefined: does not exist). */
  chainBlueprints?: ReadonlyMap<string, Blueprint | undefined>;
  /** The job this one continues, as verified by the shell. */
  parent?: ChainParent;
}

/**
 * Platform limits on one submission, checked before anything else (so a huge submission is
 * refused without reading it). A blueprint's own `limits.maxDatasetsPerJob` may only be lower.
 */
export const SUBMISSION_LIMITS = {
  /** Largest submission file read, bytes (a thousand dataset keys fit many times over). */
  maxSubmissionBytes: 1_048_576,
  /** Most datasets one submission may name, whatever the blueprint allows. */
  maxDatasetsPerJob: 1_000,
  /** Largest config read, bytes (a config is settings, not data; the web API's limit too). */
  maxConfigBytes: 1_048_576,
} as const;

/** How many reasons a rejected dataset's own status repeats; the certificate has them all. */
const REASONS_PER_DATASET = 3;

export type PlanResult =
  | { ok: true; plan: JobPlan }
  | {
      ok: false;
      reasons: string[];
      /** Names of the datasets that get a status file (only names whose status key is writable). */
      datasets: string[];
      /** For each of `datasets`, its own short reason (bounded, so a rejection grows linearly with the input). */
      datasetReasons: string[];
    };

/** A reason when a submission file is over the size limit, else undefined. */
export function checkSubmissionSize(sizeBytes: number, submissionKey: string): string | undefined {
  if (sizeBytes <= SUBMISSION_LIMITS.maxSubmissionBytes) return undefined;
  return (
    `${JSON.stringify(submissionKey)} is ${sizeBytes} bytes; a submission file may be at most ${SUBMISSION_LIMITS.maxSubmissionBytes} bytes ` +
    '(it names datasets and a config, it does not hold data); upload data under <group>/inputs/ and name it in "dataname"'
  );
}

/** A reason when a submission names more datasets than the platform (or the blueprint) allows, else undefined. */
export function checkDatasetCount(count: number, blueprint?: { name: string; limits: { maxDatasetsPerJob: number } }): string | undefined {
  const platformMax = SUBMISSION_LIMITS.maxDatasetsPerJob;
  const max = Math.min(platformMax, blueprint?.limits.maxDatasetsPerJob ?? platformMax);
  if (count <= max) return undefined;
  const who = blueprint && blueprint.limits.maxDatasetsPerJob < platformMax ? `"${blueprint.name}" allows` : 'the platform allows';
  return `too many datasets: ${count} named, ${who} at most ${max} per submission; split it into several submissions`;
}

/**
 * What a folder dataset is, from the listing of every object under it: their count, total size,
 * and a digest of (key, etag, size) so a changed folder has another etag.
 */
export function folderFactsOf(listing: readonly { key: string; size: number; etag: string }[]): ObjectFacts {
  const sorted = [...listing].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const digest = sha256Hex(sorted.map((o) => `${o.key}\t${o.etag}\t${o.size}`).join('\n'));
  return { size: sorted.reduce((sum, o) => sum + o.size, 0), etag: `folder:${digest}`, objectCount: sorted.length };
}

const BYTES_PER_GIB = 1024 ** 3;

/**
 * A reason when the job's inputs (every dataset, folders counted whole) exceed the blueprint's
 * `limits.maxJobInputGiB`, else undefined. Without that limit there is none.
 */
export function checkJobInputSize(datasets: readonly Pick<PlannedDataset, 'inputKey' | 'input'>[], blueprint: Pick<Blueprint, 'name' | 'limits'>): string | undefined {
  const limitGiB = blueprint.limits.maxJobInputGiB;
  if (limitGiB === undefined) return undefined;
  const totalBytes = datasets.reduce((sum, dataset) => sum + dataset.input.size, 0);
  if (totalBytes <= limitGiB * BYTES_PER_GIB) return undefined;
  const largest = [...datasets].sort((a, b) => b.input.size - a.input.size)[0];
  const gib = (bytes: number) => (bytes / BYTES_PER_GIB).toFixed(2);
  return (
    `dataname: the job's inputs are ${gib(totalBytes)} GiB in ${datasets.length} dataset(s), above the ${limitGiB} GiB per job "${blueprint.name}" allows` +
    (largest ? ` (largest: "${largest.inputKey}", ${gib(largest.input.size)} GiB)` : '') +
    '; split the datasets over several submissions, or ask the analysis developer to raise limits.maxJobInputGiB'
  );
}

/**
 * The dataset names of a rejected submission that can have a status file: a name whose status
 * key could never be written (a control character, too long) is left to the certificate, which
 * names the problem, so the rejection always completes.
 */
export function rejectionDatasetNames(group: string, analysis: string, jobId: string, inputKeys: readonly string[]): string[] {
  const keys = jobKeys(group, analysis, jobId);
  const names: string[] = [];
  const seen = new Set<string>();
  for (const key of inputKeys) {
    const name = datasetNameOf(key) || key;
    if (seen.has(name) || !isValidObjectKey(keys.datasetStatus(name))) continue;
    seen.add(name);
    names.push(name);
  }
  return names;
}

/** Every key a dataset's results are written under can be written; else the reason. */
function checkDatasetKeys(group: string, analysis: string, jobId: string, inputKey: string, name: string): string | undefined {
  const keys = jobKeys(group, analysis, jobId);
  for (const key of [keys.datasetStatus(name), keys.datasetLog(name), `${keys.datasetResultsPrefix(name)}x`]) {
    if (!isValidObjectKey(key)) {
      return `dataname: dataset "${inputKey.slice(0, 80)}${inputKey.length > 80 ? '...' : ''}" has a name its results cannot be stored under (${Buffer.byteLength(key, 'utf8')}-byte keys, at most 1024); use a shorter name`;
    }
  }
  return undefined;
}

/**
 * Decides whether a submission may run and how. Every problem is reported at once so a
 * researcher fixes them in one round.
 */
export function planJob(input: PlanInput): PlanResult {
  const { submission, group } = input;
  const reasons: string[] = [];
  const names = datanames(submission);
  /** Reasons that concern one dataset, by input key; the others concern the whole job. */
  const own = new Map<string, string[]>();
  const datasetReason = (key: string, reason: string) => {
    reasons.push(reason);
    own.set(key, [...(own.get(key) ?? []), reason]);
  };
  const rejected = (): PlanResult => {
    const datasets = rejectionDatasetNames(group, input.analysis, input.jobId, names);
    const ownByName = new Map<string, string[]>();
    for (const key of names) {
      const name = datasetNameOf(key) || key;
      if (!ownByName.has(name)) ownByName.set(name, own.get(key) ?? []);
    }
    const ownReasons = new Set([...own.values()].flat());
    const general = reasons.filter((reason) => !ownReasons.has(reason));
    const datasetReasons = datasets.map((name) => summarizeReasons([...(ownByName.get(name) ?? []), ...general], reasons));
    return { ok: false, reasons, datasets, datasetReasons };
  };

  const user = input.user;
  if (!user && input.submitterProblem !== undefined) {
    reasons.push(input.submitterProblem);
  } else if (!user) {
    reasons.push(`no user profile found for group "${group}"; ask an admin to add users/<name>.json with "group": "${group}"`);
  } else if (user.group !== group) {
    reasons.push(`user "${user.username}" belongs to group "${user.group}", not "${group}"; submit under "${user.group}/submissions/"`);
  } else if (!mayRunAnalysis(user, input.analysis)) {
    reasons.push(`user "${user.username}" may not run "${input.analysis}" (allowed: ${user.allowedAnalyses.join(', ')}); ask an admin`);
  }

  const blueprint = input.blueprint;
  if (!blueprint) {
    reasons.push(`analysis "${input.analysis}" does not exist; check the analysis name or ask its developer to deploy it`);
    return rejected();
  }

  const tooMany = checkDatasetCount(names.length, blueprint);
  if (tooMany) reasons.push(tooMany);

  const seen = new Set<string>();
  const datasets: PlannedDataset[] = [];
  for (const key of names) {
    const area = checkDatasetKey(key, group);
    if (!area.ok) {
      datasetReason(key, `dataname: ${area.reason}`);
      continue;
    }
    if (seen.has(key)) {
      datasetReason(key, `dataname: "${key}" is named twice; name each dataset once`);
      continue;
    }
    seen.add(key);
    const name = datasetNameOf(key);
    const unwritable = checkDatasetKeys(group, input.analysis, input.jobId, key, name);
    if (unwritable) {
      datasetReason(key, unwritable);
      continue;
    }
    const facts = input.objects.get(key);
    if (!facts) {
      datasetReason(key, `dataname: dataset "${key}" does not exist; upload it first`);
      continue;
    }
    if (facts.unreadable !== undefined) {
      datasetReason(key, `dataname: ${facts.unreadable}`);
      continue;
    }
    if (isFolderKey(key) && (facts.objectCount ?? 0) === 0) {
      datasetReason(key, `dataname: folder dataset "${key}" is empty (no objects under it); upload its files under "${key}" first`);
      continue;
    }
    datasets.push({ name, inputKey: key, input: facts });
  }

  const tooLarge = checkJobInputSize(datasets, blueprint);
  if (tooLarge) reasons.push(tooLarge);

  let config: unknown;
  const configArea = checkKeyInArea(submission.configname, group, 'configs');
  const configFacts = input.objects.get(submission.configname);
  if (!configArea.ok) {
    reasons.push(`configname: ${configArea.reason}`);
  } else if (configFacts?.unreadable !== undefined) {
    reasons.push(`configname: ${configFacts.unreadable}`);
  } else if (configFacts && configFacts.size > SUBMISSION_LIMITS.maxConfigBytes) {
    // The shell does not read a config this large, so this comes before "does not exist".
    reasons.push(
      `configname: config ${JSON.stringify(submission.configname)} is ${formatBytes(configFacts.size)}; a config may be at most ${formatByteLimit(SUBMISSION_LIMITS.maxConfigBytes)} ` +
        '(it holds settings, not data): put data under <group>/inputs/ and name it in "dataname"',
    );
  } else if (!configFacts || input.configText === undefined) {
    reasons.push(`configname: config "${submission.configname}" does not exist; upload it first`);
  } else {
    const parsed = parseConfigText(input.configText, submission.configname);
    if (!parsed.ok) {
      reasons.push(parsed.reason);
    } else {
      config = parsed.value;
      reasons.push(...checkConfig(blueprint.config.jsonSchema, parsed.value, submission.configname));
    }
  }

  let ensemble: EnsemblePlan | undefined;
  let planned = datasets;
  if (blueprint.protocol === 'ensemble' && blueprint.ensemble) {
    const result = planEnsemble(blueprint, datasets, names.length, config);
    if (result.ok) {
      ensemble = result.ensemble;
      planned = result.datasets;
    } else {
      reasons.push(...result.reasons);
    }
  }

  const downstream = planChain(blueprint, user, planned.length, input.chainBlueprints ?? new Map());
  reasons.push(...downstream.reasons);

  const allowed = allowedInstanceTypes(blueprint);
  const instanceType = submission.instance_type ?? blueprint.hardware.instanceType;
  if (!allowed.includes(instanceType)) {
    reasons.push(`instance_type "${instanceType}" is not allowed for "${blueprint.name}"; choose one of: ${allowed.join(', ')}`);
  }

  if (reasons.length > 0 || !user || !configFacts) return rejected();

  const { hourlyUsd, storageHourlyUsd: storageUsd, machineHourlyUsd } = machinePricing(blueprint, instanceType);
  const timeoutMinutes = blueprint.limits.timeoutMinutes;
  const downstreamReservedUsd = roundUsd(downstream.stages.reduce((sum, stage) => sum + stage.reservedUsd, 0));
  const chain: ChainPlan | undefined =
    downstream.stages.length > 0 || input.parent
      ? { stage: input.parent?.stage ?? 1, ...(input.parent ? { parent: input.parent } : {}), next: downstream.stages, downstreamReservedUsd }
      : undefined;
  return {
    ok: true,
    plan: {
      jobId: input.jobId,
      analysis: input.analysis,
      group,
      user: user.username,
      submissionKey: input.submissionKey,
      submission,
      blueprint,
      blueprintHash: input.blueprintHash,
      configKey: submission.configname,
      config,
      configFacts,
      datasets: planned,
      instanceType,
      hourlyUsd,
      storageHourlyUsd: storageUsd,
      timeoutMinutes,
      agentWaitMinutes: blueprint.limits.agentWaitMinutes,
      maxConcurrentMachines: blueprint.limits.maxConcurrentMachines,
      machineReservedUsd: machineReservationUsd(machineHourlyUsd, timeoutMinutes),
      // A chain reserves every later stage too, so it never stops midway for lack of budget.
      reservedUsd: roundUsd(jobReservationUsd(machineHourlyUsd, timeoutMinutes, planned.length) + downstreamReservedUsd),
      budgetUsd: user.budgetUsd,
      budgetPeriod: budgetPeriodOf(user, input.nowMs),
      imageId: input.imageId,
      ...(input.image ? { image: input.image } : {}),
      market: blueprint.hardware.market,
      platformRetries: blueprint.limits.platformRetries,
      ...(blueprint.pricing.spotDiscount !== undefined ? { spotDiscount: blueprint.pricing.spotDiscount } : {}),
      ...(ensemble ? { ensemble } : {}),
      ...(chain ? { chain } : {}),
    },
  };
}

/**
 * Walks `followOn` from `blueprint`: every later stage must exist, be one the user may run,
 * accept the config the stage before declares, and not loop back. `machines` datasets flow
 * through: "perDataset" makes one job per dataset, "allAsOne" one job with all of them.
 */
export function planChain(
  blueprint: Blueprint,
  user: UserProfile | undefined,
  machines: number,
  blueprints: ReadonlyMap<string, Blueprint | undefined>,
): { stages: ChainStagePlan[]; reasons: string[] } {
  const stages: ChainStagePlan[] = [];
  const reasons: string[] = [];
  const path = [blueprint.name];
  let current = blueprint;
  while (current.followOn) {
    const { analysis, inputs, config } = current.followOn;
    if (path.includes(analysis)) {
      reasons.push(`followOn: the chain loops (${[...path, analysis].join(' -> ')}); a chain must end`);
      break;
    }
    const next = blueprints.get(analysis);
    if (!next) {
      reasons.push(`followOn: "${current.name}" continues with analysis "${analysis}", which does not exist; ask its developer to deploy it`);
      break;
    }
    if (user && !mayRunAnalysis(user, analysis)) {
      reasons.push(`followOn: user "${user.username}" may not run "${analysis}", the chain's next stage after "${current.name}" (allowed: ${user.allowedAnalyses.join(', ')}); ask an admin`);
    }
    if (next.protocol === 'ensemble') {
      reasons.push(`followOn: "${analysis}" is an ensemble, which cannot be a chain's next stage; run it by itself`);
      break;
    }
    reasons.push(...checkConfig(next.config.jsonSchema, config, `followOn.config of "${current.name}"`));
    const jobs = inputs.grouping === 'perDataset' ? machines : 1;
    const datasetsPerJob = inputs.grouping === 'perDataset' ? 1 : machines;
    if (datasetsPerJob > next.limits.maxDatasetsPerJob) {
      reasons.push(`followOn: "${analysis}" takes at most ${next.limits.maxDatasetsPerJob} dataset(s) per job, but "${current.name}" would hand it ${datasetsPerJob} as one`);
    }
    const instanceType = next.hardware.instanceType;
    // The stage's machines with their volumes (root + extra): exactly what the next job's own
    // plan reserves per machine, so the share handed on covers its worst case.
    const { hourlyUsd, machineHourlyUsd } = machinePricing(next, instanceType);
    stages.push({
      analysis,
      jobs,
      datasetsPerJob,
      instanceType,
      hourlyUsd,
      timeoutMinutes: next.limits.timeoutMinutes,
      reservedUsd: jobReservationUsd(machineHourlyUsd, next.limits.timeoutMinutes, machines),
    });
    path.push(analysis);
    current = next;
  }
  return { stages, reasons };
}

/**
 * A dataset's reason: at most REASONS_PER_DATASET of the reasons that concern it (its own and the
 * job-wide ones), with a pointer to the rest; for a dataset that is fine itself, the first of the
 * submission's problems. Bounded, so a rejection grows linearly with the number of datasets.
 */
function summarizeReasons(relevant: readonly string[], all: readonly string[]): string {
  if (relevant.length === 0) {
    return `this dataset is fine, but the submission has ${all.length} problem(s), first: ${all[0] ?? 'unknown'}; see logs/certificate.txt`;
  }
  const shown = relevant.slice(0, REASONS_PER_DATASET);
  const more = relevant.length - shown.length;
  return more > 0 ? `${shown.join('; ')}; and ${more} more reason(s) in logs/certificate.txt` : shown.join('; ');
}

/**
 * An ensemble's machines: `size` replicas of the one dataset (size from the config's
 * `ensemble_size`, bounded by the blueprint, else `ensemble.size`), then the consensus step.
 * Seeds are derived from the dataset's content and the replica index: reproducible for the same
 * data, different between replicas.
 */
function planEnsemble(
  blueprint: Blueprint,
  datasets: PlannedDataset[],
  named: number,
  config: unknown,
): { ok: true; ensemble: EnsemblePlan; datasets: PlannedDataset[] } | { ok: false; reasons: string[] } {
  const settings = blueprint.ensemble;
  if (!settings) return { ok: false, reasons: [`analysis "${blueprint.name}" has protocol "ensemble" but no ensemble settings`] };
  const reasons: string[] = [];
  if (named !== 1) {
    reasons.push(`an ensemble runs its replicas on one dataset, but the submission names ${named}; submit one dataset per job`);
  }
  const maxSize = settings.maxSize ?? settings.size;
  let size = settings.size;
  const asked = config !== null && typeof config === 'object' ? (config as Record<string, unknown>)['ensemble_size'] : undefined;
  if (asked !== undefined) {
    if (typeof asked !== 'number' || !Number.isInteger(asked) || asked < 1) {
      reasons.push(`config key "ensemble_size" must be a whole number of replicas >= 1, got ${JSON.stringify(asked)}`);
    } else if (asked > maxSize) {
      reasons.push(`config key "ensemble_size" is ${asked}, above the limit of "${blueprint.name}" (${maxSize} replicas); ask for at most ${maxSize}`);
    } else {
      size = asked;
    }
  }
  if (size < settings.minSucceeded) {
    reasons.push(
      `an ensemble of ${size} replica(s) can never reach the ${settings.minSucceeded} succeeded replicas the consensus of "${blueprint.name}" needs; ask for at least ${settings.minSucceeded}`,
    );
  }
  const dataset = datasets[0];
  if (reasons.length > 0 || !dataset) return { ok: false, reasons };
  const replicas: PlannedDataset[] = Array.from({ length: size }, (_, replica) => ({
    name: `replica-${replica}`,
    inputKey: dataset.inputKey,
    input: dataset.input,
    role: 'replica',
    replica,
    seed: replicaSeed(dataset.input.sha256 ?? dataset.input.etag, replica),
  }));
  const consensus: PlannedDataset = { name: CONSENSUS_DATASET, inputKey: dataset.inputKey, input: dataset.input, role: 'consensus' };
  return {
    ok: true,
    ensemble: { dataset: dataset.name, size, minSucceeded: settings.minSucceeded, consensusCommand: settings.consensus.command },
    datasets: [...replicas, consensus],
  };
}

/** A 31-bit seed from the dataset fingerprint and replica index (FNV-1a). */
export function replicaSeed(fingerprint: string, replica: number): number {
  let hash = 0x811c9dc5;
  for (const char of `${fingerprint}#${replica}`) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash & 0x7fffffff;
}

/** What one machine of `blueprint` costs per hour on `instanceType`: the instance, its volumes, both. */
export function machinePricing(blueprint: Blueprint, instanceType: string): { hourlyUsd: number; storageHourlyUsd: number; machineHourlyUsd: number } {
  const hourlyUsd = blueprint.pricing.hourlyUsd[instanceType] as number;
  const storageUsd = storageHourlyUsd(
    [blueprint.hardware.volumeSizeGiB, ...(blueprint.hardware.extraVolumeSizesGiB ?? [])],
    blueprint.pricing.ebsUsdPerGiBMonth ?? DEFAULT_EBS_USD_PER_GIB_MONTH,
  );
  return { hourlyUsd, storageHourlyUsd: storageUsd, machineHourlyUsd: hourlyUsd + storageUsd };
}

/** A machine's deadline, derived from its share of the reservation. */
export function machineDeadline(plan: Pick<JobPlan, 'machineReservedUsd' | 'hourlyUsd' | 'storageHourlyUsd'>, launchRequestedAtMs: number): number {
  return deadlineFromReservation(launchRequestedAtMs, plan.machineReservedUsd, plan.hourlyUsd + (plan.storageHourlyUsd ?? 0));
}

/**
 * What one machine of the plan costs per hour when EC2 gave it `instanceType` on `market` (a
 * capacity fallback is never dearer than the type reserved for): the instance, at the
 * blueprint's spot discount on spot, plus its volumes (EBS costs the same on both markets).
 */
export function machineHourlyUsdOf(plan: Pick<JobPlan, 'hourlyUsd' | 'storageHourlyUsd' | 'blueprint' | 'spotDiscount'>, instanceType: string | undefined, market: Market = 'on-demand'): number {
  const onDemand = (instanceType !== undefined ? plan.blueprint.pricing.hourlyUsd[instanceType] : undefined) ?? plan.hourlyUsd;
  const instance = market === 'spot' ? onDemand * (1 - (plan.spotDiscount ?? 0)) : onDemand;
  return instance + (plan.storageHourlyUsd ?? 0);
}

/**
 * Chain configs among a set of blueprints: each `followOn.config` checked against the next
 * analysis's config schema (what planChain checks at submission), one line per problem.
 * Follow-ons to analyses outside the set are chainProblems' to report.
 */
export function followOnConfigProblems(blueprints: readonly Blueprint[]): string[] {
  const byName = new Map(blueprints.map((b) => [b.name, b]));
  const problems: string[] = [];
  for (const blueprint of blueprints) {
    const followOn = blueprint.followOn;
    const next = followOn && byName.get(followOn.analysis);
    if (!followOn || !next) continue;
    if (next.protocol === 'ensemble') problems.push(`${blueprint.name}: followOn.analysis "${next.name}" is an ensemble, which cannot be a chain's next stage`);
    problems.push(...checkConfig(next.config.jsonSchema, followOn.config, `followOn.config of "${blueprint.name}", checked against the config schema of "${next.name}"`));
  }
  return problems;
}

/** Bytes for people: "3.0 GiB", "2.5 MiB", "900 bytes". */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${bytes} bytes`;
}

/**
 * A limit as people write it, exactly: the largest binary unit it is a whole number of
 * (1_048_576 -> "1 MiB", 512 -> "512 bytes"). Messages quote limits through this, so the text
 * can never disagree with the constant it names.
 */
export function formatByteLimit(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}
