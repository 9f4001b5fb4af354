import { describe, expect, it } from 'vitest';
import { LAUNCH_RETRY_MS, LAUNCH_SETTLE_MS, LAUNCH_WINDOW_MS, nextWakeAtMs, type JobEvent } from '../../../lib/core/job-machine.js';
import { T0, applyAll, effectsOf, oneDatasetJob } from '../../support/core-fixtures.js';

/**
 * What a failed launch proves about its token. Only a refusal (EC2 refused the request as
 * invalid) proves that no send of the token can start a machine; an answer that is no answer
 * (transport error, 5xx, timeout) may hide a machine that started, so the launch stays open:
 * re-sent with the same token within its window, then looked up.
 */

const MIN = 60_000;
const dataset = 'd0.csv';
const token = 'ncap-job1-0';


const unclear = (atMs: number, clientToken = token): JobEvent => ({
  type: 'InstanceLaunchFailed',
  atMs,
  dataset,
  reason: 'could not launch m5.xlarge in subnet-a for dataset d0.csv: InternalError: An internal error has occurred',
  clientToken,
  retryable: true,
  outcome: 'unknown',
});

const refused = (atMs: number): JobEvent => ({
  type: 'InstanceLaunchFailed',
  atMs,
  dataset,
  reason: "could not launch m5.xlarge in subnet-a for dataset d0.csv: InvalidAMIID.NotFound: The image id '[ami-0bad]' does not exist",
  clientToken: token,
  outcome: 'refused',
});

const launched = (atMs: number, clientToken = token): JobEvent => ({ type: 'InstanceLaunched', atMs, dataset, instanceId: `i-${clientToken}`, instanceType: 'm5.xlarge', clientToken, launchedAtMs: atMs - 1_000 });

const launchTokens = (effects: ReturnType<typeof applyAll>['effects']) => effectsOf(effects, 'LaunchInstance').map((l) => l.clientToken);

describe('job state machine: what a failed launch proves', () => {
  it('keeps an unanswered launch requested within its window and sends it again with the same token', () => {
    const failed = applyAll([...oneDatasetJob(), unclear(T0 + 2_000)]);
    const ds = failed.state.datasets[0];

    expect(ds?.machine).toBe('requested');
    expect(ds?.phase).toBe('LAUNCHING');
    expect(ds?.attempt ?? 1).toBe(1);
    expect(ds?.openLaunches).toBeUndefined();
    expect(nextWakeAtMs(failed.state)).toBe(T0 + LAUNCH_RETRY_MS);
    const again = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_RETRY_MS }], failed.state);
    expect(launchTokens(again.effects)).toEqual([token]);

    // The re-send finds the machine the unanswered send had started: it is the attempt's own.
    const adopted = applyAll([launched(T0 + LAUNCH_RETRY_MS + 500)], again.state);
    expect(adopted.state.datasets[0]?.machine).toBe('up');
    expect(adopted.state.datasets[0]?.instanceId).toBe(`i-${token}`);
    expect(adopted.state.datasets[0]?.strays).toBeUndefined();
  });

  it('turns a launch still unanswered when its window closes into an open launch: looked up, then retried', () => {
    const failed = applyAll([...oneDatasetJob(), unclear(T0 + 2_000), unclear(T0 + LAUNCH_WINDOW_MS)]);
    const ds = failed.state.datasets[0];

    expect(ds?.machine).toBe('none');
    expect(ds?.attempt).toBe(2);
    expect(ds?.openLaunches?.map((o) => o.clientToken)).toEqual([token]);
    expect(launchTokens(failed.effects).filter((t) => t !== token)).toEqual([]);

    const check = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS }], failed.state);
    expect(effectsOf(check.effects, 'CheckLaunch')).toEqual([{ type: 'CheckLaunch', dataset, clientToken: token }]);
    const proven = applyAll([{ type: 'LaunchTokenUnused', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS + 1_000, dataset, clientToken: token }], check.state);
    expect(launchTokens(proven.effects)).toEqual(['ncap-job1-0-a2']);
  });

  it('ends a job whose only launch never got an answer and whose token started nothing, settling nothing spent', () => {
    const failed = applyAll([...oneDatasetJob(0), unclear(T0 + 2_000), unclear(T0 + LAUNCH_WINDOW_MS + 1)]);
    expect(failed.state.datasets[0]?.phase).toBe('FAILED');
    // Not settled while the token may still hide a machine.
    expect(failed.state.phase).toBe('ACTIVE');
    expect(effectsOf(failed.effects, 'SettleBudget')).toEqual([]);

    const check = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS }], failed.state);
    const done = applyAll([{ type: 'LaunchTokenUnused', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS + 1_000, dataset, clientToken: token }], check.state);
    expect(done.state.phase).toBe('DONE');
    expect(effectsOf(done.effects, 'SettleBudget')[0]?.spentUsd).toBe(0);
    expect(done.state.datasets[0]?.failure?.kind).toBe('platform');
  });

  it('pays for and terminates the machine an unanswered launch did start, before the job settles', () => {
    const failed = applyAll([...oneDatasetJob(0), unclear(T0 + 2_000), unclear(T0 + LAUNCH_WINDOW_MS + 1)]);
    const check = applyAll([{ type: 'Tick', atMs: T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS }], failed.state);
    // The lookup finds the machine the first send started (its answer was the 5xx).
    const found = applyAll([{ ...launched(T0 + LAUNCH_WINDOW_MS + LAUNCH_SETTLE_MS + 1_000), launchedAtMs: T0 + 3_000 } as JobEvent], check.state);
    expect(effectsOf(found.effects, 'TerminateInstance').map((t) => t.instanceId)).toEqual([`i-${token}`]);
    expect(found.state.phase).toBe('ACTIVE');

    const gone = applyAll([{ type: 'InstanceStateChanged', atMs: T0 + 8 * MIN, instanceId: `i-${token}`, state: 'terminated', stateChangedAtMs: T0 + 8 * MIN }], found.state);
    expect(gone.state.phase).toBe('DONE');
    expect(effectsOf(gone.effects, 'SettleBudget')[0]?.spentUsd).toBeGreaterThan(0);
  });

  it('closes a refused launch at once: the dataset fails and the job settles without waiting for a lookup', () => {
    const done = applyAll([...oneDatasetJob(), refused(T0 + 2_000)]);

    expect(done.state.datasets[0]?.phase).toBe('FAILED');
    expect(done.state.datasets[0]?.reason).toMatch(/InvalidAMIID\.NotFound/);
    expect(done.state.datasets[0]?.openLaunches).toBeUndefined();
    expect(done.state.phase).toBe('DONE');
    expect(effectsOf(done.effects, 'CheckLaunch')).toEqual([]);
  });

  it('does not keep re-sending the unanswered launch of a cancelled dataset: it is looked up after its window', () => {
    const cancelled = applyAll([...oneDatasetJob(), { type: 'CancelRequested', atMs: T0 + 1_000, reason: 'test' }, unclear(T0 + 2_000)]);
    const ds = cancelled.state.datasets[0];

    expect(ds?.phase).toBe('CANCELLED');
    expect(ds?.machine).toBe('launch-failed');
    expect(ds?.openLaunches?.map((o) => o.clientToken)).toEqual([token]);
    expect(cancelled.state.phase).toBe('ACTIVE');
  });
});
