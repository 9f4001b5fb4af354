/**
 * Resuming an upload the CLI was killed in the middle of: the built CLI (`neurocaas --backend aws
 * run`) against moto on 127.0.0.1, through a small proxy that counts the UploadPart requests and
 * can hold back every part after the first few. The CLI is SIGKILLed once those parts are
 * acknowledged (no sleeps: the proxy says when); nothing is under inputs/ then; the same command
 * again sends only the missing parts and leaves the very bytes with their sha256 as metadata. A
 * file that changed after the kill starts over: all parts, the old upload's parts dropped.
 *
 * moto's SSM replies do not parse in this SDK, so discovery comes from the CLI's discovery cache,
 * written here as a previous command would have; the protocol is a stand-in that answers the
 * submission with a rejected receipt (this file is about the upload, the journey tests run jobs).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDiscoveryCache } from '../../lib/cli/discovery-cache.js';
import { receiptKey } from '../../lib/core/keys.js';
import { cliPath, EXIT } from './helpers.js';
import { createBucket, MOTO_START_TIMEOUT_MS, s3ClientFor, startMoto, type MotoServer } from '../support/moto.js';

delete process.env['AWS_CA_BUNDLE'];

const REGION = 'us-east-1';
const ANALYSIS = 'demo';
const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' };
const MIB = 1024 * 1024;

const isUploadPart = (req: IncomingMessage) => req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '') && /[?&]uploadId=/.test(req.url ?? '');

/**
 * Forwards to moto; counts UploadPart requests; with `holdAfter` set, forwards only that many
 * parts and keeps every later one waiting (never sent on). Answers each submission with a
 * rejected receipt, as the protocol would answer one it refuses.
 */
class PartProxy {
  forwardedParts = 0;
  acknowledgedParts = 0;
  holdAfter: number | undefined;
  private held: (() => void)[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private waiters: { parts: number; resolve: () => void }[] = [];

  constructor(
    private readonly moto: MotoServer,
    private readonly admin: S3Client,
    private readonly bucket: string,
  ) {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Resolves once `parts` UploadParts were answered to the CLI. */
  acknowledged(parts: number): Promise<void> {
    if (this.acknowledgedParts >= parts) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ parts, resolve }));
  }

  reset(holdAfter?: number): void {
    this.forwardedParts = 0;
    this.acknowledgedParts = 0;
    this.holdAfter = holdAfter;
    this.held = [];
  }

  /** Sends on every part held back so far, and every later one at once. */
  release(): void {
    this.holdAfter = undefined;
    for (const forward of this.held.splice(0)) forward();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const part = isUploadPart(req);
    if (part && this.holdAfter !== undefined && this.forwardedParts >= this.holdAfter) {
      this.held.push(() => this.forward(req, res, part)); // held: reaches S3 only if released
      return;
    }
    this.forward(req, res, part);
  }

  private forward(req: IncomingMessage, res: ServerResponse, part: boolean): void {
    if (part) this.forwardedParts += 1;
    const upstream = httpRequest({ host: '127.0.0.1', port: Number(new URL(this.moto.endpoint).port), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const submission = req.method === 'PUT' && /\/submissions\/[^?]*submit\.json(\?|$)/.exec(req.url ?? '');
      const finish = () => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        if (part && answer.statusCode === 200) {
          answer.on('end', () => {
            this.acknowledgedParts += 1;
            this.waiters = this.waiters.filter((w) => (this.acknowledgedParts >= w.parts ? (w.resolve(), false) : true));
          });
        }
      };
      if (!submission || answer.statusCode !== 200) return finish();
      const key = decodeURIComponent((req.url ?? '').split('?')[0]?.replace(`/${this.bucket}/`, '') ?? '');
      const [group, , user, fileName] = key.split('/') as [string, string, string, string];
      const receipt = { schemaVersion: 1, submissionKey: key, etag: 'stand-in', jobId: '20261202T000000Z-000000', analysis: ANALYSIS, outcome: 'rejected', reasons: ['stand-in protocol: this test is about the upload'] };
      // The receipt is there before the CLI hears its submission was stored.
      void this.admin.send(new PutObjectCommand({ Bucket: this.bucket, Key: receiptKey(group, user, fileName), Body: JSON.stringify(receipt) })).then(finish, finish);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }
}

