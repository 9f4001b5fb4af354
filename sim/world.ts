/**
 * The simulated cloud: S3, DynamoDB (job store + ledger), EC2, SSM, SQS and EventBridge as
 * in-memory services implementing lib/ports.ts, on a virtual clock, failing the way the real
 * ones do, as often as the seed says. Nothing here reads the real clock or Math.random: the
 * same seed gives the same run, byte for byte.
 */
import { decideReservation, settleEntry, type LedgerEntry } from '../lib/core/cost.js';
import { CapacityExhaustedError, ConcurrentUpdateError, LaunchOutcomeUnknownError, MachineLaunchError, NeuroCaasError, ObjectExistsError, ObjectNotFoundError, launchCutoffMs, launchWindowClosedError, pastDeadlineError } from '../lib/core/errors.js';
import { summarizeJob } from '../lib/core/job-machine.js';
import { reaperDueAtMs } from '../lib/core/reaper-due.js';
import type { DueJob } from '../lib/aws/dynamo-job-store.js';
import type { RunnerSpec } from '../lib/core/runner-spec.js';
import type {
  ClaimResult,
  JobRecord,
  JobStore,
  JobSummary,
  LaunchRequest,
  LaunchResult,
  Ledger,
  MachineDescription,
  Machines,
  MachineState,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  ReserveResult,
  ScheduledAction,
  Scheduler,
} from '../lib/ports.js';
import type { AwsCommandRunner } from '../protocols/aws/platform.js';
import type { SsmCommandResult } from '../protocols/aws/command-outcome.js';
import type { FaultProfile } from './faults.js';
import type { EventQueue } from './heap.js';
import type { Rng } from './rng.js';

/** Something the world delivers later: an AWS trigger of a protocol function. */
export type Trigger =
  | { kind: 's3-submission'; bucket: string; key: string; attempt: number }
  | { kind: 'failed-submission'; bucket: string; key: string; error: string; attempt: number }
  | { kind: 'sqs'; action: ScheduledAction; receive: number }
  | { kind: 'ec2-state'; instanceId: string; state: MachineState; eventTimeMs: number; attempt: number }
  | { kind: 'command-status'; commandId: string; instanceId: string; status: string; attempt: number }
  /** attempt 0: the scheduled run; 1-2: Lambda's retries of a failed run. */
  | { kind: 'reaper'; attempt: number }
  | { kind: 'cancel'; bucket: string; key: string; reason: string }
  | { kind: 'spot-warning'; instanceId: string; attempt: number }
  | { kind: 'machine'; instanceId: string; step: 'running' | 'agent-online' | 'workflow-end' | 'self-stop' | 'terminated' | 'die' | 'spot-warning' };

/** A throttling or 5xx answer: retryable, not a NeuroCaasError, so the driver keeps the effect. */
export class SimServiceError extends Error {
  constructor(service: string, what: string) {
    super(`${service}: ${what}`);
    this.name = 'SimServiceError';
  }
}

/** The Lambda running this call was killed (timeout, OOM, host lost): nothing after it runs. */
export class LambdaDiedError extends Error {
  constructor() {
    super('the Lambda invocation died');
    this.name = 'LambdaDiedError';
  }
}

/** One protocol invocation: once it died, every further call of it fails. */
export class Invocation {
  dead = false;
  constructor(
    private readonly world: World,
    readonly name: string,
  ) {}
  /** Called before every service call; may kill the invocation or throttle the call. */
  gate(service: string): void {
    if (this.dead) throw new LambdaDiedError();
    const f = this.world.faults;
    if (this.world.rng.chance(f.lambdaDeath)) {
      this.dead = true;
      this.world.stats.lambdaDeaths += 1;
      throw new LambdaDiedError();
    }
    if (this.world.rng.chance(f.throttle)) {
      this.world.stats.throttled += 1;
      throw new SimServiceError(service, this.world.rng.chance(0.5) ? 'ThrottlingException: Rate exceeded' : 'InternalError (500)');
    }
  }
}

interface StoredObject {
  body: string;
  info: ObjectInfo;
}

