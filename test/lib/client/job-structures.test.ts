import { describe, expect, it } from 'vitest';
import { ensembleSummaryOf, linkJobStructures, type JobStructureFacts } from '../../../lib/client/job-structures.js';
import type { JobView } from '../../../lib/client/ports.js';
import { chainFactsOfCertificate, chainParentOf } from '../../../lib/client/s3-job-listing.js';
import { renderJobs } from '../../../lib/cli/commands/jobs.js';

function job(jobId: string, analysis: string, outcome: JobView['outcome'], extra: Partial<JobView> = {}): JobView {
  const phase = outcome === 'RUNNING' ? 'ACTIVE' : outcome === 'REJECTED' ? 'REJECTED' : 'DONE';
  const dsPhase = outcome === 'RUNNING' ? 'RUNNING' : outcome === 'REJECTED' ? undefined : outcome === 'CANCELLED' ? 'CANCELLED' : outcome;
  return {
    jobId,
    analysis,
    group: 'lab',
    user: 'alice',
    phase,
    outcome,
    createdAtMs: 0,
    updatedAtMs: 0,
    datasets: dsPhase ? [{ name: 'a.csv', phase: dsPhase }] : [],
    ...(outcome === 'REJECTED' ? {} : { costUsd: 0.01 }),
    ...extra,
  };
}

const facts = (entries: [string, JobStructureFacts][]) => new Map(entries);

