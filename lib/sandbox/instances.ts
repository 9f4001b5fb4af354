/**
 * Emulated EC2 instances. moto keeps the instance records (RunInstances, tags, states); what an
 * instance runs happens here: when the protocol sends the workflow command, the sandbox runs the
 * very `commands` array the SSM adapter would send (lib/aws/runner-command.ts) with `sh`, in the
 * instance's own folder and process group, with the real AWS CLI pointed at the emulator under
 * the analysis machine role's permissions. It stands in for SSM Run Command, whose replies moto
 * cannot give in a shape the current SDK parses (docs/decisions.md, "The sandbox runs instance
 * commands itself").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DescribeInstancesCommand, TerminateInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { EXECUTION_MARGIN_SECONDS, runnerCommands } from '../aws/runner-command.js';
import { MachineLaunchError } from '../core/errors.js';
import type { RunnerSpec } from '../ports.js';
import type { AwsCommandRunner } from '../../protocols/aws/platform.js';
import type { SsmCommandResult } from '../../protocols/aws/command-outcome.js';
import { INSTANCE_ID_VARIABLE, stopMarkedProcesses } from './processes.js';
import { shellQuote } from '../core/runner-spec.js';

/** Static credentials of an IAM user in the emulator. */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface EmulatedInstancesOptions {
  ec2: EC2Client;
  /** Where each instance gets its folder: `<instancesDir>/<instance id>/`. */
  instancesDir: string;
  /** Holds `aws`, `shutdown`, `poweroff` (installInstanceTools). */
  binDir: string;
  endpoint: string;
  region: string;
  runnerScript: string;
  /** The machine credentials of an analysis (a user holding its machine role's policies). */
  machineKeyOf(analysis: string): AccessKey;
  /** The folder an analysis's workflow runs in (its blueprint's local environment). */
  workflowDirOf(analysis: string): string;
  /** Environment every process of the sandbox carries (its marker). */
  markerEnv: Record<string, string>;
  /** How long after launch an instance's agent comes online, in ms. Default 2000. */
  bootDelayMs?: number;
  /** How long after the runner's `shutdown` the instance terminates, in ms. Default 3000 (AWS: 60 s). */
  shutdownDelayMs?: number;
  /** How often the runner ships the log, in s (NCAP_LOG_SHIP_SECONDS). Default: the runner's 5. */
  logShipSeconds?: number;
  /** A command ended: the dispatcher tells the monitor protocol, as EventBridge would. */
  onCommandFinished(commandId: string, instanceId: string, status: string): void;
  log(line: string): void;
}

interface RunningCommand {
  commandId: string;
  instanceId: string;
  child: ChildProcess;
  status: 'InProgress' | 'Success' | 'Failed' | 'TimedOut' | 'Cancelled';
  exitCode: number | null;
  deadlineTimer: NodeJS.Timeout | undefined;
  done: Promise<void>;
  shutdownFile: string;
}

/** Runs and stops what the emulated instances do; also the sandbox's CommandRunner. */
export class EmulatedInstances implements AwsCommandRunner {
  private readonly commands = new Map<string, RunningCommand>();
  private readonly byInstance = new Map<string, string>();
  private readonly pendingSends = new Map<string, Promise<{ commandId: string }>>();
  private readonly bootDelayMs: number;
  private readonly shutdownDelayMs: number;
  private stopped = false;

  constructor(private readonly options: EmulatedInstancesOptions) {
    this.bootDelayMs = options.bootDelayMs ?? 2_000;
    this.shutdownDelayMs = options.shutdownDelayMs ?? 3_000;
  }

  /** The agent is online once the instance runs and its boot delay has passed. */
  async isAgentOnline(instanceId: string): Promise<boolean> {
    const instance = await this.describe(instanceId);
    if (instance?.State?.Name !== 'running') return false;
    const launchedMs = instance.LaunchTime?.getTime() ?? 0;
    return Date.now() >= launchedMs + this.bootDelayMs;
  }

