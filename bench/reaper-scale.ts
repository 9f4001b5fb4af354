/**
 * `npm run bench` (reaper): one reaper run at community scale on the moto emulator (127.0.0.1):
 * 1,000 running machines, of which 20 are past their deadline, and a job table holding 1,000
 * finished jobs (history) and 20 unfinished ones due. The run: find the expired machines (deadline
 * tag filter, paged), terminate them, find the due jobs (the reaper-due index). Baseline in the
 * same run: what the reaper did before, listing every live platform machine and scanning every
 * job. Target: well within the reaper's Lambda timeout (4 min).
 *
 * Needs the emulator installed by scripts/emulator/setup-moto.sh (as the tests do) and root
 * (it runs in a chroot); prints why and returns when it cannot run.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeImagesCommand, DescribeInstancesCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoJobStore, REAPER_INDEX } from '../lib/aws/dynamo-job-store.js';
import { Ec2Machines, MACHINE_TAGS } from '../lib/aws/ec2-machines.js';
import { initialJobState } from '../lib/core/job-machine.js';
import { motoRoot, startEmulator as startLibraryEmulator, type EmulatorProcess } from '../lib/sandbox/emulator.js';

const RUNNING = 1_000;
const EXPIRED = 20;
const FINISHED_JOBS = 1_000;
const DUE_JOBS = 20;

export { motoRoot } from '../lib/sandbox/emulator.js';

/** The emulator as the tests and the sandbox start it (lib/sandbox/emulator.ts), from a given tree. */
export async function startEmulator(root: string): Promise<EmulatorProcess> {
  return startLibraryEmulator({ root });
}

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await run();
  return [result, performance.now() - started];
}

export async function benchReaperScale(print: (line: string) => void): Promise<void> {
  const root = motoRoot();
  if (!existsSync(join(root, '.neurocaas-moto-ready')) || process.getuid?.() !== 0) {
    print(`reaper at scale: not run (needs the moto emulator in ${root}, installed by scripts/emulator/setup-moto.sh, and root)`);
    return;
  }
  delete process.env['AWS_CA_BUNDLE'];
  const moto = await startEmulator(root);
  try {
    const config = { endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
    const ec2 = new EC2Client(config);
    const dynamo = new DynamoDBClient(config);
    const doc = DynamoDBDocumentClient.from(dynamo);
    const nowMs = Date.now();
    const imageId = (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId as string;
    const launch = async (count: number, deadlineAtMs: number, batch: number) => {
      const tags = [
        { Key: MACHINE_TAGS.job, Value: `bench-${batch}` },
        { Key: MACHINE_TAGS.deadline, Value: new Date(deadlineAtMs).toISOString() },
      ];
      await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: 't3.micro', MinCount: count, MaxCount: count, TagSpecifications: [{ ResourceType: 'instance', Tags: tags }] }));
    };
    const [, launchMs] = await timed(async () => {
      await launch(EXPIRED, nowMs - 60_000, 0);
      for (let batch = 1; batch * 100 <= RUNNING - EXPIRED + 99; batch += 1) await launch(Math.min(100, RUNNING - EXPIRED - (batch - 1) * 100), nowMs + 3_600_000, batch);
    });

    const table = `bench-${nowMs}`;
    await dynamo.send(
      new CreateTableCommand({
        TableName: table,
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
          { AttributeName: REAPER_INDEX.partitionKey, AttributeType: 'S' },
          { AttributeName: REAPER_INDEX.sortKey, AttributeType: 'N' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        GlobalSecondaryIndexes: [
          {
            IndexName: REAPER_INDEX.name,
            KeySchema: [
              { AttributeName: REAPER_INDEX.partitionKey, KeyType: 'HASH' },
              { AttributeName: REAPER_INDEX.sortKey, KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...REAPER_INDEX.projected] },
          },
        ],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    const jobs = new DynamoJobStore(doc, table);
    const record = (jobId: string, phase: 'DONE' | 'ACTIVE', updatedAtMs: number) => ({
      jobId,
      bucket: 'bench',
      submissionKey: `lab/submissions/${jobId}submit.json`,
      version: 1,
      state: { ...initialJobState(jobId, 'bench', 'lab', updatedAtMs), phase },
      outbox: [],
      effectSeq: 0,
      updatedAtMs,
    });
    for (let i = 0; i < FINISHED_JOBS; i += 1) await jobs.create(record(`done-${i}`, 'DONE', nowMs - 86_400_000));
    for (let i = 0; i < DUE_JOBS; i += 1) await jobs.create(record(`due-${i}`, 'ACTIVE', nowMs - 600_000));

    // Baseline first (the run terminates the expired machines): the former reaper's queries.
    const machines = new Ec2Machines(ec2, async () => {
      throw new Error('the reaper does not launch');
    });
    const [, baselineMs] = await timed(async () => {
      let count = 0;
      let nextToken: string | undefined;
      do {
        const page = await ec2.send(
          new DescribeInstancesCommand({
            Filters: [
              { Name: 'tag-key', Values: [MACHINE_TAGS.deadline] },
              { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
            ],
            MaxResults: 1000,
            NextToken: nextToken,
          }),
        );
        for (const reservation of page.Reservations ?? []) count += reservation.Instances?.length ?? 0;
        nextToken = page.NextToken;
      } while (nextToken);
      await jobs.list();
      return count;
    });

    const [expired, listMs] = await timed(() => machines.listExpired(nowMs));
    const [, terminateMs] = await timed(async () => {
      for (const machine of expired) await machines.terminate(machine.instanceId);
    });
    const [due, dueMs] = await timed(() => jobs.listDue(nowMs));
    const runMs = listMs + terminateMs + dueMs;
    if (expired.length !== EXPIRED || due.length !== DUE_JOBS) {
      throw new Error(`reaper bench found ${expired.length} expired machines (expected ${EXPIRED}) and ${due.length} due jobs (expected ${DUE_JOBS})`);
    }
    print(
      `reaper run, ${RUNNING} running machines (${EXPIRED} expired) + ${FINISHED_JOBS} finished and ${DUE_JOBS} due jobs on moto: ${(runMs / 1000).toFixed(2)} s ` +
        `(expired by tag filter ${listMs.toFixed(0)} ms, ${EXPIRED} terminations ${terminateMs.toFixed(0)} ms, due jobs by index ${dueMs.toFixed(0)} ms); ` +
        `former list-all + scan ${(baselineMs / 1000).toFixed(2)} s without terminating; Lambda timeout 240 s   (set-up: ${RUNNING} launches in ${(launchMs / 1000).toFixed(1)} s)`,
    );
    ec2.destroy();
    dynamo.destroy();
  } finally {
    await moto.stop();
  }
}
