import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDiskFull, NeuroCaasError } from '../lib/core/errors.js';
import { isJobFinished, nextWakeAtMs, type JobEvent, type JobState } from '../lib/core/job-machine.js';
import { LocalCatalog } from '../lib/local/catalog.js';
import { formatBytes } from '../lib/core/plan.js';
import { freeBytesOf, isErrno, keepSpaceReserve, releaseSpaceReserve } from '../lib/local/fs-util.js';
import { LocalJobStore } from '../lib/local/job-store.js';
import { LocalLedger } from '../lib/local/ledger.js';
import { LocalMachines, type LocalMachineEvent } from '../lib/local/machines.js';
import { LocalObjectStore } from '../lib/local/object-store.js';
import { currentOwner, STATE_DB_FILE, StateDb, type LeaseOwner } from '../lib/local/state-db.js';
import type { Clock, IdSource, Ledger, Machines, ScheduledAction, Scheduler } from '../lib/ports.js';
import { JobDriver, ReceiptUnwrittenError, type DriverObserver } from './driver.js';

export interface LocalPlatformOptions {
  /** Root of the local backend; default `./.neurocaas`. */
  root: string;
  blueprintsDir: string;
  usersDir: string;
  observer?: DriverObserver;
  clock?: Clock;
  /**
   * Test hook (NEUROCAAS_TEST_CRASH_AT): the process kills itself with SIGKILL at this point of
   * a job, so tests can prove that a crash at any moment leaves nothing unfinished.
   */
  crashAt?: CrashPoint;
}

/**
 * Where the crash test hook strikes: before the claim (the submission is written), right after
 * the claim, while reserving budget, right after a machine was launched.
 */
export type CrashPoint = 'submitted' | 'claimed' | 'reserving' | 'launched';

const CRASH_POINTS: readonly CrashPoint[] = ['submitted', 'claimed', 'reserving', 'launched'];

/** The crash point named by the test hook variable's value; undefined when unset or unknown. */
export function crashPointOf(value: string | undefined): CrashPoint | undefined {
  return CRASH_POINTS.find((point) => point === value);
}

/** How often this process renews its leases and looks for cancel requests of its jobs, ms. */
export const LEASE_RENEW_MS = 1_000;

export const systemClock: Clock = { nowMs: () => Date.now() };

/**
 * Room kept under the root (`state/space-reserve`) for recording a full disk: released when
 * one is noticed, so the reason can still be written; 1 MiB.
 */
export const SPACE_RESERVE_BYTES = 1_048_576;

/**
 * When a receipt whose write failed is written again, ms after the failure (then given up: the
 * job stands, its submitter in this root reads the outcome from the job, and the next command
 * that takes the job over writes it).
 */
export const RECEIPT_RETRY_MS: readonly number[] = [250, 1_000, 4_000, 15_000, 60_000];

/** How often a job run by another process is checked for its end. */
const OTHER_PROCESS_POLL_MS = 250;

export const localIds: IdSource = {
  jobId(nowMs: number): string {
    const stamp = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    return `${stamp}-${randomBytes(3).toString('hex')}`;
  },
};

/** The package root (holds package.json), from source or from dist/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new NeuroCaasError('Installation', 'cannot find the neurocaas package root');
    dir = parent;
  }
  return dir;
}

/** The machine agent and the runner shipped in lib/runner/ (shell scripts, the same on every backend). */
export function runnerScripts(): { agentScript: string; runnerScript: string } {
  const dir = join(packageRoot(), 'lib', 'runner');
  const scripts = { agentScript: join(dir, 'local-agent.sh'), runnerScript: join(dir, 'ncap-runner.sh') };
  for (const script of Object.values(scripts)) {
    if (!existsSync(script)) throw new NeuroCaasError('Installation', `${script} is missing; reinstall neurocaas`);
  }
  return scripts;
}

/**
 * The local backend: the shared driver on a folder tree, child-process machines and timers.
 * One instance per neurocaas process; several processes may share a root.
 *
 * Ownership: a job is driven only by the holder of its lease in the state database (taken
 * with the claim, in the same transaction; renewed every second). Machines are children of
 * their owner. Another process takes a job over only when its holder is dead; then it either
 * resumes it (`local serve`) or finishes it with a reason (every other command).
 */
