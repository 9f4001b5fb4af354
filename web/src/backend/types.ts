/**
 * The web app's one data layer (D11). Every page talks to a `WebBackend`; nothing outside
 * web/src/backend/ calls fetch or S3. Two implementations:
 * - local.ts: the D10 JSON API of `neurocaas ui` on 127.0.0.1;
 * - aws.ts: S3 in the browser with Cognito identity-pool credentials, over lib/client.
 * The shapes mirror D10 route by route (docs/architecture.md, "The web app"); they are plain
 * JSON so both implementations return the same thing.
 */

import type { AnalysisView } from '../../../lib/client/analysis-catalog.js';
import type { ConfigValidation as ClientConfigValidation, FieldError as ClientFieldError } from '../../../lib/client/configs.js';
import type { ReservationEstimate } from '../../../lib/client/estimate.js';
import type { GroupObjectView } from '../../../lib/client/group-objects.js';
import type { ResultFileView } from '../../../lib/client/job-results.js';
import type { ObjectKind as ClientObjectKind } from '../../../lib/client/object-names.js';
import type { JobDetail as ClientJobDetail, JobView as ClientJobView } from '../../../lib/client/ports.js';
import type { BudgetView as ClientBudgetView, CancelView as ClientCancelView, FollowEvent as ClientFollowEvent } from '../../../lib/client/researcher-use-cases.js';
import type { JobPhase as CoreJobPhase } from '../../../lib/core/job-machine.js';
import type { BudgetDocument as CoreBudgetDocument } from '../../../lib/core/researcher-documents.js';
import type { DatasetPhase as CoreDatasetPhase } from '../../../lib/core/status.js';

/*
 * The shapes are lib/client's own (type imports only: nothing of lib/ enters the local bundle
 * through this file), as JSON: what the local server sends and what aws.ts builds with the same
 * use-cases. A field lib/client adds appears here by itself.
 */

/** Who the app acts as. `backend` names the implementation, for display only. */
export interface WebSession {
  backend: 'local' | 'aws';
  user: string;
  group: string;
  /**
   * Local server: whether each part sent unhashed carries its CRC32 (false when the browser is on
   * the server's own machine, so the bytes never cross a network). Absent (AWS): not used.
   */
  partChecksums?: boolean;
}

/** One deployed analysis as the Analyses page shows it (GET /api/analyses; lib/client AnalysisView). */
export type WebAnalysis = AnalysisView;

export type ObjectKind = ClientObjectKind;

/** An object under `<group>/inputs/` or `<group>/configs/` (lib/client GroupObjectView). */
export type WebObject = GroupObjectView;

/** GET /api/analyses/:a/objects/exists. */
export interface ExistsView {
  exists: boolean;
  /** True when it exists with the given sha256 (no need to upload again). */
  sameContent: boolean;
}

/** POST /api/analyses/:a/uploads: starts a multipart upload shaped like S3's. */
export interface StartUploadRequest {
  kind: ObjectKind;
  name: string;
  sizeBytes: number;
  partSizeBytes: number;
  /** Hex sha256 of the whole file; verified at completion when given. */
  sha256?: string;
}

export interface StartedUpload {
  uploadId: string;
  key: string;
}

/** One uploaded part, S3 casing (what @uppy/aws-s3's listParts expects). */
export interface UploadedPart {
  PartNumber: number;
  Size: number;
  ETag: string;
}

/** A field-level problem: JSON pointer into the config and the schema's message (lib/client configs.ts). */
export type FieldError = ClientFieldError;

/** POST /api/analyses/:a/configs/validate (lib/client validateConfigText). */
export type ConfigValidation = ClientConfigValidation;

/** POST /api/analyses/:a/estimate. */
export interface EstimateRequest {
  /** Dataset names (as listed under inputs, without the `<group>/inputs/` prefix) or full keys. */
  datasets: string[];
  instanceType?: string;
}

/** lib/client estimateReservation's figures the app shows (USD, minutes). */
export type Estimate = Pick<ReservationEstimate, 'reservedUsd' | 'perDatasetUsd' | 'instanceType' | 'deadlineMinutes' | 'hourlyUsd' | 'waves'>;

export interface SubmitRequest extends EstimateRequest {
  /** A config name under `<group>/configs/`. */
  config: string;
}

/** Result of a submission: accepted with a job id, or refused with the protocol's reasons verbatim. */
export type SubmitOutcome = { ok: true; jobId: string; submissionKey: string } | { ok: false; message: string; reasons: string[] };

export type DatasetPhase = CoreDatasetPhase;
export type JobPhase = CoreJobPhase;
export type JobOutcome = ClientJobView['outcome'];

/** lib/client/ports.ts JobView. */
export type JobView = ClientJobView;

/** lib/client/ports.ts JobDetail + the certificate (GET /api/jobs/:id). */
export interface JobDetail extends ClientJobDetail {
  /** The job's certificate text, null while none is written. */
  certificate: string | null;
}

/** lib/client FollowEvent: log lines, certificate lines, then one end. */
export type FollowEvent = ClientFollowEvent;

/** lib/client CancelView. */
export type CancelView = ClientCancelView;

/** One file of a job's results (GET /api/jobs/:id/results), path relative to the job folder. */
export type ResultFile = ResultFileView;

