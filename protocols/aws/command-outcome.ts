import { logTailOf } from '../../lib/core/runner-rules.js';
import { DatasetStatusSchema, type DatasetFailure } from '../../lib/core/status.js';

/** What SSM says about a finished command (the runner's own exit, not the workflow's). */
export interface SsmCommandResult {
  status: string;
  exitCode: number | null;
  timedOut: boolean;
}

export interface CommandOutcome {
  exitCode: number | null;
  timedOut: boolean;
  logTail: string[];
  /** The runner's own failure (input not fetched, results not uploaded). */
  failure?: DatasetFailure;
}

/**
 * The workflow's outcome. The runner exits 0 after recording the workflow's result in the
 * status document, so that document is the authority; SSM's view only counts when the runner
 * never got that far (it crashed, or SSM killed it at executionTimeout).
 */
export function commandOutcome(statusText: string | undefined, ssm: SsmCommandResult): CommandOutcome {
  const parsed = statusText === undefined ? undefined : DatasetStatusSchema.safeParse(safeJson(statusText));
  const doc = parsed?.success ? parsed.data : undefined;
  if (doc && (doc.status === 'SUCCEEDED' || doc.status === 'FAILED' || doc.status === 'TIMED_OUT')) {
    const outcome: CommandOutcome = { exitCode: doc.exitCode ?? null, timedOut: doc.status === 'TIMED_OUT', logTail: doc.logTail };
    if (doc.status === 'FAILED' && doc.failure) outcome.failure = doc.failure;
    return outcome;
  }
  const reason = ssm.timedOut
    ? 'SSM stopped the command at its execution timeout'
    : `the runner ended (${ssm.status}, exit ${ssm.exitCode ?? 'unknown'}) without recording the workflow's result`;
  const outcome: CommandOutcome = { exitCode: ssm.timedOut ? null : (ssm.exitCode ?? null), timedOut: ssm.timedOut, logTail: [...(doc?.logTail ?? []), ...logTailOf(reason)] };
  // The runner did not get to say what happened: neither the researcher's analysis nor a timeout
  // of its own, so the platform is to blame.
  if (!ssm.timedOut) outcome.failure = { kind: 'platform', detail: reason };
  return outcome;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // A half-written or foreign object is treated as no status at all.
    return undefined;
  }
}
