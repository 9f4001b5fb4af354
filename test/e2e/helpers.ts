/**
 * Shared set-up for the end-to-end tests: every test gets its own temporary folder with a
 * local backend root, runs the real built CLI (`node dist/bin/neurocaas.js`) as a child
 * process, and reads the job folders and machine registry the CLI leaves behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { onTestFinished } from 'vitest';
import type { ProvenanceRecord } from '../../lib/core/provenance.js';
import { DatasetStatusSchema, type DatasetStatusDocument } from '../../lib/core/status.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const cliPath = path.join(repoRoot, 'dist', 'bin', 'neurocaas.js');
export const repoBlueprintsDir = path.join(repoRoot, 'blueprints');
export const fixtureBlueprintsDir = fileURLToPath(new URL('../fixtures/blueprints/', import.meta.url));
export const fixtureUsersDir = fileURLToPath(new URL('../fixtures/users/', import.meta.url));
export const kalmanSampleDir = path.join(repoBlueprintsDir, 'kalman-smoother', 'sample');

// These tests exercise the compiled CLI; a missing build must not look like a product failure.
if (!existsSync(cliPath)) {
  throw new Error(`${cliPath} does not exist: run npm run build first (npm test builds before running vitest)`);
}

/** Exit codes of `neurocaas run`, as documented. */
export const EXIT = { succeeded: 0, failed: 1, usage: 2, rejected: 3, interrupted: 130 } as const;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** stdout and stderr of a finished CLI run, for assertion messages. */
export function transcript(result: CliResult): string {
  return `exit ${result.code}${result.signal ? ` (${result.signal})` : ''} after ${result.durationMs} ms\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
}

export interface CliOptions {
  /** Blueprints folder passed as --blueprints; default: the test fixtures. */
  blueprintsDir?: string;
  /** Kill the CLI and fail after this long; default 45 s. */
  timeoutMs?: number;
  /** Extra environment variables (e.g. the NEUROCAAS_TEST_CRASH_AT hook). */
  env?: Record<string, string>;
}

/** A CLI process started in the background. */
export class CliProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<CliResult>;
  private result: CliResult | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly args: readonly string[],
    timeoutMs: number,
  ) {
    const startedAt = Date.now();
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`neurocaas ${args.join(' ')} did not exit within ${timeoutMs} ms; killed it\n${this.transcript()}`));
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        this.result = { code, signal, stdout: this.stdout, stderr: this.stderr, durationMs: Date.now() - startedAt };
        resolve(this.result);
      });
    });
    // Callers that never await `exited` must not see an unhandled rejection.
    this.exited.catch(() => undefined);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.result === undefined;
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Resolves with the first match of `pattern` in stdout, waiting for it up to `timeoutMs`. */
  async waitForStdout(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return waitFor(() => this.stdout.match(pattern) ?? undefined, `stdout of neurocaas ${this.args[0]} to match ${pattern}\n${this.transcript()}`, timeoutMs);
  }

  transcript(): string {
    return `--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
  }
}

/** One test's private world: a temp folder with the backend root and the researcher's files. */
export interface Sandbox {
  /** The temp folder; removed when the test ends. */
  readonly dir: string;
  /** The local backend root, passed as --root. */
  readonly root: string;
  /** The researcher's own folder: the CLI's working directory and where test files are written. */
  readonly work: string;
  /** Runs the CLI to the end with --root, --blueprints and --users appended. */
  cli(args: string[], options?: CliOptions): Promise<CliResult>;
  /** Starts the CLI in the background (same flags as `cli`). */
  start(args: string[], options?: CliOptions): CliProcess;
  /** Writes a file below `work` (folders created); returns its absolute path. */
  file(relativePath: string, content: string | Uint8Array): Promise<string>;
  /** Writes a JSON config below `work`; returns its absolute path. */
  config(relativePath: string, value: unknown): Promise<string>;
  /** Absolute path of `<root>/buckets/<analysis>/<key>`. */
  bucketPath(analysis: string, key: string): string;
}

/** Creates a sandbox for the current test; it is cleaned up when the test finishes. */
export async function createSandbox(): Promise<Sandbox> {
  const sandbox = await createSharedSandbox();
  onTestFinished(() => sandbox.dispose());
  return sandbox;
}

/**
 * A sandbox several tests share (created in `beforeAll`); call `dispose` in `afterAll`.
 * Disposing kills what is still running and removes the folder.
 */
