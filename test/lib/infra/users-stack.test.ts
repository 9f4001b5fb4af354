import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, isAllowed, type PolicyDocument } from '../../support/iam-policy-evaluator.js';
import { cfnText, FIXTURES, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

/** Made-up ARNs standing in for the buckets the users stack imports by export name. */
const BUCKETS: Record<string, string> = {
  'NeurocaasAnalysis-alpha-UploadBucketArn': 'arn:aws:s3:::neurocaas-alpha-upload',
  'NeurocaasAnalysis-beta-UploadBucketArn': 'arn:aws:s3:::neurocaas-beta-upload',
};
const ALPHA = BUCKETS['NeurocaasAnalysis-alpha-UploadBucketArn'] as string;
const BETA = BUCKETS['NeurocaasAnalysis-beta-UploadBucketArn'] as string;

let synth: Synthesized;

beforeAll(() => {
  synth = synthesize();
});

interface TemplatePolicy {
  id: string;
  groups: unknown;
  document: { Statement: Record<string, unknown>[] };
}

function managedPolicies(): TemplatePolicy[] {
  return Object.entries(synth.users.findResources('AWS::IAM::ManagedPolicy')).map(([id, resource]) => {
    const properties = (resource as { Properties: { Groups: unknown; PolicyDocument: TemplatePolicy['document'] } }).Properties;
    return { id, groups: properties.Groups, document: properties.PolicyDocument };
  });
}

function groupId(name: string): string {
  const found = Object.entries(synth.users.findResources('AWS::IAM::Group')).find(
    ([, resource]) => (resource as { Properties: { GroupName: string } }).Properties.GroupName === name,
  );
  if (!found) throw new Error(`no IAM group ${name}`);
  return found[0];
}

/** The group's policies as IAM would see them once deployed: imports replaced by bucket ARNs. */
function deployedPoliciesOf(group: string): PolicyDocument[] {
  const id = groupId(`neurocaas-${group}`);
  return managedPolicies()
    .filter((policy) => JSON.stringify(policy.groups) === JSON.stringify([{ Ref: id }]))
    .map((policy) => ({
      Statement: policy.document.Statement.map((statement) => {
        const resources = Array.isArray(statement['Resource']) ? statement['Resource'] : [statement['Resource']];
        return {
          ...statement,
          Resource: resources.map((resource) => cfnText(resource).replace(/<import:([^>]+)>/g, (_match, name: string) => {
            const arn = BUCKETS[name];
            if (!arn) throw new Error(`unexpected import ${name}`);
            return arn;
          })),
        };
      }),
    })) as unknown as PolicyDocument[];
}

describe('UsersStack groups', () => {
  it('creates one IAM group per user group, under the neurocaas path', () => {
    synth.users.resourceCountIs('AWS::IAM::Group', 2);
    synth.users.hasResourceProperties('AWS::IAM::Group', { GroupName: 'neurocaas-lab', Path: '/neurocaas/' });
    synth.users.hasResourceProperties('AWS::IAM::Group', { GroupName: 'neurocaas-other', Path: '/neurocaas/' });
  });

  it('gives a group one policy per analysis its users may run', () => {
    const byGroup = (group: string) =>
      managedPolicies()
        .filter((policy) => JSON.stringify(policy.groups) === JSON.stringify([{ Ref: groupId(`neurocaas-${group}`) }]))
        .map((policy) => policy.id.replace(/[0-9A-F]{8}$/, ''));
    // lab has a user allowed "*" (both analyses); other's only user may run alpha.
    expect(byGroup('lab')).toEqual(['GrouplabAccessalpha', 'GrouplabAccessbeta']);
    expect(byGroup('other')).toEqual(['GroupotherAccessalpha']);
  });

  it('scopes a group policy to the group prefix of the bucket: list, upload, read results, never delete', () => {
    const policy = managedPolicies().find((p) => p.id.startsWith('GrouplabAccessalpha')) as TemplatePolicy;
    const bucket = 'NeurocaasAnalysis-alpha-UploadBucketArn';
    expect(readableStatements(policy.document)).toEqual([
      { Sid: 'ListOwnGroupOnly', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [bucket], Condition: { StringLike: { 's3:prefix': ['lab/*'] } } },
      {
        Sid: 'UploadInputsConfigsSubmissions',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
        Resource: [`${bucket}/lab/inputs/*`, `${bucket}/lab/configs/*`, `${bucket}/lab/submissions/*`],
      },
      { Sid: 'ReadResults', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`${bucket}/lab/results/*`] },
      { Sid: 'NeverDelete', Effect: 'Deny', Action: ['s3:DeleteObject', 's3:DeleteObjectVersion'], Resource: [`${bucket}/*`] },
    ]);
  });
});

