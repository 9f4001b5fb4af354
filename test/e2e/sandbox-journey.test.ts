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
    process.stderr.write(`sandbox journey: supervisor log kept as ${join(tmpdir(), 'ncap-journey-supervisor.log')}\n`);
    writeFileSync(join(tmpdir(), 'ncap-journey-supervisor.log'), readFileSync(join(sandboxDir, 'supervisor.log')));
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
    // Meanwhile cleo, alone in group rivals, submits the NeuroCAAS way (checked further down).
    // cleo's plain submission was written in the first test: IAM in the emulator let her (the
    // statement of her one-user group); the protocol's acceptance of it is proven in
    // test/protocols (plain key in a one-profile group).
    const written = await s3As('sandbox-admin').send(new HeadObjectCommand({ Bucket: bucket, Key: 'rivals/submissions/plainsubmit.json' }));
    expect(written.ContentLength).toBeGreaterThan(0);
    await expect(s3As('ada').send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/submissions/plainsubmit.json', Body: '{}' }))).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('prints the same --json shapes as the local backend', { timeout: 120_000 }, async () => {
    const root = join(dir, 'local-root');
    const local = (args: string[]) => cli(undefined, [...args, '--root', root, '--blueprints', fixtureBlueprintsDir, '--users', fixtureUsersDir, '--user', 'alice'], 60_000);
    const localRun = await local(['run', 'test-workflow', '--data', 'a.csv', '--config', 'run.json', '--json']);
    expect(localRun.code, transcript(localRun)).toBe(0);
    const localJob = json(localRun)['jobId'] as string;
    // One dataset named a.csv on both sides, so even the keys of `logs` are the same.
    const adaJob = jobs['cancelled'] as string;
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
      expect(shapeOf(json(there)), what).toEqual(shapeOf(json(here)));
    }
    expect(statSync(join(work, 'shape-aws', 'end.txt')).isFile()).toBe(true);
  });
});
