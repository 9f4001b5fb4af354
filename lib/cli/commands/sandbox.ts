import { join, resolve } from 'node:path';
import { packageRoot } from '../../infra/package-paths.js';
import { sandboxDown, sandboxStatus, sandboxUp } from '../../sandbox/control.js';
import { DEFAULT_SANDBOX_DIR } from '../../sandbox/state.js';
import type { Reporter } from '../reporter.js';

export interface SandboxCommandOptions {
  dir?: string;
  blueprints?: string;
  users?: string;
  bootDelayMs?: string;
}

/** The sandbox folder: --dir, else ./.neurocaas-sandbox. */
export function sandboxDir(options: SandboxCommandOptions, cwd: string): string {
  return resolve(cwd, options.dir ?? DEFAULT_SANDBOX_DIR);
}

/** The sample users shipped for the sandbox (two in group lab, one in group rivals). */
export function sandboxUsersDir(): string {
  return join(packageRoot(), 'lib', 'sandbox', 'users');
}

/** `neurocaas sandbox up`: prints the export lines once the sandbox is ready. */
export async function sandboxUpCommand(options: SandboxCommandOptions, cwd: string, reporter: Reporter): Promise<number> {
  const dir = sandboxDir(options, cwd);
  const result = await sandboxUp({
    dir,
    blueprintsDir: options.blueprints ? resolve(cwd, options.blueprints) : join(packageRoot(), 'blueprints'),
    usersDir: options.users ? resolve(cwd, options.users) : sandboxUsersDir(),
    ...(options.bootDelayMs === undefined ? {} : { bootDelayMs: Number(options.bootDelayMs) }),
    onProgress: (line) => reporter.warn(line),
  });
  const { state } = result;
  const users = (state.users ?? []).map((u) => `${u.profile} (group ${u.group})`).join(', ');
  const human = [
    `# neurocaas sandbox ${result.alreadyRunning ? 'already running' : 'ready'}: emulator ${state.endpoint}, supervisor pid ${state.supervisorPid}`,
    `# analyses: ${Object.entries(state.analyses ?? {}).map(([a, b]) => `${a} -> s3://${b}`).join(', ')}`,
    `# profiles: ${users}; admin profile sandbox-admin`,
    `# IAM checks: ${state.iamEnforced ? 'on' : 'off'}; stop it with: neurocaas sandbox down --dir ${dir}`,
    ...result.exports,
  ].join('\n');
  reporter.result({ dir, alreadyRunning: result.alreadyRunning, exports: result.exports, state }, human);
  return 0;
}

/** `neurocaas sandbox down`: stops everything the sandbox started; fine when nothing runs. */
export async function sandboxDownCommand(options: SandboxCommandOptions, cwd: string, reporter: Reporter): Promise<number> {
  const dir = sandboxDir(options, cwd);
  const result = await sandboxDown({ dir });
  const human = result.wasRunning
    ? `sandbox in ${dir} stopped${result.killedLeftovers > 0 ? ` (${result.killedLeftovers} leftover processes killed)` : ''}`
    : `no sandbox runs in ${dir}${result.killedLeftovers > 0 ? `; ${result.killedLeftovers} leftover processes killed` : ''}`;
  reporter.result({ dir, ...result }, human);
  return 0;
}

/** `neurocaas sandbox status`: what runs, where, and what was deployed. */
export async function sandboxStatusCommand(options: SandboxCommandOptions, cwd: string, reporter: Reporter): Promise<number> {
  const dir = sandboxDir(options, cwd);
  const status = await sandboxStatus({ dir });
  const { state } = status;
  let human: string;
  if (!status.running) {
    human = `no sandbox runs in ${dir}${state ? ` (last: ${state.phase}${state.error ? `, ${state.error}` : ''})` : ''}`;
    if (status.processes.length > 0) human += `\nwarning: ${status.processes.length} processes of it are still alive; run neurocaas sandbox down --dir ${dir}`;
  } else if (!state || state.phase !== 'ready') {
    human = [
      `sandbox starting in ${dir}: supervisor pid ${status.holder?.pid}; not ready yet (log: ${join(dir, 'supervisor.log')})`,
      `"neurocaas sandbox up --dir ${dir}" waits for it; "neurocaas sandbox down --dir ${dir}" stops it`,
      `processes: ${status.processes.length}`,
    ].join('\n');
  } else {
    const created = Object.entries(state.created ?? {}).map(([type, n]) => `${n} ${type}`).join(', ');
    human = [
      `sandbox ${state.phase} in ${dir}: supervisor pid ${state.supervisorPid}, emulator ${state.endpoint} (${status.emulatorAnswers ? 'answering' : 'NOT answering'})`,
      `analyses: ${Object.entries(state.analyses ?? {}).map(([a, b]) => `${a} -> s3://${b}`).join(', ') || 'none'}`,
      `users: ${(state.users ?? []).map((u) => `${u.username} (${u.group})`).join(', ')}`,
      `created from the templates: ${created}`,
      `not emulated: ${(state.skipped ?? []).length} template resources (see state.json)`,
      `instances running a command: ${(state.runningInstances ?? []).join(', ') || 'none'}`,
      `events delivered: ${Object.entries(state.delivered ?? {}).map(([k, n]) => `${k} ${n}`).join(', ') || 'none yet'}`,
      `processes: ${status.processes.length}`,
    ].join('\n');
  }
  reporter.result({ dir, running: status.running, emulatorAnswers: status.emulatorAnswers, processes: status.processes, state }, human);
  return status.running ? 0 : 1;
}
