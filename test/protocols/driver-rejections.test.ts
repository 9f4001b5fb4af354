/**
 * Submissions that could never run as given: over the platform's limits, or naming keys that
 * can never be written. Each one ends as a rejection whose certificate, statuses and end.txt are
 * written under valid keys; limits are checked before anything is read; a rejection's size
 * grows linearly with its input.
 */
import { mkdtempSync, openSync, closeSync, ftruncateSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isValidObjectKey, jobKeys } from '../../lib/core/keys.js';
import { SUBMISSION_LIMITS } from '../../lib/core/plan.js';
import { LocalJobStore } from '../../lib/local/job-store.js';
import { LocalLedger } from '../../lib/local/ledger.js';
import { LocalObjectStore } from '../../lib/local/object-store.js';
import { StateDb } from '../../lib/local/state-db.js';
import type { Catalog, Machines, ObjectStore } from '../../lib/ports.js';
import { JobDriver } from '../../protocols/driver.js';
import { alice, blueprintFixture } from '../support/core-fixtures.js';

const BUCKET = 'kalman-smoother';

function setup(options: { maxDatasetsPerJob?: number } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'ncap-rejections-'));
  const store = new LocalObjectStore(join(root, 'buckets'));
  const calls = { head: 0, get: new Map<string, number>() };
  // Counts what the driver reads, to prove limits are checked before reading.
  const objects: ObjectStore = {
    head: async (bucket, key) => {
      calls.head += 1;
      return store.head(bucket, key);
    },
    get: async (bucket, key) => {
      calls.get.set(key, (calls.get.get(key) ?? 0) + 1);
      return store.get(bucket, key);
    },
    put: (bucket, key, body, putOptions) => store.put(bucket, key, body, putOptions),
    list: (bucket, prefix) => store.list(bucket, prefix),
  };
  const blueprint = blueprintFixture();
  if (options.maxDatasetsPerJob) blueprint.limits.maxDatasetsPerJob = options.maxDatasetsPerJob;
  const catalog: Catalog = {
    blueprint: async (name) => (name === blueprint.name ? { blueprint, versionId: 'sha256:feed' } : undefined),
    usersOfGroup: async (group) => (group === 'lab' ? [alice] : []),
    user: async () => undefined,
    imageId: () => 'ami-0123456789abcdef0',
  };
  const nothingLaunches = (): never => {
    throw new Error('a rejected submission must not reach the machines');
  };
  const machines: Machines = { launch: async () => nothingLaunches(), findLaunched: async () => nothingLaunches(), terminate: async () => nothingLaunches(), describe: async () => nothingLaunches(), listExpired: async () => [] };
  const state = new StateDb(join(root, 'state', 'neurocaas.db'));
  const jobs = new LocalJobStore(state);
  let n = 0;
  const driver = new JobDriver({
    objects,
    jobs,
    ledger: new LocalLedger(state),
    machines,
    runner: { isAgentOnline: async () => false, sendCommand: async () => nothingLaunches() },
    scheduler: { schedule: async () => undefined },
    catalog,
    clock: { nowMs: () => Date.UTC(2026, 10, 22, 12) },
    ids: { jobId: () => `J${(n += 1)}` },
  });
  const bucketFile = (key: string) => join(root, 'buckets', BUCKET, ...key.split('/'));
  /** Writes a file into the bucket folder directly, as `cp` would: any name the filesystem takes. */
  const drop = (key: string, body: string) => {
    mkdirSync(join(bucketFile(key), '..'), { recursive: true });
    writeFileSync(bucketFile(key), body);
  };
  return { root, store, calls, driver, jobs, drop, bucketFile };
}

async function resultKeys(store: LocalObjectStore, jobId: string): Promise<string[]> {
  return (await store.list(BUCKET, jobKeys('lab', BUCKET, jobId).prefix)).map((o) => o.key);
}