export class LocalPlatform {
  readonly root: string;
  readonly state: StateDb;
  readonly owner: LeaseOwner;
  readonly objects: LocalObjectStore;
  readonly jobs: LocalJobStore;
  readonly ledger: LocalLedger;
  readonly machines: LocalMachines;
  readonly catalog: LocalCatalog;
  readonly driver: JobDriver;
  private readonly clock: Clock;
  private readonly observer: DriverObserver | undefined;
  private readonly tickTimers = new Map<string, NodeJS.Timeout>();
  private readonly otherTimers = new Set<NodeJS.Timeout>();
  private readonly waiters = new Map<string, ((state: JobState) => void)[]>();
  private readonly polls = new Set<NodeJS.Timeout>();
  /** Jobs whose lease this instance holds: the only jobs it drives. */
  private readonly leased = new Set<string>();
  private readonly inflight = new Set<Promise<unknown>>();
  private renewTimer: NodeJS.Timeout | undefined;
  private resumes = false;
  private closed = false;
  /** Set once the process is stopping: jobs claimed from then on are cancelled at once. */
  private stopReason: string | undefined;
  /** Set once a full disk under the root was noticed: why this process's jobs were stopped. */
  private diskFullReason: string | undefined;
  private readonly spaceReserve: string;

  constructor(options: LocalPlatformOptions) {
    this.root = resolve(options.root);
    this.clock = options.clock ?? systemClock;
    this.observer = options.observer;
    const bucketsDir = join(this.root, 'buckets');
    const stateDir = join(this.root, 'state');
    this.state = new StateDb(join(stateDir, STATE_DB_FILE));
    this.spaceReserve = join(stateDir, 'space-reserve');
    keepSpaceReserve(this.spaceReserve, SPACE_RESERVE_BYTES);
    this.owner = currentOwner();
    this.objects = new LocalObjectStore(bucketsDir);
    this.jobs = new LocalJobStore(this.state, this.owner, this.clock);
    this.ledger = new LocalLedger(this.state);
    this.catalog = new LocalCatalog(resolve(options.blueprintsDir), resolve(options.usersDir));
    this.machines = new LocalMachines({
      machinesDir: join(this.root, 'machines'),
      bucketsDir,
      ...runnerScripts(),
      envDirOf: (analysis) => this.catalog.envDirOf(analysis),
      clock: this.clock,
      onEvent: (event) => this.onMachineEvent(event),
    });
    const scheduler: Scheduler = { schedule: async (atMs, action) => this.schedule(atMs, action) };
    const hooks = crashHooks(options.crashAt, this.ledger, this.machines);
    // Every failure the driver reports is looked at for a full disk before the shell hears of it.
    const observer: DriverObserver = {
      ...options.observer,
      effectFailed: (jobId, effect, error) => {
        this.noticeDiskFull(error);
        options.observer?.effectFailed?.(jobId, effect, error);
      },
      backgroundError: (jobId, error) => {
        this.noticeDiskFull(error);
        options.observer?.backgroundError?.(jobId, error);
      },
    };
    this.driver = new JobDriver({
      objects: this.objects,
      jobs: this.jobs,
      ledger: hooks.ledger,
      machines: hooks.machines,
      runner: this.machines,
      scheduler,
      catalog: this.catalog,
      clock: this.clock,
      ids: localIds,
      sha256: (bucket, key) => this.objects.sha256(bucket, key),
      // Not awaited: the next stage's job reports back to this one, whose outbox is running now.
      submitFollowOn: async (bucket, key, username) => {
        void this.startSubmission(bucket, key, username).catch((error: unknown) => this.observer?.backgroundError?.(key, error));
      },
      observer,
    });
    this.crashAt = options.crashAt;
  }

  private readonly crashAt: CrashPoint | undefined;

  bucketDir(analysis: string): string {
    return join(this.root, 'buckets', analysis);
  }

