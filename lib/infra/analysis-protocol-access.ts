import { Stack } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ec2ResourcesArn, JOB_TAG } from './machine-control-policy.js';
import { acknowledge, wildcardResourceFinding } from './nag.js';
import { analysisObjectsArn } from './researcher-access.js';
import { CHAIN_WRITE_PATTERNS, PROTOCOL_WRITE_PATTERNS } from './shared-analysis-access.js';

export interface AnalysisProtocolAccessProps {
  /** Roles of the protocols limited to this analysis (its submit); the shared ones have SharedAnalysisAccess. */
  readonly roles: readonly iam.IRole[];
  readonly bucket: s3.IBucket;
  readonly machineRole: iam.IRole;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly amiId: string;
  /** Instance types the blueprint allows; no other can be launched. */
  readonly instanceTypes: readonly string[];
}

/**
 * The permissions of an analysis's own submit protocol for its analysis: launch the blueprint's
 * instance types only, from its image, in its security group, with its machine role; read its
 * bucket and write the protocol prefixes (D6: results, receipts, budget), never delete. The
 * shared protocols' roles are not touched here: they hold one constant policy for every
 * analysis (SharedAnalysisAccess), so their policy size does not grow with the analyses.
 */
export class AnalysisProtocolAccess extends Construct {
  readonly policy: iam.Policy;

  constructor(scope: Construct, id: string, props: AnalysisProtocolAccessProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const instances = ec2ResourcesArn(this, 'instance');
    const objects = props.bucket.arnForObjects('*');
    const writable = PROTOCOL_WRITE_PATTERNS.map((pattern) => props.bucket.arnForObjects(pattern));
    const handOff = CHAIN_WRITE_PATTERNS.map((pattern) => props.bucket.arnForObjects(pattern));
    const chainResults = analysisObjectsArn(this, '*/results/*');
    this.policy = new iam.Policy(this, 'Policy', {
      roles: [...props.roles],
      statements: [
        new iam.PolicyStatement({
          sid: 'LaunchAllowedInstanceTypesTagged',
          actions: ['ec2:RunInstances'],
          resources: [instances],
          conditions: {
            Null: { [`aws:RequestTag/${JOB_TAG}`]: 'false' },
            StringEquals: { 'ec2:InstanceType': [...props.instanceTypes] },
          },
        }),
        new iam.PolicyStatement({
          sid: 'LaunchFromAnalysisImageAndSecurityGroup',
          actions: ['ec2:RunInstances'],
          resources: [
            stack.formatArn({ service: 'ec2', account: '', resource: 'image', resourceName: props.amiId }),
            stack.formatArn({ service: 'ec2', resource: 'security-group', resourceName: props.securityGroup.securityGroupId }),
          ],
        }),
        new iam.PolicyStatement({
          sid: 'PassMachineRoleToEc2',
          actions: ['iam:PassRole'],
          resources: [props.machineRole.roleArn],
          conditions: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
        }),
        new iam.PolicyStatement({ sid: 'ReadAnalysisObjects', actions: ['s3:GetObject'], resources: [objects] }),
        new iam.PolicyStatement({
          sid: 'WriteProtocolPrefixes',
          actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
          resources: writable,
        }),
        new iam.PolicyStatement({
          // A chain's next stage starts here: the job before may still owe this bucket its
          // hand-off (a replayed SubmitFollowOn), only under names researchers cannot write.
          sid: 'WriteChainHandOff',
          actions: ['s3:PutObject'],
          resources: handOff,
        }),
        new iam.PolicyStatement({
          // A chain stage reports to the job before it, in that job's analysis bucket: its
          // certificate (results/), and the results a replayed hand-off copies from there.
          sid: 'ReportToChainParents',
          actions: ['s3:GetObject', 's3:PutObject'],
          resources: [chainResults],
        }),
        new iam.PolicyStatement({
          sid: 'ListAnalysisBucket',
          actions: ['s3:ListBucket'],
          resources: [props.bucket.bucketArn],
        }),
      ],
    });
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, instances),
      'Instances are created at run time; RunInstances is allowed only for the blueprint\'s instance types and only when the request tags the instance neurocaas:job',
    );
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, objects),
      'The submit protocol serves every group of this analysis: it reads submissions, configs and inputs anywhere in this one bucket (no delete)',
    );
    for (const arn of handOff) {
      acknowledge(
        this.policy,
        wildcardResourceFinding(this.policy, arn),
        'A chain\'s next stage: the hand-off writes its inputs, config and submission only under names starting chain-, which researchers are denied',
      );
    }
    acknowledge(
      this.policy,
      wildcardResourceFinding(this.policy, chainResults),
      'A chain stage tells the job before it (in another analysis bucket) how it went: that job\'s certificate lives under results/ of any group',
    );
    for (const arn of writable) {
      acknowledge(
        this.policy,
        wildcardResourceFinding(this.policy, arn),
        'The submit protocol writes job results, receipts and budget views of any group of this bucket under these prefixes only (D6)',
      );
    }
  }
}
