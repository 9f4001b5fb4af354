/**
 * The file hashing behind staging (lib/client/file-hash.ts): the sha256 of a file read through
 * two reused buffers is the sha256 of its bytes whatever its size against the buffers, on this
 * thread or a worker; `run` hashes its files in turn, a file that cannot be read fails only its
 * own hash, and an aborted run stops hashing (the worker too).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { HASH_READ_BYTES, hashFileHere, hashFileInWorker, hashInTurn, settleWorkerHash, sha256OfFile, sha256OfFileInWorker, WORKER_HASH_MIN_BYTES } from '../../../lib/client/file-hash.js';

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('hashing local files before they are staged', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ncap-hash-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives the sha256 of the bytes for files shorter than, equal to and across several read buffers', async () => {
    for (const size of [0, 1, HASH_READ_BYTES, HASH_READ_BYTES + 1, 2 * HASH_READ_BYTES + 12_345]) {
      const bytes = randomBytes(size);
      const file = join(dir, `f-${size}.bin`);
      await writeFile(file, bytes);
      expect(await sha256OfFile(file), `${size} bytes`).toBe(sha(bytes));
      expect(await sha256OfFileInWorker(file), `${size} bytes on a worker`).toBe(sha(bytes));
    }
  });

  it('hashes a large file on a worker thread, and says which file was missing', async () => {
    const bytes = randomBytes(WORKER_HASH_MIN_BYTES + 5);
    await writeFile(join(dir, 'large.bin'), bytes);
    expect((await hashInTurn([join(dir, 'large.bin')])[0])?.sha256).toBe(sha(bytes));
    await expect(sha256OfFileInWorker(join(dir, 'gone.bin'))).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringContaining('gone.bin') });
  });

  it('hashes files in turn, and a file that cannot be read fails only its own hash', async () => {
    const a = randomBytes(1000);
    const c = randomBytes(HASH_READ_BYTES + 3);
    await writeFile(join(dir, 'a.bin'), a);
    await writeFile(join(dir, 'c.bin'), c);
    const [first, missing, third] = hashInTurn([join(dir, 'a.bin'), join(dir, 'nope.bin'), join(dir, 'c.bin')]);
    expect((await first)?.sha256).toBe(sha(a));
    await expect(missing).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await third)?.sha256).toBe(sha(c));
  });

  it('stops hashing once the run that asked for it is aborted, on this thread or a worker', async () => {
    await writeFile(join(dir, 'big.bin'), randomBytes(3 * HASH_READ_BYTES));
    await writeFile(join(dir, 'large-2.bin'), randomBytes(WORKER_HASH_MIN_BYTES));
    const controller = new AbortController();
    const [small, large] = hashInTurn([join(dir, 'big.bin'), join(dir, 'large-2.bin')], controller.signal);
    controller.abort();
    await expect(small).rejects.toMatchObject({ name: 'AbortError' });
    await expect(large).rejects.toMatchObject({ name: 'AbortError' });
    const worker = new AbortController();
    const hashing = sha256OfFileInWorker(join(dir, 'large-2.bin'), worker.signal);
    worker.abort();
    await expect(hashing).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('gives each hash the size and mtime the file had while it was read, on this thread or a worker', async () => {
    const bytes = randomBytes(HASH_READ_BYTES + 9);
    const file = join(dir, 'stat.bin');
    await writeFile(file, bytes);
    const info = await stat(file);
    const expected = { sha256: sha(bytes), sizeBytes: bytes.length, mtimeMs: info.mtimeMs };
    expect(await hashFileHere(file)).toEqual(expected);
    expect(await hashFileInWorker(file)).toEqual(expected);
  });

  it('rejects, naming the file, when the hashing worker exits without an answer', async () => {
    const worker = new Worker('process.exit(3)', { eval: true });
    await expect(settleWorkerHash(worker, '/data/session.bin')).rejects.toThrow(/hashing \/data\/session\.bin stopped \(exit code 3\) before it gave a sha256/);
  }, 10_000);
});