  /**
   * Marks this process as one that resumes other processes' orphaned jobs (`local serve`):
   * its reaper adopts them, and short-lived commands leave orphans to it instead of cancelling.
   */
  becomeResumer(): void {
    this.resumes = true;
    this.state.registerResumer(this.owner, this.clock.nowMs());
    this.ensureRenewing();
  }

  /** Runs a submission already in the local bucket and resolves when its job is finished. */
  async runSubmission(bucket: string, key: string, options: { username?: string; onJobId?: (jobId: string) => void } = {}): Promise<JobState> {
    // Like every command, `run` first finishes what dead processes left (or leaves it to a server).
    await this.reap().catch((error: unknown) => this.report('-', error));
    const { jobId, duplicate } = await this.startSubmission(bucket, key, options.username);
    options.onJobId?.(jobId);
    if (duplicate) {
      const record = await this.jobs.get(jobId);
      if (record && isJobFinished(record.state)) return record.state;
    }
    return this.waitForJob(jobId);
  }

  /** Claims and starts a submission; returns at once with its job id. */
  async startSubmission(bucket: string, key: string, username?: string): Promise<{ jobId: string; duplicate: boolean }> {
    if (this.crashAt === 'submitted') crashNow();
    let claimed: string | undefined;
    let started: { jobId: string; duplicate: boolean };
    try {
      started = await this.driver.submit(bucket, key, {
        ...(username === undefined ? {} : { username }),
        // A claimed job in NEW belongs to its lease holder; the reaper resumes it if that one died.
        resumeClaimed: false,
        // The claim took the lease in the same transaction: the job is this process's from here.
        onJobId: (jobId) => {
          claimed = jobId;
          this.holdLease(jobId);
          if (this.crashAt === 'claimed') crashNow();
        },
      });
    } catch (error) {
      this.noticeDiskFull(error);
      if (error instanceof ReceiptUnwrittenError) {
        // Evaluated (or a duplicate of an evaluated one), only the receipt is missing: the job
        // stands as evaluated, its receipt is written again, and a submitter in this root reads
        // the outcome from the job meanwhile (LocalClientBackend).
        started = { jobId: error.receipt.jobId, duplicate: claimed === undefined };
        this.receiptLater(error);
      } else {
        if (claimed === undefined) throw error;
        // Claimed but its evaluation threw: the job must still end, with the reason, and the
        // submitter (a CLI or the web app waiting for it) must get its receipt now, not a timeout.
        started = { jobId: claimed, duplicate: false };
        await this.rejectUnevaluated(bucket, key, claimed, error, username);
      }
    }
    if (started.duplicate) return started;
    // Claimed while this process was being stopped: it must not run on unattended.
    if (this.stopReason !== undefined) await this.cancel(started.jobId, this.stopReason);
    const record = await this.jobs.get(started.jobId);
    if (record) this.afterDispatch(record.state);
    return started;
  }

  /**
   * A claimed submission whose evaluation threw (not a refusal: a fault of the platform or of
   * the analysis's set-up) is rejected with the error's message verbatim and what to do, in its
   * certificate, end.txt and receipt. If even that cannot be written (the disk is full), the
   * original error is thrown: the caller says it, and the reaper ends the job later.
   */
  private async rejectUnevaluated(bucket: string, key: string, jobId: string, error: unknown, username: string | undefined): Promise<void> {
    const message = error instanceof Error ? error.message : String(error);
    const reason =
      `the submission could not be evaluated: ${message}. This is a fault of the platform or of the analysis's set-up, not of the submission; ` +
      'nothing was reserved or run, and your inputs and configs are untouched: tell the analysis developer or your admin, then submit it again (under a new name)';
    try {
      await this.driver.rejectUnprocessable(bucket, key, reason, username === undefined ? {} : { username });
    } catch (rejectionError) {
      // The rejection is stored, only its receipt is missing: as for any receipt, written later.
      if (rejectionError instanceof ReceiptUnwrittenError) return this.receiptLater(rejectionError);
      this.report(jobId, rejectionError);
      throw error;
    }
  }