export async function createSharedSandbox(): Promise<Sandbox & { dispose(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'neurocaas-e2e-'));
  const root = path.join(dir, 'root');
  const work = path.join(dir, 'work');
  await mkdir(work, { recursive: true });
  const started: CliProcess[] = [];

  const start = (args: string[], options: CliOptions = {}): CliProcess => {
    const fullArgs = [...args, '--root', root, '--blueprints', options.blueprintsDir ?? fixtureBlueprintsDir, '--users', fixtureUsersDir];
    const child = spawn(process.execPath, [cliPath, ...fullArgs], { cwd: work, env: { ...cliEnv(), ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const cli = new CliProcess(child, fullArgs, options.timeoutMs ?? 45_000);
    started.push(cli);
    return cli;
  };

  const dispose = async (): Promise<void> => {
    for (const cli of started) {
      if (cli.running) cli.signal('SIGKILL');
      await cli.exited.catch(() => undefined);
    }
    // Whatever a failing test left running must not slow down or confuse the next ones.
    for (const machine of await machineRecords(root)) {
      // Only a group the registry still calls running: a terminated one's id may be reused.
      if (machine.state === 'running') killQuietly(-machine.pid);
      for (const pid of await grandchildPids(root, machine)) if (isRunning(pid)) killQuietly(pid);
    }
    await rm(dir, { recursive: true, force: true });
  };

  return {
    dispose,
    dir,
    root,
    work,
    start,
    cli: async (args, options) => start(args, options).exited,
    file: async (relativePath, content) => {
      const target = path.join(work, relativePath);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, content);
      return target;
    },
    config: async (relativePath, value) => {
      const target = path.join(work, relativePath);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, JSON.stringify(value, null, 2));
      return target;
    },
    bucketPath: (analysis, key) => path.join(root, 'buckets', analysis, ...key.split('/')),
  };
}

/** The test's environment without NEUROCAAS_* settings, so a developer's shell cannot leak in. */
function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('NEUROCAAS_')) env[name] = value;
  return env;
}

/**
 * Polls `probe` until it returns something other than undefined/false; fails with `what`
 * after `timeoutMs`. Use instead of fixed sleeps.
 */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Job folders: <root>/buckets/<analysis>/<group>/results/job__<analysis>_<jobId>/

export function resultsDir(root: string, analysis: string, group: string): string {
  return path.join(root, 'buckets', analysis, group, 'results');
}

/** Job folder names (job__*) in a group's results folder; none when it does not exist. */
export async function jobFolderNames(root: string, analysis: string, group: string): Promise<string[]> {
  const names = await readdir(resultsDir(root, analysis, group)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  return names.filter((name) => name.startsWith('job__')).sort();
}

export class JobFolder {
  constructor(
    readonly dir: string,
    readonly analysis: string,
    readonly jobId: string,
  ) {}

  static fromName(root: string, analysis: string, group: string, name: string): JobFolder {
    const prefix = `job__${analysis}_`;
    if (!name.startsWith(prefix)) throw new Error(`${name} is not a job folder of ${analysis}`);
    return new JobFolder(path.join(resultsDir(root, analysis, group), name), analysis, name.slice(prefix.length));
  }

  /** The one job folder of a group; fails when there are none or several. */
  static async single(root: string, analysis: string, group: string): Promise<JobFolder> {
    const names = await jobFolderNames(root, analysis, group);
    if (names.length !== 1) throw new Error(`expected exactly one job folder in ${resultsDir(root, analysis, group)}, found ${names.length}: ${names.join(', ')}`);
    return JobFolder.fromName(root, analysis, group, names[0] as string);
  }

  /** Waits until the group has a job folder (a job started in the background). */
  static async appears(root: string, analysis: string, group: string, timeoutMs = 15_000): Promise<JobFolder> {
    const name = await waitFor(async () => (await jobFolderNames(root, analysis, group))[0], `a job folder under ${resultsDir(root, analysis, group)}`, timeoutMs);
    return JobFolder.fromName(root, analysis, group, name);
  }

  path(relativePath: string): string {
    return path.join(this.dir, ...relativePath.split('/'));
  }

  has(relativePath: string): boolean {
    return existsSync(this.path(relativePath));
  }

  async text(relativePath: string): Promise<string> {
    return readFile(this.path(relativePath), 'utf8');
  }

  async certificate(): Promise<string> {
    return this.text('logs/certificate.txt');
  }

  /** A dataset's status file, validated against the documented status schema. */
  async status(dataset: string): Promise<DatasetStatusDocument> {
    return DatasetStatusSchema.parse(JSON.parse(await this.text(`logs/DATASET_NAME-${dataset}_STATUS.txt.json`)));
  }

  /** The status file, or undefined while it does not exist or is being replaced. */
  async statusIfReadable(dataset: string): Promise<DatasetStatusDocument | undefined> {
    try {
      return await this.status(dataset);
    } catch {
      // Not there yet: the caller polls again.
      return undefined;
    }
  }

  async log(dataset: string): Promise<string> {
    return this.text(`logs/${dataset}.log`);
  }

  async provenance(): Promise<ProvenanceRecord> {
    return JSON.parse(await this.text('provenance.json')) as ProvenanceRecord;
  }

  /** Every file in the folder, relative, with "/" separators, sorted. */
  async files(): Promise<string[]> {
    return (await listFilesRecursive(this.dir)).map((file) => path.relative(this.dir, file).split(path.sep).join('/')).sort();
  }

  /** Waits until end.txt exists (the job is finished) and returns it. */
  async waitForEnd(timeoutMs = 20_000): Promise<string> {
    return waitFor(() => (this.has('end.txt') ? this.text('end.txt') : undefined), `${this.dir}/end.txt`, timeoutMs);
  }

  /** Waits until a dataset's status file says `status`. */
  async waitForStatus(dataset: string, status: DatasetStatusDocument['status'], timeoutMs = 15_000): Promise<DatasetStatusDocument> {
    return waitFor(async () => {
      const document = await this.statusIfReadable(dataset);
      return document?.status === status ? document : undefined;
    }, `dataset ${dataset} of job ${this.jobId} to be ${status}`, timeoutMs);
  }
}

export async function listFilesRecursive(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFilesRecursive(full)));
    else files.push(full);
  }
  return files;
}

