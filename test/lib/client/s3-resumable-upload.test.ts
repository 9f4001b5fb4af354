/**
 * Resumable create-only uploads against the S3 emulator (moto on 127.0.0.1): an upload that
 * fails halfway leaves no object, and the next upload of the same file sends only the parts
 * that are missing. Two uploads of one key at once never share an upload id: the same file waits
 * for the run sending it, a different file is refused, and an object another upload completed
 * meanwhile is never replaced (also where the emulator ignores If-None-Match on completion).
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortMultipartUploadCommand, GetObjectCommand, ListMultipartUploadsCommand, HeadObjectCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectExistsError } from '../../../lib/core/errors.js';
import { DEFAULT_PART_BYTES, MAX_BUFFERED_BYTES, planParts, S3ResumableUploader, UploadInProgressError, UploadInterruptedError, UploadStalledError } from '../../../lib/client/s3-resumable-upload.js';
import { createBucket, MOTO_START_TIMEOUT_MS, s3ClientFor, startMoto, type MotoServer } from '../../support/moto.js';

const PART = 5 * 1024 * 1024;
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** An S3 client whose `failAt`-th UploadPart of this client fails as a dropped connection would. */
function failingClient(moto: MotoServer, failAt: number): S3Client {
  const s3 = s3ClientFor(moto);
  let parts = 0;
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'UploadPartCommand' && ++parts === failAt) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      return next(args);
    },
    { step: 'initialize', name: 'failNthPart' },
  );
  return s3;
}

/** An S3 client that sends its first `openParts` UploadParts and holds every later one until `open()`; `parts` counts what it sent. */
function gatedClient(moto: MotoServer, openParts: number): { s3: S3Client; open(): void; parts(): number; held(count: number): Promise<void> } {
  const s3 = s3ClientFor(moto);
  let sent = 0;
  let started = 0;
  let opened = false;
  let gate: () => void = () => undefined;
  const gateOpen = new Promise<void>((resolve) => (gate = resolve));
  let onHeld: { count: number; resolve: () => void }[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'UploadPartCommand') return next(args);
      started += 1;
      if (!opened && started > openParts) {
        onHeld = onHeld.filter((w) => (started - openParts >= w.count ? (w.resolve(), false) : true));
        await gateOpen;
      }
      const result = await next(args);
      sent += 1;
      return result;
    },
    { step: 'initialize', name: 'gateParts' },
  );
  return {
    s3,
    open: () => {
      opened = true;
      gate();
    },
    parts: () => sent,
    held: (count) => (started - openParts >= count ? Promise.resolve() : new Promise((resolve) => onHeld.push({ count, resolve }))),
  };
}

/** An S3 client whose CompleteMultipartUpload first lets `meanwhile` happen, then fails NoSuchUpload, as if another run had ended the upload. */
function completionEndedClient(moto: MotoServer, meanwhile: (args: { input: { Bucket?: string; Key?: string; UploadId?: string } }, send: () => Promise<unknown>) => Promise<void>): S3Client {
  const s3 = s3ClientFor(moto);
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'CompleteMultipartUploadCommand') return next(args);
      await meanwhile(args as never, () => next(args));
      throw Object.assign(new Error('The specified upload does not exist.'), { name: 'NoSuchUpload', $metadata: { httpStatusCode: 404 } });
    },
    { step: 'initialize', name: 'completionEnded' },
  );
  return s3;
}

