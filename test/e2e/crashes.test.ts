/**
 * A CLI killed (SIGKILL) at every phase of a job. The next neurocaas command brings the job to
 * an end with a reason in one pass, or a running `local serve` resumes it; nothing it started
 * keeps running and every reservation is settled. The CLI kills itself at the chosen point
 * through the NEUROCAAS_TEST_CRASH_AT hook (submitted, claimed, reserving, launched); a kill
 * while running is driven by the job's own status files.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  JobFolder,
  jobFolderNames,
  ledgerEntries,
  machineRecords,
  pidsStillRunning,
  transcript,
  type Sandbox,
} from './helpers.js';

const analysis = 'test-workflow';

/** Runs `neurocaas run` with the crash hook; resolves once the CLI has killed itself. */
async function runAndCrash(sandbox: Sandbox, point: string, config: unknown = { mode: 'sleep', seconds: 1 }): Promise<void> {
  const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
  const configFile = await sandbox.config('config.json', config);
  const result = await sandbox.cli(['run', analysis, '--data', data, '--config', configFile, '--user', 'alice'], { env: { NEUROCAAS_TEST_CRASH_AT: point } });
  expect(result.signal, transcript(result)).toBe('SIGKILL');
}

/** No machine process the backend ever started is alive (bounded wait for their lifelines). */
async function expectNothingRunning(sandbox: Sandbox): Promise<void> {
  const machines = await machineRecords(sandbox.root);
  expect(await pidsStillRunning(machines.map((m) => m.pid), 5_000)).toEqual([]);
}

async function expectSettled(sandbox: Sandbox): Promise<void> {
  for (const entry of await ledgerEntries(sandbox.root, 'alice')) expect(entry.spentUsd, `reservation of ${entry.jobId} settled`).toBeDefined();
}

describe('a CLI killed at any moment, then one neurocaas jobs', () => {
  it('right after writing its submission: nothing was claimed, and a server later runs the submission', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'submitted', { mode: 'succeed' });

    const jobs = await sandbox.cli(['jobs']);

    expect(jobs.code, transcript(jobs)).toBe(0);
    expect(jobs.stdout).toMatch(/^no jobs/);
    const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);
    const job = await JobFolder.appears(sandbox.root, analysis, 'lab');
    expect(await job.waitForEnd()).toMatch(/ SUCCEEDED\n/);
    server.signal('SIGTERM');
    await server.exited;
  });

  it('right after the claim: the job is rejected with the reason (it was never evaluated)', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'claimed');

    const jobs = await sandbox.cli(['jobs']);

    expect(jobs.code, transcript(jobs)).toBe(0);
    const job = await JobFolder.single(sandbox.root, analysis, 'lab');
    expect(await job.text('end.txt')).toMatch(/^job \S+ REJECTED\n/);
    expect(certificateLines(await job.certificate()).join('\n')).toMatch(
      /the job was stopped before its submission was evaluated: the neurocaas process running it \(pid \d+\) stopped/,
    );
    expect(await machineRecords(sandbox.root)).toEqual([]);
  });

  for (const point of ['reserving', 'launched'] as const) {
    it(`while ${point === 'reserving' ? 'reserving budget' : 'launching a machine'}: cancelled and settled, nothing left running`, async () => {
      const sandbox = await createSandbox();
      await runAndCrash(sandbox, point);

      const jobs = await sandbox.cli(['jobs']);

      expect(jobs.code, transcript(jobs)).toBe(0);
      const job = await JobFolder.single(sandbox.root, analysis, 'lab');
      expect(jobs.stderr).toContain(`job ${job.jobId} had lost its neurocaas process; it was cancelled and settled`);
      expect(await job.text('end.txt')).toContain('a.csv: CANCELLED\n');
      const status = await job.status('a.csv');
      expect(status.status).toBe('CANCELLED');
      expect(status.reason).toMatch(/^cancelled: the neurocaas process running it \(pid \d+\) stopped$/);
      await expectSettled(sandbox);
      await expectNothingRunning(sandbox);
    });
  }
});