/** D4 budget document. */
export type BudgetDocument = CoreBudgetDocument;

/** lib/client BudgetView: `budget` undefined (null in JSON) when nothing was reserved yet. */
export type BudgetView = Omit<ClientBudgetView, 'budget'> & { budget: BudgetDocument | null | undefined };

/** Stops a stream started by `followJob`. */
export type Unsubscribe = () => void;

/**
 * The failure every method throws: the D10 error body (`code`, `message`, optional `fields`),
 * so pages show the platform's words, never a stack trace.
 */
export class BackendError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

/** What every page needs, one method per D10 route (see the route in each comment). */
export interface WebBackend {
  readonly kind: 'local' | 'aws';
  /**
   * True when the backend computes the sha256 of the bytes it receives itself and checks each
   * part against the CRC32 the browser declares with it (`uploadPart(..., {crc32})`; the session's
   * `partChecksums` says whether to send one): the local server. A file whose name is free is
   * then sent at once and never hashed in the browser. False
   * on AWS: the sha256 is the object's metadata, fixed at CreateMultipartUpload, so the browser
   * hashes the file before its first byte is sent.
   */
  readonly serverHashes: boolean;
  /** GET /api/session */
  session(): Promise<WebSession>;
  /** GET /api/analyses */
  analyses(): Promise<WebAnalysis[]>;
  /** GET /api/analyses/:a/objects?kind= */
  listObjects(analysis: string, kind: ObjectKind): Promise<WebObject[]>;
  /** GET /api/analyses/:a/objects/exists?kind=&name=&sha256= */
  objectExists(analysis: string, kind: ObjectKind, name: string, sha256?: string): Promise<ExistsView>;
  /** PUT /api/analyses/:a/objects?kind=&name= (create-only; small files). Returns the key. */
  putObject(analysis: string, kind: ObjectKind, name: string, body: Blob, options?: { sha256?: string; signal?: AbortSignal }): Promise<{ key: string }>;
  /** POST /api/analyses/:a/uploads */
  startUpload(analysis: string, request: StartUploadRequest): Promise<StartedUpload>;
  /** PUT /api/uploads/:id/parts/:n; resolves with the part's ETag. */
  uploadPart(uploadId: string, partNumber: number, body: Blob, options?: { signal?: AbortSignal; onProgress?: (loadedBytes: number) => void; crc32?: string }): Promise<{ ETag: string }>;
  /** GET /api/uploads/:id/parts */
  listParts(uploadId: string): Promise<UploadedPart[]>;
  /** POST /api/uploads/:id/complete `{parts}` (create-only); the local server answers with the sha256 it computed. */
  completeUpload(uploadId: string, parts: { PartNumber: number; ETag: string }[]): Promise<{ key: string; sha256?: string }>;
  /** DELETE /api/uploads/:id */
  abortUpload(uploadId: string): Promise<void>;
  /** POST /api/analyses/:a/configs: throws BackendError with `fields` when invalid. */
  saveConfig(analysis: string, name: string, config: unknown): Promise<{ key: string }>;
  /** POST /api/analyses/:a/configs/validate */
  validateConfig(analysis: string, text: string, format: 'json' | 'yaml'): Promise<ConfigValidation>;
  /** POST /api/analyses/:a/estimate */
  estimate(analysis: string, request: EstimateRequest): Promise<Estimate>;
  /** POST /api/analyses/:a/submit: a refusal is a value, not a throw. */
  submit(analysis: string, request: SubmitRequest): Promise<SubmitOutcome>;
  /** GET /api/jobs?scope= */
  jobs(scope: 'mine' | 'group'): Promise<JobView[]>;
  /** GET /api/jobs/:id */
  job(jobId: string): Promise<JobDetail>;
  /**
   * GET /api/jobs/:id/events: calls `onEvent` for every FollowEvent until `end` (after which
   * the stream closes) or until the returned function is called. `onError` on a broken stream.
   */
  followJob(jobId: string, onEvent: (event: FollowEvent) => void, onError?: (error: BackendError) => void): Unsubscribe;
  /** POST /api/jobs/:id/cancel */
  cancelJob(jobId: string, reason: string): Promise<CancelView>;
  /** GET /api/jobs/:id/results */
  results(jobId: string): Promise<ResultFile[]>;
  /** The bytes of one result (GET /api/jobs/:id/results/file?path=), for previews. */
  resultBlob(jobId: string, path: string, options?: { maxBytes?: number }): Promise<Blob>;
  /** A URL that downloads one result as an attachment (?download=1); on aws a presigned URL. */
  resultDownloadUrl(jobId: string, path: string): Promise<string>;
  /**
   * Downloads every result as one zip (GET /api/jobs/:id/results.zip locally, streamed; on aws
   * built in the browser as a stream). Returns a URL to navigate to, or undefined when the
   * backend already started the download itself.
   */
  resultsZipUrl(jobId: string): Promise<string | undefined>;
  /** GET /api/budget */
  budget(): Promise<BudgetView>;
}

/** ./config.json next to the app (D11). */
export type RuntimeConfig =
  | { backend: 'local' }
  | {
      backend: 'aws';
      region: string;
      userPoolId: string;
      userPoolClientId: string;
      identityPoolId: string;
      cognitoDomain: string;
      analyses: { analysis: string; bucket: string }[];
    };
