import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { LaunchRefusedError, launchCutoffMs, launchWindowClosedError, MachineLaunchError, pastDeadlineError } from '../core/errors.js';
import { DatasetFailureSchema, type DatasetFailure } from '../core/status.js';
import { runnerEnvironment, shellExports, shellQuote, type RunnerSpec } from '../core/runner-spec.js';
import type {
  Clock,
  CommandRunner,
  LaunchRequest,
  LaunchResult,
  MachineDescription,
  Machines,
  MachineState,
} from '../ports.js';
import { createFileExclusive, isErrno, isProcessAlive, readJsonIfExists, writeFileAtomic } from './fs-util.js';

/** Grace between SIGTERM and SIGKILL, for a workflow to flush its files. */
export const KILL_GRACE_MS = 2_000;

/** What a local machine reports, translated by the local shell into job events. */
export type LocalMachineEvent =
  | { type: 'online'; instanceId: string; jobId: string; dataset: string; atMs: number }
  | { type: 'started'; instanceId: string; jobId: string; dataset: string; commandId: string; atMs: number }
  | {
      type: 'finished';
      instanceId: string;
      jobId: string;
      dataset: string;
      atMs: number;
      exitCode: number | null;
      timedOut: boolean;
      logTail: string[];
      /** What the runner itself reported failing (inputs not fetched, results not stored). */
      failure?: DatasetFailure;
    }
  | { type: 'terminated'; instanceId: string; jobId: string; dataset: string; atMs: number };

/** A machine's registry entry, `<machinesDir>/<instanceId>/machine.json`. */
interface MachineRecord {
  instanceId: string;
  jobId: string;
  analysis: string;
  group: string;
  dataset: string;
  instanceType: string;
  clientToken: string;
  deadlineAtMs: number;
  launchedAtMs: number;
  pid: number;
  /** The workflow runs in its own process group; its leader's pid, once started. */
  workflowPid?: number;
  state: 'running' | 'terminated';
  terminatedAtMs?: number;
}

interface OwnedMachine {
  record: MachineRecord;
  child: ChildProcess;
  online: boolean;
  exited: Promise<void>;
  spec?: RunnerSpec;
  commandId?: string;
  /** The runner reported the workflow's end. */
  reported?: boolean;
}

export interface LocalMachinesOptions {
  machinesDir: string;
  bucketsDir: string;
  /** lib/runner/local-agent.sh: the machine's agent, started as each machine. */
  agentScript: string;
  /** lib/runner/ncap-runner.sh: the runner the agent becomes when given a command. */
  runnerScript: string;
  /** Folder the workflow of an analysis runs in (its local environment). */
  envDirOf: (analysis: string) => string;
  clock: Clock;
  onEvent: (event: LocalMachineEvent) => void;
}

/**
 * Machines as child processes, each the leader of its own process group with a scratch folder.
 * The registry on disk lets any neurocaas process describe, terminate and reap machines that
 * another process launched.
 */
export class LocalMachines implements Machines, CommandRunner {
  private readonly owned = new Map<string, OwnedMachine>();

  constructor(private readonly options: LocalMachinesOptions) {}

  /** The machine the token file names, if a launch with this token started one. */
  async findLaunched(clientToken: string): Promise<LaunchResult | undefined> {
    const existing = await readJsonIfExists<{ instanceId: string }>(join(this.options.machinesDir, 'tokens', `${clientToken}.json`));
    const record = existing && (await this.readRecord(existing.instanceId));
    return record ? { instanceId: record.instanceId, instanceType: record.instanceType, launchedAtMs: record.launchedAtMs } : undefined;
  }