  /**
   * A receipt whose write failed: reported (a server logs it), then written again from the job
   * at RECEIPT_RETRY_MS, create-only, until it lands or this platform closes.
   */
  private receiptLater(failure: ReceiptUnwrittenError, attempt = 0): void {
    const jobId = failure.receipt.jobId;
    this.report(jobId, failure);
    const delayMs = RECEIPT_RETRY_MS[attempt];
    if (delayMs === undefined || this.closed) return;
    const timer = setTimeout(() => {
      this.otherTimers.delete(timer);
      if (this.closed) return;
      void this.driver.writeMissingReceipt(jobId).catch((error: unknown) => {
        if (error instanceof ReceiptUnwrittenError) this.receiptLater(error, attempt + 1);
        else this.report(jobId, error);
      });
    }, delayMs);
    timer.unref();
    this.otherTimers.add(timer);
  }

  /** Resolves when the job is finished (DONE or REJECTED), or with its last known state when this platform closes. */
  async waitForJob(jobId: string): Promise<JobState> {
    const record = await this.jobs.get(jobId);
    if (!record) throw new NeuroCaasError('JobNotFound', `job ${jobId} does not exist under ${this.root}`);
    if (isJobFinished(record.state) || this.closed) return record.state;
    return new Promise((resolvePromise) => {
      let latest = record.state;
      // Another neurocaas process may be the one running it (a `local serve` took the
      // submission first): the store says when it is done.
      const poll = setInterval(() => {
        if (this.closed) return;
        void this.jobs.get(jobId).then(
          (found) => {
            if (!found) return;
            latest = found.state;
            if (isJobFinished(found.state)) waiter(found.state);
          },
          (error: unknown) => this.report(jobId, error),
        );
      }, OTHER_PROCESS_POLL_MS);
      this.polls.add(poll);
      const waiter = (state: JobState | undefined) => {
        clearInterval(poll);
        this.polls.delete(poll);
        const list = this.waiters.get(jobId);
        if (list) this.waiters.set(jobId, list.filter((w) => w !== waiter));
        resolvePromise(state ?? latest);
      };
      const list = this.waiters.get(jobId) ?? [];
      list.push(waiter);
      this.waiters.set(jobId, list);
    });
  }

  /**
   * Cancels a job, whichever process runs it: directly when this process owns it; else by a
   * cancel request its owner picks up within a second; a job whose owner is gone is taken over
   * and finished here. Resolves with the job's state as this process knows it.
   */
  async cancel(jobId: string, reason: string): Promise<JobState> {
    if (this.leased.has(jobId)) return this.dispatch(jobId, { type: 'CancelRequested', atMs: this.clock.nowMs(), reason });
    this.state.requestCancel(jobId, reason, this.clock.nowMs());
    const taken = this.state.acquireLease(jobId, this.owner, this.clock.nowMs());
    if (taken.acquired) {
      this.holdLease(jobId);
      await this.finishOrphan(jobId, reason);
    }
    const record = await this.jobs.get(jobId);
    if (!record) throw new NeuroCaasError('JobNotFound', `job ${jobId} does not exist under ${this.root}`);
    return record.state;
  }

  /**
   * Stopping (Ctrl-C, a stopping server): cancels the jobs this process owns and waits for them
   * to finish, bounded. With `handOver`, jobs that have not launched anything yet are released
   * instead when another live server can resume them.
   */
  async cancelOwned(stopping: string, options: { maxWaitMs?: number; handOver?: boolean } = {}): Promise<void> {
    // Stopping because the disk is full: that stays the jobs' reason.
    const reason = this.diskFullReason ?? stopping;
    this.stopReason = reason;
    const maxWaitMs = options.maxWaitMs ?? 10_000;
    const handOver = options.handOver === true && this.state.otherResumerAlive(this.owner, this.clock.nowMs());
    const cancelled: string[] = [];
    for (const jobId of [...this.leased]) {
      const record = await this.jobs.get(jobId).catch(() => undefined);
      if (handOver && record && (record.state.phase === 'NEW' || record.state.phase === 'RESERVING')) {
        this.releaseLease(jobId);
        continue;
      }
      cancelled.push(jobId);
    }
    await Promise.all(cancelled.map((jobId) => this.cancel(jobId, reason).catch((error: unknown) => this.report(jobId, error))));
    const all = Promise.all(cancelled.map((jobId) => this.waitForJob(jobId).catch(() => undefined)));
    await Promise.race([all, new Promise((r) => setTimeout(r, maxWaitMs).unref())]);
  }

