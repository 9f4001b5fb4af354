import * as z from 'zod';
import { formatZodIssues } from './issues.js';

/**
 * The NeuroCAAS submission file, accepted as is. Unknown keys are ignored (NeuroCAAS clients
 * add their own) except the ones listed here.
 */
export const SubmissionSchema = z.object({
  dataname: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1, 'must name at least one dataset')])
    .describe('Dataset key(s) under <group>/inputs/.'),
  configname: z.string().min(1).describe('Config key under <group>/configs/.'),
  timestamp: z.union([z.string(), z.number()]).optional().describe('Client-side submission time (informational).'),
  instance_type: z.string().min(1).optional().describe('Instance type to use; must be one the blueprint allows.'),
  neurocaas_chain: z
    .object({
      parentJobId: z.string().min(1),
      parentAnalysis: z.string().min(1),
      stage: z.number().int().min(2),
      ledgerKey: z.string().min(1),
    })
    .optional()
    .describe('Written by the protocol for a chain\'s next stage: the job it continues. Checked against that job before it counts.'),
});

export type Submission = z.output<typeof SubmissionSchema>;

export type ParsedSubmission = { ok: true; submission: Submission } | { ok: false; reason: string };

/** Parses submission bytes; an unparsable file is an expected outcome with a readable reason. */
export function parseSubmissionText(text: string, source: string): ParsedSubmission {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `${source} is not valid JSON (${error instanceof Error ? error.message : String(error)}); expected {"dataname": ..., "configname": ...}` };
  }
  const result = SubmissionSchema.safeParse(value);
  if (!result.success) return { ok: false, reason: formatZodIssues(result.error, source) };
  return { ok: true, submission: result.data };
}

export function datanames(submission: Submission): string[] {
  return Array.isArray(submission.dataname) ? submission.dataname : [submission.dataname];
}
