/**
 * The researcher journey through the built CLI on `--backend aws`, against one sandbox
 * (`neurocaas sandbox up`) for the whole file: ada and ben share group lab, cleo is alone in
 * group rivals, each with the sandbox's credentials (AWS_PROFILE). Every command a researcher
 * has is run as they would run it: run (upload with progress, an identical input skipped,
 * followed to the end), jobs, status, logs --follow, results --out, cancel and budget; `--json`
 * documents have the keys the local backend's have. Denials come from IAM in the emulator (and
 * from the protocol where IAM cannot tell, e.g. a groupmate's cancel).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoLedger } from '../../lib/aws/dynamo-ledger.js';
import { SANDBOX_ID_VARIABLE, stopMarkedProcesses } from '../../lib/sandbox/processes.js';
import type { SandboxState } from '../../lib/sandbox/state.js';
import { cliPath, fixtureBlueprintsDir, fixtureUsersDir } from './helpers.js';

delete process.env['AWS_CA_BUNDLE'];

const dir = mkdtempSync(join(tmpdir(), 'ncap-journey-'));
const sandboxDir = join(dir, 'sandbox');
const work = join(dir, 'work');
mkdirSync(work, { recursive: true });
let state: SandboxState;
let bucket: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment a researcher gets from `sandbox up`'s export lines, as `profile`; nothing of this process's AWS or NEUROCAAS settings. */
function envOf(profile: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_')) env[name] = value;
  if (profile === undefined) return env;
  return {
    ...env,
    AWS_ENDPOINT_URL: state.endpoint,
    AWS_REGION: state.region,
    AWS_SHARED_CREDENTIALS_FILE: state.credentialsFile,
    AWS_CONFIG_FILE: state.configFile,
    AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
    AWS_PROFILE: profile,
  };
}

/** Runs the CLI to its end (killed after `timeoutMs`). */
function cli(profile: string | undefined, args: string[], timeoutMs = 60_000, extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: work, env: { ...envOf(profile), ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** `neurocaas --backend aws ...` as `profile`. */
const aws = (profile: string, args: string[], timeoutMs?: number) => cli(profile, ['--backend', 'aws', ...args], timeoutMs);

/** The same, on a terminal (util-linux `script` gives it a pty), for what only a terminal shows. */
function awsOnTerminal(profile: string, args: string[], timeoutMs = 90_000): Promise<Run> {
  const command = [process.execPath, cliPath, '--backend', 'aws', ...args].map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolveRun) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: work, env: { ...envOf(profile), TERM: 'dumb' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stdout += chunk));
    child.on('close', (code) => resolveRun({ code, stdout, stderr: '' }));
  });
}

function json(run: Run): Record<string, unknown> {
  try {
    return JSON.parse(run.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`not one JSON document (exit ${run.code}):\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`);
  }
}

function transcript(run: Run): string {
  return `exit ${run.code}\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`;
}

function keyOf(profile: string): { accessKeyId: string; secretAccessKey: string } {
  const text = readFileSync(state.credentialsFile as string, 'utf8');
  const match = new RegExp(`\\[${profile}\\]\\naws_access_key_id = (\\S+)\\naws_secret_access_key = (\\S+)`).exec(text);
  if (!match) throw new Error(`no profile ${profile} in ${state.credentialsFile}`);
  return { accessKeyId: match[1] as string, secretAccessKey: match[2] as string };
}

function clientConfig(profile: string) {
  return { endpoint: state.endpoint as string, region: 'us-east-1', credentials: keyOf(profile), maxAttempts: 1 };
}

