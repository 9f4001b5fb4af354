import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { ObjectExistsError, ObjectNotFoundError, KeyInvalidError } from '../core/errors.js';
import { checkKey } from '../core/keys.js';
import type { ObjectInfo, ObjectStore, PutOptions } from '../ports.js';
import { createFileExclusive, isErrno, TEMP_PREFIX, writeFileAtomic } from './fs-util.js';

const USER_AREAS = new Set(['inputs', 'configs']);

/**
 * Buckets as folders: `<root>/buckets/<bucket>/<key>`. Writes are atomic (temp + rename or
 * link); create-only is the default; researchers' inputs and configs are never overwritten.
 */
export class LocalObjectStore implements ObjectStore {
  constructor(private readonly bucketsDir: string) {}

  /** Absolute path of an object; the key is validated so it cannot leave its bucket. */
  pathOf(bucket: string, key: string): string {
    const bucketCheck = checkKey(bucket);
    if (!bucketCheck.ok || bucket.includes('/')) throw new KeyInvalidError(`bucket name "${bucket}" is invalid`);
    const check = checkKey(key);
    if (!check.ok) throw new KeyInvalidError(check.reason);
    return join(this.bucketsDir, bucket, ...key.split('/'));
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    try {
      return await readFile(this.pathOf(bucket, key));
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'EISDIR')) throw new ObjectNotFoundError(`${bucket}/${key} does not exist`);
      throw error;
    }
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await stat(this.pathOf(bucket, key));
      if (!info.isFile()) return undefined;
      return { key, size: info.size, etag: etagOf(info.size, info.mtimeMs), lastModifiedMs: info.mtimeMs };
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
      throw error;
    }
  }

  /** sha256 of an object's bytes, streamed (inputs can be large). */
  async sha256(bucket: string, key: string): Promise<string> {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(this.pathOf(bucket, key))) hash.update(chunk as Buffer);
    return hash.digest('hex');
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
      found.push({ key, size: info.size, etag: etagOf(info.size, info.mtimeMs), lastModifiedMs: info.mtimeMs });
    });
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

function etagOf(size: number, mtimeMs: number): string {
  return `${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}`;
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
    if (entry.name.startsWith(TEMP_PREFIX)) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) await walk(full, visit);
    else if (entry.isFile()) await visit(full);
  }
}
