/**
 * Runs that do not end by themselves: the deadline, `neurocaas cancel`, Ctrl-C and a killed
 * CLI. Whatever stops a job, its datasets get a terminal status with a reason, the job is
 * settled and ended, and no process it started survives.
 */
import { describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  EXIT,
  grandchildPidsIn,
  JobFolder,
  ledgerEntries,
  machineRecords,
  pidsStillRunning,
  transcript,
  waitFor,
  type CliProcess,
  type MachineRecord,
  type Sandbox,
} from './helpers.js';

/** Starts `run` of a sleeping workflow in the background and waits until it is sleeping. */
async function startSleepingRun(sandbox: Sandbox, mode: 'sleep' | 'spawn-and-sleep'): Promise<{ run: CliProcess; job: JobFolder; machine: MachineRecord }> {
  const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
  const config = await sandbox.config('sleep.json', { mode, seconds: 30 });
  const run = sandbox.start(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);
  const job = await JobFolder.appears(sandbox.root, 'test-workflow', 'lab');
  await job.waitForStatus('a.csv', 'RUNNING');
  await waitFor(async () => (await job.log('a.csv').catch(() => '')).includes('sleeping 30 s'), `the workflow to sleep\n${run.transcript()}`);
  const [machine] = await machineRecords(sandbox.root);
  if (!machine) throw new Error('a running job has no machine record');
  return { run, job, machine };
}

describe('a run that reaches its deadline', () => {
  it('is stopped at the deadline with TIMED_OUT, and nothing it started keeps running', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('forever.json', { mode: 'spawn-and-sleep', seconds: 120 });

    const result = await sandbox.cli(['run', 'test-timeout', '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.failed);
    // test-timeout allows 0.1 min (6 s) per machine.
    expect(result.durationMs).toBeGreaterThanOrEqual(6_000);
    // Well before the 120 s the workflow would sleep: the deadline, not the workflow, ended it.
    expect(result.durationMs).toBeLessThan(60_000);
    const job = await JobFolder.single(sandbox.root, 'test-timeout', 'lab');
    const reason = 'reached its deadline: the analysis allows 0.1 min per dataset';
    const status = await job.status('a.csv');
    expect(status.status).toBe('TIMED_OUT');
    expect(status.reason).toBe(reason);
    expect(status.costUsd).toBeGreaterThan(0);
    expect(result.stdout).toContain(`  a.csv: TIMED_OUT`);
    expect(certificateLines(await job.certificate())).toContain(`a.csv: TIMED_OUT (${reason})`);
    expect(await job.text('end.txt')).toContain('a.csv: TIMED_OUT\n');

    const [grandchild] = grandchildPidsIn(await job.log('a.csv'));
    expect(grandchild, 'the workflow printed GRANDCHILD_PID').toBeGreaterThan(0);
    const machines = await machineRecords(sandbox.root);
    expect(machines.map((machine) => machine.state)).toEqual(['terminated']);
    expect(await pidsStillRunning([...machines.map((machine) => machine.pid), grandchild as number])).toEqual([]);
  });
});

describe('cancelling a running job', () => {
  it('with neurocaas cancel from another process ends the run with CANCELLED, kills its machine and settles the budget', async () => {
    const sandbox = await createSandbox();
    const { run, job, machine } = await startSleepingRun(sandbox, 'sleep');

    const cancel = await sandbox.cli(['cancel', job.jobId]);

    expect(cancel.code, transcript(cancel)).toBe(0);
    expect(cancel.stdout).toContain(`job ${job.jobId}: CANCELLED`);
    const result = await run.exited;
    expect(result.code, transcript(result)).toBe(EXIT.failed);
    expect(result.stdout).toContain(`job ${job.jobId}: CANCELLED`);
    // D2: the certificate and the status say who asked.
    const reason = 'cancelled: cancelled by alice (neurocaas cancel)';
    const status = await job.status('a.csv');
    expect(status.status).toBe('CANCELLED');
    expect(status.reason).toBe(reason);
    expect(certificateLines(await job.certificate())).toContain('cancel requested: cancelled by alice (neurocaas cancel)');
    expect(await job.text('end.txt')).toContain('a.csv: CANCELLED\n');
    expect(await pidsStillRunning([machine.pid])).toEqual([]);
    const entry = (await ledgerEntries(sandbox.root, 'alice')).find((e) => e.jobId === job.jobId);
    expect(entry?.spentUsd).toBeGreaterThan(0);
    expect(entry?.spentUsd).toBeLessThan(entry?.reservedUsd as number);
  });

  it('with Ctrl-C exits 130 within seconds, cancels the datasets and kills the machine', async () => {
    const sandbox = await createSandbox();
    const { run, job, machine } = await startSleepingRun(sandbox, 'spawn-and-sleep');
    const [grandchild] = grandchildPidsIn(await job.log('a.csv'));

    const signalledAt = Date.now();
    run.signal('SIGINT');
    const result = await run.exited;

    expect(result.code, transcript(result)).toBe(EXIT.interrupted);
    expect(Date.now() - signalledAt).toBeLessThan(5_000);
    expect(result.stderr).toContain('warning: SIGINT: cancelling running jobs');
    const status = await job.status('a.csv');
    expect(status.status).toBe('CANCELLED');
    expect(status.reason).toBe('cancelled: interrupted by SIGINT');
    expect(await job.text('end.txt')).toContain('a.csv: CANCELLED\n');
    expect(await pidsStillRunning([machine.pid, grandchild as number])).toEqual([]);
  });

  it('leaves nothing running when the CLI itself is killed', async () => {
    const sandbox = await createSandbox();
    const { run, job, machine } = await startSleepingRun(sandbox, 'spawn-and-sleep');
    const [grandchild] = grandchildPidsIn(await job.log('a.csv'));

    run.signal('SIGKILL');
    await run.exited;

    // The machine's lifeline to its launcher is gone: it must shut down with everything it started.
    expect(await pidsStillRunning([machine.pid, grandchild as number], 5_000)).toEqual([]);
  });

  it('is settled by the next neurocaas command when the CLI running it was killed', async () => {
    const sandbox = await createSandbox();
    const { run, job } = await startSleepingRun(sandbox, 'sleep');
    run.signal('SIGKILL');
    await run.exited;

    const jobs = await sandbox.cli(['jobs']);

    expect(jobs.code, transcript(jobs)).toBe(0);
    expect(jobs.stderr).toContain(`warning: job ${job.jobId} had lost its neurocaas process; it was cancelled and settled`);
    const status = await job.status('a.csv');
    expect(status.status).toBe('CANCELLED');
    expect(status.reason).toMatch(/^cancelled: the neurocaas process running it \(pid \d+\) stopped$/);
    expect(await job.text('end.txt')).toContain('a.csv: CANCELLED\n');
    const entry = (await ledgerEntries(sandbox.root, 'alice')).find((e) => e.jobId === job.jobId);
    expect(entry?.spentUsd).toBeGreaterThan(0);
  });
});
