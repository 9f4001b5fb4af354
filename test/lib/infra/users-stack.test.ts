import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, isAllowed, type PolicyDocument } from '../../support/iam-policy-evaluator.js';
import { cfnText, FIXTURES, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

/** Two deployed analysis buckets (names as CloudFormation generates them) and one that is not ours. */
const ALPHA = 'arn:aws:s3:::neurocaasanalysis-alpha-uploadbucketb0fba037-1a2b3c4d5e6f';
const BETA = 'arn:aws:s3:::neurocaasanalysis-beta-uploadbucketb0fba037-6f5e4d3c2b1a';
const FOREIGN = 'arn:aws:s3:::payroll-exports';
const PARAMETERS = 'arn:aws:ssm:us-east-1:123456789012:parameter';

let synth: Synthesized;

beforeAll(() => {
  synth = synthesize();
});

/** A CloudFormation value as deployed: pseudo parameters filled in. */
function deployed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(deployed);
  if (node !== null && typeof node === 'object') {
    const keys = Object.keys(node);
    if (keys.length === 1 && (keys[0] === 'Ref' || keys[0]?.startsWith('Fn::'))) {
      return cfnText(node).replace(/<AWS::Partition>/g, 'aws').replace(/<AWS::Region>/g, 'us-east-1').replace(/<AWS::AccountId>/g, '123456789012');
    }
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, deployed(value)]));
  }
  return node;
}

/** The researcher policy as IAM holds it once deployed. */
function researcherPolicy(): PolicyDocument {
  const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'ResearcherAccessPolicy');
  return deployed(properties['PolicyDocument']) as PolicyDocument;
}

function userOf(name: string): Record<string, unknown> {
  const found = Object.values(synth.users.findResources('AWS::IAM::User')).find(
    (resource) => (resource as { Properties: { UserName: string } }).Properties.UserName === name,
  );
  if (!found) throw new Error(`no IAM user ${name}`);
  return (found as { Properties: Record<string, unknown> }).Properties;
}

/** The request context IAM builds for a call by this user: its name and its principal tags, from the template. */
function callerContext(name: string): Record<string, string> {
  const tags = (userOf(name)['Tags'] as { Key: string; Value: string }[]).map((tag) => [`aws:PrincipalTag/${tag.Key}`, tag.Value]);
  return { 'aws:username': name, ...Object.fromEntries(tags) };
}

function groupId(name: string): string {
  const found = Object.entries(synth.users.findResources('AWS::IAM::Group')).find(
    ([, resource]) => (resource as { Properties: { GroupName: string } }).Properties.GroupName === name,
  );
  if (!found) throw new Error(`no IAM group ${name}`);
  return found[0];
}

