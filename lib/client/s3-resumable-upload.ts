/**
 * Create-only file uploads to S3 that resume (Node only). A file larger than one part goes up
 * as a multipart upload, `concurrency` parts at a time; its upload id is remembered in a small
 * record in `stateDir` together with what identifies the file (size, mtime, sha256, part size).
 * When the same file is uploaded to the same key again after an interruption (a killed
 * process, a lost network), the record's upload is asked for its parts (ListParts) and only the
 * missing ones are sent. An incomplete multipart upload is never an object, so a half-sent file
 * never becomes an input; the object appears at CompleteMultipartUpload, create-only
 * (If-None-Match: *), carrying its sha256 as metadata.
 *
 * Why a local record rather than ListMultipartUploads: that action is granted per bucket and
 * IAM cannot narrow it to a key prefix, so allowing it would show every group the keys other
 * groups are uploading; ListParts on one's own key is allowed already (researcher-access.ts).
 * S3 does not return an upload's metadata either, so only the record can say which file and
 * which sha256 an upload id was started for.
 *
 * One run at a time sends a key's multipart upload: a run holds the key's claim (a small file
 * beside the record, created exclusively, refreshed every CLAIM_HEARTBEAT_MS) while it uploads.
 * A second run of the same file to the same key (another terminal) waits for the first and then
 * uses its object, or resumes its parts if it died; a second run of a different file is refused
 * at once. Without that both resumed one upload id: both sent the parts and the loser's
 * completion failed with NoSuchUpload although the object was stored (decision 52). The wait
 * ends with UploadStalledError when the holder, alive, stores no part for CLAIM_STALL_MS (59).
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { NeuroCaasError, ObjectExistsError } from '../core/errors.js';
import { statusOf, translateAwsError } from './aws-errors.js';
import type { ProgressListener } from './ports.js';
import { SHA256_METADATA } from './s3-objects.js';

/** Part size: 8 MiB, as `aws s3 cp` (a 1 GiB file is 128 parts; S3 allows 10 000). */
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** Parts in flight at once: 10, as `aws s3 cp` (memory: concurrency x part size, 80 MiB). */
export const DEFAULT_CONCURRENCY = 10;
const MIB = 1024 * 1024;
/** S3's limits: at most 10 000 parts, each 5 MiB to 5 GiB (the last one may be smaller). */
const MAX_PARTS = 10_000;
const MIN_PART_BYTES = 5 * MIB;
/** File bytes the part buffers may hold at once: 256 MiB (fewer parts in flight when parts are big). */
export const MAX_BUFFERED_BYTES = 256 * MIB;

/** How often a run refreshes the claim of the upload it sends: 5 s. */
export const CLAIM_HEARTBEAT_MS = 5_000;
/** A claim not refreshed for this long (30 s) belongs to a run that died or stopped, on any host. */
export const CLAIM_STALE_MS = 30_000;
/** How often a run waiting for another run's upload of the same file looks again: 200 ms (a local file's stat). */
export const CLAIM_POLL_MS = 200;
/**
 * A run waiting for another live run's upload of the same file gives up when that run has
 * stored no part for this long: 10 min (a part of 8 MiB, or even S3's largest of 525 MiB on a
 * slow link, takes far less; a holder that refreshes its claim but stores nothing is stuck).
 */
export const CLAIM_STALL_MS = 10 * 60_000;
/** The holder of a claim records its progress at most this often: 1 s. */
const PROGRESS_WRITE_MS = 1_000;

export interface PartPlan {
  partSizeBytes: number;
  partCount: number;
  /** Parts in flight at once. */
  concurrency: number;
}

/**
 * How a file of `sizeBytes` is split: parts of the preferred size unless that would exceed
 * S3's 10 000 parts, then the smallest whole number of MiB that fits (a 100 GiB file: 11 MiB
 * parts; 5 TiB, S3's largest object: 525 MiB); as many in flight as asked while their buffers
 * stay within MAX_BUFFERED_BYTES, but always two (the next part is read while one is sent).
 */
