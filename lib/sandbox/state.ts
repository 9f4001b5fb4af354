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
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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

export function readState(dir: string): SandboxState | undefined {
  const { stateFile } = sandboxPaths(dir);
  if (!existsSync(stateFile)) return undefined;
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as SandboxState;
  } catch {
    // Written by rename, so a parse failure means someone else's file; treat as no state.
    return undefined;
  }
}

export function writeState(dir: string, state: SandboxState): void {
  const { stateFile } = sandboxPaths(dir);
  writeFileSync(`${stateFile}.part`, `${JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2)}\n`);
  renameSync(`${stateFile}.part`, stateFile);
}