  /** Starts the runner with the SSM adapter's commands; one command per instance, as SSM's adapter ensures. */
  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const earlier = this.byInstance.get(instanceId);
    if (earlier) return { commandId: earlier };
    // Two deliveries of the same SendCommand at once (a retried event) must not both pass the
    // check above while the first awaits EC2: the second waits for the first's answer.
    const pending = this.pendingSends.get(instanceId);
    if (pending) return pending;
    const sending = this.startCommand(instanceId, spec);
    this.pendingSends.set(instanceId, sending);
    try {
      return await sending;
    } finally {
      this.pendingSends.delete(instanceId);
    }
  }

  private async startCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    if (this.stopped) throw new MachineLaunchError(`the sandbox is stopping; machine ${instanceId} takes no command`);
    const instance = await this.describe(instanceId);
    if (instance?.State?.Name !== 'running') {
      throw new MachineLaunchError(`machine ${instanceId} cannot take the workflow command: it is ${instance?.State?.Name ?? 'unknown to EC2'}, not running`);
    }
    const commandId = randomUUID();
    const dir = join(this.options.instancesDir, instanceId);
    mkdirSync(join(dir, 'opt'), { recursive: true });
    const commands = sandboxCommands(
      runnerCommands({
        spec,
        runnerScript: this.options.runnerScript,
        instanceId,
        instanceType: instance.InstanceType ?? '',
        region: this.options.region,
        runnerPath: join(dir, 'opt', 'ncap-runner.sh'),
      }),
      { workdir: this.options.workflowDirOf(spec.analysis), scratch: join(dir, 'scratch', spec.jobId, spec.dataset) },
    );
    const key = this.options.machineKeyOf(spec.analysis);
    const shutdownFile = join(dir, 'shutdown-requested');
    const output = openSync(join(dir, 'command-output.txt'), 'a');
    let child: ChildProcess;
    try {
      child = spawn('sh', ['-c', commands.join('\n')], {
        cwd: dir,
        // Its own process group, like a machine: stopped as a whole.
        detached: true,
        stdio: ['ignore', output, output],
        env: {
          PATH: `${this.options.binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
          HOME: dir,
          LANG: 'C.UTF-8',
          AWS_ENDPOINT_URL: this.options.endpoint,
          AWS_ACCESS_KEY_ID: key.accessKeyId,
          AWS_SECRET_ACCESS_KEY: key.secretAccessKey,
          // Never the host's profiles, and no metadata service (169.254.169.254 is off limits).
          AWS_CONFIG_FILE: '/dev/null',
          AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
          AWS_EC2_METADATA_DISABLED: 'true',
          AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
          AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
          NEUROCAAS_SANDBOX_SHUTDOWN_FILE: shutdownFile,
          ...(this.options.logShipSeconds ? { NCAP_LOG_SHIP_SECONDS: String(this.options.logShipSeconds) } : {}),
          ...this.options.markerEnv,
          [INSTANCE_ID_VARIABLE]: instanceId,
        },
      });
    } finally {
      closeSync(output);
    }
    const running: RunningCommand = { commandId, instanceId, child, status: 'InProgress', exitCode: null, deadlineTimer: undefined, done: Promise.resolve(), shutdownFile };
    running.done = new Promise<void>((resolveDone) => {
      child.once('error', (error) => {
        this.options.log(`instance ${instanceId}: the command could not start: ${error.message}`);
        running.status = 'Failed';
        resolveDone();
      });
      child.once('exit', (code, signal) => {
        if (running.deadlineTimer) clearTimeout(running.deadlineTimer);
        running.exitCode = code;
        if (running.status === 'InProgress') running.status = code === 0 ? 'Success' : 'Failed';
        this.options.log(`instance ${instanceId}: command ${commandId} ended (${signal ?? `exit ${code}`}): ${running.status}`);
        resolveDone();
        this.options.onCommandFinished(commandId, instanceId, running.status);
        if (existsSync(shutdownFile)) this.powerOff(instanceId);
      });
    });
    // SSM's executionTimeout: the runner stops at the deadline itself; this is the backstop.
    const killInMs = Math.max(1_000, spec.deadlineAtMs - Date.now() + EXECUTION_MARGIN_SECONDS * 1000);
    running.deadlineTimer = setTimeout(() => {
      running.status = 'TimedOut';
      this.options.log(`instance ${instanceId}: command ${commandId} ran past its execution timeout; stopping it`);
      void this.killInstance(instanceId);
    }, killInMs);
    running.deadlineTimer.unref();
    this.commands.set(commandId, running);
    this.byInstance.set(instanceId, commandId);
    this.options.log(`instance ${instanceId}: started the runner for ${spec.jobId}/${spec.dataset} (command ${commandId}, pid ${child.pid})`);
    return { commandId };
  }

  async commandResult(commandId: string, instanceId: string): Promise<SsmCommandResult> {
    const running = this.commands.get(commandId);
    if (!running || running.instanceId !== instanceId) return { status: 'Undeliverable', exitCode: null, timedOut: false };
    return { status: running.status, exitCode: running.exitCode, timedOut: running.status === 'TimedOut' };
  }

  /** Instances with a command still running. */
  runningInstances(): string[] {
    return [...this.commands.values()].filter((c) => c.status === 'InProgress').map((c) => c.instanceId);
  }

  /** The instance was terminated (or is shutting down): whatever it runs is stopped. */
  async killInstance(instanceId: string): Promise<void> {
    const commandId = this.byInstance.get(instanceId);
    const running = commandId ? this.commands.get(commandId) : undefined;
    if (running && running.status === 'InProgress' && running.child.pid) {
      running.status = running.status === 'InProgress' ? 'Cancelled' : running.status;
      try {
        // The runner traps TERM and stops its workflow's own process group.
        process.kill(-running.child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
    // Whatever is left (a workflow in a session of its own included) carries the instance marker.
    const left = await stopMarkedProcesses(INSTANCE_ID_VARIABLE, instanceId, { graceMs: 3_000, timeoutMs: 8_000 });
    if (left.length > 0) this.options.log(`instance ${instanceId}: processes ${left.join(', ')} survived SIGKILL`);
  }

  /** Stops every instance's processes (sandbox down). */
  async stopAll(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.byInstance.keys()].map((instanceId) => this.killInstance(instanceId)));
  }

  /** The runner's `shutdown`: with shutdown behaviour terminate, the instance goes. */
  private powerOff(instanceId: string): void {
    const timer = setTimeout(() => {
      if (this.stopped) return;
      this.options.ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] })).then(
        () => this.options.log(`instance ${instanceId}: powered off by its runner; terminated`),
        (error: Error) => this.options.log(`instance ${instanceId}: terminating after power-off failed: ${error.message}`),
      );
    }, this.shutdownDelayMs);
    timer.unref();
  }

  private async describe(instanceId: string) {
    try {
      const output = await this.options.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      return output.Reservations?.[0]?.Instances?.[0];
    } catch {
      return undefined;
    }
  }
}

/**
 * The SSM adapter's commands with the two machine paths moved into the instance's folder: the
 * workflow folder (an AMI has the analysis in /opt/neurocaas/env; here it is the blueprint's
 * local environment) and the scratch folder. Every other line is sent as it is.
 */
export function sandboxCommands(commands: readonly string[], paths: { workdir: string; scratch: string }): string[] {
  let replaced = 0;
  const out = commands.map((line) => {
    if (line.startsWith('export NCAP_WORKDIR=')) {
      replaced += 1;
      return `export NCAP_WORKDIR=${shellQuote(paths.workdir)}`;
    }
    if (line.startsWith('export NCAP_SCRATCH=')) {
      replaced += 1;
      return `export NCAP_SCRATCH=${shellQuote(paths.scratch)}`;
    }
    return line;
  });
  if (replaced !== 2) throw new Error(`the runner command lacks the NCAP_WORKDIR or NCAP_SCRATCH export (lib/aws/runner-command.ts changed?)`);
  return out;
}
