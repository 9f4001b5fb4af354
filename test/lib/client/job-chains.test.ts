/**
 * Chains and ensembles as one unit, on both backends: `neurocaas run` follows every stage of a
 * chain to its end, and the job listing (`neurocaas jobs`) shows the chain under its first job
 * with every stage, the chain's outcome and its total cost, and an ensemble with its replicas
 * and consensus, in the same shape on local and on aws (moto + the real protocol handlers).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, TagUserCommand } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { SSMClient } from '@aws-sdk/client-ssm';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalClientBackend } from '../../../lib/client/local-backend.js';
import type { JobView } from '../../../lib/client/ports.js';
import { ResearcherClient } from '../../../lib/client/researcher-client.js';
import { runAnalysis } from '../../../lib/cli/commands/researcher.js';
import type { Reporter } from '../../../lib/cli/reporter.js';
import { createAwsPlatform, type AwsPlatform } from '../../../protocols/aws/platform.js';
import { onCommandStatusChange, onInstanceStateChange, onSubmissionUploaded } from '../../../protocols/aws/protocols.js';
import { LocalPlatform } from '../../../protocols/local-shell.js';
import { fakeAwsCliDir, LocalRunnerStandIn } from '../../support/aws-runner-stand-in.js';
import { awsResearcherClient } from '../../support/client-fixtures.js';
import { createBucket, createPlatformOnMoto, MOTO_START_TIMEOUT_MS, registerAnalysis, startMoto } from '../../support/moto.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const testWorkflow = join(repo, 'test', 'fixtures', 'blueprints', 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');

/** The ensemble's consensus step: lists the replica folders it received. */
const CONSENSUS_SCRIPT = `import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const replicas = readdirSync(process.env.NCAP_REPLICAS_DIR).sort();
writeFileSync(join(process.env.NCAP_OUTPUT_DIR, 'consensus.json'), JSON.stringify({ replicas }));
`;

/** test-workflow with a 16 GiB root (moto's images have 15 GiB roots, and EC2 refuses a smaller one). */
const base = { ...(JSON.parse(readFileSync(join(testWorkflow, 'blueprint.json'), 'utf8')) as Record<string, unknown>), hardware: { instanceType: 't3.micro', allowedInstanceTypes: ['t3.micro', 't3.small'], volumeSizeGiB: 16 } };
const BLUEPRINTS: Record<string, Record<string, unknown>> = {
  // Two datasets, one next-stage job each.
  'chain-one': { ...base, name: 'chain-one', followOn: { analysis: 'chain-two', inputs: { file: 'result.json', grouping: 'perDataset' }, config: { mode: 'succeed', lines: 1 } } },
  // Its next stage is told to fail: the chain stops at stage 2.
  'chain-bad': { ...base, name: 'chain-bad', followOn: { analysis: 'chain-two', inputs: { file: 'result.json', grouping: 'perDataset' }, config: { mode: 'fail', exitCode: 3 } } },
  'chain-two': { ...base, name: 'chain-two', hardware: { instanceType: 't3.small', volumeSizeGiB: 16 } },
  'pose-ens': { ...base, name: 'pose-ens', protocol: 'ensemble', ensemble: { size: 3, minSucceeded: 2, consensus: { command: ['node', 'consensus.mjs'] } } },
};
const ALICE = { username: 'alice', group: 'lab', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] };

interface StructuresBackend {
  client: ResearcherClient;
  close(): Promise<void>;
}

/** Blueprint folders with the test workflow's environment plus the consensus script. */
function writeBlueprints(dir: string): { blueprintsDir: string; env: string } {
  const blueprintsDir = join(dir, 'blueprints');
  const env = join(dir, 'env');
  mkdirSync(env, { recursive: true });
  symlinkSync(join(testWorkflow, 'env', 'work.mjs'), join(env, 'work.mjs'));
  writeFileSync(join(env, 'consensus.mjs'), CONSENSUS_SCRIPT);
  for (const [name, blueprint] of Object.entries(BLUEPRINTS)) {
    mkdirSync(join(blueprintsDir, name), { recursive: true });
    writeFileSync(join(blueprintsDir, name, 'blueprint.json'), JSON.stringify(blueprint, null, 2));
    symlinkSync(env, join(blueprintsDir, name, 'env'));
  }
  return { blueprintsDir, env };
}