  /**
   * The third layer against leaked machines, and the end of orphaned jobs: kills machines past
   * their deadline, then takes over every unfinished job whose owner is dead (or that has no
   * owner). A resumer (`local serve`) resumes them; any other command finishes them with a
   * reason, unless a live resumer exists, which will resume them.
   */
  async reap(): Promise<{ machinesKilled: number; jobsRecovered: string[]; jobsResumed: string[] }> {
    const now = this.clock.nowMs();
    let machinesKilled = 0;
    for (const machine of await this.machines.listExpired(now)) {
      await this.machines.terminate(machine.instanceId);
      machinesKilled += 1;
    }
    const jobsRecovered: string[] = [];
    const jobsResumed: string[] = [];
    if (!this.resumes && this.state.otherResumerAlive(this.owner, now)) return { machinesKilled, jobsRecovered, jobsResumed };
    let survivors: Awaited<ReturnType<Machines['listExpired']>> | undefined;
    for (const jobId of await this.jobs.unfinished()) {
      if (this.leased.has(jobId) || this.closed) continue;
      const taken = this.state.acquireLease(jobId, this.owner, this.clock.nowMs());
      if (!taken.acquired) continue;
      this.holdLease(jobId);
      const previous = taken.previous;
      const requested = this.state.cancelRequest(jobId);
      const why = requested?.reason ?? (previous ? `the neurocaas process running it (pid ${previous.owner_pid}) stopped` : 'no neurocaas process runs it');
      // Machines of a dead owner die with it (stdin lifeline); any survivor is stopped first.
      survivors ??= await this.machines.listExpired(Number.MAX_SAFE_INTEGER);
      for (const machine of survivors.filter((m) => m.jobId === jobId)) await this.machines.terminate(machine.instanceId);
      try {
        // Its owner may have died between the evaluation and the receipt: the submitter waits for it.
        await this.driver.writeMissingReceipt(jobId).catch((error: unknown) => this.report(jobId, error));
        if (this.resumes && !requested) {
          await this.resumeOrphan(jobId, why);
          jobsResumed.push(jobId);
        } else {
          await this.finishOrphan(jobId, why);
          jobsRecovered.push(jobId);
        }
      } catch (error) {
        this.report(jobId, error);
      }
    }
    // A finished job whose last writes failed (end.txt, provenance, the settlement) has no event
    // left to drain its outbox: its end is carried out here, once nobody else holds it.
    for (const jobId of await this.jobs.finishedWithPendingEffects()) {
      if (this.leased.has(jobId) || this.closed) continue;
      if (!this.state.acquireLease(jobId, this.owner, this.clock.nowMs()).acquired) continue;
      this.holdLease(jobId);
      try {
        await this.dispatch(jobId, { type: 'Tick', atMs: this.clock.nowMs() });
      } catch (error) {
        this.report(jobId, error);
      } finally {
        // Finished: afterDispatch released it unless the dispatch threw; the next pass tries again.
        if (this.leased.has(jobId)) this.releaseLease(jobId);
      }
    }
    return { machinesKilled, jobsRecovered, jobsResumed };
  }

  /** An orphan taken over by a command that will not stay: it ends now, with `reason`. */
  private async finishOrphan(jobId: string, reason: string): Promise<void> {
    this.state.clearCancelRequest(jobId);
    const record = await this.jobs.get(jobId);
    if (!record || isJobFinished(record.state)) return;
    const atMs = this.clock.nowMs();
    if (record.state.phase === 'NEW') {
      // Never evaluated: rejected with the reason (nothing was reserved or launched).
      await this.dispatch(jobId, { type: 'SubmissionRejected', atMs, reasons: [`the job was stopped before its submission was evaluated: ${reason}; submit it again (under a new name)`], datasets: [] });
      return;
    }
    // The cancel ends every dataset; the lost-machine events then settle the machines at once.
    await this.dispatch(jobId, { type: 'CancelRequested', atMs, reason });
    await this.deliverLostMachines(jobId, reason);
  }

