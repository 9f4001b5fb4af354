import type { JobState } from './job-machine.js';
import { isTerminalPhase } from './status.js';

/** How long a claimed job may stay NEW (its first evaluation crashed) before the reaper evaluates it again. */
export const STUCK_SUBMISSION_MS = 2 * 60_000;

/**
 * How long an unfinished job may go without a write before the reaper ticks it: a little under
 * the reaper's 5-minute interval, so a job idle since the previous run is ticked on this one.
 */
export const REAPER_IDLE_MS = 4 * 60_000;

/**
 * When the reaper should next look at a job, in epoch ms; undefined once the job is finished
 * (DONE or REJECTED), so finished jobs (the history) cost the reaper nothing. NEW: when it
 * counts as stuck. Otherwise the earlier of "idle for REAPER_IDLE_MS" and the first deadline of
 * an unfinished dataset. Every event that changes the job moves this forward.
 */
export function reaperDueAtMs(state: JobState, updatedAtMs: number, pendingEffects = 0): number | undefined {
  // A finished job whose last effects failed (they stay in its outbox) is due until they are done.
  if (state.phase === 'DONE' || state.phase === 'REJECTED') return pendingEffects > 0 ? updatedAtMs + REAPER_IDLE_MS : undefined;
  if (state.phase === 'NEW') return state.createdAtMs + STUCK_SUBMISSION_MS;
  const deadlines = state.datasets
    .filter((ds) => !isTerminalPhase(ds.phase) && ds.deadlineAtMs !== undefined)
    .map((ds) => ds.deadlineAtMs as number);
  return Math.min(updatedAtMs + REAPER_IDLE_MS, ...deadlines);
}
