import * as z from 'zod';

/**
 * The failed-submissions queue holds what Lambda's on-failure destination sends after the
 * submit function's last retry: the original S3 event as `requestPayload` and the error as
 * `responsePayload`. This reads the submissions (and the error) back out of one message body.
 */
const FailureRecord = z.object({
  requestPayload: z.object({
    Records: z.array(z.object({ s3: z.object({ bucket: z.object({ name: z.string().min(1) }), object: z.object({ key: z.string().min(1) }) }) })),
  }),
  responsePayload: z.object({ errorMessage: z.string().optional(), errorType: z.string().optional() }).passthrough().nullish(),
});

export interface FailedSubmission {
  bucket: string;
  key: string;
  errorMessage: string | undefined;
}

/** The submissions of one failed-submissions message; empty when the body is not one (logged by the caller). */
export function parseFailedSubmissions(body: string): FailedSubmission[] {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    // Not JSON at all: not a destination record, nothing to certify.
    return [];
  }
  const parsed = FailureRecord.safeParse(json);
  if (!parsed.success) return [];
  const errorMessage = parsed.data.responsePayload?.errorMessage;
  return parsed.data.requestPayload.Records.map((record) => ({
    bucket: record.s3.bucket.name,
    // S3 event keys are URL-encoded with "+" for spaces.
    key: decodeURIComponent(record.s3.object.key.replace(/\+/g, ' ')),
    errorMessage,
  }));
}
