import { describe, expect, it } from 'vitest';
import { evaluate, isAllowed, wildcardMatch, type PolicyDocument, type PolicyStatement } from '../../support/iam-policy-evaluator.js';

const BUCKET = 'arn:aws:s3:::data';

function policy(...statements: PolicyStatement[]): PolicyDocument {
  return { Version: '2012-10-17', Statement: statements };
}

describe('wildcardMatch', () => {
  it.each([
    ['*', '', true],
    ['*', 'anything/at/all', true],
    ['lab/*', 'lab/', true],
    ['lab/*', 'lab/inputs/x', true],
    ['lab/*', 'lab', false],
    ['lab/*', 'labx/y', false],
    ['*/inputs/*', 'lab/inputs/x', true],
    ['*/inputs/*', 'lab/results/inputs/x', true],
    ['*/inputs/*', 'inputs/x', false],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['a?c', 'abbc', false],
    ['a.c', 'abc', false],
    ['(x)+[y]', '(x)+[y]', true],
    ['s3:Get*', 's3:GetObject', true],
  ])('%s against %s is %s', (pattern, value, expected) => {
    expect(wildcardMatch(pattern, value)).toBe(expected);
  });

  it('is case-sensitive unless told otherwise', () => {
    expect(wildcardMatch('Lab/*', 'lab/x')).toBe(false);
    expect(wildcardMatch('s3:getobject', 's3:GetObject', { caseInsensitive: true })).toBe(true);
  });

  it('lets * span lines and slashes', () => {
    expect(wildcardMatch('a*b', 'a\n/\nb')).toBe(true);
  });
});

