import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { CHAIN_NAME_PREFIX } from '../core/keys.js';
import { ec2ResourcesArn, JOB_TAG } from './machine-control-policy.js';
import { acknowledge, wildcardResourceFinding } from './nag.js';
import { analysisBucketsArn, analysisObjectsArn } from './researcher-access.js';

/** Tag on each analysis's machine security group, naming the analysis. */
export const ANALYSIS_TAG = 'neurocaas:analysis';
/** Tag on each analysis's machine role (`machine`): the only roles the protocols may pass to EC2. */
export const ROLE_TAG = 'neurocaas:role';
export const MACHINE_ROLE_TAG_VALUE = 'machine';

/** Key patterns the protocols write in every analysis bucket (D6); everything else is the researchers'. */
export const PROTOCOL_WRITE_PATTERNS = ['*/results/*', '*/receipts/*', '*/budget/*'] as const;

/**
 * What a chain's hand-off writes into the next analysis's bucket (lib/core/keys.ts chainKeys):
 * the next stage's inputs, its config and its submission under the submitter's prefix. Only
 * names starting with `chain-`; researchers are denied exactly these (ResearcherPolicy).
 */
export const CHAIN_WRITE_PATTERNS = [`*/inputs/${CHAIN_NAME_PREFIX}*`, `*/configs/${CHAIN_NAME_PREFIX}*`, `*/submissions/*/${CHAIN_NAME_PREFIX}*`] as const;

/**
 * What the shared protocols (agent-check, monitor, reaper) may do in any analysis, as one
 * constant policy whatever the number of analyses (attribute-based): launch job instances
 * only into security groups tagged `neurocaas:analysis`, pass only roles tagged
 * `neurocaas:role=machine` and only to EC2, read every analysis bucket and write only its
 * protocol prefixes (D6), never delete. Which image and instance types an analysis uses is the
 * registry's (the protocol launches what the deployed blueprint says); each analysis's own
 * submit role keeps those limits in IAM too (AnalysisProtocolAccess).
 */
export class SharedAnalysisAccess extends Construct {
  readonly policy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const stack = Stack.of(this);
    const instances = ec2ResourcesArn(this, 'instance');
    const securityGroups = ec2ResourcesArn(this, 'security-group');
    const images = stack.formatArn({ service: 'ec2', account: '', resource: 'image', resourceName: '*' });
    const roles = stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: '*' });
    const readable = analysisObjectsArn(this, '*');
    const writable = PROTOCOL_WRITE_PATTERNS.map((pattern) => analysisObjectsArn(this, pattern));
    const handOff = CHAIN_WRITE_PATTERNS.map((pattern) => analysisObjectsArn(this, pattern));
    this.policy = new iam.ManagedPolicy(this, 'Policy', {
      description: 'neurocaas shared protocols: every analysis, by tags and the analysis bucket prefix',
      statements: [
        new iam.PolicyStatement({
          sid: 'LaunchTaggedJobInstances',
          actions: ['ec2:RunInstances'],
          resources: [instances],
          conditions: { Null: { [`aws:RequestTag/${JOB_TAG}`]: 'false' } },
        }),
        new iam.PolicyStatement({
          sid: 'LaunchInAnalysisSecurityGroups',
          actions: ['ec2:RunInstances'],
          resources: [securityGroups],
          conditions: { Null: { [`aws:ResourceTag/${ANALYSIS_TAG}`]: 'false' } },
        }),
        new iam.PolicyStatement({ sid: 'LaunchFromImages', actions: ['ec2:RunInstances'], resources: [images] }),
        new iam.PolicyStatement({
          sid: 'PassTaggedRolesToEc2',
          actions: ['iam:PassRole'],
          resources: [roles],
          conditions: {
            StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com', [`aws:ResourceTag/${ROLE_TAG}`]: MACHINE_ROLE_TAG_VALUE },
          },
        }),
        new iam.PolicyStatement({ sid: 'ReadAnalysisObjects', actions: ['s3:GetObject'], resources: [readable] }),
        new iam.PolicyStatement({ sid: 'WriteProtocolPrefixes', actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: writable }),
        // A job that ends here may hand its results on to the next analysis of its chain.
        new iam.PolicyStatement({ sid: 'WriteChainHandOff', actions: ['s3:PutObject'], resources: handOff }),
        new iam.PolicyStatement({ sid: 'ListAnalysisBuckets', actions: ['s3:ListBucket'], resources: [analysisBucketsArn(this)] }),
      ],
    });
    const reasons: [string, string][] = [
      [instances, 'Job instances are created at run time; RunInstances is allowed only when the request tags the instance neurocaas:job'],
      [securityGroups, 'Machines launch only into the security groups the analysis stacks tag neurocaas:analysis (one per analysis, created by the deployment)'],
      [images, 'The image of each analysis is the deployed blueprint\'s, recorded in the registry; the protocol launches only that one, the submit role of each analysis is limited to it in IAM'],
      [roles, 'Only roles tagged neurocaas:role=machine (each analysis\'s machine role) may be passed, and only to EC2'],
      [readable, 'The shared protocols serve every analysis and group: they read submissions, configs and inputs of every analysis bucket (no delete)'],
      [analysisBucketsArn(this), 'The shared protocols list the analysis buckets they serve (bucket name prefix neurocaasanalysis-)'],
      ...writable.map((arn): [string, string] => [arn, 'The protocols write job results, receipts and budget views of any group under these prefixes only (D6)']),
      ...handOff.map((arn): [string, string] => [
        arn,
        'A chain hands its results on: the next stage\'s inputs, config and submission, only under names starting chain-, which researchers are denied',
      ]),
    ];
    for (const [resource, reason] of reasons) acknowledge(this.policy, wildcardResourceFinding(this.policy, resource), reason);
  }
}
