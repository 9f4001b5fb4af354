import { Duration } from 'aws-cdk-lib';
import { Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { REAPER_PERIOD_MINUTES } from '../core/cost.js';
import { RUN_SHELL_SCRIPT_DOCUMENT } from './machine-control-policy.js';
import { acknowledge, wildcardResourceFinding } from './nag.js';
import { ProtocolFunction, type ProtocolLogLevel } from './protocol-function.js';

/** EC2 states the job reducer reacts to (InstanceStateChanged). */
export const WATCHED_INSTANCE_STATES = ['running', 'stopped', 'shutting-down', 'terminated'] as const;

/** SSM command-invocation statuses the job reducer reacts to (CommandStarted, CommandFinished). */
export const WATCHED_COMMAND_STATUSES = ['InProgress', 'Success', 'Failed', 'TimedOut', 'Cancelled'] as const;

/** The EventBridge detail type of EC2's two-minute spot interruption notice. */
export const SPOT_INTERRUPTION_DETAIL_TYPE = 'EC2 Spot Instance Interruption Warning';

/** How often the reaper looks for machines past their deadline: the period every reservation covers. */
export const REAPER_INTERVAL = Duration.minutes(REAPER_PERIOD_MINUTES);

/** Everything a protocol function needs, whatever it reacts to. */
export interface ProtocolGrants {
  readonly table: dynamodb.ITable;
  readonly agentQueue: sqs.IQueue;
  readonly machineControl: iam.IManagedPolicy;
  /** Job-end notifications (D7): every protocol may publish, with message attribute `user`. */
  readonly notifications: sns.ITopic;
}

/** The environment every protocol reads at start-up. */
export function protocolEnvironment(grants: ProtocolGrants): Record<string, string> {
  return {
    NCAP_TABLE_NAME: grants.table.tableName,
    NCAP_AGENT_QUEUE_URL: grants.agentQueue.queueUrl,
    NOTIFY_TOPIC_ARN: grants.notifications.topicArn,
  };
}

/**
 * Any protocol may carry out any effect of the job reducer (a finished machine frees a slot
 * and the next dataset launches from the monitor, an expired one is terminated by the reaper,
 * ...), so every protocol gets the same platform permissions: the table's items, scheduling
 * agent re-checks, machine control and publishing job-end notifications.
 */
export function grantProtocol(fn: ProtocolFunction, grants: ProtocolGrants): void {
  // The shared protocols (the reaper) query the table's index; an analysis's submit does not,
  // so it gets the table by ARN, without its indexes.
  const shared = Stack.of(fn) === Stack.of(grants.table);
  const table = shared ? grants.table : dynamodb.Table.fromTableArn(fn, 'PlatformTable', grants.table.tableArn);
  table.grantReadWriteData(fn.role);
  grants.agentQueue.grantSendMessages(fn.role);
  grants.notifications.grantPublish(fn.role);
  fn.role.addManagedPolicy(grants.machineControl);
  if (shared) {
    const policy = fn.role.node.findChild('DefaultPolicy');
    acknowledge(
      policy,
      wildcardResourceFinding(policy, `${grants.table.tableArn}/index/*`),
      'The table grant covers its indexes: the reaper queries the reaper-due index of the platform table (an index ARN is the table ARN + /index/<name>)',
    );
  }
}

export interface PlatformProtocolsProps extends ProtocolGrants {
  /** What the shared protocols may do in every analysis (one constant policy, SharedAnalysisAccess). */
  readonly analysisAccess: iam.IManagedPolicy;
  /** @default 'INFO' */
  readonly logLevel?: ProtocolLogLevel;
  /**
   * Reserve one concurrent execution for the reaper so two never overlap. Accounts whose
   * concurrency quota is still the initial 10 cannot reserve any (AWS keeps 10 unreserved).
   * @default true
   */
  readonly reserveConcurrency?: boolean;
  /** @default - the installed neurocaas package */
  readonly packageRoot?: string;
  /** @default logs.RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The protocols shared by all analyses: `agent-check` consumes the delayed agent re-checks,
 * `monitor` follows EC2 state changes and SSM command status changes, `reaper` runs every
 * five minutes. (Each analysis has its own `submit`, in its stack.)
 */
export class PlatformProtocols extends Construct {
  readonly agentCheck: ProtocolFunction;
  readonly monitor: ProtocolFunction;
  readonly reaper: ProtocolFunction;
  readonly instanceStateRule: events.Rule;
  readonly commandStatusRule: events.Rule;
  /** Spot interruption warnings (two minutes before EC2 reclaims a spot machine) -> the monitor. */
  readonly spotInterruptionRule: events.Rule;
  readonly reaperSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: PlatformProtocolsProps) {
    super(scope, id);
    const common = {
      environment: protocolEnvironment(props),
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.packageRoot ? { packageRoot: props.packageRoot } : {}),
      ...(props.logRetention ? { logRetention: props.logRetention } : {}),
    };

    this.agentCheck = new ProtocolFunction(this, 'AgentCheck', {
      ...common,
      protocol: 'agent-check',
      description: 'neurocaas: checks whether a new machine\'s SSM agent is online and starts the workflow',
      // The queue's visibility timeout is 6 minutes: at least 6 times this.
      timeout: Duration.minutes(1),
    });
    this.agentCheck.function.addEventSource(
      new SqsEventSource(props.agentQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 10 }),
    );

    this.monitor = new ProtocolFunction(this, 'Monitor', {
      ...common,
      protocol: 'monitor',
      description: 'neurocaas: follows job machines and workflow commands to their end',
      timeout: Duration.minutes(2),
    });
    this.instanceStateRule = new events.Rule(this, 'InstanceStateRule', {
      description: 'EC2 state changes the job reducer reacts to (the handler ignores machines that are not a job\'s)',
      // State-change events carry no tags; the handler looks the instance up in the job table.
      eventPattern: {
        source: ['aws.ec2'],
        detailType: ['EC2 Instance State-change Notification'],
        detail: { state: [...WATCHED_INSTANCE_STATES] },
      },
      targets: [new targets.LambdaFunction(this.monitor.function, { retryAttempts: 8, maxEventAge: Duration.hours(2) })],
    });
    this.commandStatusRule = new events.Rule(this, 'CommandStatusRule', {
      description: 'Status changes of workflow commands (AWS-RunShellScript) on job machines',
      eventPattern: {
        source: ['aws.ssm'],
        detailType: ['EC2 Command Invocation Status-change Notification'],
        detail: { 'document-name': [RUN_SHELL_SCRIPT_DOCUMENT], status: [...WATCHED_COMMAND_STATUSES] },
      },
      targets: [new targets.LambdaFunction(this.monitor.function, { retryAttempts: 8, maxEventAge: Duration.hours(2) })],
    });

    this.spotInterruptionRule = new events.Rule(this, 'SpotInterruptionRule', {
      description: 'Spot interruption warnings: the job ends that machine\'s attempt as a platform fault and retries the dataset',
      eventPattern: {
        source: ['aws.ec2'],
        detailType: [SPOT_INTERRUPTION_DETAIL_TYPE],
      },
      // The warning comes two minutes ahead: an old one is worthless, so no long retries.
      targets: [new targets.LambdaFunction(this.monitor.function, { retryAttempts: 2, maxEventAge: Duration.minutes(10) })],
    });

    this.reaper = new ProtocolFunction(this, 'Reaper', {
      ...common,
      protocol: 'reaper',
      description: 'neurocaas: terminates machines past their deadline and advances stalled jobs',
      timeout: Duration.minutes(4),
      ...(props.reserveConcurrency === false ? {} : { reservedConcurrentExecutions: 1 }),
    });
    this.reaperSchedule = new events.Rule(this, 'ReaperSchedule', {
      description: 'Runs the neurocaas reaper',
      schedule: events.Schedule.rate(REAPER_INTERVAL),
      targets: [new targets.LambdaFunction(this.reaper.function, { retryAttempts: 2 })],
    });

    for (const fn of this.all) {
      grantProtocol(fn, props);
      fn.role.addManagedPolicy(props.analysisAccess);
    }
  }

  get all(): ProtocolFunction[] {
    return [this.agentCheck, this.monitor, this.reaper];
  }
}