  /** An orphan taken over by a server: it goes on from its state; what its dead owner's machines were doing failed. */
  private async resumeOrphan(jobId: string, reason: string): Promise<void> {
    const record = await this.jobs.get(jobId);
    if (!record || isJobFinished(record.state)) return;
    if (record.state.phase === 'NEW') {
      const state = await this.driver.evaluate(jobId);
      if (state) this.afterDispatch(state);
      return;
    }
    // The machines this process launches for the job run the analysis's environment: load it.
    await this.catalog.blueprint(record.state.analysis);
    await this.deliverLostMachines(jobId, reason);
  }

  /**
   * Tells the reducer what became of the machines a dead owner left: a launch in flight failed,
   * a running workflow was killed with it, a booting machine ended. Then replays the outbox.
   */
  private async deliverLostMachines(jobId: string, reason: string): Promise<void> {
    const record = await this.jobs.get(jobId);
    if (!record) return;
    const lost = `its machine stopped with the neurocaas process that ran the job (${reason})`;
    for (const ds of record.state.datasets) {
      const atMs = this.clock.nowMs();
      if (ds.machine === 'requested') {
        await this.dispatch(jobId, { type: 'InstanceLaunchFailed', atMs, dataset: ds.name, reason: lost });
      } else if ((ds.machine === 'up' || ds.machine === 'terminating') && ds.instanceId !== undefined) {
        if (ds.phase === 'RUNNING') {
          await this.dispatch(jobId, { type: 'CommandFinished', atMs, dataset: ds.name, exitCode: null, timedOut: false, logTail: [...ds.logTail, lost].slice(-20) });
        }
        await this.machines.terminate(ds.instanceId);
        await this.dispatch(jobId, { type: 'InstanceStateChanged', atMs: this.clock.nowMs(), instanceId: ds.instanceId, state: 'terminated' });
      }
    }
    await this.dispatch(jobId, { type: 'Tick', atMs: this.clock.nowMs() });
  }