export function planParts(sizeBytes: number, preferredPartBytes = DEFAULT_PART_BYTES, concurrency = DEFAULT_CONCURRENCY): PartPlan {
  const fitting = Math.ceil(sizeBytes / MAX_PARTS / MIB) * MIB;
  const partSizeBytes = Math.max(MIN_PART_BYTES, preferredPartBytes, fitting);
  return {
    partSizeBytes,
    partCount: Math.max(1, Math.ceil(sizeBytes / partSizeBytes)),
    concurrency: Math.max(Math.min(2, concurrency), Math.min(concurrency, Math.floor(MAX_BUFFERED_BYTES / partSizeBytes))),
  };
}

export interface ResumableUploadRequest {
  bucket: string;
  key: string;
  file: string;
  sizeBytes: number;
  /** The file's modification time (ms): with size and sha256, what makes an earlier upload "the same file". */
  mtimeMs: number;
  sha256: string;
  onProgress?: ProgressListener;
  /** Called after each part S3 stored in this run (part number, 1-based); for progress and tests. */
  onPartSent?: (partNumber: number) => void;
  /** Told once when this upload waits for another run that is uploading the same file to this key. */
  onWait?: (text: string) => void;
}

export interface ResumableUploadOptions {
  /** Folder of the resume records; none: uploads do not resume (and nothing is written locally). */
  stateDir?: string;
  /** Default DEFAULT_PART_BYTES; grown when the file would need more than 10 000 parts. */
  partSizeBytes?: number;
  /** Default DEFAULT_CONCURRENCY. */
  concurrency?: number;
  /** How long a wait for another run's upload of the same file lasts without a part stored; default CLAIM_STALL_MS. */
  claimStallMs?: number;
}

export interface ResumableUploadResult {
  /** Parts sent in this run and parts found stored from an interrupted run (0 and 0 for a single PUT). */
  partsSent: number;
  partsReused: number;
  resumed: boolean;
}

interface ResumeRecord {
  schemaVersion: 1;
  bucket: string;
  key: string;
  uploadId: string;
  sizeBytes: number;
  mtimeMs: number;
  sha256: string;
  partSizeBytes: number;
  /**
   * The process sending this upload's parts (written when it starts or resumes the upload).
   * Absent in records written before owners were recorded.
   */
  owner?: RecordOwner;
}

interface RecordOwner {
  pid: number;
  hostname: string;
}

/** Who sends a key's multipart upload now, and which file (its sha256); `token` tells two claims of one pid apart. */
interface Claim extends RecordOwner {
  sha256: string;
  token: string;
}

/**
 * Another run is uploading a different file to this key right now; nothing was sent. Waiting
 * for it would only end in ObjectExists when it succeeds, so the run is refused at once.
 */
export class UploadInProgressError extends NeuroCaasError {
  constructor(message: string) {
    super('UploadInProgress', message);
  }
}

/** The live run this one waited for holds the key's upload of the same file but stores no part of it. */
export class UploadStalledError extends NeuroCaasError {
  constructor(message: string) {
    super('UploadStalled', message);
  }
}

/**
 * A multipart upload that stopped halfway: its parts stay stored (never an object) for the next
 * run. The code is the cause's when it has one (e.g. CredentialsExpired), else UploadInterrupted.
 */
export class UploadInterruptedError extends NeuroCaasError {
  constructor(code: string, message: string, cause: unknown) {
    super(code, message, { cause });
  }
}

export class S3ResumableUploader {
  private readonly partSize: number;
  private readonly concurrency: number;

  constructor(
    private readonly s3: S3Client,
    private readonly options: ResumableUploadOptions = {},
  ) {
    this.partSize = options.partSizeBytes ?? DEFAULT_PART_BYTES;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
  }

