import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  billableSeconds,
  committedUsd,
  deadlineFromReservation,
  decideReservation,
  jobReservationUsd,
  machineCostUsd,
  machineReservationUsd,
  settleEntry,
  PAST_DEADLINE_MINUTES,
  REAPER_PERIOD_MINUTES,
  storageHourlyUsd,
  TERMINATION_ALLOWANCE_MINUTES,
  type LedgerEntry,
} from '../../../lib/core/cost.js';

const request = { jobId: 'j2', user: 'alice', period: '2026-11', budgetUsd: 10, nowMs: 0 };

describe('cost and budget math', () => {
  it('reserves price x (timeout + reaper period + termination allowance) x datasets', () => {
    expect(machineReservationUsd(0.192, 60)).toBeCloseTo((0.192 * (60 + REAPER_PERIOD_MINUTES + TERMINATION_ALLOWANCE_MINUTES)) / 60, 6);
    expect(jobReservationUsd(0.192, 60, 3)).toBeCloseTo(3 * 0.224, 6);
  });

  it('prices EBS volumes per GiB-month over 730 hours', () => {
    // 50 + 100 GiB at $0.08 = $12 a month = 12/730 per hour
    expect(storageHourlyUsd([50, 100], 0.08)).toBeCloseTo(12 / 730, 12);
    expect(storageHourlyUsd([], 0.08)).toBe(0);
  });

  it('derives the deadline back from the reservation', () => {
    const reserved = machineReservationUsd(0.5, 45);
    expect(deadlineFromReservation(1_000, reserved, 0.5)).toBe(1_000 + 45 * 60_000);
  });

  it('bills per second with a one-minute minimum', () => {
    expect(billableSeconds(0, 10_000)).toBe(60);
    expect(billableSeconds(0, 90_001)).toBe(91);
    expect(machineCostUsd(3.6, 0, 100_000)).toBeCloseTo(0.1, 6);
  });

  it('never lets a machine that stops by its deadline plus the allowance cost more than its reservation', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 40, noNaN: true }), fc.double({ min: 0.05, max: 2880, noNaN: true }), (hourly, timeout) => {
        const reserved = machineReservationUsd(hourly, timeout);
        const deadline = deadlineFromReservation(0, reserved, hourly);
        const cost = machineCostUsd(hourly, 0, deadline + TERMINATION_ALLOWANCE_MINUTES * 60_000 - 1000);
        expect(cost).toBeLessThanOrEqual(reserved + 1e-6);
      }),
    );
  });

  it('covers instance and volumes until a reaper period and the termination allowance past the deadline', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.001, max: 40, noNaN: true }),
        fc.array(fc.integer({ min: 1, max: 16384 }), { minLength: 1, maxLength: 9 }),
        fc.double({ min: 0.01, max: 0.2, noNaN: true }),
        fc.double({ min: 0.05, max: 2880, noNaN: true }),
        fc.integer({ min: 0, max: 10 * 60_000 }),
        (instanceHourly, volumes, ebsPrice, timeout, launchDelayMs) => {
          const hourly = instanceHourly + storageHourlyUsd(volumes, ebsPrice);
          const reserved = machineReservationUsd(hourly, timeout);
          const deadline = deadlineFromReservation(0, reserved, hourly);
          // EC2 starts billing after the request; the last layer ends it a reaper period plus termination after the deadline.
          const launchedAt = Math.min(launchDelayMs, deadline);
          const cost = machineCostUsd(hourly, launchedAt, deadline + PAST_DEADLINE_MINUTES * 60_000);
          expect(cost).toBeLessThanOrEqual(reserved + 1e-6);
          // And the deadline leaves the workflow the whole timeout (to the second).
          expect(deadline).toBeGreaterThanOrEqual(Math.floor(timeout * 60) * 1000 - 1000);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('grants a reservation that fits the remaining budget', () => {
    const entries: LedgerEntry[] = [{ jobId: 'j1', reservedUsd: 4, spentUsd: 3, reservedAtMs: 0, settledAtMs: 1 }];
    const decision = decideReservation(entries, { ...request, amountUsd: 7 });
    expect(decision.ok).toBe(true);
    if (decision.ok) expect(committedUsd(decision.entries)).toBe(10);
  });

  it('refuses a reservation over budget and explains the numbers', () => {
    const entries: LedgerEntry[] = [
      { jobId: 'j0', reservedUsd: 4, spentUsd: 3, reservedAtMs: 0, settledAtMs: 1 },
      { jobId: 'j1', reservedUsd: 5, reservedAtMs: 0 },
    ];
    const decision = decideReservation(entries, { ...request, amountUsd: 2.5 });
    expect(decision).toEqual({
      ok: false,
      remainingUsd: 2,
      reason:
        'over budget: this job needs $2.50 reserved but user "alice" has $2.00 left of $10.00 for period 2026-11 ' +
        '($3.00 spent, $5.00 reserved by running jobs); submit fewer datasets or ask an admin to raise the budget',
    });
  });

  it('reserves once per job however often it is asked', () => {
    const first = decideReservation([], { ...request, amountUsd: 6 });
    if (!first.ok) throw new Error('expected a grant');
    const again = decideReservation(first.entries, { ...request, amountUsd: 6 });
    expect(again).toEqual({ ok: true, entries: first.entries, duplicate: true });
  });

  it('settles once, replacing the reservation by the actual spend', () => {
    const entries: LedgerEntry[] = [{ jobId: 'j1', reservedUsd: 5, reservedAtMs: 0 }];
    const once = settleEntry(entries, 'j1', 1.25, 9);
    expect(once.changed).toBe(true);
    expect(committedUsd(once.entries)).toBe(1.25);
    const twice = settleEntry(once.entries, 'j1', 4, 10);
    expect(twice.changed).toBe(false);
    expect(committedUsd(twice.entries)).toBe(1.25);
  });

  it('keeps the committed total within budget under any sequence of reservations and settlements', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })), { maxLength: 30 }),
        (ops) => {
          let entries: LedgerEntry[] = [];
          ops.forEach(([amount, spentFraction], i) => {
            const decision = decideReservation(entries, { ...request, jobId: `j${i}`, amountUsd: amount });
            if (decision.ok) entries = decision.entries;
            if (i % 2 === 0) entries = settleEntry(entries, `j${i}`, amount * spentFraction, i).entries;
            expect(committedUsd(entries)).toBeLessThanOrEqual(request.budgetUsd + 1e-6);
          });
        },
      ),
    );
  });
});
