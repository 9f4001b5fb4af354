import { allowedInstanceTypes, type Blueprint } from './blueprint.js';
import { checkConfig, parseConfigText } from './config.js';
import { deadlineFromReservation, jobReservationUsd, machineReservationUsd } from './cost.js';
import { checkKeyInArea, datasetNameOf } from './keys.js';
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

export type PlanResult = { ok: true; plan: JobPlan } | { ok: false; reasons: string[]; datasets: string[] };

/**
 * Decides whether a submission may run and how. Every problem is reported at once so a
 * researcher fixes them in one round.
 */
export function planJob(input: PlanInput): PlanResult {
  const { submission, group } = input;
  const reasons: string[] = [];
  const names = datanames(submission);
  const datasetNames = names.map((key) => datasetNameOf(key) || key);

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
    return { ok: false, reasons, datasets: datasetNames };
  }

  if (names.length > blueprint.limits.maxDatasetsPerJob) {
    reasons.push(`too many datasets: ${names.length} named, "${blueprint.name}" allows at most ${blueprint.limits.maxDatasetsPerJob} per submission; split it into several submissions`);
  }

  const seen = new Set<string>();
  const datasets: PlannedDataset[] = [];
  for (const key of names) {
    const area = checkKeyInArea(key, group, 'inputs');
    if (!area.ok) {
      reasons.push(`dataname: ${area.reason}`);
      continue;
    }
    if (seen.has(key)) {
      reasons.push(`dataname: "${key}" is named twice; name each dataset once`);
      continue;
    }
    seen.add(key);
    const facts = input.objects.get(key);
    if (!facts) {
      reasons.push(`dataname: dataset "${key}" does not exist; upload it first`);
      continue;
    }
    datasets.push({ name: datasetNameOf(key), inputKey: key, input: facts });
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

  if (reasons.length > 0 || !user || !configFacts) return { ok: false, reasons, datasets: datasetNames };

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

/** A machine's deadline, derived from its share of the reservation. */
export function machineDeadline(plan: Pick<JobPlan, 'machineReservedUsd' | 'hourlyUsd'>, launchRequestedAtMs: number): number {
  return deadlineFromReservation(launchRequestedAtMs, plan.machineReservedUsd, plan.hourlyUsd);
}
