import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobState } from '../../lib/core/job-machine.js';
import { jobKeys } from '../../lib/core/keys.js';
import { LocalJobStore } from '../../lib/local/job-store.js';
import { LocalLedger } from '../../lib/local/ledger.js';
import { LocalObjectStore } from '../../lib/local/object-store.js';
import { StateDb } from '../../lib/local/state-db.js';
import type { Catalog, CommandRunner, LaunchRequest, Machines, MachineState, PutOptions, RunnerSpec } from '../../lib/ports.js';
import { JobDriver, type DriverPorts } from '../../protocols/driver.js';
import { alice, blueprintFixture } from '../support/core-fixtures.js';

/** Machines that start at once and whose commands the test finishes; results are written like the runner. */
class Cloud implements Machines, CommandRunner {
  commands: RunnerSpec[] = [];
  launches: LaunchRequest[] = [];
  private tokens = new Map<string, string>();
  async launch(request: LaunchRequest) {
    this.launches.push(request);
    const instanceId = this.tokens.get(request.clientToken) ?? `i-${this.tokens.size}`;
    this.tokens.set(request.clientToken, instanceId);
    return { instanceId, instanceType: request.instanceType };
  }
  async findLaunched(clientToken: string) {
    const instanceId = this.tokens.get(clientToken);
    return instanceId === undefined ? undefined : { instanceId, instanceType: 'm5.xlarge' };
  }
  async terminate(): Promise<MachineState> {
    return 'terminated';
  }
  async describe(instanceId: string) {
    return { instanceId, state: 'terminated' as MachineState };
  }
  async listExpired() {
    return [];
  }
  async isAgentOnline() {
    return true;
  }
  async sendCommand(_id: string, spec: RunnerSpec) {
    this.commands.push(spec);
    return { commandId: `c-${this.commands.length}` };
  }
}

/** An object store that fails the writes a test names, once each: a crash in the middle of an effect. */
class CrashingObjects extends LocalObjectStore {
  crashOn: ((bucket: string, key: string) => boolean) | undefined;
  override async put(bucket: string, key: string, body: string | Uint8Array, options?: PutOptions) {
    if (this.crashOn?.(bucket, key)) {
      this.crashOn = undefined;
      throw new Error(`simulated crash writing ${bucket}/${key}`);
    }
    return super.put(bucket, key, body, options);
  }
}

const stageOne = blueprintFixture({
  name: 'stage-one',
  followOn: { analysis: 'stage-two', inputs: { file: 'out.txt', grouping: 'perDataset' }, config: { level: 2 } },
  config: { jsonSchema: { type: 'object' } },
});
const stageTwo = blueprintFixture({ name: 'stage-two', config: { jsonSchema: { type: 'object' } } });

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function setup() {
  const root = mkdtempSync(join(tmpdir(), 'ncap-chain-driver-'));
  roots.push(root);
  const objects = new CrashingObjects(join(root, 'buckets'));
  const db = new StateDb(join(root, 'state', 'neurocaas.db'));
  const cloud = new Cloud();
  const ledger = new LocalLedger(db);
  const started: string[] = [];
  const catalog: Catalog = {
    blueprint: async (name) => {
      const blueprint = name === 'stage-one' ? stageOne : name === 'stage-two' ? stageTwo : undefined;
      return blueprint ? { blueprint, versionId: `sha256:${name}` } : undefined;
    },
    usersOfGroup: async () => [alice],
    user: async (name) => (name === 'alice' ? alice : undefined),
    imageId: () => 'ami-0123456789abcdef0',
  };
  let now = Date.UTC(2026, 10, 22, 12);
  let ids = 0;
  const ports: DriverPorts = {
    objects,
    jobs: new LocalJobStore(db),
    ledger,
    machines: cloud,
    runner: cloud,
    scheduler: { schedule: async () => undefined },
    catalog,
    clock: { nowMs: () => (now += 1000) },
    ids: { jobId: () => `J${(ids += 1)}` },
    submitFollowOn: async (_bucket, key) => void started.push(key),
  };
  const driver = new JobDriver(ports);
  return { objects, cloud, ledger, driver, started, ports };
}

async function runFirstStage(env: ReturnType<typeof setup>): Promise<string> {
  const { objects, driver } = env;
  for (const name of ['a.txt', 'b.txt']) await objects.put('stage-one', `lab/inputs/${name}`, name);
  await objects.put('stage-one', 'lab/configs/c.json', '{}');
  await objects.put('stage-one', 'lab/submissions/alice/runsubmit.json', JSON.stringify({ dataname: ['lab/inputs/a.txt', 'lab/inputs/b.txt'], configname: 'lab/configs/c.json' }));
  const { jobId } = await driver.submit('stage-one', 'lab/submissions/alice/runsubmit.json', { username: 'alice' });
  return jobId;
}

/** Finishes every command of `jobId`, writing out.txt as the runner would. */
async function finish(env: ReturnType<typeof setup>, jobId: string, analysis: string): Promise<JobState> {
  let state: JobState | undefined;
  for (const spec of env.cloud.commands.filter((c) => c.jobId === jobId)) {
    await env.objects.put(analysis, `${spec.resultsPrefix}out.txt`, `result of ${spec.dataset}`).catch(() => undefined);
    state = await env.driver
      .dispatch(jobId, { type: 'CommandFinished', atMs: Date.UTC(2026, 10, 22, 12, 30), dataset: spec.dataset, exitCode: 0, timedOut: false, logTail: [] })
      .catch(() => undefined);
  }
  return (await env.ports.jobs.get(jobId))?.state ?? (state as JobState);
}