  /** Uploads `request.file` to `request.key`; throws ObjectExistsError when the key exists (nothing overwritten). */
  async upload(request: ResumableUploadRequest): Promise<ResumableUploadResult> {
    const { bucket, key, sizeBytes } = request;
    const { partSizeBytes: partSize, partCount, concurrency } = planParts(sizeBytes, this.partSize, this.concurrency);
    if (sizeBytes <= partSize) {
      await this.putSingle(request);
      return { partsSent: 0, partsReused: 0, resumed: false };
    }
    const recordFile = this.recordFile(bucket, key);
    // One run at a time sends this key's upload: a second run of the same file waits here for
    // the first (then uses its object, or resumes its parts if it died).
    const claim = recordFile ? await this.claim(claimFileOf(recordFile), request) : undefined;
    try {
      if (claim?.waited) await this.failIfStored(bucket, key, 'by the run this one waited for');
      return await this.sendMultipart(request, { partSizeBytes: partSize, partCount, concurrency }, recordFile, () => claim?.progressed());
    } finally {
      await claim?.release();
    }
  }

  private async sendMultipart(request: ResumableUploadRequest, plan: PartPlan, recordFile: string | undefined, progressed: () => void = () => undefined): Promise<ResumableUploadResult> {
    const { bucket, key, sizeBytes } = request;
    const { partSizeBytes: partSize, partCount, concurrency } = plan;
    const sizeOf = (n: number) => (n < partCount ? partSize : sizeBytes - (partCount - 1) * partSize);
    const stored = new Map<number, string>();
    let uploadId: string | undefined;
    const record = recordFile ? await readRecord(recordFile) : undefined;
    if (
      record &&
      record.bucket === bucket &&
      record.key === key &&
      record.sizeBytes === sizeBytes &&
      record.mtimeMs === request.mtimeMs &&
      record.sha256 === request.sha256 &&
      record.partSizeBytes === partSize
    ) {
      const parts = await this.storedParts(bucket, key, record.uploadId);
      if (parts) {
        uploadId = record.uploadId;
        // A part S3 lists is whole; one of another size would come from a different split (not ours).
        for (const part of parts) if (part.size === sizeOf(part.number)) stored.set(part.number, part.etag);
        if (recordFile) await writeRecord(recordFile, { ...record, owner: thisProcess() });
      }
    } else if (record && record.bucket === bucket && record.key === key && ownerIsGone(record.owner)) {
      // Another file's upload whose sender died: its parts can never complete this file, so they
      // go now rather than at the bucket's lifecycle rule (best effort: the rule still catches
      // them). One whose sender may still be sending (another terminal uploading a different file
      // to this name, or the run this file was touched under) is left alone: aborting it would
      // break that run. This run starts its own upload; the create-only completion decides which
      // file becomes the object, and the lifecycle rule aborts the loser's parts after 7 days.
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: record.uploadId })).catch(() => undefined);
    }
    const resumed = uploadId !== undefined;
    if (uploadId === undefined) {
      const created = await this.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: { [SHA256_METADATA]: request.sha256 } }));
      if (!created.UploadId) throw new Error(`S3 started no multipart upload for s3://${bucket}/${key}`);
      uploadId = created.UploadId;
      if (recordFile) await writeRecord(recordFile, { schemaVersion: 1, bucket, key, uploadId, sizeBytes, mtimeMs: request.mtimeMs, sha256: request.sha256, partSizeBytes: partSize, owner: thisProcess() });
    }
    const partsReused = stored.size;
    let doneBytes = [...stored.keys()].reduce((sum, n) => sum + sizeOf(n), 0);
    request.onProgress?.(doneBytes, sizeBytes);
    const missing: number[] = [];
    for (let n = 1; n <= partCount; n += 1) if (!stored.has(n)) missing.push(n);

    const handle = await open(request.file, 'r');
    try {
      let next = 0;
      let failed = false;
      const worker = async () => {
        // One buffer per worker, reused for every part it sends: a fresh buffer per part made the
        // GC and the kernel's page faults (zeroing new pages) cost the CLI about as much CPU as
        // sending the bytes, CPU the server (on one machine: the emulator) then lacks.
        const buffer = Buffer.allocUnsafe(partSize);
        for (let n = missing[next++]; n !== undefined && !failed; n = missing[next++]) {
          try {
            await sendPart(n, buffer);
          } catch (error) {
            // The other parts in flight finish (they stay stored); no new part starts.
            failed = true;
            throw error;
          }
        }
      };
      const sendPart = async (n: number, buffer: Buffer) => {
        const size = sizeOf(n);
        // A buffer, not a stream: the SDK can then retry a part by itself (the buffer is this
        // part's until the send settles).
        const body = buffer.subarray(0, size);
        for (let read = 0; read < size; ) {
          const { bytesRead } = await handle.read(body, read, size - read, (n - 1) * partSize + read);
          if (bytesRead === 0) throw new Error(`${request.file} became shorter than ${sizeBytes} bytes while uploading; upload it again`);
          read += bytesRead;
        }
        const command = new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: body, ContentLength: size });
        withUnsignedPayload(command);
        const sent = await this.s3.send(command);
        stored.set(n, sent.ETag ?? '');
        doneBytes += size;
        request.onProgress?.(doneBytes, sizeBytes);
        request.onPartSent?.(n);
        progressed();
      };
      const results = await Promise.allSettled(Array.from({ length: Math.min(concurrency, Math.max(1, missing.length)) }, worker));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) {
        if (isNoSuchUpload(failure.reason)) await this.uploadEnded(bucket, key, uploadId, recordFile, failure.reason);
        const translated = translateAwsError(failure.reason, `uploading ${request.file} to s3://${bucket}/${key}`);
        const why = translated instanceof Error ? translated.message : String(translated);
        // The record may name another run's upload by now (a different file sent to this name
        // meanwhile): then the rerun cannot resume this one, and must not be promised it.
        const stillOurs = recordFile !== undefined && (await readRecord(recordFile))?.uploadId === uploadId;
        const next = stillOurs
          ? `${stored.size} of ${partCount} parts are stored (not an object yet): run the same command again to send only the rest`
          : recordFile
            ? `nothing became an object, and another upload to ${key} started meanwhile (so this one cannot resume): run the same command again to upload it from the start`
            : 'nothing became an object: run the same command again to upload it';
        const code = translated instanceof NeuroCaasError ? translated.code : 'UploadInterrupted';
        throw new UploadInterruptedError(code, `the upload stopped halfway (${why}); ${next}`, failure.reason);
      }
    } finally {
      await handle.close();
    }

    const parts = [...stored.entries()].sort((a, b) => a[0] - b[0]).map(([PartNumber, ETag]) => ({ PartNumber, ETag }));
    const dropParts = async () => {
      // Someone created the key meanwhile: these parts can never complete; drop them.
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
      if (recordFile) await removeRecordOf(recordFile, uploadId);
    };
    // If-None-Match on the completion is the guard on S3; asking first also keeps stores that
    // ignore it there (moto 5.1.1) from replacing an object another upload (another user's run,
    // with its own records) completed meanwhile. One HEAD per multipart upload.
    await this.failIfStored(bucket, key, 'by another upload', dropParts);
    try {
      await this.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*' }));
    } catch (error) {
      if (isPreconditionFailed(error)) {
        await dropParts();
        throw new ObjectExistsError(`s3://${bucket}/${key} was created by another upload while this one ran; nothing was overwritten`);
      }
      // Completed by another run meanwhile (it resumed this upload id), or a retried completion of our own.
      if (isNoSuchUpload(error)) await this.uploadEnded(bucket, key, uploadId, recordFile, error);
      throw error;
    }
    if (recordFile) await removeRecordOf(recordFile, uploadId);
    request.onProgress?.(sizeBytes, sizeBytes);
    return { partsSent: missing.length, partsReused, resumed };
  }

  private async putSingle(request: ResumableUploadRequest): Promise<void> {
    const body = await readFile(request.file);
    if (body.length !== request.sizeBytes) throw new Error(`${request.file} changed size while uploading (${body.length} bytes, not ${request.sizeBytes}); upload it again`);
    try {
      await this.s3.send(new PutObjectCommand({ Bucket: request.bucket, Key: request.key, Body: body, ContentLength: body.length, Metadata: { [SHA256_METADATA]: request.sha256 }, IfNoneMatch: '*' }));
    } catch (error) {
      if (isPreconditionFailed(error)) throw new ObjectExistsError(`s3://${request.bucket}/${request.key} was created by another upload while this one ran; nothing was overwritten`);
      throw error;
    }
    request.onProgress?.(request.sizeBytes, request.sizeBytes);
  }

  /** Throws ObjectExistsError (after `before`) when the key holds an object; the caller compares its sha256. */
  private async failIfStored(bucket: string, key: string, by: string, before?: () => Promise<void>): Promise<void> {
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch (error) {
      if (statusOf(error) === 404 || (error as { name?: string }).name === 'NotFound') return;
      throw error;
    }
    await before?.();
    throw new ObjectExistsError(`s3://${bucket}/${key} was created meanwhile ${by}; nothing was overwritten`);
  }

  /**
   * The upload id is gone under this run (another run completed or aborted it, or the bucket's
   * lifecycle rule did): an object under the key is ObjectExists (the caller compares sha256s,
   * so the same bytes are success); no object is an interruption to start again from.
   */
  private async uploadEnded(bucket: string, key: string, uploadId: string, recordFile: string | undefined, cause: unknown): Promise<never> {
    if (recordFile) await removeRecordOf(recordFile, uploadId);
    await this.failIfStored(bucket, key, 'by another run that completed this upload');
    throw new UploadInterruptedError(
      'UploadEnded',
      `the upload to s3://${bucket}/${key} was ended by someone else (aborted or expired) while it ran, and nothing is stored there: run the same command again to upload it from the start`,
      cause,
    );
  }

  /**
   * Takes the claim of a key's upload for this run, waiting while a live run holds it for the
   * same file (same sha256); a live run's claim for a different file is UploadInProgressError.
   * A claim is live while its pid runs (on this host) and its file's mtime is fresh (any host);
   * a stale one is moved aside and taken. `waited`: another run held it first.
   */
  private async claim(file: string, request: ResumableUploadRequest): Promise<{ waited: boolean; progressed(): void; release(): Promise<void> }> {
    const mine: Claim = { ...thisProcess(), sha256: request.sha256, token: randomBytes(8).toString('hex') };
    const progressFile = `${file}.progress`;
    const stallMs = this.options.claimStallMs ?? CLAIM_STALL_MS;
    let waited = false;
    // Since when this run has seen the current holder (by its token) without a part stored.
    let watched: { token: string; sinceMs: number } | undefined;
    await mkdir(join(file, '..'), { recursive: true, mode: 0o700 });
    for (;;) {
      if (await createExclusive(file, JSON.stringify(mine))) break;
      const held = await readClaim(file);
      if (held === 'gone') continue;
      if (await claimIsStale(file, held, CLAIM_STALE_MS)) {
        await takeStale(file, held);
        continue;
      }
      if (held !== undefined && held.sha256 !== request.sha256) {
        throw new UploadInProgressError(
          `another neurocaas run (pid ${held.pid} on ${held.hostname}) is uploading a different file to s3://${request.bucket}/${request.key} right now; nothing was sent. ` +
            `Rename ${request.file} and run again, or run again once that run has ended (if it succeeded the name is taken)`,
        );
      }
      const who = held ? `another neurocaas run (pid ${held.pid} on ${held.hostname}) that is uploading the same file` : `the run whose claim ${file} is (unreadable) to finish uploading`;
      if (!waited) request.onWait?.(`waiting for ${who} to ${request.key}`);
      waited = true;
      // Alive is not enough: a holder that refreshes its claim but stores no part is stuck.
      const token = held?.token ?? 'unreadable';
      if (watched?.token !== token) watched = { token, sinceMs: Date.now() };
      const lastPartMs = Math.max(watched.sinceMs, await progressOf(progressFile, token));
      if (Date.now() - lastPartMs > stallMs) {
        const holder = held ? `another neurocaas run (pid ${held.pid} on ${held.hostname})` : `the run whose claim is ${file} (unreadable)`;
        const stop = held ? `stop it (kill ${held.pid} on ${held.hostname})` : `stop it, or remove ${file} if no run is uploading`;
        throw new UploadStalledError(
          `${holder} holds the upload of this file to s3://${request.bucket}/${request.key} but has stored no part of it for ${formatWait(stallMs)}; nothing was sent by this run. ` +
            `If that run is stuck, ${stop} and run this command again: it resumes the parts already stored`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
    }
    // What a waiting run reads to tell a stuck holder from a slow one: when this run last stored a part.
    let progressWrittenMs = 0;
    const writeProgress = () => {
      progressWrittenMs = Date.now();
      writeProgressFile(progressFile, mine.token).catch(() => undefined); // only a waiter's patience depends on it
    };
    writeProgress();
    // The heartbeat: a run that stops refreshing (killed, stopped, its host gone) is stale after CLAIM_STALE_MS.
    const heartbeat = setInterval(() => {
      const now = new Date();
      utimes(file, now, now).catch(() => undefined); // a missing claim is taken by then; nothing to refresh
    }, CLAIM_HEARTBEAT_MS);
    heartbeat.unref();
    return {
      waited,
      progressed: () => {
        if (Date.now() - progressWrittenMs >= PROGRESS_WRITE_MS) writeProgress();
      },
      release: async () => {
        clearInterval(heartbeat);
        const held = await readClaim(file);
        if (typeof held === 'object' && held.token === mine.token) {
          await rm(progressFile, { force: true });
          await rm(file, { force: true });
        }
      },
    };
  }

  /** The parts S3 holds for an upload; undefined when the upload is gone (completed, aborted, expired). */
  private async storedParts(bucket: string, key: string, uploadId: string): Promise<{ number: number; size: number; etag: string }[] | undefined> {
    const parts: { number: number; size: number; etag: string }[] = [];
    let marker: string | undefined;
    try {
      do {
        const page = await this.s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId, ...(marker ? { PartNumberMarker: marker } : {}) }));
        for (const part of page.Parts ?? []) if (part.PartNumber !== undefined) parts.push({ number: part.PartNumber, size: part.Size ?? 0, etag: part.ETag ?? '' });
        marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
      } while (marker);
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name === 'NoSuchUpload' || statusOf(error) === 404) return undefined;
      throw error;
    }
    return parts;
  }

  private recordFile(bucket: string, key: string): string | undefined {
    if (this.options.stateDir === undefined) return undefined;
    return join(this.options.stateDir, `${createHash('sha256').update(`${bucket}\n${key}`).digest('hex').slice(0, 32)}.json`);
  }
}

