/**
 * A job's results folder as the web app browses it: every file with its size, and one file's
 * bytes in bounded chunks (for a download or a zip of any size). Browser-safe.
 */
import { ObjectNotFoundError } from '../core/errors.js';
import { jobKeys } from '../core/keys.js';
import { checkRelativeName } from './object-names.js';
import type { JobDetail } from './ports.js';
import type { ResearcherUseCases } from './researcher-use-cases.js';

/** One file of a job's folder: path relative to `<group>/results/job__<analysis>_<jobId>/`. */
export interface ResultFileView {
  path: string;
  sizeBytes: number;
}

/** Bytes read per request when streaming a result: 1 MiB (memory does not grow with the file). */
export const RESULT_CHUNK_BYTES = 1024 * 1024;

/** Every file of the job's folder (outputs, logs, provenance), sorted by path. */
export async function listJobResults(client: ResearcherUseCases, jobId: string): Promise<{ job: JobDetail; files: ResultFileView[] }> {
  const job = await client.job(jobId);
  const prefix = jobKeys(job.group, job.analysis, job.jobId).prefix;
  const objects = await client.backend.objects.list(job.bucket, prefix);
  const files = objects
    .filter((o) => !o.key.endsWith('/'))
    .map((o) => ({ path: o.key.slice(prefix.length), sizeBytes: o.size }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { job, files };
}

/**
 * One result file: its key and size. Throws KeyInvalidError for a path that could leave the job
 * folder, ObjectNotFoundError (naming the job) when there is no such file.
 */
export async function resultFile(client: ResearcherUseCases, jobId: string, path: string): Promise<{ job: JobDetail; key: string; sizeBytes: number }> {
  checkRelativeName(path, 'result path');
  const job = await client.job(jobId);
  const key = `${jobKeys(job.group, job.analysis, job.jobId).prefix}${path}`;
  const info = await client.backend.objects.head(job.bucket, key);
  if (!info) throw new ObjectNotFoundError(`job ${jobId} has no result "${path}" (see GET /api/jobs/${jobId}/results for its files)`);
  return { job, key, sizeBytes: info.size };
}

/** The object's bytes, RESULT_CHUNK_BYTES at a time, up to `sizeBytes` (what head said). */
export async function* readObjectChunks(client: ResearcherUseCases, bucket: string, key: string, sizeBytes: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < sizeBytes; ) {
    const chunk = await client.backend.objects.read(bucket, key, offset, Math.min(RESULT_CHUNK_BYTES, sizeBytes - offset));
    if (!chunk || chunk.length === 0) return;
    offset += chunk.length;
    yield chunk;
  }
}
