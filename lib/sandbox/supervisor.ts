/**
 * The sandbox's background process (started by `neurocaas sandbox up`, stopped by `down`): it
 * runs the emulator, creates the deployment from the synthesized templates, gives the sample
 * users access keys, turns on the emulator's IAM checks, and runs the dispatcher and the
 * emulated instances until SIGTERM. Its state goes to `<dir>/state.json` (state.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2';
import {
  AttachUserPolicyCommand,
  CreateAccessKeyCommand,
  CreateUserCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListAttachedRolePoliciesCommand,
  ListRolePoliciesCommand,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { loadBlueprints, STACK_NAMES } from '../infra/app.js';
import { runnerScriptPath } from '../infra/package-paths.js';
import type { DriverObserver } from '../../protocols/driver.js';
import { createAwsPlatform, type AwsPlatform } from '../../protocols/aws/platform.js';
import { readAwsSettings } from '../../protocols/aws/settings.js';
import { installInstanceTools } from './aws-cli.js';
import { claimSandboxDir, SUPERVISOR_CLAIMED_EXIT_CODE } from './claim.js';
import { Dispatcher } from './dispatcher.js';
import { enableIamAuthentication, ensureEmulatorInstalled, motoRoot, startEmulator, type EmulatorProcess } from './emulator.js';
import { EmulatedInstances, type AccessKey } from './instances.js';
import { SANDBOX_ID_VARIABLE } from './processes.js';
import { provisionStacks, type Deployment, type FunctionDefinition } from './provision.js';
import { sandboxPaths, writeState, type SandboxState, type SandboxUser } from './state.js';
import { synthesizeTemplates } from './templates.js';

export const SANDBOX_REGION = 'us-east-1';
/** The profile holding the platform's (administrator's) key in the credentials file. */
export const ADMIN_PROFILE = 'sandbox-admin';
const ADMIN_USER = 'neurocaas-sandbox-admin';

export interface SupervisorOptions {
  dir: string;
  blueprintsDir: string;
  usersDir: string;
  sandboxId: string;
  /** Emulated boot time of an instance, in ms (until its agent is online). Default 2000. */
  bootDelayMs?: number;
  /** Dispatcher poll interval, in ms. Default 300. */
  pollMs?: number;
}

