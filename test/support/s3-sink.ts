/**
 * A small S3 stand-in on 127.0.0.1 for the runner's large-result tests, driven by the real AWS
 * CLI: path-style GetObject, HeadObject, PutObject (If-None-Match), and the multipart calls
 * (CreateMultipartUpload, UploadPart, CompleteMultipartUpload with If-None-Match,
 * AbortMultipartUpload). Small objects keep their bytes (inputs, config, status, log). A
 * multipart object keeps only what proves it arrived, so a 6 GB result costs no memory or disk:
 * its size, each part's size, and where its non-zero bytes are with those bytes (found at memcmp
 * speed: a sparse result is mostly zeros). For a sparse object that map is its whole content, so
 * the stand-in computes the sha256 of exactly what arrived, in part order, from it (when the
 * test first reads it); parts may arrive in any order and in parallel, as the runner sends
 * them. An object too dense to map gets neither (this stand-in is for sparse results).
 *
 * Everything it did is in `events`, every refused or replacing write in `refusals` and
 * `replaced`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Objects up to this size keep their bytes (and can be read back). */
const KEEP_BYTES = 1024 * 1024;
/** At most this many non-zero bytes are mapped per part; a denser part is just "dense". */
const MAX_MAPPED_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(256 * 1024);

/** A run of non-zero bytes of an object: its offset and its bytes (latin1, as they are). */
export interface NonZeroRun {
  readonly offset: number;
  readonly bytes: string;
}

/** Maps the non-zero runs of a byte stream as it goes by; zeros cost one memcmp per 256 KiB. */
class NonZeroMap {
  readonly runs: NonZeroRun[] = [];
  dense = false;
  private offset = 0;
  private mapped = 0;

  add(chunk: Buffer): void {
    for (let start = 0; start < chunk.length && !this.dense; start += ZEROS.length) {
      const piece = chunk.subarray(start, Math.min(chunk.length, start + ZEROS.length));
      if (!piece.equals(ZEROS.subarray(0, piece.length))) this.scan(piece, this.offset + start);
    }
    this.offset += chunk.length;
  }

  private scan(piece: Buffer, base: number): void {
    for (let i = 0; i < piece.length; i += 1) {
      if (piece[i] === 0) continue;
      let end = i;
      while (end < piece.length && piece[end] !== 0) end += 1;
      this.mapped += end - i;
      if (this.mapped > MAX_MAPPED_BYTES) {
        this.dense = true;
        return;
      }
      appendRun(this.runs, base + i, piece.toString('latin1', i, end));
      i = end;
    }
  }
}

/** Appends a run, joining it to the last one when they touch (a run cut by a chunk or part boundary is one run). */
function appendRun(runs: NonZeroRun[], offset: number, bytes: string): void {
  const last = runs.at(-1);
  if (last && last.offset + last.bytes.length === offset) runs[runs.length - 1] = { offset: last.offset, bytes: last.bytes + bytes };
  else runs.push({ offset, bytes });
}

/** sha256 of `sizeBytes` bytes that are zero except for `runs`: the object rebuilt from its map. */
function sha256OfMapped(sizeBytes: number, runs: readonly NonZeroRun[]): string {
  const hash = createHash('sha256');
  const zeros = (count: number) => {
    for (let left = count; left > 0; left -= ZEROS.length) hash.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
  };
  let at = 0;
  for (const run of runs) {
    zeros(run.offset - at);
    hash.update(Buffer.from(run.bytes, 'latin1'));
    at = run.offset + run.bytes.length;
  }
  zeros(sizeBytes - at);
  return hash.digest('hex');
}

export interface SinkPart {
  readonly partNumber: number;
  readonly sizeBytes: number;
}

