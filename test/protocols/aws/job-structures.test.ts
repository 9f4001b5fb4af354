import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IAMClient } from '@aws-sdk/client-iam';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SSMClient } from '@aws-sdk/client-ssm';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../../../lib/aws/dynamo-ledger.js';
import type { JobState } from '../../../lib/core/job-machine.js';
import { jobKeys } from '../../../lib/core/keys.js';
import { createAwsPlatform, type AwsPlatform } from '../../../protocols/aws/platform.js';
import { onCommandStatusChange, onInstanceStateChange, onSubmissionUploaded } from '../../../protocols/aws/protocols.js';
import { fakeAwsCliDir, LocalRunnerStandIn } from '../../support/aws-runner-stand-in.js';
import { createBucket, createPlatformOnMoto, type MotoServer, registerAnalysis, startMoto } from '../../support/moto.js';

/**
 * Chains and ensembles on the AWS adapters against the emulator: each analysis has its own
 * bucket, registered like a deploy does; S3 events, EC2 state changes and SSM completions are
 * delivered to the real protocol functions (and some of them twice, as AWS may).
 */
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const testWorkflow = join(repo, 'test', 'fixtures', 'blueprints', 'test-workflow');
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');
/** test-workflow with a 16 GiB root: EC2 (and moto, whose images have 15 GiB roots) refuses a smaller root than the image's. */
const baseBlueprint = { ...(JSON.parse(readFileSync(join(testWorkflow, 'blueprint.json'), 'utf8')) as Record<string, unknown>), hardware: { instanceType: 't3.micro', allowedInstanceTypes: ['t3.micro', 't3.small'], volumeSizeGiB: 16 } };

/** The consensus step of the ensemble fixture: lists the replica folders it received. */
const CONSENSUS_SCRIPT = `import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const replicas = readdirSync(process.env.NCAP_REPLICAS_DIR).sort();
writeFileSync(join(process.env.NCAP_OUTPUT_DIR, 'consensus.json'), JSON.stringify({ replicas }));
console.log('consensus over ' + replicas.join(','));
`;

