import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NeuroCaasError } from '../lib/core/errors.js';
import { isJobFinished, nextWakeAtMs, type JobEvent, type JobState } from '../lib/core/job-machine.js';
import { LocalCatalog } from '../lib/local/catalog.js';
import { isErrno, isProcessAlive, readJsonIfExists, writeFileAtomic } from '../lib/local/fs-util.js';
import { LocalJobStore } from '../lib/local/job-store.js';
import { LocalLedger } from '../lib/local/ledger.js';
import { LocalMachines, type LocalMachineEvent } from '../lib/local/machines.js';
import { LocalObjectStore } from '../lib/local/object-store.js';
import type { Clock, IdSource, ScheduledAction, Scheduler } from '../lib/ports.js';
import { JobDriver, type DriverObserver } from './driver.js';

export interface LocalPlatformOptions {
  /** Root of the local backend; default `./.neurocaas`. */
  root: string;
  blueprintsDir: string;
  usersDir: string;
  observer?: DriverObserver;
  clock?: Clock;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** How often a job run by another process is checked for its end. */
const OTHER_PROCESS_POLL_MS = 500;

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
 */
export class LocalPlatform {
  readonly root: string;
  readonly objects: LocalObjectStore;
  readonly jobs: LocalJobStore;
  readonly ledger: LocalLedger;
  readonly machines: LocalMachines;
  readonly catalog: LocalCatalog;
  readonly driver: JobDriver;
  private readonly clock: Clock;
  private readonly observer: DriverObserver | undefined;
  private readonly ownersDir: string;
  private readonly tickTimers = new Map<string, NodeJS.Timeout>();
  private readonly otherTimers = new Set<NodeJS.Timeout>();
  private readonly waiters = new Map<string, ((state: JobState) => void)[]>();
  private readonly active = new Set<string>();
  private closed = false;
  /** Set once the process is stopping: jobs claimed from then on are cancelled at once. */
  private stopReason: string | undefined;

  constructor(options: LocalPlatformOptions) {
    this.root = resolve(options.root);
    this.clock = options.clock ?? systemClock;
    this.observer = options.observer;
    const bucketsDir = join(this.root, 'buckets');
    const stateDir = join(this.root, 'state');
    this.ownersDir = join(stateDir, 'owners');
    this.objects = new LocalObjectStore(bucketsDir);
    this.jobs = new LocalJobStore(stateDir);
    this.ledger = new LocalLedger(join(stateDir, 'ledgers'));
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
    this.driver = new JobDriver({
      objects: this.objects,
      jobs: this.jobs,
      ledger: this.ledger,
      machines: this.machines,
      runner: this.machines,
      scheduler,
      catalog: this.catalog,
      clock: this.clock,
      ids: localIds,
      sha256: (bucket, key) => this.objects.sha256(bucket, key),
      ...(options.observer ? { observer: options.observer } : {}),
    });
  }

  bucketDir(analysis: string): string {
    return join(this.root, 'buckets', analysis);
  }

  /** Runs a submission already in the local bucket and resolves when its job is finished. */
  async runSubmission(bucket: string, key: string, options: { username?: string; onJobId?: (jobId: string) => void } = {}): Promise<JobState> {
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
    let owned: string | undefined;
    const started = await this.driver.submit(bucket, key, {
      ...(username === undefined ? {} : { username }),
      // Owned from the moment it has an id, so a Ctrl-C or a stopping server cancels it too.
      onJobId: async (jobId) => {
        owned = jobId;
        this.active.add(jobId);
        await writeFileAtomic(join(this.ownersDir, `${jobId}.json`), JSON.stringify({ pid: process.pid }));
      },
    });
    if (started.duplicate && owned === undefined) return started;
    // Claimed while this process was being stopped: it must not run on unattended.
    if (this.stopReason !== undefined) await this.cancel(started.jobId, this.stopReason);
    const record = await this.jobs.get(started.jobId);
    if (record) this.afterDispatch(record.state);
    return started;
  }

  /** Resolves when the job is finished (DONE or REJECTED). */
  async waitForJob(jobId: string): Promise<JobState> {
    const record = await this.jobs.get(jobId);
    if (record && isJobFinished(record.state)) return record.state;
    return new Promise((resolvePromise) => {
      // Another neurocaas process may be the one running it (a `local serve` took the
      // submission first): the store says when it is done.
      const poll = setInterval(() => {
        void this.jobs.get(jobId).then((latest) => {
          if (latest && isJobFinished(latest.state)) waiter(latest.state);
        });
      }, OTHER_PROCESS_POLL_MS);
      const waiter = (state: JobState) => {
        clearInterval(poll);
        const list = this.waiters.get(jobId);
        if (list) this.waiters.set(jobId, list.filter((w) => w !== waiter));
        resolvePromise(state);
      };
      const list = this.waiters.get(jobId) ?? [];
      list.push(waiter);
      this.waiters.set(jobId, list);
    });
  }

