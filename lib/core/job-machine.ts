import type { Market } from './blueprint.js';
import { formatUsd, machineCostUsd, roundUsd } from './cost.js';
import { jobKeys } from './keys.js';
import { followOnLedgerKey, machineDeadline, machineHourlyUsdOf, type JobPlan } from './plan.js';
import { runnerConclusion } from './runner-rules.js';
import { isTerminalPhase, isoOf, type AttemptRecordDocument, type DatasetFailure, type DatasetPhase, type DatasetStatusDocument, type FailureKind } from './status.js';

/**
 * The job lifecycle as one pure reducer: `(state, event) -> { state, effects }`.
 * Both shells (local, aws) persist the state, execute the effects and feed back the events
 * the effects and the world produce. The reducer tolerates duplicated, reordered and late
 * events: an event that no longer applies changes nothing.
 */

/** Where a dataset's machine is, as far as the job manager knows. */
export type MachinePhase = 'none' | 'requested' | 'up' | 'terminating' | 'terminated' | 'launch-failed';

/** Re-send a launch whose answer never came (same client token, so never a second machine). */
export const LAUNCH_RETRY_MS = 60_000;
/**
 * How long one attempt's launch may start a machine, from its first send (never past its
 * deadline): every re-send carries the same cutoff, and the adapters start nothing after it.
 */
export const LAUNCH_WINDOW_MS = 5 * 60_000;
/**
 * After a launch window closes, how long before the token is looked up: covers a call to the
 * cloud that passed the cutoff check just before it, and the cloud's listing catching up.
 */
export const LAUNCH_SETTLE_MS = 60_000;
/** Re-send a terminate that was not confirmed. */
export const TERMINATE_RETRY_MS = 30_000;
/** Re-send a reservation whose answer never came (idempotent per job). */
export const RESERVE_RETRY_MS = 60_000;
/** How long a workflow result may trail its machine's termination before the dataset fails. */
export const COMMAND_RESULT_GRACE_MS = 120_000;

/** An attempt of a dataset that a platform fault ended; kept for cost, status and provenance. */
export interface AttemptRecord {
  attempt: number;
  clientToken: string;
  instanceId?: string;
  instanceType?: string;
  market?: Market;
  launchRequestedAtMs?: number;
  deadlineAtMs?: number;
  launchedAtMs?: number;
  terminatedAtMs?: number;
  failure: DatasetFailure;
  /** Its machine's cost as EC2 billed it (0 when none was launched). */
  costUsd: number;
}

export interface StrayMachine {
  instanceId: string;
  instanceType: string;
  market?: Market;
  launchedAtMs: number;
  /** The deadline of the launch that started it (it shuts itself down then). */
  deadlineAtMs?: number;
  terminateRequestedAtMs: number;
  terminatedAtMs?: number;
}

/**
 * A launch that failed with a platform fault but may still have started a machine: another
 * driver may have re-sent the same token and got one whose answer has not arrived. Until the
 * token is proven (its window closed and a lookup found nothing, or its machine turned up), the
 * dataset starts no new attempt and the job does not settle.
 */
export interface OpenLaunch {
  clientToken: string;
  /** From here no machine can start for the token (LaunchRequest.launchByMs). */
  launchByMs: number;
  deadlineAtMs: number;
  instanceType: string;
  /** When the lookup (CheckLaunch) was last asked for. */
  checkRequestedAtMs?: number;
}

export interface DatasetState {
  name: string;
  inputKey: string;
  /** Ensembles: a replica (with its index and seed) or the consensus step. */
  role?: 'replica' | 'consensus';
  replica?: number;
  seed?: number;
  phase: DatasetPhase;
  reason?: string;
  /** Why it did not succeed; set on every terminal phase but SUCCEEDED. */
  failure?: DatasetFailure;
  machine: MachinePhase;
  /** The current attempt's token (each attempt has its own; see retryClientToken). */
  clientToken: string;
  /** 1-based; absent means 1. A platform fault may start another (limits.platformRetries). */
  attempt?: number;
  /** Attempts platform faults ended, oldest first. */
  earlierAttempts?: AttemptRecord[];
  /** A platform fault ended this attempt; the next starts once this attempt's machine is gone. */
  retrying?: DatasetFailure;
  /** The market the current machine runs on. */
  market?: Market;
  /**
   * Machines started for this dataset by a launch it no longer waited for (a raced re-send of
   * an earlier attempt's launch): terminated on sight, paid for, and no new attempt starts
   * while one may still run.
   */
  strays?: StrayMachine[];
  /** Launches of this dataset not yet proven to have started no machine (oldest first). */
  openLaunches?: OpenLaunch[];
  /** Older states only: a retry waited until then. Kept so a stored job still honours it. */
  retryNotBeforeMs?: number;
  /** The current attempt's launch window closes here (LAUNCH_WINDOW_MS, capped by the deadline). */
  launchByMs?: number;
  instanceType?: string;
  instanceId?: string;
  launchRequestedAtMs?: number;
  deadlineAtMs?: number;
  launchedAtMs?: number;
  agentOnlineAtMs?: number;
  commandId?: string;
  startedAtMs?: number;
  finishedAtMs?: number;
  exitCode?: number | null;
  terminateRequestedAtMs?: number;
  terminatedAtMs?: number;
  /** The machine ended while its workflow was running; the result may still arrive. */
  machineGoneAtMs?: number;
  logTail: string[];
}

export type JobPhase = 'NEW' | 'RESERVING' | 'ACTIVE' | 'REJECTED' | 'DONE';

export interface CertificateLine {
  atMs: number;
  text: string;
}

export interface JobState {
  jobId: string;
  analysis: string;
  group: string;
  phase: JobPhase;
  plan?: JobPlan;
  rejection?: string[];
  datasets: DatasetState[];
  certificate: CertificateLine[];
  reserveRequestedAtMs?: number;
  cancel?: { atMs: number; reason: string };
  spentUsd?: number;
  endedAtMs?: number;
  createdAtMs: number;
  /** Chains: the next stage's jobs, filled in as they start and end. */
  followOns?: FollowOnRecord[];
}

export type JobEvent =
  | { type: 'SubmissionReceived'; atMs: number; plan: JobPlan }
  | {
      type: 'SubmissionRejected';
      atMs: number;
      reasons: string[];
      datasets: string[];
      /** Per dataset (same order), its own reason; default: the reasons, joined. Keeps a rejection linear in its input. */
      datasetReasons?: string[];
    }
  | { type: 'BudgetReserved'; atMs: number }
  | { type: 'BudgetRefused'; atMs: number; reason: string }
  | {
      type: 'InstanceLaunched';
      atMs: number;
      dataset: string;
      instanceId: string;
      instanceType: string;
      /** When EC2 says the instance started (DescribeInstances LaunchTime): billing starts here. */
      launchedAtMs?: number;
      /** The launch's client token: an answer to an earlier attempt's launch is told apart. */
      clientToken?: string;
      /** Absent: on demand. */
      market?: Market;
    }
  | {
      type: 'InstanceLaunchFailed';
      atMs: number;
      dataset: string;
      reason: string;
      clientToken?: string;
      /** A platform fault worth another attempt (no capacity or quota anywhere, no answer in time). */
      retryable?: boolean;
      /**
       * What the failure proves about the token. 'refused': the cloud refused the request as
       * invalid before starting anything, alike for every send (bad image or parameters): the
       * launch closes at once. 'unknown': the send may have started a machine (transport error,
       * 5xx, timeout, throttling that outlasted the retries, an unknown answer): within its window
       * the launch stays requested and is re-sent with the same token; after it, it is an open
       * launch. Absent: this send started nothing but another send of the token may have (no
       * capacity, window closed): an open launch when `retryable`, else closed.
       */
      outcome?: 'refused' | 'unknown';
    }
  /** A lookup after a launch window closed found no machine for the token (CheckLaunch). */
  | { type: 'LaunchTokenUnused'; atMs: number; dataset: string; clientToken: string }
  | { type: 'AgentOnline'; atMs: number; dataset: string; instanceId: string }
  | { type: 'AgentWaitExpired'; atMs: number; dataset: string; instanceId: string }
  | { type: 'CommandStarted'; atMs: number; dataset: string; commandId: string }
  | {
      type: 'CommandFinished';
      atMs: number;
      dataset: string;
      exitCode: number | null;
      timedOut: boolean;
      logTail: string[];
      /** A failure the runner itself reported (input not fetched, results not stored). */
      failure?: DatasetFailure;
      /** The machine the command ran on, when known: a late result of an earlier attempt is ignored. */
      instanceId?: string;
    }
  | {
      type: 'InstanceStateChanged';
      atMs: number;
      instanceId: string;
      state: 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';
      /** When EC2 says the state changed (state-transition time or the EC2 event's time): billing ends here. */
      stateChangedAtMs?: number;
    }
  | { type: 'Tick'; atMs: number }
  /** EC2's two-minute spot interruption notice for a machine (EventBridge). */
  | { type: 'SpotInterruptionWarned'; atMs: number; instanceId: string }
  | { type: 'CancelRequested'; atMs: number; reason: string }
  /** Chains, delivered to the job before: its next stage's job was accepted (or refused). */
  | { type: 'FollowOnStarted'; atMs: number; analysis: string; jobId: string; ledgerKey: string }
  /** Chains, delivered to the job before: its next stage's job ended. */
  | { type: 'FollowOnEnded'; atMs: number; analysis: string; jobId: string; ledgerKey: string; outcome: string; reason?: string };

