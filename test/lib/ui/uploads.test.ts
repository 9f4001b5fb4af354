import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalObjectStore } from '../../../lib/local/object-store.js';
import { crc32 } from 'node:zlib';
import { checkCrc32, crc32Hex, startHashWorker, UploadManager, type RunningHashes } from '../../../lib/ui/uploads.js';

const MIB = 1024 * 1024;
const PART = 5 * MIB;
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A request body arriving in small chunks, as sockets deliver it. */
async function* chunks(bytes: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** A body whose chunks each own their memory, as node:http delivers them; they are recorded in `seen`. */
async function* ownChunks(bytes: Buffer, seen: Buffer[], size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) {
    const chunk = Buffer.from(bytes.subarray(at, at + size));
    seen.push(chunk);
    yield chunk;
  }
}

/**
 * A hasher that hashes at once (on a real worker) but acknowledges nothing until `release()`,
 * as a worker falling behind the arrivals would: its own count of bytes fed and not released.
 */
class LateAcks implements RunningHashes {
  readonly inner = startHashWorker();
  fedBytes = 0;
  releasedBytes = 0;
  peakUnacked = 0;
  get unackedBytes(): number {
    return this.fedBytes - this.releasedBytes;
  }
  release(): void {
    this.releasedBytes = this.fedBytes;
  }
  reset(upload: string): void {
    this.inner.reset(upload);
  }
  extend(upload: string, fd: number, upTo: number): void {
    this.inner.extend(upload, fd, upTo);
  }
  feed(upload: string, at: number, chunks: Buffer[]): boolean {
    const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    if (!this.inner.feed(upload, at, chunks)) return false;
    this.fedBytes += bytes;
    this.peakUnacked = Math.max(this.peakUnacked, this.unackedBytes);
    return true;
  }
  digest(upload: string): Promise<{ at: number; hex: string }> {
    return this.inner.digest(upload);
  }
  forget(upload: string): void {
    this.inner.forget(upload);
  }
  stop(): Promise<void> {
    return this.inner.stop();
  }
}

/**
 * A hasher whose digests are asked of the worker at once but answer only once `open()` was
 * called: a completion held while the hash of the bytes it asked about comes back.
 */
class GatedDigests extends LateAcks {
  private gate: () => void = () => undefined;
  private readonly opened = new Promise<void>((resolve) => (this.gate = resolve));
  digestsAsked = 0;
  open(): void {
    this.gate();
  }
  override get unackedBytes(): number {
    return 0;
  }
  override async digest(upload: string): Promise<{ at: number; hex: string }> {
    this.digestsAsked += 1;
    const digest = this.inner.digest(upload);
    await this.opened;
    return digest;
  }
}