function claimFileOf(recordFile: string): string {
  return recordFile.replace(/\.json$/, '.claim');
}

/** Records that the claim `token`'s holder stored a part now (written aside, then renamed: never half-written). */
async function writeProgressFile(file: string, token: string): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, JSON.stringify({ token }), { mode: 0o600 });
  await rename(temp, file);
}

/** When the holder `token` last stored a part (the progress file's mtime), 0 when it has not said. */
async function progressOf(file: string, token: string): Promise<number> {
  try {
    const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    return (JSON.parse(text) as { token?: unknown }).token === token ? info.mtimeMs : 0;
  } catch {
    return 0; // none yet, or an earlier holder's being replaced: the wait's own start counts
  }
}

/** A wait as people say it: "45 s", "10 min". */
function formatWait(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

/** Creates `file` with `content` unless it exists (false then); never a half-written file (written aside, then linked). */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, content, { mode: 0o600 });
  try {
    await link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(temp, { force: true });
  }
}

/** The claim in `file`; 'gone' when there is none; undefined when it cannot be read as one (then only its age counts). */
async function readClaim(file: string): Promise<Claim | 'gone' | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const value = JSON.parse(text) as Partial<Claim>;
    return typeof value.pid === 'number' && typeof value.hostname === 'string' && typeof value.sha256 === 'string' && typeof value.token === 'string' ? (value as Claim) : undefined;
  } catch {
    return undefined; // not a claim this version wrote: its age decides
  }
}

