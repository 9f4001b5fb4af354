/**
 * The local web interface end to end: the built CLI runs `neurocaas ui` on 127.0.0.1 (port 0)
 * against a temp root with the kalman-smoother blueprint and a controllable one, and the tests
 * talk HTTP to it as the web app would (and as an attacker would).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { crc32 } from 'node:zlib';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatByteLimit, formatBytes, SUBMISSION_LIMITS } from '../../lib/core/plan.js';
import { createSharedSandbox, EXIT, fixtureBlueprintsDir, kalmanSampleDir, machineRecords, repoBlueprintsDir, transcript, type CliProcess, type Sandbox } from './helpers.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: any;
}

let sandbox: Sandbox & { dispose(): Promise<void> };
let server: CliProcess;
let base: URL;
let blueprintsDir: string;

/** One HTTP request with full control of the headers (fetch would not let a test forge Host). */
function call(method: string, target: string, options: { body?: Buffer | string | object; headers?: Record<string, string> } = {}): Promise<Reply> {
  const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : typeof options.body === 'string' ? Buffer.from(options.body) : Buffer.from(JSON.stringify(options.body));
  const headers: Record<string, string> = { ...(body && typeof options.body === 'object' && !Buffer.isBuffer(options.body) ? { 'content-type': 'application/json' } : {}), ...(body ? { 'content-length': String(body.length) } : {}), ...options.headers };
  return new Promise((resolve, reject) => {
    const req = request({ host: base.hostname, port: base.port, method, path: target, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const all = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(all.toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: all, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${target} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');
const A = '/api/analyses/kalman-smoother';

/** Reads the event stream of a job to its end; returns the events. Bounded by `timeoutMs`. */
function followToEnd(jobId: string, timeoutMs = 30_000): Promise<{ type: string; [k: string]: unknown }[]> {
  return new Promise((resolve, reject) => {
    const events: { type: string }[] = [];
    const req = request({ host: base.hostname, port: base.port, path: `/api/jobs/${jobId}/events`, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`events answered ${res.statusCode}`));
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        for (let at = buffered.indexOf('\n\n'); at >= 0; at = buffered.indexOf('\n\n')) {
          const frame = buffered.slice(0, at);
          buffered = buffered.slice(at + 2);
          const data = frame.split('\n').find((line) => line.startsWith('data: '));
          if (data) events.push(JSON.parse(data.slice(6)));
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve(events as never);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`the event stream of ${jobId} did not end within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', reject);
    req.end();
  });
}

/** The file names of a zip, from its central directory. */
function zipEntryNames(zip: Buffer): string[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('no end of central directory: not a complete zip');
  let entries = zip.readUInt16LE(eocd + 10);
  let offset = zip.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (; entries > 0; entries -= 1) {
    if (zip.readUInt32LE(offset) !== 0x02014b50) throw new Error(`bad central directory entry at ${offset}`);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extra = zip.readUInt16LE(offset + 30);
    const comment = zip.readUInt16LE(offset + 32);
    names.push(zip.subarray(offset + 46, offset + 46 + nameLength).toString('utf8'));
    offset += 46 + nameLength + extra + comment;
  }
  return names;
}

beforeAll(async () => {
  sandbox = await createSharedSandbox();
  blueprintsDir = path.join(sandbox.dir, 'blueprints');
  await cp(path.join(repoBlueprintsDir, 'kalman-smoother'), path.join(blueprintsDir, 'kalman-smoother'), { recursive: true });
  await cp(path.join(fixtureBlueprintsDir, 'test-workflow'), path.join(blueprintsDir, 'test-workflow'), { recursive: true });
  // Another group's job, made through the CLI before the server starts (bob is in group "other").
  const bobs = await sandbox.cli(['run', 'kalman-smoother', '--user', 'bob', '--data', path.join(kalmanSampleDir, 'reach-session2.csv'), '--config', path.join(kalmanSampleDir, 'config.json'), '--json'], { blueprintsDir });
  expect(bobs.code, transcript(bobs)).toBe(EXIT.succeeded);
  otherGroupJob = JSON.parse(bobs.stdout).jobId;
  server = sandbox.start(['ui', '--port', '0', '--user', 'alice'], { blueprintsDir, timeoutMs: 120_000 });
  const match = await server.waitForStdout(/(http:\/\/127\.0\.0\.1:\d+\/)/);
  base = new URL(match[1] as string);
}, 60_000);

let otherGroupJob = '';

afterAll(async () => {
  if (server?.running) {
    server.signal('SIGTERM');
    await server.exited.catch(() => undefined);
  }
  await sandbox?.dispose();
});

describe('neurocaas ui serves the JSON API for one local user', () => {
  it('says who it acts as (and that a browser on this machine needs no part checksums), and lists the analyses with their schema, hardware, cost and README', async () => {
    const session = await call('GET', '/api/session');
    expect(session.json).toEqual({ backend: 'local', user: 'alice', group: 'lab', partChecksums: false });
    const analyses = await call('GET', '/api/analyses');
    const kalman = analyses.json.find((a: { name: string }) => a.name === 'kalman-smoother');
    expect(kalman.hardware).toEqual({ instanceType: 'm5.large', allowedInstanceTypes: ['m5.large', 'm5.xlarge'] });
    expect(kalman.perDatasetUsd).toBeGreaterThan(0);
    expect(kalman.readme).toContain('#');
    expect(kalman.configSchema.required).toEqual(['frameRateHz']);
  });

  it('serves a page saying to build the app while dist/web is missing, and config.json for the app', async () => {
    // The test sandbox runs the repo's dist/: with or without a built app, the answer is clear.
    const page = await call('GET', '/');
    expect([200, 503]).toContain(page.status);
    if (page.status === 503) expect(page.body.toString()).toContain('npm run build');
    expect((await call('GET', '/config.json')).json).toEqual({ backend: 'local' });
  });

  it('uploads a file in one PUT, create-only, and says when the same bytes are already there', async () => {
    const bytes = await readFile(path.join(kalmanSampleDir, 'reach-session1.csv'));
    const put = await call('PUT', `${A}/objects?kind=inputs&name=reach-session1.csv`, { body: bytes, headers: { 'x-ncap-sha256': sha(bytes) } });
    expect(put.status, put.body.toString()).toBe(201);
    expect(put.json.key).toBe('lab/inputs/reach-session1.csv');
    expect(await readFile(sandbox.bucketPath('kalman-smoother', 'lab/inputs/reach-session1.csv'))).toEqual(bytes);

    const exists = await call('GET', `${A}/objects/exists?kind=inputs&name=reach-session1.csv&sha256=${sha(bytes)}`);
    expect(exists.json).toEqual({ exists: true, sameContent: true });
    const otherBytes = await call('GET', `${A}/objects/exists?kind=inputs&name=reach-session1.csv&sha256=${'0'.repeat(64)}`);
    expect(otherBytes.json).toEqual({ exists: true, sameContent: false });
    expect((await call('GET', `${A}/objects/exists?kind=inputs&name=nope.csv`)).json).toEqual({ exists: false, sameContent: false });

    const again = await call('PUT', `${A}/objects?kind=inputs&name=reach-session1.csv`, { body: bytes });
    expect(again.status).toBe(200);
    expect(again.json.reused).toBe(true);
    const different = await call('PUT', `${A}/objects?kind=inputs&name=reach-session1.csv`, { body: 'other bytes' });
    expect(different.status).toBe(409);
    expect(different.json.error.code).toBe('ObjectExists');
    expect(await readFile(sandbox.bucketPath('kalman-smoother', 'lab/inputs/reach-session1.csv'))).toEqual(bytes);

    const wrongSum = await call('PUT', `${A}/objects?kind=inputs&name=bad-sum.csv`, { body: bytes, headers: { 'x-ncap-sha256': 'a'.repeat(64) } });
    expect(wrongSum.status).toBe(400);
    expect(wrongSum.json.error.code).toBe('ChecksumMismatch');
    expect((await call('GET', `${A}/objects/exists?kind=inputs&name=bad-sum.csv`)).json.exists).toBe(false);

    const listed = await call('GET', `${A}/objects?kind=inputs`);
    expect(listed.json).toEqual([expect.objectContaining({ key: 'lab/inputs/reach-session1.csv', name: 'reach-session1.csv', sizeBytes: bytes.length, sha256: sha(bytes) })]);
  });

  it('assembles a multipart upload sent out of order, resumes from the listed parts, verifies its sha256', async () => {
    const partSize = 5 * 1024 * 1024;
    const bytes = randomBytes(2 * partSize + 12345);
    const start = await call('POST', `${A}/uploads`, { body: { kind: 'inputs', name: 'big/recording.bin', sizeBytes: bytes.length, partSizeBytes: partSize, sha256: sha(bytes) } });
    expect(start.status, start.body.toString()).toBe(201);
    const { uploadId, key } = start.json;
    expect(key).toBe('lab/inputs/big/recording.bin');
    const part = (n: number) => bytes.subarray((n - 1) * partSize, Math.min(bytes.length, n * partSize));
    const third = await call('PUT', `/api/uploads/${uploadId}/parts/3`, { body: part(3) });
    expect(third.status).toBe(200);
    expect(third.headers.etag).toBeTruthy();
    expect((await call('PUT', `/api/uploads/${uploadId}/parts/1`, { body: part(1) })).status).toBe(200);
    // Nothing is visible before completion.
    expect((await call('GET', `${A}/objects/exists?kind=inputs&name=big/recording.bin`)).json.exists).toBe(false);
    const early = await call('POST', `/api/uploads/${uploadId}/complete`);
    expect(early.status).toBe(400);
    expect(early.json.error.message).toContain('part(s) 2');

    // A client that lost track asks which parts arrived, then sends the rest.
    const listed = await call('GET', `/api/uploads/${uploadId}/parts`);
    expect(listed.json.map((p: { PartNumber: number; Size: number }) => [p.PartNumber, p.Size])).toEqual([
      [1, partSize],
      [3, 12345],
    ]);
    const wrongSize = await call('PUT', `/api/uploads/${uploadId}/parts/2`, { body: part(2).subarray(0, 1024) });
    expect(wrongSize.status).toBe(400);
    expect((await call('PUT', `/api/uploads/${uploadId}/parts/2`, { body: part(2) })).status).toBe(200);
    const parts = (await call('GET', `/api/uploads/${uploadId}/parts`)).json.map((p: { PartNumber: number; ETag: string }) => ({ PartNumber: p.PartNumber, ETag: p.ETag }));
    const done = await call('POST', `/api/uploads/${uploadId}/complete`, { body: { parts } });
    expect(done.status, done.body.toString()).toBe(201);
    expect(done.json.sha256).toBe(sha(bytes));
    expect(sha(await readFile(sandbox.bucketPath('kalman-smoother', key)))).toBe(sha(bytes));
    expect((await call('GET', `/api/uploads/${uploadId}/parts`)).status).toBe(404);
  });

  it("checks each part against the x-ncap-crc32 header its sender declared, and returns the server's sha256 at completion", async () => {
    const partSize = 5 * 1024 * 1024;
    const bytes = randomBytes(partSize + 777);
    const start = await call('POST', `${A}/uploads`, { body: { kind: 'inputs', name: 'crc-checked.bin', sizeBytes: bytes.length, partSizeBytes: partSize } });
    const { uploadId } = start.json;
    const part = (n: number) => bytes.subarray((n - 1) * partSize, Math.min(bytes.length, n * partSize));
    const crcOf = (n: number) => crc32(part(n)).toString(16).padStart(8, '0');

    const garbled = Buffer.from(part(1));
    garbled[0] = (garbled[0] ?? 0) ^ 1;
    const refused = await call('PUT', `/api/uploads/${uploadId}/parts/1`, { body: garbled, headers: { 'x-ncap-crc32': crcOf(1) } });
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatchObject({ code: 'ChecksumMismatch', message: expect.stringContaining(`not ${crcOf(1)} as declared; the part was not kept, send it again`) });
    const malformed = await call('PUT', `/api/uploads/${uploadId}/parts/1`, { body: part(1), headers: { 'x-ncap-crc32': 'not-hex!' } });
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.message).toContain('the x-ncap-crc32 header must be 8 hex digits');
    for (const n of [1, 2]) expect((await call('PUT', `/api/uploads/${uploadId}/parts/${n}`, { body: part(n), headers: { 'x-ncap-crc32': crcOf(n) } })).status).toBe(200);
    const done = await call('POST', `/api/uploads/${uploadId}/complete`);

    expect(done.status, done.body.toString()).toBe(201);
    expect(done.json.sha256).toBe(sha(bytes));
  });

  it('refuses to complete a multipart upload whose bytes do not match the declared sha256, and aborts leaving nothing', async () => {
    const body = randomBytes(1000);
    const start = await call('POST', `${A}/uploads`, { body: { kind: 'inputs', name: 'mismatch.bin', sizeBytes: 1000, partSizeBytes: 1000, sha256: 'b'.repeat(64) } });
    const { uploadId } = start.json;
    await call('PUT', `/api/uploads/${uploadId}/parts/1`, { body });
    const done = await call('POST', `/api/uploads/${uploadId}/complete`);
    expect(done.status).toBe(400);
    expect(done.json.error.code).toBe('ChecksumMismatch');
    expect((await call('DELETE', `/api/uploads/${uploadId}`)).status).toBe(204);
    expect((await call('GET', `${A}/objects/exists?kind=inputs&name=mismatch.bin`)).json.exists).toBe(false);
    const staging = await readdir(path.join(sandbox.root, 'buckets', 'kalman-smoother', '.ncap-staging')).catch(() => []);
    expect(staging.filter((name) => name.includes(uploadId))).toEqual([]);
  });

  it('saves a config only when it fits the schema, with the error at the field', async () => {
    const bad = await call('POST', `${A}/configs`, { body: { name: 'bad.json', config: { frameRateHz: -3, extra: 1 } } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('ConfigInvalid');
    expect(bad.json.error.fields).toEqual(expect.arrayContaining([expect.objectContaining({ path: '/frameRateHz' }), expect.objectContaining({ path: '/extra' })]));
    expect((await call('GET', `${A}/objects/exists?kind=configs&name=bad.json`)).json.exists).toBe(false);
    const good = await call('POST', `${A}/configs`, { body: { name: 'web.json', config: { frameRateHz: 30 } } });
    expect(good.status, good.body.toString()).toBe(201);
    expect(good.json.key).toBe('lab/configs/web.json');

    const yamlBad = await call('POST', `${A}/configs/validate`, { body: { text: 'frameRateHz: fast\n', format: 'yaml' } });
    expect(yamlBad.json.ok).toBe(false);
    expect(yamlBad.json.fields[0].path).toBe('/frameRateHz');
    const yamlGood = await call('POST', `${A}/configs/validate`, { body: { text: 'frameRateHz: 60\n', format: 'yaml' } });
    expect(yamlGood.json).toEqual({ ok: true, config: { frameRateHz: 60 } });
  });

  it('shows the reservation before submitting, as neurocaas estimate computes it', async () => {
    const estimate = await call('POST', `${A}/estimate`, { body: { datasets: ['a.csv', 'b.csv'], instanceType: 'm5.xlarge' } });
    expect(estimate.status).toBe(200);
    expect(estimate.json.instanceType).toBe('m5.xlarge');
    expect(estimate.json.reservedUsd).toBeCloseTo(2 * estimate.json.perDatasetUsd, 6);
    const cli = await sandbox.cli(['estimate', 'kalman-smoother', '--datasets', '2', '--instance-type', 'm5.xlarge', '--json'], { blueprintsDir });
    expect(JSON.parse(cli.stdout).reservedUsd).toBe(estimate.json.reservedUsd);
    const badType = await call('POST', `${A}/estimate`, { body: { datasets: ['a.csv'], instanceType: 'p5.48xlarge' } });
    expect(badType.status).toBe(400);
    expect(badType.json.error.message).toContain('m5.large, m5.xlarge');
  });

  it('returns a rejection reason verbatim (422)', async () => {
    const rejected = await call('POST', `${A}/submit`, { body: { datasets: ['missing.csv'], config: 'web.json' } });
    expect(rejected.status, rejected.body.toString()).toBe(422);
    expect(rejected.json.error.code).toBe('REJECTED');
    expect(rejected.json.error.reasons.join('\n')).toContain('lab/inputs/missing.csv');
  });

  it('submits, streams the job to its end, lists the results, serves one file and the whole folder as a zip', async () => {
    const submitted = await call('POST', `${A}/submit`, { body: { datasets: ['reach-session1.csv'], config: 'web.json' } });
    expect(submitted.status, submitted.body.toString()).toBe(201);
    const { jobId, submissionKey } = submitted.json;
    expect(submissionKey).toMatch(/^lab\/submissions\/alice\//);

    const events = await followToEnd(jobId);
    expect(events.some((e) => e.type === 'certificate')).toBe(true);
    const end = events.at(-1) as { type: string; job: { outcome: string } };
    expect(end.type).toBe('end');
    expect(end.job.outcome).toBe('SUCCEEDED');

    const detail = await call('GET', `/api/jobs/${jobId}`);
    expect(detail.json.outcome).toBe('SUCCEEDED');
    expect(detail.json.certificate).toContain(jobId);
    const mine = await call('GET', '/api/jobs?scope=mine');
    expect(mine.json.map((j: { jobId: string }) => j.jobId)).toContain(jobId);
    const group = await call('GET', '/api/jobs?scope=group');
    expect(group.json.map((j: { jobId: string }) => j.jobId)).not.toContain(otherGroupJob);

    const results = await call('GET', `/api/jobs/${jobId}/results`);
    const paths = results.json.map((r: { path: string }) => r.path);
    const svg = paths.find((p: string) => p.startsWith('process_results/') && p.endsWith('.svg'));
    expect(svg, paths.join('\n')).toBeDefined();
    expect(paths).toContain('provenance.json');

    const file = await call('GET', `/api/jobs/${jobId}/results/file?path=${encodeURIComponent(svg)}`);
    expect(file.status).toBe(200);
    expect(file.headers['content-type']).toBe('image/svg+xml');
    expect(file.headers['content-security-policy']).toContain('sandbox');
    expect(file.body.toString()).toContain('<svg');
    const download = await call('GET', `/api/jobs/${jobId}/results/file?path=${encodeURIComponent(svg)}&download=1`);
    expect(download.headers['content-disposition']).toMatch(/^attachment/);

    const zip = await call('GET', `/api/jobs/${jobId}/results.zip`);
    expect(zip.status).toBe(200);
    expect(zip.headers['content-type']).toBe('application/zip');
    const names = zipEntryNames(zip.body);
    expect(names.sort()).toEqual(paths.map((p: string) => `${jobId}/${p}`).sort());
    const zipFile = path.join(sandbox.dir, 'results.zip');
    await writeFile(zipFile, zip.body);
    // unzip, where installed, agrees that the archive is whole.
    try {
      execFileSync('unzip', ['-tq', zipFile], { stdio: 'pipe' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }

    const budget = await call('GET', '/api/budget');
    expect(budget.json.user).toBe('alice');
    expect(budget.json.budget.spentUsd).toBeGreaterThan(0);
    expect(budget.json.budget.jobs.map((j: { jobId: string }) => j.jobId)).toContain(jobId);
  });

  it('cancels a running job of the user', async () => {
    const W = '/api/analyses/test-workflow';
    expect((await call('PUT', `${W}/objects?kind=inputs&name=sleepy.txt`, { body: 'data\n' })).status).toBe(201);
    expect((await call('POST', `${W}/configs`, { body: { name: 'sleep.json', config: { mode: 'sleep', seconds: 60 } } })).status).toBe(201);
    const submitted = await call('POST', `${W}/submit`, { body: { datasets: ['sleepy.txt'], config: 'sleep.json' } });
    expect(submitted.status, submitted.body.toString()).toBe(201);
    const { jobId } = submitted.json;
    for (let i = 0; i < 100; i += 1) {
      const job = (await call('GET', `/api/jobs/${jobId}`)).json;
      if (job.datasets.some((d: { phase: string }) => d.phase === 'RUNNING')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const cancelled = await call('POST', `/api/jobs/${jobId}/cancel`, { body: { reason: 'changed my mind' } });
    expect(cancelled.status, cancelled.body.toString()).toBe(200);
    expect(cancelled.json.job.outcome).toBe('CANCELLED');
    expect((await machineRecords(sandbox.root)).filter((m) => m.state === 'running')).toEqual([]);
  });
});

describe('neurocaas ui refuses what could escape the user or the page', () => {
  it('refuses cross-origin requests and foreign Host names (DNS rebinding)', async () => {
    const cross = await call('POST', `${A}/configs`, { body: { name: 'x.json', config: { frameRateHz: 1 } }, headers: { origin: 'http://evil.example' } });
    expect(cross.status).toBe(403);
    expect(cross.json.error.code).toBe('CrossOriginRefused');
    expect((await call('GET', '/api/session', { headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    const rebound = await call('GET', '/api/session', { headers: { host: `evil.example:${base.port}` } });
    expect(rebound.status).toBe(403);
    expect(rebound.json.error.code).toBe('HostRefused');
    expect((await call('GET', '/api/session', { headers: { origin: `http://127.0.0.1:${base.port}` } })).status).toBe(200);
    expect((await call('GET', `${A}/objects/exists?kind=configs&name=x.json`)).json.exists).toBe(false);
  });

  it('refuses traversal in every parameter', async () => {
    for (const name of ['../escape.csv', '/etc/passwd', 'a\\b.csv', 'a\u0000b', '.ncap-staging/x', 'a//b']) {
      const put = await call('PUT', `${A}/objects?kind=inputs&name=${encodeURIComponent(name)}`, { body: 'x' });
      expect(put.status, name).toBe(400);
      expect(put.json.error.code, name).toMatch(/KeyInvalid|PathInvalid/);
    }
    expect((await call('PUT', `${A}/objects?kind=submissions&name=x-submit.json`, { body: '{}' })).status).toBe(400);
    expect((await call('POST', `${A}/uploads`, { body: { kind: 'inputs', name: '../../x', sizeBytes: 1, partSizeBytes: 1 } })).status).toBe(400);
    for (const target of ['/api/analyses/%2e%2e/objects?kind=inputs', '/api/analyses/..%2fx/objects?kind=inputs', '/api/jobs/%2E%2E%2F%2E%2E']) {
      expect((await call('GET', target)).status, target).toBe(400);
    }
    const jobs = (await call('GET', '/api/jobs?scope=mine')).json;
    const resultTraversal = await call('GET', `/api/jobs/${jobs[0].jobId}/results/file?path=${encodeURIComponent('../../inputs/reach-session1.csv')}`);
    expect(resultTraversal.status).toBe(400);
    expect((await call('POST', `${A}/submit`, { body: { datasets: ['other/inputs/x.csv'], config: 'web.json' } })).status).toBe(400);
  });

  it('refuses an upload under a linked folder that leads out of the bucket', async () => {
    const outside = path.join(sandbox.dir, 'outside');
    await mkdir(outside, { recursive: true });
    await symlink(outside, sandbox.bucketPath('kalman-smoother', 'lab/inputs/linked'));
    const put = await call('PUT', `${A}/objects?kind=inputs&name=linked/x.csv`, { body: 'x' });
    expect(put.status).toBe(403);
    expect(put.json.error.code).toBe('ObjectOutsideBucket');
    expect(await readdir(outside)).toEqual([]);
  });

  it("answers 404 for another group's job and an unknown analysis, 413 for a body over the limit", async () => {
    const other = await call('GET', `/api/jobs/${otherGroupJob}`);
    expect(other.status).toBe(404);
    expect(other.json.error.code).toBe('JobNotFound');
    expect(other.json.error.message).toContain('group "lab"');
    expect((await call('GET', `/api/jobs/${otherGroupJob}/results.zip`)).status).toBe(404);
    expect((await call('GET', `/api/jobs/${otherGroupJob}/events`)).status).toBe(404);
    const unknown = await call('GET', '/api/analyses/no-such-analysis/objects?kind=inputs');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('AnalysisNotFound');
    const huge = await call('POST', `${A}/configs/validate`, { body: Buffer.alloc(3 * 1024 * 1024, 0x20), headers: { 'content-type': 'application/json' } });
    expect(huge.status).toBe(413);
    // Under the body limit but over the config limit: said as the CLI says it, from the same constant.
    const overConfig = await call('POST', `${A}/configs/validate`, { body: { text: ' '.repeat(SUBMISSION_LIMITS.maxConfigBytes + 1) } });
    expect(overConfig.status).toBe(413);
    expect(overConfig.json.error.message).toBe(`the config text is ${formatBytes(SUBMISSION_LIMITS.maxConfigBytes + 1)}; a config may be at most ${formatByteLimit(SUBMISSION_LIMITS.maxConfigBytes)} (it holds the analysis's settings, not data)`);
    expect((await call('GET', '/api/nothing-here')).status).toBe(404);
    expect((await call('DELETE', '/api/session')).status).toBe(405);
  });

  it('stops cleanly on SIGTERM', async () => {
    server.signal('SIGTERM');
    const result = await server.exited;
    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toContain('stopping the web interface');
    expect((await machineRecords(sandbox.root)).filter((m) => m.state === 'running')).toEqual([]);
  });
});
