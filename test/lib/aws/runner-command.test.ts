import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EXECUTION_MARGIN_SECONDS,
  MAX_EXECUTION_TIMEOUT_SECONDS,
  RUNNER_PATH,
  executionTimeoutSeconds,
  runnerCommands,
  scratchFolder,
  type RunnerCommandInput,
} from '../../../lib/aws/runner-command.js';
import type { RunnerSpec } from '../../../lib/ports.js';

const REAL_RUNNER = readFileSync(fileURLToPath(new URL('../../../lib/runner/ncap-runner.sh', import.meta.url)), 'utf8');
const HOSTILE = `it's $(touch pwned) \`touch pwned2\` $HOME "quoted" ; rm -rf nothing & * \\ back\nsecond line\ttab é ✓`;

function spec(overrides: Partial<RunnerSpec> = {}): RunnerSpec {
  const prefix = 'lab/results/job__an-alysis_20261122T151533Z-7f3a/';
  return {
    jobId: '20261122T151533Z-7f3a',
    analysis: 'an-alysis',
    group: 'lab',
    dataset: 'a.csv',
    bucket: 'an-alysis-bucket',
    inputKey: 'lab/inputs/a.csv',
    configKey: `${prefix}config.json`,
    command: ['python', 'run.py', '--flag'],
    env: { EXTRA: 'yes' },
    deadlineAtMs: Date.parse('2026-11-22T17:15:33.000Z'),
    logKey: `${prefix}logs/a.csv.log`,
    statusKey: `${prefix}logs/DATASET_NAME-a.csv_STATUS.txt.json`,
    resultsPrefix: `${prefix}process_results/a.csv/`,
    ...overrides,
  };
}

/**
 * Runs the generated commands the way SSM does (one script under `sh`), with the runner replaced
 * by a fake that records its argv and environment, NUL-separated, beside itself.
 */
