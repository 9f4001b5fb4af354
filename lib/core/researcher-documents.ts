/**
 * The documents researchers and the protocol exchange through the bucket (D2-D4): cancel
 * requests the researcher writes, receipts and budget views the protocol writes. One zod
 * schema each; every client (CLI, web app) parses them with these.
 */
import * as z from 'zod';
import { committedUsd, roundUsd, type LedgerEntry } from './cost.js';
import { formatZodIssues } from './issues.js';

/** D2: `<group>/submissions/<user>/<jobId>.cancel.json`. */
export const CancelRequestSchema = z.object({
  jobId: z.string().min(1).describe('The job to cancel.'),
  reason: z.string().max(500).optional().describe('Why, for the certificate.'),
});
export type CancelRequest = z.output<typeof CancelRequestSchema>;

/** D3: what the protocol answered to a submission or cancel request. */
export const ReceiptSchema = z.object({
  schemaVersion: z.literal(1),
  submissionKey: z.string(),
  etag: z.string(),
  jobId: z.string(),
  analysis: z.string(),
  outcome: z.enum(['accepted', 'rejected', 'duplicate']),
  reasons: z.array(z.string()).optional(),
});
export type Receipt = z.output<typeof ReceiptSchema>;

export const BudgetJobSchema = z.object({
  jobId: z.string(),
  analysis: z.string().optional(),
  reservedUsd: z.number(),
  spentUsd: z.number(),
  settled: z.boolean(),
});

/** D4: `<group>/budget/<user>.json`, one per user and analysis bucket; the newest `updatedAt` wins. */
export const BudgetDocumentSchema = z.object({
  schemaVersion: z.literal(1),
  user: z.string(),
  group: z.string(),
  period: z.string(),
  budgetUsd: z.number(),
  reservedUsd: z.number(),
  spentUsd: z.number(),
  leftUsd: z.number(),
  updatedAt: z.iso.datetime(),
  jobs: z.array(BudgetJobSchema),
});
export type BudgetDocument = z.output<typeof BudgetDocumentSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Parses one of the documents above from its bytes; a bad file is a readable reason, not a throw. */
export function parseDocument<T>(schema: z.ZodType<T>, text: string, source: string): Parsed<T> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `${source} is not valid JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  const result = schema.safeParse(value);
  return result.success ? { ok: true, value: result.data } : { ok: false, reason: formatZodIssues(result.error, source) };
}

/**
 * A user's budget for a period from their ledger entries: spent = settled jobs' spend,
 * reserved = open reservations, left = budget minus both (never below 0).
 * `analysisOf` names a job's analysis when the caller knows it.
 */
export function budgetDocument(input: {
  user: string;
  group: string;
  period: string;
  budgetUsd: number;
  entries: readonly LedgerEntry[];
  nowMs: number;
  analysisOf?: (jobId: string) => string | undefined;
}): BudgetDocument {
  const spentUsd = roundUsd(input.entries.reduce((sum, e) => sum + (e.spentUsd ?? 0), 0));
  const reservedUsd = roundUsd(input.entries.reduce((sum, e) => sum + (e.spentUsd === undefined ? e.reservedUsd : 0), 0));
  return {
    schemaVersion: 1,
    user: input.user,
    group: input.group,
    period: input.period,
    budgetUsd: input.budgetUsd,
    reservedUsd,
    spentUsd,
    leftUsd: Math.max(0, roundUsd(input.budgetUsd - committedUsd(input.entries))),
    updatedAt: new Date(input.nowMs).toISOString(),
    jobs: input.entries.map((e) => {
      const analysis = input.analysisOf?.(e.jobId);
      return {
        jobId: e.jobId,
        ...(analysis === undefined ? {} : { analysis }),
        reservedUsd: e.reservedUsd,
        spentUsd: e.spentUsd ?? 0,
        settled: e.spentUsd !== undefined,
      };
    }),
  };
}
