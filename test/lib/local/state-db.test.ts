/**
 * The local state database under several processes: leases are taken over only from a dead
 * holder, writes exclude each other across processes, and nothing a crashed process leaves
 * (an open transaction, WAL files, an empty file) wedges the root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalLedger } from '../../../lib/local/ledger.js';
import { LocalJobStore } from '../../../lib/local/job-store.js';
import { currentOwner, holderIsAlive, LEASE_TTL_MS, StateDb, StateDatabaseError, type LeaseOwner } from '../../../lib/local/state-db.js';
import { recordFixture } from '../../contracts/job-store.contract.js';

const distStateDb = fileURLToPath(new URL('../../../dist/lib/local/state-db.js', import.meta.url));
const distLedger = fileURLToPath(new URL('../../../dist/lib/local/ledger.js', import.meta.url));
// The child processes run the compiled modules; a missing build must not look like a product failure.
if (!existsSync(distStateDb)) throw new Error(`${distStateDb} does not exist: run npm run build first (npm test builds before running vitest)`);

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-statedb-'));
  dirs.push(dir);
  return join(dir, 'state', 'neurocaas.db');
}

/** Runs an ES module snippet in a child node process; resolves on its first stdout line. */
function child(code: string): { process: ChildProcess; firstLine: Promise<string>; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  const firstLine = new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`child exited (${code}) before printing`)));
  });
  firstLine.catch(() => undefined);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { process: proc, firstLine, exited };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms))]);
}

/** A child that takes job J1's lease (as if `atMs` were now) and holds it until killed. */
function leaseHolder(path: string, atMs: number) {
  return child(`
    import { StateDb, currentOwner } from ${JSON.stringify(distStateDb)};
    const db = new StateDb(${JSON.stringify(path)});
    const result = db.acquireLease('J1', currentOwner(), ${atMs});
    console.log(result.acquired ? 'held' : 'refused');
    setInterval(() => {}, 1000);
  `);
}

describe('job leases', () => {
  it('are never taken from a live holder, even when its lease has expired', async () => {
    const path = dbPath();
    const holder = leaseHolder(path, 0);
    expect(await within(holder.firstLine, 10_000, 'the holder to take the lease')).toBe('held');
    const db = new StateDb(path);

    const result = db.acquireLease('J1', currentOwner(), Date.now());

    expect(result.acquired).toBe(false);
    if (!result.acquired) expect(result.holder.owner_pid).toBe(holder.process.pid);
    db.close();
  });

  it('are taken over, in one transaction, once their holder is dead', async () => {
    const path = dbPath();
    const holder = leaseHolder(path, Date.now());
    expect(await within(holder.firstLine, 10_000, 'the holder to take the lease')).toBe('held');
    holder.process.kill('SIGKILL');
    await holder.exited;
    const db = new StateDb(path);
    const me = currentOwner();

    const result = db.acquireLease('J1', me, Date.now());

    expect(result.acquired).toBe(true);
    if (result.acquired) expect(result.previous?.owner_pid).toBe(holder.process.pid);
    expect(db.lease('J1')?.owner_token).toBe(me.token);
    db.close();
  });

  it('lets exactly one of several processes take over a dead holder’s lease', async () => {
    const path = dbPath();
    const holder = leaseHolder(path, Date.now());
    await within(holder.firstLine, 10_000, 'the holder to take the lease');
    holder.process.kill('SIGKILL');
    await holder.exited;

    const contenders = Array.from({ length: 4 }, () => leaseHolder(path, Date.now()));
    const answers = await within(Promise.all(contenders.map((c) => c.firstLine)), 20_000, 'the contenders to answer');

    expect(answers.filter((a) => a === 'held')).toHaveLength(1);
  });

  it('of another host are taken only after they expire (its pid cannot be checked from here)', () => {
    const me = currentOwner();
    const remote = { pid: 1, host: `${me.host}-elsewhere`, started: undefined, token: 'remote' };
    expect(holderIsAlive({ ...remote, expiresAtMs: 2_000 }, me, 1_000)).toBe(true);
    expect(holderIsAlive({ ...remote, expiresAtMs: 2_000 }, me, 2_000)).toBe(false);
  });

  it('count a reused pid (another start time) as a dead holder', () => {
    const me = currentOwner();
    const other: LeaseOwner = { ...me, token: 'other', pid: process.ppid };
    expect(holderIsAlive({ ...other, started: undefined, expiresAtMs: 0 }, me, 1)).toBe(true);
    expect(holderIsAlive({ ...other, started: 'not-its-start-time', expiresAtMs: 0 }, me, 1)).toBe(process.platform !== 'linux');
  });

  it('are renewed by their holder and released when it closes', () => {
    const db = new StateDb(dbPath());
    const me = currentOwner();
    db.acquireLease('J1', me, 1_000);
    expect(db.renewLeases(me, 5_000)).toEqual(['J1']);
    expect(db.lease('J1')?.expires_at_ms).toBe(5_000 + LEASE_TTL_MS);
    db.releaseAll(me);
    expect(db.lease('J1')).toBeUndefined();
    db.close();
  });

  it('make the job store refuse writes from a process that does not hold the job', async () => {
    const db = new StateDb(dbPath());
    const first = currentOwner();
    const second = currentOwner();
    const mine = new LocalJobStore(db, first);
    const theirs = new LocalJobStore(db, second);
    await mine.claimAndCreate('k#e', recordFixture('J1'));

    await expect(theirs.update({ ...recordFixture('J1'), version: 2 })).rejects.toMatchObject({ code: 'LeaseLost' });
    await mine.update({ ...recordFixture('J1'), version: 2 });
    expect((await mine.get('J1'))?.version).toBe(2);
    db.close();
  });
});

