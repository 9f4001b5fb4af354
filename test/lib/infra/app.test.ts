import { Token } from 'aws-cdk-lib';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SSM_MAX_COMMAND_MINUTES } from '../../../lib/core/blueprint.js';
import { BlueprintInvalidError, UsageError, UserProfileInvalidError } from '../../../lib/core/errors.js';
import { buildNeurocaasApp, createNeurocaasApp, STACK_NAMES } from '../../../lib/infra/app.js';
import { BETA_AMI, cfnText, FIXTURES, readableStatements, removeSynthesized, resourceOf, synthesize } from './synth.js';

afterAll(removeSynthesized);

let workdir: string;
let blueprintsDir: string;
let usersDir: string;

beforeEach(() => {
  workdir = mkdtempSync(join(tmpdir(), 'neurocaas-infra-'));
  blueprintsDir = join(workdir, 'blueprints');
  usersDir = join(workdir, 'users');
  cpSync(join(FIXTURES, 'blueprints'), blueprintsDir, { recursive: true });
  cpSync(join(FIXTURES, 'users'), usersDir, { recursive: true });
});

afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(workdir, { recursive: true, force: true });
});

function editJson(path: string, edit: (value: Record<string, any>) => void): void {
  const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>;
  edit(value);
  writeFileSync(path, JSON.stringify(value, null, 2));
}

function build(context: Record<string, unknown> = {}) {
  const app = createNeurocaasApp({ context: { 'ami:beta': BETA_AMI, 'aws:cdk:bundling-stacks': [], ...context } });
  try {
    return { app, stacks: buildNeurocaasApp(app, { blueprintsDir, usersDir, nagChecks: false }) };
  } catch (error) {
    // A failed build leaves no half-built stack behind.
    expect(app.node.children).toHaveLength(0);
    throw error;
  }
}

function failure(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the synth to fail');
}

describe('invalid blueprints fail the synth with their reasons', () => {
  it('refuses a timeout beyond what SSM Run Command can run (48 h)', () => {
    editJson(join(blueprintsDir, 'alpha', 'blueprint.json'), (blueprint) => {
      blueprint['limits'].timeoutMinutes = 3000;
    });
    const error = failure(() => build());
    expect(error).toBeInstanceOf(BlueprintInvalidError);
    expect(error.message).toContain(join(blueprintsDir, 'alpha', 'blueprint.json'));
    expect(error.message).toContain(`limits.timeoutMinutes: must be at most ${SSM_MAX_COMMAND_MINUTES} (48 h): SSM Run Command cannot run one command longer`);
  });

  it('refuses an allowed instance type without a price', () => {
    editJson(join(blueprintsDir, 'alpha', 'blueprint.json'), (blueprint) => {
      delete blueprint['pricing'].hourlyUsd['m5.xlarge'];
    });
    expect(failure(() => build()).message).toContain('pricing.hourlyUsd: has no price for allowed instance type "m5.xlarge"');
  });

  it('reports every problem of every blueprint at once', () => {
    editJson(join(blueprintsDir, 'alpha', 'blueprint.json'), (blueprint) => {
      blueprint['limits'].timeoutMinutes = 3000;
      blueprint['hardware'].volumeSizeGiB = 2;
    });
    editJson(join(blueprintsDir, 'beta', 'blueprint.json'), (blueprint) => {
      delete blueprint['description'];
    });
    const message = failure(() => build()).message;
    expect(message).toContain('limits.timeoutMinutes');
    expect(message).toContain('hardware.volumeSizeGiB');
    expect(message).toContain(`${join(blueprintsDir, 'beta', 'blueprint.json')} is invalid`);
    expect(message).toContain('description');
  });

  it('refuses a blueprint whose name is not its folder', () => {
    editJson(join(blueprintsDir, 'beta', 'blueprint.json'), (blueprint) => {
      blueprint['name'] = 'gamma';
    });
    expect(failure(() => build()).message).toContain('"name" is "gamma" but the blueprint folder is "beta"');
  });

  it('refuses a file that is not JSON', () => {
    writeFileSync(join(blueprintsDir, 'beta', 'blueprint.json'), '{ "schemaVersion": 1, ');
    expect(failure(() => build())).toBeInstanceOf(BlueprintInvalidError);
  });

  it('ignores folders without a blueprint.json', () => {
    mkdirSync(join(blueprintsDir, 'notes'));
    expect(build().stacks.analyses.map((stack) => stack.analysis)).toEqual(['alpha', 'beta']);
  });
});

