import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { initialJobState, jobOutcome, reduceJob, type JobEvent, type JobState } from '../../../lib/core/job-machine.js';
import { planJob, type JobPlan, followOnConfigProblems } from '../../../lib/core/plan.js';
import { buildRunnerSpec, runnerEnvironment } from '../../../lib/core/runner-spec.js';
import { T0, alice, applyAll, blueprintFixture, effectsOf } from '../../support/core-fixtures.js';

const MIN = 60_000;
const ensembleBlueprint = blueprintFixture({
  name: 'pose-ens',
  protocol: 'ensemble',
  ensemble: { size: 3, maxSize: 5, minSucceeded: 2, consensus: { command: ['node', 'consensus.mjs'] } },
  limits: { timeoutMinutes: 60, maxConcurrentMachines: 8, agentWaitMinutes: 10, maxDatasetsPerJob: 10 },
  config: { jsonSchema: { type: 'object' } },
});

function ensemblePlan(config: Record<string, unknown> = {}, datasets = 1) {
  const keys = Array.from({ length: datasets }, (_, i) => `lab/inputs/v${i}.npz`);
  const objects = new Map(keys.map((key) => [key, { size: 10, etag: `e-${key}` }]));
  objects.set('lab/configs/c.json', { size: 2, etag: 'e-c' });
  return planJob({
    jobId: 'job1',
    analysis: 'pose-ens',
    group: 'lab',
    submissionKey: 'lab/submissions/alice/submit.json',
    submission: { dataname: keys, configname: 'lab/configs/c.json' },
    user: alice,
    blueprint: ensembleBlueprint,
    blueprintHash: 'sha256:00',
    objects,
    configText: JSON.stringify(config),
    imageId: 'ami-0123456789abcdef0',
    nowMs: T0,
  });
}

function okPlan(config: Record<string, unknown> = {}): JobPlan {
  const result = ensemblePlan(config);
  if (!result.ok) throw new Error(result.reasons.join('\n'));
  return result.plan;
}

/** A replica's (or the consensus's) machine from launch to termination, with its exit code. */
function machineRun(dataset: string, t: number, exitCode = 0): JobEvent[] {
  const instanceId = `i-${dataset}`;
  return [
    { type: 'InstanceLaunched', atMs: t, dataset, instanceId, instanceType: 'm5.xlarge' },
    { type: 'AgentOnline', atMs: t + MIN, dataset, instanceId },
    { type: 'CommandStarted', atMs: t + MIN + 100, dataset, commandId: `c-${dataset}` },
    { type: 'CommandFinished', atMs: t + 5 * MIN, dataset, exitCode, timedOut: false, logTail: ['done'] },
    { type: 'InstanceStateChanged', atMs: t + 5 * MIN + 500, instanceId, state: 'terminated' },
  ];
}

const fresh = (): JobState => initialJobState('job1', 'pose-ens', 'lab', T0);
const accepted = (plan: JobPlan): JobEvent[] => [
  { type: 'SubmissionReceived', atMs: T0, plan },
  { type: 'BudgetReserved', atMs: T0 + 10 },
];

