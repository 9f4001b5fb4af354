import { parseBlueprint, type Blueprint, type BlueprintInput } from '../../lib/core/blueprint.js';
import { initialJobState, reduceJob, type JobEffect, type JobEvent, type JobState } from '../../lib/core/job-machine.js';
import { planJob, type JobPlan } from '../../lib/core/plan.js';
import type { UserProfile } from '../../lib/core/user.js';

export const T0 = Date.UTC(2026, 10, 22, 12, 0, 0);

export function blueprintFixture(overrides: Partial<BlueprintInput> = {}): Blueprint {
  return parseBlueprint(
    {
      schemaVersion: 1,
      name: 'kalman-smoother',
      description: 'Smooths keypoints.',
      environment: { ami: 'ami-0123456789abcdef0', local: { dir: 'env' } },
      workflow: { command: ['node', 'smooth.mjs'] },
      hardware: { instanceType: 'm5.xlarge', allowedInstanceTypes: ['m5.xlarge', 'm5.2xlarge'], volumeSizeGiB: 50 },
      limits: { timeoutMinutes: 60, maxConcurrentMachines: 2, agentWaitMinutes: 10, maxDatasetsPerJob: 10 },
      pricing: { hourlyUsd: { 'm5.xlarge': 0.192, 'm5.2xlarge': 0.384 } },
      config: {
        jsonSchema: {
          type: 'object',
          required: ['frameRateHz'],
          additionalProperties: false,
          properties: { frameRateHz: { type: 'number', exclusiveMinimum: 0 } },
        },
      },
      ...overrides,
    },
    'test blueprint',
  );
}

export const alice: UserProfile = {
  username: 'alice',
  group: 'lab',
  email: 'alice@example.org',
  budgetUsd: 100,
  budgetPeriod: 'monthly',
  allowedAnalyses: ['*'],
};

/** A valid plan with `datasets` inputs named d0.csv, d1.csv, ... */
export function planFixture(datasets = 2, blueprint: Blueprint = blueprintFixture()): JobPlan {
  const keys = Array.from({ length: datasets }, (_, i) => `lab/inputs/d${i}.csv`);
  const objects = new Map(keys.map((key) => [key, { size: 10, etag: `e-${key}`, sha256: 'ab'.repeat(32) }]));
  objects.set('lab/configs/c.json', { size: 20, etag: 'e-c', sha256: 'cd'.repeat(32) });
  const result = planJob({
    jobId: 'job1',
    analysis: blueprint.name,
    group: 'lab',
    submissionKey: 'lab/submissions/submit.json',
    submission: { dataname: keys, configname: 'lab/configs/c.json' },
    user: alice,
    blueprint,
    blueprintHash: 'sha256:00',
    objects,
    configText: '{"frameRateHz": 30}',
    imageId: 'ami-0123456789abcdef0',
    nowMs: T0,
  });
  if (!result.ok) throw new Error(result.reasons.join('\n'));
  return result.plan;
}

export interface Run {
  state: JobState;
  effects: JobEffect[];
}

/** Applies events in order, collecting every effect. */
export function applyAll(events: JobEvent[], start?: JobState): Run {
  let state = start ?? initialJobState('job1', 'kalman-smoother', 'lab', T0);
  const effects: JobEffect[] = [];
  for (const event of events) {
    const result = reduceJob(state, event);
    state = result.state;
    effects.push(...result.effects);
  }
  return { state, effects };
}

export function effectsOf<T extends JobEffect['type']>(effects: JobEffect[], type: T): Extract<JobEffect, { type: T }>[] {
  return effects.filter((effect): effect is Extract<JobEffect, { type: T }> => effect.type === type);
}

/** A submitted one-dataset job with its budget reserved, one machine at a time. */
export function oneDatasetJob(platformRetries = 2, timeoutMinutes = 60): JobEvent[] {
  const blueprint = blueprintFixture({
    limits: { timeoutMinutes, maxConcurrentMachines: 1, agentWaitMinutes: 10, maxDatasetsPerJob: 10, platformRetries },
  });
  return [
    { type: 'SubmissionReceived', atMs: T0, plan: planFixture(1, blueprint) },
    { type: 'BudgetReserved', atMs: T0 },
  ];
}
