/**
 * How often following polls: short at first and again when a dataset has just started running
 * (its first lines are about to arrive), backing off to the backend's poll interval otherwise.
 * A scripted job listing and fake timers: the waits are read off the fake clock, not measured.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FOLLOW_FIRST_WAIT_MS, ResearcherUseCases, type FollowEvent } from '../../../lib/client/researcher-use-cases.js';
import type { JobDetail, UseCaseBackend } from '../../../lib/client/ports.js';
import type { DatasetPhase } from '../../../lib/core/status.js';

afterEach(() => {
  vi.useRealTimers();
});

/** A backend whose job goes through `phases` (one per round: the dataset's phase, or DONE). */
function scriptedBackend(phases: (DatasetPhase | 'DONE')[], pollMs: number): { backend: UseCaseBackend; roundsAtMs: number[] } {
  const roundsAtMs: number[] = [];
  const job = (phase: DatasetPhase | 'DONE'): JobDetail =>
    ({
      jobId: 'J1',
      analysis: 'a',
      group: 'lab',
      user: 'ada',
      bucket: 'b',
      phase: phase === 'DONE' ? 'DONE' : 'RUNNING',
      outcome: phase === 'DONE' ? 'SUCCEEDED' : undefined,
      createdAtMs: 0,
      updatedAtMs: 0,
      datasets: [{ name: 'd.csv', phase: phase === 'DONE' ? 'SUCCEEDED' : phase }],
    }) as unknown as JobDetail;
  const backend = {
    kind: 'aws',
    pollMs,
    receiptTimeoutMs: 1_000,
    clock: { nowMs: () => Date.now() },
    scope: async () => ({ user: 'ada', group: 'lab' }),
    objects: { read: async () => undefined },
    jobs: {
      get: async () => {
        roundsAtMs.push(Date.now());
        return job(phases[Math.min(roundsAtMs.length - 1, phases.length - 1)] as DatasetPhase | 'DONE');
      },
      list: async () => ({ jobs: [], notices: [] }),
    },
  } as unknown as UseCaseBackend;
  return { backend, roundsAtMs };
}

describe('following a job', () => {
  it('polls after 250 ms first, backs off to the poll interval, and polls soon again once a dataset starts running', async () => {
    vi.useFakeTimers({ now: 0 });
    const { backend, roundsAtMs } = scriptedBackend(['BOOTING', 'BOOTING', 'BOOTING', 'BOOTING', 'RUNNING', 'RUNNING', 'RUNNING', 'DONE'], 1_000);
    const events: FollowEvent[] = [];
    const followed = (async () => {
      for await (const event of new ResearcherUseCases(backend).follow('J1')) events.push(event);
    })();

    await vi.runAllTimersAsync();
    await followed;

    const waits = roundsAtMs.slice(1).map((at, i) => at - (roundsAtMs[i] as number));
    expect(FOLLOW_FIRST_WAIT_MS).toBe(250);
    expect(waits).toEqual([250, 500, 1_000, 1_000, 250, 500, 1_000]);
    expect(events.at(-1)?.type).toBe('end');
  });

  it('never waits longer than the backend asks for when its poll interval is short (local)', async () => {
    vi.useFakeTimers({ now: 0 });
    const { backend, roundsAtMs } = scriptedBackend(['RUNNING', 'RUNNING', 'RUNNING', 'DONE'], 200);
    const followed = (async () => {
      for await (const _ of new ResearcherUseCases(backend).follow('J1')) void _;
    })();

    await vi.runAllTimersAsync();
    await followed;

    expect(roundsAtMs.slice(1).map((at, i) => at - (roundsAtMs[i] as number))).toEqual([200, 200, 200]);
  });
});
