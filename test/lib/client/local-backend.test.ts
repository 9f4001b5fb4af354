import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalClientBackend } from '../../../lib/client/local-backend.js';
import { ResearcherUseCases } from '../../../lib/client/researcher-use-cases.js';
import { LocalPlatform } from '../../../protocols/local-shell.js';

const fixtures = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const platforms: LocalPlatform[] = [];
afterEach(async () => {
  await Promise.all(platforms.splice(0).map((p) => p.close()));
});

/** A local backend on a fresh root whose receipt writes all fail with EIO (a failing disk under receipts/). */
function backendWithoutReceipts(): { platform: LocalPlatform; useCases: ResearcherUseCases<LocalClientBackend> } {
  const platform = new LocalPlatform({ root: mkdtempSync(join(tmpdir(), 'ncap-client-')), blueprintsDir: join(fixtures, 'blueprints'), usersDir: join(fixtures, 'users') });
  platforms.push(platform);
  const put = platform.objects.put.bind(platform.objects);
  vi.spyOn(platform.objects, 'put').mockImplementation(async (bucket, key, body, options) => {
    if (key.includes('/receipts/')) throw Object.assign(new Error(`EIO: i/o error, write '${platform.objects.pathOf(bucket, key)}'`), { code: 'EIO' });
    return put(bucket, key, body, options);
  });
  return { platform, useCases: new ResearcherUseCases(new LocalClientBackend(platform, 'alice')) };
}

describe('local client backend', () => {
  it('answers a submission whose receipt could not be written from the job itself, at once (not after the 30 s receipt wait)', async () => {
    const { platform, useCases } = backendWithoutReceipts();
    await platform.objects.put('test-workflow', 'lab/inputs/a.csv', 'x\n');
    await platform.objects.put('test-workflow', 'lab/configs/c.json', JSON.stringify({ mode: 'succeed' }));
    const identity = await useCases.identity();
    const startedAt = Date.now();

    const { key, receipt } = await useCases.submit('test-workflow', identity, { dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' });

    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(receipt).toMatchObject({ schemaVersion: 1, submissionKey: key, analysis: 'test-workflow', outcome: 'accepted' });
    expect((await platform.waitForJob(receipt.jobId)).datasets[0]?.phase).toBe('SUCCEEDED');
  });

  it('answers a rejected submission whose receipt could not be written with the rejection and its reasons', async () => {
    const { platform, useCases } = backendWithoutReceipts();
    const identity = await useCases.identity();

    const { receipt } = await useCases.submit('test-workflow', identity, { dataname: 'lab/inputs/none.csv', configname: 'lab/configs/none.json' });

    expect(receipt.outcome).toBe('rejected');
    const state = (await platform.jobs.get(receipt.jobId))?.state;
    expect(state?.phase).toBe('REJECTED');
    expect(receipt.reasons).toEqual(state?.rejection);
    expect(receipt.reasons?.join('\n')).toContain('lab/configs/none.json');
  }, 20_000);

  it('cancels a job whose cancel receipt could not be written and answers the canceller at once', async () => {
    const { platform, useCases } = backendWithoutReceipts();
    await platform.objects.put('test-workflow', 'lab/inputs/a.csv', 'x\n');
    await platform.objects.put('test-workflow', 'lab/configs/s.json', JSON.stringify({ mode: 'sleep', seconds: 30 }));
    const { receipt: submitted } = await useCases.submit('test-workflow', await useCases.identity(), { dataname: 'lab/inputs/a.csv', configname: 'lab/configs/s.json' });
    const startedAt = Date.now();

    const cancelled = await useCases.cancel(submitted.jobId, 'not needed');

    expect(Date.now() - startedAt).toBeLessThan(20_000);
    expect(cancelled.receipt).toMatchObject({ jobId: submitted.jobId, outcome: 'accepted' });
    expect(cancelled.job.phase).toBe('DONE');
    expect(cancelled.job.datasets[0]?.phase).toBe('CANCELLED');
  }, 40_000);
});