/** A sparse file of `size` bytes with a random 64 KiB block every 4 MiB (so no two parts are alike). */
function sampleFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (let offset = 0; offset < size; offset += 4 * MIB) writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, offset);
  } finally {
    closeSync(fd);
  }
}

const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('neurocaas run on aws, killed in the middle of an upload', () => {
  let moto: MotoServer;
  let admin: S3Client;
  let bucket: string;
  let proxy: PartProxy;
  let endpoint: string;
  let dir: string;

  beforeAll(async () => {
    moto = await startMoto();
    admin = s3ClientFor(moto);
    bucket = await createBucket(admin, 'resume');
    proxy = new PartProxy(moto, admin, bucket);
    endpoint = await proxy.listen();
    dir = await mkdtemp(join(tmpdir(), 'ncap-upload-resume-'));
    await writeFile(join(dir, 'config.json'), '{"threshold": 1}\n');
    // What an earlier command of alice's discovered (STS, IAM tag, SSM), as the CLI keeps it.
    await new FileDiscoveryCache({ dir: join(dir, 'cache', 'neurocaas', 'aws-discovery'), key: async () => `${CREDENTIALS.AWS_ACCESS_KEY_ID}\n${endpoint}\n${REGION}`, ttlMs: 3_600_000 }).write({
      user: 'alice',
      group: 'lab',
      region: REGION,
      analyses: { [ANALYSIS]: bucket },
    });
  }, MOTO_START_TIMEOUT_MS);

  afterAll(async () => {
    await proxy?.close();
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const stateDir = () => join(dir, 'state');

  interface CliRun {
    /** What it printed so far (stdout and stderr). */
    output(): string;
    /** Resolves once `pattern` was printed, or the run ended (then compare output() yourself). */
    printed(pattern: RegExp): Promise<void>;
    done: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
    kill(): void;
  }

  /** Starts `neurocaas --backend aws run demo --data <file>` as alice (SIGKILLed after 60 s at the latest). */
  function start(file: string): CliRun {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_')) env[name] = value;
    const child = spawn(process.execPath, [cliPath, '--backend', 'aws', 'run', ANALYSIS, '--data', file, '--config', join(dir, 'config.json')], {
      env: { ...env, ...CREDENTIALS, AWS_REGION: REGION, AWS_ENDPOINT_URL: endpoint, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), NEUROCAAS_UPLOAD_STATE_DIR: stateDir(), NEUROCAAS_POLL_MS: '100' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let watchers: { pattern: RegExp; resolve: () => void }[] = [];
    const heard = (chunk: Buffer) => {
      output += chunk;
      watchers = watchers.filter((w) => (w.pattern.test(output) ? (w.resolve(), false) : true));
    };
    child.stdout.on('data', heard);
    child.stderr.on('data', heard);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((resolve) =>
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        for (const w of watchers.splice(0)) w.resolve();
        resolve({ code, signal, output });
      }),
    );
    let ended = false;
    void done.then(() => (ended = true));
    return {
      output: () => output,
      printed: (pattern) => (ended || pattern.test(output) ? Promise.resolve() : new Promise((resolve) => watchers.push({ pattern, resolve }))),
      done,
      kill: () => child.kill('SIGKILL'),
    };
  }

  /** `neurocaas --backend aws run demo --data <file>` as alice; `killAfterParts`: SIGKILLed once that many parts are acknowledged. */
  function run(file: string, killAfterParts?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
    const started = start(file);
    if (killAfterParts !== undefined) void proxy.acknowledged(killAfterParts).then(() => started.kill());
    return started.done;
  }

  const inputs = async () => ((await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'lab/inputs/' }))).Contents ?? []).map((o) => o.Key);
  const record = async () => {
    // The record; a killed run also leaves its claim (.claim), which the next run takes over.
    const names = (await readdir(stateDir()).catch(() => [] as string[])).filter((name) => name.endsWith('.json'));
    expect(names).toHaveLength(1);
    return JSON.parse(await readFile(join(stateDir(), names[0] as string), 'utf8')) as { uploadId: string; partSizeBytes: number; sizeBytes: number };
  };
  const storedParts = async (key: string, uploadId: string) => (await admin.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))).Parts ?? [];
  const object = async (key: string) => {
    const got = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return { sha256: sha256Of(await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()), metadata: got.Metadata?.['sha256'] };
  };

  it('sends only the missing parts when run again, and the object is the same bytes with their sha256', async () => {
    const file = join(dir, 'session.bin');
    // Large enough for several parts of whatever part size the CLI picks, plus a short last part.
    const size = 5 * 8 * MIB + 123_457;
    sampleFile(file, size);
    const localSha = sha256Of(await readFile(file));

    proxy.reset(2);
    const killed = await run(file, 2);
    expect(killed.signal, killed.output).toBe('SIGKILL');
    expect(await inputs()).toEqual([]);
    const { uploadId, partSizeBytes } = await record();
    const partCount = Math.ceil(size / partSizeBytes);
    expect(partCount).toBeGreaterThan(3);
    expect(await storedParts('lab/inputs/session.bin', uploadId)).toHaveLength(2);

    proxy.reset();
    const again = await run(file);
    expect(again.code, again.output).toBe(EXIT.rejected);
    expect(again.output).toMatch(/uploaded .*session\.bin -> lab\/inputs\/session\.bin/);
    expect(proxy.forwardedParts).toBe(partCount - 2);
    expect(await object('lab/inputs/session.bin')).toEqual({ sha256: localSha, metadata: localSha });
    expect(await readdir(stateDir())).toEqual([]);
  }, 120_000);

  it('starts over when the file changed after the kill, and drops the parts of the old upload', async () => {
    const file = join(dir, 'changed.bin');
    const size = 3 * 8 * MIB + 1;
    sampleFile(file, size);

    proxy.reset(1);
    const killed = await run(file, 1);
    expect(killed.signal, killed.output).toBe('SIGKILL');
    const old = await record();
    sampleFile(file, size);
    const localSha = sha256Of(await readFile(file));

    proxy.reset();
    const again = await run(file);
    expect(again.code, again.output).toBe(EXIT.rejected);
    expect(proxy.forwardedParts).toBe(Math.ceil(size / old.partSizeBytes));
    expect(await object('lab/inputs/changed.bin')).toEqual({ sha256: localSha, metadata: localSha });
    await expect(storedParts('lab/inputs/changed.bin', old.uploadId)).rejects.toMatchObject({ name: 'NoSuchUpload' });
  }, 120_000);

  it('lets two runs upload the same file to the same name at once: both succeed, the bytes go up once', async () => {
    const file = join(dir, 'twin.bin');
    const size = 4 * 8 * MIB + 4_321;
    sampleFile(file, size);
    const localSha = sha256Of(await readFile(file));

    // The first run's first part reaches S3; its other parts wait at the proxy while the second starts.
    proxy.reset(1);
    const first = start(file);
    await Promise.race([proxy.acknowledged(1), first.done]);
    const second = start(file);
    // The second says it waits for the first; bounded: if it never says so, the parts go on anyway.
    let fallback: NodeJS.Timeout | undefined;
    await Promise.race([second.printed(/waiting for another neurocaas run/), new Promise<void>((resolve) => (fallback = setTimeout(resolve, 20_000)))]);
    clearTimeout(fallback);
    proxy.release();
    const [a, b] = await Promise.all([first.done, second.done]);

    expect(a.code, a.output).toBe(EXIT.rejected);
    expect(b.code, b.output).toBe(EXIT.rejected);
    expect(a.output).toMatch(/uploaded .*twin\.bin -> lab\/inputs\/twin\.bin/);
    expect(b.output).toMatch(/waiting for another neurocaas run \(pid \d+ on .+\) that is uploading the same file to lab\/inputs\/twin\.bin/);
    expect(b.output).toMatch(/using lab\/inputs\/twin\.bin \(uploaded meanwhile by someone else, identical\)/);
    expect(proxy.forwardedParts).toBe(Math.ceil(size / (8 * MIB)));
    expect(await object('lab/inputs/twin.bin')).toEqual({ sha256: localSha, metadata: localSha });
    expect(await readdir(stateDir())).toEqual([]);
  }, 120_000);
});
