import { App, CfnOutput, CfnResource, Stack } from 'aws-cdk-lib';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addQuotaGuard, checkQuotas, estimatedText, policyChars, QUOTAS, type CfnTemplate, type TemplateSource } from '../../../lib/infra/quota-guard.js';

type Resources = NonNullable<CfnTemplate['Resources']>;

function stack(stackName: string, template: CfnTemplate, bytes?: number): TemplateSource {
  return { stackName, template, ...(bytes === undefined ? {} : { bytes }) };
}

function many(count: number, make: (index: number) => [string, Resources[string]]): Resources {
  return Object.fromEntries(Array.from({ length: count }, (_, index) => make(index)));
}

/** A policy document of about `chars` characters. */
function documentOf(chars: number): unknown {
  const resource = `arn:aws:s3:::bucket/${'k'.repeat(Math.max(1, chars - 120))}`;
  return { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: resource }] };
}

const role = { Type: 'AWS::IAM::Role', Properties: { AssumeRolePolicyDocument: {} } };

describe('checkQuotas', () => {
  it('passes templates within every quota', () => {
    const fits = stack('Small', {
      Resources: {
        Role: role,
        Policy: { Type: 'AWS::IAM::Policy', Properties: { PolicyDocument: documentOf(2_000), Roles: [{ Ref: 'Role' }] } },
        Fn: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: { A: 'x'.repeat(100) } } } },
      },
      Outputs: { Out: { Value: 'x' } },
    });
    expect(checkQuotas([fits])).toEqual([]);
  });

  it('refuses a stack of more than 500 resources, naming the stack and the figure', () => {
    const big = stack('NeurocaasUsers', { Resources: many(501, (i) => [`Handle${i}`, { Type: 'AWS::CloudFormation::WaitConditionHandle' }]) });
    expect(checkQuotas([big])).toEqual([
      expect.objectContaining({ rule: 'NeurocaasQuota-ResourcesPerStack', stack: 'NeurocaasUsers', figure: 501, limit: QUOTAS.resourcesPerStack }),
    ]);
    expect(checkQuotas([big])[0]?.message).toContain('stack NeurocaasUsers has 501 resources, CloudFormation allows 500');
  });

  it('refuses more than 200 outputs or 200 parameters in a stack', () => {
    const outputs = stack('Out', { Resources: {}, Outputs: Object.fromEntries(Array.from({ length: 201 }, (_, i) => [`O${i}`, { Value: 'x' }])) });
    const parameters = stack('Par', { Resources: {}, Parameters: Object.fromEntries(Array.from({ length: 201 }, (_, i) => [`P${i}`, { Type: 'String' }])) });
    expect(checkQuotas([outputs]).map((v) => [v.rule, v.figure])).toEqual([['NeurocaasQuota-OutputsPerStack', 201]]);
    expect(checkQuotas([parameters]).map((v) => [v.rule, v.figure])).toEqual([['NeurocaasQuota-ParametersPerStack', 201]]);
  });

  it('refuses a template over 1 MB', () => {
    expect(checkQuotas([stack('Huge', { Resources: {} }, 1_000_001)]).map((v) => [v.rule, v.stack, v.figure])).toEqual([['NeurocaasQuota-TemplateSize', 'Huge', 1_000_001]]);
  });

  it('refuses more than 5,000 exports across the stacks of the app', () => {
    const stacks = Array.from({ length: 26 }, (_, s) =>
      stack(`S${s}`, { Resources: {}, Outputs: Object.fromEntries(Array.from({ length: 193 }, (_, i) => [`O${i}`, { Value: 'x', Export: { Name: `s${s}-o${i}` } }])) }),
    );
    expect(checkQuotas(stacks).map((v) => [v.rule, v.figure])).toEqual([['NeurocaasQuota-ExportsPerRegion', 26 * 193]]);
  });

  it('refuses a managed policy over 6,144 characters', () => {
    const template = stack('P', { Resources: { Big: { Type: 'AWS::IAM::ManagedPolicy', Properties: { PolicyDocument: documentOf(6_300) } } } });
    const [found] = checkQuotas([template]);
    expect(found).toMatchObject({ rule: 'NeurocaasQuota-ManagedPolicySize', stack: 'P', resource: 'Big', limit: 6_144 });
    expect(found?.figure).toBeGreaterThan(6_144);
  });

  it('adds up the inline policies other stacks attach to a role through its exported ARN (the per-analysis pattern of old)', () => {
    const platform = stack('NeurocaasPlatform', {
      Resources: { ReaperRole: role },
      Outputs: { RoleArn: { Value: { 'Fn::GetAtt': ['ReaperRole', 'Arn'] }, Export: { Name: 'NeurocaasPlatform:ReaperRoleArn' } } },
    });
    const importedRoleName = { 'Fn::Select': [1, { 'Fn::Split': ['/', { 'Fn::Select': [5, { 'Fn::Split': [':', { 'Fn::ImportValue': 'NeurocaasPlatform:ReaperRoleArn' }] }] }] }] };
    const analyses = Array.from({ length: 31 }, (_, i) =>
      stack(`NeurocaasAnalysis-a${i}`, { Resources: { Access: { Type: 'AWS::IAM::Policy', Properties: { PolicyDocument: documentOf(400), Roles: [importedRoleName] } } } }),
    );
    const found = checkQuotas([platform, ...analyses]);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ rule: 'NeurocaasQuota-InlinePolicySize', stack: 'NeurocaasPlatform', resource: 'ReaperRole', limit: 10_240 });
    expect(found[0]?.message).toMatch(/^role NeurocaasPlatform\/ReaperRole carries about \d+ characters of inline policy, IAM allows 10240 per role/);
    expect(checkQuotas([platform, ...analyses.slice(0, 20)])).toEqual([]);
  });

  it.each([
    ['user', 'AWS::IAM::User', 'Users', 2_048],
    ['group', 'AWS::IAM::Group', 'Groups', 5_120],
  ])('refuses more inline policy on a %s than IAM allows', (_kind, type, property, limit) => {
    const template = stack('U', {
      Resources: {
        Principal: { Type: type, Properties: {} },
        A: { Type: 'AWS::IAM::Policy', Properties: { PolicyDocument: documentOf(limit / 2 + 100), [property]: [{ Ref: 'Principal' }] } },
        B: { Type: 'AWS::IAM::Policy', Properties: { PolicyDocument: documentOf(limit / 2 + 100), [property]: [{ Ref: 'Principal' }] } },
      },
    });
    expect(checkQuotas([template]).map((v) => [v.rule, v.resource, v.limit])).toEqual([['NeurocaasQuota-InlinePolicySize', 'Principal', limit]]);
  });

  it('counts inline Policies of a role itself', () => {
    const template = stack('R', { Resources: { Role: { Type: 'AWS::IAM::Role', Properties: { Policies: [{ PolicyName: 'a', PolicyDocument: documentOf(10_500) }] } } } });
    expect(checkQuotas([template]).map((v) => v.rule)).toEqual(['NeurocaasQuota-InlinePolicySize']);
  });

  it('refuses more than 10 managed policies on one principal, attached either way', () => {
    const policies = many(6, (i) => [`Mp${i}`, { Type: 'AWS::IAM::ManagedPolicy', Properties: { PolicyDocument: documentOf(200), Groups: [{ Ref: 'Group' }] } }]);
    const arns = Array.from({ length: 5 }, (_, i) => `arn:aws:iam::aws:policy/Managed${i}`);
    const template = stack('G', { Resources: { Group: { Type: 'AWS::IAM::Group', Properties: { ManagedPolicyArns: arns } }, ...policies } });
    expect(checkQuotas([template]).map((v) => [v.rule, v.resource, v.figure])).toEqual([['NeurocaasQuota-ManagedPoliciesPerPrincipal', 'Group', 11]]);
    const ten = stack('G', { Resources: { Group: { Type: 'AWS::IAM::Group', Properties: { ManagedPolicyArns: arns.slice(0, 4) } }, ...policies } });
    expect(checkQuotas([ten])).toEqual([]);
  });

  it('refuses a Lambda environment over 4 KB, counting references at their deployed length', () => {
    const variables = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`TOPIC_${i}`, { Ref: `Topic${i}` }]));
    const template = stack('L', { Resources: { Fn: { Type: 'AWS::Lambda::Function', Properties: { Environment: { Variables: { ...variables, BIG: 'x'.repeat(2_500) } } } } } });
    const [found] = checkQuotas([template]);
    expect(found).toMatchObject({ rule: 'NeurocaasQuota-LambdaEnvironmentSize', resource: 'Fn', limit: 4_096 });
  });
});