describe('chains in the driver', () => {
  it('submits one next-stage job per dataset, as the same user, with the declared config', async () => {
    const env = setup();
    const jobId = await runFirstStage(env);
    await finish(env, jobId, 'stage-one');
    expect(env.started).toEqual([`lab/submissions/alice/chain-${jobId}-0-submit.json`, `lab/submissions/alice/chain-${jobId}-1-submit.json`]);
    const submission = JSON.parse((await env.objects.get('stage-two', env.started[0]!)).toString());
    expect(submission).toMatchObject({
      dataname: `lab/inputs/chain-${jobId}/a.txt/out.txt`,
      configname: `lab/configs/chain-${jobId}.json`,
      neurocaas_chain: { parentJobId: jobId, parentAnalysis: 'stage-one', stage: 2, ledgerKey: `${jobId}~stage-two~0` },
    });
    expect((await env.objects.get('stage-two', submission.dataname)).toString()).toBe('result of a.txt');
    expect(JSON.parse((await env.objects.get('stage-two', submission.configname)).toString())).toEqual({ level: 2 });
  });

  it('hands each next job its share of the reservation before this stage settles', async () => {
    const env = setup();
    const jobId = await runFirstStage(env);
    await finish(env, jobId, 'stage-one');
    const entries = await env.ledger.entries('alice', '2026-11');
    const first = entries.find((e) => e.jobId === jobId);
    const shares = entries.filter((e) => e.jobId.startsWith(`${jobId}~`));
    expect(first?.settledAtMs).toBeDefined();
    expect(shares).toHaveLength(2);
    expect(shares.every((e) => e.settledAtMs === undefined && e.reservedUsd > 0)).toBe(true);
  });

  it('after a crash in the middle of the hand-off, a replay submits each next job once and settles once', async () => {
    const env = setup();
    const jobId = await runFirstStage(env);
    // The second next-stage submission's write fails: the effect stays in the outbox.
    env.objects.crashOn = (bucket, key) => bucket === 'stage-two' && key.endsWith('-1-submit.json');
    await finish(env, jobId, 'stage-one');
    expect(env.started).toHaveLength(1);
    const beforeReplay = (await env.ledger.entries('alice', '2026-11')).find((e) => e.jobId === jobId);
    expect(beforeReplay?.settledAtMs).toBeUndefined();
    await env.driver.recover(jobId);
    await env.driver.recover(jobId);
    expect(env.started.filter((k) => k.endsWith('-1-submit.json'))).toHaveLength(1);
    const entries = await env.ledger.entries('alice', '2026-11');
    expect(entries.filter((e) => e.jobId === `${jobId}~stage-two~0`)).toHaveLength(1);
    expect(entries.find((e) => e.jobId === jobId)?.settledAtMs).toBeDefined();
    expect((await env.objects.get('stage-one', jobKeys('lab', 'stage-one', jobId).end)).toString()).toContain('SUCCEEDED');
  });

  it('the next job names the job it came from, settles its own share, and the first job\'s certificate names it', async () => {
    const env = setup();
    const jobId = await runFirstStage(env);
    await finish(env, jobId, 'stage-one');
    const { jobId: next } = await env.driver.submit('stage-two', env.started[0]!, { username: 'alice' });
    const state = await finish(env, next, 'stage-two');
    expect(state.phase).toBe('DONE');
    const provenance = JSON.parse((await env.objects.get('stage-two', jobKeys('lab', 'stage-two', next).provenance)).toString());
    expect(provenance.chain).toMatchObject({ stage: 2, parent: { jobId, analysis: 'stage-one' } });
    const share = (await env.ledger.entries('alice', '2026-11')).find((e) => e.jobId === `${jobId}~stage-two~0`);
    expect(share?.settledAtMs).toBeDefined();
    const certificate = (await env.objects.get('stage-one', jobKeys('lab', 'stage-one', jobId).certificate)).toString();
    expect(certificate).toContain(`chain: next stage stage-two is job ${next}`);
    expect(certificate).toContain(`chain: next stage stage-two job ${next} SUCCEEDED`);
  });

  it('refuses a submission that claims to continue a job it does not, launching nothing', async () => {
    const env = setup();
    await env.objects.put('stage-two', 'lab/inputs/x.txt', 'x');
    await env.objects.put('stage-two', 'lab/configs/c.json', '{}');
    const forged = { dataname: 'lab/inputs/x.txt', configname: 'lab/configs/c.json', neurocaas_chain: { parentJobId: 'nope', parentAnalysis: 'stage-one', stage: 2, ledgerKey: 'nope~stage-two~0' } };
    await env.objects.put('stage-two', 'lab/submissions/alice/forgedsubmit.json', JSON.stringify(forged));
    const { jobId } = await env.driver.submit('stage-two', 'lab/submissions/alice/forgedsubmit.json', { username: 'alice' });
    const state = (await env.ports.jobs.get(jobId))?.state;
    expect(state?.phase).toBe('REJECTED');
    expect(state?.rejection?.join()).toContain('this submission continues job nope, but no such job ran');
    expect(env.cloud.launches).toHaveLength(0);
  });
});
