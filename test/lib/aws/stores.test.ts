/**
 * The AWS adapters against moto (a real AWS API emulator on 127.0.0.1, see test/support/moto.ts):
 * the same contract suites as the local adapters, then what only the AWS adapters do.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
  type Message,
} from '@aws-sdk/client-sqs';
import { GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoCatalog } from '../../../lib/aws/catalog.js';
import { DynamoJobStore } from '../../../lib/aws/dynamo-job-store.js';
import { DynamoLedger } from '../../../lib/aws/dynamo-ledger.js';
import { S3ObjectStore } from '../../../lib/aws/s3-object-store.js';
import {
  dueAtMsOf,
  DUE_AT_ATTRIBUTE,
  nextDelaySeconds,
  parseScheduledAction,
  ScheduledActionInvalidError,
  SqsScheduler,
} from '../../../lib/aws/sqs-scheduler.js';
import { AnalysisNotFoundError, BlueprintInvalidError, ConcurrentUpdateError, ObjectExistsError } from '../../../lib/core/errors.js';
import { sha256Hex } from '../../../lib/core/hash.js';
import { LocalLedger } from '../../../lib/local/ledger.js';
import { StateDb } from '../../../lib/local/state-db.js';
import type { Clock, ScheduledAction } from '../../../lib/ports.js';
import { jobStoreContract, ledgerContract, recordFixture } from '../../contracts/job-store.contract.js';
import { objectStoreContract } from '../../contracts/object-store.contract.js';
import { blueprintFixture } from '../../support/core-fixtures.js';
import {
  createBucket,
  createQueue,
  createTable,
  documentClientFor,
  dynamoClientFor,
  MOTO_START_TIMEOUT_MS,
  s3ClientFor,
  sqsClientFor,
  startMoto,
  type MotoServer,
} from '../../support/moto.js';

let moto: MotoServer;
let s3: S3Client;
let dynamo: DynamoDBClient;
let doc: DynamoDBDocumentClient;
let sqs: SQSClient;

beforeAll(async () => {
  moto = await startMoto();
  s3 = s3ClientFor(moto);
  dynamo = dynamoClientFor(moto);
  doc = documentClientFor(moto);
  sqs = sqsClientFor(moto);
}, MOTO_START_TIMEOUT_MS);

afterAll(async () => {
  s3?.destroy();
  dynamo?.destroy();
  sqs?.destroy();
  await moto?.stop();
});

objectStoreContract('aws (S3 on moto)', async () => ({ store: new S3ObjectStore(s3), bucket: await createBucket(s3) }));
jobStoreContract('aws (DynamoDB on moto)', async () => new DynamoJobStore(doc, await createTable(dynamo)));
ledgerContract('aws (DynamoDB on moto)', async () => new DynamoLedger(doc, await createTable(dynamo)));

const MiB = 1024 * 1024;

/** Bytes that differ from part to part, so a misordered multipart upload would show. */
function patternedBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) bytes.writeUInt32LE(i, Math.min(i, size - 4));
  return bytes;
}

