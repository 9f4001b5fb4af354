/**
 * The commands that look at jobs after (or while) they run: jobs, status, logs, results,
 * cancel. Most tests share one finished two-dataset job.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateLines,
  createSandbox,
  createSharedSandbox,
  EXIT,
  JobFolder,
  listFilesRecursive,
  transcript,
  type Sandbox,
} from './helpers.js';

describe('commands on a finished job', () => {
  let sandbox: Sandbox & { dispose(): Promise<void> };
  let job: JobFolder;

  beforeAll(async () => {
    sandbox = await createSharedSandbox();
    const data = [await sandbox.file('a.csv', 'frame,x\n1,2\n'), await sandbox.file('b.csv', 'frame,x\n3,4\n5,6\n')];
    const config = await sandbox.config('config.json', { mode: 'succeed', lines: 3 });
    const run = await sandbox.cli(['run', 'test-workflow', '--data', ...data, '--config', config, '--user', 'alice']);
    if (run.code !== EXIT.succeeded) throw new Error(`the job the tests look at did not succeed\n${transcript(run)}`);
    job = await JobFolder.single(sandbox.root, 'test-workflow', 'lab');
  });
  afterAll(async () => sandbox.dispose());

  it('jobs lists the job with its analysis, group, phase and dataset counts', async () => {
    const result = await sandbox.cli(['jobs']);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^${job.jobId}\\s+test-workflow\\s+lab\\s+DONE\\s+2 SUCCEEDED\\n$`));
  });

  it('jobs --json prints the jobs as one JSON document', async () => {
    const result = await sandbox.cli(['jobs', '--json']);

    expect(result.code, transcript(result)).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      jobs: [
        expect.objectContaining({
          jobId: job.jobId,
          analysis: 'test-workflow',
          group: 'lab',
          user: 'alice',
          phase: 'DONE',
          datasets: [
            { name: 'a.csv', phase: 'SUCCEEDED' },
            { name: 'b.csv', phase: 'SUCCEEDED' },
          ],
        }),
      ],
    });
  });

  it("status prints the outcome, each dataset's status, the cost and the certificate", async () => {
    const result = await sandbox.cli(['status', job.jobId]);

    expect(result.code, transcript(result)).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual([`job ${job.jobId} (test-workflow, group lab): SUCCEEDED`, '  a.csv: SUCCEEDED', '  b.csv: SUCCEEDED', expect.stringMatching(/^cost: \$\d+\.\d+$/)]);
    expect(result.stdout).toContain((await job.certificate()).trimEnd());
  });

  it('status --json carries the status files and the certificate', async () => {
    const result = await sandbox.cli(['status', job.jobId, '--json']);

    expect(result.code, transcript(result)).toBe(0);
    const document = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(document).toMatchObject({ jobId: job.jobId, outcome: 'SUCCEEDED', phase: 'DONE', certificate: await job.certificate() });
    expect(document['datasets']).toEqual([
      JSON.parse(await job.text('logs/DATASET_NAME-a.csv_STATUS.txt.json')),
      JSON.parse(await job.text('logs/DATASET_NAME-b.csv_STATUS.txt.json')),
    ]);
  });

  it("logs prints each dataset's log under its name", async () => {
    const result = await sandbox.cli(['logs', job.jobId]);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toBe(`==> a.csv <==\n${await job.log('a.csv')}\n==> b.csv <==\n${await job.log('b.csv')}`);
    expect(result.stdout).toContain('line 3 of 3');
  });

  it('logs --json maps every dataset to its log', async () => {
    const result = await sandbox.cli(['logs', job.jobId, '--json']);

    expect(result.code, transcript(result)).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ jobId: job.jobId, logs: { 'a.csv': await job.log('a.csv'), 'b.csv': await job.log('b.csv') } });
  });

  it('results copies every file of the job folder to --out', async () => {
    const out = path.join(sandbox.dir, 'copy-all');

    const result = await sandbox.cli(['results', job.jobId, '--out', out]);

    expect(result.code, transcript(result)).toBe(0);
    const expected = await job.files();
    expect(expected).toEqual(expect.arrayContaining(['end.txt', 'provenance.json', 'logs/certificate.txt', 'process_results/a.csv/result.json', 'process_results/b.csv/result.json']));
    expect(result.stdout).toBe(`copied ${expected.length} file(s) to ${out}\n`);
    const copied = (await listFilesRecursive(out)).map((file) => path.relative(out, file).split(path.sep).join('/')).sort();
    expect(copied).toEqual(expected);
    for (const file of expected) expect(await readFile(path.join(out, file), 'utf8')).toBe(await job.text(file));
  });

  it('results --json lists the copied files', async () => {
    const out = path.join(sandbox.dir, 'copy-json');

    const result = await sandbox.cli(['results', job.jobId, '--out', out, '--json']);

    expect(result.code, transcript(result)).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ jobId: job.jobId, outDir: out, files: await job.files(), skipped: [], finished: true });
  });

  it('results refuses to copy over files already in --out', async () => {
    const out = path.join(sandbox.dir, 'copy-twice');
    const first = await sandbox.cli(['results', job.jobId, '--out', out]);
    expect(first.code, transcript(first)).toBe(0);
    await writeFile(path.join(out, 'end.txt'), 'my own notes\n');

    const second = await sandbox.cli(['results', job.jobId, '--out', out]);

    expect(second.code, transcript(second)).toBe(EXIT.usage);
    expect(second.stderr).toMatch(/^error \[ObjectExists\]: .* already exists with different content; choose an empty --out folder \(nothing was overwritten; 0 file\(s\) copied before this one\)\n$/);
    expect(await readFile(path.join(out, 'end.txt'), 'utf8')).toBe('my own notes\n');
  });

  it('cancel of a finished job says so and changes nothing', async () => {
    const end = await job.text('end.txt');

    const result = await sandbox.cli(['cancel', job.jobId]);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toBe(`job ${job.jobId} already finished: SUCCEEDED\n`);
    expect(await job.text('end.txt')).toBe(end);
    expect(certificateLines(await job.certificate()).some((line) => line.startsWith('cancel requested'))).toBe(false);
  });

  it('an unknown job id is a usage error that names the recent jobs', async () => {
    const result = await sandbox.cli(['status', '20990101T000000Z-000000']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toBe(
      `error [JobNotFound]: job "20990101T000000Z-000000" not found under ${sandbox.root}; recent jobs: ${job.jobId} (see "neurocaas jobs")\n`,
    );
  });
});

describe('commands on a running job', () => {
  it('logs --follow prints the log lines as they come and stops when the job ends', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('config.json', { mode: 'sleep', lines: 20, seconds: 1 });
    const run = sandbox.start(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);
    const job = await JobFolder.appears(sandbox.root, 'test-workflow', 'lab');
    await job.waitForStatus('a.csv', 'RUNNING');

    const follow = await sandbox.cli(['logs', job.jobId, '--follow']);

    expect(follow.code, transcript(follow)).toBe(0);
    expect(job.has('end.txt')).toBe(true);
    const printed = follow.stdout.split('\n').filter((line) => line.startsWith('  [a.csv] line '));
    expect(printed).toEqual(Array.from({ length: 20 }, (_, index) => `  [a.csv] line ${index + 1} of 20`));
    expect(follow.stdout.trimEnd().split('\n').at(-1)).toBe(`job ${job.jobId}: SUCCEEDED`);
    expect((await run.exited).code).toBe(EXIT.succeeded);
  });

  it('results of a running job copies what exists and says it is partial', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.config('config.json', { mode: 'sleep', seconds: 30 });
    const run = sandbox.start(['run', 'test-workflow', '--data', data, '--config', config, '--user', 'alice']);
    const job = await JobFolder.appears(sandbox.root, 'test-workflow', 'lab');
    await job.waitForStatus('a.csv', 'RUNNING');
    const out = path.join(sandbox.dir, 'partial');

    const result = await sandbox.cli(['results', job.jobId, '--out', out]);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(/^copied \d+ file\(s\) to .* \(the job is still running: results are partial\)\n$/);
    expect(await readFile(path.join(out, 'logs', 'certificate.txt'), 'utf8')).toContain(`job ${job.jobId} accepted`);
    run.signal('SIGINT');
    expect((await run.exited).code).toBe(EXIT.interrupted);
  });
});