export interface SinkObject {
  readonly sizeBytes: number;
  /** Small objects only. */
  readonly body?: Buffer;
  readonly etag: string;
  readonly metadata: Record<string, string>;
  /** Multipart objects: their parts in order. */
  readonly parts?: readonly SinkPart[];
  /** sha256 of every byte, in order; for multipart objects undefined when too dense to map. */
  readonly sha256?: string;
  /** Multipart objects: where the non-zero bytes are; undefined when too dense to map. */
  readonly nonZero?: readonly NonZeroRun[];
  readonly lastModified: Date;
}

export interface SinkEvent {
  readonly op: 'GetObject' | 'HeadObject' | 'PutObject' | 'CreateMultipartUpload' | 'UploadPart' | 'CompleteMultipartUpload' | 'AbortMultipartUpload';
  readonly key: string;
  readonly status: number;
  /** The If-None-Match header, when the request carried one. */
  readonly ifNoneMatch?: string;
  readonly partNumber?: number;
  readonly sizeBytes?: number;
}

interface Upload {
  readonly key: string;
  readonly metadata: Record<string, string>;
  readonly parts: Map<number, SinkPart & { etag: string; map: NonZeroMap }>;
}

export interface S3Sink {
  readonly endpoint: string;
  readonly bucket: string;
  readonly objects: Map<string, SinkObject>;
  readonly events: SinkEvent[];
  /** Writes refused because the key existed and the request was create-only. */
  readonly refusals: string[];
  /** Writes that replaced an existing object (allowed: the request was not create-only). */
  readonly replaced: string[];
  /** Uploads begun and neither completed nor aborted. */
  openUploads(): string[];
  put(key: string, body: string | Buffer, metadata?: Record<string, string>): void;
  stop(): Promise<void>;
}

