import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PAST_DEADLINE_MINUTES } from '../../../lib/core/cost.js';
import { LAUNCH_RETRY_MS, LAUNCH_SETTLE_MS, attemptOf, initialJobState, reduceJob, type JobEffect, type JobEvent, type JobState } from '../../../lib/core/job-machine.js';
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
  | { kind: 'launchFailed'; i: number; retryable: boolean }
  /** A 5xx or a reset connection: EC2 may have started the machine (`started`) all the same. */
  | { kind: 'launchUnclear'; i: number; started: boolean }
  /** EC2 refused the launch as invalid: no send of its token ever starts a machine. */
  | { kind: 'launchRefused'; i: number }
  | { kind: 'spotWarning'; i: number }
  | { kind: 'stale'; i: number; state: 'terminated' | 'running' }
  /** A raced re-send of a failed launch started a machine whose answer is lost: only a lookup finds it. */
  | { kind: 'strayLost'; i: number }
  | { kind: 'online'; i: number }
  | { kind: 'started'; i: number }
  | { kind: 'finished'; i: number; exitCode: number | null; timedOut: boolean; platform: boolean }
  | { kind: 'state'; i: number; state: 'running' | 'stopped' | 'shutting-down' | 'terminated' }
  | { kind: 'agentExpired'; i: number }
  | { kind: 'tick' }
  | { kind: 'cancel' }
  | { kind: 'reserved' }
  | { kind: 'refused' };

const datasetIndex = fc.integer({ min: 0, max: 3 });
const worldStep: fc.Arbitrary<WorldStep> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('launched' as const), i: datasetIndex }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('launchFailed' as const), i: datasetIndex, retryable: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('launchUnclear' as const), i: datasetIndex, started: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('launchRefused' as const), i: datasetIndex }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('spotWarning' as const), i: datasetIndex }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('stale' as const), i: datasetIndex, state: fc.constantFrom('terminated' as const, 'running' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('strayLost' as const), i: datasetIndex }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('online' as const), i: datasetIndex }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('started' as const), i: datasetIndex }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('finished' as const),
      i: datasetIndex,
      exitCode: fc.option(fc.integer({ min: 0, max: 3 }), { nil: null, freq: 4 }),
      timedOut: fc.boolean(),
      platform: fc.boolean(),
    }),
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
  platformRetries: fc.integer({ min: 0, max: 3 }),
  /** The world has no capacity for the first attempt of each dataset. */
  capacityShort: fc.boolean(),
  market: fc.constantFrom('on-demand' as const, 'spot' as const, 'spot-then-on-demand' as const),
  // Mostly events close together (so faults meet live machines), sometimes long gaps.
  steps: fc.array(fc.tuple(worldStep, fc.oneof(fc.integer({ min: 0, max: MIN }), fc.integer({ min: 0, max: 20 * MIN }))), { maxLength: 60, size: 'medium' }),
});

/** One machine per launch token: the world gives attempt n of a dataset its own instance. */
const instanceOf = (clientToken: string) => `i-${clientToken}`;

/**
 * The world starts a machine for `clientToken` (or finds the one it already started): only
 * before that token's launch window closes, as every Machines adapter does. Undefined: none.
 */
function worldStart(observed: Observed, dataset: string, clientToken: string, atMs: number): { instanceId: string; launchedAtMs: number } | undefined {
  const started = observed.started.get(clientToken);
  if (started) return started;
  if (observed.refusedTokens.has(clientToken)) return undefined;
  const cutoffMs = observed.cutoffs.get(clientToken);
  if (cutoffMs === undefined || atMs >= cutoffMs) return undefined;
  const machine = { instanceId: instanceOf(clientToken), launchedAtMs: atMs };
  observed.started.set(clientToken, machine);
  const live = observed.live.get(dataset) ?? new Set();
  // Never two live machines for one dataset: whoever started it, a second one is a bug.
  if (live.size > 0) observed.violations.push(`machine ${machine.instanceId} of ${dataset} started while ${[...live].join(', ')} still ran`);
  live.add(machine.instanceId);
  observed.live.set(dataset, live);
  return machine;
}

