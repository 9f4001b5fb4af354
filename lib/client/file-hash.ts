/**
 * The sha256 of local files (Node only): on this thread for small files, on a worker thread for
 * large ones, so a large file's hash runs beside whatever this thread does meanwhile (loading
 * the SDK, discovery, uploading the file before it) on another core.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';

/** Bytes hashed per read: 4 MiB (two such buffers, reused). */
export const HASH_READ_BYTES = 4 * 1024 * 1024;
/** Files from this size (32 MiB) are hashed on a worker thread; smaller ones take less than starting one. */
export const WORKER_HASH_MIN_BYTES = 32 * 1024 * 1024;

/**
 * The sha256 of a file (hex) on this thread. Reads into two reused 4 MiB buffers, the next read
 * in flight (on libuv's thread pool) while this thread hashes the current one: no stream, no
 * buffer per chunk for the GC, no fresh pages to fault in, so it costs little more than the
 * sha256. `signal`: stops reading (the promise rejects) once aborted.
 */
export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  signal?.throwIfAborted();
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(HASH_READ_BYTES), Buffer.allocUnsafe(HASH_READ_BYTES)];
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
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

// The worker's whole program (CommonJS, as `eval` workers are): the same loop as sha256OfFile.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { open } = require('node:fs/promises');
(async () => {
  const hash = createHash('sha256');
  const handle = await open(workerData.path, 'r');
  try {
    const size = ${HASH_READ_BYTES};
    const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
    let position = 0;
    let pending = handle.read(buffers[0], 0, size, position);
    for (let turn = 0; ; turn += 1) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      position += bytesRead;
      pending = handle.read(buffers[(turn + 1) % 2], 0, size, position);
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  parentPort.postMessage({ sha256: hash.digest('hex') });
})().catch((error) => parentPort.postMessage({ error: { message: String(error && error.message), code: error && error.code } }));
`;

/** The sha256 of a file on a worker thread; the worker never keeps the process alive, and ends when `signal` aborts. */
export function sha256OfFileInWorker(path: string, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path } });
    worker.unref();
    const onAbort = () => {
      void worker.terminate();
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    worker.once('message', (message: { sha256?: string; error?: { message: string; code?: string } }) => {
      settle();
      void worker.terminate();
      if (message.sha256 !== undefined) resolve(message.sha256);
      else reject(Object.assign(new Error(message.error?.message ?? `hashing ${path} failed`), message.error?.code ? { code: message.error.code } : {}));
    });
    worker.once('error', (error) => {
      settle();
      reject(error);
    });
  });
}

/** The sha256 of a file: on a worker thread from WORKER_HASH_MIN_BYTES, else on this thread. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<string> {
  const info = await stat(path);
  return info.size >= WORKER_HASH_MIN_BYTES ? sha256OfFileInWorker(path, signal) : sha256OfFile(path, signal);
}

/**
 * The sha256 of each file, computed one after another (one pass over the disk at a time), each
 * started when the one before it ends, failed or not. Every promise has a handler attached, so
 * one that is never awaited (a command that failed earlier) is no unhandled rejection.
 */
export function hashInTurn(files: readonly string[], signal?: AbortSignal): Promise<string>[] {
  let previous: Promise<unknown> = Promise.resolve();
  return files.map((file) => {
    const hash = previous.then(() => hashFile(file, signal));
    previous = hash.catch(() => undefined);
    return hash;
  });
}
