import { describe, expect, it } from 'vitest';
import {
  COMMAND_RESULT_GRACE_MS,
  LAUNCH_RETRY_MS,
  TERMINATE_RETRY_MS,
  nextWakeAtMs,
  reduceJob,
  renderCertificate,
  jobOutcome,
  type JobEvent,
} from '../../../lib/core/job-machine.js';
import { TERMINATION_ALLOWANCE_MINUTES } from '../../../lib/core/cost.js';
import { DatasetStatusSchema } from '../../../lib/core/status.js';
import { T0, applyAll, blueprintFixture, effectsOf, planFixture } from '../../support/core-fixtures.js';

const MIN = 60_000;

function accepted(datasets = 2, plan = planFixture(datasets)): JobEvent[] {
  return [
    { type: 'SubmissionReceived', atMs: T0, plan },
    { type: 'BudgetReserved', atMs: T0 + 10 },
  ];
}

/** Every event a healthy machine produces for dataset `i`, starting at `t`. */
function healthyRun(i: number, t: number, exitCode = 0): JobEvent[] {
  const dataset = `d${i}.csv`;
  const instanceId = `i-${i}`;
  return [
    { type: 'InstanceLaunched', atMs: t, dataset, instanceId, instanceType: 'm5.xlarge' },
    { type: 'AgentOnline', atMs: t + MIN, dataset, instanceId },
    { type: 'CommandStarted', atMs: t + MIN + 100, dataset, commandId: `c-${i}` },
    { type: 'CommandFinished', atMs: t + 5 * MIN, dataset, exitCode, timedOut: false, logTail: ['done'] },
    { type: 'InstanceStateChanged', atMs: t + 5 * MIN + 500, instanceId, state: 'terminated' },
  ];
}

