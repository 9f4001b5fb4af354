/**
 * Uploads of the local web API, streamed to disk in the bucket's staging area and put into
 * place create-only (lib/local/object-store.ts placeStaged): a single PUT for small files and a
 * multipart upload shaped like S3's for large ones, where part n is written at offset
 * (n-1) x partSize into one staging file, so a file of any size costs one write and one hash.
 * Nothing is visible under the key until the upload is whole (and its sha256 verified).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../core/errors.js';
import type { LocalObjectStore } from '../local/object-store.js';
import { RequestRefusedError } from './request-guard.js';

/** Writes are gathered into buffers of this size: 1 MiB (few system calls, bounded memory). */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Parts are re-read for the running sha256 in chunks of this size: 4 MiB. */
const HASH_READ_BYTES = 4 * 1024 * 1024;

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

export function checkSha256(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !SHA256_HEX.test(value.toLowerCase())) throw new UsageError(`${where} must be 64 hex digits (a sha256), got ${JSON.stringify(value)?.slice(0, 80)}`);
  return value.toLowerCase();
}

/**
 * Writes `source` at `position` of `handle`, at most `maxBytes` bytes (more is BodyTooLarge),
 * feeding `hash` when given; returns the bytes written.
 */
export async function writeStreamAt(source: AsyncIterable<Buffer>, handle: FileHandle, position: number, maxBytes: number, hash?: Hash): Promise<number> {
  let written = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (batchBytes === 0) return;
    let at = position + written - batchBytes;
    for (const buffer of batch) {
      let done = 0;
      while (done < buffer.length) {
        const { bytesWritten } = await handle.write(buffer, done, buffer.length - done, at);
        done += bytesWritten;
        at += bytesWritten;
      }
    }
    batch = [];
    batchBytes = 0;
  };
  for await (const chunk of source) {
    if (written + chunk.length > maxBytes) throw new RequestRefusedError('BodyTooLarge', `the body is larger than the ${maxBytes} bytes expected`);
    hash?.update(chunk);
    batch.push(chunk);
    batchBytes += chunk.length;
    written += chunk.length;
    if (batchBytes >= WRITE_BATCH_BYTES) await flush();
  }
  await flush();
  return written;
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
  parts: Map<number, Part>;
  /** Parts being written now. */
  busy: Set<number>;
  /** The running sha256 over parts 1..hashedParts, advanced as contiguous parts arrive. */
  hash: Hash;
  hashedParts: number;
  /** Bumped when a hashed part is written again: the running hash starts over. */
  generation: number;
  hashing: Promise<void>;
  closed: boolean;
}

export interface StartUpload {
  bucket: string;
  key: string;
  sizeBytes: number;
  partSizeBytes: number;
  sha256?: string;
}

/** The open multipart uploads of one server and its single PUTs. */
export class UploadManager {
  private readonly uploads = new Map<string, Upload>();

  constructor(private readonly objects: LocalObjectStore) {}

  /** Streams one request body into `key`, create-only; verifies `sha256` when given. */
  async putObject(bucket: string, key: string, body: AsyncIterable<Buffer>, options: { sha256?: string; contentLength?: number }): Promise<{ key: string; sizeBytes: number; sha256: string; reused: boolean }> {
    const dir = await this.objects.newStagingDir(bucket, `put.${randomBytes(6).toString('hex')}`);
    try {
      const file = join(dir, 'object');
      const handle = await open(file, 'wx');
      const hash = createHash('sha256');
      let size: number;
      try {
        size = await writeStreamAt(body, handle, 0, options.contentLength ?? UPLOAD_LIMITS.maxSingleBytes, hash);
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
    if (await this.objects.head(request.bucket, request.key)) {
      throw new RequestRefusedError('UploadConflict', `${request.key} already exists; uploads never overwrite (check GET .../objects/exists first, or upload under another name)`);
    }
    const id = randomBytes(12).toString('hex');
    const dir = await this.objects.newStagingDir(request.bucket, `upload.${id}`);
    const file = join(dir, 'object');
    // Read back too: the running sha256 re-reads parts that arrived out of order.
    const handle = await open(file, 'wx+');
    // Sparse until the parts arrive: no space is taken up front.
    await handle.truncate(sizeBytes);
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
      parts: new Map(),
      busy: new Set(),
      hash: createHash('sha256'),
      hashedParts: 0,
      generation: 0,
      hashing: Promise.resolve(),
      closed: false,
    });
    return { uploadId: id, key: request.key };
  }

  private get(uploadId: string): Upload {
    const upload = this.uploads.get(uploadId);
    if (!upload) throw new RequestRefusedError('UploadNotFound', `upload "${uploadId}" is not open in this server (completed, aborted, or started before a restart); start it again`);
    return upload;
  }

  /** The key an open upload will create (for the caller's own checks). */
  keyOf(uploadId: string): { bucket: string; key: string } {
    const upload = this.get(uploadId);
    return { bucket: upload.bucket, key: upload.key };
  }