describe('S3 object store', () => {
  it('sends a body above the threshold as a multipart upload and reads it back whole', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3, { multipartThresholdBytes: 1024, partSizeBytes: 5 * MiB });
    const body = patternedBytes(11 * MiB + 3);
    const info = await store.put(bucket, 'lab/results/job__a_1/process_results/big.bin', body);
    // A multipart ETag is "<md5 of the part md5s>-<number of parts>".
    expect(info.etag).toMatch(/^[0-9a-f]{32}-3$/);
    expect(info.size).toBe(body.length);
    expect((await store.get(bucket, 'lab/results/job__a_1/process_results/big.bin')).equals(body)).toBe(true);
    expect((await store.head(bucket, 'lab/results/job__a_1/process_results/big.bin'))?.etag).toBe(info.etag);
  });

  it('sends a body at or below the threshold as one put', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3, { multipartThresholdBytes: 6 * MiB });
    const info = await store.put(bucket, 'lab/results/job__a_1/small.bin', patternedBytes(6 * MiB));
    expect(info.etag).toMatch(/^[0-9a-f]{32}$/);
  });

  it('refuses a create-only multipart upload over an existing object and leaves no parts behind', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3, { multipartThresholdBytes: 1024, partSizeBytes: 5 * MiB });
    await store.put(bucket, 'lab/results/job__a_1/provenance.json', 'first');
    await expect(store.put(bucket, 'lab/results/job__a_1/provenance.json', patternedBytes(6 * MiB))).rejects.toBeInstanceOf(
      ObjectExistsError,
    );
    expect((await store.get(bucket, 'lab/results/job__a_1/provenance.json')).toString()).toBe('first');
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
  });

  it('replaces an object with a multipart upload when asked to overwrite', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3, { multipartThresholdBytes: 1024, partSizeBytes: 5 * MiB });
    await store.put(bucket, 'lab/results/job__a_1/logs/x.log', 'short');
    const body = patternedBytes(6 * MiB);
    const info = await store.put(bucket, 'lab/results/job__a_1/logs/x.log', body, { overwrite: true });
    expect(info.etag).toMatch(/-2$/);
    expect((await store.get(bucket, 'lab/results/job__a_1/logs/x.log')).equals(body)).toBe(true);
  });

  it('never overwrites a researcher input or config, even when asked to', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3);
    await store.put(bucket, 'lab/inputs/data.csv', 'original');
    await expect(store.put(bucket, 'lab/inputs/data.csv', 'new', { overwrite: true })).rejects.toBeInstanceOf(ObjectExistsError);
    await store.put(bucket, 'lab/configs/c.json', '{}');
    await expect(store.put(bucket, 'lab/configs/c.json', '{"x":1}', { overwrite: true })).rejects.toThrow(/never overwrites/);
    expect((await store.get(bucket, 'lab/inputs/data.csv')).toString()).toBe('original');
    expect((await store.get(bucket, 'lab/configs/c.json')).toString()).toBe('{}');
  });

  it('still creates a researcher file that does not exist yet when asked to overwrite', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3);
    await store.put(bucket, 'lab/inputs/new.csv', 'fresh', { overwrite: true });
    expect((await store.get(bucket, 'lab/inputs/new.csv')).toString()).toBe('fresh');
  });

  it('lists across result pages and gives etags without quotes', async () => {
    const bucket = await createBucket(s3);
    const store = new S3ObjectStore(s3, { listPageSize: 2 });
    for (const name of ['e', 'c', 'a', 'd', 'b']) await store.put(bucket, `lab/results/job__a_1/${name}.txt`, name);
    const listed = await store.list(bucket, 'lab/results/');
    expect(listed.map((o) => o.key)).toEqual(['a', 'b', 'c', 'd', 'e'].map((n) => `lab/results/job__a_1/${n}.txt`));
    for (const object of listed) {
      expect(object.etag).toMatch(/^[0-9a-f]{32}$/);
      expect(object.etag).toBe((await store.head(bucket, object.key))?.etag);
    }
  });

  it('stores the content type it is given', async () => {
    const bucket = await createBucket(s3);
    await new S3ObjectStore(s3).put(bucket, 'lab/results/job__a_1/provenance.json', '{}', { contentType: 'application/json' });
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'lab/results/job__a_1/provenance.json' }));
    expect(object.ContentType).toBe('application/json');
  });
});

