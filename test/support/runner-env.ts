/**
 * The runner's environment for the one-dataset layout the runner tests and benches use: dataset
 * `a.csv` of job `J1` of analysis `t` in group `lab`, with its input at `lab/inputs/a.csv` and its
 * config at `lab/configs/c.json`. One place, so a new NCAP_* variable reaches every such run.
 */

/** Where job J1's results, logs and status live in the bucket. */
export const ONE_DATASET_PREFIX = 'lab/results/job__t_J1/';

/** The dataset's status document (the NeuroCAAS name under the job's logs/). */
export const ONE_DATASET_STATUS_KEY = `${ONE_DATASET_PREFIX}logs/DATASET_NAME-a.csv_STATUS.txt.json`;

export interface OneDatasetRunnerEnvOptions {
  /** `local:<folder>` or `s3://<bucket>`. */
  store: string;
  /** The machine's work folder (NCAP_WORKDIR). */
  workdir: string;
  /** The dataset's scratch folder (NCAP_SCRATCH). */
  scratch: string;
  instanceId: string;
  /** How long from now until the dataset's deadline, in ms. */
  deadlineInMs: number;
  /** PATH for the runner; default this process's. */
  path?: string;
}

/** NCAP_* variables (plus PATH) of a runner run for dataset a.csv of job J1. */
export function oneDatasetRunnerEnv(options: OneDatasetRunnerEnvOptions): Record<string, string> {
  const prefix = ONE_DATASET_PREFIX;
  return {
    PATH: options.path ?? process.env['PATH'] ?? '/usr/bin:/bin',
    NCAP_STORE: options.store,
    NCAP_JOB_ID: 'J1',
    NCAP_ANALYSIS: 't',
    NCAP_DATASET: 'a.csv',
    NCAP_INPUT_KEY: 'lab/inputs/a.csv',
    NCAP_CONFIG_KEY: 'lab/configs/c.json',
    NCAP_LOG_KEY: `${prefix}logs/a.csv.log`,
    NCAP_STATUS_KEY: ONE_DATASET_STATUS_KEY,
    NCAP_RESULTS_PREFIX: `${prefix}process_results/a.csv/`,
    NCAP_DEADLINE_EPOCH_MS: String(Date.now() + options.deadlineInMs),
    NCAP_WORKDIR: options.workdir,
    NCAP_SCRATCH: options.scratch,
    NCAP_INSTANCE_ID: options.instanceId,
  };
}

/**
 * The real AWS CLI pointed at a 127.0.0.1 endpoint and nothing else: fixed test credentials, no
 * config or credentials file, no instance metadata, checksums only where S3 requires them.
 */
export function awsCliTestEnv(endpoint: string, home: string): Record<string, string> {
  return {
    HOME: home,
    LANG: 'C.UTF-8',
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
  };
}