describe('ensemble plans', () => {
  it('plans the blueprint\'s number of replicas plus the consensus, and reserves for all of them', () => {
    const plan = okPlan();
    expect(plan.datasets.map((ds) => ds.name)).toEqual(['replica-0', 'replica-1', 'replica-2', 'consensus']);
    expect(plan.datasets.every((ds) => ds.inputKey === 'lab/inputs/v0.npz')).toBe(true);
    expect(plan.ensemble).toEqual({ dataset: 'v0.npz', size: 3, minSucceeded: 2, consensusCommand: ['node', 'consensus.mjs'] });
    // instance + 50 GiB gp3 root volume, for the timeout + a reaper period + termination
    expect(plan.reservedUsd).toBeCloseTo(4 * (0.192 + (50 * 0.08) / 730) * (70 / 60), 5);
  });

  it('gives every replica its own reproducible seed', () => {
    const seeds = okPlan().datasets.filter((ds) => ds.role === 'replica').map((ds) => ds.seed);
    expect(new Set(seeds).size).toBe(3);
    expect(okPlan().datasets.map((ds) => ds.seed)).toEqual(okPlan().datasets.map((ds) => ds.seed));
  });

  it('takes ensemble_size from the config within the blueprint\'s limit', () => {
    expect(okPlan({ ensemble_size: 5 }).datasets).toHaveLength(6);
    const tooMany = ensemblePlan({ ensemble_size: 6 });
    expect(tooMany.ok).toBe(false);
    expect(!tooMany.ok && tooMany.reasons.join()).toContain('"ensemble_size" is 6, above the limit of "pose-ens" (5 replicas)');
  });

  it('refuses an ensemble too small for its consensus to ever run', () => {
    const result = ensemblePlan({ ensemble_size: 1 });
    expect(!result.ok && result.reasons.join()).toContain('can never reach the 2 succeeded replicas the consensus of "pose-ens" needs');
  });

  it('refuses several datasets: an ensemble runs on one', () => {
    const result = ensemblePlan({}, 2);
    expect(!result.ok && result.reasons.join()).toContain('an ensemble runs its replicas on one dataset, but the submission names 2');
  });
});