export interface InstanceRecord {
  instanceId: string;
  request: LaunchRequest;
  instanceType: string;
  clientToken: string;
  state: MachineState;
  /** EC2's LaunchTime: billing starts. */
  launchedAtMs: number;
  /** When it began shutting down: billing ends. */
  endedAtMs?: number;
  transitionReason?: string;
  agentOnline: boolean;
  /** This machine's agent never comes up. */
  agentNeverOnline: boolean;
  /** Its runner never powers it off (neither at the deadline nor after the workflow). */
  selfStopFails: boolean;
  /** The machine's clock is this far off the world's. */
  skewMs: number;
  command?: { commandId: string; spec: RunnerSpec; exitCode: number; endsAtMs: number; finished: boolean };
  spot: boolean;
  hourlyUsd: number;
}

export interface WorldOptions {
  rng: Rng;
  faults: FaultProfile;
  queue: EventQueue<Trigger>;
  /** Instance type prices (instance + volumes per hour), for the truth about spend. */
  machineHourlyUsd: (instanceType: string, analysis: string, market: 'spot' | 'on-demand') => number;
  /** Deliberately broken protocol (for the test that the checker can fail): terminate does nothing. */
  dropTerminate?: boolean;
}

/** Counters printed at the end. */
export interface WorldStats {
  throttled: number;
  lambdaDeaths: number;
  eventsLost: number;
  eventsDuplicated: number;
  launchTimeouts: number;
  /** Launches the adapter reported as of unknown outcome, and how many of those had started a machine. */
  launchesUnclear: number;
  launchesUnclearStarted: number;
  capacityErrors: number;
  instancesDied: number;
  spotInterruptions: number;
  agentsNeverOnline: number;
  completionsLost: number;
  invocations: number;
}

/** The whole simulated account. */
export class World {
  readonly rng: Rng;
  readonly faults: FaultProfile;
  readonly queue: EventQueue<Trigger>;
  nowMs = 0;
  readonly stats: WorldStats = {
    throttled: 0,
    lambdaDeaths: 0,
    eventsLost: 0,
    eventsDuplicated: 0,
    launchTimeouts: 0,
    launchesUnclear: 0,
    launchesUnclearStarted: 0,
    capacityErrors: 0,
    instancesDied: 0,
    spotInterruptions: 0,
    agentsNeverOnline: 0,
    completionsLost: 0,
    invocations: 0,
  };
  readonly buckets = new Map<string, Map<string, StoredObject>>();
  /** Writes per key (successful puts), for "end.txt written once" and "user objects modified". */
  readonly writes = new Map<string, number>();
  /** Keys researchers wrote; the platform must never write them again. */
  readonly userKeys = new Set<string>();
  readonly jobs = new Map<string, JobRecord>();
  readonly claims = new Map<string, string>();
  readonly ledgers = new Map<string, LedgerEntry[]>();
  readonly instances = new Map<string, InstanceRecord>();
  readonly byToken = new Map<string, string>();
  private instanceSeq = 0;
  private commandSeq = 0;
  private etagSeq = 0;
  readonly machineHourlyUsd: (instanceType: string, analysis: string, market: 'spot' | 'on-demand') => number;
  readonly dropTerminate: boolean;

  constructor(options: WorldOptions) {
    this.rng = options.rng;
    this.faults = options.faults;
    this.queue = options.queue;
    this.machineHourlyUsd = options.machineHourlyUsd;
    this.dropTerminate = options.dropTerminate ?? false;
  }

  /** A researcher's upload: not through any protocol, recorded as user data. */
  userPut(bucket: string, key: string, body: string): void {
    this.storePut(bucket, key, body);
    this.userKeys.add(`${bucket}/${key}`);
    this.writes.set(`${bucket}/${key}`, 1);
  }

  storePut(bucket: string, key: string, body: string): ObjectInfo {
    let objects = this.buckets.get(bucket);
    if (!objects) {
      objects = new Map();
      this.buckets.set(bucket, objects);
    }
    const info: ObjectInfo = { key, size: body.length, etag: `"e${(this.etagSeq += 1)}"`, lastModifiedMs: this.nowMs };
    objects.set(key, { body, info });
    return info;
  }

