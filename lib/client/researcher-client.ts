import { lstat, mkdir, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isDiskFull, KeyInvalidError, NeuroCaasError, ObjectExistsError, UsageError } from '../core/errors.js';
import { CHAIN_NAME_PREFIX, isChainReservedKey, jobKeys } from '../core/keys.js';
import { type FileHash, FileChangedWhileHashingError, HASH_ATTEMPTS, hashFile, hashInTurn, sha256OfFile } from './file-hash.js';
import { removeStaleTemps } from './place-file.js';
import type { ClientBackend, Identity, JobDetail, ProgressListener } from './ports.js';
import { rejectedDetail, ResearcherUseCases, type RunListener } from './researcher-use-cases.js';

export { type FileHash, HASH_READ_BYTES, hashInTurn, sha256OfFile } from './file-hash.js';
export {
  CancelRefusedError,
  FOLLOW_BACKLOG_BYTES,
  FOLLOW_CHUNK_BYTES,
  ReceiptTimeoutError,
  type BudgetDocument,
  type BudgetView,
  type CancelView,
  type FollowEvent,
  type Receipt,
  type RunListener,
  type StatusView,
} from './researcher-use-cases.js';

/** Local files to run an analysis on. */
export interface RunRequest {
  analysis: string;
  /** Dataset files; several run as parallel machines. */
  data: string[];
  config: string;
  instanceType?: string;
  /** The files' hashes when they were started earlier (startRunHashes: the CLI starts them before it opens the backend). */
  hashing?: RunHashes;
}

/** A run's file hashes under way: one per data file, then the config's. */
export interface RunHashes {
  hashes: Promise<FileHash>[];
  /** Stops the hashes still running (a run that failed before it needed them). */
  abort(): void;
}

/**
 * Starts hashing a run's files (data files in order, then the config), one after another:
 * large ones on a worker thread, so the first runs while the caller loads and discovers.
 */
export function startRunHashes(data: readonly string[], config: string): RunHashes {
  const controller = new AbortController();
  return { hashes: hashInTurn([...data, config], controller.signal), abort: () => controller.abort() };
}

export interface ResultsView {
  jobId: string;
  outDir: string;
  /** Every file of the job folder now in `outDir`, relative, sorted. */
  files: string[];
  /** Files already complete in `outDir` (same size), not downloaded again. */
  skipped: string[];
  finished: boolean;
}

const RESULTS_CONCURRENCY = 4;

/**
 * The researcher's use-cases with local files (Node only): the CLI and the local web API are
 * shells over this class; the file-less ones come from ResearcherUseCases.
 */
export class ResearcherClient extends ResearcherUseCases<ClientBackend> {
  /** Stages the files, submits them, waits for the receipt and follows the job to its end. */
  async run(request: RunRequest, listener: RunListener = {}): Promise<JobDetail> {
    // Each file's sha256 must be known before its upload starts (it is the object's metadata, set
    // when the upload is created), so every file is hashed from the start, one after another:
    // the first while discovery runs, each next one while the one before it uploads.
    const hashing = request.hashing ?? startRunHashes(request.data, request.config);
    const { hashes } = hashing;
    const dataKeys: string[] = [];
    let configKey: string;
    let bucket: string;
    let identity: Identity;
    try {
      bucket = await this.backend.bucketOf(request.analysis);
      identity = await this.identity();
      await checkLocalFiles(request);
      for (const [index, file] of request.data.entries()) dataKeys.push(await this.stage(bucket, `${identity.group}/inputs/${basename(file)}`, file, listener, hashes[index]));
      configKey = await this.stage(bucket, `${identity.group}/configs/${basename(request.config)}`, request.config, listener, hashes[request.data.length]);
    } finally {
      // A failed staging leaves no hash running on (the command would wait for it to end).
      hashing.abort();
    }
    // Only now, with every upload complete, does the submission appear (the protocol reads the inputs at once).
    const { key, receipt } = await this.submit(bucket, identity, { dataname: dataKeys.length === 1 ? (dataKeys[0] as string) : dataKeys, configname: configKey, ...(request.instanceType ? { instance_type: request.instanceType } : {}) }, listener);
    listener.jobId?.(receipt.jobId);
    if (receipt.outcome === 'rejected') return this.backend.jobs.get(receipt.jobId, identity).catch(() => rejectedDetail(receipt, identity, bucket, key));
    let last: JobDetail | undefined;
    for await (const event of this.follow(receipt.jobId, undefined, listener.outputBacklogBytes)) {
      listener.follow?.(event);
      if (event.type === 'end') last = event.job;
    }
    return last ?? this.backend.jobs.get(receipt.jobId, identity);
  }