describe('DynamoDB job store', () => {
  it('lets one of two stores racing from the same version win, and keeps the winner', async () => {
    const table = await createTable(dynamo);
    const first = new DynamoJobStore(documentClientFor(moto), table);
    const second = new DynamoJobStore(documentClientFor(moto), table);
    await first.create(recordFixture('J1'));
    const results = await Promise.allSettled([
      first.update({ ...recordFixture('J1'), version: 2, updatedAtMs: 111 }),
      second.update({ ...recordFixture('J1'), version: 2, updatedAtMs: 222 }),
    ]);
    const won = results.findIndex((r) => r.status === 'fulfilled');
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results[1 - won] as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConcurrentUpdateError);
    expect(lost.reason.message).toContain('stored version 2');
    expect((await second.get('J1'))?.updatedAtMs).toBe(won === 0 ? 111 : 222);
  });

  it('refuses to update a job that was never created', async () => {
    const store = new DynamoJobStore(doc, await createTable(dynamo));
    await expect(store.update({ ...recordFixture('J9'), version: 2 })).rejects.toThrow(/job J9 does not exist/);
  });

  it('writes the record with its query attributes, guarded by its version', async () => {
    const table = await createTable(dynamo);
    const store = new DynamoJobStore(doc, table);
    const record = recordFixture('J1');
    await store.create(record);
    const item = (await doc.send(new GetCommand({ TableName: table, Key: { pk: 'JOB#J1', sk: 'RECORD' } }))).Item;
    expect(item).toMatchObject({
      version: 1,
      phase: record.state.phase,
      analysis: 'kalman-smoother',
      group: 'lab',
      createdAtMs: record.state.createdAtMs,
      updatedAtMs: 1_000,
    });
    expect(JSON.parse(String(item?.record))).toEqual(record);
  });

  it('lists through the reaper index the unfinished jobs that are due, and none of the finished ones', async () => {
    const store = new DynamoJobStore(doc, await createTable(dynamo));
    const at = (jobId: string, phase: 'NEW' | 'ACTIVE' | 'DONE' | 'REJECTED', createdAtMs: number, updatedAtMs: number) => {
      const record = recordFixture(jobId);
      return { ...record, updatedAtMs, state: { ...record.state, phase, createdAtMs } };
    };
    // NEW is due 2 min after its creation, ACTIVE 4 min after its last write; finished jobs never.
    await store.create(at('stuck', 'NEW', 0, 0));
    await store.create(at('fresh', 'NEW', 590_000, 590_000));
    await store.create(at('idle', 'ACTIVE', 0, 300_000));
    await store.create(at('busy', 'ACTIVE', 0, 500_000));
    for (let i = 0; i < 30; i += 1) await store.create(at(`old-${i}`, i % 2 === 0 ? 'DONE' : 'REJECTED', 0, 1_000));

    const due = await store.listDue(600_000);

    expect(due.map((job) => [job.jobId, job.phase, job.createdAtMs]).sort()).toEqual([
      ['idle', 'ACTIVE', 0],
      ['stuck', 'NEW', 0],
    ]);
    // Finishing a job takes it out of the index.
    await store.update({ ...at('idle', 'DONE', 0, 600_000), version: 2 });
    expect((await store.listDue(10_000_000)).map((job) => job.jobId).sort()).toEqual(['busy', 'fresh', 'stuck']);
  });

  it('keeps claims under the sha256 of the idempotency key', async () => {
    const table = await createTable(dynamo);
    await new DynamoJobStore(doc, table).claimSubmission('bucket/lab/submissions/s.json#e1', 'J1');
    const key = { pk: { S: `CLAIM#${sha256Hex('bucket/lab/submissions/s.json#e1')}` }, sk: { S: 'CLAIM' } };
    const item = (await dynamo.send(new GetItemCommand({ TableName: table, Key: key }))).Item;
    expect(item?.jobId?.S).toBe('J1');
    expect(item?.idempotencyKey?.S).toBe('bucket/lab/submissions/s.json#e1');
  });

  it('lists only jobs, newest first, when claims and ledgers share the table', async () => {
    const table = await createTable(dynamo);
    const store = new DynamoJobStore(doc, table);
    const older = recordFixture('J1');
    const newer = recordFixture('J2');
    newer.state = { ...newer.state, createdAtMs: 5_000 };
    await store.create(older);
    await store.create(newer);
    await store.claimSubmission('k#e', 'J1');
    await new DynamoLedger(doc, table).reserve({ user: 'alice', period: '2026-11', jobId: 'J1', amountUsd: 1, budgetUsd: 5, nowMs: 1 });
    const summaries = await store.list();
    expect(summaries.map((s) => s.jobId)).toEqual(['J2', 'J1']);
    expect(summaries[1]).toEqual({
      jobId: 'J1',
      analysis: 'kalman-smoother',
      group: 'lab',
      phase: older.state.phase,
      createdAtMs: older.state.createdAtMs,
      updatedAtMs: 1_000,
      datasets: [],
    });
  });
});