  /** Cancels a job, whichever process runs it; resolves with the job's state after the cancel. */
  async cancel(jobId: string, reason: string): Promise<JobState> {
    return this.dispatch(jobId, { type: 'CancelRequested', atMs: this.clock.nowMs(), reason });
  }

  /** Cancels every job this process runs (Ctrl-C) and waits for them to finish, bounded. */
  async cancelOwned(reason: string, maxWaitMs = 10_000): Promise<void> {
    this.stopReason = reason;
    const jobs = [...this.active];
    await Promise.all(jobs.map((jobId) => this.cancel(jobId, reason).catch(() => undefined)));
    const all = Promise.all(jobs.map((jobId) => this.waitForJob(jobId)));
    await Promise.race([all, new Promise((r) => setTimeout(r, maxWaitMs).unref())]);
    await this.machines.terminateOwned();
  }

  /**
   * The third layer against leaked machines, for the local backend: kills machines past their
   * deadline and finishes jobs whose neurocaas process died.
   */
  async reap(): Promise<{ machinesKilled: number; jobsRecovered: string[] }> {
    const now = this.clock.nowMs();
    let machinesKilled = 0;
    for (const machine of await this.machines.listExpired(now)) {
      await this.machines.terminate(machine.instanceId);
      machinesKilled += 1;
    }
    const jobsRecovered: string[] = [];
    for (const summary of await this.jobs.list()) {
      if (summary.phase === 'DONE' || summary.phase === 'REJECTED' || this.active.has(summary.jobId)) continue;
      const owner = await readJsonIfExists<{ pid: number }>(join(this.ownersDir, `${summary.jobId}.json`));
      if (owner && isProcessAlive(owner.pid)) continue;
      const why = owner ? `the neurocaas process running it (pid ${owner.pid}) stopped` : 'no neurocaas process runs it';
      // The cancel terminates the job's machines through the registry (their process may be
      // gone already), which confirms them terminated, so the job settles.
      await this.dispatch(summary.jobId, { type: 'CancelRequested', atMs: now, reason: why });
      // And a tick: a launch the dead owner left unanswered is re-sent (same token) once due.
      await this.dispatch(summary.jobId, { type: 'Tick', atMs: this.clock.nowMs() });
      jobsRecovered.push(summary.jobId);
    }
    return { machinesKilled, jobsRecovered };
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

  /** Stops timers and kills every machine this process owns. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of [...this.tickTimers.values(), ...this.otherTimers]) clearTimeout(timer);
    this.tickTimers.clear();
    this.otherTimers.clear();
    await this.machines.terminateOwned();
  }

  private async dispatch(jobId: string, event: JobEvent): Promise<JobState> {
    const state = await this.driver.dispatch(jobId, event);
    this.afterDispatch(state);
    return state;
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
    if (wakeAt === undefined || this.closed) return;
    const timer = setTimeout(() => {
      this.tickTimers.delete(jobId);
      void this.dispatch(jobId, { type: 'Tick', atMs: this.clock.nowMs() }).catch((error: unknown) => this.report(jobId, error));
    }, Math.max(0, wakeAt - this.clock.nowMs()) + 5);
    this.tickTimers.set(jobId, timer);
  }

  private finish(state: JobState): void {
    const jobId = state.jobId;
    if (this.active.delete(jobId)) void unlink(join(this.ownersDir, `${jobId}.json`)).catch(() => undefined);
    const waiters = this.waiters.get(jobId) ?? [];
    this.waiters.delete(jobId);
    for (const resolveWaiter of waiters) resolveWaiter(state);
  }

  private schedule(atMs: number, action: ScheduledAction): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.otherTimers.delete(timer);
      const run =
        action.kind === 'tick'
          ? this.dispatch(action.jobId, { type: 'Tick', atMs: this.clock.nowMs() })
          : this.driver.checkAgent(action).then((state) => state && this.afterDispatch(state));
      void run.catch((error: unknown) => this.report(action.jobId, error));
    }, Math.max(0, atMs - this.clock.nowMs()));
    this.otherTimers.add(timer);
  }

  private onMachineEvent(event: LocalMachineEvent): void {
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

  private report(jobId: string, error: unknown): void {
    this.observer?.backgroundError?.(jobId, error);
  }
}