export type JobEffect =
  | { type: 'Reject'; reasons: string[] }
  | { type: 'ReserveBudget'; user: string; period: string; amountUsd: number; budgetUsd: number }
  | {
      type: 'LaunchInstance';
      dataset: string;
      instanceType: string;
      clientToken: string;
      deadlineAtMs: number;
      /** No machine starts from here (absent in older outboxes: the deadline). */
      launchByMs?: number;
      market?: import('./blueprint.js').MarketChoice;
    }
  /** Looks up the machine a launch token started, once its window has closed: InstanceLaunched or LaunchTokenUnused. */
  | { type: 'CheckLaunch'; dataset: string; clientToken: string }
  | { type: 'ScheduleAgentCheck'; dataset: string; instanceId: string; expiresAtMs: number }
  | { type: 'SendCommand'; dataset: string; instanceId: string; deadlineAtMs: number }
  | { type: 'TerminateInstance'; dataset: string; instanceId: string }
  | { type: 'WriteStatus'; dataset: string; document: DatasetStatusDocument }
  | { type: 'AppendCertificate'; lines: string[] }
  | { type: 'WriteProvenance' }
  | { type: 'SettleBudget'; user: string; period: string; reservedUsd: number; spentUsd: number }
  | { type: 'SubmitFollowOn'; analysis: string; stage: number; jobs: FollowOnJob[]; config: Record<string, unknown> }
  /** Chains: tells the job this one continues how it went (an idempotent event there). */
  | { type: 'ReportToParent'; parentJobId: string; event: Extract<JobEvent, { type: 'FollowOnStarted' | 'FollowOnEnded' }> }
  | { type: 'WriteEnd'; text: string };

/** One job of a chain's next stage: which results become its datasets, and its prepaid share. */
export interface FollowOnJob {
  ledgerKey: string;
  reservedUsd: number;
  /** Result keys in this job's bucket, with the dataset name they came from. */
  datasets: { name: string; resultKey: string }[];
}

/** A next-stage job of a chain, as this job knows it. */
export interface FollowOnRecord {
  analysis: string;
  ledgerKey: string;
  jobId: string;
  outcome?: string;
  reason?: string;
}

export interface Transition {
  state: JobState;
  effects: JobEffect[];
}

export function initialJobState(jobId: string, analysis: string, group: string, createdAtMs: number): JobState {
  return { jobId, analysis, group, phase: 'NEW', datasets: [], certificate: [], createdAtMs };
}

/** Client token for one dataset's machine: stable across retries, unique per job and dataset. */
export function clientTokenFor(jobId: string, datasetIndex: number): string {
  return `ncap-${jobId}-${datasetIndex}`.slice(0, 64);
}

/**
 * The client token of attempt `attempt` (1-based) of a dataset whose first attempt had
 * `firstToken`: the first token itself, then `<first>-a<n>`. A new attempt must get a new
 * machine, so it needs a token EC2 has not seen; every re-send of one attempt's launch uses the
 * same one (never two machines for one attempt). Within EC2's 64 characters; a long token is
 * shortened with a hash of itself, so two datasets never share attempt tokens.
 */
export function retryClientToken(firstToken: string, attempt: number): string {
  if (attempt <= 1) return firstToken;
  const suffix = `-a${attempt}`;
  if (firstToken.length + suffix.length <= 64) return `${firstToken}${suffix}`;
  let hash = 0x811c9dc5;
  for (const char of firstToken) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
  const digest = hash.toString(16).padStart(8, '0');
  return `${firstToken.slice(0, 64 - suffix.length - digest.length - 1)}-${digest}${suffix}`;
}

/** The attempt a dataset is on, 1-based. */
export function attemptOf(ds: Pick<DatasetState, 'attempt'>): number {
  return ds.attempt ?? 1;
}

/** One line of a job listing. */
export interface JobSummary {
  jobId: string;
  analysis: string;
  group: string;
  user?: string;
  phase: JobPhase;
  createdAtMs: number;
  updatedAtMs: number;
  datasets: { name: string; phase: DatasetPhase }[];
  /** Effects still in the job's outbox (a finished job whose last writes failed has some). */
  pendingEffects?: number;
}

export function summarizeJob(state: JobState, updatedAtMs: number, pendingEffects = 0): JobSummary {
  const summary: JobSummary = {
    jobId: state.jobId,
    analysis: state.analysis,
    group: state.group,
    phase: state.phase,
    createdAtMs: state.createdAtMs,
    updatedAtMs,
    datasets: state.datasets.map((ds) => ({ name: ds.name, phase: ds.phase })),
  };
  if (state.plan) summary.user = state.plan.user;
  if (pendingEffects > 0) summary.pendingEffects = pendingEffects;
  return summary;
}

export function isJobFinished(state: JobState): boolean {
  return state.phase === 'DONE' || state.phase === 'REJECTED';
}

export function reduceJob(previous: JobState, event: JobEvent): Transition {
  // The reducer works on a private copy; callers keep their state untouched.
  // The plan is never changed after acceptance, so it is shared rather than copied: it holds
  // the blueprint, submission and every input's facts, and copying it dominated the cost.
  const { plan, ...rest } = previous;
  const state = structuredClone(rest) as JobState;
  if (plan) state.plan = plan;
  const out = new Effects(state, event.atMs);
  // Whatever the event, a deadline that has passed is applied first: no late message can
  // start or rescue work on an expired machine.
  expireDeadlines(state, event.atMs, out);
  switch (event.type) {
    case 'SubmissionReceived':
      onSubmissionReceived(state, event, out);
      break;
    case 'SubmissionRejected':
      onSubmissionRejected(state, event, out);
      break;
    case 'BudgetReserved':
      onBudgetReserved(state, event.atMs, out);
      break;
    case 'BudgetRefused':
      onBudgetRefused(state, event, out);
      break;
    case 'InstanceLaunched':
      onInstanceLaunched(state, event, out);
      break;
    case 'InstanceLaunchFailed':
      onInstanceLaunchFailed(state, event, out);
      break;
    case 'LaunchTokenUnused':
      onLaunchTokenUnused(state, event, out);
      break;
    case 'AgentOnline':
      onAgentOnline(state, event, out);
      break;
    case 'AgentWaitExpired':
      onAgentWaitExpired(state, event, out);
      break;
    case 'CommandStarted':
      onCommandStarted(state, event, out);
      break;
    case 'CommandFinished':
      onCommandFinished(state, event, out);
      break;
    case 'InstanceStateChanged':
      onInstanceStateChanged(state, event, out);
      break;
    case 'Tick':
      onTick(state, event.atMs, out);
      break;
    case 'SpotInterruptionWarned':
      onSpotInterruption(state, event, out);
      break;
    case 'CancelRequested':
      onCancelRequested(state, event, out);
      break;
    case 'FollowOnStarted':
    case 'FollowOnEnded':
      onFollowOn(state, event, out);
      break;
  }
  if (state.phase === 'ACTIVE') {
    checkOpenLaunches(state, event.atMs, out);
    launchPending(state, event.atMs, out);
    finalizeIfDone(state, event.atMs, out);
  }
  return { state, effects: out.flush() };
}