describe('DynamoDB ledger', () => {
  const base = { user: 'alice', period: '2026-11', budgetUsd: 10, nowMs: 1 };

  it('refuses with the same reason text as the local ledger', async () => {
    const dynamoLedger = new DynamoLedger(doc, await createTable(dynamo));
    const localLedger = new LocalLedger(new StateDb(join(mkdtempSync(join(tmpdir(), 'ncap-ledger-')), 'neurocaas.db')));
    const reasons: string[] = [];
    for (const ledger of [dynamoLedger, localLedger]) {
      await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 4.5 });
      await ledger.reserve({ ...base, jobId: 'J2', amountUsd: 2.25 });
      await ledger.settle({ user: 'alice', period: '2026-11', jobId: 'J1', spentUsd: 1.125, nowMs: 2 });
      const refused = await ledger.reserve({ ...base, jobId: 'J3', amountUsd: 7 });
      expect(refused.ok).toBe(false);
      if (!refused.ok) reasons.push(refused.reason);
    }
    expect(reasons[0]).toBe(reasons[1]);
    expect(reasons[0]).toContain('$6.63 left of $10.00');
  });

  it('refuses a job that needs more than the whole budget on a fresh ledger', async () => {
    const ledger = new DynamoLedger(doc, await createTable(dynamo));
    const refused = await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 10.5 });
    expect(refused).toEqual({ ok: false, reason: expect.stringContaining('over budget') });
    expect(await ledger.entries('alice', '2026-11')).toEqual([]);
  });

  it('keeps the committed sum equal to the entries through reservations and settlements', async () => {
    const table = await createTable(dynamo);
    const ledger = new DynamoLedger(doc, table);
    await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 0.192 });
    await ledger.reserve({ ...base, jobId: 'J2', amountUsd: 0.384 });
    await ledger.settle({ user: 'alice', period: '2026-11', jobId: 'J2', spentUsd: 0.000107, nowMs: 5 });
    const summary = await doc.send(new GetCommand({ TableName: table, Key: { pk: 'LEDGER#alice#2026-11', sk: 'SUMMARY' } }));
    expect(summary.Item?.committedUsd).toBe(0.192107);
  });

  it('settles once when settlements race', async () => {
    const table = await createTable(dynamo);
    const ledger = new DynamoLedger(doc, table);
    await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 4 });
    await Promise.all([1, 2, 3, 4].map((spentUsd) => ledger.settle({ user: 'alice', period: '2026-11', jobId: 'J1', spentUsd, nowMs: 10 + spentUsd })));
    const [entry] = await ledger.entries('alice', '2026-11');
    const summary = await doc.send(new GetCommand({ TableName: table, Key: { pk: 'LEDGER#alice#2026-11', sk: 'SUMMARY' } }));
    expect(entry?.settledAtMs).toBe(10 + (entry?.spentUsd ?? NaN));
    expect(summary.Item?.committedUsd).toBe(entry?.spentUsd);
  });

  it('ignores a settlement of a job it never reserved', async () => {
    const ledger = new DynamoLedger(doc, await createTable(dynamo));
    await ledger.settle({ user: 'alice', period: '2026-11', jobId: 'ghost', spentUsd: 3, nowMs: 2 });
    expect(await ledger.entries('alice', '2026-11')).toEqual([]);
  });

  it('returns entries ordered by reservation time, then job id', async () => {
    const ledger = new DynamoLedger(doc, await createTable(dynamo));
    await ledger.reserve({ ...base, jobId: 'B', amountUsd: 1, nowMs: 20 });
    await ledger.reserve({ ...base, jobId: 'C', amountUsd: 1, nowMs: 10 });
    await ledger.reserve({ ...base, jobId: 'A', amountUsd: 1, nowMs: 20 });
    expect((await ledger.entries('alice', '2026-11')).map((e) => e.jobId)).toEqual(['C', 'A', 'B']);
  });
});

