/**
 * `results --out` into a folder of many files (ResearcherClient.results on the local backend):
 * what killed copies left is cleaned with one listing per folder, not one per file, and only
 * the temps of the job's own files are removed.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jobKeys } from '../../../lib/core/keys.js';
import { localFixture, type ClientFixture } from '../../support/client-fixtures.js';

// Every readdir goes through; the folders it lists are counted.
const listed = vi.hoisted(() => [] as string[]);
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const readdir = (path: string, ...rest: unknown[]) => {
    listed.push(String(path));
    return (real.readdir as (...args: unknown[]) => unknown)(path, ...rest);
  };
  return { ...real, readdir, default: { ...real, readdir } };
});

const FILES = 40;
let fx: ClientFixture;
let jobId: string;

beforeAll(async () => {
  fx = await localFixture();
  const data = join(fx.dir, 'a.csv');
  const config = join(fx.dir, 'quick.json');
  await writeFile(data, 'frame,x\n1,2\n');
  await writeFile(config, JSON.stringify({ mode: 'succeed', lines: 1 }));
  const job = await fx.clientFor('alice').run({ analysis: fx.analysis, data: [data], config });
  expect(job.outcome).toBe('SUCCEEDED');
  jobId = job.jobId;
  const prefix = jobKeys('lab', fx.analysis, jobId).prefix;
  for (let i = 0; i < FILES; i += 1) await fx.putObject(`${prefix}many/f${i}.txt`, `file ${i}\n`);
}, 60_000);
afterAll(async () => fx?.close());

describe('results --out into a folder of many files', () => {
  it("lists the folder once for all its files, and removes only dead copies' temps of the job's files", async () => {
    const out = join(fx.dir, 'out');
    const many = join(out, 'many');
    await mkdir(many, { recursive: true });
    const dead = spawnSync('true').pid as number;
    await writeFile(join(many, `f1.txt.ncap-part-${dead}`), 'half of file 1');
    await writeFile(join(many, 'f2.txt.ncap-part'), 'half of file 2, older version');
    await writeFile(join(many, `notes.txt.ncap-part-${dead}`), 'the researcher’s own file');
    listed.length = 0;

    const results = await fx.clientFor('alice').results(jobId, out);

    expect(listed.filter((path) => path === many)).toHaveLength(1);
    expect(results.files.filter((file) => file.startsWith('many/'))).toHaveLength(FILES);
    const names = (await readdir(many)).sort();
    expect(names).toEqual([...Array.from({ length: FILES }, (_, i) => `f${i}.txt`), `notes.txt.ncap-part-${dead}`].sort());
    expect(await readFile(join(many, 'f1.txt'), 'utf8')).toBe('file 1\n');
  });
});
