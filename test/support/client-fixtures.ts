/**
 * Two fixtures for the one client suite (test/lib/client/researcher-client.test.ts):
 * - local: a LocalPlatform on a temp root, in this process;
 * - aws: moto (S3, DynamoDB, EC2, SQS, SNS, IAM, STS over HTTP on 127.0.0.1) with the real AWS
 *   protocol handlers stood in for S3 notifications and EventBridge by a pump in this process,
 *   the runner run here with a stand-in `aws` CLI (moto cannot run SSM commands), and SSM's
 *   deployment parameters from aws-sdk-client-mock (moto's SSM replies do not parse in this SDK).
 * Users: alice and ann in group "lab" (ann has no email), carol in group "other".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, TagUserCommand } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateTopicCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { GetParameterCommand, GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm';
import { STSClient } from '@aws-sdk/client-sts';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { DynamoLedger } from '../../lib/aws/dynamo-ledger.js';
import { AwsClientBackend } from '../../lib/client/aws-backend.js';
import { LocalClientBackend } from '../../lib/client/local-backend.js';
import { ResearcherClient } from '../../lib/client/researcher-client.js';
import type { LedgerEntry } from '../../lib/core/cost.js';
import { CANCEL_SUFFIX } from '../../lib/core/keys.js';
import { runnerEnvironment, type RunnerSpec } from '../../lib/core/runner-spec.js';
import type { SsmCommandResult } from '../../protocols/aws/command-outcome.js';
import { createAwsPlatform, type AwsCommandRunner, type AwsPlatform } from '../../protocols/aws/platform.js';
import { onCancelUploaded, onCommandStatusChange, onInstanceStateChange, onSubmissionUploaded } from '../../protocols/aws/protocols.js';
import { LocalPlatform } from '../../protocols/local-shell.js';
import { createBucket, createPlatformOnMoto, createQueue, type MotoServer, registerAnalysis, startMoto } from './moto.js';

export type FixtureUser = 'alice' | 'ann' | 'carol';

export interface ClientFixture {
  readonly name: 'local' | 'aws';
  readonly analysis: string;
  /** A client acting as `user` (on aws: with that IAM user's own access key). */
  clientFor(user: FixtureUser): ResearcherClient;
  /** The budget ledger's entries of a user this month: the truth budget views must match. */
  ledger(user: FixtureUser): Promise<LedgerEntry[]>;
  /** Notifications published so far (aws: from an SQS queue subscribed to the topic). */
  notifications(): Promise<{ user: string; jobId: string; outcome: string; body: string }[]>;
  /** Writes an object into the analysis bucket as its owner would (for protocol-level checks). */
  putObject(key: string, body: string): Promise<void>;
  /** Machines of a job that are not terminated yet (EC2 states on aws, the registry on local). */
  liveMachines(jobId: string): Promise<string[]>;
  dir: string;
  close(): Promise<void>;
}

const repo = fileURLToPath(new URL('../../', import.meta.url));
const blueprintsDir = join(repo, 'test', 'fixtures', 'blueprints');
const fixtureDir = join(blueprintsDir, 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');

const PROFILES: Record<FixtureUser, Record<string, unknown>> = {
  alice: { username: 'alice', group: 'lab', email: 'alice@example.org', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] },
  ann: { username: 'ann', group: 'lab', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] },
  carol: { username: 'carol', group: 'other', email: 'carol@example.org', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] },
};

const month = () => new Date().toISOString().slice(0, 7);