describe('DynamoDB catalog', () => {
  const blueprint = blueprintFixture();
  const registryItem = {
    pk: 'ANALYSIS#kalman-smoother',
    sk: 'CONFIG',
    blueprint: JSON.stringify(blueprint),
    versionId: 'sha256:abc',
    bucket: 'kalman-smoother-123456789012',
    amiId: 'ami-0fedcba9876543210',
    instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/kalman-machine',
    securityGroupId: 'sg-0123456789abcdef0',
    subnetIds: ['subnet-a', 'subnet-b'],
    machineRoleArn: 'arn:aws:iam::123456789012:role/kalman-machine',
  };
  const profileOf = (username: string, group: string) => ({
    username,
    group,
    email: `${username}@example.org`,
    budgetUsd: 5,
    budgetPeriod: 'monthly',
    allowedAnalyses: ['*'],
  });
  const userItem = (username: string, group: string) => ({
    pk: `USER#${username}`,
    sk: 'PROFILE',
    group,
    profile: JSON.stringify(profileOf(username, group)),
  });

  async function registry(): Promise<string> {
    const table = await createTable(dynamo);
    for (const item of [registryItem, userItem('alice', 'lab'), userItem('carol', 'lab'), userItem('bob', 'other')]) {
      await doc.send(new PutCommand({ TableName: table, Item: item }));
    }
    return table;
  }

  it('reads a blueprint, its version, its AMI and its placement from the registry', async () => {
    const catalog = new DynamoCatalog(doc, await registry());
    expect(await catalog.blueprint('kalman-smoother')).toEqual({ blueprint, versionId: 'sha256:abc' });
    expect(catalog.imageId(blueprint)).toBe('ami-0fedcba9876543210');
    expect(await catalog.placement('kalman-smoother')).toEqual({
      analysis: 'kalman-smoother',
      bucket: 'kalman-smoother-123456789012',
      amiId: 'ami-0fedcba9876543210',
      instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/kalman-machine',
      securityGroupId: 'sg-0123456789abcdef0',
      subnetIds: ['subnet-a', 'subnet-b'],
      volumeSizeGiB: 50,
      instanceTypes: ['m5.xlarge', 'm5.2xlarge'],
      hourlyUsd: blueprint.pricing.hourlyUsd,
    });
  });

  it('puts the default instance type first even when the blueprint lists it later', async () => {
    const table = await createTable(dynamo);
    const reordered = blueprintFixture({
      hardware: { instanceType: 'm5.2xlarge', allowedInstanceTypes: ['m5.xlarge', 'm5.2xlarge'], volumeSizeGiB: 80 },
    });
    await doc.send(new PutCommand({ TableName: table, Item: { ...registryItem, blueprint: JSON.stringify(reordered) } }));
    const placement = await new DynamoCatalog(doc, table).placement('kalman-smoother');
    expect(placement.instanceTypes).toEqual(['m5.2xlarge', 'm5.xlarge']);
    expect(placement.volumeSizeGiB).toBe(80);
  });

  it('reuses what it read for 60 seconds, then reads the table again', async () => {
    const table = await registry();
    let nowMs = 1_000_000;
    const clock: Clock = { nowMs: () => nowMs };
    const catalog = new DynamoCatalog(doc, table, { clock });
    expect((await catalog.placement('kalman-smoother')).amiId).toBe('ami-0fedcba9876543210');
    expect((await catalog.user('alice'))?.budgetUsd).toBe(5);
    await doc.send(
      new UpdateCommand({
        TableName: table,
        Key: { pk: 'ANALYSIS#kalman-smoother', sk: 'CONFIG' },
        UpdateExpression: 'SET amiId = :ami',
        ExpressionAttributeValues: { ':ami': 'ami-0aaaaaaaaaaaaaaaa' },
      }),
    );
    await doc.send(new PutCommand({ TableName: table, Item: { ...userItem('alice', 'lab'), profile: JSON.stringify({ ...profileOf('alice', 'lab'), budgetUsd: 9 }) } }));
    nowMs += 59_000;
    expect((await catalog.placement('kalman-smoother')).amiId).toBe('ami-0fedcba9876543210');
    expect((await catalog.user('alice'))?.budgetUsd).toBe(5);
    nowMs += 1_001;
    expect((await catalog.placement('kalman-smoother')).amiId).toBe('ami-0aaaaaaaaaaaaaaaa');
    expect(catalog.imageId(blueprint)).toBe('ami-0aaaaaaaaaaaaaaaa');
    expect((await catalog.user('alice'))?.budgetUsd).toBe(9);
  });

  it('reports an analysis that is not deployed clearly', async () => {
    const table = await registry();
    const catalog = new DynamoCatalog(doc, table);
    expect(await catalog.blueprint('no-such-analysis')).toBeUndefined();
    const failure = catalog.placement('no-such-analysis');
    await expect(failure).rejects.toBeInstanceOf(AnalysisNotFoundError);
    await expect(failure).rejects.toThrow(`analysis "no-such-analysis" is not deployed: table ${table} has no registry item ANALYSIS#no-such-analysis`);
  });

  it('rejects a registry item whose blueprint is broken, naming what is wrong', async () => {
    const table = await createTable(dynamo);
    const broken = { ...JSON.parse(registryItem.blueprint), limits: { timeoutMinutes: 'an hour' } };
    await doc.send(new PutCommand({ TableName: table, Item: { ...registryItem, blueprint: JSON.stringify(broken) } }));
    const failure = new DynamoCatalog(doc, table).blueprint('kalman-smoother');
    await expect(failure).rejects.toBeInstanceOf(BlueprintInvalidError);
    await expect(failure).rejects.toThrow(/limits\.timeoutMinutes/);
  });

  it('rejects a registry item without its placement fields', async () => {
    const table = await createTable(dynamo);
    const { amiId: _amiId, subnetIds: _subnetIds, ...incomplete } = registryItem;
    await doc.send(new PutCommand({ TableName: table, Item: incomplete }));
    await expect(new DynamoCatalog(doc, table).placement('kalman-smoother')).rejects.toThrow(/amiId[\s\S]*subnetIds/);
  });

  it('reads where the image came from: a recipe with its hash and base image, or nothing for items written before images as code', async () => {
    const table = await registry();
    const recipeItem = {
      ...registryItem,
      pk: 'ANALYSIS#gamma',
      blueprint: JSON.stringify({ ...blueprint, name: 'gamma' }),
      imageSource: 'recipe',
      recipeHash: `sha256:${'ab'.repeat(32)}`,
      baseImageParameter: '/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id',
      baseImageId: 'ami-0base000000000001',
    };
    await doc.send(new PutCommand({ TableName: table, Item: recipeItem }));
    const catalog = new DynamoCatalog(doc, table);
    const gamma = await catalog.blueprint('gamma');
    expect(catalog.imageFacts(gamma!.blueprint)).toEqual({
      source: 'recipe',
      recipeHash: recipeItem.recipeHash,
      baseImage: { parameter: recipeItem.baseImageParameter, imageId: 'ami-0base000000000001' },
    });
    await catalog.blueprint('kalman-smoother');
    expect(catalog.imageFacts(blueprint)).toBeUndefined();
  });

  it('finds the users of a group and a user by name', async () => {
    const catalog = new DynamoCatalog(doc, await registry());
    expect((await catalog.usersOfGroup('lab')).map((u) => u.username)).toEqual(['alice', 'carol']);
    expect(await catalog.usersOfGroup('nobody')).toEqual([]);
    expect((await catalog.user('bob'))?.group).toBe('other');
    expect(await catalog.user('zed')).toBeUndefined();
    expect(await catalog.user('../etc')).toBeUndefined();
  });
});

