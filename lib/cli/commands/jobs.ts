import { formatUsd } from '../../core/cost.js';
import type { ChainSummary, JobView } from '../../client/ports.js';
import { phaseCounts } from '../../client/views.js';

/*
 * `neurocaas jobs` as a researcher reads it: one line per job, newest first, except that a
 * chain is one unit (its first job's line, then every stage indented beneath it, then how the
 * chain as a whole stands) and an ensemble says how its replicas and consensus did.
 */

function jobLine(job: JobView): string {
  return `${job.jobId}  ${job.analysis.padEnd(18)} ${job.group.padEnd(10)} ${job.phase.padEnd(9)} ${phaseCounts(job.datasets)}`;
}

function ensembleNote(job: JobView): string {
  const e = job.ensemble;
  if (!e) return '';
  const failed = e.failedReplicas.length > 0 ? `; failed: ${e.failedReplicas.join(', ')}` : '';
  return `  [ensemble: ${e.replicasSucceeded} of ${e.replicas} replicas SUCCEEDED${failed}; consensus ${e.consensusPhase}]`;
}

function chainLines(summary: ChainSummary, byId: ReadonlyMap<string, JobView>): string[] {
  const lines = summary.jobs.map((stage) => {
    const member = byId.get(stage.jobId);
    const cost = stage.costUsd === undefined ? '' : `  ${formatUsd(stage.costUsd)}`;
    const note = member ? ensembleNote(member) : '';
    return `  ${'  '.repeat(Math.max(0, stage.stage - 1))}stage ${stage.stage}  ${stage.jobId}  ${stage.analysis.padEnd(18)} ${stage.outcome.padEnd(9)} ${phaseCounts(stage.datasets) || 'no datasets'}${cost}${note}`;
  });
  const started = Math.max(...summary.jobs.map((stage) => stage.stage));
  for (const [index, analysis] of (summary.pendingAnalyses ?? []).entries()) {
    lines.push(`  ${'  '.repeat(started + index)}stage ${started + index + 1}  (not started yet)  ${analysis}`);
  }
  const stopped = summary.stoppedAt ? `: stopped at stage ${summary.stoppedAt.stage}, job ${summary.stoppedAt.jobId}: ${summary.stoppedAt.reason}` : '';
  lines.push(`  chain ${summary.outcome}, ${summary.stages} stage(s), cost ${formatUsd(summary.costUsd)}${summary.outcome === 'RUNNING' ? ' so far' : ''}${stopped}`);
  return lines;
}

/** The human `jobs` listing; `jobs` as the client returned them (newest first). */
export function renderJobs(jobs: readonly JobView[]): string {
  if (jobs.length === 0) return 'no jobs';
  const byId = new Map(jobs.map((job) => [job.jobId, job]));
  const lines: string[] = [];
  for (const job of jobs) {
    // A later stage is shown under its chain's first job, when that job is listed.
    if (job.chain && job.chain.firstJobId !== job.jobId && byId.has(job.chain.firstJobId)) continue;
    lines.push(`${jobLine(job)}${ensembleNote(job)}`);
    if (job.chainSummary) lines.push(...chainLines(job.chainSummary, byId));
  }
  return lines.join('\n');
}
