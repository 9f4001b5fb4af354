/**
 * Uploads of the local web API, streamed to disk in the bucket's staging area and put into
 * place create-only (lib/local/object-store.ts placeStaged): a single PUT for small files and a
 * multipart upload shaped like S3's for large ones, where part n is written at offset
 * (n-1) x partSize into one staging file, so a file of any size costs one write and one hash.
 * Nothing is visible under the key until the upload is whole (and its sha256 verified).
 *
 * The running sha256 of multipart uploads is kept by one worker thread per server (see
 * HashWorker), so hashing (the costliest step per byte) runs on another core than the one that
 * receives the bytes, and at completion only the tail is left to hash. Parts are handed to it in
 * order, each once the parts before it are whole: a part's received chunks themselves (moved to
 * the worker, not copied) while they are held, else (a part that waited too long behind a
 * missing one, or more bytes waiting or queued unhashed at the worker than HOLD_LIMIT_BYTES)
 * the worker re-reads it from the staging file, which costs nearly as much again as the hash.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { isDiskFull, KeyInvalidError, NeuroCaasError, ObjectExistsError, UsageError } from '../core/errors.js';
import { printable } from '../client/object-names.js';
import { isErrno } from '../local/fs-util.js';
import type { LocalObjectStore } from '../local/object-store.js';
import { RequestRefusedError } from './request-guard.js';

/** Writes are gathered into batches of this size, written with one writev each: 1 MiB (few system calls, bounded memory). */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Parts are re-read for the running sha256 in chunks of this size: 1 MiB (fits the caches). */
const HASH_READ_BYTES = 1024 * 1024;
/**
 * Received bytes one server keeps in memory for the hash worker: parts waiting for the parts
 * before them, plus chunks moved to the worker that it has not acknowledged hashing yet (its
 * queue grows when hashing is slower than arrival): 64 MiB (the web app's 4 parts of 8 MiB in
 * flight, twice over). Beyond it, parts are re-read from the staging file when their turn comes.
 */
const HOLD_LIMIT_BYTES = 64 * 1024 * 1024;
/**
 * A multipart upload's staging file is flushed to disk in the background (fdatasync) each time
 * this many bytes were written since the last flush began: 64 MiB. The disk then writes while
 * the parts are still arriving, instead of all at once after the last one, and the completion's
 * own flush (an upload is on disk before the server says it is stored) has little left to do.
 */
const FLUSH_STEP_BYTES = 64 * 1024 * 1024;
/**
 * An open upload that no request touched for this long is aborted and its staging file removed:
 * 24 h (decision 57). A browser tab closed mid-upload never comes back for it, and until then
 * its bytes take room on the disk and it counts against maxOpenUploads. A paused upload resumed
 * later than this starts over (the web app does so by itself when its upload id is gone).
 */
const IDLE_UPLOAD_MS = 24 * 60 * 60 * 1000;
/** When this process started, ms (a staging folder with its pid but older is a previous process's). */
/** Staging folders this manager names: `upload.<id>-<pid>` and `put.<random>-<pid>`. */
const OWN_STAGING = new RegExp(`^(upload|put)\\.([0-9a-f]+)-${process.pid}$`);
/**
 * Starts every staging folder name (and upload id) of this process: a folder of this pid without
 * it was left by an earlier process that had the same pid. Random, so no clock is trusted.
 */
const PROCESS_TOKEN = randomBytes(4).toString('hex');

/** How often open uploads are checked for idleness, at most: every minute. */
const IDLE_SWEEP_MS = 60 * 1000;

/** Longest folder or file name the local disk takes (NAME_MAX of ext4, xfs, btrfs, tmpfs): 255 bytes. */
const MAX_NAME_BYTES = 255;

/** S3's limits, so the same client code drives both backends. */
export const UPLOAD_LIMITS = {
  /** Largest single PUT: 5 GiB. */
  maxSingleBytes: 5 * 1024 ** 3,
  /** Largest multipart upload: 5 TiB. */
  maxUploadBytes: 5 * 1024 ** 4,
  /** Smallest part but the last: 5 MiB. */
  minPartBytes: 5 * 1024 ** 2,
  /** Largest part: 5 GiB. */
  maxPartBytes: 5 * 1024 ** 3,
  maxParts: 10_000,
  /** Uploads open at once in one server. */
  maxOpenUploads: 64,
} as const;

const SHA256_HEX = /^[0-9a-f]{64}$/;
const CRC32_HEX = /^[0-9a-f]{8}$/;

/** A part's declared CRC32 (8 hex digits, as zlib and S3 compute it), or undefined when none was given. */
export function checkCrc32(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !CRC32_HEX.test(value.toLowerCase())) throw new UsageError(`${where} must be 8 hex digits (a CRC32 of the part's bytes), got ${JSON.stringify(value)?.slice(0, 80)}`);
  return value.toLowerCase();
}

/** The CRC32 of `value` (an unsigned 32-bit number) as 8 hex digits. */
export function crc32Hex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

export function checkSha256(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !SHA256_HEX.test(value.toLowerCase())) throw new UsageError(`${where} must be 64 hex digits (a sha256), got ${JSON.stringify(value)?.slice(0, 80)}`);
  return value.toLowerCase();
}

