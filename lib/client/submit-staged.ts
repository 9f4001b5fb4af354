/**
 * Submitting what is already in the bucket (the web app's submit page): datasets under the
 * group's inputs and a config under its configs, named without the group prefix. The protocol
 * decides; a refusal comes back with its reasons verbatim. Browser-safe.
 */
import { UsageError } from '../core/errors.js';
import { configKeyOf, datasetKeyOf } from './object-names.js';
import type { ResearcherUseCases } from './researcher-use-cases.js';

export interface StagedSubmission {
  analysis: string;
  /** Names under `<group>/inputs/` (or full keys of the group); a name ending "/" is a folder dataset. */
  datasets: string[];
  /** A name under `<group>/configs/` (or the full key). */
  config: string;
  instanceType?: string;
}

export type StagedSubmitOutcome =
  | { ok: true; jobId: string; submissionKey: string }
  | { ok: false; jobId: string; submissionKey: string; reasons: string[] };

/** Most datasets one request may name; the blueprint's own limit is checked by the protocol. */
export const MAX_DATASETS_PER_REQUEST = 1000;

/** Checks the names, writes the submission under the user's prefix (D1), waits for the receipt (D3). */
export async function submitStaged(client: ResearcherUseCases, request: StagedSubmission): Promise<StagedSubmitOutcome> {
  if (!Array.isArray(request.datasets) || request.datasets.length === 0 || !request.datasets.every((d) => typeof d === 'string')) {
    throw new UsageError('datasets must be a non-empty list of input names (as listed under inputs)');
  }
  if (request.datasets.length > MAX_DATASETS_PER_REQUEST) throw new UsageError(`at most ${MAX_DATASETS_PER_REQUEST} datasets per submission, got ${request.datasets.length}`);
  if (typeof request.config !== 'string' || request.config === '') throw new UsageError('config must be the name of a config under configs');
  if (request.instanceType !== undefined && typeof request.instanceType !== 'string') throw new UsageError('instanceType must be a string');
  const bucket = await client.backend.bucketOf(request.analysis);
  const identity = await client.identity();
  const dataKeys = request.datasets.map((d) => datasetKeyOf(identity.group, d));
  const configKey = configKeyOf(identity.group, request.config);
  const { key, receipt } = await client.submit(bucket, identity, {
    dataname: dataKeys.length === 1 ? (dataKeys[0] as string) : dataKeys,
    configname: configKey,
    ...(request.instanceType ? { instance_type: request.instanceType } : {}),
  });
  if (receipt.outcome === 'rejected') return { ok: false, jobId: receipt.jobId, submissionKey: key, reasons: receipt.reasons ?? [] };
  return { ok: true, jobId: receipt.jobId, submissionKey: key };
}
