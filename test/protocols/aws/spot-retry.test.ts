import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IAMClient } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SSMClient } from '@aws-sdk/client-ssm';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../../../lib/aws/dynamo-ledger.js';
import { machineCostUsd } from '../../../lib/core/cost.js';
import { jobKeys } from '../../../lib/core/keys.js';
import { machineHourlyUsdOf } from '../../../lib/core/plan.js';
import { createAwsPlatform, type AwsPlatform } from '../../../protocols/aws/platform.js';
import { onCommandStatusChange, onInstanceStateChange, onSpotInterruption, onSubmissionUploaded } from '../../../protocols/aws/protocols.js';
import { fakeAwsCliDir, LocalRunnerStandIn } from '../../support/aws-runner-stand-in.js';
import { createBucket, createPlatformOnMoto, type MotoServer, registerAnalysis, startMoto } from '../../support/moto.js';

/**
 * Issue 8: a spot interruption on a spot-then-on-demand analysis, through the AWS adapters
 * against the emulator. moto 5.1 honours a spot RunInstances (the instance's lifecycle is
 * "spot") but never interrupts one, so the EventBridge warning is made here, in the shape EC2
 * sends, and handed to the protocol function the monitor Lambda calls with its instance id (the
 * handler module builds its platform from the Lambda environment when it loads).
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = join(repo, 'test', 'fixtures', 'blueprints', 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');
const ANALYSIS = 'test-workflow';
const SPOT_DISCOUNT = 0.6;

describe('a spot interruption on the AWS adapters', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let doc: DynamoDBDocumentClient;
  let ec2: EC2Client;
  let runner: LocalRunnerStandIn;
  let platform: AwsPlatform;
  let bucket: string;
  let table: string;
  let blueprintDir: string;

  beforeAll(async () => {
    moto = await startMoto();
    const shared = await createPlatformOnMoto(moto);
    ({ s3, doc, ec2, table } = shared);
    const { sqs, agentQueueUrl: queueUrl, admin: config } = shared;
    bucket = await createBucket(s3, 'analysis');
    // test-workflow on spot first, on demand for every retry; a 16 GiB root (moto's images have 15).
    blueprintDir = mkdtempSync(join(tmpdir(), 'ncap-aws-spot-'));
    const blueprint = JSON.parse(readFileSync(join(fixture, 'blueprint.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    writeFileSync(
      join(blueprintDir, 'blueprint.json'),
      JSON.stringify({
        ...blueprint,
        hardware: { ...blueprint['hardware'], volumeSizeGiB: 16, market: 'spot-then-on-demand' },
        limits: { ...blueprint['limits'], platformRetries: 1 },
        pricing: { ...blueprint['pricing'], spotDiscount: SPOT_DISCOUNT },
      }),
    );
    await registerAnalysis({ ec2, iam: new IAMClient(config), doc }, { table, bucket, analysis: ANALYSIS, blueprintDir });
    const alice = { username: 'alice', group: 'lab', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] };
    await doc.send(new PutCommand({ TableName: table, Item: { pk: 'USER#alice', sk: 'PROFILE', group: 'lab', profile: JSON.stringify(alice) } }));
    runner = new LocalRunnerStandIn(moto.endpoint, fakeAwsCliDir(), () => join(fixture, 'env'));
    const clients = { s3, dynamo: doc, ec2, ssm: new SSMClient({ region: 'us-east-1' }), sqs };
    platform = createAwsPlatform(clients, { tableName: table, agentQueueUrl: queueUrl, analysis: ANALYSIS, runnerScriptPath: runnerScript }, readFileSync(runnerScript, 'utf8'), {}, { runner });
  }, 15 * 60_000);

  afterAll(async () => {
    await runner?.close();
    await moto?.stop();
    if (blueprintDir) rmSync(blueprintDir, { recursive: true, force: true });
  });

  const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const text = async (key: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString() as Promise<string>;
  const ec2Instance = async (instanceId: string) => (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations?.[0]?.Instances?.[0];

  it('ends the interrupted attempt, terminates its machine and retries the dataset on demand, costing each machine at its market', async () => {
    await put('lab/inputs/a.csv', 'x,y\n1,2\n');
    await put('lab/inputs/b.csv', 'x,y\n3,4\n');
    await put('lab/configs/run.json', JSON.stringify({ mode: 'succeed', lines: 1 }));
    await put('lab/submissions/alice/spot1submit.json', JSON.stringify({ dataname: ['lab/inputs/a.csv', 'lab/inputs/b.csv'], configname: 'lab/configs/run.json' }));

    const { jobId } = await onSubmissionUploaded(platform, ANALYSIS, bucket, 'lab/submissions/alice/spot1submit.json');
    const started = (await platform.jobs.get(jobId))?.state;
    const [a, b] = started?.datasets ?? [];
    const spotId = a?.instanceId as string;
    expect(a?.market).toBe('spot');
    // The spot request as EC2 (moto) recorded it.
    expect((await ec2Instance(spotId))?.InstanceLifecycle).toBe('spot');

    // EC2's two-minute warning, as EventBridge delivers it to the monitor.
    const warning = {
      'detail-type': 'EC2 Spot Instance Interruption Warning',
      source: 'aws.ec2',
      detail: { 'instance-id': spotId, 'instance-action': 'terminate' },
    };
    const warned = await onSpotInterruption(platform, warning.detail['instance-id']);
    expect(warned?.datasets[0]?.phase).toBe('PENDING');
    expect((await ec2Instance(spotId))?.State?.Name).toMatch(/shutting-down|terminated/);
    await onInstanceStateChange(platform, spotId, 'terminated');

    // b finishes well inside its share, which leaves room for a's second machine.
    const bId = b?.instanceId as string;
    expect(await runner.finished.get(`cmd-${bId}`)).toBe(0);
    await onCommandStatusChange(platform, `cmd-${bId}`, bId, 'Success');
    const retried = await onInstanceStateChange(platform, bId, 'terminated');
    const second = retried?.datasets[0];
    expect(second).toMatchObject({ attempt: 2, clientToken: `${a?.clientToken}-a2`, market: 'on-demand' });
    expect(second?.earlierAttempts?.[0]).toMatchObject({ attempt: 1, instanceId: spotId, market: 'spot', failure: { kind: 'platform' } });
    expect(second?.earlierAttempts?.[0]?.failure.detail).toMatch(/spot interruption/);
    const onDemandId = second?.instanceId as string;
    expect(onDemandId).not.toBe(spotId);
    expect((await ec2Instance(onDemandId))?.InstanceLifecycle).toBeUndefined();

    expect(await runner.finished.get(`cmd-${onDemandId}`)).toBe(0);
    await onCommandStatusChange(platform, `cmd-${onDemandId}`, onDemandId, 'Success');
    const done = await onInstanceStateChange(platform, onDemandId, 'terminated');
    expect(done?.phase).toBe('DONE');

    // Cost: the spot machine at the declared discount, the on-demand one at the full price.
    const state = done!;
    const plan = state.plan!;
    const ds = state.datasets[0]!;
    const first = ds.earlierAttempts![0]!;
    expect(first.costUsd).toBeCloseTo(machineCostUsd(machineHourlyUsdOf(plan, first.instanceType, 'spot'), first.launchedAtMs!, first.terminatedAtMs!), 9);
    expect(machineHourlyUsdOf(plan, first.instanceType, 'spot')).toBeLessThan(machineHourlyUsdOf(plan, ds.instanceType, 'on-demand'));
    const keys = jobKeys('lab', ANALYSIS, jobId);
    const status = JSON.parse(await text(keys.datasetStatus('a.csv')));
    expect(status).toMatchObject({ status: 'SUCCEEDED', attempt: 2, market: 'on-demand', earlierAttempts: [{ attempt: 1, market: 'spot', instanceId: spotId }] });
    const provenance = JSON.parse(await text(keys.provenance));
    expect(JSON.stringify(provenance)).toContain('"market":"spot"');
    const [entry] = (await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7))).filter((e) => e.jobId === jobId);
    expect(entry?.spentUsd).toBe(state.spentUsd);
    expect(entry?.spentUsd).toBeLessThanOrEqual(entry?.reservedUsd as number);
    expect(await text(keys.certificate)).toMatch(/spot interruption[\s\S]*attempt 2/);
  });
});