describe('ensemble jobs', () => {
  it('launches every replica first and holds the consensus back', () => {
    const { state, effects } = applyAll(accepted(okPlan()));
    expect(effectsOf(effects, 'LaunchInstance').map((l) => l.dataset)).toEqual(['replica-0', 'replica-1', 'replica-2']);
    expect(state.datasets.find((ds) => ds.name === 'consensus')?.phase).toBe('PENDING');
  });

  it('starts the consensus once every replica ended, naming the replica that failed', () => {
    const run = applyAll([
      ...accepted(okPlan()),
      ...machineRun('replica-0', T0 + 100),
      ...machineRun('replica-1', T0 + 200, 1),
      ...machineRun('replica-2', T0 + 300),
    ]);
    expect(effectsOf(run.effects, 'LaunchInstance').filter((l) => l.dataset === 'consensus')).toHaveLength(1);
    const lines = run.state.certificate.map((line) => line.text);
    expect(lines).toContain('consensus: 2 of 3 replicas succeeded (failed: replica-1 FAILED); combining replica-0, replica-2');
    const done = applyAll(machineRun('consensus', T0 + 20 * MIN), run.state);
    expect(done.state.phase).toBe('DONE');
    expect(jobOutcome(done.state)).toBe('SUCCEEDED');
    expect(effectsOf(done.effects, 'SettleBudget')).toHaveLength(1);
  });

  it('fails the consensus without a machine when too few replicas succeeded', () => {
    const run = applyAll([
      ...accepted(okPlan()),
      ...machineRun('replica-0', T0 + 100, 1),
      ...machineRun('replica-1', T0 + 200, 1),
      ...machineRun('replica-2', T0 + 300),
    ]);
    const consensus = run.state.datasets.find((ds) => ds.name === 'consensus');
    expect(consensus?.phase).toBe('FAILED');
    expect(consensus?.reason).toBe('only 1 of 3 replicas succeeded (failed: replica-0 FAILED, replica-1 FAILED); the consensus needs at least 2');
    expect(effectsOf(run.effects, 'LaunchInstance').filter((l) => l.dataset === 'consensus')).toHaveLength(0);
    expect(run.state.phase).toBe('DONE');
    expect(jobOutcome(run.state)).toBe('FAILED');
  });

  it('gives replicas NCAP_REPLICA and NCAP_SEED, and the consensus its command and the replicas\' results', () => {
    const run = applyAll([...accepted(okPlan()), ...machineRun('replica-0', T0 + 100), ...machineRun('replica-1', T0 + 200), ...machineRun('replica-2', T0 + 300)], fresh());
    const placement = { store: 'local:/b', workdir: '/w', scratch: '/s', instanceId: 'i-1', instanceType: 'm5.xlarge' };
    const replica = run.state.datasets[1]!;
    const env = runnerEnvironment(buildRunnerSpec(run.state, replica, 'pose-ens'), placement);
    expect(env['NCAP_REPLICA']).toBe('1');
    expect(env['NCAP_SEED']).toBe(String(replica.seed));
    const consensus = buildRunnerSpec(run.state, run.state.datasets[3]!, 'pose-ens');
    expect(consensus.command).toEqual(['node', 'consensus.mjs']);
    expect(consensus.replicasPrefix).toBe('lab/results/job__pose-ens_job1/process_results/');
    expect(consensus.resultsPrefix).toBe('lab/results/job__pose-ens_job1/process_results/consensus/');
    expect(runnerEnvironment(consensus, placement)['NCAP_REPLICA']).toBeUndefined();
  });

  it('launches one consensus and settles once whatever the order and duplication of the replicas\' events', () => {
    const replicaEvents = [
      ...machineRun('replica-0', T0 + 100),
      ...machineRun('replica-1', T0 + 200, 1),
      ...machineRun('replica-2', T0 + 300),
    ];
    fc.assert(
      fc.property(fc.shuffledSubarray(replicaEvents, { minLength: replicaEvents.length }), fc.array(fc.nat(replicaEvents.length - 1), { maxLength: 8 }), (shuffled, dupes) => {
        const events = [...shuffled, ...dupes.map((i) => replicaEvents[i] as JobEvent)];
        let state: JobState = applyAll(accepted(okPlan())).state;
        let consensusLaunches = 0;
        // Events carry their own times; deliver them in this order, as a shell might.
        for (const event of events) {
          const t = reduceJob(state, event);
          state = t.state;
          consensusLaunches += effectsOf(t.effects, 'LaunchInstance').filter((l) => l.dataset === 'consensus').length;
        }
        const replicasEnded = state.datasets.filter((ds) => ds.role === 'replica').every((ds) => ds.phase === 'SUCCEEDED' || ds.phase === 'FAILED');
        const succeeded = state.datasets.filter((ds) => ds.role === 'replica' && ds.phase === 'SUCCEEDED').length;
        // Events that arrive before their turn are dropped by the reducer: a replica may be left
        // running, or fail (its machine "ended before the workflow started").
        expect(consensusLaunches).toBe(replicasEnded && succeeded >= 2 ? 1 : 0);
        if (replicasEnded && succeeded < 2) expect(state.datasets[3]?.reason).toMatch(/^only \d of 3 replicas succeeded/);
        const end = applyAll([...machineRun('consensus', T0 + 30 * MIN), ...machineRun('consensus', T0 + 30 * MIN)], state);
        expect(effectsOf(end.effects, 'LaunchInstance').filter((l) => l.dataset === 'consensus')).toHaveLength(0);
        const settled = [...effectsOf(end.effects, 'SettleBudget')].length + (state.phase === 'DONE' ? 1 : 0);
        expect(settled).toBeLessThanOrEqual(1);
      }),
      { numRuns: 60 },
    );
  });
});

const denoise = blueprintFixture({
  name: 'stage-one',
  followOn: { analysis: 'stage-two', inputs: { file: 'out.npz', grouping: 'perDataset' }, config: { iterations: 5 } },
  config: { jsonSchema: { type: 'object' } },
});
const demix = blueprintFixture({
  name: 'stage-two',
  hardware: { instanceType: 'g4dn.xlarge' },
  pricing: { hourlyUsd: { 'g4dn.xlarge': 0.526 } },
  config: { jsonSchema: { type: 'object', additionalProperties: false, properties: { iterations: { type: 'integer' } } } },
});

