import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { launchCutoffMs, LaunchOutcomeUnknownError, LaunchRefusedError, launchWindowClosedError, MachineLaunchError } from '../../lib/core/errors.js';
import { LAUNCH_RETRY_MS } from '../../lib/core/job-machine.js';
import { jobKeys } from '../../lib/core/keys.js';
import type { JobState } from '../../lib/core/job-machine.js';
import { LocalJobStore } from '../../lib/local/job-store.js';
import { LocalLedger } from '../../lib/local/ledger.js';
import { StateDb } from '../../lib/local/state-db.js';
import { LocalObjectStore } from '../../lib/local/object-store.js';
import type { ImageFacts } from '../../lib/core/image-recipe.js';
import type { Catalog, CommandRunner, LaunchRequest, Machines, MachineState, RunnerSpec, ScheduledAction } from '../../lib/ports.js';
import { JobDriver, type DriverPorts } from '../../protocols/driver.js';
import { alice, blueprintFixture } from '../support/core-fixtures.js';

/** Machines that do what they are told and remember it; `failNext` simulates a crash mid-effect. */
class FakeCloud implements Machines, CommandRunner {
  launches: LaunchRequest[] = [];
  byToken = new Map<string, string>();
  terminated = new Set<string>();
  commands: RunnerSpec[] = [];
  failNext: string | undefined;
  /** A call that keeps failing (throttling or 5xx that outlasted the SDK's retries) until cleared. */
  failing: string | undefined;
  launchError: string | MachineLaunchError | undefined;
  /**
   * Launches answered by a 5xx: 'started' ones after EC2 started the machine (once per token),
   * 'nothing' ones before. Refused like every adapter once the launch window has closed.
   */
  unclear: 'started' | 'nothing' | undefined;
  /** Every launch answer is lost, even one that would return the token's machine. */
  answersLost = false;
  online = true;
  constructor(private readonly nowMs: () => number = Date.now) {}

  async launch(request: LaunchRequest) {
    this.crashIf('launch');
    if (typeof this.launchError === 'string') throw new MachineLaunchError(this.launchError);
    if (this.launchError) throw this.launchError;
    this.launches.push(request);
    const existing = this.byToken.get(request.clientToken);
    if (this.answersLost && existing !== undefined) throw new LaunchOutcomeUnknownError('DescribeInstances: InternalError: An internal error has occurred');
    if (existing === undefined && this.nowMs() >= launchCutoffMs(request)) throw launchWindowClosedError({ ...request, launchByMs: launchCutoffMs(request) });
    if (this.unclear !== undefined && existing === undefined) {
      if (this.unclear === 'started') this.byToken.set(request.clientToken, `i-${this.byToken.size}`);
      throw new LaunchOutcomeUnknownError(`could not launch ${request.instanceType} in subnet-a for dataset ${request.dataset}: InternalError: An internal error has occurred`);
    }
    const instanceId = existing ?? `i-${this.byToken.size}`;
    this.byToken.set(request.clientToken, instanceId);
    return { instanceId, instanceType: request.instanceType };
  }
  async findLaunched(clientToken: string) {
    const instanceId = this.byToken.get(clientToken);
    return instanceId === undefined ? undefined : { instanceId, instanceType: 'm5.xlarge' };
  }
  async terminate(instanceId: string): Promise<MachineState> {
    this.crashIf('terminate');
    this.terminated.add(instanceId);
    return 'terminated';
  }
  async describe(instanceId: string) {
    return { instanceId, state: (this.terminated.has(instanceId) ? 'terminated' : 'running') as MachineState };
  }
  async listExpired() {
    return [];
  }
  async isAgentOnline() {
    return this.online;
  }
  async sendCommand(_instanceId: string, spec: RunnerSpec) {
    this.crashIf('command');
    this.commands.push(spec);
    return { commandId: `c-${this.commands.length}` };
  }
  private crashIf(what: string) {
    if (this.failing === what) throw new Error(`simulated ${what} failure: ThrottlingException: Rate exceeded`);
    if (this.failNext === what) {
      this.failNext = undefined;
      throw new Error(`simulated crash during ${what}`);
    }
  }
  /** Distinct machines ever created. */
  get machineCount() {
    return new Set(this.byToken.values()).size;
  }
}

