/**
 * The sandbox used the way a careless or hostile developer uses it, through the built CLI: two
 * `sandbox up` at once on one folder, `up` killed with SIGKILL while it starts and run again,
 * the supervisor killed with SIGKILL while a workflow runs and `up` run again. Every case must
 * end with one sandbox (or none after `down`) and no process of an earlier one left running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive, processesWithEnvironment, SANDBOX_ID_VARIABLE, stopMarkedProcesses } from '../../lib/sandbox/processes.js';
import type { SandboxState } from '../../lib/sandbox/state.js';
import { cliPath, fixtureBlueprintsDir, repoRoot } from './helpers.js';

delete process.env['AWS_CA_BUNDLE'];

const base = mkdtempSync(join(tmpdir(), 'ncap-sandbox-hostile-'));
/** Every sandbox id a test saw, so afterAll can stop whatever a failed test left. */
const seenIds = new Set<string>();
const dirs: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('AWS_')) delete env[name];
  return env;
}

function start(args: string[], timeoutMs: number): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => (stdout += chunk));
  child.stderr?.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<Run>((resolveRun) => child.on('close', (code) => resolveRun({ code, stdout, stderr })));
  return { child, done };
}

function cli(args: string[], timeoutMs: number): Promise<Run> {
  return start(args, timeoutMs).done;
}

function newDir(name: string): string {
  const dir = join(base, name);
  dirs.push(dir);
  return dir;
}

function readStateOf(dir: string): SandboxState | undefined {
  try {
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as SandboxState;
    seenIds.add(state.sandboxId);
    return state;
  } catch {
    return undefined;
  }
}

/** Live processes started for the sandbox in `dir`: a command line naming it, or a working folder inside it. */
function processesOf(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0').join(' ');
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if ((cmdline.includes(dir) || cwd === dir || cwd.startsWith(`${dir}/`)) && isAlive(Number(entry))) found.push(Number(entry));
    } catch {
      // Gone meanwhile, or not readable: not one of ours.
    }
  }
  return found;
}

function supervisorsOf(dir: string): number[] {
  return processesOf(dir).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('supervisor-main.js'));
}

function childrenOf(parents: readonly number[]): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parents.includes(ppid) && isAlive(Number(entry))) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined | Promise<T | undefined>, dir?: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      let log = '';
      try {
        log = dir ? readFileSync(join(dir, 'supervisor.log'), 'utf8').slice(-3000) : '';
      } catch {
        log = '(no log)';
      }
      throw new Error(`${what} did not happen within ${timeoutMs / 1000} s\n${log}`);
    }
    await sleep(200);
  }
}

function upArgs(dir: string): string[] {
  return ['sandbox', 'up', '--dir', dir, '--blueprints', fixtureBlueprintsDir, '--boot-delay-ms', '500'];
}

function endpointOf(run: Run): string | undefined {
  return /^export AWS_ENDPOINT_URL=(\S+)$/m.exec(run.stdout)?.[1];
}

afterAll(async () => {
  for (const dir of dirs) await cli(['sandbox', 'down', '--dir', dir], 60_000);
  for (const id of seenIds) await stopMarkedProcesses(SANDBOX_ID_VARIABLE, id, { timeoutMs: 10_000 });
  rmSync(base, { recursive: true, force: true });
}, 120_000);