describe('machine images', () => {
  it('needs an image for every analysis: a recipe or an AMI from the blueprint, or the context', () => {
    const app = createNeurocaasApp({ context: { 'aws:cdk:bundling-stacks': [] } });
    const error = failure(() => buildNeurocaasApp(app, { blueprintsDir, usersDir, nagChecks: false }));
    expect(error).toBeInstanceOf(BlueprintInvalidError);
    expect(error.message).toContain('analysis "beta" has no image for the aws backend: set environment.recipe');
    expect(error.message).toContain('-c ami:beta=ami-...');
  });

  it('lets the context ami:<analysis> override the blueprint', () => {
    const synth = synthesize({ context: { 'ami:alpha': 'ami-0ccccccccccccccc3' } });
    const { properties } = resourceOf(synth.analysis('alpha'), 'AWS::IAM::Policy', 'ProtocolAccessPolicy');
    expect(readableStatements(properties['PolicyDocument'])[1]?.Resource[0]).toBe('arn:<AWS::Partition>:ec2:<AWS::Region>::image/ami-0ccccccccccccccc3');
    const registration = resourceOf(synth.analysis('alpha'), 'Custom::NeurocaasRegistryItem', 'Registration').properties;
    expect(cfnText(registration['Create'])).toContain('"amiId":{"S":"ami-0ccccccccccccccc3"}');
  });

  it('refuses a context AMI that is not an AMI id', () => {
    expect(failure(() => build({ 'ami:alpha': 'ubuntu-latest' })).message).toContain('context ami:alpha must be an AMI id');
  });
});

describe('invalid user profiles fail the synth with their reasons', () => {
  it('reports schema problems with their paths', () => {
    editJson(join(usersDir, 'bob.json'), (profile) => {
      profile['budgetUsd'] = -1;
      delete profile['group'];
    });
    const error = failure(() => build());
    expect(error).toBeInstanceOf(UserProfileInvalidError);
    expect(error.message).toContain('budgetUsd');
    expect(error.message).toContain('group');
  });

  it('refuses a profile allowing an analysis that is not deployed', () => {
    editJson(join(usersDir, 'bob.json'), (profile) => {
      profile['allowedAnalyses'] = ['alpha', 'spike-sorter'];
    });
    expect(failure(() => build()).message).toContain('allowedAnalyses names "spike-sorter", which is not deployed; deployed: "alpha", "beta"');
  });

  it('refuses user names and groups that only differ in case (IAM names ignore case)', () => {
    writeFileSync(join(usersDir, 'Ada.json'), readFileSync(join(usersDir, 'ada.json'), 'utf8').replace('"ada"', '"Ada"').replace('"lab"', '"Lab"'));
    const message = failure(() => build()).message;
    expect(message).toContain('usernames "Ada" and "ada" differ only in case');
    expect(message).toContain('groups "Lab" and "lab" differ only in case');
  });

  it('deploys no users when there is no users folder', () => {
    usersDir = join(workdir, 'nobody');
    const { stacks } = build();
    expect(stacks.users.users.size).toBe(0);
  });
});

describe('deployment environment', () => {
  it('is environment-agnostic without credentials or context, so synth needs no AWS access', () => {
    vi.stubEnv('CDK_DEFAULT_ACCOUNT', '');
    vi.stubEnv('CDK_DEFAULT_REGION', '');
    const { stacks } = build();
    for (const stack of [stacks.platform, stacks.users, ...stacks.analyses]) {
      expect(Token.isUnresolved(stack.account)).toBe(true);
      expect(Token.isUnresolved(stack.region)).toBe(true);
    }
  });

  it('takes account and region from the context first, then from the CDK CLI', () => {
    vi.stubEnv('CDK_DEFAULT_ACCOUNT', '111111111111');
    vi.stubEnv('CDK_DEFAULT_REGION', 'eu-west-1');
    const fromCli = build().stacks.platform;
    expect([fromCli.account, fromCli.region]).toEqual(['111111111111', 'eu-west-1']);
    const fromContext = build({ account: '222222222222', region: 'us-east-2' }).stacks.platform;
    expect([fromContext.account, fromContext.region]).toEqual(['222222222222', 'us-east-2']);
  });

  it('names the stacks NeurocaasPlatform, NeurocaasAnalysis-<analysis> and NeurocaasUsers', () => {
    const { app } = build();
    expect(app.node.children.map((child) => child.node.id)).toEqual([
      STACK_NAMES.platform,
      STACK_NAMES.analysis('alpha'),
      STACK_NAMES.analysis('beta'),
      STACK_NAMES.users,
    ]);
  });

  it('sets the protocols\' log level from the context and refuses unknown levels', () => {
    const synth = synthesize({ context: { logLevel: 'debug' } });
    const { properties } = resourceOf(synth.platform, 'AWS::Lambda::Function', 'ProtocolsMonitorFunction');
    expect((properties['Environment'] as { Variables: Record<string, unknown> }).Variables['POWERTOOLS_LOG_LEVEL']).toBe('DEBUG');
    expect(failure(() => build({ logLevel: 'loud' }))).toBeInstanceOf(UsageError);
  });

  it('refuses an existing VPC without subnets', () => {
    const error = failure(() => build({ vpcId: 'vpc-0123abcd' }));
    expect(error).toBeInstanceOf(UsageError);
    expect(error.message).toContain('subnetIds=subnet-a,subnet-b');
  });

  it('reads blueprints and users from the folders named by the context', () => {
    const app = createNeurocaasApp({
      context: { 'ami:beta': BETA_AMI, 'aws:cdk:bundling-stacks': [], blueprintsDir, usersDir: join(FIXTURES, 'users') },
    });
    const stacks = buildNeurocaasApp(app, { nagChecks: false });
    expect(stacks.analyses.map((stack) => stack.analysis)).toEqual(['alpha', 'beta']);
    expect([...stacks.users.users.keys()]).toEqual(['ada', 'bob', 'cy']);
  });
});
