/**
 * The files a sandbox keeps in its folder (default `./.neurocaas-sandbox/`):
 *
 *   supervisor.pid    pid of the supervisor while it runs (the folder's claim is not a file:
 *                     an abstract socket the supervisor holds, claim.ts)
 *   state.json        what runs and where (SandboxState), rewritten atomically
 *   supervisor.log    the supervisor's and the protocols' log
 *   credentials       AWS shared-credentials file: one profile per sample user, plus sandbox-admin
 *   config            AWS config file: region of every profile
 *   bin/              the instances' `aws`, `shutdown`, `poweroff`
 *   instances/<id>/   each emulated instance's runner, scratch folder and command output
 *   cdk.out/          the synthesized templates the deployment was made from
 */
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NeuroCaasError } from '../core/errors.js';

/** The sandbox did not come up, could not be stopped, or its folder is not a sandbox's. */
export class SandboxError extends NeuroCaasError {
  constructor(message: string) {
    super('Sandbox', message);
  }
}

export const DEFAULT_SANDBOX_DIR = '.neurocaas-sandbox';

export interface SandboxUser {
  username: string;
  group: string;
  /** Profile name in the credentials file (the username). */
  profile: string;
}

export interface SandboxState {
  schemaVersion: 1;
  /** The marker every process of this sandbox carries (NEUROCAAS_SANDBOX_ID). */
  sandboxId: string;
  phase: 'starting' | 'ready' | 'failed' | 'stopped';
  supervisorPid: number;
  startedAt: string;
  updatedAt: string;
  /** Why it failed (phase failed). */
  error?: string;
  endpoint?: string;
  emulatorPid?: number;
  region?: string;
  credentialsFile?: string;
  configFile?: string;
  users?: SandboxUser[];
  /** Analysis -> its bucket. */
  analyses?: Record<string, string>;
  tableName?: string;
  /** Resources created from the templates, by type. */
  created?: Record<string, number>;
  /** Template resources not created, with why. */
  skipped?: { stack: string; logicalId: string; type: string; reason: string }[];
  /** Whether the emulator checks every request against IAM. */
  iamEnforced?: boolean;
  /** Instances with a command running. */
  runningInstances?: string[];
  /** Events delivered to the protocols so far. */
  delivered?: Record<string, number>;
}

export function sandboxPaths(dir: string) {
  return {
    dir,
    pidFile: join(dir, 'supervisor.pid'),
    stateFile: join(dir, 'state.json'),
    logFile: join(dir, 'supervisor.log'),
    credentialsFile: join(dir, 'credentials'),
    configFile: join(dir, 'config'),
    binDir: join(dir, 'bin'),
    instancesDir: join(dir, 'instances'),
    cdkOut: join(dir, 'cdk.out'),
  };
}

const PHASES: readonly string[] = ['starting', 'ready', 'failed', 'stopped'];

/**
 * The sandbox's state in `dir`; undefined when there is none. A state.json that is not a
 * sandbox's is someone else's file: an error, so that nothing ever writes over it.
 */
export function readState(dir: string): SandboxState | undefined {
  const { stateFile } = sandboxPaths(dir);
  if (!existsSync(stateFile)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(stateFile, 'utf8'));
  } catch {
    // Written by rename, so a torn file is not ours.
    value = undefined;
  }
  const state = value as Partial<SandboxState> | undefined;
  if (
    typeof state !== 'object' || state === null || state.schemaVersion !== 1 || typeof state.sandboxId !== 'string' ||
    typeof state.supervisorPid !== 'number' || !PHASES.includes(String(state.phase))
  ) {
    throw new SandboxError(`${stateFile} is not a sandbox's state file, so ${dir} is not a sandbox folder; nothing was changed in it. Pass --dir with the sandbox's folder (default ./${DEFAULT_SANDBOX_DIR})`);
  }
  return state as SandboxState;
}

/** What a sandbox writes into its folder; anything else there is someone else's. */
const SANDBOX_ENTRIES = new Set(['state.json', 'state.json.part', 'supervisor.log', 'supervisor.pid', 'credentials', 'config', 'bin', 'instances', 'cdk.out']);
/** What a folder holds while the first supervisor of a new sandbox starts (before state.json). */
const STARTING_ENTRIES = new Set(['supervisor.log', 'supervisor.pid', 'state.json.part']);

/**
 * Refuses a `dir` the sandbox must not write into: a file, or a folder holding anything but a
 * sandbox's files (the sandbox writes `credentials`, `config`, `bin/`, `cdk.out/` there: `--dir .`
 * in a project, or `--dir ~/.aws`, would lose the owner's files).
 */
export function assertSandboxFolder(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new SandboxError(`${dir} is not a folder; pass --dir with a new or empty folder for the sandbox`);
  const entries = readdirSync(dir).sort();
  if (entries.length === 0) return;
  if (existsSync(sandboxPaths(dir).stateFile)) {
    readState(dir);
    const foreign = entries.filter((entry) => !SANDBOX_ENTRIES.has(entry));
    if (foreign.length === 0) return;
    throw new SandboxError(`${dir} is a sandbox folder that also holds ${listed(foreign)}; move them out, or pass --dir with a new or empty folder`);
  }
  if (entries.every((entry) => STARTING_ENTRIES.has(entry))) return;
  throw new SandboxError(
    `${dir} is not a sandbox folder: it holds ${listed(entries)}, and the sandbox writes credentials, config, bin/, instances/ and cdk.out/ there; nothing was changed in it. Pass --dir with a new or empty folder`,
  );
}

function listed(entries: readonly string[]): string {
  return entries.length > 5 ? `${entries.slice(0, 5).join(', ')} and ${entries.length - 5} more` : entries.join(', ');
}

export function writeState(dir: string, state: SandboxState): void {
  const { stateFile } = sandboxPaths(dir);
  writeFileSync(`${stateFile}.part`, `${JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2)}\n`);
  renameSync(`${stateFile}.part`, stateFile);
}
