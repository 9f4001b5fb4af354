import * as z from 'zod';

export const DATASET_PHASES = ['PENDING', 'LAUNCHING', 'BOOTING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELLED'] as const;
export type DatasetPhase = (typeof DATASET_PHASES)[number];

export const TERMINAL_PHASES: readonly DatasetPhase[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELLED'];

export function isTerminalPhase(phase: DatasetPhase): boolean {
  return TERMINAL_PHASES.includes(phase);
}

const isoTime = z.iso.datetime();

/**
 * Why a dataset did not succeed: `analysis` the workflow exited non-zero; `input` an input or the
 * submission could not be fetched, read or accepted; `platform` the platform failed it (no
 * machine, agent never online, machine lost, a result that could not be stored); `timeout` its
 * deadline passed; `cancelled` someone cancelled the job. Set on every non-SUCCEEDED terminal dataset.
 */
export const FAILURE_KINDS = ['analysis', 'input', 'platform', 'timeout', 'cancelled'] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export const DatasetFailureSchema = z.object({
  kind: z.enum(FAILURE_KINDS),
  /** What happened, in words a researcher can act on (e.g. the results that were not stored). */
  detail: z.string(),
});
export type DatasetFailure = z.infer<typeof DatasetFailureSchema>;

/** One earlier attempt of a dataset that a platform fault ended (its machine is gone). */
export const AttemptRecordSchema = z.object({
  attempt: z.number().int().min(1),
  instanceId: z.string().optional(),
  instanceType: z.string().optional(),
  market: z.enum(['on-demand', 'spot']).optional(),
  launched: isoTime.optional(),
  terminated: isoTime.optional(),
  failure: DatasetFailureSchema,
  /** What that attempt's machine cost, USD (0 when none was launched). */
  costUsd: z.number(),
});
export type AttemptRecordDocument = z.infer<typeof AttemptRecordSchema>;

/**
 * `logs/DATASET_NAME-<dataset>_STATUS.txt.json`: what a researcher (or a script) reads to know
 * how one dataset is doing. Written by the job manager on every transition and by the runner
 * while the workflow runs; both write this one shape.
 */
export const DatasetStatusSchema = z.object({
  schemaVersion: z.literal(1),
  jobId: z.string(),
  analysis: z.string(),
  dataset: z.string(),
  inputKey: z.string(),
  status: z.enum(DATASET_PHASES),
  reason: z.string().optional(),
  /** Present on every terminal dataset that did not succeed. */
  failure: DatasetFailureSchema.optional(),
  instanceId: z.string().optional(),
  instanceType: z.string().optional(),
  /** The market the current machine runs on. */
  market: z.enum(['on-demand', 'spot']).optional(),
  /** Which attempt this is (1 unless platform faults ended earlier ones). */
  attempt: z.number().int().min(1).optional(),
  /** The attempts platform faults ended, oldest first; `costUsd` includes what they cost. */
  earlierAttempts: z.array(AttemptRecordSchema).optional(),
  hourlyUsd: z.number().optional(),
  exitCode: z.number().int().nullable().optional(),
  costUsd: z.number().optional(),
  times: z.object({
    launchRequested: isoTime.optional(),
    launched: isoTime.optional(),
    agentOnline: isoTime.optional(),
    started: isoTime.optional(),
    finished: isoTime.optional(),
    terminated: isoTime.optional(),
    deadline: isoTime.optional(),
  }),
  logKey: z.string(),
  resultsPrefix: z.string(),
  logTail: z.array(z.string()),
  updatedAt: isoTime,
});

export type DatasetStatusDocument = z.infer<typeof DatasetStatusSchema>;

export function isoOf(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

export { logTailOf } from './runner-rules.js';
