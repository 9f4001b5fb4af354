import { watch, type FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { jobOutcome } from '../../core/job-machine.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import { errorPayload, type Reporter } from '../reporter.js';

export interface ServeOptions {
  /** Polling interval for new submissions, ms. */
  pollMs?: number;
  /** Reaper interval, ms. */
  reapMs?: number;
  signal: AbortSignal;
}

/**
 * `neurocaas local serve`: the researcher workflow with plain file copies. Watches every local
 * bucket's `<group>/submissions/` and runs each new `*submit.json` once. Runs until aborted.
 */
export async function serveLocal(platform: LocalPlatform, reporter: Reporter, options: ServeOptions): Promise<number> {
  const pollMs = options.pollMs ?? 500;
  const reapMs = options.reapMs ?? 10_000;
  const seen = new Set<string>();
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
      for (const found of await platform.findSubmissions()) {
        const id = `${found.bucket}/${found.key}#${found.etag}`;
        if (seen.has(id)) continue;
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
  } catch {
    watcher = undefined;
  }
  const poller = setInterval(() => void scan(), pollMs);
  const reaper = setInterval(() => {
    void platform.reap().then(
      (result) => result.jobsRecovered.forEach((jobId) => reporter.warn(`job ${jobId} had lost its process; cancelled and settled`)),
      (error: unknown) => reporter.warn(`reaper failed: ${errorPayload(error).message}`),
    );
  }, reapMs);
  await platform.reap();
  await scan();

  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    options.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(poller);
  clearInterval(reaper);
  watcher?.close();
  reporter.step('stopping: cancelling running jobs');
  await platform.cancelOwned('the local server was stopped');
  await Promise.allSettled([...running]);
  return 0;
}

async function runOne(platform: LocalPlatform, bucket: string, key: string, reporter: Reporter): Promise<void> {
  try {
    const state = await platform.runSubmission(bucket, key, {
      onJobId: (jobId) => reporter.step(`${bucket}/${key}: job ${jobId}`),
    });
    reporter.step(`job ${state.jobId} (${bucket}): ${jobOutcome(state)}`);
  } catch (error) {
    reporter.warn(`${bucket}/${key} could not be processed: ${errorPayload(error).message}`);
  }
}
