import { JobNotFoundError, NeuroCaasError } from '../core/errors.js';
import type { JobPhase } from '../core/job-machine.js';
import { CHAIN_NAME_PREFIX, jobFolderName, jobKeys } from '../core/keys.js';
import { BudgetDocumentSchema, parseDocument, ReceiptSchema, type BudgetDocument, type Receipt } from '../core/researcher-documents.js';
import { DatasetStatusSchema, type DatasetStatusDocument } from '../core/status.js';
import type { ObjectInfo } from '../ports.js';
import { utf8Text } from './bytes.js';
import type { ClientStore, Identity, JobDetail, JobListing, JobView } from './ports.js';
import { linkJobStructures, type JobStructureFacts } from './job-structures.js';
import { outcomeFromDocuments } from './views.js';

/*
 * Jobs and budgets on aws as the analysis buckets show them (D3, D4), with no Node built-ins:
 * the CLI's aws backend and the web app's aws backend share them.
 */

/** What the listing reads through: who the caller is, the deployed analyses, the buckets. */
export interface S3ListingSource {
  identity(request: Record<string, never>): Promise<Identity>;
  analyses(): Promise<{ analysis: string; bucket: string }[]>;
  readonly objects: ClientStore;
}

const READ_CONCURRENCY = 8;

/** The user's budget view (D4): the newest `<group>/budget/<user>.json` over every deployed analysis bucket. */
export async function newestBudget(source: S3ListingSource, identity: Identity): Promise<BudgetDocument | undefined> {
  const analyses = await source.analyses();
  const docs = await Promise.all(
    analyses.map(async ({ bucket }) => {
      const key = `${identity.group}/budget/${identity.user}.json`;
      const body = await source.objects.read(bucket, key);
      if (!body) return undefined;
      const parsed = parseDocument(BudgetDocumentSchema, utf8Text(body), `s3://${bucket}/${key}`);
      if (!parsed.ok) throw new NeuroCaasError('BudgetInvalid', parsed.reason);
      return parsed.value;
    }),
  );
  // Each analysis bucket holds the view as of its own last job; the newest one is current.
  return docs.filter((d): d is BudgetDocument => d !== undefined).sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0))[0];
}

/** Runs `work` over `items`, at most `limit` at a time, keeping order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

interface ReceiptEntry {
  receipt: Receipt;
  user: string | undefined;
  createdAtMs: number;
}

/** Job ids start with their creation time: "20261122T151533Z-7f3a". */
function jobTimeMs(jobId: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(jobId);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
}

/**
 * Jobs as the bucket shows them (researchers never read the job table): receipts (D3) say which
 * jobs a group has and who submitted them; the job folder's status documents and end.txt say how
 * they are doing.
 */
export class S3JobListing implements JobListing {
  constructor(private readonly backend: S3ListingSource) {}

  async list(scope: Identity | undefined): Promise<{ jobs: JobView[]; notices: string[] }> {
    const identity = scope ?? (await this.backend.identity({}));
    const analyses = await this.backend.analyses();
    const perBucket = await Promise.all(
      analyses.map(async ({ bucket }) => {
        const receipts = (await this.receipts(bucket, identity.group)).filter((r) => r.receipt.outcome !== 'duplicate' && r.receipt.jobId !== '');
        return mapLimited(receipts, READ_CONCURRENCY, (entry) => this.detailWithFacts(bucket, identity.group, entry));
      }),
    );
    const facts = new Map<string, JobStructureFacts>();
    const jobs: JobView[] = perBucket.flat().map(({ detail: d, facts: f }) => {
      if (f) facts.set(d.jobId, f);
      return {
        jobId: d.jobId,
        analysis: d.analysis,
        group: d.group,
        ...(d.user === undefined ? {} : { user: d.user }),
        phase: d.phase,
        outcome: d.outcome,
        createdAtMs: d.createdAtMs,
        updatedAtMs: d.updatedAtMs,
        datasets: d.datasets.map((ds) => ({ name: ds.name, phase: ds.phase, ...(ds.reason === undefined ? {} : { reason: ds.reason }) })),
        ...(d.costUsd === undefined ? {} : { costUsd: d.costUsd }),
      };
    });
    return { jobs: linkJobStructures(jobs.sort((a, b) => (a.jobId < b.jobId ? 1 : a.jobId > b.jobId ? -1 : 0)), facts), notices: [] };
  }

