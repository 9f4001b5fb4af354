import { CfnOutput, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { UserProfile } from '../core/user.js';
import { acknowledgeCdkSingletons } from './cdk-singletons.js';
import { GroupAccess, IAM_PATH } from './group-access.js';
import { subscribeUser } from './notifications.js';
import type { PlatformStack } from './platform-stack.js';
import { RegistryItem, registryWriterRole } from './registry-item.js';
import { PRINCIPAL_TAGS } from './researcher-access.js';
import { WebUser } from './web-user-pool.js';

/** A user profile with the text of its file. */
export interface UserSource {
  readonly profile: UserProfile;
  /** The profile file's text, recorded as is in the registry. */
  readonly text: string;
}

export interface UsersStackProps extends StackProps {
  /** The users of this stack; all users of a group are in the same stack. */
  readonly users: readonly UserSource[];
  readonly platform: PlatformStack;
}

/**
 * Researchers (of the groups this stack holds): an IAM group per user group with the
 * platform's one researcher policy attached, an IAM user per profile tagged with its group and
 * user name (the principal tags that policy reads; no access key, no password: an admin
 * issues credentials later), the profile's email subscription to job-end notifications, and a
 * registry item per user. Imports from the platform stack only: adding an analysis never
 * changes a users stack, adding a user changes only the stack of its group.
 */
export class UsersStack extends Stack {
  readonly groups = new Map<string, GroupAccess>();
  readonly users = new Map<string, iam.User>();
  /** Users invited to the web interface (profiles with an email, when the platform has a web user pool). */
  readonly webUsers: string[] = [];

  constructor(scope: Construct, id: string, props: UsersStackProps) {
    super(scope, id, props);
    const groupNames = [...new Set(props.users.map(({ profile }) => profile.group))].sort();
    for (const group of groupNames) {
      const members = props.users.filter(({ profile }) => profile.group === group).map(({ profile }) => profile.username);
      this.groups.set(
        group,
        new GroupAccess(this, `Group-${group}`, { group, policy: props.platform.researcherPolicy.policy, ...(members.length === 1 ? { soleMember: members[0] as string } : {}) }),
      );
    }

    for (const { profile, text } of props.users) {
      const access = this.groups.get(profile.group) as GroupAccess;
      const user = new iam.User(this, `User-${profile.username}`, {
        userName: profile.username,
        path: IAM_PATH,
        groups: [access.group],
      });
      Tags.of(user).add(PRINCIPAL_TAGS.group, profile.group);
      Tags.of(user).add(PRINCIPAL_TAGS.user, profile.username);
      this.users.set(profile.username, user);
      new RegistryItem(this, `Registration-${profile.username}`, {
        table: props.platform.table.table,
        pk: `USER#${profile.username}`,
        sk: 'PROFILE',
        attributes: { group: profile.group, profile: text, iamUserArn: user.userArn },
      });
      if (profile.email) subscribeUser(this, `Notifications-${profile.username}`, props.platform.notifications.topic, profile.username, profile.email);
      // The web account's invitation goes by email: a profile without one has no web account.
      const pool = props.platform.webUsers?.userPool;
      if (pool && profile.email) {
        new WebUser(this, `WebUser-${profile.username}`, { pool, profile: { ...profile, email: profile.email }, role: registryWriterRole(this, props.platform.table.table) });
        this.webUsers.push(profile.username);
      }
    }
    acknowledgeCdkSingletons(this);

    new CfnOutput(this, 'IamUsers', {
      value: [...this.users.keys()].join(',') || '-',
      description: `IAM users (path ${IAM_PATH}); issue their credentials with the admin command`,
    });
    if (props.platform.webUsers) {
      new CfnOutput(this, 'WebUsers', { value: this.webUsers.join(',') || '-', description: 'Users invited to the web interface by email (profiles without an email have no web account)' });
    }
  }
}
