import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { NeuroCaasError } from '../core/errors.js';
import { isErrno, isProcessAlive } from './fs-util.js';

/**
 * The local backend's state: one SQLite database `<root>/state/neurocaas.db` (WAL mode) holding
 * jobs, submission claims, budget ledgers, job ownership leases and cancel requests. Every
 * change is one SQLite transaction, so several neurocaas processes share a root safely, and a
 * process that dies mid-write leaves the previous state (the OS drops its locks with it).
 */

/** File name of the database inside `<root>/state/`. */
export const STATE_DB_FILE = 'neurocaas.db';
/** How long a writer waits for another process's transaction before giving up, ms. */
export const BUSY_TIMEOUT_MS = 10_000;
/** A lease lasts this long unless renewed, ms. */
export const LEASE_TTL_MS = 15_000;

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  bucket TEXT NOT NULL,
  submission_key TEXT NOT NULL,
  version INTEGER NOT NULL,
  phase TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  summary TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_phase ON jobs (phase);
CREATE TABLE IF NOT EXISTS claims (
  idempotency_key TEXT PRIMARY KEY,
  job_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_entries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user TEXT NOT NULL,
  period TEXT NOT NULL,
  job_id TEXT NOT NULL,
  entry TEXT NOT NULL,
  UNIQUE (user, period, job_id)
);
CREATE TABLE IF NOT EXISTS leases (
  job_id TEXT PRIMARY KEY,
  owner_token TEXT NOT NULL,
  owner_pid INTEGER NOT NULL,
  owner_host TEXT NOT NULL,
  owner_started TEXT,
  acquired_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_owner ON leases (owner_token);
CREATE TABLE IF NOT EXISTS processes (
  owner_token TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started TEXT,
  role TEXT NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cancel_requests (
  job_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  requested_at_ms INTEGER NOT NULL
);
`;

/** The local state database could not be opened or read. */
export class StateDatabaseError extends NeuroCaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('StateDatabase', message, options);
  }
}

/** Who holds a lease: one LocalPlatform instance in one process on one host. */
export interface LeaseOwner {
  /** Random per instance: two platforms in one process are two owners. */
  token: string;
  pid: number;
  host: string;
  /** Process start time (Linux: clock ticks since boot), so a reused pid is not mistaken for the owner. */
  started: string | undefined;
}

/** A lease row as stored. */
export interface LeaseRow {
  job_id: string;
  owner_token: string;
  owner_pid: number;
  owner_host: string;
  owner_started: string | null;
  acquired_at_ms: number;
  expires_at_ms: number;
}

/** This process as a lease owner, with a fresh token. */
export function currentOwner(): LeaseOwner {
  return { token: randomBytes(8).toString('hex'), pid: process.pid, host: hostname(), started: processStartTime(process.pid) };
}

/** Start time of `pid` from /proc (field 22 of stat); undefined where there is no /proc. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields follow the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ESRCH')) return undefined;
    throw error;
  }
}

/**
 * Whether the holder of a lease (or a registered process) can still act, as seen from `me`.
 * Same host: its pid must be alive and be the same process (start time); a holder in this very
 * process with another token (a platform instance that was dropped) counts only until expiry.
 * Another host: its pid cannot be checked, so only the expiry tells.
 */
export function holderIsAlive(holder: { pid: number; host: string; started: string | null | undefined; token: string; expiresAtMs: number }, me: LeaseOwner, nowMs: number): boolean {
  if (holder.token === me.token) return true;
  if (holder.host !== me.host) return holder.expiresAtMs > nowMs;
  if (holder.pid === me.pid) return holder.expiresAtMs > nowMs;
  if (!isProcessAlive(holder.pid)) return false;
  if (holder.started) {
    const now = processStartTime(holder.pid);
    if (now !== undefined && now !== holder.started) return false;
  }
  return true;
}

function rowHolder(row: LeaseRow): { pid: number; host: string; started: string | null; token: string; expiresAtMs: number } {
  return { pid: row.owner_pid, host: row.owner_host, started: row.owner_started, token: row.owner_token, expiresAtMs: row.expires_at_ms };
}

/** Outcome of trying to take a job's lease. */
export type LeaseResult =
  | { acquired: true; previous: LeaseRow | undefined }
  | { acquired: false; holder: LeaseRow };

/**
 * One open connection to the state database. better-sqlite3 is synchronous: each statement
 * runs to completion, so a transaction never interleaves with other work of this process, and
 * SQLite's file locks (with the busy timeout) serialise it against other processes.
 */
export class StateDb {
  readonly path: string;
  readonly db: Database.Database;

  constructor(path: string) {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true });
    try {
      this.db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
      this.db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode: a committed transaction survives a process crash; only a power cut may lose the last ones.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
      this.migrate();
    } catch (error) {
      throw new StateDatabaseError(
        `cannot open the local state database ${path}: ${error instanceof Error ? error.message : String(error)}. ` +
          'If the file is damaged, stop every neurocaas process, move it aside (keep it: it holds jobs and budgets) and run again',
        { cause: error },
      );
    }
  }

  /** Runs `action` in one IMMEDIATE transaction (the write lock is taken up front, so no upgrade deadlock). */
  transaction<T>(action: () => T): T {
    return this.db.transaction(action).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`it was written by a newer neurocaas (schema ${version}, this one knows ${SCHEMA_VERSION}); upgrade neurocaas`);
    }
    if (version === SCHEMA_VERSION) return;
    this.transaction(() => {
      this.db.exec(SCHEMA);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
  }

  // ---- leases ---------------------------------------------------------------------------------

  lease(jobId: string): LeaseRow | undefined {
    return this.db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE job_id = ?').get(jobId);
  }

  /** Inserts or renews `owner`'s lease; must run inside a transaction that decided it may. */
  writeLease(jobId: string, owner: LeaseOwner, nowMs: number): void {
    this.db
      .prepare(
        `INSERT INTO leases (job_id, owner_token, owner_pid, owner_host, owner_started, acquired_at_ms, expires_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id) DO UPDATE SET owner_token = excluded.owner_token, owner_pid = excluded.owner_pid,
           owner_host = excluded.owner_host, owner_started = excluded.owner_started,
           acquired_at_ms = excluded.acquired_at_ms, expires_at_ms = excluded.expires_at_ms`,
      )
      .run(jobId, owner.token, owner.pid, owner.host, owner.started ?? null, nowMs, nowMs + LEASE_TTL_MS);
  }

  /**
   * Takes the job's lease for `owner` in one transaction: when nobody holds it, when `owner`
   * already does, or when its holder is dead (see holderIsAlive). A live holder keeps it.
   */
  acquireLease(jobId: string, owner: LeaseOwner, nowMs: number): LeaseResult {
    return this.transaction(() => {
      const current = this.lease(jobId);
      if (current && current.owner_token !== owner.token && holderIsAlive(rowHolder(current), owner, nowMs)) {
        return { acquired: false as const, holder: current };
      }
      this.writeLease(jobId, owner, nowMs);
      return { acquired: true as const, previous: current && current.owner_token !== owner.token ? current : undefined };
    });
  }

  /** Extends every lease `owner` holds; returns the job ids it still holds. */
  renewLeases(owner: LeaseOwner, nowMs: number): string[] {
    return this.transaction(() => {
      this.db.prepare('UPDATE leases SET expires_at_ms = ? WHERE owner_token = ?').run(nowMs + LEASE_TTL_MS, owner.token);
      this.db.prepare('UPDATE processes SET expires_at_ms = ? WHERE owner_token = ?').run(nowMs + LEASE_TTL_MS, owner.token);
      return this.db.prepare<[string], { job_id: string }>('SELECT job_id FROM leases WHERE owner_token = ?').all(owner.token).map((r) => r.job_id);
    });
  }

  releaseLease(jobId: string, owner: LeaseOwner): void {
    this.db.prepare('DELETE FROM leases WHERE job_id = ? AND owner_token = ?').run(jobId, owner.token);
  }

  releaseAll(owner: LeaseOwner): void {
    this.transaction(() => {
      this.db.prepare('DELETE FROM leases WHERE owner_token = ?').run(owner.token);
      this.db.prepare('DELETE FROM processes WHERE owner_token = ?').run(owner.token);
    });
  }

  // ---- processes that resume other processes' jobs (local serve) ----------------------------------

  registerResumer(owner: LeaseOwner, nowMs: number): void {
    this.db
      .prepare('INSERT OR REPLACE INTO processes (owner_token, pid, host, started, role, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)')
      .run(owner.token, owner.pid, owner.host, owner.started ?? null, 'resumer', nowMs + LEASE_TTL_MS);
  }

  /** Whether a live process other than `me` resumes orphaned jobs; dead registrations are removed. */
  otherResumerAlive(me: LeaseOwner, nowMs: number): boolean {
    const rows = this.db
      .prepare<[], { owner_token: string; pid: number; host: string; started: string | null; expires_at_ms: number }>("SELECT * FROM processes WHERE role = 'resumer'")
      .all();
    let alive = false;
    for (const row of rows) {
      if (row.owner_token === me.token) continue;
      if (holderIsAlive({ pid: row.pid, host: row.host, started: row.started, token: row.owner_token, expiresAtMs: row.expires_at_ms }, me, nowMs)) alive = true;
      else this.db.prepare('DELETE FROM processes WHERE owner_token = ?').run(row.owner_token);
    }
    return alive;
  }

  // ---- cancel requests from processes that do not own the job -----------------------------------

  requestCancel(jobId: string, reason: string, nowMs: number): void {
    this.db.prepare('INSERT OR IGNORE INTO cancel_requests (job_id, reason, requested_at_ms) VALUES (?, ?, ?)').run(jobId, reason, nowMs);
  }

  /** Removes and returns the cancel requests for jobs `owner` holds. */
  takeCancelRequests(owner: LeaseOwner): { jobId: string; reason: string }[] {
    return this.transaction(() =>
      this.db
        .prepare<[string], { job_id: string; reason: string }>(
          'DELETE FROM cancel_requests WHERE job_id IN (SELECT job_id FROM leases WHERE owner_token = ?) RETURNING job_id, reason',
        )
        .all(owner.token)
        .map((row) => ({ jobId: row.job_id, reason: row.reason })),
    );
  }

  cancelRequest(jobId: string): { reason: string } | undefined {
    return this.db.prepare<[string], { reason: string }>('SELECT reason FROM cancel_requests WHERE job_id = ?').get(jobId);
  }

  clearCancelRequest(jobId: string): void {
    this.db.prepare('DELETE FROM cancel_requests WHERE job_id = ?').run(jobId);
  }
}
