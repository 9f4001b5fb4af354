/**
 * `neurocaas local serve`: the researcher's workflow with plain file copies into the local
 * bucket folders, no CLI call per job.
 */
import { copyFile, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  isRunning,
  jobFolderNames,
  ledgerEntries,
  JobFolder,
  machineRecords,
  pidsStillRunning,
  type CliProcess,
  waitFor,
  type Sandbox,
} from './helpers.js';

const analysis = 'test-workflow';
const group = 'lab';

async function startServer(sandbox: Sandbox): Promise<CliProcess> {
  const server = sandbox.start(['local', 'serve', '--poll-ms', '200']);
  await server.waitForStdout(/watching .* for \*submit\.json/);
  return server;
}

/** Copies a file into the bucket the way a researcher would (cp), creating folders. */
async function copyIntoBucket(sandbox: Sandbox, source: string, key: string): Promise<void> {
  const target = sandbox.bucketPath(analysis, key);
  await mkdir(path.dirname(target), { recursive: true });
  await copyFile(source, target);
}

/** Puts a dataset and a config into the group's inputs/ and configs/ folders. */
async function uploadDatasetAndConfig(sandbox: Sandbox, config: unknown): Promise<void> {
  await copyIntoBucket(sandbox, await sandbox.file('a.csv', 'frame,x\n1,2\n'), `${group}/inputs/a.csv`);
  await copyIntoBucket(sandbox, await sandbox.config('config.json', config), `${group}/configs/config.json`);
}

/** Writes a submission file locally, then copies it into submissions/ (the trigger). */
async function submit(sandbox: Sandbox, name: string, submission: unknown): Promise<void> {
  const local = await sandbox.file(`submissions/${name}`, typeof submission === 'string' ? submission : JSON.stringify(submission));
  await copyIntoBucket(sandbox, local, `${group}/submissions/${name}`);
}

const validSubmission = { dataname: `${group}/inputs/a.csv`, configname: `${group}/configs/config.json`, timestamp: '2026-11-22T12:00:00Z' };

/** The finished job whose provenance names this submission key, if there is one yet. */
async function finishedJobOf(sandbox: Sandbox, submissionKey: string): Promise<JobFolder | undefined> {
  for (const name of await jobFolderNames(sandbox.root, analysis, group)) {
    const job = JobFolder.fromName(sandbox.root, analysis, group, name);
    if (job.has('end.txt') && job.has('provenance.json') && (await job.provenance()).submission.key === submissionKey) return job;
  }
  return undefined;
}