  /** Delivers a trigger after `delayMs`, or loses, duplicates or delays it as the faults say. */
  deliver(trigger: Trigger, delayMs: number, lossy: boolean): void {
    const f = this.faults;
    if (lossy && this.rng.chance(f.eventLoss)) {
      this.stats.eventsLost += 1;
      return;
    }
    const extra = this.rng.chance(f.eventDelay) ? this.rng.int(1_000, f.maxEventDelayMs) : 0;
    this.queue.push(this.nowMs + delayMs + extra, trigger);
    if (lossy && this.rng.chance(f.eventDuplicate)) {
      this.stats.eventsDuplicated += 1;
      this.queue.push(this.nowMs + delayMs + this.rng.int(0, f.maxEventDelayMs), trigger);
    }
  }

  /** The ports as one invocation sees them. */
  portsFor(invocation: Invocation): SimPorts {
    return {
      objects: new SimObjectStore(this, invocation),
      jobs: new SimJobStore(this, invocation),
      ledger: new SimLedger(this, invocation),
      machines: new SimMachines(this, invocation),
      scheduler: new SimScheduler(this, invocation),
    };
  }

  // ---- EC2 ----

  /** EC2 itself would start it; the adapter refuses a late send first (Ec2Machines.launch), as the port says. */
  refuseLateLaunch(request: LaunchRequest): void {
    if (this.nowMs >= request.deadlineAtMs) throw pastDeadlineError(request);
    const cutoffMs = launchCutoffMs(request);
    if (this.nowMs >= cutoffMs) throw launchWindowClosedError({ dataset: request.dataset, clientToken: request.clientToken, launchByMs: cutoffMs });
  }

  launchInstance(request: LaunchRequest): LaunchResult {
    const existing = this.byToken.get(request.clientToken);
    if (existing) {
      const instance = this.instances.get(existing) as InstanceRecord;
      return { instanceId: instance.instanceId, instanceType: instance.instanceType, launchedAtMs: instance.launchedAtMs, ...(instance.spot ? { market: 'spot' as const } : {}) };
    }
    this.refuseLateLaunch(request);
    const f = this.faults;
    if (this.rng.chance(f.capacity)) {
      this.stats.capacityErrors += 1;
      throw new CapacityExhaustedError(`no capacity for ${request.instanceType}: InsufficientInstanceCapacity. Try again later, or allow more instance types for this analysis.`);
    }
    if (this.rng.chance(f.quota)) {
      throw new CapacityExhaustedError(`no capacity for ${request.instanceType}: VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit allows.`);
    }
    const instanceId = `i-${(this.instanceSeq += 1).toString(16).padStart(17, '0')}`;
    // Spot as the request asks (spot-then-on-demand: spot unless the spot share says none is left).
    const spot = request.market === 'spot' || (request.market === 'spot-then-on-demand' && this.rng.chance(f.spotShare > 0 ? 0.8 : 0));
    // EC2 starts the machine a moment after the request (never before it).
    const launchedAtMs = this.nowMs + this.rng.int(0, 3_000);
    const agentNeverOnline = this.rng.chance(f.agentNeverOnline);
    if (agentNeverOnline) this.stats.agentsNeverOnline += 1;
    const instance: InstanceRecord = {
      instanceId,
      request,
      instanceType: request.instanceType,
      clientToken: request.clientToken,
      state: 'pending',
      launchedAtMs,
      agentOnline: false,
      agentNeverOnline,
      selfStopFails: this.rng.chance(f.selfStopFails),
      skewMs: this.rng.int(-f.maxSkewMs, f.maxSkewMs),
      spot,
      hourlyUsd: this.machineHourlyUsd(request.instanceType, request.analysis, spot ? 'spot' : 'on-demand'),
    };
    this.instances.set(instanceId, instance);
    this.byToken.set(request.clientToken, instanceId);
    this.queue.push(launchedAtMs + this.rng.int(5_000, 30_000), { kind: 'machine', instanceId, step: 'running' });
    if (this.rng.chance(f.instanceDeath)) {
      this.queue.push(launchedAtMs + this.rng.int(10_000, 3_600_000), { kind: 'machine', instanceId, step: 'die' });
    } else if (instance.spot && this.rng.chance(f.spotInterruption)) {
      // EC2 warns two minutes ahead (an EventBridge event, lossy like the others), then reclaims it.
      const reclaimAtMs = launchedAtMs + this.rng.int(180_000, 3_600_000);
      this.queue.push(reclaimAtMs - 120_000, { kind: 'machine', instanceId, step: 'spot-warning' });
      this.queue.push(reclaimAtMs, { kind: 'machine', instanceId, step: 'die' });
    }
    return { instanceId, instanceType: request.instanceType, launchedAtMs, ...(spot ? { market: 'spot' as const } : {}) };
  }

