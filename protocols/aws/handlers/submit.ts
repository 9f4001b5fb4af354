import type { S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import * as z from 'zod';
import { NeuroCaasError } from '../../../lib/core/errors.js';
import { CANCEL_SUFFIX } from '../../../lib/core/keys.js';
import { createLambdaContext } from '../lambda-context.js';
import { onCancelUploaded, onFailedSubmissionsMessage, onSubmissionUploaded } from '../protocols.js';

const { settings, platform, logger } = createLambdaContext('neurocaas-submit', import.meta.url);

const S3Records = z.object({
  Records: z.array(z.object({ s3: z.object({ bucket: z.object({ name: z.string().min(1) }), object: z.object({ key: z.string().min(1) }) }) })),
});

/**
 * S3 ObjectCreated (suffix submit.json) -> one job per submission object, exactly once;
 * suffix .cancel.json -> a cancel request (D2), answered with a receipt.
 * Messages of the failed-submissions queue (the events this function kept failing on) ->
 * a certificate with the reason, so a failure nobody caught still reaches the researcher.
 */
export async function handler(event: S3Event | SQSEvent): Promise<SQSBatchResponse | void> {
  const analysis = settings.analysis;
  if (!analysis) throw new NeuroCaasError('Configuration', 'NCAP_ANALYSIS is not set on this submit function; redeploy the analysis stack');
  if (isSqsEvent(event)) return certifyFailed(analysis, event);
  for (const record of S3Records.parse(event).Records) {
    const bucket = record.s3.bucket.name;
    // S3 event keys are URL-encoded with "+" for spaces.
    const key = decodeURIComponent(record.s3.object.key.replace(/\+/g, ' '));
    if (!key.includes('/submissions/')) {
      logger.info('ignored: not under submissions/', { bucket, key });
      continue;
    }
    if (key.endsWith(CANCEL_SUFFIX)) {
      const receipt = await onCancelUploaded(platform, bucket, key);
      logger.info('cancel request', { bucket, key, jobId: receipt.jobId, outcome: receipt.outcome, reasons: receipt.reasons });
      continue;
    }
    const result = await onSubmissionUploaded(platform, analysis, bucket, key);
    logger.info(result.duplicate ? 'duplicate submission event' : 'job started', { bucket, key, jobId: result.jobId });
  }
}

function isSqsEvent(event: S3Event | SQSEvent): event is SQSEvent {
  return event.Records.length > 0 && (event.Records[0] as { eventSource?: string }).eventSource === 'aws:sqs';
}

async function certifyFailed(analysis: string, event: SQSEvent): Promise<SQSBatchResponse> {
  const failures: SQSBatchResponse['batchItemFailures'] = [];
  for (const message of event.Records) {
    try {
      const outcome = await onFailedSubmissionsMessage(platform, analysis, message.body);
      if (outcome.unrecognised) logger.warn('failed-submissions message is not a submit failure record; left for an admin', { messageId: message.messageId });
      for (const done of outcome.certified) logger.warn('submission failed for good; researcher told', { ...done });
    } catch (error) {
      logger.error('could not certify a failed submission', { messageId: message.messageId, error: error as Error });
      failures.push({ itemIdentifier: message.messageId });
    }
  }
  return { batchItemFailures: failures };
}
