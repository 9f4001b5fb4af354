/**
 * The AWS API emulator the AWS adapter tests talk to: moto server from Debian trixie, installed
 * once into a cache folder by scripts/emulator/setup-moto.sh and started per test file on a free
 * 127.0.0.1 port. Nothing here reaches beyond the loopback interface.
 *
 * Usage in a test file:
 *   let moto: MotoServer;
 *   beforeAll(async () => { moto = await startMoto(); }, MOTO_START_TIMEOUT_MS);
 *   afterAll(async () => { await moto.stop(); });
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DescribeImagesCommand, DescribeSecurityGroupsCommand, DescribeSubnetsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { CreateInstanceProfileCommand, IAMClient } from '@aws-sdk/client-iam';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { blueprintVersionId } from '../../lib/core/hash.js';
import { ensureEmulatorInstalled, motoRoot, SETUP_TIMEOUT_MS, startEmulator } from '../../lib/sandbox/emulator.js';

// The machine exports a CA bundle that breaks plain-HTTP clients to 127.0.0.1; the emulator needs none.
delete process.env.AWS_CA_BUNDLE;

export { motoRoot };

/** Timeout for the beforeAll hook that calls startMoto(): room for a first-time install. */
export const MOTO_START_TIMEOUT_MS = SETUP_TIMEOUT_MS + 60_000;

export interface MotoServer {
  /** e.g. "http://127.0.0.1:41234" */
  endpoint: string;
  /** Milliseconds from spawn to the first HTTP answer. */
  startupMs: number;
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /**
   * Serve requests one at a time (default true). moto's conditional writes are not atomic under
   * concurrent requests; see scripts/emulator/moto-server.py. false only to show that.
   */
  serializeRequests?: boolean;
}

/** Starts a private moto server (lib/sandbox/emulator.ts); installs the emulator first if the cache does not have it. */
export async function startMoto(options: StartMotoOptions = {}): Promise<MotoServer> {
  const root = motoRoot();
  await ensureEmulatorInstalled(root);
  // vitest starts several files at once, so several servers may be importing moto together on
  // a loaded machine: its Python start-up then outlasts the default 20 s (the hook's own
  // timeout, MOTO_START_TIMEOUT_MS, still bounds it).
  const server = await startEmulator({ root, serializeRequests: options.serializeRequests ?? true, readyTimeoutMs: 90_000 });
  return { endpoint: server.endpoint, startupMs: server.startupMs, stop: () => server.stop() };
}

// ---- SDK v3 clients pointed at the emulator ----

const FAKE_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const REGION = 'us-east-1';

function baseConfig(moto: Pick<MotoServer, 'endpoint'>) {
  return { endpoint: moto.endpoint, region: REGION, credentials: FAKE_CREDENTIALS, maxAttempts: 2 };
}

export function s3ClientFor(moto: Pick<MotoServer, 'endpoint'>): S3Client {
  return new S3Client({
    ...baseConfig(moto),
    forcePathStyle: true,
    // moto does not check the flexible checksums newer SDKs send by default.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export function dynamoClientFor(moto: Pick<MotoServer, 'endpoint'>): DynamoDBClient {
  return new DynamoDBClient(baseConfig(moto));
}

export function documentClientFor(moto: Pick<MotoServer, 'endpoint'>): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClientFor(moto));
}

export function sqsClientFor(moto: Pick<MotoServer, 'endpoint'>): SQSClient {
  return new SQSClient(baseConfig(moto));
}

/** A name no other test uses: buckets, tables and queues are fresh per test. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export async function createBucket(s3: S3Client, prefix = 'bucket'): Promise<string> {
  const bucket = uniqueName(prefix);
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** A table shaped like the platform's: string keys pk and sk, on-demand, with the reaper's index (lib/infra/job-table.ts). */
export async function createTable(dynamo: DynamoDBClient, prefix = 'table'): Promise<string> {
  const tableName = uniqueName(prefix);
  await dynamo.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'dueBucket', AttributeType: 'S' },
        { AttributeName: 'dueAtMs', AttributeType: 'N' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: 'reaper-due',
          KeySchema: [
            { AttributeName: 'dueBucket', KeyType: 'HASH' },
            { AttributeName: 'dueAtMs', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['phase', 'createdAtMs'] },
        },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  return tableName;
}

export async function createQueue(sqs: SQSClient, prefix = 'queue'): Promise<string> {
  const result = await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(prefix) }));
  if (!result.QueueUrl) throw new Error('the emulator returned no QueueUrl for CreateQueue');
  return result.QueueUrl;
}

/** The platform stack's shared pieces on the emulator, with the clients the protocol tests use. */
export interface PlatformOnMoto {
  /** endpoint, region and credentials of the emulator's admin, for clients made here and in tests. */
  admin: { endpoint: string; region: string; credentials: typeof FAKE_CREDENTIALS };
  s3: S3Client;
  doc: DynamoDBDocumentClient;
  sqs: SQSClient;
  ec2: EC2Client;
  /** The job table (pk/sk and the reaper's index). */
  table: string;
  /** The agent-check queue. */
  agentQueueUrl: string;
}

/** Creates what the platform stack deploys that every protocol test needs: its table and agent-check queue. */
export async function createPlatformOnMoto(moto: Pick<MotoServer, 'endpoint'>): Promise<PlatformOnMoto> {
  const admin = { endpoint: moto.endpoint, region: REGION, credentials: FAKE_CREDENTIALS };
  const sqs = sqsClientFor(moto);
  const [table, agentQueueUrl] = await Promise.all([createTable(dynamoClientFor(moto), 'platform'), createQueue(sqs, 'agent')]);
  return { admin, s3: s3ClientFor(moto), doc: documentClientFor(moto), sqs, ec2: new EC2Client(admin), table, agentQueueUrl };
}

/**
 * What the analysis and users stacks write at deploy time for one analysis, on the emulator:
 * its registry item (blueprint, bucket, the emulator's first image, subnet and security group,
 * a fresh instance profile). Shared by the protocol and client tests.
 */
export async function registerAnalysis(
  clients: { ec2: EC2Client; iam: IAMClient; doc: DynamoDBDocumentClient },
  target: { table: string; bucket: string; analysis: string; blueprintDir: string },
): Promise<void> {
  const { ec2, iam, doc } = clients;
  const image = (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId as string;
  const subnet = (await ec2.send(new DescribeSubnetsCommand({}))).Subnets?.[0]?.SubnetId as string;
  const securityGroup = (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups?.[0]?.GroupId as string;
  const profile = await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: `ncap-${target.analysis}-${randomBytes(4).toString('hex')}` }));
  const blueprintText = readFileSync(join(target.blueprintDir, 'blueprint.json'), 'utf8');
  await doc.send(
    new PutCommand({
      TableName: target.table,
      Item: {
        pk: `ANALYSIS#${target.analysis}`,
        sk: 'CONFIG',
        blueprint: blueprintText,
        versionId: blueprintVersionId(JSON.parse(blueprintText)),
        bucket: target.bucket,
        amiId: image,
        instanceProfileArn: profile.InstanceProfile?.Arn,
        securityGroupId: securityGroup,
        subnetIds: [subnet],
        machineRoleArn: `arn:aws:iam::123456789012:role/ncap-${target.analysis}-machine`,
      },
    }),
  );
}
