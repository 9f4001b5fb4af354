import type { S3Event } from 'aws-lambda';
import * as z from 'zod';
import { NeuroCaasError } from '../../../lib/core/errors.js';
import { createLambdaContext } from '../lambda-context.js';
import { CANCEL_SUFFIX } from '../../../lib/core/keys.js';
import { onCancelUploaded, onSubmissionUploaded } from '../protocols.js';

const { settings, platform, logger } = createLambdaContext('neurocaas-submit', import.meta.url);

const S3Records = z.object({
  Records: z.array(z.object({ s3: z.object({ bucket: z.object({ name: z.string().min(1) }), object: z.object({ key: z.string().min(1) }) }) })),
});

/**
 * S3 ObjectCreated (suffix submit.json) -> one job per submission object, exactly once;
 * suffix .cancel.json -> a cancel request (D2), answered with a receipt.
 */
export async function handler(event: S3Event): Promise<void> {
  const analysis = settings.analysis;
  if (!analysis) throw new NeuroCaasError('Configuration', 'NCAP_ANALYSIS is not set on this submit function; redeploy the analysis stack');
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
