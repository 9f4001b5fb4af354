/**
 * The file hashing behind staging (lib/client/researcher-client.ts): the sha256 of a file read
 * through two reused buffers is the sha256 of its bytes whatever its size against the buffers;
 * `run` hashes its files in turn, a file that cannot be read fails only its own hash, and an
 * aborted run stops hashing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HASH_READ_BYTES, hashInTurn, sha256OfFile } from '../../../lib/client/researcher-client.js';

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
    }
  });

  it('hashes files in turn, and a file that cannot be read fails only its own hash', async () => {
    const a = randomBytes(1000);
    const c = randomBytes(HASH_READ_BYTES + 3);
    await writeFile(join(dir, 'a.bin'), a);
    await writeFile(join(dir, 'c.bin'), c);
    const [first, missing, third] = hashInTurn([join(dir, 'a.bin'), join(dir, 'nope.bin'), join(dir, 'c.bin')]);
    expect(await first).toBe(sha(a));
    await expect(missing).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await third).toBe(sha(c));
  });

  it('stops hashing once the run that asked for it is aborted', async () => {
    await writeFile(join(dir, 'big.bin'), randomBytes(3 * HASH_READ_BYTES));
    const controller = new AbortController();
    const [hash] = hashInTurn([join(dir, 'big.bin')], controller.signal);
    controller.abort();
    await expect(hash).rejects.toMatchObject({ name: 'AbortError' });
  });
});
