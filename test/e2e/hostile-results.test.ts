/**
 * `neurocaas results --out` against a hostile user: an --out folder that already holds other
 * files, a copy killed midway, a full disk, a file where a folder must go. The results are
 * resumable and byte-identical, and no file that is not the job's result is ever called one.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSharedSandbox, EXIT, JobFolder, listFilesRecursive, transcript, waitFor, type Sandbox } from './helpers.js';

const analysis = 'test-workflow';
let sandbox: Sandbox & { dispose(): Promise<void> };
let job: JobFolder;

beforeAll(async () => {
  sandbox = await createSharedSandbox();
  const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
  // 8 MiB of log: more than the small disk below takes, and long enough to kill a copy midway.
  const config = await sandbox.config('config.json', { mode: 'succeed', logMiB: 8 });
  const run = await sandbox.cli(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);
  expect(run.code, transcript(run)).toBe(EXIT.succeeded);
  job = await JobFolder.single(sandbox.root, analysis, 'lab');
}, 60_000);

afterAll(async () => sandbox.dispose());

/** Every file below `dir`, relative, sorted. */
async function filesIn(dir: string): Promise<string[]> {
  return (await listFilesRecursive(dir)).map((file) => path.relative(dir, file).split(path.sep).join('/')).sort();
}

async function expectIdenticalToJob(out: string): Promise<void> {
  const expected = await job.files();
  expect(await filesIn(out)).toEqual(expected);
  for (const file of expected) expect((await readFile(path.join(out, file))).equals(await readFile(job.path(file))), `${file} byte-identical`).toBe(true);
}

describe('neurocaas results --out, against what is already in the folder', () => {
  it('never calls a different file of the same size complete: refuses it by name and leaves it as it was', async () => {
    const out = path.join(sandbox.work, 'same-size');
    const size = (await stat(job.path('end.txt'))).size;
    const mine = 'X'.repeat(size);
    await sandbox.file('same-size/end.txt', mine);

    const result = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toContain(`${path.join(out, 'end.txt')} already exists with different content`);
    expect(result.stderr).toMatch(/choose an empty --out folder/);
    expect(await readFile(path.join(out, 'end.txt'), 'utf8')).toBe(mine);
  });

  it('skips a file already there with the same bytes, and copies the rest', async () => {
    const out = path.join(sandbox.work, 'same-bytes');
    await mkdir(out);
    await writeFile(path.join(out, 'end.txt'), await readFile(job.path('end.txt')));

    const result = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(/\(1 already complete\)/);
    await expectIdenticalToJob(out);
  });

  it('names a file that stands where the results need a folder, and changes nothing', async () => {
    const out = path.join(sandbox.work, 'file-for-folder');
    await sandbox.file('file-for-folder/logs', 'my notes\n');

    const result = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toContain(`${path.join(out, 'logs')} is a file, where the results need a folder`);
    expect(result.stderr).not.toMatch(/Internal|EEXIST|ENOTDIR/);
    expect(await readFile(path.join(out, 'logs'), 'utf8')).toBe('my notes\n');
  });
});

describe('neurocaas results --out killed midway, then run again', () => {
  it('resumes from what the kill left (complete files and a temp file): every file arrives byte-identical, no temp file stays', async () => {
    const out = path.join(sandbox.work, 'killed');
    const first = sandbox.start(['results', job.jobId, '--out', out, '--user', 'alice']);
    // Killed as soon as the copy has begun: whatever it left is what a researcher finds.
    await waitFor(() => readdirSync(out, { withFileTypes: true }).length > 0 || !first.running, 'the first copy to begin', 20_000, 5).catch(() => undefined);
    first.signal('SIGKILL');
    await first.exited;
    // What a kill inside the big file leaves, whichever moment the kill above hit.
    await rm(path.join(out, 'logs', 'a.csv.log'), { force: true });
    await sandbox.file('killed/logs/a.csv.log.ncap-part', 'half of it');

    const again = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);

    expect(again.code, transcript(again)).toBe(0);
    await expectIdenticalToJob(out);
  });
});

describe('two neurocaas results into one --out folder at once', () => {
  it('both end well, every file byte-identical, no temp file left', async () => {
    const out = path.join(sandbox.work, 'twice-at-once');
    const [one, two] = await Promise.all([0, 1].map(() => sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice'])));

    expect(one?.code, one && transcript(one)).toBe(0);
    expect(two?.code, two && transcript(two)).toBe(0);
    await expectIdenticalToJob(out);
  });
});

describe('neurocaas results --out on a full disk', () => {
  it('says the disk is full, naming the file and what to do, presents no part of it, and resumes once there is room', async () => {
    if (process.getuid?.() !== 0) {
      console.log('skipping the full-disk case: mounting a small tmpfs needs root');
      return;
    }
    const small = path.join(sandbox.dir, 'small');
    mkdirSync(small);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    if (mounted.status !== 0) {
      console.log(`skipping the full-disk case: mount -t tmpfs failed (${String(mounted.stderr).trim()})`);
      return;
    }
    try {
      const out = path.join(small, 'out');

      const result = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);

      expect(result.code, transcript(result)).toBe(EXIT.usage);
      expect(result.stderr).toContain(`no space left on the disk of ${out} while copying logs/a.csv.log`);
      expect(result.stderr).toMatch(/free space .* and run the same command again: it resumes/);
      expect(result.stderr).not.toMatch(/Internal|ENOSPC/);
      const left = await filesIn(out);
      expect(left).not.toContain('logs/a.csv.log');
      expect(left.filter((file) => file.includes('.ncap-'))).toEqual([]);
      for (const file of left) expect((await readFile(path.join(out, file))).equals(await readFile(job.path(file))), `${file} is the job's`).toBe(true);

      expect(spawnSync('mount', ['-o', 'remount,size=64m', small]).status).toBe(0);
      const again = await sandbox.cli(['results', job.jobId, '--out', out, '--user', 'alice']);
      expect(again.code, transcript(again)).toBe(0);
      await expectIdenticalToJob(out);
    } finally {
      spawnSync('umount', ['-l', small]);
    }
  });
});