/** Runs until SIGTERM/SIGINT (or the emulator dies); resolves with the process exit code. */
export async function runSupervisor(options: SupervisorOptions): Promise<number> {
  const paths = sandboxPaths(options.dir);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  // Nothing of the folder is touched before it is ours: a second `up` at once finds it held.
  const claim = await claimSandboxDir(options.dir, { pid: process.pid, sandboxId: options.sandboxId });
  if (!claim) {
    log(`another supervisor holds ${options.dir}; supervisor ${process.pid} ends without starting a sandbox`);
    return SUPERVISOR_CLAIMED_EXIT_CODE;
  }
  const state: SandboxState = {
    schemaVersion: 1,
    sandboxId: options.sandboxId,
    phase: 'starting',
    supervisorPid: process.pid,
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  };
  writeFileSync(paths.pidFile, `${process.pid}\n`);
  writeState(options.dir, state);

  let emulator: EmulatorProcess | undefined;
  let instances: EmulatedInstances | undefined;
  let dispatcher: Dispatcher | undefined;
  let stopRequested = false;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolveStop) => (wake = resolveStop));
  const onSignal = (signal: string) => {
    log(`${signal}: stopping the sandbox`);
    stopRequested = true;
    wake();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const shutdown = async () => {
    await dispatcher?.stop();
    await instances?.stopAll();
    await emulator?.stop();
  };

  try {
    const root = motoRoot();
    await ensureEmulatorInstalled(root, { awsCli: true, onProgress: log });
    emulator = await startEmulator({ root, env: { [SANDBOX_ID_VARIABLE]: options.sandboxId } });
    log(`emulator listening on ${emulator.endpoint} (pid ${emulator.pid}, ${emulator.startupMs} ms)`);
    void emulator.exited.then((how) => {
      if (stopRequested) return;
      log(`the emulator ${how}; stopping the sandbox`);
      state.error = `the emulator ${how}`;
      stopRequested = true;
      wake();
    });
    const endpoint = emulator.endpoint;

    // Before IAM checks are on, any key is accepted: create the platform's own identity first.
    const bootstrapIam = new IAMClient(clientConfig(endpoint, { accessKeyId: 'bootstrap', secretAccessKey: 'bootstrap' }));
    await bootstrapIam.send(new CreateUserCommand({ UserName: ADMIN_USER, Path: '/neurocaas-sandbox/' }));
    await bootstrapIam.send(
      new PutUserPolicyCommand({
        UserName: ADMIN_USER,
        PolicyName: 'platform-and-deployer',
        // The deployer (CloudFormation) and the protocols' Lambda roles together, in one identity.
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
      }),
    );
    const admin = await accessKey(bootstrapIam, ADMIN_USER);
    const clients = adminClients(endpoint, admin);

    const amiId = (await clients.ec2.send(new DescribeImagesCommand({}))).Images?.find((image) => image.ImageId)?.ImageId;
    if (!amiId) throw new Error('the emulator offers no machine image (DescribeImages is empty)');
    const blueprints = loadBlueprints(options.blueprintsDir);
    const started = Date.now();
    const templates = synthesizeTemplates({
      blueprintsDir: options.blueprintsDir,
      usersDir: options.usersDir,
      outdir: paths.cdkOut,
      amiId,
      analyses: blueprints.map(({ blueprint }) => blueprint.name),
    });
    log(`synthesized ${templates.length} stacks in ${Date.now() - started} ms`);
    const deployment = await provisionStacks(templates, { ...clients, dynamo: clients.dynamoRaw }, SANDBOX_REGION);
    log(`created ${deployment.created.length} resources; ${deployment.skipped.length} not emulated`);
    for (const skipped of deployment.skipped) log(`  not created: ${skipped.stackName}/${skipped.logicalId} (${skipped.type}): ${skipped.reason}`);

    const analyses: Record<string, string> = {};
    const machineKeys = new Map<string, AccessKey>();
    for (const { blueprint } of blueprints) {
      const stackName = STACK_NAMES.analysis(blueprint.name);
      const bucket = deployment.outputs[stackName]?.['UploadBucketName'];
      if (bucket) analyses[blueprint.name] = bucket;
      machineKeys.set(blueprint.name, await machineIdentity(clients.iam, deployment, stackName, blueprint.name));
    }

    const users: SandboxUser[] = [];
    const profiles: { profile: string; key: AccessKey }[] = [{ profile: ADMIN_PROFILE, key: admin }];
    for (const [username, user] of Object.entries(deployment.users).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const group = (user.groups[0] ?? '').replace(/^neurocaas-/, '');
      users.push({ username, group, profile: username });
      profiles.push({ profile: username, key: await accessKey(clients.iam, username) });
    }
    writeCredentials(paths.credentialsFile, paths.configFile, profiles);

    await enableIamAuthentication(endpoint);
    log('IAM checks on: every request needs an emulator access key and an allowing policy');

    const workflowDirs = new Map(
      blueprints.map(({ blueprint, path }) => [blueprint.name, join(path, '..', blueprint.environment.local?.dir ?? '.')]),
    );
    installInstanceTools(paths.binDir, root);
    const runnerScript = readFileSync(runnerScriptPath(), 'utf8');
    const platforms = new Map<string, AwsPlatform>();
    instances = new EmulatedInstances({
      ec2: clients.ec2,
      instancesDir: paths.instancesDir,
      binDir: paths.binDir,
      endpoint,
      region: SANDBOX_REGION,
      runnerScript,
      machineKeyOf: (analysis) => {
        const key = machineKeys.get(analysis);
        if (!key) throw new Error(`no machine identity for analysis ${analysis}`);
        return key;
      },
      workflowDirOf: (analysis) => workflowDirs.get(analysis) ?? options.blueprintsDir,
      markerEnv: { [SANDBOX_ID_VARIABLE]: options.sandboxId },
      ...(options.bootDelayMs === undefined ? {} : { bootDelayMs: options.bootDelayMs }),
      onCommandFinished: (commandId, instanceId, status) => void dispatcher?.commandFinished(commandId, instanceId, status),
      log,
    });
    const runner = instances;
    const observer = observerFor(log);
    const platformOf = (fn: FunctionDefinition): AwsPlatform => {
      let platform = platforms.get(fn.name);
      if (!platform) {
        const awsClients = { s3: clients.s3, dynamo: clients.dynamo, ec2: clients.ec2, ssm: clients.ssm, sqs: clients.sqs, sns: clients.sns };
        platform = createAwsPlatform(awsClients, readAwsSettings(fn.environment), runnerScript, observer, { runner });
        platforms.set(fn.name, platform);
      }
      return platform;
    };
    dispatcher = new Dispatcher({
      s3: clients.s3,
      sqs: clients.sqs,
      ec2: clients.ec2,
      deployment,
      platformOf,
      onInstanceGone: (instanceId) => void instances?.killInstance(instanceId),
      ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
      log,
    });
    dispatcher.start();

    const created: Record<string, number> = {};
    for (const resource of deployment.created) created[resource.type] = (created[resource.type] ?? 0) + 1;
    const tableName = deployment.functions.find((fn) => fn.environment['NCAP_TABLE_NAME'])?.environment['NCAP_TABLE_NAME'];
    Object.assign(state, {
      phase: 'ready',
      endpoint,
      emulatorPid: emulator.pid,
      region: SANDBOX_REGION,
      credentialsFile: paths.credentialsFile,
      configFile: paths.configFile,
      users,
      analyses,
      ...(tableName ? { tableName } : {}),
      created,
      skipped: deployment.skipped.map((s) => ({ stack: s.stackName, logicalId: s.logicalId, type: s.type, reason: s.reason })),
      iamEnforced: true,
    } satisfies Partial<SandboxState>);
    writeState(options.dir, state);
    log(`ready: ${Object.keys(analyses).join(', ')}; users ${users.map((u) => `${u.username} (${u.group})`).join(', ')}`);

    // Keep state.json current for `sandbox status` until told to stop.
    while (!stopRequested) {
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 1_000))]);
      if (stopRequested) break;
      state.runningInstances = instances.runningInstances();
      state.delivered = { ...dispatcher.delivered };
      writeState(options.dir, state);
    }
    await shutdown();
    Object.assign(state, { phase: 'stopped', runningInstances: [] });
    writeState(options.dir, state);
    log('stopped');
    return state.error ? 1 : 0;
  } catch (error) {
    log(`failed: ${(error as Error).stack ?? String(error)}`);
    await shutdown().catch((stopError: Error) => log(`cleaning up after the failure failed too: ${stopError.message}`));
    Object.assign(state, { phase: 'failed', error: (error as Error).message });
    writeState(options.dir, state);
    return 1;
  } finally {
    rmSync(paths.pidFile, { force: true });
    await claim.release();
  }
}

