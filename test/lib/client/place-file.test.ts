/**
 * Create-only placement of downloads (lib/client/place-file.ts): a target is never replaced, no
 * temp is left whatever fails, and only leftovers of the files being copied are removed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { downloadCreateOnly, downloadTempFor, placeCreateOnly, removeStaleTemps } from '../../../lib/client/place-file.js';
import { ObjectExistsError } from '../../../lib/core/errors.js';

// An unlink that fails for one path (EIO), as a disk can; every other call is the real one.
const failing = vi.hoisted(() => ({ unlinkOf: undefined as string | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    unlink: async (path: string) => {
      if (path === failing.unlinkOf) throw Object.assign(new Error(`EIO: i/o error, unlink '${path}'`), { code: 'EIO' });
      return real.unlink(path);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ncap-place-'));
});
afterEach(async () => {
  failing.unlinkOf = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** A pid no process has any more (its process ran and exited). */
function deadPid(): number {
  const child = spawnSync('true');
  return child.pid as number;
}

describe('placeCreateOnly', () => {
  it('refuses a target that exists, leaves it as it was and removes the temp', async () => {
    const temp = join(dir, 'a.txt.part');
    const target = join(dir, 'a.txt');
    await writeFile(temp, 'downloaded');
    await writeFile(target, 'mine');

    await expect(placeCreateOnly(temp, target)).rejects.toThrow(ObjectExistsError);

    expect(await readFile(target, 'utf8')).toBe('mine');
    expect(await readdir(dir)).toEqual(['a.txt']);
  });

  it('passes on a link failure it cannot fall back from (ENOENT) and still removes the temp', async () => {
    const temp = join(dir, 'a.txt.part');
    await writeFile(temp, 'downloaded');

    await expect(placeCreateOnly(temp, join(dir, 'gone', 'a.txt'))).rejects.toMatchObject({ code: 'ENOENT' });

    expect(await readdir(dir)).toEqual([]);
  });

  it('calls a placed target placed even when its temp cannot be removed afterwards', async () => {
    const temp = join(dir, 'a.txt.part');
    const target = join(dir, 'a.txt');
    await writeFile(temp, 'downloaded');
    failing.unlinkOf = temp;

    await placeCreateOnly(temp, target);

    expect(await readFile(target, 'utf8')).toBe('downloaded');
  });
});

describe('downloadCreateOnly', () => {
  it('places what was written through this process temp and leaves no temp', async () => {
    const target = join(dir, 'a.txt');
    const temps: string[] = [];

    await downloadCreateOnly(target, async (temp) => {
      temps.push(temp);
      await writeFile(temp, 'bytes');
    });

    expect(temps).toEqual([downloadTempFor(target)]);
    expect(await readFile(target, 'utf8')).toBe('bytes');
    expect(await readdir(dir)).toEqual(['a.txt']);
  });

  it('leaves neither temp nor target when the write fails midway', async () => {
    const failure = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });

    await expect(
      downloadCreateOnly(join(dir, 'a.txt'), async (temp) => {
        await writeFile(temp, 'half');
        throw failure;
      }),
    ).rejects.toBe(failure);

    expect(await readdir(dir)).toEqual([]);
  });
});

describe('removeStaleTemps', () => {
  it("removes the named files' temps of dead processes and older versions, and nothing else", async () => {
    const dead = deadPid();
    const leftovers = [`a.txt.ncap-part-${dead}`, 'b.txt.ncap-part'];
    const kept = [
      `notes.txt.ncap-part-${dead}`, // not a file being copied: the user's
      `a.txt.ncap-part-${process.ppid}`, // a live process's download
      `a.txt.ncap-part-${process.pid}`, // this process's own, under way
      `b.txt.ncap-part-${dead}x`, // not the temp pattern
      `c.txt.ncap-part-${dead}`, // a link, not a leftover
      `d.txt.ncap-part-${dead}`, // a folder
      `a.txt.ncap-part-${dead}0`, // itself one of the files being copied
    ];
    for (const name of [...leftovers, ...kept.slice(0, 4)]) await writeFile(join(dir, name), 'x');
    await symlink(join(dir, 'elsewhere'), join(dir, `c.txt.ncap-part-${dead}`));
    await mkdir(join(dir, `d.txt.ncap-part-${dead}`));
    await writeFile(join(dir, `a.txt.ncap-part-${dead}0`), 'a result');

    const removed = await removeStaleTemps(dir, new Set(['a.txt', 'b.txt', 'c.txt', 'd.txt', `a.txt.ncap-part-${dead}0`]));

    expect(removed).toBe(2);
    expect((await readdir(dir)).sort()).toEqual([...kept].sort());
  });

  it('finds nothing to remove in a folder that does not exist', async () => {
    expect(await removeStaleTemps(join(dir, 'missing'), new Set(['a.txt']))).toBe(0);
  });
});
