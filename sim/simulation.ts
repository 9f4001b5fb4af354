/**
 * The deterministic simulation: the real driver (protocols/driver.ts), reducer
 * (lib/core/job-machine.ts), AWS protocol functions and reaper (protocols/aws/protocols.ts),
 * on a virtual clock, against the simulated services of world.ts. Many users of several groups
 * submit jobs of 1-50 datasets against tight budgets and cancel some at random; the world fails
 * as the fault profile says. At the end the invariants are checked on what the world saw.
 */
import { parseBlueprint, type Blueprint } from '../lib/core/blueprint.js';
import { machineCostUsd, PAST_DEADLINE_MINUTES } from '../lib/core/cost.js';
import { isJobFinished } from '../lib/core/job-machine.js';
import { jobKeys } from '../lib/core/keys.js';
import { machineHourlyUsdOf, machinePricing } from '../lib/core/plan.js';
import type { UserProfile } from '../lib/core/user.js';
import type { Catalog, IdSource } from '../lib/ports.js';
import { JobDriver } from '../protocols/driver.js';
import { onCommandStatusChange, onInstanceStateChange, onScheduledAction, onSpotInterruption, onSubmissionFailedForGood, reap, type ProtocolPlatform } from '../protocols/aws/protocols.js';
import { faultProfile } from './faults.js';
import { EventQueue } from './heap.js';
import { Rng } from './rng.js';
import { Invocation, LambdaDiedError, World, type Trigger } from './world.js';

export interface SimulationOptions {
  jobs: number;
  seed: number;
  faults: string;
  /** A deliberately broken protocol: TerminateInstance does nothing (the checker must catch it). */
  dropTerminate?: boolean;
}

export interface SimulationReport {
  seed: number;
  faults: string;
  jobs: number;
  figures: [string, number | string][];
  violations: string[];
  /** FNV-1a of every trigger handled, in order: equal for equal runs. */
  traceHash: string;
  virtualHours: number;
}

const T0 = Date.UTC(2026, 10, 30, 21, 0, 0); // crosses a monthly budget period
const REAPER_MS = 5 * 60_000;
const BUCKET = (analysis: string) => `ncap-${analysis}`;
const GROUPS = ['lab-a', 'lab-b', 'lab-c', 'lab-d'];
const USERS_PER_GROUP = 5;

function blueprints(): Blueprint[] {
  const base = {
    schemaVersion: 1,
    description: 'simulated analysis',
    environment: { ami: 'ami-0123456789abcdef0' },
    workflow: { command: ['run'] },
    config: { jsonSchema: { type: 'object' } },
  };
  return [
    parseBlueprint(
      {
        ...base,
        name: 'pose',
        hardware: { instanceType: 'm5.xlarge', allowedInstanceTypes: ['m5.xlarge', 'm5.large'], volumeSizeGiB: 50, extraVolumeSizesGiB: [100], market: 'spot-then-on-demand' },
        limits: { timeoutMinutes: 20, maxConcurrentMachines: 10, maxDatasetsPerJob: 50, agentWaitMinutes: 5 },
        pricing: { hourlyUsd: { 'm5.xlarge': 0.192, 'm5.large': 0.096 }, ebsUsdPerGiBMonth: 0.08, spotDiscount: 0.6 },
      },
      'simulated blueprint pose',
    ),
    parseBlueprint(
      {
        ...base,
        name: 'calcium',
        hardware: { instanceType: 'c5.2xlarge', volumeSizeGiB: 100 },
        limits: { timeoutMinutes: 45, maxConcurrentMachines: 20, maxDatasetsPerJob: 50, agentWaitMinutes: 10 },
        pricing: { hourlyUsd: { 'c5.2xlarge': 0.34 } },
      },
      'simulated blueprint calcium',
    ),
  ];
}

function users(rng: Rng): UserProfile[] {
  const out: UserProfile[] = [];
  for (const group of GROUPS) {
    for (let i = 0; i < USERS_PER_GROUP; i += 1) {
      out.push({
        username: `${group}-u${i}`,
        group,
        email: `${group}-u${i}@example.org`,
        // Tight: a few large jobs use it up.
        budgetUsd: rng.int(2, 25),
        budgetPeriod: i === 0 ? 'total' : 'monthly',
        allowedAnalyses: i === 4 ? ['pose'] : ['*'],
      });
    }
  }
  return out;
}

