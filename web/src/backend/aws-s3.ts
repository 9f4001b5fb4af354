/**
 * The WebBackend over S3 (D11), with whatever credentials the S3 client holds: Cognito
 * identity-pool credentials in the browser (aws.ts), static ones against the emulator in the
 * tests. The use-cases are lib/client's, the same the CLI runs on aws: submissions and cancel
 * requests under the user's prefix (D1, D2), jobs from receipts and status objects (D3), the
 * budget object (D4). IAM (the researcher policy on the session's principal tags) decides what
 * the user may reach; the checks here only give clear messages first.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { makeZip } from 'client-zip';
import { NeuroCaasError } from '../../../lib/core/errors.js';
import { ConfigInvalidError, configTooLargeMessage, MAX_CONFIG_BYTES, saveConfig, validateConfigText } from '../../../lib/client/configs.js';
import { estimateReservation } from '../../../lib/client/estimate.js';
import { listJobResults, readObjectChunks, resultFile } from '../../../lib/client/job-results.js';
import { parseWebCatalog, type WebCatalog, type WebCatalogEntry } from '../../../lib/client/web-catalog.js';
import { jobKeys } from '../../../lib/core/keys.js';
import { translateAwsError } from '../../../lib/client/aws-errors.js';
import { utf8Text } from '../../../lib/client/bytes.js';
import type { Identity, UseCaseBackend } from '../../../lib/client/ports.js';
import { ResearcherUseCases } from '../../../lib/client/researcher-use-cases.js';
import { S3Objects, SHA256_METADATA } from '../../../lib/client/s3-objects.js';
import { newestBudget, S3JobListing } from '../../../lib/client/s3-job-listing.js';
import {
  BackendError,
  type BudgetView,
  type CancelView,
  type ConfigValidation,
  type Estimate,
  type EstimateRequest,
  type ExistsView,
  type FollowEvent,
  type JobDetail,
  type JobView,
  type ObjectKind,
  type ResultFile,
  type StartedUpload,
  type StartUploadRequest,
  type SubmitOutcome,
  type SubmitRequest,
  type UploadedPart,
  type WebAnalysis,
  type WebObject,
  type WebSession,
} from './types.ts';

export interface S3WebBackendOptions {
  s3: S3Client;
  /** From the ID token: `cognito:username` and `custom:group` (the same values the session tags carry). */
  identity: Identity;
  analyses: { analysis: string; bucket: string }[];
  /** Poll interval of receipts and following, ms; default 2000. */
  pollMs?: number;
  /** How long a submission waits for its receipt, ms; default 120 000. */
  receiptTimeoutMs?: number;
  /**
   * The deployment's analyses catalog (analyses.json next to the app, lib/client/web-catalog.ts),
   * as fetched: read once, on first use, and checked.
   */
  catalog: () => Promise<unknown>;
}

/** How long a presigned download link works, in seconds: 5 minutes (it is followed at once). */
export const DOWNLOAD_URL_SECONDS = 300;

/** HTTP status of lib/client's error codes, as the local server answers them (lib/ui). */
const STATUS_OF_CODE: Record<string, number> = {
  Usage: 400,
  KeyInvalid: 400,
  ConfigInvalid: 400,
  InvalidName: 400,
  AnalysisNotFound: 404,
  ObjectNotFound: 404,
  JobNotFound: 404,
  ObjectExists: 409,
  CatalogInvalid: 502,
};

/** A NeuroCaasError (or an SDK failure, translated) as the app's BackendError. */
export function toBackendError(error: unknown, what: string): BackendError {
  if (error instanceof BackendError) return error;
  const translated = translateAwsError(error, what);
  if (translated instanceof ConfigInvalidError) return new BackendError(translated.code, translated.message, 400, translated.fields);
  if (translated instanceof NeuroCaasError) return new BackendError(translated.code, translated.message, STATUS_OF_CODE[translated.code] ?? 0);
  return new BackendError('Failed', `${what} failed: ${translated instanceof Error ? translated.message : String(translated)}`, 0);
}