function setup(options: { budgetUsd?: number; imageFacts?: ImageFacts } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'ncap-driver-'));
  const objects = new LocalObjectStore(join(root, 'buckets'));
  const state = new StateDb(join(root, 'state', 'neurocaas.db'));
  let now = Date.UTC(2026, 10, 22, 12);
  const cloud = new FakeCloud(() => now);
  const scheduled: ScheduledAction[] = [];
  const blueprint = blueprintFixture();
  const catalog: Catalog = {
    blueprint: async (name) => (name === blueprint.name ? { blueprint, versionId: 'sha256:feed' } : undefined),
    usersOfGroup: async (group) => (group === 'lab' ? [{ ...alice, budgetUsd: options.budgetUsd ?? alice.budgetUsd }] : []),
    user: async () => undefined,
    imageId: () => 'ami-0123456789abcdef0',
    ...(options.imageFacts ? { imageFacts: () => options.imageFacts } : {}),
  };
  const ports: DriverPorts = {
    objects,
    jobs: new LocalJobStore(state),
    ledger: new LocalLedger(state),
    machines: cloud,
    runner: cloud,
    scheduler: { schedule: async (_at, action) => void scheduled.push(action) },
    catalog,
    clock: { nowMs: () => (now += 1000) },
    ids: { jobId: () => `J${scheduled.length}-${Math.random().toString(16).slice(2, 8)}` },
  };
  const driver = new JobDriver(ports);
  const submit = async (body: unknown, key = 'lab/submissions/runsubmit.json') => {
    await objects.put('kalman-smoother', key, JSON.stringify(body));
    return driver.submit('kalman-smoother', key);
  };
  /** Lets virtual time pass and delivers a Tick, as the reaper does. */
  const tick = async (jobId: string, ms: number) => {
    now += ms;
    return driver.dispatch(jobId, { type: 'Tick', atMs: now });
  };
  return { root, objects, cloud, driver, ports, submit, scheduled, tick };
}

async function stage(objects: LocalObjectStore, n: number) {
  for (let i = 0; i < n; i += 1) await objects.put('kalman-smoother', `lab/inputs/d${i}.csv`, `data ${i}`);
  await objects.put('kalman-smoother', 'lab/configs/c.json', '{"frameRateHz": 30}');
}

const submission = (n: number) => ({ dataname: Array.from({ length: n }, (_, i) => `lab/inputs/d${i}.csv`), configname: 'lab/configs/c.json' });

async function finishCommands(driver: JobDriver, jobId: string, cloud: FakeCloud): Promise<JobState> {
  let state: JobState | undefined;
  for (const spec of cloud.commands) {
    state = await driver.dispatch(jobId, { type: 'CommandFinished', atMs: Date.UTC(2026, 10, 22, 12, 30), dataset: spec.dataset, exitCode: 0, timedOut: false, logTail: [] });
  }
  return state as JobState;
}