class SimCatalog implements Catalog {
  private readonly byName: Map<string, Blueprint>;
  private readonly profiles: Map<string, UserProfile>;
  constructor(list: Blueprint[], profiles: UserProfile[]) {
    this.byName = new Map(list.map((b) => [b.name, b]));
    this.profiles = new Map(profiles.map((p) => [p.username, p]));
  }
  async blueprint(analysis: string) {
    const blueprint = this.byName.get(analysis);
    return blueprint ? { blueprint, versionId: `sha256:${analysis}` } : undefined;
  }
  async usersOfGroup(group: string) {
    return [...this.profiles.values()].filter((p) => p.group === group);
  }
  async user(username: string) {
    return this.profiles.get(username);
  }
  imageId(blueprint: Blueprint) {
    return blueprint.environment.ami ?? 'ami-none';
  }
}

interface Submission {
  analysis: string;
  bucket: string;
  key: string;
  user: string;
}

export async function runSimulation(options: SimulationOptions): Promise<SimulationReport> {
  const rng = new Rng(options.seed);
  const faults = faultProfile(options.faults);
  const queue = new EventQueue<Trigger>();
  const bps = blueprints();
  const byAnalysis = new Map(bps.map((b) => [b.name, b]));
  const world = new World({
    rng,
    faults,
    queue,
    machineHourlyUsd: (type, analysis, market) => {
      const blueprint = byAnalysis.get(analysis) as Blueprint;
      const { hourlyUsd, storageHourlyUsd } = machinePricing(blueprint, type);
      return machineHourlyUsdOf({ hourlyUsd, storageHourlyUsd, blueprint, ...(blueprint.pricing.spotDiscount !== undefined ? { spotDiscount: blueprint.pricing.spotDiscount } : {}) }, type, market);
    },
    dropTerminate: options.dropTerminate ?? false,
  });
  world.nowMs = T0;
  const profiles = users(rng);
  const catalog = new SimCatalog(bps, profiles);
  let idSeq = 0;
  const ids: IdSource = { jobId: (nowMs) => `${new Date(nowMs).toISOString().replace(/[-:]/g, '').slice(0, 15)}Z-${(idSeq += 1).toString(36).padStart(5, '0')}` };

  // Researchers' files: one config per group and analysis, inputs per job, then the submissions.
  for (const group of GROUPS) for (const b of bps) world.userPut(BUCKET(b.name), `${group}/configs/${b.name}.json`, '{}');
  const submissions: Submission[] = [];
  const submissionBodies = new Map<string, string>();
  const arrivalSpanMs = Math.max(60_000, options.jobs * 1_500);
  for (let n = 0; n < options.jobs; n += 1) {
    const user = rng.pick(profiles);
    const analysis = rng.pick(bps).name;
    const bucket = BUCKET(analysis);
    const roll = rng.next();
    const datasets = roll < 0.5 ? 1 : roll < 0.8 ? rng.int(2, 10) : rng.int(11, 50);
    const names: string[] = [];
    for (let d = 0; d < datasets; d += 1) {
      const key = `${user.group}/inputs/j${n}/d${d}.bin`;
      world.userPut(bucket, key, 'x');
      names.push(key);
    }
    const key = `${user.group}/submissions/${user.username}/j${n}submit.json`;
    const bad = rng.next();
    const body =
      bad < 0.02
        ? '{"dataname": ['
        : bad < 0.04
          ? JSON.stringify({ dataname: [...names, `${user.group}/inputs/missing-${n}.bin`], configname: `${user.group}/configs/${analysis}.json` })
          : JSON.stringify({ dataname: names, configname: `${user.group}/configs/${analysis}.json` });
    const atMs = T0 + rng.int(0, arrivalSpanMs);
    submissions.push({ analysis, bucket, key, user: user.username });
    // The researcher's upload happens at arrival; S3 then notifies the submit function.
    queue.push(atMs, { kind: 's3-submission', bucket, key, attempt: -1 });
    if (rng.chance(0.06)) queue.push(atMs + rng.int(1_000, 30 * 60_000), { kind: 'cancel', bucket, key, reason: `cancelled by ${user.username}` });
    if (rng.chance(faults.eventDuplicate)) queue.push(atMs + rng.int(0, 60_000), { kind: 's3-submission', bucket, key, attempt: 0 });
    submissionBodies.set(`${bucket}/${key}`, body);
  }
  queue.push(T0 + REAPER_MS, { kind: 'reaper', attempt: 0 });
  const lastArrivalMs = T0 + arrivalSpanMs;
  const hardStopMs = lastArrivalMs + 12 * 3_600_000;
  const byKey = new Map(submissions.map((s) => [`${s.bucket}/${s.key}`, s]));
  const userOf = new Map(profiles.map((p) => [p.username, p]));

  let trace = 0x811c9dc5;
  const mix = (text: string) => {
    for (let i = 0; i < text.length; i += 1) trace = Math.imul(trace ^ text.charCodeAt(i), 0x01000193) >>> 0;
  };

  const platformFor = (name: string): { platform: ProtocolPlatform; invocation: Invocation } => {
    const invocation = new Invocation(world, name);
    const ports = world.portsFor(invocation);
    const clock = { nowMs: () => world.nowMs };
    const driver = new JobDriver({ ...ports, runner: ports.machines, catalog, clock, ids });
    return { invocation, platform: { driver, objects: ports.objects, jobs: ports.jobs, machines: ports.machines, runner: ports.machines, clock } };
  };

  const handle = async (trigger: Trigger): Promise<void> => {
    if (trigger.kind === 'machine') {
      world.machineStep(trigger.instanceId, trigger.step);
      return;
    }
    world.stats.invocations += 1;
    const { platform, invocation } = platformFor(trigger.kind);
    try {
      await invoke(trigger, platform);
      // A Lambda that died is a failed invocation even where the code caught the error of the
      // call it died in (the reaper catches per job, the driver per effect): the process is
      // gone, its handler never returned, and AWS retries the trigger as for any failure.
      if (invocation.dead) throw new LambdaDiedError();
    } catch (error) {
      retry(trigger, error);
    }
  };

  /** One protocol function's run on a trigger, as the AWS handler would call it. */
  const invoke = async (trigger: Exclude<Trigger, { kind: 'machine' }>, platform: ProtocolPlatform): Promise<void> => {
    switch (trigger.kind) {
      case 's3-submission': {
        if (trigger.attempt === -1) {
          // The upload itself: S3 then invokes the submit function asynchronously.
          const body = submissionBodies.get(`${trigger.bucket}/${trigger.key}`) as string;
          world.userPut(trigger.bucket, trigger.key, body);
          world.deliver({ ...trigger, attempt: 0 }, rng.int(100, 2_000), false);
          return;
        }
        const s = byKey.get(`${trigger.bucket}/${trigger.key}`) as Submission;
        await platform.driver.submit(trigger.bucket, trigger.key, { analysis: s.analysis, username: s.user });
        return;
      }
      case 'failed-submission': {
        const s = byKey.get(`${trigger.bucket}/${trigger.key}`) as Submission;
        await onSubmissionFailedForGood(platform, s.analysis, trigger.bucket, trigger.key, trigger.error);
        return;
      }
      case 'sqs':
        await onScheduledAction(platform, trigger.action);
        return;
      case 'ec2-state':
        await onInstanceStateChange(platform, trigger.instanceId, trigger.state, trigger.eventTimeMs);
        return;
      case 'command-status':
        await onCommandStatusChange(platform, trigger.commandId, trigger.instanceId, trigger.status);
        return;
      case 'spot-warning':
        await onSpotInterruption(platform, trigger.instanceId);
        return;
      case 'cancel': {
        const head = world.buckets.get(trigger.bucket)?.get(trigger.key)?.info;
        const jobId = head ? world.claims.get(`${trigger.bucket}/${trigger.key}#${head.etag}`) : undefined;
        if (!jobId) return;
        await platform.driver.dispatch(jobId, { type: 'CancelRequested', atMs: world.nowMs, reason: trigger.reason });
        return;
      }
      case 'reaper':
        await reap(platform);
        return;
    }
  };

  /** What AWS does with a failed invocation of each trigger. */
  const retry = (trigger: Trigger, error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    switch (trigger.kind) {
      case 's3-submission':
        // Asynchronous invocation: two retries, then the on-failure destination (the failed-submissions queue).
        if (trigger.attempt < 2) world.deliver({ ...trigger, attempt: trigger.attempt + 1 }, 60_000 * (trigger.attempt + 1), false);
        else world.deliver({ kind: 'failed-submission', bucket: trigger.bucket, key: trigger.key, error: message, attempt: 0 }, 1_000, false);
        return;
      case 'failed-submission':
        if (trigger.attempt < 50) world.deliver({ ...trigger, attempt: trigger.attempt + 1 }, 30_000, false);
        return;
      case 'sqs':
        // Visibility timeout, then redelivery; after five receives the message is dead-lettered.
        if (trigger.receive < 5) world.deliver({ ...trigger, receive: trigger.receive + 1 }, 30_000, false);
        return;
      case 'ec2-state':
      case 'command-status':
      case 'spot-warning':
        // EventBridge retries a failed Lambda target twice, then drops the event.
        if (trigger.attempt < 2) world.deliver({ ...trigger, attempt: trigger.attempt + 1 }, 60_000, false);
        return;
      case 'cancel':
        world.deliver(trigger, 30_000, false);
        return;
      case 'reaper':
        // The schedule invokes the reaper asynchronously: Lambda retries a failed run twice, a
        // minute and then two minutes later. The next scheduled run comes anyway.
        if (trigger.attempt < 2) world.deliver({ ...trigger, attempt: trigger.attempt + 1 }, 60_000 * (trigger.attempt + 1), false);
        return;
      default:
        return;
    }
  };

  const allSettled = (): boolean => {
    if (world.nowMs < lastArrivalMs) return false;
    for (const s of submissions) {
      const head = world.buckets.get(s.bucket)?.get(s.key)?.info;
      const jobId = head ? world.claims.get(`${s.bucket}/${s.key}#${head.etag}`) : undefined;
      const record = jobId ? world.jobs.get(jobId) : undefined;
      // Finished and with nothing left in its outbox: a failed end.txt write or settlement is
      // still to be retried by the reaper, so the run is not over.
      if (!record || !isJobFinished(record.state) || record.outbox.length > 0) return false;
    }
    for (const instance of world.instances.values()) if (instance.state !== 'terminated') return false;
    return true;
  };

  let handled = 0;
  for (;;) {
    const next = queue.pop();
    if (!next) break;
    if (next.atMs > hardStopMs) break;
    world.nowMs = Math.max(world.nowMs, next.atMs);
    handled += 1;
    mix(`${next.atMs}:${next.item.kind}`);
    // Only the scheduled runs (attempt 0) keep the schedule going; retries of a failed run do not.
    if (next.item.kind === 'reaper' && next.item.attempt === 0) {
      if (allSettled()) break;
      queue.push(next.atMs + REAPER_MS, { kind: 'reaper', attempt: 0 });
    }
    // Invocations that are due together run concurrently, as Lambdas do (CAS conflicts included).
    const batch: Trigger[] = [next.item];
    while (batch.length < 8 && (queue.peekTime() ?? Number.POSITIVE_INFINITY) <= next.atMs + 250) {
      const more = queue.pop() as { atMs: number; item: Trigger };
      world.nowMs = Math.max(world.nowMs, more.atMs);
      mix(`${more.atMs}:${more.item.kind}`);
      handled += 1;
      if (more.item.kind === 'reaper' && more.item.attempt === 0) {
        queue.push(more.atMs + REAPER_MS, { kind: 'reaper', attempt: 0 });
      }
      batch.push(more.item);
    }
    if (batch.length === 1) await handle(next.item);
    else await Promise.all(batch.map((t) => handle(t)));
  }

  return check(world, submissions, userOf, byAnalysis, options, faults.name, trace, handled);
}