async function localBackend(dir: string): Promise<StructuresBackend> {
  const { blueprintsDir } = writeBlueprints(dir);
  const usersDir = join(dir, 'users');
  mkdirSync(usersDir);
  writeFileSync(join(usersDir, 'alice.json'), JSON.stringify(ALICE));
  const platform = new LocalPlatform({ root: join(dir, 'root'), blueprintsDir, usersDir });
  return { client: new ResearcherClient(new LocalClientBackend(platform, 'alice')), close: () => platform.close() };
}

/**
 * moto with one bucket per analysis, registered as a deploy does; a pump in this process stands
 * in for S3 notifications (every bucket's submissions), SSM's command completions and EC2's
 * terminated events, delivering them to the real protocol functions.
 */
async function awsBackend(dir: string): Promise<StructuresBackend> {
  const moto = await startMoto();
  const { admin, s3, doc, ec2, sqs, table, agentQueueUrl: queueUrl } = await createPlatformOnMoto(moto);
  const { region } = admin;
  const iam = new IAMClient(admin);
  const { blueprintsDir, env } = writeBlueprints(dir);
  const buckets = new Map<string, string>();
  for (const analysis of Object.keys(BLUEPRINTS)) {
    const bucket = await createBucket(s3, analysis);
    buckets.set(analysis, bucket);
    await registerAnalysis({ ec2, iam, doc }, { table, bucket, analysis, blueprintDir: join(blueprintsDir, analysis) });
  }
  await doc.send(new PutCommand({ TableName: table, Item: { pk: 'USER#alice', sk: 'PROFILE', group: 'lab', profile: JSON.stringify(ALICE) } }));
  await iam.send(new CreateUserCommand({ UserName: 'alice' }));
  await iam.send(new TagUserCommand({ UserName: 'alice', Tags: [{ Key: 'neurocaas-group', Value: 'lab' }, { Key: 'neurocaas-user', Value: 'alice' }] }));
  const key = (await iam.send(new CreateAccessKeyCommand({ UserName: 'alice' }))).AccessKey;

  const binDir = fakeAwsCliDir();
  const runner = new LocalRunnerStandIn(moto.endpoint, binDir, () => env);
  const platform: AwsPlatform = createAwsPlatform(
    { s3, dynamo: doc, ec2, ssm: new SSMClient(admin), sqs },
    { tableName: table, agentQueueUrl: queueUrl, analysis: undefined, runnerScriptPath: runnerScript },
    readFileSync(runnerScript, 'utf8'),
    {},
    { runner },
  );
  const pump = new Pump(platform, s3, ec2, buckets, runner);
  pump.start();

  return {
    client: awsResearcherClient({ endpoint: moto.endpoint, region, credentials: { accessKeyId: key?.AccessKeyId as string, secretAccessKey: key?.SecretAccessKey as string }, deployment: JSON.stringify({ schemaVersion: 1, region, tableName: table }), analyses: buckets }),
    close: async () => {
      await pump.stop();
      await runner.close();
      await moto.stop();
      rmSync(binDir, { recursive: true, force: true });
    },
  };
}

