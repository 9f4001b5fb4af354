import { mkdtempSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeyInvalidError, ObjectExistsError } from '../../../lib/core/errors.js';
import { LocalJobStore } from '../../../lib/local/job-store.js';
import { LocalLedger } from '../../../lib/local/ledger.js';
import { LocalObjectStore } from '../../../lib/local/object-store.js';
import { STATE_DB_FILE, StateDb } from '../../../lib/local/state-db.js';
import { jobStoreContract, ledgerContract } from '../../contracts/job-store.contract.js';
import { objectStoreContract } from '../../contracts/object-store.contract.js';

const tempRoot = () => mkdtempSync(join(tmpdir(), 'ncap-store-'));
const tempDb = () => new StateDb(join(tempRoot(), 'state', STATE_DB_FILE));

objectStoreContract('local', async () => ({ store: new LocalObjectStore(join(tempRoot(), 'buckets')), bucket: 'kalman-smoother' }));
jobStoreContract('local (SQLite)', async () => new LocalJobStore(tempDb()));
ledgerContract('local (SQLite)', async () => new LocalLedger(tempDb()));

describe('local object store', () => {
  it('never overwrites a researcher input or config, even when asked to', async () => {
    const store = new LocalObjectStore(join(tempRoot(), 'buckets'));
    await store.put('a-b', 'lab/inputs/data.csv', 'original');
    await expect(store.put('a-b', 'lab/inputs/data.csv', 'new', { overwrite: true })).rejects.toBeInstanceOf(ObjectExistsError);
    await store.put('a-b', 'lab/configs/c.json', '{}');
    await expect(store.put('a-b', 'lab/configs/c.json', '{"x":1}', { overwrite: true })).rejects.toThrow(/never overwrites/);
    expect((await store.get('a-b', 'lab/inputs/data.csv')).toString()).toBe('original');
  });

  it('refuses keys that would escape the bucket folder', async () => {
    const root = tempRoot();
    const store = new LocalObjectStore(join(root, 'buckets'));
    await expect(store.put('a-b', '../../escape.txt', 'x')).rejects.toBeInstanceOf(KeyInvalidError);
    await expect(store.get('../other', 'lab/inputs/a')).rejects.toBeInstanceOf(KeyInvalidError);
  });

  it('hides half-written temp files from listings', async () => {
    const root = tempRoot();
    const store = new LocalObjectStore(join(root, 'buckets'));
    await store.put('a-b', 'lab/inputs/a.csv', 'a');
    await writeFile(join(root, 'buckets', 'a-b', 'lab', 'inputs', '.ncap-tmp-b.csv.1.ab'), 'partial');
    expect((await store.list('a-b', 'lab/')).map((o) => o.key)).toEqual(['lab/inputs/a.csv']);
  });

  it('computes the sha256 of an object by streaming it', async () => {
    const store = new LocalObjectStore(join(tempRoot(), 'buckets'));
    await store.put('a-b', 'lab/inputs/a.csv', 'abc');
    expect(await store.sha256('a-b', 'lab/inputs/a.csv')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