describe('UsersStack groups', () => {
  it('creates one IAM group per user group, under the neurocaas path, holding the platform\'s one researcher policy', () => {
    synth.users.resourceCountIs('AWS::IAM::Group', 2);
    for (const group of ['lab', 'other']) {
      const { properties } = resourceOf(synth.users, 'AWS::IAM::Group', groupId(`neurocaas-${group}`));
      expect(properties['GroupName']).toBe(`neurocaas-${group}`);
      expect(properties['Path']).toBe('/neurocaas/');
      expect(cfnText((properties['ManagedPolicyArns'] as unknown[])[0])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefResearcherAccessPolicy/);
      expect(properties['ManagedPolicyArns']).toHaveLength(1);
    }
  });

  it('holds no policy of its own but the one-user groups\' submission statement: nothing grows with the analyses', () => {
    synth.users.resourceCountIs('AWS::IAM::ManagedPolicy', 0);
    // The registry writer's PutItem/DeleteItem on the table, whatever the number of users, and one
    // statement for group "other" (bob alone), none for "lab" (ada and cy).
    expect(Object.keys(synth.users.findResources('AWS::IAM::Policy')).sort()).toEqual([expect.stringMatching(/^GroupotherGroupDefaultPolicy/), expect.stringMatching(/^RegistryWriterRoleDefaultPolicy/)]);
    const { properties } = resourceOf(synth.users, 'AWS::IAM::Policy', Object.keys(synth.users.findResources('AWS::IAM::Policy')).find((id) => id.startsWith('Groupother')) as string);
    expect(properties['Groups']).toEqual([{ Ref: groupId('neurocaas-other') }]);
    expect(readableStatements(properties['PolicyDocument'])).toEqual([
      {
        Sid: 'SoleMemberGroupSubmissions',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
        Resource: ['arn:<AWS::Partition>:s3:::neurocaasanalysis-*/other/submissions/*submit.json'],
        Condition: { StringEquals: { 'aws:PrincipalTag/neurocaas-group': 'other', 'aws:PrincipalTag/neurocaas-user': 'bob' } },
      },
    ]);
    expect(JSON.stringify(synth.users.toJSON())).not.toMatch(/NeurocaasAnalysis/);
  });

  it('the researcher policy: own group by principal tags, own submissions by user tag, deployment parameters, no chain hand-off names, never delete', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'ResearcherAccessPolicy');
    const buckets = 'arn:<AWS::Partition>:s3:::neurocaasanalysis-*';
    const group = '<aws:PrincipalTag/neurocaas-group>';
    expect(readableStatements(properties['PolicyDocument'])).toEqual([
      { Sid: 'ListOwnGroupOnly', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [buckets], Condition: { StringLike: { 's3:prefix': ['${aws:PrincipalTag/neurocaas-group}/*'] } } },
      { Sid: 'ReadOwnGroup', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`${buckets}/${group}/*`] },
      {
        Sid: 'WriteInputsConfigsOwnSubmissions',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
        Resource: [`${buckets}/${group}/inputs/*`, `${buckets}/${group}/configs/*`, `${buckets}/${group}/submissions/<aws:PrincipalTag/neurocaas-user>/*`],
      },
      {
        Sid: 'ReadDeploymentParameters',
        Effect: 'Allow',
        Action: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath'],
        Resource: ['arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/neurocaas', 'arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/neurocaas/*'],
      },
      { Sid: 'ReadOwnUserTags', Effect: 'Allow', Action: ['iam:ListUserTags'], Resource: ['arn:<AWS::Partition>:iam::<AWS::AccountId>:user/neurocaas/<aws:username>'] },
      {
        Sid: 'NeverWriteChainHandOff',
        Effect: 'Deny',
        Action: ['s3:PutObject'],
        Resource: [`${buckets}/${group}/inputs/chain-*`, `${buckets}/${group}/configs/chain-*`, `${buckets}/${group}/submissions/*/chain-*`],
      },
      { Sid: 'NeverDelete', Effect: 'Deny', Action: ['s3:DeleteObject', 's3:DeleteObjectVersion'], Resource: [`${buckets}/*`] },
    ]);
  });
});

