import { NeuroCaasError, ObjectExistsError } from '../core/errors.js';
import { budgetKey, cancelKey, jobKeys, receiptKey } from '../core/keys.js';
import { parseDocument, ReceiptSchema, type BudgetDocument, type Receipt } from '../core/researcher-documents.js';
import { randomHex, sleep, utf8Text } from './bytes.js';
import type { Identity, IdentityRequest, JobDetail, JobView, UseCaseBackend } from './ports.js';
import { LineSplitter } from './views.js';

/*
 * The researcher use-cases that need no local files (submit, jobs, status, logs, follow,
 * cancel, budget), without Node built-ins: the web app's aws backend runs them in the browser.
 * ResearcherClient (researcher-client.ts) adds the file use-cases (run, stage, results).
 */

export type { BudgetDocument, Receipt };

/** What a running `run` tells its shell; every member optional. */
export interface RunListener {
  step?(text: string): void;
  /** Upload progress of one file, in bytes. */
  progress?(file: string, doneBytes: number, totalBytes: number): void;
  jobId?(jobId: string): void;
  follow?(event: FollowEvent): void;
  /**
   * Bytes the shell has written but its output not yet taken (e.g. `process.stdout.writableLength`):
   * following reads no more log while this is over FOLLOW_BACKLOG_BYTES, so a slow reader of a
   * pipe cannot make the CLI queue a whole log in memory. Default: never backed up.
   */
  outputBacklogBytes?(): number;
}

/** Log bytes read per request while following: 256 KiB (bounded memory; a 1 GiB log is 4,096 reads). */
export const FOLLOW_CHUNK_BYTES = 256 * 1024;
/** Following waits while the shell's output holds more than this: 256 KiB. */
export const FOLLOW_BACKLOG_BYTES = 256 * 1024;
/**
 * Following waits this long first, and again when a dataset has just started running (its
 * runner ships its first lines at once), doubling each round up to the backend's pollMs: 250 ms.
 */
export const FOLLOW_FIRST_WAIT_MS = 250;

export type FollowEvent = { type: 'log'; dataset: string; line: string } | { type: 'certificate'; line: string } | { type: 'end'; job: JobDetail };

/** `status`: the job, each dataset's status document, the certificate. */
export interface StatusView {
  job: JobDetail;
  /** The status documents as stored (or `{dataset, status}` while none is written yet). */
  statuses: unknown[];
  certificate: string;
}

export interface CancelView {
  job: JobDetail;
  alreadyFinished: boolean;
  receipt?: Receipt;
}

/** A researcher's budget for the current period (D4). */
export interface BudgetView {
  user: string;
  group: string;
  /** Undefined on aws until a job of the user has reserved budget in some deployed analysis. */
  budget: BudgetDocument | undefined;
}

/** The job could not be cancelled: the protocol's reasons, verbatim. */
export class CancelRefusedError extends NeuroCaasError {
  constructor(message: string) {
    super('CancelRefused', message);
  }
}

/** The protocol did not answer a submission or cancel request in time. */
export class ReceiptTimeoutError extends NeuroCaasError {
  constructor(message: string) {
    super('ReceiptTimeout', message);
  }
}

/** How long `cancel` waits for the job to end after the protocol accepted the request: 60 s. */
const CANCEL_WAIT_MS = 60_000;

/**
 * The researcher's use-cases over the client ports (no files): returns data, streams through
 * callbacks and async iterators; prints nothing.
 */
export class ResearcherUseCases<B extends UseCaseBackend = UseCaseBackend> {
  constructor(
    readonly backend: B,
    protected readonly request: IdentityRequest = {},
  ) {}

  identity(fallbackUser?: string): Promise<Identity> {
    return this.backend.identity(fallbackUser === undefined ? this.request : { ...this.request, fallbackUser });
  }

  /** Writes a NeuroCAAS submission under the user's prefix (D1) and waits for the protocol's receipt (D3). */
  async submit(bucket: string, identity: Identity, submission: { dataname: string | string[]; configname: string; instance_type?: string }, listener: RunListener = {}): Promise<{ key: string; receipt: Receipt }> {
    const stamp = new Date(this.backend.clock.nowMs()).toISOString().replace(/[-:.]/g, '');
    const fileName = `cli-${stamp}-${randomHex(2)}-submit.json`;
    const key = `${identity.group}/submissions/${identity.user}/${fileName}`;
    await this.backend.objects.write(bucket, key, JSON.stringify({ ...submission, timestamp: new Date(this.backend.clock.nowMs()).toISOString() }, null, 2));
    listener.step?.(`submitted ${key} to analysis ${bucket} as ${identity.user} (group ${identity.group})`);
    await this.backend.deliver(bucket, key, 'submission');
    const receipt = await this.waitForReceipt(bucket, receiptKey(identity.group, identity.user, fileName), key);
    return { key, receipt };
  }

