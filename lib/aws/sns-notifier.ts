import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { formatUsd } from '../core/cost.js';
import type { JobEndNotice, Notifier } from '../ports.js';

/**
 * D7: one SNS topic; each profile with an email has a subscription filtered on the message
 * attribute `user`, so one publish reaches exactly the submitter.
 */
export class SnsNotifier implements Notifier {
  constructor(
    private readonly sns: SNSClient,
    private readonly topicArn: string,
  ) {}

  async jobEnded(notice: JobEndNotice): Promise<void> {
    await this.sns.send(
      new PublishCommand({
        TopicArn: this.topicArn,
        // SNS limits subjects to 100 characters.
        Subject: `NeuroCAAS job ${notice.jobId}: ${notice.outcome}`.slice(0, 100),
        Message: notificationText(notice),
        MessageAttributes: {
          user: { DataType: 'String', StringValue: notice.user },
          outcome: { DataType: 'String', StringValue: notice.outcome },
          jobId: { DataType: 'String', StringValue: notice.jobId },
        },
      }),
    );
  }
}

/** The plain-text body: outcome, cost, where the results are. */
export function notificationText(notice: JobEndNotice): string {
  return [
    `Your ${notice.analysis} job ${notice.jobId} (group ${notice.group}) ended: ${notice.outcome}.`,
    `Cost: ${formatUsd(notice.costUsd)}`,
    `Results: ${notice.resultsLocation}`,
    `See it with: neurocaas --backend aws status ${notice.jobId}`,
  ].join('\n');
}
