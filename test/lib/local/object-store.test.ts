import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectExistsError, ObjectOutsideBucketError } from '../../../lib/core/errors.js';
import { LocalObjectStore } from '../../../lib/local/object-store.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function setup(): { root: string; buckets: string; store: LocalObjectStore } {
  const root = mkdtempSync(join(tmpdir(), 'ncap-objects-'));
  roots.push(root);
  const buckets = join(root, 'buckets');
  mkdirSync(join(buckets, 'b'), { recursive: true });
  return { root, buckets, store: new LocalObjectStore(buckets) };
}

const sha256 = (text: string | Buffer): string => createHash('sha256').update(text).digest('hex');

describe('local object store etags', () => {
  it('are the sha256 of the content, so a touch or an identical re-copy is the same object', async () => {
    const { buckets, store } = setup();
    await store.put('b', 'lab/submissions/xsubmit.json', '{"a":1}');
    const first = await store.head('b', 'lab/submissions/xsubmit.json');
    expect(first?.etag).toBe(sha256('{"a":1}'));
    const path = join(buckets, 'b', 'lab', 'submissions', 'xsubmit.json');
    utimesSync(path, new Date(), new Date(Date.now() + 5_000));
    rmSync(path);
    writeFileSync(path, '{"a":1}');
    expect((await store.head('b', 'lab/submissions/xsubmit.json'))?.etag).toBe(first?.etag);
    expect((await store.list('b', 'lab/submissions/'))[0]?.etag).toBe(first?.etag);
  });

  it('are cached by inode fingerprint on disk, so a large file is not hashed again by the next process', async () => {
    const { root, buckets, store } = setup();
    const source = join(root, 'big.bin');
    writeFileSync(source, Buffer.alloc(2 * 1024 * 1024, 7));
    await store.stageFile('b', 'lab/inputs/big.bin', source);
    const cacheDir = join(buckets, '.ncap-etags');
    const [entry] = readdirSync(cacheDir);
    // Prove the next store reads the cache instead of the bytes: give it a recognisable value.
    const cached = JSON.parse(readFileSync(join(cacheDir, entry as string), 'utf8'));
    writeFileSync(join(cacheDir, entry as string), JSON.stringify({ ...cached, sha256: 'f'.repeat(64) }));
    expect((await new LocalObjectStore(buckets).head('b', 'lab/inputs/big.bin'))?.etag).toBe('f'.repeat(64));
    // A changed file (new mtime) is hashed again.
    utimesSync(join(buckets, 'b', 'lab', 'inputs', 'big.bin'), new Date(), new Date(Date.now() + 5_000));
    expect((await new LocalObjectStore(buckets).head('b', 'lab/inputs/big.bin'))?.etag).toBe(cached.sha256);
  });
});