describe('SQS scheduler', () => {
  const tick: ScheduledAction = { kind: 'tick', jobId: 'J1' };
  const agentCheck: ScheduledAction = { kind: 'agent-check', jobId: 'J1', dataset: 'd0.csv', instanceId: 'i-0abc', expiresAtMs: 1_700_000_600_000 };

  async function receive(queueUrl: string): Promise<Message[]> {
    const result = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, MessageAttributeNames: ['All'] }),
    );
    return result.Messages ?? [];
  }

  it('computes the delay in whole seconds, rounded up and within what SQS accepts', () => {
    expect(nextDelaySeconds(1_000, 5_000)).toBe(0);
    expect(nextDelaySeconds(5_000, 5_000)).toBe(0);
    expect(nextDelaySeconds(5_001, 5_000)).toBe(1);
    expect(nextDelaySeconds(6_200, 5_000)).toBe(2);
    expect(nextDelaySeconds(5_000 + 900_000, 5_000)).toBe(900);
    expect(nextDelaySeconds(5_000 + 7_200_000, 5_000)).toBe(900);
  });

  it('sends an action that is due now for immediate delivery, with its due time', async () => {
    const queueUrl = await createQueue(sqs);
    await new SqsScheduler(sqs, queueUrl, { nowMs: () => 1_700_000_000_000 }).schedule(1_699_999_999_000, agentCheck);
    const [message, ...rest] = await receive(queueUrl);
    expect(rest).toEqual([]);
    expect(parseScheduledAction(message?.Body)).toEqual(agentCheck);
    expect(dueAtMsOf(message?.MessageAttributes)).toBe(1_699_999_999_000);
  });

  it('holds an action due in a second back for that second', async () => {
    const queueUrl = await createQueue(sqs);
    const sentAtMs = Date.now();
    await new SqsScheduler(sqs, queueUrl, { nowMs: () => sentAtMs }).schedule(sentAtMs + 800, tick);
    expect(await receive(queueUrl)).toEqual([]);
    let messages: Message[] = [];
    while (messages.length === 0 && Date.now() - sentAtMs < 5_000) {
      await new Promise((r) => setTimeout(r, 100));
      messages = await receive(queueUrl);
    }
    expect(Date.now() - sentAtMs).toBeGreaterThanOrEqual(1_000);
    expect(messages.map((m) => parseScheduledAction(m.Body))).toEqual([tick]);
  });

  it('delays an action due in two hours by the SQS maximum, for its consumer to send on', async () => {
    const queueUrl = await createQueue(sqs);
    await new SqsScheduler(sqs, queueUrl, { nowMs: () => 0 }).schedule(7_200_000, tick);
    expect(await receive(queueUrl)).toEqual([]);
    const attributes = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessagesDelayed', 'ApproximateNumberOfMessages'] }),
    );
    expect(attributes.Attributes).toMatchObject({ ApproximateNumberOfMessagesDelayed: '1', ApproximateNumberOfMessages: '0' });
  });

  it('asks SQS for exactly the computed delay and the JSON action', async () => {
    const client = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
    const mock = mockClient(client);
    mock.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    await new SqsScheduler(client, 'https://sqs.example/q', { nowMs: () => 10_000 }).schedule(10_000 + 7_200_000, agentCheck);
    await new SqsScheduler(client, 'https://sqs.example/q', { nowMs: () => 10_000 }).schedule(10_000 + 42_001, tick);
    const inputs = mock.commandCalls(SendMessageCommand).map((call) => call.args[0].input);
    expect(inputs).toEqual([
      {
        QueueUrl: 'https://sqs.example/q',
        MessageBody: JSON.stringify(agentCheck),
        DelaySeconds: 900,
        MessageAttributes: { [DUE_AT_ATTRIBUTE]: { DataType: 'Number', StringValue: '7210000' } },
      },
      {
        QueueUrl: 'https://sqs.example/q',
        MessageBody: JSON.stringify(tick),
        DelaySeconds: 43,
        MessageAttributes: { [DUE_AT_ATTRIBUTE]: { DataType: 'Number', StringValue: '52001' } },
      },
    ]);
    mock.restore();
  });

  it('rejects a body that is not JSON, naming what it got', () => {
    expect(() => parseScheduledAction('tick J1')).toThrow(ScheduledActionInvalidError);
    expect(() => parseScheduledAction('tick J1')).toThrow(/not JSON.*"tick J1"/);
    expect(() => parseScheduledAction(undefined)).toThrow(/no body/);
  });

  it('rejects an action of an unknown kind or with missing or extra fields, listing every problem', () => {
    expect(() => parseScheduledAction('{"kind":"reboot","jobId":"J1"}')).toThrow(/kind/);
    expect(() => parseScheduledAction('{"kind":"agent-check","jobId":"J1","dataset":"d"}')).toThrow(/instanceId[\s\S]*expiresAtMs/);
    expect(() => parseScheduledAction('{"kind":"tick","jobId":"J1","extra":1}')).toThrow(ScheduledActionInvalidError);
    expect(() => parseScheduledAction('{"kind":"tick","jobId":""}')).toThrow(/jobId/);
  });
});