/**
 * Runs writes to one file one at a time. Parts arriving in parallel would otherwise write the
 * same file from several thread-pool threads at once, and the kernel serializes buffered writes
 * to one file on its inode lock, its waiters spinning: with 4 parts in flight that spinning cost
 * more CPU than the copies themselves.
 */
export class WriteQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export interface WriteStreamOptions {
  /** Fed with every chunk. */
  hash?: Hash;
  /** Carries the running CRC32 of every chunk (zlib's, native), from `value` as given. */
  crc?: { value: number };
  /** Collects every chunk (they are kept alive). */
  keep?: Buffer[];
  /** The file's write queue, when other requests write the same file. */
  queue?: WriteQueue;
}

/**
 * Writes `source` at `position` of `handle`, at most `maxBytes` bytes (more is BodyTooLarge);
 * returns the bytes written. One batch is written while the next one is received (without
 * `keep`, at most two batches, 2 MiB, are held at once).
 */
export async function writeStreamAt(source: AsyncIterable<Buffer>, handle: FileHandle, position: number, maxBytes: number, options: WriteStreamOptions = {}): Promise<number> {
  const { hash, crc, keep, queue } = options;
  let written = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let inFlight: Promise<void> | undefined;
  let failure: unknown;
  const flush = async () => {
    if (inFlight) await inFlight;
    if (failure !== undefined) throw failure;
    if (batchBytes === 0) return;
    const buffers = batch;
    const at = position + written - batchBytes;
    batch = [];
    batchBytes = 0;
    inFlight = (queue ? queue.run(() => writeAllAt(handle, buffers, at)) : writeAllAt(handle, buffers, at)).catch((error: unknown) => {
      failure = error;
    });
  };
  try {
    for await (const chunk of source) {
      if (written + chunk.length > maxBytes) throw new RequestRefusedError('BodyTooLarge', `the body is larger than the ${maxBytes} bytes expected`);
      hash?.update(chunk);
      if (crc) crc.value = crc32(chunk, crc.value);
      keep?.push(chunk);
      batch.push(chunk);
      batchBytes += chunk.length;
      written += chunk.length;
      if (batchBytes >= WRITE_BATCH_BYTES) await flush();
    }
    await flush();
  } finally {
    // Never leave a write running behind a failed request (the caller may close the handle).
    await inFlight;
  }
  if (failure !== undefined) throw failure;
  return written;
}

async function writeAllAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let at = position;
  let rest = buffers;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest, at);
    at += bytesWritten;
    let skip = bytesWritten;
    const left: Buffer[] = [];
    for (const buffer of rest) {
      if (skip >= buffer.length) skip -= buffer.length;
      else {
        left.push(skip > 0 ? buffer.subarray(skip) : buffer);
        skip = 0;
      }
    }
    rest = left;
  }
}

/**
 * The worker thread's code (plain CommonJS, so it runs the same from the TypeScript sources in
 * tests and from dist/): one sha256 state per upload id, fed either with chunks moved to it
 * (`feed`, which must continue exactly where the hash stands) or by reading the staging file
 * through the main thread's descriptor (`extend`). Messages are handled in order, so a digest
 * answers after every feed and extend sent before it. Every feed is acknowledged with its byte
 * count once hashed (also when it failed), so the main thread knows how many moved bytes still
 * wait in this thread's message queue.
 */