async function claimIsStale(file: string, held: Claim | undefined, staleMs: number): Promise<boolean> {
  if (held && ownerIsGone(held)) return true;
  const info = await stat(file).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs > staleMs;
}

/**
 * Moves a stale claim aside so that it can be taken (by createExclusive, which only one run
 * wins). Two runs may find the same stale claim: the later one's rename may then move the
 * winner's fresh claim instead, so what was moved is read back, and a claim that is not the
 * stale one is linked back into place.
 */
async function takeStale(file: string, stale: Claim | undefined): Promise<void> {
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else took it
    throw error;
  }
  const moved = await readClaim(aside);
  const wasStale = stale === undefined ? moved === undefined : typeof moved === 'object' && moved.token === stale.token;
  if (!wasStale) await link(aside, file).catch(() => undefined); // a third run's claim at `file` already: that one is live
  await rm(aside, { force: true });
}

async function readRecord(file: string): Promise<ResumeRecord | undefined> {
  try {
    const value = JSON.parse(await readFile(file, 'utf8')) as Partial<ResumeRecord>;
    return value.schemaVersion === 1 && typeof value.uploadId === 'string' ? (value as ResumeRecord) : undefined;
  } catch {
    // Missing or unreadable: start a new upload (the old one, if any, expires by the bucket's lifecycle rule).
    return undefined;
  }
}