function clientConfig(endpoint: string, key: AccessKey) {
  return { endpoint, region: SANDBOX_REGION, credentials: key, maxAttempts: 3 };
}

/**
 * Root volume of the sandbox's machine image, in GiB: what an Amazon Linux image has on AWS.
 * moto describes every image with a 15 GiB root snapshot (and ignores RegisterImage's mappings),
 * which would refuse every blueprint asking for less (Ec2Machines checks the image's root device).
 */
export const SANDBOX_IMAGE_ROOT_GIB = 8;

/** DescribeImages as the sandbox's image would answer it: the root device's snapshot is SANDBOX_IMAGE_ROOT_GIB. */
function withSandboxImageRoot(ec2: EC2Client): EC2Client {
  ec2.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      if (context.commandName !== 'DescribeImagesCommand') return result;
      const output = result.output as { Images?: { RootDeviceName?: string; BlockDeviceMappings?: { DeviceName?: string; Ebs?: { VolumeSize?: number } }[] }[] };
      for (const image of output.Images ?? []) {
        for (const mapping of image.BlockDeviceMappings ?? []) if (mapping.DeviceName === image.RootDeviceName && mapping.Ebs) mapping.Ebs.VolumeSize = SANDBOX_IMAGE_ROOT_GIB;
      }
      return result;
    },
    { step: 'initialize', name: 'neurocaasSandboxImageRoot' },
  );
  return ec2;
}

