import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, ScanCommand, TransactWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConcurrentUpdateError, NeuroCaasError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { summarizeJob, type JobPhase } from '../core/job-machine.js';
import { reaperDueAtMs } from '../core/reaper-due.js';
import type { ClaimResult, JobRecord, JobStore, JobSummary } from '../ports.js';

const JOB_PREFIX = 'JOB#';
const JOB_SORT_KEY = 'RECORD';
const CLAIM_PREFIX = 'CLAIM#';
const CLAIM_SORT_KEY = 'CLAIM';

/**
 * The reaper's index (a sparse GSI of the platform table): unfinished job items carry
 * `dueBucket` (always DUE_BUCKET) and `dueAtMs` (reaperDueAtMs), finished ones neither, so a
 * Query for `dueAtMs <= now` returns the jobs due and nothing of the history.
 */
export const REAPER_INDEX = { name: 'reaper-due', partitionKey: 'dueBucket', sortKey: 'dueAtMs', projected: ['phase', 'createdAtMs'] } as const;
const DUE_BUCKET = 'JOB';

/** A job the reaper should look at now. */
export interface DueJob {
  jobId: string;
  phase: JobPhase;
  createdAtMs: number;
}

/** How a job lives in the table; `record` is the whole JobRecord, the rest are for queries and conditions. */
interface JobItem {
  pk: string;
  sk: string;
  version: number;
  record: string;
  phase: string;
  analysis: string;
  group: string;
  createdAtMs: number;
  updatedAtMs: number;
  /** Set while the job is unfinished (the reaper's index). */
  dueBucket?: string;
  dueAtMs?: number;
}

/**
 * Jobs in the platform's DynamoDB table, one item per job, changed only by conditional writes:
 * a create succeeds once, an update only from the version it read. Claims of submissions are
 * items of their own, keyed by the sha256 of the idempotency key.
 *
 * A record is stored as one JSON string attribute, so it must stay under DynamoDB's 400 KB item size.
 */
