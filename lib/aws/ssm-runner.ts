import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { MachineLaunchError } from '../core/errors.js';
import type { Clock, CommandRunner, RunnerSpec } from '../ports.js';
import type { MachinePlacement } from './ec2-machines.js';
import { awsErrorCode, describeAwsError, isThrottlingError, withRetries } from './retry.js';
import { executionTimeoutSeconds, runnerCommands } from './runner-command.js';

export const RUN_SHELL_SCRIPT = 'AWS-RunShellScript';

/** How long SSM may take to hand the command to the agent before giving up. */
export const DELIVERY_TIMEOUT_SECONDS = 600;

const MAX_COMMENT_CHARS = 100;

/** What the monitor needs from one command on one machine. */
export interface CommandResult {
  /** SSM's Status: Pending, InProgress, Delayed, Success, Failed, Cancelled, Cancelling, TimedOut. */
  status: string;
  /** The workflow runner's exit code; null while running, or when SSM has none (ResponseCode -1). */
  exitCode: number | null;
  /** SSM stopped waiting: the command was not delivered, or ran past its executionTimeout. */
  timedOut: boolean;
  /** The status is final. */
  finished: boolean;
}

const FINISHED_STATUSES = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut']);
const TIMED_OUT_DETAILS = new Set(['DeliveryTimedOut', 'ExecutionTimedOut']);

export interface SsmRunnerOptions {
  sleep?: (ms: number) => Promise<void>;
  /** Attempts per SSM call when throttled. Default 5. */
  maxAttempts?: number;
  random?: () => number;
}

/** SSM Run Command as the platform's command runner (DESIGN.md section 5). */
export class SsmRunner implements CommandRunner {
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly maxAttempts: number;
  private readonly random: (() => number) | undefined;

  /**
   * @param runnerScript text of lib/runner/ncap-runner.sh, shipped inside every command
   */
  constructor(
    private readonly ssm: SSMClient,
    private readonly placementOf: (analysis: string) => Promise<MachinePlacement>,
    private readonly runnerScript: string,
    private readonly clock: Clock,
    options: SsmRunnerOptions = {},
  ) {
    this.sleep = options.sleep ?? ((ms) => sleepMs(ms).then(() => undefined));
    this.maxAttempts = options.maxAttempts ?? 5;
    this.random = options.random;
  }

  async isAgentOnline(instanceId: string): Promise<boolean> {
    const output = await this.retrying(() =>
      this.ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] })),
    );
    return (output.InstanceInformationList ?? []).some((info) => info.InstanceId === instanceId && info.PingStatus === 'Online');
  }

  /**
   * Starts the runner for `spec` on the machine. A machine runs one dataset, so a neurocaas
   * command already sent to it (the driver retrying after a crash) is returned instead of a second one.
   */
  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const placement = await this.placementOf(spec.analysis);
    if (placement.bucket !== spec.bucket) {
      throw new MachineLaunchError(
        `machines of analysis "${spec.analysis}" may only reach bucket "${placement.bucket}", but job ${spec.jobId} is in bucket "${spec.bucket}"; ` +
          'submit to the analysis bucket',
      );
    }
    const comment = commandComment(spec);
    try {
      const earlier = await this.commandSentTo(instanceId, comment);
      if (earlier) return { commandId: earlier };
      const input = sendCommandInput(
        instanceId,
        spec,
        runnerCommands({ spec, runnerScript: this.runnerScript, instanceId, region: await this.ssm.config.region() }),
        this.clock.nowMs(),
      );
      const output = await this.retrying(() => this.ssm.send(new SendCommandCommand(input)));
      const commandId = output.Command?.CommandId;
      if (!commandId) throw new MachineLaunchError(`SSM accepted the command for machine ${instanceId} but returned no command id`);
      return { commandId };
    } catch (error) {
      throw sendError(error, instanceId);
    }
  }

  /** The state of the command on the machine (GetCommandInvocation), for the monitor. */
  async commandResult(commandId: string, instanceId: string): Promise<CommandResult> {
    const output = await this.retrying(() => this.ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId })));
    return commandResultOf(output.Status, output.StatusDetails, output.ResponseCode);
  }

  /** Id of a neurocaas command already sent to the machine, if any. */
  private async commandSentTo(instanceId: string, comment: string): Promise<string | undefined> {
    let nextToken: string | undefined;
    do {
      const page = await this.retrying(() =>
        this.ssm.send(
          new ListCommandsCommand({ InstanceId: instanceId, Filters: [{ key: 'DocumentName', value: RUN_SHELL_SCRIPT }], MaxResults: 50, NextToken: nextToken }),
        ),
      );
      const found = (page.Commands ?? []).find((command) => command.Comment === comment && command.CommandId);
      if (found) return found.CommandId;
      nextToken = page.NextToken;
    } while (nextToken);
    return undefined;
  }

  private retrying<T>(call: () => Promise<T>): Promise<T> {
    return withRetries(call, {
      isRetryable: isThrottlingError,
      maxAttempts: this.maxAttempts,
      baseDelayMs: 500,
      sleep: this.sleep,
      ...(this.random ? { random: this.random } : {}),
    });
  }
}

