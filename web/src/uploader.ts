/**
 * An Uppy uploader over WebBackend (D10's multipart routes locally, S3 on aws through aws.ts).
 * Per file: an exists check, then one create-only PUT (small files) or an S3-shaped multipart
 * upload, PARTS_AT_ONCE parts in flight, that can be paused (every part in flight is cut and sent
 * again on resume), resumed and retried: a failed part is tried again PART_ATTEMPTS times (a full
 * disk or an upload gone fails at once), then the file fails and Retry continues it (the parts
 * already stored are listed and not sent again).
 *
 * Where the backend hashes what it receives (`serverHashes`: the local server) and no object of
 * the file's name exists yet, the file is sent at once and never hashed here, and the server's
 * sha256 comes back at completion. When the bytes cross a network (`partChecksums`: the server
 * says so in its session) each part is also read once into memory and its CRC32 (hash-wasm) goes
 * with it; the server checks it (a part that differs is refused and sent again by itself). On the
 * server's own machine that read is left out: it costs the browser about as much as sending the
 * part, and nothing between the page and the server can change the bytes.
 * A file changed, moved or deleted on disk after it was picked cannot be read any more (the
 * browser keeps a snapshot of its size and time): the upload stops at once with FileChanged and
 * is dropped, never stored as a mix of old and new bytes.
 * The file's sha256 (hash-wasm, 8 MiB at a time, never the whole file in memory) is computed
 * before anything is sent otherwise: when the name exists (same sha256: "already there", not
 * sent again; a different one: refused, nothing is ever overwritten), for files of one part
 * (milliseconds), and always on AWS, where the sha256 is the object's metadata, fixed at
 * CreateMultipartUpload (the protocol reads it for provenance and ensemble seeds).
 * Two tabs sending the same new name both start; the create-only completion decides (the second
 * finds the same bytes there, or is refused with the reason).
 *
 * Why not @uppy/aws-s3: from version 6 it speaks S3's XML protocol over presigned URLs only;
 * the local server's D10 routes are JSON, and one uploader over WebBackend serves both backends.
 */
import { BasePlugin, type Uppy } from '@uppy/core';
import type { Body, Meta, UppyFile } from '@uppy/core';
import { createCRC32, createSHA256 } from 'hash-wasm';
import { BackendError, type ObjectKind, type WebBackend } from './backend/types.ts';

/** Part size of multipart uploads and the limit for a single PUT: 8 MiB (S3's minimum part is 5 MiB). */
export const PART_SIZE_BYTES = 8 * 1024 * 1024;
const HASH_CHUNK_BYTES = 8 * 1024 * 1024;
/** Tries of one part before the file fails (and waits for the researcher's Retry). */
export const PART_ATTEMPTS = 3;
/** Refusals of a part that the same part sent again would get too: the file fails at once. */
const HOPELESS_CODES = new Set(['DiskFull', 'DiskWriteFailed', 'UploadNotFound', 'NoSuchUpload']);
/** Parts of one file in flight at once (a part is at most 8 MiB in memory, as a Blob slice). */
export const PARTS_AT_ONCE = 4;
const FILES_AT_ONCE = 3;
/** Progress reports per file at most every 100 ms (10 a second is smooth; the browser's own events come far more often). */
const PROGRESS_INTERVAL_MS = 100;

export interface NcapMeta extends Meta {
  relativePath?: string | null;
  /** Set when the file was not sent because the same bytes are there already. */
  skipped?: boolean;
  uploadId?: string;
  key?: string;
  sha256?: string;
}

export interface NcapUploaderOptions {
  backend: WebBackend;
  analysis: string;
  kind: ObjectKind;
  /** The researcher's group: names the key of a file found already stored. */
  group: string;
  /** Called when a file is stored (or found already stored), with its key. */
  onStored?: (key: string, skipped: boolean) => void;
  /** Whether parts sent unhashed carry their CRC32 (the session's `partChecksums`); default true. */
  partChecksums?: boolean;
}

/** The object name for a file: its path inside a dropped folder, else its file name. */
export function objectNameOf(file: { name?: string; meta: { relativePath?: string | null } }): string {
  const relative = file.meta.relativePath?.replace(/^\/+/, '');
  return relative || file.name || 'unnamed';
}

/** Streams a Blob through sha256 in bounded chunks. */
export async function sha256OfBlob(blob: Blob, signal?: AbortSignal): Promise<string> {
  const hasher = await createSHA256();
  hasher.init();
  for (let offset = 0; offset < blob.size; offset += HASH_CHUNK_BYTES) {
    if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
    hasher.update(new Uint8Array(await blob.slice(offset, offset + HASH_CHUNK_BYTES).arrayBuffer()));
  }
  return hasher.digest('hex');
}