function chainPlan(options: { blueprint?: typeof denoise; others?: (typeof denoise)[]; user?: typeof alice; datasets?: number; parent?: Parameters<typeof planJob>[0]['parent'] } = {}) {
  const blueprint = options.blueprint ?? denoise;
  const keys = Array.from({ length: options.datasets ?? 2 }, (_, i) => `lab/inputs/m${i}.npz`);
  const objects = new Map(keys.map((key) => [key, { size: 10, etag: `e-${key}` }]));
  objects.set('lab/configs/c.json', { size: 2, etag: 'e-c' });
  const others = options.others ?? [demix];
  return planJob({
    jobId: 'job1',
    analysis: blueprint.name,
    group: 'lab',
    submissionKey: 'lab/submissions/alice/submit.json',
    submission: { dataname: keys, configname: 'lab/configs/c.json' },
    user: options.user ?? alice,
    blueprint,
    blueprintHash: 'sha256:00',
    objects,
    configText: '{}',
    imageId: 'ami-0123456789abcdef0',
    nowMs: T0,
    chainBlueprints: new Map(others.map((b) => [b.name, b])),
    ...(options.parent ? { parent: options.parent } : {}),
  });
}

function datasetRun(dataset: string, t: number, exitCode = 0): JobEvent[] {
  return machineRun(dataset, t, exitCode);
}

describe('chain plans', () => {
  it('reserves the whole chain before the first machine: this stage and every later one', () => {
    const result = chainPlan();
    expect(result.ok).toBe(true);
    const plan = (result as { plan: JobPlan }).plan;
    // Timeout + a reaper period + termination; this stage's machines with their 50 GiB volume.
    const own = 2 * (0.192 + (50 * 0.08) / 730) * (70 / 60);
    // The next stage's machines are reserved with their volumes too (50 GiB root each).
    const next = 2 * (0.526 + (50 * 0.08) / 730) * (70 / 60);
    expect(plan.chain?.next).toEqual([expect.objectContaining({ analysis: 'stage-two', jobs: 2, datasetsPerJob: 1, instanceType: 'g4dn.xlarge' })]);
    expect(plan.chain?.downstreamReservedUsd).toBeCloseTo(next, 5);
    expect(plan.reservedUsd).toBeCloseTo(own + next, 5);
    // Each machine's deadline still comes from its own share only.
    expect(plan.machineReservedUsd).toBeCloseTo((0.192 + (50 * 0.08) / 730) * (70 / 60), 5);
  });

  it('hands each next job a share that covers its own worst case, extra volumes included', () => {
    const withVolumes = blueprintFixture({ ...demix, hardware: { instanceType: 'g4dn.xlarge', volumeSizeGiB: 100, extraVolumeSizesGiB: [500, 200] } } as never);
    const first = chainPlan({ others: [withVolumes] });
    const downstream = (first as { plan: JobPlan }).plan.chain?.downstreamReservedUsd as number;
    // The second stage planned by itself, as the job the first one submits: one dataset.
    const second = planJob({
      jobId: 'job2',
      analysis: 'stage-two',
      group: 'lab',
      submissionKey: 'lab/submissions/alice/chain-job1-0-submit.json',
      submission: { dataname: 'lab/inputs/chain-job1/m0.npz/out.npz', configname: 'lab/configs/chain-job1.json' },
      user: alice,
      blueprint: withVolumes,
      blueprintHash: 'sha256:01',
      objects: new Map([
        ['lab/inputs/chain-job1/m0.npz/out.npz', { size: 10, etag: 'e' }],
        ['lab/configs/chain-job1.json', { size: 2, etag: 'e' }],
      ]),
      configText: '{"iterations": 5}',
      imageId: 'ami-0123456789abcdef0',
      nowMs: T0,
      parent: { jobId: 'job1', analysis: 'stage-one', stage: 2, ledgerKey: 'job1~stage-two~0' },
    });
    expect(second.ok).toBe(true);
    const own = (second as { plan: JobPlan }).plan.reservedUsd;
    expect(own).toBeCloseTo((0.526 + (800 * 0.08) / 730) * (70 / 60), 5);
    // Two datasets of the first stage: two next jobs, each handed half of the downstream share.
    expect(downstream / 2).toBeGreaterThanOrEqual(own - 1e-6);
  });

  it('finds, across a blueprints folder, a follow-on config the next analysis\'s schema refuses', () => {
    const wrong = blueprintFixture({ ...denoise, followOn: { analysis: 'stage-two', inputs: { file: 'out.npz' }, config: { iterations: 'five' } } } as never);
    expect(followOnConfigProblems([denoise, demix])).toEqual([]);
    expect(followOnConfigProblems([wrong, demix]).join()).toMatch(/iterations[\s\S]*followOn.config of "stage-one", checked against the config schema of "stage-two"/);
  });

  it('refuses a chain that loops back (A -> B -> A) with the loop spelled out', () => {
    const back = blueprintFixture({ ...demix, name: 'stage-two', followOn: { analysis: 'stage-one', inputs: { file: 'x' } } } as never);
    const result = chainPlan({ others: [back, denoise] });
    expect(!result.ok && result.reasons.join()).toContain('the chain loops (stage-one -> stage-two -> stage-one)');
  });

  it('refuses a follow-on to an analysis that does not exist', () => {
    const result = chainPlan({ others: [] });
    expect(!result.ok && result.reasons.join()).toContain('continues with analysis "stage-two", which does not exist');
  });

  it('refuses a follow-on the user may not run', () => {
    const result = chainPlan({ user: { ...alice, allowedAnalyses: ['stage-one'] } });
    expect(!result.ok && result.reasons.join()).toContain('user "alice" may not run "stage-two", the chain\'s next stage after "stage-one"');
  });

  it('refuses a declared config the next stage would reject', () => {
    const strict = blueprintFixture({ ...demix, config: { jsonSchema: { type: 'object', additionalProperties: false, properties: {} } } } as never);
    const result = chainPlan({ others: [strict] });
    expect(!result.ok && result.reasons.join()).toContain('followOn.config of "stage-one"');
  });
});