  /** The instance begins shutting down now (billing ends); terminated a little later. */
  beginTermination(instance: InstanceRecord, reason: string): void {
    if (instance.state === 'shutting-down' || instance.state === 'terminated') return;
    instance.state = 'shutting-down';
    instance.endedAtMs = this.nowMs;
    const stamp = new Date(this.nowMs).toISOString().slice(0, 19).replace('T', ' ');
    instance.transitionReason = `${reason} (${stamp} GMT)`;
    this.deliver({ kind: 'ec2-state', instanceId: instance.instanceId, state: 'shutting-down', eventTimeMs: this.nowMs, attempt: 0 }, this.rng.int(500, 5_000), true);
    this.queue.push(this.nowMs + this.rng.int(5_000, this.faults.maxTerminationMs), { kind: 'machine', instanceId: instance.instanceId, step: 'terminated' });
  }

  /** The world moves a machine along its life. */
  machineStep(instanceId: string, step: Extract<Trigger, { kind: 'machine' }>['step']): void {
    const instance = this.instances.get(instanceId);
    if (!instance) return;
    const alive = instance.state === 'pending' || instance.state === 'running';
    switch (step) {
      case 'running':
        if (instance.state !== 'pending') return;
        instance.state = 'running';
        this.deliver({ kind: 'ec2-state', instanceId, state: 'running', eventTimeMs: this.nowMs, attempt: 0 }, this.rng.int(500, 5_000), true);
        if (!instance.agentNeverOnline) this.queue.push(this.nowMs + this.rng.int(5_000, 120_000), { kind: 'machine', instanceId, step: 'agent-online' });
        // The deadline's self-shutdown is armed at boot, on the machine's own (skewed) clock.
        if (!instance.selfStopFails) this.queue.push(Math.max(this.nowMs, instance.request.deadlineAtMs - instance.skewMs), { kind: 'machine', instanceId, step: 'self-stop' });
        return;
      case 'agent-online':
        if (alive) instance.agentOnline = true;
        return;
      case 'workflow-end': {
        const command = instance.command;
        if (!alive || !command || command.finished) return;
        this.finishCommand(instance, command.exitCode, false);
        return;
      }
      case 'self-stop':
        if (!alive) return;
        if (instance.command && !instance.command.finished) this.finishCommand(instance, null, true);
        else this.beginTermination(instance, 'User initiated');
        return;
      case 'spot-warning':
        if (alive) this.deliver({ kind: 'spot-warning', instanceId, attempt: 0 }, this.rng.int(200, 3_000), true);
        return;
      case 'die':
        if (!alive) return;
        if (instance.spot) this.stats.spotInterruptions += 1;
        else this.stats.instancesDied += 1;
        this.beginTermination(instance, instance.spot ? 'Server.SpotInstanceTermination' : 'Server.InternalError');
        return;
      case 'terminated':
        if (instance.state !== 'shutting-down') return;
        instance.state = 'terminated';
        this.deliver({ kind: 'ec2-state', instanceId, state: 'terminated', eventTimeMs: this.nowMs, attempt: 0 }, this.rng.int(500, 5_000), true);
        return;
    }
  }

