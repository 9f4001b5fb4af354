/**
 * The sha256 of local files (Node only): on this thread for small files, on a worker thread for
 * large ones, so a large file's hash runs beside whatever this thread does meanwhile (loading
 * the SDK, discovery, uploading the file before it) on another core.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { NeuroCaasError } from '../core/errors.js';

/** Bytes hashed per read: 4 MiB (two such buffers, reused). */
export const HASH_READ_BYTES = 4 * 1024 * 1024;
/** Files from this size (32 MiB) are hashed on a worker thread; smaller ones take less than starting one. */
export const WORKER_HASH_MIN_BYTES = 32 * 1024 * 1024;

/**
 * A file's sha256 (hex) with the size and mtime (ms) the file had while it was read: both from
 * fstat on the handle that was read, before and after reading, so a caller can tell by a later
 * stat whether these bytes are still the file's.
 */
export interface FileHash {
  sha256: string;
  sizeBytes: number;
  mtimeMs: number;
}

/** Reads of a file that kept changing while it was hashed before hashing gives up: 3. */
export const HASH_ATTEMPTS = 3;

/** A file that changed during each of HASH_ATTEMPTS hashes: no sha256 of it can be trusted. */
export class FileChangedWhileHashingError extends NeuroCaasError {
  constructor(path: string) {
    super('FileChangedWhileHashing', `${path} changed while it was being hashed (${HASH_ATTEMPTS} times); wait until whatever writes it has finished, then run the command again`);
  }
}

/**
 * The sha256 of a file on this thread, with its stat. Reads into two reused 4 MiB buffers, the
 * next read in flight (on libuv's thread pool) while this thread hashes the current one: no
 * stream, no buffer per chunk for the GC, no fresh pages to fault in, so it costs little more
 * than the sha256. A file whose size or mtime changed during the read is read again.
 * `signal`: stops reading (the promise rejects) once aborted.
 */
export async function hashFileHere(path: string, signal?: AbortSignal): Promise<FileHash> {
  signal?.throwIfAborted();
  const handle = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(HASH_READ_BYTES), Buffer.allocUnsafe(HASH_READ_BYTES)];
    for (let attempt = 0; attempt < HASH_ATTEMPTS; attempt += 1) {
      const before = await handle.stat();
      const hash = createHash('sha256');
      let position = 0;
      let pending = handle.read(buffers[0] as Buffer, 0, HASH_READ_BYTES, position);
      for (let turn = 0; ; turn += 1) {
        const { bytesRead, buffer } = await pending;
        if (bytesRead === 0) break;
        signal?.throwIfAborted();
        position += bytesRead;
        pending = handle.read(buffers[(turn + 1) % 2] as Buffer, 0, HASH_READ_BYTES, position);
        hash.update(buffer.subarray(0, bytesRead));
      }
      const after = await handle.stat();
      if (after.size === before.size && after.mtimeMs === before.mtimeMs && position === before.size) return { sha256: hash.digest('hex'), sizeBytes: before.size, mtimeMs: before.mtimeMs };
    }
  } finally {
    await handle.close();
  }
  throw new FileChangedWhileHashingError(path);
}

/** The sha256 of a file (hex) on this thread (hashFileHere without the stat). */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  return (await hashFileHere(path, signal)).sha256;
}

// The worker's whole program (CommonJS, as `eval` workers are): the same loop as hashFileHere.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { open } = require('node:fs/promises');
(async () => {
  const handle = await open(workerData.path, 'r');
  try {
    const size = ${HASH_READ_BYTES};
    const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
    for (let attempt = 0; attempt < ${HASH_ATTEMPTS}; attempt += 1) {
      const before = await handle.stat();
      const hash = createHash('sha256');
      let position = 0;
      let pending = handle.read(buffers[0], 0, size, position);
      for (let turn = 0; ; turn += 1) {
        const { bytesRead, buffer } = await pending;
        if (bytesRead === 0) break;
        position += bytesRead;
        pending = handle.read(buffers[(turn + 1) % 2], 0, size, position);
        hash.update(buffer.subarray(0, bytesRead));
      }
      const after = await handle.stat();
      if (after.size === before.size && after.mtimeMs === before.mtimeMs && position === before.size) {
        parentPort.postMessage({ hash: { sha256: hash.digest('hex'), sizeBytes: before.size, mtimeMs: before.mtimeMs } });
        return;
      }
    }
    parentPort.postMessage({ changed: true });
  } finally {
    await handle.close();
  }
})().catch((error) => parentPort.postMessage({ error: { message: String(error && error.message), code: error && error.code } }));
`;

type WorkerReply = { hash?: FileHash; changed?: true; error?: { message: string; code?: string } };

/**
 * The sha256 of a file on a worker thread, with its stat; the worker ends when `signal` aborts.
 * The worker is unref'd, but the 'message' listener below refs its port again until the reply
 * comes: the CLI needs that (a command awaiting only this hash must not exit before it ends).
 */
export function hashFileInWorker(path: string, signal?: AbortSignal): Promise<FileHash> {
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  return settleWorkerHash(new Worker(WORKER_SOURCE, { eval: true, workerData: { path } }), path, signal);
}

/**
 * Settles on `worker`'s one reply (exported for tests): rejects too when the worker fails or exits
 * without replying, so a worker that dies never leaves its hash pending for ever.
 */
export function settleWorkerHash(worker: Worker, path: string, signal?: AbortSignal): Promise<FileHash> {
  return new Promise((resolve, reject) => {
    worker.unref();
    const onAbort = () => {
      void worker.terminate();
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    worker.once('message', (message: WorkerReply) => {
      settle();
      void worker.terminate();
      if (message.hash !== undefined) resolve(message.hash);
      else if (message.changed) reject(new FileChangedWhileHashingError(path));
      else reject(Object.assign(new Error(message.error?.message ?? `hashing ${path} failed`), message.error?.code ? { code: message.error.code } : {}));
    });
    worker.once('error', (error) => {
      settle();
      reject(error);
    });
    // After a reply this is a no-op (the promise is settled); without one it is the only answer.
    worker.once('exit', (code) => {
      settle();
      reject(new Error(`the worker hashing ${path} stopped (exit code ${code}) before it gave a sha256`));
    });
  });
}

/** The sha256 (hex) of a file on a worker thread (hashFileInWorker without the stat). */
export async function sha256OfFileInWorker(path: string, signal?: AbortSignal): Promise<string> {
  return (await hashFileInWorker(path, signal)).sha256;
}

/** The sha256 of a file with its stat: on a worker thread from WORKER_HASH_MIN_BYTES, else on this thread. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<FileHash> {
  const info = await stat(path);
  return info.size >= WORKER_HASH_MIN_BYTES ? hashFileInWorker(path, signal) : hashFileHere(path, signal);
}

/**
 * The sha256 of each file, computed one after another (one pass over the disk at a time), each
 * started when the one before it ends, failed or not. Every promise has a handler attached, so
 * one that is never awaited (a command that failed earlier) is no unhandled rejection.
 */
export function hashInTurn(files: readonly string[], signal?: AbortSignal): Promise<FileHash>[] {
  let previous: Promise<unknown> = Promise.resolve();
  return files.map((file) => {
    const hash = previous.then(() => hashFile(file, signal));
    previous = hash.catch(() => undefined);
    return hash;
  });
}
