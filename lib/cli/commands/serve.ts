import { watch, type FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isJobFinished, jobOutcome } from '../../core/job-machine.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import { errorPayload, type Reporter } from '../reporter.js';

/** How long a submission file must stay unchanged before it is taken, ms. */
const STABLE_MS = 300;
/** How long a recently changed submission that does not parse yet is given to be completed, ms. */
const UNPARSABLE_GRACE_MS = 3_000;

async function parsesAsJson(platform: LocalPlatform, bucket: string, key: string): Promise<boolean> {
  try {
    JSON.parse((await platform.objects.get(bucket, key)).toString('utf8'));
    return true;
  } catch {
    // Unparsable or vanished: either way, not ready to be taken yet.
    return false;
  }
}

export interface ServeOptions {
  /** Polling interval for new submissions, ms; default 500. */
  pollMs?: number;
  /** Reaper interval (orphaned jobs of dead processes are resumed), ms; default 2000. */
  reapMs?: number;
  signal: AbortSignal;
}

/** How long a stopping server waits for its cancelled jobs to end before killing their machines, ms. */
const STOP_WAIT_MS = 1_200;
/** After killing the machines, how long their exits are given to be recorded, ms. */
const KILL_SETTLE_MS = 300;

/**
 * `neurocaas local serve`: the researcher workflow with plain file copies. Watches every local
 * bucket's `<group>/submissions/` and runs each new `*submit.json` once. Runs until aborted.
 */
export async function serveLocal(platform: LocalPlatform, reporter: Reporter, options: ServeOptions): Promise<number> {
  const pollMs = options.pollMs ?? 500;
  const reapMs = options.reapMs ?? 2_000;
  const seen = new Set<string>();
  // A submission is taken only once it has stopped changing (a copy may still be writing it).
  const settling = new Map<string, { etag: string; sinceMs: number }>();
  const running = new Set<Promise<void>>();
  const bucketsDir = join(platform.root, 'buckets');
  await mkdir(bucketsDir, { recursive: true });
  reporter.step(`watching ${bucketsDir}/<analysis>/<group>/submissions/ for *submit.json (Ctrl-C to stop)`);

  let scanning = false;
  let rescan = false;
  const scan = async (): Promise<void> => {
    if (scanning) {
      rescan = true;
      return;
    }
    scanning = true;
    try {
      const now = Date.now();
      for (const found of await platform.findSubmissions()) {
        const path = `${found.bucket}/${found.key}`;
        const id = `${path}#${found.etag}`;
        if (seen.has(id)) continue;
        const previous = settling.get(path);
        if (!previous || previous.etag !== found.etag) {
          settling.set(path, { etag: found.etag, sinceMs: now });
          setTimeout(() => void scan(), STABLE_MS + 10).unref();
          continue;
        }
        if (now - previous.sinceMs < STABLE_MS) continue;
        if (now - found.lastModifiedMs < UNPARSABLE_GRACE_MS && !(await parsesAsJson(platform, found.bucket, found.key))) {
          // Probably still being written by a slow copy; an old unparsable file is rejected.
          setTimeout(() => void scan(), UNPARSABLE_GRACE_MS).unref();
          continue;
        }
        settling.delete(path);
        seen.add(id);
        const run = runOne(platform, found.bucket, found.key, reporter).finally(() => running.delete(run));
        running.add(run);
      }
    } catch (error) {
      reporter.warn(`scanning for submissions failed: ${errorPayload(error).message}`);
    } finally {
      scanning = false;
      if (rescan) {
        rescan = false;
        void scan();
      }
    }
  };

  let watcher: FSWatcher | undefined;
  try {
    // Recursive watching makes pick-up immediate where supported; polling covers the rest.
    watcher = watch(bucketsDir, { recursive: true }, (_event, name) => {
      if (name && String(name).endsWith('submit.json')) void scan();
    });
    watcher.on('error', () => watcher?.close());
  } catch (error) {
    // Recursive watching is not available everywhere; polling alone still works.
    reporter.warn(`file watching unavailable (${errorPayload(error).message}); polling every ${pollMs} ms`);
    watcher = undefined;
  }
  const poller = setInterval(() => void scan(), pollMs);
  // This server resumes jobs whose neurocaas process died (a killed `run`, another server).
  platform.becomeResumer();
  let reaping = false;
  const reapOnce = async (): Promise<void> => {
    if (reaping || options.signal.aborted) return;
    reaping = true;
    try {
      const result = await platform.reap();
      for (const jobId of result.jobsRecovered) reporter.warn(`job ${jobId} had lost its process; cancelled and settled`);
      for (const jobId of result.jobsResumed) {
        reporter.warn(`job ${jobId} had lost its process; resumed here`);
        const run = followOne(platform, jobId, reporter).finally(() => running.delete(run));
        running.add(run);
      }
    } catch (error) {
      reporter.warn(`reaper failed: ${errorPayload(error).message}`);
    } finally {
      reaping = false;
    }
  };
  const reaper = setInterval(() => void reapOnce(), reapMs);
  await reapOnce();
  await scan();

  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    options.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(poller);
  clearInterval(reaper);
  watcher?.close();
  reporter.step('stopping: cancelling running jobs');
  // Bounded: the server is gone within ~2 s. Jobs another server can resume are handed over;
  // a job whose machines had to be killed before it ended is finished by the next command.
  await platform.cancelOwned('the local server was stopped', { maxWaitMs: STOP_WAIT_MS, handOver: true });
  platform.machines.killOwnedNow();
  await Promise.race([Promise.allSettled([...running]), new Promise((r) => setTimeout(r, KILL_SETTLE_MS).unref())]);
  return 0;
}

async function followOne(platform: LocalPlatform, jobId: string, reporter: Reporter): Promise<void> {
  const state = await platform.waitForJob(jobId);
  reporter.step(`job ${state.jobId}: ${isJobFinished(state) ? jobOutcome(state) : `left ${state.phase}; the next neurocaas command finishes it`}`);
}

async function runOne(platform: LocalPlatform, bucket: string, key: string, reporter: Reporter): Promise<void> {
  try {
    const { jobId, duplicate } = await platform.startSubmission(bucket, key);
    // Processed before (by an earlier server or by `neurocaas run`): nothing to do.
    if (duplicate) return;
    reporter.step(`${bucket}/${key}: job ${jobId}`);
    const state = await platform.waitForJob(jobId);
    reporter.step(`job ${state.jobId} (${bucket}): ${isJobFinished(state) ? jobOutcome(state) : `left ${state.phase}; the next neurocaas command finishes it`}`);
  } catch (error) {
    reporter.warn(`${bucket}/${key} could not be processed: ${errorPayload(error).message}`);
  }
}