  /** The runner reports (status document, then SSM's completion) and powers the machine off. */
  private finishCommand(instance: InstanceRecord, exitCode: number | null, timedOut: boolean): void {
    const command = instance.command as NonNullable<InstanceRecord['command']>;
    command.finished = true;
    const spec = command.spec;
    const status = timedOut ? 'TIMED_OUT' : exitCode === 0 ? 'SUCCEEDED' : 'FAILED';
    const doc = {
      schemaVersion: 1,
      jobId: instance.request.jobId,
      analysis: instance.request.analysis,
      dataset: instance.request.dataset,
      inputKey: spec.inputKey,
      status,
      exitCode,
      times: {},
      logKey: spec.logKey,
      resultsPrefix: spec.resultsPrefix,
      logTail: [timedOut ? 'stopped at the deadline' : `workflow exited ${exitCode}`],
      updatedAt: new Date(this.nowMs).toISOString(),
    };
    this.storePut(spec.bucket, spec.statusKey, JSON.stringify(doc));
    this.bump(`${spec.bucket}/${spec.statusKey}`);
    if (this.rng.chance(this.faults.completionLost)) this.stats.completionsLost += 1;
    else this.deliver({ kind: 'command-status', commandId: command.commandId, instanceId: instance.instanceId, status: 'Success', attempt: 0 }, this.rng.int(1_000, 10_000), true);
    if (!instance.selfStopFails) this.beginTermination(instance, 'User initiated');
  }

  sendCommand(instanceId: string, spec: RunnerSpec): { commandId: string } {
    const instance = this.instances.get(instanceId);
    if (!instance || instance.state !== 'running' || !instance.agentOnline) {
      throw new NeuroCaasError('CommandNotDelivered', `SSM could not deliver the command to ${instanceId}: InvalidInstanceId (not online)`);
    }
    if (instance.command) return { commandId: instance.command.commandId };
    const commandId = `c-${(this.commandSeq += 1)}`;
    const timeoutMs = Math.max(1_000, spec.deadlineAtMs - this.nowMs);
    // Most workflows finish inside the limit; some would run past it.
    const runMs = this.rng.chance(0.15) ? timeoutMs + 60_000 : this.rng.int(1_000, Math.max(1_001, Math.floor(timeoutMs * 0.9)));
    const exitCode = this.rng.chance(0.1) ? 1 : 0;
    instance.command = { commandId, spec, exitCode, endsAtMs: this.nowMs + runMs, finished: false };
    this.queue.push(this.nowMs + runMs, { kind: 'machine', instanceId, step: 'workflow-end' });
    return { commandId };
  }

  bump(key: string): void {
    this.writes.set(key, (this.writes.get(key) ?? 0) + 1);
  }
}

export interface SimPorts {
  objects: SimObjectStore;
  jobs: SimJobStore;
  ledger: SimLedger;
  machines: SimMachines;
  scheduler: SimScheduler;
}

export class SimObjectStore implements ObjectStore {
  constructor(
    private readonly world: World,
    private readonly invocation: Invocation,
  ) {}
  async get(bucket: string, key: string): Promise<Buffer> {
    this.invocation.gate('S3');
    const object = this.world.buckets.get(bucket)?.get(key);
    if (!object) throw new ObjectNotFoundError(`s3://${bucket}/${key} does not exist`);
    return Buffer.from(object.body, 'utf8');
  }
  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    this.invocation.gate('S3');
    return this.world.buckets.get(bucket)?.get(key)?.info;
  }
  async put(bucket: string, key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    this.invocation.gate('S3');
    const existing = this.world.buckets.get(bucket)?.get(key);
    if (existing && !options.overwrite) throw new ObjectExistsError(`s3://${bucket}/${key} exists`);
    // Certificates and status documents are rewritten often; only their size matters here.
    const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
    const info = this.world.storePut(bucket, key, key.endsWith('certificate.txt') ? '' : text);
    this.world.bump(`${bucket}/${key}`);
    return info;
  }
  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    this.invocation.gate('S3');
    const objects = this.world.buckets.get(bucket);
    if (!objects) return [];
    return [...objects.values()].filter((o) => o.info.key.startsWith(prefix)).map((o) => o.info).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

