import { ArnFormat, Stack } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledge, wildcardResourceFinding } from './nag.js';

/** Tag every platform machine (and its volume and network interface) carries from launch. */
export const JOB_TAG = 'neurocaas:job';

/** The SSM document the workflow runs through (DESIGN.md section 5). */
export const RUN_SHELL_SCRIPT_DOCUMENT = 'AWS-RunShellScript';

export interface MachineControlPolicyProps {
  /** Subnets machines may be launched in. */
  readonly subnets: readonly ec2.ISubnet[];
}

/** ARN of every `resource` of EC2 in this stack's account and region (`.../<resource>/*`). */
export function ec2ResourcesArn(scope: Construct, resource: string): string {
  return Stack.of(scope).formatArn({ service: 'ec2', resource, resourceName: '*' });
}

/**
 * What every job-manager protocol may do to machines, whatever the analysis: the parts of a
 * launch that are not analysis specific (volumes, network interfaces, subnets; only tagged as
 * a job's), tagging at launch, terminating and commanding job machines only, and the read
 * calls that have no resource-level permissions. The analysis-specific parts (instance types,
 * image, security group, machine role, bucket) are granted by each analysis stack.
 *
 * Launch contract: RunInstances must tag the instance, its volume and its network interface
 * with `neurocaas:job` in TagSpecifications.
 */
export class MachineControlPolicy extends Construct {
  readonly policy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: MachineControlPolicyProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const volumes = ec2ResourcesArn(this, 'volume');
    const networkInterfaces = ec2ResourcesArn(this, 'network-interface');
    const instances = ec2ResourcesArn(this, 'instance');
    const spotRequests = ec2ResourcesArn(this, 'spot-instances-request');
    const runShellScript = stack.formatArn({
      service: 'ssm',
      account: '',
      resource: 'document',
      resourceName: RUN_SHELL_SCRIPT_DOCUMENT,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
    const jobTagRequested = { Null: { [`aws:RequestTag/${JOB_TAG}`]: 'false' } };

    this.policy = new iam.ManagedPolicy(this, 'Policy', {
      description: 'neurocaas job-manager protocols: launch, tag, command and terminate job machines',
      statements: [
        new iam.PolicyStatement({
          sid: 'LaunchTaggedVolumesAndInterfaces',
          actions: ['ec2:RunInstances'],
          // Spot machines (hardware.market) come with a one-time spot request, tagged like the rest.
          resources: [volumes, networkInterfaces, spotRequests],
          conditions: jobTagRequested,
        }),
        new iam.PolicyStatement({
          sid: 'LaunchInMachineSubnets',
          actions: ['ec2:RunInstances'],
          resources: props.subnets.map((subnet) => stack.formatArn({ service: 'ec2', resource: 'subnet', resourceName: subnet.subnetId })),
        }),
        new iam.PolicyStatement({
          sid: 'TagAtLaunchOnly',
          actions: ['ec2:CreateTags'],
          resources: [instances, volumes, networkInterfaces, spotRequests],
          conditions: { StringEquals: { 'ec2:CreateAction': 'RunInstances' } },
        }),
        new iam.PolicyStatement({
          sid: 'TerminateJobMachines',
          actions: ['ec2:TerminateInstances'],
          resources: [instances],
          conditions: { Null: { [`aws:ResourceTag/${JOB_TAG}`]: 'false' } },
        }),
        new iam.PolicyStatement({
          sid: 'RunShellScriptDocument',
          actions: ['ssm:SendCommand'],
          resources: [runShellScript],
        }),
        new iam.PolicyStatement({
          sid: 'CommandJobMachines',
          actions: ['ssm:SendCommand'],
          resources: [instances],
          conditions: { Null: { [`ssm:resourceTag/${JOB_TAG}`]: 'false' } },
        }),
        new iam.PolicyStatement({
          sid: 'ReadMachineAndCommandState',
          // DescribeImages: the root device of the analysis image (the root volume is sized on it).
          actions: ['ec2:DescribeInstances', 'ec2:DescribeImages', 'ssm:DescribeInstanceInformation', 'ssm:GetCommandInvocation', 'ssm:ListCommands'],
          resources: ['*'],
        }),
      ],
    });

    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, volumes),
      'RunInstances creates the volume, so its id is unknown beforehand; allowed only when the request tags it neurocaas:job',
    );
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, networkInterfaces),
      'RunInstances creates the network interface, so its id is unknown beforehand; allowed only when the request tags it neurocaas:job',
    );
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, spotRequests),
      'RunInstances creates the spot request of a spot machine, so its id is unknown beforehand; allowed only when the request tags it neurocaas:job',
    );
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, instances),
      'Job machines are created at run time: CreateTags only inside RunInstances (ec2:CreateAction), TerminateInstances and SendCommand only on instances tagged neurocaas:job',
    );
    acknowledge(
      this.policy,
      'AwsSolutions-IAM5[Resource::*]',
      'ec2:DescribeInstances, ec2:DescribeImages, ssm:DescribeInstanceInformation, ssm:GetCommandInvocation and ssm:ListCommands support no resource-level permissions; they only read state',
    );
  }
}
