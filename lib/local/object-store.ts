import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, readFile, realpath, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { ObjectExistsError, ObjectNotFoundError, KeyInvalidError, ObjectOutsideBucketError } from '../core/errors.js';
import { checkKey } from '../core/keys.js';
import type { ObjectInfo, ObjectStore, PutOptions } from '../ports.js';
import { createFileExclusive, isErrno, isProcessAlive, writeFileAtomic } from './fs-util.js';

const USER_AREAS = new Set(['inputs', 'configs']);

/**
 * Names starting with this are the platform's own (temp files, the staging area, the etag
 * cache); listings skip them. The runner uses the same prefix.
 */
export const PLATFORM_PREFIX = '.ncap-';

/** The hidden staging area of a bucket: copies are written here and linked into place when whole. */
export const STAGING_FOLDER = '.ncap-staging';

/** Copies and hashes go through one buffer of this size: memory does not grow with the data. */
export const CHUNK_BYTES = 1024 * 1024;

/** Files at least this large keep their sha256 in the on-disk cache, so no process rehashes them. */
const PERSISTED_ETAG_MIN_BYTES = 1024 * 1024;

/** What identifies one version of a file's content without reading it. */
interface Fingerprint {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface CachedEtag extends Fingerprint {
  sha256: string;
}

export interface StageResult {
  info: ObjectInfo;
  /** An identical object was already there (or appeared meanwhile) and was kept. */
  reused: boolean;
}

/**
 * Buckets as folders: `<root>/buckets/<bucket>/<key>`. Writes are atomic (temp + rename or
 * link); create-only is the default; researchers' inputs and configs are never overwritten.
 * An object's etag is the sha256 of its bytes, computed streaming and cached by
 * (device, inode, size, mtime, ctime), in memory and for large files on disk. Objects are only
 * read when their real path lies inside the bucket: a link out of it is refused.
 */
export class LocalObjectStore implements ObjectStore {
  private readonly etags = new Map<string, CachedEtag>();

  constructor(private readonly bucketsDir: string) {}

  /** Absolute path of an object; the key is validated so it cannot leave its bucket. */
  pathOf(bucket: string, key: string): string {
    const bucketCheck = checkKey(bucket);
    if (!bucketCheck.ok || bucket.includes('/')) throw new KeyInvalidError(`bucket name "${bucket}" is invalid`);
    const check = checkKey(key);
    if (!check.ok) throw new KeyInvalidError(check.reason);
    return join(this.bucketsDir, bucket, ...key.split('/'));
  }

