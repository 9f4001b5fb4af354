import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConcurrentUpdateError, KeyInvalidError, ObjectExistsError, ObjectNotFoundError } from '../core/errors.js';
import { checkKey } from '../core/keys.js';
import type { ObjectInfo, ObjectStore, PutOptions } from '../ports.js';

/** Default size above which a body is sent as a multipart upload: 64 MiB. */
export const DEFAULT_MULTIPART_THRESHOLD_BYTES = 64 * 1024 * 1024;
/** S3's smallest part (all parts but the last): 5 MiB. */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE_BYTES = 16 * 1024 * 1024;
/** Areas of a group that researchers write and the platform never overwrites. */
const USER_AREAS = new Set(['inputs', 'configs']);
/** S3 answers 409 ConditionalRequestConflict when a conditional write races another write; it asks for a retry. */
const CONFLICT_ATTEMPTS = 4;

export interface S3ObjectStoreOptions {
  /** Bodies larger than this, in bytes, go through a multipart upload. Default 64 MiB. */
  multipartThresholdBytes?: number;
  /** Part size of multipart uploads, in bytes; at least 5 MiB. Default 16 MiB. */
  partSizeBytes?: number;
  /** Keys per ListObjectsV2 page; default S3's (1000). */
  listPageSize?: number;
}

/**
 * Analysis buckets on S3. Writes are create-only by default through S3 conditional writes
 * (`If-None-Match: *` on PutObject and on CompleteMultipartUpload), so two writers of the same
 * key cannot both succeed; researchers' inputs and configs are never overwritten, even on request.
 */
export class S3ObjectStore implements ObjectStore {
  private readonly multipartThresholdBytes: number;
  private readonly partSizeBytes: number;
  private readonly listPageSize: number | undefined;

  constructor(
    private readonly s3: S3Client,
    options: S3ObjectStoreOptions = {},
  ) {
    this.multipartThresholdBytes = options.multipartThresholdBytes ?? DEFAULT_MULTIPART_THRESHOLD_BYTES;
    this.partSizeBytes = Math.max(MIN_PART_SIZE_BYTES, options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES);
    this.listPageSize = options.listPageSize;
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    validateKey(key);
    try {
      const result = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!result.Body) return Buffer.alloc(0);
      return Buffer.from(await result.Body.transformToByteArray());
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(`s3://${bucket}/${key} does not exist`);
      throw error;
    }
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    validateKey(key);
    try {
      const result = await this.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return {
        key,
        size: result.ContentLength ?? 0,
        etag: unquoteEtag(result.ETag),
        lastModifiedMs: result.LastModified?.getTime() ?? 0,
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async put(bucket: string, key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    validateKey(key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const area = key.split('/')[1];
    const userArea = area !== undefined && USER_AREAS.has(area);
    // Overwriting a researcher's file is refused; a new one may still be created, so such a
    // write is create-only too, which is atomic where a head-then-put would not be.
    const createOnly = !options.overwrite || userArea;
    const params: PutObjectCommandInput = { Bucket: bucket, Key: key, Body: bytes };
    if (options.contentType) params.ContentType = options.contentType;
    if (createOnly) params.IfNoneMatch = '*';

    let etag: string | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        etag = await this.send(params, bytes.byteLength);
        break;
      } catch (error) {
        if (createOnly && isS3Error(error, ['PreconditionFailed'], 412)) {
          throw new ObjectExistsError(
            options.overwrite && userArea
              ? `s3://${bucket}/${key} exists and is a researcher's ${area} file; the platform never overwrites it`
              : `s3://${bucket}/${key} already exists; the platform does not overwrite it`,
          );
        }
        if (isS3Error(error, ['ConditionalRequestConflict'], 409)) {
          if (attempt < CONFLICT_ATTEMPTS) {
            await new Promise((resolve) => setTimeout(resolve, 50 * attempt * (0.5 + Math.random())));
            continue;
          }
          throw new ConcurrentUpdateError(`s3://${bucket}/${key} kept being written by someone else (${attempt} attempts); try again`);
        }
        throw error;
      }
    }
    // PutObject does not return the modification time; read it back (S3 reads are consistent).
    const info = await this.head(bucket, key);
    if (!info) throw new ObjectNotFoundError(`s3://${bucket}/${key} vanished right after it was written`);
    return { key, size: bytes.byteLength, etag: etag ?? info.etag, lastModifiedMs: info.lastModifiedMs };
  }

  /** One PutObject, or a multipart upload above the threshold; returns the ETag without quotes. */
  private async send(params: PutObjectCommandInput, sizeBytes: number): Promise<string | undefined> {
    if (sizeBytes <= this.multipartThresholdBytes) {
      const result = await this.s3.send(new PutObjectCommand(params));
      return result.ETag === undefined ? undefined : unquoteEtag(result.ETag);
    }
    // lib-storage passes IfNoneMatch on to CompleteMultipartUpload (S3 checks it there) and
    // aborts the upload when completion fails, so a refused write leaves no parts behind.
    const upload = new Upload({ client: this.s3, params, partSize: this.partSizeBytes, queueSize: 4, leavePartsOnError: false });
    const result = await upload.done();
    return result.ETag === undefined ? undefined : unquoteEtag(result.ETag);
  }

  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    const found: ObjectInfo[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: continuationToken, MaxKeys: this.listPageSize }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        found.push({
          key: object.Key,
          size: object.Size ?? 0,
          etag: unquoteEtag(object.ETag),
          lastModifiedMs: object.LastModified?.getTime() ?? 0,
        });
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    // S3 lists in UTF-8 byte order; sort by code unit like the local store so both agree.
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

function validateKey(key: string): void {
  const check = checkKey(key);
  if (!check.ok) throw new KeyInvalidError(check.reason);
}

function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

interface ServiceError {
  name: string;
  $metadata?: { httpStatusCode?: number };
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).$metadata === 'object';
}

function isS3Error(error: unknown, names: readonly string[], status: number): boolean {
  return isServiceError(error) && (names.includes(error.name) || error.$metadata?.httpStatusCode === status);
}

/** A missing key. HEAD responses have no body, so the SDK only knows the status there. */
function isNotFound(error: unknown): boolean {
  if (!isServiceError(error)) return false;
  if (error.name === 'NoSuchBucket') return false;
  return error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404;
}
