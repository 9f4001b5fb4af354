import type { EventBridgeEvent } from 'aws-lambda';
import * as z from 'zod';
import { createLambdaContext } from '../lambda-context.js';
import { onCommandStatusChange, onInstanceStateChange, onSpotInterruption } from '../protocols.js';

const { platform, logger } = createLambdaContext('neurocaas-monitor', import.meta.url);

const InstanceDetail = z.object({ 'instance-id': z.string(), state: z.string() });
const CommandDetail = z.object({ 'command-id': z.string(), 'instance-id': z.string(), status: z.string() });
const SpotDetail = z.object({ 'instance-id': z.string(), 'instance-action': z.string().optional() });

/** EC2 state changes, SSM command status changes and spot interruption warnings -> the jobs they belong to. */
export async function handler(event: EventBridgeEvent<string, unknown>): Promise<void> {
  if (event['detail-type'] === 'EC2 Instance State-change Notification') {
    const detail = InstanceDetail.parse(event.detail);
    const state = await onInstanceStateChange(platform, detail['instance-id'], detail.state, Date.parse(event.time));
    logger.info('instance state change', { instanceId: detail['instance-id'], state: detail.state, jobId: state?.jobId });
    return;
  }
  if (event['detail-type'] === 'EC2 Command Invocation Status-change Notification') {
    const detail = CommandDetail.parse(event.detail);
    const state = await onCommandStatusChange(platform, detail['command-id'], detail['instance-id'], detail.status);
    logger.info('command status change', { commandId: detail['command-id'], status: detail.status, jobId: state?.jobId });
    return;
  }
  if (event['detail-type'] === 'EC2 Spot Instance Interruption Warning') {
    const detail = SpotDetail.parse(event.detail);
    const state = await onSpotInterruption(platform, detail['instance-id']);
    logger.info('spot interruption warning', { instanceId: detail['instance-id'], action: detail['instance-action'], jobId: state?.jobId });
    return;
  }
  logger.warn('ignored event', { detailType: event['detail-type'] });
}