/** A name under inputs/ or configs/: relative, no `..`, no backslash or NUL (the key layout's rules). */
function checkName(name: string): void {
  if (name === '' || name.startsWith('/') || name.includes('\\') || name.includes('\0') || name.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new BackendError('InvalidName', `"${name}" is not a valid file name: use a relative name without "..", empty parts or backslashes`, 400);
  }
}

/** The parts of WebBackend that S3 and lib/client answer directly. */
export class S3WebBackend {
  readonly kind = 'aws' as const;
  readonly useCases: ResearcherUseCases;
  private readonly objects: S3Objects;
  private readonly backend: UseCaseBackend;
  private readonly uploads = new Map<string, { bucket: string; key: string }>();
  private catalogRead: Promise<WebCatalog> | undefined;

  constructor(private readonly options: S3WebBackendOptions) {
    this.objects = new S3Objects(options.s3);
    const { identity, analyses } = options;
    const source = { identity: async () => identity, analyses: async () => analyses, objects: this.objects };
    const backend: UseCaseBackend = {
      kind: 'aws',
      objects: this.objects,
      jobs: new S3JobListing(source),
      clock: { nowMs: () => Date.now() },
      pollMs: options.pollMs ?? 2_000,
      receiptTimeoutMs: options.receiptTimeoutMs ?? 120_000,
      locationOf: (bucket, key) => `s3://${bucket}/${key}`,
      identity: async () => identity,
      scope: async () => identity,
      analyses: async () => analyses,
      bucketOf: async (analysis) => this.bucketOf(analysis),
      // S3 notifies the protocol of every submission and cancel request.
      deliver: async () => {},
      budget: (who) => newestBudget(source, who),
    };
    this.backend = backend;
    this.useCases = new ResearcherUseCases(backend);
  }

  /** The catalog, read once; a failed read is retried on the next call. */
  private catalog(): Promise<WebCatalog> {
    this.catalogRead ??= this.options.catalog().then(
      (value) => parseWebCatalog(value, './analyses.json'),
      (error: unknown) => {
        this.catalogRead = undefined;
        throw new BackendError('CatalogMissing', `the analyses catalog (./analyses.json next to the app) could not be read: ${error instanceof Error ? error.message : String(error)}; reload, or ask your admin to redeploy the web stack`, 502);
      },
    );
    return this.catalogRead;
  }

  private async entryOf(analysis: string): Promise<WebCatalogEntry & { bucket: string }> {
    const bucket = this.bucketOf(analysis);
    const entry = (await this.catalog()).analyses.find((a) => a.analysis === analysis);
    if (!entry) throw new BackendError('AnalysisNotFound', `analysis "${analysis}" is deployed but missing from ./analyses.json; ask your admin to redeploy the web stack`, 404);
    return { ...entry, bucket };
  }

  async session(): Promise<WebSession> {
    return { backend: 'aws', user: this.options.identity.user, group: this.options.identity.group };
  }

  bucketOf(analysis: string): string {
    const found = this.options.analyses.find((a) => a.analysis === analysis);
    if (!found) throw new BackendError('AnalysisNotFound', `analysis "${analysis}" is not deployed; deployed: ${this.options.analyses.map((a) => a.analysis).join(', ') || 'none'}`, 404);
    return found.bucket;
  }

  private keyOf(kind: ObjectKind, name: string): string {
    checkName(name);
    return `${this.options.identity.group}/${kind}/${name}`;
  }

