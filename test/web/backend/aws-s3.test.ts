import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeAnalysis } from '../../../lib/client/analysis-catalog.js';
import { estimateReservation } from '../../../lib/client/estimate.js';
import { buildWebCatalog, type WebCatalog } from '../../../lib/client/web-catalog.js';
import { parseBlueprintText, type Blueprint } from '../../../lib/core/blueprint.js';
import { formatByteLimit, formatBytes, SUBMISSION_LIMITS } from '../../../lib/core/plan.js';
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
  analyses(): Promise<{ name: string; description: string; perDatasetUsd: number; readme: string | null; configSchema: Record<string, unknown>; hardware: unknown }[]>;
  saveConfig(a: string, name: string, config: unknown): Promise<{ key: string }>;
  validateConfig(a: string, text: string, format: 'json' | 'yaml'): Promise<{ ok: boolean; config?: unknown; fields?: { path: string; message: string }[] }>;
  estimate(a: string, request: { datasets: string[]; instanceType?: string }): Promise<{ reservedUsd: number; perDatasetUsd: number; instanceType: string; deadlineMinutes: number; hourlyUsd: number; waves: number }>;
  resultDownloadUrl(id: string, path: string): Promise<string>;
  resultsZip(id: string): Promise<{ fileName: string; stream: ReadableStream<Uint8Array> }>;
}
interface BackendOptions {
  s3: S3Client;
  identity: { user: string; group: string };
  analyses: { analysis: string; bucket: string }[];
  pollMs?: number;
  receiptTimeoutMs?: number;
  catalog: () => Promise<unknown>;
}
type BackendClass = new (options: BackendOptions) => Backend;

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The kalman-smoother sample blueprint deployed as "alpha" (a real schema with a required field). */
function alphaBlueprint(): Blueprint {
  const path = join(REPO, 'blueprints', 'kalman-smoother', 'blueprint.json');
  return parseBlueprintText(readFileSync(path, 'utf8').replace('"name": "kalman-smoother"', '"name": "alpha"'), path);
}
let alpha: Blueprint;
let catalog: WebCatalog;
let BackendOf: BackendClass;
let backendOptions: Omit<BackendOptions, 'identity'>;

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

/**
 * The query-string SigV4 signature S3 would compute for a presigned GET that signs only host
 * (AWS's "Authenticating Requests: Using Query Parameters"), written apart from the SDK.
 */
