import { join } from 'node:path';
import { decideReservation, settleEntry, type LedgerEntry } from '../core/cost.js';
import type { Ledger, ReserveResult } from '../ports.js';
import { readJsonIfExists, withFileLock, writeFileAtomic } from './fs-util.js';

/** Per user and period, one JSON file of entries, changed only under its lock. */
export class LocalLedger implements Ledger {
  constructor(private readonly ledgersDir: string) {}

  async reserve(request: { user: string; period: string; jobId: string; amountUsd: number; budgetUsd: number; nowMs: number }): Promise<ReserveResult> {
    const path = this.pathOf(request.user, request.period);
    return withFileLock(`${path}.lock`, async () => {
      const entries = (await readJsonIfExists<LedgerEntry[]>(path)) ?? [];
      const decision = decideReservation(entries, request);
      if (!decision.ok) return { ok: false, reason: decision.reason };
      if (!decision.duplicate) await writeFileAtomic(path, JSON.stringify(decision.entries, null, 2));
      return { ok: true };
    });
  }

  async settle(request: { user: string; period: string; jobId: string; spentUsd: number; nowMs: number }): Promise<void> {
    const path = this.pathOf(request.user, request.period);
    await withFileLock(`${path}.lock`, async () => {
      const entries = (await readJsonIfExists<LedgerEntry[]>(path)) ?? [];
      const { entries: next, changed } = settleEntry(entries, request.jobId, request.spentUsd, request.nowMs);
      if (changed) await writeFileAtomic(path, JSON.stringify(next, null, 2));
    });
  }

  async entries(user: string, period: string): Promise<LedgerEntry[]> {
    return (await readJsonIfExists<LedgerEntry[]>(this.pathOf(user, period))) ?? [];
  }

  private pathOf(user: string, period: string): string {
    return join(this.ledgersDir, user, `${period}.json`);
  }
}
