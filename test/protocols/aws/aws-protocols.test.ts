import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IAMClient } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeAwsCliDir, LocalRunnerStandIn } from '../../support/aws-runner-stand-in.js';
import { DynamoLedger } from '../../../lib/aws/dynamo-ledger.js';
import { parseScheduledAction } from '../../../lib/aws/sqs-scheduler.js';
import { jobKeys } from '../../../lib/core/keys.js';
import { createAwsPlatform, type AwsPlatform } from '../../../protocols/aws/platform.js';
import { onCommandStatusChange, onInstanceStateChange, onScheduledAction, onSubmissionUploaded, reap } from '../../../protocols/aws/protocols.js';
import { createBucket, createPlatformOnMoto, type MotoServer, registerAnalysis, startMoto } from '../../support/moto.js';

/**
 * The whole job-manager protocol on the AWS adapters against the emulator: S3, DynamoDB, EC2 and
 * SQS are real HTTP to moto. SSM is the one thing moto cannot run, so the command is stood in
 * for by running ncap-runner.sh here, with its S3 store and a stand-in `aws` CLI.
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = join(repo, 'test', 'fixtures', 'blueprints', 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');


describe('the job-manager protocol on the AWS adapters', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let doc: DynamoDBDocumentClient;
  let sqs: SQSClient;
  let ec2: EC2Client;
  let platform: AwsPlatform;
  let runner: LocalRunnerStandIn;
  let bucket: string;
  let queueUrl: string;
  let table: string;

  beforeAll(async () => {
    moto = await startMoto();
    const shared = await createPlatformOnMoto(moto);
    ({ s3, doc, sqs, ec2, table, agentQueueUrl: queueUrl } = shared);
    const config = shared.admin;
    bucket = await createBucket(s3, 'analysis');
    await registerAnalysis({ ec2, iam: new IAMClient(config), doc }, { table, bucket, analysis: 'test-workflow', blueprintDir: fixture });
    const alice = { username: 'alice', group: 'lab', email: 'alice@example.org', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] };
    await doc.send(new PutCommand({ TableName: table, Item: { pk: 'USER#alice', sk: 'PROFILE', group: 'lab', profile: JSON.stringify(alice) } }));

    runner = new LocalRunnerStandIn(moto.endpoint, fakeAwsCliDir(), () => join(fixture, 'env'));
    const clients = { s3, dynamo: doc, ec2, ssm: new SSMClient(config), sqs };
    platform = createAwsPlatform(clients, { tableName: table, agentQueueUrl: queueUrl, analysis: 'test-workflow', runnerScriptPath: runnerScript }, readFileSync(runnerScript, 'utf8'), {}, { runner });
  }, 15 * 60_000);

  afterAll(async () => {
    await runner?.close();
    await moto?.stop();
  });

  const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const text = async (key: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString() as Promise<string>;

  it('turns an uploaded submit.json into a launch, a command, results, a settlement and a termination', async () => {
    await put('lab/inputs/a.csv', 'x,y\n1,2\n');
    await put('lab/configs/run.json', JSON.stringify({ mode: 'succeed', lines: 3 }));
    await put('lab/submissions/run1submit.json', JSON.stringify({ dataname: ['lab/inputs/a.csv'], configname: 'lab/configs/run.json', timestamp: 'now' }));

    // S3 notification -> submit protocol: reserve, launch on EC2 (moto), schedule the agent check on SQS.
    const { jobId, duplicate } = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/run1submit.json');
    expect(duplicate).toBe(false);
    const launched = (await platform.jobs.get(jobId))?.state;
    // The runner stand-in says the agent is online at once, so the command went out right away.
    expect(launched?.datasets[0]?.phase).toBe('RUNNING');
    const instanceId = launched?.datasets[0]?.instanceId as string;
    const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations?.[0]?.Instances?.[0];
    const tags = Object.fromEntries((instance?.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({ 'neurocaas:job': jobId, 'neurocaas:analysis': 'test-workflow', 'neurocaas:group': 'lab', 'neurocaas:dataset': 'a.csv' });

    // The command runs (here, locally), then SSM's status change reaches the monitor protocol.
    expect(await runner.finished.get(`cmd-${instanceId}`)).toBe(0);
    const finished = await onCommandStatusChange(platform, `cmd-${instanceId}`, instanceId, 'Success');
    expect(finished?.datasets[0]?.phase).toBe('SUCCEEDED');
    expect((await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name).toMatch(/shutting-down|terminated/);

    // EC2's state change confirms the termination; the job settles and ends.
    const done = await onInstanceStateChange(platform, instanceId, 'terminated');
    expect(done?.phase).toBe('DONE');

    const keys = jobKeys('lab', 'test-workflow', jobId);
    const status = JSON.parse(await text(keys.datasetStatus('a.csv')));
    expect(status).toMatchObject({ status: 'SUCCEEDED', exitCode: 0, instanceId });
    expect(await text(keys.datasetLog('a.csv'))).toContain('line 3 of 3');
    expect(JSON.parse(await text(`${keys.datasetResultsPrefix('a.csv')}result.json`))).toMatchObject({ dataset: 'a.csv', jobId });
    expect(await text(keys.certificate)).toMatch(/accepted[\s\S]*budget reserved[\s\S]*SUCCEEDED[\s\S]*terminated[\s\S]*job finished/);
    expect(JSON.parse(await text(keys.provenance))).toMatchObject({ outcome: 'SUCCEEDED', environment: { imageId: instance?.ImageId } });
    expect(await text(keys.end)).toContain('SUCCEEDED');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keys.prefix }));
    expect(listed.KeyCount).toBeGreaterThanOrEqual(7);

    // The ledger's reservation was replaced by the machine's billed time.
    const [entry] = await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7));
    expect(entry).toMatchObject({ jobId, spentUsd: done?.spentUsd });
    expect(entry?.spentUsd).toBeGreaterThan(0);
    expect(entry?.spentUsd).toBeLessThan(entry?.reservedUsd as number);
  });

  it('runs a folder dataset on S3: the runner fetches every object under it and results come back', async () => {
    await put('lab/inputs/session1/meta.json', '{}');
    await put('lab/inputs/session1/frames/f1.tif', 'one');
    await put('lab/configs/run.json', JSON.stringify({ mode: 'succeed', lines: 1 }));
    await put('lab/submissions/folder1submit.json', JSON.stringify({ dataname: 'lab/inputs/session1/', configname: 'lab/configs/run.json' }));
    const { jobId } = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/folder1submit.json');
    const ds = (await platform.jobs.get(jobId))?.state.datasets[0];
    expect(ds?.name).toBe('session1%2F');
    const instanceId = ds?.instanceId as string;
    expect(await runner.finished.get(`cmd-${instanceId}`)).toBe(0);
    expect((await onCommandStatusChange(platform, `cmd-${instanceId}`, instanceId, 'Success'))?.datasets[0]?.phase).toBe('SUCCEEDED');
    await onInstanceStateChange(platform, instanceId, 'terminated');
    const result = JSON.parse(await text(`${jobKeys('lab', 'test-workflow', jobId).datasetResultsPrefix('session1%2F')}result.json`));
    expect(result).toMatchObject({ inputFiles: ['frames/f1.tif', 'meta.json'], inputBytes: 5 });
  });

  it('runs a submission event delivered twice once', async () => {
    await put('lab/submissions/run2submit.json', JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/run.json' }));
    const first = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/run2submit.json');
    const again = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/run2submit.json');
    expect(again).toEqual({ jobId: first.jobId, duplicate: true });
    const instanceId = (await platform.jobs.get(first.jobId))?.state.datasets[0]?.instanceId as string;
    await runner.finished.get(`cmd-${instanceId}`);
    await onCommandStatusChange(platform, `cmd-${instanceId}`, instanceId, 'Success');
    expect((await onInstanceStateChange(platform, instanceId, 'terminated'))?.phase).toBe('DONE');
  });

  it('polls a booting machine through the agent queue until its agent is online', async () => {
    runner.online = false;
    await put('lab/submissions/run3submit.json', JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/run.json' }));
    const { jobId } = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/run3submit.json');
    expect((await platform.jobs.get(jobId))?.state.datasets[0]?.phase).toBe('BOOTING');
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 10, MaxNumberOfMessages: 1 }));
    const action = parseScheduledAction(received.Messages?.[0]?.Body);
    expect(action).toMatchObject({ kind: 'agent-check', jobId, dataset: 'a.csv' });
    runner.online = true;
    const state = await onScheduledAction(platform, action);
    expect(state?.datasets[0]?.phase).toBe('RUNNING');
    const instanceId = state?.datasets[0]?.instanceId as string;
    await runner.finished.get(`cmd-${instanceId}`);
    await onCommandStatusChange(platform, `cmd-${instanceId}`, instanceId, 'Success');
    await onInstanceStateChange(platform, instanceId, 'terminated');
  });

  it('has the reaper terminate a machine past its deadline and time its dataset out', async () => {
    await put('lab/configs/slow.json', JSON.stringify({ mode: 'sleep', seconds: 30 }));
    runner.online = false;
    await put('lab/submissions/run4submit.json', JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/slow.json' }));
    const { jobId } = await onSubmissionUploaded(platform, 'test-workflow', bucket, 'lab/submissions/run4submit.json');
    const ds = (await platform.jobs.get(jobId))?.state.datasets[0];
    // Jump past the deadline: the reaper's tick times the dataset out and terminates the machine.
    const now = (ds?.deadlineAtMs as number) + 1;
    const late = createAwsPlatform(
      { s3, dynamo: doc, ec2, ssm: new SSMClient({ region: 'us-east-1' }), sqs },
      { tableName: table, agentQueueUrl: queueUrl, analysis: 'test-workflow', runnerScriptPath: runnerScript },
      '',
      {},
      { runner, clock: { nowMs: () => now } },
    );
    const result = await reap(late);
    expect(result.ticked).toContain(jobId);
    const state = (await late.jobs.get(jobId))?.state;
    expect(state?.datasets[0]?.phase).toBe('TIMED_OUT');
    const instanceState = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [ds?.instanceId as string] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name;
    expect(instanceState).toMatch(/shutting-down|terminated/);
    runner.online = true;
  });
});
