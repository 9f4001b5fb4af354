/**
 * A local root on a disk that fills up while a job runs (a workflow whose log takes every byte):
 * the job must not be called SUCCEEDED, the command ends with a clear reason instead of a crash
 * or a server retrying forever, nothing it started keeps running, and the job ends (now, or by
 * the next command once there is room) with a reason that names the full disk.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSandbox, JobFolder, ledgerEntries, machineRecords, pidsStillRunning, transcript, type CliResult, type Sandbox } from './helpers.js';

const analysis = 'test-workflow';

/** Mounts an 8 MiB tmpfs as the sandbox's root; false (with why) where that is not possible. */
function smallDiskRoot(sandbox: Sandbox): boolean {
  if (process.getuid?.() !== 0) {
    console.log('skipping the full-disk case: mounting a small tmpfs needs root');
    return false;
  }
  mkdirSync(sandbox.root, { recursive: true });
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', sandbox.root]);
  if (mounted.status !== 0) {
    console.log(`skipping the full-disk case: mount -t tmpfs failed (${String(mounted.stderr).trim()})`);
    return false;
  }
  return true;
}

/** Room again (the researcher freed space): the next command ends the job, not SUCCEEDED, naming the full disk. */
async function expectEndedForTheFullDisk(sandbox: Sandbox): Promise<void> {
  expect(spawnSync('mount', ['-o', 'remount,size=64m', sandbox.root]).status).toBe(0);
  const jobs = await sandbox.cli(['jobs', '--json', '--user', 'alice']);
  expect(jobs.code, transcript(jobs)).toBe(0);
  const [view] = (JSON.parse(jobs.stdout) as { jobs: { phase: string; outcome: string; datasets: { phase: string; reason?: string }[] }[] }).jobs;
  expect(view?.phase).toBe('DONE');
  expect(view?.outcome).not.toBe('SUCCEEDED');
  expect(view?.datasets[0]?.reason).toContain(`no space left on the disk of ${sandbox.root} (`);
  expect(view?.datasets[0]?.reason).toMatch(/ free; .*free space on that disk .*then submit it again/);
  const job = await JobFolder.single(sandbox.root, analysis, 'lab');
  expect(await job.text('end.txt')).not.toMatch(/ SUCCEEDED\n/);
  for (const entry of await ledgerEntries(sandbox.root, 'alice')) expect(entry.spentUsd, `reservation of ${entry.jobId} settled`).toBeDefined();
}

/**
 * What every command stopped by the full disk must show: exit 1 with no stack trace, its one
 * machine no longer running, and then (once there is room) the job ended naming the disk.
 */
async function expectStoppedForTheFullDisk(sandbox: Sandbox, result: CliResult): Promise<void> {
  expect(result.code, transcript(result)).toBe(1);
  expect(result.stderr, transcript(result)).not.toMatch(/node:internal|\n\s+at /);
  const machines = await machineRecords(sandbox.root);
  expect(machines.length).toBe(1);
  expect(await pidsStillRunning(machines.map((m) => m.pid), 5_000)).toEqual([]);
  await expectEndedForTheFullDisk(sandbox);
}

/** Puts a dataset and a config that logs 16 MiB (on the 8 MiB disk) into alice's group; returns the group's folder. */
async function stageInBucket(sandbox: Sandbox): Promise<string> {
  const bucket = path.join(sandbox.root, 'buckets', analysis, 'lab');
  for (const [key, content] of [
    ['inputs/a.csv', 'frame,x\n1,2\n'],
    ['configs/c.json', JSON.stringify({ mode: 'succeed', logMiB: 16 })],
  ] as const) {
    await mkdir(path.dirname(path.join(bucket, key)), { recursive: true });
    await writeFile(path.join(bucket, key), content);
  }
  return bucket;
}

describe('a local root whose disk fills up while the job runs', () => {
  it('ends the run with the reason (no crash, not SUCCEEDED), leaves nothing running, and the job ends naming the full disk', async () => {
    const sandbox = await createSandbox();
    if (!smallDiskRoot(sandbox)) return;
    try {
      const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
      // 16 MiB of log into a bucket on an 8 MiB disk.
      const config = await sandbox.config('config.json', { mode: 'succeed', logMiB: 16 });

      const run = await sandbox.cli(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);

      expect(run.signal, transcript(run)).toBeNull();
      expect(run.stderr, transcript(run)).toMatch(/no space left/i);
      expect(run.stdout, transcript(run)).not.toMatch(/: SUCCEEDED/);
      await expectStoppedForTheFullDisk(sandbox, run);
    } finally {
      spawnSync('umount', ['-l', sandbox.root]);
    }
  }, 60_000);

  it('stops a local server with the reason instead of retrying the writes, and leaves nothing running', async () => {
    const sandbox = await createSandbox();
    if (!smallDiskRoot(sandbox)) return;
    try {
      const bucket = await stageInBucket(sandbox);
      const server = sandbox.start(['local', 'serve', '--poll-ms', '100'], { timeoutMs: 30_000 });
      await server.waitForStdout(/watching/);

      await mkdir(path.join(bucket, 'submissions', 'alice'), { recursive: true });
      await writeFile(path.join(bucket, 'submissions', 'alice', 'big-submit.json'), JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' }));
      const served = await server.exited;

      expect(served.stderr, transcript(served)).toMatch(/^error \[DiskFull\]: no space left on the disk of /m);
      // Stopped at the first full disk: not a warning per retried write.
      expect(served.stderr.split('\n').filter((line) => line.startsWith('warning:')).length, transcript(served)).toBeLessThan(5);
      expect(served.stdout, transcript(served)).not.toMatch(/: SUCCEEDED/);
      await expectStoppedForTheFullDisk(sandbox, served);
    } finally {
      spawnSync('umount', ['-l', sandbox.root]);
    }
  }, 60_000);

  it('stops the local web interface with the reason, and leaves nothing running', async () => {
    const sandbox = await createSandbox();
    if (!smallDiskRoot(sandbox)) return;
    try {
      await stageInBucket(sandbox);
      const ui = sandbox.start(['ui', '--port', '0', '--user', 'alice'], { timeoutMs: 30_000 });
      const url = (await ui.waitForStdout(/(http:\/\/127\.0\.0\.1:\d+\/)/))[1] as string;

      const submitted = await fetch(new URL(`/api/analyses/${analysis}/submit`, url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ datasets: ['a.csv'], config: 'c.json' }),
      });
      expect(submitted.status, await submitted.clone().text()).toBe(201);
      const stopped = await ui.exited;

      expect(stopped.stderr, transcript(stopped)).toMatch(/^error \[DiskFull\]: no space left on the disk of /m);
      await expectStoppedForTheFullDisk(sandbox, stopped);
    } finally {
      spawnSync('umount', ['-l', sandbox.root]);
    }
  }, 60_000);
});
