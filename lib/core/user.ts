import * as z from 'zod';
import { UserProfileInvalidError } from './errors.js';
import { formatZodIssues } from './issues.js';

/** Group names become S3 key prefixes and IAM policy paths. */
export const groupName = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/, 'must be 1-63 characters of letters, digits, "_" and "-", starting with a letter or digit');

export const UserProfileSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of schemas/user.schema.json, for editors.'),
  username: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, 'must be letters, digits, "_", "." or "-"').describe('Login name; equals the file name.'),
  group: groupName.describe('The key prefix this user reads and writes in every analysis bucket.'),
  email: z.email().optional().describe('Where job notifications go; none are sent without one.'),
  budgetUsd: z.number().nonnegative().describe('Spending limit per budget period, in USD.'),
  budgetPeriod: z.enum(['monthly', 'total']).default('monthly').describe('"monthly" resets on the 1st (UTC); "total" never resets.'),
  allowedAnalyses: z
    .array(z.string().min(1))
    .min(1)
    .describe('Analyses this user may run; ["*"] allows all deployed analyses.'),
});

export type UserProfile = z.output<typeof UserProfileSchema>;

export function parseUserProfile(value: unknown, source: string): UserProfile {
  const result = UserProfileSchema.safeParse(value);
  if (!result.success) throw new UserProfileInvalidError(formatZodIssues(result.error, source));
  return result.data;
}

export function parseUserProfileText(text: string, source: string, expectedUsername?: string): UserProfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UserProfileInvalidError(`${source} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const profile = parseUserProfile(value, source);
  if (expectedUsername !== undefined && profile.username !== expectedUsername) {
    throw new UserProfileInvalidError(`${source}: "username" is "${profile.username}" but the file is named "${expectedUsername}.json"`);
  }
  return profile;
}

export function mayRunAnalysis(user: UserProfile, analysis: string): boolean {
  return user.allowedAnalyses.includes('*') || user.allowedAnalyses.includes(analysis);
}

/** Ledger period a moment falls in: "2026-11" for monthly budgets, "total" otherwise. */
export function budgetPeriodOf(user: UserProfile, nowMs: number): string {
  if (user.budgetPeriod === 'total') return 'total';
  return new Date(nowMs).toISOString().slice(0, 7);
}
