import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { DUE_AT_ATTRIBUTE, parseScheduledAction } from '../../../lib/aws/sqs-scheduler.js';
import { createLambdaContext } from '../lambda-context.js';
import { onScheduledAction } from '../protocols.js';

const { platform, logger } = createLambdaContext('neurocaas-agent-check', import.meta.url);

/** Delayed re-checks of booting machines (and job ticks); failed messages are retried, then dead-lettered. */
export async function handler(event: SQSEvent): Promise<SQSBatchResponse> {
  const failures: SQSBatchResponse['batchItemFailures'] = [];
  for (const message of event.Records) {
    try {
      const action = parseScheduledAction(message.body);
      logger.appendKeys({ jobId: action.jobId, dataset: action.kind === 'agent-check' ? action.dataset : undefined });
      // SQS delays at most 15 minutes; an action due later goes back in the queue.
      const dueAtMs = Number(message.messageAttributes[DUE_AT_ATTRIBUTE]?.stringValue ?? 0);
      if (dueAtMs > platform.clock.nowMs() + 1_000) await platform.scheduler.schedule(dueAtMs, action);
      else await onScheduledAction(platform, action);
    } catch (error) {
      logger.error('scheduled action failed', { messageId: message.messageId, error: error as Error });
      failures.push({ itemIdentifier: message.messageId });
    } finally {
      logger.removeKeys(['jobId', 'dataset']);
    }
  }
  return { batchItemFailures: failures };
}