  /**
   * The object's path once links are resolved; throws ObjectOutsideBucketError when that is not
   * inside the bucket folder, undefined when the object does not exist.
   */
  private async resolvedPathOf(bucket: string, key: string): Promise<string | undefined> {
    const path = this.pathOf(bucket, key);
    let real: string;
    try {
      real = await realpath(path);
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
      throw error;
    }
    const bucketReal = await realpath(join(this.bucketsDir, bucket));
    if (!real.startsWith(bucketReal + sep)) {
      throw new ObjectOutsideBucketError(
        `${key} is a link (or lies under a linked folder) leading outside the bucket, to ${real}; the platform never reads it. ` +
          `Copy the data into ${join(this.bucketsDir, bucket)} instead of linking it`,
      );
    }
    return real;
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    try {
      const path = await this.resolvedPathOf(bucket, key);
      if (path === undefined) throw new ObjectNotFoundError(`${bucket}/${key} does not exist`);
      return await readFile(path);
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'EISDIR')) throw new ObjectNotFoundError(`${bucket}/${key} does not exist`);
      throw error;
    }
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    const path = await this.resolvedPathOf(bucket, key);
    if (path === undefined) return undefined;
    try {
      const info = await stat(path);
      if (!info.isFile()) return undefined;
      return { key, size: info.size, etag: await this.sha256OfPath(path, info), lastModifiedMs: info.mtimeMs };
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
      throw error;
    }
  }

  /** sha256 of an object's bytes (the same as its etag), streamed and cached. */
  async sha256(bucket: string, key: string): Promise<string> {
    const path = await this.resolvedPathOf(bucket, key);
    if (path === undefined) throw new ObjectNotFoundError(`${bucket}/${key} does not exist`);
    return this.sha256OfPath(path, await stat(path));
  }

  async put(bucket: string, key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const path = this.pathOf(bucket, key);
    const area = key.split('/')[1];
    if (options.overwrite) {
      if (area !== undefined && USER_AREAS.has(area) && (await this.head(bucket, key))) {
        throw new ObjectExistsError(`${bucket}/${key} exists and is a researcher's ${area} file; the platform never overwrites it`);
      }
      await writeFileAtomic(path, body);
    } else if (!(await createFileExclusive(path, body))) {
      throw new ObjectExistsError(`${bucket}/${key} already exists; the platform does not overwrite it`);
    }
    const info = await this.head(bucket, key);
    if (!info) throw new ObjectNotFoundError(`${bucket}/${key} vanished right after it was written`);
    return info;
  }

  /**
   * Copies a local file into the bucket as `key`, create-only, in constant memory: a reflink
   * where the filesystem has them, else a streamed copy that keeps holes (sparse files stay
   * sparse). The copy is written in the bucket's hidden staging area and linked into place when
   * whole, so a killed copy is never visible; leftovers of dead processes are removed by the next
   * staging. An identical object already there (or staged at the same time by another process)
   * is reused; a different one is never overwritten (ObjectExistsError).
   */
  async stageFile(bucket: string, key: string, sourcePath: string): Promise<StageResult> {
    const target = this.pathOf(bucket, key);
    const existing = await this.head(bucket, key);
    if (existing) return { info: await this.reuseIfIdentical(bucket, key, sourcePath, existing), reused: true };

    const stagingRoot = join(this.bucketsDir, bucket, STAGING_FOLDER);
    await removeStaleStaging(stagingRoot);
    const stagingDir = join(stagingRoot, `stage.${Math.random().toString(16).slice(2, 10)}-${process.pid}`);
    await mkdir(stagingDir, { recursive: true });
    const temp = join(stagingDir, 'object');
    try {
      const sha256 = await copyAndHash(sourcePath, temp);
      await mkdir(join(target, '..'), { recursive: true });
      try {
        await link(temp, target);
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw error;
        // Someone staged the same key meanwhile: fine if it holds the same bytes.
        const now = await this.head(bucket, key);
        if (now && now.etag === sha256) return { info: now, reused: true };
        throw this.differentContent(bucket, key, sourcePath);
      }
      await unlink(temp);
      const info = await stat(target);
      await this.remember(target, info, sha256);
      return { info: { key, size: info.size, etag: sha256, lastModifiedMs: info.mtimeMs }, reused: false };
    } finally {
      await rm(stagingDir, { recursive: true, force: true });
    }
  }

  /**
   * A new private folder in the bucket's staging area for a caller that writes an object's bytes
   * itself (the local web API's uploads): named `<label>-<pid>`, so the next staging removes it
   * once this process is gone. `label` is letters, digits, "." and "-".
   */
  async newStagingDir(bucket: string, label: string): Promise<string> {
    if (!/^[A-Za-z0-9.-]{1,64}$/.test(label)) throw new KeyInvalidError(`staging label "${label}" is invalid`);
    this.pathOf(bucket, 'x');
    const stagingRoot = join(this.bucketsDir, bucket, STAGING_FOLDER);
    await removeStaleStaging(stagingRoot);
    const dir = join(stagingRoot, `${label}-${process.pid}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /**
   * Puts a file written in this bucket's staging area into place as `key`, create-only, by a
   * hard link (no copy): the object appears whole or not at all. `sha256` is the bytes' hash,
   * already computed by the caller, and becomes the cached etag. An identical object already
   * there is kept (`reused`); a different one is never overwritten (ObjectExistsError). The
   * target's folder must resolve inside the bucket (a linked folder out of it is refused).
   */
  async placeStaged(bucket: string, key: string, stagedPath: string, sha256: string): Promise<StageResult> {
    const target = this.pathOf(bucket, key);
    const stagingReal = await realpath(join(this.bucketsDir, bucket, STAGING_FOLDER));
    if (!(await realpath(stagedPath)).startsWith(stagingReal + sep)) throw new KeyInvalidError(`${stagedPath} is not in the staging area of bucket ${bucket}`);
    await mkdir(join(target, '..'), { recursive: true });
    const bucketReal = await realpath(join(this.bucketsDir, bucket));
    const parentReal = await realpath(join(target, '..'));
    if (parentReal !== bucketReal && !parentReal.startsWith(bucketReal + sep)) {
      throw new ObjectOutsideBucketError(`${key} lies under a linked folder leading outside the bucket, to ${parentReal}; nothing was written there`);
    }
    try {
      await link(stagedPath, target);
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
      const now = await this.head(bucket, key);
      if (now && now.etag === sha256) return { info: now, reused: true };
      const name = key.slice(key.lastIndexOf('/') + 1);
      throw new ObjectExistsError(`${key} already exists with different content; the platform never overwrites uploads. Upload it under another name (e.g. ${name.replace(/(\.[^.]*)?$/, '-2$1')})`);
    }
    await unlink(stagedPath);
    const info = await stat(target);
    await this.remember(target, info, sha256);
    return { info: { key, size: info.size, etag: sha256, lastModifiedMs: info.mtimeMs }, reused: false };
  }

  private async reuseIfIdentical(bucket: string, key: string, sourcePath: string, existing: ObjectInfo): Promise<ObjectInfo> {
    const source = await stat(sourcePath);
    if (source.size === existing.size && (await sha256OfFile(sourcePath)) === existing.etag) return existing;
    throw this.differentContent(bucket, key, sourcePath);
  }

  private differentContent(bucket: string, key: string, sourcePath: string): ObjectExistsError {
    const name = key.slice(key.lastIndexOf('/') + 1);
    return new ObjectExistsError(
      `${key} already exists in ${join(this.bucketsDir, bucket)} with different content; the platform never overwrites uploads. ` +
        `Rename ${sourcePath} (e.g. ${name.replace(/(\.[^.]*)?$/, '-2$1')}) and run again`,
    );
  }

  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const bucketDir = join(this.bucketsDir, bucket);
    // Only walk the folder the prefix points into.
    const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const start = folder ? this.pathOf(bucket, folder) : bucketDir;
    const found: ObjectInfo[] = [];
    await walk(start, async (file) => {
      const key = relative(bucketDir, file).split(sep).join('/');
      if (!key.startsWith(prefix)) return;
      const info = await stat(file);
      found.push({ key, size: info.size, etag: await this.sha256OfPath(file, info), lastModifiedMs: info.mtimeMs });
    });
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The content hash of a file, from the cache when its fingerprint has not changed. */
  private async sha256OfPath(path: string, info: Stats): Promise<string> {
    const print = fingerprintOf(info);
    const cached = this.etags.get(path);
    if (cached && sameFingerprint(cached, print)) return cached.sha256;
    const persisted = info.size >= PERSISTED_ETAG_MIN_BYTES ? await this.readPersisted(print) : undefined;
    if (persisted) {
      this.etags.set(path, persisted);
      return persisted.sha256;
    }
    const sha256 = await sha256OfFile(path);
    // Changed while we read it: the next look hashes again.
    const after = fingerprintOf(await stat(path));
    if (sameFingerprint(after, print)) await this.remember(path, info, sha256);
    return sha256;
  }

  private async remember(path: string, info: Stats, sha256: string): Promise<void> {
    const entry: CachedEtag = { ...fingerprintOf(info), sha256 };
    this.etags.set(path, entry);
    if (info.size < PERSISTED_ETAG_MIN_BYTES) return;
    // A cache, not a record: losing it only costs a rehash.
    await writeFileAtomic(this.persistedPath(entry), JSON.stringify(entry)).catch(() => undefined);
  }

  private persistedPath(print: Fingerprint): string {
    return join(this.bucketsDir, `${PLATFORM_PREFIX}etags`, `${print.dev}-${print.ino}.json`);
  }

  private async readPersisted(print: Fingerprint): Promise<CachedEtag | undefined> {
    try {
      const entry = JSON.parse(await readFile(this.persistedPath(print), 'utf8')) as CachedEtag;
      return sameFingerprint(entry, print) && /^[0-9a-f]{64}$/.test(entry.sha256) ? entry : undefined;
    } catch (error) {
      // Missing or damaged: hash again.
      if (isErrno(error, 'ENOENT') || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }
}

function fingerprintOf(info: Stats): Fingerprint {
  return { dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs };
}

function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** sha256 of a file's bytes, read in CHUNK_BYTES pieces through one buffer. */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

const ZEROS = Buffer.alloc(CHUNK_BYTES);

/**
 * Copies `source` to the new file `dest` and returns the sha256 of the bytes: a reflink when the
 * filesystem can (instant, no space), else a streamed copy that leaves all-zero chunks as holes.
 */
async function copyAndHash(source: string, dest: string): Promise<string> {
  if ((await stat(source)).isFile()) {
    try {
      await copyFile(source, dest, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE_FORCE);
      return await sha256OfFile(dest);
    } catch (error) {
      // No reflinks here (or across filesystems): copy by hand below.
      if (!(error instanceof Error) || !('code' in error)) throw error;
      await rm(dest, { force: true });
    }
  }
  const hash = createHash('sha256');
  const input = await open(source, 'r');
  let output: FileHandle | undefined;
  try {
    output = await open(dest, 'wx');
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    let position = 0;
    for (;;) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      if (!chunk.equals(ZEROS.subarray(0, bytesRead))) {
        let written = 0;
        while (written < bytesRead) written += (await output.write(chunk, written, bytesRead - written, position + written)).bytesWritten;
      }
      position += bytesRead;
    }
    // Trailing holes still count towards the size.
    await output.truncate(position);
    await output.sync();
  } finally {
    await output?.close();
    await input.close();
  }
  return hash.digest('hex');
}

/** Removes staging folders (`<label>-<pid>`) whose process is gone: what a killed copy left. */
export async function removeStaleStaging(stagingRoot: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(stagingRoot);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(/-(\d+)$/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || isProcessAlive(pid)) continue;
    await rm(join(stagingRoot, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

async function walk(dir: string, visit: (file: string) => Promise<void>): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return;
    throw error;
  }
  for (const entry of entries) {
    // The platform's own files; links are never listed (they may lead anywhere).
    if (entry.name.startsWith(PLATFORM_PREFIX)) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) await walk(full, visit);
    else if (entry.isFile()) await visit(full);
  }
}

