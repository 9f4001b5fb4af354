import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { CHAIN_NAME_PREFIX } from '../core/keys.js';
import { IAM_PATH } from './group-access.js';
import { acknowledge, wildcardResourceFinding } from './nag.js';

/**
 * Principal tags every researcher identity carries (D1): IAM users as user tags, the web
 * identity role's sessions as session tags mapped from Cognito attributes. The researcher
 * policy reads the group and the user from these only, so one document serves both.
 */
export const PRINCIPAL_TAGS = { group: 'neurocaas-group', user: 'neurocaas-user' } as const;

/** `${aws:PrincipalTag/neurocaas-group}`: the caller's group, as a policy variable. */
export const GROUP_VARIABLE = `\${aws:PrincipalTag/${PRINCIPAL_TAGS.group}}`;
/** `${aws:PrincipalTag/neurocaas-user}`: the caller's user name, as a policy variable. */
export const USER_VARIABLE = `\${aws:PrincipalTag/${PRINCIPAL_TAGS.user}}`;

/**
 * Every analysis upload bucket's name starts with this: CloudFormation names a bucket without
 * an explicit name `<stack name>-<logical id>-<random>` in lower case, and every analysis stack
 * is `NeurocaasAnalysis-<analysis>`. The shared roles address all analysis buckets through it,
 * so their policies do not grow with the number of analyses. (The access-log buckets share the
 * prefix; their bucket policy denies every researcher, see UploadBucket.)
 */
export const ANALYSIS_BUCKET_PREFIX = 'neurocaasanalysis-';

/** Root of the SSM parameters the stacks publish (D5). */
export const PARAMETER_ROOT = '/neurocaas';

/** ARN pattern of every analysis bucket (`arn:<partition>:s3:::neurocaasanalysis-*`). */
export function analysisBucketsArn(scope: Construct): string {
  return `arn:${Stack.of(scope).partition}:s3:::${ANALYSIS_BUCKET_PREFIX}*`;
}

/** ARN pattern of objects under `keyPattern` in every analysis bucket. */
export function analysisObjectsArn(scope: Construct, keyPattern: string): string {
  return `${analysisBucketsArn(scope)}/${keyPattern}`;
}

/** ARN of the caller's own IAM user (`arn:<partition>:iam::<account>:user/neurocaas/${aws:username}`). */
export function ownIamUserArn(scope: Construct): string {
  const stack = Stack.of(scope);
  return `arn:${stack.partition}:iam::${stack.account}:user${IAM_PATH}\${aws:username}`;
}

/** ARNs of the deployment parameters: the root path itself (GetParametersByPath) and everything below. */
export function deploymentParameterArns(scope: Construct): string[] {
  const stack = Stack.of(scope);
  const base = `arn:${stack.partition}:ssm:${stack.region}:${stack.account}:parameter${PARAMETER_ROOT}`;
  return [base, `${base}/*`];
}

/**
 * The whole of a researcher's permissions, the same for every researcher of every group and
 * every analysis (D1, D5, D6), scoped by the caller's principal tags:
 * - list only below `<own group>/` and read every object of `<own group>/` in every analysis bucket;
 * - write (multipart included) `<own group>/inputs/*`, `<own group>/configs/*` and
 *   `<own group>/submissions/<own user>/*` only;
 * - read the deployment parameters under `/neurocaas`;
 * - never write a chain's hand-off names (`chain-*` in inputs/, configs/, submissions/<user>/:
 *   the protocol's, explicit deny);
 * - never delete (explicit deny, so nothing else can grant it).
 * A caller without the tags matches none of the allows: the variables do not resolve.
 * Which analyses a user may run is the protocol's registry check, not IAM's (decisions.md).
 */
export function researcherStatements(scope: Construct): iam.PolicyStatement[] {
  const own = (area: string) => analysisObjectsArn(scope, `${GROUP_VARIABLE}/${area}`);
  return [
    new iam.PolicyStatement({
      sid: 'ListOwnGroupOnly',
      actions: ['s3:ListBucket'],
      resources: [analysisBucketsArn(scope)],
      conditions: { StringLike: { 's3:prefix': [`${GROUP_VARIABLE}/*`] } },
    }),
    new iam.PolicyStatement({
      sid: 'ReadOwnGroup',
      actions: ['s3:GetObject'],
      resources: [own('*')],
    }),
    new iam.PolicyStatement({
      sid: 'WriteInputsConfigsOwnSubmissions',
      actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      resources: [own('inputs/*'), own('configs/*'), own(`submissions/${USER_VARIABLE}/*`)],
    }),
    new iam.PolicyStatement({
      sid: 'ReadDeploymentParameters',
      actions: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath'],
      resources: deploymentParameterArns(scope),
    }),
    new iam.PolicyStatement({
      // The CLI learns the caller's group from its own IAM user's tags (one user, exact path:
      // no wildcard, so nobody reads another user's tags).
      sid: 'ReadOwnUserTags',
      actions: ['iam:ListUserTags'],
      resources: [ownIamUserArn(scope)],
    }),
    new iam.PolicyStatement({
      // Chain hand-off names are the protocol's (CHAIN_WRITE_PATTERNS): a group member could
      // otherwise plant the next stage's inputs or config of another member's chain.
      sid: 'NeverWriteChainHandOff',
      effect: iam.Effect.DENY,
      actions: ['s3:PutObject'],
      resources: [own(`inputs/${CHAIN_NAME_PREFIX}*`), own(`configs/${CHAIN_NAME_PREFIX}*`), own(`submissions/*/${CHAIN_NAME_PREFIX}*`)],
    }),
    new iam.PolicyStatement({
      sid: 'NeverDelete',
      effect: iam.Effect.DENY,
      actions: ['s3:DeleteObject', 's3:DeleteObjectVersion'],
      resources: [analysisObjectsArn(scope, '*')],
    }),
  ];
}

/**
 * The researchers' managed policy: one document for every group, user and analysis (attached
 * to every researcher IAM group, later to the web identity role). Lives in the platform stack.
 */
export class ResearcherPolicy extends Construct {
  readonly policy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.policy = new iam.ManagedPolicy(this, 'Policy', {
      description: 'neurocaas researchers: own group area of every analysis bucket (by principal tags), deployment parameters; never delete',
      statements: researcherStatements(this),
    });
    const reasons: [string, string][] = [
      [analysisBucketsArn(this), 'Listing is allowed in every analysis bucket but only below the caller\'s own group prefix (s3:prefix condition on the neurocaas-group principal tag)'],
      [analysisObjectsArn(this, `${GROUP_VARIABLE}/*`), 'Researchers read their own group\'s area of every analysis bucket; the group comes from the caller\'s neurocaas-group principal tag'],
      [analysisObjectsArn(this, `${GROUP_VARIABLE}/inputs/*`), 'Researchers name their own input files; writes are limited to the caller\'s own group inputs/'],
      [analysisObjectsArn(this, `${GROUP_VARIABLE}/configs/*`), 'Researchers name their own config files; writes are limited to the caller\'s own group configs/'],
      [
        analysisObjectsArn(this, `${GROUP_VARIABLE}/submissions/${USER_VARIABLE}/*`),
        'Submissions and cancel requests go under the caller\'s own group and own user name (principal tags), which is how the protocol knows who submitted (D1)',
      ],
      [deploymentParameterArns(this)[1] as string, 'Every researcher reads the deployment parameters (/neurocaas/deployment, /neurocaas/analyses/<analysis>) to find the buckets (D5)'],
    ];
    for (const [resource, reason] of reasons) acknowledge(this.policy, wildcardResourceFinding(this.policy, resource), reason);
  }
}