  private async guard<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toBackendError(error, what);
    }
  }

  listObjects(analysis: string, kind: ObjectKind): Promise<WebObject[]> {
    return this.guard(`listing your ${kind}`, async () => {
      const prefix = `${this.options.identity.group}/${kind}/`;
      const listed = await this.objects.list(this.bucketOf(analysis), prefix);
      return listed
        .filter((o) => !o.key.endsWith('/'))
        .map((o) => ({ key: o.key, name: o.key.slice(prefix.length), sizeBytes: o.size, lastModified: new Date(o.lastModifiedMs).toISOString() }));
    });
  }

  objectExists(analysis: string, kind: ObjectKind, name: string, sha256?: string): Promise<ExistsView> {
    return this.guard(`looking for ${name}`, async () => {
      const bucket = this.bucketOf(analysis);
      const key = this.keyOf(kind, name);
      if (!(await this.objects.head(bucket, key))) return { exists: false, sameContent: false };
      return { exists: true, sameContent: sha256 !== undefined && (await this.objects.sha256(bucket, key)) === sha256 };
    });
  }

  /** Create-only (If-None-Match), the sha256 recorded as metadata like the CLI's uploads. */
  putObject(analysis: string, kind: ObjectKind, name: string, body: Blob, options: { sha256?: string; signal?: AbortSignal } = {}): Promise<{ key: string }> {
    return this.guard(`uploading ${name}`, async () => {
      const key = this.keyOf(kind, name);
      try {
        await this.options.s3.send(
          new PutObjectCommand({ Bucket: this.bucketOf(analysis), Key: key, Body: new Uint8Array(await body.arrayBuffer()), IfNoneMatch: '*', ...(options.sha256 ? { Metadata: { [SHA256_METADATA]: options.sha256 } } : {}) }),
          options.signal ? { abortSignal: options.signal } : {},
        );
      } catch (error) {
        if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412) throw new BackendError('ObjectExists', `${key} already exists; the platform never overwrites uploads: rename the file`, 409);
        throw error;
      }
      return { key };
    });
  }

  /** The deployed analyses as the Analyses page shows them: the catalog's views, in the deployment's order. */
  analyses(): Promise<WebAnalysis[]> {
    return this.guard('reading the analyses catalog', async () => {
      const deployed = new Set(this.options.analyses.map((a) => a.analysis));
      return (await this.catalog()).analyses.filter((a) => deployed.has(a.analysis)).map((a) => a.view);
    });
  }

  /** lib/client's saveConfig: checked against the blueprint's config.jsonSchema, written create-only under `<group>/configs/`. */
  saveConfig(analysis: string, name: string, config: unknown): Promise<{ key: string }> {
    return this.guard(`saving config ${name}`, async () => {
      const { bucket, blueprint } = await this.entryOf(analysis);
      const { key } = await saveConfig(this.backend, bucket, this.options.identity.group, blueprint.config.jsonSchema, name, config);
      return { key };
    });
  }

  /** lib/client's validateConfigText (the local server's check), in the browser. */
  validateConfig(analysis: string, text: string, format: 'json' | 'yaml'): Promise<ConfigValidation> {
    return this.guard('checking the config', async () => {
      const { blueprint } = await this.entryOf(analysis);
      const textBytes = new TextEncoder().encode(text).length;
      if (textBytes > MAX_CONFIG_BYTES) throw new BackendError('BodyTooLarge', configTooLargeMessage('the config text', textBytes), 413);
      return validateConfigText(blueprint.config.jsonSchema, text, format);
    });
  }

  /** lib/client's estimateReservation on the deployed blueprint: what `neurocaas estimate` says. */
  estimate(analysis: string, request: EstimateRequest): Promise<Estimate> {
    return this.guard('estimating the reservation', async () => {
      const { blueprint } = await this.entryOf(analysis);
      if (!Array.isArray(request.datasets)) throw new BackendError('Usage', 'datasets must be a list of input names', 400);
      const e = estimateReservation(blueprint, request.datasets.length, request.instanceType);
      return { reservedUsd: e.reservedUsd, perDatasetUsd: e.perDatasetUsd, instanceType: e.instanceType, deadlineMinutes: e.deadlineMinutes, hourlyUsd: e.hourlyUsd, waves: e.waves };
    });
  }

  /** S3 multipart, shaped like D10's routes; the upload id carries the bucket and key. */
  startUpload(analysis: string, request: StartUploadRequest): Promise<StartedUpload> {
    return this.guard(`starting the upload of ${request.name}`, async () => {
      const bucket = this.bucketOf(analysis);
      const key = this.keyOf(request.kind, request.name);
      if (await this.objects.head(bucket, key)) throw new BackendError('ObjectExists', `${key} already exists; the platform never overwrites uploads: rename the file`, 409);
      // The sha256 must be given here: S3 fixes an object's metadata at CreateMultipartUpload (no
      // full-object sha256 later), and the protocol reads it for provenance and ensemble seeds.
      // So on AWS the web app hashes the whole file before its first byte (serverHashes: false).
      const started = await this.options.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...(request.sha256 ? { Metadata: { [SHA256_METADATA]: request.sha256 } } : {}) }));
      const uploadId = JSON.stringify({ bucket, key, id: started.UploadId });
      this.uploads.set(uploadId, { bucket, key });
      return { uploadId, key };
    });
  }

  private uploadOf(uploadId: string): { bucket: string; key: string; id: string } {
    try {
      const parsed = JSON.parse(uploadId) as { bucket: string; key: string; id: string };
      if (typeof parsed.bucket === 'string' && typeof parsed.key === 'string' && typeof parsed.id === 'string') return parsed;
    } catch {
      // falls through to the error below
    }
    throw new BackendError('UploadNotFound', 'unknown upload id; start the upload again', 404);
  }

  uploadPart(uploadId: string, partNumber: number, body: Blob, options: { signal?: AbortSignal; onProgress?: (loadedBytes: number) => void } = {}): Promise<{ ETag: string }> {
    return this.guard(`uploading part ${partNumber}`, async () => {
      const { bucket, key, id } = this.uploadOf(uploadId);
      const result = await this.options.s3.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: id, PartNumber: partNumber, Body: new Uint8Array(await body.arrayBuffer()) }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      options.onProgress?.(body.size);
      // CORS exposes ETag (WebStack); without it the part could not be completed.
      if (!result.ETag) throw new BackendError('NoETag', 'S3 answered without an ETag: the bucket\'s CORS rule must expose it (redeploy the web stack)', 502);
      return { ETag: result.ETag };
    });
  }

  listParts(uploadId: string): Promise<UploadedPart[]> {
    return this.guard('listing the uploaded parts', async () => {
      const { bucket, key, id } = this.uploadOf(uploadId);
      const parts: UploadedPart[] = [];
      let marker: string | undefined;
      do {
        const page = await this.options.s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: id, PartNumberMarker: marker }));
        for (const part of page.Parts ?? []) parts.push({ PartNumber: part.PartNumber ?? 0, Size: part.Size ?? 0, ETag: part.ETag ?? '' });
        marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
      } while (marker);
      return parts;
    });
  }

  completeUpload(uploadId: string, parts: { PartNumber: number; ETag: string }[]): Promise<{ key: string }> {
    return this.guard('completing the upload', async () => {
      const { bucket, key, id } = this.uploadOf(uploadId);
      await this.options.s3.send(
        new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: id, IfNoneMatch: '*', MultipartUpload: { Parts: [...parts].sort((a, b) => a.PartNumber - b.PartNumber) } }),
      );
      this.uploads.delete(uploadId);
      return { key };
    });
  }

  abortUpload(uploadId: string): Promise<void> {
    return this.guard('aborting the upload', async () => {
      const { bucket, key, id } = this.uploadOf(uploadId);
      await this.options.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: id }));
      this.uploads.delete(uploadId);
    });
  }

  /** Writes the NeuroCAAS submission under the user's prefix and waits for the protocol's receipt; a refusal is a value. */
  submit(analysis: string, request: SubmitRequest): Promise<SubmitOutcome> {
    return this.guard('submitting', async () => {
      const { group } = this.options.identity;
      const full = (kind: ObjectKind, name: string) => (name.startsWith(`${group}/${kind}/`) ? name : this.keyOf(kind, name));
      const datasets = request.datasets.map((d) => full('inputs', d));
      const submission = { dataname: datasets.length === 1 ? (datasets[0] as string) : datasets, configname: full('configs', request.config), ...(request.instanceType ? { instance_type: request.instanceType } : {}) };
      const { key, receipt } = await this.useCases.submit(this.bucketOf(analysis), this.options.identity, submission);
      if (receipt.outcome === 'rejected') return { ok: false, message: `the platform refused the submission ${key}`, reasons: receipt.reasons ?? [] };
      return { ok: true, jobId: receipt.jobId, submissionKey: key };
    });
  }

  jobs(scope: 'mine' | 'group'): Promise<JobView[]> {
    return this.guard('listing the jobs', async () => {
      const { jobs } = await this.useCases.jobs();
      return scope === 'mine' ? jobs.filter((job) => job.user === this.options.identity.user) : jobs;
    });
  }

  job(jobId: string): Promise<JobDetail> {
    return this.guard(`reading job ${jobId}`, async () => {
      const detail = await this.useCases.job(jobId);
      const certificate = await this.objects.read(detail.bucket, jobKeys(detail.group, detail.analysis, detail.jobId).certificate);
      return { ...detail, certificate: certificate === undefined ? null : utf8Text(certificate) };
    });
  }

  /** lib/client's follow() until `end` or until unsubscribed. */
  followJob(jobId: string, onEvent: (event: FollowEvent) => void, onError?: (error: BackendError) => void): () => void {
    const controller = new AbortController();
    void (async () => {
      try {
        for await (const event of this.useCases.follow(jobId, controller.signal)) {
          if (controller.signal.aborted) return;
          onEvent(event as FollowEvent);
        }
      } catch (error) {
        if (!controller.signal.aborted) onError?.(toBackendError(error, `following job ${jobId}`));
      }
    })();
    return () => controller.abort();
  }

  cancelJob(jobId: string, reason: string): Promise<CancelView> {
    return this.guard(`cancelling job ${jobId}`, async () => {
      return await this.useCases.cancel(jobId, reason);
    });
  }

  results(jobId: string): Promise<ResultFile[]> {
    return this.guard(`listing the results of job ${jobId}`, async () => (await listJobResults(this.useCases, jobId)).files);
  }

  /**
   * A presigned GET of one result (DOWNLOAD_URL_SECONDS), answered as an attachment: the
   * browser's own download, streamed to disk, nothing held by the page. Signed with the
   * session's credentials, so IAM decides as for any read of the user's.
   */
  resultDownloadUrl(jobId: string, path: string): Promise<string> {
    return this.guard(`linking ${path} of job ${jobId}`, async () => {
      const { job, key } = await resultFile(this.useCases, jobId, path);
      const fileName = path.split('/').at(-1) as string;
      return presignGet(this.options.s3, { Bucket: job.bucket, Key: key, ResponseContentDisposition: attachment(fileName) }, DOWNLOAD_URL_SECONDS);
    });
  }

  /**
   * Every result of the job as one zip stream (client-zip, stored entries `<jobId>/<path>` as
   * the local server's results.zip): entries are read one after the other, in lib/client's
   * 1 MiB ranged reads, only as fast as the stream is consumed, so memory does not grow with
   * the job. The stream errors (the download fails) if a read fails.
   */
  resultsZip(jobId: string): Promise<{ fileName: string; stream: ReadableStream<Uint8Array> }> {
    return this.guard(`zipping the results of job ${jobId}`, async () => {
      const { job, files } = await listJobResults(this.useCases, jobId);
      const prefix = jobKeys(job.group, job.analysis, job.jobId).prefix;
      const chunks = (path: string, sizeBytes: number) => readObjectChunks(this.useCases, job.bucket, `${prefix}${path}`, sizeBytes);
      const entries = files.map((file) => ({ name: `${job.jobId}/${file.path}`, size: file.sizeBytes, input: chunks(file.path, file.sizeBytes) }));
      return { fileName: resultsZipName(job.jobId), stream: makeZip(entries) };
    });
  }

  resultBlob(jobId: string, path: string, options: { maxBytes?: number } = {}): Promise<Blob> {
    return this.guard(`reading ${path} of job ${jobId}`, async () => {
      checkName(path);
      const job = await this.useCases.job(jobId);
      const bytes = await this.objects.read(job.bucket, `${jobKeys(job.group, job.analysis, job.jobId).prefix}${path}`, 0, options.maxBytes);
      if (bytes === undefined) throw new BackendError('NotFound', `job ${jobId} has no result ${path}`, 404);
      return new Blob([bytes.slice()]);
    });
  }

  budget(): Promise<BudgetView> {
    return this.guard('reading your budget', async () => {
      const view = await this.useCases.budget();
      return { user: view.user, group: view.group, budget: view.budget ?? null };
    });
  }
}

