import type { ScheduledAction } from '../../lib/ports.js';
import type { JobState } from '../../lib/core/job-machine.js';
import { CANCEL_SUFFIX, jobKeys } from '../../lib/core/keys.js';
import type { Receipt } from '../../lib/core/researcher-documents.js';
import { STUCK_SUBMISSION_MS } from '../../lib/core/reaper-due.js';
import { commandOutcome } from './command-outcome.js';
import { parseFailedSubmissions } from './failed-submission.js';
import type { Clock, JobStore, Machines, ObjectStore } from '../../lib/ports.js';
import type { JobDriver } from '../driver.js';
import type { DueJob } from '../../lib/aws/dynamo-job-store.js';
import type { AwsCommandRunner } from './platform.js';

/**
 * What the protocols use of a platform: the AWS platform has it, and so does the simulation
 * (sim/), which drives these same functions against simulated services.
 */
export interface ProtocolPlatform {
  driver: JobDriver;
  objects: ObjectStore;
  /** The job store plus the reaper's index of jobs due (DynamoJobStore on AWS). */
  jobs: JobStore & { listDue(nowMs: number): Promise<DueJob[]> };
  machines: Machines;
  runner: AwsCommandRunner;
  clock: Clock;
}

/**
 * The AWS protocols, each a thin translation of one kind of trigger into driver calls. The
 * handler files only parse their event and call these; tests call them with emulated clients.
 */

/** S3 ObjectCreated for `<group>/submissions/...submit.json` in an analysis bucket. */
export async function onSubmissionUploaded(platform: ProtocolPlatform, analysis: string, bucket: string, key: string): Promise<{ jobId: string; duplicate: boolean }> {
  return platform.driver.submit(bucket, key, { analysis });
}

/** S3 ObjectCreated for `<group>/submissions/<user>/<jobId>.cancel.json` (D2): the same function, routed by suffix. */
export async function onCancelUploaded(platform: ProtocolPlatform, bucket: string, key: string): Promise<Receipt> {
  return platform.driver.cancelRequest(bucket, key);
}

/** A delayed action from the agent queue: re-check a booting machine, or tick a job. */
export async function onScheduledAction(platform: ProtocolPlatform, action: ScheduledAction): Promise<JobState | undefined> {
  if (action.kind === 'tick') return platform.driver.dispatch(action.jobId, { type: 'Tick', atMs: platform.clock.nowMs() });
  return platform.driver.checkAgent(action);
}

/**
 * `EC2 Instance State-change Notification`: tell the machine's job. Machines that are not ours
 * are ignored. `eventTimeMs` is the event's own `time`; EC2's state-transition time wins over it.
 */
export async function onInstanceStateChange(platform: ProtocolPlatform, instanceId: string, state: string, eventTimeMs?: number): Promise<JobState | undefined> {
  const known = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'] as const;
  const machineState = known.find((s) => s === state);
  if (!machineState) return undefined;
  const machine = await platform.machines.describe(instanceId);
  if (!machine.jobId) return undefined;
  const ending = machineState === 'shutting-down' || machineState === 'terminated';
  const changedAtMs = ending ? (machine.terminatedAtMs ?? eventTimeMs) : undefined;
  return platform.driver.dispatch(machine.jobId, {
    type: 'InstanceStateChanged',
    atMs: platform.clock.nowMs(),
    instanceId,
    state: machineState,
    ...(changedAtMs !== undefined && Number.isFinite(changedAtMs) ? { stateChangedAtMs: changedAtMs } : {}),
  });
}

const FINAL_COMMAND_STATUSES = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'DeliveryTimedOut', 'ExecutionTimedOut', 'Undeliverable', 'Terminated']);

/** `EC2 Command Invocation Status-change Notification`: a runner finished (or SSM gave up on it). */
export async function onCommandStatusChange(platform: ProtocolPlatform, commandId: string, instanceId: string, status: string): Promise<JobState | undefined> {
  if (!FINAL_COMMAND_STATUSES.has(status)) return undefined;
  const machine = await platform.machines.describe(instanceId);
  if (!machine.jobId || !machine.dataset) return undefined;
  const record = await platform.jobs.get(machine.jobId);
  if (!record) return undefined;
  const ds = record.state.datasets.find((d) => d.name === machine.dataset);
  // Only the command this job sent counts; an operator's own SSM command is none of ours.
  if (!ds || (ds.commandId !== undefined && ds.commandId !== commandId)) return undefined;
  const keys = jobKeys(record.state.group, record.state.analysis, record.jobId);
  const statusText = await platform.objects.get(record.bucket, keys.datasetStatus(ds.name)).then(
    (body) => body.toString('utf8'),
    () => undefined,
  );
  const ssm = await platform.runner.commandResult(commandId, instanceId);
  const outcome = commandOutcome(statusText, ssm);
  return platform.driver.dispatch(record.jobId, { type: 'CommandFinished', atMs: platform.clock.nowMs(), dataset: ds.name, instanceId, ...outcome });
}

/**
 * `EC2 Spot Instance Interruption Warning`: EC2 reclaims a spot machine in two minutes. Its
 * job ends that attempt as a platform fault (and retries the dataset, on demand when the
 * blueprint says spot-then-on-demand). Machines that are not ours are ignored.
 */