describe('estimates', () => {
  it('count references at a plausible deployed length, literal text as it is', () => {
    expect(estimatedText('abc')).toBe('abc');
    expect(estimatedText({ Ref: 'AWS::AccountId' })).toHaveLength(12);
    expect(estimatedText({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::b']] })).toHaveLength('arn:'.length + 10 + ':s3:::b'.length);
    expect(estimatedText({ 'Fn::GetAtt': ['Role', 'Arn'] }).length).toBeGreaterThanOrEqual(100);
  });

  it('count policy characters without whitespace', () => {
    expect(policyChars({ Statement: [{ Effect: 'Allow' }] })).toBe(JSON.stringify({ Statement: [{ Effect: 'Allow' }] }).length);
  });
});

describe('QuotaGuard in an app', () => {
  let outdir: string | undefined;
  afterEach(() => {
    if (outdir) rmSync(outdir, { recursive: true, force: true });
  });

  it('fails the synth when a role would carry too much inline policy, naming the role and the figure in the report', () => {
    // (CDK itself already refuses a stack of more than 500 resources at synth; IAM sizes it does not check.)
    outdir = mkdtempSync(join(tmpdir(), 'neurocaas-guard-'));
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    const stack = new Stack(app, 'TooMuchPolicy');
    new CfnResource(stack, 'Role', { type: 'AWS::IAM::Role', properties: { AssumeRolePolicyDocument: {} } });
    for (let i = 0; i < 12; i += 1) {
      new CfnResource(stack, `Access${i}`, { type: 'AWS::IAM::Policy', properties: { PolicyName: `p${i}`, PolicyDocument: documentOf(1_000), Roles: [{ Ref: 'Role' }] } });
    }
    new CfnOutput(new Stack(app, 'Fine'), 'Out', { value: 'x' });
    addQuotaGuard(app);
    expect(() => app.synth()).toThrow(/role TooMuchPolicy\/Role carries about/);
    const report = readFileSync(join(outdir, 'validation-report.json'), 'utf8');
    expect(report).toMatch(/role TooMuchPolicy\/Role carries about 1\d{4} characters of inline policy, IAM allows 10240 per role/);
    expect(report).not.toContain('Fine');
  });

  it('lets a synth within the quotas through', () => {
    outdir = mkdtempSync(join(tmpdir(), 'neurocaas-guard-'));
    const app = new App({ outdir, builtinCloudFormationValidation: false });
    new CfnResource(new Stack(app, 'Small'), 'Handle', { type: 'AWS::CloudFormation::WaitConditionHandle' });
    addQuotaGuard(app);
    expect(() => app.synth()).not.toThrow();
  });
});
