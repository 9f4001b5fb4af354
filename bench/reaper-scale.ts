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
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeImagesCommand, DescribeInstancesCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoJobStore, REAPER_INDEX } from '../lib/aws/dynamo-job-store.js';
import { Ec2Machines, MACHINE_TAGS } from '../lib/aws/ec2-machines.js';
import { initialJobState } from '../lib/core/job-machine.js';
import { packageRoot } from '../protocols/local-shell.js';

const RUNNING = 1_000;
const EXPIRED = 20;
const FINISHED_JOBS = 1_000;
const DUE_JOBS = 20;

export function motoRoot(): string {
  const cacheHome = process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return process.env['NEUROCAAS_MOTO_ROOT'] ?? join(cacheHome, 'neurocaas', 'moto-trixie');
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address && typeof address === 'object' ? resolvePort(address.port) : reject(new Error('no free port'))));
    });
  });
}

function answers(endpoint: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const req = request(`${endpoint}/moto-api/`, { method: 'GET', timeout: 1_000 }, (res) => {
      res.resume();
      resolveAnswer(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolveAnswer(false));
    req.end();
  });
}

/** The emulator as the tests start it (test/support/moto.ts), which dist/ does not contain. */
export async function startEmulator(root: string): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const script = readFileSync(join(packageRoot(), 'scripts', 'emulator', 'moto-server.py'), 'utf8');
  const child = spawn('chroot', [root, 'python3', '-c', script, '127.0.0.1', String(port)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', PYTHONDONTWRITEBYTECODE: '1' },
  });
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    child.stdin?.end();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 30_000;
  while (!(await answers(endpoint))) {
    if (Date.now() > deadline || child.exitCode !== null) {
      await stop();
      throw new Error(`the moto emulator did not answer on ${endpoint}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { endpoint, stop };
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