describe('a rejected submission is always written under valid keys', () => {
  it('names a dataset with a control character: rejected with the reason, end.txt written', async () => {
    const { store, driver, jobs, drop } = setup();
    drop('lab/configs/c.json', '{"frameRateHz": 30}');
    drop('lab/submissions/ctlsubmit.json', JSON.stringify({ dataname: ['lab/inputs/bad\u0001name.csv', 'lab/inputs/missing.csv'], configname: 'lab/configs/c.json' }));

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/ctlsubmit.json');

    const record = await jobs.get(jobId);
    expect(record?.state.phase).toBe('REJECTED');
    expect(record?.outbox).toEqual([]);
    const keys = await resultKeys(store, jobId);
    expect(keys.every(isValidObjectKey)).toBe(true);
    expect(keys).toContain(jobKeys('lab', BUCKET, jobId).end);
    expect(keys).toContain(jobKeys('lab', BUCKET, jobId).datasetStatus('missing.csv'));
    const certificate = (await store.get(BUCKET, jobKeys('lab', BUCKET, jobId).certificate)).toString();
    expect(certificate).toContain('"lab/inputs/bad\\u0001name.csv" contains a control character');
  });

  it('names a dataset key over 1024 bytes: rejected with the reason, end.txt written', async () => {
    const { store, driver, jobs, drop } = setup();
    drop('lab/configs/c.json', '{"frameRateHz": 30}');
    drop('lab/submissions/longsubmit.json', JSON.stringify({ dataname: `lab/inputs/${'x'.repeat(1100)}.csv`, configname: 'lab/configs/c.json' }));

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/longsubmit.json');

    expect((await jobs.get(jobId))?.state.rejection?.join('\n')).toContain('is longer than 1024 bytes');
    const keys = await resultKeys(store, jobId);
    expect(keys.every(isValidObjectKey)).toBe(true);
    expect(keys).toContain(jobKeys('lab', BUCKET, jobId).end);
  });

  it('names a valid input whose results could not be stored under its name: rejected before anything runs', async () => {
    const { store, driver, jobs, drop } = setup();
    const input = `lab/inputs/${`${'d'.repeat(190)}/`.repeat(5)}y.csv`;
    drop(input, 'data');
    drop('lab/configs/c.json', '{"frameRateHz": 30}');
    drop('lab/submissions/deepsubmit.json', JSON.stringify({ dataname: input, configname: 'lab/configs/c.json' }));

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/deepsubmit.json');

    expect(isValidObjectKey(input)).toBe(true);
    expect((await jobs.get(jobId))?.state.rejection?.join('\n')).toMatch(/has a name its results cannot be stored under \(\d+-byte keys, at most 1024\)/);
    expect(await store.head(BUCKET, jobKeys('lab', BUCKET, jobId).end)).toBeDefined();
  });

  it('is a submission file whose name has a newline: claimed once, rejected with the reason in the group', async () => {
    const { store, driver, jobs, drop } = setup();
    const key = 'lab/submissions/two\nlinessubmit.json';
    drop(key, '{}');

    const first = await driver.submit(BUCKET, key);
    const again = await driver.submit(BUCKET, key);

    expect(again).toEqual({ jobId: first.jobId, duplicate: true });
    const record = await jobs.get(first.jobId);
    expect(record?.state.phase).toBe('REJECTED');
    expect(record?.state.rejection?.[0]).toContain('cannot be processed: key "lab/submissions/two\\nlinessubmit.json" contains a control character; rename it');
    expect(await store.head(BUCKET, jobKeys('lab', BUCKET, first.jobId).end)).toBeDefined();
  });
});

describe('submission limits', () => {
  it('refuses a 50 MB submission file without reading it', async () => {
    const { driver, jobs, calls, drop, bucketFile } = setup();
    drop('lab/submissions/hugesubmit.json', '');
    // Sparse: 50 MB on paper, nothing on disk.
    const fd = openSync(bucketFile('lab/submissions/hugesubmit.json'), 'r+');
    ftruncateSync(fd, 50 * 1024 * 1024);
    closeSync(fd);

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/hugesubmit.json');

    expect(calls.get.get('lab/submissions/hugesubmit.json')).toBeUndefined();
    const record = await jobs.get(jobId);
    expect(record?.state.phase).toBe('REJECTED');
    expect(record?.state.rejection?.[0]).toContain(`a submission file may be at most ${SUBMISSION_LIMITS.maxSubmissionBytes} bytes`);
  });

  it('refuses 2000 datanames at once, before looking any of them up, with a small record', async () => {
    const { store, driver, jobs, calls, drop } = setup({ maxDatasetsPerJob: 10_000 });
    drop('lab/configs/c.json', '{"frameRateHz": 30}');
    drop('lab/submissions/manysubmit.json', JSON.stringify({ dataname: Array.from({ length: 2000 }, (_, i) => `lab/inputs/missing-${i}.csv`), configname: 'lab/configs/c.json' }));

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/manysubmit.json');

    const record = await jobs.get(jobId);
    expect(record?.state.rejection).toEqual(['too many datasets: 2000 named, the platform allows at most 1000 per submission; split it into several submissions']);
    expect(calls.head).toBeLessThan(5);
    expect(JSON.stringify(record).length).toBeLessThan(10_000);
    expect(await store.head(BUCKET, jobKeys('lab', BUCKET, jobId).end)).toBeDefined();
  });

  it('rejects 1000 missing datanames with each dataset its own short reason (linear, not quadratic)', async () => {
    const { store, driver, jobs, drop } = setup({ maxDatasetsPerJob: 1000 });
    drop('lab/configs/c.json', '{"frameRateHz": 30}');
    drop('lab/submissions/missingsubmit.json', JSON.stringify({ dataname: Array.from({ length: 1000 }, (_, i) => `lab/inputs/missing-${i}.csv`), configname: 'lab/configs/c.json' }));

    const { jobId } = await driver.submit(BUCKET, 'lab/submissions/missingsubmit.json');

    const record = await jobs.get(jobId);
    expect(record?.state.phase).toBe('REJECTED');
    expect(record?.state.rejection).toHaveLength(1000);
    // About a kilobyte per dataset (its state, its reason, its certificate line); 1000 x all reasons would be ~70 MB.
    expect(JSON.stringify(record).length).toBeLessThan(1000 * 1024);
    const ds = record?.state.datasets[700];
    expect(ds?.reason).toBe('submission rejected: dataname: dataset "lab/inputs/missing-700.csv" does not exist; upload it first');
    const status = JSON.parse((await store.get(BUCKET, jobKeys('lab', BUCKET, jobId).datasetStatus('missing-700.csv'))).toString()) as { reason: string };
    expect(status.reason).toBe(ds?.reason);
    expect(await store.head(BUCKET, jobKeys('lab', BUCKET, jobId).end)).toBeDefined();
  });
});