const HASH_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { createHash } = require('node:crypto');
let buffer;
const states = new Map();
parentPort.on('message', (m) => {
  let state = states.get(m.upload);
  if (m.type === 'reset' || !state) {
    state = { hash: createHash('sha256'), at: 0, error: undefined };
    states.set(m.upload, state);
  }
  if (m.type === 'forget') return void states.delete(m.upload);
  if ((m.type === 'extend' || m.type === 'feed') && state.error === undefined) {
    try {
      if (m.type === 'feed') {
        if (m.at !== state.at) throw new Error('bytes from ' + m.at + ' were handed while the hash stands at ' + state.at);
        for (const chunk of m.chunks) {
          state.hash.update(new Uint8Array(chunk));
          state.at += chunk.byteLength;
        }
      }
      if (m.type === 'extend') {
        buffer = buffer || Buffer.allocUnsafe(workerData.chunkBytes);
        while (state.at < m.upTo) {
          const n = readSync(m.fd, buffer, 0, Math.min(buffer.length, m.upTo - state.at), state.at);
          if (n === 0) throw new Error('the staging file is shorter than the parts received (' + state.at + ' < ' + m.upTo + ')');
          state.hash.update(buffer.subarray(0, n));
          state.at += n;
        }
      }
    } catch (error) {
      state.error = String(error && error.message || error);
    }
  }
  if (m.type === 'feed') parentPort.postMessage({ type: 'ack', bytes: m.chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0) });
  if (m.type === 'digest') parentPort.postMessage({ request: m.request, at: state.at, error: state.error, hex: state.error === undefined ? state.hash.copy().digest('hex') : undefined });
});
`;

/** The chunk's own memory, movable to another thread: the chunk itself when it spans all of it, else a copy. */
function movable(chunk: Buffer): ArrayBuffer {
  const memory = chunk.buffer;
  if (memory instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === memory.byteLength) return memory;
  return new Uint8Array(chunk).buffer;
}

/**
 * The running sha256s of one server's multipart uploads, on a worker thread (created on first
 * use and unref'd, but its 'message' listener refs its port again: it lives as long as the server). If the worker fails, digests reject and
 * the caller hashes the file itself.
 */
class HashWorker {
  private worker: Worker | undefined;
  private nextRequest = 0;
  private unacked = 0;
  private readonly waiting = new Map<number, { resolve: (value: { at: number; hex: string }) => void; reject: (error: Error) => void }>();

  private get thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(HASH_WORKER_SOURCE, { eval: true, workerData: { chunkBytes: HASH_READ_BYTES } });
    worker.unref();
    worker.on('message', (reply: { type: 'ack'; bytes: number } | { type?: undefined; request: number; at: number; error?: string; hex?: string }) => {
      if (reply.type === 'ack') {
        this.unacked -= reply.bytes;
        return;
      }
      const waiter = this.waiting.get(reply.request);
      this.waiting.delete(reply.request);
      if (reply.error !== undefined || reply.hex === undefined) waiter?.reject(new Error(reply.error ?? 'no digest'));
      else waiter?.resolve({ at: reply.at, hex: reply.hex });
    });
    const fail = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      // Its queue died with it: the bytes fed to it are no longer held anywhere.
      this.unacked = 0;
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the hash worker stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }

  get unackedBytes(): number {
    return this.unacked;
  }

  reset(upload: string): void {
    this.thread.postMessage({ type: 'reset', upload });
  }

  extend(upload: string, fd: number, upTo: number): void {
    this.thread.postMessage({ type: 'extend', upload, fd, upTo });
  }

  /** Moves the chunks' memory to the worker (transferred, not copied); acknowledged once hashed. */
  feed(upload: string, at: number, chunks: Buffer[]): boolean {
    const memory = chunks.map(movable);
    // Counted before the transfer: it detaches the buffers here (their byteLength becomes 0).
    const bytes = memory.reduce((sum, buffer) => sum + buffer.byteLength, 0);
    try {
      this.thread.postMessage({ type: 'feed', upload, at, chunks: memory }, memory);
    } catch {
      // Expected: a DataCloneError when a buffer cannot be transferred (already detached by
      // another owner), or the worker thread cannot be started. Nothing was sent and the hash
      // stands where it stood, so the caller hashes these bytes by re-reading them from the
      // staging file (extend); should that fail too, completion hashes the whole file itself.
      return false;
    }
    this.unacked += bytes;
    return true;
  }

  digest(upload: string): Promise<{ at: number; hex: string }> {
    const request = this.nextRequest++;
    return new Promise((resolve, reject) => {
      this.waiting.set(request, { resolve, reject });
      this.thread.postMessage({ type: 'digest', upload, request });
    });
  }

  forget(upload: string): void {
    this.worker?.postMessage({ type: 'forget', upload });
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.unacked = 0;
    await worker?.terminate();
  }
}

/**
 * Keeps the running sha256 of each open multipart upload, fed in order. UploadManager uses one
 * HashWorker per server; tests pass another (e.g. one that acknowledges late).
 */
export interface RunningHashes {
  /**
   * Bytes handed over with `feed` whose hashing is not acknowledged yet: memory still held in
   * the hasher's queue, counted against the manager's hold limit.
   */
  readonly unackedBytes: number;
  /** Starts `upload`'s hash over at byte 0. */
  reset(upload: string): void;
  /** Hashes the file behind descriptor `fd` from where `upload`'s hash stands up to byte `upTo` (exclusive). */
  extend(upload: string, fd: number, upTo: number): void;
  /**
   * Hashes `chunks`, the bytes from offset `at` on (where the hash must stand), taking their
   * memory: the chunks are unusable for the caller afterwards. False when nothing was sent
   * (the caller extends from the file instead).
   */
  feed(upload: string, at: number, chunks: Buffer[]): boolean;
  /** The sha256 of the bytes hashed so far and how many they are (after every feed and extend sent before). */
  digest(upload: string): Promise<{ at: number; hex: string }>;
  forget(upload: string): void;
  stop(): Promise<void>;
}

/** A hash worker thread of its own (as each UploadManager starts by default), e.g. for a test to wrap. */
export function startHashWorker(): RunningHashes {
  return new HashWorker();
}

interface Part {
  size: number;
  etag: string;
}

interface Upload {
  id: string;
  bucket: string;
  key: string;
  sizeBytes: number;
  partSize: number;
  partCount: number;
  sha256: string | undefined;
  dir: string;
  file: string;
  handle: FileHandle;
  /** Every part's writes to the staging file, one at a time. */
  writes: WriteQueue;
  parts: Map<number, Part>;
  /** Parts being written now. */
  busy: Set<number>;
  /**
   * Parts 1..extendedParts have been handed to the hash worker (in order, each once it was
   * whole); a part among them written again starts the running hash over.
   */
  extendedParts: number;
  /** Whole parts past extendedParts whose received chunks are kept for the hash worker. */
  held: Map<number, Buffer[]>;
  /** Bytes written to the staging file since the last background flush began. */
  unflushedBytes: number;
  /** The background flush running now, if any (one at a time). */
  flushing: Promise<void> | undefined;
  /**
   * The first error a background flush met (e.g. ENOSPC or EIO while the disk wrote the pages):
   * the kernel reports it once, so it is kept and the completion fails with it.
   */
  flushFailure: unknown;
  /**
   * A completion is running (from its checks until it stores the file or fails): the parts,
   * and so the bytes its sha256 is computed from, may not change, and the upload may not be
   * aborted or completed again meanwhile.
   */
  completing: boolean;
  closed: boolean;
  /** When a request last touched this upload (started it, sent or listed parts, completed), ms. */
  lastUsedMs: number;
}

export interface StartUpload {
  bucket: string;
  key: string;
  sizeBytes: number;
  partSizeBytes: number;
  sha256?: string;
}

export interface UploadManagerOptions {
  /** Received bytes kept in memory for the hash worker, held and unacknowledged together; default 64 MiB. */
  holdLimitBytes?: number;
  /** Keeps the running sha256s; default a worker thread of this manager's own (HashWorker). */
  hashes?: RunningHashes;
  /** Bytes written between background flushes of a multipart upload's staging file; default 64 MiB. */
  flushStepBytes?: number;
  /** Opens the staging files (node:fs/promises `open`); tests wrap it to make the disk fail. */
  openFile?: (path: string, flags: string) => Promise<FileHandle>;
  /** An upload no request touched for this long is aborted, ms; default 24 h (IDLE_UPLOAD_MS). */
  idleUploadMs?: number;
  /** The clock of the idle check, ms; default Date.now. */
  now?: () => number;
}

/** The open multipart uploads of one server and its single PUTs. */
export class UploadManager {
  private readonly uploads = new Map<string, Upload>();
  private readonly hasher: RunningHashes;
  private readonly holdLimitBytes: number;
  private readonly flushStepBytes: number;
  private readonly openFile: (path: string, flags: string) => Promise<FileHandle>;
  private readonly idleUploadMs: number;
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;
  /** Staging areas already cleared of an earlier process's folders (removeLeftovers). */
  private readonly clearedStaging = new Set<string>();
  /** Bytes kept (or reserved for parts being received) for the hash worker, all uploads. */
  private heldBytes = 0;

  constructor(
    private readonly objects: LocalObjectStore,
    options: UploadManagerOptions = {},
  ) {
    this.hasher = options.hashes ?? new HashWorker();
    this.holdLimitBytes = options.holdLimitBytes ?? HOLD_LIMIT_BYTES;
    this.flushStepBytes = options.flushStepBytes ?? FLUSH_STEP_BYTES;
    this.openFile = options.openFile ?? ((path, flags) => open(path, flags));
    this.idleUploadMs = options.idleUploadMs ?? IDLE_UPLOAD_MS;
    this.now = options.now ?? Date.now;
  }

  /**
   * Received bytes this manager holds in memory for hashing, bytes: kept parts (and reservations
   * for parts being received) plus fed chunks the hasher has not acknowledged. Never more than
   * the hold limit.
   */
  get bytesInMemory(): number {
    return this.heldBytes + this.hasher.unackedBytes;
  }

  /**
   * Throws unless `key` could be placed on this disk: KeyInvalid when a folder or file name in it
   * is longer than the filesystem takes (255 bytes), ObjectExists when a file stands where one of
   * its folders must go or a folder where the file must go. Checked before any byte is taken, so
   * a name that cannot be stored is not refused only after the whole file was sent.
   */
  async checkPlaceable(bucket: string, key: string): Promise<void> {
    const segments = key.split('/');
    for (const segment of segments) {
      const bytes = Buffer.byteLength(segment);
      if (bytes > MAX_NAME_BYTES) throw new KeyInvalidError(`"${printable(key)}" has a folder or file name of ${bytes} bytes ("${printable(segment.slice(0, 40))}..."); a name on this disk may have at most ${MAX_NAME_BYTES} bytes (UTF-8): shorten it`);
    }
    for (let n = 1; n <= segments.length; n += 1) {
      const prefix = segments.slice(0, n).join('/');
      let info;
      try {
        info = await stat(this.objects.pathOf(bucket, prefix));
      } catch (error) {
        if (isErrno(error, 'ENOENT')) return;
        if (isErrno(error, 'ENAMETOOLONG')) throw new KeyInvalidError(`"${printable(key)}" is too long a path for this disk; shorten it`);
        throw error;
      }
      if (n < segments.length && !info.isDirectory()) throw new ObjectExistsError(`${prefix} is a file, so nothing can be stored under it as ${key}; choose another name`);
      if (n === segments.length && info.isDirectory()) throw new ObjectExistsError(`${key} is a folder of inputs (it holds files uploaded under ${key}/); choose another name for the file`);
    }
  }

  /** Streams one request body into `key`, create-only; verifies `sha256` when given. */
  async putObject(bucket: string, key: string, body: AsyncIterable<Buffer>, options: { sha256?: string; contentLength?: number }): Promise<{ key: string; sizeBytes: number; sha256: string; reused: boolean }> {
    await this.checkPlaceable(bucket, key);
    const dir = await this.objects.newStagingDir(bucket, `put.${PROCESS_TOKEN}${randomBytes(6).toString('hex')}`);
    await this.removeLeftovers(dirname(dir)).catch(() => undefined);
    try {
      const file = join(dir, 'object');
      const handle = await this.openFile(file, 'wx');
      const hash = createHash('sha256');
      let size: number;
      try {
        size = await writeStreamAt(body, handle, 0, options.contentLength ?? UPLOAD_LIMITS.maxSingleBytes, { hash });
        // On disk before the server says it is stored.
        await handle.datasync();
      } catch (error) {
        throw isDiskFull(error) ? diskRefusal(error, `${key} was not stored`, 'upload it again') : error;
      } finally {
        await handle.close();
      }
      if (options.contentLength !== undefined && size !== options.contentLength) throw new RequestRefusedError('BadRequest', `the body ended after ${size} of ${options.contentLength} bytes; nothing was stored`);
      const sha256 = hash.digest('hex');
      if (options.sha256 !== undefined && options.sha256 !== sha256) {
        throw new RequestRefusedError('ChecksumMismatch', `the bytes received have sha256 ${sha256}, not ${options.sha256} as declared; nothing was stored, upload again`);
      }
      const placed = await this.objects.placeStaged(bucket, key, file, sha256);
      return { key, sizeBytes: size, sha256, reused: placed.reused };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async start(request: StartUpload): Promise<{ uploadId: string; key: string }> {
    const { sizeBytes, partSizeBytes } = request;
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > UPLOAD_LIMITS.maxUploadBytes) throw new UsageError(`sizeBytes must be a whole number from 0 to ${UPLOAD_LIMITS.maxUploadBytes}, got ${String(sizeBytes)}`);
    if (!Number.isSafeInteger(partSizeBytes) || partSizeBytes < 1 || partSizeBytes > UPLOAD_LIMITS.maxPartBytes) throw new UsageError(`partSizeBytes must be a whole number from 1 to ${UPLOAD_LIMITS.maxPartBytes}, got ${String(partSizeBytes)}`);
    const partCount = Math.max(1, Math.ceil(sizeBytes / partSizeBytes));
    if (partCount > 1 && partSizeBytes < UPLOAD_LIMITS.minPartBytes) throw new UsageError(`partSizeBytes must be at least ${UPLOAD_LIMITS.minPartBytes} (5 MiB) when there is more than one part, got ${partSizeBytes}`);
    if (partCount > UPLOAD_LIMITS.maxParts) throw new UsageError(`${sizeBytes} bytes in parts of ${partSizeBytes} make ${partCount} parts, more than ${UPLOAD_LIMITS.maxParts}; use larger parts`);
    if (this.uploads.size >= UPLOAD_LIMITS.maxOpenUploads) throw new RequestRefusedError('UploadConflict', `${this.uploads.size} uploads are open; complete or abort some first`);
    await this.checkPlaceable(request.bucket, request.key);
    if (await this.objects.head(request.bucket, request.key)) {
      throw new RequestRefusedError('UploadConflict', `${request.key} already exists; uploads never overwrite (check GET .../objects/exists first, or upload under another name)`);
    }
    const id = PROCESS_TOKEN + randomBytes(8).toString('hex');
    const dir = await this.objects.newStagingDir(request.bucket, `upload.${id}`);
    await this.removeLeftovers(dirname(dir)).catch(() => undefined);
    const file = join(dir, 'object');
    // Read back too: the hash worker re-reads the parts through this descriptor.
    const handle = await this.openFile(file, 'wx+');
    // Sparse until the parts arrive: no space is taken up front.
    await handle.truncate(sizeBytes);
    this.hasher.reset(id);
    this.uploads.set(id, {
      id,
      bucket: request.bucket,
      key: request.key,
      sizeBytes,
      partSize: partSizeBytes,
      partCount,
      sha256: request.sha256,
      dir,
      file,
      handle,
      writes: new WriteQueue(),
      parts: new Map(),
      busy: new Set(),
      extendedParts: 0,
      held: new Map(),
      unflushedBytes: 0,
      flushing: undefined,
      flushFailure: undefined,
      completing: false,
      closed: false,
      lastUsedMs: this.now(),
    });
    // Unref'd: it never keeps the process alive; abortAll stops it.
    this.sweeper ??= setInterval(() => void this.sweepIdle().catch(() => undefined), Math.min(this.idleUploadMs, IDLE_SWEEP_MS)).unref();
    return { uploadId: id, key: request.key };
  }

  /**
   * Removes, once per staging area, the folders an earlier process with this process's pid left
   * (killed, so it never cleaned up): the staging area removes a dead pid's folders by itself, but
   * a server restarted in a container usually gets the same pid, and its leftovers then look alive
   * forever. A folder of this pid whose name lacks this process's PROCESS_TOKEN cannot be this
   * process's (by name, not by time: a clock that steps or an NFS server's clock cannot make it
   * remove a live folder). A clean-up that fails is tried again by the next upload, and never
   * fails the upload itself.
   */
  private async removeLeftovers(stagingRoot: string): Promise<void> {
    if (this.clearedStaging.has(stagingRoot)) return;
    this.clearedStaging.add(stagingRoot);
    try {
      for (const name of await readdir(stagingRoot)) {
        const id = OWN_STAGING.exec(name)?.[2];
        if (id === undefined || id.startsWith(PROCESS_TOKEN)) continue;
        await rm(join(stagingRoot, name), { recursive: true, force: true });
      }
    } catch (error) {
      this.clearedStaging.delete(stagingRoot);
      throw error;
    }
  }

  /**
   * Aborts the uploads no request touched for the idle time (none with a part being received or
   * a completion running); returns their ids.
   */
  async sweepIdle(): Promise<string[]> {
    const now = this.now();
    const isIdle = (upload: Upload) => this.uploads.get(upload.id) === upload && upload.busy.size === 0 && !upload.completing && now - upload.lastUsedMs >= this.idleUploadMs;
    const discarded: string[] = [];
    for (const upload of [...this.uploads.values()].filter(isIdle)) {
      // Checked again at its turn: a request may have used (or aborted) it while an earlier one was discarded.
      if (!isIdle(upload)) continue;
      await this.discard(upload);
      discarded.push(upload.id);
    }
    return discarded;
  }

  private get(uploadId: string): Upload {
    const upload = this.uploads.get(uploadId);
    if (!upload) throw new RequestRefusedError('UploadNotFound', `upload "${uploadId}" is not open in this server (completed, aborted, unused for ${formatHours(this.idleUploadMs)}, or started before a restart); start it again`);
    return upload;
  }

  /** An upload a request uses now (the idle time starts again). */
  private touch(uploadId: string): Upload {
    const upload = this.get(uploadId);
    upload.lastUsedMs = this.now();
    return upload;
  }

  /** The key an open upload will create (for the caller's own checks). */
  keyOf(uploadId: string): { bucket: string; key: string } {
    const upload = this.get(uploadId);
    return { bucket: upload.bucket, key: upload.key };
  }

  /**
   * Writes part `partNumber` (1-based) at its offset; returns its ETag. With `crc32` (the
   * sender's CRC32 of the part, 8 hex digits), a part whose bytes differ is not kept
   * (ChecksumMismatch): the sender sends that part again, not the whole file.
   */
  async putPart(uploadId: string, partNumber: number, body: AsyncIterable<Buffer>, contentLength: number | undefined, options: { crc32?: string } = {}): Promise<string> {
    const upload = this.touch(uploadId);
    refuseWhileCompleting(upload, `part ${String(partNumber)} was not stored`);
    // A flush already failed: completion could only fail, so no more of the file is sent for nothing.
    if (upload.flushFailure !== undefined) return this.dropForDisk(upload, upload.flushFailure);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > upload.partCount) throw new UsageError(`part number must be from 1 to ${upload.partCount} for this upload, got ${String(partNumber)}`);
    const expected = partNumber < upload.partCount ? upload.partSize : upload.sizeBytes - (upload.partCount - 1) * upload.partSize;
    if (contentLength !== undefined && contentLength !== expected) throw new UsageError(`part ${partNumber} must be ${expected} bytes, the body is ${contentLength}`);
    if (upload.busy.has(partNumber)) throw new RequestRefusedError('UploadConflict', `part ${partNumber} is being uploaded by another request right now`);
    upload.busy.add(partNumber);
    this.drop(upload, partNumber);
    // Keep the chunks for the hash worker while there is room (reserved now, so parallel parts
    // cannot overshoot). Chunks the worker was given but has not hashed yet still take room: a
    // worker slower than the arrivals would otherwise queue the whole file in memory.
    const keep = this.bytesInMemory + expected <= this.holdLimitBytes ? ([] as Buffer[]) : undefined;
    if (keep) this.heldBytes += expected;
    let stored = false;
    try {
      if (upload.parts.delete(partNumber) && partNumber <= upload.extendedParts) {
        // A hashed part is written again: the running hash starts over (whatever the worker read of it is dropped).
        this.hasher.reset(upload.id);
        upload.extendedParts = 0;
      }
      const crc = options.crc32 === undefined ? undefined : { value: 0 };
      const aborted = () => new RequestRefusedError('UploadNotFound', `upload ${uploadId} was aborted while part ${partNumber} was being received; nothing of it is kept`);
      const size = await writeStreamAt(body, upload.handle, (partNumber - 1) * upload.partSize, expected, { ...(keep ? { keep } : {}), ...(crc ? { crc } : {}), queue: upload.writes }).catch((error: unknown) => {
        // The abort closed the file under this part's writes ("file closed"): say what happened.
        if (upload.closed) throw aborted();
        throw isDiskFull(error) ? diskRefusal(error, `part ${partNumber} of upload ${uploadId} was not stored`, 'send the part again (the parts stored before it are kept)') : error;
      });
      if (upload.closed) throw aborted();
      if (size !== expected) throw new UsageError(`part ${partNumber} must be ${expected} bytes, ${size} arrived; send it again`);
      if (crc && crc32Hex(crc.value) !== options.crc32) {
        throw new RequestRefusedError('ChecksumMismatch', `part ${partNumber}'s bytes have CRC32 ${crc32Hex(crc.value)}, not ${options.crc32} as declared; the part was not kept, send it again`);
      }
      const etag = `"${partNumber}-${randomBytes(8).toString('hex')}"`;
      upload.parts.set(partNumber, { size, etag });
      upload.unflushedBytes += size;
      this.flushInBackground(upload);
      if (keep && !upload.closed && partNumber > upload.extendedParts) {
        upload.held.set(partNumber, keep);
        stored = true;
      }
      return etag;
    } finally {
      if (keep && !stored) this.heldBytes -= expected;
      upload.busy.delete(partNumber);
      upload.lastUsedMs = this.now();
      this.advanceHash(upload);
    }
  }

  /**
   * Starts a background fdatasync of the staging file once the flush step (FLUSH_STEP_BYTES) was written since
   * the last one began (one at a time; the next starts when it ends, if enough was written
   * meanwhile). Writes go on while it runs: it flushes what was written before it began.
   */
  private flushInBackground(upload: Upload): void {
    if (upload.closed || upload.flushing || upload.flushFailure !== undefined || upload.unflushedBytes < this.flushStepBytes) return;
    upload.unflushedBytes = 0;
    upload.flushing = upload.handle.datasync().then(
      () => {
        upload.flushing = undefined;
        this.flushInBackground(upload);
      },
      (error: unknown) => {
        upload.flushing = undefined;
        upload.flushFailure ??= error;
      },
    );
  }

  /**
   * Waits for the background flush, then flushes the rest: the staging file is on disk (or this
   * throws the first error any flush met, so an upload the disk did not take is never stored).
   */
  private async flushAll(upload: Upload): Promise<void> {
    await upload.flushing;
    if (upload.flushFailure !== undefined) throw upload.flushFailure;
    await upload.handle.datasync();
  }

  /** Forgets the chunks kept of a part (it is being sent again, or the upload ends). */
  private drop(upload: Upload, partNumber: number): void {
    const chunks = upload.held.get(partNumber);
    if (!chunks) return;
    upload.held.delete(partNumber);
    this.heldBytes -= chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  private dropAll(upload: Upload): void {
    for (const n of [...upload.held.keys()]) this.drop(upload, n);
  }

  /**
   * Hands the worker, in order, the whole parts that follow the last one it was given: kept
   * chunks are moved to it, the others it reads from the staging file (runs of them at once).
   * Moving a part's chunks turns held bytes into unacknowledged ones, the same bytes counted
   * once (drop, then feed), so bytesInMemory never grows here; it was reserved within the limit
   * when the part arrived, and parts without room were not kept, so they are re-read.
   */
  private advanceHash(upload: Upload): void {
    if (upload.closed) return;
    let readFrom: number | undefined;
    let readTo = 0;
    const flushReads = () => {
      if (readFrom !== undefined) this.hasher.extend(upload.id, upload.handle.fd, readTo);
      readFrom = undefined;
    };
    for (;;) {
      const next = upload.extendedParts + 1;
      const part = upload.parts.get(next);
      if (!part || upload.busy.has(next)) break;
      upload.extendedParts = next;
      const at = (next - 1) * upload.partSize;
      const chunks = upload.held.get(next);
      this.drop(upload, next);
      if (chunks) {
        flushReads();
        if (this.hasher.feed(upload.id, at, chunks)) continue;
      }
      readFrom ??= at;
      readTo = at + part.size;
    }
    flushReads();
  }

  listParts(uploadId: string): { PartNumber: number; Size: number; ETag: string }[] {
    const upload = this.touch(uploadId);
    return [...upload.parts]
      .sort(([a], [b]) => a - b)
      .map(([n, part]) => ({ PartNumber: n, Size: part.size, ETag: part.etag }));
  }

  /**
   * Checks every part is there (and matches `parts`' ETags when given), verifies the sha256
   * declared at the start or here (`sha256`: a client that hashed while sending; both given must
   * agree), puts the file into place create-only and closes the upload.
   */
  async complete(uploadId: string, parts: { PartNumber: number; ETag: string }[] | undefined, sha256Declared?: string): Promise<{ key: string; sizeBytes: number; sha256: string; reused: boolean }> {
    const upload = this.touch(uploadId);
    if (sha256Declared !== undefined && upload.sha256 !== undefined && sha256Declared !== upload.sha256) {
      throw new UsageError(`the completion declares sha256 ${sha256Declared} but the upload was started with ${upload.sha256}; complete with the same one (or without sha256)`);
    }
    const declared = sha256Declared ?? upload.sha256;
    refuseWhileCompleting(upload, 'it was not completed a second time');
    if (upload.busy.size > 0) throw new RequestRefusedError('UploadConflict', `parts ${[...upload.busy].join(', ')} are still being uploaded; complete after they finish`);
    const missing: number[] = [];
    for (let n = 1; n <= upload.partCount; n += 1) if (!upload.parts.has(n)) missing.push(n);
    if (missing.length > 0) throw new UsageError(`upload ${uploadId} lacks part(s) ${summarize(missing)} of ${upload.partCount}; send them, then complete`);
    for (const given of parts ?? []) {
      const have = upload.parts.get(given.PartNumber);
      if (!have || have.etag !== given.ETag) throw new UsageError(`part ${given.PartNumber}'s ETag ${JSON.stringify(given.ETag)} is not the one stored (${have?.etag ?? 'none'}); list the parts and complete with their ETags`);
    }
    // From here until the file is stored (or this fails) its bytes may not change: a part sent
    // again now would be written under the hash computed of the bytes before it.
    upload.completing = true;
    try {
      return await this.hashAndStore(upload, sha256Declared, declared);
    } finally {
      upload.completing = false;
    }
  }

  /** The rest of a completion whose checks passed: the sha256, the final flush, the placement. */
  private async hashAndStore(upload: Upload, sha256Declared: string | undefined, declared: string | undefined): Promise<{ key: string; sizeBytes: number; sha256: string; reused: boolean }> {
    const uploadId = upload.id;
    this.advanceHash(upload);
    // The worker answers after every part handed to it; should it have failed, hash here.
    const running = await this.hasher.digest(upload.id).catch(() => undefined);
    const sha256 = running !== undefined && running.at === upload.sizeBytes ? running.hex : await hashFile(upload.handle, upload.sizeBytes);
    if (declared !== undefined && declared !== sha256) {
      throw new RequestRefusedError('ChecksumMismatch', `the uploaded bytes have sha256 ${sha256}, not ${declared} as declared ${sha256Declared !== undefined ? 'at completion' : 'at the start'}; nothing was stored (abort and upload again)`);
    }
    upload.closed = true;
    this.dropAll(upload);
    this.hasher.forget(upload.id);
    try {
      await this.flushAll(upload);
    } catch (error) {
      return this.dropForDisk(upload, error);
    }
    await upload.handle.close();
    try {
      const placed = await this.objects.placeStaged(upload.bucket, upload.key, upload.file, sha256);
      return { key: upload.key, sizeBytes: upload.sizeBytes, sha256, reused: placed.reused };
    } finally {
      this.uploads.delete(uploadId);
      await rm(upload.dir, { recursive: true, force: true });
    }
  }

  /**
   * Drops an upload whose staging file a flush could not write, and throws why. The kernel
   * reports a failed writeback once and may drop the pages it could not write: the file can no
   * longer be trusted, so it goes (freeing its space) and the researcher sends the file again.
   */
  private async dropForDisk(upload: Upload, error: unknown): Promise<never> {
    if (this.uploads.get(upload.id) === upload) await this.discard(upload).catch(() => undefined);
    throw diskRefusal(error, `the disk did not take upload ${upload.id} of ${upload.key}; nothing was stored and the upload is dropped`, 'upload the file again');
  }

  /** Drops an upload and its staged bytes; nothing was ever visible. */
  async abort(uploadId: string): Promise<void> {
    const upload = this.get(uploadId);
    refuseWhileCompleting(upload, 'it was not aborted');
    await this.discard(upload);
  }

  /** Closes an upload and removes its staged bytes (abort, or a completion the disk failed). */
  private async discard(upload: Upload): Promise<void> {
    const uploadId = upload.id;
    this.uploads.delete(uploadId);
    upload.closed = true;
    this.dropAll(upload);
    // Wait until the worker and the background flush are done with the descriptor before it is closed (and its number reused).
    await this.hasher.digest(upload.id).catch(() => undefined);
    await upload.flushing;
    this.hasher.forget(upload.id);
    await upload.handle.close().catch(() => undefined);
    await rm(upload.dir, { recursive: true, force: true });
  }

  /** Aborts every open upload (the server is stopping). */
  async abortAll(): Promise<void> {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const id of [...this.uploads.keys()]) await this.abort(id).catch(() => undefined);
    await this.hasher.stop();
  }

  get openCount(): number {
    return this.uploads.size;
  }
}