/** Certificate lines without their timestamps. */
export function certificateLines(certificate: string): string[] {
  return certificate
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => line.replace(/^\d{4}-\d{2}-\d{2}T[\d:.]+Z {2}/, ''));
}

// ---------------------------------------------------------------------------------------------
// Machines and processes

/** A machine's registry entry, `<root>/machines/<instanceId>/machine.json` (fields the tests use). */
export interface MachineRecord {
  instanceId: string;
  jobId: string;
  dataset: string;
  instanceType: string;
  pid: number;
  state: string;
}

/** Every machine the backend launched under `root`. */
export async function machineRecords(root: string): Promise<MachineRecord[]> {
  const machinesDir = path.join(root, 'machines');
  const names = await readdir(machinesDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  const records: MachineRecord[] = [];
  for (const name of names.filter((n) => n.startsWith('i-'))) {
    const text = await readFile(path.join(machinesDir, name, 'machine.json'), 'utf8').catch(() => undefined);
    if (text) records.push(JSON.parse(text) as MachineRecord);
  }
  return records;
}

/** Instance folders (`i-*`) under `<root>/machines`: any means something was launched. */
export async function launchedMachineFolders(root: string): Promise<string[]> {
  const names = await readdir(path.join(root, 'machines')).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  return names.filter((name) => name.startsWith('i-'));
}

/** GRANDCHILD_PID=<pid> lines the test workflow printed into a machine's dataset log. */
async function grandchildPids(root: string, machine: MachineRecord): Promise<number[]> {
  const logs = (await listFilesRecursive(path.join(root, 'buckets'))).filter((file) => file.includes(machine.jobId) && file.endsWith(`${machine.dataset}.log`));
  const pids: number[] = [];
  for (const log of logs) pids.push(...grandchildPidsIn(await readFile(log, 'utf8')));
  return pids;
}

export function grandchildPidsIn(text: string): number[] {
  return [...text.matchAll(/GRANDCHILD_PID=(\d+)/g)].map((match) => Number(match[1]));
}

/**
 * True while `pid` is a live process. A zombie counts as dead: it has exited and only waits
 * for its parent (or a sandbox init that may never reap) to collect it.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    if ((error as NodeJS.ErrnoException).code === 'EPERM') return true;
    throw error;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return process.platform !== 'linux';
    throw error;
  }
  // Format: "pid (comm) state ..."; comm may contain spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Waits (bounded) until none of `pids` is running; returns the ones still alive at the end. */
export async function pidsStillRunning(pids: readonly number[], graceMs = 2_000): Promise<number[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const alive = pids.filter(isRunning);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(25);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone: exactly what cleanup wants.
  }
}

// ---------------------------------------------------------------------------------------------
// Misc

export async function sha256OfFile(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Ledger entries of a user, all periods, from the local state database `<root>/state/neurocaas.db`. */
export async function ledgerEntries(root: string, user: string): Promise<{ jobId: string; reservedUsd: number; spentUsd?: number }[]> {
  const file = path.join(root, 'state', 'neurocaas.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, timeout: 10_000 });
  try {
    const rows = db.prepare<[string], { entry: string }>('SELECT entry FROM ledger_entries WHERE user = ? ORDER BY id').all(user);
    return rows.map((row) => JSON.parse(row.entry) as { jobId: string; reservedUsd: number; spentUsd?: number });
  } finally {
    db.close();
  }
}
