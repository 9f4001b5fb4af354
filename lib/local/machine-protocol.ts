import type { RunnerSpec } from '../core/runner-spec.js';

/**
 * Messages between the local machines adapter (the "cloud") and a local machine process
 * (the "instance"), over Node's IPC channel. The channel doubles as a lifeline: when the
 * parent goes away, the machine kills its workflow and exits, so nothing is ever orphaned.
 */
export type ToMachine = { type: 'run'; commandId: string; spec: RunnerSpec; bucketDir: string; envDir: string };

export type FromMachine =
  | { type: 'online' }
  | { type: 'started'; commandId: string; atMs: number }
  | { type: 'finished'; commandId: string; atMs: number; exitCode: number | null; timedOut: boolean; logTail: string[] };

/** argv of a machine process: `<script> <instanceId> <deadlineAtMs>` (the id also proves identity in /proc). */
export interface MachineArgs {
  instanceId: string;
  deadlineAtMs: number;
}

/** Grace between SIGTERM and SIGKILL, for a workflow to flush its files. */
export const KILL_GRACE_MS = 2_000;
