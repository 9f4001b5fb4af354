import { describe, expect, it } from 'vitest';
import { folderFactsOf, formatByteLimit, planJob, SUBMISSION_LIMITS, type ObjectFacts, type PlanInput } from '../../../lib/core/plan.js';
import { unescapeDatasetName } from '../../../lib/core/keys.js';
import { T0, alice, blueprintFixture } from '../../support/core-fixtures.js';

function input(overrides: Partial<PlanInput> = {}): PlanInput {
  const objects = new Map([
    ['lab/inputs/a.csv', { size: 10, etag: 'ea' }],
    ['lab/inputs/b.csv', { size: 11, etag: 'eb' }],
    ['lab/configs/c.yaml', { size: 5, etag: 'ec' }],
  ]);
  return {
    jobId: 'J1',
    analysis: 'kalman-smoother',
    group: 'lab',
    submissionKey: 'lab/submissions/submit.json',
    submission: { dataname: ['lab/inputs/a.csv', 'lab/inputs/b.csv'], configname: 'lab/configs/c.yaml' },
    user: alice,
    blueprint: blueprintFixture(),
    blueprintHash: 'sha256:ab',
    objects,
    configText: 'frameRateHz: 30\n',
    imageId: 'ami-1',
    nowMs: T0,
    ...overrides,
  };
}

function reasons(overrides: Partial<PlanInput>): string[] {
  const result = planJob(input(overrides));
  if (result.ok) throw new Error('expected a rejection');
  return result.reasons;
}

describe('planning a submission', () => {
  it('accepts a valid submission with a YAML config and prices it', () => {
    const result = planJob(input());
    if (!result.ok) throw new Error(result.reasons.join('; '));
    expect(result.plan.datasets.map((d) => d.name)).toEqual(['a.csv', 'b.csv']);
    expect(result.plan.config).toEqual({ frameRateHz: 30 });
    expect(result.plan.instanceType).toBe('m5.xlarge');
    // instance + 50 GiB gp3 root volume, for the timeout + a reaper period + termination
    expect(result.plan.reservedUsd).toBeCloseTo(2 * (0.192 + (50 * 0.08) / 730) * (70 / 60), 5);
    expect(result.plan.budgetPeriod).toBe('2026-11');
  });

  it('honours an allowed instance_type and its price', () => {
    const base = input();
    const result = planJob({ ...base, submission: { ...base.submission, instance_type: 'm5.2xlarge' } });
    expect(result.ok && result.plan.hourlyUsd).toBe(0.384);
  });

  it('reports every problem of a bad submission at once', () => {
    const base = input();
    const found = reasons({
      submission: { dataname: ['other/inputs/a.csv', 'lab/inputs/missing.csv', 'lab/inputs/../x'], configname: 'lab/configs/c.yaml', instance_type: 'p4d.24xlarge' },
      configText: 'frameRateHz: fast\n',
    });
    expect(found).toEqual([
      'dataname: key "other/inputs/a.csv" is outside your group "lab"; it must start with "lab/inputs/"',
      'dataname: dataset "lab/inputs/missing.csv" does not exist; upload it first',
      'dataname: key "lab/inputs/../x" contains ".."; paths may not step out of their folder',
      'config key "frameRateHz" must be number, got "fast" (in lab/configs/c.yaml)',
      'instance_type "p4d.24xlarge" is not allowed for "kalman-smoother"; choose one of: m5.xlarge, m5.2xlarge',
    ]);
    expect(base.objects.size).toBe(3);
  });

  it('rejects a config over the limit with the limit it enforces, and accepts one at the limit', () => {
    const limit = SUBMISSION_LIMITS.maxConfigBytes;
    const over = (size: number) => input({ objects: new Map([...input().objects, ['lab/configs/c.yaml', { size, etag: 'ec' }]]) });
    const stated = /a config may be at most (\d+) (GiB|MiB|KiB|bytes) /.exec(reasons(over(limit + 1)).join('\n'));
    const unit = { GiB: 1024 ** 3, MiB: 1024 ** 2, KiB: 1024, bytes: 1 };
    expect(stated && Number(stated[1]) * unit[stated[2] as keyof typeof unit]).toBe(limit);
    expect(planJob(over(limit)).ok).toBe(true);
  });

  it('states a byte limit exactly, in the largest unit it is a whole number of', () => {
    expect(formatByteLimit(1_048_576)).toBe('1 MiB');
    expect(formatByteLimit(2 * 1024 ** 3)).toBe('2 GiB');
    expect(formatByteLimit(1536)).toBe('1536 bytes');
    expect(formatByteLimit(1_500_000)).toBe('1500000 bytes');
    expect(formatByteLimit(0)).toBe('0 bytes');
  });

  it('rejects an unknown analysis', () => {
    expect(reasons({ blueprint: undefined })[0]).toContain('analysis "kalman-smoother" does not exist');
  });

  it('rejects a user outside the group or without the analysis', () => {
    expect(reasons({ user: { ...alice, group: 'other' } })[0]).toContain('belongs to group "other"');
    expect(reasons({ user: { ...alice, allowedAnalyses: ['dlc'] } })[0]).toContain('may not run "kalman-smoother"');
    expect(reasons({ user: undefined })[0]).toContain('no user profile found for group "lab"');
  });

  it('rejects more datasets than the blueprint allows per job', () => {
    const blueprint = blueprintFixture({ limits: { timeoutMinutes: 60, maxDatasetsPerJob: 1 } });
    expect(reasons({ blueprint })[0]).toContain('too many datasets: 2 named, "kalman-smoother" allows at most 1');
  });

  it('rejects a dataset named twice and a config that is missing or unparsable', () => {
    expect(reasons({ submission: { dataname: ['lab/inputs/a.csv', 'lab/inputs/a.csv'], configname: 'lab/configs/c.yaml' } })).toContain(
      'dataname: "lab/inputs/a.csv" is named twice; name each dataset once',
    );
    expect(reasons({ configText: undefined })).toContain('configname: config "lab/configs/c.yaml" does not exist; upload it first');
    expect(reasons({ configText: 'a: [1,\n' })[0]).toContain('config lab/configs/c.yaml is not valid YAML');
  });

  it('names unknown and missing config keys precisely', () => {
    expect(reasons({ configText: 'frameRate: 30\n' })).toEqual([
      'config key "frameRateHz" is required but missing (in lab/configs/c.yaml)',
      'config has an unknown key "frameRate" (in lab/configs/c.yaml)',
    ]);
  });
});