describe('UploadManager multipart uploads', () => {
  let dir: string;
  let objects: LocalObjectStore;
  let uploads: UploadManager;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ncap-uploads-'));
    objects = new LocalObjectStore(join(dir, 'buckets'));
    uploads = new UploadManager(objects);
  });

  afterEach(async () => {
    await uploads.abortAll();
    await rm(dir, { recursive: true, force: true });
  });

  const partOf = (bytes: Buffer, n: number) => bytes.subarray((n - 1) * PART, n * PART);

  it('assembles parts sent out of order and in parallel into the declared bytes, hashed while they arrive', async () => {
    const bytes = randomBytes(4 * PART + 12345);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/rec.bin', sizeBytes: bytes.length, partSizeBytes: PART, sha256: sha(bytes) });

    await Promise.all([3, 5, 1, 4, 2].map((n) => uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), partOf(bytes, n).length)));
    const done = await uploads.complete(uploadId, undefined);

    expect(done).toMatchObject({ key: 'lab/inputs/rec.bin', sizeBytes: bytes.length, sha256: sha(bytes), reused: false });
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/rec.bin')))).toBe(sha(bytes));
  });

  it('starts the running hash over when an already hashed part is sent again with other bytes', async () => {
    const bytes = randomBytes(3 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/again.bin', sizeBytes: bytes.length, partSizeBytes: PART, sha256: sha(bytes) });
    const wrong = randomBytes(PART);
    await uploads.putPart(uploadId, 1, chunks(wrong), PART);
    await uploads.putPart(uploadId, 2, chunks(partOf(bytes, 2)), PART);

    await uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART);
    await uploads.putPart(uploadId, 3, chunks(partOf(bytes, 3)), PART);
    const done = await uploads.complete(uploadId, undefined);

    expect(done.sha256).toBe(sha(bytes));
  });

  it('refuses bytes that do not match the declared sha256 and keeps nothing visible under the key', async () => {
    const bytes = randomBytes(2 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/bad.bin', sizeBytes: bytes.length, partSizeBytes: PART, sha256: 'a'.repeat(64) });
    await uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART);
    await uploads.putPart(uploadId, 2, chunks(partOf(bytes, 2)), PART);

    await expect(uploads.complete(uploadId, undefined)).rejects.toMatchObject({ code: 'ChecksumMismatch' });
    expect(await objects.head('b', 'lab/inputs/bad.bin')).toBeUndefined();
    await uploads.abort(uploadId);
    expect((await readdir(join(dir, 'buckets', 'b'), { recursive: true })).filter((name) => name.includes(uploadId))).toEqual([]);
  });

  it('keeps a part that ended early out of the upload, so completion asks for it again', async () => {
    const bytes = randomBytes(2 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/short.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    await uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART);

    await expect(uploads.putPart(uploadId, 2, chunks(partOf(bytes, 2).subarray(0, MIB)), undefined)).rejects.toThrow(/must be 5242880 bytes, 1048576 arrived/);
    await expect(uploads.complete(uploadId, undefined)).rejects.toThrow(/lacks part\(s\) 2 of 2/);
    expect(uploads.listParts(uploadId).map((p) => p.PartNumber)).toEqual([1]);
  });

  it('hashes chunks that own their memory by moving them to the hash worker, in order, also past the memory kept for waiting parts', async () => {
    // 16 parts of 5 MiB = 80 MiB: parts 2-16 wait for part 1, more than the 64 MiB kept in memory, so some are re-read from the file.
    const bytes = randomBytes(16 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/moved.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    const seen: Buffer[] = [];
    for (let n = 2; n <= 16; n++) await uploads.putPart(uploadId, n, ownChunks(partOf(bytes, n), seen), PART);

    await uploads.putPart(uploadId, 1, ownChunks(partOf(bytes, 1), seen), PART);
    const done = await uploads.complete(uploadId, undefined, sha(bytes));

    expect(done.sha256).toBe(sha(bytes));
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/moved.bin')))).toBe(sha(bytes));
    // Moved chunks are detached here (length 0); the parts beyond the limit were not moved.
    const moved = seen.filter((chunk) => chunk.length === 0).length;
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(seen.length);
    // Every moved chunk was acknowledged before the digest answered: nothing is held any more.
    expect(uploads.bytesInMemory).toBe(0);
  });

  it('keeps no more than the hold limit in memory when the hash worker falls behind, re-reading the rest from the file', async () => {
    const hashes = new LateAcks();
    const limit = 3 * PART;
    const slow = new UploadManager(objects, { hashes, holdLimitBytes: limit });
    try {
      // 8 full parts in order, each handed to the hasher as it ends; the hasher acknowledges none of them.
      const bytes = randomBytes(8 * PART + 999);
      const { uploadId } = await slow.start({ bucket: 'b', key: 'lab/inputs/slow.bin', sizeBytes: bytes.length, partSizeBytes: PART });
      const seen: Buffer[] = [];
      let peak = 0;
      for (let n = 1; n <= 8; n++) {
        await slow.putPart(uploadId, n, ownChunks(partOf(bytes, n), seen), partOf(bytes, n).length);
        peak = Math.max(peak, slow.bytesInMemory);
      }

      expect(hashes.peakUnacked).toBe(limit);
      expect(peak).toBeLessThanOrEqual(limit);
      hashes.release();
      // Room again: the last part is moved, not re-read.
      const fedBefore = hashes.fedBytes;
      await slow.putPart(uploadId, 9, ownChunks(partOf(bytes, 9), seen), partOf(bytes, 9).length);
      expect(hashes.fedBytes - fedBefore).toBe(999);
      const done = await slow.complete(uploadId, undefined, sha(bytes));

      expect(done.sha256).toBe(sha(bytes));
      expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/slow.bin')))).toBe(sha(bytes));
    } finally {
      await slow.abortAll();
    }
  });

  it('verifies a sha256 declared only at completion (a client that hashed while sending) and stores nothing when it differs', async () => {
    const bytes = randomBytes(2 * PART + 7);
    const good = await uploads.start({ bucket: 'b', key: 'lab/inputs/late.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    const bad = await uploads.start({ bucket: 'b', key: 'lab/inputs/late-bad.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    for (const { uploadId } of [good, bad]) for (const n of [1, 2, 3]) await uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), partOf(bytes, n).length);

    await expect(uploads.complete(bad.uploadId, undefined, 'c'.repeat(64))).rejects.toMatchObject({ code: 'ChecksumMismatch', message: expect.stringContaining('declared at completion') });
    const done = await uploads.complete(good.uploadId, undefined, sha(bytes));

    expect(done).toMatchObject({ key: 'lab/inputs/late.bin', sha256: sha(bytes), reused: false });
    expect(await objects.head('b', 'lab/inputs/late-bad.bin')).toBeUndefined();
  });

  it('checks a part against the CRC32 its sender declared: a differing part is not kept and is sent again by itself', async () => {
    const bytes = randomBytes(2 * PART + 3);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/crc.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    const crcOf = (n: number) => crc32Hex(crc32(partOf(bytes, n)));
    await uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART, { crc32: crcOf(1) });
    const garbled = Buffer.from(partOf(bytes, 2));
    garbled[12345] = (garbled[12345] ?? 0) ^ 0x40;

    await expect(uploads.putPart(uploadId, 2, chunks(garbled), PART, { crc32: crcOf(2) })).rejects.toMatchObject({
      code: 'ChecksumMismatch',
      message: `part 2's bytes have CRC32 ${crc32Hex(crc32(garbled))}, not ${crcOf(2)} as declared; the part was not kept, send it again`,
    });
    expect(uploads.listParts(uploadId).map((part) => part.PartNumber)).toEqual([1]);
    await uploads.putPart(uploadId, 2, chunks(partOf(bytes, 2)), PART, { crc32: crcOf(2) });
    await uploads.putPart(uploadId, 3, chunks(partOf(bytes, 3)), 3, { crc32: crcOf(3) });
    const done = await uploads.complete(uploadId, undefined);

    expect(done.sha256).toBe(sha(bytes));
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/crc.bin')))).toBe(sha(bytes));
  });

  it('takes a CRC32 as 8 hex digits only', () => {
    expect(checkCrc32('DEADBEEF', 'the header')).toBe('deadbeef');
    expect(checkCrc32(undefined, 'the header')).toBeUndefined();
    for (const bad of ['deadbee', 'deadbeefa', 'xyzxyzxy', 42]) expect(() => checkCrc32(bad, 'the x-ncap-crc32 header'), String(bad)).toThrow(/the x-ncap-crc32 header must be 8 hex digits/);
    expect(crc32Hex(crc32(Buffer.from('hello')))).toBe('3610a686');
  });

  it('refuses a part, an abort and a second completion while a completion runs: the stored file is the bytes its sha256 names', async () => {
    const hashes = new GatedDigests();
    const held = new UploadManager(objects, { hashes });
    try {
      const bytes = randomBytes(2 * PART + 11);
      const { uploadId } = await held.start({ bucket: 'b', key: 'lab/inputs/raced.bin', sizeBytes: bytes.length, partSizeBytes: PART });
      for (const n of [1, 2, 3]) await held.putPart(uploadId, n, chunks(partOf(bytes, n)), partOf(bytes, n).length);
      const completing = held.complete(uploadId, undefined);
      while (hashes.digestsAsked === 0) await new Promise((resolve) => setImmediate(resolve));

      // Part 1 again with other bytes, while the completion waits for the hash of the first ones.
      const resent = held.putPart(uploadId, 1, chunks(randomBytes(PART)), PART);
      await expect(resent).rejects.toMatchObject({ code: 'UploadConflict', message: expect.stringContaining(`upload ${uploadId} is being completed`) });
      await expect(held.complete(uploadId, undefined)).rejects.toMatchObject({ code: 'UploadConflict' });
      await expect(held.abort(uploadId)).rejects.toMatchObject({ code: 'UploadConflict' });
      hashes.open();
      const done = await completing;

      expect(done.sha256).toBe(sha(bytes));
      expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/raced.bin')))).toBe(sha(bytes));
    } finally {
      hashes.open();
      await held.abortAll();
    }
  });

  it('aborts an upload nobody touched for the idle time, freeing its staging file; one being sent or touched meanwhile stays', async () => {
    let nowMs = 0;
    const idle = new UploadManager(objects, { idleUploadMs: 60_000, now: () => nowMs });
    try {
      const bytes = randomBytes(2 * PART);
      const abandoned = await idle.start({ bucket: 'b', key: 'lab/inputs/abandoned.bin', sizeBytes: bytes.length, partSizeBytes: PART });
      const listed = await idle.start({ bucket: 'b', key: 'lab/inputs/listed.bin', sizeBytes: bytes.length, partSizeBytes: PART });
      const sending = await idle.start({ bucket: 'b', key: 'lab/inputs/sending.bin', sizeBytes: bytes.length, partSizeBytes: PART });
      await idle.putPart(abandoned.uploadId, 1, chunks(partOf(bytes, 1)), PART);
      // A part whose bytes are still arriving when the time is up.
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      async function* slowly(): AsyncGenerator<Buffer> {
        yield partOf(bytes, 1).subarray(0, MIB);
        await gate;
        yield partOf(bytes, 1).subarray(MIB);
      }
      const inFlight = idle.putPart(sending.uploadId, 1, slowly(), PART);
      nowMs = 30_000;
      idle.listParts(listed.uploadId);
      nowMs = 61_000;

      expect(await idle.sweepIdle()).toEqual([abandoned.uploadId]);
      expect(() => idle.listParts(abandoned.uploadId)).toThrow(/is not open in this server/);
      expect((await readdir(join(dir, 'buckets', 'b', '.ncap-staging'))).filter((name) => name.includes(abandoned.uploadId))).toEqual([]);
      release();
      await inFlight;
      expect(idle.listParts(sending.uploadId).map((part) => part.PartNumber)).toEqual([1]);
      expect(idle.openCount).toBe(2);
    } finally {
      await idle.abortAll();
    }
  });

  it('sweeps idle uploads by itself, on a timer that does not keep the process alive', async () => {
    const idle = new UploadManager(objects, { idleUploadMs: 50 });
    try {
      const { uploadId } = await idle.start({ bucket: 'b', key: 'lab/inputs/left.bin', sizeBytes: 10, partSizeBytes: 10 });
      const end = Date.now() + 5_000;
      while (idle.openCount > 0 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));

      expect(() => idle.listParts(uploadId)).toThrow(/is not open in this server/);
    } finally {
      await idle.abortAll();
    }
  });

  it('answers a part still arriving when its upload is aborted with UploadNotFound, and leaves nothing behind', async () => {
    const bytes = randomBytes(2 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/cancelled.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let firstSent = false;
    async function* slowly(): AsyncGenerator<Buffer> {
      yield partOf(bytes, 1).subarray(0, 2 * MIB);
      firstSent = true;
      await gate;
      yield partOf(bytes, 1).subarray(2 * MIB);
    }
    const inFlight = uploads.putPart(uploadId, 1, slowly(), PART);
    while (!firstSent) await new Promise((resolve) => setImmediate(resolve));

    await uploads.abort(uploadId);
    release();

    await expect(inFlight).rejects.toMatchObject({ code: 'UploadNotFound', message: `upload ${uploadId} was aborted while part 1 was being received; nothing of it is kept` });
    expect((await readdir(join(dir, 'buckets', 'b', '.ncap-staging'))).filter((name) => name.includes(uploadId))).toEqual([]);
    expect(uploads.bytesInMemory).toBe(0);
  });

  it("removes what an earlier server with this process's pid left in the staging area (a container restarted after a kill), and nothing of a live one", async () => {
    const staging = join(dir, 'buckets', 'b', '.ncap-staging');
    const day = new Date(Date.now() - 24 * 3600 * 1000);
    const ours = join(staging, `upload.0123456789abcdef01234567-${process.pid}`);
    const put = join(staging, `put.0123456789ab-${process.pid}`);
    const other = join(staging, `upload.fedcba9876543210fedcba98-${process.ppid}`);
    for (const folder of [ours, put, other]) {
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, 'object'), 'left over');
      await utimes(folder, day, day);
    }

    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/fresh.bin', sizeBytes: 10, partSizeBytes: 10 });

    const left = await readdir(staging);
    expect(left).toContain(`upload.fedcba9876543210fedcba98-${process.ppid}`);
    expect(left.filter((name) => name.endsWith(`-${process.pid}`))).toEqual([`upload.${uploadId}-${process.pid}`]);

    // A live upload of this process is kept whatever its folder's time says (a clock that stepped,
    // an NFS server's clock), by a new server in the same process too.
    await utimes(join(staging, `upload.${uploadId}-${process.pid}`), day, day);
    const again = new UploadManager(objects);
    const second = await again.start({ bucket: 'b', key: 'lab/inputs/second.bin', sizeBytes: 10, partSizeBytes: 10 });
    expect((await readdir(staging)).filter((name) => name.endsWith(`-${process.pid}`)).sort()).toEqual([`upload.${uploadId}-${process.pid}`, `upload.${second.uploadId}-${process.pid}`].sort());
    await again.abortAll();
  });

  it('refuses a completion whose sha256 differs from the one the upload was started with', async () => {
    const bytes = randomBytes(PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/twice.bin', sizeBytes: bytes.length, partSizeBytes: PART, sha256: sha(bytes) });
    await uploads.putPart(uploadId, 1, chunks(bytes), PART);

    await expect(uploads.complete(uploadId, undefined, 'd'.repeat(64))).rejects.toThrow(/declares sha256 d{64} but the upload was started with/);
    expect((await uploads.complete(uploadId, undefined, sha(bytes))).sha256).toBe(sha(bytes));
  });
});

