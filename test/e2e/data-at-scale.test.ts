/**
 * The local backend with data of real sizes: an input over 2 GiB (sparse, so the test does not
 * write gigabytes) and hundreds of MiB of log, with the CLI's peak resident memory (VmHWM)
 * bounded; two inputs whose names only differ by folders. Timings go to bench/, not here.
 */
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalPlatform } from '../../protocols/local-shell.js';
import { EXIT, JobFolder, cliPath, createSandbox, fixtureBlueprintsDir, fixtureUsersDir, machineRecords, pidsStillRunning } from './helpers.js';

/** Generous: node itself takes ~60 MB; what must not happen is growing with the data. */
const CLI_PEAK_RSS_LIMIT_BYTES = 250 * 1024 * 1024;

interface MeasuredRun {
  code: number | null;
  stdoutBytes: number;
  stdoutTail: string;
  stderr: string;
  peakRssBytes: number;
}

/**
 * Runs the CLI with its output counted rather than kept (it may print hundreds of MiB) and its
 * peak resident memory read from /proc/<pid>/status (VmHWM) until it exits.
 */
async function measuredCli(root: string, cwd: string, args: string[], timeoutMs: number): Promise<MeasuredRun> {
  const child = spawn(process.execPath, [cliPath, ...args, '--root', root, '--blueprints', fixtureBlueprintsDir, '--users', fixtureUsersDir], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdoutBytes = 0;
  let stdoutTail = '';
  let stderr = '';
  let peakRssBytes = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    stdoutBytes += chunk.length;
    stdoutTail = (stdoutTail + chunk.toString('utf8')).slice(-4096);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-16_384)));
  const sample = (): void => {
    try {
      const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      if (kib) peakRssBytes = Math.max(peakRssBytes, Number(kib) * 1024);
    } catch {
      // It has just exited; the last sample stands.
    }
  };
  const sampler = setInterval(sample, 50);
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearInterval(sampler);
  clearTimeout(killer);
  return { code, stdoutBytes, stdoutTail, stderr, peakRssBytes };
}

describe('data of real sizes on the local backend', () => {
  it('stages and runs an input over 2 GiB with the CLI memory independent of its size', async () => {
    const sandbox = await createSandbox();
    const input = path.join(sandbox.work, 'movie.bin');
    const size = 2 * 1024 ** 3 + 5 * 1024 ** 2;
    const fd = openSync(input, 'w');
    writeSync(fd, 'frames');
    ftruncateSync(fd, size);
    closeSync(fd);
    const config = await sandbox.config('ok.json', { mode: 'succeed' });

    const run = await measuredCli(sandbox.root, sandbox.work, ['run', 'test-workflow', '--data', input, '--config', config, '--user', 'alice'], 150_000);

    expect(run.code, `${run.stdoutTail}\n${run.stderr}`).toBe(EXIT.succeeded);
    expect(run.peakRssBytes).toBeGreaterThan(0);
    expect(run.peakRssBytes).toBeLessThan(CLI_PEAK_RSS_LIMIT_BYTES);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const result = JSON.parse(await job.text('process_results/movie.bin/result.json')) as { inputBytes: number };
    expect(result.inputBytes).toBe(size);
    const provenance = JSON.stringify(await job.provenance());
    expect(provenance).toMatch(/[0-9a-f]{64}/);
  }, 180_000);

  it('ships and follows 200 MiB of log and a 64 MiB line without a newline in bounded memory', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'x\n');
    const config = await sandbox.config('loud.json', { mode: 'succeed', logMiB: 200, unterminatedLogMiB: 64 });

    const run = await measuredCli(sandbox.root, sandbox.work, ['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice'], 150_000);

    expect(run.code, `${run.stdoutTail}\n${run.stderr}`).toBe(EXIT.succeeded);
    expect(run.peakRssBytes).toBeLessThan(CLI_PEAK_RSS_LIMIT_BYTES);
    // Every byte of the log was printed (with the dataset prefix on each line or piece).
    expect(run.stdoutBytes).toBeGreaterThan(264 * 1024 * 1024);
    expect(run.stdoutTail).toContain('a.csv: SUCCEEDED');
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const status = await job.status('a.csv');
    expect(status.logTail.every((line) => line.length <= 400)).toBe(true);
  }, 180_000);
});

describe('dataset names on the local backend', () => {
  it('runs a/b.csv and a__b.csv as two datasets and keeps both results', async () => {
    const sandbox = await createSandbox();
    const platform = new LocalPlatform({ root: sandbox.root, blueprintsDir: fixtureBlueprintsDir, usersDir: fixtureUsersDir });
    try {
      await platform.objects.put('test-workflow', 'lab/inputs/a/b.csv', 'nested\n');
      await platform.objects.put('test-workflow', 'lab/inputs/a__b.csv', 'flat!\n');
      await platform.objects.put('test-workflow', 'lab/configs/ok.json', JSON.stringify({ mode: 'succeed' }));
      await platform.objects.put(
        'test-workflow',
        'lab/submissions/alice/twosubmit.json',
        JSON.stringify({ dataname: ['lab/inputs/a/b.csv', 'lab/inputs/a__b.csv'], configname: 'lab/configs/ok.json' }),
      );
      const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/alice/twosubmit.json', 'alice');
      const state = await platform.waitForJob(jobId);

      expect(state.phase).toBe('DONE');
      expect(state.datasets.map((ds) => [ds.name, ds.phase])).toEqual([
        ['a%2Fb.csv', 'SUCCEEDED'],
        ['a__b.csv', 'SUCCEEDED'],
      ]);
      const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
      const nested = JSON.parse(await job.text('process_results/a%2Fb.csv/result.json')) as { inputBytes: number };
      const flat = JSON.parse(await job.text('process_results/a__b.csv/result.json')) as { inputBytes: number };
      expect([nested.inputBytes, flat.inputBytes]).toEqual([7, 6]);
    } finally {
      await platform.close();
    }
    expect(await pidsStillRunning((await machineRecords(sandbox.root)).map((m) => m.pid))).toEqual([]);
  }, 60_000);
});