/** Collects effects; status writes and certificate lines are merged so each is written once per event. */
class Effects {
  private readonly list: JobEffect[] = [];
  private readonly statusChanged = new Set<string>();
  private readonly lines: string[] = [];
  constructor(
    private readonly state: JobState,
    private readonly atMs: number,
  ) {}
  push(effect: JobEffect): void {
    this.list.push(effect);
  }
  status(dataset: string): void {
    this.statusChanged.add(dataset);
  }
  certificate(text: string): void {
    this.state.certificate.push({ atMs: this.atMs, text });
    this.lines.push(text);
  }
  flush(): JobEffect[] {
    const effects: JobEffect[] = [];
    if (this.lines.length > 0) effects.push({ type: 'AppendCertificate', lines: this.lines });
    for (const ds of this.state.datasets) {
      if (this.statusChanged.has(ds.name)) {
        effects.push({ type: 'WriteStatus', dataset: ds.name, document: datasetStatusDocument(this.state, ds, this.atMs) });
      }
    }
    // Writes first, so a researcher sees why before anything else happens; then the rest in order.
    return [...effects, ...this.list];
  }
}

function findDataset(state: JobState, name: string): DatasetState | undefined {
  return state.datasets.find((ds) => ds.name === name);
}

function findByInstance(state: JobState, instanceId: string): DatasetState | undefined {
  return state.datasets.find((ds) => ds.instanceId === instanceId);
}

function onSubmissionReceived(state: JobState, event: Extract<JobEvent, { type: 'SubmissionReceived' }>, out: Effects): void {
  if (state.phase !== 'NEW') return;
  const plan = event.plan;
  const names = plan.datasets.map((ds) => ds.name);
  const clash = names.find((name, index) => names.indexOf(name) !== index);
  if (clash !== undefined) {
    // Events find datasets by name: two with one name would leave one waiting forever.
    const keys = plan.datasets.filter((ds) => ds.name === clash).map((ds) => ds.inputKey);
    const reason = `dataname: ${keys.map((k) => `"${k}"`).join(' and ')} would both be dataset "${clash}"; name each input once`;
    onSubmissionRejected(state, { type: 'SubmissionRejected', atMs: event.atMs, reasons: [reason], datasets: [...new Set(names)] }, out);
    return;
  }
  state.plan = plan;
  state.phase = 'RESERVING';
  state.reserveRequestedAtMs = event.atMs;
  state.datasets = plan.datasets.map((ds, index) => {
    const dataset: DatasetState = {
      name: ds.name,
      inputKey: ds.inputKey,
      phase: 'PENDING',
      machine: 'none',
      clientToken: clientTokenFor(plan.jobId, index),
      logTail: [],
    };
    if (ds.role !== undefined) dataset.role = ds.role;
    if (ds.replica !== undefined) dataset.replica = ds.replica;
    if (ds.seed !== undefined) dataset.seed = ds.seed;
    return dataset;
  });
  out.certificate(
    `job ${plan.jobId} accepted: analysis ${plan.analysis} (blueprint ${plan.blueprintHash.slice(0, 19)}), ` +
      `${plan.datasets.length} dataset(s), config ${plan.configKey}, user ${plan.user}`,
  );
  const chain = plan.chain;
  if (chain?.parent) {
    out.certificate(`chain: stage ${chain.stage}, started by job ${chain.parent.jobId} (${chain.parent.analysis}) with its results; its share of the chain was reserved by that job`);
    out.push({
      type: 'ReportToParent',
      parentJobId: chain.parent.jobId,
      event: { type: 'FollowOnStarted', atMs: event.atMs, analysis: plan.analysis, jobId: plan.jobId, ledgerKey: chain.parent.ledgerKey },
    });
  }
  if (chain && chain.next.length > 0) {
    out.certificate(`chain: then ${chain.next.map((stage) => `${stage.analysis} (${stage.jobs} job(s), ${formatUsd(stage.reservedUsd)})`).join(', then ')}; the whole chain is reserved now`);
  }
  out.certificate(
    `reserving ${formatUsd(plan.reservedUsd)}: ${plan.datasets.length} x ${plan.instanceType} at ${formatUsd(plan.hourlyUsd)}/h ` +
      `for up to ${plan.timeoutMinutes} min each (budget period ${plan.budgetPeriod})`,
  );
  for (const ds of state.datasets) out.status(ds.name);
  out.push({ type: 'ReserveBudget', user: plan.user, period: plan.budgetPeriod, amountUsd: plan.reservedUsd, budgetUsd: plan.budgetUsd });
}

function onSubmissionRejected(state: JobState, event: Extract<JobEvent, { type: 'SubmissionRejected' }>, out: Effects): void {
  if (state.phase !== 'NEW') return;
  state.phase = 'REJECTED';
  state.rejection = event.reasons;
  state.datasets = event.datasets.map((name, index) => ({
    name,
    inputKey: name,
    phase: 'FAILED',
    reason: `submission rejected: ${event.datasetReasons?.[index] ?? event.reasons.join('; ')}`,
    failure: { kind: 'input', detail: `submission rejected: ${event.datasetReasons?.[index] ?? event.reasons.join('; ')}` },
    machine: 'none',
    clientToken: clientTokenFor(state.jobId, index),
    logTail: [],
  }));
  out.certificate(`job ${state.jobId} REJECTED, nothing was launched:`);
  for (const reason of event.reasons) out.certificate(`  - ${reason}`);
  for (const ds of state.datasets) out.status(ds.name);
  rejectAndEnd(state, event.reasons, event.atMs, out);
}

function rejectAndEnd(state: JobState, reasons: string[], atMs: number, out: Effects): void {
  state.endedAtMs = atMs;
  out.push({ type: 'Reject', reasons });
  out.push({ type: 'WriteEnd', text: endText(state) });
}

function onBudgetReserved(state: JobState, atMs: number, out: Effects): void {
  if (state.phase !== 'RESERVING') return;
  state.phase = 'ACTIVE';
  out.certificate('budget reserved');
  if (state.cancel) {
    // Cancelled while reserving: nothing launched, settlement releases the reservation.
    for (const ds of state.datasets) finishDataset(ds, 'CANCELLED', `cancelled: ${state.cancel.reason}`, atMs, out);
  }
}

function onBudgetRefused(state: JobState, event: Extract<JobEvent, { type: 'BudgetRefused' }>, out: Effects): void {
  if (state.phase !== 'RESERVING') return;
  state.phase = 'REJECTED';
  state.rejection = [event.reason];
  out.certificate(`job ${state.jobId} REJECTED, nothing was launched: ${event.reason}`);
  for (const ds of state.datasets) {
    ds.phase = 'FAILED';
    ds.reason = `submission rejected: ${event.reason}`;
    ds.failure = { kind: 'input', detail: ds.reason };
    out.status(ds.name);
  }
  rejectAndEnd(state, [event.reason], event.atMs, out);
}