/** DynamoDB as the job store: conditional writes on the version, claims as conditional puts. */
export class SimJobStore implements JobStore {
  constructor(
    private readonly world: World,
    private readonly invocation: Invocation,
  ) {}
  async claimSubmission(idempotencyKey: string, jobId: string): Promise<ClaimResult> {
    this.invocation.gate('DynamoDB');
    const first = this.world.claims.get(idempotencyKey);
    if (first) return { claimed: false, jobId: first };
    this.world.claims.set(idempotencyKey, jobId);
    return { claimed: true };
  }
  async claimAndCreate(idempotencyKey: string, record: JobRecord): Promise<ClaimResult> {
    this.invocation.gate('DynamoDB');
    const first = this.world.claims.get(idempotencyKey);
    if (first) return { claimed: false, jobId: first };
    if (this.world.jobs.has(record.jobId)) throw new ConcurrentUpdateError(`job ${record.jobId} exists`);
    this.world.claims.set(idempotencyKey, record.jobId);
    this.world.jobs.set(record.jobId, record);
    return { claimed: true };
  }
  async create(record: JobRecord): Promise<void> {
    this.invocation.gate('DynamoDB');
    if (this.world.jobs.has(record.jobId)) throw new ConcurrentUpdateError(`job ${record.jobId} exists`);
    this.world.jobs.set(record.jobId, record);
  }
  async get(jobId: string): Promise<JobRecord | undefined> {
    this.invocation.gate('DynamoDB');
    return this.world.jobs.get(jobId);
  }
  async update(record: JobRecord): Promise<void> {
    this.invocation.gate('DynamoDB');
    const stored = this.world.jobs.get(record.jobId);
    if (!stored || stored.version !== record.version - 1) throw new ConcurrentUpdateError(`job ${record.jobId}: version ${record.version - 1} expected`);
    this.world.jobs.set(record.jobId, record);
  }
  /**
   * The reaper's index (a DynamoDB GSI on AWS): jobs whose reaperDueAtMs has come, in the
   * index's order, its sort key (longest due first), as the Query returns them.
   */
  async listDue(nowMs: number): Promise<DueJob[]> {
    this.invocation.gate('DynamoDB');
    const due: { job: DueJob; dueAtMs: number }[] = [];
    for (const record of this.world.jobs.values()) {
      const dueAtMs = reaperDueAtMs(record.state, record.updatedAtMs, record.outbox.length);
      if (dueAtMs !== undefined && dueAtMs <= nowMs) due.push({ job: { jobId: record.jobId, phase: record.state.phase, createdAtMs: record.state.createdAtMs }, dueAtMs });
    }
    return due.sort((a, b) => a.dueAtMs - b.dueAtMs).map((d) => d.job);
  }
  async list(): Promise<JobSummary[]> {
    this.invocation.gate('DynamoDB');
    const out: JobSummary[] = [];
    for (const record of this.world.jobs.values()) out.push(summarizeJob(record.state, record.updatedAtMs, record.outbox.length));
    return out;
  }
}

/** The ledger as DynamoDB items changed by conditional writes (atomic here: one thread). */
export class SimLedger implements Ledger {
  constructor(
    private readonly world: World,
    private readonly invocation: Invocation,
  ) {}
  async reserve(request: { user: string; period: string; jobId: string; amountUsd: number; budgetUsd: number; nowMs: number }): Promise<ReserveResult> {
    this.invocation.gate('DynamoDB');
    const key = `${request.user}#${request.period}`;
    const decision = decideReservation(this.world.ledgers.get(key) ?? [], request);
    if (!decision.ok) return { ok: false, reason: decision.reason };
    this.world.ledgers.set(key, decision.entries);
    return { ok: true };
  }
  async settle(request: { user: string; period: string; jobId: string; spentUsd: number; nowMs: number }): Promise<void> {
    this.invocation.gate('DynamoDB');
    const key = `${request.user}#${request.period}`;
    this.world.ledgers.set(key, settleEntry(this.world.ledgers.get(key) ?? [], request.jobId, request.spentUsd, request.nowMs).entries);
  }
  async entries(user: string, period: string): Promise<LedgerEntry[]> {
    this.invocation.gate('DynamoDB');
    return this.world.ledgers.get(`${user}#${period}`) ?? [];
  }
}