describe('UsersStack users', () => {
  it('creates an IAM user per profile in its group, tagged with its group and user name, with no password and no access key', () => {
    const users = Object.values(synth.users.findResources('AWS::IAM::User')).map((resource) => (resource as { Properties: Record<string, unknown> }).Properties);
    expect(users.map((user) => [user['UserName'], user['Path'], user['Groups'], user['Tags']])).toEqual([
      ['ada', '/neurocaas/', [{ Ref: groupId('neurocaas-lab') }], [{ Key: 'neurocaas-group', Value: 'lab' }, { Key: 'neurocaas-user', Value: 'ada' }]],
      ['bob', '/neurocaas/', [{ Ref: groupId('neurocaas-other') }], [{ Key: 'neurocaas-group', Value: 'other' }, { Key: 'neurocaas-user', Value: 'bob' }]],
      ['cy', '/neurocaas/', [{ Ref: groupId('neurocaas-lab') }], [{ Key: 'neurocaas-group', Value: 'lab' }, { Key: 'neurocaas-user', Value: 'cy' }]],
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
    expect(items[0]).toEqual({
      pk: { S: 'USER#ada' },
      sk: { S: 'PROFILE' },
      group: { S: 'lab' },
      profile: { S: readFileSync(join(FIXTURES, 'users', 'ada.json'), 'utf8') },
      iamUserArn: { S: expect.stringMatching(/^<Userada[0-9A-F]{8}\.Arn>$/) },
    });
  });

  it('subscribes each profile\'s email to the notifications topic, filtered on its own user name (D7)', () => {
    const subscriptions = Object.values(synth.users.findResources('AWS::SNS::Subscription')).map((resource) => (resource as { Properties: Record<string, unknown> }).Properties);
    expect(subscriptions.map((subscription) => [subscription['Protocol'], subscription['Endpoint'], subscription['FilterPolicy']])).toEqual([
      ['email', 'ada@example.org', { user: ['ada'] }],
      ['email', 'bob@example.org', { user: ['bob'] }],
      ['email', 'cy@example.org', { user: ['cy'] }],
    ]);
    for (const subscription of subscriptions) expect(cfnText(subscription['TopicArn'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefNotificationsTopic/);
  });

  it('keeps the logical ids of its users, groups and registry items (an existing deployment updates them in place)', () => {
    expect(Object.keys(synth.users.findResources('AWS::IAM::User')).sort()).toEqual(['UseradaDC4199E7', 'Userbob2A3046F3', 'UsercyAFA1F2E0']);
    expect(Object.keys(synth.users.findResources('AWS::IAM::Group')).sort()).toEqual(['GrouplabGroupFC7A216C', 'GroupotherGroup73C43917']);
    expect(Object.keys(synth.users.findResources('Custom::NeurocaasRegistryItem')).sort()).toEqual([
      'Registrationada9DAE7D6C',
      'RegistrationbobB6BABE9F',
      'Registrationcy92E5A6C9',
    ]);
  });

  it('depends on the platform stack only: adding an analysis never changes it', () => {
    expect(synth.stacks.users.dependencies.map((stack) => stack.stackName)).toEqual(['NeurocaasPlatform']);
  });

  it('outputs the user names and nothing secret', () => {
    expect(synth.users.findOutputs('IamUsers')['IamUsers']?.['Value']).toBe('ada,bob,cy');
  });
});

// No AWS IAM policy simulator is reachable from the tests (they stay on 127.0.0.1): the
// researcher policy is evaluated with the small evaluator of test/support, with each user's
// principal tags as IAM would put them in the request context.
describe('the researcher policy, evaluated for the users of the stack', () => {
  const may = (user: string, action: string, resource: string, extra: Record<string, string> = {}) =>
    isAllowed([researcherPolicy()], { action, resource, context: { ...callerContext(user), ...extra } });

  it.each([
    ['ada', 's3:PutObject', 'lab/inputs/x'],
    ['ada', 's3:PutObject', 'lab/inputs/session1/video.csv'],
    ['ada', 's3:PutObject', 'lab/configs/run1.yaml'],
    ['ada', 's3:PutObject', 'lab/submissions/ada/run1submit.json'],
    ['ada', 's3:PutObject', 'lab/submissions/ada/20261122T151533Z-7f3a.cancel.json'],
    ['ada', 's3:AbortMultipartUpload', 'lab/inputs/big.bin'],
    ['ada', 's3:ListMultipartUploadParts', 'lab/inputs/big.bin'],
    ['ada', 's3:GetObject', 'lab/inputs/x'],
    ['ada', 's3:GetObject', 'lab/submissions/cy/run1submit.json'],
    ['ada', 's3:GetObject', 'lab/receipts/ada/run1submit.json.json'],
    ['ada', 's3:GetObject', 'lab/budget/cy.json'],
    ['ada', 's3:GetObject', 'lab/results/job__alpha_20261122T151533Z-7f3a/logs/certificate.txt'],
    ['cy', 's3:PutObject', 'lab/submissions/cy/xsubmit.json'],
    ['bob', 's3:PutObject', 'other/submissions/bob/xsubmit.json'],
    ['bob', 's3:GetObject', 'other/results/job__beta_1/process_results/out.csv'],
  ])('%s may %s %s in every analysis bucket', (user, action, key) => {
    expect(may(user, action, `${ALPHA}/${key}`)).toBe(true);
    expect(may(user, action, `${BETA}/${key}`)).toBe(true);
  });

  it.each([
    ['ada', 's3:PutObject', 'lab/submissions/cy/xsubmit.json', 'another user\'s submissions'],
    ['ada', 's3:PutObject', 'lab/submissions/cy/j1.cancel.json', 'a cancel under another user'],
    ['ada', 's3:PutObject', 'lab/submissions/xsubmit.json', 'the group-level submission prefix'],
    ['ada', 's3:PutObject', 'lab/results/job__alpha_1/end.txt', 'results'],
    ['ada', 's3:PutObject', 'lab/receipts/ada/x.json', 'receipts'],
    ['ada', 's3:PutObject', 'lab/budget/ada.json', 'the budget view'],
    ['ada', 's3:PutObject', 'lab/x', 'the group root'],
    ['ada', 's3:GetObject', 'other/inputs/x', 'another group\'s inputs'],
    ['ada', 's3:GetObject', 'other/budget/bob.json', 'another group\'s budget'],
    ['ada', 's3:PutObject', 'other/inputs/x', 'another group\'s inputs'],
    ['ada', 's3:PutObject', 'other/submissions/ada/xsubmit.json', 'another group\'s submissions, even under its own name'],
    ['bob', 's3:GetObject', 'lab/results/job__alpha_1/logs/certificate.txt', 'another group\'s results'],
    ['bob', 's3:PutObject', 'labx/inputs/x', 'a group that only starts like its own'],
    ['ada', 's3:GetObjectAcl', 'lab/inputs/x', 'ACLs'],
    ['ada', 's3:PutObjectAcl', 'lab/inputs/x', 'ACLs'],
  ])('%s may not %s %s (%s)', (user, action, key) => {
    expect(may(user, action, `${ALPHA}/${key}`)).toBe(false);
  });

  it.each([
    ['lab/inputs/chain-20261122T151533Z-7f3a/a.csv/result.json', 'the next stage\'s input of a chain'],
    ['lab/configs/chain-20261122T151533Z-7f3a.json', 'the next stage\'s config of a chain'],
    ['lab/submissions/ada/chain-20261122T151533Z-7f3a-0-submit.json', 'a chain submission, even under its own name'],
    ['lab/submissions/cy/chain-20261122T151533Z-7f3a-0-submit.json', 'a chain submission of another user'],
  ])('no researcher may write %s (%s): only the protocol hands a chain on (explicit deny)', (key) => {
    for (const user of ['ada', 'cy']) {
      expect(evaluate([researcherPolicy()], { action: 's3:PutObject', resource: `${ALPHA}/${key}`, context: callerContext(user) }).decision).not.toBe('Allow');
    }
    expect(evaluate([researcherPolicy()], { action: 's3:PutObject', resource: `${BETA}/${key}`, context: callerContext('ada') })).toEqual({
      decision: 'ExplicitDeny',
      decidingStatements: ['NeverWriteChainHandOff'],
    });
  });

  it('lets the shared protocols write a chain\'s hand-off in any analysis bucket, and no other researcher key', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'SharedAnalysisAccessPolicy');
    const protocol = deployed(properties['PolicyDocument']) as PolicyDocument;
    const writes = (key: string) => isAllowed([protocol], { action: 's3:PutObject', resource: `${BETA}/${key}` });
    expect(writes('lab/inputs/chain-20261122T151533Z-7f3a/a.csv/result.json')).toBe(true);
    expect(writes('lab/configs/chain-20261122T151533Z-7f3a.json')).toBe(true);
    expect(writes('lab/submissions/ada/chain-20261122T151533Z-7f3a-0-submit.json')).toBe(true);
    expect(writes('lab/inputs/a.csv')).toBe(false);
    expect(writes('lab/configs/run1.json')).toBe(false);
    expect(writes('lab/submissions/ada/run1submit.json')).toBe(false);
    expect(isAllowed([protocol], { action: 's3:PutObject', resource: `${FOREIGN}/lab/inputs/chain-1/a/b` })).toBe(false);
  });

  it('still lets researchers write inputs and configs whose names merely contain "chain-"', () => {
    expect(may('ada', 's3:PutObject', `${ALPHA}/lab/inputs/session1/chain-of-events.csv`)).toBe(true);
    expect(may('ada', 's3:PutObject', `${ALPHA}/lab/inputs/mychain-1.csv`)).toBe(true);
    expect(may('ada', 's3:PutObject', `${ALPHA}/lab/configs/run-chain-2.json`)).toBe(true);
    expect(may('ada', 's3:PutObject', `${ALPHA}/lab/submissions/ada/mychain-submit.json`)).toBe(true);
  });

  it.each(['lab/inputs/x', 'lab/submissions/ada/xsubmit.json', 'lab/results/job__alpha_1/end.txt', 'other/inputs/x'])('no researcher can ever delete %s (explicit deny)', (key) => {
    for (const action of ['s3:DeleteObject', 's3:DeleteObjectVersion']) {
      expect(evaluate([researcherPolicy()], { action, resource: `${ALPHA}/${key}`, context: callerContext('ada') })).toEqual({
        decision: 'ExplicitDeny',
        decidingStatements: ['NeverDelete'],
      });
    }
  });

  it('reaches no bucket outside the analysis buckets', () => {
    expect(may('ada', 's3:GetObject', `${FOREIGN}/lab/inputs/x`)).toBe(false);
    expect(may('ada', 's3:PutObject', `${FOREIGN}/lab/inputs/x`)).toBe(false);
    expect(may('ada', 's3:ListBucket', FOREIGN, { 's3:prefix': 'lab/' })).toBe(false);
  });

  it.each(['lab/', 'lab/inputs/', 'lab/results/job__alpha_1/'])('a lab user may list with prefix %s', (prefix) => {
    expect(may('ada', 's3:ListBucket', ALPHA, { 's3:prefix': prefix })).toBe(true);
  });

  it.each([
    ['another group', { 's3:prefix': 'other/' }],
    ['a prefix that only starts like the group', { 's3:prefix': 'labx/' }],
    ['the group name without its slash', { 's3:prefix': 'lab' }],
    ['an empty prefix', { 's3:prefix': '' }],
    ['no prefix at all', {}],
  ])('a lab user may not list %s', (_what, context) => {
    expect(may('ada', 's3:ListBucket', ALPHA, context)).toBe(false);
  });

  it('the only user of a one-user group may write the group-level NeuroCAAS submission; nobody else may (D1)', () => {
    // What IAM evaluates for a user: the researcher policy plus its group's inline policies.
    const groupPolicies = (group: string): PolicyDocument[] =>
      Object.values(synth.users.findResources('AWS::IAM::Policy'))
        .map((resource) => (resource as { Properties: Record<string, unknown> }).Properties)
        .filter((properties) => JSON.stringify(properties['Groups']) === JSON.stringify([{ Ref: groupId(`neurocaas-${group}`) }]))
        .map((properties) => deployed(properties['PolicyDocument']) as PolicyDocument);
    const mayAsMember = (user: string, group: string, action: string, key: string, context: Record<string, string> = callerContext(user)) =>
      isAllowed([researcherPolicy(), ...groupPolicies(group)], { action, resource: `${ALPHA}/${key}`, context });
    expect(groupPolicies('lab')).toEqual([]);
    expect(mayAsMember('bob', 'other', 's3:PutObject', 'other/submissions/run1submit.json')).toBe(true);
    expect(mayAsMember('bob', 'other', 's3:AbortMultipartUpload', 'other/submissions/run1submit.json')).toBe(true);
    // Only submissions: not a cancel or anything else at the group level.
    expect(mayAsMember('bob', 'other', 's3:PutObject', 'other/submissions/j1.cancel.json')).toBe(false);
    expect(mayAsMember('bob', 'other', 's3:PutObject', 'other/submissions/notes.txt')).toBe(false);
    // Two users in lab: the plain key would not say who submitted, so neither may write it.
    expect(mayAsMember('ada', 'lab', 's3:PutObject', 'lab/submissions/run1submit.json')).toBe(false);
    expect(mayAsMember('cy', 'lab', 's3:PutObject', 'lab/submissions/run1submit.json')).toBe(false);
    // Someone put into group other by hand, without bob's tags, gets nothing from the statement.
    expect(mayAsMember('ada', 'other', 's3:PutObject', 'other/submissions/run1submit.json')).toBe(false);
    expect(mayAsMember('ada', 'other', 's3:PutObject', 'other/submissions/run1submit.json', { 'aws:username': 'ada', 'aws:PrincipalTag/neurocaas-group': 'other', 'aws:PrincipalTag/neurocaas-user': 'ada' })).toBe(false);
  });

  it('a caller without the principal tags gets nothing at all', () => {
    const untagged = (action: string, resource: string, context: Record<string, string> = {}) =>
      isAllowed([researcherPolicy()], { action, resource, context: { 'aws:username': 'ada', ...context } });
    expect(untagged('s3:GetObject', `${ALPHA}/lab/inputs/x`)).toBe(false);
    expect(untagged('s3:PutObject', `${ALPHA}/lab/submissions/ada/xsubmit.json`)).toBe(false);
    expect(untagged('s3:ListBucket', ALPHA, { 's3:prefix': 'lab/' })).toBe(false);
  });

  it('the same document works for a web identity session that carries the same principal tags (no aws:username)', () => {
    const session = { 'aws:PrincipalTag/neurocaas-group': 'lab', 'aws:PrincipalTag/neurocaas-user': 'ada' };
    const web = (action: string, key: string) => isAllowed([researcherPolicy()], { action, resource: `${ALPHA}/${key}`, context: session });
    expect(web('s3:PutObject', 'lab/submissions/ada/xsubmit.json')).toBe(true);
    expect(web('s3:PutObject', 'lab/submissions/cy/xsubmit.json')).toBe(false);
    expect(web('s3:GetObject', 'other/inputs/x')).toBe(false);
  });

  it('every researcher reads the deployment parameters, and no other parameter', () => {
    for (const user of ['ada', 'bob']) {
      expect(may(user, 'ssm:GetParameter', `${PARAMETERS}/neurocaas/deployment`)).toBe(true);
      expect(may(user, 'ssm:GetParameter', `${PARAMETERS}/neurocaas/analyses/alpha`)).toBe(true);
      expect(may(user, 'ssm:GetParametersByPath', `${PARAMETERS}/neurocaas/analyses`)).toBe(true);
      expect(may(user, 'ssm:GetParametersByPath', `${PARAMETERS}/neurocaas`)).toBe(true);
      expect(may(user, 'ssm:GetParameter', `${PARAMETERS}/database/password`)).toBe(false);
      expect(may(user, 'ssm:PutParameter', `${PARAMETERS}/neurocaas/deployment`)).toBe(false);
    }
  });

  it('every researcher reads the tags of their own IAM user (to learn their group), and of nobody else', () => {
    const userArn = (name: string) => `arn:aws:iam::123456789012:user/neurocaas/${name}`;
    expect(may('ada', 'iam:ListUserTags', userArn('ada'))).toBe(true);
    expect(may('ada', 'iam:ListUserTags', userArn('bob'))).toBe(false);
    expect(may('ada', 'iam:ListUserTags', userArn('xada'))).toBe(false);
    expect(may('ada', 'iam:TagUser', userArn('ada'))).toBe(false);
  });

    it('no researcher may touch a bucket\'s configuration or the job table', () => {
    for (const action of ['s3:PutBucketPolicy', 's3:PutLifecycleConfiguration', 's3:PutBucketVersioning', 's3:DeleteBucket']) {
      expect(may('ada', action, ALPHA)).toBe(false);
    }
    expect(may('ada', 'dynamodb:GetItem', 'arn:aws:dynamodb:us-east-1:123456789012:table/x')).toBe(false);
  });
});
