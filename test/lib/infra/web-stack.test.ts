import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Template } from 'aws-cdk-lib/assertions';
import { UsageError } from '../../../lib/core/errors.js';
import { describeAnalysis } from '../../../lib/client/analysis-catalog.js';
import { estimateReservation } from '../../../lib/client/estimate.js';
import { parseWebCatalog } from '../../../lib/client/web-catalog.js';
import { buildNeurocaasApp, createNeurocaasApp, loadBlueprints } from '../../../lib/infra/app.js';
import { contentSecurityPolicy, CSP_MAX_CHARS, s3ConnectSources, type WebStack } from '../../../lib/infra/web-stack.js';
import { evaluate, isAllowed, type PolicyDocument } from '../../support/iam-policy-evaluator.js';
import { BETA_AMI, cfnText, FIXTURES, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

let synth: Synthesized;
let web: NonNullable<Synthesized['web']>;

beforeAll(() => {
  // cdk-nag is on: any finding not acknowledged with a reason fails this synth.
  synth = synthesize({ web: true });
  web = synth.web as NonNullable<Synthesized['web']>;
});

const props = (type: string, prefix: string) => resourceOf(web, type, prefix).properties;

/** A CloudFormation value as deployed: pseudo parameters, imports and attributes filled in. */
const DEPLOYED: Record<string, string> = {
  '<AWS::Partition>': 'aws',
  '<AWS::Region>': 'us-east-1',
  '<AWS::AccountId>': '123456789012',
};
function deployed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(deployed);
  if (node !== null && typeof node === 'object') {
    const keys = Object.keys(node);
    if (keys.length === 1 && (keys[0] === 'Ref' || keys[0]?.startsWith('Fn::'))) {
      return Object.entries(DEPLOYED).reduce((text, [from, to]) => text.split(from).join(to), cfnText(node));
    }
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, deployed(value)]));
  }
  return node;
}

