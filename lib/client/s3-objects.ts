import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ObjectExistsError } from '../core/errors.js';
import type { ObjectInfo } from '../ports.js';
import { guarded, isMissing, statusOf } from './aws-errors.js';
import type { ClientStore } from './ports.js';

/** Object metadata key holding an upload's sha256 (sent as `x-amz-meta-sha256`). */
export const SHA256_METADATA = 'sha256';

/**
 * The researcher's view of S3 without files: create-only writes, ranged reads, listings, the
 * sha256 recorded with an upload. No Node built-ins (the web app uses it in the browser);
 * S3ClientObjects (aws-backend.ts) adds file uploads and downloads.
 */
export class S3Objects implements ClientStore {
  constructor(protected readonly s3: S3Client) {}

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    return (await this.headWithMetadata(bucket, key))?.info;
  }

  async read(bucket: string, key: string, fromByte = 0, maxBytes?: number): Promise<Uint8Array | undefined> {
    return guarded(`reading s3://${bucket}/${key}`, async () => {
      try {
        const range = maxBytes !== undefined ? `bytes=${fromByte}-${fromByte + maxBytes - 1}` : fromByte > 0 ? `bytes=${fromByte}-` : undefined;
        const result = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: range } : {}) }));
        return result.Body ? await result.Body.transformToByteArray() : new Uint8Array(0);
      } catch (error) {
        if (isMissing(error)) return undefined;
        // Nothing past the end yet: a log that has not grown.
        if (statusOf(error) === 416 || (error as { name?: string }).name === 'InvalidRange') return new Uint8Array(0);
        throw error;
      }
    });
  }

  async list(bucket: string, prefix: string): Promise<ObjectInfo[]> {
    return guarded(`listing s3://${bucket}/${prefix}`, async () => {
      const found: ObjectInfo[] = [];
      let token: string | undefined;
      do {
        const page = await this.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          if (object.Key === undefined) continue;
          found.push({ key: object.Key, size: object.Size ?? 0, etag: (object.ETag ?? '').replace(/"/g, ''), lastModifiedMs: object.LastModified?.getTime() ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  async write(bucket: string, key: string, body: string): Promise<void> {
    await guarded(`writing s3://${bucket}/${key}`, async () => {
      try {
        await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, IfNoneMatch: '*', ContentType: 'application/json' }));
      } catch (error) {
        if (statusOf(error) === 412 || (error as { name?: string }).name === 'PreconditionFailed') throw new ObjectExistsError(`s3://${bucket}/${key} already exists`);
        throw error;
      }
    });
  }

  async sha256(bucket: string, key: string): Promise<string | undefined> {
    return (await this.headWithMetadata(bucket, key))?.metadata[SHA256_METADATA];
  }

  protected async headWithMetadata(bucket: string, key: string): Promise<{ info: ObjectInfo; metadata: Record<string, string> } | undefined> {
    return guarded(`reading s3://${bucket}/${key}`, async () => {
      try {
        const result = await this.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return {
          info: { key, size: result.ContentLength ?? 0, etag: (result.ETag ?? '').replace(/"/g, ''), lastModifiedMs: result.LastModified?.getTime() ?? 0 },
          metadata: result.Metadata ?? {},
        };
      } catch (error) {
        if (isMissing(error)) return undefined;
        throw error;
      }
    });
  }
}

