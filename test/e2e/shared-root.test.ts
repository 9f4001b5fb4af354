/**
 * Several neurocaas processes on one root: `run` next to `local serve`, two servers, and a
 * server stopped while jobs run. Each job is driven by one process (its lease holder): N jobs
 * get N machines, none fails because another process touched it, and stopping a process
 * touches only its own jobs.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSandbox, JobFolder, jobFolderNames, machineRecords, transcript, waitFor, type CliProcess, type Sandbox } from './helpers.js';

const analysis = 'test-workflow';
const group = 'lab';

async function startServer(sandbox: Sandbox): Promise<CliProcess> {
  const server = sandbox.start(['local', 'serve', '--poll-ms', '100']);
  await server.waitForStdout(/watching .* for \*submit\.json/);
  return server;
}

async function putIntoBucket(sandbox: Sandbox, key: string, content: string): Promise<void> {
  const target = sandbox.bucketPath(analysis, key);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, content);
}

async function uploadInputs(sandbox: Sandbox, config: unknown): Promise<void> {
  await putIntoBucket(sandbox, `${group}/inputs/a.csv`, 'frame,x\n1,2\n');
  await putIntoBucket(sandbox, `${group}/configs/config.json`, JSON.stringify(config));
}

async function dropSubmission(sandbox: Sandbox, name: string): Promise<void> {
  await putIntoBucket(sandbox, `${group}/submissions/${name}submit.json`, JSON.stringify({ dataname: `${group}/inputs/a.csv`, configname: `${group}/configs/config.json`, timestamp: name }));
}

/** Waits until `count` job folders all have end.txt; returns their first lines. */
async function waitForEnds(sandbox: Sandbox, count: number, servers: CliProcess[], timeoutMs = 40_000): Promise<string[]> {
  return waitFor(
    async () => {
      const names = await jobFolderNames(sandbox.root, analysis, group);
      if (names.length < count) return undefined;
      const jobs = names.map((name) => JobFolder.fromName(sandbox.root, analysis, group, name));
      if (!jobs.every((job) => job.has('end.txt'))) return undefined;
      return Promise.all(jobs.map(async (job) => (await job.text('end.txt')).split('\n')[0] as string));
    },
    `${count} finished jobs\n${servers.map((s) => s.transcript()).join('\n')}`,
    timeoutMs,
    100,
  );
}

/** Pids in the process group `pgid` (a machine is the leader of its own group). */
function processGroupMembers(pgid: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => Number(fields[1]) === pgid && !String(fields[2]).startsWith('Z'))
    .map((fields) => Number(fields[0]));
}

describe('several neurocaas processes on one root', () => {
  it('two servers and a burst of submissions: every job ends, one machine per job, none fails', async () => {
    const sandbox = await createSandbox();
    await uploadInputs(sandbox, { mode: 'succeed' });
    const servers = [await startServer(sandbox), await startServer(sandbox)];

    for (let i = 0; i < 10; i += 1) await dropSubmission(sandbox, `burst${i}`);

    const outcomes = await waitForEnds(sandbox, 10, servers);
    expect(outcomes.every((line) => line.endsWith(' SUCCEEDED')), outcomes.join('\n')).toBe(true);
    expect(await jobFolderNames(sandbox.root, analysis, group)).toHaveLength(10);
    expect(await machineRecords(sandbox.root)).toHaveLength(10);
    for (const server of servers) expect(server.stderr, server.transcript()).not.toMatch(/warning/);
    for (const server of servers) server.signal('SIGTERM');
    await Promise.all(servers.map((s) => s.exited));
  });

  it('run next to a server: each job is run by one of them, all succeed', async () => {
    const sandbox = await createSandbox();
    await uploadInputs(sandbox, { mode: 'succeed' });
    const server = await startServer(sandbox);
    // Own file names per run: concurrent staging of one identical file is the object store's concern, not this test's.
    const files = await Promise.all([0, 1, 2].map(async (i) => ({ data: await sandbox.file(`r${i}.csv`, 'frame,x\n1,2\n'), config: await sandbox.config(`r${i}.json`, { mode: 'succeed' }) })));

    const runs = files.map((f) => sandbox.cli(['run', analysis, '--data', f.data, '--config', f.config, '--user', 'alice']));
    for (let i = 0; i < 3; i += 1) await dropSubmission(sandbox, `dropped${i}`);

    for (const result of await Promise.all(runs)) expect(result.code, transcript(result)).toBe(0);
    const outcomes = await waitForEnds(sandbox, 6, [server]);
    expect(outcomes.every((line) => line.endsWith(' SUCCEEDED')), outcomes.join('\n')).toBe(true);
    expect(await machineRecords(sandbox.root)).toHaveLength(6);
    server.signal('SIGTERM');
    await server.exited;
  });

  it('stopping a server leaves the job a run owns alone', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('sleep.json', { mode: 'sleep', seconds: 2 });
    const run = sandbox.start(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);
    const job = await JobFolder.appears(sandbox.root, analysis, group);
    await job.waitForStatus('a.csv', 'RUNNING');

    server.signal('SIGTERM');
    await server.exited;

    const result = await run.exited;
    expect(result.code, transcript(result)).toBe(0);
    expect((await job.status('a.csv')).status).toBe('SUCCEEDED');
  });

  it('a server exits within about 2 s of SIGINT, with nothing of its machines left, and its job is finished', async () => {
    const sandbox = await createSandbox();
    const server = await startServer(sandbox);
    await uploadInputs(sandbox, { mode: 'spawn-and-sleep', seconds: 60 });
    await dropSubmission(sandbox, 'long');
    const job = await JobFolder.appears(sandbox.root, analysis, group);
    await job.waitForStatus('a.csv', 'RUNNING');
    await waitFor(async () => (await job.log('a.csv').catch(() => '')).includes('GRANDCHILD_PID='), 'the workflow to spawn its grandchild');
    const [machine] = await machineRecords(sandbox.root);

    const signalledAt = Date.now();
    server.signal('SIGINT');
    const result = await server.exited;
    const tookMs = Date.now() - signalledAt;

    // The contract is 2 s; the margin is for a loaded test machine (the bench prints the figure).
    expect(tookMs, transcript(result)).toBeLessThan(2_500);
    expect(result.code).toBe(0);
    expect(processGroupMembers(machine?.pid as number)).toEqual([]);
    const jobs = await sandbox.cli(['jobs']);
    expect(jobs.code, transcript(jobs)).toBe(0);
    expect(job.has('end.txt')).toBe(true);
    expect((await job.status('a.csv')).status).toBe('CANCELLED');
  });
});