describe('a CLI killed at any moment, then another neurocaas run', () => {
  it('while launching: the next run first cancels and settles the orphan, then runs its own job', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'launched');
    const data = await sandbox.file('b.csv', 'frame,x\n1,2\n');
    const configFile = await sandbox.config('succeed.json', { mode: 'succeed' });

    const next = await sandbox.cli(['run', analysis, '--data', data, '--config', configFile, '--user', 'alice']);

    expect(next.code, transcript(next)).toBe(0);
    const names = await jobFolderNames(sandbox.root, analysis, 'lab');
    expect(names).toHaveLength(2);
    const ends = await Promise.all(names.map((name) => JobFolder.fromName(sandbox.root, analysis, 'lab', name).text('end.txt')));
    expect(ends.filter((text) => / SUCCEEDED\n/.test(text))).toHaveLength(1);
    expect(ends.filter((text) => / FAILED\n/.test(text))).toHaveLength(1);
    await expectSettled(sandbox);
    await expectNothingRunning(sandbox);
  });
});

describe('a CLI killed at any moment, with a local serve running', () => {
  it('after the claim: the server evaluates the job and runs it to the end', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'claimed', { mode: 'succeed' });

    const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);

    const job = await JobFolder.appears(sandbox.root, analysis, 'lab');
    expect(await job.waitForEnd(), server.transcript()).toMatch(/ SUCCEEDED\n/);
    expect(server.stderr).toContain(`job ${job.jobId} had lost its process; resumed here`);
    expect(await machineRecords(sandbox.root)).toHaveLength(1);
    server.signal('SIGTERM');
    await server.exited;
  });

  it('while reserving: the server replays the reservation and runs the job', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'reserving', { mode: 'succeed' });

    const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);

    const job = await JobFolder.single(sandbox.root, analysis, 'lab');
    expect(await job.waitForEnd(), server.transcript()).toMatch(/ SUCCEEDED\n/);
    await expectSettled(sandbox);
    server.signal('SIGTERM');
    await server.exited;
  });

  it('while its machine launched: the dataset fails with the reason, nothing runs twice', async () => {
    const sandbox = await createSandbox();
    await runAndCrash(sandbox, 'launched', { mode: 'succeed' });

    const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);

    const job = await JobFolder.single(sandbox.root, analysis, 'lab');
    expect(await job.waitForEnd(), server.transcript()).toContain('a.csv: FAILED\n');
    const status = await job.status('a.csv');
    expect(status.reason).toMatch(/its machine stopped with the neurocaas process that ran the job \(the neurocaas process running it \(pid \d+\) stopped\)/);
    expect(await machineRecords(sandbox.root)).toHaveLength(1);
    await expectSettled(sandbox);
    await expectNothingRunning(sandbox);
    server.signal('SIGTERM');
    await server.exited;
  });

  it('while running: the dataset fails with the reason and the job ends', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('sleep.json', { mode: 'sleep', seconds: 30 });
    const run = sandbox.start(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);
    const job = await JobFolder.appears(sandbox.root, analysis, 'lab');
    await job.waitForStatus('a.csv', 'RUNNING');
    run.signal('SIGKILL');
    await run.exited;

    const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);

    expect(await job.waitForEnd(), server.transcript()).toContain('a.csv: FAILED\n');
    expect((await job.status('a.csv')).reason).toContain('its machine stopped with the neurocaas process that ran the job');
    await expectSettled(sandbox);
    await expectNothingRunning(sandbox);
    expect(await jobFolderNames(sandbox.root, analysis, 'lab')).toHaveLength(1);
    server.signal('SIGTERM');
    await server.exited;
  });
});

describe('a damaged local root', () => {
  it('with an empty state database (a crash while creating it) still runs jobs', async () => {
    const sandbox = await createSandbox();
    await mkdir(path.join(sandbox.root, 'state'), { recursive: true });
    await writeFile(path.join(sandbox.root, 'state', 'neurocaas.db'), '');
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(0);
  });
});
