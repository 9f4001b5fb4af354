import { Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { ANALYSIS_TAG } from './shared-analysis-access.js';
import { Construct } from 'constructs';

export interface MachineSecurityGroupProps {
  readonly vpc: ec2.IVpc;
  /** Tagged `neurocaas:analysis`: the shared protocols launch only into groups with that tag. */
  readonly analysis: string;
}

/**
 * Firewall of an analysis's machines: nothing comes in (no SSH, Run Command needs no inbound
 * port); out only HTTPS, which is all the SSM Agent, S3 (through the gateway endpoint) and the
 * AWS CLI use. DNS, the instance metadata service and NTP are link-local and not filtered.
 */
export class MachineSecurityGroup extends Construct {
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: MachineSecurityGroupProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'neurocaas analysis machines: no inbound, HTTPS outbound only',
      allowAllOutbound: false,
    });
    Tags.of(this.securityGroup).add(ANALYSIS_TAG, props.analysis);
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to SSM, S3 and other AWS APIs');
  }
}