/** The world's answer to a launch: its machine, or a refusal once the window has closed. */
function launchAnswer(observed: Observed, dataset: string, clientToken: string, instanceType: string, atMs: number, market?: 'spot'): JobEvent {
  const machine = worldStart(observed, dataset, clientToken, atMs);
  if (!machine) return { type: 'InstanceLaunchFailed', atMs, dataset, reason: 'launch window closed', clientToken, retryable: true };
  return { type: 'InstanceLaunched', atMs, dataset, instanceId: machine.instanceId, instanceType, clientToken, launchedAtMs: machine.launchedAtMs, ...(market ? { market } : {}) };
}

function toEvent(step: WorldStep, atMs: number, observed: Observed): JobEvent | undefined {
  const state = observed.state;
  const ds = 'i' in step ? state.datasets[step.i] : undefined;
  if ('i' in step && !ds) return undefined;
  const dataset = ds?.name ?? '';
  const instanceId = ds ? instanceOf(ds.clientToken) : '';
  switch (step.kind) {
    case 'launched':
      // The world answers only a launch it was asked for.
      if (ds?.machine !== 'requested') return undefined;
      return launchAnswer(observed, dataset, ds.clientToken, 'm5.xlarge', atMs);
    case 'launchFailed':
      // A launch that started a machine cannot also fail.
      if (ds && observed.started.has(ds.clientToken)) return undefined;
      return { type: 'InstanceLaunchFailed', atMs, dataset, reason: 'InsufficientInstanceCapacity', clientToken: ds?.clientToken as string, ...(step.retryable ? { retryable: true } : {}) };
    case 'launchUnclear':
      if (ds?.machine !== 'requested') return undefined;
      // The send reached EC2 before its answer was lost: the machine may be there.
      if (step.started) worldStart(observed, dataset, ds.clientToken, atMs);
      return { type: 'InstanceLaunchFailed', atMs, dataset, reason: 'InternalError: An internal error has occurred', clientToken: ds.clientToken, retryable: true, outcome: 'unknown' };
    case 'launchRefused':
      // A refusal is the same for every send of a token, so it comes only before any machine.
      if (ds?.machine !== 'requested' || observed.started.has(ds.clientToken)) return undefined;
      observed.refusedTokens.add(ds.clientToken);
      return { type: 'InstanceLaunchFailed', atMs, dataset, reason: 'InvalidParameterValue', clientToken: ds.clientToken, outcome: 'refused' };
    case 'spotWarning':
      return { type: 'SpotInterruptionWarned', atMs, instanceId };
    case 'stale': {
      // A late event about an earlier launch: a failed one a raced driver re-sent, else the last attempt's machine.
      const failed = observed.failedTokens.get(dataset)?.at(-1);
      const earlier = ds?.earlierAttempts?.at(-1);
      if (step.state === 'running' && failed !== undefined) {
        const machine = worldStart(observed, dataset, failed, atMs);
        if (!machine) return undefined;
        return { type: 'InstanceLaunched', atMs, dataset, instanceId: machine.instanceId, instanceType: 'm5.xlarge', clientToken: failed, launchedAtMs: machine.launchedAtMs };
      }
      if (!earlier) return undefined;
      return step.state === 'terminated'
        ? { type: 'InstanceStateChanged', atMs, instanceId: instanceOf(earlier.clientToken), state: 'terminated' }
        : { type: 'InstanceLaunched', atMs, dataset, instanceId: instanceOf(earlier.clientToken), instanceType: 'm5.xlarge', clientToken: earlier.clientToken };
    }
    case 'strayLost': {
      const failed = observed.failedTokens.get(dataset)?.at(-1);
      if (failed !== undefined) worldStart(observed, dataset, failed, atMs);
      return undefined;
    }
    case 'online':      return { type: 'AgentOnline', atMs, dataset, instanceId };
    case 'started':
      return { type: 'CommandStarted', atMs, dataset, commandId: `c-${step.i}` };
    case 'finished':
      return {
        type: 'CommandFinished',
        atMs,
        dataset,
        exitCode: step.exitCode,
        timedOut: step.timedOut,
        logTail: [],
        instanceId,
        ...(step.platform ? { failure: { kind: 'platform' as const, detail: 'results could not be stored: out.bin' } } : {}),
      };
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
  /** Per launch token, when the world stops starting machines for it (from the LaunchInstance effects). */
  cutoffs: Map<string, number>;
  /** Per launch token, the machine the world started for it (reported or not). */
  started: Map<string, { instanceId: string; launchedAtMs: number }>;
  /** Per dataset, tokens whose launch failed retryably while the job waited for it (a raced re-send may still start one). */
  failedTokens: Map<string, string[]>;
  /** Tokens EC2 refused as invalid: the world starts no machine for them. */
  refusedTokens: Set<string>;
  effects: JobEffect[];
  /** Instances the job knew about that were neither asked to terminate nor seen terminated. */
  unterminated: Set<string>;
  /** Per dataset, the machines started for it that the world has not yet seen terminated. */
  live: Map<string, Set<string>>;
  violations: string[];
  /** Launch tokens already sent: a re-send of one is the same attempt, never a second machine. */
  sentTokens: Set<string>;
}

function step(observed: Observed, event: JobEvent): JobEffect[] {
  const before = observed.state;
  const { state, effects } = reduceJob(before, event);
  // Shutting down is irrevocable and unbilled: the machine is on its way out.
  if (event.type === 'InstanceStateChanged' && (event.state === 'terminated' || event.state === 'shutting-down')) for (const set of observed.live.values()) set.delete(event.instanceId);
  // The world confirmed the end (shutting down is irrevocable): the job need not ask to terminate
  // it (a retry clears the dataset's instance fields when it records the attempt, so the check
  // below cannot see it go).
  if (event.type === 'InstanceStateChanged' && (event.state === 'terminated' || event.state === 'shutting-down')) observed.unterminated.delete(event.instanceId);
  // Only a failure that is not a refusal (no capacity, window closed, no clear answer) can be
  // raced by a re-send that gets a machine; a refusal (bad image, bad parameters) fails every send alike.
  const mayHaveStarted = event.type === 'InstanceLaunchFailed' && (event.outcome === 'unknown' || (event.outcome === undefined && event.retryable === true));
  if (event.type === 'InstanceLaunchFailed' && mayHaveStarted && event.clientToken !== undefined) {
    const was = before.datasets.find((d) => d.name === event.dataset);
    const now = state.datasets.find((d) => d.name === event.dataset);
    // An unclear answer within the window leaves the launch requested: it is not failed (yet).
    if (was?.machine === 'requested' && was.clientToken === event.clientToken && now?.machine !== 'requested') {
      observed.failedTokens.set(event.dataset, [...(observed.failedTokens.get(event.dataset) ?? []), event.clientToken]);
    }
  }
  for (const effect of effects) {
    if (effect.type === 'LaunchInstance' && !observed.cutoffs.has(effect.clientToken)) observed.cutoffs.set(effect.clientToken, Math.min(effect.deadlineAtMs, effect.launchByMs ?? effect.deadlineAtMs));
    if (effect.type === 'CheckLaunch') {
      // The job looks a token up only once nothing can start for it any more.
      const cutoffMs = observed.cutoffs.get(effect.clientToken) ?? Infinity;
      if (event.atMs < cutoffMs + LAUNCH_SETTLE_MS) observed.violations.push(`CheckLaunch ${effect.clientToken} at ${event.atMs}, before its window closed at ${cutoffMs}`);
    }
    if (effect.type === 'LaunchInstance' && !observed.sentTokens.has(effect.clientToken)) {
      observed.sentTokens.add(effect.clientToken);
      // Never two machines for one dataset at once: a new attempt waits for the last one's end.
      // Checked when a token is first sent; a re-send of it (same token) cannot add a machine.
      const others = [...(observed.live.get(effect.dataset) ?? [])].filter((id) => id !== instanceOf(effect.clientToken));
      if (others.length > 0) observed.violations.push(`LaunchInstance ${effect.clientToken} while ${others.join(', ')} of ${effect.dataset} may still run`);
    }
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
    if (ds.instanceId && was?.instanceId !== ds.instanceId && ds.machine !== 'terminated') observed.unterminated.add(ds.instanceId);
    if (ds.machine === 'terminated' && ds.instanceId) observed.unterminated.delete(ds.instanceId);
  }
  observed.state = state;
  observed.effects.push(...effects);
  return effects;
}

/** A world that finally behaves: answers launches, confirms terminations, lets time pass. */
function settle(observed: Observed, fromMs: number, capacityShort = false): number {
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
      const started = effect.type === 'LaunchInstance' && observed.started.has(effect.clientToken);
      if (effect.type === 'LaunchInstance' && capacityShort && !started && !effect.clientToken.includes('-a')) {
        pending.push(...step(observed, { type: 'InstanceLaunchFailed', atMs: now, dataset: effect.dataset, reason: 'InsufficientInstanceCapacity', clientToken: effect.clientToken, retryable: true }));
      } else if (effect.type === 'LaunchInstance') {
        const spot = effect.market === 'spot' || effect.market === 'spot-then-on-demand' ? ('spot' as const) : undefined;
        pending.push(...step(observed, launchAnswer(observed, effect.dataset, effect.clientToken, effect.instanceType, now, spot)));
      }
      if (effect.type === 'CheckLaunch') {
        const machine = observed.started.get(effect.clientToken);
        pending.push(
          ...step(
            observed,
            machine
              ? { type: 'InstanceLaunched', atMs: now, dataset: effect.dataset, instanceId: machine.instanceId, instanceType: 'm5.xlarge', clientToken: effect.clientToken, launchedAtMs: machine.launchedAtMs }
              : { type: 'LaunchTokenUnused', atMs: now, dataset: effect.dataset, clientToken: effect.clientToken },
          ),
        );
      }
      if (effect.type === 'TerminateInstance') {
        pending.push(...step(observed, { type: 'InstanceStateChanged', atMs: now, instanceId: effect.instanceId, state: 'terminated' }));
      }
    }
    if (observed.state.phase === 'DONE' || observed.state.phase === 'REJECTED') break;
  }
  return now;
}

