import { Fn, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { UsageError } from '../core/errors.js';

export interface MachineNetworkProps {
  /**
   * Launch the machines in this existing VPC instead of a new one. Nothing is looked up, so
   * synth stays offline: give its subnets in `existingSubnetIds`.
   * @default - a new VPC (see the class comment)
   */
  readonly existingVpcId?: string;
  /**
   * Subnets of `existingVpcId` to launch machines in. They must reach S3 and the SSM
   * endpoints on port 443 (public IPs, a NAT gateway or VPC endpoints). Required with it.
   * @default - none
   */
  readonly existingSubnetIds?: readonly string[];
  /**
   * Availability zones of the new VPC: more zones, more places to find capacity.
   * @default 2
   */
  readonly maxAzs?: number;
  /**
   * Address range of the new VPC.
   * @default '10.80.0.0/16'
   */
  readonly cidr?: string;
  /**
   * Retention of the new VPC's flow log (rejected traffic only).
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly flowLogRetention?: logs.RetentionDays;
}

/**
 * Where the analysis machines run.
 *
 * The default is a new VPC with public subnets only: the machines get public IPs and reach
 * SSM and S3 directly over TLS; a free S3 gateway endpoint keeps dataset traffic on the AWS
 * network. There is no NAT gateway (about 32 USD a month each plus 0.045 USD per GB) and there
 * are no interface endpoints for SSM (three endpoints in two zones cost about 44 USD a month):
 * an idle platform costs nothing here. Machines stay unreachable from outside because their
 * security group has no inbound rule. Rejected traffic is logged (VPC flow log).
 */
export class MachineNetwork extends Construct {
  readonly vpc: ec2.IVpc;
  /** The subnets machines launch in, tried in order. */
  readonly subnets: readonly ec2.ISubnet[];

  constructor(scope: Construct, id: string, props: MachineNetworkProps = {}) {
    super(scope, id);
    if (props.existingVpcId !== undefined) {
      const subnetIds = props.existingSubnetIds ?? [];
      if (subnetIds.length === 0) {
        throw new UsageError(`the existing VPC ${props.existingVpcId} needs the subnets to launch machines in; pass them as context subnetIds=subnet-a,subnet-b`);
      }
      // Only the id is used (security groups); the zones are left for CloudFormation to know.
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: props.existingVpcId, availabilityZones: Fn.getAzs() });
      this.subnets = subnetIds.map((subnetId, index) => ec2.Subnet.fromSubnetId(this, `Subnet${index + 1}`, subnetId));
      return;
    }
    const flowLogGroup = new logs.LogGroup(this, 'FlowLogGroup', {
      retention: props.flowLogRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(props.cidr ?? '10.80.0.0/16'),
      maxAzs: props.maxAzs ?? 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'Machines', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20, mapPublicIpOnLaunch: true }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      restrictDefaultSecurityGroup: true,
      flowLogs: {
        Rejected: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
          trafficType: ec2.FlowLogTrafficType.REJECT,
        },
      },
    });
    this.vpc = vpc;
    this.subnets = vpc.publicSubnets;
  }

  get subnetIds(): string[] {
    return this.subnets.map((subnet) => subnet.subnetId);
  }
}