describe('linking the chains of a job listing', () => {
  it('makes the first job the unit: every stage, SUCCEEDED when the last stage succeeded, and the total cost', () => {
    const jobs = [job('J3', 'two', 'SUCCEEDED'), job('J2', 'two', 'SUCCEEDED'), job('J1', 'one', 'SUCCEEDED')];

    const linked = linkJobStructures(
      jobs,
      facts([
        ['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 2 }] }],
        ['J2', { parentJobId: 'J1' }],
        ['J3', { parentJobId: 'J1' }],
      ]),
    );

    const first = linked.find((j) => j.jobId === 'J1');
    expect(first?.chain).toEqual({ stage: 1, firstJobId: 'J1', nextJobIds: ['J3', 'J2'], plannedNext: [{ analysis: 'two', jobs: 2 }] });
    expect(first?.chainSummary).toMatchObject({ outcome: 'SUCCEEDED', costUsd: 0.03, stages: 2 });
    expect(first?.chainSummary?.jobs.map((j) => [j.jobId, j.stage, j.parentJobId])).toEqual([
      ['J1', 1, undefined],
      ['J2', 2, 'J1'],
      ['J3', 2, 'J1'],
    ]);
    expect(linked.find((j) => j.jobId === 'J2')?.chain).toEqual({ stage: 2, firstJobId: 'J1', parentJobId: 'J1', nextJobIds: [] });
    expect(linked.find((j) => j.jobId === 'J2')?.chainSummary).toBeUndefined();
  });

  it('keeps the listing order and every field the listing gave', () => {
    const jobs = [job('J2', 'two', 'SUCCEEDED'), job('J1', 'one', 'SUCCEEDED'), job('J0', 'plain', 'FAILED')];

    const linked = linkJobStructures(jobs, facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }] }], ['J2', { parentJobId: 'J1' }]]));

    expect(linked.map((j) => j.jobId)).toEqual(['J2', 'J1', 'J0']);
    for (const [index, original] of jobs.entries()) expect(linked[index]).toMatchObject(original);
    expect(linked[2]?.chain).toBeUndefined();
  });

  it('is RUNNING while any stage runs, naming the stages still to come', () => {
    const linked = linkJobStructures(
      [job('J2', 'two', 'RUNNING'), job('J1', 'one', 'SUCCEEDED')],
      facts([
        ['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }, { analysis: 'three', jobs: 1 }] }],
        ['J2', { parentJobId: 'J1', stage: 2, plannedNext: [{ analysis: 'three', jobs: 1 }] }],
      ]),
    );

    expect(linked.find((j) => j.jobId === 'J1')?.chainSummary).toMatchObject({ outcome: 'RUNNING', stages: 3, pendingAnalyses: ['three'] });
  });

  it('is RUNNING, not SUCCEEDED, while a succeeded stage has not yet handed on to all its next jobs', () => {
    const linked = linkJobStructures([job('J2', 'two', 'SUCCEEDED'), job('J1', 'one', 'SUCCEEDED')], facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 2 }] }], ['J2', { parentJobId: 'J1', plannedNext: [] }]]));

    expect(linked.find((j) => j.jobId === 'J1')?.chainSummary?.outcome).toBe('RUNNING');
  });

  it('is FAILED at the stage that stopped it, with that stage and its reason named', () => {
    const failed = job('J2', 'two', 'FAILED', { datasets: [{ name: 'result.json', phase: 'FAILED', reason: 'workflow exited with code 3' }] });

    const linked = linkJobStructures([failed, job('J1', 'one', 'SUCCEEDED')], facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }] }], ['J2', { parentJobId: 'J1', plannedNext: [] }]]));

    expect(linked.find((j) => j.jobId === 'J1')?.chainSummary).toMatchObject({
      outcome: 'FAILED',
      stoppedAt: { jobId: 'J2', analysis: 'two', stage: 2, outcome: 'FAILED', reason: 'stage 2 (two) FAILED (result.json FAILED: workflow exited with code 3)' },
    });
  });

  it('is FAILED when the first stage failed and so nothing was handed on', () => {
    const linked = linkJobStructures([job('J1', 'one', 'FAILED')], facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }] }]]));

    expect(linked[0]?.chainSummary).toMatchObject({ outcome: 'FAILED', stages: 1, stoppedAt: { jobId: 'J1', stage: 1 } });
    expect(linked[0]?.chainSummary?.pendingAnalyses).toBeUndefined();
  });

  it('links a next stage the protocol refused through the job before it, and stops the chain there', () => {
    const linked = linkJobStructures([job('J2', 'two', 'REJECTED'), job('J1', 'one', 'SUCCEEDED')], facts([['J1', { stage: 1, nextJobIds: ['J2'], plannedNext: [{ analysis: 'two', jobs: 1 }] }]]));

    expect(linked.find((j) => j.jobId === 'J2')?.chain).toMatchObject({ stage: 2, firstJobId: 'J1', parentJobId: 'J1' });
    expect(linked.find((j) => j.jobId === 'J1')?.chainSummary).toMatchObject({ outcome: 'FAILED', stoppedAt: { jobId: 'J2', outcome: 'REJECTED', reason: 'stage 2 (two) was rejected' } });
  });

  it('is CANCELLED when the researcher cancelled a stage', () => {
    const linked = linkJobStructures([job('J2', 'two', 'CANCELLED'), job('J1', 'one', 'SUCCEEDED')], facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }] }], ['J2', { parentJobId: 'J1' }]]));

    expect(linked.find((j) => j.jobId === 'J1')?.chainSummary?.outcome).toBe('CANCELLED');
  });

  it('shows a later stage whose first job is not listed as the first of what is shown, at its own stage', () => {
    const linked = linkJobStructures([job('J2', 'two', 'SUCCEEDED')], facts([['J2', { parentJobId: 'J1', stage: 2, plannedNext: [] }]]));

    expect(linked[0]?.chain).toEqual({ stage: 2, firstJobId: 'J2', parentJobId: 'J1', nextJobIds: [], plannedNext: [] });
    expect(linked[0]?.chainSummary).toMatchObject({ outcome: 'SUCCEEDED', stages: 2 });
  });
});

