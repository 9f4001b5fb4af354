import { constants } from 'node:fs';
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatUsd } from '../../core/cost.js';
import { JobNotFoundError, ObjectExistsError } from '../../core/errors.js';
import { isJobFinished, jobOutcome, renderCertificate, type JobState } from '../../core/job-machine.js';
import { jobKeys } from '../../core/keys.js';
import type { JobRecord } from '../../ports.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import { followJobLogs, reportJobResult } from './run.js';
import type { Reporter } from '../reporter.js';

async function loadJob(platform: LocalPlatform, jobId: string): Promise<JobRecord> {
  const record = await platform.jobs.get(jobId);
  if (!record) {
    const recent = (await platform.jobs.list()).slice(0, 5).map((job) => job.jobId);
    throw new JobNotFoundError(`job "${jobId}" not found under ${platform.root}; recent jobs: ${recent.join(', ') || 'none'} (see "neurocaas jobs")`);
  }
  return record;
}

/** `neurocaas jobs`: every job, newest first. Reaps orphaned jobs and machines first. */
export async function listJobs(platform: LocalPlatform, reporter: Reporter): Promise<number> {
  const reaped = await platform.reap();
  for (const jobId of reaped.jobsRecovered) reporter.warn(`job ${jobId} had lost its neurocaas process; it was cancelled and settled`);
  const jobs = await platform.jobs.list();
  const lines = jobs.map((job) => {
    const counts = new Map<string, number>();
    for (const ds of job.datasets) counts.set(ds.phase, (counts.get(ds.phase) ?? 0) + 1);
    const summary = [...counts].map(([phase, n]) => `${n} ${phase}`).join(', ');
    return `${job.jobId}  ${job.analysis.padEnd(18)} ${job.group.padEnd(10)} ${job.phase.padEnd(9)} ${summary}`;
  });
  reporter.result({ jobs }, lines.length > 0 ? lines.join('\n') : `no jobs under ${platform.root}`);
  return 0;
}

/** `neurocaas status <job>`: the job's state, every dataset's status and the certificate. */
export async function showStatus(platform: LocalPlatform, jobId: string, reporter: Reporter): Promise<number> {
  const record = await loadJob(platform, jobId);
  const state = record.state;
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  const statuses = [];
  for (const ds of state.datasets) {
    const text = await readFile(platform.objects.pathOf(record.bucket, keys.datasetStatus(ds.name)), 'utf8').catch(() => undefined);
    statuses.push(text ? (JSON.parse(text) as unknown) : { dataset: ds.name, status: ds.phase });
  }
  const human = [
    `job ${state.jobId} (${state.analysis}, group ${state.group}): ${jobOutcome(state)}`,
    ...state.datasets.map((ds) => `  ${ds.name}: ${ds.phase}${ds.reason ? ` - ${ds.reason}` : ''}`),
    state.spentUsd !== undefined ? `cost: ${formatUsd(state.spentUsd)}` : '',
    '',
    renderCertificate(state).trimEnd(),
  ].filter((line, index) => line !== '' || index > 0);
  reporter.result({ jobId, outcome: jobOutcome(state), phase: state.phase, datasets: statuses, certificate: renderCertificate(state) }, human.join('\n'));
  return 0;
}

/** `neurocaas logs <job>`: the workflow logs; with --follow, until the job ends. */
export async function showLogs(platform: LocalPlatform, jobId: string, follow: boolean, reporter: Reporter): Promise<number> {
  const record = await loadJob(platform, jobId);
  const { state } = record;
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  if (!follow) {
    const logs: Record<string, string> = {};
    const parts: string[] = [];
    for (const ds of state.datasets) {
      const text = await readFile(platform.objects.pathOf(record.bucket, keys.datasetLog(ds.name)), 'utf8').catch(() => '');
      logs[ds.name] = text;
      parts.push(state.datasets.length > 1 ? `==> ${ds.name} <==\n${text}` : text);
    }
    reporter.result({ jobId, logs }, parts.join('\n'));
    return 0;
  }
  const follower = followJobLogs(platform, record.bucket, state.group, jobId, state.datasets.map((ds) => ds.name), reporter);
  let latest: JobState = state;
  while (!isJobFinished(latest)) {
    await sleep(250);
    latest = (await platform.jobs.get(jobId))?.state ?? latest;
  }
  follower.stop();
  reporter.result({ jobId, outcome: jobOutcome(latest) }, `job ${jobId}: ${jobOutcome(latest)}`);
  return 0;
}

/** `neurocaas results <job> --out DIR`: copies the job's results folder; never overwrites a file. */
export async function fetchResults(platform: LocalPlatform, jobId: string, outDir: string, reporter: Reporter): Promise<number> {
  const record = await loadJob(platform, jobId);
  const { state } = record;
  const keys = jobKeys(state.group, state.analysis, state.jobId);
  const source = platform.objects.pathOf(record.bucket, keys.prefix.slice(0, -1));
  const files = await listFilesRecursive(source);
  const copied: string[] = [];
  for (const file of files) {
    const target = join(outDir, relative(source, file));
    await mkdir(dirname(target), { recursive: true });
    try {
      await copyFile(file, target, constants.COPYFILE_EXCL);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ObjectExistsError(`${target} already exists; choose an empty --out folder (nothing was overwritten; ${copied.length} file(s) copied before this one)`);
      }
      throw error;
    }
    copied.push(relative(outDir, target));
  }
  const note = isJobFinished(state) ? '' : ' (the job is still running: results are partial)';
  reporter.result({ jobId, outDir, files: copied, finished: isJobFinished(state) }, `copied ${copied.length} file(s) to ${outDir}${note}`);
  return 0;
}

/** `neurocaas cancel <job>`: cancels it, whichever process runs it, and waits until it has settled. */
export async function cancelJob(platform: LocalPlatform, jobId: string, reporter: Reporter): Promise<number> {
  const record = await loadJob(platform, jobId);
  if (isJobFinished(record.state)) {
    reporter.result({ jobId, outcome: jobOutcome(record.state), alreadyFinished: true }, `job ${jobId} already finished: ${jobOutcome(record.state)}`);
    return 0;
  }
  await platform.cancel(jobId, 'cancelled by the user (neurocaas cancel)');
  // The process that runs the job settles it as its machines exit; an orphan is settled by the reaper.
  const deadline = Date.now() + 15_000;
  let state = (await platform.jobs.get(jobId))?.state ?? record.state;
  while (!isJobFinished(state) && Date.now() < deadline) {
    await sleep(100);
    state = (await platform.jobs.get(jobId))?.state ?? state;
  }
  if (!isJobFinished(state)) await platform.reap();
  state = (await platform.jobs.get(jobId))?.state ?? state;
  // A cancelled job is what the user asked for: report it, exit 0.
  reportJobResult(platform, record.bucket, state, reporter);
  return 0;
}

async function listFilesRecursive(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFilesRecursive(full)));
    else if (entry.isFile() && !entry.name.startsWith('.ncap-tmp-')) files.push(full);
  }
  return files.sort();
}
