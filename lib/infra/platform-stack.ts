import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { AgentCheckQueue } from './agent-check-queue.js';
import { JobTable } from './job-table.js';
import { MachineControlPolicy } from './machine-control-policy.js';
import { MachineNetwork } from './machine-network.js';
import { NotificationsTopic } from './notifications.js';
import { PlatformProtocols, type ProtocolGrants } from './platform-protocols.js';
import type { ProtocolLogLevel } from './protocol-function.js';
import { PARAMETER_ROOT, ResearcherPolicy } from './researcher-access.js';
import { SharedAnalysisAccess } from './shared-analysis-access.js';
import { WebUserPool } from './web-user-pool.js';

/** The SSM parameter the platform stack publishes (D5). */
export const DEPLOYMENT_PARAMETER_NAME = `${PARAMETER_ROOT}/deployment`;

export interface PlatformStackProps extends StackProps {
  /**
   * Launch machines in this VPC instead of a new one (see MachineNetwork).
   * @default - a new VPC with public subnets
   */
  readonly existingVpcId?: string;
  /**
   * Subnets of `existingVpcId`; required with it.
   * @default - none
   */
  readonly existingSubnetIds?: readonly string[];
  /** @default 'INFO' */
  readonly logLevel?: ProtocolLogLevel;
  /**
   * Reserve concurrency 1 for the reaper (impossible on accounts with the initial quota of 10).
   * @default true
   */
  readonly reserveConcurrency?: boolean;
  /** @default - the installed neurocaas package */
  readonly packageRoot?: string;
  /**
   * Hold the web interface's Cognito user pool (the users stacks invite their users into it,
   * the WebStack signs them in).
   * @default false
   */
  readonly webUsers?: boolean;
}

/**
 * What all analyses share; deployed first, imported by the analysis and users stacks (never
 * the other way round). Nothing here depends on the number of analyses or users: the shared
 * protocols and the researchers hold constant, attribute-based policies. Construct ids are a
 * contract: `JobTable` holds state.
 */
export class PlatformStack extends Stack {
  readonly table: JobTable;
  readonly agentQueue: AgentCheckQueue;
  readonly network: MachineNetwork;
  readonly machineControl: MachineControlPolicy;
  readonly protocols: PlatformProtocols;
  readonly notifications: NotificationsTopic;
  /** What the shared protocols may do in every analysis. */
  readonly analysisAccess: SharedAnalysisAccess;
  /** The researchers' one managed policy, attached to every researcher group. */
  readonly researcherPolicy: ResearcherPolicy;
  /** `/neurocaas/deployment`: `{schemaVersion: 1, region, tableName, notificationsTopicArn}`. */
  readonly deploymentParameter: ssm.StringParameter;
  /** The web users' Cognito user pool, when the deployment has the web interface. */
  readonly webUsers: WebUserPool | undefined;

  constructor(scope: Construct, id: string, props: PlatformStackProps = {}) {
    super(scope, id, props);
    this.table = new JobTable(this, 'JobTable');
    this.agentQueue = new AgentCheckQueue(this, 'AgentCheckQueue');
    this.network = new MachineNetwork(this, 'MachineNetwork', {
      ...(props.existingVpcId === undefined ? {} : { existingVpcId: props.existingVpcId }),
      ...(props.existingSubnetIds === undefined ? {} : { existingSubnetIds: props.existingSubnetIds }),
    });
    this.machineControl = new MachineControlPolicy(this, 'MachineControl', { subnets: this.network.subnets });
    this.notifications = new NotificationsTopic(this, 'Notifications');
    this.analysisAccess = new SharedAnalysisAccess(this, 'SharedAnalysisAccess');
    this.researcherPolicy = new ResearcherPolicy(this, 'ResearcherAccess');
    this.webUsers = props.webUsers ? new WebUserPool(this, 'WebUsers') : undefined;
    this.protocols = new PlatformProtocols(this, 'Protocols', {
      ...this.protocolGrants,
      analysisAccess: this.analysisAccess.policy,
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.reserveConcurrency === undefined ? {} : { reserveConcurrency: props.reserveConcurrency }),
      ...(props.packageRoot ? { packageRoot: props.packageRoot } : {}),
    });

    this.deploymentParameter = new ssm.StringParameter(this, 'DeploymentParameter', {
      parameterName: DEPLOYMENT_PARAMETER_NAME,
      description: 'neurocaas deployment: region, job table, notifications topic (read by the researchers\' client)',
      stringValue: this.toJsonString({
        schemaVersion: 1,
        region: this.region,
        tableName: this.table.table.tableName,
        notificationsTopicArn: this.notifications.topic.topicArn,
      }),
    });

    new CfnOutput(this, 'TableName', { value: this.table.table.tableName, description: 'Jobs, ledgers and the registry of analyses and users' });
    new CfnOutput(this, 'AgentQueueUrl', { value: this.agentQueue.queue.queueUrl, description: 'Delayed agent re-checks' });
    new CfnOutput(this, 'MachineVpcId', { value: this.network.vpc.vpcId, description: 'VPC the analysis machines run in' });
  }

  /** Table, queue and machine-control policy, for every protocol function. */
  get protocolGrants(): ProtocolGrants {
    return {
      table: this.table.table,
      agentQueue: this.agentQueue.queue,
      machineControl: this.machineControl.policy,
      notifications: this.notifications.topic,
    };
  }

  /** Roles of the shared protocols (they reach every analysis through SharedAnalysisAccess). */
  get protocolRoles(): iam.IRole[] {
    return this.protocols.all.map((fn) => fn.role);
  }
}
