/**
 * Submissions that must not run (exit 3, reason in the job's logs, nothing launched) and
 * command lines that are wrong before anything is submitted (exit 2, nothing staged).
 */
import { existsSync } from 'node:fs';
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  EXIT,
  fixtureBlueprintsDir,
  jobFolderNames,
  JobFolder,
  launchedMachineFolders,
  transcript,
  type CliResult,
  type Sandbox,
} from './helpers.js';

interface RunRequest {
  config: unknown;
  user: string;
  datasets?: string[];
  extraArgs?: string[];
}

/** Writes the datasets and config into the sandbox and runs test-workflow on them. */
async function runTestWorkflow(sandbox: Sandbox, request: RunRequest): Promise<CliResult> {
  const data = await Promise.all((request.datasets ?? ['a.csv']).map((name) => sandbox.file(`data/${name}`, 'frame,x\n1,2\n')));
  const config = await sandbox.config('config.json', request.config);
  return sandbox.cli(['run', 'test-workflow', '--data', ...data, '--config', config, '--user', request.user, ...(request.extraArgs ?? [])]);
}

/**
 * The contract of a rejected submission: exit 3, the reason in the printed result, the
 * certificate, every dataset's status and end.txt, and no machine launched, no results.
 */
async function expectRejected(sandbox: Sandbox, result: CliResult, group: string, reason: string, datasets = ['a.csv']): Promise<JobFolder> {
  expect(result.code, transcript(result)).toBe(EXIT.rejected);
  const job = await JobFolder.single(sandbox.root, 'test-workflow', group);
  expect(result.stdout).toContain(`job ${job.jobId}: REJECTED`);
  expect(result.stdout).toContain(`  rejected: ${reason}`);

  const certificate = certificateLines(await job.certificate());
  expect(certificate.filter((line) => line.startsWith(`job ${job.jobId} REJECTED, nothing was launched`)), certificate.join('\n')).toHaveLength(1);
  expect(certificate.some((line) => line.includes(reason)), certificate.join('\n')).toBe(true);
  for (const dataset of datasets) {
    const status = await job.status(dataset);
    expect(status.status).toBe('FAILED');
    expect(status.reason).toContain(reason);
    expect(status.instanceId).toBeUndefined();
  }
  expect(await job.text('end.txt')).toMatch(new RegExp(`^job ${job.jobId} REJECTED\\n`));

  expect(await launchedMachineFolders(sandbox.root)).toEqual([]);
  expect((await job.files()).filter((file) => file.startsWith('process_results/'))).toEqual([]);
  return job;
}

describe('neurocaas run rejects a submission it must not run', () => {
  it('rejects a job that would take the user over budget', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'poor', config: { mode: 'succeed' } });

    await expectRejected(
      sandbox,
      result,
      'poorlab',
      'over budget: this job needs $0.0028 reserved but user "poor" has $0.0001 left of $0.0001 for period',
    );
  });

  it('rejects more datasets than the analysis allows in one job', async () => {
    const sandbox = await createSandbox();
    const datasets = ['a.csv', 'b.csv', 'c.csv', 'd.csv', 'e.csv', 'f.csv'];

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'succeed' }, datasets });

    await expectRejected(
      sandbox,
      result,
      'lab',
      'too many datasets: 6 named, "test-workflow" allows at most 5 per submission; split it into several submissions',
      datasets,
    );
  });

  it('rejects a config value the blueprint schema does not allow', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'dance' } });

    await expectRejected(sandbox, result, 'lab', 'config key "mode" must be equal to one of the allowed values, got "dance" (in lab/configs/config.json)');
  });

  it('rejects a config key the blueprint schema does not know', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'succeed', colour: 'blue' } });

    await expectRejected(sandbox, result, 'lab', 'config has an unknown key "colour" (in lab/configs/config.json)');
  });

  it('rejects an instance type the blueprint does not allow', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'succeed' }, extraArgs: ['--instance-type', 'm5.24xlarge'] });

    await expectRejected(sandbox, result, 'lab', 'instance_type "m5.24xlarge" is not allowed for "test-workflow"; choose one of: t3.micro, t3.small');
  });

  it('rejects a user who may not run the analysis', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'bob', config: { mode: 'succeed' } });

    await expectRejected(sandbox, result, 'other', 'user "bob" may not run "test-workflow" (allowed: kalman-smoother); ask an admin');
  });

  it("rejects a submission into a group that is not the user's", async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'succeed' }, extraArgs: ['--group', 'other'] });

    await expectRejected(sandbox, result, 'other', 'user "alice" belongs to group "lab", not "other"; submit under "lab/submissions/"');
  });

  it('reports every problem of a submission at once', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'alice', config: { mode: 'dance', colour: 'blue' }, extraArgs: ['--instance-type', 'm5.24xlarge'] });

    const job = await expectRejected(sandbox, result, 'lab', 'config key "mode" must be equal to one of the allowed values');
    const certificate = await job.certificate();
    expect(certificate).toContain('config has an unknown key "colour"');
    expect(certificate).toContain('instance_type "m5.24xlarge" is not allowed');
  });

  it('prints the rejection reason on stderr', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'bob', config: { mode: 'succeed' } });

    expect(result.code, transcript(result)).toBe(EXIT.rejected);
    expect(result.stderr).toContain('user "bob" may not run "test-workflow"');
  });

  it('reports a rejection with its reasons in the --json document', async () => {
    const sandbox = await createSandbox();

    const result = await runTestWorkflow(sandbox, { user: 'bob', config: { mode: 'succeed' }, extraArgs: ['--json'] });

    expect(result.code, transcript(result)).toBe(EXIT.rejected);
    const job = await JobFolder.single(sandbox.root, 'test-workflow', 'other');
    expect(JSON.parse(result.stdout)).toMatchObject({
      jobId: job.jobId,
      outcome: 'REJECTED',
      rejection: ['user "bob" may not run "test-workflow" (allowed: kalman-smoother); ask an admin'],
      datasets: [expect.objectContaining({ name: 'a.csv', status: 'FAILED' })],
    });
  });

  it('answers at once, with the error and what to do, a submission whose evaluation throws', async () => {
    const sandbox = await createSandbox();
    // The chain's next stage names a file as its environment folder: planning the job throws.
    const blueprints = path.join(sandbox.dir, 'blueprints');
    const fixture = JSON.parse(await readFile(path.join(fixtureBlueprintsDir, 'test-workflow', 'blueprint.json'), 'utf8')) as Record<string, unknown>;
    for (const [name, extra] of [
      ['chained', { followOn: { analysis: 'broken-next', inputs: { file: 'result.json' } } }],
      ['broken-next', { environment: { local: { dir: 'env/work.mjs' } } }],
    ] as const) {
      await cp(path.join(fixtureBlueprintsDir, 'test-workflow', 'env'), path.join(blueprints, name, 'env'), { recursive: true });
      await writeFile(path.join(blueprints, name, 'blueprint.json'), JSON.stringify({ ...fixture, name, ...extra }));
    }
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', 'chained', '--data', data, '--config', config, '--user', 'alice'], { blueprintsDir: blueprints });

    expect(result.code, transcript(result)).toBe(EXIT.rejected);
    expect(result.durationMs, transcript(result)).toBeLessThan(15_000);
    expect(result.stderr, transcript(result)).toContain(`the submission could not be evaluated: ENOTDIR: not a directory, scandir '${path.join(blueprints, 'broken-next', 'env', 'work.mjs')}'`);
    expect(result.stderr, transcript(result)).toMatch(/tell the analysis developer or your admin, then submit it again/);
    expect(result.stderr, transcript(result)).not.toMatch(/did not answer|ReceiptTimeout/);
    expect(await readFile(sandbox.bucketPath('chained', 'lab/inputs/a.csv'), 'utf8')).toBe('frame,x\n1,2\n');
    expect(await launchedMachineFolders(sandbox.root)).toEqual([]);
  });
});