/** Starts machines for pending datasets while the concurrency limit allows. */
function launchPending(state: JobState, atMs: number, out: Effects): void {
  const plan = state.plan;
  if (!plan || state.cancel) return;
  let alive = state.datasets.filter((ds) => ds.machine === 'requested' || ds.machine === 'up' || ds.machine === 'terminating').length;
  for (const ds of state.datasets) {
    if (alive >= plan.maxConcurrentMachines) break;
    // A dataset whose earlier machine is still going waits for it: never two machines at once.
    // So does one whose failed launch may still start a machine (until the token is proven).
    if (ds.phase !== 'PENDING' || ds.retrying || ds.machine !== 'none' || hasLiveStray(ds) || hasOpenLaunch(ds)) continue;
    if (ds.retryNotBeforeMs !== undefined && atMs < ds.retryNotBeforeMs) continue;
    const attempt = attemptOf(ds);
    if (attempt === 1 && ds.role === 'consensus' && !consensusMayStart(state, ds, atMs, out)) continue;
    if (attempt > 1 && !retryFits(state, ds)) {
      // Machines still running may end cheaper than reserved and leave room; otherwise no retry.
      if (othersMayFreeRoom(state, ds)) continue;
      const last = ds.earlierAttempts?.at(-1)?.failure.detail ?? 'a platform fault';
      finishDataset(ds, 'FAILED', `${last}; ${noRoomText(state, ds, undefined)}`, atMs, out, 'platform');
      continue;
    }
    const market = attemptMarket(plan.market, attempt);
    delete ds.retryNotBeforeMs;
    ds.phase = 'LAUNCHING';
    ds.machine = 'requested';
    ds.instanceType = plan.instanceType;
    ds.launchRequestedAtMs = atMs;
    ds.deadlineAtMs = machineDeadline(plan, atMs);
    ds.launchByMs = Math.min(atMs + LAUNCH_WINDOW_MS, ds.deadlineAtMs);
    alive += 1;
    out.status(ds.name);
    const on = market === 'spot' ? ' spot' : market === 'spot-then-on-demand' ? ' spot (else on-demand)' : '';
    out.certificate(`${ds.name}: launching a${on} ${plan.instanceType} machine${attempt > 1 ? `, attempt ${attempt}` : ''} (deadline ${isoOf(ds.deadlineAtMs)})`);
    out.push(launchEffect(ds, market));
  }
}

function hasOpenLaunch(ds: DatasetState): boolean {
  return (ds.openLaunches?.length ?? 0) > 0;
}

/**
 * Asks, for every open launch whose window has closed (plus LAUNCH_SETTLE_MS), whether its
 * token started a machine; asked again every LAUNCH_RETRY_MS until answered.
 */
function checkOpenLaunches(state: JobState, atMs: number, out: Effects): void {
  for (const ds of state.datasets) {
    for (const open of ds.openLaunches ?? []) {
      if (atMs < open.launchByMs + LAUNCH_SETTLE_MS) continue;
      if (open.checkRequestedAtMs !== undefined && open.checkRequestedAtMs + LAUNCH_RETRY_MS > atMs) continue;
      open.checkRequestedAtMs = atMs;
      out.push({ type: 'CheckLaunch', dataset: ds.name, clientToken: open.clientToken });
    }
  }
}

