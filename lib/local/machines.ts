import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MachineLaunchError } from '../core/errors.js';
import type { RunnerSpec } from '../core/runner-spec.js';
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
import { KILL_GRACE_MS, type FromMachine, type ToMachine } from './machine-protocol.js';

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
  state: 'running' | 'terminated';
  terminatedAtMs?: number;
}

interface OwnedMachine {
  record: MachineRecord;
  child: ChildProcess;
  online: boolean;
  exited: Promise<void>;
}

export interface LocalMachinesOptions {
  machinesDir: string;
  bucketsDir: string;
  /** The compiled machine-runner script to start as each machine. */
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
    const scratchDir = join(this.options.machinesDir, instanceId);
    await mkdir(scratchDir, { recursive: true });
    const consoleFd = openSync(join(scratchDir, 'console.log'), 'a');
    let child: ChildProcess;
    try {
      child = fork(this.options.runnerScript, [instanceId, String(request.deadlineAtMs)], {
        cwd: scratchDir,
        detached: true,
        stdio: ['ignore', consoleFd, consoleFd, 'ipc'],
        execArgv: [],
        serialization: 'advanced',
      });
    } catch (error) {
      throw new MachineLaunchError(`could not start a local machine: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      closeSync(consoleFd);
    }
    if (child.pid === undefined) {
      throw new MachineLaunchError(`could not start a local machine for ${request.dataset}: no process id (is ${process.execPath} runnable?)`);
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
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    this.owned.set(instanceId, machine);
    child.on('message', (message: FromMachine) => this.onMessage(machine, message));
    child.once('exit', () => {
      void this.onExit(machine);
    });
    return { instanceId, instanceType: request.instanceType };
  }

  async isAgentOnline(instanceId: string): Promise<boolean> {
    return this.owned.get(instanceId)?.online ?? false;
  }

  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const machine = this.owned.get(instanceId);
    if (!machine || machine.child.exitCode !== null || !machine.child.connected) {
      throw new MachineLaunchError(`machine ${instanceId} is not running in this process; it cannot take a command`);
    }
    const commandId = `cmd-${randomBytes(6).toString('hex')}`;
    const message: ToMachine = {
      type: 'run',
      commandId,
      spec,
      bucketDir: join(this.options.bucketsDir, spec.bucket),
      envDir: this.options.envDirOf(spec.analysis),
    };
    await new Promise<void>((resolve, reject) => machine.child.send(message, (error) => (error ? reject(error) : resolve())));
    return { commandId };
  }

  async terminate(instanceId: string): Promise<MachineState> {
    const machine = this.owned.get(instanceId);
    if (machine) {
      if (machine.record.state === 'terminated') return 'terminated';
      killGroup(machine.record.pid, 'SIGTERM');
      setTimeout(() => {
        if (machine.record.state !== 'terminated') killGroup(machine.record.pid, 'SIGKILL');
      }, KILL_GRACE_MS).unref();
      return 'shutting-down';
    }
    // Launched by another neurocaas process (or one that died): act through the registry.
    const record = await this.readRecord(instanceId);
    if (!record) return 'terminated';
    if (record.state === 'running' && (await isMachineProcess(record))) {
      killGroup(record.pid, 'SIGTERM');
      const until = Date.now() + KILL_GRACE_MS;
      while (Date.now() < until && isProcessAlive(record.pid)) await sleep(25);
      if (isProcessAlive(record.pid)) killGroup(record.pid, 'SIGKILL');
      while (isProcessAlive(record.pid) && Date.now() < until + 1000) await sleep(10);
    }
    if (record.state !== 'terminated') await this.markTerminated(record);
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

  /** Machines the registry still lists as running, with whether their process is alive. */
  async listRunning(): Promise<(MachineDescription & { alive: boolean })[]> {
    const running: (MachineDescription & { alive: boolean })[] = [];
    for (const record of await this.allRecords()) {
      if (record.state !== 'running') continue;
      const alive = this.owned.has(record.instanceId) || (await isMachineProcess(record));
      running.push({ instanceId: record.instanceId, state: alive ? 'running' : 'terminated', jobId: record.jobId, dataset: record.dataset, deadlineAtMs: record.deadlineAtMs, alive });
    }
    return running;
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
      if (machine.record.state !== 'terminated') killGroup(machine.record.pid, 'SIGKILL');
    }
  }

  private onMessage(machine: OwnedMachine, message: FromMachine): void {
    const { instanceId, jobId, dataset } = machine.record;
    switch (message.type) {
      case 'online':
        machine.online = true;
        this.options.onEvent({ type: 'online', instanceId, jobId, dataset, atMs: this.options.clock.nowMs() });
        break;
      case 'started':
        this.options.onEvent({ type: 'started', instanceId, jobId, dataset, commandId: message.commandId, atMs: message.atMs });
        break;
      case 'finished':
        this.options.onEvent({
          type: 'finished',
          instanceId,
          jobId,
          dataset,
          atMs: message.atMs,
          exitCode: message.exitCode,
          timedOut: message.timedOut,
          logTail: message.logTail,
        });
        break;
    }
  }

  private async onExit(machine: OwnedMachine): Promise<void> {
    // The workflow shares the machine's process group: make sure nothing of it survives.
    killGroup(machine.record.pid, 'SIGKILL');
    await this.markTerminated(machine.record);
    const scratch = join(this.options.machinesDir, machine.record.instanceId);
    // Inputs and outputs were copied; keep only machine.json and console.log.
    await rm(join(scratch, 'input'), { recursive: true, force: true });
    await rm(join(scratch, 'output'), { recursive: true, force: true });
    const { instanceId, jobId, dataset } = machine.record;
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

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if (!isErrno(error, 'ESRCH')) throw error;
  }
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
