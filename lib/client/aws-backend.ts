import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ListUserTagsCommand, type IAMClient } from '@aws-sdk/client-iam';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, GetParametersByPathCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { Upload } from '@aws-sdk/lib-storage';
import * as z from 'zod';
import { AnalysisNotFoundError, JobNotFoundError, NeuroCaasError, ObjectExistsError, UsageError } from '../core/errors.js';
import type { JobPhase } from '../core/job-machine.js';
import { jobFolderName, jobKeys } from '../core/keys.js';
import { BudgetDocumentSchema, parseDocument, ReceiptSchema, type BudgetDocument, type Receipt } from '../core/researcher-documents.js';
import { DatasetStatusSchema, type DatasetStatusDocument } from '../core/status.js';
import type { Clock, ObjectInfo } from '../ports.js';
import type { ClientBackend, ClientObjects, Identity, IdentityRequest, JobDetail, JobListing, JobView, ProgressListener } from './ports.js';
import { outcomeFromDocuments } from './views.js';

/** SSM parameters the stacks publish (D5). */
export const DEPLOYMENT_PARAMETER = '/neurocaas/deployment';
export const ANALYSES_PARAMETER_PATH = '/neurocaas/analyses/';
/** Object metadata key holding an upload's sha256 (sent as `x-amz-meta-sha256`). */
export const SHA256_METADATA = 'sha256';
/** Principal tag naming an IAM user's group (D1). */
export const GROUP_TAG = 'neurocaas-group';
/** Multipart part size of uploads: 16 MiB (a 1 GiB file is 64 parts). */
const PART_SIZE_BYTES = 16 * 1024 * 1024;
const UPLOAD_QUEUE_SIZE = 4;
const READ_CONCURRENCY = 8;

const DeploymentSchema = z.object({ schemaVersion: z.literal(1), region: z.string().min(1), tableName: z.string().optional(), notificationsTopicArn: z.string().optional() });
const AnalysisParameterSchema = z.object({ schemaVersion: z.literal(1), analysis: z.string().min(1), bucket: z.string().min(1), region: z.string().min(1) });

/** The SDK clients the aws backend uses; created once by the shell and passed in. */
export interface AwsClientClients {
  s3: S3Client;
  ssm: SSMClient;
  sts: STSClient;
  iam: IAMClient;
}

export interface AwsClientOptions {
  /** The region the clients talk to (AWS_REGION); checked against the deployment's. */
  region: string;
  /** The group, when the IAM user's tags cannot be read (--group, NEUROCAAS_GROUP). */
  group?: string;
  /** Poll interval for receipts, logs and job ends; default 1000 ms. */
  pollMs?: number;
  /** How long to wait for the protocol's receipt; default 120 000 ms. */
  receiptTimeoutMs?: number;
  clock?: Clock;
}

interface Deployment {
  region: string;
  analyses: Map<string, string>;
}

/** No credentials, expired credentials, access denied, unreachable endpoint: said plainly. */
export class AwsAccessError extends NeuroCaasError {}

/**
 * Translates an SDK failure into what a researcher can act on; `what` says what was being done.
 * Anything not recognised is passed on unchanged.
 */
export function translateAwsError(error: unknown, what: string): unknown {
  if (error instanceof NeuroCaasError || !(error instanceof Error)) return error;
  const name = error.name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(error.message)) {
    return new AwsAccessError('NoCredentials', `no AWS credentials found while ${what}: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); your admin creates them with "neurocaas admin credentials"`);
  }
  if (name === 'ExpiredToken' || name === 'ExpiredTokenException' || name === 'RequestExpired' || name === 'TokenRefreshRequired') {
    return new AwsAccessError('CredentialsExpired', `your AWS credentials have expired (${name}) while ${what}: refresh them (e.g. "aws sso login", or a new session token) and try again`);
  }
  if (name === 'InvalidClientTokenId' || name === 'UnrecognizedClientException' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
    return new AwsAccessError('CredentialsInvalid', `AWS rejected your credentials (${name}) while ${what}: check AWS_PROFILE and the key your admin gave you`);
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException' || name === 'Forbidden' || status === 403) {
    return new AwsAccessError('AccessDenied', `access denied while ${what}: your IAM user may not do this (only your own group's keys are yours; is AWS_PROFILE the right one?)`);
  }
  if (name === 'NoSuchBucket') {
    return new AwsAccessError('DeploymentNotFound', `the bucket does not exist while ${what}: the deployment changed or AWS_REGION is wrong; ask your admin`);
  }
  const code = (error as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || code === 'EAI_AGAIN') {
    return new AwsAccessError('Unreachable', `cannot reach AWS (${code}) while ${what}: check your network, AWS_REGION and AWS_ENDPOINT_URL`);
  }
  return error;
}