describe('UsersStack users', () => {
  it('creates an IAM user per profile in its group, with no password and no access key', () => {
    const users = Object.values(synth.users.findResources('AWS::IAM::User')).map(
      (resource) => (resource as { Properties: Record<string, unknown> }).Properties,
    );
    expect(users.map((user) => [user['UserName'], user['Path'], user['Groups']])).toEqual([
      ['ada', '/neurocaas/', [{ Ref: groupId('neurocaas-lab') }]],
      ['bob', '/neurocaas/', [{ Ref: groupId('neurocaas-other') }]],
      ['cy', '/neurocaas/', [{ Ref: groupId('neurocaas-lab') }]],
    ]);
    expect(users.every((user) => user['LoginProfile'] === undefined && user['Policies'] === undefined && user['ManagedPolicyArns'] === undefined)).toBe(true);
    synth.users.resourceCountIs('AWS::IAM::AccessKey', 0);
    expect(JSON.stringify(synth.users.toJSON())).not.toMatch(/SecretAccessKey|Password/);
  });

  it('registers every profile in the platform table', () => {
    const items = Object.values(synth.users.findResources('Custom::NeurocaasRegistryItem')).map((resource) => {
      const create = JSON.parse(cfnText((resource as { Properties: { Create: unknown } }).Properties.Create)) as {
        parameters: { Item: Record<string, { S: string }> };
      };
      return create.parameters.Item;
    });
    expect(items.map((item) => item['pk']?.S)).toEqual(['USER#ada', 'USER#bob', 'USER#cy']);
    const ada = items[0] as Record<string, { S: string }>;
    expect(ada).toEqual({
      pk: { S: 'USER#ada' },
      sk: { S: 'PROFILE' },
      group: { S: 'lab' },
      profile: { S: readFileSync(join(FIXTURES, 'users', 'ada.json'), 'utf8') },
      iamUserArn: { S: expect.stringMatching(/^<Userada[0-9A-F]{8}\.Arn>$/) },
    });
  });

  it('is deployed after the analysis stacks whose bucket ARNs it imports', () => {
    const dependencies = synth.stacks.users.dependencies.map((stack) => stack.stackName).sort();
    expect(dependencies).toEqual(['NeurocaasAnalysis-alpha', 'NeurocaasAnalysis-beta', 'NeurocaasPlatform']);
  });

  it('outputs the user names and nothing secret', () => {
    expect(synth.users.findOutputs('IamUsers')['IamUsers']?.['Value']).toBe('ada,bob,cy');
  });
});

// No AWS IAM policy simulator is reachable from the tests (they stay on 127.0.0.1): the
// group policies are evaluated with the small evaluator of test/support instead.
describe('UsersStack group policies, evaluated', () => {
  const lab = () => deployedPoliciesOf('lab');
  const other = () => deployedPoliciesOf('other');

  it.each([
    ['s3:PutObject', 'lab/inputs/x'],
    ['s3:PutObject', 'lab/inputs/session1/video.csv'],
    ['s3:PutObject', 'lab/configs/run1.yaml'],
    ['s3:PutObject', 'lab/submissions/xsubmit.json'],
    ['s3:GetObject', 'lab/submissions/xsubmit.json'],
    ['s3:GetObject', 'lab/results/job__alpha_20261122T151533Z-7f3a/logs/certificate.txt'],
    ['s3:GetObject', 'lab/results/job__alpha_20261122T151533Z-7f3a/process_results/x/out.csv'],
  ])('a lab user may %s %s', (action, key) => {
    expect(isAllowed(lab(), { action, resource: `${ALPHA}/${key}` })).toBe(true);
    expect(isAllowed(lab(), { action, resource: `${BETA}/${key}` })).toBe(true);
  });

  it.each([
    ['s3:PutObject', 'lab/results/job__alpha_1/end.txt'],
    ['s3:PutObject', 'lab/other-area/x'],
    ['s3:PutObject', 'lab/x'],
    ['s3:GetObject', 'other/inputs/x'],
    ['s3:PutObject', 'other/inputs/x'],
    ['s3:PutObject', 'other/submissions/xsubmit.json'],
    ['s3:GetObject', 'other/results/job__alpha_1/logs/certificate.txt'],
    ['s3:PutObject', 'labx/inputs/x'],
    ['s3:GetObjectAcl', 'lab/inputs/x'],
    ['s3:PutObjectAcl', 'lab/inputs/x'],
  ])('a lab user may not %s %s', (action, key) => {
    expect(isAllowed(lab(), { action, resource: `${ALPHA}/${key}` })).toBe(false);
  });

  it.each(['lab/inputs/x', 'lab/results/job__alpha_1/end.txt', 'other/inputs/x'])('a lab user can never delete %s (explicit deny)', (key) => {
    for (const action of ['s3:DeleteObject', 's3:DeleteObjectVersion']) {
      expect(evaluate(lab(), { action, resource: `${ALPHA}/${key}` })).toEqual({ decision: 'ExplicitDeny', decidingStatements: ['NeverDelete'] });
    }
  });

  it.each(['lab/', 'lab/inputs/', 'lab/results/job__alpha_1/'])('a lab user may list with prefix %s', (prefix) => {
    expect(isAllowed(lab(), { action: 's3:ListBucket', resource: ALPHA, context: { 's3:prefix': prefix } })).toBe(true);
  });

  it.each([
    ['another group', { 's3:prefix': 'other/' }],
    ['a prefix that only starts like the group', { 's3:prefix': 'labx/' }],
    ['the group name without its slash', { 's3:prefix': 'lab' }],
    ['an empty prefix', { 's3:prefix': '' }],
    ['no prefix at all', {}],
  ])('a lab user may not list %s', (_what, context) => {
    expect(isAllowed(lab(), { action: 's3:ListBucket', resource: ALPHA, context })).toBe(false);
  });

  it('a user of another group reaches only its own prefix, and only in the analyses it may run', () => {
    expect(isAllowed(other(), { action: 's3:PutObject', resource: `${ALPHA}/other/inputs/x` })).toBe(true);
    expect(isAllowed(other(), { action: 's3:GetObject', resource: `${ALPHA}/lab/inputs/x` })).toBe(false);
    expect(isAllowed(other(), { action: 's3:PutObject', resource: `${BETA}/other/inputs/x` })).toBe(false);
    expect(isAllowed(other(), { action: 's3:ListBucket', resource: BETA, context: { 's3:prefix': 'other/' } })).toBe(false);
  });

  it('no group may touch the bucket configuration', () => {
    for (const action of ['s3:PutBucketPolicy', 's3:PutLifecycleConfiguration', 's3:PutBucketVersioning', 's3:DeleteBucket']) {
      expect(isAllowed(lab(), { action, resource: ALPHA })).toBe(false);
    }
  });
});
