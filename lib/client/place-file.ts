import { link, lstat, rename, unlink } from 'node:fs/promises';
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