async function guarded<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateAwsError(error, what);
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

function isMissing(error: unknown): boolean {
  const name = (error as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(error) === 404 && name !== 'NoSuchBucket');
}

/**
 * The client ports on a deployed stack: S3 for everything a researcher reads and writes, SSM
 * parameters to find the deployment (D5), STS and the IAM user's tags for who they are. Never
 * DynamoDB: job state comes from receipts and status objects (D3), budgets from budget objects (D4).
 */
export class AwsClientBackend implements ClientBackend {
  readonly kind = 'aws' as const;
  readonly objects: S3ClientObjects;
  readonly jobs: JobListing;
  readonly pollMs: number;
  readonly receiptTimeoutMs: number;
  readonly clock: Clock;
  private deployment: Promise<Deployment> | undefined;
  private caller: Promise<Identity> | undefined;

  constructor(
    private readonly clients: AwsClientClients,
    private readonly options: AwsClientOptions,
  ) {
    this.objects = new S3ClientObjects(clients.s3);
    this.jobs = new S3JobListing(this);
    this.pollMs = options.pollMs ?? 1_000;
    this.receiptTimeoutMs = options.receiptTimeoutMs ?? 120_000;
    this.clock = options.clock ?? { nowMs: () => Date.now() };
  }

  locationOf(bucket: string, key: string): string {
    return `s3://${bucket}/${key}`;
  }

  async identity(request: IdentityRequest): Promise<Identity> {
    if (request.user !== undefined) throw new UsageError('--user is for the local backend; on aws you are the IAM user of your credentials (choose them with AWS_PROFILE)');
    this.caller ??= this.loadIdentity(request.group ?? this.options.group);
    return this.caller;
  }

  scope(request: IdentityRequest): Promise<Identity> {
    return this.identity(request);
  }

  async analyses(): Promise<{ analysis: string; bucket: string }[]> {
    const { analyses } = await this.loadDeployment();
    return [...analyses].map(([analysis, bucket]) => ({ analysis, bucket })).sort((a, b) => (a.analysis < b.analysis ? -1 : 1));
  }

  async bucketOf(analysis: string): Promise<string> {
    const { analyses, region } = await this.loadDeployment();
    const bucket = analyses.get(analysis);
    if (bucket === undefined) {
      throw new AnalysisNotFoundError(`analysis "${analysis}" is not deployed in region ${region}; deployed: ${[...analyses.keys()].sort().join(', ') || 'none'}`);
    }
    return bucket;
  }

  /** S3 notifies the protocol of every submission and cancel request: nothing to do here. */
  async deliver(): Promise<void> {}