/**
 * The error of a write or flush the disk refused: DiskFull (HTTP 507) when it is out of space or
 * quota, else DiskWriteFailed (500), each naming what was lost and what to do.
 */
export function diskRefusal(error: unknown, what: string, todo: string): NeuroCaasError {
  const detail = error instanceof Error ? error.message : String(error);
  if (isDiskFull(error)) return new NeuroCaasError('DiskFull', `${what}: the disk under the platform's root is full (${detail}). Free space there, then ${todo}`, { cause: error });
  return new NeuroCaasError('DiskWriteFailed', `${what}: ${detail}. Check the disk under the platform's root, then ${todo}`, { cause: error });
}

async function hashFile(handle: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(HASH_READ_BYTES);
  for (let done = 0; done < size; ) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - done), done);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    done += bytesRead;
  }
  return hash.digest('hex');
}

/** Throws UploadConflict while a completion of `upload` runs; `what` says what was not done. */
function refuseWhileCompleting(upload: Upload, what: string): void {
  if (upload.completing) throw new RequestRefusedError('UploadConflict', `upload ${upload.id} is being completed, so ${what}; wait for the completion's answer (list the parts if it fails)`);
}

function formatHours(ms: number): string {
  return ms >= 3_600_000 ? `${Math.round(ms / 3_600_000)} h` : `${Math.round(ms / 1000)} s`;
}

function summarize(numbers: number[]): string {
  return numbers.length > 10 ? `${numbers.slice(0, 10).join(', ')} and ${numbers.length - 10} more` : numbers.join(', ');
}