describe('job state machine', () => {
  it('reserves the budget for every dataset before launching anything', () => {
    const { state, effects } = applyAll([accepted()[0] as JobEvent]);
    expect(state.phase).toBe('RESERVING');
    expect(effectsOf(effects, 'LaunchInstance')).toHaveLength(0);
    const [reserve] = effectsOf(effects, 'ReserveBudget');
    // 2 machines x $0.192/h x (60 + 5 allowance) min
    // instance + 50 GiB of gp3 at $0.08/GiB-month, for 60 min + a reaper period (5) + termination (5)
    expect(reserve?.amountUsd).toBeCloseTo(2 * (0.192 + (50 * 0.08) / 730) * (70 / 60), 5);
    expect(effectsOf(effects, 'WriteStatus').map((e) => e.document.status)).toEqual(['PENDING', 'PENDING']);
  });

  it('launches one machine per dataset with a stable client token and a deadline from the reservation', () => {
    const { state, effects } = applyAll(accepted());
    const launches = effectsOf(effects, 'LaunchInstance');
    expect(launches.map((l) => l.dataset)).toEqual(['d0.csv', 'd1.csv']);
    expect(new Set(launches.map((l) => l.clientToken)).size).toBe(2);
    expect(launches[0]?.deadlineAtMs).toBe(T0 + 10 + 60 * MIN);
    expect(state.datasets.every((ds) => ds.phase === 'LAUNCHING')).toBe(true);
  });

  it('runs a dataset through boot, command, success, termination and settles once', () => {
    const { state, effects } = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000)]);
    expect(state.phase).toBe('DONE');
    expect(state.datasets[0]?.phase).toBe('SUCCEEDED');
    expect(effectsOf(effects, 'SendCommand')).toHaveLength(1);
    expect(effectsOf(effects, 'TerminateInstance')).toEqual([{ type: 'TerminateInstance', dataset: 'd0.csv', instanceId: 'i-0' }]);
    expect(effectsOf(effects, 'SettleBudget')).toHaveLength(1);
    expect(effectsOf(effects, 'WriteEnd')).toHaveLength(1);
    expect(effectsOf(effects, 'WriteProvenance')).toHaveLength(1);
    // Billed from launch to confirmed termination: 5 min 0.5 s -> 301 s at $0.192/h.
    expect(state.spentUsd).toBeCloseTo(((0.192 + (50 * 0.08) / 730) * 301) / 3600, 6);
    expect(jobOutcome(state)).toBe('SUCCEEDED');
  });

  it('writes status documents that satisfy the published status schema', () => {
    const { effects } = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000)]);
    for (const write of effectsOf(effects, 'WriteStatus')) expect(DatasetStatusSchema.safeParse(write.document).success).toBe(true);
  });

  it('keeps to the concurrency limit and launches the next dataset when a machine is gone', () => {
    const plan = planFixture(3);
    const first = applyAll(accepted(3, plan));
    expect(effectsOf(first.effects, 'LaunchInstance').map((l) => l.dataset)).toEqual(['d0.csv', 'd1.csv']);
    const after = applyAll(healthyRun(0, T0 + 1000), first.state);
    expect(effectsOf(after.effects, 'LaunchInstance').map((l) => l.dataset)).toEqual(['d2.csv']);
  });

  it('marks a failed workflow FAILED with its exit code and last log line', () => {
    const { state } = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000, 3)]);
    expect(state.datasets[0]?.phase).toBe('FAILED');
    expect(state.datasets[0]?.reason).toBe('the workflow exited with code 3; last log line: done');
    expect(jobOutcome(state)).toBe('FAILED');
  });

  it('calls a non-zero workflow exit an analysis failure', () => {
    const { state, effects } = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000, 3)]);
    expect(state.datasets[0]?.failure).toEqual({ kind: 'analysis', detail: 'the workflow exited with code 3; last log line: done' });
    const last = effectsOf(effects, 'WriteStatus').at(-1);
    expect(last?.document.failure?.kind).toBe('analysis');
  });

  it('fails a dataset whose results the runner could not store, although the workflow exited 0', () => {
    const events = healthyRun(0, T0 + 1000);
    const failure = { kind: 'platform' as const, detail: 'results could not be stored: big.bin' };
    const finished = { ...(events[3] as Extract<JobEvent, { type: 'CommandFinished' }>), failure };
    const { state } = applyAll([...accepted(1), events[0], events[1], events[2], finished, events[4]] as JobEvent[]);
    expect(state.datasets[0]?.phase).toBe('FAILED');
    expect(state.datasets[0]?.exitCode).toBe(0);
    // A platform fault, but a one-dataset job's reservation has no room for a second machine.
    expect(state.datasets[0]?.failure?.kind).toBe('platform');
    expect(state.datasets[0]?.reason).toMatch(/^results could not be stored: big\.bin; not retried: the job's reservation has \$[\d.]+ left and another machine needs \$[\d.]+$/);
    expect(jobOutcome(state)).toBe('FAILED');
  });

  it('calls a command lost without an exit code a platform failure', () => {
    const events = healthyRun(0, T0 + 1000);
    const lost = { ...(events[3] as Extract<JobEvent, { type: 'CommandFinished' }>), exitCode: null };
    const { state } = applyAll([...accepted(1), events[0], events[1], events[2], lost] as JobEvent[]);
    expect(state.datasets[0]?.failure?.kind).toBe('platform');
  });

  it('gives timed out, cancelled, unlaunchable and rejected datasets their failure kind', () => {
    const run = applyAll([...accepted(2), ...healthyRun(0, T0 + 1000).slice(0, 3)]);
    const timedOut = applyAll([{ type: 'Tick', atMs: run.state.datasets[0]?.deadlineAtMs as number }], run.state);
    expect(timedOut.state.datasets[0]?.failure?.kind).toBe('timeout');
    const cancelled = applyAll([{ type: 'CancelRequested', atMs: T0 + 2 * MIN, reason: 'Ctrl-C' }], run.state);
    expect(cancelled.state.datasets.map((ds) => ds.failure)).toEqual([
      { kind: 'cancelled', detail: 'cancelled: Ctrl-C' },
      { kind: 'cancelled', detail: 'cancelled: Ctrl-C' },
    ]);
    const unlaunchable = applyAll([{ type: 'InstanceLaunchFailed', atMs: T0 + 20, dataset: 'd1.csv', reason: 'no capacity' }], run.state);
    expect(unlaunchable.state.datasets[1]?.failure).toEqual({ kind: 'platform', detail: 'machine could not be launched: no capacity' });
    const rejected = applyAll([{ type: 'SubmissionRejected', atMs: T0, reasons: ['x is missing'], datasets: ['x.csv'] }]);
    expect(rejected.state.datasets[0]?.failure).toEqual({ kind: 'input', detail: 'submission rejected: x is missing' });
    const refused = applyAll([accepted(1)[0] as JobEvent, { type: 'BudgetRefused', atMs: T0 + 10, reason: 'over budget' }]);
    expect(refused.state.datasets[0]?.failure?.kind).toBe('input');
  });

  it('rejects a plan in which two inputs share a dataset name instead of waiting forever for one', () => {
    const plan = planFixture(2);
    const clashing = { ...plan, datasets: plan.datasets.map((ds) => ({ ...ds, name: 'same.csv' })) };
    const { state, effects } = applyAll([{ type: 'SubmissionReceived', atMs: T0, plan: clashing }]);
    expect(state.phase).toBe('REJECTED');
    expect(state.rejection?.[0]).toContain('would both be dataset "same.csv"');
    expect(effectsOf(effects, 'WriteEnd')).toHaveLength(1);
    expect(effectsOf(effects, 'ReserveBudget')).toHaveLength(0);
  });

  it('times a dataset out at its deadline and terminates its machine', () => {
    const run = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000).slice(0, 3)]);
    const deadline = run.state.datasets[0]?.deadlineAtMs as number;
    expect(nextWakeAtMs(run.state)).toBe(deadline);
    const { state, effects } = applyAll([{ type: 'Tick', atMs: deadline }], run.state);
    expect(state.datasets[0]?.phase).toBe('TIMED_OUT');
    expect(state.datasets[0]?.reason).toContain('60 min');
    expect(effectsOf(effects, 'TerminateInstance')).toHaveLength(1);
  });

  it('retries a terminate that was not confirmed', () => {
    const run = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000).slice(0, 4)]);
    expect(run.state.datasets[0]?.machine).toBe('terminating');
    const early = applyAll([{ type: 'Tick', atMs: T0 + 1000 + 5 * MIN + TERMINATE_RETRY_MS - 1 }], run.state);
    expect(effectsOf(early.effects, 'TerminateInstance')).toHaveLength(0);
    const late = applyAll([{ type: 'Tick', atMs: T0 + 1000 + 5 * MIN + TERMINATE_RETRY_MS }], run.state);
    expect(effectsOf(late.effects, 'TerminateInstance')).toHaveLength(1);
    expect(late.state.phase).toBe('ACTIVE');
  });

  it('re-sends an unanswered launch with the same client token, never a new one', () => {
    const run = applyAll(accepted(1));
    const [first] = effectsOf(run.effects, 'LaunchInstance');
    const retry = applyAll([{ type: 'Tick', atMs: T0 + 10 + LAUNCH_RETRY_MS }], run.state);
    const [again] = effectsOf(retry.effects, 'LaunchInstance');
    expect(again?.clientToken).toBe(first?.clientToken);
  });

  it('terminates a machine whose launch answer arrives after the job was cancelled', () => {
    const run = applyAll([...accepted(1), { type: 'CancelRequested', atMs: T0 + 20, reason: 'user' }]);
    expect(run.state.datasets[0]?.phase).toBe('CANCELLED');
    expect(run.state.phase).toBe('ACTIVE');
    const late = applyAll([{ type: 'InstanceLaunched', atMs: T0 + 30, dataset: 'd0.csv', instanceId: 'i-0', instanceType: 'm5.xlarge' }], run.state);
    expect(effectsOf(late.effects, 'TerminateInstance')).toHaveLength(1);
    expect(effectsOf(late.effects, 'SendCommand')).toHaveLength(0);
    const done = applyAll([{ type: 'InstanceStateChanged', atMs: T0 + 40, instanceId: 'i-0', state: 'terminated' }], late.state);
    expect(done.state.phase).toBe('DONE');
    expect(jobOutcome(done.state)).toBe('CANCELLED');
  });

  it('asks again for every machine still terminating when a cancel is repeated (its first asker may have died)', () => {
    const run = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000).slice(0, 3), { type: 'CancelRequested', atMs: T0 + 2 * MIN, reason: 'Ctrl-C' }]);
    expect(run.state.datasets[0]?.machine).toBe('terminating');
    const again = applyAll([{ type: 'CancelRequested', atMs: T0 + 2 * MIN + 100, reason: 'its process stopped' }], run.state);
    expect(effectsOf(again.effects, 'TerminateInstance')).toEqual([{ type: 'TerminateInstance', dataset: 'd0.csv', instanceId: 'i-0' }]);
    expect(again.state.cancel?.reason).toBe('Ctrl-C');
  });

  it('cancels while reserving and releases the reservation without launching', () => {
    const { state, effects } = applyAll([
      accepted(1)[0] as JobEvent,
      { type: 'CancelRequested', atMs: T0 + 5, reason: 'changed my mind' },
      { type: 'BudgetReserved', atMs: T0 + 10 },
    ]);
    expect(effectsOf(effects, 'LaunchInstance')).toHaveLength(0);
    expect(state.phase).toBe('DONE');
    expect(effectsOf(effects, 'SettleBudget')[0]?.spentUsd).toBe(0);
  });

  it('rejects an over-budget job with the reason in the certificate and every status', () => {
    const { state, effects } = applyAll([accepted(2)[0] as JobEvent, { type: 'BudgetRefused', atMs: T0 + 10, reason: 'over budget: needs $1' }]);
    expect(state.phase).toBe('REJECTED');
    expect(effectsOf(effects, 'LaunchInstance')).toHaveLength(0);
    expect(effectsOf(effects, 'Reject')).toEqual([{ type: 'Reject', reasons: ['over budget: needs $1'] }]);
    expect(renderCertificate(state)).toContain('over budget: needs $1');
    const statuses = effectsOf(effects, 'WriteStatus').filter((e) => e.document.status === 'FAILED');
    expect(statuses.map((s) => s.document.reason)).toEqual(['submission rejected: over budget: needs $1', 'submission rejected: over budget: needs $1']);
    expect(effectsOf(effects, 'WriteEnd')).toHaveLength(1);
  });

  it('rejects an invalid submission once, listing every reason', () => {
    const event: JobEvent = { type: 'SubmissionRejected', atMs: T0, reasons: ['a is wrong', 'b is wrong'], datasets: ['x.csv'] };
    const { state, effects } = applyAll([event, event]);
    expect(effectsOf(effects, 'Reject')).toHaveLength(1);
    expect(renderCertificate(state)).toMatch(/REJECTED[\s\S]*a is wrong[\s\S]*b is wrong/);
  });

  it('fails a machine whose agent never comes online and terminates it', () => {
    const run = applyAll([...accepted(1), ...healthyRun(0, T0 + 1000).slice(0, 1)]);
    const { state, effects } = applyAll([{ type: 'AgentWaitExpired', atMs: T0 + 1000 + 10 * MIN, dataset: 'd0.csv', instanceId: 'i-0' }], run.state);
    expect(state.datasets[0]?.phase).toBe('FAILED');
    expect(state.datasets[0]?.reason).toContain('did not come online within 10 min');
    expect(effectsOf(effects, 'TerminateInstance')).toHaveLength(1);
  });

  it('waits a grace period for a result that trails the machine termination', () => {
    const events = healthyRun(0, T0 + 1000);
    const reordered = [...accepted(1), events[0], events[1], events[2], events[4]] as JobEvent[];
    const run = applyAll(reordered);
    expect(run.state.datasets[0]?.phase).toBe('RUNNING');
    const withResult = applyAll([events[3] as JobEvent], run.state);
    expect(withResult.state.datasets[0]?.phase).toBe('SUCCEEDED');
    expect(withResult.state.phase).toBe('DONE');
    const gone = run.state.datasets[0]?.machineGoneAtMs as number;
    const noResult = applyAll([{ type: 'Tick', atMs: gone + COMMAND_RESULT_GRACE_MS }], run.state);
    expect(noResult.state.datasets[0]?.phase).toBe('FAILED');
    expect(noResult.state.datasets[0]?.reason).toContain('never reported a result');
  });

  it('ignores a duplicated command result', () => {
    const events = healthyRun(0, T0 + 1000);
    const { effects } = applyAll([...accepted(1), ...events, events[3] as JobEvent, events[4] as JobEvent]);
    expect(effectsOf(effects, 'TerminateInstance')).toHaveLength(1);
    expect(effectsOf(effects, 'SettleBudget')).toHaveLength(1);
  });

  it('does not change the state it was given', () => {
    const run = applyAll(accepted(1));
    const before = JSON.stringify(run.state);
    reduceJob(run.state, { type: 'CancelRequested', atMs: T0 + 50, reason: 'x' });
    expect(JSON.stringify(run.state)).toBe(before);
  });

  it('keeps the reservation large enough for the deadline plus the termination allowance', () => {
    const run = applyAll([...accepted(1), ...healthyRun(0, T0 + 10).slice(0, 3)]);
    const ds = run.state.datasets[0];
    const deadline = ds?.deadlineAtMs as number;
    const terminatedAt = deadline + TERMINATION_ALLOWANCE_MINUTES * MIN;
    const end = applyAll(
      [
        { type: 'Tick', atMs: deadline },
        { type: 'InstanceStateChanged', atMs: terminatedAt, instanceId: 'i-0', state: 'terminated' },
      ],
      run.state,
    );
    expect(end.state.spentUsd).toBeLessThanOrEqual(run.state.plan?.reservedUsd as number);
  });
});