function runCommands(
  input: Omit<RunnerCommandInput, 'runnerScript' | 'runnerPath'>,
  options: { shell?: 'sh' | 'bash'; curl?: 'works' | 'fails'; mutate?: (lines: string[]) => string[] } = {},
) {
  const root = mkdtempSync(join(tmpdir(), 'ncap-runner-command-'));
  const bin = join(root, 'bin');
  mkdirSync(bin);
  const curlScript =
    options.curl === 'fails'
      ? '#!/bin/sh\nexit 7\n'
      : '#!/bin/sh\ncase "$*" in *api/token*) printf TOKEN ;; *instance-type*) case "$*" in *"token: TOKEN"*) printf m5.xlarge ;; *) exit 22 ;; esac ;; esac\n';
  writeFileSync(join(bin, 'curl'), curlScript);
  chmodSync(join(bin, 'curl'), 0o755);
  const fakeRunner = [
    '#!/usr/bin/env bash',
    'here=$(dirname -- "$0")',
    `printf '%s\\0' "$@" > "$here/args"`,
    'env -0 > "$here/env"',
    '# ✓ non-ASCII survives the trip',
    '',
  ].join('\n');
  const runnerPath = join(root, 'opt', 'neurocaas', 'ncap-runner.sh');
  let lines = runnerCommands({ ...input, runnerScript: fakeRunner, runnerPath });
  if (options.mutate) lines = options.mutate(lines);
  const result = spawnSync(options.shell ?? 'sh', ['-c', lines.join('\n')], {
    cwd: root,
    env: { PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` },
    encoding: 'utf8',
  });
  const read = (name: string) => (existsSync(join(root, 'opt', 'neurocaas', name)) ? readFileSync(join(root, 'opt', 'neurocaas', name), 'utf8') : undefined);
  const args = read('args')?.split('\0').slice(0, -1);
  const envText = read('env');
  const env = envText === undefined ? undefined : Object.fromEntries(envText.split('\0').filter(Boolean).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  return { root, result, args, env, runnerPath, fakeRunner, lines };
}

describe('runner commands', () => {
  it('ships the runner, exports the environment and execs the runner with the quoted argv', () => {
    const lines = runnerCommands({ spec: spec(), runnerScript: REAL_RUNNER, instanceId: 'i-0abc', instanceType: 'm5.xlarge', region: 'us-east-1' });
    expect(lines[0]).toBe('set -e');
    expect(lines[1]).toBe(`mkdir -p '/opt/neurocaas'`);
    expect(lines[2]).toBe(`printf '%s' '${Buffer.from(REAL_RUNNER).toString('base64')}' | base64 -d > '${RUNNER_PATH}.part'`);
    expect(lines[4]).toBe(`mv -f '${RUNNER_PATH}.part' '${RUNNER_PATH}'`);
    expect(lines).toContain(`export NCAP_STORE='s3://an-alysis-bucket'`);
    expect(lines).toContain(`export NCAP_WORKDIR='/opt/neurocaas/env'`);
    expect(lines).toContain(`export NCAP_SCRATCH='/var/lib/neurocaas/20261122T151533Z-7f3a/a.csv'`);
    expect(lines).toContain(`export NCAP_INSTANCE_ID='i-0abc'`);
    expect(lines).toContain(`export NCAP_INSTANCE_TYPE='m5.xlarge'`);
    expect(lines).toContain(`export NCAP_SHUTDOWN='1'`);
    expect(lines).toContain(`export AWS_REGION='us-east-1'`);
    expect(lines).toContain(`export NCAP_DEADLINE_EPOCH_MS='${Date.parse('2026-11-22T17:15:33.000Z')}'`);
    expect(lines.at(-1)).toBe(`exec bash '/opt/neurocaas/ncap-runner.sh' --machine 'i-0abc' -- 'python' 'run.py' '--flag'`);
    expect(lines.some((line) => line.includes('169.254.169.254'))).toBe(false);
  });

  it('runs the runner under sh with every NCAP variable of the contract', () => {
    const run = runCommands({ spec: spec(), instanceId: 'i-0abc', instanceType: 'm5.xlarge', region: 'eu-west-1' });
    expect(run.result.status, run.result.stderr).toBe(0);
    expect(readFileSync(run.runnerPath, 'utf8')).toBe(run.fakeRunner);
    expect(run.args).toEqual(['--machine', 'i-0abc', '--', 'python', 'run.py', '--flag']);
    expect(run.env).toMatchObject({
      EXTRA: 'yes',
      NCAP_STORE: 's3://an-alysis-bucket',
      NCAP_JOB_ID: '20261122T151533Z-7f3a',
      NCAP_ANALYSIS: 'an-alysis',
      NCAP_DATASET: 'a.csv',
      NCAP_INPUT_KEY: 'lab/inputs/a.csv',
      NCAP_CONFIG_KEY: 'lab/results/job__an-alysis_20261122T151533Z-7f3a/config.json',
      NCAP_LOG_KEY: 'lab/results/job__an-alysis_20261122T151533Z-7f3a/logs/a.csv.log',
      NCAP_STATUS_KEY: 'lab/results/job__an-alysis_20261122T151533Z-7f3a/logs/DATASET_NAME-a.csv_STATUS.txt.json',
      NCAP_RESULTS_PREFIX: 'lab/results/job__an-alysis_20261122T151533Z-7f3a/process_results/a.csv/',
      NCAP_DEADLINE_EPOCH_MS: String(Date.parse('2026-11-22T17:15:33.000Z')),
      NCAP_WORKDIR: '/opt/neurocaas/env',
      NCAP_SCRATCH: '/var/lib/neurocaas/20261122T151533Z-7f3a/a.csv',
      NCAP_INSTANCE_ID: 'i-0abc',
      NCAP_INSTANCE_TYPE: 'm5.xlarge',
      NCAP_SHUTDOWN: '1',
      AWS_REGION: 'eu-west-1',
      AWS_DEFAULT_REGION: 'eu-west-1',
    });
  });

  it.each(['sh', 'bash'] as const)('keeps hostile values one literal word each under %s', (shell) => {
    const hostileSpec = spec({
      dataset: `odd name 'quoted' $(x) \`y\`.csv`,
      inputKey: `lab/inputs/${HOSTILE}`,
      command: ['python', HOSTILE, '', `--x=$(touch pwned3)`, "'"],
      env: { EXTRA: HOSTILE, EMPTY: '', NCAP_JOB_ID: 'the contract wins' },
    });
    const run = runCommands({ spec: hostileSpec, instanceId: 'i-0abc', instanceType: 'm5.xlarge' }, { shell });
    expect(run.result.status, run.result.stderr).toBe(0);
    expect(run.args).toEqual(['--machine', 'i-0abc', '--', 'python', HOSTILE, '', `--x=$(touch pwned3)`, "'"]);
    expect(run.env?.['EXTRA']).toBe(HOSTILE);
    expect(run.env?.['EMPTY']).toBe('');
    expect(run.env?.['NCAP_JOB_ID']).toBe('20261122T151533Z-7f3a');
    expect(run.env?.['NCAP_INPUT_KEY']).toBe(`lab/inputs/${HOSTILE}`);
    expect(run.env?.['NCAP_SCRATCH']).toBe(`/var/lib/neurocaas/20261122T151533Z-7f3a/odd name 'quoted' $(x) \`y\`.csv`);
    for (const name of ['pwned', 'pwned2', 'pwned3']) expect(existsSync(join(run.root, name))).toBe(false);
  });

  it('keeps any value literal (property)', () => {
    // Mostly the characters shells treat specially, some arbitrary text around them.
    const special = fc.constantFrom("'", '"', '$', '`', '\\', '\n', ' ', '(', ')', ';', '&', '|', '*', '?', '!', '{', '}', '~', '#', '=', '-');
    const unit = fc.oneof(special, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }).filter((c) => !c.includes('\0')));
    const value = fc.string({ unit, maxLength: 30 });
    fc.assert(
      fc.property(value, value, (envValue, word) => {
        const run = runCommands({ spec: spec({ env: { V: envValue }, command: ['cmd', word] }), instanceId: 'i-0abc', instanceType: 't3.micro' });
        expect(run.result.status, run.result.stderr).toBe(0);
        expect(run.env?.['V']).toBe(envValue);
        expect(run.args?.slice(3)).toEqual(['cmd', word]);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses environment names that are not shell names', () => {
    for (const name of ['BAD-NAME', 'A;touch x', '1ABC', 'A B', '$(x)', '']) {
      expect(() => runnerCommands({ spec: spec({ env: { [name]: 'v' } }), runnerScript: REAL_RUNNER, instanceId: 'i-0abc' })).toThrow(/is not a valid shell name/);
    }
  });

  it('asks the metadata service for the instance type when the caller does not know it', () => {
    const run = runCommands({ spec: spec(), instanceId: 'i-0abc' });
    expect(run.result.status, run.result.stderr).toBe(0);
    expect(run.env?.['NCAP_INSTANCE_TYPE']).toBe('m5.xlarge');
  });

  it('still starts the runner when the metadata service does not answer', () => {
    const run = runCommands({ spec: spec(), instanceId: 'i-0abc' }, { curl: 'fails' });
    expect(run.result.status, run.result.stderr).toBe(0);
    expect(run.env?.['NCAP_INSTANCE_TYPE']).toBe('');
    expect(run.args?.[1]).toBe('i-0abc');
  });

  it('never starts a runner that arrived damaged', () => {
    const run = runCommands(
      { spec: spec(), instanceId: 'i-0abc', instanceType: 't3.micro' },
      { mutate: (lines) => lines.map((line, i) => (i === 2 ? `printf '%s' '${Buffer.from('echo tampered').toString('base64')}' | base64 -d > '${line.split("> '")[1]}` : line)) },
    );
    expect(run.result.status).not.toBe(0);
    expect(existsSync(run.runnerPath)).toBe(false);
    expect(run.args).toBeUndefined();
  });

  it('writes the real runner byte for byte', () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-runner-write-'));
    const runnerPath = join(root, 'ncap-runner.sh');
    const lines = runnerCommands({ spec: spec(), runnerScript: REAL_RUNNER, instanceId: 'i-0abc', runnerPath });
    const writing = lines.slice(0, lines.findIndex((line) => line.startsWith('mv -f')) + 1);
    const result = spawnSync('sh', ['-c', writing.join('\n')], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(runnerPath, 'utf8')).toBe(REAL_RUNNER);
  });

  it('stays well under the size SSM accepts for one command, with the real runner', () => {
    const lines = runnerCommands({ spec: spec({ env: { A: 'x'.repeat(200), B: 'y'.repeat(200) } }), runnerScript: REAL_RUNNER, instanceId: 'i-0abc' });
    const totalBytes = Buffer.byteLength(JSON.stringify({ commands: lines, executionTimeout: ['3600'] }), 'utf8');
    expect(totalBytes).toBeLessThan(48 * 1024);
  });

  it('refuses an empty workflow command', () => {
    expect(() => runnerCommands({ spec: spec({ command: [] }), runnerScript: REAL_RUNNER, instanceId: 'i-0abc' })).toThrow(/empty workflow command/);
  });
});