interface Scenario {
  datasets: number;
  maxConcurrent: number;
  timeoutMinutes: number;
  platformRetries: number;
  capacityShort: boolean;
  market: 'on-demand' | 'spot' | 'spot-then-on-demand';
  steps: [WorldStep, number][];
}

function runScenario(input: Scenario): Observed {
  const blueprint = blueprintFixture({
    hardware: { instanceType: 'm5.xlarge', allowedInstanceTypes: ['m5.xlarge', 'm5.2xlarge'], volumeSizeGiB: 50, market: input.market },
    limits: { timeoutMinutes: input.timeoutMinutes, maxConcurrentMachines: input.maxConcurrent, agentWaitMinutes: 10, maxDatasetsPerJob: 10, platformRetries: input.platformRetries },
    pricing: { hourlyUsd: { 'm5.xlarge': 0.192, 'm5.2xlarge': 0.384 }, spotDiscount: 0.6 },
  });
  const plan = planFixture(input.datasets, blueprint);
  const observed: Observed = {
    state: initialJobState('job1', plan.analysis, 'lab', T0),
    cutoffs: new Map(),
    started: new Map(),
    failedTokens: new Map(),
    refusedTokens: new Set(),
    effects: [],
    unterminated: new Set(),
    live: new Map(),
    violations: [],
    sentTokens: new Set(),
  };
  let now = T0;
  step(observed, { type: 'SubmissionReceived', atMs: now, plan });
  for (const [worldStep, delayMs] of input.steps) {
    now += delayMs;
    const event = toEvent(worldStep, now, observed);
    if (event) step(observed, event);
  }
  settle(observed, now, input.capacityShort);
  return observed;
}

