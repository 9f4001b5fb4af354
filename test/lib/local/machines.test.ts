import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalMachines, type LocalMachineEvent } from '../../../lib/local/machines.js';
import { LaunchRefusedError } from '../../../lib/core/errors.js';
import { isProcessAlive } from '../../../lib/local/fs-util.js';
import { runnerScripts } from '../../../protocols/local-shell.js';
import type { RunnerSpec } from '../../../lib/ports.js';

const created: LocalMachines[] = [];

afterEach(async () => {
  await Promise.all(created.map((m) => m.terminateOwned()));
  created.length = 0;
});

function setup(workflow: string) {
  const root = mkdtempSync(join(tmpdir(), 'ncap-machines-'));
  const envDir = join(root, 'env');
  mkdirSync(envDir);
  writeFileSync(join(envDir, 'work.mjs'), workflow);
  const bucketsDir = join(root, 'buckets');
  mkdirSync(join(bucketsDir, 'an-alysis', 'lab', 'inputs'), { recursive: true });
  writeFileSync(join(bucketsDir, 'an-alysis', 'lab', 'inputs', 'a.csv'), 'x,y\n1,2\n');
  mkdirSync(join(bucketsDir, 'an-alysis', 'lab', 'results', 'job__an-alysis_J1'), { recursive: true });
  writeFileSync(join(bucketsDir, 'an-alysis', 'lab', 'results', 'job__an-alysis_J1', 'config.json'), '{"greeting": "hi"}');
  const events: LocalMachineEvent[] = [];
  const machines = new LocalMachines({
    machinesDir: join(root, 'machines'),
    bucketsDir,
    ...runnerScripts(),
    envDirOf: () => envDir,
    clock: { nowMs: () => Date.now() },
    onEvent: (event) => events.push(event),
  });
  created.push(machines);
  return { root, machines, events, bucketsDir };
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function spec(deadlineAtMs: number): RunnerSpec {
  const prefix = 'lab/results/job__an-alysis_J1/';
  return {
    jobId: 'J1',
    analysis: 'an-alysis',
    group: 'lab',
    dataset: 'a.csv',
    bucket: 'an-alysis',
    inputKey: 'lab/inputs/a.csv',
    configKey: `${prefix}config.json`,
    command: ['node', 'work.mjs'],
    env: { EXTRA: 'yes' },
    deadlineAtMs,
    logKey: `${prefix}logs/a.csv.log`,
    statusKey: `${prefix}logs/DATASET_NAME-a.csv_STATUS.txt.json`,
    resultsPrefix: `${prefix}process_results/a.csv/`,
  };
}

const launchRequest = (deadlineAtMs: number, clientToken = 'tok-1') => ({
  jobId: 'J1', analysis: 'an-alysis', group: 'lab', dataset: 'a.csv', instanceType: 't3.micro', clientToken, deadlineAtMs,
});

describe('local machines', () => {
  it('runs the workflow with the NCAP variables and copies its outputs, logs and status', async () => {
    const { machines, events, bucketsDir } = setup(`
      import { readFileSync, writeFileSync } from 'node:fs';
      import { join } from 'node:path';
      const config = JSON.parse(readFileSync(process.env.NCAP_CONFIG, 'utf8'));
      console.log('greeting', config.greeting, process.env.EXTRA, process.env.NCAP_DATASET, process.env.NCAP_JOB_ID);
      console.error('input has', readFileSync(process.env.NCAP_INPUT, 'utf8').length, 'bytes');
      writeFileSync(join(process.env.NCAP_OUTPUT_DIR, 'out.txt'), 'result');
    `);
    const { instanceId } = await machines.launch(launchRequest(Date.now() + 60_000));
    await waitFor(() => events.some((e) => e.type === 'online'));
    expect(await machines.isAgentOnline(instanceId)).toBe(true);
    await machines.sendCommand(instanceId, spec(Date.now() + 60_000));
    const finished = await waitFor(() => events.find((e) => e.type === 'finished'));
    expect(finished).toMatchObject({ exitCode: 0, timedOut: false });
    await waitFor(() => events.some((e) => e.type === 'terminated'));
    const jobDir = join(bucketsDir, 'an-alysis', 'lab', 'results', 'job__an-alysis_J1');
    expect(readFileSync(join(jobDir, 'process_results', 'a.csv', 'out.txt'), 'utf8')).toBe('result');
    const log = readFileSync(join(jobDir, 'logs', 'a.csv.log'), 'utf8');
    expect(log).toContain('greeting hi yes a.csv J1');
    expect(log).toContain('input has 8 bytes');
    const status = JSON.parse(readFileSync(join(jobDir, 'logs', 'DATASET_NAME-a.csv_STATUS.txt.json'), 'utf8'));
    expect(status).toMatchObject({ status: 'SUCCEEDED', exitCode: 0 });
    expect(status.logTail).toContain('input has 8 bytes');
  });

  it('returns the same machine for the same client token', async () => {
    const { machines, root } = setup('setInterval(() => {}, 1000);');
    const first = await machines.launch(launchRequest(Date.now() + 60_000));
    const again = await machines.launch(launchRequest(Date.now() + 60_000));
    expect(again.instanceId).toBe(first.instanceId);
    expect(readdirSync(join(root, 'machines')).filter((name) => name.startsWith('i-'))).toEqual([first.instanceId]);
  });

  it('kills the workflow and everything it spawned when terminated', async () => {
    const { machines, events, root } = setup(`
      import { spawn } from 'node:child_process';
      // The grandchild says its own pid as the host sees it (/proc is the host's even when the
      // runner put the workflow into a PID namespace of its own).
      spawn(process.execPath, ['-e', 'console.log("GRANDCHILD", require("fs").readlinkSync("/proc/self")); setInterval(() => {}, 1000)'], { stdio: 'inherit' });
      setInterval(() => {}, 1000);
    `);
    const { instanceId } = await machines.launch(launchRequest(Date.now() + 60_000));
    await waitFor(() => events.some((e) => e.type === 'online'));
    await machines.sendCommand(instanceId, spec(Date.now() + 60_000));
    const logPath = join(root, 'buckets', 'an-alysis', 'lab', 'results', 'job__an-alysis_J1', 'logs', 'a.csv.log');
    const grandchild = await waitFor(() => {
      const match = existsSync(logPath) ? /GRANDCHILD (\d+)/.exec(readFileSync(logPath, 'utf8')) : null;
      return match ? Number(match[1]) : undefined;
    });
    const record = JSON.parse(readFileSync(join(root, 'machines', instanceId, 'machine.json'), 'utf8'));
    expect(await machines.terminate(instanceId)).toBe('shutting-down');
    await waitFor(() => events.some((e) => e.type === 'terminated'));
    await waitFor(() => !isProcessAlive(grandchild) || undefined, 5_000);
    expect(isProcessAlive(record.pid)).toBe(false);
    expect(isProcessAlive(grandchild)).toBe(false);
  });

  it('stops a workflow at its deadline by itself and reports it timed out', async () => {
    const { machines, events } = setup('setInterval(() => console.log("working"), 100);');
    const deadline = Date.now() + 1_500;
    const { instanceId } = await machines.launch(launchRequest(deadline));
    await waitFor(() => events.some((e) => e.type === 'online'));
    await machines.sendCommand(instanceId, spec(deadline));
    const finished = await waitFor(() => events.find((e) => e.type === 'finished'));
    expect(finished).toMatchObject({ timedOut: true });
    expect(Date.now() - deadline).toBeLessThan(5_000);
  });

  it('shuts itself down at its deadline even if no command ever came', async () => {
    const { machines, events } = setup('');
    await machines.launch(launchRequest(Date.now() + 800));
    await waitFor(() => events.some((e) => e.type === 'terminated'), 8_000);
  });

  it('lets another process terminate a machine through the registry', async () => {
    const { machines, events, root } = setup('setInterval(() => {}, 1000);');
    const { instanceId } = await machines.launch(launchRequest(Date.now() + 60_000));
    await waitFor(() => events.some((e) => e.type === 'online'));
    const other = new LocalMachines({
      machinesDir: join(root, 'machines'), bucketsDir: join(root, 'buckets'), ...runnerScripts(),
      envDirOf: () => root, clock: { nowMs: () => Date.now() }, onEvent: () => undefined,
    });
    expect(await other.terminate(instanceId)).toBe('terminated');
    expect((await other.describe(instanceId)).state).toBe('terminated');
    await waitFor(() => events.some((e) => e.type === 'terminated'));
  });

  it('never outlives the process that launched it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-orphan-'));
    const script = join(root, 'launch.mjs');
    const machinesModule = new URL('../../../dist/lib/local/machines.js', import.meta.url).href;
    writeFileSync(script, `
      import { LocalMachines } from ${JSON.stringify(machinesModule)};
      const m = new LocalMachines({ machinesDir: ${JSON.stringify(join(root, 'machines'))}, bucketsDir: ${JSON.stringify(root)},
        agentScript: ${JSON.stringify(runnerScripts().agentScript)}, runnerScript: ${JSON.stringify(runnerScripts().runnerScript)}, envDirOf: () => '/', clock: { nowMs: () => Date.now() },
        onEvent: (e) => { if (e.type === 'online') { console.log('PID', JSON.stringify(e)); process.exit(0); } } });
      const r = await m.launch({ jobId: 'J', analysis: 'a', group: 'g', dataset: 'd', instanceType: 't', clientToken: 'x', deadlineAtMs: Date.now() + 60000 });
      console.log('ID', r.instanceId);
    `);
    const parent = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    parent.stdout.on('data', (chunk) => (output += chunk));
    await new Promise((resolve) => parent.on('exit', resolve));
    const instanceId = /ID (i-[0-9a-f]+)/.exec(output)?.[1] as string;
    const record = JSON.parse(readFileSync(join(root, 'machines', instanceId, 'machine.json'), 'utf8'));
    await waitFor(() => !isProcessAlive(record.pid) || undefined, 5_000);
  });

  it('reports a machine that cannot start as a refusal, so the dataset fails at once instead of waiting for a lookup', async () => {
    const { machines } = setup('');
    const path = process.env['PATH'];
    process.env['PATH'] = '/nonexistent-neurocaas-test';
    try {
      const failure = await machines.launch(launchRequest(Date.now() + 60_000, 'tok-nobash')).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(LaunchRefusedError);
      expect((failure as Error).message).toMatch(/could not start a local machine for a\.csv: is bash installed/);
    } finally {
      process.env['PATH'] = path;
    }
    expect(await machines.findLaunched('tok-nobash')).toBeUndefined();
  });
});
