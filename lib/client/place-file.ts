import { link, lstat, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ObjectExistsError } from '../core/errors.js';

const TEMP_SUFFIX = '.ncap-part';

/**
 * Moves the finished `temp` to `target` only if `target` does not exist (a hard link, then the
 * temp is removed), so a download never replaces a file that appeared meanwhile. On a file
 * system without hard links it falls back to a check then a rename (a narrow race, on such
 * disks only). Throws ObjectExistsError when `target` exists, and passes on any other failure
 * to place it; the temp is removed either way. Once `target` is placed, a temp that cannot be
 * removed is not a failure (the result is there; a leftover is removed by the next `results`).
 */
export async function placeCreateOnly(temp: string, target: string): Promise<void> {
  const exists = () => new ObjectExistsError(`${target} already exists; it was not replaced`);
  let renamed = false;
  try {
    try {
      await link(temp, target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw exists();
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    }
    if (await lstat(target).catch(() => undefined)) throw exists();
    await rename(temp, target);
    renamed = true;
  } finally {
    // After a rename the name is free: nothing of ours to remove there.
    if (!renamed) await unlink(temp).catch(() => undefined);
  }
}

/** This process's temp file for a download to `target`: another process's never collides with it. */
export function downloadTempFor(target: string): string {
  return `${target}${TEMP_SUFFIX}-${process.pid}`;
}

/**
 * Downloads to `target` create-only: `writeTemp` writes the bytes to the temp file it is given
 * (this process's, downloadTempFor), which is then placed with placeCreateOnly. Whatever fails,
 * no temp is left and `target` is never replaced.
 */
export async function downloadCreateOnly(target: string, writeTemp: (temp: string) => Promise<void>): Promise<void> {
  const temp = downloadTempFor(target);
  try {
    await writeTemp(temp);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  await placeCreateOnly(temp, target);
}

/**
 * Removes, from the folder `dir`, what killed downloads of the files `names` (in `dir`) left:
 * regular files `<name>.ncap-part` (older versions) and `<name>.ncap-part-<pid>` of processes no
 * longer alive. Anything else is left alone: other names, a link or folder, a live process's temp,
 * this process's own (a download under way here; a new one overwrites it anyway). One folder
 * listing per call, so a caller cleans each folder once, not once per file. Returns how many it
 * removed; a missing folder has none.
 */
export async function removeStaleTemps(dir: string, names: ReadonlySet<string>): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let removed = 0;
  for (const entry of entries) {
    // A file of this call is never a leftover, whatever its name.
    if (!entry.isFile() || names.has(entry.name)) continue;
    const at = entry.name.lastIndexOf(TEMP_SUFFIX);
    if (at <= 0 || !names.has(entry.name.slice(0, at))) continue;
    const rest = entry.name.slice(at + TEMP_SUFFIX.length);
    if (rest !== '' && !/^-\d+$/.test(rest)) continue;
    const pid = rest === '' ? undefined : Number(rest.slice(1));
    if (pid !== undefined && (pid === process.pid || isAlive(pid))) continue;
    if (await unlink(join(dir, entry.name)).then(() => true, () => false)) removed += 1;
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
