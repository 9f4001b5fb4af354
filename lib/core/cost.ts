/**
 * Cost and budget arithmetic. Money is in USD as numbers rounded to micro-dollars; time in ms.
 * The reservation is the source of truth for a machine's deadline: a machine can never run
 * longer than what was reserved for it, which is how spend stays under budget.
 */

/** Time EC2 may take between a terminate call and the end of billing; reserved on top of the timeout. */
export const TERMINATION_ALLOWANCE_MINUTES = 5;
/**
 * How often the reaper runs (the platform stack's schedule uses this constant). A machine whose
 * self-stop and protocol terminate both failed is found at most one period past its deadline.
 */
export const REAPER_PERIOD_MINUTES = 5;
/**
 * The longest a machine may be billed past its deadline in the worst case the design allows:
 * one reaper period until the third layer finds it, plus the time termination takes.
 */
export const PAST_DEADLINE_MINUTES = REAPER_PERIOD_MINUTES + TERMINATION_ALLOWANCE_MINUTES;
/** EC2 Linux on-demand bills per second with a one-minute minimum (EBS volumes too). */
export const MIN_BILLED_SECONDS = 60;
/** EBS gp3 in us-east-1, USD per GiB-month, when the blueprint names no price. */
export const DEFAULT_EBS_USD_PER_GIB_MONTH = 0.08;
/** AWS prices a month of storage as 730 hours. */
export const EBS_HOURS_PER_MONTH = 730;

export function roundUsd(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

/** Rounds up to micro-dollars: a reservation must never be short of what it covers. */
function ceilUsd(value: number): number {
  return Math.ceil(value * 1e6 - 1e-6) / 1e6;
}

/** What a machine's EBS volumes (root plus extra) cost per hour while they exist. */
export function storageHourlyUsd(volumeSizesGiB: readonly number[], ebsUsdPerGiBMonth: number): number {
  const totalGiB = volumeSizesGiB.reduce((sum, size) => sum + size, 0);
  return (totalGiB * ebsUsdPerGiBMonth) / EBS_HOURS_PER_MONTH;
}

/**
 * Reservation for one machine: its hourly price (instance + volumes) x (timeout + reaper period
 * + termination allowance), i.e. the longest it can be billed.
 */
export function machineReservationUsd(hourlyUsd: number, timeoutMinutes: number): number {
  return ceilUsd((hourlyUsd * (timeoutMinutes + PAST_DEADLINE_MINUTES)) / 60);
}

/** Reservation for a job: one machine per dataset. */
export function jobReservationUsd(hourlyUsd: number, timeoutMinutes: number, datasets: number): number {
  return roundUsd(machineReservationUsd(hourlyUsd, timeoutMinutes) * datasets);
}

/**
 * The deadline a machine gets from its share of the reservation: it must be terminated early
 * enough that even a reaper period and the termination allowance stay inside what was reserved.
 * Measured from the launch request, which is never after EC2's LaunchTime: billing starts later.
 */
export function deadlineFromReservation(launchRequestedAtMs: number, machineReservedUsd: number, hourlyUsd: number): number {
  const paidSeconds = (machineReservedUsd / hourlyUsd) * 3600 - PAST_DEADLINE_MINUTES * 60;
  // Whole seconds, rounded down (with a hair of tolerance for float noise): never past what is paid.
  return launchRequestedAtMs + Math.floor(paidSeconds + 1e-6) * 1000;
}

export function billableSeconds(launchedAtMs: number, terminatedAtMs: number): number {
  const seconds = Math.ceil(Math.max(0, terminatedAtMs - launchedAtMs) / 1000);
  return Math.max(MIN_BILLED_SECONDS, seconds);
}

export function machineCostUsd(hourlyUsd: number, launchedAtMs: number, terminatedAtMs: number): number {
  return roundUsd((hourlyUsd * billableSeconds(launchedAtMs, terminatedAtMs)) / 3600);
}

export function formatUsd(value: number): string {
  if (value !== 0 && Math.abs(value) < 0.01) return `$${value.toFixed(4)}`;
  return `$${value.toFixed(2)}`;
}

/** One job's line in a user's ledger for one budget period. */
export interface LedgerEntry {
  jobId: string;
  reservedUsd: number;
  /** Set once, at settlement: what the job's machines actually cost. */
  spentUsd?: number;
  reservedAtMs: number;
  settledAtMs?: number;
}

/** Money a period has committed: actual spend of settled jobs plus reservations of open ones. */
export function committedUsd(entries: readonly LedgerEntry[]): number {
  return roundUsd(entries.reduce((sum, entry) => sum + (entry.spentUsd ?? entry.reservedUsd), 0));
}

export interface ReservationRequest {
  jobId: string;
  user: string;
  period: string;
  amountUsd: number;
  budgetUsd: number;
  nowMs: number;
}

export type ReservationDecision =
  | { ok: true; entries: LedgerEntry[]; duplicate: boolean }
  | { ok: false; reason: string; remainingUsd: number };

/** Decides a reservation against a ledger snapshot; the adapter applies it atomically. Idempotent per job. */
export function decideReservation(entries: readonly LedgerEntry[], request: ReservationRequest): ReservationDecision {
  if (entries.some((entry) => entry.jobId === request.jobId)) return { ok: true, entries: [...entries], duplicate: true };
  const committed = committedUsd(entries);
  const remaining = roundUsd(request.budgetUsd - committed);
  if (request.amountUsd > remaining + 1e-9) {
    const open = roundUsd(entries.filter((e) => e.spentUsd === undefined).reduce((s, e) => s + e.reservedUsd, 0));
    return {
      ok: false,
      remainingUsd: remaining,
      reason:
        `over budget: this job needs ${formatUsd(request.amountUsd)} reserved but user "${request.user}" has ` +
        `${formatUsd(Math.max(0, remaining))} left of ${formatUsd(request.budgetUsd)} for period ${request.period} ` +
        `(${formatUsd(roundUsd(committed - open))} spent, ${formatUsd(open)} reserved by running jobs); ` +
        'submit fewer datasets or ask an admin to raise the budget',
    };
  }
  return {
    ok: true,
    duplicate: false,
    entries: [...entries, { jobId: request.jobId, reservedUsd: request.amountUsd, reservedAtMs: request.nowMs }],
  };
}

/** Replaces a job's reservation by its actual spend. Settling twice changes nothing. */
export function settleEntry(
  entries: readonly LedgerEntry[],
  jobId: string,
  spentUsd: number,
  nowMs: number,
): { entries: LedgerEntry[]; changed: boolean } {
  let changed = false;
  const next = entries.map((entry) => {
    if (entry.jobId !== jobId || entry.spentUsd !== undefined) return entry;
    changed = true;
    return { ...entry, spentUsd: roundUsd(spentUsd), settledAtMs: nowMs };
  });
  return { entries: next, changed };
}
