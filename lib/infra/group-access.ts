import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

/** IAM path of every group and user the platform creates. */
export const IAM_PATH = '/neurocaas/';

/** IAM name of a user group's group (IAM names are unique regardless of case). */
export function iamGroupName(group: string): string {
  return `neurocaas-${group}`;
}

export interface GroupAccessProps {
  /** The group: its name is the key prefix of its area in every analysis bucket. */
  readonly group: string;
  /** The researchers' policy (ResearcherPolicy of the platform stack), the same for every group. */
  readonly policy: iam.IManagedPolicy;
}

/**
 * A user group as an IAM group holding the one researcher policy. What the group may reach
 * comes from its members' principal tags, not from per-group or per-analysis statements, so a
 * group costs one resource and one attached policy whatever the number of analyses. Users are
 * added by the users stack. No credentials are created here.
 */
export class GroupAccess extends Construct {
  readonly group: iam.Group;

  constructor(scope: Construct, id: string, props: GroupAccessProps) {
    super(scope, id);
    this.group = new iam.Group(this, 'Group', { groupName: iamGroupName(props.group), path: IAM_PATH, managedPolicies: [props.policy] });
  }
}
