import { CfnOutput, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { mayRunAnalysis, type UserProfile } from '../core/user.js';
import { acknowledgeCdkSingletons } from './cdk-singletons.js';
import { GroupAccess, IAM_PATH } from './group-access.js';
import type { PlatformStack } from './platform-stack.js';
import { RegistryItem } from './registry-item.js';

/** A user profile with the text of its file. */
export interface UserSource {
  readonly profile: UserProfile;
  /** The profile file's text, recorded as is in the registry. */
  readonly text: string;
}

/** A deployed analysis as the users stack sees it: its bucket ARN, imported by export name. */
export interface AnalysisBucketExport {
  readonly analysis: string;
  readonly bucketArnExportName: string;
}

export interface UsersStackProps extends StackProps {
  readonly users: readonly UserSource[];
  /** Every deployed analysis; a group gets those its users may run. */
  readonly analyses: readonly AnalysisBucketExport[];
  readonly platform: PlatformStack;
}

/**
 * Researchers: an IAM group per user group with access to its own prefix of the buckets of
 * the analyses its users may run, an IAM user per profile (no access key, no password: an
 * admin issues credentials later), and a registry item per user. Deployed after the platform
 * and the analysis stacks, whose bucket ARNs it imports by export name.
 */
export class UsersStack extends Stack {
  readonly groups = new Map<string, GroupAccess>();
  readonly users = new Map<string, iam.User>();

  constructor(scope: Construct, id: string, props: UsersStackProps) {
    super(scope, id, props);
    const buckets = new Map(
      props.analyses.map(({ analysis, bucketArnExportName }) => [
        analysis,
        s3.Bucket.fromBucketArn(this, `Bucket-${analysis}`, Fn.importValue(bucketArnExportName)),
      ]),
    );

    const groupNames = [...new Set(props.users.map(({ profile }) => profile.group))].sort();
    for (const group of groupNames) {
      const members = props.users.filter(({ profile }) => profile.group === group).map(({ profile }) => profile);
      const analyses = [...buckets.keys()].filter((analysis) => members.some((user) => mayRunAnalysis(user, analysis))).sort();
      this.groups.set(
        group,
        new GroupAccess(this, `Group-${group}`, {
          group,
          buckets: analyses.map((analysis) => ({ analysis, bucket: buckets.get(analysis) as s3.IBucket })),
        }),
      );
    }

    for (const { profile, text } of props.users) {
      const access = this.groups.get(profile.group) as GroupAccess;
      const user = new iam.User(this, `User-${profile.username}`, {
        userName: profile.username,
        path: IAM_PATH,
        groups: [access.group],
      });
      this.users.set(profile.username, user);
      new RegistryItem(this, `Registration-${profile.username}`, {
        table: props.platform.table.table,
        pk: `USER#${profile.username}`,
        sk: 'PROFILE',
        attributes: { group: profile.group, profile: text, iamUserArn: user.userArn },
      });
    }
    acknowledgeCdkSingletons(this);

    new CfnOutput(this, 'IamUsers', {
      value: [...this.users.keys()].join(',') || '-',
      description: `IAM users (path ${IAM_PATH}); issue their credentials with the admin command`,
    });
  }
}