  /** Writes part `partNumber` (1-based) at its offset; returns its ETag. */
  async putPart(uploadId: string, partNumber: number, body: AsyncIterable<Buffer>, contentLength: number | undefined): Promise<string> {
    const upload = this.get(uploadId);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > upload.partCount) throw new UsageError(`part number must be from 1 to ${upload.partCount} for this upload, got ${String(partNumber)}`);
    const expected = partNumber < upload.partCount ? upload.partSize : upload.sizeBytes - (upload.partCount - 1) * upload.partSize;
    if (contentLength !== undefined && contentLength !== expected) throw new UsageError(`part ${partNumber} must be ${expected} bytes, the body is ${contentLength}`);
    if (upload.busy.has(partNumber)) throw new RequestRefusedError('UploadConflict', `part ${partNumber} is being uploaded by another request right now`);
    upload.busy.add(partNumber);
    try {
      if (upload.parts.delete(partNumber) && partNumber <= upload.hashedParts) {
        // A hashed part is written again: the running hash starts over (an in-flight round sees the new generation and drops its result).
        upload.generation += 1;
        upload.hash = createHash('sha256');
        upload.hashedParts = 0;
      }
      const size = await writeStreamAt(body, upload.handle, (partNumber - 1) * upload.partSize, expected);
      if (size !== expected) throw new UsageError(`part ${partNumber} must be ${expected} bytes, ${size} arrived; send it again`);
      const etag = `"${partNumber}-${randomBytes(8).toString('hex')}"`;
      upload.parts.set(partNumber, { size, etag });
      return etag;
    } finally {
      upload.busy.delete(partNumber);
      this.advanceHash(upload);
    }
  }

  /** Hashes, in order, the parts that have arrived after the last hashed one (re-read from the page cache). */
  private advanceHash(upload: Upload): void {
    upload.hashing = upload.hashing.then(async () => {
      if (upload.closed) return;
      const generation = upload.generation;
      const buffer = Buffer.allocUnsafe(Math.min(HASH_READ_BYTES, Math.max(1, upload.partSize)));
      for (;;) {
        const next = upload.hashedParts + 1;
        const part = upload.parts.get(next);
        if (!part || upload.busy.has(next) || upload.closed) return;
        const start = (next - 1) * upload.partSize;
        const hash = upload.hash.copy();
        for (let done = 0; done < part.size; ) {
          const { bytesRead } = await upload.handle.read(buffer, 0, Math.min(buffer.length, part.size - done), start + done);
          if (bytesRead === 0) throw new Error(`part ${next} of upload ${upload.id} is shorter on disk than received`);
          hash.update(buffer.subarray(0, bytesRead));
          done += bytesRead;
        }
        // Written again while it was read: hash it once more, later.
        if (upload.generation !== generation || upload.parts.get(next) !== part || upload.busy.has(next)) return;
        upload.hash = hash;
        upload.hashedParts = next;
      }
    });
    // Failures surface at complete, which hashes again from the start.
    upload.hashing.catch(() => undefined);
  }

  listParts(uploadId: string): { PartNumber: number; Size: number; ETag: string }[] {
    const upload = this.get(uploadId);
    return [...upload.parts]
      .sort(([a], [b]) => a - b)
      .map(([n, part]) => ({ PartNumber: n, Size: part.size, ETag: part.etag }));
  }

  /**
   * Checks every part is there (and matches `parts`' ETags when given), verifies the sha256,
   * puts the file into place create-only and closes the upload.
   */
  async complete(uploadId: string, parts: { PartNumber: number; ETag: string }[] | undefined): Promise<{ key: string; sizeBytes: number; sha256: string; reused: boolean }> {
    const upload = this.get(uploadId);
    if (upload.busy.size > 0) throw new RequestRefusedError('UploadConflict', `parts ${[...upload.busy].join(', ')} are still being uploaded; complete after they finish`);
    const missing: number[] = [];
    for (let n = 1; n <= upload.partCount; n += 1) if (!upload.parts.has(n)) missing.push(n);
    if (missing.length > 0) throw new UsageError(`upload ${uploadId} lacks part(s) ${summarize(missing)} of ${upload.partCount}; send them, then complete`);
    for (const given of parts ?? []) {
      const have = upload.parts.get(given.PartNumber);
      if (!have || have.etag !== given.ETag) throw new UsageError(`part ${given.PartNumber}'s ETag ${JSON.stringify(given.ETag)} is not the one stored (${have?.etag ?? 'none'}); list the parts and complete with their ETags`);
    }
    await upload.hashing;
    if (upload.hashedParts < upload.partCount) {
      // Out of order or written again: finish the running hash from where it stands.
      this.advanceHash(upload);
      await upload.hashing;
    }
    let sha256: string;
    if (upload.hashedParts === upload.partCount) sha256 = upload.hash.copy().digest('hex');
    else sha256 = await hashFile(upload.handle, upload.sizeBytes);
    if (upload.sha256 !== undefined && upload.sha256 !== sha256) {
      throw new RequestRefusedError('ChecksumMismatch', `the uploaded bytes have sha256 ${sha256}, not ${upload.sha256} as declared at the start; nothing was stored (abort and upload again)`);
    }
    upload.closed = true;
    await upload.handle.close();
    try {
      const placed = await this.objects.placeStaged(upload.bucket, upload.key, upload.file, sha256);
      return { key: upload.key, sizeBytes: upload.sizeBytes, sha256, reused: placed.reused };
    } finally {
      this.uploads.delete(uploadId);
      await rm(upload.dir, { recursive: true, force: true });
    }
  }

  /** Drops an upload and its staged bytes; nothing was ever visible. */
  async abort(uploadId: string): Promise<void> {
    const upload = this.get(uploadId);
    this.uploads.delete(uploadId);
    upload.closed = true;
    await upload.hashing;
    await upload.handle.close().catch(() => undefined);
    await rm(upload.dir, { recursive: true, force: true });
  }

  /** Aborts every open upload (the server is stopping). */
  async abortAll(): Promise<void> {
    for (const id of [...this.uploads.keys()]) await this.abort(id).catch(() => undefined);
  }

  get openCount(): number {
    return this.uploads.size;
  }
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

function summarize(numbers: number[]): string {
  return numbers.length > 10 ? `${numbers.slice(0, 10).join(', ')} and ${numbers.length - 10} more` : numbers.join(', ');
}
