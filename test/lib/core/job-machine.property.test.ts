import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PAST_DEADLINE_MINUTES } from '../../../lib/core/cost.js';
import { LAUNCH_RETRY_MS, initialJobState, reduceJob, type JobEffect, type JobEvent, type JobState } from '../../../lib/core/job-machine.js';
import { isTerminalPhase } from '../../../lib/core/status.js';
import { T0, blueprintFixture, planFixture } from '../../support/core-fixtures.js';

/**
 * Property tests: whatever the world does — duplicated, reordered, late or dropped events,
 * cancels and ticks at any time — the reducer never launches a second machine for a dataset,
 * never forgets to terminate one, settles and ends at most once, and never bills past what
 * it reserved except for time the world itself failed to terminate a machine.
 */

const MIN = 60_000;

type WorldStep =
  | { kind: 'launched'; i: number }
  | { kind: 'launchFailed'; i: number }
  | { kind: 'online'; i: number }
  | { kind: 'started'; i: number }
  | { kind: 'finished'; i: number; exitCode: number; timedOut: boolean }
  | { kind: 'state'; i: number; state: 'running' | 'stopped' | 'shutting-down' | 'terminated' }
  | { kind: 'agentExpired'; i: number }
  | { kind: 'tick' }
  | { kind: 'cancel' }
  | { kind: 'reserved' }
  | { kind: 'refused' };

const datasetIndex = fc.integer({ min: 0, max: 3 });
const worldStep: fc.Arbitrary<WorldStep> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('launched' as const), i: datasetIndex }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('launchFailed' as const), i: datasetIndex }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('online' as const), i: datasetIndex }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('started' as const), i: datasetIndex }), weight: 2 },
  {
    arbitrary: fc.record({ kind: fc.constant('finished' as const), i: datasetIndex, exitCode: fc.integer({ min: 0, max: 2 }), timedOut: fc.boolean() }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('state' as const),
      i: datasetIndex,
      state: fc.constantFrom('running' as const, 'stopped' as const, 'shutting-down' as const, 'terminated' as const),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('agentExpired' as const), i: datasetIndex }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('tick' as const) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('cancel' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('reserved' as const) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('refused' as const) }), weight: 1 },
);

const scenario = fc.record({
  datasets: fc.integer({ min: 1, max: 4 }),
  maxConcurrent: fc.integer({ min: 1, max: 3 }),
  timeoutMinutes: fc.integer({ min: 1, max: 30 }),
  steps: fc.array(fc.tuple(worldStep, fc.integer({ min: 0, max: 20 * MIN })), { maxLength: 60 }),
});

function toEvent(step: WorldStep, atMs: number, datasets: number): JobEvent | undefined {
  if ('i' in step && step.i >= datasets) return undefined;
  const dataset = 'i' in step ? `d${step.i}.csv` : '';
  const instanceId = 'i' in step ? `i-${step.i}` : '';
  switch (step.kind) {
    case 'launched':
      return { type: 'InstanceLaunched', atMs, dataset, instanceId, instanceType: 'm5.xlarge' };
    case 'launchFailed':
      return { type: 'InstanceLaunchFailed', atMs, dataset, reason: 'InsufficientInstanceCapacity' };
    case 'online':
      return { type: 'AgentOnline', atMs, dataset, instanceId };
    case 'started':
      return { type: 'CommandStarted', atMs, dataset, commandId: `c-${step.i}` };
    case 'finished':
      return { type: 'CommandFinished', atMs, dataset, exitCode: step.exitCode, timedOut: step.timedOut, logTail: [] };
    case 'state':
      return { type: 'InstanceStateChanged', atMs, instanceId, state: step.state };
    case 'agentExpired':
      return { type: 'AgentWaitExpired', atMs, dataset, instanceId };
    case 'tick':
      return { type: 'Tick', atMs };
    case 'cancel':
      return { type: 'CancelRequested', atMs, reason: 'test' };
    case 'reserved':
      return { type: 'BudgetReserved', atMs };
    case 'refused':
      return { type: 'BudgetRefused', atMs, reason: 'over budget' };
  }
}

interface Observed {
  state: JobState;
  effects: JobEffect[];
  /** Instances the job knew about that were neither asked to terminate nor seen terminated. */
  unterminated: Set<string>;
  violations: string[];
}

function step(observed: Observed, event: JobEvent): JobEffect[] {
  const before = observed.state;
  const { state, effects } = reduceJob(before, event);
  for (const effect of effects) {
    if (effect.type === 'TerminateInstance') observed.unterminated.delete(effect.instanceId);
    if (effect.type === 'SendCommand') {
      const ds = state.datasets.find((d) => d.name === effect.dataset);
      if (!ds || isTerminalPhase(ds.phase) || event.atMs >= (ds.deadlineAtMs ?? 0)) {
        observed.violations.push(`SendCommand for ${effect.dataset} when it was ${ds?.phase} at ${event.atMs}`);
      }
    }
    if (effect.type === 'WriteEnd' && state.phase !== 'REJECTED' && !state.datasets.every((d) => isTerminalPhase(d.phase))) {
      observed.violations.push('WriteEnd while a dataset was not terminal');
    }
  }
  for (const ds of state.datasets) {
    const was = before.datasets.find((d) => d.name === ds.name);
    if (ds.instanceId && !was?.instanceId && ds.machine !== 'terminated') observed.unterminated.add(ds.instanceId);
    if (ds.machine === 'terminated' && ds.instanceId) observed.unterminated.delete(ds.instanceId);
  }
  observed.state = state;
  observed.effects.push(...effects);
  return effects;
}