export class DynamoJobStore implements JobStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async claimSubmission(idempotencyKey: string, jobId: string): Promise<ClaimResult> {
    const key = claimKey(idempotencyKey);
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...key, jobId, idempotencyKey },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return { claimed: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
    return { claimed: false, jobId: await this.claimWinner(idempotencyKey) };
  }

  private async claimWinner(idempotencyKey: string): Promise<string> {
    // Claims are never deleted, so the winner's item is there for a strongly consistent read.
    const existing = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: claimKey(idempotencyKey), ConsistentRead: true }));
    const winner = existing.Item?.jobId;
    if (typeof winner !== 'string') {
      throw new ConcurrentUpdateError(`submission ${idempotencyKey} is claimed but its claim item has no job id`);
    }
    return winner;
  }

  /** The claim item and the job item in one transaction: both are written, or neither. */
  async claimAndCreate(idempotencyKey: string, record: JobRecord): Promise<ClaimResult> {
    const key = claimKey(idempotencyKey);
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            { Put: { TableName: this.tableName, Item: { ...key, jobId: record.jobId, idempotencyKey }, ConditionExpression: 'attribute_not_exists(pk)' } },
            { Put: { TableName: this.tableName, Item: jobItem(record), ConditionExpression: 'attribute_not_exists(pk)' } },
          ],
        }),
      );
      return { claimed: true };
    } catch (error) {
      if (!(error instanceof TransactionCanceledException)) throw error;
      const [claimReason, jobReason] = error.CancellationReasons ?? [];
      if (claimReason?.Code !== 'ConditionalCheckFailed') {
        if (jobReason?.Code === 'ConditionalCheckFailed') throw new ConcurrentUpdateError(`job ${record.jobId} already exists`);
        throw error;
      }
    }
    return { claimed: false, jobId: await this.claimWinner(idempotencyKey) };
  }

  async create(record: JobRecord): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({ TableName: this.tableName, Item: jobItem(record), ConditionExpression: 'attribute_not_exists(pk)' }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw new ConcurrentUpdateError(`job ${record.jobId} already exists`);
      throw error;
    }
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    const result = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: jobKey(jobId), ConsistentRead: true }),
    );
    return result.Item ? recordOf(result.Item) : undefined;
  }

  async update(record: JobRecord): Promise<void> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: jobItem(record),
          ConditionExpression: '#version = :previous',
          ExpressionAttributeNames: { '#version': 'version' },
          ExpressionAttributeValues: { ':previous': record.version - 1 },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const stored = error.Item?.version?.N;
      throw new ConcurrentUpdateError(
        stored === undefined
          ? `job ${record.jobId} does not exist`
          : `job ${record.jobId} changed underneath (stored version ${stored}, writing ${record.version})`,
      );
    }
  }

  /**
   * Unfinished jobs due for the reaper at `nowMs` (their dueAtMs has passed), over every page
   * of the reaper's index: the cost grows with the jobs due, not with the jobs ever run. The
   * index is eventually consistent; a job written a moment ago may show up on the next run.
   */
  async listDue(nowMs: number): Promise<DueJob[]> {
    const due: DueJob[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: REAPER_INDEX.name,
          KeyConditionExpression: '#bucket = :bucket AND #due <= :now',
          ExpressionAttributeNames: { '#bucket': REAPER_INDEX.partitionKey, '#due': REAPER_INDEX.sortKey },
          ExpressionAttributeValues: { ':bucket': DUE_BUCKET, ':now': nowMs },
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) {
        const pk = String(item.pk);
        if (!pk.startsWith(JOB_PREFIX)) continue;
        due.push({ jobId: pk.slice(JOB_PREFIX.length), phase: item.phase as JobPhase, createdAtMs: Number(item.createdAtMs) });
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return due;
  }

  /** Every job, newest first. A Scan: for listings, never for the reaper (see listDue). */
  async list(): Promise<JobSummary[]> {
    const summaries: JobSummary[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new ScanCommand({
          TableName: this.tableName,
          FilterExpression: 'begins_with(pk, :prefix) AND sk = :sk',
          ExpressionAttributeValues: { ':prefix': JOB_PREFIX, ':sk': JOB_SORT_KEY },
          ProjectionExpression: '#record',
          ExpressionAttributeNames: { '#record': 'record' },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) {
        const record = recordOf(item);
        summaries.push(summarizeJob(record.state, record.updatedAtMs, record.outbox.length));
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return summaries.sort((a, b) => b.createdAtMs - a.createdAtMs);
  }
}

function claimKey(idempotencyKey: string): { pk: string; sk: string } {
  return { pk: `${CLAIM_PREFIX}${sha256Hex(idempotencyKey)}`, sk: CLAIM_SORT_KEY };
}

function jobKey(jobId: string): { pk: string; sk: string } {
  return { pk: `${JOB_PREFIX}${jobId}`, sk: JOB_SORT_KEY };
}

function jobItem(record: JobRecord): JobItem {
  const dueAtMs = reaperDueAtMs(record.state, record.updatedAtMs, record.outbox.length);
  return {
    ...(dueAtMs === undefined ? {} : { dueBucket: DUE_BUCKET, dueAtMs }),
    ...jobKey(record.jobId),
    version: record.version,
    record: JSON.stringify(record),
    phase: record.state.phase,
    analysis: record.state.analysis,
    group: record.state.group,
    createdAtMs: record.state.createdAtMs,
    updatedAtMs: record.updatedAtMs,
  };
}

function recordOf(item: Record<string, unknown>): JobRecord {
  if (typeof item.record !== 'string') {
    throw new NeuroCaasError('JobRecordInvalid', `job item ${String(item.pk)} has no "record" attribute; it was not written by this platform`);
  }
  return JSON.parse(item.record) as JobRecord;
}
