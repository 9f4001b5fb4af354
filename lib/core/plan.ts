import { allowedInstanceTypes, type Blueprint } from './blueprint.js';
import { checkConfig, parseConfigText } from './config.js';
import { deadlineFromReservation, jobReservationUsd, machineReservationUsd } from './cost.js';
import { checkKeyInArea, datasetNameOf, isValidObjectKey, jobKeys } from './keys.js';
import { datanames, type Submission } from './submission.js';
import { budgetPeriodOf, mayRunAnalysis, type UserProfile } from './user.js';

/** What the shell knows about one object, looked up before planning. */
export interface ObjectFacts {
  size: number;
  etag: string;
  sha256?: string;
}

export interface PlannedDataset {
  name: string;
  inputKey: string;
  input: ObjectFacts;
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
  hourlyUsd: number;
  timeoutMinutes: number;
  agentWaitMinutes: number;
  maxConcurrentMachines: number;
  machineReservedUsd: number;
  reservedUsd: number;
  budgetUsd: number;
  budgetPeriod: string;
  imageId: string;
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
  nowMs: number;
}

/**
 * Platform limits on one submission, checked before anything else (so a huge submission is
 * refused without reading it). A blueprint's own `limits.maxDatasetsPerJob` may only be lower.
 */
export const SUBMISSION_LIMITS = {
  /** Largest submission file read, bytes (1 MiB: a thousand dataset keys fit many times over). */
  maxSubmissionBytes: 1_048_576,
  /** Most datasets one submission may name, whatever the blueprint allows. */
  maxDatasetsPerJob: 1_000,
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
    const datasetReasons = datasets.map((name) => summarizeReasons([...(ownByName.get(name) ?? []), ...general], reasons.length));
    return { ok: false, reasons, datasets, datasetReasons };
  };

  const user = input.user;
  if (!user) {
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
    const area = checkKeyInArea(key, group, 'inputs');
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
    datasets.push({ name, inputKey: key, input: facts });
  }

  let config: unknown;
  const configArea = checkKeyInArea(submission.configname, group, 'configs');
  const configFacts = input.objects.get(submission.configname);
  if (!configArea.ok) {
    reasons.push(`configname: ${configArea.reason}`);
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

  const allowed = allowedInstanceTypes(blueprint);
  const instanceType = submission.instance_type ?? blueprint.hardware.instanceType;
  if (!allowed.includes(instanceType)) {
    reasons.push(`instance_type "${instanceType}" is not allowed for "${blueprint.name}"; choose one of: ${allowed.join(', ')}`);
  }

  if (reasons.length > 0 || !user || !configFacts) return rejected();

  const hourlyUsd = blueprint.pricing.hourlyUsd[instanceType] as number;
  const timeoutMinutes = blueprint.limits.timeoutMinutes;
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
      datasets,
      instanceType,
      hourlyUsd,
      timeoutMinutes,
      agentWaitMinutes: blueprint.limits.agentWaitMinutes,
      maxConcurrentMachines: blueprint.limits.maxConcurrentMachines,
      machineReservedUsd: machineReservationUsd(hourlyUsd, timeoutMinutes),
      reservedUsd: jobReservationUsd(hourlyUsd, timeoutMinutes, datasets.length),
      budgetUsd: user.budgetUsd,
      budgetPeriod: budgetPeriodOf(user, input.nowMs),
      imageId: input.imageId,
    },
  };
}

/** At most REASONS_PER_DATASET reasons joined, with a pointer to the rest. */
function summarizeReasons(list: readonly string[], total: number): string {
  const shown = list.slice(0, REASONS_PER_DATASET);
  const more = total - shown.length;
  return more > 0 ? `${shown.join('; ')}; and ${more} more reason(s) in logs/certificate.txt` : shown.join('; ');
}

/** A machine's deadline, derived from its share of the reservation. */
export function machineDeadline(plan: Pick<JobPlan, 'machineReservedUsd' | 'hourlyUsd'>, launchRequestedAtMs: number): number {
  return deadlineFromReservation(launchRequestedAtMs, plan.machineReservedUsd, plan.hourlyUsd);
}