  /** Submission files in every local bucket, for the watcher. */
  async findSubmissions(): Promise<{ bucket: string; key: string; etag: string; lastModifiedMs: number }[]> {
    const bucketsDir = join(this.root, 'buckets');
    let buckets: string[];
    try {
      buckets = await readdir(bucketsDir);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const found: { bucket: string; key: string; etag: string; lastModifiedMs: number }[] = [];
    for (const bucket of buckets) {
      let groups: string[];
      try {
        groups = await readdir(join(bucketsDir, bucket));
      } catch (error) {
        if (isErrno(error, 'ENOTDIR')) continue;
        throw error;
      }
      for (const group of groups) {
        for (const info of await this.objects.list(bucket, `${group}/submissions/`)) {
          if (info.key.endsWith('submit.json')) found.push({ bucket, key: info.key, etag: info.etag, lastModifiedMs: info.lastModifiedMs });
        }
      }
    }
    return found;
  }

  /**
   * Stops timers, kills every machine this process owns, releases its leases (an unfinished
   * job is then resumable by the next neurocaas command) and closes the database.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of [...this.tickTimers.values(), ...this.otherTimers, ...this.polls]) clearTimeout(timer);
    this.tickTimers.clear();
    this.otherTimers.clear();
    this.polls.clear();
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    for (const [jobId, list] of [...this.waiters]) {
      this.waiters.delete(jobId);
      for (const waiter of list) waiter(undefined as unknown as JobState);
    }
    await this.machines.terminateOwned();
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 500).unref())]);
    try {
      // On a full disk this write fails; the leases then expire with this process (its pid is dead).
      this.state.releaseAll(this.owner);
    } finally {
      this.leased.clear();
      // Closed whatever happened: a follower still polling the store must fail, not poll forever.
      this.state.close();
    }
  }

  private holdLease(jobId: string): void {
    this.leased.add(jobId);
    this.ensureRenewing();
  }

  private releaseLease(jobId: string): void {
    this.leased.delete(jobId);
    this.state.releaseLease(jobId, this.owner);
    const timer = this.tickTimers.get(jobId);
    if (timer) clearTimeout(timer);
    this.tickTimers.delete(jobId);
  }

  private ensureRenewing(): void {
    if (this.renewTimer || this.closed) return;
    // Unref'd: renewing never keeps a process alive by itself; a live process renews.
    this.renewTimer = setInterval(() => this.renew(), LEASE_RENEW_MS);
    this.renewTimer.unref();
  }

  /** Renews this process's leases and carries out cancel requests other processes left for its jobs. */
  private renew(): void {
    if (this.closed) return;
    try {
      const now = this.clock.nowMs();
      if (this.resumes) this.state.registerResumer(this.owner, now);
      const held = new Set(this.state.renewLeases(this.owner, now));
      for (const jobId of [...this.leased]) {
        if (!held.has(jobId)) {
          // Only possible if this process was taken for dead; it must not drive the job any more.
          this.leased.delete(jobId);
          this.report(jobId, new NeuroCaasError('LeaseLost', `job ${jobId} was taken over by another neurocaas process`));
        }
      }
      // After a full disk, this process's own requests hold the reason for the next command.
      if (this.diskFullReason !== undefined) return;
      for (const request of this.state.takeCancelRequests(this.owner)) {
        void this.dispatch(request.jobId, { type: 'CancelRequested', atMs: now, reason: request.reason }).catch((error: unknown) => this.report(request.jobId, error));
      }
    } catch (error) {
      this.report('-', error);
    }
  }

  private async dispatch(jobId: string, event: JobEvent): Promise<JobState> {
    if (!this.leased.has(jobId) || this.closed) {
      // Not this process's job (any more): never drive it; say where it stands.
      const record = await this.jobs.get(jobId);
      if (!record) throw new NeuroCaasError('JobNotFound', `job ${jobId} does not exist under ${this.root}`);
      return record.state;
    }
    const running = this.driver.dispatch(jobId, event);
    this.inflight.add(running);
    try {
      const state = await running;
      this.afterDispatch(state);
      return state;
    } catch (error) {
      this.noticeDiskFull(error);
      throw error;
    } finally {
      this.inflight.delete(running);
    }
  }

  private afterDispatch(state: JobState): void {
    const jobId = state.jobId;
    const previous = this.tickTimers.get(jobId);
    if (previous) clearTimeout(previous);
    this.tickTimers.delete(jobId);
    if (isJobFinished(state)) {
      this.finish(state);
      return;
    }
    const wakeAt = nextWakeAtMs(state);
    if (wakeAt === undefined || this.closed || !this.leased.has(jobId)) return;
    const timer = setTimeout(() => {
      this.tickTimers.delete(jobId);
      void this.dispatch(jobId, { type: 'Tick', atMs: this.clock.nowMs() }).catch((error: unknown) => this.report(jobId, error));
    }, Math.max(0, wakeAt - this.clock.nowMs()) + 5);
    this.tickTimers.set(jobId, timer);
  }

  private finish(state: JobState): void {
    const jobId = state.jobId;
    if (this.leased.has(jobId) && !this.closed) {
      this.releaseLease(jobId);
      this.state.clearCancelRequest(jobId);
    }
    const waiters = this.waiters.get(jobId) ?? [];
    this.waiters.delete(jobId);
    for (const resolveWaiter of waiters) resolveWaiter(state);
  }

  private schedule(atMs: number, action: ScheduledAction): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.otherTimers.delete(timer);
      if (!this.leased.has(action.jobId)) return;
      const run =
        action.kind === 'tick'
          ? this.dispatch(action.jobId, { type: 'Tick', atMs: this.clock.nowMs() })
          : this.driver.checkAgent(action).then((state) => state && this.afterDispatch(state));
      void run.catch((error: unknown) => this.report(action.jobId, error));
    }, Math.max(0, atMs - this.clock.nowMs()));
    this.otherTimers.add(timer);
  }

  private onMachineEvent(event: LocalMachineEvent): void {
    if (this.closed) return;
    let jobEvent: JobEvent | undefined;
    switch (event.type) {
      case 'online':
        jobEvent = { type: 'AgentOnline', atMs: event.atMs, dataset: event.dataset, instanceId: event.instanceId };
        break;
      case 'finished':
        jobEvent = {
          type: 'CommandFinished',
          atMs: event.atMs,
          dataset: event.dataset,
          exitCode: event.exitCode,
          timedOut: event.timedOut,
          logTail: event.logTail,
          ...(event.failure ? { failure: event.failure } : {}),
        };
        break;
      case 'terminated':
        jobEvent = { type: 'InstanceStateChanged', atMs: event.atMs, instanceId: event.instanceId, state: 'terminated' };
        break;
      case 'started':
        // The driver records the command id from sendCommand; nothing new here.
        return;
    }
    void this.dispatch(event.jobId, jobEvent).catch((error: unknown) => this.report(event.jobId, error));
  }

  /** A failure of work done for this platform that nobody awaits: told to the observer (a server logs it), looked at for a full disk. */
  reportFailure(jobId: string, error: unknown): void {
    this.report(jobId, error);
  }

  private report(jobId: string, error: unknown): void {
    this.noticeDiskFull(error);
    this.observer?.backgroundError?.(jobId, error);
  }

  /**
   * The first full disk (ENOSPC, EDQUOT, SQLITE_FULL) this process meets stops its jobs: retrying
   * writes that cannot succeed would keep them, and their machines, running until the deadline.
   * Their machines are killed first (a workflow filling the disk would take the room freed next),
   * the space reserve is released, and each job gets a cancel request naming the disk (one
   * small write) and the cancel itself: the job ends here if the writes now fit, else the next
   * neurocaas command ends it with that reason. Synchronous up to the dispatches.
   */
  private noticeDiskFull(error: unknown): void {
    if (this.diskFullReason !== undefined || this.closed || !isDiskFull(error, { database: true })) return;
    const reason = diskFullReason(this.root, error);
    this.diskFullReason = reason;
    this.stopReason ??= reason;
    this.machines.killOwnedNow();
    releaseSpaceReserve(this.spaceReserve);
    const atMs = this.clock.nowMs();
    for (const jobId of [...this.leased]) {
      try {
        this.state.requestCancel(jobId, reason, atMs);
      } catch (requestError) {
        // Not even the reserve made room: the next command ends the job with a plainer reason.
        this.observer?.backgroundError?.(jobId, requestError);
      }
      void this.dispatch(jobId, { type: 'CancelRequested', atMs, reason }).catch((cancelError: unknown) => this.observer?.backgroundError?.(jobId, cancelError));
    }
  }
}

