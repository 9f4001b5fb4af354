import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobKeys, receiptKey } from '../../../lib/core/keys.js';
import { MOTO_START_TIMEOUT_MS, s3ClientFor, startMoto, uniqueName, type MotoServer } from '../../support/moto.js';

/*
 * The web app's aws backend (web/src/backend/aws-s3.ts) against the emulator, with static
 * credentials where the browser has Cognito identity-pool credentials: the same S3 calls and
 * lib/client use-cases. The Cognito sign-in (aws.ts) cannot run here (no Cognito on 127.0.0.1).
 * IAM is not what is tested here (moto does not evaluate the researcher policy's conditions):
 * test/lib/infra/web-stack.test.ts proves the web role's policy with the evaluator.
 */

// The web sources import with .ts extensions (Vite); loaded at run time so tsc -p tsconfig.test.json does not compile them (web/tsconfig.json does).
const MODULE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'web', 'src', 'backend', 'aws-s3.ts');

interface Backend {
  session(): Promise<{ backend: string; user: string; group: string }>;
  listObjects(a: string, kind: 'inputs' | 'configs'): Promise<{ key: string; name: string; sizeBytes: number }[]>;
  objectExists(a: string, kind: 'inputs' | 'configs', name: string, sha256?: string): Promise<{ exists: boolean; sameContent: boolean }>;
  putObject(a: string, kind: 'inputs' | 'configs', name: string, body: Blob, options?: { sha256?: string }): Promise<{ key: string }>;
  startUpload(a: string, request: { kind: 'inputs' | 'configs'; name: string; sizeBytes: number; partSizeBytes: number; sha256?: string }): Promise<{ uploadId: string; key: string }>;
  uploadPart(id: string, n: number, body: Blob): Promise<{ ETag: string }>;
  listParts(id: string): Promise<{ PartNumber: number; Size: number; ETag: string }[]>;
  completeUpload(id: string, parts: { PartNumber: number; ETag: string }[]): Promise<{ key: string }>;
  abortUpload(id: string): Promise<void>;
  submit(a: string, request: { datasets: string[]; config: string }): Promise<{ ok: true; jobId: string; submissionKey: string } | { ok: false; message: string; reasons: string[] }>;
  jobs(scope: 'mine' | 'group'): Promise<{ jobId: string; user?: string; outcome: string }[]>;
  job(id: string): Promise<{ jobId: string; outcome: string; certificate: string | null; datasets: { name: string; phase: string }[] }>;
  followJob(id: string, onEvent: (event: { type: string; line?: string }) => void, onError?: (error: Error) => void): () => void;
  results(id: string): Promise<{ path: string; sizeBytes: number }[]>;
  resultBlob(id: string, path: string, options?: { maxBytes?: number }): Promise<Blob>;
  budget(): Promise<{ user: string; group: string; budget: { leftUsd: number } | null }>;
}
type BackendClass = new (options: { s3: S3Client; identity: { user: string; group: string }; analyses: { analysis: string; bucket: string }[]; pollMs?: number; receiptTimeoutMs?: number }) => Backend;

let moto: MotoServer;
let s3: S3Client;
let bucket: string;
let ada: Backend;
let cy: Backend;
let protocolRunning = true;
const JOB = '20261201T120000Z-ab12';

async function text(key: string): Promise<string | undefined> {
  try {
    return await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString();
  } catch {
    return undefined;
  }
}
const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));