/** The whole SendCommand request. */
export function sendCommandInput(instanceId: string, spec: RunnerSpec, commands: string[], nowMs: number): SendCommandCommandInput {
  return {
    DocumentName: RUN_SHELL_SCRIPT,
    InstanceIds: [instanceId],
    Parameters: {
      commands,
      executionTimeout: [String(executionTimeoutSeconds(spec.deadlineAtMs, nowMs))],
    },
    TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
    Comment: commandComment(spec),
    OutputS3BucketName: spec.bucket,
    OutputS3KeyPrefix: ssmOutputPrefix(spec),
    CloudWatchOutputConfig: { CloudWatchOutputEnabled: false },
  };
}

/** "neurocaas <job> <dataset>", cut to SSM's 100 characters. */
export function commandComment(spec: RunnerSpec): string {
  return `neurocaas ${spec.jobId} ${spec.dataset}`.slice(0, MAX_COMMENT_CHARS);
}

/** The runner's own stdout/stderr land beside the job's logs: `<job prefix>logs/ssm/`. */
export function ssmOutputPrefix(spec: RunnerSpec): string {
  const slash = spec.logKey.lastIndexOf('/');
  return `${slash >= 0 ? spec.logKey.slice(0, slash + 1) : ''}ssm/`;
}

export function commandResultOf(status: string | undefined, statusDetails: string | undefined, responseCode: number | undefined): CommandResult {
  const normalisedStatus = status ?? 'Pending';
  // StatusDetails reads "Execution Timed Out" in the API and "ExecutionTimedOut" in events.
  const details = (statusDetails ?? '').replace(/\s+/g, '');
  return {
    status: normalisedStatus,
    exitCode: responseCode === undefined || responseCode === -1 ? null : responseCode,
    timedOut: normalisedStatus === 'TimedOut' || TIMED_OUT_DETAILS.has(details),
    finished: FINISHED_STATUSES.has(normalisedStatus),
  };
}

/** SSM's refusals become MachineLaunchError (the dataset fails with the reason); outages stay as they are. */
function sendError(error: unknown, instanceId: string): unknown {
  if (error instanceof MachineLaunchError) return error;
  const code = awsErrorCode(error);
  if (code === 'InvalidInstanceId') {
    return new MachineLaunchError(
      `machine ${instanceId} cannot take the workflow command: its SSM agent is not registered or the machine is not running (${describeAwsError(error)})`,
      { cause: error },
    );
  }
  const fault = typeof error === 'object' && error !== null ? (error as { $fault?: unknown }).$fault : undefined;
  if (fault === 'client' && !isThrottlingError(error)) {
    return new MachineLaunchError(`SSM refused the workflow command for machine ${instanceId}: ${describeAwsError(error)}`, { cause: error });
  }
  return error;
}