/** A FileHandle whose `datasync` and `writev` go through the given hooks (the disk's side of a test). */
function wrapHandle(handle: FileHandle, hooks: { datasync?: () => Promise<void>; writev?: (real: () => Promise<unknown>) => Promise<unknown> }): FileHandle {
  return new Proxy(handle, {
    get(target, prop) {
      if (prop === 'datasync' && hooks.datasync) return hooks.datasync;
      if (prop === 'writev' && hooks.writev) {
        const writev = hooks.writev;
        return (...args: Parameters<FileHandle['writev']>) => writev(() => target.writev(...args));
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const coded = (code: string) => Object.assign(new Error(`${code}: the disk said no, write`), { code });

describe('UploadManager and the disk', () => {
  let dir: string;
  let objects: LocalObjectStore;
  let uploads: UploadManager | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ncap-uploads-disk-'));
    objects = new LocalObjectStore(join(dir, 'buckets'));
  });

  afterEach(async () => {
    await uploads?.abortAll();
    await rm(dir, { recursive: true, force: true });
  });

  const partOf = (bytes: Buffer, n: number) => bytes.subarray((n - 1) * PART, n * PART);
  const stagingLeft = async () => (await readdir(join(dir, 'buckets', 'b'), { recursive: true })).filter((name) => /upload\.|put\./.test(name));

  it('flushes the staging file to disk while parts arrive, and all of it before the upload is stored', async () => {
    const events: string[] = [];
    let placed = false;
    let flushing: Promise<void> = Promise.resolve();
    uploads = new UploadManager(objects, {
      flushStepBytes: 2 * PART,
      openFile: async (path, flags) => {
        const real = await open(path, flags);
        return wrapHandle(real, {
          datasync: () => {
            events.push(placed ? 'flush after placing' : 'flush');
            flushing = real.datasync();
            return flushing;
          },
        });
      },
    });
    const bytes = randomBytes(6 * PART + 99);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/flushed.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    for (const n of [1, 2, 3, 4, 5, 6, 7]) {
      await uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), partOf(bytes, n).length);
      events.push(`part ${n}`);
      // A flush slower than the next parts (a busy disk) would move the next one past the last
      // part: each part waits for the flush it started, so the count does not depend on the disk.
      await flushing;
    }
    const flushesWhileSending = events.filter((event) => event === 'flush').length;
    const done = await uploads.complete(uploadId, undefined);
    placed = true;

    // 6 parts of 5 MiB with a flush every 10 MiB written: background flushes after parts 2, 4, 6 (or later, one at a time).
    expect(flushesWhileSending).toBeGreaterThanOrEqual(2);
    expect(events.indexOf('flush')).toBeGreaterThan(events.indexOf('part 1'));
    // At least the completion's own flush (a background one may still start while the completion waits for the hash).
    expect(events.filter((event) => event === 'flush').length).toBeGreaterThanOrEqual(flushesWhileSending + 1);
    expect(events).not.toContain('flush after placing');
    expect(done.sha256).toBe(sha(bytes));
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/flushed.bin')))).toBe(sha(bytes));
  });

  it('a background flush the disk refused fails the completion with DiskFull, stores nothing and drops the staged bytes', async () => {
    uploads = new UploadManager(objects, {
      // The only background flush starts after the last part.
      flushStepBytes: 3 * PART,
      openFile: async (path, flags) => wrapHandle(await open(path, flags), { datasync: () => Promise.reject(coded('ENOSPC')) }),
    });
    const bytes = randomBytes(3 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/lost.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    for (const n of [1, 2, 3]) await uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), PART);

    const failed = uploads.complete(uploadId, undefined);

    await expect(failed).rejects.toMatchObject({ code: 'DiskFull', message: expect.stringMatching(new RegExp(`the disk did not take upload ${uploadId} of lab/inputs/lost.bin; nothing was stored .*is full .*Free space there, then upload the file again`)) });
    expect(await objects.head('b', 'lab/inputs/lost.bin')).toBeUndefined();
    expect(await stagingLeft()).toEqual([]);
    expect(() => uploads?.listParts(uploadId)).toThrow(/is not open in this server/);
  });

  it('after a background flush failed, the next part is refused and the upload dropped: nothing more is sent for nothing', async () => {
    uploads = new UploadManager(objects, {
      flushStepBytes: PART,
      openFile: async (path, flags) => wrapHandle(await open(path, flags), { datasync: () => Promise.reject(coded('ENOSPC')) }),
    });
    const bytes = randomBytes(3 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/doomed.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    await uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART);
    // The failed flush settles.
    await new Promise((resolve) => setImmediate(resolve));

    await expect(uploads.putPart(uploadId, 2, chunks(partOf(bytes, 2)), PART)).rejects.toMatchObject({ code: 'DiskFull', message: expect.stringContaining(`the disk did not take upload ${uploadId} of lab/inputs/doomed.bin; nothing was stored and the upload is dropped`) });
    expect(() => uploads?.listParts(uploadId)).toThrow(/is not open in this server/);
    expect(await stagingLeft()).toEqual([]);
  });

  it('an I/O error of the final flush is DiskWriteFailed, naming the error, and nothing is stored', async () => {
    let flushes = 0;
    uploads = new UploadManager(objects, {
      openFile: async (path, flags) => wrapHandle(await open(path, flags), { datasync: () => (flushes++, Promise.reject(coded('EIO'))) }),
    });
    const bytes = randomBytes(2 * PART);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/eio.bin', sizeBytes: bytes.length, partSizeBytes: PART });
    for (const n of [1, 2]) await uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), PART);
    expect(flushes).toBe(0);

    await expect(uploads.complete(uploadId, undefined)).rejects.toMatchObject({ code: 'DiskWriteFailed', message: expect.stringContaining('EIO: the disk said no') });
    expect(await objects.head('b', 'lab/inputs/eio.bin')).toBeUndefined();
    expect(await stagingLeft()).toEqual([]);
  });

  it('a part the disk refused is DiskFull and may be sent again; the parts before it are kept', async () => {
    let refuse = true;
    uploads = new UploadManager(objects, {
      openFile: async (path, flags) =>
        wrapHandle(await open(path, flags), {
          writev: (real) => {
            if (!refuse) return real();
            refuse = false;
            return Promise.reject(coded('ENOSPC'));
          },
        }),
    });
    const bytes = randomBytes(2 * PART + 5);
    const { uploadId } = await uploads.start({ bucket: 'b', key: 'lab/inputs/retry.bin', sizeBytes: bytes.length, partSizeBytes: PART, sha256: sha(bytes) });

    await expect(uploads.putPart(uploadId, 1, chunks(partOf(bytes, 1)), PART)).rejects.toMatchObject({ code: 'DiskFull', message: expect.stringContaining(`part 1 of upload ${uploadId} was not stored`) });
    for (const n of [1, 2, 3]) await uploads.putPart(uploadId, n, chunks(partOf(bytes, n)), partOf(bytes, n).length);
    const done = await uploads.complete(uploadId, undefined);

    expect(done.sha256).toBe(sha(bytes));
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/retry.bin')))).toBe(sha(bytes));
  });

  it('a single PUT is on disk before it is stored; one the disk refused is DiskFull and leaves nothing', async () => {
    let flushes = 0;
    let full = false;
    uploads = new UploadManager(objects, {
      openFile: async (path, flags) => {
        const real = await open(path, flags);
        return wrapHandle(real, { datasync: () => (flushes++, full ? Promise.reject(coded('ENOSPC')) : real.datasync()) });
      },
    });
    const bytes = randomBytes(MIB);

    const stored = await uploads.putObject('b', 'lab/configs/small.json', chunks(bytes), { contentLength: bytes.length });
    full = true;
    const refused = uploads.putObject('b', 'lab/configs/full.json', chunks(bytes), { contentLength: bytes.length });

    expect(stored.sha256).toBe(sha(bytes));
    await expect(refused).rejects.toMatchObject({ code: 'DiskFull', message: expect.stringContaining('lab/configs/full.json was not stored') });
    expect(flushes).toBe(2);
    expect(await objects.head('b', 'lab/configs/full.json')).toBeUndefined();
    expect(await stagingLeft()).toEqual([]);
  });
});