type File = UppyFile<NcapMeta, Body>;

/** Whether the browser can still read `blob`: a picked file changed, moved or deleted on disk since cannot be. */
async function readable(blob: Blob): Promise<boolean> {
  try {
    await blob.slice(0, 1).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

function fileChanged(name: string): BackendError {
  return new BackendError(
    'FileChanged',
    `${name} changed on disk after it was picked (or was moved or deleted), so the browser will not read it further; nothing of it was stored. Drop the file again to send it as it is now`,
  );
}

export class NcapUploader extends BasePlugin<NcapUploaderOptions & { id?: string }, NcapMeta, Body> {
  /** The requests in flight per file: a pause cuts them all. */
  private readonly controllers = new Map<string, Set<AbortController>>();
  /** When each file's progress was last reported (progress()). */
  private readonly reportedAt = new Map<string, number>();
  /** Who waits for a paused file to resume (one per part worker). */
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(uppy: Uppy<NcapMeta, Body>, opts: NcapUploaderOptions) {
    super(uppy, opts);
    this.id = 'NcapUploader';
    this.type = 'uploader';
  }

  override install(): void {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: true } });
    this.uppy.addUploader(this.upload);
    this.uppy.on('upload-pause', this.onPause);
    this.uppy.on('pause-all', this.onPauseAll);
    this.uppy.on('resume-all', this.onResumeAll);
    this.uppy.on('file-removed', this.onRemoved);
    this.uppy.on('cancel-all', this.onCancelAll);
  }

  override uninstall(): void {
    this.uppy.removeUploader(this.upload);
    this.uppy.off('upload-pause', this.onPause);
    this.uppy.off('pause-all', this.onPauseAll);
    this.uppy.off('resume-all', this.onResumeAll);
    this.uppy.off('file-removed', this.onRemoved);
    this.uppy.off('cancel-all', this.onCancelAll);
    this.onCancelAll();
  }

  private onPause = (file: File | undefined, isPaused: boolean) => {
    if (!file) return;
    if (isPaused) this.cut(file.id);
    else this.wake(file.id);
  };

  private onPauseAll = () => {
    for (const id of [...this.controllers.keys()]) this.cut(id);
  };

  private onResumeAll = () => {
    for (const id of [...this.waiting.keys()]) this.wake(id);
  };

  private onRemoved = (file: File) => {
    this.reportedAt.delete(file.id);
    this.cut(file.id);
    this.wake(file.id);
    const uploadId = file.meta.uploadId;
    if (uploadId) void this.opts.backend.abortUpload(uploadId).catch(() => undefined);
  };

  private onCancelAll = () => {
    for (const id of [...this.controllers.keys()]) this.cut(id);
    for (const id of [...this.waiting.keys()]) this.wake(id);
  };

  private cut(id: string): void {
    for (const controller of this.controllers.get(id) ?? []) controller.abort();
  }

  private wake(id: string): void {
    const waiters = this.waiting.get(id) ?? [];
    this.waiting.delete(id);
    for (const resolve of waiters) resolve();
  }

  private current(id: string): File | undefined {
    return this.uppy.getFile(id);
  }

  /** Waits while the file is paused; false when it was removed meanwhile. */
  private async whilePaused(id: string): Promise<boolean> {
    for (;;) {
      const file = this.current(id);
      if (!file) return false;
      if (!file.isPaused) return true;
      await new Promise<void>((resolve) => this.waiting.set(id, [...(this.waiting.get(id) ?? []), resolve]));
    }
  }

  private upload = async (fileIDs: string[]): Promise<void> => {
    const files = fileIDs.map((id) => this.current(id)).filter((f): f is File => f !== undefined);
    this.uppy.emit('upload-start', files);
    let next = 0;
    const worker = async () => {
      for (let file = files[next++]; file; file = files[next++]) await this.uploadOne(file.id);
    };
    await Promise.all(Array.from({ length: Math.min(FILES_AT_ONCE, files.length) }, worker));
  };

  /**
   * Reports a file's progress to Uppy at most every PROGRESS_INTERVAL_MS (and always when it is
   * whole): the browser fires upload progress every few dozen KiB, and each report re-renders
   * the dashboard.
   */
  private progress(id: string, done: number): void {
    const file = this.current(id);
    if (!file) return;
    const now = Date.now();
    const whole = done >= (file.size ?? done);
    if (!whole && now - (this.reportedAt.get(id) ?? 0) < PROGRESS_INTERVAL_MS) return;
    this.reportedAt.set(id, now);
    this.uppy.emit('upload-progress', file, { uploadStarted: file.progress.uploadStarted ?? now, bytesUploaded: done, bytesTotal: file.size ?? done });
  }

  private async uploadOne(id: string): Promise<void> {
    const { backend, analysis, kind } = this.opts;
    try {
      let file = this.current(id);
      if (!file) return;
      const blob = file.data as Blob;
      const name = objectNameOf(file);
      if (backend.serverHashes && blob.size > PART_SIZE_BYTES && !file.meta.sha256) {
        // The name is free: send at once, each part with its CRC32; the server hashes the file.
        // Should another tab store the name meanwhile, the create-only completion decides.
        const exists = await backend.objectExists(analysis, kind, name);
        if (!exists.exists) {
          const key = await this.multipart(id, blob, name, undefined);
          if (!this.current(id)) return;
          this.progress(id, blob.size);
          this.succeed(id, key, false);
          return;
        }
      }
      // Hash first: the name exists (compare), a one-request file, or a backend that needs the sha256 at the start.
      const sha256 =
        file.meta.sha256 ??
        (await sha256OfBlob(blob).catch(async (error: unknown) => {
          throw (await readable(blob)) ? error : fileChanged(name);
        }));
      this.uppy.setFileMeta(id, { sha256 });
      const exists = await backend.objectExists(analysis, kind, name, sha256);
      if (exists.exists && exists.sameContent) {
        this.uppy.setFileMeta(id, { skipped: true });
        this.progress(id, blob.size);
        this.succeed(id, `${this.opts.group}/${kind}/${name}`, true);
        return;
      }
      if (exists.exists) {
        throw new BackendError('ObjectExists', `${name} already exists in your ${kind} with different content; the platform never overwrites uploads. Rename the file and drop it again`);
      }
      let key: string;
      if (blob.size <= PART_SIZE_BYTES) {
        if (!(await this.whilePaused(id))) return;
        key = (await this.withAbort(id, (signal) => backend.putObject(analysis, kind, name, blob, { sha256, signal }))).key;
      } else {
        key = await this.multipart(id, blob, name, sha256);
      }
      file = this.current(id);
      if (!file) return;
      this.progress(id, blob.size);
      this.succeed(id, key, false);
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') {
        // Paused: resume waits inside multipart(); a removed file simply ends.
        if (this.current(id)?.isPaused) return this.uploadOne(id);
        return;
      }
      const file = this.current(id);
      if (!file) return;
      let failure = error instanceof Error ? error : new Error(String(error));
      const changed = (e: Error) => e instanceof BackendError && e.code === 'FileChanged';
      // Whatever failed (a one-request PUT fails like a lost connection), a file the browser can no longer read is the reason.
      if (!changed(failure) && file.data instanceof Blob && file.data.size > 0 && !(await readable(file.data))) failure = fileChanged(objectNameOf(file));
      if (changed(failure) && file.meta.uploadId) {
        // The parts stored so far are of the old bytes: drop them (Retry would mix them with the new ones).
        void this.opts.backend.abortUpload(file.meta.uploadId).catch(() => undefined);
        this.uppy.setFileMeta(id, { uploadId: undefined });
      }
      this.uppy.emit('upload-error', file, failure);
    }
  }

  private succeed(id: string, key: string, skipped: boolean): void {
    const file = this.current(id);
    if (!file) return;
    this.uppy.setFileMeta(id, { key });
    this.uppy.emit('upload-success', this.current(id), { status: skipped ? 200 : 201, body: { key, skipped } as unknown as Body, uploadURL: key });
    this.opts.onStored?.(key, skipped);
  }

  private async withAbort<T>(id: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const set = this.controllers.get(id) ?? new Set();
    set.add(controller);
    this.controllers.set(id, set);
    try {
      return await run(controller.signal);
    } finally {
      set.delete(controller);
      if (set.size === 0 && this.controllers.get(id) === set) this.controllers.delete(id);
    }
  }

  /**
   * Sends `blob` as a multipart upload. With `sha256` it is declared at the start; without (a
   * backend that hashes what it receives), each part is read once into memory and sent from
   * those bytes with their CRC32, and the server's sha256 is kept from its completion.
   */
  private async multipart(id: string, blob: Blob, name: string, sha256: string | undefined): Promise<string> {
    const { backend, analysis, kind } = this.opts;
    let uploadId = this.current(id)?.meta.uploadId;
    const done = new Map<number, { ETag: string; Size: number }>();
    if (uploadId) {
      // A retry or a resume: the parts already stored are not sent again.
      try {
        for (const part of await backend.listParts(uploadId)) done.set(part.PartNumber, { ETag: part.ETag, Size: part.Size });
      } catch (error) {
        // The upload is gone (e.g. the server restarted): start a new one.
        if (!(error instanceof BackendError) || (error.code !== 'UploadNotFound' && error.code !== 'NoSuchUpload')) throw error;
        uploadId = undefined;
      }
    }
    if (!uploadId) {
      uploadId = (await backend.startUpload(analysis, { kind, name, sizeBytes: blob.size, partSizeBytes: PART_SIZE_BYTES, ...(sha256 ? { sha256 } : {}) })).uploadId;
      this.uppy.setFileMeta(id, { uploadId });
    }
    const partCount = Math.ceil(blob.size / PART_SIZE_BYTES);
    const todo: number[] = [];
    for (let n = 1; n <= partCount; n++) if (!done.has(n)) todo.push(n);
    // One CRC32 state for the parts of this file (one part is checksummed at a time: JavaScript runs one thing at a time anyway).
    const crc = sha256 === undefined && this.opts.partChecksums !== false ? await createCRC32() : undefined;
    // Bytes of the parts in flight, for the file's progress.
    const sending = new Map<number, number>();
    const report = () => this.progress(id, [...done.values()].reduce((sum, p) => sum + p.Size, 0) + [...sending.values()].reduce((sum, b) => sum + b, 0));
    let failure: unknown;
    const sendPart = async (n: number) => {
      // The file's own slice is sent (the browser reads it from the file: no copy of the part
      // through this page, which cost more than the rest of the upload). The CRC32 is of the same
      // snapshot: a File that changed on disk since it was picked fails to read rather than
      // giving other bytes, and a part that differs anyway is refused by the server and sent again.
      const body = blob.slice((n - 1) * PART_SIZE_BYTES, n * PART_SIZE_BYTES);
      let crc32: string | undefined;
      if (crc) {
        const bytes = new Uint8Array(
          await body.arrayBuffer().catch(async (error: unknown) => {
            throw (await readable(blob)) ? error : fileChanged(name);
          }),
        );
        crc.init();
        crc.update(bytes);
        crc32 = crc.digest('hex');
      }
      for (let attempt = 1; ; attempt++) {
        if (!(await this.whilePaused(id))) throw new DOMException('removed', 'AbortError');
        if (failure !== undefined) return;
        try {
          const { ETag } = await this.withAbort(id, (signal) =>
            backend.uploadPart(uploadId as string, n, body, {
              signal,
              ...(crc32 ? { crc32 } : {}),
              onProgress: (loaded) => {
                sending.set(n, loaded);
                report();
              },
            }),
          );
          sending.delete(n);
          done.set(n, { ETag, Size: body.size });
          report();
          return;
        } catch (error) {
          sending.delete(n);
          const aborted = error instanceof DOMException && error.name === 'AbortError';
          // Paused: this part goes again on resume (whilePaused waits), without using up a try.
          if (aborted && this.current(id)?.isPaused) {
            attempt--;
            continue;
          }
          if (aborted) throw error;
          // A part the browser could not read (the file changed on disk) fails like a lost connection: tell them apart.
          if (!(await readable(blob))) throw fileChanged(name);
          // Another try cannot help a full disk or an upload the server no longer has (Retry starts a new one).
          if (attempt >= PART_ATTEMPTS || (error instanceof BackendError && HOPELESS_CODES.has(error.code))) throw error;
          await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
        }
      }
    };
    let next = 0;
    const worker = async () => {
      for (let n = todo[next++]; n !== undefined && failure === undefined; n = todo[next++]) {
        try {
          await sendPart(n);
        } catch (error) {
          // The other parts in flight finish (and stay stored for Retry); no new part starts.
          failure ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARTS_AT_ONCE, Math.max(1, todo.length)) }, worker));
    if (failure !== undefined) throw failure;
    const parts = [...done.entries()].sort((a, b) => a[0] - b[0]).map(([PartNumber, p]) => ({ PartNumber, ETag: p.ETag }));
    const completed = await backend.completeUpload(uploadId, parts);
    const key = completed.key;
    this.uppy.setFileMeta(id, { uploadId: undefined, ...(sha256 === undefined && completed.sha256 ? { sha256: completed.sha256 } : {}) });
    return key;
  }
}