describe('local object store staging', () => {
  it('copies a file create-only and reuses an identical one', async () => {
    const { root, store } = setup();
    const source = join(root, 'a.csv');
    writeFileSync(source, 'x,y\n');
    const first = await store.stageFile('b', 'lab/inputs/a.csv', source);
    expect(first).toMatchObject({ reused: false, info: { size: 4, etag: sha256('x,y\n') } });
    const again = await store.stageFile('b', 'lab/inputs/a.csv', source);
    expect(again.reused).toBe(true);
    writeFileSync(source, 'other\n');
    await expect(store.stageFile('b', 'lab/inputs/a.csv', source)).rejects.toBeInstanceOf(ObjectExistsError);
  });

  it('never fails when several processes stage one identical file at once', async () => {
    const { root, buckets } = setup();
    const source = join(root, 'same.bin');
    writeFileSync(source, Buffer.alloc(3 * 1024 * 1024, 1));
    const results = await Promise.all(Array.from({ length: 20 }, () => new LocalObjectStore(buckets).stageFile('b', 'lab/inputs/same.bin', source)));
    expect(results.filter((r) => !r.reused)).toHaveLength(1);
    expect(new Set(results.map((r) => r.info.etag)).size).toBe(1);
    expect(readdirSync(join(buckets, 'b', '.ncap-staging'))).toEqual([]);
  });

  // Files over 2 GiB: test/e2e/data-at-scale.test.ts (with the CLI's memory bounded).
  it('keeps a sparse file sparse and its size', async () => {
    const { root, buckets, store } = setup();
    const source = join(root, 'sparse.bin');
    const fd = openSync(source, 'w');
    writeSync(fd, 'head');
    ftruncateSync(fd, 64 * 1024 ** 2);
    writeSync(fd, 'tail', 64 * 1024 ** 2 - 4);
    closeSync(fd);
    const { info } = await store.stageFile('b', 'lab/inputs/sparse.bin', source);
    const staged = statSync(join(buckets, 'b', 'lab', 'inputs', 'sparse.bin'));
    expect(info.size).toBe(64 * 1024 ** 2);
    expect(staged.size).toBe(64 * 1024 ** 2);
    // Allocated: the two 1 MiB chunks that hold data, not 64 MiB.
    expect(staged.blocks * 512).toBeLessThanOrEqual(2 * 1024 * 1024 + 65536);
    expect(info.etag).toBe(createHash('sha256').update(readFileSync(source)).digest('hex'));
  });

  it('shows nothing half-written when the staging process is killed, and the next staging cleans up', async () => {
    const { root, buckets } = setup();
    // A named pipe as the source: the copy waits for bytes, so the kill lands mid-copy.
    const fifo = join(root, 'slow.fifo');
    const made = spawn('mkfifo', [fifo]);
    await new Promise((resolve) => made.once('exit', resolve));
    const moduleUrl = new URL('../../../dist/lib/local/object-store.js', import.meta.url).href;
    const child = spawn(process.execPath, ['-e', `import(${JSON.stringify(moduleUrl)}).then(({ LocalObjectStore }) => new LocalObjectStore(${JSON.stringify(buckets)}).stageFile('b', 'lab/inputs/slow.bin', ${JSON.stringify(fifo)}))`], { stdio: 'ignore' });
    const writer = openSync(fifo, 'w');
    writeSync(writer, Buffer.alloc(2 * 1024 * 1024, 3));
    const staging = join(buckets, 'b', '.ncap-staging');
    for (let i = 0; i < 200 && !(existsSync(staging) && readdirSync(staging).length > 0); i += 1) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    closeSync(writer);
    expect(readdirSync(staging).length).toBe(1);
    const store = new LocalObjectStore(buckets);
    expect(await store.head('b', 'lab/inputs/slow.bin')).toBeUndefined();
    expect(existsSync(join(buckets, 'b', 'lab', 'inputs', 'slow.bin'))).toBe(false);

    const source = join(root, 'next.csv');
    writeFileSync(source, 'next\n');
    await store.stageFile('b', 'lab/inputs/next.csv', source);
    expect(readdirSync(staging)).toEqual([]);
  }, 30_000);
});

describe('local object store links', () => {
  it('refuses an object that is a link leading outside the bucket, with the reason', async () => {
    const { root, buckets, store } = setup();
    writeFileSync(join(root, 'secret'), 'secret\n');
    mkdirSync(join(buckets, 'b', 'lab', 'inputs'), { recursive: true });
    symlinkSync(join(root, 'secret'), join(buckets, 'b', 'lab', 'inputs', 'a.csv'));
    await expect(store.head('b', 'lab/inputs/a.csv')).rejects.toBeInstanceOf(ObjectOutsideBucketError);
    await expect(store.get('b', 'lab/inputs/a.csv')).rejects.toThrow(/leading outside the bucket/);
    await expect(store.sha256('b', 'lab/inputs/a.csv')).rejects.toBeInstanceOf(ObjectOutsideBucketError);
    expect(await store.list('b', 'lab/inputs/')).toEqual([]);
  });

  it('refuses an object under a linked folder leading outside the bucket', async () => {
    const { root, buckets, store } = setup();
    mkdirSync(join(root, 'elsewhere'));
    writeFileSync(join(root, 'elsewhere', 'a.csv'), 'x\n');
    mkdirSync(join(buckets, 'b', 'lab', 'inputs'), { recursive: true });
    symlinkSync(join(root, 'elsewhere'), join(buckets, 'b', 'lab', 'inputs', 'day1'));
    await expect(store.head('b', 'lab/inputs/day1/a.csv')).rejects.toThrow(/lab\/inputs\/day1\/a\.csv is a link \(or lies under a linked folder\) leading outside the bucket/);
  });

  it('reads a link that stays inside the bucket', async () => {
    const { buckets, store } = setup();
    await store.put('b', 'lab/inputs/real.csv', 'x\n');
    symlinkSync(join(buckets, 'b', 'lab', 'inputs', 'real.csv'), join(buckets, 'b', 'lab', 'inputs', 'alias.csv'));
    expect((await store.head('b', 'lab/inputs/alias.csv'))?.etag).toBe(sha256('x\n'));
  });
});