  /**
   * Uploads a local file unless the same bytes (sha256) are there already; never replaces
   * different ones. `hashed`: the file's hash when it is already being computed (run hashes
   * ahead, possibly long before this upload); else it is computed here, while S3 is asked
   * whether the key exists. Either way the file is stat'ed again right before it is compared and
   * uploaded, and hashed again if its size or mtime is no longer the hash's: a file regenerated
   * since its early hash must not be stored under the old sha256 (provenance and seeds read it).
   */
  async stage(bucket: string, key: string, file: string, listener: RunListener = {}, hashed?: Promise<FileHash>): Promise<string> {
    const { objects } = this.backend;
    if (isChainReservedKey(key)) {
      // On aws IAM refuses these names to researchers: they are how a chain hands results on.
      throw new KeyInvalidError(
        `${key}: names starting with "${CHAIN_NAME_PREFIX}" in inputs/ and configs/ are reserved for the platform's chain hand-offs; ` +
          `rename ${file} (e.g. ${basename(file).replace(new RegExp(`^${CHAIN_NAME_PREFIX}`), '')}) and run again`,
      );
    }
    const own = new AbortController();
    const hashing = hashed ?? hashFile(file, own.signal);
    hashing.catch(() => undefined);
    let local: FileHash;
    let exists: boolean;
    try {
      [exists, local] = await Promise.all([objects.head(bucket, key).then((found) => found !== undefined), hashing]);
      for (let rehashes = 0; ; rehashes += 1) {
        const info = await stat(file);
        if (info.size === local.sizeBytes && info.mtimeMs === local.mtimeMs) break;
        if (rehashes === HASH_ATTEMPTS) throw new FileChangedWhileHashingError(file);
        listener.step?.(`${file} changed since it was hashed; hashing it again`);
        local = await hashFile(file, own.signal);
      }
    } finally {
      own.abort();
    }
    const localSha = local.sha256;
    const info = { size: local.sizeBytes, mtimeMs: local.mtimeMs };
    if (exists) {
      const stored = await objects.sha256(bucket, key);
      if (stored !== localSha) {
        const why = stored === undefined ? 'and no sha256 recorded to compare with' : 'with different content';
        throw new ObjectExistsError(
          `${key} already exists in ${this.backend.locationOf(bucket, key)} ${why}; the platform never overwrites uploads. ` +
            `Rename ${file} (e.g. ${basename(file).replace(/(\.[^.]*)?$/, '-2$1')}) and run again`,
        );
      }
      listener.step?.(`using ${key} (already uploaded, identical)`);
      return key;
    }
    const onProgress: ProgressListener = (done, total) => listener.progress?.(file, done, total);
    try {
      await objects.upload(bucket, key, file, { sha256: localSha, sizeBytes: info.size, mtimeMs: info.mtimeMs, onProgress, onStep: (text) => listener.step?.(text) });
    } catch (error) {
      // Someone (a groupmate sharing a config, this user's other terminal) created it while this
      // upload ran or waited: fine if it is the same bytes.
      if (!(error instanceof ObjectExistsError)) throw error;
      const stored = await objects.sha256(bucket, key);
      if (stored !== localSha) {
        const why = stored === undefined ? 'with no sha256 recorded to compare with' : 'with different content';
        throw new ObjectExistsError(
          `${key} was created in ${this.backend.locationOf(bucket, key)} by another upload while ${file} was uploading, ${why}; nothing was overwritten. ` +
            `Rename ${file} (e.g. ${basename(file).replace(/(\.[^.]*)?$/, '-2$1')}) and run again`,
        );
      }
      listener.step?.(`using ${key} (uploaded meanwhile by someone else, identical)`);
      return key;
    }
    listener.step?.(`uploaded ${file} -> ${key}`);
    return key;
  }