  async budget(identity: Identity): Promise<BudgetDocument | undefined> {
    const analyses = await this.analyses();
    const docs = await Promise.all(
      analyses.map(async ({ bucket }) => {
        const key = `${identity.group}/budget/${identity.user}.json`;
        const body = await this.objects.read(bucket, key);
        if (!body) return undefined;
        const parsed = parseDocument(BudgetDocumentSchema, body.toString('utf8'), this.locationOf(bucket, key));
        if (!parsed.ok) throw new NeuroCaasError('BudgetInvalid', parsed.reason);
        return parsed.value;
      }),
    );
    // Each analysis bucket holds the view as of its own last job; the newest one is current.
    return docs.filter((d): d is BudgetDocument => d !== undefined).sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0))[0];
  }

  async stop(): Promise<void> {}
  killNow(): void {}
  async close(): Promise<void> {}

  private loadDeployment(): Promise<Deployment> {
    this.deployment ??= this.readDeployment().catch((error: unknown) => {
      this.deployment = undefined;
      throw error;
    });
    return this.deployment;
  }

  private async readDeployment(): Promise<Deployment> {
    const { ssm } = this.clients;
    const region = this.options.region;
    const notFound = () =>
      new AwsAccessError(
        'DeploymentNotFound',
        `no NeuroCAAS deployment found in region ${region} (SSM parameter ${DEPLOYMENT_PARAMETER} does not exist); set AWS_REGION to the region your admin deployed to`,
      );
    const main = await guarded(`reading ${DEPLOYMENT_PARAMETER} in region ${region}`, async () => {
      try {
        return await ssm.send(new GetParameterCommand({ Name: DEPLOYMENT_PARAMETER }));
      } catch (error) {
        if ((error as { name?: string }).name === 'ParameterNotFound') throw notFound();
        throw error;
      }
    });
    const deployment = parseJsonParameter(DeploymentSchema, main.Parameter?.Value, DEPLOYMENT_PARAMETER);
    if (deployment.region !== region) {
      throw new AwsAccessError('WrongRegion', `the NeuroCAAS deployment is in region ${deployment.region}, but your clients use ${region}; set AWS_REGION=${deployment.region}`);
    }
    const analyses = new Map<string, string>();
    let nextToken: string | undefined;
    do {
      const page = await guarded(`listing the deployed analyses (${ANALYSES_PARAMETER_PATH})`, () =>
        ssm.send(new GetParametersByPathCommand({ Path: ANALYSES_PARAMETER_PATH, Recursive: true, NextToken: nextToken })),
      );
      for (const parameter of page.Parameters ?? []) {
        const value = parseJsonParameter(AnalysisParameterSchema, parameter.Value, parameter.Name ?? ANALYSES_PARAMETER_PATH);
        analyses.set(value.analysis, value.bucket);
      }
      nextToken = page.NextToken;
    } while (nextToken);
    return { region, analyses };
  }

  private async loadIdentity(group: string | undefined): Promise<Identity> {
    const caller = await guarded('asking AWS who you are (sts:GetCallerIdentity)', () => this.clients.sts.send(new GetCallerIdentityCommand({})));
    const user = userNameOfArn(caller.Arn ?? '');
    if (user === undefined) {
      throw new AwsAccessError('NotAResearcher', `your credentials are for ${caller.Arn}, not a NeuroCAAS researcher's IAM user; use the credentials your admin gave you (AWS_PROFILE)`);
    }
    if (group !== undefined) return { user, group };
    const tags = await guarded(`reading the tags of IAM user ${user} (to know your group; or pass --group / set NEUROCAAS_GROUP)`, () =>
      this.clients.iam.send(new ListUserTagsCommand({ UserName: user })),
    );
    const tagged = tags.Tags?.find((tag) => tag.Key === GROUP_TAG)?.Value;
    if (!tagged) throw new AwsAccessError('GroupUnknown', `IAM user ${user} has no "${GROUP_TAG}" tag, so its group is unknown; pass --group or set NEUROCAAS_GROUP, or ask your admin to redeploy the users stack`);
    return { user, group: tagged };
  }
}

/** The IAM user (or a web identity's session) an ARN names; undefined for the account root. */
export function userNameOfArn(arn: string): string | undefined {
  const user = /:user\/(?:.*\/)?([^/]+)$/.exec(arn);
  if (user) return user[1];
  const session = /:assumed-role\/[^/]+\/([^/]+)$/.exec(arn);
  return session?.[1];
}

function parseJsonParameter<T>(schema: z.ZodType<T>, value: string | undefined, name: string): T {
  const parsed = parseDocument(schema, value ?? '', `SSM parameter ${name}`);
  if (!parsed.ok) throw new NeuroCaasError('DeploymentInvalid', `${parsed.reason}; ask your admin to redeploy the platform`);
  return parsed.value;
}

