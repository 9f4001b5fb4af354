import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IAMClient } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../../../lib/aws/dynamo-ledger.js';
import { jobKeys, receiptKey } from '../../../lib/core/keys.js';
import type { Clock } from '../../../lib/ports.js';
import { createAwsPlatform, type AwsClients, type AwsPlatform } from '../../../protocols/aws/platform.js';
import { GIVE_UP_SUBMISSION_MS, onFailedSubmissionsMessage, onInstanceStateChange, onSubmissionUploaded, reap } from '../../../protocols/aws/protocols.js';
import { fakeAwsCliDir, LocalRunnerStandIn } from '../../support/aws-runner-stand-in.js';
import { createBucket, createPlatformOnMoto, type MotoServer, registerAnalysis, s3ClientFor, startMoto } from '../../support/moto.js';

/**
 * Failures nobody caught still reach the researcher (issue 11), on the AWS adapters against
 * the emulator: a submission the submit function kept failing on comes back through the
 * failed-submissions queue, and a job whose protocol invocation died is finished by the reaper.
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = join(repo, 'test', 'fixtures', 'blueprints', 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');
const ANALYSIS = 'test-workflow';

/** What Lambda's on-failure destination puts on the queue after the last retry of an S3 event. */
function destinationRecord(bucket: string, key: string, errorMessage: string): string {
  return JSON.stringify({
    version: '1.0',
    timestamp: '2026-12-01T22:00:00.000Z',
    requestContext: { requestId: 'r-1', functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:submit:$LATEST', condition: 'RetriesExhausted', approximateInvokeCount: 3 },
    requestPayload: {
      Records: [{ eventSource: 'aws:s3', eventName: 'ObjectCreated:Put', s3: { bucket: { name: bucket }, object: { key: encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+'), size: 120 } } }],
    },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload: { errorType: 'ResourceNotFoundException', errorMessage, trace: [] },
  });
}

describe('failures of the protocol itself, on the AWS adapters', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let doc: DynamoDBDocumentClient;
  let sqs: SQSClient;
  let ec2: EC2Client;
  let runner: LocalRunnerStandIn;
  let bucket: string;
  let table: string;
  let queueUrl: string;
  let blueprintDir: string;

  beforeAll(async () => {
    moto = await startMoto();
    const shared = await createPlatformOnMoto(moto);
    ({ s3, doc, sqs, ec2, table, agentQueueUrl: queueUrl } = shared);
    const config = shared.admin;
    bucket = await createBucket(s3, 'analysis');
    // test-workflow with a 16 GiB root: EC2 (and moto, whose images have 15 GiB roots) refuses a smaller one.
    blueprintDir = mkdtempSync(join(tmpdir(), 'ncap-aws-failures-'));
    const blueprint = JSON.parse(readFileSync(join(fixture, 'blueprint.json'), 'utf8')) as { hardware: Record<string, unknown> };
    writeFileSync(join(blueprintDir, 'blueprint.json'), JSON.stringify({ ...blueprint, hardware: { ...blueprint.hardware, volumeSizeGiB: 16 } }));
    await registerAnalysis({ ec2, iam: new IAMClient(config), doc }, { table, bucket, analysis: ANALYSIS, blueprintDir });
    const alice = { username: 'alice', group: 'lab', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] };
    await doc.send(new PutCommand({ TableName: table, Item: { pk: 'USER#alice', sk: 'PROFILE', group: 'lab', profile: JSON.stringify(alice) } }));
    runner = new LocalRunnerStandIn(moto.endpoint, fakeAwsCliDir(), () => join(fixture, 'env'));
    await put('lab/inputs/a.csv', 'x,y\n1,2\n');
    await put('lab/configs/run.json', JSON.stringify({ mode: 'succeed' }));
  }, 15 * 60_000);

  afterAll(async () => {
    await runner?.close();
    await moto?.stop();
    if (blueprintDir) rmSync(blueprintDir, { recursive: true, force: true });
  });

  function platformWith(options: { tableName?: string; clock?: Clock; s3?: S3Client } = {}): AwsPlatform {
    const clients: AwsClients = { s3: options.s3 ?? s3, dynamo: doc, ec2, ssm: new SSMClient({ region: 'us-east-1' }), sqs };
    return createAwsPlatform(
      clients,
      { tableName: options.tableName ?? table, agentQueueUrl: queueUrl, analysis: ANALYSIS, runnerScriptPath: runnerScript },
      readFileSync(runnerScript, 'utf8'),
      {},
      { runner, ...(options.clock ? { clock: options.clock } : {}) },
    );
  }

  async function put(key: string, body: string): Promise<void> {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }
  const text = async (key: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString() as Promise<string>;

  it('gives a submission the submit function kept failing on a certificate, end.txt and a receipt with the reason', async () => {
    const key = 'lab/submissions/alice/big run-submit.json';
    await put(key, JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/run.json' }));
    // Every attempt fails (here: the table cannot be reached), as Lambda's three tries would.
    const broken = platformWith({ tableName: 'no-such-table' });
    for (let attempt = 0; attempt < 3; attempt += 1) await expect(onSubmissionUploaded(broken, ANALYSIS, bucket, key)).rejects.toThrow();

    // The on-failure record reaches the same function through the failed-submissions queue.
    const outcome = await onFailedSubmissionsMessage(platformWith(), ANALYSIS, destinationRecord(bucket, key, 'Requested resource not found'));

    expect(outcome).toMatchObject({ unrecognised: false, ignored: [], certified: [{ bucket, key, rejected: true }] });
    const jobId = outcome.certified[0]?.jobId as string;
    const keys = jobKeys('lab', ANALYSIS, jobId);
    expect(await text(keys.certificate)).toMatch(/REJECTED, nothing was launched:\n.*could not process this submission after several attempts: Requested resource not found\. Nothing was launched and no budget is held/);
    expect(await text(keys.end)).toMatch(/REJECTED/);
    const receipt = JSON.parse(await text(receiptKey('lab', 'alice', 'big run-submit.json')));
    expect(receipt).toMatchObject({ jobId, outcome: 'rejected', reasons: [expect.stringContaining('could not process this submission after several attempts')] });
    expect(await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7))).toEqual([]);

    // The queue may deliver the record again: still one job, one rejection.
    const again = await onFailedSubmissionsMessage(platformWith(), ANALYSIS, destinationRecord(bucket, key, 'Requested resource not found'));
    expect(again.certified).toEqual([{ bucket, key, jobId, rejected: false }]);
  });

  it('ignores cancel requests and messages that are no destination record, without failing the batch', async () => {
    expect(await onFailedSubmissionsMessage(platformWith(), ANALYSIS, 'not json')).toEqual({ unrecognised: true, certified: [], ignored: [] });
    const cancel = await onFailedSubmissionsMessage(platformWith(), ANALYSIS, destinationRecord(bucket, 'lab/submissions/alice/J1.cancel.json', 'boom'));
    expect(cancel).toEqual({ unrecognised: false, certified: [], ignored: ['lab/submissions/alice/J1.cancel.json'] });
  });

  it('has the reaper reject, with the reason, a submission whose submit invocation died after claiming it', async () => {
    const key = 'lab/submissions/alice/crashsubmit.json';
    await put(key, JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/run.json' }));
    // The function dies while reading the submission: claimed, never evaluated.
    const dying = s3ClientFor(moto);
    dying.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetObjectCommand') throw new Error('Task timed out after 300.00 seconds');
        return next(args);
      },
      { step: 'initialize', name: 'dieOnGet' },
    );
    const createdAtMs = Date.now();
    await expect(onSubmissionUploaded(platformWith({ s3: dying }), ANALYSIS, bucket, key)).rejects.toThrow(/timed out/);
    const stuck = (await platformWith().jobs.list()).find((job) => job.phase === 'NEW');
    expect(stuck).toBeDefined();

    // Half an hour later the reaper stops retrying and tells the researcher.
    const result = await reap(platformWith({ clock: { nowMs: () => createdAtMs + GIVE_UP_SUBMISSION_MS + 60_000 } }));

    expect(result.gaveUp).toEqual([stuck?.jobId]);
    const keys = jobKeys('lab', ANALYSIS, stuck?.jobId as string);
    expect(await text(keys.certificate)).toMatch(/the platform failed to evaluate this submission for 30 min\. Nothing was launched/);
    expect(await text(keys.end)).toMatch(/REJECTED/);
    expect(JSON.parse(await text(receiptKey('lab', 'alice', 'crashsubmit.json')))).toMatchObject({ jobId: stuck?.jobId, outcome: 'rejected' });
  });

  it('has the reaper finish, with the reason, a job whose command completion the monitor never handled', async () => {
    const key = 'lab/submissions/alice/lostsubmit.json';
    await put(key, JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/run.json' }));
    const { jobId } = await onSubmissionUploaded(platformWith(), ANALYSIS, bucket, key);
    const ds = (await platformWith().jobs.get(jobId))?.state.datasets[0];
    const instanceId = ds?.instanceId as string;
    expect(await runner.finished.get(`cmd-${instanceId}`)).toBe(0);
    // The monitor failed on SSM's completion event every time (EventBridge gave up). The runner
    // powered its machine off, and that state change did arrive.
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    const gone = await onInstanceStateChange(platformWith(), instanceId, 'terminated');
    expect(gone?.datasets[0]?.phase).toBe('RUNNING');

    // Past the grace a late result is allowed (and once the job is due to the reaper, 4 min
    // after its last write; still before its 5 min deadline), the reaper's tick ends it with a reason.
    const later = Date.now() + 4.5 * 60_000;
    const result = await reap(platformWith({ clock: { nowMs: () => later } }));

    expect(result.ticked).toContain(jobId);
    const state = (await platformWith().jobs.get(jobId))?.state;
    expect(state?.phase).toBe('DONE');
    expect(state?.datasets[0]).toMatchObject({ phase: 'FAILED', failure: { kind: 'platform', detail: expect.stringContaining(`machine ${instanceId} ended and the workflow never reported a result`) } });
    // A lost machine is a platform fault; this one-dataset job's reservation has no room for a retry, and says so.
    expect(state?.datasets[0]?.failure?.detail).toContain('not retried');
    const keys = jobKeys('lab', ANALYSIS, jobId);
    expect(await text(keys.certificate)).toContain('ended and the workflow never reported a result');
    expect(await text(keys.end)).toMatch(/FAILED/);
    const machine = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations?.[0]?.Instances?.[0];
    expect(machine?.State?.Name).toMatch(/shutting-down|terminated/);
    const [entry] = (await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7))).filter((e) => e.jobId === jobId);
    expect(entry?.spentUsd).toBe(state?.spentUsd);
  });
});