/** A world that finally behaves: answers launches, confirms terminations, lets time pass. */
function settle(observed: Observed, fromMs: number): number {
  let now = fromMs;
  let pending: JobEffect[] = [];
  for (let round = 0; round < 50; round += 1) {
    // Past every deadline and every retry interval, so each round makes progress.
    const latestDeadline = Math.max(...observed.state.datasets.map((d) => d.deadlineAtMs ?? 0));
    now = Math.max(now + LAUNCH_RETRY_MS, latestDeadline + 1);
    pending = [...pending, ...step(observed, { type: 'Tick', atMs: now })];
    if (observed.state.phase === 'RESERVING') pending.push(...step(observed, { type: 'BudgetReserved', atMs: now }));
    const current = pending;
    pending = [];
    for (const effect of current) {
      if (effect.type === 'LaunchInstance') {
        const i = effect.dataset.slice(1, -'.csv'.length);
        pending.push(...step(observed, { type: 'InstanceLaunched', atMs: now, dataset: effect.dataset, instanceId: `i-${i}`, instanceType: effect.instanceType }));
      }
      if (effect.type === 'TerminateInstance') {
        pending.push(...step(observed, { type: 'InstanceStateChanged', atMs: now, instanceId: effect.instanceId, state: 'terminated' }));
      }
    }
    if (observed.state.phase === 'DONE' || observed.state.phase === 'REJECTED') break;
  }
  return now;
}

function runScenario(input: { datasets: number; maxConcurrent: number; timeoutMinutes: number; steps: [WorldStep, number][] }): Observed {
  const blueprint = blueprintFixture({
    limits: { timeoutMinutes: input.timeoutMinutes, maxConcurrentMachines: input.maxConcurrent, agentWaitMinutes: 10, maxDatasetsPerJob: 10 },
  });
  const plan = planFixture(input.datasets, blueprint);
  const observed: Observed = { state: initialJobState('job1', plan.analysis, 'lab', T0), effects: [], unterminated: new Set(), violations: [] };
  let now = T0;
  step(observed, { type: 'SubmissionReceived', atMs: now, plan });
  for (const [worldStep, delayMs] of input.steps) {
    now += delayMs;
    const event = toEvent(worldStep, now, input.datasets);
    if (event) step(observed, event);
  }
  settle(observed, now);
  return observed;
}

const count = (effects: JobEffect[], type: JobEffect['type']) => effects.filter((e) => e.type === type).length;

describe('job state machine under an adversarial world', () => {
  it('never launches a second machine for a dataset', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { effects } = runScenario(input);
        const tokens = new Map<string, Set<string>>();
        for (const effect of effects) {
          if (effect.type !== 'LaunchInstance') continue;
          const set = tokens.get(effect.dataset) ?? new Set();
          set.add(effect.clientToken);
          tokens.set(effect.dataset, set);
        }
        for (const set of tokens.values()) expect(set.size).toBe(1);
        const all = [...tokens.values()].flatMap((set) => [...set]);
        expect(new Set(all).size).toBe(all.length);
      }),
      { numRuns: 400 },
    );
  });

  it('asks to terminate every machine it learnt of, and ends with every machine terminated', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const observed = runScenario(input);
        expect([...observed.unterminated]).toEqual([]);
        expect(['DONE', 'REJECTED']).toContain(observed.state.phase);
        for (const ds of observed.state.datasets) {
          if (ds.instanceId !== undefined) expect(ds.machine).toBe('terminated');
          // Every dataset that did not succeed says why, in one of the five kinds.
          if (ds.phase === 'SUCCEEDED') expect(ds.failure).toBeUndefined();
          else expect(['analysis', 'input', 'platform', 'timeout', 'cancelled']).toContain(ds.failure?.kind);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('settles, rejects and writes end.txt at most once', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { effects, state } = runScenario(input);
        expect(count(effects, 'SettleBudget')).toBeLessThanOrEqual(1);
        expect(count(effects, 'Reject')).toBeLessThanOrEqual(1);
        expect(count(effects, 'WriteEnd')).toBe(1);
        if (state.phase === 'DONE') expect(count(effects, 'SettleBudget')).toBe(1);
      }),
      { numRuns: 400 },
    );
  });

  it('never commands a finished or expired machine and never ends with a dataset still running', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        expect(runScenario(input).violations).toEqual([]);
      }),
      { numRuns: 400 },
    );
  });

  it('never spends more than it reserved, except for time the world kept a machine past its deadline', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { state, effects } = runScenario(input);
        const settle = effects.find((e): e is Extract<JobEffect, { type: 'SettleBudget' }> => e.type === 'SettleBudget');
        if (!settle || !state.plan) return;
        const hourly = state.plan.hourlyUsd + (state.plan.storageHourlyUsd ?? 0);
        let overrunUsd = 0;
        for (const ds of state.datasets) {
          if (ds.launchedAtMs === undefined || ds.terminatedAtMs === undefined || ds.deadlineAtMs === undefined) continue;
          const allowedEnd = ds.deadlineAtMs + PAST_DEADLINE_MINUTES * MIN;
          // Billing is per started second, so an overrun is counted in whole seconds.
          overrunUsd += (hourly * Math.ceil(Math.max(0, ds.terminatedAtMs - allowedEnd) / 1000)) / 3600;
        }
        expect(settle.spentUsd).toBeLessThanOrEqual(settle.reservedUsd + overrunUsd + 1e-6);
      }),
      { numRuns: 400 },
    );
  });
});
