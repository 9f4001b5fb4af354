/**
 * Finding and stopping the sandbox's processes by an environment marker. Every process the
 * sandbox starts (supervisor, emulator, emulated instances and whatever their workflows spawn,
 * even in a new session) inherits `NEUROCAAS_SANDBOX_ID=<id>`, so `down` can prove that nothing
 * is left by reading the process table, not by trusting its own bookkeeping. Linux (/proc) only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Marker of every process of one sandbox. */
export const SANDBOX_ID_VARIABLE = 'NEUROCAAS_SANDBOX_ID';
/** Marker of every process of one emulated instance. */
export const INSTANCE_ID_VARIABLE = 'NEUROCAAS_SANDBOX_INSTANCE';

/** Pids of the live processes whose environment holds `name=value` (not this process). */
export function processesWithEnvironment(name: string, value: string): number[] {
  const wanted = `${name}=${value}`;
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch (error) {
    throw new Error(`cannot read /proc to find the sandbox's processes: ${(error as Error).message}`, { cause: error });
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'latin1');
    } catch {
      // Gone meanwhile, or not ours to read: either way not one of our processes.
      continue;
    }
    if (environ.split('\0').includes(wanted) && !isZombie(entry)) found.push(pid);
  }
  return found;
}

function isZombie(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !isZombie(String(pid));
  } catch {
    return true;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/**
 * Stops every process carrying the marker: SIGTERM, then SIGKILL after `graceMs`, until none is
 * left or `timeoutMs` passed. Returns the pids still alive (empty on success).
 */
export async function stopMarkedProcesses(name: string, value: string, options: { graceMs?: number; timeoutMs?: number } = {}): Promise<number[]> {
  const graceMs = options.graceMs ?? 2_000;
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  const first = processesWithEnvironment(name, value);
  for (const pid of first) signal(pid, 'SIGTERM');
  const killAt = Date.now() + graceMs;
  for (;;) {
    const left = processesWithEnvironment(name, value);
    if (left.length === 0) return [];
    if (Date.now() >= deadline) return left;
    if (Date.now() >= killAt) for (const pid of left) signal(pid, 'SIGKILL');
    await sleep(100);
  }
}
