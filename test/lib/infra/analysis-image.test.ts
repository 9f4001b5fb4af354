import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_AWS_CLI_VERSION, UBUNTU_24_04_PARAMETER } from '../../../lib/core/image-recipe.js';
import { IMAGE_LOG_PREFIX } from '../../../lib/infra/analysis-image.js';
import { ALPHA_AMI, cfnText, FIXTURES, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

const workdir = mkdtempSync(join(tmpdir(), 'neurocaas-image-'));
afterAll(() => {
  removeSynthesized();
  rmSync(workdir, { recursive: true, force: true });
});

let synth: Synthesized;
let gamma: Synthesized['platform'];
let image: { id: string; properties: Record<string, unknown> };
let recipe: { id: string; properties: Record<string, unknown> };
let infrastructure: { id: string; properties: Record<string, unknown> };
let baseParameter: string;

/** A component document as the template holds it (JSON text with deploy-time tokens). */
function componentDocument(prefix: string): { phases: { name: string; steps: { name: string; action: string; inputs: unknown }[] }[] } {
  const { properties } = resourceOf(gamma, 'AWS::ImageBuilder::Component', prefix);
  return JSON.parse(cfnText(properties['Data'])) as ReturnType<typeof componentDocument>;
}

function commandsOf(step: { inputs: unknown }): string {
  return (step.inputs as { commands: string[] }).commands.join('\n');
}

beforeAll(() => {
  // alpha names a literal AMI; gamma a recipe in its folder.
  const blueprintsDir = join(workdir, 'blueprints');
  cpSync(join(FIXTURES, 'blueprints', 'alpha'), join(blueprintsDir, 'alpha'), { recursive: true });
  cpSync(join(FIXTURES, 'recipe-blueprints', 'gamma'), join(blueprintsDir, 'gamma'), { recursive: true });
  synth = synthesize({ blueprintsDir, context: {} });
  gamma = synth.analysis('gamma');
  image = resourceOf(gamma, 'AWS::ImageBuilder::Image', 'Image');
  recipe = resourceOf(gamma, 'AWS::ImageBuilder::ImageRecipe', 'ImageRecipe');
  infrastructure = resourceOf(gamma, 'AWS::ImageBuilder::InfrastructureConfiguration', 'ImageInfrastructure');
  const parameters = gamma.toJSON()['Parameters'] as Record<string, { Type: string; Default: string }>;
  const [id] = Object.entries(parameters).find(([, parameter]) => parameter.Default === UBUNTU_24_04_PARAMETER) ?? [];
  if (!id) throw new Error(`no parameter for the base image; have ${JSON.stringify(parameters)}`);
  baseParameter = id;
});

describe('AnalysisImage base image', () => {
  it('is resolved by CloudFormation at deploy time from the SSM public parameter, as an AMI id', () => {
    const parameters = gamma.toJSON()['Parameters'] as Record<string, { Type: string; Default: string }>;
    expect(parameters[baseParameter]).toEqual({ Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>', Default: UBUNTU_24_04_PARAMETER });
    expect(recipe.properties['ParentImage']).toEqual({ Ref: baseParameter });
  });

  it('names the recipe after the recipe hash and the resolved base AMI, so a new base image makes a new recipe', () => {
    expect(recipe.properties['Name']).toEqual({
      'Fn::Join': ['-', [expect.stringMatching(/^neurocaas-gamma-[0-9a-f]{12}$/), { 'Fn::Select': [1, { 'Fn::Split': ['-', { Ref: baseParameter }] }] }]],
    });
  });
});

describe('AnalysisImage components', () => {
  it('puts the platform-owned runner component first and the analysis component second', () => {
    const components = recipe.properties['Components'] as { ComponentArn: { 'Fn::GetAtt': [string, string] } }[];
    expect(components.map((c) => c.ComponentArn['Fn::GetAtt'][0])).toEqual([
      resourceOf(gamma, 'AWS::ImageBuilder::Component', 'ImageRunnerComponent').id,
      resourceOf(gamma, 'AWS::ImageBuilder::Component', 'ImageAnalysisComponent').id,
    ]);
  });

  it('the runner component installs the SSM agent, bash, coreutils, curl and an AWS CLI v2 with conditional writes, and checks them', () => {
    const document = componentDocument('ImageRunnerComponent');
    expect(document.phases.map((phase) => phase.name)).toEqual(['build', 'validate', 'test']);
    const build = document.phases[0]?.steps.map(commandsOf).join('\n') ?? '';
    expect(build).toMatch(/apt-get .*install .*bash coreutils findutils util-linux curl unzip/);
    expect(build).toContain('https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m).zip');
    expect(build).toContain('snap install amazon-ssm-agent --classic');
    const validate = document.phases[1]?.steps.map(commandsOf).join('\n') ?? '';
    expect(validate).toContain(MIN_AWS_CLI_VERSION);
    expect(validate).toMatch(/command -v "\$tool"/);
    expect(validate).toContain('amazon-ssm-agent');
  });

  it('the runner component keeps bash strict: every step starts with set -euo pipefail', () => {
    for (const prefix of ['ImageRunnerComponent', 'ImageAnalysisComponent']) {
      for (const step of componentDocument(prefix).phases.flatMap((phase) => phase.steps).filter((s) => s.action === 'ExecuteBash')) {
        expect((step.inputs as { commands: string[] }).commands[0], `${prefix} ${step.name}`).toBe('set -euo pipefail');
      }
    }
  });

  it('the analysis component downloads the environment asset, unpacks it into /opt/neurocaas/env and runs the recipe steps in order there', () => {
    const document = componentDocument('ImageAnalysisComponent');
    const build = document.phases[0]?.steps ?? [];
    expect(build.map((step) => step.name)).toEqual(['DownloadEnvironment', 'UnpackEnvironment', 'InstallJq', 'MakeExecutable']);
    expect(build[0]).toMatchObject({ action: 'S3Download', inputs: [{ destination: '/tmp/neurocaas-environment.zip' }] });
    expect((build[0]?.inputs as { source: string }[])[0]?.source).toMatch(/^s3:\/\/cdk-[a-z0-9]+-assets-<AWS::AccountId>-<AWS::Region>\/[0-9a-f]{64}\.zip$/);
    expect(commandsOf(build[2] as { inputs: unknown })).toBe('set -euo pipefail\ncd /opt/neurocaas/env\napt-get install -y jq');
    expect(document.phases.slice(1).map((phase) => [phase.name, phase.steps.map((s) => s.name)])).toEqual([
      ['validate', ['JqRuns']],
      ['test', ['JqRuns']],
    ]);
  });

  it('names each component after its content and keeps the SSM agent after the build', () => {
    expect(resourceOf(gamma, 'AWS::ImageBuilder::Component', 'ImageRunnerComponent').properties).toMatchObject({
      Name: expect.stringMatching(/^neurocaas-gamma-runner-[0-9a-f]{10}$/),
      Platform: 'Linux',
      Version: '1.0.0',
    });
    expect(resourceOf(gamma, 'AWS::ImageBuilder::Component', 'ImageAnalysisComponent').properties['Name']).toMatch(/^neurocaas-gamma-[0-9a-f]{12}$/);
    expect(recipe.properties['AdditionalInstanceConfiguration']).toEqual({ SystemsManagerAgent: { UninstallAfterBuild: false } });
  });

  it('gives the image the recipe\'s root volume size, encrypted gp3 on the Ubuntu root device', () => {
    expect(recipe.properties['BlockDeviceMappings']).toEqual([
      { DeviceName: '/dev/sda1', Ebs: { VolumeSize: 30, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } },
    ]);
  });
});

describe('AnalysisImage build machine', () => {
  it('runs the recipe\'s build type with IMDSv2 only, is terminated when the build fails, and logs to the logs bucket', () => {
    const logsBucket = resourceOf(gamma, 'AWS::S3::Bucket', 'ImageLogsBucket').id;
    expect(infrastructure.properties).toMatchObject({
      Name: 'neurocaas-gamma-image-build',
      InstanceTypes: ['c5.large'],
      InstanceMetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 },
      TerminateInstanceOnFailure: true,
      Logging: { S3Logs: { S3BucketName: { Ref: logsBucket }, S3KeyPrefix: IMAGE_LOG_PREFIX } },
      InstanceProfileName: { Ref: resourceOf(gamma, 'AWS::IAM::InstanceProfile', 'ImageBuildInstanceProfile').id },
    });
  });

  it('runs in the platform network with a security group that lets nothing in', () => {
    const group = resourceOf(gamma, 'AWS::EC2::SecurityGroup', 'ImageBuildSecurityGroup');
    expect(group.properties['SecurityGroupIngress']).toBeUndefined();
    expect(infrastructure.properties['SecurityGroupIds']).toEqual([{ 'Fn::GetAtt': [group.id, 'GroupId'] }]);
    expect(cfnText(infrastructure.properties['SubnetId'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefMachineNetworkVpcMachinesSubnet1/);
  });

  it('has a least-privilege instance profile: the Image Builder and SSM core policies, its logs prefix, the environment zip, nothing else', () => {
    const role = resourceOf(gamma, 'AWS::IAM::Role', 'ImageBuildRole');
    expect((role.properties['ManagedPolicyArns'] as unknown[]).map(cfnText)).toEqual([
      'arn:<AWS::Partition>:iam::aws:policy/EC2InstanceProfileForImageBuilder',
      'arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore',
    ]);
    expect(role.properties['AssumeRolePolicyDocument']).toMatchObject({ Statement: [{ Principal: { Service: 'ec2.amazonaws.com' } }] });
    const policy = resourceOf(gamma, 'AWS::IAM::Policy', 'ImageBuildRoleDefaultPolicy');
    const logsBucket = resourceOf(gamma, 'AWS::S3::Bucket', 'ImageLogsBucket').id;
    const statements = readableStatements(policy.properties['PolicyDocument']);
    expect(statements).toEqual([
      { Sid: 'WriteBuildLogs', Effect: 'Allow', Action: ['s3:PutObject'], Resource: [`<${logsBucket}.Arn>/${IMAGE_LOG_PREFIX}/*`] },
      { Sid: 'ReadEnvironmentZip', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [expect.stringMatching(/^arn:<AWS::Partition>:s3:::cdk-[a-z0-9]+-assets-<AWS::AccountId>-<AWS::Region>\/[0-9a-f]{64}\.zip$/)] },
    ]);
    expect(policy.properties['Roles']).toEqual([{ Ref: role.id }]);
  });

  it('keeps the build logs in a private, TLS-only, encrypted bucket that forgets them after 90 days and is retained with the stack', () => {
    const logs = resourceOf(gamma, 'AWS::S3::Bucket', 'ImageLogsBucket');
    expect(logs.properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LifecycleConfiguration: { Rules: [{ Id: 'ExpireBuildLogs', Status: 'Enabled', ExpirationInDays: 90 }] },
      LoggingConfiguration: { LogFilePrefix: 'image-logs-bucket/' },
    });
    expect((gamma.findResources('AWS::S3::Bucket')[logs.id] as { DeletionPolicy: string }).DeletionPolicy).toBe('Retain');
  });
});

describe('AnalysisImage image', () => {
  it('is built by the deploy from the recipe on the build infrastructure, with image tests, after the build role has its permissions', () => {
    expect(image.properties).toMatchObject({
      ImageRecipeArn: { 'Fn::GetAtt': [recipe.id, 'Arn'] },
      InfrastructureConfigurationArn: { 'Fn::GetAtt': [infrastructure.id, 'Arn'] },
      ImageTestsConfiguration: { ImageTestsEnabled: true, TimeoutMinutes: 60 },
    });
    const dependsOn = (gamma.findResources('AWS::ImageBuilder::Image')[image.id] as { DependsOn: string[] }).DependsOn;
    expect(dependsOn).toEqual(expect.arrayContaining([resourceOf(gamma, 'AWS::IAM::Policy', 'ImageBuildRoleDefaultPolicy').id]));
  });

  it('is the image the analysis launches: the registry item and the launch permission name the built id, never a parameter read at launch', () => {
    const registry = resourceOf(gamma, 'Custom::NeurocaasRegistryItem', 'Registration');
    const item = (JSON.parse(cfnText(registry.properties['Create'])) as { parameters: { Item: Record<string, { S: string }> } }).parameters.Item;
    expect(item['amiId']).toEqual({ S: `<${image.id}.ImageId>` });
    expect(item['imageSource']).toEqual({ S: 'recipe' });
    expect(item['recipeHash']?.S).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(item['baseImageParameter']).toEqual({ S: UBUNTU_24_04_PARAMETER });
    expect(item['baseImageId']).toEqual({ S: `<${baseParameter}>` });
    const access = resourceOf(gamma, 'AWS::IAM::Policy', 'ProtocolAccessPolicy');
    const launch = readableStatements(access.properties['PolicyDocument']).find((s) => s.Sid === 'LaunchFromAnalysisImageAndSecurityGroup');
    expect(launch?.Resource[0]).toBe(`arn:<AWS::Partition>:ec2:<AWS::Region>::image/<${image.id}.ImageId>`);
  });

  it('tags the AMI with its analysis, recipe hash and base image', () => {
    expect(recipe.properties['AmiTags']).toMatchObject({
      'neurocaas:analysis': 'gamma',
      'neurocaas:recipe-hash': expect.stringMatching(/^sha256:/),
      'neurocaas:base-image-parameter': UBUNTU_24_04_PARAMETER,
      'neurocaas:base-image-id': { Ref: baseParameter },
    });
  });
});

describe('an analysis with a literal AMI', () => {
  it('builds nothing and launches the literal id', () => {
    const alpha = synth.analysis('alpha');
    for (const type of ['AWS::ImageBuilder::Image', 'AWS::ImageBuilder::ImageRecipe', 'AWS::ImageBuilder::Component', 'AWS::ImageBuilder::InfrastructureConfiguration']) {
      alpha.resourceCountIs(type, 0);
    }
    const registry = resourceOf(alpha, 'Custom::NeurocaasRegistryItem', 'Registration');
    const item = (JSON.parse(cfnText(registry.properties['Create'])) as { parameters: { Item: Record<string, { S: string }> } }).parameters.Item;
    expect(item['amiId']).toEqual({ S: ALPHA_AMI });
    expect(item['imageSource']).toEqual({ S: 'ami' });
  });

  it('a recipe analysis given an AMI by context (the sandbox) builds nothing either', () => {
    const blueprintsDir = join(workdir, 'blueprints');
    const overridden = synthesize({ blueprintsDir, context: { 'ami:gamma': 'ami-0ccccccccccccccc3' }, nagChecks: false });
    overridden.analysis('gamma').resourceCountIs('AWS::ImageBuilder::Image', 0);
    expect(overridden.analysis('gamma').toJSON()['Parameters']).not.toHaveProperty(baseParameter);
  });
});