/** The researcher's view of S3: create-only writes, multipart uploads with sha256 metadata. */
export class S3ClientObjects implements ClientObjects {
  constructor(private readonly s3: S3Client) {}

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    return (await this.headWithMetadata(bucket, key))?.info;
  }

  async read(bucket: string, key: string, fromByte = 0, maxBytes?: number): Promise<Buffer | undefined> {
    return guarded(`reading s3://${bucket}/${key}`, async () => {
      try {
        const range = maxBytes !== undefined ? `bytes=${fromByte}-${fromByte + maxBytes - 1}` : fromByte > 0 ? `bytes=${fromByte}-` : undefined;
        const result = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: range } : {}) }));
        return result.Body ? Buffer.from(await result.Body.transformToByteArray()) : Buffer.alloc(0);
      } catch (error) {
        if (isMissing(error)) return undefined;
        // Nothing past the end yet: a log that has not grown.
        if (statusOf(error) === 416 || (error as { name?: string }).name === 'InvalidRange') return Buffer.alloc(0);
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

  async upload(bucket: string, key: string, file: string, options: { sha256: string; sizeBytes: number; onProgress?: ProgressListener }): Promise<void> {
    await guarded(`uploading ${file} to s3://${bucket}/${key}`, async () => {
      // Multipart objects appear only when completed, and lib-storage aborts the upload on any
      // failure (leavePartsOnError false), so a half-sent file never becomes an input.
      const upload = new Upload({
        client: this.s3,
        params: { Bucket: bucket, Key: key, Body: createReadStream(file), Metadata: { [SHA256_METADATA]: options.sha256 }, IfNoneMatch: '*', ContentLength: options.sizeBytes },
        partSize: PART_SIZE_BYTES,
        queueSize: UPLOAD_QUEUE_SIZE,
        leavePartsOnError: false,
      });
      upload.on('httpUploadProgress', (progress) => options.onProgress?.(progress.loaded ?? 0, options.sizeBytes));
      try {
        await upload.done();
      } catch (error) {
        if (statusOf(error) === 412 || (error as { name?: string }).name === 'PreconditionFailed') {
          throw new ObjectExistsError(`s3://${bucket}/${key} was created by someone else while uploading; nothing was overwritten`);
        }
        throw error;
      }
      options.onProgress?.(options.sizeBytes, options.sizeBytes);
    });
  }

  async download(bucket: string, key: string, file: string, options: { onProgress?: ProgressListener } = {}): Promise<void> {
    const temp = `${file}.ncap-part`;
    await guarded(`downloading s3://${bucket}/${key}`, async () => {
      const result = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const total = result.ContentLength ?? 0;
      let done = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          done += chunk.length;
          options.onProgress?.(done, total);
          callback(null, chunk);
        },
      });
      try {
        await pipeline(result.Body as Readable, counter, createWriteStream(temp));
        await rename(temp, file);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
    });
  }

  private async headWithMetadata(bucket: string, key: string): Promise<{ info: ObjectInfo; metadata: Record<string, string> } | undefined> {
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

/** Runs `work` over `items`, at most `limit` at a time, keeping order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

interface ReceiptEntry {
  receipt: Receipt;
  user: string | undefined;
  createdAtMs: number;
}

/** Job ids start with their creation time: "20261122T151533Z-7f3a". */
function jobTimeMs(jobId: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(jobId);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
}

/**
 * Jobs as the bucket shows them (researchers never read the job table): receipts (D3) say which
 * jobs a group has and who submitted them; the job folder's status documents and end.txt say how
 * they are doing.
 */
class S3JobListing implements JobListing {
  constructor(private readonly backend: AwsClientBackend) {}

  async list(scope: Identity | undefined): Promise<{ jobs: JobView[]; notices: string[] }> {
    const identity = scope ?? (await this.backend.identity({}));
    const analyses = await this.backend.analyses();
    const perBucket = await Promise.all(
      analyses.map(async ({ bucket }) => {
        const receipts = (await this.receipts(bucket, identity.group)).filter((r) => r.receipt.outcome !== 'duplicate' && r.receipt.jobId !== '');
        return mapLimited(receipts, READ_CONCURRENCY, (entry) => this.detail(bucket, identity.group, entry));
      }),
    );
    const jobs: JobView[] = perBucket.flat().map((d) => ({
      jobId: d.jobId,
      analysis: d.analysis,
      group: d.group,
      ...(d.user === undefined ? {} : { user: d.user }),
      phase: d.phase,
      outcome: d.outcome,
      createdAtMs: d.createdAtMs,
      updatedAtMs: d.updatedAtMs,
      datasets: d.datasets.map((ds) => ({ name: ds.name, phase: ds.phase })),
    }));
    return { jobs: jobs.sort((a, b) => (a.jobId < b.jobId ? 1 : a.jobId > b.jobId ? -1 : 0)), notices: [] };
  }

  async get(jobId: string, scope: Identity | undefined): Promise<JobDetail> {
    const identity = scope ?? (await this.backend.identity({}));
    const analyses = await this.backend.analyses();
    const found = await Promise.all(
      analyses.map(async ({ analysis, bucket }) => {
        const prefix = `${identity.group}/results/${jobFolderName(analysis, jobId)}/`;
        const objects = await this.backend.objects.list(bucket, prefix);
        return objects.length > 0 ? { bucket, analysis } : undefined;
      }),
    );
    const hit = found.find((f) => f !== undefined);
    if (!hit) {
      throw new JobNotFoundError(`job "${jobId}" not found in group "${identity.group}" of any deployed analysis (${analyses.map((a) => a.analysis).join(', ') || 'none'}); see "neurocaas jobs"`);
    }
    const entry = await this.receiptOf(hit.bucket, identity.group, jobId);
    return this.detail(hit.bucket, identity.group, entry ?? { receipt: { schemaVersion: 1, submissionKey: '', etag: '', jobId, analysis: hit.analysis, outcome: 'accepted' }, user: undefined, createdAtMs: jobTimeMs(jobId) ?? 0 });
  }

  private async receipts(bucket: string, group: string, order?: (a: ObjectInfo, b: ObjectInfo) => number, stop?: (r: ReceiptEntry) => boolean): Promise<ReceiptEntry[]> {
    const listed = (await this.backend.objects.list(bucket, `${group}/receipts/`)).filter((o) => !o.key.endsWith('.cancel.json.json'));
    if (order) listed.sort(order);
    const entries: ReceiptEntry[] = [];
    for (let i = 0; i < listed.length; i += READ_CONCURRENCY) {
      const batch = await Promise.all(
        listed.slice(i, i + READ_CONCURRENCY).map(async (object) => {
          const body = await this.backend.objects.read(bucket, object.key);
          if (!body) return undefined;
          const parsed = parseDocument(ReceiptSchema, body.toString('utf8'), object.key);
          if (!parsed.ok) return undefined;
          const segments = object.key.split('/');
          return { receipt: parsed.value, user: segments.length === 4 ? segments[2] : undefined, createdAtMs: object.lastModifiedMs };
        }),
      );
      for (const entry of batch) if (entry) entries.push(entry);
      if (stop && entries.some(stop)) break;
    }
    return entries;
  }

  /** The receipt of one job: those written around the job's creation time are read first. */
  private async receiptOf(bucket: string, group: string, jobId: string): Promise<ReceiptEntry | undefined> {
    const at = jobTimeMs(jobId) ?? 0;
    const entries = await this.receipts(bucket, group, (a, b) => Math.abs(a.lastModifiedMs - at) - Math.abs(b.lastModifiedMs - at), (r) => r.receipt.jobId === jobId && r.receipt.outcome !== 'duplicate');
    return entries.find((r) => r.receipt.jobId === jobId && r.receipt.outcome !== 'duplicate');
  }

  private async detail(bucket: string, group: string, entry: ReceiptEntry): Promise<JobDetail> {
    const { receipt } = entry;
    const keys = jobKeys(group, receipt.analysis, receipt.jobId);
    const objects = await this.backend.objects.list(bucket, keys.prefix);
    const statusKeys = objects.filter((o) => /\/logs\/DATASET_NAME-.+_STATUS\.txt\.json$/.test(o.key));
    const statuses = (
      await mapLimited(statusKeys, READ_CONCURRENCY, async (o) => {
        const body = await this.backend.objects.read(bucket, o.key);
        const parsed = body ? DatasetStatusSchema.safeParse(safeJson(body.toString('utf8'))) : undefined;
        return parsed?.success ? parsed.data : undefined;
      })
    ).filter((s): s is DatasetStatusDocument => s !== undefined);
    const ended = objects.some((o) => o.key === keys.end);
    const rejected = receipt.outcome === 'rejected';
    const phase: JobPhase = rejected ? 'REJECTED' : ended ? 'DONE' : 'ACTIVE';
    const datasets = statuses.map((s) => ({
      name: s.dataset,
      phase: s.status,
      ...(s.reason === undefined ? {} : { reason: s.reason }),
      ...(s.exitCode === undefined ? {} : { exitCode: s.exitCode }),
      ...(s.instanceId === undefined ? {} : { instanceId: s.instanceId }),
    }));
    const detail: JobDetail = {
      jobId: receipt.jobId,
      analysis: receipt.analysis,
      group,
      ...(entry.user === undefined ? {} : { user: entry.user }),
      phase,
      outcome: outcomeFromDocuments({ rejected, ended, datasets }),
      createdAtMs: entry.createdAtMs,
      updatedAtMs: Math.max(entry.createdAtMs, ...objects.map((o) => o.lastModifiedMs)),
      bucket,
      datasets,
    };
    if (rejected) detail.rejection = receipt.reasons ?? [];
    const first = statuses[0];
    if (first?.instanceType !== undefined) detail.instanceType = first.instanceType;
    if (first?.hourlyUsd !== undefined) detail.hourlyUsd = first.hourlyUsd;
    if (statuses.some((s) => s.costUsd !== undefined)) detail.costUsd = Math.round(statuses.reduce((sum, s) => sum + (s.costUsd ?? 0), 0) * 1e6) / 1e6;
    if (ended && !rejected) {
      const provenance = await this.backend.objects.read(bucket, keys.provenance);
      const cost = provenance ? (safeJson(provenance.toString('utf8')) as { cost?: { reservedUsd?: number; spentUsd?: number } } | undefined)?.cost : undefined;
      if (typeof cost?.reservedUsd === 'number') detail.reservedUsd = cost.reservedUsd;
      if (typeof cost?.spentUsd === 'number') detail.costUsd = cost.spentUsd;
    }
    return detail;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // A document being replaced right now reads as absent; the next poll sees it.
    return undefined;
  }
}