describe('S3ResumableUploader on the emulator', () => {
  let moto: MotoServer;
  let s3: S3Client;
  let dir: string;

  beforeAll(async () => {
    moto = await startMoto();
    s3 = s3ClientFor(moto);
    dir = await mkdtemp(join(tmpdir(), 'ncap-resume-'));
  }, MOTO_START_TIMEOUT_MS);

  afterAll(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function sampleFile(name: string, bytes: Buffer): Promise<{ file: string; sizeBytes: number; mtimeMs: number; sha256: string }> {
    const file = join(dir, name);
    await writeFile(file, bytes);
    await utimes(file, 1_700_000_000, 1_700_000_000);
    return { file, sizeBytes: bytes.length, mtimeMs: 1_700_000_000_000, sha256: sha(bytes) };
  }

  const inputsOf = async (bucket: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'lab/inputs/' }))).Contents ?? []).map((o) => o.Key);

  it('leaves no object after a failure halfway, then sends only the missing parts of the same file', async () => {
    const bucket = await createBucket(s3, 'resume');
    const bytes = randomBytes(5 * PART + 777);
    const local = await sampleFile('session.bin', bytes);
    const stateDir = join(dir, 'state-1');
    const key = 'lab/inputs/session.bin';

    const first = new S3ResumableUploader(failingClient(moto, 3), { stateDir, partSizeBytes: PART, concurrency: 1 });
    await expect(first.upload({ bucket, key, ...local })).rejects.toThrow(/stopped halfway \(.*socket hang up.*\); 2 of 6 parts are stored \(not an object yet\): run the same command again to send only the rest/);
    expect(await inputsOf(bucket)).toEqual([]);
    expect(await readdir(stateDir)).toHaveLength(1);

    const sent: number[] = [];
    const again = new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART, concurrency: 2 });
    const result = await again.upload({ bucket, key, ...local, onPartSent: (n) => sent.push(n) });

    expect(result).toEqual({ resumed: true, partsReused: 2, partsSent: 4 });
    expect(sent.sort()).toEqual([3, 4, 5, 6]);
    const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    expect(sha(Buffer.from(await (stored.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()))).toBe(local.sha256);
    expect(stored.Metadata?.['sha256']).toBe(local.sha256);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('starts over when the file under that name changed since the interrupted upload', async () => {
    const bucket = await createBucket(s3, 'resume');
    const stateDir = join(dir, 'state-2');
    const key = 'lab/inputs/changed.bin';
    const before = await sampleFile('changed.bin', randomBytes(3 * PART));
    await expect(new S3ResumableUploader(failingClient(moto, 2), { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...before })).rejects.toThrow();

    const after = await sampleFile('changed.bin', randomBytes(3 * PART));
    const result = await new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...after });

    expect(result).toEqual({ resumed: false, partsReused: 0, partsSent: 3 });
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(after.sha256);
  });

  /** Interrupts an upload of a fresh 3-part file to `key`, then sets its record's owner as given; returns the upload id. */
  async function interruptedUploadOwnedBy(bucket: string, stateDir: string, key: string, owner: { pid: number; hostname: string } | undefined): Promise<string> {
    const before = await sampleFile(`${key.split('/').pop()}`, randomBytes(3 * PART));
    await expect(new S3ResumableUploader(failingClient(moto, 2), { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...before })).rejects.toThrow();
    const [name] = await readdir(stateDir);
    const recordFile = join(stateDir, name as string);
    const record = JSON.parse(await readFile(recordFile, 'utf8')) as { uploadId: string; owner?: unknown };
    expect(record.owner).toEqual({ pid: process.pid, hostname: hostname() });
    if (owner) record.owner = owner;
    else delete record.owner;
    await writeFile(recordFile, JSON.stringify(record));
    return record.uploadId;
  }

  const uploadExists = (bucket: string, key: string, uploadId: string) =>
    s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).then(
      () => true,
      (error: { name?: string }) => (error.name === 'NoSuchUpload' ? false : Promise.reject(error)),
    );

  it("leaves another file's upload to the same name alone while its sender may be alive (or is not known)", async () => {
    const bucket = await createBucket(s3, 'resume');
    const owners = [undefined, { pid: process.pid, hostname: hostname() }, { pid: 1, hostname: hostname() }, { pid: 4_000_000, hostname: `not-${hostname()}` }];
    for (const [index, owner] of owners.entries()) {
      const key = `lab/inputs/shared-name-${index}.bin`;
      const stateDir = join(dir, `state-live-${index}`);
      const theirs = await interruptedUploadOwnedBy(bucket, stateDir, key, owner);

      const mine = await sampleFile('mine.bin', randomBytes(2 * PART + 1));
      const result = await new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...mine });

      expect(result).toEqual({ resumed: false, partsReused: 0, partsSent: 3 });
      expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(mine.sha256);
      expect(await uploadExists(bucket, key, theirs), `owner ${JSON.stringify(owner)}`).toBe(true);
    }
  });

  it('aborts the upload a changed file left behind when its sender on this host has exited', async () => {
    const bucket = await createBucket(s3, 'resume');
    const key = 'lab/inputs/dead-owner.bin';
    const exited = spawnSync(process.execPath, ['-e', '']);
    const stateDir = join(dir, 'state-dead');
    const old = await interruptedUploadOwnedBy(bucket, stateDir, key, { pid: exited.pid as number, hostname: hostname() });

    const changed = await sampleFile('dead-owner.bin', randomBytes(2 * PART + 1));
    await new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...changed });

    expect(await uploadExists(bucket, key, old)).toBe(false);
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(changed.sha256);
  });

  it('makes a second upload of the same file to the key wait for the first, then report its object: no part sent twice', async () => {
    const bucket = await createBucket(s3, 'twin');
    const key = 'lab/inputs/twin.bin';
    const local = await sampleFile('twin.bin', randomBytes(3 * PART + 5));
    const stateDir = join(dir, 'state-twin');
    const first = gatedClient(moto, 1);
    const second = gatedClient(moto, 0);
    second.open();

    const uploading = new S3ResumableUploader(first.s3, { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...local });
    await first.held(1);
    const waits: string[] = [];
    let waitingSaid: () => void = () => undefined;
    const said = new Promise<void>((resolve) => (waitingSaid = resolve));
    const twin = new S3ResumableUploader(second.s3, { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...local, onWait: (text) => (waits.push(text), waitingSaid()) });
    // Bounded: if it never says it waits, it ends (sending parts) and the assertions below say so.
    await Promise.race([said, twin.then(() => undefined, () => undefined)]);
    first.open();

    expect(await uploading).toEqual({ resumed: false, partsReused: 0, partsSent: 4 });
    await expect(twin).rejects.toBeInstanceOf(ObjectExistsError);
    expect(waits).toEqual([`waiting for another neurocaas run (pid ${process.pid} on ${hostname()}) that is uploading the same file to ${key}`]);
    expect(second.parts()).toBe(0);
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(local.sha256);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('stops waiting for a live run that holds the same file\'s upload but stores no part, naming its pid and what to do', async () => {
    const bucket = await createBucket(s3, 'twin');
    const key = 'lab/inputs/stuck.bin';
    const local = await sampleFile('stuck.bin', randomBytes(3 * PART + 5));
    const stateDir = join(dir, 'state-stuck');
    // Alive (it refreshes its claim) but stuck: its second part never gets an answer.
    const first = gatedClient(moto, 1);
    const uploading = new S3ResumableUploader(first.s3, { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...local });
    await first.held(1);
    const second = gatedClient(moto, 0);
    second.open();
    const waits: string[] = [];
    const startedAt = Date.now();

    const twin = new S3ResumableUploader(second.s3, { stateDir, partSizeBytes: PART, claimStallMs: 1_500 }).upload({ bucket, key, ...local, onWait: (text) => waits.push(text) });

    await expect(twin).rejects.toBeInstanceOf(UploadStalledError);
    await expect(twin).rejects.toThrow(
      `another neurocaas run (pid ${process.pid} on ${hostname()}) holds the upload of this file to s3://${bucket}/${key} but has stored no part of it for 2 s; nothing was sent by this run. ` +
        `If that run is stuck, stop it (kill ${process.pid} on ${hostname()}) and run this command again: it resumes the parts already stored`,
    );
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(waits).toHaveLength(1);
    expect(second.parts()).toBe(0);
    first.open();
    expect(await uploading).toMatchObject({ partsSent: 4 });
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('keeps waiting for a run that stores its parts slowly, past the stall bound in all', async () => {
    const bucket = await createBucket(s3, 'twin');
    const key = 'lab/inputs/slow.bin';
    const local = await sampleFile('slow.bin', randomBytes(7 * PART + 5));
    const stateDir = join(dir, 'state-slow');
    const slow = s3ClientFor(moto);
    slow.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'UploadPartCommand') await new Promise((r) => setTimeout(r, 600));
        return next(args);
      },
      { step: 'initialize', name: 'slowParts' },
    );
    const gate = gatedClient(moto, 0);
    gate.open();
    const uploading = new S3ResumableUploader(slow, { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...local });
    let waitingSaid: () => void = () => undefined;
    const said = new Promise<void>((resolve) => (waitingSaid = resolve));
    await new Promise((r) => setTimeout(r, 100));
    const startedAt = Date.now();

    const twin = new S3ResumableUploader(gate.s3, { stateDir, partSizeBytes: PART, claimStallMs: 4_000 }).upload({ bucket, key, ...local, onWait: () => waitingSaid() });

    await Promise.race([said, twin.then(() => undefined, () => undefined)]);
    expect(await uploading).toMatchObject({ partsSent: 8 });
    await expect(twin).rejects.toBeInstanceOf(ObjectExistsError);
    expect(Date.now() - startedAt).toBeGreaterThan(4_000);
    expect(gate.parts()).toBe(0);
  });

  it('refuses at once an upload of a different file to a key another live run is uploading, and leaves that run alone', async () => {
    const bucket = await createBucket(s3, 'twin');
    const key = 'lab/inputs/contested.bin';
    const theirs = await sampleFile('contested.bin', randomBytes(2 * PART + 5));
    const stateDir = join(dir, 'state-contested');
    const first = gatedClient(moto, 1);

    const uploading = new S3ResumableUploader(first.s3, { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...theirs });
    await first.held(1);
    const mine = await sampleFile('mine-contested.bin', randomBytes(2 * PART + 5));
    const refused = new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...mine });
    await expect(refused).rejects.toBeInstanceOf(UploadInProgressError);
    await expect(refused).rejects.toThrow(
      `another neurocaas run (pid ${process.pid} on ${hostname()}) is uploading a different file to s3://${bucket}/${key} right now; nothing was sent. Rename ${mine.file} and run again`,
    );
    first.open();

    expect(await uploading).toMatchObject({ partsSent: 3 });
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(theirs.sha256);
  });

  it('takes over the claim of a run that died, or that stopped refreshing it on another host, and resumes its parts', async () => {
    const bucket = await createBucket(s3, 'twin');
    const exited = spawnSync(process.execPath, ['-e', '']);
    const claims = [
      { claim: { pid: exited.pid as number, hostname: hostname(), token: 'dead' }, ageMs: 0 },
      { claim: { pid: 4_000_000, hostname: `not-${hostname()}`, token: 'silent' }, ageMs: 60_000 },
    ];
    for (const [index, { claim, ageMs }] of claims.entries()) {
      const key = `lab/inputs/orphan-${index}.bin`;
      const stateDir = join(dir, `state-orphan-${index}`);
      const local = await sampleFile(`orphan-${index}.bin`, randomBytes(3 * PART + 1));
      await expect(new S3ResumableUploader(failingClient(moto, 2), { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...local })).rejects.toThrow();
      const [record] = await readdir(stateDir);
      const claimFile = join(stateDir, (record as string).replace(/\.json$/, '.claim'));
      await writeFile(claimFile, JSON.stringify({ ...claim, sha256: local.sha256 }));
      const past = (Date.now() - ageMs) / 1000;
      await utimes(claimFile, past, past);

      const waits: string[] = [];
      const result = await new S3ResumableUploader(s3ClientFor(moto), { stateDir, partSizeBytes: PART }).upload({ bucket, key, ...local, onWait: (text) => waits.push(text) });

      expect(result, JSON.stringify(claim)).toEqual({ resumed: true, partsReused: 1, partsSent: 3 });
      expect(waits).toEqual([]);
      expect(await readdir(stateDir)).toEqual([]);
    }
  });

  it("never replaces an object another user's upload (its own records) completed meanwhile, though the emulator ignores If-None-Match on completion", async () => {
    const bucket = await createBucket(s3, 'twin');
    const key = 'lab/inputs/raced.bin';
    const mine = await sampleFile('raced.bin', randomBytes(2 * PART + 5));
    const theirs = await sampleFile('raced-theirs.bin', randomBytes(2 * PART + 5));
    const first = gatedClient(moto, 1);
    const stateDir = join(dir, 'state-raced-mine');

    const uploading = new S3ResumableUploader(first.s3, { stateDir, partSizeBytes: PART, concurrency: 1 }).upload({ bucket, key, ...mine });
    uploading.catch(() => undefined);
    await first.held(1);
    await new S3ResumableUploader(s3ClientFor(moto), { stateDir: join(dir, 'state-raced-theirs'), partSizeBytes: PART }).upload({ bucket, key, ...theirs });
    const [record] = await readdir(stateDir);
    const { uploadId } = JSON.parse(await readFile(join(stateDir, record as string), 'utf8')) as { uploadId: string };
    first.open();

    await expect(uploading).rejects.toBeInstanceOf(ObjectExistsError);
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata?.['sha256']).toBe(theirs.sha256);
    // (moto answers ListParts of a gone upload id with the key's object, so ask which uploads remain.)
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }))).Uploads?.map((u) => u.UploadId) ?? []).not.toContain(uploadId);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('reads a completion answered NoSuchUpload by what the key holds: its object is ObjectExists (compared by the caller), none is an upload to start again', async () => {
    const bucket = await createBucket(s3, 'twin');
    const local = await sampleFile('ended.bin', randomBytes(2 * PART + 5));
    const stateDir = join(dir, 'state-ended');

    // Another run that resumed this upload id completed it first.
    const completedElsewhere = completionEndedClient(moto, async (_args, send) => void (await send()));
    await expect(new S3ResumableUploader(completedElsewhere, { stateDir, partSizeBytes: PART }).upload({ bucket, key: 'lab/inputs/ended.bin', ...local })).rejects.toBeInstanceOf(ObjectExistsError);
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'lab/inputs/ended.bin' }))).Metadata?.['sha256']).toBe(local.sha256);

    // The upload was aborted under it (by hand, or the lifecycle rule): nothing is stored.
    const abortedElsewhere = completionEndedClient(moto, async ({ input }) => void (await s3.send(new AbortMultipartUploadCommand({ Bucket: input.Bucket, Key: input.Key, UploadId: input.UploadId }))));
    const ended = new S3ResumableUploader(abortedElsewhere, { stateDir, partSizeBytes: PART }).upload({ bucket, key: 'lab/inputs/aborted.bin', ...local });
    await expect(ended).rejects.toBeInstanceOf(UploadInterruptedError);
    await expect(ended).rejects.toMatchObject({ code: 'UploadEnded', message: expect.stringContaining('run the same command again to upload it from the start') });
    expect(await inputsOf(bucket)).toEqual(['lab/inputs/ended.bin']);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('never overwrites an object that appeared under the key, multipart or single', async () => {
    const bucket = await createBucket(s3, 'resume');
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/inputs/taken.bin', Body: 'theirs' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/inputs/small.txt', Body: 'theirs' }));
    const uploader = new S3ResumableUploader(s3ClientFor(moto), { stateDir: join(dir, 'state-3'), partSizeBytes: PART });

    await expect(uploader.upload({ bucket, key: 'lab/inputs/taken.bin', ...(await sampleFile('taken.bin', randomBytes(2 * PART))) })).rejects.toBeInstanceOf(ObjectExistsError);
    await expect(uploader.upload({ bucket, key: 'lab/inputs/small.txt', ...(await sampleFile('small.txt', Buffer.from('mine'))) })).rejects.toBeInstanceOf(ObjectExistsError);

    for (const key of ['lab/inputs/taken.bin', 'lab/inputs/small.txt']) {
      const body = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      expect(await (body.Body as { transformToString(): Promise<string> }).transformToString()).toBe('theirs');
    }
  });
});

