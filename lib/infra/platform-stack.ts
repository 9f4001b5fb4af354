import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { AgentCheckQueue } from './agent-check-queue.js';
import { JobTable } from './job-table.js';
import { MachineControlPolicy } from './machine-control-policy.js';
import { MachineNetwork } from './machine-network.js';
import { PlatformProtocols, type ProtocolGrants } from './platform-protocols.js';
import type { ProtocolLogLevel } from './protocol-function.js';

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
}

/**
 * What all analyses share; deployed first, imported by the analysis and users stacks (never
 * the other way round). Construct ids are a contract: `JobTable` holds state.
 */
export class PlatformStack extends Stack {
  readonly table: JobTable;
  readonly agentQueue: AgentCheckQueue;
  readonly network: MachineNetwork;
  readonly machineControl: MachineControlPolicy;
  readonly protocols: PlatformProtocols;

  constructor(scope: Construct, id: string, props: PlatformStackProps = {}) {
    super(scope, id, props);
    this.table = new JobTable(this, 'JobTable');
    this.agentQueue = new AgentCheckQueue(this, 'AgentCheckQueue');
    this.network = new MachineNetwork(this, 'MachineNetwork', {
      ...(props.existingVpcId === undefined ? {} : { existingVpcId: props.existingVpcId }),
      ...(props.existingSubnetIds === undefined ? {} : { existingSubnetIds: props.existingSubnetIds }),
    });
    this.machineControl = new MachineControlPolicy(this, 'MachineControl', { subnets: this.network.subnets });
    this.protocols = new PlatformProtocols(this, 'Protocols', {
      ...this.protocolGrants,
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.reserveConcurrency === undefined ? {} : { reserveConcurrency: props.reserveConcurrency }),
      ...(props.packageRoot ? { packageRoot: props.packageRoot } : {}),
    });

    new CfnOutput(this, 'TableName', { value: this.table.table.tableName, description: 'Jobs, ledgers and the registry of analyses and users' });
    new CfnOutput(this, 'AgentQueueUrl', { value: this.agentQueue.queue.queueUrl, description: 'Delayed agent re-checks' });
    new CfnOutput(this, 'MachineVpcId', { value: this.network.vpc.vpcId, description: 'VPC the analysis machines run in' });
  }

  /** Table, queue and machine-control policy, for every protocol function. */
  get protocolGrants(): ProtocolGrants {
    return { table: this.table.table, agentQueue: this.agentQueue.queue, machineControl: this.machineControl.policy };
  }

  /** Roles of the shared protocols; each analysis stack grants them its bucket, image and machine role. */
  get protocolRoles(): iam.IRole[] {
    return this.protocols.all.map((fn) => fn.role);
  }
}