/** The lookup found no machine for a closed launch: the token is spent, nothing to wait for. */
function onLaunchTokenUnused(state: JobState, event: Extract<JobEvent, { type: 'LaunchTokenUnused' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  const open = ds?.openLaunches?.find((o) => o.clientToken === event.clientToken);
  // An answer from before the window closed proves nothing (only CheckLaunch asks, and only after).
  if (!ds || !open || event.atMs < open.launchByMs) return;
  ds.openLaunches = (ds.openLaunches ?? []).filter((o) => o !== open);
  if (ds.openLaunches.length === 0) delete ds.openLaunches;
  out.certificate(`${ds.name}: the failed launch ${event.clientToken} started no machine`);
}

function hasLiveStray(ds: DatasetState): boolean {
  return (ds.strays ?? []).some((stray) => stray.terminatedAtMs === undefined);
}

function strayCostUsd(state: JobState, ds: DatasetState, nowMs?: number): number {
  const plan = state.plan;
  if (!plan) return 0;
  let total = 0;
  for (const stray of ds.strays ?? []) {
    total += machineCostUsd(machineHourlyUsdOf(plan, stray.instanceType, stray.market), stray.launchedAtMs, stray.terminatedAtMs ?? nowMs ?? stray.launchedAtMs);
  }
  return total;
}

/** The market an attempt asks for: "spot-then-on-demand" tries spot first, and every retry on demand. */
export function attemptMarket(choice: import('./blueprint.js').MarketChoice | undefined, attempt: number): import('./blueprint.js').MarketChoice {
  if (choice === 'spot') return 'spot';
  if (choice === 'spot-then-on-demand') return attempt === 1 ? 'spot-then-on-demand' : 'on-demand';
  return 'on-demand';
}

/** What the job's machines may spend: the reservation less what it holds for a chain's later stages. */
function machineBudgetUsd(plan: JobPlan): number {
  return roundUsd(plan.reservedUsd - (plan.chain?.downstreamReservedUsd ?? 0));
}

/**
 * The most the job's machines can cost, `retry` aside: every ended machine at its billed cost,
 * every machine that may still run at its whole share (its deadline is derived from it), and a
 * share for every dataset still waiting for its first machine (those were reserved for).
 */
function committedUsd(state: JobState, retry: DatasetState): number {
  const plan = state.plan as JobPlan;
  let total = 0;
  for (const ds of state.datasets) {
    for (const earlier of ds.earlierAttempts ?? []) total += earlier.costUsd;
    // A stray still running is bounded by its own deadline, i.e. one share.
    for (const stray of ds.strays ?? []) total += stray.terminatedAtMs === undefined ? plan.machineReservedUsd : strayCostUsd(state, { ...ds, strays: [stray] });
    // The retry's own open launches are not counted: it cannot start before they are proven.
    if (ds === retry) continue;
    // A failed launch that may still start a machine: that machine's whole share.
    total += (ds.openLaunches?.length ?? 0) * plan.machineReservedUsd;
    if (ds.machine === 'requested' || ds.machine === 'up' || ds.machine === 'terminating') total += plan.machineReservedUsd;
    else if (ds.machine === 'terminated') total += currentMachineCostUsd(state, ds);
    else if (!isTerminalPhase(ds.phase) && attemptOf(ds) === 1) total += plan.machineReservedUsd;
  }
  return roundUsd(total);
}

/** A retry may start only while the reservation covers its whole share on top of everything else. */
function retryFits(state: JobState, ds: DatasetState): boolean {
  const plan = state.plan as JobPlan;
  return machineBudgetUsd(plan) - committedUsd(state, ds) >= plan.machineReservedUsd - 1e-6;
}

/** Another machine of the job may still end cheaper than its share and so leave room for a retry. */
function othersMayFreeRoom(state: JobState, ds: DatasetState): boolean {
  return state.datasets.some(
    (other) => hasLiveStray(other) || (other !== ds && (hasOpenLaunch(other) || other.machine === 'requested' || other.machine === 'up' || other.machine === 'terminating')),
  );
}

/**
 * Why a retry can never fit: the reservation, less everything else and what this attempt's
 * machine has cost by `atMs` (it can only cost more), is short of a share and nothing else
 * running could free any. Undefined while a retry may still fit.
 */
function retryNeverFits(state: JobState, ds: DatasetState, atMs: number): string | undefined {
  const plan = state.plan as JobPlan;
  if (othersMayFreeRoom(state, ds)) return undefined;
  const left = machineBudgetUsd(plan) - committedUsd(state, ds) - currentMachineCostUsd(state, ds, atMs);
  return left >= plan.machineReservedUsd - 1e-6 ? undefined : noRoomText(state, ds, atMs);
}

function noRoomText(state: JobState, ds: DatasetState, atMs: number | undefined): string {
  const plan = state.plan as JobPlan;
  const current = atMs === undefined ? 0 : currentMachineCostUsd(state, ds, atMs);
  const left = Math.max(0, roundUsd(machineBudgetUsd(plan) - committedUsd(state, ds) - current));
  return `not retried: the job's reservation has ${formatUsd(left)} left and another machine needs ${formatUsd(plan.machineReservedUsd)}`;
}

/**
 * A platform fault ended this attempt (no capacity, agent never online, machine lost, spot
 * interruption, results not stored). The dataset gets a fresh machine if retries are left and
 * the job is not cancelled: its machine is terminated, and once it is gone (never two at once)
 * the attempt is recorded and the next one launches with its own client token. Otherwise the
 * dataset fails with the fault as its reason.
 */
function platformFault(state: JobState, ds: DatasetState, reason: string, atMs: number, out: Effects): void {
  if (isTerminalPhase(ds.phase) || ds.retrying) return;
  const retries = state.plan?.platformRetries ?? 0;
  const attempt = attemptOf(ds);
  if (state.cancel || attempt > retries) {
    const after = retries > 0 ? ` (attempt ${attempt} of ${retries + 1}; no retries left)` : '';
    finishDataset(ds, 'FAILED', `${reason}${after}`, atMs, out, 'platform');
    return;
  }
  const noRoom = retryNeverFits(state, ds, atMs);
  if (noRoom !== undefined) {
    finishDataset(ds, 'FAILED', `${reason}; ${noRoom}`, atMs, out, 'platform');
    return;
  }
  ds.retrying = { kind: 'platform', detail: reason };
  ds.phase = 'PENDING';
  out.status(ds.name);
  out.certificate(`${ds.name}: attempt ${attempt} failed (${reason}); retrying on a fresh machine (attempt ${attempt + 1} of up to ${retries + 1})`);
  requestTerminate(ds, atMs, out);
  recordAttemptIfGone(state, ds);
}

/** Once a retrying dataset's machine is gone: its attempt goes on record and the next can start. */
function recordAttemptIfGone(state: JobState, ds: DatasetState): void {
  if (!ds.retrying || isTerminalPhase(ds.phase)) return;
  if (ds.machine !== 'none' && ds.machine !== 'launch-failed' && ds.machine !== 'terminated') return;
  const attempt = attemptOf(ds);
  const record: AttemptRecord = { attempt, clientToken: ds.clientToken, failure: ds.retrying, costUsd: currentMachineCostUsd(state, ds) };
  if (ds.instanceId !== undefined) record.instanceId = ds.instanceId;
  if (ds.instanceType !== undefined && ds.instanceId !== undefined) record.instanceType = ds.instanceType;
  if (ds.market !== undefined) record.market = ds.market;
  if (ds.launchRequestedAtMs !== undefined) record.launchRequestedAtMs = ds.launchRequestedAtMs;
  if (ds.deadlineAtMs !== undefined) record.deadlineAtMs = ds.deadlineAtMs;
  if (ds.launchedAtMs !== undefined) record.launchedAtMs = ds.launchedAtMs;
  if (ds.terminatedAtMs !== undefined) record.terminatedAtMs = ds.terminatedAtMs;
  const firstToken = ds.earlierAttempts?.[0]?.clientToken ?? ds.clientToken;
  ds.earlierAttempts = [...(ds.earlierAttempts ?? []), record];
  ds.attempt = attempt + 1;
  ds.clientToken = retryClientToken(firstToken, attempt + 1);
  ds.machine = 'none';
  ds.logTail = [];
  for (const key of [
    'retrying',
    'market',
    'instanceType',
    'instanceId',
    'launchRequestedAtMs',
    'deadlineAtMs',
    'launchByMs',
    'launchedAtMs',
    'agentOnlineAtMs',
    'commandId',
    'startedAtMs',
    'exitCode',
    'terminateRequestedAtMs',
    'terminatedAtMs',
    'machineGoneAtMs',
  ] as const) {
    delete ds[key];
  }
}

function onSpotInterruption(state: JobState, event: Extract<JobEvent, { type: 'SpotInterruptionWarned' }>, out: Effects): void {
  const ds = findByInstance(state, event.instanceId);
  if (!ds || ds.machine !== 'up') return;
  platformFault(state, ds, `spot interruption: EC2 reclaims spot machine ${event.instanceId} (two-minute notice)`, event.atMs, out);
}

/**
 * The consensus starts once every replica has ended, and only when enough succeeded; otherwise
 * it fails (no machine) with the replicas that failed named.
 */
function consensusMayStart(state: JobState, consensus: DatasetState, atMs: number, out: Effects): boolean {
  const replicas = state.datasets.filter((ds) => ds.role === 'replica');
  if (!replicas.every((ds) => isTerminalPhase(ds.phase))) return false;
  const succeeded = replicas.filter((ds) => ds.phase === 'SUCCEEDED');
  const failed = replicas.filter((ds) => ds.phase !== 'SUCCEEDED').map((ds) => `${ds.name} ${ds.phase}`);
  const needed = state.plan?.ensemble?.minSucceeded ?? 1;
  const failedText = failed.length > 0 ? ` (failed: ${failed.join(', ')})` : '';
  if (succeeded.length < needed) {
    finishDataset(
      consensus,
      'FAILED',
      `only ${succeeded.length} of ${replicas.length} replicas succeeded${failedText}; the consensus needs at least ${needed}`,
      atMs,
      out,
      'analysis',
    );
    return false;
  }
  out.certificate(`consensus: ${succeeded.length} of ${replicas.length} replicas succeeded${failedText}; combining ${succeeded.map((ds) => ds.name).join(', ')}`);
  return true;
}

function launchEffect(ds: DatasetState, market: import('./blueprint.js').MarketChoice): JobEffect {
  return {
    type: 'LaunchInstance',
    dataset: ds.name,
    instanceType: ds.instanceType as string,
    clientToken: ds.clientToken,
    deadlineAtMs: ds.deadlineAtMs as number,
    ...(ds.launchByMs !== undefined ? { launchByMs: ds.launchByMs } : {}),
    // On demand is what an effect without a market means (and what older outboxes hold).
    ...(market === 'on-demand' ? {} : { market }),
  };
}

function onInstanceLaunched(state: JobState, event: Extract<JobEvent, { type: 'InstanceLaunched' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds) return;
  const known = ds.instanceId === event.instanceId || (ds.earlierAttempts ?? []).some((a) => a.instanceId === event.instanceId);
  if (ds.machine !== 'requested' || (event.clientToken !== undefined && event.clientToken !== ds.clientToken)) {
    // The answer to a launch this dataset no longer waits for (an earlier attempt's, re-sent by a
    // driver that raced the one that saw it fail): a machine nobody tracks must not stay.
    const open = event.clientToken === undefined ? undefined : ds.openLaunches?.find((o) => o.clientToken === event.clientToken);
    if (open) {
      // The failed launch did start a machine: it is now a stray, counted until it is gone.
      ds.openLaunches = (ds.openLaunches ?? []).filter((o) => o !== open);
      if (ds.openLaunches.length === 0) delete ds.openLaunches;
    }
    if (!known && !(ds.strays ?? []).some((stray) => stray.instanceId === event.instanceId)) {
      out.certificate(`${ds.name}: machine ${event.instanceId} was started by a launch no longer wanted; terminating it`);
      const stray: StrayMachine = { instanceId: event.instanceId, instanceType: event.instanceType, launchedAtMs: event.launchedAtMs ?? event.atMs, terminateRequestedAtMs: event.atMs };
      const deadlineAtMs = open?.deadlineAtMs ?? ds.earlierAttempts?.find((a) => a.clientToken === event.clientToken)?.deadlineAtMs;
      if (deadlineAtMs !== undefined) stray.deadlineAtMs = deadlineAtMs;
      if (event.market !== undefined) stray.market = event.market;
      ds.strays = [...(ds.strays ?? []), stray];
      out.push({ type: 'TerminateInstance', dataset: ds.name, instanceId: event.instanceId });
    }
    return;
  }
  ds.instanceId = event.instanceId;
  ds.instanceType = event.instanceType;
  ds.market = event.market ?? 'on-demand';
  ds.launchedAtMs = event.launchedAtMs ?? event.atMs;
  ds.machine = 'up';
  if (ds.phase !== 'LAUNCHING') {
    // Cancelled or timed out while the launch was in flight: the machine goes straight away.
    requestTerminate(ds, event.atMs, out);
    return;
  }
  ds.phase = 'BOOTING';
  out.status(ds.name);
  out.certificate(`${ds.name}: machine ${event.instanceId} (${event.instanceType}${ds.market === 'spot' ? ', spot' : ''}) launched, waiting for its agent`);
  const expiresAtMs = event.atMs + (state.plan?.agentWaitMinutes ?? 10) * 60_000;
  out.push({ type: 'ScheduleAgentCheck', dataset: ds.name, instanceId: event.instanceId, expiresAtMs });
}

function onInstanceLaunchFailed(state: JobState, event: Extract<JobEvent, { type: 'InstanceLaunchFailed' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds || ds.machine !== 'requested' || (event.clientToken !== undefined && event.clientToken !== ds.clientToken)) return;
  const cutoffMs = ds.launchByMs ?? (ds.deadlineAtMs as number);
  if (event.outcome === 'unknown' && !isTerminalPhase(ds.phase) && event.atMs < cutoffMs) {
    // No answer is not a "no": the machine may be starting. The launch stays requested and is
    // re-sent with the same token (onTick, every LAUNCH_RETRY_MS), which returns that machine
    // if there is one; a launch still unanswered when its window closes becomes an open launch.
    out.certificate(`${ds.name}: the launch got no clear answer (${event.reason}); sending it again with the same token until ${isoOf(cutoffMs)}`);
    return;
  }
  ds.machine = 'launch-failed';
  const mayHaveStarted = event.outcome === 'unknown' || (event.outcome === undefined && event.retryable === true);
  if (mayHaveStarted) {
    // Another driver may have re-sent this launch (same token) and got a machine whose answer
    // is still on its way, or lost, or this very send started one. Until the token's window has
    // closed and a lookup proves it started nothing (or its machine turns up, a stray), no new
    // attempt starts and the job does not settle: never two machines for the dataset, and that
    // machine's cost is known.
    const open: OpenLaunch = {
      clientToken: ds.clientToken,
      launchByMs: cutoffMs,
      deadlineAtMs: ds.deadlineAtMs as number,
      instanceType: ds.instanceType ?? state.plan?.instanceType ?? '',
    };
    ds.openLaunches = [...(ds.openLaunches ?? []), open];
  }
  if (isTerminalPhase(ds.phase)) return;
  const reason = `machine could not be launched: ${event.reason}`;
  if (event.retryable) {
    platformFault(state, ds, reason, event.atMs, out);
    if (!isTerminalPhase(ds.phase) && hasOpenLaunch(ds)) {
      const at = Math.max(...(ds.openLaunches ?? []).map((o) => o.launchByMs)) + LAUNCH_SETTLE_MS;
      out.certificate(`${ds.name}: the next attempt waits until ${isoOf(at)}, when the failed launch can no longer start a machine`);
    }
  } else finishDataset(ds, 'FAILED', reason, event.atMs, out, 'platform');
}

function onAgentOnline(state: JobState, event: Extract<JobEvent, { type: 'AgentOnline' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds || ds.phase !== 'BOOTING' || ds.instanceId !== event.instanceId || ds.machine !== 'up') return;
  if (state.cancel) return;
  ds.phase = 'RUNNING';
  ds.agentOnlineAtMs = event.atMs;
  out.status(ds.name);
  out.certificate(`${ds.name}: agent online, starting the workflow`);
  out.push({ type: 'SendCommand', dataset: ds.name, instanceId: event.instanceId, deadlineAtMs: ds.deadlineAtMs as number });
}

function onAgentWaitExpired(state: JobState, event: Extract<JobEvent, { type: 'AgentWaitExpired' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds || ds.phase !== 'BOOTING' || ds.instanceId !== event.instanceId) return;
  const minutes = state.plan?.agentWaitMinutes ?? 10;
  platformFault(state, ds, `machine ${event.instanceId} did not come online within ${minutes} min`, event.atMs, out);
}

function onCommandStarted(state: JobState, event: Extract<JobEvent, { type: 'CommandStarted' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds || ds.phase !== 'RUNNING' || ds.commandId !== undefined) return;
  ds.commandId = event.commandId;
  ds.startedAtMs = event.atMs;
  out.status(ds.name);
}

function onCommandFinished(state: JobState, event: Extract<JobEvent, { type: 'CommandFinished' }>, out: Effects): void {
  const ds = findDataset(state, event.dataset);
  if (!ds || ds.phase !== 'RUNNING') return;
  if (event.instanceId !== undefined && ds.instanceId !== undefined && event.instanceId !== ds.instanceId) return;
  ds.exitCode = event.exitCode;
  ds.logTail = event.logTail;
  const conclusion = runnerConclusion(event.exitCode, event.timedOut, event.failure !== undefined);
  if (conclusion === 'TIMED_OUT') {
    finishDataset(ds, 'TIMED_OUT', timeoutReason(state), event.atMs, out);
  } else if (conclusion === 'SUCCEEDED') {
    finishDataset(ds, 'SUCCEEDED', undefined, event.atMs, out);
  } else if (event.failure?.kind === 'platform') {
    // The runner's own platform fault (results not stored, exit 3): the workflow may run again.
    platformFault(state, ds, event.failure.detail, event.atMs, out);
  } else if (event.failure) {
    finishDataset(ds, 'FAILED', event.failure.detail, event.atMs, out, event.failure.kind);
  } else if (event.exitCode === null) {
    // No exit code means the runner never saw the workflow end: its machine or command was lost.
    const last = event.logTail.at(-1);
    platformFault(state, ds, `the workflow was killed${last ? `; last log line: ${last}` : ''}`, event.atMs, out);
  } else {
    const last = event.logTail.at(-1);
    finishDataset(ds, 'FAILED', `the workflow exited with code ${event.exitCode}${last ? `; last log line: ${last}` : ''}`, event.atMs, out, 'analysis');
  }
}

function timeoutReason(state: JobState): string {
  return `reached its deadline: the analysis allows ${state.plan?.timeoutMinutes ?? '?'} min per dataset`;
}

function onInstanceStateChanged(state: JobState, event: Extract<JobEvent, { type: 'InstanceStateChanged' }>, out: Effects): void {
  for (const owner of state.datasets) {
    const stray = owner.strays?.find((m) => m.instanceId === event.instanceId);
    if (!stray || stray.terminatedAtMs !== undefined) continue;
    if (event.state === 'shutting-down' || event.state === 'terminated') {
      stray.terminatedAtMs = event.stateChangedAtMs ?? event.atMs;
      out.certificate(`${owner.name}: machine ${event.instanceId} terminated`);
    }
    return;
  }
  const ds = findByInstance(state, event.instanceId);
  if (!ds || ds.machine === 'terminated') return;
  if (event.state === 'pending' || event.state === 'running') return;
  if (event.state === 'stopping' || event.state === 'stopped') {
    // A stopped machine still holds its volume and can be restarted; we only ever want it gone.
    if (!isTerminalPhase(ds.phase) && !ds.retrying) platformFault(state, ds, `machine ${event.instanceId} stopped unexpectedly`, event.atMs, out);
    else requestTerminate(ds, event.atMs, out);
    return;
  }
  ds.machine = 'terminated';
  ds.terminatedAtMs = event.stateChangedAtMs ?? event.atMs;
  // While the workflow's result is outstanding the status document is the runner's: its final
  // write (made just before it powered the machine off) is what the result is read from.
  if (ds.phase !== 'RUNNING') out.status(ds.name);
  out.certificate(`${ds.name}: machine ${event.instanceId} terminated`);
  if (ds.retrying) {
    recordAttemptIfGone(state, ds);
    return;
  }
  if (isTerminalPhase(ds.phase)) return;
  if (ds.deadlineAtMs !== undefined && event.atMs >= ds.deadlineAtMs) {
    finishDataset(ds, 'TIMED_OUT', timeoutReason(state), event.atMs, out);
  } else if (ds.phase === 'RUNNING') {
    // The runner shuts its machine down after reporting; the report may simply be late.
    ds.machineGoneAtMs = event.atMs;
  } else {
    platformFault(state, ds, `machine ${event.instanceId} ended before the workflow started`, event.atMs, out);
  }
}

function onTick(state: JobState, atMs: number, out: Effects): void {
  const plan = state.plan;
  if (state.phase === 'RESERVING' && plan && (state.reserveRequestedAtMs ?? 0) + RESERVE_RETRY_MS <= atMs) {
    state.reserveRequestedAtMs = atMs;
    out.push({ type: 'ReserveBudget', user: plan.user, period: plan.budgetPeriod, amountUsd: plan.reservedUsd, budgetUsd: plan.budgetUsd });
  }
  for (const ds of state.datasets) {
    if (ds.phase === 'BOOTING' && ds.launchedAtMs !== undefined && atMs >= ds.launchedAtMs + (plan?.agentWaitMinutes ?? 10) * 60_000) {
      platformFault(state, ds, `machine ${ds.instanceId} did not come online within ${plan?.agentWaitMinutes ?? 10} min`, atMs, out);
    }
    if (ds.phase === 'RUNNING' && ds.machineGoneAtMs !== undefined && atMs >= ds.machineGoneAtMs + COMMAND_RESULT_GRACE_MS) {
      platformFault(state, ds, `machine ${ds.instanceId} ended and the workflow never reported a result`, atMs, out);
    }
    if (ds.machine === 'requested' && (ds.launchRequestedAtMs ?? 0) + LAUNCH_RETRY_MS <= atMs) {
      ds.launchRequestedAtMs = atMs;
      // The same request as before (market included), so the client tokens find the same machine.
      out.push(launchEffect(ds, attemptMarket(plan?.market, attemptOf(ds))));
    }
    for (const stray of ds.strays ?? []) {
      if (stray.terminatedAtMs === undefined && stray.terminateRequestedAtMs + TERMINATE_RETRY_MS <= atMs) {
        stray.terminateRequestedAtMs = atMs;
        out.push({ type: 'TerminateInstance', dataset: ds.name, instanceId: stray.instanceId });
      }
    }
    if (ds.machine === 'terminating' && (ds.terminateRequestedAtMs ?? 0) + TERMINATE_RETRY_MS <= atMs) {
      ds.terminateRequestedAtMs = atMs;
      out.push({ type: 'TerminateInstance', dataset: ds.name, instanceId: ds.instanceId as string });
    }
  }
}

function expireDeadlines(state: JobState, atMs: number, out: Effects): void {
  for (const ds of state.datasets) {
    // A retrying dataset's deadline was its ended attempt's; the next attempt gets its own.
    if (!isTerminalPhase(ds.phase) && !ds.retrying && ds.deadlineAtMs !== undefined && atMs >= ds.deadlineAtMs) {
      finishDataset(ds, 'TIMED_OUT', timeoutReason(state), atMs, out);
    }
  }
}

function onCancelRequested(state: JobState, event: Extract<JobEvent, { type: 'CancelRequested' }>, out: Effects): void {
  if (isJobFinished(state)) return;
  if (!state.cancel) {
    state.cancel = { atMs: event.atMs, reason: event.reason };
    out.certificate(`cancel requested: ${event.reason}`);
  }
  if (state.phase !== 'ACTIVE') return;
  for (const ds of state.datasets) {
    if (!isTerminalPhase(ds.phase)) {
      finishDataset(ds, 'CANCELLED', `cancelled: ${state.cancel.reason}`, event.atMs, out);
    } else if (ds.machine === 'terminating' && ds.instanceId !== undefined) {
      // A repeated cancel (the reaper's, after the first asker died) asks again: terminating is idempotent.
      ds.terminateRequestedAtMs = event.atMs;
      out.push({ type: 'TerminateInstance', dataset: ds.name, instanceId: ds.instanceId });
    }
  }
}

/**
 * Moves a dataset to a terminal phase once, and makes sure its machine goes. Every phase but
 * SUCCEEDED records a failure: TIMED_OUT and CANCELLED have their own kind, FAILED says which
 * (`kind`, default 'platform': a failure nobody attributed is not the researcher's).
 */
function finishDataset(ds: DatasetState, phase: DatasetPhase, reason: string | undefined, atMs: number, out: Effects, kind?: FailureKind): void {
  if (isTerminalPhase(ds.phase)) return;
  ds.phase = phase;
  delete ds.retrying;
  if (reason !== undefined) ds.reason = reason;
  if (phase !== 'SUCCEEDED') {
    const failureKind: FailureKind = phase === 'TIMED_OUT' ? 'timeout' : phase === 'CANCELLED' ? 'cancelled' : (kind ?? 'platform');
    ds.failure = { kind: failureKind, detail: reason ?? phase };
  }
  ds.finishedAtMs = atMs;
  out.status(ds.name);
  out.certificate(`${ds.name}: ${phase}${reason ? ` (${reason})` : ''}`);
  requestTerminate(ds, atMs, out);
}

function requestTerminate(ds: DatasetState, atMs: number, out: Effects): void {
  if (ds.machine !== 'up' || ds.instanceId === undefined) return;
  ds.machine = 'terminating';
  ds.terminateRequestedAtMs = atMs;
  out.push({ type: 'TerminateInstance', dataset: ds.name, instanceId: ds.instanceId });
}

/** True when no machine of the job can still be alive or appear. */
function machinesSettled(state: JobState): boolean {
  return state.datasets.every((ds) => !hasLiveStray(ds) && !hasOpenLaunch(ds) && (ds.machine === 'none' || ds.machine === 'terminated' || ds.machine === 'launch-failed'));
}

/**
 * The current attempt's machine cost so far: the type and market EC2 launched plus its volumes,
 * per second (60 s minimum) from EC2's launch time to its termination time (or `nowMs` while it runs).
 */
export function currentMachineCostUsd(state: JobState, ds: DatasetState, nowMs?: number): number {
  if (ds.launchedAtMs === undefined || !state.plan) return 0;
  return machineCostUsd(machineHourlyUsdOf(state.plan, ds.instanceType, ds.market), ds.launchedAtMs, ds.terminatedAtMs ?? nowMs ?? ds.launchedAtMs);
}

/** One dataset's machine cost so far: every attempt's machine, the current one included. */
export function datasetCostUsd(state: JobState, ds: DatasetState, nowMs?: number): number {
  let total = currentMachineCostUsd(state, ds, nowMs) + strayCostUsd(state, ds, nowMs);
  for (const earlier of ds.earlierAttempts ?? []) total += earlier.costUsd;
  return roundUsd(total);
}

/** Actual cost so far: every machine from launch to its confirmed termination. */
export function jobSpentUsd(state: JobState, nowMs: number): number {
  let total = 0;
  for (const ds of state.datasets) total += datasetCostUsd(state, ds, nowMs);
  return roundUsd(total);
}

function finalizeIfDone(state: JobState, atMs: number, out: Effects): void {
  const plan = state.plan;
  if (!plan || !state.datasets.every((ds) => isTerminalPhase(ds.phase)) || !machinesSettled(state)) return;
  state.phase = 'DONE';
  state.endedAtMs = atMs;
  state.spentUsd = jobSpentUsd(state, atMs);
  for (const ds of state.datasets) out.status(ds.name);
  const counts = countPhases(state);
  out.certificate(
    `job finished: ${counts}; cost ${formatUsd(state.spentUsd)} of ${formatUsd(plan.reservedUsd)} reserved`,
  );
  out.push({ type: 'WriteProvenance' });
  const followOn = plan.blueprint.followOn;
  const next = plan.chain?.next[0];
  if (followOn && next && jobSucceeded(state)) {
    // Before the settlement: the next stage's share moves to its own ledger entries while this
    // job still holds it, so no other job can take it in between.
    const datasets = state.datasets.map((ds) => ({
      name: ds.name,
      resultKey: `${jobKeys(state.group, state.analysis, state.jobId).datasetResultsPrefix(ds.name)}${followOn.inputs.file}`,
    }));
    const groups = followOn.inputs.grouping === 'perDataset' ? datasets.map((ds) => [ds]) : [datasets];
    const share = roundUsd((plan.chain?.downstreamReservedUsd ?? 0) / groups.length);
    const jobs = groups.map((group, index) => ({ ledgerKey: followOnLedgerKey(state.jobId, followOn.analysis, index), reservedUsd: share, datasets: group }));
    out.certificate(`chain: submitting stage ${(plan.chain?.stage ?? 1) + 1}, ${followOn.analysis}: ${jobs.length} job(s) with ${followOn.inputs.file} of each dataset`);
    out.push({ type: 'SubmitFollowOn', analysis: followOn.analysis, stage: (plan.chain?.stage ?? 1) + 1, jobs, config: followOn.config });
  } else if (followOn) {
    out.certificate(`chain stopped: ${followOn.analysis} is not submitted because this stage did not succeed (${counts}); the rest of the chain's reservation is released`);
  }
  out.push({ type: 'SettleBudget', user: plan.user, period: plan.budgetPeriod, reservedUsd: plan.reservedUsd, spentUsd: state.spentUsd });
  const parent = plan.chain?.parent;
  if (parent) {
    const outcome = jobOutcome(state);
    const failed = state.datasets.filter((ds) => ds.phase !== 'SUCCEEDED').map((ds) => `${ds.name}: ${ds.reason ?? ds.phase}`);
    out.push({
      type: 'ReportToParent',
      parentJobId: parent.jobId,
      event: {
        type: 'FollowOnEnded',
        atMs,
        analysis: state.analysis,
        jobId: state.jobId,
        ledgerKey: parent.ledgerKey,
        outcome,
        ...(outcome === 'SUCCEEDED' ? {} : { reason: failed.join('; ') || outcome }),
      },
    });
  }
  out.push({ type: 'WriteEnd', text: endText(state) });
}

/** Chains: the next stage's job started or ended; recorded once, whatever the replays. */
function onFollowOn(state: JobState, event: Extract<JobEvent, { type: 'FollowOnStarted' | 'FollowOnEnded' }>, out: Effects): void {
  const records = (state.followOns ??= []);
  let record = records.find((r) => r.ledgerKey === event.ledgerKey);
  if (!record) {
    record = { analysis: event.analysis, ledgerKey: event.ledgerKey, jobId: event.jobId };
    records.push(record);
    out.certificate(`chain: next stage ${event.analysis} is job ${event.jobId}`);
  }
  if (event.type === 'FollowOnEnded' && record.outcome === undefined) {
    record.outcome = event.outcome;
    if (event.reason !== undefined) record.reason = event.reason;
    out.certificate(
      event.outcome === 'SUCCEEDED'
        ? `chain: next stage ${event.analysis} job ${event.jobId} SUCCEEDED`
        : `chain stopped: next stage ${event.analysis} job ${event.jobId} ${event.outcome}${event.reason ? ` (${event.reason})` : ''}`,
    );
  }
}

function countPhases(state: JobState): string {
  const counts = new Map<string, number>();
  for (const ds of state.datasets) counts.set(ds.phase, (counts.get(ds.phase) ?? 0) + 1);
  return [...counts.entries()].map(([phase, n]) => `${n} ${phase}`).join(', ') || 'no datasets';
}

/**
 * Every dataset succeeded; for an ensemble, the consensus succeeded (replicas may have failed:
 * the consensus ran because enough of them succeeded, and the failed ones are named).
 */
export function jobSucceeded(state: JobState): boolean {
  const consensus = state.datasets.find((ds) => ds.role === 'consensus');
  if (consensus) return consensus.phase === 'SUCCEEDED';
  return state.datasets.length > 0 && state.datasets.every((ds) => ds.phase === 'SUCCEEDED');
}

function endText(state: JobState): string {
  const outcome = state.phase === 'REJECTED' ? 'REJECTED' : jobSucceeded(state) ? 'SUCCEEDED' : 'FAILED';
  const lines = [
    `job ${state.jobId} ${outcome}`,
    `finished at ${isoOf(state.endedAtMs)}`,
    ...state.datasets.map((ds) => `${ds.name}: ${ds.phase}`),
  ];
  if (state.spentUsd !== undefined) lines.push(`cost ${formatUsd(state.spentUsd)}`);
  return `${lines.join('\n')}\n`;
}

/** Overall outcome, for the CLI and end.txt. */
export function jobOutcome(state: JobState): 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'REJECTED' | 'CANCELLED' {
  if (state.phase === 'REJECTED') return 'REJECTED';
  if (state.phase !== 'DONE') return 'RUNNING';
  if (jobSucceeded(state)) return 'SUCCEEDED';
  if (state.cancel && state.datasets.some((ds) => ds.phase === 'CANCELLED')) return 'CANCELLED';
  return 'FAILED';
}

export function datasetStatusDocument(state: JobState, ds: DatasetState, nowMs: number): DatasetStatusDocument {
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  const hourlyUsd = state.plan?.hourlyUsd;
  const doc: DatasetStatusDocument = {
    schemaVersion: 1,
    jobId: state.jobId,
    analysis: state.analysis,
    dataset: ds.name,
    inputKey: ds.inputKey,
    status: ds.phase,
    times: {
      launchRequested: isoOf(ds.launchRequestedAtMs),
      launched: isoOf(ds.launchedAtMs),
      agentOnline: isoOf(ds.agentOnlineAtMs),
      started: isoOf(ds.startedAtMs),
      finished: isoOf(ds.finishedAtMs),
      terminated: isoOf(ds.terminatedAtMs),
      deadline: isoOf(ds.deadlineAtMs),
    },
    logKey: keys.datasetLog(ds.name),
    resultsPrefix: keys.datasetResultsPrefix(ds.name),
    logTail: ds.logTail,
    updatedAt: new Date(nowMs).toISOString(),
  };
  if (ds.reason !== undefined) doc.reason = ds.reason;
  if (ds.failure !== undefined) doc.failure = ds.failure;
  if (ds.instanceId !== undefined) doc.instanceId = ds.instanceId;
  if (ds.instanceType !== undefined) doc.instanceType = ds.instanceType;
  if (ds.market !== undefined) doc.market = ds.market;
  if (ds.earlierAttempts?.length) {
    doc.attempt = attemptOf(ds);
    doc.earlierAttempts = ds.earlierAttempts.map(attemptDocument);
  }
  if (hourlyUsd !== undefined) doc.hourlyUsd = hourlyUsd;
  if (ds.exitCode !== undefined) doc.exitCode = ds.exitCode;
  if (hourlyUsd !== undefined && (ds.launchedAtMs !== undefined || ds.earlierAttempts?.length)) doc.costUsd = datasetCostUsd(state, ds, nowMs);
  return doc;
}

/** An earlier attempt as the status document and provenance show it. */
export function attemptDocument(record: AttemptRecord): AttemptRecordDocument {
  const doc: AttemptRecordDocument = { attempt: record.attempt, failure: record.failure, costUsd: record.costUsd };
  if (record.instanceId !== undefined) doc.instanceId = record.instanceId;
  if (record.instanceType !== undefined) doc.instanceType = record.instanceType;
  if (record.market !== undefined) doc.market = record.market;
  const launched = isoOf(record.launchedAtMs);
  const terminated = isoOf(record.terminatedAtMs);
  if (launched !== undefined) doc.launched = launched;
  if (terminated !== undefined) doc.terminated = terminated;
  return doc;
}

/** The certificate file's text, rendered from the job's lines (so rewriting it is idempotent). */
export function renderCertificate(state: JobState): string {
  return state.certificate.map((line) => `${new Date(line.atMs).toISOString()}  ${line.text}`).join('\n') + '\n';
}

/**
 * When the shell should next deliver a Tick for this job: the earliest deadline, agent-wait
 * expiry, result grace or retry. Undefined when nothing is waiting on time.
 */
export function nextWakeAtMs(state: JobState): number | undefined {
  if (isJobFinished(state)) return undefined;
  const times: number[] = [];
  if (state.phase === 'RESERVING') times.push((state.reserveRequestedAtMs ?? state.createdAtMs) + RESERVE_RETRY_MS);
  const agentWaitMs = (state.plan?.agentWaitMinutes ?? 10) * 60_000;
  for (const ds of state.datasets) {
    if (!isTerminalPhase(ds.phase) && !ds.retrying && ds.deadlineAtMs !== undefined) times.push(ds.deadlineAtMs);
    if (ds.phase === 'BOOTING' && ds.launchedAtMs !== undefined) times.push(ds.launchedAtMs + agentWaitMs);
    if (ds.phase === 'RUNNING' && ds.machineGoneAtMs !== undefined) times.push(ds.machineGoneAtMs + COMMAND_RESULT_GRACE_MS);
    if (ds.machine === 'requested') times.push((ds.launchRequestedAtMs ?? 0) + LAUNCH_RETRY_MS);
    if (ds.machine === 'terminating') times.push((ds.terminateRequestedAtMs ?? 0) + TERMINATE_RETRY_MS);
    if (ds.phase === 'PENDING' && ds.retryNotBeforeMs !== undefined) times.push(ds.retryNotBeforeMs);
    for (const open of ds.openLaunches ?? []) {
      times.push(open.checkRequestedAtMs === undefined ? open.launchByMs + LAUNCH_SETTLE_MS : open.checkRequestedAtMs + LAUNCH_RETRY_MS);
    }
    for (const stray of ds.strays ?? []) if (stray.terminatedAtMs === undefined) times.push(stray.terminateRequestedAtMs + TERMINATE_RETRY_MS);
  }
  return times.length > 0 ? Math.min(...times) : undefined;
}