/**
 * The six properties below share one seed (fast-check prints it with any counterexample, and
 * FC_SEED replays it), so they see the same scenarios: each world is run once and checked
 * against every property, instead of each property running worlds of its own. A run explores
 * new worlds each time unless FC_SEED is given.
 */
const SHARED_SEED = process.env['FC_SEED'] !== undefined ? Number(process.env['FC_SEED']) : Date.now() % 2 ** 31;
const SHARED_RUNS = { numRuns: 600, seed: SHARED_SEED };
const runsByInput = new Map<string, Observed>();
function sharedScenario(input: Scenario): Observed {
  const key = JSON.stringify(input);
  let observed = runsByInput.get(key);
  if (!observed) {
    observed = runScenario(input);
    runsByInput.set(key, observed);
  }
  return observed;
}

const count = (effects: JobEffect[], type: JobEffect['type']) => effects.filter((e) => e.type === type).length;

/**
 * What the job settled beyond its reservation, less the time the world kept a machine past its
 * deadline (its self-shutdown and the reaper are not modelled here): 0 when it stayed inside.
 */
function overspentUsd({ state, effects }: Observed): number {
  const settle = effects.find((e): e is Extract<JobEffect, { type: 'SettleBudget' }> => e.type === 'SettleBudget');
  if (!settle || !state.plan) return 0;
  const hourly = state.plan.hourlyUsd + (state.plan.storageHourlyUsd ?? 0);
  let overrunUsd = 0;
  // Every machine of every attempt, strays included (retries live inside the reservation).
  const machines = state.datasets.flatMap((ds) => [ds, ...(ds.earlierAttempts ?? []), ...(ds.strays ?? [])]);
  for (const machine of machines) {
    if (machine.launchedAtMs === undefined || machine.terminatedAtMs === undefined || machine.deadlineAtMs === undefined) continue;
    const allowedEnd = machine.deadlineAtMs + PAST_DEADLINE_MINUTES * MIN;
    // Billing is per started second, so an overrun is counted in whole seconds.
    overrunUsd += (hourly * Math.ceil(Math.max(0, machine.terminatedAtMs - allowedEnd) / 1000)) / 3600;
  }
  return Math.max(0, settle.spentUsd - (settle.reservedUsd + overrunUsd + 1e-6));
}