/** EC2 (machines) and SSM (the command runner). */
export class SimMachines implements Machines, AwsCommandRunner {
  constructor(
    private readonly world: World,
    private readonly invocation: Invocation,
  ) {}
  async launch(request: LaunchRequest): Promise<LaunchResult> {
    this.invocation.gate('EC2');
    if (this.world.rng.chance(this.world.faults.launchUnclear)) {
      // A 5xx (or a reset connection) that outlasted the adapter's retries, before or after EC2
      // started the machine.
      const started = this.world.rng.chance(0.5) && !this.world.byToken.has(request.clientToken);
      // Either half passes the adapter's own checks first (a refusal there is no unclear launch),
      // and a try that found no capacity is no unclear launch either: counted only past them.
      if (started) this.world.launchInstance(request);
      else this.world.refuseLateLaunch(request);
      if (started) this.world.stats.launchesUnclearStarted += 1;
      this.world.stats.launchesUnclear += 1;
      throw new LaunchOutcomeUnknownError(`could not launch ${request.instanceType} for dataset ${request.dataset}: InternalError: An internal error has occurred (EC2 may have started it)`);
    }
    const result = this.world.launchInstance(request);
    // The answer is lost after EC2 started the machine (timeout, connection reset).
    if (this.world.rng.chance(this.world.faults.launchTimeout)) {
      this.world.stats.launchTimeouts += 1;
      throw new SimServiceError('EC2', 'RunInstances timed out (the machine may have started)');
    }
    return result;
  }
  async findLaunched(clientToken: string): Promise<LaunchResult | undefined> {
    this.invocation.gate('EC2');
    const instanceId = this.world.byToken.get(clientToken);
    const instance = instanceId === undefined ? undefined : this.world.instances.get(instanceId);
    if (!instance) return undefined;
    return { instanceId: instance.instanceId, instanceType: instance.instanceType, launchedAtMs: instance.launchedAtMs, ...(instance.spot ? { market: 'spot' as const } : {}) };
  }
  async terminate(instanceId: string): Promise<MachineState> {
    this.invocation.gate('EC2');
    const instance = this.world.instances.get(instanceId);
    if (!instance) return 'terminated';
    if (this.world.dropTerminate) return instance.state;
    this.world.beginTermination(instance, 'User initiated');
    return instance.state;
  }
  async describe(instanceId: string): Promise<MachineDescription> {
    this.invocation.gate('EC2');
    const instance = this.world.instances.get(instanceId);
    if (!instance) return { instanceId, state: 'terminated' };
    return describeOf(instance);
  }
  async listExpired(nowMs: number): Promise<MachineDescription[]> {
    this.invocation.gate('EC2');
    const out: MachineDescription[] = [];
    for (const instance of this.world.instances.values()) {
      if (instance.state !== 'pending' && instance.state !== 'running') continue;
      if (instance.request.deadlineAtMs <= nowMs) out.push(describeOf(instance));
    }
    return out;
  }
  async isAgentOnline(instanceId: string): Promise<boolean> {
    this.invocation.gate('SSM');
    const instance = this.world.instances.get(instanceId);
    return instance !== undefined && instance.state === 'running' && instance.agentOnline;
  }
  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    this.invocation.gate('SSM');
    return this.world.sendCommand(instanceId, spec);
  }
  async commandResult(commandId: string, instanceId: string): Promise<SsmCommandResult> {
    this.invocation.gate('SSM');
    const command = this.world.instances.get(instanceId)?.command;
    if (!command || command.commandId !== commandId) return { status: 'Undeliverable', exitCode: null, timedOut: false };
    return { status: 'Success', exitCode: 0, timedOut: false };
  }
}

function describeOf(instance: InstanceRecord): MachineDescription {
  const description: MachineDescription = {
    instanceId: instance.instanceId,
    state: instance.state,
    jobId: instance.request.jobId,
    dataset: instance.request.dataset,
    deadlineAtMs: instance.request.deadlineAtMs,
    launchedAtMs: instance.launchedAtMs,
  };
  if (instance.endedAtMs !== undefined) description.terminatedAtMs = Math.floor(instance.endedAtMs / 1000) * 1000;
  return description;
}

/** SQS delayed messages to the agent-check function. */
export class SimScheduler implements Scheduler {
  constructor(
    private readonly world: World,
    private readonly invocation: Invocation,
  ) {}
  async schedule(atMs: number, action: ScheduledAction): Promise<void> {
    this.invocation.gate('SQS');
    this.world.deliver({ kind: 'sqs', action, receive: 1 }, Math.max(0, atMs - this.world.nowMs), false);
  }
}