const xml = (body: string) => `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
const S3_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

function metadataOf(request: IncomingMessage): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith('x-amz-meta-') && typeof value === 'string') metadata[name.slice('x-amz-meta-'.length)] = value;
  }
  return metadata;
}

/** Reads a body through sha256, keeping its bytes only when small. */
async function consume(request: IncomingMessage): Promise<{ sizeBytes: number; sha256: string; body?: Buffer }> {
  const hash = createHash('sha256');
  const kept: Buffer[] = [];
  let sizeBytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
    if (sizeBytes <= KEEP_BYTES) kept.push(chunk);
  }
  return { sizeBytes, sha256: hash.digest('hex'), ...(sizeBytes <= KEEP_BYTES ? { body: Buffer.concat(kept) } : {}) };
}

/** Starts the stand-in for one bucket on a free 127.0.0.1 port. */
export async function startS3Sink(bucket: string): Promise<S3Sink> {
  const objects = new Map<string, SinkObject>();
  const uploads = new Map<string, Upload>();
  const events: SinkEvent[] = [];
  const refusals: string[] = [];
  const replaced: string[] = [];

  const headersOf = (object: SinkObject): Record<string, string> => ({
    'content-length': String(object.sizeBytes),
    etag: object.etag,
    'last-modified': object.lastModified.toUTCString(),
    'content-type': 'application/octet-stream',
    ...Object.fromEntries(Object.entries(object.metadata).map(([name, value]) => [`x-amz-meta-${name}`, value])),
  });
  const error = (response: ServerResponse, status: number, code: string, message: string) => {
    response.writeHead(status, { 'content-type': 'application/xml' });
    response.end(xml(`<Error><Code>${code}</Code><Message>${message}</Message></Error>`));
  };
  /** Whether a write of `key` may go ahead; records a refusal or a replacement. */
  const mayWrite = (key: string, ifNoneMatch: string | undefined): boolean => {
    if (!objects.has(key)) return true;
    if (ifNoneMatch === '*') {
      refusals.push(key);
      return false;
    }
    replaced.push(key);
    return true;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const [, pathBucket, ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const ifNoneMatch = typeof request.headers['if-none-match'] === 'string' ? request.headers['if-none-match'] : undefined;
    const record = (event: Omit<SinkEvent, 'key' | 'ifNoneMatch'>) => events.push({ key, ...(ifNoneMatch === undefined ? {} : { ifNoneMatch }), ...event });
    if (pathBucket !== bucket) {
      await consume(request);
      return error(response, 404, 'NoSuchBucket', `only bucket ${bucket} exists here`);
    }
    const method = request.method ?? 'GET';
    const uploadId = url.searchParams.get('uploadId');
    if ((method === 'GET' || method === 'HEAD') && key !== '') {
      const object = objects.get(key);
      const op = method === 'GET' ? 'GetObject' : 'HeadObject';
      if (!object || (method === 'GET' && !object.body)) {
        record({ op, status: 404 });
        if (method === 'HEAD') {
          response.writeHead(404);
          return void response.end();
        }
        return error(response, 404, 'NoSuchKey', `no object ${key}`);
      }
      record({ op, status: 200 });
      response.writeHead(200, headersOf(object));
      return void response.end(method === 'GET' ? object.body : undefined);
    }
    if (method === 'POST' && url.searchParams.has('uploads')) {
      await consume(request);
      const id = randomUUID();
      uploads.set(id, { key, metadata: metadataOf(request), parts: new Map() });
      record({ op: 'CreateMultipartUpload', status: 200 });
      response.writeHead(200, { 'content-type': 'application/xml' });
      return void response.end(xml(`<InitiateMultipartUploadResult ${S3_NS}><Bucket>${bucket}</Bucket><Key>${key}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`));
    }
    if (method === 'PUT' && uploadId !== null) {
      const partNumber = Number(url.searchParams.get('partNumber'));
      const upload = uploads.get(uploadId);
      if (!upload || upload.key !== key || !Number.isInteger(partNumber) || partNumber < 1) {
        await consume(request);
        record({ op: 'UploadPart', status: 404, partNumber });
        return error(response, 404, 'NoSuchUpload', `no upload ${uploadId} for ${key} (part ${partNumber})`);
      }
      const map = new NonZeroMap();
      let sizeBytes = 0;
      const whole = await new Promise<boolean>((resolve) => {
        request.on('data', (chunk: Buffer) => {
          sizeBytes += chunk.length;
          map.add(chunk);
        });
        request.on('end', () => resolve(true));
        // Closed before its end: the client gave up on this part (its bytes are not all here).
        request.on('close', () => resolve(request.complete));
        request.on('error', () => resolve(false));
      });
      if (!whole) return void response.destroy();
      const etag = `"${createHash('md5').update(`${uploadId}/${partNumber}/${sizeBytes}`).digest('hex')}"`;
      upload.parts.set(partNumber, { partNumber, sizeBytes, etag, map });
      record({ op: 'UploadPart', status: 200, partNumber, sizeBytes });
      response.writeHead(200, { etag });
      return void response.end();
    }
    if (method === 'POST' && uploadId !== null) {
      const listing = (await consume(request)).body?.toString('utf8') ?? '';
      const upload = uploads.get(uploadId);
      if (!upload || upload.key !== key) {
        record({ op: 'CompleteMultipartUpload', status: 404 });
        return error(response, 404, 'NoSuchUpload', `no upload ${uploadId} for ${key}`);
      }
      // One <Part> per part, its ETag and PartNumber in either order (SDKs differ).
      const named = [...listing.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
        partNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1] ?? '')?.[1]),
        etag: (/<ETag>([^<]*)<\/ETag>/.exec(m[1] ?? '')?.[1] ?? '').replace(/&quot;/g, '"').replace(/&#34;/g, '"'),
      }));
      const parts: SinkPart[] = [];
      for (const [index, { partNumber, etag }] of named.entries()) {
        const part = upload.parts.get(partNumber);
        if (partNumber !== index + 1 || !part || part.etag !== etag) {
          record({ op: 'CompleteMultipartUpload', status: 400 });
          return error(response, 400, 'InvalidPart', `part ${partNumber} (listed ${index + 1}th, ETag ${etag}) was not uploaded as listed`);
        }
        parts.push({ partNumber, sizeBytes: part.sizeBytes });
      }
      if (parts.length === 0) {
        record({ op: 'CompleteMultipartUpload', status: 400 });
        return error(response, 400, 'MalformedXML', 'no parts listed');
      }
      if (!mayWrite(key, ifNoneMatch)) {
        record({ op: 'CompleteMultipartUpload', status: 412 });
        return error(response, 412, 'PreconditionFailed', `${key} exists`);
      }
      uploads.delete(uploadId);
      const listed = parts.map((part) => upload.parts.get(part.partNumber) as SinkPart & { map: NonZeroMap });
      const sizeBytes = listed.reduce((sum, part) => sum + part.sizeBytes, 0);
      let nonZero: NonZeroRun[] | undefined = [];
      let start = 0;
      for (const part of listed) {
        if (part.map.dense) nonZero = undefined;
        for (const run of nonZero === undefined ? [] : part.map.runs) appendRun(nonZero as NonZeroRun[], start + run.offset, run.bytes);
        start += part.sizeBytes;
      }
      const etag = `"${createHash('md5').update(`${uploadId}/${parts.length}`).digest('hex')}-${parts.length}"`;
      const runs = nonZero;
      let sha256: string | undefined;
      objects.set(key, {
        sizeBytes,
        etag,
        metadata: upload.metadata,
        parts,
        lastModified: new Date(),
        ...(runs === undefined ? {} : { nonZero: runs }),
        // Hashed when first read, not here: hashing gigabytes of zeros before answering could
        // outlast the CLI's read timeout on a loaded machine, and the CLI would retry.
        get sha256() {
          if (runs !== undefined) sha256 ??= sha256OfMapped(sizeBytes, runs);
          return sha256;
        },
      });
      record({ op: 'CompleteMultipartUpload', status: 200 });
      response.writeHead(200, { 'content-type': 'application/xml' });
      return void response.end(xml(`<CompleteMultipartUploadResult ${S3_NS}><Bucket>${bucket}</Bucket><Key>${key}</Key><ETag>${etag}</ETag></CompleteMultipartUploadResult>`));
    }
    if (method === 'DELETE' && uploadId !== null) {
      await consume(request);
      const existed = uploads.delete(uploadId);
      record({ op: 'AbortMultipartUpload', status: existed ? 204 : 404 });
      response.writeHead(existed ? 204 : 404);
      return void response.end();
    }
    if (method === 'PUT' && key !== '') {
      const received = await consume(request);
      if (!mayWrite(key, ifNoneMatch)) {
        record({ op: 'PutObject', status: 412, sizeBytes: received.sizeBytes });
        return error(response, 412, 'PreconditionFailed', `${key} exists`);
      }
      const etag = `"${received.sha256.slice(0, 32)}"`;
      objects.set(key, { sizeBytes: received.sizeBytes, etag, metadata: metadataOf(request), sha256: received.sha256, lastModified: new Date(), ...(received.body ? { body: received.body } : {}) });
      record({ op: 'PutObject', status: 200, sizeBytes: received.sizeBytes });
      response.writeHead(200, { etag });
      return void response.end();
    }
    await consume(request);
    error(response, 501, 'NotImplemented', `${method} ${url.pathname}${url.search} is not part of this stand-in`);
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((failure: unknown) => {
      if (!response.headersSent) error(response, 500, 'InternalError', failure instanceof Error ? failure.message : String(failure));
      else response.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    objects,
    events,
    refusals,
    replaced,
    openUploads: () => [...uploads.values()].map((upload) => upload.key),
    put(key, body, metadata = {}) {
      const bytes = typeof body === 'string' ? Buffer.from(body) : body;
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      objects.set(key, { sizeBytes: bytes.length, body: bytes, etag: `"${sha256.slice(0, 32)}"`, metadata, sha256, lastModified: new Date() });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
