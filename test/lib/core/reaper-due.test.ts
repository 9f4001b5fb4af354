import { describe, expect, it } from 'vitest';
import { initialJobState, type DatasetState, type JobState } from '../../../lib/core/job-machine.js';
import { REAPER_IDLE_MS, reaperDueAtMs, STUCK_SUBMISSION_MS } from '../../../lib/core/reaper-due.js';

function job(phase: JobState['phase'], datasets: Partial<DatasetState>[] = []): JobState {
  return { ...initialJobState('J1', 'a', 'lab', 1_000), phase, datasets: datasets as DatasetState[] };
}

describe('reaperDueAtMs', () => {
  it('is undefined for finished jobs: the history costs the reaper nothing', () => {
    expect(reaperDueAtMs(job('DONE'), 5_000)).toBeUndefined();
    expect(reaperDueAtMs(job('REJECTED'), 5_000)).toBeUndefined();
  });

  it('makes a NEW job due when it counts as stuck, whatever its last write', () => {
    expect(reaperDueAtMs(job('NEW'), 9_999_999)).toBe(1_000 + STUCK_SUBMISSION_MS);
  });

  it('makes an unfinished job due once idle for a while', () => {
    expect(reaperDueAtMs(job('RESERVING'), 5_000)).toBe(5_000 + REAPER_IDLE_MS);
    expect(reaperDueAtMs(job('ACTIVE', [{ phase: 'RUNNING' }]), 5_000)).toBe(5_000 + REAPER_IDLE_MS);
  });

  it('makes it due at the first deadline of an unfinished dataset when that comes earlier', () => {
    const state = job('ACTIVE', [
      { phase: 'SUCCEEDED', deadlineAtMs: 6_000 },
      { phase: 'RUNNING', deadlineAtMs: 60_000 },
      { phase: 'BOOTING', deadlineAtMs: 90_000 },
    ]);
    expect(reaperDueAtMs(state, 5_000)).toBe(60_000);
    expect(reaperDueAtMs(state, 10_000 - REAPER_IDLE_MS)).toBe(10_000);
  });
});