function adminClients(endpoint: string, key: AccessKey) {
  const config = clientConfig(endpoint, key);
  const dynamoRaw = new DynamoDBClient(config);
  return {
    s3: new S3Client({ ...config, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
    dynamoRaw,
    dynamo: DynamoDBDocumentClient.from(dynamoRaw, { marshallOptions: { removeUndefinedValues: true } }),
    sqs: new SQSClient(config),
    sns: new SNSClient(config),
    ssm: new SSMClient(config),
    iam: new IAMClient(config),
    ec2: withSandboxImageRoot(new EC2Client(config)),
  };
}

async function accessKey(iam: IAMClient, userName: string): Promise<AccessKey> {
  const created = await iam.send(new CreateAccessKeyCommand({ UserName: userName }));
  const key = created.AccessKey;
  if (!key?.AccessKeyId || !key.SecretAccessKey) throw new Error(`the emulator created no access key for ${userName}`);
  return { accessKeyId: key.AccessKeyId, secretAccessKey: key.SecretAccessKey };
}

/**
 * An instance's credentials: moto has no instance metadata service to hand out the instance
 * profile's role, so each analysis gets an IAM user holding exactly its machine role's policies,
 * and its instances use that user's key. The runner's AWS CLI is thereby held to the role.
 */
async function machineIdentity(iam: IAMClient, deployment: Deployment, stackName: string, analysis: string): Promise<AccessKey> {
  const role = deployment.created.find((c) => c.stackName === stackName && c.type === 'AWS::IAM::Role' && c.logicalId.startsWith('MachineRole'));
  if (!role) throw new Error(`stack ${stackName} has no MachineRole; cannot give ${analysis}'s instances credentials`);
  const userName = `neurocaas-sandbox-machine-${analysis}`.slice(0, 64);
  await iam.send(new CreateUserCommand({ UserName: userName, Path: '/neurocaas-sandbox/' }));
  for (const policyName of (await iam.send(new ListRolePoliciesCommand({ RoleName: role.physicalId }))).PolicyNames ?? []) {
    const policy = await iam.send(new GetRolePolicyCommand({ RoleName: role.physicalId, PolicyName: policyName }));
    const document = decodeURIComponent(policy.PolicyDocument ?? '{}');
    await iam.send(new PutUserPolicyCommand({ UserName: userName, PolicyName: policyName, PolicyDocument: document }));
  }
  for (const attached of (await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: role.physicalId }))).AttachedPolicies ?? []) {
    if (attached.PolicyArn) await iam.send(new AttachUserPolicyCommand({ UserName: userName, PolicyArn: attached.PolicyArn }));
  }
  return accessKey(iam, userName);
}

function writeCredentials(credentialsFile: string, configFile: string, profiles: readonly { profile: string; key: AccessKey }[]): void {
  const credentials = profiles.map(({ profile, key }) => `[${profile}]\naws_access_key_id = ${key.accessKeyId}\naws_secret_access_key = ${key.secretAccessKey}\n`);
  writeFileSync(credentialsFile, `${credentials.join('\n')}`, { mode: 0o600 });
  const config = profiles.map(({ profile }) => `[${profile === 'default' ? 'default' : `profile ${profile}`}]\nregion = ${SANDBOX_REGION}\n`);
  writeFileSync(configFile, `${config.join('\n')}`, { mode: 0o600 });
}

function observerFor(log: (line: string) => void): DriverObserver {
  return {
    certificateLines: (jobId, lines) => {
      for (const line of lines) log(`[${jobId}] ${line}`);
    },
    effectFailed: (jobId, effect, error) => log(`[${jobId}] ${effect.type} failed; it stays in the outbox: ${(error as Error).message}`),
    backgroundError: (jobId, error) => log(`[${jobId}] background error: ${(error as Error).message}`),
  };
}

/** A fresh sandbox id (the process marker). */
export function newSandboxId(): string {
  return randomUUID();
}

/** Creates the sandbox folder. */
export function prepareSandboxDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}
