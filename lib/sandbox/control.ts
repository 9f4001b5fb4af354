/**
 * `neurocaas sandbox up|down|status`: starting the supervisor in the background and waiting for
 * it to be ready, stopping it and everything it started, and saying what runs.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadBlueprints, loadUsers } from '../infra/app.js';
import { packageRoot } from '../infra/package-paths.js';
import { answers } from './emulator.js';
import { sandboxHolder, SUPERVISOR_CLAIMED_EXIT_CODE, type SandboxHolder } from './claim.js';
import { isAlive, processesWithEnvironment, SANDBOX_ID_VARIABLE, stopMarkedProcesses } from './processes.js';
import { assertSandboxFolder, readState, SandboxError, sandboxPaths, writeState, type SandboxState } from './state.js';
import { ADMIN_PROFILE, newSandboxId } from './supervisor.js';

export { SandboxError };

export interface SandboxUpOptions {
  dir: string;
  blueprintsDir: string;
  usersDir: string;
  /** Emulated instance boot time, in ms. Default 2000. */
  bootDelayMs?: number;
  /** How long `up` waits for the sandbox to be ready, in ms. Default 240 000 (a first run installs the emulator). */
  timeoutMs?: number;
  /** Progress lines while waiting. */
  onProgress?: (line: string) => void;
}

export interface SandboxUpResult {
  state: SandboxState;
  /** It was running already; nothing was started. */
  alreadyRunning: boolean;
  /** `export NAME=value` lines for a POSIX shell. */
  exports: string[];
}

/** The sample users' shared-credentials profiles, the default profile, endpoint and region. */
export function exportLines(state: SandboxState): string[] {
  const firstUser = state.users?.[0]?.profile;
  return [
    `export AWS_ENDPOINT_URL=${state.endpoint}`,
    `export AWS_REGION=${state.region}`,
    `export AWS_SHARED_CREDENTIALS_FILE=${state.credentialsFile}`,
    `export AWS_CONFIG_FILE=${state.configFile}`,
    // moto checks no flexible checksums; the SDK and the CLI send them only when required.
    'export AWS_REQUEST_CHECKSUM_CALCULATION=when_required',
    'export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required',
    ...(firstUser ? [`export AWS_PROFILE=${firstUser}`] : []),
  ];
}

function supervisorEntry(): string {
  // From dist/lib/sandbox/control.js the entry is beside it; from the TypeScript sources (tests), in dist/.
  const beside = fileURLToPath(new URL('./supervisor-main.js', import.meta.url));
  if (existsSync(beside)) return beside;
  const built = join(packageRoot(), 'dist', 'lib', 'sandbox', 'supervisor-main.js');
  if (existsSync(built)) return built;
  throw new SandboxError(`the sandbox supervisor ${built} is missing; run npm run build`);
}

interface SpawnedSupervisor {
  sandboxId: string;
  pid: number;
  /** How it ended (set once it has). */
  exited?: string;
  exitCode?: number | null;
}

function spawnSupervisor(options: SandboxUpOptions, logFile: string): SpawnedSupervisor {
  const sandboxId = newSandboxId();
  const log = openSync(logFile, 'a');
  const env: NodeJS.ProcessEnv = {};
  // The supervisor is its own AWS principal: nothing of the caller's AWS set-up may leak in.
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_SANDBOX')) env[name] = value;
  env[SANDBOX_ID_VARIABLE] = sandboxId;
  let child;
  try {
    child = spawn(
      process.execPath,
      [
        supervisorEntry(),
        '--dir', options.dir,
        '--blueprints', options.blueprintsDir,
        '--users', options.usersDir,
        '--sandbox-id', sandboxId,
        ...(options.bootDelayMs === undefined ? [] : ['--boot-delay-ms', String(options.bootDelayMs)]),
      ],
      // Detached: it outlives this command, in a session of its own.
      { detached: true, stdio: ['ignore', log, log], env, cwd: options.dir },
    );
  } finally {
    closeSync(log);
  }
  const spawned: SpawnedSupervisor = { sandboxId, pid: child.pid ?? -1 };
  child.once('exit', (code, signal) => {
    spawned.exitCode = code;
    spawned.exited = signal ?? `exit code ${code}`;
  });
  child.once('error', (error) => (spawned.exited = `could not be started: ${error.message}`));
  child.unref();
  return spawned;
}

/**
 * Starts the sandbox in `dir` and returns once it is ready. When a supervisor holds the folder
 * already (a sandbox running, or starting: another `up` at once, or an `up` that was killed),
 * nothing is started: this waits for that one.
 */
