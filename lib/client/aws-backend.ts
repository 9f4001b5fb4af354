import { createReadStream, createWriteStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
// Only S3 is loaded with this module: the SSM, STS and IAM clients each take
// tens to hundreds of ms of CPU to load, and most commands (or a cached discovery) need few of them.
import type { IAMClient } from '@aws-sdk/client-iam';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { GetParametersByPathCommandOutput, SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import * as z from 'zod';
import { AnalysisNotFoundError, NeuroCaasError, ObjectExistsError, UsageError } from '../core/errors.js';
import { downloadCreateOnly } from './place-file.js';
import { parseDocument, type BudgetDocument } from '../core/researcher-documents.js';
import type { Clock } from '../ports.js';
import { AwsAccessError, guarded, statusOf } from './aws-errors.js';
import type { ClientBackend, ClientObjects, Identity, IdentityRequest, JobListing, ProgressListener } from './ports.js';
import { S3Objects, SHA256_METADATA } from './s3-objects.js';
import { newestBudget, S3JobListing } from './s3-job-listing.js';
import { S3ResumableUploader, type ResumableUploadOptions } from './s3-resumable-upload.js';

export { AwsAccessError, translateAwsError } from './aws-errors.js';
export { S3Objects, SHA256_METADATA } from './s3-objects.js';

/** SSM parameters the stacks publish (D5). */
export const DEPLOYMENT_PARAMETER = '/neurocaas/deployment';
export const ANALYSES_PARAMETER_PATH = '/neurocaas/analyses/';
/** Principal tag naming an IAM user's group (D1). */
export const GROUP_TAG = 'neurocaas-group';

const DeploymentSchema = z.object({ schemaVersion: z.literal(1), region: z.string().min(1), tableName: z.string().optional(), notificationsTopicArn: z.string().optional() });
const AnalysisParameterSchema = z.object({ schemaVersion: z.literal(1), analysis: z.string().min(1), bucket: z.string().min(1), region: z.string().min(1) });

/** A client, or how to make it when first needed (its SDK package loads then). */
export type LazyClient<T> = T | (() => Promise<T>);

/**
 * The SDK clients the aws backend uses; created by the shell and passed in. SSM, STS and IAM
 * may be factories: each is made (once) when a command first needs it.
 */
export interface AwsClientClients {
  s3: S3Client;
  ssm: LazyClient<SSMClient>;
  sts: LazyClient<STSClient>;
  iam: LazyClient<IAMClient>;
}

function memoized<T>(client: LazyClient<T>): () => Promise<T> {
  if (typeof client !== 'function') return () => Promise.resolve(client);
  let made: Promise<T> | undefined;
  return () => {
    made ??= (client as () => Promise<T>)().catch((error: unknown) => {
      made = undefined;
      throw error;
    });
    return made;
  };
}

/** What discovery found for one set of credentials: who they are and where the deployment is. */
export interface CachedDiscovery {
  user: string;
  group: string;
  region: string;
  /** analysis -> bucket */
  analyses: Record<string, string>;
}

/**
 * Where an earlier command's discovery is kept for a short while (lib/cli/discovery-cache.ts: a
 * file per credentials, endpoint and region), so a command need not ask STS, IAM and SSM again.
 * Best effort: a read that fails is a miss, a write that fails is ignored.
 */
export interface DiscoveryCache {
  read(): Promise<CachedDiscovery | undefined>;
  write(found: CachedDiscovery): Promise<void>;
}

export interface AwsClientOptions {
  /** The region the clients talk to (AWS_REGION); checked against the deployment's. */
  region: string;
  /** The group, when the IAM user's tags cannot be read (--group, NEUROCAAS_GROUP). */
  group?: string;
  /** Discovery of earlier commands (identity from STS and IAM tags, deployment from SSM); default none. */
  discoveryCache?: DiscoveryCache;
  /** Poll interval for receipts, logs and job ends; default 1000 ms. */
  pollMs?: number;
  /** How long to wait for the protocol's receipt; default 120 000 ms. */
  receiptTimeoutMs?: number;
  clock?: Clock;
  /** How file uploads are split and where their resume records live (s3-resumable-upload.ts); default: 8 MiB x 10, no resume. */
  uploads?: ResumableUploadOptions;
}

interface Deployment {
  region: string;
  analyses: Map<string, string>;
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
  private cached: Promise<CachedDiscovery | undefined> | undefined;
  /** The deployment came from the cache: a missing analysis is looked up again before it is an error. */
  private deploymentFromCache = false;
  private cacheable = false;
  private readonly ssm: () => Promise<SSMClient>;
  private readonly sts: () => Promise<STSClient>;
  private readonly iam: () => Promise<IAMClient>;

  constructor(
    private readonly clients: AwsClientClients,
    private readonly options: AwsClientOptions,
  ) {
    this.objects = new S3ClientObjects(clients.s3, options.uploads);
    this.ssm = memoized(clients.ssm);
    this.sts = memoized(clients.sts);
    this.iam = memoized(clients.iam);
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
    if (this.caller === undefined) {
      const group = request.group ?? this.options.group;
      this.caller = this.cachedDiscovery().then((cached) => {
        if (cached && (group === undefined || group === cached.group)) return { user: cached.user, group: cached.group };
        return this.loadIdentity(group);
      });
      // Every command needs the deployment next: ask SSM while STS and IAM answer (its errors surface where it is awaited).
      const deployment = this.loadDeployment();
      deployment.catch(() => undefined);
      // What was found is kept for the next command (only a group the tags gave: --group is this command's own).
      this.cacheable = group === undefined;
      void this.cachedDiscovery().then((cached) => (cached ? undefined : this.remember()));
    }
    return this.caller;
  }

  /** Writes what this command found into the cache (best effort; never fails the command). */
  private async remember(): Promise<void> {
    const cache = this.options.discoveryCache;
    if (!cache || !this.cacheable || !this.caller || !this.deployment) return;
    try {
      const [identity, found] = await Promise.all([this.caller, this.deployment]);
      await cache.write({ user: identity.user, group: identity.group, region: found.region, analyses: Object.fromEntries(found.analyses) });
    } catch {
      // Not found, or not written: the next command discovers again.
    }
  }

  private cachedDiscovery(): Promise<CachedDiscovery | undefined> {
    this.cached ??= (this.options.discoveryCache?.read() ?? Promise.resolve(undefined)).then(
      (found) => (found && found.region === this.options.region ? found : undefined),
      () => undefined,
    );
    return this.cached;
  }

  scope(request: IdentityRequest): Promise<Identity> {
    return this.identity(request);
  }

  async analyses(): Promise<{ analysis: string; bucket: string }[]> {
    const { analyses } = await this.loadDeployment();
    return [...analyses].map(([analysis, bucket]) => ({ analysis, bucket })).sort((a, b) => (a.analysis < b.analysis ? -1 : 1));
  }

  async bucketOf(analysis: string): Promise<string> {
    let { analyses, region } = await this.loadDeployment();
    if (!analyses.has(analysis) && this.deploymentFromCache) {
      // Deployed since the cache was written? Ask SSM before saying it is not, and keep the answer.
      this.deploymentFromCache = false;
      this.deployment = undefined;
      this.cached = Promise.resolve(undefined);
      ({ analyses, region } = await this.loadDeployment());
      await this.remember();
    }
    const bucket = analyses.get(analysis);
    if (bucket === undefined) {
      throw new AnalysisNotFoundError(`analysis "${analysis}" is not deployed in region ${region}; deployed: ${[...analyses.keys()].sort().join(', ') || 'none'}`);
    }
    return bucket;
  }

  /** S3 notifies the protocol of every submission and cancel request: nothing to do here. */
  async deliver(): Promise<void> {}

  budget(identity: Identity): Promise<BudgetDocument | undefined> {
    return newestBudget(this, identity);
  }

  async stop(): Promise<void> {}
  killNow(): void {}
  async close(): Promise<void> {}

  private loadDeployment(): Promise<Deployment> {
    this.deployment ??= this.cachedDiscovery()
      .then((cached) => {
        if (!cached) return this.readDeployment();
        this.deploymentFromCache = true;
        return { region: cached.region, analyses: new Map(Object.entries(cached.analyses)) };
      })
      .catch((error: unknown) => {
        this.deployment = undefined;
        throw error;
      });
    return this.deployment;
  }

  private async readDeployment(): Promise<Deployment> {
    const [ssm, { GetParameterCommand, GetParametersByPathCommand }] = await Promise.all([this.ssm(), import('@aws-sdk/client-ssm')]);
    const region = this.options.region;
    const notFound = () =>
      new AwsAccessError(
        'DeploymentNotFound',
        `no NeuroCAAS deployment found in region ${region} (SSM parameter ${DEPLOYMENT_PARAMETER} does not exist); set AWS_REGION to the region your admin deployed to`,
      );
    const page = (nextToken: string | undefined) =>
      guarded(`listing the deployed analyses (${ANALYSES_PARAMETER_PATH})`, () =>
        ssm.send(new GetParametersByPathCommand({ Path: ANALYSES_PARAMETER_PATH, Recursive: true, NextToken: nextToken })),
      );
    // Both at once: the first page of analyses does not depend on the deployment parameter.
    const firstPage = page(undefined);
    firstPage.catch(() => undefined);
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
    for (let next: ReturnType<typeof page> | undefined = firstPage; next; ) {
      const got: GetParametersByPathCommandOutput = await next;
      for (const parameter of got.Parameters ?? []) {
        const value = parseJsonParameter(AnalysisParameterSchema, parameter.Value, parameter.Name ?? ANALYSES_PARAMETER_PATH);
        analyses.set(value.analysis, value.bucket);
      }
      next = got.NextToken ? page(got.NextToken) : undefined;
    }
    return { region, analyses };
  }

  private async loadIdentity(group: string | undefined): Promise<Identity> {
    const caller = await guarded('asking AWS who you are (sts:GetCallerIdentity)', async () => {
      const [sts, { GetCallerIdentityCommand }] = await Promise.all([this.sts(), import('@aws-sdk/client-sts')]);
      return sts.send(new GetCallerIdentityCommand({}));
    });
    const user = userNameOfArn(caller.Arn ?? '');
    if (user === undefined) {
      throw new AwsAccessError('NotAResearcher', `your credentials are for ${caller.Arn}, not a NeuroCAAS researcher's IAM user; use the credentials your admin gave you (AWS_PROFILE)`);
    }
    if (group !== undefined) return { user, group };
    const tags = await guarded(`reading the tags of IAM user ${user} (to know your group; or pass --group / set NEUROCAAS_GROUP)`, async () => {
      const [iam, { ListUserTagsCommand }] = await Promise.all([this.iam(), import('@aws-sdk/client-iam')]);
      return iam.send(new ListUserTagsCommand({ UserName: user }));
    });
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

/** The researcher's view of S3 with local files: S3Objects plus multipart file uploads and streamed downloads. */
export class S3ClientObjects extends S3Objects implements ClientObjects {
  private readonly uploader: S3ResumableUploader;

  constructor(s3: S3Client, uploads: ResumableUploadOptions = {}) {
    super(s3);
    this.uploader = new S3ResumableUploader(s3, uploads);
  }

  // Node callers have always had Buffers.
  override async read(bucket: string, key: string, fromByte = 0, maxBytes?: number): Promise<Buffer | undefined> {
    const bytes = await super.read(bucket, key, fromByte, maxBytes);
    return bytes === undefined ? undefined : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  async upload(bucket: string, key: string, file: string, options: { sha256: string; sizeBytes: number; mtimeMs?: number; onProgress?: ProgressListener; onStep?: (text: string) => void }): Promise<void> {
    await guarded(`uploading ${file} to s3://${bucket}/${key}`, async () => {
      // Parts of an interrupted run stay stored (never an object) and the next run of the same
      // file sends only the missing ones; the object appears only at completion, create-only.
      await this.uploader.upload({ bucket, key, file, sizeBytes: options.sizeBytes, mtimeMs: options.mtimeMs ?? 0, sha256: options.sha256, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.onStep ? { onWait: options.onStep } : {}) });
    });
  }

  async download(bucket: string, key: string, file: string, options: { onProgress?: ProgressListener } = {}): Promise<void> {
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
      // Create-only through this process's temp: a file that appeared at `file` meanwhile is never replaced.
      await downloadCreateOnly(file, (temp) => pipeline(result.Body as Readable, counter, createWriteStream(temp)));
    });
  }

}

