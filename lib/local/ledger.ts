import { decideReservation, settleEntry, type LedgerEntry } from '../core/cost.js';
import type { Ledger, ReserveResult } from '../ports.js';
import type { StateDb } from './state-db.js';

/**
 * Budget ledgers in the local state database: one row per user, period and job. A reservation
 * reads the period's entries and adds one in the same IMMEDIATE transaction, so concurrent
 * reservations from several processes never over-commit a budget.
 */
export class LocalLedger implements Ledger {
  constructor(private readonly state: StateDb) {}

  async reserve(request: { user: string; period: string; jobId: string; amountUsd: number; budgetUsd: number; nowMs: number }): Promise<ReserveResult> {
    return this.state.transaction(() => {
      const decision = decideReservation(this.read(request.user, request.period), request);
      if (!decision.ok) return { ok: false as const, reason: decision.reason };
      if (!decision.duplicate) {
        const entry = decision.entries.find((e) => e.jobId === request.jobId) as LedgerEntry;
        this.state.db
          .prepare('INSERT INTO ledger_entries (user, period, job_id, entry) VALUES (?, ?, ?, ?)')
          .run(request.user, request.period, request.jobId, JSON.stringify(entry));
      }
      return { ok: true as const };
    });
  }

  async settle(request: { user: string; period: string; jobId: string; spentUsd: number; nowMs: number }): Promise<void> {
    this.state.transaction(() => {
      const { entries, changed } = settleEntry(this.read(request.user, request.period), request.jobId, request.spentUsd, request.nowMs);
      if (!changed) return;
      const settled = entries.find((e) => e.jobId === request.jobId) as LedgerEntry;
      this.state.db
        .prepare('UPDATE ledger_entries SET entry = ? WHERE user = ? AND period = ? AND job_id = ?')
        .run(JSON.stringify(settled), request.user, request.period, request.jobId);
    });
  }

  async entries(user: string, period: string): Promise<LedgerEntry[]> {
    return this.read(user, period);
  }

  /** Every period's entries of a user, oldest first (for budget views and tests). */
  async allEntries(user: string): Promise<(LedgerEntry & { period: string })[]> {
    return this.state.db
      .prepare<[string], { period: string; entry: string }>('SELECT period, entry FROM ledger_entries WHERE user = ? ORDER BY id')
      .all(user)
      .map((row) => ({ ...(JSON.parse(row.entry) as LedgerEntry), period: row.period }));
  }

  private read(user: string, period: string): LedgerEntry[] {
    return this.state.db
      .prepare<[string, string], { entry: string }>('SELECT entry FROM ledger_entries WHERE user = ? AND period = ? ORDER BY id')
      .all(user, period)
      .map((row) => JSON.parse(row.entry) as LedgerEntry);
  }
}