/**
 * Counterexamples fast-check found before a retry after a launch failure waited for the failed
 * token to be proven (seeds 18, 24, 29 and 40 at 400 runs, shrunk): a retryable launch failure,
 * then a raced re-send of that launch starting a machine (a stray) that the retry's machine met.
 */
const strayCounterexamples: Scenario[] = [
  {
    datasets: 1,
    maxConcurrent: 1,
    timeoutMinutes: 1,
    platformRetries: 1,
    capacityShort: false,
    market: 'on-demand',
    steps: [
      [{ kind: 'reserved' }, 0],
      [{ kind: 'launchFailed', i: 0, retryable: true }, 0],
      [{ kind: 'stale', i: 0, state: 'running' }, 0],
      [{ kind: 'tick' }, 599986],
      [{ kind: 'online', i: 0 }, 15],
    ],
  },
  {
    datasets: 1,
    maxConcurrent: 1,
    timeoutMinutes: 1,
    platformRetries: 1,
    capacityShort: false,
    market: 'on-demand',
    steps: [
      [{ kind: 'reserved' }, 0],
      [{ kind: 'launchFailed', i: 0, retryable: true }, 0],
      [{ kind: 'stale', i: 0, state: 'running' }, 0],
      [{ kind: 'tick' }, 16656],
      [{ kind: 'tick' }, 567888],
      [{ kind: 'refused' }, 15457],
    ],
  },
  {
    datasets: 2,
    maxConcurrent: 2,
    timeoutMinutes: 1,
    platformRetries: 1,
    capacityShort: false,
    market: 'on-demand',
    steps: [
      [{ kind: 'reserved' }, 0],
      [{ kind: 'launchFailed', i: 1, retryable: true }, 0],
      [{ kind: 'stale', i: 1, state: 'running' }, 0],
      [{ kind: 'state', i: 0, state: 'running' }, 303216],
      [{ kind: 'launchFailed', i: 0, retryable: false }, 534926],
      [{ kind: 'online', i: 0 }, 421859],
    ],
  },
  {
    datasets: 2,
    maxConcurrent: 2,
    timeoutMinutes: 1,
    platformRetries: 1,
    capacityShort: true,
    market: 'on-demand',
    steps: [
      [{ kind: 'reserved' }, 0],
      [{ kind: 'launchFailed', i: 1, retryable: true }, 0],
      [{ kind: 'stale', i: 1, state: 'running' }, 0],
      [{ kind: 'stale', i: 0, state: 'terminated' }, 347479],
      [{ kind: 'state', i: 0, state: 'running' }, 45234],
      [{ kind: 'agentExpired', i: 0 }, 20402],
      [{ kind: 'agentExpired', i: 0 }, 25908],
      [{ kind: 'state', i: 0, state: 'running' }, 58319],
      [{ kind: 'state', i: 0, state: 'running' }, 678441],
      [{ kind: 'finished', i: 0, exitCode: null, timedOut: false, platform: false }, 84218],
    ],
  },
  // The gap itself, by hand: the raced launch's machine starts a moment after the failure and its
  // answer is lost; only the lookup after the window closes can find it, before any retry.
  {
    datasets: 1,
    maxConcurrent: 1,
    timeoutMinutes: 30,
    platformRetries: 2,
    capacityShort: false,
    market: 'on-demand',
    steps: [
      [{ kind: 'reserved' }, 0],
      [{ kind: 'launchFailed', i: 0, retryable: true }, 1_000],
      [{ kind: 'strayLost', i: 0 }, 2_000],
      [{ kind: 'tick' }, 2 * MIN],
      [{ kind: 'tick' }, 2 * MIN],
      [{ kind: 'tick' }, 2 * MIN],
      [{ kind: 'launched', i: 0 }, 1_000],
      [{ kind: 'stale', i: 0, state: 'running' }, 1_000],
    ],
  },
];