describe('job driver', () => {
  it('applies an event that a second driver with an older copy of the job receives (two Lambda containers)', async () => {
    const { objects, cloud, ports, submit } = setup();
    await stage(objects, 1);
    cloud.online = false;
    const { jobId } = await submit(submission(1));
    // The monitor's container saw the job while its machine was still booting.
    const monitor = new JobDriver(ports);
    await monitor.dispatch(jobId, { type: 'Tick', atMs: Date.UTC(2026, 10, 22, 12, 1) });
    cloud.online = true;
    const booting = (await ports.jobs.get(jobId))?.state.datasets[0];
    await new JobDriver(ports).checkAgent({ jobId, dataset: 'd0.csv', instanceId: booting?.instanceId as string, expiresAtMs: Date.UTC(2027, 0, 1) });
    expect((await ports.jobs.get(jobId))?.state.datasets[0]?.phase).toBe('RUNNING');

    const state = await monitor.dispatch(jobId, { type: 'CommandFinished', atMs: Date.UTC(2026, 10, 22, 12, 5), dataset: 'd0.csv', exitCode: 0, timedOut: false, logTail: [] });

    expect(state.datasets[0]?.phase).toBe('SUCCEEDED');
  });

  it('runs a submission to the end and writes every result file', async () => {
    const { objects, cloud, driver, submit } = setup();
    await stage(objects, 2);
    const { jobId } = await submit(submission(2));
    expect(cloud.commands.map((c) => c.dataset).sort()).toEqual(['d0.csv', 'd1.csv']);
    // The runner reads the validated config as JSON from the job folder.
    expect(JSON.parse((await objects.get('kalman-smoother', cloud.commands[0]?.configKey as string)).toString())).toEqual({ frameRateHz: 30 });
    const state = await finishCommands(driver, jobId, cloud);
    expect(state.phase).toBe('DONE');
    const keys = jobKeys('lab', 'kalman-smoother', jobId);
    const provenance = JSON.parse((await objects.get('kalman-smoother', keys.provenance)).toString());
    expect(provenance.inputs.map((i: { sha256: string }) => i.sha256)).toEqual([undefined, undefined]);
    expect(provenance.blueprint.versionId).toBe('sha256:feed');
    expect((await objects.get('kalman-smoother', keys.end)).toString()).toContain('SUCCEEDED');
    expect(cloud.terminated).toEqual(new Set(['i-0', 'i-1']));
  });

  it('records in provenance the image the catalog says the deploy built: recipe hash and base image', async () => {
    const image: ImageFacts = {
      source: 'recipe',
      recipeHash: `sha256:${'cd'.repeat(32)}`,
      baseImage: { parameter: '/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id', imageId: 'ami-0base000000000001' },
    };
    const { objects, cloud, driver, submit } = setup({ imageFacts: image });
    await stage(objects, 1);
    const { jobId } = await submit(submission(1));
    await finishCommands(driver, jobId, cloud);
    const provenance = JSON.parse((await objects.get('kalman-smoother', jobKeys('lab', 'kalman-smoother', jobId).provenance)).toString());
    expect(provenance.image).toEqual({ id: 'ami-0123456789abcdef0', ...image });
    expect(provenance.environment.imageId).toBe('ami-0123456789abcdef0');
  });

  it('lists every job of the user with its analysis in the budget view, not only the job that wrote it last (D4)', async () => {
    const { objects, cloud, driver, submit } = setup();
    await stage(objects, 1);
    const first = await submit(submission(1));
    await finishCommands(driver, first.jobId, cloud);
    cloud.commands.length = 0;
    const second = await submit(submission(1), 'lab/submissions/run2submit.json');
    await finishCommands(driver, second.jobId, cloud);
    const view = JSON.parse((await objects.get('kalman-smoother', 'lab/budget/alice.json')).toString()) as { jobs: { jobId: string; analysis?: string; settled: boolean }[] };
    expect(view.jobs.map((job) => [job.jobId, job.analysis, job.settled]).sort()).toEqual([
      [first.jobId, 'kalman-smoother', true],
      [second.jobId, 'kalman-smoother', true],
    ].sort());
  });

  it('processes the same submission object once', async () => {
    const { objects, cloud, driver, submit } = setup();
    await stage(objects, 1);
    const first = await submit(submission(1));
    const again = await driver.submit('kalman-smoother', 'lab/submissions/runsubmit.json');
    expect(again).toEqual({ jobId: first.jobId, duplicate: true });
    expect(cloud.launches).toHaveLength(1);
  });

  it('finishes a submission whose first handling crashed after the claim', async () => {
    const { objects, cloud, ports } = setup();
    await stage(objects, 1);
    // The crash: the claim was taken, the job never evaluated (the record stayed NEW).
    const failing = new JobDriver({ ...ports, catalog: { ...ports.catalog, blueprint: async () => Promise.reject(new Error('network down')) } });
    await objects.put('kalman-smoother', 'lab/submissions/runsubmit.json', JSON.stringify(submission(1)));
    await expect(failing.submit('kalman-smoother', 'lab/submissions/runsubmit.json')).rejects.toThrow('network down');
    const retried = await new JobDriver(ports).submit('kalman-smoother', 'lab/submissions/runsubmit.json');
    expect(retried.duplicate).toBe(false);
    expect(cloud.launches).toHaveLength(1);
    const again = await new JobDriver(ports).submit('kalman-smoother', 'lab/submissions/runsubmit.json');
    expect(again).toEqual({ jobId: retried.jobId, duplicate: true });
  });

  it('writes the reason of an unparsable submission where the researcher looks', async () => {
    const { objects, driver, cloud } = setup();
    await objects.put('kalman-smoother', 'lab/submissions/badsubmit.json', '{ not json');
    const { jobId } = await driver.submit('kalman-smoother', 'lab/submissions/badsubmit.json');
    const certificate = (await objects.get('kalman-smoother', jobKeys('lab', 'kalman-smoother', jobId).certificate)).toString();
    expect(certificate).toContain('REJECTED, nothing was launched');
    expect(certificate).toContain('lab/submissions/badsubmit.json is not valid JSON');
    expect(cloud.launches).toHaveLength(0);
  });

  it('rejects an over-budget job without launching and leaves the ledger untouched', async () => {
    const { objects, cloud, submit, ports } = setup({ budgetUsd: 0.01 });
    await stage(objects, 1);
    const { jobId } = await submit(submission(1));
    const record = await ports.jobs.get(jobId);
    expect(record?.state.phase).toBe('REJECTED');
    expect(record?.state.rejection?.[0]).toContain('over budget');
    expect(cloud.launches).toHaveLength(0);
    expect(await ports.ledger.entries('alice', '2026-11')).toEqual([]);
  });

  it('recovers from a crash between saving an effect and carrying it out, without a second machine', async () => {
    const { objects, cloud, submit, ports } = setup();
    await stage(objects, 1);
    cloud.failNext = 'command';
    const { jobId } = await submit(submission(1));
    const stuck = await ports.jobs.get(jobId);
    expect(stuck?.outbox.map((p) => p.effect.type)).toEqual(['SendCommand']);
    expect(cloud.commands).toHaveLength(0);
    // A fresh driver (a new Lambda, a restarted CLI) replays the outbox.
    const revived = new JobDriver(ports);
    await revived.recover(jobId);
    expect(cloud.commands).toHaveLength(1);
    const state = await finishCommands(revived, jobId, cloud);
    expect(state.phase).toBe('DONE');
    expect(cloud.machineCount).toBe(1);
    expect((await ports.jobs.get(jobId))?.outbox).toEqual([]);
  });

  it('replays a launch after a crash with the same client token', async () => {
    const { objects, cloud, submit, ports } = setup();
    await stage(objects, 1);
    cloud.failNext = 'launch';
    const { jobId } = await submit(submission(1));
    expect((await ports.jobs.get(jobId))?.outbox.map((p) => p.effect.type)).toEqual(['LaunchInstance']);
    await new JobDriver(ports).recover(jobId);
    await new JobDriver(ports).recover(jobId);
    expect(cloud.machineCount).toBe(1);
    expect(new Set(cloud.launches.map((l) => l.clientToken)).size).toBe(1);
  });

  it('turns a refused launch into a FAILED dataset with the reason and settles at once', async () => {
    const { objects, cloud, submit, ports } = setup();
    await stage(objects, 1);
    cloud.launchError = new LaunchRefusedError("could not launch m5.xlarge in subnet-a for dataset d0.csv: InvalidAMIID.NotFound: The image id '[ami-0bad]' does not exist");
    const { jobId } = await submit(submission(1));
    const state = (await ports.jobs.get(jobId))?.state;
    expect(state?.phase).toBe('DONE');
    expect(state?.datasets[0]?.reason).toBe("machine could not be launched: could not launch m5.xlarge in subnet-a for dataset d0.csv: InvalidAMIID.NotFound: The image id '[ami-0bad]' does not exist");
    expect((await ports.ledger.entries('alice', '2026-11'))[0]?.spentUsd).toBe(0);
  });

  it('sends a launch answered by a 5xx again with the same token and runs on the machine EC2 had started', async () => {
    const { objects, cloud, submit, ports, tick } = setup();
    await stage(objects, 1);
    cloud.unclear = 'started';
    const { jobId } = await submit(submission(1));
    expect((await ports.jobs.get(jobId))?.state.datasets[0]).toMatchObject({ phase: 'LAUNCHING', machine: 'requested' });

    cloud.unclear = undefined;
    const state = await tick(jobId, LAUNCH_RETRY_MS);

    expect(state.datasets[0]).toMatchObject({ phase: 'RUNNING', machine: 'up', instanceId: 'i-0' });
    expect(cloud.machineCount).toBe(1);
    expect(new Set(cloud.launches.map((l) => l.clientToken))).toEqual(new Set([state.datasets[0]?.clientToken]));
  });

  it('ends and settles a job whose launches only ever got 5xx answers, once the lookups prove no machine started', async () => {
    const { objects, cloud, submit, ports, tick } = setup();
    await stage(objects, 1);
    cloud.unclear = 'nothing';
    const { jobId } = await submit(submission(1));
    let state = (await ports.jobs.get(jobId))?.state as JobState;
    // Bounded: each attempt takes its window (5 min) and the settle time (1 min) at most.
    for (let minute = 0; minute < 60 && state.phase !== 'DONE'; minute += 1) state = await tick(jobId, 61_000);

    expect(state.phase).toBe('DONE');
    expect(state.datasets[0]?.phase).toBe('FAILED');
    expect(state.datasets[0]?.failure?.kind).toBe('platform');
    expect(cloud.machineCount).toBe(0);
    // Every attempt's token was sent and then looked up, never more attempts than allowed.
    const attempts = new Set(cloud.launches.map((l) => l.clientToken));
    expect(attempts.size).toBe(1 + (state.plan?.platformRetries ?? 0));
    expect((await ports.ledger.entries('alice', '2026-11'))[0]?.spentUsd).toBe(0);
  });

  it('finds, terminates and pays for the machine a launch started when every answer was lost, and still ends', async () => {
    const { objects, cloud, submit, ports, tick } = setup();
    await stage(objects, 1);
    cloud.unclear = 'started';
    cloud.answersLost = true;
    const { jobId } = await submit(submission(1));
    let state = (await ports.jobs.get(jobId))?.state as JobState;
    for (let minute = 0; minute < 20 && state.phase !== 'DONE'; minute += 1) state = await tick(jobId, 61_000);

    expect(state.phase).toBe('DONE');
    expect(state.datasets[0]?.phase).toBe('FAILED');
    // The lookup after the window found it: a machine nobody had an answer for is not left running.
    expect(state.datasets[0]?.strays?.map((stray) => stray.instanceId)).toEqual(['i-0']);
    expect(cloud.terminated).toEqual(new Set(['i-0']));
    expect((await ports.ledger.entries('alice', '2026-11'))[0]?.spentUsd).toBeGreaterThan(0);
    expect(state.spentUsd).toBeGreaterThan(0);
  });

  it('keeps one launch per dataset in the outbox while its sends keep failing, however often the job is ticked', async () => {
    // Regression (simulation, brutal faults): every tick re-sent the pending launches and added
    // another copy of each to the outbox, so a job whose sends kept failing grew its outbox
    // without bound (hundreds of launches a job), each invocation had more calls to carry out and
    // finished none: the job never ended (and a DynamoDB item stops growing at 400 KB).
    const { objects, cloud, submit, ports, tick } = setup();
    await stage(objects, 2);
    cloud.failing = 'launch';
    const { jobId } = await submit(submission(2));
    for (let n = 0; n < 5; n += 1) await tick(jobId, LAUNCH_RETRY_MS);

    const launches = (await ports.jobs.get(jobId))?.outbox.filter((p) => p.effect.type === 'LaunchInstance') ?? [];
    expect(launches.map((p) => p.effect.type === 'LaunchInstance' && p.effect.dataset).sort()).toEqual(['d0.csv', 'd1.csv']);

    cloud.failing = undefined;
    const state = await tick(jobId, LAUNCH_RETRY_MS);
    expect(state.datasets.map((ds) => ds.machine)).toEqual(['up', 'up']);
    expect(cloud.machineCount).toBe(2);
    expect((await ports.jobs.get(jobId))?.outbox.filter((p) => p.effect.type === 'LaunchInstance')).toEqual([]);
  });

  it('keeps a failed effect in the outbox and retries it on the next event', async () => {
    const { objects, cloud, driver, submit, ports } = setup();
    await stage(objects, 1);
    const { jobId } = await submit(submission(1));
    cloud.failNext = 'terminate';
    await finishCommands(driver, jobId, cloud);
    expect((await ports.jobs.get(jobId))?.outbox.map((p) => p.effect.type)).toContain('TerminateInstance');
    const state = await driver.dispatch(jobId, { type: 'Tick', atMs: Date.UTC(2026, 10, 22, 12, 31) });
    expect(state.phase).toBe('DONE');
    expect(cloud.terminated.has('i-0')).toBe(true);
  });
});
