import type { ScheduledAction } from '../../lib/ports.js';
import type { JobState } from '../../lib/core/job-machine.js';
import { jobKeys } from '../../lib/core/keys.js';
import type { Receipt } from '../../lib/core/researcher-documents.js';
import { STUCK_SUBMISSION_MS } from '../../lib/core/reaper-due.js';
import { commandOutcome } from './command-outcome.js';
import type { AwsPlatform } from './platform.js';

/**
 * The AWS protocols, each a thin translation of one kind of trigger into driver calls. The
 * handler files only parse their event and call these; tests call them with emulated clients.
 */

/** S3 ObjectCreated for `<group>/submissions/...submit.json` in an analysis bucket. */
export async function onSubmissionUploaded(platform: AwsPlatform, analysis: string, bucket: string, key: string): Promise<{ jobId: string; duplicate: boolean }> {
  return platform.driver.submit(bucket, key, { analysis });
}

/** S3 ObjectCreated for `<group>/submissions/<user>/<jobId>.cancel.json` (D2): the same function, routed by suffix. */
export async function onCancelUploaded(platform: AwsPlatform, bucket: string, key: string): Promise<Receipt> {
  return platform.driver.cancelRequest(bucket, key);
}

/** A delayed action from the agent queue: re-check a booting machine, or tick a job. */
export async function onScheduledAction(platform: AwsPlatform, action: ScheduledAction): Promise<JobState | undefined> {
  if (action.kind === 'tick') return platform.driver.dispatch(action.jobId, { type: 'Tick', atMs: platform.clock.nowMs() });
  return platform.driver.checkAgent(action);
}

/** `EC2 Instance State-change Notification`: tell the machine's job. Machines that are not ours are ignored. */
export async function onInstanceStateChange(platform: AwsPlatform, instanceId: string, state: string): Promise<JobState | undefined> {
  const known = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'] as const;
  const machineState = known.find((s) => s === state);
  if (!machineState) return undefined;
  const machine = await platform.machines.describe(instanceId);
  if (!machine.jobId) return undefined;
  return platform.driver.dispatch(machine.jobId, { type: 'InstanceStateChanged', atMs: platform.clock.nowMs(), instanceId, state: machineState });
}

const FINAL_COMMAND_STATUSES = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'DeliveryTimedOut', 'ExecutionTimedOut', 'Undeliverable', 'Terminated']);

/** `EC2 Command Invocation Status-change Notification`: a runner finished (or SSM gave up on it). */
export async function onCommandStatusChange(platform: AwsPlatform, commandId: string, instanceId: string, status: string): Promise<JobState | undefined> {
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
  return platform.driver.dispatch(record.jobId, { type: 'CommandFinished', atMs: platform.clock.nowMs(), dataset: ds.name, ...outcome });
}

/**
 * The third layer against leaked machines: terminates every tagged machine past its deadline,
 * ticks every unfinished job that is due (idle for a while or past a dataset deadline:
 * deadlines, retries) and finishes submissions whose first handling crashed. Machines come from
 * a deadline tag filter and jobs from the reaper's index, so a run costs what is due, not what
 * ever ran.
 */
export async function reap(platform: AwsPlatform): Promise<{ terminated: string[]; ticked: string[]; resumed: string[] }> {
  const nowMs = platform.clock.nowMs();
  const terminated: string[] = [];
  for (const machine of await platform.machines.listExpired(nowMs)) {
    await platform.machines.terminate(machine.instanceId);
    terminated.push(machine.instanceId);
  }
  const ticked: string[] = [];
  const resumed: string[] = [];
  for (const summary of await platform.jobs.listDue(nowMs)) {
    if (summary.phase === 'DONE' || summary.phase === 'REJECTED') continue;
    if (summary.phase === 'NEW') {
      if (nowMs - summary.createdAtMs < STUCK_SUBMISSION_MS) continue;
      const record = await platform.jobs.get(summary.jobId);
      if (!record) continue;
      await platform.driver.submit(record.bucket, record.submissionKey, { analysis: record.state.analysis });
      resumed.push(summary.jobId);
      continue;
    }
    await platform.driver.dispatch(summary.jobId, { type: 'Tick', atMs: nowMs });
    ticked.push(summary.jobId);
  }
  return { terminated, ticked, resumed };
}