describe('chains and ensembles on the AWS adapters', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let doc: DynamoDBDocumentClient;
  let ec2: EC2Client;
  let platform: AwsPlatform;
  let runner: LocalRunnerStandIn;
  let table: string;
  let dir: string;
  const buckets: Record<string, string> = {};

  beforeAll(async () => {
    moto = await startMoto();
    const shared = await createPlatformOnMoto(moto);
    ({ s3, doc, ec2, table } = shared);
    const { sqs, agentQueueUrl: queueUrl, admin: config } = shared;

    dir = mkdtempSync(join(tmpdir(), 'ncap-aws-structures-'));
    const env = join(dir, 'env');
    mkdirSync(env);
    symlinkSync(join(testWorkflow, 'env', 'work.mjs'), join(env, 'work.mjs'));
    writeFileSync(join(env, 'consensus.mjs'), CONSENSUS_SCRIPT);
    const blueprints: Record<string, Record<string, unknown>> = {
      'chain-one': {
        ...baseBlueprint,
        name: 'chain-one',
        followOn: { analysis: 'chain-two', inputs: { file: 'result.json', grouping: 'perDataset' }, config: { mode: 'succeed', lines: 1 } },
      },
      'chain-two': { ...baseBlueprint, name: 'chain-two', hardware: { instanceType: 't3.small', volumeSizeGiB: 16 } },
      'pose-ens': {
        ...baseBlueprint,
        name: 'pose-ens',
        protocol: 'ensemble',
        ensemble: { size: 3, minSucceeded: 2, consensus: { command: ['node', 'consensus.mjs'] } },
      },
    };
    const iam = new IAMClient(config);
    for (const [analysis, blueprint] of Object.entries(blueprints)) {
      const blueprintDir = join(dir, analysis);
      mkdirSync(blueprintDir);
      writeFileSync(join(blueprintDir, 'blueprint.json'), JSON.stringify(blueprint, null, 2));
      buckets[analysis] = await createBucket(s3, analysis);
      await registerAnalysis({ ec2, iam, doc }, { table, bucket: buckets[analysis] as string, analysis, blueprintDir });
    }
    const alice = { username: 'alice', group: 'lab', budgetUsd: 5, budgetPeriod: 'monthly', allowedAnalyses: ['*'] };
    await doc.send(new PutCommand({ TableName: table, Item: { pk: 'USER#alice', sk: 'PROFILE', group: 'lab', profile: JSON.stringify(alice) } }));

    runner = new LocalRunnerStandIn(moto.endpoint, fakeAwsCliDir(), () => env);
    platform = createAwsPlatform(
      { s3, dynamo: doc, ec2, ssm: new SSMClient(config), sqs },
      { tableName: table, agentQueueUrl: queueUrl, analysis: undefined, runnerScriptPath: runnerScript },
      readFileSync(runnerScript, 'utf8'),
      {},
      { runner },
    );
  }, 15 * 60_000);

  afterAll(async () => {
    await runner?.close();
    await moto?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const put = (analysis: string, key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: buckets[analysis], Key: key, Body: body }));
  const text = async (analysis: string, key: string) => (await s3.send(new GetObjectCommand({ Bucket: buckets[analysis], Key: key }))).Body?.transformToString() as Promise<string>;
  const keysUnder = async (analysis: string, prefix: string) =>
    ((await s3.send(new ListObjectsV2Command({ Bucket: buckets[analysis], Prefix: prefix }))).Contents ?? []).map((o) => [o.Key as string, o.ETag as string]);
  const stateOf = async (jobId: string) => (await platform.jobs.get(jobId))?.state as JobState;

  /**
   * Lets every running dataset's command finish and delivers what AWS would: SSM's completion,
   * then EC2's terminated event, each twice (replays). Repeats while new machines start.
   */
  async function runToEnd(jobId: string): Promise<JobState> {
    const delivered = new Set<string>();
    for (let round = 0; round < 10; round += 1) {
      const running = (await stateOf(jobId)).datasets.filter((ds) => ds.instanceId !== undefined && !delivered.has(ds.instanceId));
      if (running.length === 0) break;
      for (const ds of running) {
        const instanceId = ds.instanceId as string;
        delivered.add(instanceId);
        expect(await runner.finished.get(`cmd-${instanceId}`)).toBe(0);
        for (let replay = 0; replay < 2; replay += 1) await onCommandStatusChange(platform, `cmd-${instanceId}`, instanceId, 'Success');
        for (let replay = 0; replay < 2; replay += 1) await onInstanceStateChange(platform, instanceId, 'terminated');
      }
    }
    return stateOf(jobId);
  }

  it('submits a chain\'s next stage once, into the next analysis\'s bucket, as the same user, and links both jobs', async () => {
    for (const name of ['a.csv', 'b.csv']) await put('chain-one', `lab/inputs/${name}`, `x,y\n1,${name}\n`);
    await put('chain-one', 'lab/configs/run.json', JSON.stringify({ mode: 'succeed' }));
    await put('chain-one', 'lab/submissions/alice/chainsubmit.json', JSON.stringify({ dataname: ['lab/inputs/a.csv', 'lab/inputs/b.csv'], configname: 'lab/configs/run.json' }));

    const { jobId } = await onSubmissionUploaded(platform, 'chain-one', buckets['chain-one'] as string, 'lab/submissions/alice/chainsubmit.json');
    const first = await runToEnd(jobId);
    expect(first.phase).toBe('DONE');

    // Stage 2's submissions, inputs and config are in chain-two's bucket, under alice's prefix (D1).
    const submissions = await keysUnder('chain-two', 'lab/submissions/');
    expect(submissions.map(([key]) => key)).toEqual([`lab/submissions/alice/chain-${jobId}-0-submit.json`, `lab/submissions/alice/chain-${jobId}-1-submit.json`]);
    expect(await keysUnder('chain-one', 'lab/submissions/alice/chain-')).toEqual([]);
    const submission = JSON.parse(await text('chain-two', submissions[0]?.[0] as string));
    expect(submission).toMatchObject({
      dataname: `lab/inputs/chain-${jobId}/a.csv/result.json`,
      configname: `lab/configs/chain-${jobId}.json`,
      neurocaas_chain: { parentJobId: jobId, parentAnalysis: 'chain-one', stage: 2, ledgerKey: `${jobId}~chain-two~0` },
    });
    expect(JSON.parse(await text('chain-two', submission.dataname))).toMatchObject({ dataset: 'a.csv', jobId });

    // A replayed end of stage 1 (the reaper's tick, a late EC2 event) submits nothing again.
    const lastMachine = first.datasets.at(-1)?.instanceId as string;
    await onInstanceStateChange(platform, lastMachine, 'terminated');
    await platform.driver.recover(jobId);
    expect(await keysUnder('chain-two', 'lab/submissions/')).toEqual(submissions);

    // S3 notifies chain-two's submit protocol; the event may come twice: one job each.
    const nextJobs: string[] = [];
    for (const [key] of submissions) {
      const once = await onSubmissionUploaded(platform, 'chain-two', buckets['chain-two'] as string, key as string);
      const twice = await onSubmissionUploaded(platform, 'chain-two', buckets['chain-two'] as string, key as string);
      expect(twice).toEqual({ jobId: once.jobId, duplicate: true });
      nextJobs.push(once.jobId);
    }
    for (const next of nextJobs) {
      const record = await platform.jobs.get(next);
      expect(record?.bucket).toBe(buckets['chain-two']);
      expect(record?.state.plan).toMatchObject({ user: 'alice', group: 'lab', instanceType: 't3.small', chain: { stage: 2, parent: { jobId, analysis: 'chain-one' } } });
      expect((await runToEnd(next)).phase).toBe('DONE');
    }

    // The first job's certificate names both next jobs and how they ended; their provenance names it.
    const certificate = await text('chain-one', jobKeys('lab', 'chain-one', jobId).certificate);
    for (const next of nextJobs) {
      expect(certificate).toContain(`chain: next stage chain-two is job ${next}`);
      expect(certificate).toContain(`chain: next stage chain-two job ${next} SUCCEEDED`);
      const provenance = JSON.parse(await text('chain-two', jobKeys('lab', 'chain-two', next).provenance));
      expect(provenance).toMatchObject({ chain: { stage: 2, parent: { jobId, analysis: 'chain-one' } } });
    }
    expect((await stateOf(jobId)).followOns?.map((f) => f.outcome)).toEqual(['SUCCEEDED', 'SUCCEEDED']);

    // Each stage settled its own ledger entry, once.
    const entries = await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7));
    const chainEntries = entries.filter((e) => e.jobId === jobId || e.jobId.startsWith(`${jobId}~`));
    expect(chainEntries.map((e) => e.jobId).sort()).toEqual([jobId, `${jobId}~chain-two~0`, `${jobId}~chain-two~1`]);
    for (const entry of chainEntries) expect(entry.spentUsd).toBeGreaterThan(0);
    for (const [index, next] of nextJobs.entries()) {
      expect(chainEntries.find((e) => e.jobId === `${jobId}~chain-two~${index}`)?.spentUsd).toBe((await stateOf(next)).spentUsd);
    }
  });

  it('refuses a second submission that claims a share of the chain already taken', async () => {
    const [[chainKey]] = (await keysUnder('chain-two', 'lab/submissions/alice/chain-')) as [[string, string]];
    const claim = JSON.parse(await text('chain-two', chainKey));
    await put('chain-two', 'lab/submissions/alice/againsubmit.json', JSON.stringify(claim));
    const { jobId } = await onSubmissionUploaded(platform, 'chain-two', buckets['chain-two'] as string, 'lab/submissions/alice/againsubmit.json');
    const state = await stateOf(jobId);
    expect(state.phase).toBe('REJECTED');
    expect(state.rejection?.join()).toMatch(/already continues it with this share of its reservation/);
  });

  it('runs an ensemble\'s replicas on their own machines, then one consensus over every replica', async () => {
    await put('pose-ens', 'lab/inputs/video.csv', 'frame,x\n1,2\n');
    await put('pose-ens', 'lab/configs/run.json', JSON.stringify({ mode: 'succeed' }));
    await put('pose-ens', 'lab/submissions/alice/enssubmit.json', JSON.stringify({ dataname: 'lab/inputs/video.csv', configname: 'lab/configs/run.json' }));
    const { jobId } = await onSubmissionUploaded(platform, 'pose-ens', buckets['pose-ens'] as string, 'lab/submissions/alice/enssubmit.json');

    const started = await stateOf(jobId);
    // Three replica machines at once; the consensus waits.
    expect(started.datasets.map((ds) => [ds.name, ds.phase])).toEqual([
      ['replica-0', 'RUNNING'],
      ['replica-1', 'RUNNING'],
      ['replica-2', 'RUNNING'],
      ['consensus', 'PENDING'],
    ]);
    const replicaSpecs = started.datasets.slice(0, 3).map((ds) => runner.specs.get(`cmd-${ds.instanceId}`));
    expect(replicaSpecs.map((spec) => spec?.replica)).toEqual([0, 1, 2]);
    expect(new Set(replicaSpecs.map((spec) => spec?.seed)).size).toBe(3);

    const done = await runToEnd(jobId);
    expect(done.phase).toBe('DONE');
    expect(done.datasets.map((ds) => ds.phase)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);

    // One consensus machine, however often the replicas' events came.
    const reservations = (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:neurocaas:job', Values: [jobId] }] }))).Reservations ?? [];
    const datasetsLaunched = reservations.flatMap((r) => r.Instances ?? []).map((i) => i.Tags?.find((t) => t.Key === 'neurocaas:dataset')?.Value);
    expect(datasetsLaunched.sort()).toEqual(['consensus', 'replica-0', 'replica-1', 'replica-2']);

    const keys = jobKeys('lab', 'pose-ens', jobId);
    expect(JSON.parse(await text('pose-ens', `${keys.datasetResultsPrefix('consensus')}consensus.json`))).toEqual({ replicas: ['replica-0', 'replica-1', 'replica-2'] });
    expect(await text('pose-ens', keys.certificate)).toMatch(/consensus: 3 of 3 replicas succeeded/);
    const [entry] = (await new DynamoLedger(doc, table).entries('alice', new Date().toISOString().slice(0, 7))).filter((e) => e.jobId === jobId);
    expect(entry?.spentUsd).toBe(done.spentUsd);
  });
});