export async function localFixture(): Promise<ClientFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-client-local-'));
  const usersDir = join(dir, 'users');
  await mkdir(usersDir);
  for (const [name, profile] of Object.entries(PROFILES)) await writeFile(join(usersDir, `${name}.json`), JSON.stringify(profile));
  const platform = new LocalPlatform({ root: join(dir, 'root'), blueprintsDir, usersDir });
  const backend = new LocalClientBackend(platform, undefined);
  return {
    name: 'local',
    analysis: 'test-workflow',
    dir,
    clientFor: (user) => new ResearcherClient(backend, { user }),
    ledger: (user) => platform.ledger.entries(user, month()),
    notifications: async () => [],
    putObject: async (key, body) => {
      await platform.objects.put('test-workflow', key, body);
    },
    liveMachines: async (jobId) => (await platform.machines.listExpired(Number.MAX_SAFE_INTEGER)).filter((m) => m.jobId === jobId && m.state !== 'terminated').map((m) => m.instanceId),
    close: async () => {
      await platform.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}


/**
 * A researcher's client on the AWS backend against moto, as `--backend aws` builds it, with the
 * deployment discovery (SSM, whose replies moto 5.1.1 cannot give the current SDK) answered by
 * aws-sdk-client-mock from `deployment` (the `/neurocaas/deployment` JSON) and `analyses`.
 */
export function awsResearcherClient(options: {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  deployment: string;
  analyses: Iterable<readonly [analysis: string, bucket: string]>;
}): ResearcherClient {
  const { endpoint, region, credentials } = options;
  const config = { endpoint, region, credentials, maxAttempts: 2 };
  const ssm = new SSMClient(config);
  mockClient(ssm)
    .on(GetParameterCommand, { Name: '/neurocaas/deployment' })
    .resolves({ Parameter: { Name: '/neurocaas/deployment', Value: options.deployment } })
    .on(GetParametersByPathCommand)
    .resolves({ Parameters: [...options.analyses].map(([analysis, bucket]) => ({ Name: `/neurocaas/analyses/${analysis}`, Value: JSON.stringify({ schemaVersion: 1, analysis, bucket, region }) })) });
  const backend = new AwsClientBackend(
    {
      s3: new S3Client({ ...config, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
      ssm,
      sts: new STSClient(config),
      iam: new IAMClient(config),
    },
    { region, pollMs: 150, receiptTimeoutMs: 20_000 },
  );
  return new ResearcherClient(backend);
}
/** Runs the runner on this machine as SSM would on the instance; killed when its instance is terminated. */
class RunnerStandIn implements AwsCommandRunner {
  readonly children = new Map<string, ChildProcess>();
  readonly results = new Map<string, Promise<number>>();
  onFinished: (commandId: string, instanceId: string) => void = () => {};
  constructor(
    private readonly bucket: string,
    private readonly endpoint: string,
    private readonly binDir: string,
    private readonly scratchRoot: string,
  ) {}
  async isAgentOnline(): Promise<boolean> {
    return true;
  }
  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const commandId = `cmd-${instanceId}`;
    if (this.children.has(commandId)) return { commandId };
    const env = runnerEnvironment(spec, {
      store: `s3://${this.bucket}`,
      workdir: join(fixtureDir, 'env'),
      scratch: mkdtempSync(join(this.scratchRoot, 'scratch-')),
      instanceId,
      instanceType: 't3.micro',
    });
    const child = spawn('bash', [runnerScript, '--machine', instanceId, '--', ...spec.command], {
      env: { PATH: `${this.binDir}:${process.env['PATH']}`, NCAP_TEST_S3_ENDPOINT: this.endpoint, NCAP_LOG_SHIP_SECONDS: '1', ...env },
      stdio: ['ignore', 'ignore', 'ignore'],
      detached: true,
    });
    this.children.set(commandId, child);
    this.results.set(
      commandId,
      new Promise((resolve) =>
        child.on('close', (code) => {
          this.children.delete(commandId);
          resolve(code ?? -1);
          this.onFinished(commandId, instanceId);
        }),
      ),
    );
    return { commandId };
  }
  async commandResult(commandId: string): Promise<SsmCommandResult> {
    const code = await this.results.get(commandId);
    return { status: code === 0 ? 'Success' : 'Failed', exitCode: code ?? null, timedOut: false };
  }
  /** The instance is gone: so is everything running on it. */
  kill(instanceId: string): void {
    const child = this.children.get(`cmd-${instanceId}`);
    if (child?.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already exited.
      }
    }
  }
}

export async function awsFixture(): Promise<ClientFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-client-aws-'));
  const moto: MotoServer = await startMoto();
  const { admin, s3, doc, sqs, ec2, table, agentQueueUrl } = await createPlatformOnMoto(moto);
  const { region } = admin;
  const iam = new IAMClient(admin);
  const sns = new SNSClient(admin);
  const bucket = await createBucket(s3, 'analysis');
  await registerAnalysis({ ec2, iam, doc }, { table, bucket, analysis: 'test-workflow', blueprintDir: fixtureDir });
  const keys = new Map<FixtureUser, { accessKeyId: string; secretAccessKey: string }>();
  for (const [name, p] of Object.entries(PROFILES) as [FixtureUser, Record<string, unknown>][]) {
    await doc.send(new PutCommand({ TableName: table, Item: { pk: `USER#${name}`, sk: 'PROFILE', group: p['group'], profile: JSON.stringify(p) } }));
    // The users stack: one IAM user per profile, tagged with its group and name (D1).
    await iam.send(new CreateUserCommand({ UserName: name }));
    await iam.send(new TagUserCommand({ UserName: name, Tags: [{ Key: 'neurocaas-group', Value: p['group'] as string }, { Key: 'neurocaas-user', Value: name }] }));
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: name }))).AccessKey;
    keys.set(name, { accessKeyId: key?.AccessKeyId as string, secretAccessKey: key?.SecretAccessKey as string });
  }
  // D7: the notifications topic, with a queue standing in for the email subscriptions.
  const topicArn = (await sns.send(new CreateTopicCommand({ Name: `notify-${Date.now()}` }))).TopicArn as string;
  const notifyQueueUrl = await createQueue(sqs, 'notify');
  const notifyQueueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: notifyQueueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.['QueueArn'] as string;
  await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: notifyQueueArn }));

  const binDir = mkdtempSync(join(tmpdir(), 'ncap-fake-aws-'));
  const cli = join(repo, 'test', 'support', 'fake-aws-cli.mjs');
  chmodSync(cli, 0o755);
  symlinkSync(cli, join(binDir, 'aws'));
  const runner = new RunnerStandIn(bucket, moto.endpoint, binDir, dir);
  const platform: AwsPlatform = createAwsPlatform(
    { s3, dynamo: doc, ec2, ssm: new SSMClient(admin), sqs, sns },
    { tableName: table, agentQueueUrl, analysis: 'test-workflow', runnerScriptPath: runnerScript, notifyTopicArn: topicArn },
    readFileSync(runnerScript, 'utf8'),
    {},
    { runner },
  );
  const pump = new ProtocolPump(platform, s3, ec2, bucket, runner);
  runner.onFinished = (commandId, instanceId) => pump.commandFinished(commandId, instanceId);
  pump.start();

  const deployment = JSON.stringify({ schemaVersion: 1, region, tableName: table, notificationsTopicArn: topicArn });
  const clientFor = (user: FixtureUser): ResearcherClient =>
    awsResearcherClient({ endpoint: moto.endpoint, region, credentials: keys.get(user) as { accessKeyId: string; secretAccessKey: string }, deployment, analyses: [['test-workflow', bucket]] });
  const seen: { user: string; jobId: string; outcome: string; body: string }[] = [];
  return {
    name: 'aws',
    analysis: 'test-workflow',
    dir,
    clientFor,
    ledger: (user) => new DynamoLedger(doc, table).entries(user, month()),
    notifications: async () => {
      for (;;) {
        const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: notifyQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
        if (!received.Messages?.length) break;
        for (const message of received.Messages) {
          // SNS -> SQS wraps the publish in an envelope carrying the message attributes.
          const envelope = JSON.parse(message.Body ?? '{}') as { Message: string; MessageAttributes: Record<string, { Value: string }> };
          seen.push({ user: envelope.MessageAttributes['user']?.Value ?? '', jobId: envelope.MessageAttributes['jobId']?.Value ?? '', outcome: envelope.MessageAttributes['outcome']?.Value ?? '', body: envelope.Message });
        }
      }
      return [...seen];
    },
    putObject: async (key, body) => {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    liveMachines: async (jobId) => {
      const result = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:neurocaas:job', Values: [jobId] }] }));
      return (result.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => i.State?.Name !== 'terminated').map((i) => i.InstanceId as string);
    },
    close: async () => {
      await pump.stop();
      for (const instanceId of [...runner.children.keys()].map((id) => id.replace(/^cmd-/, ''))) runner.kill(instanceId);
      await moto.stop();
      await rm(dir, { recursive: true, force: true });
      await rm(binDir, { recursive: true, force: true });
    },
  };
}

