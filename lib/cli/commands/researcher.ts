/**
 * The researcher commands: each parses nothing, calls one use-case of the client layer and
 * renders its result through the reporter. The same code runs on both backends.
 */
import { formatUsd } from '../../core/cost.js';
import { SubmissionRejectedError, UsageError } from '../../core/errors.js';
import { SUBMISSION_LIMITS } from '../../core/plan.js';
import { configTooLargeMessage } from '../../client/configs.js';
import { stat } from 'node:fs/promises';
import { jobKeys } from '../../core/keys.js';
import type { JobDetail } from '../../client/ports.js';
import type { ResearcherClient, RunRequest } from '../../client/researcher-client.js';
import type { Reporter } from '../reporter.js';
import { followChain } from './follow-chain.js';
import { renderJobs } from './jobs.js';

/** Exit codes: 0 all datasets succeeded, 1 a dataset failed / timed out / was cancelled, 2 usage, 3 rejected. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_REJECTED = 3;

/**
 * Refuses a --config over the platform's limit (`SUBMISSION_LIMITS.maxConfigBytes`)
 * before it is hashed or uploaded: the protocol would reject it anyway, after a copy of however
 * many gigabytes it is.
 */
export async function checkConfigSize(config: string): Promise<void> {
  const info = await stat(config).catch(() => undefined);
  if (!info?.isFile() || info.size <= SUBMISSION_LIMITS.maxConfigBytes) return; // Missing files are named by run itself.
  throw new UsageError(
    `${configTooLargeMessage(`--config ${config}`, info.size)}: ` +
      'give data files with --data; nothing was uploaded',
  );
}

/** `neurocaas run`: stage, submit, follow to the end, report. */
export async function runAnalysis(client: ResearcherClient, request: RunRequest, reporter: Reporter): Promise<number> {
  let jobId = '';
  const job = await client.run(request, {
    step: (text) => reporter.step(text),
    progress: (file, done, total) => reporter.progress?.(`uploading ${file}`, done, total),
    jobId: (id) => {
      jobId = id;
    },
    follow: (event) => {
      if (event.type === 'log') reporter.logLine(event.dataset, event.line);
      else if (event.type === 'certificate') reporter.step(`[${jobId}] ${event.line}`);
    },
    // A pipe to a slow reader queues writes in memory: follow the logs no faster than it reads.
    outputBacklogBytes: () => process.stdout.writableLength,
  });
  // A chain is one unit: run follows every stage to its end.
  return followChain(client, job, reporter, reportJobResult(client, job, reporter));
}

/** Prints where results are, each dataset's status and the cost; returns the exit code. */
export function reportJobResult(client: ResearcherClient, job: JobDetail, reporter: Reporter): number {
  const { backend } = client;
  const keys = jobKeys(job.group, job.analysis, job.jobId);
  const resultsDir = backend.locationOf(job.bucket, keys.prefix.slice(0, -1));
  const datasets = job.datasets.map((ds) => ({
    name: ds.name,
    status: ds.phase,
    reason: ds.reason,
    exitCode: ds.exitCode,
    instanceId: ds.instanceId,
    results: backend.locationOf(job.bucket, keys.datasetResultsPrefix(ds.name).slice(0, -1)),
    log: backend.locationOf(job.bucket, keys.datasetLog(ds.name)),
  }));
  const lines = [
    '',
    `job ${job.jobId}: ${job.outcome}`,
    ...(job.rejection ?? []).map((reason) => `  rejected: ${reason}`),
    ...datasets.map((ds) => `  ${ds.name}: ${ds.status}${ds.exitCode !== undefined && ds.exitCode !== null ? ` (exit ${ds.exitCode})` : ''}${ds.reason ? ` - ${ds.reason}` : ''}`),
    `results: ${resultsDir}`,
  ];
  if (job.reservedUsd !== undefined && job.instanceType !== undefined && job.hourlyUsd !== undefined) {
    lines.push(`cost on AWS: ${formatUsd(job.costUsd ?? 0)} (${job.datasets.length} x ${job.instanceType} at ${formatUsd(job.hourlyUsd)}/h; ${formatUsd(job.reservedUsd)} was reserved)`);
  }
  reporter.result(
    {
      jobId: job.jobId,
      analysis: job.analysis,
      group: job.group,
      user: job.user,
      outcome: job.outcome,
      rejection: job.rejection,
      resultsDir,
      datasets,
      costUsd: job.costUsd,
      reservedUsd: job.reservedUsd,
      instanceType: job.instanceType,
    },
    lines.join('\n'),
  );
  if (job.outcome === 'SUCCEEDED') return 0;
  if (job.outcome === 'REJECTED') {
    // The reason is an error the researcher must act on: say it where errors go, too.
    reporter.error(new SubmissionRejectedError(`job ${job.jobId} was rejected, nothing ran:\n${(job.rejection ?? []).map((r) => `  - ${r}`).join('\n')}`, job.jobId));
    return EXIT_REJECTED;
  }
  return EXIT_FAILED;
}

