import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledge, wildcardResourceFinding } from './nag.js';
// A cycle (researcher-access.ts imports IAM_PATH from here); both are used only inside functions.
import { analysisObjectsArn, PRINCIPAL_TAGS } from './researcher-access.js';

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
  /**
   * The group's only user, when it has exactly one profile: then (and only then) the plain
   * NeuroCAAS submission key `<group>/submissions/<name>submit.json` is unambiguous (D1) and
   * that user may write it. Undefined for a group of several users (or none).
   */
  readonly soleMember?: string;
}

/**
 * The one statement a group of exactly one user adds to the researcher policy: its user may
 * write the group-level NeuroCAAS submission `<group>/submissions/<name>submit.json` in every
 * analysis bucket (D1: accepted when the group has one profile). Conditioned on the caller's
 * principal tags too, so even a member added by hand outside the stack gets nothing from it.
 * Never for the web identity role: a web session cannot be proven to be a group's sole member.
 */
export function soleMemberSubmissionStatement(scope: Construct, group: string, user: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'SoleMemberGroupSubmissions',
    actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
    resources: [soleMemberSubmissionArn(scope, group)],
    conditions: { StringEquals: { [`aws:PrincipalTag/${PRINCIPAL_TAGS.group}`]: group, [`aws:PrincipalTag/${PRINCIPAL_TAGS.user}`]: user } },
  });
}

function soleMemberSubmissionArn(scope: Construct, group: string): string {
  return analysisObjectsArn(scope, `${group}/submissions/*submit.json`);
}

/**
 * A user group as an IAM group holding the one researcher policy. What the group may reach
 * comes from its members' principal tags, not from per-group or per-analysis statements, so a
 * group costs one resource and one attached policy whatever the number of analyses (plus one
 * statement when it has a single user, soleMemberSubmissionStatement). Users are added by the
 * users stack. No credentials are created here.
 */
export class GroupAccess extends Construct {
  readonly group: iam.Group;

  constructor(scope: Construct, id: string, props: GroupAccessProps) {
    super(scope, id);
    this.group = new iam.Group(this, 'Group', { groupName: iamGroupName(props.group), path: IAM_PATH, managedPolicies: [props.policy] });
    if (props.soleMember !== undefined) {
      this.group.addToPrincipalPolicy(soleMemberSubmissionStatement(this, props.group, props.soleMember));
      acknowledge(
        this.group,
        wildcardResourceFinding(this, soleMemberSubmissionArn(this, props.group)),
        'The only user of a one-user group writes the group-level NeuroCAAS submission key <group>/submissions/<name>submit.json (D1) in every analysis bucket; conditioned on its principal tags',
      );
    }
  }
}