describe('WebStack hosting', () => {
  it('keeps the app in a private, encrypted, TLS-only, versioned bucket with access logs', () => {
    const site = props('AWS::S3::Bucket', 'SiteBucket');
    expect(site['PublicAccessBlockConfiguration']).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(site['BucketEncryption']).toEqual({ ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
    expect(site['VersioningConfiguration']).toEqual({ Status: 'Enabled' });
    expect(cfnText((site['LoggingConfiguration'] as { DestinationBucketName: unknown }).DestinationBucketName)).toMatch(/^<LogsBucket/);
    const policy = JSON.stringify(props('AWS::S3::BucketPolicy', 'SiteBucketPolicy'));
    expect(policy).toContain('"aws:SecureTransport":"false"');
    expect(policy).toContain('"s3:TlsVersion":1.2');
    // Only CloudFront, for this distribution, reads it (Origin Access Control).
    expect(policy).toContain('cloudfront.amazonaws.com');
    expect(policy).toContain('AWS:SourceArn');
  });

  it('serves it through CloudFront with Origin Access Control, HTTPS only, logging and the security headers', () => {
    const config = props('AWS::CloudFront::Distribution', 'Distribution')['DistributionConfig'] as Record<string, unknown>;
    const behavior = config['DefaultCacheBehavior'] as Record<string, unknown>;
    expect(behavior['ViewerProtocolPolicy']).toBe('redirect-to-https');
    expect(behavior['AllowedMethods']).toEqual(['GET', 'HEAD']);
    expect(cfnText(behavior['ResponseHeadersPolicyId'])).toMatch(/^<SecurityHeaders/);
    const origin = (config['Origins'] as Record<string, unknown>[])[0] as Record<string, unknown>;
    expect(cfnText(origin['OriginAccessControlId'])).toMatch(/^<DistributionOrigin1S3OriginAccessControl.*\.Id>$/);
    expect((origin['S3OriginConfig'] as Record<string, unknown>)['OriginAccessIdentity']).toBe('');
    expect(config['DefaultRootObject']).toBe('index.html');
    expect((config['Logging'] as { Prefix: string }).Prefix).toBe('cloudfront/');
    expect(props('AWS::CloudFront::OriginAccessControl', 'DistributionOrigin1')['OriginAccessControlConfig']).toMatchObject({ OriginAccessControlOriginType: 's3', SigningBehavior: 'always', SigningProtocol: 'sigv4' });
  });

  it('sends a CSP of self, Cognito and exactly the analysis buckets, HSTS, no framing, nosniff and no referrer', () => {
    const config = props('AWS::CloudFront::ResponseHeadersPolicy', 'SecurityHeaders')['ResponseHeadersPolicyConfig'] as Record<string, Record<string, unknown>>;
    const security = config['SecurityHeadersConfig'] as Record<string, Record<string, unknown>>;
    const csp = cfnText(security['ContentSecurityPolicy']?.['ContentSecurityPolicy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'");
    expect(csp).toContain("object-src 'none'");
    const connect = (/connect-src ([^;]*)/.exec(csp)?.[1] ?? '').split(' ');
    expect(connect).toEqual([
      "'self'",
      'https://cognito-idp.<AWS::Region>.amazonaws.com',
      'https://cognito-identity.<AWS::Region>.amazonaws.com',
      'https://<import:NeurocaasPlatform:ExportsOutputRefWebUsersPoolDomain28DB2DC944332ADC>.auth.<AWS::Region>.amazoncognito.com',
      'https://<import:NeurocaasAnalysis-alpha:ExportsOutputRefUploadBucketB0FBA0377290D88A>.s3.<AWS::Region>.amazonaws.com',
      'https://<import:NeurocaasAnalysis-beta:ExportsOutputRefUploadBucketB0FBA0377290D88A>.s3.<AWS::Region>.amazonaws.com',
    ]);
    expect(security['StrictTransportSecurity']).toEqual({ AccessControlMaxAgeSec: 63072000, IncludeSubdomains: true, Override: true });
    expect(security['FrameOptions']).toEqual({ FrameOption: 'DENY', Override: true });
    expect(security['ContentTypeOptions']).toEqual({ Override: true });
    expect(security['ReferrerPolicy']).toEqual({ ReferrerPolicy: 'no-referrer', Override: true });
  });

  it('falls back to the region\'s bucket wildcard when the buckets would not fit CloudFront\'s CSP limit', () => {
    const few = s3ConnectSources(['a', 'b'], 'eu-west-1', 1000);
    expect(few).toEqual(['https://a.s3.eu-west-1.amazonaws.com', 'https://b.s3.eu-west-1.amazonaws.com']);
    const many = Array.from({ length: 40 }, (_, i) => `neurocaasanalysis-a${i}`);
    expect(s3ConnectSources(many, 'eu-west-1', CSP_MAX_CHARS - 700)).toEqual(['https://*.s3.eu-west-1.amazonaws.com']);
    // The budget holds: the longest region and Cognito domain with the most exact buckets stay under the limit.
    const fitting = Array.from({ length: 100 }, (_, i) => `${'b'.repeat(60)}${String(i).padStart(3, '0')}`);
    const sources = s3ConnectSources(fitting.slice(0, 20), 'ap-southeast-5', CSP_MAX_CHARS - 700);
    const longest = contentSecurityPolicy({ region: 'ap-southeast-5', cognitoDomainUrl: 'https://neurocaas-123456789012.auth.ap-southeast-5.amazoncognito.com', s3Sources: sources });
    expect(longest.length).toBeLessThanOrEqual(CSP_MAX_CHARS);
  });

  it('writes config.json (D11) and analyses.json at deploy time, replacing the build\'s own config.json', () => {
    const deployment = props('Custom::CDKBucketDeployment', 'SiteCustomResource');
    expect(deployment['Prune']).toBe(true);
    expect(deployment['SystemMetadata']).toEqual({ 'cache-control': 'no-cache' });
    expect(cfnText(deployment['DistributionId'])).toMatch(/^<Distribution/);
    const markers = (deployment['SourceMarkers'] as Record<string, unknown>[])[1] as Record<string, unknown>;
    const assets = readdirSync(synth.outdir).filter((name) => name.startsWith('asset.'));
    const configText = assets.map((dir) => join(synth.outdir, dir, 'config.json')).flatMap((path) => {
      try {
        return [readFileSync(path, 'utf8')];
      } catch {
        return [];
      }
    });
    // The app's own config.json ({backend: local}) is excluded from the app's asset: one config.json, the deployment's.
    expect(configText).toHaveLength(1);
    const config = JSON.parse((configText[0] as string).replace(/<<marker:0xbaba:(\d+)>>/g, (_m, n: string) => cfnText(markers[`<<marker:0xbaba:${n}>>`]))) as Record<string, unknown>;
    expect(config).toEqual({
      backend: 'aws',
      region: '<AWS::Region>',
      userPoolId: '<import:NeurocaasPlatform:ExportsOutputRefWebUsersPoolC6F12948AA6EAFE6>',
      userPoolClientId: '<WebClient697086FD>',
      identityPoolId: '<IdentityPool>',
      cognitoDomain: 'https://<import:NeurocaasPlatform:ExportsOutputRefWebUsersPoolDomain28DB2DC944332ADC>.auth.<AWS::Region>.amazoncognito.com',
      analyses: [
        { analysis: 'alpha', bucket: '<import:NeurocaasAnalysis-alpha:ExportsOutputRefUploadBucketB0FBA0377290D88A>' },
        { analysis: 'beta', bucket: '<import:NeurocaasAnalysis-beta:ExportsOutputRefUploadBucketB0FBA0377290D88A>' },
      ],
    });
    const analysesText = assets.map((dir) => join(synth.outdir, dir, 'analyses.json')).flatMap((path) => {
      try {
        return [readFileSync(path, 'utf8')];
      } catch {
        return [];
      }
    });
    expect(analysesText).toHaveLength(1);
    const catalog = parseWebCatalog(JSON.parse(analysesText[0] as string), 'analyses.json');
    expect(catalog.analyses.map((a) => [a.analysis, a.blueprint.name, a.view.name])).toEqual([
      ['alpha', 'alpha', 'alpha'],
      ['beta', 'beta', 'beta'],
    ]);
  });

  it('publishes the analyses catalog computed at synth time from the blueprints with the CLI\'s own view and estimate code', () => {
    const asset = readdirSync(synth.outdir).map((dir) => join(synth.outdir, dir, 'analyses.json')).find((path) => existsSync(path)) as string;
    const text = readFileSync(asset, 'utf8');
    // Nothing left for the deployment to fill in: the catalog is plain data.
    expect(text).not.toMatch(/<<marker:|\$\{Token\[/);
    const catalog = parseWebCatalog(JSON.parse(text), 'analyses.json');
    expect(catalog.schemaVersion).toBe(1);
    const sources = loadBlueprints(join(FIXTURES, 'blueprints'));
    for (const entry of catalog.analyses) {
      const source = sources.find((s) => s.blueprint.name === entry.analysis);
      expect(source, entry.analysis).toBeDefined();
      const readmePath = join(FIXTURES, 'blueprints', entry.analysis, 'README.md');
      const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : null;
      expect(entry.view).toEqual(describeAnalysis(source!.blueprint, readme));
      expect(entry.blueprint).toEqual(JSON.parse(JSON.stringify(source!.blueprint)));
    }
    const [alpha, beta] = catalog.analyses;
    expect(alpha?.view).toMatchObject({
      name: 'alpha',
      description: 'Infra test analysis with its own AMI and two instance types.',
      hardware: { instanceType: 'm5.large', allowedInstanceTypes: ['m5.large', 'm5.xlarge'] },
      readme: expect.stringContaining('Its **README** is shown'),
      configSchema: { type: 'object' },
    });
    // One dataset reserves at least its 30 minutes of m5.large, as `neurocaas estimate` says.
    expect(alpha?.view.perDatasetUsd).toBe(estimateReservation(alpha!.blueprint, 1).perDatasetUsd);
    expect(alpha?.view.perDatasetUsd).toBeGreaterThanOrEqual(0.048);
    expect(beta?.view).toMatchObject({ name: 'beta', readme: null, hardware: { instanceType: 'c5.xlarge', allowedInstanceTypes: ['c5.xlarge'] } });
    expect(beta?.view.perDatasetUsd).toBeGreaterThanOrEqual(0.34);
  });

  it('sets CORS on every analysis bucket for the distribution\'s origin only, exposing ETag for multipart', () => {
    for (const analysis of ['alpha', 'beta']) {
      const create = JSON.parse(cfnText(props('Custom::NeurocaasWebCors', `Cors${analysis}`)['Create'])) as { action: string; parameters: { Bucket: string; CORSConfiguration: { CORSRules: Record<string, unknown>[] } } };
      expect(create.action).toBe('putBucketCors');
      expect(create.parameters.Bucket).toBe(`<import:NeurocaasAnalysis-${analysis}:ExportsOutputRefUploadBucketB0FBA0377290D88A>`);
      const [rule] = create.parameters.CORSConfiguration.CORSRules;
      expect(rule?.['AllowedOrigins']).toEqual(['https://<Distribution830FAC52.DomainName>']);
      expect(rule?.['ExposeHeaders']).toContain('ETag');
    }
    const role = JSON.stringify(web.findResources('AWS::IAM::Policy'));
    expect(role).toContain('s3:PutBucketCORS');
  });

  it('is deployed after the platform and every analysis, and nothing depends on it', () => {
    expect(synth.stacks.web?.dependencies.map((stack) => stack.stackName).sort()).toEqual(['NeurocaasAnalysis-alpha', 'NeurocaasAnalysis-beta', 'NeurocaasPlatform']);
    for (const stack of [synth.stacks.platform, ...synth.stacks.analyses, ...synth.stacks.usersStacks]) {
      expect(stack.dependencies.map((d) => d.stackName)).not.toContain('NeurocaasWeb');
    }
  });
});

describe('WebStack sign-in', () => {
  it('has a user pool in the platform stack: no self sign-up, strong passwords, MFA required by authenticator app, custom group attribute, retained', () => {
    const { properties: pool } = resourceOf(synth.platform, 'AWS::Cognito::UserPool', 'WebUsersPool');
    expect(pool['AdminCreateUserConfig']).toMatchObject({ AllowAdminCreateUserOnly: true });
    expect(pool['Policies']).toEqual({
      PasswordPolicy: { MinimumLength: 12, RequireLowercase: true, RequireUppercase: true, RequireNumbers: true, RequireSymbols: true, TemporaryPasswordValidityDays: 7 },
    });
    expect(pool['MfaConfiguration']).toBe('ON');
    expect(pool['EnabledMfas']).toEqual(['SOFTWARE_TOKEN_MFA']);
    expect(pool['UsernameConfiguration']).toEqual({ CaseSensitive: true });
    expect(pool['DeletionProtection']).toBe('ACTIVE');
    expect(pool['Schema']).toContainEqual({ AttributeDataType: 'String', Mutable: true, Name: 'group', StringAttributeConstraints: { MinLength: '1', MaxLength: '64' } });
    const [id] = Object.keys(synth.platform.findResources('AWS::Cognito::UserPool'));
    expect(synth.platform.toJSON()['Resources'][id as string]['DeletionPolicy']).toBe('Retain');
  });

  it('signs in with the authorization code flow (PKCE in the app), no secret, back to the distribution; users may not write their group', () => {
    const client = props('AWS::Cognito::UserPoolClient', 'WebClient');
    expect(client['GenerateSecret']).toBe(false);
    expect(client['AllowedOAuthFlows']).toEqual(['code']);
    expect((client['CallbackURLs'] as unknown[]).map(cfnText)).toEqual(['https://<Distribution830FAC52.DomainName>/']);
    expect(client['ReadAttributes']).toContain('custom:group');
    expect(client['WriteAttributes']).toEqual(['locale']);
    expect(JSON.stringify(web.toJSON())).not.toMatch(/ClientSecret/);
  });

  it('has an identity pool without unauthenticated identities that maps the group attribute and the user name to the principal tags', () => {
    const pool = props('AWS::Cognito::IdentityPool', 'IdentityPool');
    expect(pool['AllowUnauthenticatedIdentities']).toBe(false);
    expect(pool['AllowClassicFlow']).toBe(false);
    expect((pool['CognitoIdentityProviders'] as Record<string, unknown>[])[0]).toMatchObject({ ServerSideTokenCheck: true });
    const tags = props('AWS::Cognito::IdentityPoolPrincipalTag', 'PrincipalTags');
    expect(tags['PrincipalTags']).toEqual({ 'neurocaas-group': 'custom:group', 'neurocaas-user': 'cognito:username' });
    expect(tags['UseDefaults']).toBe(false);
    const roles = props('AWS::Cognito::IdentityPoolRoleAttachment', 'IdentityPoolRoles');
    expect(Object.keys(roles['Roles'] as object)).toEqual(['authenticated']);
  });

  it('gives the web role the platform\'s one researcher policy, nothing else', () => {
    const role = props('AWS::IAM::Role', 'WebResearcherRole');
    expect((role['ManagedPolicyArns'] as unknown[]).map(cfnText)).toEqual([expect.stringMatching(/^<import:NeurocaasPlatform:ExportsOutputRefResearcherAccessPolicy/)]);
    expect(role['Policies']).toBeUndefined();
    expect(Object.keys(web.findResources('AWS::IAM::Policy')).filter((id) => id.startsWith('WebResearcherRole'))).toEqual([]);
  });

  it('invites every profile with an email into the pool from its users stack, with its group', () => {
    const invites = Object.values(synth.users.findResources('Custom::NeurocaasWebUser')).map(
      (resource) => JSON.parse(cfnText((resource as { Properties: { Create: unknown } }).Properties.Create)) as { action: string; parameters: Record<string, unknown> },
    );
    expect(invites.map((i) => [i.action, i.parameters['Username'], i.parameters['UserAttributes'], i.parameters['DesiredDeliveryMediums']])).toEqual([
      ['adminCreateUser', 'ada', [{ Name: 'email', Value: 'ada@example.org' }, { Name: 'email_verified', Value: 'true' }, { Name: 'custom:group', Value: 'lab' }], ['EMAIL']],
      ['adminCreateUser', 'bob', [{ Name: 'email', Value: 'bob@example.org' }, { Name: 'email_verified', Value: 'true' }, { Name: 'custom:group', Value: 'other' }], ['EMAIL']],
      ['adminCreateUser', 'cy', [{ Name: 'email', Value: 'cy@example.org' }, { Name: 'email_verified', Value: 'true' }, { Name: 'custom:group', Value: 'lab' }], ['EMAIL']],
    ]);
    expect(synth.users.findOutputs('WebUsers')['WebUsers']?.['Value']).toBe('ada,bob,cy');
  });
});

// The web role, evaluated as IAM would for a Cognito web session: the identity pool assumes the
// role with sts:AssumeRoleWithWebIdentity + sts:TagSession, the session's principal tags being
// its mapping of the user's ID token claims (the template's PrincipalTags resource).
describe('a web user\'s credentials, evaluated', () => {
  const ALPHA = 'arn:aws:s3:::neurocaasanalysis-alpha-uploadbucketb0fba037-1a2b3c4d5e6f';
  const BETA = 'arn:aws:s3:::neurocaasanalysis-beta-uploadbucketb0fba037-6f5e4d3c2b1a';
  const POOL = 'us-east-1:11111111-2222-3333-4444-555555555555';

  const trust = () => deployed(props('AWS::IAM::Role', 'WebResearcherRole')['AssumeRolePolicyDocument']) as PolicyDocument;
  const researcherPolicy = () => deployed(resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'ResearcherAccessPolicy').properties['PolicyDocument']) as PolicyDocument;

  /** The session tags the identity pool sets from a user's ID token claims. */
  function sessionContext(claims: Record<string, string>): Record<string, string> {
    const mapping = props('AWS::Cognito::IdentityPoolPrincipalTag', 'PrincipalTags')['PrincipalTags'] as Record<string, string>;
    const context: Record<string, string> = {};
    for (const [tag, claim] of Object.entries(mapping)) if (claims[claim] !== undefined) context[`aws:PrincipalTag/${tag}`] = claims[claim] as string;
    return context;
  }
  const ada = () => sessionContext({ 'cognito:username': 'ada', 'custom:group': 'lab', sub: 'x' });
  const bob = () => sessionContext({ 'cognito:username': 'bob', 'custom:group': 'other' });
  const may = (session: Record<string, string>, action: string, resource: string) => isAllowed([researcherPolicy()], { action, resource, context: session });

  it('lets only authenticated identities of this identity pool assume the role, with session tags', () => {
    const pool = cfnText(props('AWS::Cognito::IdentityPoolRoleAttachment', 'IdentityPoolRoles')['IdentityPoolId']);
    const document = JSON.parse(JSON.stringify(trust()).split(pool).join(POOL)) as PolicyDocument;
    const federated = { Federated: 'cognito-identity.amazonaws.com' };
    const assume = (action: string, context: Record<string, string | string[]>, principal = federated) => evaluate([document], { action, resource: 'arn:aws:iam::123456789012:role/web', principal, context }).decision;
    const authenticated = { 'cognito-identity.amazonaws.com:aud': POOL, 'cognito-identity.amazonaws.com:amr': ['authenticated', 'cognito-idp.us-east-1.amazonaws.com/us-east-1_pool'] };
    expect(assume('sts:AssumeRoleWithWebIdentity', authenticated)).toBe('Allow');
    expect(assume('sts:TagSession', authenticated)).toBe('Allow');
    expect(assume('sts:AssumeRoleWithWebIdentity', { ...authenticated, 'cognito-identity.amazonaws.com:amr': ['unauthenticated'] })).toBe('ImplicitDeny');
    expect(assume('sts:AssumeRoleWithWebIdentity', { ...authenticated, 'cognito-identity.amazonaws.com:aud': 'us-east-1:another-pool' })).toBe('ImplicitDeny');
    expect(assume('sts:AssumeRoleWithWebIdentity', authenticated, { Federated: 'accounts.google.com' })).toBe('ImplicitDeny');
    expect(assume('sts:AssumeRole', authenticated)).toBe('ImplicitDeny');
  });

  it.each([
    ['s3:GetObject', 'lab/inputs/x.csv'],
    ['s3:GetObject', 'lab/results/job__alpha_1/logs/certificate.txt'],
    ['s3:GetObject', 'lab/budget/ada.json'],
    ['s3:PutObject', 'lab/inputs/session1/video.csv'],
    ['s3:PutObject', 'lab/configs/run.json'],
    ['s3:PutObject', 'lab/submissions/ada/web-1-submit.json'],
    ['s3:PutObject', 'lab/submissions/ada/20261122T151533Z-7f3a.cancel.json'],
    ['s3:AbortMultipartUpload', 'lab/inputs/big.bin'],
    ['s3:ListMultipartUploadParts', 'lab/inputs/big.bin'],
  ])('ada (lab) may %s %s in every analysis bucket, like her IAM user', (action, key) => {
    expect(may(ada(), action, `${ALPHA}/${key}`)).toBe(true);
    expect(may(ada(), action, `${BETA}/${key}`)).toBe(true);
  });

  it.each([
    ['s3:GetObject', 'other/inputs/x.csv', "another group's inputs"],
    ['s3:GetObject', 'other/results/job__alpha_1/process_results/out.csv', "another group's results"],
    ['s3:GetObject', 'other/budget/bob.json', "another group's budget"],
    ['s3:PutObject', 'other/inputs/x.csv', "another group's inputs"],
    ['s3:PutObject', 'other/submissions/ada/x-submit.json', "another group's submissions, even under her own name"],
    ['s3:PutObject', 'lab/submissions/cy/x-submit.json', "another user's submissions"],
    ['s3:PutObject', 'lab/submissions/cy/j.cancel.json', "a cancel under another user"],
    ['s3:PutObject', 'lab/submissions/x-submit.json', 'the group-level submission prefix'],
    ['s3:PutObject', 'lab/results/job__alpha_1/end.txt', 'results'],
    ['s3:PutObject', 'lab/receipts/ada/x.json', 'receipts'],
    ['s3:PutObject', 'lab/budget/ada.json', 'the budget view'],
    ['s3:DeleteObject', 'lab/inputs/x.csv', 'deleting her own input'],
    ['s3:DeleteObject', 'lab/submissions/ada/x-submit.json', 'deleting her own submission'],
    ['s3:DeleteObjectVersion', 'lab/configs/run.json', 'deleting a version'],
  ])('ada (lab) may not %s %s (%s)', (action, key) => {
    expect(may(ada(), action, `${ALPHA}/${key}`)).toBe(false);
  });

  it('lists only below her own group, and denies deletes explicitly (no other policy can grant them)', () => {
    const list = (session: Record<string, string>, prefix: string) => isAllowed([researcherPolicy()], { action: 's3:ListBucket', resource: ALPHA, context: { ...session, 's3:prefix': prefix } });
    expect(list(ada(), 'lab/results/')).toBe(true);
    expect(list(ada(), 'other/')).toBe(false);
    expect(list(bob(), 'other/receipts/')).toBe(true);
    expect(evaluate([researcherPolicy()], { action: 's3:DeleteObject', resource: `${ALPHA}/lab/inputs/x`, context: ada() }).decision).toBe('ExplicitDeny');
  });

  it('gives a session without the tags (a user without a group attribute) nothing', () => {
    const untagged = sessionContext({ 'cognito:username': 'eve' });
    expect(may(untagged, 's3:GetObject', `${ALPHA}/lab/inputs/x`)).toBe(false);
    expect(may(untagged, 's3:PutObject', `${ALPHA}/eve/inputs/x`)).toBe(false);
    expect(may({}, 's3:GetObject', `${ALPHA}/x`)).toBe(false);
  });

  it('takes a wildcard in a claim literally (a group named "*" reaches no other group)', () => {
    const star = sessionContext({ 'cognito:username': '*', 'custom:group': '*' });
    expect(may(star, 's3:GetObject', `${ALPHA}/lab/inputs/x`)).toBe(false);
    expect(may(star, 's3:PutObject', `${ALPHA}/lab/submissions/ada/x`)).toBe(false);
  });
});

describe('the web interface in a concrete environment', () => {
  // The CDK CLI always hands the app a region (CDK_DEFAULT_REGION, us-east-1 when none is
  // configured), so `npx cdk synth` never synthesizes with <AWS::Region>: the BucketDeployment's
  // read of CDK's staging bucket must be acknowledged for a concrete region and account too.
  it('synthesizes cdk-nag clean with a region from the CDK CLI, and with -c account and -c region', () => {
    expect(() => synthesize({ web: true, context: { region: 'us-east-1' } })).not.toThrow();
    const azs = 'availability-zones:account=123456789012:region=eu-west-1';
    expect(() => synthesize({ web: true, context: { account: '123456789012', region: 'eu-west-1', [azs]: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'] } })).not.toThrow();
  });
});

describe('the web interface in the CDK app', () => {
  const build = (options: Parameters<typeof buildNeurocaasApp>[1], context: Record<string, unknown> = {}) =>
    buildNeurocaasApp(createNeurocaasApp({ context: { 'ami:beta': BETA_AMI, 'aws:cdk:bundling-stacks': [], ...context } }), {
      blueprintsDir: join(FIXTURES, 'blueprints'),
      usersDir: join(FIXTURES, 'users'),
      nagChecks: false,
      ...options,
    });

  it('is off unless asked for, and then needs the built app', () => {
    expect(build({}).web).toBeUndefined();
    expect(() => build({ web: true, webAssetsDir: join(FIXTURES, 'nowhere') })).toThrow(/npm run build.*-c web=false/);
    expect(() => build({}, { web: 'maybe' })).toThrow(UsageError);
    expect(build({}, { web: 'true', webDir: join(FIXTURES, 'web') }).web?.stackName).toBe('NeurocaasWeb');
  });

  it('serves a domain of your own with its certificate and TLSv1.2_2021, and refuses half of that', () => {
    const stacks = build({ web: true, webAssetsDir: join(FIXTURES, 'web') }, { webDomainName: 'ncap.example.org', webCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab' });
    const template = Template.fromStack(stacks.web as WebStack);
    const config = resourceOf(template, 'AWS::CloudFront::Distribution', 'Distribution').properties['DistributionConfig'] as Record<string, unknown>;
    expect(config['Aliases']).toEqual(['ncap.example.org']);
    expect(config['ViewerCertificate']).toMatchObject({ MinimumProtocolVersion: 'TLSv1.2_2021', SslSupportMethod: 'sni-only' });
    expect(resourceOf(template, 'AWS::Cognito::UserPoolClient', 'WebClient').properties['CallbackURLs']).toEqual(['https://ncap.example.org/']);
    expect(() => build({ web: true, webAssetsDir: join(FIXTURES, 'web') }, { webDomainName: 'ncap.example.org' })).toThrow(/webCertificateArn/);
  });
});
