import type { DatasetState, JobState } from './job-machine.js';
import { jobKeys } from './keys.js';

/**
 * What the instance-side runner (lib/runner/ncap-runner.sh) needs to run one dataset. The same
 * contract on every backend: the local machines pass it as a command file, SSM as the lines of
 * an AWS-RunShellScript command.
 */
export interface RunnerSpec {
  jobId: string;
  analysis: string;
  group: string;
  dataset: string;
  bucket: string;
  inputKey: string;
  /** The config as JSON, written by the job manager into the job folder. */
  configKey: string;
  command: string[];
  env: Record<string, string>;
  /** Epoch ms; the runner stops the workflow here even if nobody tells it to. */
  deadlineAtMs: number;
  logKey: string;
  statusKey: string;
  resultsPrefix: string;
  /** Ensemble replicas: NCAP_REPLICA (0..N-1) and NCAP_SEED. */
  replica?: number;
  seed?: number;
  /**
   * Ensemble consensus: every object under this prefix (the replicas' results, one folder per
   * replica) is fetched into a folder the workflow finds in NCAP_REPLICAS_DIR.
   */
  replicasPrefix?: string;
  /** The blueprint's `requires.gpu`: GPUs the runner checks for before the workflow. */
  gpu?: { count: number; strict: boolean };
}

export function buildRunnerSpec(state: JobState, ds: DatasetState, bucket: string): RunnerSpec {
  const plan = state.plan;
  if (!plan) throw new Error(`job ${state.jobId} has no plan; cannot build a runner spec`);
  if (ds.deadlineAtMs === undefined) throw new Error(`dataset ${ds.name} of job ${state.jobId} has no deadline`);
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  const consensus = ds.role === 'consensus' ? plan.ensemble : undefined;
  const spec: RunnerSpec = {
    jobId: state.jobId,
    analysis: state.analysis,
    group: state.group,
    dataset: ds.name,
    bucket,
    inputKey: ds.inputKey,
    configKey: keys.config,
    command: consensus ? consensus.consensusCommand : plan.blueprint.workflow.command,
    env: plan.blueprint.workflow.env,
    deadlineAtMs: ds.deadlineAtMs,
    logKey: keys.datasetLog(ds.name),
    statusKey: keys.datasetStatus(ds.name),
    resultsPrefix: keys.datasetResultsPrefix(ds.name),
  };
  if (ds.role === 'replica' && ds.replica !== undefined) spec.replica = ds.replica;
  if (ds.role === 'replica' && ds.seed !== undefined) spec.seed = ds.seed;
  if (consensus) spec.replicasPrefix = `${keys.prefix}process_results/`;
  const gpu = plan.blueprint.requires?.gpu;
  if (gpu) spec.gpu = { count: gpu.count, strict: gpu.strict };
  return spec;
}

/** Where a machine keeps its data and how it reaches the bucket. */
export interface RunnerPlacement {
  /** "local:<bucket folder>" or "s3://<bucket>". */
  store: string;
  workdir: string;
  scratch: string;
  instanceId: string;
  instanceType: string;
  /**
   * The local backend: a GPU requirement is checked only when the blueprint says it is strict
   * (otherwise the workflow runs on the CPU there). Default false: the machine is an EC2 one.
   */
  local?: boolean;
}

/** The runner's environment: the blueprint's variables, then the NCAP_* contract (which wins). */
export function runnerEnvironment(spec: RunnerSpec, placement: RunnerPlacement): Record<string, string> {
  const structure: Record<string, string> = {};
  if (spec.replica !== undefined) structure['NCAP_REPLICA'] = String(spec.replica);
  if (spec.seed !== undefined) structure['NCAP_SEED'] = String(spec.seed);
  if (spec.replicasPrefix !== undefined) structure['NCAP_REPLICAS_PREFIX'] = spec.replicasPrefix;
  if (spec.gpu && (!placement.local || spec.gpu.strict)) structure['NCAP_REQUIRE_GPUS'] = String(spec.gpu.count);
  return {
    ...structure,
    ...spec.env,
    NCAP_STORE: placement.store,
    NCAP_JOB_ID: spec.jobId,
    NCAP_ANALYSIS: spec.analysis,
    NCAP_DATASET: spec.dataset,
    NCAP_INPUT_KEY: spec.inputKey,
    NCAP_CONFIG_KEY: spec.configKey,
    NCAP_LOG_KEY: spec.logKey,
    NCAP_STATUS_KEY: spec.statusKey,
    NCAP_RESULTS_PREFIX: spec.resultsPrefix,
    NCAP_DEADLINE_EPOCH_MS: String(spec.deadlineAtMs),
    NCAP_WORKDIR: placement.workdir,
    NCAP_SCRATCH: placement.scratch,
    NCAP_INSTANCE_ID: placement.instanceId,
    NCAP_INSTANCE_TYPE: placement.instanceType,
  };
}

/** Quotes one value for POSIX shells: the result is always a single word, whatever it holds. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** `export NAME='value'` lines; names are checked so a key can never inject shell syntax. */
export function shellExports(env: Record<string, string>): string[] {
  return Object.entries(env).map(([name, value]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`environment variable name ${JSON.stringify(name)} is not a valid shell name`);
    return `export ${name}=${shellQuote(value)}`;
  });
}

export { runnerConclusion } from './runner-rules.js';
