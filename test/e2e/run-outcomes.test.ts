/**
 * `neurocaas run` to the end: the real kalman-smoother sample, then the test workflow
 * succeeding, failing and fanning out over several datasets.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  createSharedSandbox,
  EXIT,
  JobFolder,
  kalmanSampleDir,
  machineRecords,
  repoBlueprintsDir,
  sha256OfFile,
  transcript,
  type CliResult,
  type Sandbox,
} from './helpers.js';

describe('a run of the kalman-smoother sample', () => {
  const dataset = 'reach-session1.csv';
  const sampleData = path.join(kalmanSampleDir, dataset);
  let sandbox: Sandbox & { dispose(): Promise<void> };
  let result: CliResult;
  let job: JobFolder;

  beforeAll(async () => {
    sandbox = await createSharedSandbox();
    result = await sandbox.cli(
      ['run', 'kalman-smoother', '--data', sampleData, '--config', path.join(kalmanSampleDir, 'config.json'), '--user', 'alice'],
      { blueprintsDir: repoBlueprintsDir },
    );
    job = await JobFolder.single(sandbox.root, 'kalman-smoother', 'lab');
  });
  afterAll(async () => sandbox.dispose());

  it('exits 0', () => {
    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
  });

  it('prints every workflow log line, prefixed with the dataset name, before the job ends', async () => {
    const prefix = `  [${dataset}] `;
    const logged = (await job.log(dataset)).split('\n').filter((line) => line.length > 0);
    const printed = result.stdout.split('\n').filter((line) => line.startsWith(prefix));

    expect(logged.length).toBeGreaterThan(0);
    expect(printed).toEqual(logged.map((line) => `${prefix}${line}`));
    expect(result.stdout.lastIndexOf(prefix)).toBeLessThan(result.stdout.indexOf('job finished:'));
  });

  it('prints the outcome, the results folder and what the run would cost on AWS', () => {
    expect(result.stdout).toContain(`job ${job.jobId}: SUCCEEDED`);
    expect(result.stdout).toContain(`  ${dataset}: SUCCEEDED (exit 0)`);
    expect(result.stdout).toContain(`results: ${job.dir}\n`);
    expect(result.stdout).toMatch(/^cost on AWS: \$\d+\.\d+ \(1 x m5\.large at \$0\.10\/h; \$\d+\.\d\d was reserved\)$/m);
    expect(result.stderr).toBe('');
  });

  it("copies the workflow's outputs to process_results/<dataset>/", async () => {
    const files = await job.files();
    for (const output of ['smoothed.csv', 'summary.json', 'traces.svg']) expect(files).toContain(`process_results/${dataset}/${output}`);
    expect(await job.text(`process_results/${dataset}/traces.svg`)).toMatch(/^<svg[\s>]/);
    expect(JSON.parse(await job.text(`process_results/${dataset}/summary.json`))).toBeTypeOf('object');
  });

  it('writes a SUCCEEDED status with exit code 0, the machine, a cost and every time in order', async () => {
    const status = await job.status(dataset);

    expect(status).toMatchObject({
      jobId: job.jobId,
      analysis: 'kalman-smoother',
      dataset,
      inputKey: `lab/inputs/${dataset}`,
      status: 'SUCCEEDED',
      exitCode: 0,
      instanceType: 'm5.large',
      hourlyUsd: 0.096,
    });
    expect(status.instanceId).toMatch(/^i-[0-9a-f]+$/);
    expect(status.costUsd).toBeGreaterThan(0);
    const { launchRequested, launched, agentOnline, started, finished, terminated, deadline } = status.times;
    const inOrder = [launchRequested, launched, agentOnline, started, finished, terminated].map((time) => Date.parse(time ?? 'missing'));
    expect(inOrder.every(Number.isFinite), JSON.stringify(status.times)).toBe(true);
    expect(inOrder).toEqual([...inOrder].sort((a, b) => a - b));
    expect(Date.parse(deadline ?? 'missing')).toBeGreaterThan(Date.parse(terminated ?? 'missing'));
    const log = await job.log(dataset);
    expect(status.logTail.length).toBeGreaterThan(0);
    for (const line of status.logTail) expect(log).toContain(line);
  });

  it("streams the workflow's output into logs/<dataset>.log", async () => {
    const log = await job.log(dataset);
    expect(log).toContain(`kalman-smoother: job ${job.jobId}, dataset ${dataset}`);
  });

  it('records acceptance, launch, success and the end of the job in the certificate', async () => {
    const lines = certificateLines(await job.certificate());

    expect(lines[0]).toMatch(new RegExp(`^job ${job.jobId} accepted: analysis kalman-smoother \\(blueprint sha256:[0-9a-f]{12}\\), 1 dataset\\(s\\), config lab/configs/config\\.json, user alice$`));
    expect(lines).toContain('budget reserved');
    expect(lines.some((line) => line.startsWith(`${dataset}: launching a m5.large machine`))).toBe(true);
    expect(lines).toContain(`${dataset}: SUCCEEDED`);
    expect(lines.at(-1)).toMatch(/^job finished: 1 SUCCEEDED; cost \$\d+\.\d+ of \$\d+\.\d\d reserved$/);
  });

  it('writes provenance with the blueprint version, the input sha256 and the instance type', async () => {
    const provenance = await job.provenance();

    expect(provenance.outcome).toBe('SUCCEEDED');
    expect(provenance.user).toBe('alice');
    expect(provenance.blueprint.versionId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(provenance.inputs).toEqual([
      expect.objectContaining({ dataset, key: `lab/inputs/${dataset}`, sha256: await sha256OfFile(sampleData) }),
    ]);
    expect(provenance.config.sha256).toBe(await sha256OfFile(path.join(kalmanSampleDir, 'config.json')));
    expect(provenance.environment.instanceType).toBe('m5.large');
    expect(provenance.cost.spentUsd).toBeGreaterThan(0);
  });

  it('writes end.txt with the outcome last', async () => {
    const end = await job.text('end.txt');
    expect(end).toMatch(new RegExp(`^job ${job.jobId} SUCCEEDED\\n`));
    expect(end).toContain(`${dataset}: SUCCEEDED\n`);
  });

  it('leaves its machine terminated', async () => {
    const [machine, ...others] = await machineRecords(sandbox.root);
    expect(others).toEqual([]);
    expect(machine).toMatchObject({ jobId: job.jobId, dataset, state: 'terminated' });
  });
});

describe('neurocaas run with the test workflow', () => {
  it('prints exactly one JSON document with --json', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('succeed.json', { mode: 'succeed', lines: 3 });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice', '--json']);

    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const document = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(document).toMatchObject({
      jobId: job.jobId,
      analysis: 'test-workflow',
      group: 'lab',
      outcome: 'SUCCEEDED',
      resultsDir: job.dir,
      instanceType: 't3.micro',
      datasets: [expect.objectContaining({ name: 'a.csv', status: 'SUCCEEDED', exitCode: 0, instanceId: expect.stringMatching(/^i-/) })],
    });
    expect(document['costUsd']).toBeGreaterThan(0);
    expect(result.stderr).toBe('');
  });

  it('gives the workflow its input, dataset name and job id through NCAP_* variables', async () => {
    const sandbox = await createSandbox();
    const content = 'frame,x\n1,2\n3,4\n';
    const data = await sandbox.file('a.csv', content);
    const config = await sandbox.config('succeed.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    expect(JSON.parse(await job.text('process_results/a.csv/result.json'))).toEqual({
      inputBytes: Buffer.byteLength(content),
      dataset: 'a.csv',
      jobId: job.jobId,
      mode: 'succeed',
    });
  });

  it('exits 1 and records FAILED with the exit code and the last stderr line when the workflow fails', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('fail.json', { mode: 'fail', exitCode: 7, lines: 2 });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.failed);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const status = await job.status('a.csv');
    const errorLine = 'something went wrong: asked to fail with exit code 7';
    expect(status.status).toBe('FAILED');
    expect(status.exitCode).toBe(7);
    expect(status.logTail).toContain(errorLine);
    expect(status.reason).toBe(`the workflow exited with code 7; last log line: ${errorLine}`);
    expect(result.stdout).toContain(`  a.csv: FAILED (exit 7) - the workflow exited with code 7; last log line: ${errorLine}`);
    expect(certificateLines(await job.certificate())).toContain(`a.csv: FAILED (the workflow exited with code 7; last log line: ${errorLine})`);
    expect(await job.text('end.txt')).toMatch(new RegExp(`^job ${job.jobId} FAILED\\n`));
    expect((await machineRecords(sandbox.root)).map((machine) => machine.state)).toEqual(['terminated']);
  });

  it('runs three datasets on three machines at the same time', async () => {
    const sandbox = await createSandbox();
    const names = ['a.csv', 'b.csv', 'c.csv'];
    const data = await Promise.all(names.map((name, index) => sandbox.file(`data/${name}`, 'x\n'.repeat(index + 1))));
    const config = await sandbox.config('sleep.json', { mode: 'sleep', seconds: 3 });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', ...data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const statuses = await Promise.all(names.map((name) => job.status(name)));
    expect(statuses.map((status) => status.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
    expect(new Set(statuses.map((status) => status.instanceId)).size).toBe(3);
    // Every workflow started before any of them finished: they all ran at once.
    const latestStart = Math.max(...statuses.map((status) => Date.parse(status.times.started as string)));
    const earliestFinish = Math.min(...statuses.map((status) => Date.parse(status.times.finished as string)));
    expect(latestStart).toBeLessThan(earliestFinish);
    for (const [index, name] of names.entries()) {
      expect(JSON.parse(await job.text(`process_results/${name}/result.json`))).toMatchObject({ dataset: name, inputBytes: 2 * (index + 1) });
    }
  });

  it('never runs more machines at once than the blueprint allows', async () => {
    const sandbox = await createSandbox();
    const names = ['a.csv', 'b.csv', 'c.csv', 'd.csv', 'e.csv'];
    const data = await Promise.all(names.map((name) => sandbox.file(`data/${name}`, 'x\n')));
    const config = await sandbox.config('sleep.json', { mode: 'sleep', seconds: 2 });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', ...data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
    const statuses = await Promise.all(names.map((name) => job.status(name)));
    expect(statuses.every((status) => status.status === 'SUCCEEDED')).toBe(true);
    // test-workflow allows 4 concurrent machines: count overlapping launch..terminate intervals.
    const edges = statuses.flatMap((status) => [
      { atMs: Date.parse(status.times.launchRequested as string), change: 1 },
      { atMs: Date.parse(status.times.terminated as string), change: -1 },
    ]);
    edges.sort((a, b) => a.atMs - b.atMs || a.change - b.change);
    let alive = 0;
    let mostAlive = 0;
    for (const edge of edges) {
      alive += edge.change;
      mostAlive = Math.max(mostAlive, alive);
    }
    expect(mostAlive).toBe(4);
  });
});

describe('the files a run stages', () => {
  it('reuses an identical input already in the bucket and keeps the bucket copy byte for byte', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('succeed.json', { mode: 'succeed' });

    const first = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);
    const second = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);

    expect(first.code, transcript(first)).toBe(EXIT.succeeded);
    expect(second.code, transcript(second)).toBe(EXIT.succeeded);
    expect(second.stdout).toContain('using lab/inputs/a.csv (already uploaded, identical)');
    expect(await readFile(sandbox.bucketPath('test-workflow', 'lab/inputs/a.csv'), 'utf8')).toBe('frame,x\n1,2\n');
  });
});
