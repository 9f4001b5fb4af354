/**
 * The `commands` of the AWS-RunShellScript command that runs one dataset on an EC2 machine.
 * Pure: the runner script's text comes in as an argument. Every value that comes from a
 * blueprint, a submission or a key goes through `shellQuote` (via `shellExports` for the
 * environment), so whatever it holds, it stays one literal word: no string templates of raw values.
 *
 * The lines run under `sh` (dash on Debian/Ubuntu images, bash on Amazon Linux), so they are POSIX;
 * the runner itself is started with bash, which it needs.
 */
import { createHash } from 'node:crypto';
import { runnerEnvironment, shellExports, shellQuote, type RunnerSpec } from '../core/runner-spec.js';

/** Where the command writes the runner before starting it. */
export const RUNNER_PATH = '/opt/neurocaas/ncap-runner.sh';

/**
 * The folder an analysis image keeps its workflow in, the workflow's working directory
 * (NCAP_WORKDIR). An AMI built for NeuroCAAS installs its code and environment here, just as
 * the local backend's environment folder of the analysis.
 */
export const WORKFLOW_DIR = '/opt/neurocaas/env';

/** Scratch space of the datasets on a machine: `<root>/<jobId>/<dataset>`. */
export const SCRATCH_ROOT = '/var/lib/neurocaas';

/** SSM Run Command's largest executionTimeout: 48 hours. */
export const MAX_EXECUTION_TIMEOUT_SECONDS = 172_800;

/**
 * Added to the time left before the deadline: the runner stops the workflow at the deadline
 * itself and then still ships the log and writes the status; SSM must not kill it first.
 */
export const EXECUTION_MARGIN_SECONDS = 120;

export interface RunnerCommandInput {
  spec: RunnerSpec;
  /** Text of lib/runner/ncap-runner.sh, shipped inside the command. */
  runnerScript: string;
  instanceId: string;
  /**
   * The machine's instance type, recorded in the status. Default: unknown to the caller, so the
   * command asks the machine's metadata service (IMDSv2) for it.
   */
  instanceType?: string;
  /** Region for the runner's AWS CLI (AWS_REGION, AWS_DEFAULT_REGION). Default: not set. */
  region?: string;
  /** Where the runner is written. Default RUNNER_PATH; tests point it at a temporary folder. */
  runnerPath?: string;
}

/** Lines that ask IMDSv2 for the instance type; fixed text, no value is interpolated. */
const INSTANCE_TYPE_FROM_METADATA = [
  "NCAP_INSTANCE_TYPE=$(imds_token=$(curl -sf --max-time 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && " +
    'curl -sf --max-time 2 -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/instance-type) || NCAP_INSTANCE_TYPE=\'\'',
  'export NCAP_INSTANCE_TYPE',
];

/** The folder a dataset works in on the machine. */
export function scratchFolder(jobId: string, dataset: string): string {
  for (const [what, name] of [
    ['job id', jobId],
    ['dataset name', dataset],
  ] as const) {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new Error(`${what} ${JSON.stringify(name)} cannot name a scratch folder: it must be one folder name`);
    }
  }
  return `${SCRATCH_ROOT}/${jobId}/${dataset}`;
}

/** The `commands` parameter of AWS-RunShellScript for one dataset. */
export function runnerCommands(input: RunnerCommandInput): string[] {
  const { spec, instanceId } = input;
  if (spec.command.length === 0) throw new Error(`analysis ${spec.analysis} has an empty workflow command; nothing to run`);
  const runnerPath = input.runnerPath ?? RUNNER_PATH;
  const partPath = `${runnerPath}.part`;
  const runnerFolder = runnerPath.slice(0, runnerPath.lastIndexOf('/')) || '/';
  const env = runnerEnvironment(spec, {
    store: `s3://${spec.bucket}`,
    workdir: WORKFLOW_DIR,
    scratch: scratchFolder(spec.jobId, spec.dataset),
    instanceId,
    instanceType: input.instanceType ?? '',
  });
  if (input.instanceType === undefined) delete env['NCAP_INSTANCE_TYPE'];
  if (input.region !== undefined) {
    env['AWS_REGION'] = input.region;
    env['AWS_DEFAULT_REGION'] = input.region;
  }
  // When done, the runner powers the machine off; the instance's shutdown behaviour terminates it.
  env['NCAP_SHUTDOWN'] = '1';
  const encoded = Buffer.from(input.runnerScript, 'utf8').toString('base64');
  const digest = createHash('sha256').update(input.runnerScript, 'utf8').digest('hex');
  return [
    'set -e',
    `mkdir -p ${shellQuote(runnerFolder)}`,
    // Written beside its final name, checked, then renamed: a cut-short transfer never runs.
    `printf '%s' ${shellQuote(encoded)} | base64 -d > ${shellQuote(partPath)}`,
    `printf '%s  %s\\n' ${shellQuote(digest)} ${shellQuote(partPath)} | sha256sum -c --quiet -`,
    `mv -f ${shellQuote(partPath)} ${shellQuote(runnerPath)}`,
    ...(input.instanceType === undefined ? INSTANCE_TYPE_FROM_METADATA : []),
    ...shellExports(env),
    `exec bash ${shellQuote(runnerPath)} --machine ${shellQuote(instanceId)} -- ${spec.command.map(shellQuote).join(' ')}`,
  ];
}

/**
 * SSM's executionTimeout for a runner that must stop at `deadlineAtMs`: the seconds left plus
 * EXECUTION_MARGIN_SECONDS, within [1, 48 h]. A deadline more than 48 h away is cut to 48 h
 * (SSM's limit); blueprints should not ask for longer.
 */
export function executionTimeoutSeconds(deadlineAtMs: number, nowMs: number): number {
  if (!Number.isFinite(deadlineAtMs) || !Number.isFinite(nowMs)) {
    throw new Error(`deadline and now must be epoch milliseconds, got ${deadlineAtMs} and ${nowMs}`);
  }
  const seconds = Math.ceil((deadlineAtMs - nowMs) / 1000) + EXECUTION_MARGIN_SECONDS;
  return Math.min(MAX_EXECUTION_TIMEOUT_SECONDS, Math.max(1, seconds));
}
