import type { DatasetPhase } from '../core/status.js';
import type { ChainSummary, EnsembleSummary, JobChainLink, JobView } from './ports.js';

/*
 * Chains and ensembles as one unit in a job listing, the same on both backends and in a
 * browser bundle (no Node built-ins). Each listing says what it knows of every job on its own
 * (`JobStructureFacts`); linkJobStructures puts the chains together across the whole listing.
 */

/** What a listing knows of one job's place in a chain before the jobs are linked. */
export interface JobStructureFacts {
  /** The job this one continues (from its plan on local, from its hand-off submission's name on aws). */
  parentJobId?: string;
  /** Its stage when the job itself says (1 for a chain's first job). */
  stage?: number;
  /** Next-stage jobs it knows it started (local: the job's own record of them). */
  nextJobIds?: string[];
  /** The stages planned after this one, in order; undefined when not known (aws: a job still being accepted). */
  plannedNext?: { analysis: string; jobs: number }[];
}

/** The chain's outcome, from its stages: running while any runs or a hand-off is still due. */
function chainOutcome(members: readonly JobView[], handOffDue: boolean): { outcome: ChainSummary['outcome']; stoppedAt?: JobView } {
  if (members.some((job) => job.outcome === 'RUNNING')) return { outcome: 'RUNNING' };
  // The earliest stage that did not succeed is where the chain stopped.
  const stopped = [...members].filter((job) => job.outcome !== 'SUCCEEDED').sort((a, b) => (a.chain?.stage ?? 0) - (b.chain?.stage ?? 0))[0];
  if (stopped) return { outcome: stopped.outcome === 'CANCELLED' ? 'CANCELLED' : 'FAILED', stoppedAt: stopped };
  return { outcome: handOffDue ? 'RUNNING' : 'SUCCEEDED' };
}