describe('evaluate', () => {
  const readInputs: PolicyStatement = { Sid: 'Read', Effect: 'Allow', Action: 's3:GetObject', Resource: `${BUCKET}/lab/*` };

  it('denies by default', () => {
    expect(evaluate([], { action: 's3:GetObject', resource: `${BUCKET}/lab/x` })).toEqual({ decision: 'ImplicitDeny', decidingStatements: [] });
    expect(isAllowed([policy(readInputs)], { action: 's3:GetObject', resource: `${BUCKET}/other/x` })).toBe(false);
    expect(isAllowed([policy(readInputs)], { action: 's3:PutObject', resource: `${BUCKET}/lab/x` })).toBe(false);
  });

  it('allows what a statement allows, naming it', () => {
    expect(evaluate([policy(readInputs)], { action: 's3:GetObject', resource: `${BUCKET}/lab/x` })).toEqual({ decision: 'Allow', decidingStatements: ['Read'] });
  });

  it('lets an explicit deny in any policy win over any allow', () => {
    const deny = policy({ Sid: 'NoLabX', Effect: 'Deny', Action: 's3:*', Resource: `${BUCKET}/lab/x` });
    expect(evaluate([policy(readInputs), deny], { action: 's3:GetObject', resource: `${BUCKET}/lab/x` })).toEqual({
      decision: 'ExplicitDeny',
      decidingStatements: ['NoLabX'],
    });
    expect(isAllowed([policy(readInputs), deny], { action: 's3:GetObject', resource: `${BUCKET}/lab/y` })).toBe(true);
  });

  it('matches actions without regard to case, resources with', () => {
    expect(isAllowed([policy(readInputs)], { action: 'S3:GETOBJECT', resource: `${BUCKET}/lab/x` })).toBe(true);
    expect(isAllowed([policy(readInputs)], { action: 's3:GetObject', resource: `${BUCKET}/LAB/x` })).toBe(false);
  });

  it('accepts a single statement and single strings as well as lists', () => {
    const single: PolicyDocument = { Statement: { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: [`${BUCKET}/a`, `${BUCKET}/b`] } };
    expect(isAllowed([single], { action: 's3:PutObject', resource: `${BUCKET}/b` })).toBe(true);
    expect(evaluate([single], { action: 's3:PutObject', resource: `${BUCKET}/b` }).decidingStatements).toEqual(['#0.0']);
  });

  describe('conditions', () => {
    const list = (condition: PolicyStatement['Condition']) => policy({ Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET, Condition: condition });

    it('StringLike: any value may match; a missing key does not', () => {
      const listLab = list({ StringLike: { 's3:prefix': ['lab/*', 'shared/*'] } });
      expect(isAllowed([listLab], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'shared/x' } })).toBe(true);
      expect(isAllowed([listLab], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'other/' } })).toBe(false);
      expect(isAllowed([listLab], { action: 's3:ListBucket', resource: BUCKET })).toBe(false);
    });

    it('condition keys are case-insensitive, their values are not', () => {
      const listLab = list({ StringLike: { 'S3:Prefix': 'lab/*' } });
      expect(isAllowed([listLab], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(true);
      expect(isAllowed([listLab], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'LAB/' } })).toBe(false);
    });

    it('StringEquals compares exactly', () => {
      const exact = list({ StringEquals: { 's3:prefix': 'lab/' } });
      expect(isAllowed([exact], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(true);
      expect(isAllowed([exact], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/*' } })).toBe(false);
    });

    it('negated operators hold for a missing key, as in IAM', () => {
      const notOther = list({ StringNotLike: { 's3:prefix': 'other/*' } });
      expect(isAllowed([notOther], { action: 's3:ListBucket', resource: BUCKET })).toBe(true);
      expect(isAllowed([notOther], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'other/x' } })).toBe(false);
      const notExactly = list({ StringNotEquals: { 's3:prefix': 'lab/' } });
      expect(isAllowed([notExactly], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(false);
      expect(isAllowed([notExactly], { action: 's3:ListBucket', resource: BUCKET })).toBe(true);
    });

    it('Null asks whether a key is absent', () => {
      const tagged = list({ Null: { 'aws:RequestTag/neurocaas:job': 'false' } });
      expect(isAllowed([tagged], { action: 's3:ListBucket', resource: BUCKET, context: { 'aws:RequestTag/neurocaas:job': 'j1' } })).toBe(true);
      expect(isAllowed([tagged], { action: 's3:ListBucket', resource: BUCKET })).toBe(false);
      const untagged = list({ Null: { 'aws:RequestTag/neurocaas:job': 'true' } });
      expect(isAllowed([untagged], { action: 's3:ListBucket', resource: BUCKET })).toBe(true);
    });

    it('every key and every operator must hold', () => {
      const both = list({ StringLike: { 's3:prefix': 'lab/*' }, StringEquals: { 's3:delimiter': '/' } });
      expect(isAllowed([both], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/', 's3:delimiter': '/' } })).toBe(true);
      expect(isAllowed([both], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(false);
    });

    it('a deny applies only when its conditions hold', () => {
      const denyOther = policy({ Sid: 'NoOther', Effect: 'Deny', Action: 's3:ListBucket', Resource: BUCKET, Condition: { StringLike: { 's3:prefix': 'other/*' } } });
      const allowAll = policy({ Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET });
      expect(isAllowed([allowAll, denyOther], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(true);
      expect(evaluate([allowAll, denyOther], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'other/' } }).decision).toBe('ExplicitDeny');
    });
  });

  describe('policy variables', () => {
    const own = policy({
      Sid: 'Own',
      Effect: 'Allow',
      Action: 's3:PutObject',
      Resource: `${BUCKET}/\${aws:PrincipalTag/neurocaas-group}/submissions/\${aws:username}/*`,
    });
    const tags = (group: string, user: string) => ({ 'aws:PrincipalTag/neurocaas-group': group, 'aws:username': user });

    it('fills Resource variables from the request', () => {
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/lab/submissions/ada/xsubmit.json`, context: tags('lab', 'ada') })).toBe(true);
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/lab/submissions/cy/xsubmit.json`, context: tags('lab', 'ada') })).toBe(false);
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/other/submissions/ada/xsubmit.json`, context: tags('lab', 'ada') })).toBe(false);
    });

    it('matches nothing when the request lacks the variable', () => {
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/lab/submissions/ada/x`, context: { 'aws:username': 'ada' } })).toBe(false);
    });

    it('takes a variable\'s value literally: a * in a tag is no wildcard', () => {
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/lab/submissions/ada/x`, context: tags('*', 'ada') })).toBe(false);
      expect(isAllowed([own], { action: 's3:PutObject', resource: `${BUCKET}/*/submissions/ada/x`, context: tags('*', 'ada') })).toBe(true);
    });

    it('fills variables in condition values, keeping the policy\'s own wildcards', () => {
      const list = policy({ Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET, Condition: { StringLike: { 's3:prefix': '${aws:PrincipalTag/neurocaas-group}/*' } } });
      const context = (prefix: string) => ({ 's3:prefix': prefix, 'aws:PrincipalTag/neurocaas-group': 'lab' });
      expect(isAllowed([list], { action: 's3:ListBucket', resource: BUCKET, context: context('lab/inputs/') })).toBe(true);
      expect(isAllowed([list], { action: 's3:ListBucket', resource: BUCKET, context: context('other/') })).toBe(false);
      const exact = policy({ Effect: 'Allow', Action: 's3:ListBucket', Resource: BUCKET, Condition: { StringEquals: { 's3:prefix': '${aws:PrincipalTag/neurocaas-group}/' } } });
      expect(isAllowed([exact], { action: 's3:ListBucket', resource: BUCKET, context: context('lab/') })).toBe(true);
      expect(isAllowed([exact], { action: 's3:ListBucket', resource: BUCKET, context: { 's3:prefix': 'lab/' } })).toBe(false);
    });

    it('knows the escapes ${*}, ${?} and ${$}', () => {
      const literal = policy({ Effect: 'Allow', Action: 's3:GetObject', Resource: `${BUCKET}/a\${*}b` });
      expect(isAllowed([literal], { action: 's3:GetObject', resource: `${BUCKET}/a*b` })).toBe(true);
      expect(isAllowed([literal], { action: 's3:GetObject', resource: `${BUCKET}/axxb` })).toBe(false);
    });
  });

  describe('trust policies and multi-valued keys', () => {
    const trust = policy({
      Effect: 'Allow',
      Principal: { Federated: 'cognito-identity.amazonaws.com' },
      Action: ['sts:AssumeRoleWithWebIdentity', 'sts:TagSession'],
      Condition: { StringEquals: { 'cognito-identity.amazonaws.com:aud': 'pool-1' }, 'ForAnyValue:StringLike': { 'cognito-identity.amazonaws.com:amr': 'authenticated' } },
    });
    const federated = { Federated: 'cognito-identity.amazonaws.com' };
    const ask = (context: Record<string, string | string[]>, principal: Record<string, string> = federated, action = 'sts:AssumeRoleWithWebIdentity') =>
      isAllowed([trust], { action, resource: 'arn:aws:iam::1:role/r', principal, context });

    it('matches the principal and any value of a multi-valued key', () => {
      expect(ask({ 'cognito-identity.amazonaws.com:aud': 'pool-1', 'cognito-identity.amazonaws.com:amr': ['authenticated', 'cognito-idp'] })).toBe(true);
      expect(ask({ 'cognito-identity.amazonaws.com:aud': 'pool-1', 'cognito-identity.amazonaws.com:amr': ['authenticated'] }, federated, 'sts:TagSession')).toBe(true);
      expect(ask({ 'cognito-identity.amazonaws.com:aud': 'pool-1', 'cognito-identity.amazonaws.com:amr': ['unauthenticated'] })).toBe(false);
      expect(ask({ 'cognito-identity.amazonaws.com:aud': 'pool-1' })).toBe(false);
      expect(ask({ 'cognito-identity.amazonaws.com:aud': 'pool-1', 'cognito-identity.amazonaws.com:amr': ['authenticated'] }, { Service: 'lambda.amazonaws.com' })).toBe(false);
    });

    it('refuses a multi-valued key under a single-valued operator, and a trust statement asked without a principal', () => {
      const single = policy({ Effect: 'Allow', Principal: '*', Action: 'sts:AssumeRoleWithWebIdentity', Condition: { StringLike: { 'cognito-identity.amazonaws.com:amr': 'authenticated' } } });
      expect(() => evaluate([single], { action: 'sts:AssumeRoleWithWebIdentity', resource: 'r', principal: federated, context: { 'cognito-identity.amazonaws.com:amr': ['authenticated'] } })).toThrow(/ForAnyValue/);
      expect(() => evaluate([trust], { action: 'sts:AssumeRoleWithWebIdentity', resource: 'r' })).toThrow(/principal/);
    });
  });

  describe('refuses what it does not model', () => {
    const request = { action: 's3:GetObject', resource: `${BUCKET}/x` };

    it.each([
      ['NotAction', { Effect: 'Allow', NotAction: 's3:DeleteObject', Resource: '*' }],
      ['NotResource', { Effect: 'Allow', Action: 's3:GetObject', NotResource: 'x' }],
      ['Principal', { Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: '*' }],
      ['an unknown operator', { Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } } }],
      ['an IfExists operator', { Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: { StringLikeIfExists: { 's3:prefix': 'x' } } }],
      ['a policy variable with a default', { Effect: 'Allow', Action: 's3:GetObject', Resource: `${BUCKET}/\${aws:username, 'nobody'}/*` }],
      ['an unresolved CloudFormation value', { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::GetAtt': ['B', 'Arn'] } }],
      ['a wrong effect', { Effect: 'Maybe', Action: 's3:GetObject', Resource: '*' }],
    ])('%s throws', (_what, statement) => {
      expect(() => evaluate([{ Statement: [statement as unknown as PolicyStatement] }], request)).toThrow();
    });
  });
});