describe('how a file is split into parts', () => {
  const GIB = 1024 * 1024 * 1024;

  it('keeps the preferred part size while S3 allows it, and grows it to whole MiB past 10 000 parts', () => {
    expect(planParts(GIB)).toEqual({ partSizeBytes: DEFAULT_PART_BYTES, partCount: 128, concurrency: 10 });
    for (const size of [100 * GIB, 5 * 1024 * GIB]) {
      const plan = planParts(size);
      expect(plan.partCount).toBeLessThanOrEqual(10_000);
      expect(plan.partSizeBytes % (1024 * 1024)).toBe(0);
      expect(plan.partSizeBytes).toBeLessThanOrEqual(5 * GIB);
      expect((plan.partCount - 1) * plan.partSizeBytes).toBeLessThan(size);
    }
    expect(planParts(100 * GIB).partSizeBytes).toBe(11 * 1024 * 1024);
  });

  it('holds at most MAX_BUFFERED_BYTES of parts in memory, but keeps two in flight', () => {
    const huge = planParts(5 * 1024 * GIB);
    expect(huge.concurrency).toBe(2);
    const big = planParts(1024 * GIB);
    expect(big.concurrency * big.partSizeBytes).toBeLessThanOrEqual(MAX_BUFFERED_BYTES);
    expect(planParts(GIB, PART, 1).concurrency).toBe(1);
  });
});
