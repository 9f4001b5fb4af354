import { describe, expect, it } from 'vitest';
import { LAUNCH_SETTLE_MS, LAUNCH_WINDOW_MS, nextWakeAtMs, type JobEvent, type JobState } from '../../../lib/core/job-machine.js';
import { T0, applyAll, blueprintFixture, effectsOf, oneDatasetJob, planFixture } from '../../support/core-fixtures.js';

/**
 * A retry after a launch failure (decision 42): the failed token may still start a machine
 * (another driver re-sent it), so the next attempt waits until the token's launch window has
 * closed and a lookup proved it started nothing, or its machine turned up as a stray.
 */

const MIN = 60_000;
const dataset = 'd0.csv';
const firstToken = 'ncap-job1-0';
const secondToken = 'ncap-job1-0-a2';


const noCapacity = (atMs: number, clientToken = firstToken): JobEvent => ({
  type: 'InstanceLaunchFailed',
  atMs,
  dataset,
  reason: 'no capacity for m5.xlarge',
  clientToken,
  retryable: true,
});

const launches = (effects: ReturnType<typeof applyAll>['effects']) => effectsOf(effects, 'LaunchInstance').map((l) => l.clientToken);

describe('job state machine: a retry after a launch failure', () => {
  it('gives every launch a window of LAUNCH_WINDOW_MS from its first send, never past its deadline', () => {
    const normal = applyAll(oneDatasetJob());
    const short = applyAll(oneDatasetJob(2, 3));

    expect(effectsOf(normal.effects, 'LaunchInstance')[0]?.launchByMs).toBe(T0 + LAUNCH_WINDOW_MS);
    const [shortLaunch] = effectsOf(short.effects, 'LaunchInstance');
    expect(shortLaunch?.launchByMs).toBe(shortLaunch?.deadlineAtMs);
    expect(shortLaunch?.deadlineAtMs).toBeLessThan(T0 + LAUNCH_WINDOW_MS);
  });

  it('starts no new attempt until the window has closed, then looks the failed token up', () => {
    const failed = applyAll([...oneDatasetJob(), noCapacity(T0 + 5_000)]);
    expect(failed.state.datasets[0]?.openLaunches?.map((o) => o.clientToken)).toEqual([firstToken]);
    expect(nextWakeAtMs(failed.state)).toBe(T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS);
    expect(failed.state.certificate.map((line) => line.text)).toContain(
      `${dataset}: the next attempt waits until ${new Date(T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS).toISOString()}, when the failed launch can no longer start a machine`,
    );

    const early = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS - 1 }], failed.state);
    expect(launches(early.effects)).toEqual([]);
    expect(effectsOf(early.effects, 'CheckLaunch')).toEqual([]);

    const due = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS }], early.state);
    expect(effectsOf(due.effects, 'CheckLaunch')).toEqual([{ type: 'CheckLaunch', dataset, clientToken: firstToken }]);
    expect(launches(due.effects)).toEqual([]);
  });

  it('launches the next attempt with its own token once the lookup found no machine', () => {
    const checkAt = T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS;
    const run = applyAll([...oneDatasetJob(), noCapacity(T0 + 5_000), { type: 'Tick', atMs: checkAt }, { type: 'LaunchTokenUnused', atMs: checkAt + 200, dataset, clientToken: firstToken }]);

    expect(launches(run.effects)).toEqual([firstToken, secondToken]);
    expect(run.state.datasets[0]?.openLaunches).toBeUndefined();
    expect(run.state.datasets[0]?.attempt).toBe(2);
    expect(run.state.certificate.map((line) => line.text)).toContain(`${dataset}: the failed launch ${firstToken} started no machine`);
  });

  it('ignores a "no machine" answer from before the window closed', () => {
    const run = applyAll([...oneDatasetJob(), noCapacity(T0 + 5_000), { type: 'LaunchTokenUnused', atMs: T0 + 10_000, dataset, clientToken: firstToken }]);

    expect(run.state.datasets[0]?.openLaunches?.map((o) => o.clientToken)).toEqual([firstToken]);
    expect(launches(run.effects)).toEqual([firstToken]);
  });

  it('terminates the machine the failed launch did start, pays for it, and retries only once it is gone and only if it fits', () => {
    const checkAt = T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS;
    const found: JobEvent = { type: 'InstanceLaunched', atMs: checkAt + 200, dataset, instanceId: 'i-stray', instanceType: 'm5.xlarge', clientToken: firstToken, launchedAtMs: T0 + 20_000 };
    const run = applyAll([...oneDatasetJob(), noCapacity(T0 + 5_000), { type: 'Tick', atMs: checkAt }, found]);
    const ds = run.state.datasets[0];
    expect(effectsOf(run.effects, 'TerminateInstance')).toEqual([{ type: 'TerminateInstance', dataset, instanceId: 'i-stray' }]);
    expect(ds?.strays?.[0]).toMatchObject({ instanceId: 'i-stray', launchedAtMs: T0 + 20_000, deadlineAtMs: ds?.earlierAttempts?.[0]?.deadlineAtMs });
    expect(ds?.openLaunches).toBeUndefined();
    expect(launches(run.effects)).toEqual([firstToken]);

    // Gone after 6 minutes: a one-dataset job's reservation has no whole share left for a retry.
    const gone = applyAll([{ type: 'InstanceStateChanged', atMs: checkAt + 30_000, instanceId: 'i-stray', state: 'terminated', stateChangedAtMs: checkAt + 30_000 }], run.state);
    expect(launches(gone.effects)).toEqual([]);
    expect(gone.state.phase).toBe('DONE');
    expect(gone.state.datasets[0]?.phase).toBe('FAILED');
    expect(gone.state.datasets[0]?.reason).toMatch(/not retried: the job's reservation has \$[0-9.]+ left and another machine needs/);
    const [settle] = effectsOf(gone.effects, 'SettleBudget');
    expect(settle?.spentUsd).toBeGreaterThan(0);
    expect(settle?.spentUsd).toBeLessThanOrEqual(settle?.reservedUsd as number);
  });

  it('does not settle a job while a failed launch may still start a machine', () => {
    // No retries left: the dataset fails at once, but the job waits for the token to be proven.
    const failed = applyAll([...oneDatasetJob(0), noCapacity(T0 + 5_000)]);
    expect(failed.state.datasets[0]?.phase).toBe('FAILED');
    expect(failed.state.phase).toBe('ACTIVE');
    expect(effectsOf(failed.effects, 'SettleBudget')).toEqual([]);

    const checkAt = T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS;
    const proven = applyAll([{ type: 'Tick', atMs: checkAt }, { type: 'LaunchTokenUnused', atMs: checkAt + 100, dataset, clientToken: firstToken }], failed.state);
    expect(proven.state.phase).toBe('DONE');
    expect(effectsOf(proven.effects, 'SettleBudget')).toEqual([expect.objectContaining({ spentUsd: 0 })]);
  });

  it('holds a failed launch of another dataset at a whole share when deciding whether a retry fits', () => {
    // Two datasets, one share each: d1's open launch may still cost a share, so d0's retry after
    // its machine was lost has no room until d1's token is proven unused.
    const blueprint = blueprintFixture({ limits: { timeoutMinutes: 60, maxConcurrentMachines: 2, agentWaitMinutes: 10, maxDatasetsPerJob: 10, platformRetries: 1 } });
    const plan = planFixture(2, blueprint);
    const start: JobEvent[] = [
      { type: 'SubmissionReceived', atMs: T0, plan },
      { type: 'BudgetReserved', atMs: T0 },
      { type: 'InstanceLaunched', atMs: T0 + 1_000, dataset: 'd0.csv', instanceId: 'i-0', instanceType: 'm5.xlarge', clientToken: 'ncap-job1-0' },
      { type: 'InstanceLaunchFailed', atMs: T0 + 2_000, dataset: 'd1.csv', reason: 'no capacity', clientToken: 'ncap-job1-1', retryable: true },
      { type: 'InstanceStateChanged', atMs: T0 + 3_000, instanceId: 'i-0', state: 'terminated' },
    ];
    const run = applyAll(start);
    const d0 = run.state.datasets.find((ds) => ds.name === 'd0.csv') as JobState['datasets'][number];
    expect(d0.phase).toBe('PENDING');
    expect(launches(run.effects)).toEqual(['ncap-job1-0', 'ncap-job1-1']);

    const checkAt = T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS;
    const proven = applyAll([{ type: 'Tick', atMs: checkAt }, { type: 'LaunchTokenUnused', atMs: checkAt + 100, dataset: 'd1.csv', clientToken: 'ncap-job1-1' }], run.state);
    expect(launches(proven.effects)).toEqual(['ncap-job1-0-a2']);
    // d0's first machine cost a little, so d1's retry waits for d0's machine to leave room.
    expect(proven.state.datasets.find((ds) => ds.name === 'd1.csv')?.phase).toBe('PENDING');
  });
});
