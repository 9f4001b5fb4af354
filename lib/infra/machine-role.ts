import { Tags } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge, wildcardResourceFinding } from './nag.js';
import { MACHINE_ROLE_TAG_VALUE, ROLE_TAG } from './shared-analysis-access.js';

/**
 * What the SSM Agent needs for Run Command: the actions of AWS's
 * AmazonSSMManagedEC2InstanceDefaultPolicy. Not AmazonSSMManagedInstanceCore: that one also
 * lets the machine read every SSM parameter of the account, which a workflow has no need for.
 */
export const SSM_AGENT_ACTIONS = [
  'ssm:UpdateInstanceInformation',
  'ssmmessages:CreateControlChannel',
  'ssmmessages:CreateDataChannel',
  'ssmmessages:OpenControlChannel',
  'ssmmessages:OpenDataChannel',
  'ec2messages:AcknowledgeMessage',
  'ec2messages:DeleteMessage',
  'ec2messages:FailMessage',
  'ec2messages:GetEndpoint',
  'ec2messages:GetMessages',
  'ec2messages:SendReply',
] as const;

export interface MachineRoleProps {
  /** The analysis bucket; the machine reaches this bucket only. */
  readonly bucket: s3.IBucket;
}

/**
 * Identity of an analysis's machines (DESIGN.md section 5): the SSM Agent, reading inputs,
 * configs and the job's own files (the runner reads the job's config.json from results/),
 * writing results (logs, status, outputs, the SSM command output) of its own bucket only.
 * Statements are written out rather than `bucket.grantRead`, which would also allow listing
 * every group's keys and every GetBucket* call.
 */
export class MachineRole extends Construct {
  readonly role: iam.Role;
  readonly instanceProfile: iam.InstanceProfile;

  constructor(scope: Construct, id: string, props: MachineRoleProps) {
    super(scope, id);
    const { bucket } = props;
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'neurocaas analysis machine',
    });
    // The shared protocols may pass a role to EC2 only when it carries this tag.
    Tags.of(this.role).add(ROLE_TAG, MACHINE_ROLE_TAG_VALUE);
    const readable = ['*/inputs/*', '*/configs/*', '*/results/*'].map((pattern) => bucket.arnForObjects(pattern));
    const results = bucket.arnForObjects('*/results/*');
    const statements = [
      new iam.PolicyStatement({ sid: 'SsmAgent', actions: [...SSM_AGENT_ACTIONS], resources: ['*'] }),
      new iam.PolicyStatement({ sid: 'ReadJobFiles', actions: ['s3:GetObject'], resources: readable }),
      // Folder datasets and an ensemble's replicas are fetched by prefix (aws s3 cp --recursive);
      // listing is limited to the prefixes the machine may read anyway.
      new iam.PolicyStatement({
        sid: 'ListDatasetFolders',
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': ['*/inputs/*', '*/results/*'] } },
      }),
      new iam.PolicyStatement({ sid: 'WriteJobResults', actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: [results] }),
      // The SSM Agent checks the output bucket's encryption before it uploads the command output.
      new iam.PolicyStatement({ sid: 'CommandOutputBucketEncryption', actions: ['s3:GetEncryptionConfiguration'], resources: [bucket.bucketArn] }),
    ];
    for (const statement of statements) this.role.addToPrincipalPolicy(statement);
    this.instanceProfile = new iam.InstanceProfile(this, 'InstanceProfile', { role: this.role });

    const policy = this.role.node.findChild('DefaultPolicy');
    acknowledge(
      policy,
      'AwsSolutions-IAM5[Resource::*]',
      'The SSM Agent actions (those of AmazonSSMManagedEC2InstanceDefaultPolicy) support no resource-level permissions',
    );
    for (const arn of readable) {
      acknowledge(
        policy,
        wildcardResourceFinding(policy, arn),
        'A machine serves whichever group submitted the job; it may read inputs, configs and job files of its own analysis bucket only',
      );
    }
  }
}
