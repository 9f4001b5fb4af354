import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { link, mkdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';

/** Temp files start with this, so listings can skip half-written files. */
export const TEMP_PREFIX = '.ncap-tmp-';

function tempPathFor(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

/** Replaces `path` atomically: readers see the old file or the new one, never half of it. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = tempPathFor(path);
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (error) {
    // A full disk fails the write itself: its temp must not stay behind either.
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Creates `path` atomically and only if it does not exist (hard link of a finished temp file).
 * Returns false when it already existed; the existing file is untouched.
 */
export async function createFileExclusive(path: string, data: string | Uint8Array): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true });
  const temp = tempPathFor(path);
  try {
    await writeFile(temp, data);
    await link(temp, path);
    return true;
  } catch (error) {
    if (isErrno(error, 'EEXIST')) return false;
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

export async function readJsonIfExists<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return isErrno(error, 'EPERM');
  }
}

/** Bytes an unprivileged process may still write on the file system holding `path`; undefined when it cannot be asked. */
export function freeBytesOf(path: string): number | undefined {
  try {
    const info = statfsSync(path);
    return info.bavail * info.bsize;
  } catch {
    // Only said in a message: a file system that cannot tell just goes without the figure.
    return undefined;
  }
}

/** A reserve is written only where this many times its size is free. */
const RESERVE_HEADROOM = 4;

/**
 * Keeps a file of `sizeBytes` at `path` (written if missing, with bytes no file system can
 * leave unallocated): room that releasing it gives back once the disk is full, for the few
 * writes that record why. Best effort: on a disk already too full it is simply not there.
 */
export function keepSpaceReserve(path: string, sizeBytes: number): void {
  try {
    if (statSync(path).size >= sizeBytes) return;
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) return;
  }
  // Never the write that fills a nearly full disk under another process's running job.
  if ((freeBytesOf(dirname(path)) ?? 0) < RESERVE_HEADROOM * sizeBytes) return;
  const temp = tempPathFor(path);
  try {
    writeFileSync(temp, randomBytes(sizeBytes));
    renameSync(temp, path);
  } catch {
    // No room (or no permission) for the reserve now: the next process tries again.
    rmSync(temp, { force: true });
  }
}

/** Gives the reserve's room back to the disk; true when there was one to release. */
export function releaseSpaceReserve(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    // Another process on this root released it first, or it was never written.
    return false;
  }
}