/** Stands in for the submit protocol: answers every new submission with a receipt (a config named bad* is refused). */
async function fakeProtocol(): Promise<void> {
  const answered = new Set<string>();
  while (protocolRunning) {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'lab/submissions/' }));
    for (const object of listed.Contents ?? []) {
      const key = object.Key as string;
      if (answered.has(key) || !key.endsWith('submit.json')) continue;
      answered.add(key);
      const submission = JSON.parse((await text(key)) as string) as { configname: string };
      const [, , user, fileName] = key.split('/');
      const rejected = submission.configname.includes('/bad');
      await put(receiptKey('lab', user, fileName as string), JSON.stringify({ schemaVersion: 1, submissionKey: key, etag: 'e', jobId: rejected ? '20261201T120001Z-dead' : JOB, analysis: 'alpha', outcome: rejected ? 'rejected' : 'accepted', ...(rejected ? { reasons: ['config "bad.json": threshold must be <= 1'] } : {}) }));
      if (!rejected) {
        const keys = jobKeys('lab', 'alpha', JOB);
        await put(keys.certificate, '2026-12-01T12:00:00.000Z  job accepted\n');
        await put(keys.datasetStatus('a.csv'), status('RUNNING'));
        await put(`${keys.prefix}logs/a.csv.log`, 'line one\n');
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function status(phase: string): string {
  const keys = jobKeys('lab', 'alpha', JOB);
  return JSON.stringify({ schemaVersion: 1, jobId: JOB, analysis: 'alpha', dataset: 'a.csv', inputKey: 'lab/inputs/a.csv', status: phase, times: {}, logKey: `${keys.prefix}logs/a.csv.log`, resultsPrefix: `${keys.prefix}process_results/`, logTail: [], updatedAt: '2026-12-01T12:00:05.000Z' });
}

let protocol: Promise<void>;

beforeAll(async () => {
  moto = await startMoto();
  s3 = s3ClientFor(moto);
  bucket = uniqueName('neurocaasanalysis-alpha');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const { S3WebBackend } = (await import(MODULE)) as { S3WebBackend: BackendClass };
  const options = { s3, analyses: [{ analysis: 'alpha', bucket }], pollMs: 50, receiptTimeoutMs: 15_000 };
  ada = new S3WebBackend({ ...options, identity: { user: 'ada', group: 'lab' } });
  cy = new S3WebBackend({ ...options, identity: { user: 'cy', group: 'lab' } });
  protocol = fakeProtocol();
}, MOTO_START_TIMEOUT_MS);

afterAll(async () => {
  protocolRunning = false;
  await protocol;
  await moto?.stop();
});

describe('the web app\'s aws backend on S3', () => {
  it('is the signed-in user of their group', async () => {
    expect(await ada.session()).toEqual({ backend: 'aws', user: 'ada', group: 'lab' });
  });

  it('uploads small files create-only with their sha256, lists them and knows an identical one', async () => {
    expect(await ada.putObject('alpha', 'inputs', 'a.csv', new Blob(['1,2\n']), { sha256: 'abc' })).toEqual({ key: 'lab/inputs/a.csv' });
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'lab/inputs/a.csv' }))).Metadata).toEqual({ sha256: 'abc' });
    await ada.putObject('alpha', 'configs', 'c.json', new Blob(['{}']));
    expect((await ada.listObjects('alpha', 'inputs')).map((o) => [o.name, o.sizeBytes])).toEqual([['a.csv', 4]]);
    expect(await ada.objectExists('alpha', 'inputs', 'a.csv', 'abc')).toEqual({ exists: true, sameContent: true });
    expect(await ada.objectExists('alpha', 'inputs', 'a.csv', 'other')).toEqual({ exists: true, sameContent: false });
    expect(await ada.objectExists('alpha', 'inputs', 'b.csv')).toEqual({ exists: false, sameContent: false });
    await expect(ada.putObject('alpha', 'inputs', 'a.csv', new Blob(['changed']))).rejects.toMatchObject({ code: 'ObjectExists', status: 409 });
    expect(await text('lab/inputs/a.csv')).toBe('1,2\n');
  });

  it('refuses names that escape the folder and analyses that are not deployed', async () => {
    for (const name of ['../x', '/abs', 'a/../b', 'a\\b', '']) await expect(ada.putObject('alpha', 'inputs', name, new Blob(['x']))).rejects.toMatchObject({ code: 'InvalidName' });
    await expect(ada.listObjects('gamma', 'inputs')).rejects.toMatchObject({ code: 'AnalysisNotFound', message: expect.stringContaining('deployed: alpha') });
  });

  it('uploads in parts (list, resume, complete) and aborts; nothing appears before completion', async () => {
    const part1 = new Blob([new Uint8Array(5 * 1024 * 1024).fill(7)]);
    const started = await ada.startUpload('alpha', { kind: 'inputs', name: 'big/video.bin', sizeBytes: part1.size + 3, partSizeBytes: part1.size, sha256: 'def' });
    expect(started.key).toBe('lab/inputs/big/video.bin');
    const first = await ada.uploadPart(started.uploadId, 1, part1);
    expect(first.ETag).toMatch(/^"/);
    expect((await ada.listParts(started.uploadId)).map((p) => [p.PartNumber, p.Size])).toEqual([[1, part1.size]]);
    expect(await ada.objectExists('alpha', 'inputs', 'big/video.bin')).toEqual({ exists: false, sameContent: false });
    const second = await ada.uploadPart(started.uploadId, 2, new Blob(['end']));
    await ada.completeUpload(started.uploadId, [{ PartNumber: 2, ETag: second.ETag }, { PartNumber: 1, ETag: first.ETag }]);
    expect(await ada.objectExists('alpha', 'inputs', 'big/video.bin', 'def')).toEqual({ exists: true, sameContent: true });
    await expect(ada.startUpload('alpha', { kind: 'inputs', name: 'big/video.bin', sizeBytes: 1, partSizeBytes: 1 })).rejects.toMatchObject({ code: 'ObjectExists' });

    const aborted = await ada.startUpload('alpha', { kind: 'inputs', name: 'gone.bin', sizeBytes: 3, partSizeBytes: 3 });
    await ada.uploadPart(aborted.uploadId, 1, new Blob(['abc']));
    await ada.abortUpload(aborted.uploadId);
    await expect(ada.listParts(aborted.uploadId)).rejects.toMatchObject({ code: expect.any(String) });
    expect(await ada.objectExists('alpha', 'inputs', 'gone.bin')).toEqual({ exists: false, sameContent: false });
    await expect(ada.listParts('not-an-upload')).rejects.toMatchObject({ code: 'UploadNotFound' });
  });

  it('submits under the user\'s own prefix and returns the job id from the receipt; a refusal comes back verbatim', async () => {
    const outcome = await ada.submit('alpha', { datasets: ['a.csv'], config: 'c.json' });
    expect(outcome).toMatchObject({ ok: true, jobId: JOB, submissionKey: expect.stringMatching(/^lab\/submissions\/ada\/.+submit\.json$/) });
    const submission = JSON.parse((await text((outcome as { submissionKey: string }).submissionKey)) as string) as Record<string, unknown>;
    expect(submission).toMatchObject({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' });
    expect(await ada.submit('alpha', { datasets: ['a.csv'], config: 'bad.json' })).toEqual({ ok: false, message: expect.stringContaining('refused'), reasons: ['config "bad.json": threshold must be <= 1'] });
  });

  it('lists the group\'s jobs and the user\'s own, reads one with its certificate, follows it to its end', async () => {
    expect((await ada.jobs('mine')).map((j) => j.jobId)).toContain(JOB);
    expect(await cy.jobs('mine')).toEqual([]);
    expect((await cy.jobs('group')).map((j) => [j.jobId, j.user])).toContainEqual([JOB, 'ada']);
    const job = await ada.job(JOB);
    expect(job).toMatchObject({ jobId: JOB, outcome: 'RUNNING', certificate: '2026-12-01T12:00:00.000Z  job accepted\n', datasets: [{ name: 'a.csv', phase: 'RUNNING' }] });

    const events: { type: string; line?: string }[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      ada.followJob(JOB, (event) => {
        events.push(event);
        if (event.type === 'end') resolve();
      }, reject);
    });
    const keys = jobKeys('lab', 'alpha', JOB);
    await put(`${keys.prefix}process_results/out.svg`, '<svg/>');
    await put(keys.datasetStatus('a.csv'), status('SUCCEEDED'));
    await put(keys.end, 'done\n');
    await ended;
    expect(events).toContainEqual({ type: 'log', dataset: 'a.csv', line: 'line one' });
    expect(events.at(-1)).toMatchObject({ type: 'end', job: { outcome: 'SUCCEEDED' } });
  });

  it('lists and reads results, bounded when asked', async () => {
    expect((await ada.results(JOB)).map((r) => r.path)).toContain('process_results/out.svg');
    expect(await (await ada.resultBlob(JOB, 'process_results/out.svg')).text()).toBe('<svg/>');
    expect(await (await ada.resultBlob(JOB, 'process_results/out.svg', { maxBytes: 3 })).text()).toBe('<sv');
    await expect(ada.resultBlob(JOB, '../../other/x')).rejects.toMatchObject({ code: 'InvalidName' });
    await expect(ada.resultBlob(JOB, 'process_results/none.png')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('reads the user\'s budget object, null before any', async () => {
    expect(await ada.budget()).toEqual({ user: 'ada', group: 'lab', budget: null });
    await put('lab/budget/ada.json', JSON.stringify({ schemaVersion: 1, user: 'ada', group: 'lab', period: '2026-12', budgetUsd: 10, reservedUsd: 1, spentUsd: 2, leftUsd: 7, updatedAt: '2026-12-01T12:00:00.000Z', jobs: [] }));
    expect((await ada.budget()).budget).toMatchObject({ leftUsd: 7 });
    expect((await cy.budget()).budget).toBeNull();
  });
});