/** Why a job stopped on a full disk: which disk, what is free there now, the error, what to do. */
function diskFullReason(root: string, error: unknown): string {
  const free = freeBytesOf(root);
  const message = error instanceof Error ? error.message : String(error);
  return (
    `no space left on the disk of ${root} (${free === undefined ? '' : `${formatBytes(free)} free; `}${message}): the job's records and results could not all be written, ` +
    'so it was stopped; free space on that disk (or use --root on another one), then submit it again'
  );
}

function crashNow(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL did not stop the process');
}

/** The ledger and machines the driver uses: the real ones, or ones that crash the process at the hook's point. */
function crashHooks(crashAt: CrashPoint | undefined, ledger: Ledger, machines: Machines): { ledger: Ledger; machines: Machines } {
  if (crashAt === 'reserving') {
    return { ledger: { reserve: async () => crashNow(), settle: (r) => ledger.settle(r), entries: (u, p) => ledger.entries(u, p) }, machines };
  }
  if (crashAt === 'launched') {
    return {
      ledger,
      machines: {
        launch: async (request) => {
          await machines.launch(request);
          return crashNow();
        },
        findLaunched: (token) => machines.findLaunched(token),
        terminate: (id) => machines.terminate(id),
        describe: (id) => machines.describe(id),
        listExpired: (now) => machines.listExpired(now),
      },
    };
  }
  return { ledger, machines };
}
