import type { JobState, DatasetState } from './job-machine.js';
import { jobKeys } from './keys.js';
import { datasetStatusDocument } from './job-machine.js';

/** What the instance-side runner needs to run one dataset. Same contract on every backend. */
export interface RunnerSpec {
  jobId: string;
  analysis: string;
  group: string;
  dataset: string;
  bucket: string;
  inputKey: string;
  configKey: string;
  /** Parsed, validated config; the workflow reads it as JSON at NCAP_CONFIG. */
  config: unknown;
  command: string[];
  env: Record<string, string>;
  /** Epoch ms; the runner stops the workflow here even if nobody tells it to. */
  deadlineAtMs: number;
  logKey: string;
  statusKey: string;
  resultsPrefix: string;
  /** The status document as the job manager last wrote it; the runner updates and rewrites it. */
  status: ReturnType<typeof datasetStatusDocument>;
}

export function buildRunnerSpec(state: JobState, ds: DatasetState, bucket: string, nowMs: number): RunnerSpec {
  const plan = state.plan;
  if (!plan) throw new Error(`job ${state.jobId} has no plan; cannot build a runner spec`);
  if (ds.deadlineAtMs === undefined) throw new Error(`dataset ${ds.name} of job ${state.jobId} has no deadline`);
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  return {
    jobId: state.jobId,
    analysis: state.analysis,
    group: state.group,
    dataset: ds.name,
    bucket,
    inputKey: ds.inputKey,
    configKey: plan.configKey,
    config: plan.config,
    command: plan.blueprint.workflow.command,
    env: plan.blueprint.workflow.env,
    deadlineAtMs: ds.deadlineAtMs,
    logKey: keys.datasetLog(ds.name),
    statusKey: keys.datasetStatus(ds.name),
    resultsPrefix: keys.datasetResultsPrefix(ds.name),
    status: datasetStatusDocument(state, ds, nowMs),
  };
}

export { runnerConclusion } from './runner-rules.js';
