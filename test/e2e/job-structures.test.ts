/**
 * The job structures end to end with the real CLI on the local backend: the ensemble-pose
 * sample (replicas and consensus) and the widefield chain (denoise, then demix).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonWithNumpy } from '../support/python.js';
import { createSandbox, createSharedSandbox, EXIT, JobFolder, repoBlueprintsDir, transcript, type CliResult, type Sandbox } from './helpers.js';

describe('a run of the ensemble-pose sample', () => {
  const sampleDir = path.join(repoBlueprintsDir, 'ensemble-pose', 'sample');
  let sandbox: Sandbox & { dispose(): Promise<void> };
  let result: CliResult;
  let job: JobFolder;

  beforeAll(async () => {
    pythonWithNumpy();
    sandbox = await createSharedSandbox();
    const config = await sandbox.config('ensemble.json', { ensemble_size: 3, epochs: 20 });
    result = await sandbox.cli(['run', 'ensemble-pose', '--data', path.join(sampleDir, 'video.npz'), '--config', config, '--user', 'alice'], {
      blueprintsDir: repoBlueprintsDir,
      timeoutMs: 150_000,
    });
    job = await JobFolder.single(sandbox.root, 'ensemble-pose', 'lab');
  }, 180_000);
  afterAll(async () => sandbox.dispose());

  it('exits 0 with every replica and the consensus SUCCEEDED', () => {
    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    expect(result.stdout).toMatch(/replica-0: SUCCEEDED[\s\S]*replica-2: SUCCEEDED[\s\S]*consensus: SUCCEEDED/);
  });

  it('runs one machine per replica, each with its own seed, then one for the consensus', async () => {
    const provenance = await job.provenance();
    expect(provenance.machines.map((m) => m.dataset)).toEqual(['replica-0', 'replica-1', 'replica-2', 'consensus']);
    const seeds = provenance.machines.filter((m) => m.role === 'replica').map((m) => m.seed);
    expect(new Set(seeds).size).toBe(3);
    expect(provenance.ensemble).toEqual({ dataset: 'video.npz', size: 3, minSucceeded: 3 });
    for (const replica of [0, 1, 2]) {
      const summary = JSON.parse(await job.text(`process_results/replica-${replica}/replica.json`));
      expect(summary).toMatchObject({ replica, seed: seeds[replica] });
    }
  });

  it('hands every replica\'s output to the consensus, whose results land under consensus/', async () => {
    const summary = JSON.parse(await job.text('process_results/consensus/consensus.json'));
    expect(summary.replicas).toEqual([0, 1, 2]);
    expect(summary.consensusRmsePx).toBeLessThanOrEqual(summary.medianReplicaRmsePx);
    expect(job.has('process_results/consensus/ensemble-spread.svg')).toBe(true);
    expect(await job.certificate()).toContain('consensus: 3 of 3 replicas succeeded; combining replica-0, replica-1, replica-2');
  });

  it('jobs shows the ensemble as one job, with its replicas and consensus', async () => {
    const listed = await sandbox.cli(['jobs', '--user', 'alice'], { blueprintsDir: repoBlueprintsDir });
    const json = await sandbox.cli(['jobs', '--user', 'alice', '--json'], { blueprintsDir: repoBlueprintsDir });

    expect(listed.code, transcript(listed)).toBe(0);
    expect(listed.stdout.trim()).toMatch(new RegExp(`^${job.jobId}\\s+ensemble-pose\\s+lab\\s+DONE\\s+4 SUCCEEDED {2}\\[ensemble: 3 of 3 replicas SUCCEEDED; consensus SUCCEEDED\\]$`));
    const [view] = (JSON.parse(json.stdout) as { jobs: { ensemble?: unknown; datasets: { role?: string }[] }[] }).jobs;
    expect(view?.ensemble).toEqual({ replicas: 3, replicasSucceeded: 3, failedReplicas: [], consensusPhase: 'SUCCEEDED' });
    expect(view?.datasets.map((ds) => ds.role)).toEqual(['replica', 'replica', 'replica', 'consensus']);
  });
});

describe('an ensemble submission the protocol refuses', () => {
  let sandbox: Sandbox & { dispose(): Promise<void> };
  beforeAll(async () => {
    sandbox = await createSharedSandbox();
  });
  afterAll(async () => sandbox.dispose());

  it('refuses an ensemble_size above the blueprint\'s limit with the reason, launching nothing', async () => {
    const sampleDir = path.join(repoBlueprintsDir, 'ensemble-pose', 'sample');
    const config = await sandbox.config('big.json', { ensemble_size: 40 });
    const result = await sandbox.cli(['run', 'ensemble-pose', '--data', path.join(sampleDir, 'video.npz'), '--config', config, '--user', 'alice'], {
      blueprintsDir: repoBlueprintsDir,
    });
    expect(result.code, transcript(result)).toBe(EXIT.rejected);
    expect(result.stderr).toContain('ensemble_size');
    const job = await JobFolder.single(sandbox.root, 'ensemble-pose', 'lab');
    expect(job.has('process_results')).toBe(false);
  });
});

describe('a run of the widefield chain (denoise, then demix)', () => {
  const sampleDir = path.join(repoBlueprintsDir, 'widefield-denoise', 'sample');
  let sandbox: Sandbox & { dispose(): Promise<void> };
  let result: CliResult;
  let first: JobFolder;
  let second: JobFolder;

  beforeAll(async () => {
    pythonWithNumpy();
    sandbox = await createSharedSandbox();
    result = await sandbox.cli(['run', 'widefield-denoise', '--data', path.join(sampleDir, 'movie.npz'), '--config', path.join(sampleDir, 'config.json'), '--user', 'alice'], {
      blueprintsDir: repoBlueprintsDir,
      timeoutMs: 150_000,
    });
    first = await JobFolder.single(sandbox.root, 'widefield-denoise', 'lab');
    second = await JobFolder.single(sandbox.root, 'widefield-demix', 'lab');
  }, 180_000);
  afterAll(async () => sandbox.dispose());

  it('follows both stages to the end and exits 0', () => {
    expect(result.code, transcript(result)).toBe(EXIT.succeeded);
    expect(result.stdout).toMatch(/job \S+: SUCCEEDED[\s\S]*chain: following the next stage, job \S+[\s\S]*job \S+: SUCCEEDED/);
  });

  it('hands stage 1\'s compressed movie to stage 2, whose maps and time courses arrive', async () => {
    const files = await second.files();
    expect(files.some((f) => f.endsWith('/maps.svg'))).toBe(true);
    expect(files.some((f) => f.endsWith('/time_courses.csv'))).toBe(true);
    const provenance = await second.provenance();
    expect(provenance.inputs[0]?.key).toMatch(/^lab\/inputs\/chain-[^/]+\/movie\.npz\/compressed\.npz$/);
  });

  it('links the two jobs: the first certificate names the next job, the next provenance names the first', async () => {
    const firstProvenance = await first.provenance();
    const secondProvenance = await second.provenance();
    expect(secondProvenance.chain).toMatchObject({ stage: 2, parent: { jobId: firstProvenance.jobId, analysis: 'widefield-denoise' } });
    expect(secondProvenance.user).toBe(firstProvenance.user);
    expect(await first.certificate()).toContain(`chain: next stage widefield-demix is job ${secondProvenance.jobId}`);
    expect(await first.certificate()).toContain(`chain: next stage widefield-demix job ${secondProvenance.jobId} SUCCEEDED`);
  });

  it('reserved the whole chain up front and settled each stage on its own', async () => {
    const firstProvenance = await first.provenance();
    expect(firstProvenance.chain?.next).toEqual([expect.objectContaining({ analysis: 'widefield-demix', jobs: 1 })]);
    expect(firstProvenance.cost.reservedUsd).toBeGreaterThan(firstProvenance.chain?.next[0]?.reservedUsd ?? Infinity);
    expect((await second.provenance()).cost.spentUsd).toBeGreaterThan(0);
  });

  it('jobs shows the chain as one unit: the first job, each stage indented with its state and cost, then the chain SUCCEEDED with its total cost', async () => {
    const result = await sandbox.cli(['jobs', '--user', 'alice'], { blueprintsDir: repoBlueprintsDir });

    expect(result.code, transcript(result)).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^${first.jobId}\\s+widefield-denoise\\s+lab\\s+DONE\\s+1 SUCCEEDED$`)),
      expect.stringMatching(new RegExp(`^ {2}stage 1 {2}${first.jobId} {2}widefield-denoise\\s+SUCCEEDED\\s+1 SUCCEEDED {2}\\$\\d+\\.\\d+$`)),
      expect.stringMatching(new RegExp(`^ {4}stage 2 {2}${second.jobId} {2}widefield-demix\\s+SUCCEEDED\\s+1 SUCCEEDED {2}\\$\\d+\\.\\d+$`)),
      expect.stringMatching(/^ {2}chain SUCCEEDED, 2 stage\(s\), cost \$\d+\.\d+$/),
    ]);
  });

  it('jobs --json gives both jobs, linked, and the chain on its first job', async () => {
    const result = await sandbox.cli(['jobs', '--user', 'alice', '--json'], { blueprintsDir: repoBlueprintsDir });

    expect(result.code, transcript(result)).toBe(0);
    const { jobs } = JSON.parse(result.stdout) as { jobs: { jobId: string; costUsd?: number; chain?: unknown; chainSummary?: { outcome: string; costUsd: number; jobs: { jobId: string; stage: number }[] } }[] };
    const head = jobs.find((j) => j.jobId === first.jobId);
    const tail = jobs.find((j) => j.jobId === second.jobId);
    expect(tail?.chain).toEqual({ stage: 2, firstJobId: first.jobId, parentJobId: first.jobId, nextJobIds: [], plannedNext: [] });
    expect(head?.chainSummary?.outcome).toBe('SUCCEEDED');
    expect(head?.chainSummary?.jobs.map((j) => [j.jobId, j.stage])).toEqual([
      [first.jobId, 1],
      [second.jobId, 2],
    ]);
    expect(head?.chainSummary?.costUsd).toBeCloseTo((head?.costUsd ?? 0) + (tail?.costUsd ?? 0), 6);
  });
});

describe('validate on chains', () => {
  it('rejects a follow-on to an analysis that does not exist, naming it, and exits 2', async () => {
    const sandbox = await createSandbox();
    const file = await sandbox.file(
      'dangling/blueprint.json',
      JSON.stringify({
        schemaVersion: 1,
        name: 'dangling',
        description: 'x',
        environment: { local: { dir: 'env' } },
        workflow: { command: ['run'] },
        hardware: { instanceType: 'm5.large' },
        limits: { timeoutMinutes: 10 },
        pricing: { hourlyUsd: { 'm5.large': 0.096 } },
        config: { jsonSchema: { type: 'object' } },
        followOn: { analysis: 'no-such-analysis', inputs: { file: 'out.npz' } },
      }),
    );

    const result = await sandbox.cli(['validate', file, '--json']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    const report = JSON.parse(result.stdout) as { checks: { file: string; ok: boolean; problem?: string }[] };
    const chains = report.checks.find((check) => check.file.startsWith('chains in '));
    expect(chains?.ok).toBe(false);
    expect(chains?.problem).toContain('dangling: followOn.analysis "no-such-analysis" is not among the analyses');
  });
});
