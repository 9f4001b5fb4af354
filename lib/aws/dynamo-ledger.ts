import { TransactionCanceledException, type CancellationReason } from '@aws-sdk/client-dynamodb';
import { GetCommand, QueryCommand, TransactWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { decideReservation, roundUsd, type LedgerEntry } from '../core/cost.js';
import { ConcurrentUpdateError } from '../core/errors.js';
import type { Ledger, ReserveResult } from '../ports.js';

const SUMMARY_SORT_KEY = 'SUMMARY';
const ENTRY_PREFIX = 'ENTRY#';
/** Transactions on one ledger conflict with each other on DynamoDB (TransactionConflict); they are retried. */
const MAX_ATTEMPTS = 10;
/** Codes of cancellation reasons that mean "try again" rather than "no". */
const RETRYABLE_REASONS = new Set(['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded']);

type ReserveRequest = Parameters<Ledger['reserve']>[0];
type SettleRequest = Parameters<Ledger['settle']>[0];

/**
 * User ledgers in the platform's DynamoDB table. Per user and budget period, one summary item
 * holds the committed money (spend of settled jobs + reservations of open ones) and one item
 * per job holds its line. Reservations and settlements change both in one transaction, the
 * summary under a condition, so concurrent reservations can never commit more than the budget.
 * Money is rounded to micro-dollars like lib/core/cost.ts; DynamoDB adds decimals exactly.
 */
export class DynamoLedger implements Ledger {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    const amountUsd = roundUsd(request.amountUsd);
    const limitUsd = roundUsd(request.budgetUsd - amountUsd);
    const decide = async (): Promise<ReserveResult | undefined> => {
      const decision = decideReservation(await this.entries(request.user, request.period), { ...request, amountUsd });
      if (!decision.ok) return { ok: false, reason: decision.reason };
      return decision.duplicate ? { ok: true } : undefined;
    };
    // Above the whole budget: the summary's condition cannot refuse it on a fresh ledger (no
    // committedUsd yet), so the core decides; it refuses unless this repeats a reservation.
    if (limitUsd < 0) {
      const decided = await decide();
      if (decided) return decided;
    }

    const pk = ledgerKey(request.user, request.period);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.tableName,
                  Item: { pk, sk: `${ENTRY_PREFIX}${request.jobId}`, jobId: request.jobId, reservedUsd: amountUsd, reservedAtMs: request.nowMs },
                  ConditionExpression: 'attribute_not_exists(sk)',
                },
              },
              {
                Update: {
                  TableName: this.tableName,
                  Key: { pk, sk: SUMMARY_SORT_KEY },
                  UpdateExpression: 'ADD committedUsd :amount',
                  ConditionExpression: 'attribute_not_exists(committedUsd) OR committedUsd <= :limit',
                  ExpressionAttributeValues: { ':amount': amountUsd, ':limit': limitUsd },
                },
              },
            ],
          }),
        );
        return { ok: true };
      } catch (error) {
        const [entryReason, summaryReason] = cancellationReasons(error);
        if (entryReason?.Code === 'ConditionalCheckFailed') return { ok: true };
        if (summaryReason?.Code === 'ConditionalCheckFailed') {
          // Build the refusal from the entries, so its text is the one every backend gives.
          const result = await decide();
          if (result) return result;
          // The entries leave room the summary did not: a settlement landed in between. Again.
          continue;
        }
        if (isRetryable(error)) {
          await backoff(attempt);
          continue;
        }
        throw error;
      }
    }
    throw new ConcurrentUpdateError(
      `could not reserve ${amountUsd} USD for job ${request.jobId} in ledger ${pk} after ${MAX_ATTEMPTS} attempts ` +
        '(concurrent reservations kept conflicting, or the summary disagrees with the entries); try again',
    );
  }

  async settle(request: SettleRequest): Promise<void> {
    const pk = ledgerKey(request.user, request.period);
    const entryKey = { pk, sk: `${ENTRY_PREFIX}${request.jobId}` };
    const spentUsd = roundUsd(request.spentUsd);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const stored = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: entryKey, ConsistentRead: true }));
      // No reservation or already settled: nothing to do (same as settleEntry in core).
      if (!stored.Item || stored.Item.spentUsd !== undefined) return;
      const reservedUsd = Number(stored.Item.reservedUsd);
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Update: {
                  TableName: this.tableName,
                  Key: entryKey,
                  UpdateExpression: 'SET spentUsd = :spent, settledAtMs = :now',
                  ConditionExpression: 'attribute_exists(sk) AND attribute_not_exists(spentUsd)',
                  ExpressionAttributeValues: { ':spent': spentUsd, ':now': request.nowMs },
                },
              },
              {
                Update: {
                  TableName: this.tableName,
                  Key: { pk, sk: SUMMARY_SORT_KEY },
                  UpdateExpression: 'ADD committedUsd :delta',
                  ExpressionAttributeValues: { ':delta': roundUsd(spentUsd - reservedUsd) },
                },
              },
            ],
          }),
        );
        return;
      } catch (error) {
        const [entryReason] = cancellationReasons(error);
        // Settled by someone else since it was read: settling twice changes nothing.
        if (entryReason?.Code === 'ConditionalCheckFailed') return;
        if (isRetryable(error)) {
          await backoff(attempt);
          continue;
        }
        throw error;
      }
    }
    throw new ConcurrentUpdateError(`could not settle job ${request.jobId} in ledger ${pk} after ${MAX_ATTEMPTS} attempts; try again`);
  }

  /** The period's lines, ordered by reservation time, then job id. */
  async entries(user: string, period: string): Promise<LedgerEntry[]> {
    const entries: LedgerEntry[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :entry)',
          ExpressionAttributeValues: { ':pk': ledgerKey(user, period), ':entry': ENTRY_PREFIX },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) entries.push(entryOf(item));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return entries.sort((a, b) => a.reservedAtMs - b.reservedAtMs || (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0));
  }
}

function ledgerKey(user: string, period: string): string {
  return `LEDGER#${user}#${period}`;
}

function entryOf(item: Record<string, unknown>): LedgerEntry {
  const entry: LedgerEntry = {
    jobId: String(item.jobId),
    reservedUsd: Number(item.reservedUsd),
    reservedAtMs: Number(item.reservedAtMs),
  };
  if (item.spentUsd !== undefined) entry.spentUsd = Number(item.spentUsd);
  if (item.settledAtMs !== undefined) entry.settledAtMs = Number(item.settledAtMs);
  return entry;
}

/** Reasons, in the order of the transaction's items; empty for any other error. */
function cancellationReasons(error: unknown): (CancellationReason | undefined)[] {
  return error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];
}

function isRetryable(error: unknown): boolean {
  return cancellationReasons(error).some((reason) => reason?.Code !== undefined && RETRYABLE_REASONS.has(reason.Code));
}

/** Jittered, growing pause between conflicting transactions: 10-50 ms, then up to ~0.5 s. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.min(500, 10 * 2 ** (attempt - 1)) * (0.5 + Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}