describe('the sandbox under a careless or hostile developer', () => {
  it('two `sandbox up` at once on one folder start one sandbox, and both print it', { timeout: 240_000 }, async () => {
    const dir = newDir('twice');

    const [first, second] = await Promise.all([cli(upArgs(dir), 200_000), cli(upArgs(dir), 200_000)]);

    expect(first.code, first.stderr).toBe(0);
    expect(second.code, second.stderr).toBe(0);
    expect(endpointOf(first)).toBeDefined();
    expect(endpointOf(second)).toBe(endpointOf(first));
    const state = readStateOf(dir) as SandboxState;
    const supervisors = supervisorsOf(dir);
    expect(supervisors).toEqual([state.supervisorPid]);
    // Exactly one emulator (chroot moved its working folder: found as a supervisor's child).
    expect(childrenOf(supervisors).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('moto'))).toEqual([state.emulatorPid]);

    const down = await cli(['sandbox', 'down', '--dir', dir], 60_000);
    expect(down.code, down.stderr).toBe(0);
    expect(await waitFor('every process of the folder to end', 15_000, () => (processesOf(dir).length === 0 ? true : undefined))).toBe(true);
    expect(processesWithEnvironment(SANDBOX_ID_VARIABLE, state.sandboxId)).toEqual([]);
  });

  it('`up` killed with SIGKILL while it starts: `status` says it is starting, and `up` again waits for that sandbox', { timeout: 240_000 }, async () => {
    const dir = newDir('killed-up');
    const killed = start(upArgs(dir), 200_000);
    const starting = await waitFor('the supervisor to start', 60_000, () => {
      const state = readStateOf(dir);
      return state && isAlive(state.supervisorPid) ? state : undefined;
    }, dir);
    killed.child.kill('SIGKILL');
    await killed.done;

    const status = await cli(['sandbox', 'status', '--dir', dir], 60_000);
    if (readStateOf(dir)?.phase === 'starting') expect(status.stdout).not.toMatch(/undefined/);

    const again = await cli(upArgs(dir), 200_000);

    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/sandbox (already running|ready)/);
    expect(supervisorsOf(dir)).toEqual([starting.supervisorPid]);
    expect(readStateOf(dir)?.phase).toBe('ready');
  });

  it('the supervisor killed with SIGKILL while a workflow runs: `up` again stops what the dead sandbox left, and `down` leaves nothing', { timeout: 300_000 }, async () => {
    const dir = newDir('killed-supervisor');
    const up = await cli(upArgs(dir), 200_000);
    expect(up.code, up.stderr).toBe(0);
    const state = readStateOf(dir) as SandboxState;
    const credentials = readFileSync(state.credentialsFile as string, 'utf8');
    const match = /\[ada\]\naws_access_key_id = (\S+)\naws_secret_access_key = (\S+)/.exec(credentials);
    const s3 = new S3Client({
      endpoint: state.endpoint as string,
      region: 'us-east-1',
      credentials: { accessKeyId: match?.[1] as string, secretAccessKey: match?.[2] as string },
      forcePathStyle: true,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const bucket = state.analyses?.['test-workflow'] as string;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/inputs/a.csv', Body: 'x,y\n1,2\n' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/configs/sleep.json', Body: JSON.stringify({ mode: 'sleep', seconds: 120 }) }));
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'lab/submissions/ada/sleepsubmit.json',
        Body: JSON.stringify({ dataname: ['lab/inputs/a.csv'], configname: 'lab/configs/sleep.json', timestamp: 'now' }),
      }),
    );
    // The workflow itself runs (its inputs fetched): from here on nothing of the instance needs the emulator.
    await waitFor('the workflow to run', 120_000, () => (processesOf(dir).some((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('work.mjs')) ? true : undefined), dir);
    const supervisorPid = state.supervisorPid;

    process.kill(supervisorPid, 'SIGKILL');
    await waitFor('the supervisor to be gone', 10_000, () => (isAlive(supervisorPid) ? undefined : true));
    await sleep(2_000);
    expect(processesWithEnvironment(SANDBOX_ID_VARIABLE, state.sandboxId).length).toBeGreaterThan(0);

    const again = await cli(upArgs(dir), 200_000);

    expect(again.code, again.stderr).toBe(0);
    const next = readStateOf(dir) as SandboxState;
    expect(next.sandboxId).not.toBe(state.sandboxId);
    expect(processesWithEnvironment(SANDBOX_ID_VARIABLE, state.sandboxId)).toEqual([]);
    const down = await cli(['sandbox', 'down', '--dir', dir], 60_000);
    expect(down.code, down.stderr).toBe(0);
    expect(await waitFor('every process of the folder to end', 15_000, () => (processesOf(dir).length === 0 ? true : undefined))).toBe(true);
  });
});