/** One delivery of each event, in order, as AWS would make them (here: polled every 150 ms). */
class Pump {
  private readonly delivered = new Set<string>();
  private readonly completed = new Set<string>();
  private readonly finishedCommands = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private roundQueued = false;
  private stopped = false;
  constructor(
    private readonly platform: AwsPlatform,
    private readonly s3: S3Client,
    private readonly ec2: EC2Client,
    private readonly buckets: ReadonlyMap<string, string>,
    private readonly runner: LocalRunnerStandIn,
  ) {}
  start(): void {
    this.timer = setInterval(() => {
      // One round at a time: on a loaded machine a round outlasts the 150 ms, and queueing one
      // per tick piled up a backlog that stop() then had to work through (past the hook timeout).
      if (this.roundQueued) return;
      this.roundQueued = true;
      this.running = this.running
        .then(() => this.round())
        .catch((error: unknown) => void process.stderr.write(`protocol pump: ${String(error)}\n`))
        .finally(() => (this.roundQueued = false));
    }, 150);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
  private async round(): Promise<void> {
    if (this.stopped) return;
    for (const [analysis, bucket] of this.buckets) {
      const listed = await this.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'lab/submissions/' }));
      for (const object of listed.Contents ?? []) {
        const key = object.Key as string;
        if (!key.endsWith('submit.json') || this.delivered.has(`${bucket}/${key}`)) continue;
        this.delivered.add(`${bucket}/${key}`);
        await onSubmissionUploaded(this.platform, analysis, bucket, key);
      }
    }
    for (const [commandId, finished] of this.runner.finished) {
      if (this.finishedCommands.has(commandId)) continue;
      finished.then(() => this.finishedCommands.add(commandId), () => this.finishedCommands.add(commandId));
    }
    for (const commandId of this.finishedCommands) {
      if (this.completed.has(commandId)) continue;
      this.completed.add(commandId);
      await onCommandStatusChange(this.platform, commandId, commandId.replace(/^cmd-/, ''), 'Success');
    }
    const instances = await this.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['terminated'] }] }));
    for (const instance of (instances.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const instanceId = instance.InstanceId as string;
      if (this.delivered.has(instanceId)) continue;
      this.delivered.add(instanceId);
      await onInstanceStateChange(this.platform, instanceId, 'terminated');
    }
  }
}

/** A reporter that keeps what `run` would print. */
function capture(): Reporter & { steps: string[]; results: string[]; errors: string[] } {
  const steps: string[] = [];
  const results: string[] = [];
  const errors: string[] = [];
  return {
    json: false,
    beforeStep: undefined,
    steps,
    results,
    errors,
    step: (text) => void steps.push(text),
    logLine: () => undefined,
    warn: (text) => void steps.push(`warning: ${text}`),
    result: (_data, human) => void results.push(human),
    error: (error) => void errors.push(String(error)),
  };
}