function expectedSignature(url: URL, secretAccessKey: string): string {
  const rfc3986 = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams.entries()]
    .filter(([name]) => name !== 'X-Amz-Signature')
    .map(([name, value]) => [rfc3986(name), rfc3986(value)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  const canonical = ['GET', url.pathname, query, `host:${url.host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const date = url.searchParams.get('X-Amz-Date') as string;
  const scope = (url.searchParams.get('X-Amz-Credential') as string).split('/').slice(1).join('/');
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const [day, region, service] = scope.split('/') as [string, string, string];
  let key: Buffer = Buffer.from(`AWS4${secretAccessKey}`);
  for (const part of [day, region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(toSign).digest('hex');
}

beforeAll(async () => {
  moto = await startMoto();
  s3 = s3ClientFor(moto);
  bucket = uniqueName('neurocaasanalysis-alpha');
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const { S3WebBackend } = (await import(MODULE)) as { S3WebBackend: BackendClass };
  alpha = alphaBlueprint();
  // The catalog also names an analysis this deployment's config.json does not list: not shown.
  const gone = parseBlueprintText(JSON.stringify({ ...JSON.parse(readFileSync(join(REPO, 'blueprints', 'kalman-smoother', 'blueprint.json'), 'utf8')), name: 'gone' }), 'gone');
  catalog = JSON.parse(JSON.stringify(buildWebCatalog([{ analysis: 'alpha', blueprint: alpha, readme: '# Alpha\n\nSmooths.' }, { analysis: 'gone', blueprint: gone, readme: null }]))) as WebCatalog;
  BackendOf = S3WebBackend;
  const options = { s3, analyses: [{ analysis: 'alpha', bucket }], pollMs: 50, receiptTimeoutMs: 15_000, catalog: async () => catalog };
  backendOptions = options;
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

describe('the web app\'s aws backend: catalog, configs, estimate', () => {
  it('shows the deployed analyses from the catalog: description, hardware, cost per dataset, README and config schema', async () => {
    const analyses = await ada.analyses();
    expect(analyses).toEqual([describeAnalysis(alpha, '# Alpha\n\nSmooths.')]);
    expect(analyses[0]).toMatchObject({ name: 'alpha', readme: '# Alpha\n\nSmooths.', hardware: { instanceType: 'm5.large', allowedInstanceTypes: ['m5.large', 'm5.xlarge'] } });
    expect(analyses[0]?.perDatasetUsd).toBeGreaterThan(0);
    expect((analyses[0]?.configSchema as { required: string[] }).required).toEqual(['frameRateHz']);
  });

  it('says what to do when the catalog is missing (and reads it again next time) or from another version', async () => {
    let fail = true;
    const flaky = new BackendOf({ ...backendOptions, identity: { user: 'ada', group: 'lab' }, catalog: async () => {
      if (fail) throw new Error('404 Not Found');
      return catalog;
    } });
    await expect(flaky.analyses()).rejects.toMatchObject({ code: 'CatalogMissing', message: expect.stringContaining('redeploy the web stack') });
    fail = false;
    expect((await flaky.analyses()).map((a) => a.name)).toEqual(['alpha']);
    const stale = new BackendOf({ ...backendOptions, identity: { user: 'ada', group: 'lab' }, catalog: async () => [{ analysis: 'alpha', blueprint: {}, readme: null }] });
    await expect(stale.estimate('alpha', { datasets: ['a.csv'] })).rejects.toMatchObject({ code: 'CatalogInvalid', message: expect.stringContaining('redeploy') });
  });

  it('validates a JSON or YAML config text against the blueprint\'s schema, field by field', async () => {
    expect(await ada.validateConfig('alpha', '{"frameRateHz": 30}', 'json')).toEqual({ ok: true, config: { frameRateHz: 30 } });
    expect(await ada.validateConfig('alpha', 'frameRateHz: 60\n', 'yaml')).toEqual({ ok: true, config: { frameRateHz: 60 } });
    const wrong = await ada.validateConfig('alpha', 'frameRateHz: -3\nbogus: 1\n', 'yaml');
    expect(wrong.ok).toBe(false);
    expect(wrong.fields).toEqual(expect.arrayContaining([{ path: '/frameRateHz', message: expect.stringContaining('> 0') }, { path: '/bogus', message: expect.stringContaining('unknown key "bogus"') }]));
    expect(await ada.validateConfig('alpha', '{"frameRateHz": ', 'json')).toMatchObject({ ok: false, fields: [{ path: '', message: expect.stringContaining('not valid JSON') }] });
    expect((await ada.validateConfig('alpha', '{}', 'json')).fields).toEqual([{ path: '/frameRateHz', message: 'is required' }]);
    await expect(ada.validateConfig('gamma', '{}', 'json')).rejects.toMatchObject({ code: 'AnalysisNotFound', status: 404 });
  });

  it('states the config limit as the CLI does (one constant, "1 MiB"), not in raw bytes', async () => {
    const over = ' '.repeat(SUBMISSION_LIMITS.maxConfigBytes + 1);
    const refused = ada.validateConfig('alpha', over, 'json');
    await expect(refused).rejects.toMatchObject({ code: 'BodyTooLarge', status: 413 });
    const message = await refused.catch((error: Error) => error.message);
    expect(message).toBe(`the config text is ${formatBytes(over.length)}; a config may be at most ${formatByteLimit(SUBMISSION_LIMITS.maxConfigBytes)} (it holds the analysis's settings, not data)`);
    expect(message).not.toContain(String(SUBMISSION_LIMITS.maxConfigBytes));
  });

  it('saves a valid config create-only under the group\'s configs/ (JSON or YAML by its name) and refuses an invalid one with its fields', async () => {
    expect(await ada.saveConfig('alpha', 'run1.json', { frameRateHz: 30 })).toEqual({ key: 'lab/configs/run1.json' });
    expect(JSON.parse((await text('lab/configs/run1.json')) as string)).toEqual({ frameRateHz: 30 });
    expect(await ada.saveConfig('alpha', 'sub/run2.yaml', { frameRateHz: 25 })).toEqual({ key: 'lab/configs/sub/run2.yaml' });
    expect(await text('lab/configs/sub/run2.yaml')).toBe('frameRateHz: 25\n');
    // The same settings again under the same name are the same config; different ones are refused, the first kept.
    expect(await ada.saveConfig('alpha', 'run1.json', { frameRateHz: 30 })).toEqual({ key: 'lab/configs/run1.json' });
    await expect(ada.saveConfig('alpha', 'run1.json', { frameRateHz: 31 })).rejects.toMatchObject({ code: 'ObjectExists', status: 409, message: expect.stringContaining('another name') });
    expect(JSON.parse((await text('lab/configs/run1.json')) as string)).toEqual({ frameRateHz: 30 });
    await expect(ada.saveConfig('alpha', 'bad.json', { frameRateHz: 0 })).rejects.toMatchObject({ code: 'ConfigInvalid', status: 400, fields: [{ path: '/frameRateHz', message: expect.stringContaining('> 0') }] });
    expect(await text('lab/configs/bad.json')).toBeUndefined();
    await expect(ada.saveConfig('alpha', 'run3.txt', { frameRateHz: 30 })).rejects.toMatchObject({ code: 'Usage', status: 400, message: expect.stringContaining('.json, .yaml or .yml') });
    await expect(ada.saveConfig('alpha', '../escape.json', { frameRateHz: 30 })).rejects.toMatchObject({ code: 'KeyInvalid', status: 400 });
    expect((await ada.listObjects('alpha', 'configs')).map((o) => o.name)).toEqual(expect.arrayContaining(['run1.json', 'sub/run2.yaml']));
  });

  it('estimates with the CLI\'s code on the deployed blueprint, refusing a type or count the blueprint does not allow', async () => {
    const three = estimateReservation(alpha, 3, 'm5.xlarge');
    expect(await ada.estimate('alpha', { datasets: ['a.csv', 'b.csv', 'c.csv'], instanceType: 'm5.xlarge' })).toEqual({
      reservedUsd: three.reservedUsd, perDatasetUsd: three.perDatasetUsd, instanceType: 'm5.xlarge', deadlineMinutes: 30, hourlyUsd: 0.192, waves: 1,
    });
    expect((await ada.estimate('alpha', { datasets: ['a.csv'] })).perDatasetUsd).toBe((await ada.analyses())[0]?.perDatasetUsd);
    await expect(ada.estimate('alpha', { datasets: ['a.csv'], instanceType: 'p3.2xlarge' })).rejects.toMatchObject({ code: 'Usage', status: 400, message: expect.stringContaining('m5.large, m5.xlarge') });
    await expect(ada.estimate('alpha', { datasets: [] })).rejects.toMatchObject({ code: 'Usage', status: 400 });
  });
});