describe('the state database across processes', () => {
  it('never over-commits a budget when six processes reserve at once', async () => {
    const path = dbPath();
    new StateDb(path).close();
    const workers = Array.from({ length: 6 }, (_, w) =>
      child(`
        import { StateDb } from ${JSON.stringify(distStateDb)};
        import { LocalLedger } from ${JSON.stringify(distLedger)};
        const ledger = new LocalLedger(new StateDb(${JSON.stringify(path)}));
        let ok = 0;
        for (let i = 0; i < 20; i += 1) {
          const r = await ledger.reserve({ user: 'alice', period: 'p', jobId: 'W${w}-' + i, amountUsd: 1, budgetUsd: 50, nowMs: 1 });
          if (r.ok) ok += 1;
        }
        console.log(String(ok));
      `),
    );

    const granted = (await within(Promise.all(workers.map((w) => w.firstLine)), 30_000, 'the workers to finish')).map(Number);

    expect(granted.reduce((a, b) => a + b, 0)).toBe(50);
    const entries = await new LocalLedger(new StateDb(path)).entries('alice', 'p');
    expect(entries).toHaveLength(50);
  });

  it('is usable again right after a process died inside a write transaction', async () => {
    const path = dbPath();
    const dying = child(`
      import { StateDb } from ${JSON.stringify(distStateDb)};
      const db = new StateDb(${JSON.stringify(path)});
      db.db.exec('BEGIN IMMEDIATE');
      db.db.prepare("INSERT INTO claims (idempotency_key, job_id) VALUES ('half', 'J0')").run();
      console.log('in transaction');
      setInterval(() => {}, 1000);
    `);
    await within(dying.firstLine, 10_000, 'the child to hold the write lock');
    dying.process.kill('SIGKILL');
    await dying.exited;
    const db = new StateDb(path);
    const store = new LocalJobStore(db);

    const started = Date.now();
    expect(await store.claimAndCreate('k#e', recordFixture('J1'))).toEqual({ claimed: true });

    // The lock went with the process (no waiting out the busy timeout) and its half write with it.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await store.claimSubmission('half', 'J9')).toEqual({ claimed: true });
    db.close();
  });

  it('starts from an empty database file (a crash while creating it)', async () => {
    const path = dbPath();
    new StateDb(path).close();
    rmSync(path);
    writeFileSync(path, '');

    const store = new LocalJobStore(new StateDb(path));

    expect(await store.claimAndCreate('k#e', recordFixture('J1'))).toEqual({ claimed: true });
  });

  it('refuses a damaged database with what to do, instead of losing it', () => {
    const path = dbPath();
    new StateDb(path).close();
    rmSync(path);
    writeFileSync(path, 'this is not a database, but it is somebody’s jobs and budgets'.repeat(100));

    const open = () => new StateDb(path);

    expect(open).toThrow(StateDatabaseError);
    expect(open).toThrow(/move it aside/);
    expect(existsSync(path)).toBe(true);
  });
});
