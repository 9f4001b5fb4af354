import { describe, expect, it } from 'vitest';
import { ObjectExistsError, ObjectNotFoundError } from '../../lib/core/errors.js';
import type { ObjectStore } from '../../lib/ports.js';

/** The behaviour every ObjectStore must have; run against each backend's adapter. */
export function objectStoreContract(name: string, makeStore: () => Promise<{ store: ObjectStore; bucket: string }>): void {
  describe(`${name} object store contract`, () => {
    it('reads back what it wrote, with size and etag', async () => {
      const { store, bucket } = await makeStore();
      const info = await store.put(bucket, 'lab/results/job__a_1/logs/x.txt', 'hello');
      expect(info.size).toBe(5);
      expect((await store.get(bucket, 'lab/results/job__a_1/logs/x.txt')).toString()).toBe('hello');
      const head = await store.head(bucket, 'lab/results/job__a_1/logs/x.txt');
      expect(head?.size).toBe(5);
      expect(head?.etag).toBe(info.etag);
    });

    it('refuses to overwrite by default and leaves the first object intact', async () => {
      const { store, bucket } = await makeStore();
      await store.put(bucket, 'lab/results/job__a_1/provenance.json', 'first');
      await expect(store.put(bucket, 'lab/results/job__a_1/provenance.json', 'second')).rejects.toBeInstanceOf(ObjectExistsError);
      expect((await store.get(bucket, 'lab/results/job__a_1/provenance.json')).toString()).toBe('first');
    });

    it('overwrites when asked to', async () => {
      const { store, bucket } = await makeStore();
      await store.put(bucket, 'lab/results/job__a_1/logs/certificate.txt', 'one');
      await store.put(bucket, 'lab/results/job__a_1/logs/certificate.txt', 'two', { overwrite: true });
      expect((await store.get(bucket, 'lab/results/job__a_1/logs/certificate.txt')).toString()).toBe('two');
    });

    it('lets exactly one of many concurrent create-only writes win', async () => {
      const { store, bucket } = await makeStore();
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.put(bucket, 'lab/results/job__a_1/end.txt', `writer ${i}`)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason instanceof ObjectExistsError)).toBe(true);
    });

    it('reports a missing object as absent or not found', async () => {
      const { store, bucket } = await makeStore();
      expect(await store.head(bucket, 'lab/inputs/nothing.csv')).toBeUndefined();
      await expect(store.get(bucket, 'lab/inputs/nothing.csv')).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('lists keys under a prefix in key order, and only those', async () => {
      const { store, bucket } = await makeStore();
      for (const key of ['lab/inputs/b.csv', 'lab/inputs/a.csv', 'lab/inputs/sub/c.csv', 'lab/configs/c.json', 'other/inputs/a.csv']) {
        await store.put(bucket, key, key);
      }
      expect((await store.list(bucket, 'lab/inputs/')).map((o) => o.key)).toEqual(['lab/inputs/a.csv', 'lab/inputs/b.csv', 'lab/inputs/sub/c.csv']);
      expect((await store.list(bucket, 'lab/inputs/a')).map((o) => o.key)).toEqual(['lab/inputs/a.csv']);
      expect(await store.list(bucket, 'nobody/')).toEqual([]);
    });

    it('stores binary content byte for byte', async () => {
      const { store, bucket } = await makeStore();
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      await store.put(bucket, 'lab/inputs/raw.bin', bytes);
      expect([...(await store.get(bucket, 'lab/inputs/raw.bin'))]).toEqual([...bytes]);
    });
  });
}