/** Removes the record only while it names `uploadId`: another run's record (a later upload to this name) stays for its resume. */
async function removeRecordOf(file: string, uploadId: string): Promise<void> {
  if ((await readRecord(file))?.uploadId === uploadId) await rm(file, { force: true });
}

function thisProcess(): RecordOwner {
  return { pid: process.pid, hostname: hostname() };
}

/**
 * True only when the upload's sender is certainly not sending any more: it ran on this host and
 * its pid is no process now (ESRCH). Another host's, this process's own (an earlier upload in
 * this process may still be running) and a live or unknowable pid (EPERM: another user's) count
 * as possibly sending. A record from before owners were recorded counts as possibly sending too:
 * aborting a live run breaks it, while leaving a dead one's parts costs only their storage until
 * the bucket's lifecycle rule aborts them (7 days); such records are gone after one upgrade.
 */
function ownerIsGone(owner: RecordOwner | undefined): boolean {
  if (owner === undefined || owner.hostname !== hostname() || owner.pid === process.pid || !Number.isInteger(owner.pid) || owner.pid <= 0) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function writeRecord(file: string, record: ResumeRecord): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
  await rename(temp, file);
}

/**
 * Signs a part without hashing its bytes: the SDK would otherwise sha256 every part for the
 * signature, a second pass over the whole file on the CLI's one thread (aws s3 cp does the
 * same over HTTPS). The bytes stay protected by TLS, and by the part checksum (CRC32) the SDK
 * adds when requestChecksumCalculation is on (the default against AWS).
 */
function withUnsignedPayload(command: UploadPartCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: 'ncapUnsignedPartPayload' },
  );
}

function isNoSuchUpload(error: unknown): boolean {
  return (error as { name?: string }).name === 'NoSuchUpload';
}

function isPreconditionFailed(error: unknown): boolean {
  return statusOf(error) === 412 || (error as { name?: string }).name === 'PreconditionFailed';
}