function roundUsd(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

function stopReason(job: JobView): string {
  if (job.outcome === 'REJECTED') return `stage ${job.chain?.stage ?? '?'} (${job.analysis}) was rejected`;
  const failed = job.datasets.filter((ds) => ds.phase !== 'SUCCEEDED').map((ds) => `${ds.name} ${ds.phase}${ds.reason ? `: ${ds.reason}` : ''}`);
  return `stage ${job.chain?.stage ?? '?'} (${job.analysis}) ${job.outcome}${failed.length > 0 ? ` (${failed.join('; ')})` : ''}`;
}

/**
 * An ensemble's datasets as replicas and the consensus: the roles when the listing knows them
 * (local), else from the names the protocol gives them ("replica-<n>" and "consensus", aws).
 */
export function ensembleSummaryOf(datasets: JobView['datasets']): EnsembleSummary | undefined {
  const consensus = datasets.find((ds) => ds.role === 'consensus') ?? (datasets.every((ds) => ds.name === 'consensus' || /^replica-\d+$/.test(ds.name)) ? datasets.find((ds) => ds.name === 'consensus') : undefined);
  if (!consensus) return undefined;
  const replicas = datasets.filter((ds) => ds !== consensus);
  if (replicas.length === 0) return undefined;
  return {
    replicas: replicas.length,
    replicasSucceeded: replicas.filter((ds) => ds.phase === 'SUCCEEDED').length,
    failedReplicas: replicas.filter((ds) => ds.phase !== 'SUCCEEDED' && isEnded(ds.phase)).map((ds) => ds.name),
    consensusPhase: consensus.phase,
  };
}

function isEnded(phase: DatasetPhase): boolean {
  return phase === 'SUCCEEDED' || phase === 'FAILED' || phase === 'TIMED_OUT' || phase === 'CANCELLED';
}

/**
 * Links the chains of a listing: every job of a chain gets `chain` (its stage, the chain's
 * first job, the job it continues, the next jobs it started), the first job also gets
 * `chainSummary` (every stage, the chain's outcome, where it stopped, the total cost), and an
 * ensemble's job gets `ensemble`. Jobs keep their order and every existing field; a follow-on
 * whose first job is not in the listing is the first of what is shown.
 */
export function linkJobStructures(jobs: readonly JobView[], facts: ReadonlyMap<string, JobStructureFacts>): JobView[] {
  const byId = new Map(jobs.map((job) => [job.jobId, job]));
  const parentOf = new Map<string, string>();
  for (const job of jobs) {
    const fact = facts.get(job.jobId);
    if (fact?.parentJobId !== undefined && byId.has(fact.parentJobId)) parentOf.set(job.jobId, fact.parentJobId);
    // A next stage the protocol refused has no plan, but the job before knows it.
    for (const next of fact?.nextJobIds ?? []) if (byId.has(next) && !parentOf.has(next)) parentOf.set(next, job.jobId);
  }
  const children = new Map<string, string[]>();
  for (const [child, parent] of parentOf) children.set(parent, [...(children.get(parent) ?? []), child]);
  const inChain = (jobId: string) => parentOf.has(jobId) || children.has(jobId) || (facts.get(jobId)?.plannedNext?.length ?? 0) > 0 || facts.get(jobId)?.parentJobId !== undefined;

  const out = jobs.map((job): JobView => {
    const view: JobView = { ...job };
    const ensemble = ensembleSummaryOf(job.datasets);
    if (ensemble) {
      view.ensemble = ensemble;
      // The same shape on both backends: roles named where the listing could only tell them by
      // name, replicas by index and the consensus last (the aws listing reads them in key order).
      const replicaIndex = (name: string) => Number(/^replica-(\d+)$/.exec(name)?.[1] ?? Number.MAX_SAFE_INTEGER);
      view.datasets = job.datasets
        .map((ds): JobView['datasets'][number] => (ds.role !== undefined ? ds : { ...ds, role: ds.name === 'consensus' ? 'consensus' : 'replica' }))
        .sort((a, b) => (a.role === 'consensus' ? 1 : 0) - (b.role === 'consensus' ? 1 : 0) || replicaIndex(a.name) - replicaIndex(b.name));
    }
    if (!inChain(job.jobId)) return view;
    let first = job.jobId;
    let depth = 0;
    // Bounded by the listing's size: a loop (never written by the protocol) cannot hang the listing.
    for (let parent = parentOf.get(first); parent !== undefined && depth < jobs.length; parent = parentOf.get(first)) {
      first = parent;
      depth += 1;
    }
    const fact = facts.get(job.jobId);
    const firstStage = facts.get(first)?.stage ?? (first === job.jobId ? fact?.stage : undefined) ?? 1;
    const nextJobIds = [...new Set([...(fact?.nextJobIds ?? []), ...(children.get(job.jobId) ?? [])])];
    const link: JobChainLink = { stage: first === job.jobId ? (fact?.stage ?? 1) : firstStage + depth, firstJobId: first, nextJobIds };
    const parent = parentOf.get(job.jobId) ?? fact?.parentJobId;
    if (parent !== undefined) link.parentJobId = parent;
    if (fact?.plannedNext) link.plannedNext = fact.plannedNext;
    view.chain = link;
    return view;
  });

  const linked = new Map(out.map((job) => [job.jobId, job]));
  for (const job of out) {
    if (!job.chain || job.chain.firstJobId !== job.jobId) continue;
    const members: JobView[] = [];
    const visit = (jobId: string) => {
      const member = linked.get(jobId);
      if (!member || members.includes(member)) return;
      members.push(member);
      for (const next of member.chain?.nextJobIds ?? []) visit(next);
    };
    visit(job.jobId);
    members.sort((a, b) => (a.chain?.stage ?? 0) - (b.chain?.stage ?? 0) || (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
    // A stage that succeeded still owes its next stage while fewer next jobs are seen than planned.
    const handOffDue = members.some((member) => {
      const planned = member.chain?.plannedNext?.[0];
      return member.outcome === 'SUCCEEDED' && planned !== undefined && (member.chain?.nextJobIds.length ?? 0) < planned.jobs;
    });
    const { outcome, stoppedAt } = chainOutcome(members, handOffDue);
    const last = members.reduce((deepest, member) => ((member.chain?.stage ?? 0) > (deepest.chain?.stage ?? 0) ? member : deepest), job);
    const pending = handOffDue || outcome === 'RUNNING' ? (last.chain?.plannedNext ?? []).map((stage) => stage.analysis) : [];
    const summary: ChainSummary = {
      outcome,
      costUsd: roundUsd(members.reduce((sum, member) => sum + (member.costUsd ?? 0), 0)),
      stages: Math.max(...members.map((member) => member.chain?.stage ?? 1)) + pending.length,
      jobs: members.map((member) => ({
        jobId: member.jobId,
        analysis: member.analysis,
        stage: member.chain?.stage ?? 1,
        ...(member.chain?.parentJobId === undefined ? {} : { parentJobId: member.chain.parentJobId }),
        phase: member.phase,
        outcome: member.outcome,
        ...(member.costUsd === undefined ? {} : { costUsd: member.costUsd }),
        datasets: member.datasets,
      })),
    };
    if (pending.length > 0) summary.pendingAnalyses = pending;
    if (stoppedAt) summary.stoppedAt = { jobId: stoppedAt.jobId, analysis: stoppedAt.analysis, stage: stoppedAt.chain?.stage ?? 1, outcome: stoppedAt.outcome, reason: stopReason(stoppedAt) };
    job.chainSummary = summary;
  }
  return out;
}