  async jobs(): Promise<{ jobs: JobView[]; notices: string[] }> {
    return this.backend.jobs.list(await this.backend.scope(this.request));
  }

  async job(jobId: string): Promise<JobDetail> {
    return this.backend.jobs.get(jobId, await this.backend.scope(this.request));
  }

  async status(jobId: string): Promise<StatusView> {
    const job = await this.job(jobId);
    const keys = jobKeys(job.group, job.analysis, job.jobId);
    const { objects } = this.backend;
    // The certificate is read while the status documents are (one round trip, not two).
    const certificateBody = objects.read(job.bucket, keys.certificate);
    certificateBody.catch(() => undefined);
    const statuses = await Promise.all(
      job.datasets.map(async (ds) => {
        const body = await objects.read(job.bucket, keys.datasetStatus(ds.name));
        if (!body) return { dataset: ds.name, status: ds.phase };
        try {
          return JSON.parse(utf8Text(body)) as unknown;
        } catch {
          // Being replaced right now: the job's own view stands in.
          return { dataset: ds.name, status: ds.phase };
        }
      }),
    );
    const certificate = utf8Text((await certificateBody) ?? new Uint8Array(0));
    return { job, statuses, certificate };
  }

  /** Each dataset's workflow log as it is now. */
  async logs(jobId: string): Promise<{ job: JobDetail; logs: Record<string, string> }> {
    const job = await this.job(jobId);
    const keys = jobKeys(job.group, job.analysis, job.jobId);
    const logs: Record<string, string> = {};
    for (const ds of job.datasets) logs[ds.name] = utf8Text((await this.backend.objects.read(job.bucket, keys.datasetLog(ds.name))) ?? new Uint8Array(0));
    return { job, logs };
  }

  /**
   * Follows a job until it ends: new log lines of every dataset and new certificate lines, then
   * one `end` event. Each round reads the job first, then the certificate, then the logs, and
   * yields log lines before certificate lines, so a log line never follows the line that says
   * the job finished.
   */
  async *follow(jobId: string, signal?: AbortSignal, outputBacklogBytes: () => number = () => 0): AsyncGenerator<FollowEvent> {
    const scope = await this.backend.scope(this.request);
    const { objects } = this.backend;
    const offsets = new Map<string, number>();
    const splitters = new Map<string, LineSplitter>();
    // One bounded chunk at a time: a log of any size is never held whole.
    const readLines = async (bucket: string, key: string, final: boolean): Promise<{ lines: string[]; more: boolean }> => {
      const offset = offsets.get(key) ?? 0;
      const chunk = await objects.read(bucket, key, offset, FOLLOW_CHUNK_BYTES);
      const splitter = splitters.get(key) ?? new LineSplitter();
      splitters.set(key, splitter);
      const lines = chunk && chunk.length > 0 ? (offsets.set(key, offset + chunk.length), splitter.push(chunk)) : [];
      const more = chunk !== undefined && chunk.length === FOLLOW_CHUNK_BYTES;
      return { lines: final && !more ? [...lines, ...splitter.flush()] : lines, more };
    };
    const firstWaitMs = Math.min(FOLLOW_FIRST_WAIT_MS, this.backend.pollMs);
    let waitMs = firstWaitMs;
    let running = 0;
    for (;;) {
      const job = await this.backend.jobs.get(jobId, scope);
      const finished = job.phase === 'DONE' || job.phase === 'REJECTED';
      const nowRunning = job.datasets.filter((ds) => ds.phase === 'RUNNING').length;
      if (nowRunning > running) waitMs = firstWaitMs;
      running = nowRunning;
      const keys = jobKeys(job.group, job.analysis, job.jobId);
      const certificate: string[] = [];
      for (let more = true; more; ) {
        const read = await readLines(job.bucket, keys.certificate, finished);
        certificate.push(...read.lines);
        more = read.more;
      }
      for (const ds of job.datasets) {
        for (let more = true; more; ) {
          while (outputBacklogBytes() > FOLLOW_BACKLOG_BYTES) await sleep(5);
          const read = await readLines(job.bucket, keys.datasetLog(ds.name), finished);
          for (const line of read.lines) yield { type: 'log', dataset: ds.name, line };
          // Caught up unless the job has ended: the rest comes next round, after the pause.
          more = read.more && (finished || outputBacklogBytes() <= FOLLOW_BACKLOG_BYTES);
        }
      }
      for (const line of certificate) yield { type: 'certificate', line: line.replace(/^\d{4}-\d{2}-\d{2}T[\d:.]+Z {2}/, '') };
      if (finished) {
        yield { type: 'end', job };
        return;
      }
      if (signal?.aborted) return;
      await sleep(waitMs);
      waitMs = Math.min(this.backend.pollMs, waitMs * 2);
    }
  }