/** `neurocaas jobs`: newest first, a chain as one unit (see jobs.ts). */
export async function listJobs(client: ResearcherClient, reporter: Reporter): Promise<number> {
  const { jobs, notices } = await client.jobs();
  for (const notice of notices) reporter.warn(notice);
  reporter.result({ jobs }, renderJobs(jobs));
  return 0;
}

/** `neurocaas status <job>`: the job, every dataset's status document and the certificate. */
export async function showStatus(client: ResearcherClient, jobId: string, reporter: Reporter): Promise<number> {
  const { job, statuses, certificate } = await client.status(jobId);
  const human = [
    `job ${job.jobId} (${job.analysis}, group ${job.group}): ${job.outcome}`,
    ...job.datasets.map((ds) => `  ${ds.name}: ${ds.phase}${ds.reason ? ` - ${ds.reason}` : ''}`),
    job.costUsd !== undefined && job.phase === 'DONE' ? `cost: ${formatUsd(job.costUsd)}` : '',
    '',
    certificate.trimEnd(),
  ].filter((line, index) => line !== '' || index > 0);
  reporter.result({ jobId: job.jobId, user: job.user, outcome: job.outcome, phase: job.phase, costUsd: job.costUsd, datasets: statuses, certificate }, human.join('\n'));
  return 0;
}

/** `neurocaas logs <job> [--follow]`. */
export async function showLogs(client: ResearcherClient, jobId: string, follow: boolean, reporter: Reporter): Promise<number> {
  if (!follow) {
    const { job, logs } = await client.logs(jobId);
    const parts = job.datasets.map((ds) => (job.datasets.length > 1 ? `==> ${ds.name} <==\n${logs[ds.name] ?? ''}` : (logs[ds.name] ?? '')));
    reporter.result({ jobId: job.jobId, logs }, parts.join('\n'));
    return 0;
  }
  let outcome = 'RUNNING';
  for await (const event of client.follow(jobId, undefined, () => process.stdout.writableLength)) {
    if (event.type === 'log') reporter.logLine(event.dataset, event.line);
    else if (event.type === 'end') outcome = event.job.outcome;
  }
  reporter.result({ jobId, outcome }, `job ${jobId}: ${outcome}`);
  return 0;
}

/** `neurocaas results <job> --out DIR`: parallel, resumable, never overwrites. */
export async function fetchResults(client: ResearcherClient, jobId: string, outDir: string, reporter: Reporter): Promise<number> {
  const view = await client.results(jobId, outDir, { onProgress: (file, done, total) => reporter.progress?.(`downloading ${file}`, done, total) });
  const copied = view.files.length - view.skipped.length;
  const note = view.finished ? '' : ' (the job is still running: results are partial)';
  const skipped = view.skipped.length > 0 ? ` (${view.skipped.length} already complete)` : '';
  reporter.result(view, `copied ${copied} file(s) to ${outDir}${skipped}${note}`);
  return 0;
}

/** `neurocaas cancel <job>`: through the protocol (D2), then waits until the job has settled. */
export async function cancelJob(client: ResearcherClient, jobId: string, reporter: Reporter): Promise<number> {
  const view = await client.cancel(jobId, 'neurocaas cancel');
  if (view.alreadyFinished) {
    reporter.result({ jobId, outcome: view.job.outcome, alreadyFinished: true }, `job ${jobId} already finished: ${view.job.outcome}`);
    return 0;
  }
  // A cancelled job is what the user asked for: report it, exit 0.
  reportJobResult(client, view.job, reporter);
  return 0;
}

/** `neurocaas budget`: spent, reserved and left this period. */
export async function showBudget(client: ResearcherClient, reporter: Reporter): Promise<number> {
  const view = await client.budget();
  const doc = view.budget;
  if (!doc) {
    reporter.result(
      { user: view.user, group: view.group, budget: null },
      `no budget view for ${view.user} (group ${view.group}) yet: it appears once a job of yours has reserved budget`,
    );
    return 0;
  }
  const human = [
    `budget of ${doc.user} (group ${doc.group}), period ${doc.period}`,
    `  budget:   ${formatUsd(doc.budgetUsd)}`,
    `  spent:    ${formatUsd(doc.spentUsd)}`,
    `  reserved: ${formatUsd(doc.reservedUsd)} (running jobs)`,
    `  left:     ${formatUsd(doc.leftUsd)}`,
    ...doc.jobs.map((job) => `  ${job.jobId} ${job.analysis ?? ''} ${job.settled ? `spent ${formatUsd(job.spentUsd)}` : `reserved ${formatUsd(job.reservedUsd)}`}`),
  ];
  reporter.result({ user: doc.user, group: doc.group, budget: doc }, human.join('\n'));
  return 0;
}
