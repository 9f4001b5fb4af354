/**
 * A local root on a disk that fills up while a job runs (a workflow whose log takes every byte):
 * the job must not be called SUCCEEDED, the CLI ends with a clear reason instead of a crash,
 * nothing it started keeps running, and once there is room again the job is ended and settled.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createSandbox, JobFolder, ledgerEntries, machineRecords, pidsStillRunning, transcript } from './helpers.js';

const analysis = 'test-workflow';

describe('a local root whose disk fills up while the job runs', () => {
  it('ends the run with the reason (no crash, not SUCCEEDED), leaves nothing running, and the next command settles the job', async () => {
    if (process.getuid?.() !== 0) {
      console.log('skipping the full-disk case: mounting a small tmpfs needs root');
      return;
    }
    const sandbox = await createSandbox();
    mkdirSync(sandbox.root, { recursive: true });
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', sandbox.root]);
    if (mounted.status !== 0) {
      console.log(`skipping the full-disk case: mount -t tmpfs failed (${String(mounted.stderr).trim()})`);
      return;
    }
    try {
      const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
      // 16 MiB of log into a bucket on an 8 MiB disk.
      const config = await sandbox.config('config.json', { mode: 'succeed', logMiB: 16 });

      const run = await sandbox.cli(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);

      expect(run.code, transcript(run)).toBe(1);
      expect(run.signal, transcript(run)).toBeNull();
      expect(run.stderr, transcript(run)).not.toMatch(/node:internal|\n\s+at /);
      expect(run.stderr, transcript(run)).toMatch(/no space left/i);
      expect(run.stdout, transcript(run)).not.toMatch(/: SUCCEEDED/);
      const machines = await machineRecords(sandbox.root);
      expect(machines.length).toBe(1);
      expect(await pidsStillRunning(machines.map((m) => m.pid), 5_000)).toEqual([]);

      // Room again (the researcher freed space): the next command ends the job, not SUCCEEDED.
      expect(spawnSync('mount', ['-o', 'remount,size=64m', sandbox.root]).status).toBe(0);
      const jobs = await sandbox.cli(['jobs', '--json', '--user', 'alice']);
      expect(jobs.code, transcript(jobs)).toBe(0);
      const [view] = (JSON.parse(jobs.stdout) as { jobs: { phase: string; outcome: string; datasets: { phase: string; reason?: string }[] }[] }).jobs;
      expect(view?.phase).toBe('DONE');
      expect(view?.outcome).not.toBe('SUCCEEDED');
      expect(view?.datasets[0]?.reason).toBeTruthy();
      const job = await JobFolder.single(sandbox.root, analysis, 'lab');
      expect(await job.text('end.txt')).not.toMatch(/ SUCCEEDED\n/);
      for (const entry of await ledgerEntries(sandbox.root, 'alice')) expect(entry.spentUsd, `reservation of ${entry.jobId} settled`).toBeDefined();
    } finally {
      spawnSync('umount', ['-l', sandbox.root]);
    }
  }, 60_000);
});