describe('the web app\'s aws backend: downloads', () => {
  it('links one result with a presigned GET (only host signed, for an attachment) that S3 answers with the bytes', async () => {
    const keys = jobKeys('lab', 'alpha', JOB);
    await put(`${keys.prefix}process_results/smoothed ü.csv`, 'x,y\n1,2\n');
    const url = new URL(await ada.resultDownloadUrl(JOB, 'process_results/smoothed ü.csv'));
    expect(url.origin).toBe(moto.endpoint);
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('300');
    // Only host is signed: a plain navigation sends nothing else.
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('x,y\n1,2\n');
    // S3 answers with the response-content-disposition it was signed with (moto ignores it, so the query is checked).
    expect(url.searchParams.get('response-content-disposition')).toBe(`attachment; filename="smoothed _.csv"; filename*=UTF-8''smoothed%20%C3%BC.csv`);
    // moto does not check signatures: the test does, with its own SigV4 (the test credentials are moto's).
    expect(url.searchParams.get('X-Amz-Signature')).toBe(expectedSignature(url, 'testing'));
    await expect(ada.resultDownloadUrl(JOB, 'process_results/none.csv')).rejects.toMatchObject({ code: 'ObjectNotFound', status: 404 });
    await expect(ada.resultDownloadUrl(JOB, '../../../lab/inputs/a.csv')).rejects.toMatchObject({ code: 'KeyInvalid', status: 400 });
  });

  it('streams every result of the job into one zip (entries <jobId>/<path>, bigger files in several reads) that unzip accepts', async () => {
    const keys = jobKeys('lab', 'alpha', JOB);
    const big = new Uint8Array(2.5 * 1024 * 1024).map((_, i) => i % 251);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${keys.prefix}process_results/big.bin`, Body: big }));
    const { fileName, stream } = await ada.resultsZip(JOB);
    expect(fileName).toBe(`job-${JOB}-results.zip`);
    const dir = await mkdtemp(join(tmpdir(), 'ncap-webzip-'));
    try {
      const zip = join(dir, fileName);
      await writeFile(zip, new Uint8Array(await new Response(stream).arrayBuffer()));
      // unzip -t checks every entry's CRC.
      expect(execFileSync('unzip', ['-tq', zip], { encoding: 'utf8' })).toContain('No errors detected');
      const names = execFileSync('unzip', ['-Z1', zip], { encoding: 'utf8' }).trim().split('\n');
      expect(names).toEqual(expect.arrayContaining([`${JOB}/process_results/out.svg`, `${JOB}/process_results/big.bin`, `${JOB}/logs/a.csv.log`]));
      expect(names.every((n) => n.startsWith(`${JOB}/`))).toBe(true);
      expect(execFileSync('unzip', ['-p', zip, `${JOB}/process_results/out.svg`], { encoding: 'utf8' })).toBe('<svg/>');
      // Buffer.equals: a deep equality over 2.6 million elements would take the test's whole budget.
      expect(execFileSync('unzip', ['-p', zip, `${JOB}/process_results/big.bin`], { maxBuffer: 8 * 1024 * 1024 }).equals(big)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to zip a job that is not the group\'s', async () => {
    await expect(ada.resultsZip('20261201T000000Z-none')).rejects.toMatchObject({ code: 'JobNotFound' });
  });
});