  /**
   * Copies the job folder to `outDir`: several files at once, each through a temporary file
   * placed create-only; a file already there with the same bytes (sha256) is complete and
   * skipped (so an interrupted copy resumes); a different file there is never overwritten nor
   * called complete. Temps that killed copies of these files left are removed first (each
   * folder listed once). A full disk or a file where a folder must go is a `ResultsCopyError`
   * naming the file and what to do.
   */
  async results(jobId: string, outDir: string, options: { concurrency?: number; onProgress?: (file: string, doneBytes: number, totalBytes: number) => void } = {}): Promise<ResultsView> {
    const job = await this.job(jobId);
    const prefix = jobKeys(job.group, job.analysis, job.jobId).prefix;
    const objects = (await this.backend.objects.list(job.bucket, prefix)).filter((o) => !o.key.endsWith('/'));
    const skipped: string[] = [];
    const todo: { key: string; relative: string; target: string; size: number }[] = [];
    const refuse = (target: string, copied: number) =>
      new ObjectExistsError(`${target} already exists with different content; choose an empty --out folder (nothing was overwritten; ${copied} file(s) copied before this one)`);
    for (const object of objects) {
      const relative = object.key.slice(prefix.length);
      const target = join(outDir, ...relative.split('/'));
      const existing = await lstat(target).catch(() => undefined);
      if (existing) {
        if (existing.isFile() && existing.size === object.size && (await this.holdsSameBytes(job.bucket, object.key, target))) {
          skipped.push(relative);
          continue;
        }
        throw refuse(target, 0);
      }
      todo.push({ key: object.key, relative, target, size: object.size });
    }
    await removeLeftovers(objects.map((object) => join(outDir, ...object.key.slice(prefix.length).split('/'))));
    let next = 0;
    let copied = 0;
    let failure: unknown;
    const worker = async () => {
      // After a failure no new file starts; the ones under way finish (or fail) before the error is told.
      for (let item = todo[next++]; item && failure === undefined; item = todo[next++]) {
        const current = item;
        try {
          await mkdirForResults(outDir, dirname(current.target));
          try {
            await this.backend.objects.download(job.bucket, current.key, current.target, { onProgress: (done, total) => options.onProgress?.(current.relative, done, total) });
          } catch (error) {
            // Created meanwhile (another `results` into the same folder): fine only if it holds the same bytes.
            if (!(error instanceof ObjectExistsError)) throw error;
            if (!(await this.holdsSameBytes(job.bucket, current.key, current.target))) throw refuse(current.target, copied);
          }
          copied += 1;
        } catch (error) {
          failure ??= resultsCopyError(error, outDir, current.relative, current.size, copied + skipped.length);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? RESULTS_CONCURRENCY, Math.max(1, todo.length)) }, worker));
    if (failure !== undefined) throw failure;
    const files = objects.map((o) => o.key.slice(prefix.length)).sort();
    return { jobId, outDir, files, skipped: skipped.sort(), finished: job.phase === 'DONE' || job.phase === 'REJECTED' };
  }

  /** Whether the local `file` holds exactly the object's bytes: by its recorded sha256, else by downloading it aside. */
  private async holdsSameBytes(bucket: string, key: string, file: string): Promise<boolean> {
    const [stored, local] = await Promise.all([this.backend.objects.sha256(bucket, key), sha256OfFile(file)]);
    if (stored !== undefined) return stored === local;
    const aside = join(dirname(file), `.${basename(file)}.ncap-compare-${process.pid}`);
    try {
      await this.backend.objects.download(bucket, key, aside);
      return (await sha256OfFile(aside)) === local;
    } finally {
      await rm(aside, { force: true });
    }
  }

}

async function checkLocalFiles(request: RunRequest): Promise<void> {
  const problems: string[] = [];
  const names = new Map<string, string>();
  for (const [flag, path] of [...request.data.map((p) => ['--data', p] as const), ['--config', request.config] as const]) {
    const info = await stat(path).catch(() => undefined);
    if (!info) problems.push(`${flag} ${path}: no such file`);
    else if (!info.isFile()) problems.push(`${flag} ${path}: not a regular file`);
    if (flag === '--data') {
      const name = basename(path);
      const other = names.get(name);
      if (other !== undefined) problems.push(`--data ${path} and ${other} have the same file name "${name}"; datasets are named by file name, rename one`);
      names.set(name, path);
    }
  }
  if (problems.length > 0) throw new UsageError(problems.join('\n'));
}

/** A results copy that could not go on, with the file and what the researcher can do. */
export class ResultsCopyError extends NeuroCaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ResultsCopyFailed', message, options);
  }
}

/**
 * Removes the temps that killed copies of these result files left (removeStaleTemps), listing
 * each folder once: once per file made a copy of 10,000 files into one folder quadratic.
 */
async function removeLeftovers(targets: string[]): Promise<void> {
  const byDir = new Map<string, Set<string>>();
  for (const target of targets) {
    const names = byDir.get(dirname(target)) ?? new Set<string>();
    names.add(basename(target));
    byDir.set(dirname(target), names);
  }
  for (const [dir, names] of byDir) await removeStaleTemps(dir, names);
}

/** mkdir -p below `outDir`, saying which path is a file where a folder must go. */
async function mkdirForResults(outDir: string, dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
    // The first path from outDir down that exists and is not a folder.
    let blocker = dir;
    for (let at = dir; at.length >= outDir.length && at !== dirname(at); at = dirname(at)) {
      const info = await lstat(at).catch(() => undefined);
      if (info && !info.isDirectory()) blocker = at;
    }
    throw new ObjectExistsError(`${blocker} is a file, where the results need a folder; choose an empty --out folder (nothing was overwritten)`);
  }
}

function resultsCopyError(error: unknown, outDir: string, relative: string, sizeBytes: number, complete: number): unknown {
  if (error instanceof NeuroCaasError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const mib = (sizeBytes / (1024 * 1024)).toFixed(1);
  const resume = `${complete} file(s) are complete there and no part of ${relative} was kept`;
  if (isDiskFull(error)) {
    return new ResultsCopyError(
      `no space left on the disk of ${outDir} while copying ${relative} (${mib} MiB); ${resume}: free space (or choose an --out folder on another disk) and run the same command again: it resumes`,
      { cause: error },
    );
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new ResultsCopyError(`cannot write ${relative} into ${outDir} (${code === 'EROFS' ? 'read-only file system' : 'permission denied'}); ${resume}: choose an --out folder you can write to`, { cause: error });
  }
  return error;
}