export async function onSpotInterruption(platform: ProtocolPlatform, instanceId: string): Promise<JobState | undefined> {
  const machine = await platform.machines.describe(instanceId);
  if (!machine.jobId) return undefined;
  return platform.driver.dispatch(machine.jobId, { type: 'SpotInterruptionWarned', atMs: platform.clock.nowMs(), instanceId });
}

/** After this long unevaluated, the reaper stops retrying and tells the researcher why. */
export const GIVE_UP_SUBMISSION_MS = 30 * 60_000;

/**
 * A submission event the submit protocol still failed on after Lambda's retries (from the
 * failed-submissions queue): the researcher gets a certificate saying so, instead of silence.
 */
export async function onSubmissionFailedForGood(platform: ProtocolPlatform, analysis: string, bucket: string, key: string, errorMessage: string | undefined): Promise<{ jobId: string; rejected: boolean } | undefined> {
  const detail = errorMessage ? `: ${errorMessage.slice(0, 300)}` : '';
  return platform.driver.rejectUnprocessable(
    bucket,
    key,
    `the platform could not process this submission after several attempts${detail}. Nothing was launched and no budget is held; ` +
      'submit it again under a new name, and tell an admin if this repeats (the submit log has the details)',
    { analysis },
  );
}

/** What became of one failed-submissions message. */
export interface FailedSubmissionsOutcome {
  /** The message held no destination record (nothing to certify; left for an admin's eyes). */
  unrecognised: boolean;
  /** Submissions certified as rejected (or already past evaluation, left alone). */
  certified: { bucket: string; key: string; jobId: string; rejected: boolean }[];
  /** Records that were no submission (a cancel request, a key outside submissions/). */
  ignored: string[];
}

/**
 * One message of the failed-submissions queue (Lambda's on-failure record of an S3 event the
 * submit function kept failing on): every submission it names gets a certificate with the
 * reason. A failure here throws, so the queue redelivers the message later.
 */
export async function onFailedSubmissionsMessage(platform: ProtocolPlatform, analysis: string, body: string): Promise<FailedSubmissionsOutcome> {
  const submissions = parseFailedSubmissions(body);
  const outcome: FailedSubmissionsOutcome = { unrecognised: submissions.length === 0, certified: [], ignored: [] };
  for (const failed of submissions) {
    if (!failed.key.includes('/submissions/') || failed.key.endsWith(CANCEL_SUFFIX)) {
      outcome.ignored.push(failed.key);
      continue;
    }
    const result = await onSubmissionFailedForGood(platform, analysis, failed.bucket, failed.key, failed.errorMessage);
    // Undefined: the submission object is gone; there is nothing a certificate could be about.
    if (result) outcome.certified.push({ bucket: failed.bucket, key: failed.key, ...result });
    else outcome.ignored.push(failed.key);
  }
  return outcome;
}

/**
 * The third layer against leaked machines: terminates every tagged machine past its deadline,
 * ticks every unfinished job that is due (idle for a while or past a dataset deadline:
 * deadlines, retries) and finishes submissions whose first handling crashed. Machines come from
 * a deadline tag filter and jobs from the reaper's index, so a run costs what is due, not what
 * ever ran.
 */
export async function reap(platform: ProtocolPlatform): Promise<ReapResult> {
  const nowMs = platform.clock.nowMs();
  const result: ReapResult = { terminated: [], ticked: [], resumed: [], gaveUp: [], failed: [] };
  // One machine or job that fails must not stop the reaper from handling all the others.
  for (const machine of await platform.machines.listExpired(nowMs)) {
    try {
      await platform.machines.terminate(machine.instanceId);
      result.terminated.push(machine.instanceId);
    } catch (error) {
      result.failed.push({ id: machine.instanceId, error: messageOf(error) });
    }
  }
  for (const summary of await platform.jobs.listDue(nowMs)) {
    // A finished job is only due while effects (provenance, settlement, end.txt) are left in
    // its outbox, because they failed: the tick below carries them out.
    try {
      if (summary.phase === 'NEW') {
        if (nowMs - summary.createdAtMs < STUCK_SUBMISSION_MS) continue;
        const record = await platform.jobs.get(summary.jobId);
        if (!record) continue;
        if (nowMs - summary.createdAtMs >= GIVE_UP_SUBMISSION_MS) {
          await platform.driver.rejectUnprocessable(
            record.bucket,
            record.submissionKey,
            `the platform failed to evaluate this submission for ${GIVE_UP_SUBMISSION_MS / 60_000} min. Nothing was launched and no budget is held; ` +
              'submit it again under a new name, and tell an admin if this repeats',
            { analysis: record.state.analysis },
          );
          result.gaveUp.push(summary.jobId);
        } else {
          await platform.driver.submit(record.bucket, record.submissionKey, { analysis: record.state.analysis });
          result.resumed.push(summary.jobId);
        }
        continue;
      }
      await platform.driver.dispatch(summary.jobId, { type: 'Tick', atMs: nowMs });
      result.ticked.push(summary.jobId);
    } catch (error) {
      result.failed.push({ id: summary.jobId, error: messageOf(error) });
    }
  }
  return result;
}

export interface ReapResult {
  terminated: string[];
  ticked: string[];
  resumed: string[];
  /** Submissions that stayed unevaluated too long and were rejected with a reason. */
  gaveUp: string[];
  /** Machines or jobs the reaper could not handle this round (retried next round). */
  failed: { id: string; error: string }[];
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