describe('ensembles in a job listing', () => {
  it('reads replicas and the consensus by role, naming the replicas that failed', () => {
    const summary = ensembleSummaryOf([
      { name: 'replica-0', phase: 'SUCCEEDED', role: 'replica' },
      { name: 'replica-1', phase: 'FAILED', role: 'replica' },
      { name: 'replica-2', phase: 'SUCCEEDED', role: 'replica' },
      { name: 'consensus', phase: 'SUCCEEDED', role: 'consensus' },
    ]);

    expect(summary).toEqual({ replicas: 3, replicasSucceeded: 2, failedReplicas: ['replica-1'], consensusPhase: 'SUCCEEDED' });
  });

  it('tells an ensemble by its datasets\' names where the roles are not known, and gives them roles', () => {
    const linked = linkJobStructures([job('E1', 'pose', 'RUNNING', { datasets: [{ name: 'replica-0', phase: 'SUCCEEDED' }, { name: 'replica-1', phase: 'RUNNING' }, { name: 'consensus', phase: 'PENDING' }] })], new Map());

    expect(linked[0]?.ensemble).toEqual({ replicas: 2, replicasSucceeded: 1, failedReplicas: [], consensusPhase: 'PENDING' });
    expect(linked[0]?.datasets.map((ds) => ds.role)).toEqual(['replica', 'replica', 'consensus']);
  });

  it('does not take an ordinary job with a dataset named consensus for an ensemble', () => {
    expect(ensembleSummaryOf([{ name: 'consensus', phase: 'SUCCEEDED' }, { name: 'other.csv', phase: 'SUCCEEDED' }])).toBeUndefined();
  });
});

describe('what the aws listing reads of a chain', () => {
  it('takes the job a hand-off continues from its submission name', () => {
    expect(chainParentOf('lab/submissions/alice/chain-20261202T021500Z-ab12-0-submit.json')).toBe('20261202T021500Z-ab12');
    expect(chainParentOf('lab/submissions/alice/cli-20261202T021500Z-ab12-submit.json')).toBeUndefined();
  });

  it('reads the later stages and the parent from a running job\'s certificate', () => {
    const text = [
      '2026-12-02T02:15:00.000Z  chain: stage 2, started by job 20261202T021500Z-ab12 (one) with its results; its share of the chain was reserved by that job',
      '2026-12-02T02:15:00.000Z  chain: then three (2 job(s), $0.0017), then four (1 job(s), $0.01); the whole chain is reserved now',
    ].join('\n');

    expect(chainFactsOfCertificate(text)).toEqual({ stage: 2, parentJobId: '20261202T021500Z-ab12', plannedNext: [{ analysis: 'three', jobs: 2 }, { analysis: 'four', jobs: 1 }] });
  });
});

describe('the jobs listing a researcher reads', () => {
  it('shows a chain under its first job, each stage indented with its state and cost, then the chain as a whole', () => {
    const linked = linkJobStructures(
      [job('J2', 'two', 'FAILED'), job('J1', 'one', 'SUCCEEDED'), job('J0', 'plain', 'SUCCEEDED')],
      facts([['J1', { stage: 1, plannedNext: [{ analysis: 'two', jobs: 1 }] }], ['J2', { parentJobId: 'J1', plannedNext: [] }]]),
    );

    const lines = renderJobs(linked).split('\n');

    expect(lines).toEqual([
      expect.stringMatching(/^J1 {2}one\s+lab\s+DONE\s+1 SUCCEEDED$/),
      expect.stringMatching(/^ {2}stage 1 {2}J1 {2}one\s+SUCCEEDED\s+1 SUCCEEDED {2}\$0\.01$/),
      expect.stringMatching(/^ {4}stage 2 {2}J2 {2}two\s+FAILED\s+1 FAILED {2}\$0\.01$/),
      '  chain FAILED, 2 stage(s), cost $0.02: stopped at stage 2, job J2: stage 2 (two) FAILED (a.csv FAILED)',
      expect.stringMatching(/^J0 {2}plain\s+lab\s+DONE\s+1 SUCCEEDED$/),
    ]);
  });

  it('says how an ensemble\'s replicas and consensus did on its line', () => {
    const linked = linkJobStructures([job('E1', 'pose', 'SUCCEEDED', { datasets: [{ name: 'replica-0', phase: 'FAILED' }, { name: 'replica-1', phase: 'SUCCEEDED' }, { name: 'consensus', phase: 'SUCCEEDED' }] })], new Map());

    expect(renderJobs(linked)).toMatch(/^E1 {2}pose .*\[ensemble: 1 of 2 replicas SUCCEEDED; failed: replica-0; consensus SUCCEEDED\]$/);
  });
});