describe('chain jobs', () => {
  const plan = (() => {
    const result = chainPlan();
    if (!result.ok) throw new Error(result.reasons.join());
    return result.plan;
  })();
  const start = () => initialJobState('job1', 'stage-one', 'lab', T0);

  it('submits the next stage once, before settling, with one job per dataset and its share', () => {
    const run = applyAll([...accepted(plan), ...datasetRun('m0.npz', T0 + 100), ...datasetRun('m1.npz', T0 + 200)], start());
    const kinds = run.effects.map((e) => e.type).filter((t) => t === 'SubmitFollowOn' || t === 'SettleBudget' || t === 'WriteEnd');
    expect(kinds).toEqual(['SubmitFollowOn', 'SettleBudget', 'WriteEnd']);
    const [submit] = effectsOf(run.effects, 'SubmitFollowOn');
    expect(submit).toMatchObject({ analysis: 'stage-two', stage: 2, config: { iterations: 5 } });
    expect(submit?.jobs.map((j) => j.ledgerKey)).toEqual(['job1~stage-two~0', 'job1~stage-two~1']);
    expect(submit?.jobs[0]?.datasets).toEqual([{ name: 'm0.npz', resultKey: 'lab/results/job__stage-one_job1/process_results/m0.npz/out.npz' }]);
    expect((submit?.jobs[0]?.reservedUsd ?? 0) * 2).toBeCloseTo(plan.chain?.downstreamReservedUsd ?? 0, 5);
  });

  it('stops the chain when a stage fails, with the reason in its certificate', () => {
    const run = applyAll([...accepted(plan), ...datasetRun('m0.npz', T0 + 100), ...datasetRun('m1.npz', T0 + 200, 2)], start());
    expect(effectsOf(run.effects, 'SubmitFollowOn')).toHaveLength(0);
    expect(effectsOf(run.effects, 'SettleBudget')).toHaveLength(1);
    expect(run.state.certificate.map((l) => l.text).join('\n')).toContain('chain stopped: stage-two is not submitted because this stage did not succeed (1 SUCCEEDED, 1 FAILED)');
  });

  it('records the next job once and its end once, whatever the replays', () => {
    const done = applyAll([...accepted(plan), ...datasetRun('m0.npz', T0 + 100), ...datasetRun('m1.npz', T0 + 200)], start());
    const started: JobEvent = { type: 'FollowOnStarted', atMs: T0 + 20 * MIN, analysis: 'stage-two', jobId: 'job2', ledgerKey: 'job1~stage-two~0' };
    const ended: JobEvent = { type: 'FollowOnEnded', atMs: T0 + 30 * MIN, analysis: 'stage-two', jobId: 'job2', ledgerKey: 'job1~stage-two~0', outcome: 'FAILED', reason: 'x.npz: the workflow exited with code 1' };
    const after = applyAll([ended, started, started, ended, ended], done.state);
    expect(after.state.followOns).toEqual([{ analysis: 'stage-two', ledgerKey: 'job1~stage-two~0', jobId: 'job2', outcome: 'FAILED', reason: 'x.npz: the workflow exited with code 1' }]);
    const lines = after.state.certificate.map((l) => l.text).filter((t) => t.includes('job2'));
    expect(lines).toEqual(['chain: next stage stage-two is job job2', 'chain stopped: next stage stage-two job job2 FAILED (x.npz: the workflow exited with code 1)']);
    expect(effectsOf(after.effects, 'SettleBudget')).toHaveLength(0);
  });

  it('a next stage names the job it came from, reports back when it starts and ends, and settles its own share', () => {
    const parent = { jobId: 'job1', analysis: 'stage-one', stage: 2, ledgerKey: 'job1~stage-two~0' };
    const result = chainPlan({ blueprint: demix, others: [], datasets: 1, parent });
    if (!result.ok) throw new Error(result.reasons.join());
    const child = applyAll([...accepted(result.plan), ...datasetRun('m0.npz', T0 + 100, 1)], initialJobState('job1', 'stage-two', 'lab', T0));
    expect(child.state.certificate[1]?.text).toContain('chain: stage 2, started by job job1 (stage-one)');
    const reports = effectsOf(child.effects, 'ReportToParent');
    expect(reports.map((r) => r.event.type)).toEqual(['FollowOnStarted', 'FollowOnEnded']);
    expect(reports[1]?.event).toMatchObject({ outcome: 'FAILED', ledgerKey: 'job1~stage-two~0' });
    expect(effectsOf(child.effects, 'SettleBudget')).toHaveLength(1);
  });
});

describe('the runner environment of a GPU analysis', () => {
  const placement = { store: 's3://b', workdir: '/w', scratch: '/s', instanceId: 'i-1', instanceType: 'g5.xlarge' };
  const spec = (strict: boolean) => ({
    jobId: 'J', analysis: 'a', group: 'lab', dataset: 'd', bucket: 'b', inputKey: 'lab/inputs/d', configKey: 'c', command: ['x'], env: {},
    deadlineAtMs: 1, logKey: 'l', statusKey: 's', resultsPrefix: 'r/', gpu: { count: 2, strict },
  });

  it('asks the runner to check the GPUs on AWS, and locally only when the requirement is strict', () => {
    expect(runnerEnvironment(spec(false), placement)['NCAP_REQUIRE_GPUS']).toBe('2');
    expect(runnerEnvironment(spec(false), { ...placement, local: true })['NCAP_REQUIRE_GPUS']).toBeUndefined();
    expect(runnerEnvironment(spec(true), { ...placement, local: true })['NCAP_REQUIRE_GPUS']).toBe('2');
  });
});