export async function sandboxUp(options: SandboxUpOptions): Promise<SandboxUpResult> {
  const paths = sandboxPaths(options.dir);
  for (const [what, folder] of [
    ['blueprints', options.blueprintsDir],
    ['users', options.usersDir],
  ] as const) {
    if (!existsSync(folder)) throw new SandboxError(`the ${what} folder ${folder} does not exist; pass --${what} with an existing folder`);
  }
  // What the supervisor would only find after starting the emulator, said here, all at once.
  const blueprints = loadBlueprints(options.blueprintsDir);
  if (blueprints.length === 0) {
    throw new SandboxError(
      `no blueprint in ${options.blueprintsDir}: the sandbox deploys every ${options.blueprintsDir}/<analysis>/blueprint.json; pass --blueprints with the folder that holds the analysis folders`,
    );
  }
  loadUsers(options.usersDir, blueprints.map(({ blueprint }) => blueprint.name));
  assertSandboxFolder(options.dir);
  mkdirSync(options.dir, { recursive: true });
  const timeoutMs = options.timeoutMs ?? 240_000;
  const deadline = Date.now() + timeoutMs;
  let ours: SpawnedSupervisor | undefined;
  let spawns = 0;
  let lastProgress = 0;
  for (;;) {
    const holder = await sandboxHolder(options.dir);
    const state = readState(options.dir);
    const holderState = holder && state?.sandboxId === holder.sandboxId ? state : undefined;
    if (holderState?.phase === 'ready') return { state: holderState, alreadyRunning: holderState.sandboxId !== ours?.sandboxId, exports: exportLines(holderState) };
    if (ours && state?.sandboxId === ours.sandboxId && state.phase === 'failed') {
      await waitForExit(ours.pid, 10_000);
      throw new SandboxError(`the sandbox did not start: ${state.error}\nlast lines of ${paths.logFile}:\n${logTail(paths.logFile)}`);
    }
    if (ours?.exited !== undefined && ours.exitCode !== SUPERVISOR_CLAIMED_EXIT_CODE) {
      throw new SandboxError(`the sandbox supervisor ended (${ours.exited}) before it was ready; last lines of ${paths.logFile}:\n${logTail(paths.logFile)}`);
    }
    // Nobody holds the folder (and ours, if any, lost it to one that is gone since): start one.
    if (!holder && (ours === undefined || ours.exited !== undefined)) {
      if (spawns >= 5) throw new SandboxError(`5 supervisors were started in ${options.dir} and none held it; see ${paths.logFile}`);
      spawns += 1;
      ours = spawnSupervisor(options, paths.logFile);
    }
    if (Date.now() > deadline) {
      await sandboxDown({ dir: options.dir });
      throw new SandboxError(`the sandbox was not ready within ${Math.round(timeoutMs / 1000)} s and was stopped; last lines of ${paths.logFile}:\n${logTail(paths.logFile)}`);
    }
    if (Date.now() - lastProgress > 10_000) {
      lastProgress = Date.now();
      const startedHere = holder !== undefined && holder.sandboxId === ours?.sandboxId;
      options.onProgress?.(
        holder && !startedHere
          ? `a sandbox is starting in ${options.dir} (supervisor pid ${holder.pid}, started earlier); waiting for it (log: ${paths.logFile})`
          : `starting the sandbox in ${options.dir} (log: ${paths.logFile}); interrupting this leaves it starting: "neurocaas sandbox up" again waits for it, "neurocaas sandbox down" stops it`,
      );
    }
    await sleep(200);
  }
}

export interface SandboxDownResult {
  /** A supervisor was running and was stopped. */
  wasRunning: boolean;
  /** Processes of the sandbox that had to be killed after the supervisor was gone. */
  killedLeftovers: number;
}

/** Stops the supervisor, the emulator and every emulated instance; idempotent. */
export async function sandboxDown(options: { dir: string; timeoutMs?: number }): Promise<SandboxDownResult> {
  const holder = await sandboxHolder(options.dir);
  const state = readState(options.dir);
  if (!state && !holder) return { wasRunning: false, killedLeftovers: 0 };
  const timeoutMs = options.timeoutMs ?? 30_000;
  // The holder is the live supervisor, whatever state.json says (it may not have written it yet).
  if (holder) {
    try {
      process.kill(holder.pid, 'SIGTERM');
    } catch {
      // Gone between the look and the signal.
    }
    if (!(await waitForExit(holder.pid, timeoutMs))) {
      try {
        process.kill(holder.pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }
  // The process table is the proof: anything still carrying the sandbox's marker goes.
  const ids = [...new Set([holder?.sandboxId, state?.sandboxId].filter((id): id is string => id !== undefined))];
  let leftovers = 0;
  const survivors: number[] = [];
  for (const id of ids) {
    leftovers += processesWithEnvironment(SANDBOX_ID_VARIABLE, id).length;
    survivors.push(...(await stopMarkedProcesses(SANDBOX_ID_VARIABLE, id, { graceMs: 2_000, timeoutMs: 10_000 })));
  }
  if (survivors.length > 0) throw new SandboxError(`processes ${survivors.join(', ')} of the sandbox in ${options.dir} survived SIGKILL; stop them by hand`);
  const after = readState(options.dir);
  if (after && after.phase !== 'stopped') writeState(options.dir, { ...after, phase: 'stopped', runningInstances: [] });
  return { wasRunning: holder !== undefined, killedLeftovers: leftovers };
}

export interface SandboxStatus {
  /** A supervisor holds the folder (starting or ready). */
  running: boolean;
  /** That supervisor. */
  holder: SandboxHolder | undefined;
  state: SandboxState | undefined;
  /** The emulator answered HTTP just now. */
  emulatorAnswers: boolean;
  /** Live processes carrying the sandbox's marker. */
  processes: number[];
  adminProfile: string;
}

export async function sandboxStatus(options: { dir: string }): Promise<SandboxStatus> {
  const holder = await sandboxHolder(options.dir);
  const state = readState(options.dir);
  const running = holder !== undefined;
  const emulatorAnswers = running && state?.sandboxId === holder.sandboxId && state.endpoint ? await answers(state.endpoint) : false;
  const id = holder?.sandboxId ?? state?.sandboxId;
  const processes = id ? processesWithEnvironment(SANDBOX_ID_VARIABLE, id) : [];
  return { running, holder, state: holder && state?.sandboxId !== holder.sandboxId ? undefined : state, emulatorAnswers, processes, adminProfile: ADMIN_PROFILE };
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(100);
  }
  return !isAlive(pid);
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-25).join('\n');
  } catch {
    return '(no log)';
  }
}