describe('job state machine under an adversarial world', () => {
  it('never launches a second machine for one attempt, nor more attempts than allowed, and tokens are never shared', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { effects, state } = sharedScenario(input);
        const tokens = new Map<string, Set<string>>();
        for (const effect of effects) {
          if (effect.type !== 'LaunchInstance') continue;
          const set = tokens.get(effect.dataset) ?? new Set();
          set.add(effect.clientToken);
          tokens.set(effect.dataset, set);
        }
        // One token per attempt (a re-sent launch keeps it), at most 1 + platformRetries attempts.
        for (const [dataset, set] of tokens) {
          expect(set.size).toBeLessThanOrEqual(1 + input.platformRetries);
          const ds = state.datasets.find((d) => d.name === dataset);
          expect(set.size).toBeLessThanOrEqual(attemptOf(ds ?? { attempt: 1 }));
        }
        const all = [...tokens.values()].flatMap((set) => [...set]);
        expect(new Set(all).size).toBe(all.length);
      }),
      SHARED_RUNS,
    );
    // The first property runs the shared worlds (about 15 s on an idle core); the others reuse them.
  }, 180_000);

  it('keeps a stray of a failed launch inside the reservation and never beside the retry (the seeds that found it)', () => {
    for (const example of strayCounterexamples) {
      const observed = runScenario(example);
      expect(observed.violations).toEqual([]);
      expect(overspentUsd(observed)).toBe(0);
      expect([...observed.live.values()].flatMap((set) => [...set])).toEqual([]);
    }
    // The hand-made one: the lost stray was found by the lookup, terminated and paid for.
    const lost = runScenario(strayCounterexamples.at(-1) as Scenario).state.datasets[0];
    expect(lost?.strays?.map((stray) => stray.instanceId)).toEqual(['i-ncap-job1-0']);
    expect(lost?.strays?.[0]?.terminatedAtMs).toBeDefined();
  });

  it('the scenarios do retry: some datasets reach a second attempt', () => {
    const runs = fc.sample(scenario, { numRuns: 300, seed: 7 }).map(runScenario);
    const retried = runs.flatMap((run) => run.state.datasets).filter((ds) => attemptOf(ds) > 1);
    expect(retried.length).toBeGreaterThan(10);
  });

  it('never has two live machines for one dataset, and retries only platform faults', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { state } = sharedScenario(input);
        for (const ds of state.datasets) {
          for (const earlier of ds.earlierAttempts ?? []) expect(earlier.failure.kind).toBe('platform');
          expect(attemptOf(ds)).toBeLessThanOrEqual(1 + input.platformRetries);
        }
      }),
      SHARED_RUNS,
    );
  });

  it('asks to terminate every machine it learnt of, and ends with every machine terminated', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const observed = sharedScenario(input);
        expect([...observed.unterminated]).toEqual([]);
        // Every machine the world started, reported or not (a lost stray), ended.
        expect([...observed.live.values()].flatMap((set) => [...set])).toEqual([]);
        expect(['DONE', 'REJECTED']).toContain(observed.state.phase);
        for (const ds of observed.state.datasets) {
          if (ds.instanceId !== undefined) expect(ds.machine).toBe('terminated');
          // Every dataset that did not succeed says why, in one of the five kinds.
          if (ds.phase === 'SUCCEEDED') expect(ds.failure).toBeUndefined();
          else expect(['analysis', 'input', 'platform', 'timeout', 'cancelled']).toContain(ds.failure?.kind);
        }
      }),
      SHARED_RUNS,
    );
  });

  it('settles, rejects and writes end.txt at most once', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        const { effects, state } = sharedScenario(input);
        expect(count(effects, 'SettleBudget')).toBeLessThanOrEqual(1);
        expect(count(effects, 'Reject')).toBeLessThanOrEqual(1);
        expect(count(effects, 'WriteEnd')).toBe(1);
        if (state.phase === 'DONE') expect(count(effects, 'SettleBudget')).toBe(1);
      }),
      SHARED_RUNS,
    );
  });

  it('never commands a finished or expired machine and never ends with a dataset still running', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        expect(sharedScenario(input).violations).toEqual([]);
      }),
      SHARED_RUNS,
    );
  });

  it('holds every invariant when launches get unclear answers or refusals (fixed seeds, so a failure replays)', () => {
    // Worlds with many unclear and refused launches: an unclear answer whose machine started,
    // then ticks past the window, must end with that machine found, terminated and paid for.
    const unclearHeavy = scenario.map((input) => ({
      ...input,
      steps: input.steps.flatMap(([s, delay]): [WorldStep, number][] => (s.kind === 'launched' ? [[{ kind: 'launchUnclear', i: s.i, started: delay % 2 === 0 }, delay], [s, delay]] : [[s, delay]])),
    }));
    for (const seed of [1, 2, 3]) {
      fc.assert(
        fc.property(unclearHeavy, (input) => {
          const observed = runScenario(input);
          expect(observed.violations).toEqual([]);
          expect(overspentUsd(observed)).toBe(0);
          // Every machine the world started, reported or not, ended, and the job knows it.
          expect([...observed.live.values()].flatMap((set) => [...set])).toEqual([]);
          expect(['DONE', 'REJECTED']).toContain(observed.state.phase);
          const known = new Set(observed.state.datasets.flatMap((ds) => [ds.instanceId, ...(ds.earlierAttempts ?? []).map((a) => a.instanceId), ...(ds.strays ?? []).map((m) => m.instanceId)]));
          for (const machine of observed.started.values()) expect(known).toContain(machine.instanceId);
          for (const ds of observed.state.datasets) expect(attemptOf(ds)).toBeLessThanOrEqual(1 + input.platformRetries);
        }),
        { numRuns: 50, seed },
      );
    }
    // By hand: the unclear send started the machine, every later answer was lost, the window
    // closed; the lookup found the machine before anything settled.
    const lost = runScenario({
      datasets: 1,
      maxConcurrent: 1,
      timeoutMinutes: 30,
      platformRetries: 0,
      capacityShort: false,
      market: 'on-demand',
      steps: [
        [{ kind: 'reserved' }, 0],
        [{ kind: 'launchUnclear', i: 0, started: true }, 1_000],
        [{ kind: 'launchUnclear', i: 0, started: false }, 6 * MIN],
      ],
    });
    expect(lost.violations).toEqual([]);
    expect(lost.state.datasets[0]?.strays?.map((stray) => stray.instanceId)).toEqual(['i-ncap-job1-0']);
    expect(lost.state.phase).toBe('DONE');
    expect(overspentUsd(lost)).toBe(0);
  });

  it('never spends more than it reserved, except for time the world kept a machine past its deadline', () => {
    fc.assert(
      fc.property(scenario, (input) => {
        expect(overspentUsd(sharedScenario(input))).toBe(0);
      }),
      SHARED_RUNS,
    );
  });
});