/**
 * Stands in for S3 notifications and EventBridge: every new object under `*\/submissions/` goes to
 * the submit protocol (cancel requests by their suffix), a finished runner to the monitor
 * protocol, a terminated instance to the instance-state protocol. One delivery each.
 */
class ProtocolPump {
  private readonly delivered = new Set<string>();
  private readonly terminated = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private roundQueued = false;
  constructor(
    private readonly platform: AwsPlatform,
    private readonly s3: S3Client,
    private readonly ec2: EC2Client,
    private readonly bucket: string,
    private readonly runner: RunnerStandIn,
  ) {}
  start(): void {
    this.timer = setInterval(() => {
      // One round at a time: on a loaded machine a round outlasts the 150 ms, and queueing one
      // per tick piled up a backlog of emulator calls that delayed every delivery behind it.
      if (this.roundQueued) return;
      this.roundQueued = true;
      this.running = this.running
        .then(() => this.round())
        .catch(reportPumpError)
        .finally(() => (this.roundQueued = false));
    }, 150);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
  commandFinished(commandId: string, instanceId: string): void {
    this.running = this.running
      .then(async () => {
        if (this.stopped) return;
        await onCommandStatusChange(this.platform, commandId, instanceId, 'Success');
      })
      .catch(reportPumpError);
  }
  private async round(): Promise<void> {
    if (this.stopped) return;
    const listed = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket }));
    for (const object of listed.Contents ?? []) {
      const key = object.Key as string;
      const id = `${key}#${object.ETag}`;
      if (!key.includes('/submissions/') || this.delivered.has(id)) continue;
      if (!key.endsWith('submit.json') && !key.endsWith(CANCEL_SUFFIX)) continue;
      this.delivered.add(id);
      if (key.endsWith(CANCEL_SUFFIX)) await onCancelUploaded(this.platform, this.bucket, key);
      else await onSubmissionUploaded(this.platform, 'test-workflow', this.bucket, key);
    }
    const instances = await this.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['shutting-down', 'terminated'] }] }));
    for (const instance of (instances.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const instanceId = instance.InstanceId as string;
      if (this.terminated.has(instanceId)) continue;
      this.terminated.add(instanceId);
      this.runner.kill(instanceId);
      await onInstanceStateChange(this.platform, instanceId, 'terminated');
    }
  }
}

function reportPumpError(error: unknown): void {
  // A test's assertions show the consequence; this says the cause.
  process.stderr.write(`protocol pump: ${String(error)}\n`);
}