describe('planning folder datasets and the job input size', () => {
  const GiB = 1024 ** 3;
  const withFolder = (facts: ObjectFacts, extra: Partial<PlanInput> = {}): PlanInput => {
    const base = input(extra);
    const objects = new Map(base.objects);
    objects.set('lab/inputs/session1/', facts);
    return { ...base, objects, submission: { dataname: ['lab/inputs/session1/', 'lab/inputs/a.csv'], configname: 'lab/configs/c.yaml' }, ...extra };
  };

  it('plans a folder dataset under a name that keeps its trailing slash reversibly', () => {
    const result = planJob(withFolder(folderFactsOf([{ key: 'lab/inputs/session1/f1.tif', size: 3, etag: 'e1' }])));
    if (!result.ok) throw new Error(result.reasons.join('; '));
    expect(result.plan.datasets.map((d) => d.name)).toEqual(['session1%2F', 'a.csv']);
    expect(unescapeDatasetName('session1%2F')).toBe('session1/');
    expect(result.plan.datasets[0]?.input).toMatchObject({ size: 3, objectCount: 1 });
  });

  it('rejects an empty folder dataset, saying what to upload', () => {
    expect(reasons(withFolder(folderFactsOf([])))).toEqual([
      'dataname: folder dataset "lab/inputs/session1/" is empty (no objects under it); upload its files under "lab/inputs/session1/" first',
    ]);
  });

  it('rejects a folder key with an empty folder name', () => {
    const found = reasons({ submission: { dataname: ['lab/inputs/session1//'], configname: 'lab/configs/c.yaml' } });
    expect(found).toEqual(['dataname: key "lab/inputs/session1//" has an empty folder name ("//"); a folder dataset ends in exactly one "/"']);
  });

  it('rejects a job whose inputs exceed the blueprint\'s maxJobInputGiB, naming the largest', () => {
    const blueprint = blueprintFixture({ limits: { timeoutMinutes: 60, maxConcurrentMachines: 2, agentWaitMinutes: 10, maxDatasetsPerJob: 10, maxJobInputGiB: 2 } });
    const found = reasons(withFolder({ size: 2 * GiB, etag: 'folder:x', objectCount: 400 }, { blueprint }));
    expect(found).toEqual([
      'dataname: the job\'s inputs are 2.00 GiB in 2 dataset(s), above the 2 GiB per job "kalman-smoother" allows (largest: "lab/inputs/session1/", 2.00 GiB); split the datasets over several submissions, or ask the analysis developer to raise limits.maxJobInputGiB',
    ]);
  });

  it('accepts a job exactly at its input size limit', () => {
    const blueprint = blueprintFixture({ limits: { timeoutMinutes: 60, maxConcurrentMachines: 2, agentWaitMinutes: 10, maxDatasetsPerJob: 10, maxJobInputGiB: 1 } });
    const base = input({ blueprint });
    const objects = new Map(base.objects);
    objects.set('lab/inputs/a.csv', { size: GiB - 11, etag: 'ea' });
    expect(planJob({ ...base, objects }).ok).toBe(true);
  });

  it('gives a folder another etag when any object under it changes', () => {
    const before = folderFactsOf([{ key: 'lab/inputs/s/a', size: 1, etag: 'x' }, { key: 'lab/inputs/s/b', size: 1, etag: 'y' }]);
    const reordered = folderFactsOf([{ key: 'lab/inputs/s/b', size: 1, etag: 'y' }, { key: 'lab/inputs/s/a', size: 1, etag: 'x' }]);
    const changed = folderFactsOf([{ key: 'lab/inputs/s/a', size: 1, etag: 'x' }, { key: 'lab/inputs/s/b', size: 1, etag: 'z' }]);
    expect(reordered.etag).toBe(before.etag);
    expect(changed.etag).not.toBe(before.etag);
  });
});