  async get(jobId: string, scope: Identity | undefined): Promise<JobDetail> {
    const identity = scope ?? (await this.backend.identity({}));
    const analyses = await this.backend.analyses();
    const found = await Promise.all(
      analyses.map(async ({ analysis, bucket }) => {
        const prefix = `${identity.group}/results/${jobFolderName(analysis, jobId)}/`;
        const objects = await this.backend.objects.list(bucket, prefix);
        return objects.length > 0 ? { bucket, analysis, objects } : undefined;
      }),
    );
    const hit = found.find((f) => f !== undefined);
    if (!hit) {
      throw new JobNotFoundError(`job "${jobId}" not found in group "${identity.group}" of any deployed analysis (${analyses.map((a) => a.analysis).join(', ') || 'none'}); see "neurocaas jobs"`);
    }
    const entry = await this.receiptOf(hit.bucket, identity.group, jobId);
    // The folder was just listed: detail() need not list it again (one round trip less per status).
    return this.detail(hit.bucket, identity.group, entry ?? { receipt: { schemaVersion: 1, submissionKey: '', etag: '', jobId, analysis: hit.analysis, outcome: 'accepted' }, user: undefined, createdAtMs: jobTimeMs(jobId) ?? 0 }, hit.objects);
  }

  private async receipts(bucket: string, group: string, order?: (a: ObjectInfo, b: ObjectInfo) => number, stop?: (r: ReceiptEntry) => boolean): Promise<ReceiptEntry[]> {
    const listed = (await this.backend.objects.list(bucket, `${group}/receipts/`)).filter((o) => !o.key.endsWith('.cancel.json.json'));
    if (order) listed.sort(order);
    const entries: ReceiptEntry[] = [];
    for (let i = 0; i < listed.length; i += READ_CONCURRENCY) {
      const batch = await Promise.all(
        listed.slice(i, i + READ_CONCURRENCY).map(async (object) => {
          const body = await this.backend.objects.read(bucket, object.key);
          if (!body) return undefined;
          const parsed = parseDocument(ReceiptSchema, utf8Text(body), object.key);
          if (!parsed.ok) return undefined;
          const segments = object.key.split('/');
          return { receipt: parsed.value, user: segments.length === 4 ? segments[2] : undefined, createdAtMs: object.lastModifiedMs };
        }),
      );
      for (const entry of batch) if (entry) entries.push(entry);
      if (stop && entries.some(stop)) break;
    }
    return entries;
  }

  /** The receipt of one job: those written around the job's creation time are read first. */
  private async receiptOf(bucket: string, group: string, jobId: string): Promise<ReceiptEntry | undefined> {
    const at = jobTimeMs(jobId) ?? 0;
    const entries = await this.receipts(bucket, group, (a, b) => Math.abs(a.lastModifiedMs - at) - Math.abs(b.lastModifiedMs - at), (r) => r.receipt.jobId === jobId && r.receipt.outcome !== 'duplicate');
    return entries.find((r) => r.receipt.jobId === jobId && r.receipt.outcome !== 'duplicate');
  }

  private async detail(bucket: string, group: string, entry: ReceiptEntry, listed?: ObjectInfo[]): Promise<JobDetail> {
    return (await this.detailWithFacts(bucket, group, entry, listed, false)).detail;
  }

