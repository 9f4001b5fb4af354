import { link, lstat, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ObjectExistsError } from '../core/errors.js';

/**
 * Moves the finished `temp` to `target` only if `target` does not exist (a hard link, then the
 * temp is removed), so a download never replaces a file that appeared meanwhile. On a file
 * system without hard links it falls back to a check then a rename (a narrow race, on such
 * disks only). Throws ObjectExistsError when `target` exists; the temp is removed either way.
 */
export async function placeCreateOnly(temp: string, target: string): Promise<void> {
  try {
    await link(temp, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await unlink(temp).catch(() => undefined);
      throw new ObjectExistsError(`${target} already exists; it was not replaced`);
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    if (await lstat(target).catch(() => undefined)) {
      await unlink(temp).catch(() => undefined);
      throw new ObjectExistsError(`${target} already exists; it was not replaced`);
    }
    await rename(temp, target);
    return;
  }
  await unlink(temp);
}

/** This process's temp file for a download to `target`: another process's never collides with it. */
export function downloadTempFor(target: string): string {
  return `${target}.ncap-part-${process.pid}`;
}

/**
 * Removes what killed downloads to `target` left: `<target>.ncap-part` (older versions) and
 * `<target>.ncap-part-<pid>` of processes no longer alive. A live process's temp is left alone.
 */
export async function removeStaleTemps(target: string): Promise<void> {
  const dir = dirname(target);
  const prefix = `${basename(target)}.ncap-part`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    if (rest !== '' && !/^-\d+$/.test(rest)) continue;
    const pid = rest === '' ? undefined : Number(rest.slice(1));
    if (pid !== undefined && pid !== process.pid && isAlive(pid)) continue;
    await unlink(join(dir, name)).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