function s3As(profile: string): S3Client {
  return new S3Client({ ...clientConfig(profile), forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
}

async function objectText(key: string): Promise<string | undefined> {
  try {
    return await (await s3As('sandbox-admin').send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString();
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

async function objectBytes(key: string): Promise<Buffer> {
  return Buffer.from(await ((await s3As('sandbox-admin').send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToByteArray() ?? Promise.resolve(new Uint8Array())));
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s; supervisor log:\n${readFileSync(join(sandboxDir, 'supervisor.log'), 'utf8').slice(-3000)}`);
    await sleep(250);
  }
}

/**
 * The shape of a JSON document: for an object its keys (sorted) with the shapes of their
 * values, for an array the shape of its first element, otherwise its type. Values differ
 * between backends (ids, times, locations); the shape must not.
 */
function shapeOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.length > 0 ? [shapeOf(value[0])] : [];
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, shapeOf((value as Record<string, unknown>)[key])]),
    );
  }
  return value === null ? 'null' : typeof value;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function filesBelow(folder: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(at, entry.name));
      else out.push(relative(folder, join(at, entry.name)));
    }
  };
  walk(folder);
  return out.sort();
}

const jobs: Record<string, string> = {};
let benRun: Record<string, unknown> = {};

beforeAll(async () => {
  const up = await cli(undefined, ['sandbox', 'up', '--dir', sandboxDir, '--blueprints', fixtureBlueprintsDir, '--json'], 300_000);
  if (up.code !== 0) throw new Error(`sandbox up failed:\n${transcript(up)}`);
  state = (JSON.parse(up.stdout) as { state: SandboxState }).state;
  bucket = state.analyses?.['test-workflow'] as string;
  writeFileSync(join(work, 'a.csv'), 'x,y\n1,2\n');
  writeFileSync(join(work, 'b.csv'), 'x,y\n3,4\n5,6\n');
  writeFileSync(join(work, 'run.json'), JSON.stringify({ mode: 'succeed', lines: 3 }));
  writeFileSync(join(work, 'long.json'), JSON.stringify({ mode: 'sleep', seconds: 120, lines: 2 }));
}, 320_000);

afterAll(async () => {
  if (state) {
    await cli(undefined, ['sandbox', 'down', '--dir', sandboxDir], 60_000);
    // Backstop: whatever still carries the marker goes, so a failed test leaves nothing running.
    await stopMarkedProcesses(SANDBOX_ID_VARIABLE, state.sandboxId, { timeoutMs: 10_000 });
  }
  rmSync(dir, { recursive: true, force: true });
}, 90_000);

describe('the researcher journey on the sandbox, through the CLI', () => {
  it('two users of one group run at once, each charged as the submitter; on a terminal run shows upload progress and follows the job to its end', { timeout: 180_000 }, async () => {
    // 24 MiB, mostly holes: a multipart upload of two parts, with progress redrawn on the terminal.
    const big = join(work, 'big.bin');
    const fd = openSync(big, 'w');
    ftruncateSync(fd, 24 * 1024 * 1024);
    writeSync(fd, Buffer.from('not only zeros\n'), 0, 15, 20 * 1024 * 1024);
    closeSync(fd);
    // Meanwhile cleo, alone in group rivals, submits the NeuroCAAS way, straight into
    // rivals/submissions/ (checked further down).
    const cleo = s3As('cleo');
    await cleo.send(new PutObjectCommand({ Bucket: bucket, Key: 'rivals/inputs/a.csv', Body: readFileSync(join(work, 'a.csv')) }));
    await cleo.send(new PutObjectCommand({ Bucket: bucket, Key: 'rivals/configs/run.json', Body: readFileSync(join(work, 'run.json')) }));
    await cleo.send(new PutObjectCommand({ Bucket: bucket, Key: 'rivals/submissions/plainsubmit.json', Body: JSON.stringify({ dataname: ['rivals/inputs/a.csv'], configname: 'rivals/configs/run.json' }) }));

    // Both upload lab/configs/run.json with the same bytes at the same moment: one creates it,
    // the other finds it identical (create-only, never overwritten).
    const [ada, ben] = await Promise.all([
      awsOnTerminal('ada', ['run', 'test-workflow', '--data', 'a.csv', 'big.bin', '--config', 'run.json'], 170_000),
      aws('ben', ['run', 'test-workflow', '--data', 'b.csv', '--config', 'run.json', '--json'], 170_000),
    ]);

    expect(ada.code, ada.stdout).toBe(0);
    expect(ben.code, transcript(ben)).toBe(0);
    expect(ada.stdout).toMatch(/\r\[[#.]+\] +\d+% [\d.]+\/24\.0 MiB uploading big\.bin/);
    expect(ada.stdout).toMatch(/uploaded .*big\.bin -> lab\/inputs\/big\.bin/);
    expect(ada.stdout).toMatch(/submitted lab\/submissions\/ada\/\S+submit\.json .* as ada \(group lab\)/);
    // Followed to the end: the workflow's own lines, each dataset's end and the summary.
    expect(ada.stdout).toMatch(/\[big\.bin\] line 3 of 3/);
    expect(ada.stdout).toMatch(/big\.bin: SUCCEEDED \(exit 0\)/);
    jobs['ada'] = (/job (\S+): SUCCEEDED/.exec(ada.stdout) as RegExpExecArray)[1] as string;
    const benJob = json(ben);
    expect(benJob).toMatchObject({ analysis: 'test-workflow', group: 'lab', user: 'ben', outcome: 'SUCCEEDED', datasets: [{ name: 'b.csv', status: 'SUCCEEDED', exitCode: 0 }] });
    jobs['ben'] = benJob['jobId'] as string;
    benRun = benJob;
    // The submission went under each user's own prefix (D1), so the protocol charged each.
    expect(JSON.parse((await objectText(`lab/results/job__test-workflow_${jobs['ada']}/provenance.json`)) as string)).toMatchObject({ user: 'ada' });
    expect(JSON.parse((await objectText(`lab/results/job__test-workflow_${jobs['ben']}/provenance.json`)) as string)).toMatchObject({ user: 'ben' });
    expect(await objectText('lab/configs/run.json')).toBe(readFileSync(join(work, 'run.json'), 'utf8'));
    const stored = await s3As('sandbox-admin').send(new HeadObjectCommand({ Bucket: bucket, Key: 'lab/inputs/big.bin' }));
    expect(stored.ContentLength).toBe(24 * 1024 * 1024);
    expect(stored.Metadata?.['sha256']).toBe(sha256(readFileSync(big)));
    unlinkSync(big);
  });

  // 7 s on an idle machine; the bound allows for load (at load 18 beside other files it passed 90 s).
  it('jobs, status, logs and results: the group sees its jobs, the other group sees none of them', { timeout: 180_000 }, async () => {
    const listed = json(await aws('ben', ['jobs', '--json']));
    const byId = new Map((listed['jobs'] as { jobId: string; user?: string; outcome: string }[]).map((job) => [job.jobId, job]));
    expect(byId.get(jobs['ada'] as string)).toMatchObject({ user: 'ada', outcome: 'SUCCEEDED' });
    expect(byId.get(jobs['ben'] as string)).toMatchObject({ user: 'ben', outcome: 'SUCCEEDED' });
    // cleo sees only her own group's jobs (her group-level submission), none of lab's.
    const cleoJobs = json(await aws('cleo', ['jobs', '--json']))['jobs'] as { jobId: string; group: string }[];
    expect(cleoJobs.every((job) => job.group === 'rivals')).toBe(true);
    expect(cleoJobs.map((job) => job.jobId)).not.toContain(jobs['ada']);

    const status = json(await aws('ben', ['status', jobs['ada'] as string, '--json']));
    expect(status).toMatchObject({ jobId: jobs['ada'], user: 'ada', outcome: 'SUCCEEDED', phase: 'DONE', datasets: expect.arrayContaining([expect.objectContaining({ dataset: 'a.csv', status: 'SUCCEEDED' })]) });
    expect(status['certificate']).toMatch(/accepted[\s\S]*job finished/);
    const denied = await aws('cleo', ['status', jobs['ada'] as string]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/JobNotFound.*not found in group "rivals"/);
    // Naming the other group does not help: IAM in the emulator refuses cleo lab's objects.
    const forced = await aws('cleo', ['status', jobs['ada'] as string, '--group', 'lab']);
    expect(forced.code).not.toBe(0);
    expect(forced.stderr).toMatch(/AccessDenied/);

    const logs = json(await aws('ada', ['logs', jobs['ada'] as string, '--json']));
    expect((logs['logs'] as Record<string, string>)['a.csv']).toMatch(/line 3 of 3/);

    // results --out: every file, byte-identical; run again after losing one and only that one is fetched.
    const out = join(work, 'results-ada');
    const first = json(await aws('ada', ['results', jobs['ada'] as string, '--out', out, '--json']));
    const prefix = `lab/results/job__test-workflow_${jobs['ada']}/`;
    expect(first['files']).toEqual(filesBelow(out));
    expect(first['files']).toEqual(expect.arrayContaining(['end.txt', 'logs/certificate.txt', 'process_results/a.csv/result.json', 'provenance.json']));
    for (const file of first['files'] as string[]) expect(sha256(readFileSync(join(out, file))), file).toBe(sha256(await objectBytes(`${prefix}${file}`)));
    unlinkSync(join(out, 'process_results', 'a.csv', 'result.json'));
    const again = json(await aws('ada', ['results', jobs['ada'] as string, '--out', out, '--json']));
    expect(again['skipped']).toEqual((first['files'] as string[]).filter((f) => f !== 'process_results/a.csv/result.json'));
    expect(readFileSync(join(out, 'process_results', 'a.csv', 'result.json'))).toEqual(await objectBytes(`${prefix}process_results/a.csv/result.json`));
    const cleoResults = await aws('cleo', ['results', jobs['ada'] as string, '--out', join(work, 'results-cleo')]);
    expect(cleoResults.code).not.toBe(0);
  });

  it('logs --follow shows lines while the workflow runs; a groupmate\'s and another group\'s cancel are refused; the submitter\'s cancel ends it CANCELLED, terminated, settled', { timeout: 150_000 }, async () => {
    const before = await s3As('sandbox-admin').send(new HeadObjectCommand({ Bucket: bucket, Key: 'lab/inputs/a.csv' }));
    const runJob = aws('ada', ['run', 'test-workflow', '--data', 'a.csv', '--config', 'long.json'], 140_000);
    const jobId = await waitFor('the long job\'s receipt', 60_000, async () => {
      const listed = json(await aws('ada', ['jobs', '--json']));
      return (listed['jobs'] as { jobId: string; outcome: string }[]).find((job) => job.outcome === 'RUNNING')?.jobId;
    });
    const follow = spawn(process.execPath, [cliPath, '--backend', 'aws', 'logs', jobId, '--follow'], { cwd: work, env: envOf('ben'), stdio: ['ignore', 'pipe', 'pipe'], timeout: 140_000, killSignal: 'SIGKILL' });
    let followed = '';
    follow.stdout.on('data', (chunk) => (followed += chunk));
    const followEnded = new Promise<number | null>((resolveEnd) => follow.on('close', resolveEnd));
    await waitFor('a log line in logs --follow', 60_000, () => (/line 2 of 2/.test(followed) ? true : undefined));
    // Seen while the workflow still runs: the job has not ended.
    expect(await objectText(`lab/results/job__test-workflow_${jobId}/end.txt`)).toBeUndefined();

    const byBen = await aws('ben', ['cancel', jobId]);
    expect(byBen.code).not.toBe(0);
    expect(byBen.stderr).toMatch(/CancelRefused.*refused/);
    const byCleo = await aws('cleo', ['cancel', jobId]);
    expect(byCleo.code).not.toBe(0);
    expect(byCleo.stderr).toMatch(/JobNotFound/);
    // Even straight at S3, cleo cannot write a cancel request into lab (IAM in the emulator).
    await expect(s3As('cleo').send(new PutObjectCommand({ Bucket: bucket, Key: `lab/submissions/cleo/${jobId}.cancel.json`, Body: '{}' }))).rejects.toMatchObject({ name: 'AccessDenied' });
    expect(await objectText(`lab/results/job__test-workflow_${jobId}/end.txt`)).toBeUndefined();

    const cancel = await aws('ada', ['cancel', jobId, '--json'], 90_000);
    expect(cancel.code, transcript(cancel)).toBe(0);
    const cancelled = json(cancel);
    expect(cancelled).toMatchObject({ jobId, user: 'ada', outcome: 'CANCELLED', datasets: [{ name: 'a.csv', status: 'CANCELLED' }] });
    expect((cancelled['datasets'] as { reason: string }[])[0]?.reason).toMatch(/cancelled by ada/);
    const ran = await runJob;
    expect(ran.code, transcript(ran)).toBe(1);
    expect(ran.stdout).toMatch(new RegExp(`job ${jobId}: CANCELLED`));
    // The input was there with the same sha256: not sent again, not rewritten.
    expect(`${ran.stdout}${ran.stderr}`).toMatch(/using lab\/inputs\/a\.csv \(already uploaded, identical\)/);
    const after = await s3As('sandbox-admin').send(new HeadObjectCommand({ Bucket: bucket, Key: 'lab/inputs/a.csv' }));
    expect([after.ETag, after.LastModified?.getTime()]).toEqual([before.ETag, before.LastModified?.getTime()]);
    expect(await followEnded).toBe(0);
    expect(followed).toMatch(new RegExp(`job ${jobId}: CANCELLED`));
    expect(JSON.parse((await objectText(`lab/receipts/ben/${jobId}.cancel.json.json`)) as string)).toMatchObject({ outcome: 'rejected' });

    const statusDoc = JSON.parse((await objectText(`lab/results/job__test-workflow_${jobId}/logs/DATASET_NAME-a.csv_STATUS.txt.json`)) as string) as { instanceId: string };
    const ec2 = new EC2Client(clientConfig('sandbox-admin'));
    await waitFor('the cancelled job\'s machine to be terminated', 30_000, async () => {
      const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [statusDoc.instanceId] }))).Reservations?.[0]?.Instances?.[0];
      return instance?.State?.Name === 'terminated' ? true : undefined;
    });
    jobs['cancelled'] = jobId;
  });

  it('budget: each user sees their own jobs, each charged to its submitter, as the ledger has it', { timeout: 120_000 }, async () => {
    const ada = json(await aws('ada', ['budget', '--json']));
    const ben = json(await aws('ben', ['budget', '--json']));
    const adaBudget = ada['budget'] as { user: string; period: string; spentUsd: number; reservedUsd: number; jobs: { jobId: string; spentUsd: number; settled: boolean }[] };
    const benBudget = ben['budget'] as typeof adaBudget;
    expect(adaBudget.user).toBe('ada');
    expect(benBudget.user).toBe('ben');
    expect(adaBudget.jobs.map((j) => j.jobId)).toEqual(expect.arrayContaining([jobs['ada'], jobs['cancelled']]));
    expect(adaBudget.jobs.map((j) => j.jobId)).not.toContain(jobs['ben']);
    expect(benBudget.jobs.map((j) => j.jobId)).toEqual([jobs['ben']]);
    // Every job ended, so nothing stays reserved.
    expect(adaBudget.jobs.every((j) => j.settled)).toBe(true);
    expect(adaBudget.reservedUsd).toBe(0);

    const doc = DynamoDBDocumentClient.from(new DynamoDBClient(clientConfig('sandbox-admin')));
    const ledger = new DynamoLedger(doc, state.tableName as string);
    for (const budget of [adaBudget, benBudget]) {
      const entries = await ledger.entries(budget.user, budget.period);
      expect(Object.fromEntries(entries.map((e) => [e.jobId, e.spentUsd]))).toEqual(Object.fromEntries(budget.jobs.map((j) => [j.jobId, j.spentUsd])));
      expect(budget.spentUsd).toBeCloseTo(entries.reduce((sum, e) => sum + (e.spentUsd ?? 0), 0), 6);
    }
    // cleo's view holds only her own job (her group-level submission), none of lab's.
    const cleoBudget = (json(await aws('cleo', ['budget', '--json'])) as { budget: typeof adaBudget }).budget;
    expect(cleoBudget.user).toBe('cleo');
    expect(cleoBudget.jobs.map((j) => j.jobId)).not.toContain(jobs['ada']);
    expect(cleoBudget.jobs.map((j) => j.jobId)).not.toContain(jobs['ben']);
  });

  it('a group-level submission is accepted from the only user of a one-user group and refused by IAM in a group of two (D1)', { timeout: 90_000 }, async () => {
    // cleo's plain submission was written in the first test.
    const receipt = await waitFor('the receipt of the group-level submission', 60_000, async () => {
      for (const key of ['rivals/receipts/cleo/plainsubmit.json.json', 'rivals/receipts/plainsubmit.json.json']) {
        const text = await objectText(key);
        if (text) return JSON.parse(text) as { outcome: string; jobId: string };
      }
      return undefined;
    });
    expect(receipt).toMatchObject({ outcome: 'accepted' });
    const jobId = receipt.jobId;
    await waitFor('the group-level job to end', 60_000, () => objectText(`rivals/results/job__test-workflow_${jobId}/end.txt`));
    expect(json(await aws('cleo', ['status', jobId, '--json']))).toMatchObject({ outcome: 'SUCCEEDED' });
    expect(JSON.parse((await objectText(`rivals/results/job__test-workflow_${jobId}/provenance.json`)) as string)).toMatchObject({ user: 'cleo' });

    await expect(s3As('ada').send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/submissions/plainsubmit.json', Body: '{}' }))).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('prints the same --json shapes as the local backend', { timeout: 120_000 }, async () => {
    const root = join(dir, 'local-root');
    const local = (args: string[]) => cli(undefined, [...args, '--root', root, '--blueprints', fixtureBlueprintsDir, '--users', fixtureUsersDir, '--user', 'alice'], 60_000);
    // The same two dataset names as ada's job, so even the keys of `logs` are the same.
    writeFileSync(join(work, 'big.bin'), 'x,y\n7,8\n');
    const localRun = await local(['run', 'test-workflow', '--data', 'a.csv', 'big.bin', '--config', 'run.json', '--json']);
    expect(localRun.code, transcript(localRun)).toBe(0);
    const localJob = json(localRun)['jobId'] as string;
    const adaJob = jobs['ada'] as string;
    const pairs: [string, string[], string[]][] = [
      ['jobs', ['jobs', '--json'], ['jobs', '--json']],
      ['status', ['status', localJob, '--json'], ['status', adaJob, '--json']],
      ['logs', ['logs', localJob, '--json'], ['logs', adaJob, '--json']],
      ['results', ['results', localJob, '--out', join(work, 'shape-local'), '--json'], ['results', adaJob, '--out', join(work, 'shape-aws'), '--json']],
      ['cancel (finished)', ['cancel', localJob, '--json'], ['cancel', adaJob, '--json']],
      ['budget', ['budget', '--json'], ['budget', '--json']],
    ];
    expect(shapeOf(benRun), 'run').toEqual(shapeOf(json(localRun)));
    for (const [what, localArgs, awsArgs] of pairs) {
      const [here, there] = await Promise.all([local(localArgs), aws('ada', awsArgs)]);
      expect(here.code, transcript(here)).toBe(0);
      expect(there.code, transcript(there)).toBe(0);
      // `jobs` lists the newest job first, and a dataset's optional `reason` is there only when it
      // did not succeed: compare the two finished, succeeded jobs named above on both sides.
      const pick = (doc: Record<string, unknown>, jobId: string) =>
        what === 'jobs' ? { jobs: (doc['jobs'] as { jobId: string }[]).filter((job) => job.jobId === jobId) } : doc;
      expect(shapeOf(pick(json(there), adaJob)), what).toEqual(shapeOf(pick(json(here), localJob)));
    }
    expect(statSync(join(work, 'shape-aws', 'end.txt')).isFile()).toBe(true);
  });
});