  /**
   * The job and, for a listing, its place in a chain: the job it continues from its hand-off
   * submission's name (no read), the stages after it from its provenance once it ended (read
   * anyway for the cost) or else from its certificate's first lines (one read per running job).
   */
  private async detailWithFacts(bucket: string, group: string, entry: ReceiptEntry, listed?: ObjectInfo[], withFacts = true): Promise<{ detail: JobDetail; facts?: JobStructureFacts }> {
    const { receipt } = entry;
    const keys = jobKeys(group, receipt.analysis, receipt.jobId);
    const objects = listed ?? (await this.backend.objects.list(bucket, keys.prefix));
    const statusKeys = objects.filter((o) => /\/logs\/DATASET_NAME-.+_STATUS\.txt\.json$/.test(o.key));
    const statuses = (
      await mapLimited(statusKeys, READ_CONCURRENCY, async (o) => {
        const body = await this.backend.objects.read(bucket, o.key);
        const parsed = body ? DatasetStatusSchema.safeParse(safeJson(utf8Text(body))) : undefined;
        return parsed?.success ? parsed.data : undefined;
      })
    ).filter((s): s is DatasetStatusDocument => s !== undefined);
    const ended = objects.some((o) => o.key === keys.end);
    const rejected = receipt.outcome === 'rejected';
    const phase: JobPhase = rejected ? 'REJECTED' : ended ? 'DONE' : 'ACTIVE';
    const datasets = statuses.map((s) => ({
      name: s.dataset,
      phase: s.status,
      ...(s.reason === undefined ? {} : { reason: s.reason }),
      ...(s.exitCode === undefined ? {} : { exitCode: s.exitCode }),
      ...(s.instanceId === undefined ? {} : { instanceId: s.instanceId }),
    }));
    const detail: JobDetail = {
      jobId: receipt.jobId,
      analysis: receipt.analysis,
      group,
      ...(entry.user === undefined ? {} : { user: entry.user }),
      phase,
      outcome: outcomeFromDocuments({ rejected, ended, datasets }),
      createdAtMs: entry.createdAtMs,
      updatedAtMs: Math.max(entry.createdAtMs, ...objects.map((o) => o.lastModifiedMs)),
      bucket,
      datasets,
    };
    if (rejected) detail.rejection = receipt.reasons ?? [];
    const first = statuses[0];
    if (first?.instanceType !== undefined) detail.instanceType = first.instanceType;
    if (first?.hourlyUsd !== undefined) detail.hourlyUsd = first.hourlyUsd;
    if (statuses.some((s) => s.costUsd !== undefined)) detail.costUsd = Math.round(statuses.reduce((sum, s) => sum + (s.costUsd ?? 0), 0) * 1e6) / 1e6;
    const facts: JobStructureFacts = {};
    const parentJobId = chainParentOf(receipt.submissionKey);
    if (parentJobId !== undefined) facts.parentJobId = parentJobId;
    if (ended && !rejected) {
      const provenance = await this.backend.objects.read(bucket, keys.provenance);
      const parsed = provenance ? (safeJson(utf8Text(provenance)) as ProvenanceFacts | undefined) : undefined;
      const cost = parsed?.cost;
      if (typeof cost?.reservedUsd === 'number') detail.reservedUsd = cost.reservedUsd;
      if (typeof cost?.spentUsd === 'number') detail.costUsd = cost.spentUsd;
      if (parsed?.chain) {
        facts.stage = parsed.chain.stage;
        facts.plannedNext = (parsed.chain.next ?? []).map((stage) => ({ analysis: stage.analysis, jobs: stage.jobs }));
      }
    } else if (withFacts && !rejected && objects.some((o) => o.key === keys.certificate)) {
      const certificate = await this.backend.objects.read(bucket, keys.certificate, 0, CERTIFICATE_HEAD_BYTES);
      if (certificate) Object.assign(facts, chainFactsOfCertificate(utf8Text(certificate)));
    }
    return { detail, ...(withFacts && Object.keys(facts).length > 0 ? { facts } : {}) };
  }
}

/** The chain the provenance names (lib/core/provenance.ts), as far as the listing needs it. */
interface ProvenanceFacts {
  cost?: { reservedUsd?: number; spentUsd?: number };
  chain?: { stage: number; next?: { analysis: string; jobs: number }[] };
}

/** The certificate's acceptance lines are at its start: this much of it is read while a job runs. */
const CERTIFICATE_HEAD_BYTES = 16 * 1024;

/** The job a chain hand-off submission continues: its name is `chain-<parent job>-<index>-submit.json` (chainKeys). */
export function chainParentOf(submissionKey: string): string | undefined {
  const name = submissionKey.slice(submissionKey.lastIndexOf('/') + 1);
  const match = new RegExp(`^${CHAIN_NAME_PREFIX}(.+)-\\d+-submit\\.json$`).exec(name);
  return match?.[1];
}

/**
 * What a running job's certificate says of its chain at acceptance (job-machine.ts writes
 * "chain: stage N, started by job X" and "chain: then A (n job(s), $..), then B ..."): the
 * protocol writes no other document then that names the later stages.
 */
export function chainFactsOfCertificate(text: string): JobStructureFacts {
  const facts: JobStructureFacts = {};
  const stage = /chain: stage (\d+), started by job (\S+)/.exec(text);
  if (stage) {
    facts.stage = Number(stage[1]);
    facts.parentJobId = stage[2] as string;
  }
  const then = /chain: then (.+); the whole chain is reserved now/.exec(text);
  if (then) {
    facts.plannedNext = [...(then[1] as string).matchAll(/(?:^|, then )(\S+) \((\d+) job\(s\)/g)].map((m) => ({ analysis: m[1] as string, jobs: Number(m[2]) }));
    facts.stage ??= 1;
  }
  return facts;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // A document being replaced right now reads as absent; the next poll sees it.
    return undefined;
  }
}
