import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge, wildcardResourceFinding } from './nag.js';

/** IAM path of every group and user the platform creates. */
export const IAM_PATH = '/neurocaas/';

/** IAM name of a user group's group (IAM names are unique regardless of case). */
export function iamGroupName(group: string): string {
  return `neurocaas-${group}`;
}

/** An analysis bucket a group may use. */
export interface GroupBucket {
  readonly analysis: string;
  readonly bucket: s3.IBucket;
}

export interface GroupAccessProps {
  /** The group: its name is the key prefix of its area in every analysis bucket. */
  readonly group: string;
  /** Buckets of the analyses the group's users may run. */
  readonly buckets: readonly GroupBucket[];
}

/**
 * The statements of one group in one analysis bucket: list only below `<group>/`, read and
 * write its inputs, configs and submissions, read its results; never delete (explicit deny,
 * so no other policy can grant it).
 */
export function groupBucketStatements(group: string, bucket: s3.IBucket): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'ListOwnGroupOnly',
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${group}/*`] } },
    }),
    new iam.PolicyStatement({
      sid: 'UploadInputsConfigsSubmissions',
      actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
      resources: ['inputs', 'configs', 'submissions'].map((area) => bucket.arnForObjects(`${group}/${area}/*`)),
    }),
    new iam.PolicyStatement({
      sid: 'ReadResults',
      actions: ['s3:GetObject'],
      resources: [bucket.arnForObjects(`${group}/results/*`)],
    }),
    new iam.PolicyStatement({
      sid: 'NeverDelete',
      effect: iam.Effect.DENY,
      actions: ['s3:DeleteObject', 's3:DeleteObjectVersion'],
      resources: [bucket.arnForObjects('*')],
    }),
  ];
}

/**
 * A user group as an IAM group with one managed policy per analysis bucket it may use (a
 * managed policy holds 6 KB; one per bucket never runs out of room). Users are added by the
 * users stack. No credentials are created here.
 */
export class GroupAccess extends Construct {
  readonly group: iam.Group;
  readonly policies: readonly iam.ManagedPolicy[];

  constructor(scope: Construct, id: string, props: GroupAccessProps) {
    super(scope, id);
    this.group = new iam.Group(this, 'Group', { groupName: iamGroupName(props.group), path: IAM_PATH });
    this.policies = props.buckets.map(({ analysis, bucket }) => {
      const policy = new iam.ManagedPolicy(this, `Access-${analysis}`, {
        description: `neurocaas group ${props.group}: its own area of the ${analysis} bucket`,
        groups: [this.group],
        statements: groupBucketStatements(props.group, bucket),
      });
      for (const area of ['inputs', 'configs', 'submissions', 'results']) {
        acknowledge(
          policy,
          wildcardResourceFinding(policy, bucket.arnForObjects(`${props.group}/${area}/*`)),
          `Researchers of group ${props.group} name their own files; access is limited to ${props.group}/${area}/ of this bucket`,
        );
      }
      return policy;
    });
  }
}
