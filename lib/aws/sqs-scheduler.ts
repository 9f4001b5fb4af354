import { SendMessageCommand, type MessageAttributeValue, type SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import { NeuroCaasError } from '../core/errors.js';
import { describeValue, formatZodIssues } from '../core/issues.js';
import type { Clock, ScheduledAction, Scheduler } from '../ports.js';

/** SQS delays a message by at most 15 minutes; a later action is sent on by its consumer. */
export const MAX_DELAY_SECONDS = 900;
/** Message attribute holding the epoch ms the action is due at, so a consumer can re-delay it. */
export const DUE_AT_ATTRIBUTE = 'neurocaas-due-at-ms';

/** A message body that is not a scheduled action. */
export class ScheduledActionInvalidError extends NeuroCaasError {
  constructor(message: string) {
    super('ScheduledActionInvalid', message);
  }
}

const jobId = z.string().min(1);

export const ScheduledActionSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('agent-check'),
    jobId,
    dataset: z.string().min(1),
    instanceId: z.string().min(1),
    expiresAtMs: z.number().nonnegative(),
  }),
  z.strictObject({ kind: z.literal('tick'), jobId }),
]);

/** Whole seconds until `atMs`, rounded up (never early), within what SQS accepts: 0-900. */
export function nextDelaySeconds(atMs: number, nowMs: number): number {
  const seconds = Math.ceil((atMs - nowMs) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) return 0;
  return Math.min(MAX_DELAY_SECONDS, seconds);
}

/** Validates a message body; throws ScheduledActionInvalidError naming every problem. */
export function parseScheduledAction(body: string | undefined): ScheduledAction {
  if (body === undefined) throw new ScheduledActionInvalidError('scheduled message has no body; expected a JSON scheduled action');
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new ScheduledActionInvalidError(
      `scheduled message body is not JSON (${error instanceof Error ? error.message : String(error)}): ${describeValue(body)}`,
    );
  }
  const result = ScheduledActionSchema.safeParse(value);
  if (!result.success) throw new ScheduledActionInvalidError(formatZodIssues(result.error, 'scheduled message body'));
  return result.data;
}

/** When a received message's action is due (epoch ms), from its attribute; undefined if it has none. */
export function dueAtMsOf(attributes: Record<string, MessageAttributeValue> | undefined): number | undefined {
  const value = attributes?.[DUE_AT_ATTRIBUTE]?.StringValue;
  const dueAtMs = value === undefined ? NaN : Number(value);
  return Number.isFinite(dueAtMs) ? dueAtMs : undefined;
}

/**
 * Runs an action later with an SQS delayed message: the body is the action as JSON, the due
 * time rides along as a message attribute. SQS cannot delay beyond 15 minutes, so an action
 * due later arrives early and its consumer schedules it again with what is left.
 */
export class SqsScheduler implements Scheduler {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly clock: Clock,
  ) {}

  async schedule(atMs: number, action: ScheduledAction): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(action),
        DelaySeconds: nextDelaySeconds(atMs, this.clock.nowMs()),
        MessageAttributes: { [DUE_AT_ATTRIBUTE]: { DataType: 'Number', StringValue: String(Math.round(atMs)) } },
      }),
    );
  }
}

