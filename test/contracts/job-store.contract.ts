import { describe, expect, it } from 'vitest';
import { ConcurrentUpdateError } from '../../lib/core/errors.js';
import { initialJobState } from '../../lib/core/job-machine.js';
import type { JobRecord, JobStore, Ledger } from '../../lib/ports.js';

export function recordFixture(jobId: string): JobRecord {
  return {
    jobId,
    bucket: 'kalman-smoother',
    submissionKey: 'lab/submissions/submit.json',
    version: 1,
    state: initialJobState(jobId, 'kalman-smoother', 'lab', 1_000),
    outbox: [],
    effectSeq: 0,
    updatedAtMs: 1_000,
  };
}

/** The behaviour every JobStore must have; run against each backend's adapter. */
export function jobStoreContract(name: string, makeStore: () => Promise<JobStore>): void {
  describe(`${name} job store contract`, () => {
    it('claims a submission once and returns the first job for a duplicate', async () => {
      const store = await makeStore();
      expect(await store.claimSubmission('bucket/lab/submissions/s.json#e1', 'J1')).toEqual({ claimed: true });
      expect(await store.claimSubmission('bucket/lab/submissions/s.json#e1', 'J2')).toEqual({ claimed: false, jobId: 'J1' });
      expect(await store.claimSubmission('bucket/lab/submissions/s.json#e2', 'J3')).toEqual({ claimed: true });
    });

    it('lets exactly one of concurrent claims win', async () => {
      const store = await makeStore();
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => store.claimSubmission('k#e', `J${i}`)));
      const winners = results.filter((r) => r.claimed);
      expect(winners).toHaveLength(1);
      const winnerId = `J${results.findIndex((r) => r.claimed)}`;
      for (const r of results) if (!r.claimed) expect(r.jobId).toBe(winnerId);
    });

    it('claims a submission and creates its job in one step, and creates nothing for a duplicate', async () => {
      const store = await makeStore();
      expect(await store.claimAndCreate('bucket/lab/submissions/s.json#e1', recordFixture('J1'))).toEqual({ claimed: true });
      expect(await store.claimAndCreate('bucket/lab/submissions/s.json#e1', recordFixture('J2'))).toEqual({ claimed: false, jobId: 'J1' });
      expect((await store.get('J1'))?.jobId).toBe('J1');
      expect(await store.get('J2')).toBeUndefined();
    });

    it('lets exactly one of concurrent claim-and-creates win, leaving one job', async () => {
      const store = await makeStore();
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => store.claimAndCreate('k#e', recordFixture(`J${i}`))));
      expect(results.filter((r) => r.claimed)).toHaveLength(1);
      expect((await store.list()).map((j) => j.jobId)).toEqual([`J${results.findIndex((r) => r.claimed)}`]);
    });

    it('creates a job once', async () => {
      const store = await makeStore();
      await store.create(recordFixture('J1'));
      await expect(store.create(recordFixture('J1'))).rejects.toBeInstanceOf(ConcurrentUpdateError);
      expect((await store.get('J1'))?.version).toBe(1);
    });

    it('updates only from the version it read', async () => {
      const store = await makeStore();
      await store.create(recordFixture('J1'));
      await store.update({ ...recordFixture('J1'), version: 2, updatedAtMs: 2 });
      await expect(store.update({ ...recordFixture('J1'), version: 2, updatedAtMs: 3 })).rejects.toBeInstanceOf(ConcurrentUpdateError);
      expect((await store.get('J1'))?.updatedAtMs).toBe(2);
    });

    it('lets exactly one of concurrent updates from the same version win', async () => {
      const store = await makeStore();
      await store.create(recordFixture('J1'));
      const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.update({ ...recordFixture('J1'), version: 2, updatedAtMs: 100 + i })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    });

    it('returns nothing for an unknown job and lists the known ones', async () => {
      const store = await makeStore();
      expect(await store.get('nope')).toBeUndefined();
      await store.create(recordFixture('J1'));
      await store.create(recordFixture('J2'));
      expect((await store.list()).map((j) => j.jobId).sort()).toEqual(['J1', 'J2']);
    });
  });
}

/** The behaviour every Ledger must have: atomic, idempotent reservations within budget. */
export function ledgerContract(name: string, makeLedger: () => Promise<Ledger>): void {
  describe(`${name} ledger contract`, () => {
    const base = { user: 'alice', period: '2026-11', budgetUsd: 10, nowMs: 1 };

    it('reserves within budget and refuses beyond it with a reason', async () => {
      const ledger = await makeLedger();
      expect(await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 6 })).toEqual({ ok: true });
      const refused = await ledger.reserve({ ...base, jobId: 'J2', amountUsd: 6 });
      expect(refused.ok).toBe(false);
      if (!refused.ok) expect(refused.reason).toContain('over budget');
    });

    it('never over-commits under concurrent reservations', async () => {
      const ledger = await makeLedger();
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => ledger.reserve({ ...base, jobId: `J${i}`, amountUsd: 3 })));
      expect(results.filter((r) => r.ok)).toHaveLength(3);
      const entries = await ledger.entries('alice', '2026-11');
      expect(entries.reduce((sum, e) => sum + e.reservedUsd, 0)).toBe(9);
    });

    it('is idempotent per job for reserve and settle', async () => {
      const ledger = await makeLedger();
      await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 4 });
      await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 4 });
      await ledger.settle({ user: 'alice', period: '2026-11', jobId: 'J1', spentUsd: 1, nowMs: 2 });
      await ledger.settle({ user: 'alice', period: '2026-11', jobId: 'J1', spentUsd: 3, nowMs: 3 });
      expect(await ledger.entries('alice', '2026-11')).toEqual([{ jobId: 'J1', reservedUsd: 4, reservedAtMs: 1, spentUsd: 1, settledAtMs: 2 }]);
      expect(await ledger.reserve({ ...base, jobId: 'J2', amountUsd: 9 })).toEqual({ ok: true });
    });

    it('keeps periods and users apart', async () => {
      const ledger = await makeLedger();
      await ledger.reserve({ ...base, jobId: 'J1', amountUsd: 10 });
      expect(await ledger.reserve({ ...base, period: '2026-12', jobId: 'J2', amountUsd: 10 })).toEqual({ ok: true });
      expect(await ledger.reserve({ ...base, user: 'bob', jobId: 'J3', amountUsd: 10 })).toEqual({ ok: true });
    });
  });
}