function check(
  world: World,
  submissions: Submission[],
  userOf: Map<string, UserProfile>,
  byAnalysis: Map<string, Blueprint>,
  options: SimulationOptions,
  faults: string,
  trace: number,
  handled: number,
): SimulationReport {
  const violations: string[] = [];
  const endMs = world.nowMs;
  const allowanceMs = PAST_DEADLINE_MINUTES * 60_000;
  let leaked = 0;
  let maxOverrunMs = 0;
  const perAttempt = new Map<string, number>();
  const perDataset = new Map<string, import('./world.js').InstanceRecord[]>();
  const spendByPeriod = new Map<string, number>();
  const spendByJob = new Map<string, number>();
  const machinesByJob = new Map<string, string[]>();
  for (const instance of world.instances.values()) {
    machinesByJob.set(instance.request.jobId, [...(machinesByJob.get(instance.request.jobId) ?? []), instance.instanceId]);
    const end = instance.endedAtMs ?? endMs;
    const overrun = end - instance.request.deadlineAtMs;
    if (overrun > maxOverrunMs) maxOverrunMs = overrun;
    if (instance.endedAtMs === undefined || overrun > allowanceMs) {
      leaked += 1;
      if (leaked <= 5) violations.push(`machine ${instance.instanceId} (job ${instance.request.jobId}, ${instance.request.dataset}) alive ${Math.round(overrun / 1000)} s past its deadline`);
    }
    // One machine per attempt (its client token); a dataset may have 1 + platformRetries attempts.
    const attempt = `${instance.request.jobId}/${instance.request.dataset}#${instance.clientToken}`;
    perAttempt.set(attempt, (perAttempt.get(attempt) ?? 0) + 1);
    const dataset = `${instance.request.jobId}/${instance.request.dataset}`;
    perDataset.set(dataset, [...(perDataset.get(dataset) ?? []), instance]);
    const cost = machineCostUsd(instance.hourlyUsd, instance.launchedAtMs, end);
    spendByJob.set(instance.request.jobId, (spendByJob.get(instance.request.jobId) ?? 0) + cost);
  }
  const duplicates = [...perAttempt.values()].filter((n) => n > 1).length;
  if (duplicates > 0) violations.push(`${duplicates} dataset attempt(s) had more than one machine`);
  let overlapping = 0;
  let tooManyAttempts = 0;
  let retriedDatasets = 0;
  for (const [dataset, machines] of perDataset) {
    const analysis = machines[0]?.request.analysis as string;
    const allowed = 1 + (byAnalysis.get(analysis)?.limits.platformRetries ?? 0);
    if (machines.length > 1) retriedDatasets += 1;
    if (new Set(machines.map((m) => m.clientToken)).size > allowed) {
      tooManyAttempts += 1;
      if (tooManyAttempts <= 5) violations.push(`dataset ${dataset} had ${machines.length} machines, more attempts than the ${allowed} allowed`);
    }
    // Never two live (billed) machines for one dataset at once.
    const sorted = [...machines].sort((a, b) => a.launchedAtMs - b.launchedAtMs);
    for (let i = 1; i < sorted.length; i += 1) {
      const before = sorted[i - 1] as (typeof sorted)[number];
      if ((before.endedAtMs ?? endMs) > (sorted[i] as (typeof sorted)[number]).launchedAtMs) {
        overlapping += 1;
        if (overlapping <= 5) violations.push(`dataset ${dataset}: machine ${sorted[i]?.instanceId} started while ${before.instanceId} was still live`);
      }
    }
  }

  let notTerminal = 0;
  let noReason = 0;
  let endNotOnce = 0;
  let reservedOverrun = 0;
  let unsettled = 0;
  let unaccounted = 0;
  let rejected = 0;
  let done = 0;
  let datasets = 0;
  const outcomes = new Map<string, number>();
  const reasons = new Map<string, number>();
  for (const s of submissions) {
    const head = world.buckets.get(s.bucket)?.get(s.key)?.info;
    const jobId = head ? world.claims.get(`${s.bucket}/${s.key}#${head.etag}`) : undefined;
    const record = jobId ? world.jobs.get(jobId) : undefined;
    if (!record || !jobId) {
      notTerminal += 1;
      if (notTerminal <= 5) violations.push(`submission ${s.key} has no job`);
      continue;
    }
    const state = record.state;
    if (!isJobFinished(state)) {
      notTerminal += 1;
      if (notTerminal <= 5) violations.push(`job ${jobId} not terminal: ${state.phase} (${state.datasets.map((d) => d.phase).join(',')})`);
      continue;
    }
    const keys = jobKeys(state.group, state.analysis, jobId);
    const ends = world.writes.get(`${record.bucket}/${keys.end}`) ?? 0;
    if (ends !== 1) {
      endNotOnce += 1;
      if (endNotOnce <= 5) violations.push(`job ${jobId}: end.txt written ${ends} times`);
    }
    const certificate = world.buckets.get(record.bucket)?.has(keys.certificate) ?? false;
    // Every machine EC2 started for the job is one the job knows (and so terminated and paid for):
    // its current machine, an earlier attempt's, or a stray of a launch it no longer waited for.
    const known = new Set(state.datasets.flatMap((ds) => [ds.instanceId, ...(ds.earlierAttempts ?? []).map((a) => a.instanceId), ...(ds.strays ?? []).map((m) => m.instanceId)]));
    for (const instanceId of machinesByJob.get(jobId) ?? []) {
      if (known.has(instanceId)) continue;
      unaccounted += 1;
      if (unaccounted <= 5) violations.push(`job ${jobId} ended without accounting for machine ${instanceId}`);
    }
    if (state.phase === 'REJECTED') {
      rejected += 1;
      if (!certificate || !(state.rejection ?? []).some((r) => r.trim().length > 0)) {
        noReason += 1;
        if (noReason <= 5) violations.push(`job ${jobId} rejected without a reason the researcher can read`);
      }
      continue;
    }
    done += 1;
    for (const ds of state.datasets) {
      datasets += 1;
      outcomes.set(ds.phase, (outcomes.get(ds.phase) ?? 0) + 1);
      if (ds.phase !== 'SUCCEEDED' && ds.reason) {
        const prefix = ds.reason.replace(/i-[0-9a-f]+/g, 'i-*').replace(/\d+/g, 'N').slice(0, 60);
        reasons.set(prefix, (reasons.get(prefix) ?? 0) + 1);
      }
      if (ds.phase !== 'SUCCEEDED' && (!ds.reason || !certificate)) {
        noReason += 1;
        if (noReason <= 5) violations.push(`job ${jobId} dataset ${ds.name} ${ds.phase} without a reason`);
      }
    }
    const plan = state.plan;
    if (plan) {
      const truth = spendByJob.get(jobId) ?? 0;
      if (truth > plan.reservedUsd + 1e-6) {
        reservedOverrun += 1;
        if (reservedOverrun <= 5) violations.push(`job ${jobId} cost $${truth.toFixed(6)} but reserved $${plan.reservedUsd}`);
      }
      const period = `${plan.user}#${plan.budgetPeriod}`;
      spendByPeriod.set(period, (spendByPeriod.get(period) ?? 0) + truth);
      const entry = (world.ledgers.get(period) ?? []).find((e) => e.jobId === jobId);
      if (!entry || entry.spentUsd === undefined || Math.abs(entry.spentUsd - (state.spentUsd ?? -1)) > 1e-9) {
        unsettled += 1;
        if (unsettled <= 5) violations.push(`job ${jobId}: ledger ${entry?.spentUsd ?? 'unsettled'} vs job ${state.spentUsd}`);
      }
    }
  }
  if (notTerminal > 5) violations.push(`... ${notTerminal} jobs not terminal in all`);
  if (leaked > 5) violations.push(`... ${leaked} machines leaked in all`);
  if (unaccounted > 5) violations.push(`... ${unaccounted} machines no job accounted for in all`);

  let budgetOverruns = 0;
  let tightestLeftUsd = Number.POSITIVE_INFINITY;
  for (const [period, spent] of spendByPeriod) {
    const user = userOf.get(period.split('#')[0] as string) as UserProfile;
    tightestLeftUsd = Math.min(tightestLeftUsd, user.budgetUsd - spent);
    if (spent > user.budgetUsd + 1e-6) {
      budgetOverruns += 1;
      violations.push(`user ${period} spent $${spent.toFixed(6)} of a $${user.budgetUsd} budget`);
    }
  }

  let userModified = 0;
  for (const key of world.userKeys) if ((world.writes.get(key) ?? 0) !== 1) userModified += 1;
  if (userModified > 0) violations.push(`${userModified} researcher object(s) were written by the platform`);

  const totalSpend = [...spendByJob.values()].reduce((a, b) => a + b, 0);
  const s = world.stats;
  const figures: [string, number | string][] = [
    ['submissions', submissions.length],
    ['jobs run / rejected', `${done} / ${rejected}`],
    ['datasets run', datasets],
    ['dataset outcomes', [...outcomes.entries()].sort().map(([p, n]) => `${p} ${n}`).join(', ')],
    ['top reasons', [...reasons.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 4).map(([r, n]) => `${n}x "${r}"`).join('; ')],
    ['machines launched', world.instances.size],
    ['total spend USD', totalSpend.toFixed(4)],
    ['invocations', s.invocations],
    ['events handled', handled],
    ['faults: throttled/5xx', s.throttled],
    ['faults: lambda deaths', s.lambdaDeaths],
    ['faults: events lost / duplicated', `${s.eventsLost} / ${s.eventsDuplicated}`],
    ['faults: launch timeouts / capacity', `${s.launchTimeouts} / ${s.capacityErrors}`],
    ['faults: launches unclear (machine started)', `${s.launchesUnclear} (${s.launchesUnclearStarted})`],
    ['faults: machines died / spot interruptions', `${s.instancesDied} / ${s.spotInterruptions}`],
    ['faults: agents never online / completions lost', `${s.agentsNeverOnline} / ${s.completionsLost}`],
    ['tightest budget left USD', Number.isFinite(tightestLeftUsd) ? tightestLeftUsd.toFixed(6) : 'n/a'],
    ['machines leaked', leaked],
    ['max overrun past deadline s', (maxOverrunMs / 1000).toFixed(1)],
    ['allowed overrun s', allowanceMs / 1000],
    ['budget overruns (user, period)', budgetOverruns],
    ['jobs over their reservation', reservedOverrun],
    ['machines no job accounted for', unaccounted],
    ['duplicate machines per attempt', duplicates],
    ['datasets retried (platform faults)', retriedDatasets],
    ['two live machines for one dataset', overlapping],
    ['datasets over their attempts', tooManyAttempts],
    ['jobs not terminal', notTerminal],
    ['jobs without a readable reason', noReason],
    ['end.txt written other than once', endNotOnce],
    ['ledger not settled to the job cost', unsettled],
    ['user objects modified', userModified],
  ];
  return {
    seed: options.seed,
    faults,
    jobs: options.jobs,
    figures,
    violations,
    traceHash: trace.toString(16).padStart(8, '0'),
    virtualHours: (endMs - T0) / 3_600_000,
  };
}

/** The report as printed: figures last, deterministic for a seed. */
export function renderReport(report: SimulationReport): string {
  const width = Math.max(...report.figures.map(([label]) => label.length));
  const lines = [
    `neurocaas simulation: ${report.jobs} jobs, seed ${report.seed}, faults ${report.faults}`,
    ...report.violations.map((v) => `VIOLATION ${v}`),
    `virtual time ${report.virtualHours.toFixed(2)} h, trace ${report.traceHash}`,
    ...report.figures.map(([label, value]) => `${label.padEnd(width)}  ${value}`),
    report.violations.length === 0 ? 'result: 0 violations' : `result: ${report.violations.length} violation(s)`,
  ];
  return `${lines.join('\n')}\n`;
}