describe('neurocaas run refuses a wrong command line before submitting anything', () => {
  it('names the available analyses when the analysis is unknown', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'x\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', 'no-such-analysis', '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toBe(
      `error [AnalysisNotFound]: analysis "no-such-analysis" not found in ${path.resolve(fixtureBlueprintsDir)}; available: test-timeout, test-workflow\n`,
    );
    expect(existsSync(path.join(sandbox.root, 'buckets'))).toBe(false);
  });

  it('names a --data file that does not exist', async () => {
    const sandbox = await createSandbox();
    const config = await sandbox.config('config.json', { mode: 'succeed' });
    const missing = path.join(sandbox.work, 'missing.csv');

    const result = await sandbox.cli(['run', 'test-workflow', '--data', missing, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toBe(`error [Usage]: --data ${missing}: no such file\n`);
    expect(await jobFolderNames(sandbox.root, 'test-workflow', 'lab')).toEqual([]);
    expect(existsSync(sandbox.bucketPath('test-workflow', 'lab/configs/config.json'))).toBe(false);
  });

  it('names a --config file that does not exist', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'x\n');
    const missing = path.join(sandbox.work, 'missing.json');

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', missing, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toBe(`error [Usage]: --config ${missing}: no such file\n`);
    expect(existsSync(sandbox.bucketPath('test-workflow', 'lab/inputs/a.csv'))).toBe(false);
  });

  it('names the profiles to choose from when several users exist and none is given', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'x\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config]);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toMatch(/^error \[Usage\]: several user profiles in .* \(alice, bob, poor\); choose one with --user NAME\n$/);
  });

  it('exits 2 on an unknown flag', async () => {
    const sandbox = await createSandbox();

    const data = await sandbox.file('a.csv', 'x\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });

    const result = await sandbox.cli(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice', '--dry-run']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toBe("error: unknown option '--dry-run'\n");
    expect(existsSync(path.join(sandbox.root, 'buckets'))).toBe(false);
  });

  it('refuses to overwrite an uploaded input with a different file of the same name', async () => {
    const sandbox = await createSandbox();
    const original = await sandbox.file('first/a.csv', 'frame,x\n1,2\n');
    const different = await sandbox.file('second/a.csv', 'frame,x\n9,9\n');
    const config = await sandbox.config('config.json', { mode: 'succeed' });
    const first = await sandbox.cli(['run', 'test-workflow', '--data', original, '--config', config, '--user', 'alice']);
    expect(first.code, transcript(first)).toBe(EXIT.succeeded);

    const second = await sandbox.cli(['run', 'test-workflow', '--data', different, '--config', config, '--user', 'alice']);

    expect(second.code, transcript(second)).toBe(EXIT.usage);
    expect(second.stderr).toMatch(/^error \[ObjectExists\]: lab\/inputs\/a\.csv already exists in .* with different content; the platform never overwrites uploads\. Rename .*a\.csv/);
    expect(await readFile(sandbox.bucketPath('test-workflow', 'lab/inputs/a.csv'), 'utf8')).toBe('frame,x\n1,2\n');
    expect(await jobFolderNames(sandbox.root, 'test-workflow', 'lab')).toHaveLength(1);
  });
});