/** The local server's name for a job's zip (lib/ui/api.ts). */
export function resultsZipName(jobId: string): string {
  return `job-${jobId.replace(/[^A-Za-z0-9._-]/g, '_')}-results.zip`;
}

/** Content-Disposition of a download: an ASCII fallback and the UTF-8 name (RFC 6266). */
function attachment(fileName: string): string {
  const ascii = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

/** The signer the S3 client itself is configured with (SigV4, S3's multi-region variant). */
interface PresigningSigner {
  presign(request: unknown, options: { expiresIn: number; signingRegion?: string; signingService?: string }): Promise<SignedRequest>;
}
interface SignedRequest {
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string | string[] | null>;
}
type SignerConstructor = new (options: Record<string, unknown>) => PresigningSigner;

/** RFC 3986 escaping, as SigV4 canonicalises the query: the URL must carry exactly what was signed. */
const escapeUri = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * A presigned URL of a GetObject, without @aws-sdk/s3-request-presigner (not a dependency):
 * the command runs through the client's own middleware up to signing (endpoint, path style,
 * key encoding as the SDK does them), then the request is presigned (query-string SigV4) with
 * the client's signer class, its credentials and region. Only `host` is signed: the browser
 * sends nothing else with a plain navigation.
 */
export async function presignGet(s3: S3Client, input: ConstructorParameters<typeof GetObjectCommand>[0], expiresInSeconds: number): Promise<string> {
  const config = s3.config as unknown as { signerConstructor: SignerConstructor; credentials: unknown; region: () => Promise<string>; sha256: unknown };
  const region = await config.region();
  const signer = new config.signerConstructor({ service: 's3', region, credentials: config.credentials, sha256: config.sha256, uriEscapePath: false, applyChecksum: false });
  const command = new GetObjectCommand(input);
  let signed: SignedRequest | undefined;
  const stack = s3.middlewareStack.clone();
  stack.addRelativeTo(
    (() => async (args: { request: unknown }) => {
      const request = args.request as { hostname: string; port?: number; headers: Record<string, string> };
      request.headers = { host: `${request.hostname}${request.port ? `:${request.port}` : ''}`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
      signed = await signer.presign(request, { expiresIn: expiresInSeconds, signingRegion: region, signingService: 's3' });
      return { response: {}, output: { $metadata: {} } };
    }) as never,
    { name: 'neurocaasPresign', relation: 'before', toMiddleware: 'awsAuthMiddleware', override: true },
  );
  await command.resolveMiddleware(stack as never, s3.config as never, {})({ input } as never);
  if (!signed) throw new BackendError('PresignFailed', 'the download link could not be signed (the AWS SDK changed its middleware)', 500);
  const query = Object.entries(signed.query)
    .flatMap(([name, value]) => (Array.isArray(value) ? value.map((v) => [name, v] as const) : [[name, value] as const]))
    .map(([name, value]) => (value === null ? escapeUri(name) : `${escapeUri(name)}=${escapeUri(value)}`))
    .join('&');
  return `${signed.protocol}//${signed.hostname}${signed.port ? `:${signed.port}` : ''}${signed.path}${query ? `?${query}` : ''}`;
}