/** The listing once the chain starting at `firstJobId` has ended (bounded: 60 s). */
async function settledListing(client: ResearcherClient, firstJobId: string): Promise<JobView[]> {
  const until = Date.now() + 60_000;
  for (;;) {
    const { jobs } = await client.jobs();
    const first = jobs.find((job) => job.jobId === firstJobId);
    const outcome = first?.chainSummary?.outcome ?? first?.outcome;
    if ((outcome !== undefined && outcome !== 'RUNNING') || Date.now() > until) return jobs;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const backends: [string, (dir: string) => Promise<StructuresBackend>][] = [
  ['local', localBackend],
  ['aws', awsBackend],
];

describe.each(backends)('chains and ensembles as one unit on the %s backend', (_name, create) => {
  let dir: string;
  let backend: StructuresBackend;
  let data: string[];
  let succeed: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ncap-job-chains-'));
    backend = await create(dir);
    data = ['a.csv', 'b.csv'].map((name) => join(dir, name));
    for (const file of data) writeFileSync(file, 'frame,x\n1,2\n');
    succeed = join(dir, 'run.json');
    writeFileSync(succeed, JSON.stringify({ mode: 'succeed' }));
  }, MOTO_START_TIMEOUT_MS);
  afterAll(async () => {
    await backend?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('run follows every next-stage job of a chain to its end, and jobs shows the chain under its first job, SUCCEEDED, with its total cost', async () => {
    const reporter = capture();

    const code = await runAnalysis(backend.client, { analysis: 'chain-one', data, config: succeed }, reporter);

    expect(code, [...reporter.steps, ...reporter.errors].join('\n')).toBe(0);
    const followed = reporter.steps.filter((s) => s.startsWith('chain: following the next stage, job ')).map((s) => s.split(' ').at(-1));
    expect(followed).toHaveLength(2);
    expect(reporter.results).toHaveLength(3);

    const jobs = await settledListing(backend.client, (await backend.client.jobs()).jobs.find((j) => j.analysis === 'chain-one')?.jobId as string);
    const first = jobs.find((j) => j.analysis === 'chain-one') as JobView;
    const next = jobs.filter((j) => j.analysis === 'chain-two');
    expect(next.map((j) => j.jobId).sort()).toEqual([...followed].sort());
    expect(Object.keys(first).sort()).toEqual(['analysis', 'chain', 'chainSummary', 'costUsd', 'createdAtMs', 'datasets', 'group', 'jobId', 'outcome', 'phase', 'updatedAtMs', 'user']);
    expect(first.chain).toEqual({ stage: 1, firstJobId: first.jobId, nextJobIds: expect.arrayContaining(followed), plannedNext: [{ analysis: 'chain-two', jobs: 2 }] });
    expect(first.chainSummary).toEqual({
      outcome: 'SUCCEEDED',
      costUsd: expect.any(Number),
      stages: 2,
      jobs: [
        { jobId: first.jobId, analysis: 'chain-one', stage: 1, phase: 'DONE', outcome: 'SUCCEEDED', costUsd: expect.any(Number), datasets: [{ name: 'a.csv', phase: 'SUCCEEDED' }, { name: 'b.csv', phase: 'SUCCEEDED' }] },
        // A hand-off's dataset is named after the result it came from, on both backends.
        ...[...followed].sort().map((jobId) => ({ jobId, analysis: 'chain-two', stage: 2, parentJobId: first.jobId, phase: 'DONE', outcome: 'SUCCEEDED', costUsd: expect.any(Number), datasets: [{ name: expect.stringMatching(new RegExp(`^chain-${first.jobId}%2F[ab]\\.csv%2Fresult\\.json$`)), phase: 'SUCCEEDED' }] })),
      ],
    });
    const total = [first, ...next].reduce((sum, j) => sum + (j.costUsd ?? 0), 0);
    expect(first.chainSummary?.costUsd).toBeCloseTo(total, 6);
    expect(first.chainSummary?.costUsd).toBeGreaterThan(first.costUsd as number);
    for (const job of next) expect(job.chain).toEqual({ stage: 2, firstJobId: first.jobId, parentJobId: first.jobId, nextJobIds: [], plannedNext: [] });
  }, 120_000);

  it('run exits 1 when a later stage fails, and jobs shows the chain FAILED with the stopping stage named', async () => {
    const reporter = capture();

    const code = await runAnalysis(backend.client, { analysis: 'chain-bad', data: [data[0] as string], config: succeed }, reporter);

    expect(code, [...reporter.steps, ...reporter.errors].join('\n')).toBe(1);
    const firstId = (await backend.client.jobs()).jobs.find((j) => j.analysis === 'chain-bad')?.jobId as string;
    const first = (await settledListing(backend.client, firstId)).find((j) => j.jobId === firstId) as JobView;
    expect(first.chainSummary).toMatchObject({
      outcome: 'FAILED',
      stages: 2,
      stoppedAt: { analysis: 'chain-two', stage: 2, outcome: 'FAILED', reason: expect.stringMatching(/^stage 2 \(chain-two\) FAILED \(chain-\S+%2Fa\.csv%2Fresult\.json FAILED: the workflow exited with code 3/) },
    });
    expect(first.chainSummary?.jobs.map((j) => [j.analysis, j.outcome])).toEqual([
      ['chain-bad', 'SUCCEEDED'],
      ['chain-two', 'FAILED'],
    ]);
  }, 120_000);

  it('run follows an ensemble to its consensus, and jobs shows its replicas and consensus as one job', async () => {
    const reporter = capture();

    const code = await runAnalysis(backend.client, { analysis: 'pose-ens', data: [data[0] as string], config: succeed }, reporter);

    expect(code, [...reporter.steps, ...reporter.errors].join('\n')).toBe(0);
    for (const dataset of ['replica-0', 'replica-1', 'replica-2', 'consensus']) expect(reporter.results.join('\n')).toContain(`${dataset}: SUCCEEDED`);
    const job = (await backend.client.jobs()).jobs.find((j) => j.analysis === 'pose-ens') as JobView;
    expect(job.ensemble).toEqual({ replicas: 3, replicasSucceeded: 3, failedReplicas: [], consensusPhase: 'SUCCEEDED' });
    expect(job.datasets).toEqual([
      { name: 'replica-0', phase: 'SUCCEEDED', role: 'replica' },
      { name: 'replica-1', phase: 'SUCCEEDED', role: 'replica' },
      { name: 'replica-2', phase: 'SUCCEEDED', role: 'replica' },
      { name: 'consensus', phase: 'SUCCEEDED', role: 'consensus' },
    ]);
    expect(job.chain).toBeUndefined();
  }, 120_000);
});