describe('scratch folder', () => {
  it('is one folder per job and dataset', () => {
    expect(scratchFolder('J1', 'a.csv')).toBe('/var/lib/neurocaas/J1/a.csv');
  });

  it.each([['J1', '..'], ['J1', 'a/b'], ['..', 'a.csv'], ['J1', ''], ['a/b', 'x']])('refuses %j / %j', (jobId, dataset) => {
    expect(() => scratchFolder(jobId, dataset)).toThrow(/must be one folder name/);
  });
});

describe('execution timeout', () => {
  const now = Date.parse('2026-11-22T15:15:33.000Z');

  it('is the time left until the deadline plus a margin', () => {
    expect(executionTimeoutSeconds(now + 3_600_000, now)).toBe(3600 + EXECUTION_MARGIN_SECONDS);
  });

  it('rounds a part second up', () => {
    expect(executionTimeoutSeconds(now + 1_001, now)).toBe(2 + EXECUTION_MARGIN_SECONDS);
  });

  it('is at least one second when the deadline has long passed', () => {
    expect(executionTimeoutSeconds(now - 86_400_000, now)).toBe(1);
  });

  it('is at most 48 hours, the SSM limit', () => {
    expect(executionTimeoutSeconds(now + 72 * 3_600_000, now)).toBe(MAX_EXECUTION_TIMEOUT_SECONDS);
    expect(MAX_EXECUTION_TIMEOUT_SECONDS).toBe(172_800);
  });

  it('refuses a deadline that is not a number', () => {
    expect(() => executionTimeoutSeconds(Number.NaN, now)).toThrow(/epoch milliseconds/);
  });
});