  async launch(request: LaunchRequest): Promise<LaunchResult> {
    const tokenPath = join(this.options.machinesDir, 'tokens', `${request.clientToken}.json`);
    const instanceId = `i-0${randomBytes(8).toString('hex')}`;
    if (!(await createFileExclusive(tokenPath, JSON.stringify({ instanceId })))) {
      // Same client token: the same machine, never a second one.
      const existing = await readJsonIfExists<{ instanceId: string }>(tokenPath);
      const record = existing && (await this.readRecord(existing.instanceId));
      if (!record) throw new MachineLaunchError(`launch token ${request.clientToken} is taken but its machine is unknown`);
      return { instanceId: record.instanceId, instanceType: record.instanceType };
    }
    if (this.options.clock.nowMs() >= request.deadlineAtMs) {
      await unlink(tokenPath).catch(() => undefined);
      throw pastDeadlineError(request);
    }
    const cutoffMs = launchCutoffMs(request);
    if (this.options.clock.nowMs() >= cutoffMs) {
      await unlink(tokenPath).catch(() => undefined);
      throw launchWindowClosedError({ dataset: request.dataset, clientToken: request.clientToken, launchByMs: cutoffMs });
    }
    const scratchDir = join(this.options.machinesDir, instanceId);
    await mkdir(scratchDir, { recursive: true });
    const consoleFd = openSync(join(scratchDir, 'console.log'), 'a');
    let child: ChildProcess;
    try {
      // fd 3 carries the machine's events; stdin carries the command and is its lifeline.
      child = spawn('bash', [this.options.agentScript, String(request.deadlineAtMs), instanceId], {
        cwd: scratchDir,
        detached: true,
        stdio: ['pipe', consoleFd, consoleFd, 'pipe'],
        env: {
          PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
          LANG: process.env['LANG'] ?? 'C.UTF-8',
          NCAP_EVENTS_FD: '3',
        },
      });
      // A spawn that fails (no bash) emits 'error' on the next tick: with no listener it would
      // crash the whole process. Its outcome is read from the missing pid just below.
      child.on('error', () => undefined);
    } catch (error) {
      await unlink(tokenPath).catch(() => undefined);
      // Nothing started: unlike a cloud call, a failed spawn is certain (decision 46), so the
      // dataset fails now instead of after the launch window and a lookup.
      throw new LaunchRefusedError(`could not start a local machine for ${request.dataset}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      closeSync(consoleFd);
    }
    if (child.pid === undefined) {
      await unlink(tokenPath).catch(() => undefined);
      throw new LaunchRefusedError(`could not start a local machine for ${request.dataset}: is bash installed and on PATH?`);
    }
    const record: MachineRecord = {
      instanceId,
      jobId: request.jobId,
      analysis: request.analysis,
      group: request.group,
      dataset: request.dataset,
      instanceType: request.instanceType,
      clientToken: request.clientToken,
      deadlineAtMs: request.deadlineAtMs,
      launchedAtMs: this.options.clock.nowMs(),
      pid: child.pid,
      state: 'running',
    };
    await writeFileAtomic(this.recordPath(instanceId), JSON.stringify(record, null, 2));
    const machine: OwnedMachine = {
      record,
      child,
      online: false,
      exited: new Promise((resolve) => child.once('close', () => resolve())),
    };
    this.owned.set(instanceId, machine);
    // A machine that dies early closes its stdin; that must not crash the launcher.
    (child.stdin as Writable).on('error', () => undefined);
    createInterface({ input: child.stdio[3] as Readable }).on('line', (line) => this.onEventLine(machine, line));
    // 'close', not 'exit': by then every event line the machine wrote has been read.
    child.once('close', () => {
      void this.onExit(machine);
    });
    return { instanceId, instanceType: request.instanceType };
  }

  async isAgentOnline(instanceId: string): Promise<boolean> {
    return this.owned.get(instanceId)?.online ?? false;
  }

  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const machine = this.owned.get(instanceId);
    if (!machine || machine.child.exitCode !== null || machine.record.state !== 'running') {
      throw new MachineLaunchError(`machine ${instanceId} is not running in this process; it cannot take a command`);
    }
    if (machine.commandId) return { commandId: machine.commandId };
    const commandId = `cmd-${randomBytes(6).toString('hex')}`;
    const scratchDir = join(this.options.machinesDir, instanceId);
    const env = runnerEnvironment(spec, {
      store: `local:${join(this.options.bucketsDir, spec.bucket)}`,
      workdir: this.options.envDirOf(spec.analysis),
      scratch: join(scratchDir, 'work'),
      instanceId,
      instanceType: machine.record.instanceType,
      local: true,
    });
    const commandFile = join(scratchDir, 'command.sh');
    const lines = [
      '# written by the local machines adapter; every value is shell-quoted',
      ...shellExports({ ...env, NCAP_EVENTS_FD: '3', NCAP_LIFELINE: 'stdin', NCAP_RUNNER: this.options.runnerScript, NCAP_CONTAIN: containmentMode() }),
      `NCAP_ARGV=(${spec.command.map(shellQuote).join(' ')})`,
    ];
    await writeFile(commandFile, `${lines.join('\n')}\n`);
    machine.spec = spec;
    machine.commandId = commandId;
    await new Promise<void>((resolve, reject) =>
      (machine.child.stdin as Writable).write(`${commandFile}\n`, (error) => (error ? reject(new MachineLaunchError(`machine ${instanceId} did not take the command: ${error.message}`)) : resolve())),
    );
    return { commandId };
  }

  async terminate(instanceId: string): Promise<MachineState> {
    const machine = this.owned.get(instanceId);
    if (machine) {
      if (machine.record.state === 'terminated') return 'terminated';
      signalMachine(machine.record, 'SIGTERM');
      setTimeout(() => {
        if (machine.record.state !== 'terminated') signalMachine(machine.record, 'SIGKILL');
      }, KILL_GRACE_MS).unref();
      return 'shutting-down';
    }
    // Launched by another neurocaas process (or one that died): act through the registry.
    const record = await this.readRecord(instanceId);
    if (!record) return 'terminated';
    if (record.state === 'running' && (await isMachineProcess(record))) {
      signalMachine(record, 'SIGTERM');
      const until = Date.now() + KILL_GRACE_MS;
      while (Date.now() < until && isProcessAlive(record.pid)) await sleep(25);
      signalMachine(record, 'SIGKILL');
      while (isProcessAlive(record.pid) && Date.now() < until + 1000) await sleep(10);
    } else if (record.workflowPid !== undefined) {
      // The machine is gone; make sure its workflow's process group went with it.
      killGroup(record.workflowPid, 'SIGKILL');
    }
    // Whatever of the machine outlived its leader (the runner's timers, a workflow's daemon).
    await killMachineProcesses(instanceId);
    if (record.state !== 'terminated') {
      await this.markTerminated(record);
      await rm(join(this.options.machinesDir, instanceId, 'work'), { recursive: true, force: true });
    }
    return 'terminated';
  }

  async describe(instanceId: string): Promise<MachineDescription> {
    const record = await this.readRecord(instanceId);
    if (!record) return { instanceId, state: 'unknown' };
    const alive = record.state === 'running' && (this.owned.has(instanceId) || (await isMachineProcess(record)));
    return {
      instanceId,
      state: alive ? 'running' : 'terminated',
      jobId: record.jobId,
      dataset: record.dataset,
      deadlineAtMs: record.deadlineAtMs,
    };
  }

  async listExpired(nowMs: number): Promise<MachineDescription[]> {
    const expired: MachineDescription[] = [];
    for (const record of await this.allRecords()) {
      if (record.state === 'running' && record.deadlineAtMs <= nowMs) expired.push(await this.describe(record.instanceId));
    }
    return expired.filter((machine) => machine.state === 'running');
  }

  /** Kills every machine this process launched and waits for them to exit (used on Ctrl-C and exit). */
  async terminateOwned(): Promise<void> {
    const machines = [...this.owned.values()].filter((m) => m.record.state !== 'terminated');
    for (const machine of machines) await this.terminate(machine.record.instanceId);
    await Promise.all(machines.map((m) => m.exited));
  }

  /** Synchronous last resort for process exit: SIGKILL every owned machine group. */
  killOwnedNow(): void {
    for (const machine of this.owned.values()) {
      if (machine.record.state !== 'terminated') signalMachine(machine.record, 'SIGKILL');
    }
  }

  /** One line from the machine's events descriptor: online | started <ms> | workflow <pid> | finished <code|-> <0|1> <ms>. */
  private onEventLine(machine: OwnedMachine, line: string): void {
    const { instanceId, jobId, dataset } = machine.record;
    const [kind, ...fields] = line.trim().split(/\s+/);
    switch (kind) {
      case 'online':
        machine.online = true;
        this.options.onEvent({ type: 'online', instanceId, jobId, dataset, atMs: this.options.clock.nowMs() });
        break;
      case 'started':
        this.options.onEvent({ type: 'started', instanceId, jobId, dataset, commandId: machine.commandId ?? '', atMs: Number(fields[0]) });
        break;
      case 'workflow':
        machine.record.workflowPid = Number(fields[0]);
        // Best effort (a full disk): terminate still kills the workflow's group through the machine's own.
        void writeFileAtomic(this.recordPath(instanceId), JSON.stringify(machine.record, null, 2)).catch(() => undefined);
        break;
      case 'finished': {
        machine.reported = true;
        const [code, timedOut, atMs] = fields;
        void this.runnerReportOf(machine).then(({ logTail, failure }) =>
          this.options.onEvent({
            type: 'finished',
            instanceId,
            jobId,
            dataset,
            atMs: Number(atMs),
            exitCode: code === undefined || code === '-' ? null : Number(code),
            timedOut: timedOut === '1',
            logTail,
            ...(failure ? { failure } : {}),
          }),
        );
        break;
      }
    }
  }

  /** The runner's status document carries the log tail it saw and any failure of its own. */
  private async runnerReportOf(machine: OwnedMachine): Promise<{ logTail: string[]; failure?: DatasetFailure }> {
    if (!machine.spec) return { logTail: [] };
    const path = join(this.options.bucketsDir, machine.spec.bucket, ...machine.spec.statusKey.split('/'));
    const status = await readJsonIfExists<{ logTail?: string[]; failure?: unknown }>(path).catch(() => undefined);
    const failure = DatasetFailureSchema.safeParse(status?.failure);
    return { logTail: status?.logTail ?? [], ...(failure.success ? { failure: failure.data } : {}) };
  }

  private async onExit(machine: OwnedMachine): Promise<void> {
    // Nothing of the machine may survive it: its own group, its workflow's group, and, when the
    // runner did not get to contain its workflow itself, any process that still carries its id.
    signalMachine(machine.record, 'SIGKILL');
    if (!machine.reported) await killMachineProcesses(machine.record.instanceId);
    // A registry that cannot be written (a full disk) must not stop the job from learning that
    // its machine is gone: the record on disk then says running, and its dead pid says otherwise.
    await this.markTerminated(machine.record).catch(() => undefined);
    // Inputs and outputs were copied to the bucket; keep machine.json, command.sh and console.log.
    await rm(join(this.options.machinesDir, machine.record.instanceId, 'work'), { recursive: true, force: true }).catch(() => undefined);
    const { instanceId, jobId, dataset } = machine.record;
    if (machine.commandId && !machine.reported) {
      // The machine died mid-run: no result will ever come, so say so rather than wait for one.
      const detail = `machine ${instanceId} stopped before the workflow finished`;
      const logTail = [...(await this.runnerReportOf(machine)).logTail, detail];
      const failure: DatasetFailure = { kind: 'platform', detail };
      this.options.onEvent({ type: 'finished', instanceId, jobId, dataset, atMs: machine.record.terminatedAtMs as number, exitCode: null, timedOut: false, logTail, failure });
    }
    this.options.onEvent({ type: 'terminated', instanceId, jobId, dataset, atMs: machine.record.terminatedAtMs as number });
  }

  private async markTerminated(record: MachineRecord): Promise<void> {
    record.state = 'terminated';
    record.terminatedAtMs = this.options.clock.nowMs();
    await writeFileAtomic(this.recordPath(record.instanceId), JSON.stringify(record, null, 2));
  }

  private recordPath(instanceId: string): string {
    return join(this.options.machinesDir, instanceId, 'machine.json');
  }

  private async readRecord(instanceId: string): Promise<MachineRecord | undefined> {
    if (!/^i-[0-9a-f]+$/.test(instanceId)) return undefined;
    return readJsonIfExists<MachineRecord>(this.recordPath(instanceId));
  }

  private async allRecords(): Promise<MachineRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.options.machinesDir);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const records: MachineRecord[] = [];
    for (const name of names) {
      const record = await this.readRecord(name);
      if (record) records.push(record);
    }
    return records;
  }
}

function signalMachine(record: MachineRecord, signal: NodeJS.Signals): void {
  killGroup(record.pid, signal);
  if (record.workflowPid !== undefined) killGroup(record.workflowPid, signal);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if (!isErrno(error, 'ESRCH')) throw error;
  }
}

let detectedContainment: string | undefined;

/**
 * How the runners of this process contain their workflows (see ncap-runner.sh): probed once
 * per process rather than by every runner, since many machines share a small host. A PID
 * namespace when `unshare` allows one (directly, or in a user namespace); otherwise the runner
 * picks among the rest itself ("auto").
 */
export function containmentMode(): string {
  if (detectedContainment !== undefined) return detectedContainment;
  const probe = (args: string[]) => spawnSync('unshare', [...args, '--pid', '--fork', '--kill-child', 'true'], { stdio: 'ignore', timeout: 5_000 }).status === 0;
  detectedContainment = probe([]) ? 'pidns' : probe(['--user', '--map-root-user']) ? 'userns-pidns' : 'auto';
  return detectedContainment;
}

/**
 * SIGKILLs every process whose environment says it belongs to machine `instanceId` (the agent
 * exports NCAP_INSTANCE_ID to the runner and everything it starts). Linux only (reads /proc);
 * elsewhere the process groups are all there is.
 */
export async function killMachineProcesses(instanceId: string): Promise<number[]> {
  if (process.platform !== 'linux') return [];
  const marker = Buffer.from(`\0NCAP_INSTANCE_ID=${instanceId}\0`);
  const killed: number[] = [];
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let environ: Buffer;
    try {
      environ = Buffer.concat([Buffer.from([0]), await readFile(`/proc/${entry}/environ`)]);
    } catch {
      // Gone meanwhile, or not ours to read (another user's process cannot be our machine's).
      continue;
    }
    if (environ.includes(marker)) {
      try {
        process.kill(Number(entry), 'SIGKILL');
        killed.push(Number(entry));
      } catch (error) {
        if (!isErrno(error, 'ESRCH')) throw error;
      }
    }
  }
  return killed;
}

/** True when `pid` is alive and still our machine (pids get reused; /proc shows its argv). */
async function isMachineProcess(record: MachineRecord): Promise<boolean> {
  if (!isProcessAlive(record.pid)) return false;
  try {
    const cmdline = await readFile(`/proc/${record.pid}/cmdline`, 'utf8');
    return cmdline.includes(record.instanceId);
  } catch (error) {
    // No /proc (macOS): the pid being alive is the best evidence there is.
    if (isErrno(error, 'ENOENT')) return process.platform !== 'linux';
    throw error;
  }
}