  /**
   * Asks the protocol to cancel a job (D2: a request object under the user's own prefix) and
   * waits, bounded, for the job to end. Throws CancelRefusedError with the protocol's reasons.
   */
  async cancel(jobId: string, reason: string): Promise<CancelView> {
    const job = await this.job(jobId);
    if (job.phase === 'DONE' || job.phase === 'REJECTED') return { job, alreadyFinished: true };
    const identity = await this.identity(job.user);
    const key = cancelKey(identity.group, identity.user, jobId);
    try {
      await this.backend.objects.write(job.bucket, key, JSON.stringify({ jobId, reason }, null, 2));
    } catch (error) {
      // Asked before: the first request's receipt answers this one too.
      if (!(error instanceof ObjectExistsError)) throw error;
    }
    await this.backend.deliver(job.bucket, key, 'cancel');
    const receipt = await this.waitForReceipt(job.bucket, receiptKey(identity.group, identity.user, `${jobId}.cancel.json`), key);
    if (receipt.outcome === 'rejected') throw new CancelRefusedError(`cancel of job ${jobId} refused: ${(receipt.reasons ?? []).join('; ')}`);
    const deadline = this.backend.clock.nowMs() + CANCEL_WAIT_MS;
    let latest = await this.job(jobId);
    while (latest.phase !== 'DONE' && latest.phase !== 'REJECTED' && this.backend.clock.nowMs() < deadline) {
      await sleep(this.backend.pollMs);
      latest = await this.job(jobId);
    }
    return { job: latest, alreadyFinished: false, receipt };
  }

  async budget(): Promise<BudgetView> {
    const identity = await this.identity();
    return { user: identity.user, group: identity.group, budget: await this.backend.budget(identity) };
  }

  /** Where the protocol publishes a user's budget in one bucket (D4). */
  static budgetKeyOf(identity: Identity): string {
    return budgetKey(identity.group, identity.user);
  }

  private async waitForReceipt(bucket: string, key: string, requestKey: string): Promise<Receipt> {
    const deadline = this.backend.clock.nowMs() + this.backend.receiptTimeoutMs;
    for (;;) {
      const body = await this.backend.objects.read(bucket, key);
      if (body) {
        const parsed = parseDocument(ReceiptSchema, utf8Text(body), this.backend.locationOf(bucket, key));
        if (!parsed.ok) throw new NeuroCaasError('ReceiptInvalid', parsed.reason);
        if (parsed.value.submissionKey === requestKey) return parsed.value;
      }
      // Local: a receipt that could not be written does not leave the submitter waiting.
      const answer = await this.backend.answerOf?.(bucket, requestKey);
      if (answer) return answer;
      if (this.backend.clock.nowMs() >= deadline) {
        throw new ReceiptTimeoutError(
          `the platform did not answer ${this.backend.locationOf(bucket, requestKey)} within ${Math.round(this.backend.receiptTimeoutMs / 1000)} s ` +
            `(no receipt at ${key}); it may be slow or not deployed for this bucket: check "neurocaas jobs" later, or ask your admin`,
        );
      }
      await sleep(this.backend.pollMs);
    }
  }
}

export function rejectedDetail(receipt: Receipt, identity: Identity, bucket: string, _key: string): JobDetail {
  return {
    jobId: receipt.jobId,
    analysis: receipt.analysis,
    group: identity.group,
    user: identity.user,
    bucket,
    phase: 'REJECTED',
    outcome: 'REJECTED',
    createdAtMs: 0,
    updatedAtMs: 0,
    datasets: [],
    rejection: receipt.reasons ?? [],
  };
}