describe('neurocaas local serve', () => {
  it('runs a submission dropped into the submissions folder and writes its results', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);
    await uploadDatasetAndConfig(sandbox, { mode: 'succeed', lines: 2 });

    await submit(sandbox, 'xyzsubmit.json', validSubmission);

    const job = await JobFolder.appears(sandbox.root, analysis, group);
    const end = await job.waitForEnd();
    expect(end).toMatch(new RegExp(`^job ${job.jobId} SUCCEEDED\\n`));
    const status = await job.status('a.csv');
    expect(status).toMatchObject({ status: 'SUCCEEDED', exitCode: 0, instanceType: 't3.micro' });
    expect(JSON.parse(await job.text('process_results/a.csv/result.json'))).toMatchObject({ dataset: 'a.csv', jobId: job.jobId, inputBytes: 12 });
    const provenance = await job.provenance();
    expect(provenance.user).toBe('alice');
    expect(provenance.submission.key).toBe(`${group}/submissions/xyzsubmit.json`);
    await server.waitForStdout(new RegExp(`job ${job.jobId} \\(${analysis}\\): SUCCEEDED`));
    expect(server.stdout).toContain(`${analysis}/${group}/submissions/xyzsubmit.json: job ${job.jobId}`);
    expect(await jobFolderNames(sandbox.root, analysis, group)).toHaveLength(1);
  });

  it('uses the instance type a submission asks for', async () => {
    const sandbox = await createSandbox();
    await startServer(sandbox);
    await uploadDatasetAndConfig(sandbox, { mode: 'succeed' });

    await submit(sandbox, 'smallsubmit.json', { ...validSubmission, instance_type: 't3.small' });

    const job = await JobFolder.appears(sandbox.root, analysis, group);
    await job.waitForEnd();
    expect(await job.status('a.csv')).toMatchObject({ status: 'SUCCEEDED', instanceType: 't3.small', hourlyUsd: 0.0208 });
    expect((await job.provenance()).environment.instanceType).toBe('t3.small');
  });

  it('rejects a submission that is not valid JSON with a reason in the group results folder', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);

    await submit(sandbox, 'badsubmit.json', '{"dataname": "lab/inputs/a.csv", ');

    const job = await JobFolder.appears(sandbox.root, analysis, group);
    const end = await job.waitForEnd();
    expect(end).toMatch(new RegExp(`^job ${job.jobId} REJECTED\\n`));
    const lines = certificateLines(await job.certificate());
    expect(lines[0]).toBe(`job ${job.jobId} REJECTED, nothing was launched:`);
    expect(lines[1]).toMatch(/^ {2}- lab\/submissions\/badsubmit\.json is not valid JSON \(.+\); expected \{"dataname": \.\.\., "configname": \.\.\.\}$/);
    expect(await machineRecords(sandbox.root)).toEqual([]);
    expect(server.running).toBe(true);
  });

  it('does not run a submission again when the server restarts', async () => {
    const sandbox = await createSandbox();
    await uploadDatasetAndConfig(sandbox, { mode: 'succeed' });
    const first = await startServer(sandbox);
    await submit(sandbox, 'xyzsubmit.json', validSubmission);
    const firstJob = await JobFolder.appears(sandbox.root, analysis, group);
    await firstJob.waitForEnd();
    first.signal('SIGTERM');
    await first.exited;

    const second = await startServer(sandbox);
    // A new submission proves the restarted server has scanned the folder that still holds the old one.
    await submit(sandbox, 'secondsubmit.json', validSubmission);
    await second.waitForStdout(/submissions\/secondsubmit\.json: job (\S+)/);
    await waitFor(() => finishedJobOf(sandbox, `${group}/submissions/secondsubmit.json`), 'the second submission to finish', 20_000);

    expect(await jobFolderNames(sandbox.root, analysis, group)).toHaveLength(2);
    expect((await finishedJobOf(sandbox, `${group}/submissions/xyzsubmit.json`))?.jobId).toBe(firstJob.jobId);
    // The restarted server recognises the old submission as the job it already was.
    for (const line of second.stdout.split('\n').filter((l) => l.includes('xyzsubmit.json'))) {
      expect(line).toBe(`${analysis}/${group}/submissions/xyzsubmit.json: job ${firstJob.jobId}`);
    }
    expect((await ledgerEntries(sandbox.root, 'alice')).map((entry) => entry.jobId)).toHaveLength(2);
  });

  it('waits for a submission file to be completely written before running it', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);
    await uploadDatasetAndConfig(sandbox, { mode: 'succeed' });
    const text = JSON.stringify(validSubmission);
    const target = sandbox.bucketPath(analysis, `${group}/submissions/slowsubmit.json`);
    await mkdir(path.dirname(target), { recursive: true });

    // A slow copy (large file, network share): the file exists, half written, for a while.
    const handle = await open(target, 'w');
    await handle.write(text.slice(0, 20));
    await handle.sync();
    await sleep(1_000);
    await handle.write(text.slice(20));
    await handle.close();

    const job = await JobFolder.appears(sandbox.root, analysis, group);
    await job.waitForEnd();
    await sleep(1_000);
    const names = await jobFolderNames(sandbox.root, analysis, group);
    const outcomes = await Promise.all(names.map(async (name) => (await JobFolder.fromName(sandbox.root, analysis, group, name).text('end.txt')).split('\n')[0]));
    expect(outcomes, server.transcript()).toEqual([expect.stringMatching(/ SUCCEEDED$/)]);
  });

  it('stops on SIGTERM, cancelling the job it runs and killing its machine', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);
    await uploadDatasetAndConfig(sandbox, { mode: 'sleep', seconds: 30 });
    await submit(sandbox, 'longsubmit.json', validSubmission);
    const job = await JobFolder.appears(sandbox.root, analysis, group);
    await job.waitForStatus('a.csv', 'RUNNING');
    const [machine] = await machineRecords(sandbox.root);

    const signalledAt = Date.now();
    server.signal('SIGTERM');
    const result = await server.exited;

    expect(Date.now() - signalledAt).toBeLessThan(5_000);
    expect(result.signal).toBeNull();
    expect(result.stdout).toContain('stopping: cancelling running jobs');
    const status = await job.status('a.csv');
    expect(status.status).toBe('CANCELLED');
    expect(status.reason).toMatch(/^cancelled: /);
    expect(job.has('end.txt')).toBe(true);
    expect(await pidsStillRunning([machine?.pid as number])).toEqual([]);
    expect(isRunning(server.pid)).toBe(false);
  });
});
